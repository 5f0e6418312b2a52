"""Divergence watchdog: stop (or warn) when training produces non-finite or exploding numbers.

What is watched, and where:
  - env data (reward, observation) — in the ``Collector``, on every vector step, before it is stored;
  - loss (per optimizer), Q-values of the batch, gradient norm and parameters — after each update
    (every ``check_every_updates``), from references the module keeps in ``module.watched``.

On a detection the report names the tensor, the env step and the update, the offending data (the
replay batch, or the env step's transition) is saved as a dict of tensors (``torch.save``; load with
``weights_only=True``), and — with ``on_divergence="stop"`` — a checkpoint of the current state is
written as ``diverged.ckpt`` beside the regular ones (never over ``last.ckpt``, which stays the last
good state), the error is raised, and Lightning's exception path marks the MLflow run FAILED. With
``"warn"`` the run goes on; a warning is printed and ``watchdog/divergences`` is logged.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

__all__ = ["DivergenceError", "Watchdog", "WatchdogConfig"]

log = logging.getLogger(__name__)

_ON = ("stop", "warn")


@dataclass
class WatchdogConfig:
    """Divergence checks.

    Args:
        enabled: Turn the watchdog off entirely (not recommended).
        on_divergence: ``stop`` (checkpoint to ``diverged.ckpt``, mark the MLflow run failed, raise)
            or ``warn`` (log and go on).
        check_every_updates: Period of the update-side checks (loss, Q, gradients, parameters). Each
            check costs one device sync; 1 checks every update (~25 µs on CPU here).
        max_abs_loss: A finite loss above this counts as exploding.
        max_abs_q: A finite Q-value above this (in absolute value) counts as exploding.
        max_grad_norm: A total gradient norm above this counts as exploding (checked when the
            algorithm clips gradients, i.e. its ``max_grad_norm`` is set: clipping measures the norm).
        check_env: Check rewards and float observations from the env on every step.
    """

    enabled: bool = True
    on_divergence: str = "stop"
    check_every_updates: int = 1
    max_abs_loss: float = 1e10
    max_abs_q: float = 1e8
    max_grad_norm: float = 1e10
    check_env: bool = True

    def __post_init__(self) -> None:
        if self.on_divergence not in _ON:
            raise ValueError(f"watchdog.on_divergence={self.on_divergence!r} must be one of {_ON}.")
        if self.check_every_updates < 1:
            raise ValueError(f"watchdog.check_every_updates={self.check_every_updates} must be >= 1.")
        for name in ("max_abs_loss", "max_abs_q", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"watchdog.{name}={getattr(self, name)} must be > 0.")


class DivergenceError(RuntimeError):
    """A non-finite or exploding tensor; the message names it, the env step and the update."""

    def __init__(self, tensor: str, problem: str, *, env_step: int, update: int, payload: dict | None = None):
        self.tensor, self.problem, self.env_step, self.update = tensor, problem, env_step, update
        self.payload = payload or {}
        self.saved: list[str] = []
        super().__init__(self._message())

    def _message(self) -> str:
        text = (
            f"Divergence: {self.tensor} is {self.problem} at env step {self.env_step} (update {self.update})."
        )
        if self.saved:
            text += " Saved: " + "; ".join(self.saved) + "."
        if self.tensor in ("reward", "observation"):
            text += " The environment produced it: check the env (or a wrapper) for this step."
        else:
            text += (
                " Usual fixes: lower the learning rate, clip gradients (max_grad_norm), use the Huber loss,"
                " a target network (tau/target_update_period_updates), or scale the rewards."
            )
        return text

    def add_saved(self, what: str) -> None:
        self.saved.append(what)
        self.args = (self._message(),)


def describe(x: torch.Tensor | np.ndarray, limit: float) -> str | None:
    """``None`` when every value is finite and |x| <= limit, else a short description of the problem."""
    t = torch.as_tensor(x)
    if not t.is_floating_point():
        return None
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = t[~finite]
        kinds = sorted({("nan" if math.isnan(v) else ("+inf" if v > 0 else "-inf")) for v in bad.tolist()[:64]})
        return f"non-finite ({'/'.join(kinds)} in {int((~finite).sum())} of {t.numel()} values)"
    peak = float(t.abs().max()) if t.numel() else 0.0
    if peak > limit:
        return f"exploding (max |value| {peak:.3g} > limit {limit:.3g})"
    return None


def check_env_step(reward: np.ndarray, obs: np.ndarray, *, env_step: int, update: int, transition: dict) -> None:
    """Raise ``DivergenceError`` for a non-finite reward or float observation of one vector step."""
    if not np.isfinite(reward).all():
        raise DivergenceError("reward", describe(reward, math.inf), env_step=env_step, update=update,
                              payload=transition)
    if obs.dtype.kind == "f" and not np.isfinite(obs).all():
        raise DivergenceError("observation", describe(obs, math.inf), env_step=env_step, update=update,
                              payload=transition)


def _as_tensors(payload: dict) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in payload.items():
        if value is None:
            continue
        if isinstance(value, np.ndarray) or np.isscalar(value):
            value = torch.as_tensor(np.asarray(value))
        if isinstance(value, torch.Tensor):
            out[key] = value.detach().cpu()
    return out


class Watchdog(pl.Callback):
    """Runs the update-side checks and handles every ``DivergenceError`` (see the module docstring)."""

    def __init__(self, config: WatchdogConfig) -> None:
        self.config = config
        self.divergences = 0
        self._limits: dict[str, float] = {}  # per watched name (``_limit``), made once

    def on_fit_start(self, trainer, module) -> None:
        if self.config.check_env and module.collector is not None:
            def check(reward, obs, transition, env_step):
                try:
                    check_env_step(reward, obs, env_step=env_step, update=module.updates, transition=transition)
                except DivergenceError as error:
                    self.handle_env_divergence(trainer, module, error)

            module.collector.check_data = check

    # -- update-side checks -------------------------------------------------------------------------
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        cfg = self.config
        if module.updates % cfg.check_every_updates != 0:
            return
        problem = self.check_update(module)
        if problem is None:
            return
        tensor, what = problem
        evidence = getattr(module, "last_batch", None)  # with updates_per_iteration > 1, not Lightning's batch
        evidence = batch if evidence is None else evidence
        payload = evidence._asdict() if hasattr(evidence, "_asdict") else {}
        error = DivergenceError(tensor, what, env_step=module.env_steps, update=module.updates, payload=payload)
        if cfg.on_divergence == "stop":
            raise error
        self._warn(trainer, module, error)

    def check_update(self, module) -> tuple[str, str] | None:
        """(tensor name, problem) for the first watched tensor that is non-finite or exploding.

        The peak |value| of each watched tensor against its limit (~8 µs for the three tensors of a DQN
        update on CPU here; one sync per tensor on a GPU, so raise ``check_every_updates`` there); only a
        failure pays for the per-tensor description. (Stacking the peaks for a single sync was measured
        4× slower on CPU.) The gradient norm is the one the clipping step
        measured (``max_grad_norm`` set); without clipping, gradients are not inspected (a bad gradient
        shows up in the next update's loss and Q-values).
        """
        limits = self._limits
        for name, value in module.watched.items():
            if value.numel() == 1:
                peak = abs(value.item())
            elif value.is_floating_point():  # one kernel for both ends; NaN propagates into both
                low, high = torch.aminmax(value)
                peak = max(-low.item(), high.item())
            else:
                continue
            limit = limits.get(name)
            if limit is None:
                limit = limits[name] = self._limit(name)
            if not peak <= limit:  # also true for NaN
                return name, describe(value.detach().float(), limit)
        return None

    def _limit(self, name: str) -> float:
        cfg = self.config
        if name.startswith("q_values"):
            return cfg.max_abs_q
        if name.startswith("gradient norm"):
            return cfg.max_grad_norm
        return cfg.max_abs_loss

    # -- reporting ----------------------------------------------------------------------------------
    def on_exception(self, trainer, module, exception: BaseException) -> None:
        if isinstance(exception, DivergenceError) and not exception.saved:
            self._save_evidence(trainer, module, exception, checkpoint=True)
            log.error(str(exception))

    def handle_env_divergence(self, trainer, module, error: DivergenceError) -> None:
        """Called by the interaction callback for env-side detections."""
        if self.config.on_divergence == "stop":
            raise error
        self._warn(trainer, module, error)

    def _warn(self, trainer, module, error: DivergenceError) -> None:
        self.divergences += 1
        if self.divergences <= 3:  # the first few in full, then only the counter
            self._save_evidence(trainer, module, error, checkpoint=False)
            rank_zero_warn(f"{error} Going on (watchdog.on_divergence='warn').")
        module.log_metrics({"watchdog/divergences": float(self.divergences)})

    def _save_evidence(self, trainer, module, error: DivergenceError, *, checkpoint: bool) -> None:
        folder = _evidence_dir(trainer).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        rank = trainer.global_rank if trainer is not None else 0
        path = folder / f"divergence-update{error.update}-rank{rank}.pt"
        torch.save(
            {"tensor": error.tensor, "problem": error.problem, "env_step": error.env_step, "update": error.update,
             "data": _as_tensors(error.payload)},
            path,
        )
        error.add_saved(f"offending {'transition' if error.tensor in ('reward', 'observation') else 'batch'} "
                        f"in {path}")
        if checkpoint and trainer is not None:
            ckpt = folder / "diverged.ckpt"
            try:
                trainer.save_checkpoint(str(ckpt))
                error.add_saved(f"state at detection in {ckpt} (last.ckpt is the last good checkpoint)")
            except Exception as exc:  # the report matters more than this checkpoint
                error.add_saved(f"no checkpoint ({type(exc).__name__}: {exc})")
        try:
            for logger in trainer.loggers if trainer is not None else []:
                if hasattr(logger, "experiment") and hasattr(logger, "run_id"):
                    logger.experiment.set_tag(logger.run_id, "lightq.divergence", str(error)[:4000])
        except Exception:  # tracking trouble must not hide the divergence report
            pass


def _evidence_dir(trainer) -> Path:
    """The checkpoint folder when there is one (the evidence sits beside the checkpoints)."""
    cb = getattr(trainer, "checkpoint_callback", None) if trainer is not None else None
    if cb is not None and getattr(cb, "dirpath", None):
        return Path(cb.dirpath)
    root = getattr(trainer, "default_root_dir", None) if trainer is not None else None
    return Path(root or ".") / "divergence"

