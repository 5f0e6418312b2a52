"""``EnvInteractionCallback``: feeds the replay buffer between gradient updates.

Lightning fetches the batch *before* ``on_train_batch_start``, so env steps belong in
``on_train_batch_end`` (DESIGN.md §2): update u is followed by the env steps that bring the env-step
clock to ``learning_starts_env_steps + u * env_steps_per_update``, and the next batch is drawn after
them. ``on_train_start`` runs after a checkpoint restore, so the warm-up is skipped when the counters
show it done.
"""

from __future__ import annotations

import time

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

__all__ = ["EnvInteractionCallback"]


class EnvInteractionCallback(pl.Callback):
    """Warm-up, the replay ratio, and ``rollout/*`` + ``perf/*`` statistics."""

    def __init__(self) -> None:
        self._last = (0.0, 0, 0)  # (time, env_steps, updates) at the last perf log

    def on_train_start(self, trainer: pl.Trainer, module) -> None:
        start = module.hparams.learning_starts_env_steps
        collector = module.collector
        while collector.env_steps < start:
            collector.step(module.warmup_policy)
        if len(collector.buffer) + len(collector._staged) == 0 and start > 0:
            # Resumed from a checkpoint whose replay sidecar is missing (lightq.callbacks.checkpoint): refill
            # the buffer with a fresh warm-up of the current behaviour policy. These env steps are counted.
            rank_zero_warn(
                f"Resuming with an empty replay buffer: collecting {start} env steps with the current "
                "policy before the next update (the checkpoint's replay sidecar is missing: resume is not exact)."
            )
            goal = collector.env_steps + start
            while collector.env_steps < goal:
                collector.step(module.explore_policy)
        module.sync_env_steps()
        self._last = (time.perf_counter(), module.env_steps, module.updates)

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx: int) -> None:
        hp = module.hparams
        target = hp.learning_starts_env_steps + module.updates * hp.env_steps_per_update
        collector = module.collector
        if collector.env_steps < target:
            needed = int(np.ceil((target - collector.env_steps) / collector.num_envs))
            collector.step(module.explore_policy, needed)
            module.sync_env_steps()
        if module.updates % hp.log_every_updates == 0:
            self._log(module)

    def _log(self, module) -> None:
        metrics: dict[str, float] = {}
        episodes = module.collector.pop_finished_episodes()
        if episodes:
            returns = np.array([r for r, _ in episodes])
            lengths = np.array([n for _, n in episodes])
            metrics["rollout/episode_return"] = float(returns.mean())
            metrics["rollout/episode_length"] = float(lengths.mean())
            metrics["rollout/episodes"] = float(module.collector.episodes)
            module.last_rollout_return = metrics["rollout/episode_return"]
        metrics.update({f"rollout/{k}": v for k, v in module.exploration_metrics().items()})
        now = time.perf_counter()
        t, e, u = self._last
        if now > t:
            metrics["perf/updates_per_s"] = (module.updates - u) / (now - t)
            metrics["perf/env_steps_per_s"] = (module.env_steps - e) / (now - t)
        self._last = (now, module.env_steps, module.updates)
        metrics["perf/updates"] = float(module.updates)
        module.log_metrics(metrics)
