"""DDPG throughput: lightq vs a plain-PyTorch DDPG loop and vs Stable-Baselines3's DDPG, same work, one process run.

SB3 is a benchmark-only requirement, not a lightq dependency; install it with
``pip install -c constraints.txt -r benchmarks/requirements-sb3.txt`` (the constraints keep torch the CPU
build). Without it the script runs plain and lightq only and prints one line saying so.

All sides: Pendulum-v1 (one env), actor and critic MLPs of the same widths (ReLU; tanh-squashed actor),
Adam lr 1e-3 for both, MSE critic loss, γ 0.99, batch, buffer holding the whole run, uniform random actions
during warm-up, one update per env step (critic step, actor step, Polyak τ 0.005 on both targets),
Gaussian exploration noise σ 0.1 × max action, the same warm-up and env steps; evaluation off.
    plain:  follows CleanRL's ddpg_continuous_action.py with a preallocated torch ring buffer.
    lightq: ``lightq.algos.DDPG`` under ``Trainer.fit`` (defaults: ``updates_per_iteration`` 16, synchronous).
    lightq-async: the same with ``async_collection=True`` (env steps in a forked worker process).
    sb3:    ``stable_baselines3.DDPG("MlpPolicy")`` (SB3's TD3 with one critic, ``policy_delay=1`` and the
            target-action noise clipped to 0): SB3's Monitor + DummyVecEnv around the env, its numpy
            ReplayBuffer, ``NormalActionNoise(0, 0.1)`` added in SB3's [-1, 1]-scaled action space (= σ 0.1 ×
            max action; SB3 adds it to the warm-up's random actions too), ``train_freq=1``,
            ``gradient_steps=1``, ``verbose=0``, no tensorboard; updates counted by ``model._n_updates``.
Settings (the setting named ``sb3`` uses SB3's default sizes; every setting runs all three impls):
    shipped: 64-64 nets, batch 128 (configs/ddpg/pendulum.yaml)
    sb3:     400-300 nets, batch 256 (SB3's DDPG defaults on Pendulum)
Rounds of every impl back to back; medians, and per pair the median of the within-round ratios. Times are whole runs (lightq: ``Trainer.fit``,
its setup included; sb3: the ``DDPG(...)`` construction, which makes the env, the buffer and the networks,
plus ``model.learn``). Per setting ``ratio lightq/plain: X.XX`` and ``ratio lightq/sb3: X.XX``; then the
lowest ``ratio lightq/sb3`` and last the lowest ``ratio lightq/plain``.
Usage: ``python benchmarks/throughput_continuous.py [--quick] [--rounds N] [--settings ...] [--impls ...]``.
"""

from __future__ import annotations

import copy
import time

import gymnasium as gym
import numpy as np
import torch

import harness  # benchmarks/harness.py (pytorch_lightning imported up front: import time is not throughput)

from lightq.algos import DDPG

try:  # benchmark-only requirement (benchmarks/requirements-sb3.txt); imported up front like the others
    import stable_baselines3 as sb3
    from stable_baselines3.common.noise import NormalActionNoise
except ImportError:
    sb3 = None

SETTINGS = {
    "shipped": dict(hidden=[64, 64], batch=128, starts=1_000, total=6_000),
    "sb3": dict(hidden=[400, 300], batch=256, starts=1_000, total=3_000),
}


def mlp(inp, hidden, out):
    layers, last = [], inp
    for h in hidden:
        layers += [torch.nn.Linear(last, h), torch.nn.ReLU()]
        last = h
    return torch.nn.Sequential(*layers, torch.nn.Linear(last, out))


