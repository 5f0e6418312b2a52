"""A progress bar that shows the RL clocks instead of Lightning's batch index."""

from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar

__all__ = ["LightqProgressBar"]


class LightqProgressBar(TQDMProgressBar):
    """Adds env steps, updates and the last eval return to the bar (refreshed every 50 updates)."""

    def __init__(self, refresh_rate: int = 50) -> None:
        super().__init__(refresh_rate=refresh_rate)

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        items["env_steps"] = pl_module.env_steps
        items["updates"] = pl_module.updates
        if pl_module.last_eval_return is not None:
            items["eval_return"] = f"{pl_module.last_eval_return:.1f}"
        return items
