"""DQN throughput: lightq vs a plain-PyTorch DQN loop and vs Stable-Baselines3's DQN, same work, one process run.

SB3 is a benchmark-only requirement, not a lightq dependency; install it with
``pip install -c constraints.txt -r benchmarks/requirements-sb3.txt`` (the constraints keep torch the CPU
build). Without it the script runs plain and lightq only and prints one line saying so.

All sides: CartPole-v1 (one env), MLP 120-84 (ReLU), Adam lr 2.5e-4 (fused), Huber loss (δ 1), grad-norm
clip 10, γ 0.99, the same buffer capacity, batch, replay ratio, target period, warm-up and env steps,
random actions during warm-up, ε 1.0 → 0.05 linearly over the first half of the env steps; evaluation off.
    plain:  CleanRL's dqn.py structure with a preallocated torch ring buffer (no TorchRL, no Lightning).
    lightq: ``lightq.algos.DQN`` under ``Trainer.fit`` with its defaults (``updates_per_iteration`` 16,
            synchronous collection: the same run, update for update, as one update per iteration).
    lightq-k1: the same with ``updates_per_iteration=1`` (Lightning's loop around every update).
    lightq-async: the defaults plus ``async_collection=True`` (env steps in a forked worker process).
    sb3:    ``stable_baselines3.DQN("MlpPolicy")``: SB3's Monitor + DummyVecEnv around the env, its numpy
            ReplayBuffer, ``train_freq`` = env steps per update, ``gradient_steps=1``, ``tau=1.0`` and
            ``target_update_interval`` = target period × env steps per update (SB3 counts it in env steps,
            from step 0, so it also copies the target during warm-up: a few extra copies of an 11k-parameter
            net), ``exploration_fraction=0.5``, ``verbose=0``, no tensorboard. Its update count is
            ``model._n_updates`` (equal to plain's: the first update comes after env step ``starts + ratio``).
Two settings:
    cleanrl: batch 128, one update per 10 env steps, target copy every 500 env steps (= 50 updates).
    ratio1:  batch 32, one update per env step, target copy every 500 updates.
Each setting runs ``--rounds`` rounds of every impl back to back and reports each side's median speed and,
per pair, the median over rounds of the ratio within a round (this machine's speed drifts by ±30% over
minutes; interleaving and pairing keep the comparison fair). Times
are whole runs: warm-up, every env step and every update (lightq: ``Trainer.fit``, its setup included,
which makes the env and the buffer; sb3: the ``DQN(...)`` construction, which makes the env, the buffer
and the networks, plus ``model.learn``).
Prints updates/s and env steps/s of each and, per setting, ``ratio lightq/plain: X.XX`` and
``ratio lightq/sb3: X.XX``; then the lowest ``ratio lightq/sb3`` of all settings, and last the lowest
``ratio lightq/plain``. Usage: ``python benchmarks/throughput_dqn.py [--quick] [--rounds N] [--settings ...] [--impls ...]``.
"""

from __future__ import annotations

import copy
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

import harness  # benchmarks/harness.py (pytorch_lightning imported up front: import time is not throughput)
from lightq.algos import DQN

try:  # benchmark-only requirement (benchmarks/requirements-sb3.txt); imported up front like the others
    import stable_baselines3 as sb3
except ImportError:
    sb3 = None

SETTINGS = {
    # name: (batch, env_steps_per_update, target_period_updates, learning_starts, total_env_steps)
    "cleanrl": dict(batch=128, ratio=10, target=50, starts=10_000, total=60_000, capacity=10_000),
    "ratio1": dict(batch=32, ratio=1, target=500, starts=1_000, total=11_000, capacity=10_000),
}