def plain_ddpg(cfg: dict, seed: int = 0) -> tuple[float, int, int]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=seed)
    low, high = env.action_space.low, env.action_space.high
    actor_net, critic = mlp(3, cfg["hidden"], 1), mlp(4, cfg["hidden"], 1)
    actor = lambda o: 2.0 * torch.tanh(actor_net(o))  # noqa: E731
    actor_t, critic_t = copy.deepcopy(actor_net), copy.deepcopy(critic)
    a_opt = torch.optim.Adam(actor_net.parameters(), lr=1e-3)
    c_opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    cap = cfg["total"]
    b_obs, b_next = torch.zeros(cap, 3), torch.zeros(cap, 3)
    b_act, b_rew, b_term = torch.zeros(cap, 1), torch.zeros(cap), torch.zeros(cap, dtype=torch.bool)
    size = updates = 0
    t0 = time.perf_counter()
    for step in range(cfg["total"]):
        if step < cfg["starts"]:
            action = rng.uniform(low, high).astype(np.float32)
        else:
            with torch.no_grad():
                action = actor(torch.as_tensor(obs).unsqueeze(0))[0].numpy()
            action = np.clip(action + 0.1 * 2.0 * rng.standard_normal(1), low, high).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        b_obs[size], b_next[size] = torch.as_tensor(obs), torch.as_tensor(next_obs)
        b_act[size], b_rew[size], b_term[size] = torch.as_tensor(action), reward, terminated
        size += 1
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
        if step + 1 > cfg["starts"]:
            idx = torch.randint(size, (cfg["batch"],))
            o, a, r, n, d = b_obs[idx], b_act[idx], b_rew[idx], b_next[idx], b_term[idx]
            with torch.no_grad():
                y = r + 0.99 * (~d).float() * critic_t(torch.cat([n, 2.0 * torch.tanh(actor_t(n))], 1)).squeeze(1)
            q = critic(torch.cat([o, a], 1)).squeeze(1)
            c_loss = (q - y).pow(2).mean()
            c_opt.zero_grad(set_to_none=True)
            c_loss.backward()
            c_opt.step()
            a_loss = -critic(torch.cat([o, actor(o)], 1)).mean()
            a_opt.zero_grad(set_to_none=True)
            a_loss.backward()
            a_opt.step()
            with torch.no_grad():
                for tgt, src in ((actor_t, actor_net), (critic_t, critic)):
                    torch._foreach_lerp_(list(tgt.parameters()), list(src.parameters()), 0.005)
            updates += 1
    return time.perf_counter() - t0, updates, cfg["total"]


def lightq_ddpg(cfg: dict, seed: int = 0, **options) -> tuple[float, int, int]:
    """lightq's DDPG with its defaults (``updates_per_iteration`` 16, synchronous collection) unless ``options``."""
    model = DDPG(
        env={"id": "Pendulum-v1"},
        replay={"capacity": cfg["total"], "batch_size": cfg["batch"]},
        evaluation={"every_env_steps": None},
        hidden=cfg["hidden"], noise={"sigma": 0.1}, seed=seed,
        total_env_steps=cfg["total"], learning_starts_env_steps=cfg["starts"], log_every_updates=1000,
        **options,
    )
    return harness.time_fit(model)


def lightq_async(cfg: dict, seed: int = 0) -> tuple[float, int, int]:
    """The asynchronous collector (``async_collection``: env steps in a worker process)."""
    return lightq_ddpg(cfg, seed, async_collection=True)


def sb3_ddpg(cfg: dict, seed: int = 0) -> tuple[float, int, int]:
    """Stable-Baselines3's DDPG on the plain loop's settings; the time includes the model's construction."""
    t0 = time.perf_counter()
    model = sb3.DDPG(
        "MlpPolicy",
        "Pendulum-v1",
        learning_rate=1e-3,
        buffer_size=cfg["total"],
        learning_starts=cfg["starts"],
        batch_size=cfg["batch"],
        tau=0.005,
        gamma=0.99,
        train_freq=1,
        gradient_steps=1,
        # SB3 adds the noise to the action scaled to [-1, 1]: σ 0.1 there is the plain loop's 0.1 × max action.
        action_noise=NormalActionNoise(mean=np.zeros(1), sigma=0.1 * np.ones(1)),
        policy_kwargs=dict(net_arch=list(cfg["hidden"])),
        verbose=0,
        seed=seed,
        device="cpu",
    )
    model.learn(total_timesteps=cfg["total"])
    return time.perf_counter() - t0, model._n_updates, model.num_timesteps


def main() -> None:
    impls = {"plain": plain_ddpg, "lightq": lightq_ddpg, "lightq-async": lightq_async}
    if sb3 is not None:
        impls["sb3"] = sb3_ddpg
        notes = [f"stable-baselines3 {sb3.__version__}"]
    else:
        notes = [f"sb3 skipped: stable-baselines3 is not installed; {harness.SB3_INSTALL}"]
    harness.run(__doc__.splitlines()[0], SETTINGS, impls, quick_fraction=3, notes=notes)


if __name__ == "__main__":
    main()
