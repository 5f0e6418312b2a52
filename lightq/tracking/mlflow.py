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
