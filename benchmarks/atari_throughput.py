"""Atari throughput: env frames/s of the raw ``AtariVectorEnv`` and of lightq's DQN training loop, one run.

Raw env: ``make_atari_vec_env("ALE/Pong-v5", protocol="nature")`` stepped with uniform random actions (no
learning, no storage). lightq: ``Trainer.fit`` of ``lightq.algos.DQN`` on the same env and env count with the
Nature CNN, batch 32, one update per 4 agent steps (Nature), frame replay in RAM of the training device,
ε-greedy acting (ε decays 1 → 0.1 over the run, so the CNN acts on a growing share of steps), evaluation
and logging off; whole fit timed (setup and a short warm-up of ``--warmup`` agent steps included).
Rounds of (raw, lightq) are interleaved and medians compared (the shared machine drifts by ±30%).
Env frames = agent steps × 4 (frame skip). Prints both rates, an estimate of the time to 10M agent steps
on this machine, and last ``ratio lightq/raw-env: X.XX``.
Usage: ``python benchmarks/atari_throughput.py [--updates 500] [--num-envs 1] [--rounds 2] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pytorch_lightning as pl
import torch

import harness  # benchmarks/harness.py

from lightq.algos import DQN
from lightq.envs.atari import make_atari_vec_env

FRAME_SKIP = 4


def raw_env(num_envs: int, agent_steps: int, seed: int) -> tuple[float, int]:
    env = make_atari_vec_env("ALE/Pong-v5", num_envs=num_envs, protocol="nature")
    rng = np.random.default_rng(seed)
    n = int(env.single_action_space.n)
    env.reset(seed=np.arange(seed, seed + num_envs))
    t0 = time.perf_counter()
    steps = 0
    while steps < agent_steps:
        env.step(rng.integers(0, n, num_envs))
        steps += num_envs
    secs = time.perf_counter() - t0
    env.close()
    return secs, steps


def lightq_loop(num_envs: int, updates: int, warmup: int, seed: int, device: str) -> tuple[float, int, int]:
    total = warmup + 4 * updates
    model = DQN(
        env={"id": "ALE/Pong-v5", "num_envs": num_envs, "atari_protocol": "nature"},
        replay={"capacity": max(20_000, total + 1_000), "batch_size": 32, "batches_per_sample": 1},
        evaluation={"every_env_steps": None},
        exploration={"start": 1.0, "end": 0.1, "duration_env_steps": total},
        seed=seed, total_env_steps=total, learning_starts_env_steps=warmup, env_steps_per_update=4.0,
        target_update_period_updates=250, max_grad_norm=None, lr=1e-4, log_every_updates=10**9,
    )
    trainer = pl.Trainer(
        accelerator=device, devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    t0 = time.perf_counter()
    trainer.fit(model)
    return time.perf_counter() - t0, model.updates, model.env_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=200, help="agent steps of warm-up before the first update")
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    harness.quiet()
    print(f"torch {torch.__version__}, threads 1, device {args.device}, {args.num_envs} env(s), Pong nature protocol")
    raw_fps, lq_fps, lq_ups = [], [], []
    agent_steps = args.warmup + 4 * args.updates
    for r in range(args.rounds):
        secs, steps = raw_env(args.num_envs, max(agent_steps, 4_000), r)
        raw_fps.append(steps * FRAME_SKIP / secs)
        print(f"round {r} raw env: {steps} agent steps in {secs:.2f}s = {raw_fps[-1]:,.0f} frames/s")
        secs, updates, steps = lightq_loop(args.num_envs, args.updates, args.warmup, r, args.device)
        lq_fps.append(steps * FRAME_SKIP / secs)
        lq_ups.append(updates / secs)
        print(f"round {r} lightq : {steps} agent steps, {updates} updates in {secs:.2f}s = "
              f"{lq_fps[-1]:,.0f} frames/s, {lq_ups[-1]:.1f} updates/s")
    raw, lq = float(np.median(raw_fps)), float(np.median(lq_fps))
    print(f"median raw env: {raw:,.0f} frames/s ({raw / FRAME_SKIP:,.0f} agent steps/s)")
    print(f"median lightq : {lq:,.0f} frames/s ({lq / FRAME_SKIP:,.0f} agent steps/s), "
          f"{float(np.median(lq_ups)):.1f} updates/s")
    hours = 10_000_000 / (lq / FRAME_SKIP) / 3600
    print(f"estimated time to 10M agent steps at this rate ({args.device}): {hours:,.1f} h")
    print(f"ratio lightq/raw-env: {lq / raw:.2f}")


if __name__ == "__main__":
    main()
