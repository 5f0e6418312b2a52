"""``EnvInteractionCallback``: feeds the replay buffer between gradient updates.

Lightning fetches the batch *before* ``on_train_batch_start``, so env steps belong in
``on_train_batch_end``: update u is followed by the env steps that bring the env-step
clock to ``learning_starts_env_steps + u * env_steps_per_update``, and the next batch is drawn after
them. ``on_train_start`` runs after a checkpoint restore, so the warm-up is skipped when the counters
show it done.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

from lightq.distributed import check_lockstep, sum_over_ranks

__all__ = ["EnvInteractionCallback"]


class EnvInteractionCallback(pl.Callback):
    """Warm-up, the replay ratio, and ``rollout/*`` + ``perf/*`` statistics."""

    def __init__(self) -> None:
        self._last = (0.0, 0, 0)  # (time, env_steps, updates) at the last perf log
        self._schedule = (0, 1.0, 1)  # (learning_starts_env_steps, global env steps per update, log period)

    def on_train_start(self, trainer: pl.Trainer, module) -> None:
        start = module.hparams.learning_starts_env_steps
        self._schedule = (start, module.global_env_steps_per_update, module.hparams.log_every_updates)
        collector = module.collector
        check_lockstep(module, collector.env_steps, module.updates)
        fresh = module.updates == 0 and collector.env_steps == 0
        # The first update needs a stored transition on every rank: with n-step returns one is stored after
        # n_step vector steps (or an episode end). A warm-up shorter than that (learning_starts_env_steps: 0,
        # as RL Baselines3 Zoo's Acrobot and LunarLander settings) is raised to it; later updates catch up
        # with the env-step clock, so the run's env steps and updates stay as configured.
        fewest = module.hparams.n_step * collector.num_envs * module._world
        module.collect_until(max(start, fewest) if fresh else start, module.warmup_policy)  # global clock
        if fresh:
            stored = len(collector.buffer) + sum(len(chunk["reward"]) for chunk in collector._staged)
            batch = module.replay.config.batch_size
            if batch > stored:
                rank_zero_warn(
                    f"replay.batch_size={batch} is larger than the {stored} transitions stored per rank after the "
                    f"warm-up (learning_starts_env_steps={start}, n_step={module.hparams.n_step}): the first "
                    "batches repeat transitions (sampled with replacement, as Stable-Baselines3 does). Raise "
                    "learning_starts_env_steps to avoid it."
                )
        if len(collector.buffer) + len(collector._staged) == 0 and start > 0:
            # Resumed from a checkpoint whose replay sidecar is missing (lightq.callbacks.checkpoint): refill
            # the buffer with a fresh warm-up of the current behaviour policy. These env steps are counted.
            rank_zero_warn(
                f"Resuming with an empty replay buffer: collecting {start} env steps with the current "
                "policy before the next update (the checkpoint's replay sidecar is missing: resume is not exact)."
            )
            module.collect_until(module.env_steps + start, module.explore_policy)
        module.sync_env_steps()
        self._last = (time.perf_counter(), module.env_steps, module.updates)

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx: int) -> None:
        start, per_update, log_every = self._schedule  # runs after every update: hparams read once per fit
        # Global clocks: under DDP each rank collects its 1/N share of the env steps (lockstep).
        target = start + module.updates * per_update
        if module.env_steps < target:
            module.collect_until(target, module.explore_policy)
        if module.updates % log_every == 0:
            self._log(module)

    def on_train_end(self, trainer: pl.Trainer, module) -> None:
        module.sync_env_steps()  # with async_collection: joins the last chunk (evaluation runs next)
        check_lockstep(module, module.collector.env_steps, module.updates)

    def _log(self, module) -> None:
        metrics: dict[str, float] = {}
        episodes = module.collector.pop_finished_episodes()
        # Sums over ranks (one small all-reduce per log under DDP; no communication with one process).
        count, ret_sum, len_sum, total = sum_over_ranks(module, [
            len(episodes), sum(r for r, _ in episodes), sum(n for _, n in episodes), module.collector.episodes])
        if count:
            metrics["rollout/episode_return"] = ret_sum / count
            metrics["rollout/episode_length"] = len_sum / count
            metrics["rollout/episodes"] = float(total)
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
