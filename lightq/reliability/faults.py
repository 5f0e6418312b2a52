"""Faults: an env that raises, and SIGINT/SIGTERM.

- An exception from an env's ``step``/``reset`` (or a dead ``AsyncVectorEnv`` worker) becomes an
  ``EnvFaultError`` naming the env, the call and the env step. No checkpoint is written from the
  broken state: the last regular checkpoint (and its replay data) is what a resume starts from.
- SIGTERM (schedulers' preemption signal; Lightning turns it into ``SIGTERMException`` at the next
  batch boundary) and the first SIGINT (Ctrl-C: lightq routes it the same way instead of raising
  ``KeyboardInterrupt`` wherever the program happens to be) write ``last.ckpt`` from the consistent state
  between two updates, then the process exits (143 for SIGTERM, 130 for SIGINT); ``lightq fit
  --ckpt_path last`` resumes. A second Ctrl-C stops at once, without a checkpoint (the state may be
  half-updated; ``last.ckpt`` stays the previous one).
"""

from __future__ import annotations

import logging
import signal
import threading
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
    """On SIGTERM or the first SIGINT: write ``last.ckpt`` at the next update boundary, then exit."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous_sigint = None

    def on_train_start(self, trainer: pl.Trainer, module) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread

        def on_sigint(signum, frame) -> None:
            if self.signal_name is not None:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.signal_name = "SIGINT"
            print("SIGINT: checkpointing at the next update boundary (Ctrl-C again to stop at once)", flush=True)
            trainer._signal_connector.received_sigterm = True  # Lightning's stop-at-the-boundary path

        self._previous_sigint = signal.signal(signal.SIGINT, on_sigint)

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_train_end(self, trainer: pl.Trainer, module) -> None:
        self._restore_sigint()
        # The end state is always in last.ckpt (for `lightq evaluate` and for extending a run), also when
        # the periodic schedule (every_n_train_steps, no end-of-epoch save) did not land on the last update.
        cb = trainer.checkpoint_callback
        if cb is not None and getattr(cb, "dirpath", None) and cb.save_last:
            if getattr(cb, "_last_global_step_saved", None) != trainer.global_step:
                path = Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
                trainer.save_checkpoint(str(path))
                cb.last_model_path = str(path)

    def on_exception(self, trainer: pl.Trainer, module, exception: BaseException) -> None:
        self._restore_sigint()
        if isinstance(exception, KeyboardInterrupt):
            print("Stopped at once (second Ctrl-C): no checkpoint written; last.ckpt is the previous one.",
                  flush=True)
            return
        if not isinstance(exception, SIGTERMException):
            return
        name = self.signal_name or "SIGTERM"
        exception.lightq_signal = name  # main() picks the exit status from it
        cb = trainer.checkpoint_callback
        if cb is None or not getattr(cb, "dirpath", None):
            log.warning("%s received, but checkpointing is off: nothing saved.", name)
            return
        path = Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
        trainer.save_checkpoint(str(path))
        cb.last_model_path = str(path)
        message = (f"{name} received at env step {module.env_steps} (update {module.updates}): "
                   f"checkpoint written to {path}; resume with --ckpt_path last.")
        log.warning(message)
        print(message, flush=True)
