"""At the end of training, log the greedy policy as an MLflow PyTorch model (``evaluation.log_model``)."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_warn

__all__ = ["PolicyModelLogging"]


class PolicyModelLogging(pl.Callback):
    """Logs ``runs:/<run id>/policy`` (``lightq.tracking.models``) into every MLflow logger's run, on rank 0."""

    def on_train_end(self, trainer: pl.Trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        from lightq.tracking.models import log_policy_model

        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger.run_id is not None:
                try:
                    uri = log_policy_model(module, tracking_uri=logger._tracking_uri, run_id=logger.run_id)
                except Exception as exc:  # the run and its checkpoint are done: warn, don't fail the fit
                    rank_zero_warn(
                        f"Could not log the policy as an MLflow model ({type(exc).__name__}: {exc}). The checkpoint "
                        "is intact; retry with `lightq evaluate --ckpt_path <checkpoint> --log-model`, or set "
                        "evaluation.log_model: false."
                    )
                else:
                    module.policy_model_uri = uri
