"""MLflow helpers.

MLflow 3.7+ defaults to ``sqlite:///mlflow.db`` but Lightning's ``MLFlowLogger`` still defaults to
``file:./mlruns``; lightq's logger uses ``$MLFLOW_TRACKING_URI`` when set and ``sqlite:///mlflow.db``
(in the working directory) otherwise, so ``mlflow ui`` in the same folder shows the runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pytorch_lightning.loggers import MLFlowLogger

__all__ = [
    "DEFAULT_TRACKING_URI",
    "LightqMLFlowLogger",
    "absolute_sqlite_uri",
    "continue_run_from_checkpoint",
    "git_sha",
    "mlflow_run_record",
    "tag_run",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


class LightqMLFlowLogger(MLFlowLogger):
    """``MLFlowLogger`` with lightq's defaults (tracking URI, experiment name).

    Args:
        experiment_name: MLflow experiment.
        run_name: Run name; lightq sets ``<algorithm>-<env>-seed<seed>`` when ``None``.
        tracking_uri: ``None`` = ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
        tags: Extra run tags.
        run_id: Resume logging into this existing run.
        artifact_location: Artifact root for a newly created experiment.
    """

    def __init__(
        self,
        experiment_name: str = "lightq",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, str] | None = None,
        run_id: str | None = None,
        artifact_location: str | None = None,
    ) -> None:
        uri = absolute_sqlite_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=uri,
            tags=tags,
            run_id=run_id,
            artifact_location=artifact_location,
            log_model=False,
        )

    def log_hyperparams(self, params) -> None:
        """Log params; on a resumed run, keep the ones already there (MLflow params are write-once).

        A param whose value changed on resume (e.g. a longer ``total_env_steps``) keeps its first value
        and is listed in a warning; the full resolved config of every invocation is in ``config.yaml``.
        """
        if self._run_id is None or not self._resumed:
            return super().log_hyperparams(params)
        from lightning_fabric.utilities.logger import _convert_params, _flatten_dict
        from pytorch_lightning.utilities import rank_zero_warn

        flat = _flatten_dict(_convert_params(params))
        logged = self.experiment.get_run(self.run_id).data.params
        changed = sorted(k for k, v in flat.items() if k in logged and logged[k] != str(v)[:250])
        if changed:
            rank_zero_warn(f"Resumed MLflow run {self.run_id} keeps its first values of params {changed}.")
        new = {k: v for k, v in flat.items() if k not in logged}
        if new:
            super().log_hyperparams(new)

    _resumed = False


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///relative.db`` → ``sqlite:////abs/path/relative.db``.

    MLflow caches one store per URI string in a process, so a relative SQLite URI keeps pointing at
    the first working directory's file after a ``chdir``; the absolute path also tells the user where
    the runs are.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + str((Path.cwd() / uri[len(prefix):]).resolve())
    return uri


def git_sha(path: str | Path | None = None) -> str:
    """The commit of the code being run (``unknown`` outside a git checkout); ``-dirty`` if modified."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tag_run(logger: MLFlowLogger, tags: dict[str, str]) -> None:
    """Set tags on the logger's run (creating the run if needed)."""
    client, run_id = logger.experiment, logger.run_id
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def mlflow_run_record(trainer) -> dict[str, str] | None:
    """Where the trainer's MLflow run lives: ``{"tracking_uri", "experiment_name", "experiment_id", "run_id"}``.

    Stored in every lightq checkpoint (``checkpoint["lightq"]["mlflow_run"]``) so that resuming and
    ``lightq evaluate`` find the run the checkpoint belongs to; ``None`` without an MLflow logger.
    """
    if trainer is None:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger) and logger.run_id is not None:
            return {
                "tracking_uri": str(logger._tracking_uri),
                "experiment_name": str(logger._experiment_name),
                "experiment_id": str(logger.experiment_id),
                "run_id": str(logger.run_id),
            }
    return None


def continue_run_from_checkpoint(ckpt_path: str | Path, loggers) -> str | None:
    """Point lightq's MLflow loggers at the run recorded in a checkpoint (``checkpoint["lightq"]["mlflow_run"]``).

    Must run before the logger creates a run (``LightqCLI.before_fit`` does it). Loggers given an explicit
    ``run_id`` are left alone; if the recorded run is not in the logger's tracking store, a new run is
    started and a warning says so. Returns the run id continued, or ``None``.
    """
    import torch
    from pytorch_lightning.utilities import rank_zero_warn

    state = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    record = (state.get("lightq") or {}).get("mlflow_run")
    if not record:
        return None
    continued = None
    for logger in loggers:
        if not isinstance(logger, MLFlowLogger) or logger._run_id is not None:
            continue
        try:
            logger._mlflow_client.get_run(record["run_id"])
        except Exception:  # noqa: BLE001 - MlflowException (not found) or a store error: start a new run
            rank_zero_warn(
                f"The checkpoint's MLflow run {record['run_id']} (tracking URI {record['tracking_uri']}) is not in "
                f"{logger._tracking_uri}; logging the resumed training to a new run. Set MLFLOW_TRACKING_URI "
                "to the original store to continue the same run."
            )
            continue
        logger._run_id = record["run_id"]
        logger._resumed = True
        continued = record["run_id"]
    return continued
