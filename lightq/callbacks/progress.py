"""A progress bar that shows the RL clocks instead of Lightning's batch index."""

from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar

__all__ = ["LightqProgressBar"]


class LightqProgressBar(TQDMProgressBar):
    """Adds env steps, updates and the last eval return to the bar (refreshed every 50 updates)."""

    def __init__(self, refresh_rate: int = 50) -> None:
        super().__init__(refresh_rate=refresh_rate)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Count updates, not Lightning iterations (updates_per_iteration > 1; resumed runs): the bar's
        # total is the run's number of updates (len of the replay dataloader).
        replay = getattr(pl_module, "replay", None)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, replay.served - 1 if replay else batch_idx)

    def _should_update(self, current: int, total) -> bool:
        # Every refresh_rate updates, also when an iteration of several updates steps over the multiple.
        last = getattr(self, "_last_refresh", 0)
        if current - last >= self.refresh_rate or current == total or current < last:
            self._last_refresh = current
            return self.is_enabled
        return False

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        items["env_steps"] = pl_module.env_steps
        items["updates"] = pl_module.updates
        if pl_module.last_eval_return is not None:
            items["eval_return"] = f"{pl_module.last_eval_return:.1f}"
        return items
