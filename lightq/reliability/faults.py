"""Faults: an env that raises, and SIGINT/SIGTERM.

- An exception from an env's ``step``/``reset`` (or a dead ``AsyncVectorEnv`` worker) becomes an
  ``EnvFaultError`` naming the env, the call and the env step. No checkpoint is written from the
  broken state: the last regular checkpoint (and its replay data) is what a resume starts from.
- SIGTERM (schedulers' preemption signal; Lightning turns it into ``SIGTERMException`` at the next
  batch boundary) and SIGINT (Ctrl-C, ``KeyboardInterrupt``) write ``last.ckpt`` from the consistent
  state between two updates, then the process exits; ``lightq fit --ckpt_path last`` resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

__all__ = ["EnvFaultError", "GracefulShutdown"]

log = logging.getLogger(__name__)


class EnvFaultError(RuntimeError):
    """An environment raised (or its worker process died) during ``step`` or ``reset``."""

    def __init__(self, env_id: str, call: str, env_step: int, cause: BaseException) -> None:
        self.env_id, self.call, self.env_step = env_id, call, env_step
        super().__init__(
            f"Environment {env_id!r} failed during {call} at env step {env_step}: "
            f"{type(cause).__name__}: {cause}. Training stopped; no checkpoint was written from this state. "
            "The last checkpoint and its replay data are intact: fix the env, then resume with "
            "`lightq fit --config ... --ckpt_path last`."
        )


class GracefulShutdown(pl.Callback):
    """On SIGTERM or SIGINT: write ``last.ckpt`` (atomically, via the checkpoint callback's IO), then exit."""

    def on_exception(self, trainer: pl.Trainer, module, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            return
        cb = trainer.checkpoint_callback
        if cb is None or not getattr(cb, "dirpath", None):
            log.warning("%s received, but checkpointing is off: nothing saved.", type(exception).__name__)
            return
        path = Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
        trainer.save_checkpoint(str(path))
        cb.last_model_path = str(path)
        signal = "SIGTERM" if isinstance(exception, SIGTERMException) else "SIGINT"
        message = (f"{signal} received at env step {module.env_steps} (update {module.updates}): "
                   f"checkpoint written to {path}; resume with --ckpt_path last.")
        log.warning(message)
        print(message, flush=True)
