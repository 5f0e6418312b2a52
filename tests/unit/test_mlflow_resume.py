"""Continuing a checkpoint's MLflow run (lightq.tracking.mlflow)."""

import pytest
import torch
from mlflow import MlflowClient

from lightq.tracking.mlflow import LightqMLFlowLogger, continue_run_from_checkpoint


def test_resumed_logger_continues_the_recorded_run_and_keeps_write_once_params(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = LightqMLFlowLogger(tracking_uri=uri)
    first.log_hyperparams({"total_env_steps": 1000, "lr": 0.001})
    first.log_metrics({"eval/return_mean": 1.0}, step=10)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"lightq": {"mlflow_run": {"tracking_uri": uri, "experiment_name": "lightq",
                                          "experiment_id": first.experiment_id, "run_id": first.run_id}}}, ckpt)

    second = LightqMLFlowLogger(tracking_uri=uri)
    assert continue_run_from_checkpoint(ckpt, [second]) == first.run_id
    with pytest.warns(UserWarning, match=r"keeps its first values of params \['total_env_steps'\]"):
        second.log_hyperparams({"total_env_steps": 2000, "lr": 0.001, "new_setting": 3})
    second.log_metrics({"eval/return_mean": 2.0}, step=20)
    assert second.run_id == first.run_id
    client = MlflowClient(uri)
    run = client.get_run(first.run_id)
    assert run.data.params == {"total_env_steps": "1000", "lr": "0.001", "new_setting": "3"}
    history = client.get_metric_history(first.run_id, "eval/return_mean")
    assert sorted((m.step, m.value) for m in history) == [(10, 1.0), (20, 2.0)]
    assert len(client.search_runs([first.experiment_id])) == 1


def test_unknown_recorded_run_starts_a_new_one_with_a_warning(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    torch.save({"lightq": {"mlflow_run": {"tracking_uri": "sqlite:///elsewhere.db", "experiment_name": "lightq",
                                          "experiment_id": "1", "run_id": "0" * 32}}}, ckpt)
    logger = LightqMLFlowLogger(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.warns(UserWarning, match="logging the resumed training to a new run"):
        assert continue_run_from_checkpoint(ckpt, [logger]) is None
    assert logger.run_id is not None and logger.run_id != "0" * 32
