"""MLflow tracking: the default logger, run tags, the resolved config as an artifact."""

from lightq.tracking.mlflow import DEFAULT_TRACKING_URI, LightqMLFlowLogger, git_sha, mlflow_run_record, tag_run

__all__ = ["DEFAULT_TRACKING_URI", "LightqMLFlowLogger", "git_sha", "tag_run"]
