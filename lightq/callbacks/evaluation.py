"""Evaluation on a separate env: N complete episodes at a declared ε, every K env steps.

The eval env is a single gymnasium env (not the training vector env), reset with the same seeds at
every evaluation (``seed + seed_offset + i`` for episode i), so successive evaluations differ only by
the policy. Metrics ``eval/return_mean``, ``eval/return_std``, ``eval/length_mean`` are logged against
env steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch

__all__ = ["EvalConfig", "Evaluation", "evaluate_policy"]


@dataclass
class EvalConfig:
    """Evaluation protocol.

    Attributes:
        every_env_steps: Evaluate each time the env-step clock crosses a multiple of this; 0 = only once
            at the end of training; ``None`` = never (benchmarks).
        episodes: Complete episodes per evaluation.
        epsilon: ε of the ε-greedy eval policy (discrete actions); 0 = greedy.
        seed_offset: Episode i of every evaluation is reset with ``seed + seed_offset + i``.
        video_every_env_steps: Record one eval episode (seed ``seed + seed_offset``) as MP4 each time the
            env-step clock crosses a multiple of this, logged under ``videos/`` in the MLflow run;
            ``None`` = never (the default: rendering costs more than the episode).
        log_model: At the end of training, log the greedy policy as an MLflow PyTorch model under
            ``policy/`` in the run (``lightq.tracking.models``).
    """

    every_env_steps: int | None = 5_000
    episodes: int = 10
    epsilon: float = 0.0
    seed_offset: int = 1_000_000
    video_every_env_steps: int | None = None
    log_model: bool = True

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


@torch.no_grad()
def evaluate_policy(
    env, policy: Callable[[torch.Tensor], torch.Tensor], *, seeds: list[int], device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run one complete episode per seed; return (returns, lengths).

    Args:
        env: A single (non-vector) gymnasium env.
        policy: obs batch [1, *obs] -> actions [1, *act].
        seeds: One reset seed per episode.
        device: Where the policy runs.
        on_step: Called with the episode index after the reset and after every step, e.g. to render
            a video frame (``lightq.callbacks.video``): an episode of length T gives T + 1 calls.
    """
    returns, lengths = [], []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total, steps, done = 0.0, 0, False
        if on_step is not None:
            on_step(len(returns))
        while not done:
            action = policy(torch.as_tensor(obs, device=device).unsqueeze(0))[0].cpu().numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            steps += 1
            done = terminated or truncated
            if on_step is not None:
                on_step(len(returns))
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