def plain_dqn(cfg: dict, seed: int = 0) -> tuple[float, int, int]:
    """CleanRL-structured DQN loop; returns (seconds, updates, env_steps)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=seed)
    q = torch.nn.Sequential(
        torch.nn.Linear(4, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(), torch.nn.Linear(84, 2)
    )
    target = copy.deepcopy(q)
    opt = torch.optim.Adam(q.parameters(), lr=2.5e-4, fused=True)
    cap = cfg["capacity"]
    b_obs = torch.zeros(cap, 4)
    b_next = torch.zeros(cap, 4)
    b_act = torch.zeros(cap, dtype=torch.long)
    b_rew = torch.zeros(cap)
    b_term = torch.zeros(cap, dtype=torch.bool)
    ptr = size = 0
    updates = 0
    gamma = 0.99
    t0 = time.perf_counter()
    for step in range(cfg["total"]):
        eps = max(0.05, 1.0 - step / (0.5 * cfg["total"]) * 0.95)
        if step < cfg["starts"] or rng.random() < eps:
            action = int(rng.integers(2))
        else:
            with torch.no_grad():
                action = int(q(torch.as_tensor(obs).unsqueeze(0)).argmax())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        b_obs[ptr] = torch.as_tensor(obs)
        b_next[ptr] = torch.as_tensor(next_obs)
        b_act[ptr] = action
        b_rew[ptr] = reward
        b_term[ptr] = terminated
        ptr = (ptr + 1) % cap
        size = min(size + 1, cap)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
        if step + 1 > cfg["starts"] and (step + 1 - cfg["starts"]) % cfg["ratio"] == 0:
            idx = torch.randint(size, (cfg["batch"],))
            with torch.no_grad():
                y = b_rew[idx] + gamma * (~b_term[idx]).float() * target(b_next[idx]).max(-1).values
            qa = q(b_obs[idx]).gather(1, b_act[idx].unsqueeze(1)).squeeze(1)
            loss = F.huber_loss(qa, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(q.parameters(), 10.0)
            opt.step()
            updates += 1
            if updates % cfg["target"] == 0:
                target.load_state_dict(q.state_dict())
    return time.perf_counter() - t0, updates, cfg["total"]


def lightq_dqn(cfg: dict, seed: int = 0, **options) -> tuple[float, int, int]:
    """lightq's DQN with its defaults (``updates_per_iteration`` 16, synchronous collection) unless ``options``."""
    model = DQN(
        env={"id": "CartPole-v1"},
        replay={"capacity": cfg["capacity"], "batch_size": cfg["batch"]},
        evaluation={"every_env_steps": None},
        exploration={"start": 1.0, "end": 0.05, "duration_env_steps": cfg["total"] // 2},
        seed=seed,
        total_env_steps=cfg["total"],
        learning_starts_env_steps=cfg["starts"],
        env_steps_per_update=cfg["ratio"],
        target_update_period_updates=cfg["target"],
        log_every_updates=1000,
        **options,
    )
    return harness.time_fit(model)


def lightq_k1(cfg: dict, seed: int = 0) -> tuple[float, int, int]:
    """One update per Lightning iteration (Lightning's loop around every update)."""
    return lightq_dqn(cfg, seed, updates_per_iteration=1)


def lightq_async(cfg: dict, seed: int = 0) -> tuple[float, int, int]:
    """The asynchronous collector (``async_collection``: env steps in a worker process)."""
    return lightq_dqn(cfg, seed, async_collection=True)


def sb3_dqn(cfg: dict, seed: int = 0) -> tuple[float, int, int]:
    """Stable-Baselines3's DQN on the plain loop's settings; the time includes the model's construction."""
    t0 = time.perf_counter()
    model = sb3.DQN(
        "MlpPolicy",
        "CartPole-v1",
        learning_rate=2.5e-4,
        buffer_size=cfg["capacity"],
        learning_starts=cfg["starts"],
        batch_size=cfg["batch"],
        tau=1.0,
        gamma=0.99,
        train_freq=cfg["ratio"],
        gradient_steps=1,
        target_update_interval=cfg["target"] * cfg["ratio"],  # env steps in SB3
        exploration_fraction=0.5,
        exploration_initial_eps=1.0,
        exploration_final_eps=0.05,
        max_grad_norm=10,
        policy_kwargs=dict(net_arch=[120, 84], optimizer_kwargs=dict(fused=True)),
        verbose=0,
        seed=seed,
        device="cpu",
    )
    model.learn(total_timesteps=cfg["total"])
    return time.perf_counter() - t0, model._n_updates, model.num_timesteps


def main() -> None:
    impls = {"plain": plain_dqn, "lightq": lightq_dqn, "lightq-k1": lightq_k1, "lightq-async": lightq_async}
    if sb3 is not None:
        impls["sb3"] = sb3_dqn
        notes = [f"stable-baselines3 {sb3.__version__}"]
    else:
        notes = [f"sb3 skipped: stable-baselines3 is not installed; {harness.SB3_INSTALL}"]
    harness.run(__doc__.splitlines()[0], SETTINGS, impls, quick_fraction=5, notes=notes)


if __name__ == "__main__":
    main()
