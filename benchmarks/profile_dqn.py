"""Where a lightq DQN update's time goes: per-call cost of each piece, on CartPole-v1 (MLP 120-84).

Usage: ``python benchmarks/profile_dqn.py [--batch 32]``. Prints µs per call of: a raw gymnasium step,
a 1-env SyncVectorEnv step, the collector step (warm-up / greedy policy), a replay draw, the
training_step, and one full Lightning iteration (fetch + training_step + callbacks + env step).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import pytorch_lightning as pl
import torch

import harness  # benchmarks/harness.py

from lightq.algos import DQN
from lightq.envs import make_vec_env


def per_call(fn, n: int = 2000) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return 1e6 * (time.perf_counter() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    harness.quiet()

    def build(total):
        return DQN(
            env={"id": "CartPole-v1"}, replay={"capacity": 10_000, "batch_size": args.batch},
            evaluation={"every_env_steps": None}, total_env_steps=total, learning_starts_env_steps=1_000,
            log_every_updates=1000,
        )

    trainer_kwargs = dict(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False)
    # Full iterations: time 4000 updates after warm-up, minus nothing.
    model = build(6_000)
    t = pl.Trainer(**trainer_kwargs)
    t0 = time.perf_counter()
    t.fit(model)
    fit_s = time.perf_counter() - t0
    rows = {"fit, per update (warm-up + setup included)": 1e6 * fit_s / model.updates}

    env = gym.make("CartPole-v1")
    env.reset(seed=0)

    def raw_step():
        *_, term, trunc, _ = env.step(0)
        if term or trunc:
            env.reset()

    rows["gymnasium env.step (raw)"] = per_call(raw_step)
    vec = make_vec_env(model.env_config)
    vec.reset(seed=0)
    a = np.zeros(1, dtype=np.int64)
    rows["make_vec_env step, 1 env (LeanSyncVectorEnv)"] = per_call(lambda: vec.step(a))
    col = model.collector
    col.env = make_vec_env(model.env_config)
    col._obs = None
    rows["collector.step, warm-up policy"] = per_call(lambda: col.step(model.warmup_policy))
    model.env_steps = 10**9  # ε at its floor: nearly every step runs the network
    rows["collector.step, ε-greedy (ε=0.05)"] = per_call(lambda: col.step(model.explore_policy))
    obs = np.zeros((1, 4), dtype=np.float32)
    rows["greedy_actions (1 obs)"] = per_call(lambda: model.greedy_actions(obs))

    def plain_act():  # the plain loop's greedy action
        with torch.no_grad():
            return int(model.q_net(torch.as_tensor(obs[0]).unsqueeze(0)).argmax())

    rows["plain loop's greedy action (1 obs)"] = per_call(plain_act)
    cap, ptr = 10_000, [0]
    b_obs, b_next, b_act, b_rew, b_term = (torch.zeros(cap, 4), torch.zeros(cap, 4), torch.zeros(cap, dtype=torch.long),
                                           torch.zeros(cap), torch.zeros(cap, dtype=torch.bool))
    env_obs = [env.reset(seed=0)[0]]

    def plain_step_store():  # the plain loop's env step + ring-buffer store (random action)
        o = env_obs[0]
        nxt, r, term, trunc, _ = env.step(0)
        i = ptr[0]
        b_obs[i] = torch.as_tensor(o)
        b_next[i] = torch.as_tensor(nxt)
        b_act[i] = 0
        b_rew[i] = r
        b_term[i] = term
        ptr[0] = (i + 1) % cap
        env_obs[0] = env.reset()[0] if term or trunc else nxt

    rows["plain loop's env step + store"] = per_call(plain_step_store)
    col.flush()
    model.replay.num_updates = 10**9
    it = iter(model.replay)
    rows[f"replay next() (amortized draw of {model.replay_config.batches_per_sample})"] = per_call(lambda: next(it))
    batch = next(it)
    rows["update (DQN.update)"] = per_call(lambda: model.update(batch))
    rows["update + per-update callbacks (the fit's callbacks, k > 1 path)"] = per_call(lambda: (
        model.update(batch), [cb.on_train_batch_end(t, model, None, batch, 0) for cb in model._per_update_callbacks]))
    q, target = model.q_net, model.target_net
    opt = torch.optim.Adam(q.parameters(), lr=1e-3, fused=True)
    params = list(q.parameters())

    def plain_update():  # the update of benchmarks/throughput_dqn.py's plain loop, same batch
        with torch.no_grad():
            y = batch.reward + 0.99 * (~batch.terminated).float() * target(batch.next_obs).max(-1).values
        qa = q(batch.obs).gather(1, batch.action.unsqueeze(1)).squeeze(1)
        loss = torch.nn.functional.huber_loss(qa, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()

    rows["plain update, same batch and nets"] = per_call(plain_update)
    width = max(len(k) for k in rows)
    for k, v in rows.items():
        print(f"{k:<{width}}  {v:8.1f} µs")


if __name__ == "__main__":
    main()
