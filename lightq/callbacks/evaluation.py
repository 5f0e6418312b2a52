"""Evaluation on a separate env: N complete episodes at a declared ε, every K env steps.

The eval env is a single gymnasium env (not the training vector env), reset with the same seeds at
every evaluation (``lightq.seeding.eval_episode_seeds``), so successive evaluations differ only by
the policy. Metrics ``eval/return_mean``, ``eval/return_std``, ``eval/length_mean`` are logged against
env steps.

Overestimation probe (van Hasselt et al. 2016, "Deep RL with Double Q-learning", Fig. 3): with
``EvalConfig.value_probe`` on, ``ValueProbe`` records for every visited eval state the algorithm's value
estimate (DQN: ``max_a Q(s, a)`` of the online net; continuous: Q(s, a) at the eval action) and the
discounted Monte-Carlo return from that state, ``G_t = r_t + γ G_{t+1}``, computed backwards per episode;
their means over visited states are logged as ``eval/q_estimate`` and ``eval/mc_return``. Caveat: at a
time-limit truncation (CartPole-v1 stops at 500 steps) the episode's return is cut off, so ``mc_return``
is a lower bound of the true value for states within ~1/(1 − γ) steps of the cap, while Q bootstraps
through the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch

__all__ = ["EvalConfig", "Evaluation", "ValueProbe", "evaluate_policy"]


@dataclass
class EvalConfig:
    """Evaluation protocol.

    Attributes:
        every_env_steps: Evaluate each time the env-step clock crosses a multiple of this; 0 = only once
            at the end of training; ``None`` = never (benchmarks).
        episodes: Complete episodes per evaluation.
        epsilon: ε of the ε-greedy eval policy (discrete actions); 0 = greedy.
        seed_offset: Episode i of every evaluation is reset with member ``seed_offset + i`` of the run's
            ``eval_episode`` seed stream (``lightq.seeding.eval_episode_seeds``): the same episodes at every
            evaluation, and none shared with another run's.
        video_every_env_steps: Record one eval episode (the first eval episode's seed) as WebM each time the
            env-step clock crosses a multiple of this, logged under ``videos/`` in the MLflow run;
            ``None`` = never (the default: rendering costs more than the episode).
        log_model: At the end of training, log the greedy policy as an MLflow PyTorch model under
            ``policy/`` in the run (``lightq.tracking.models``).
        value_probe: Log ``eval/q_estimate`` beside ``eval/mc_return`` (one extra forward pass per eval step).
    """

    every_env_steps: int | None = 5_000
    episodes: int = 10
    epsilon: float = 0.0
    seed_offset: int = 0
    video_every_env_steps: int | None = None
    log_model: bool = True
    value_probe: bool = True

    def __post_init__(self) -> None:
        if (self.every_env_steps is not None and self.every_env_steps < 0) or self.episodes < 1:
            raise ValueError(
                f"evaluation.every_env_steps={self.every_env_steps} must be >= 0 and "
                f"evaluation.episodes={self.episodes} must be >= 1."
            )
        if self.video_every_env_steps is not None and self.video_every_env_steps < 1:
            raise ValueError(
                f"evaluation.video_every_env_steps={self.video_every_env_steps} must be >= 1 (or null = no videos)."
            )
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"evaluation.epsilon={self.epsilon} must be in [0, 1].")
        if self.seed_offset < 0:  # an index into the run's eval-episode seed stream (lightq.seeding)
            raise ValueError(f"evaluation.seed_offset={self.seed_offset} must be >= 0 (0 = the run's first eval episode).")


class ValueProbe:
    """Value estimate vs discounted Monte-Carlo return over the states an evaluation visits.

    Args:
        value_fn: (obs [1, *obs], action [1, *act]) -> estimate [1] (e.g. ``max_a Q(s, a)``).
        gamma: Discount per env step of the MC return (the algorithm's γ).
    """

    def __init__(self, value_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], gamma: float) -> None:
        self.value_fn, self.gamma = value_fn, gamma
        self.estimates: list[float] = []
        self.mc_returns: list[float] = []
        self._rewards: list[float] = []

    def step(self, obs: torch.Tensor, action: torch.Tensor, reward: float) -> None:
        self.estimates.append(float(self.value_fn(obs, action).reshape(-1)[0]))
        self._rewards.append(float(reward))

    def end_episode(self) -> None:
        g, tail = 0.0, []
        for r in reversed(self._rewards):  # G_t = r_t + γ G_{t+1}; G after the last step = 0 (see module doc)
            g = r + self.gamma * g
            tail.append(g)
        self.mc_returns.extend(reversed(tail))
        self._rewards = []

    def totals(self) -> np.ndarray:
        """[Σ estimates, Σ MC returns, visited states]: what DDP ranks add up before taking means."""
        return np.array([np.sum(self.estimates), np.sum(self.mc_returns), len(self.estimates)], dtype=np.float64)

    @staticmethod
    def metrics_from(totals: np.ndarray) -> dict[str, float]:
        q, g = float(totals[0] / totals[2]), float(totals[1] / totals[2])
        return {"eval/q_estimate": q, "eval/mc_return": g, "eval/q_overestimation": q - g}

    def metrics(self) -> dict[str, float]:
        """``eval/q_estimate``, ``eval/mc_return`` (means over visited states) and their difference."""
        return self.metrics_from(self.totals())


@torch.no_grad()
def evaluate_policy(
    env, policy: Callable[[torch.Tensor], torch.Tensor], *, seeds: list[int], device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
    probe: ValueProbe | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run one complete episode per seed; return (returns, lengths).

    Args:
        env: A single (non-vector) gymnasium env.
        policy: obs batch [1, *obs] -> actions [1, *act].
        seeds: One reset seed per episode.
        device: Where the policy runs.
        on_step: Called with the episode index after the reset and after every step, e.g. to render
            a video frame (``lightq.callbacks.video``): an episode of length T gives T + 1 calls.
        probe: Records value estimates and MC returns of the visited states (``None`` = off).
    """
    returns, lengths = [], []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total, steps, done = 0.0, 0, False
        if on_step is not None:
            on_step(len(returns))
        while not done:
            obs_t = torch.as_tensor(obs, device=device).unsqueeze(0)
            action_t = policy(obs_t)
            action = action_t[0].cpu().numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            if probe is not None:
                probe.step(obs_t, action_t, float(reward))
            total += float(reward)
            steps += 1
            done = terminated or truncated
            if on_step is not None:
                on_step(len(returns))
        if probe is not None:
            probe.end_episode()
        returns.append(total)
        lengths.append(steps)
    return np.asarray(returns), np.asarray(lengths)


class Evaluation(pl.Callback):
    """Evaluates ``module.eval_policy`` on ``module.eval_env`` every ``every_env_steps`` and at the end."""

    def __init__(self) -> None:
        self._next = None

    def on_train_start(self, trainer: pl.Trainer, module) -> None:
        every = module.evaluation.every_env_steps
        self._next = (module.env_steps // every + 1) * every if every else None
        self._final = every is not None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self._next is not None and module.env_steps >= self._next:
            every = module.evaluation.every_env_steps
            self._next = (module.env_steps // every + 1) * every
            module.run_evaluation()

    def on_train_end(self, trainer, module) -> None:
        if self._final and module.last_eval_env_steps != module.env_steps:
            module.run_evaluation()
