"""The local MLflow store: a half-created one (creation killed part way) and the experiment kind the UI reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from mlflow import MlflowClient

from lightq.tracking.mlflow import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    BrokenTrackingStore,
    LightqMLFlowLogger,
    check_sqlite_store,
)
from tests.integration.test_evaluate_command import _train

# The migration that creates the model-registry tables: a store stopped after its DDL but before alembic
# recorded it is what a process killed during MLflow's first-time setup leaves behind.
_STOPPED_IN = "2b4d017a5e9b"


def _partly_migrated_store(path: Path, runs: int = 0) -> str:
    """MLflow's own initial tables and migrations up to ``_STOPPED_IN``, with the version one behind."""
    import sqlalchemy
    from alembic import command
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    uri = f"sqlite:///{path}"
    engine = sqlalchemy.create_engine(uri)
    InitialBase.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) "
                             "VALUES (0, 'Default', 'mlruns/0', 'active')")
        for i in range(runs):
            conn.exec_driver_sql("INSERT INTO runs (run_uuid, name, experiment_id, lifecycle_stage, status, "
                                 f"source_type) VALUES ('run{i}', 'r{i}', 0, 'active', 'FINISHED', 'LOCAL')")
    config = _get_alembic_config(uri)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, _STOPPED_IN)
    before = ScriptDirectory.from_config(config).get_revision(_STOPPED_IN).down_revision
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{before}'")
    engine.dispose()
    return uri


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_partly_migrated_store_is_what_mlflow_refuses(tmp_path):
    """The reproduction: plain MLflow cannot open the store (the message users saw)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = _partly_migrated_store(tmp_path / "mlflow.db")
    with pytest.raises(Exception, match="table registered_models already exists"):
        SqlAlchemyStore(uri, str(tmp_path / "mlruns"))


def test_half_created_store_without_runs_is_moved_aside_and_a_new_one_used(in_tmp, capsys):
    store = in_tmp / "mlflow.db"
    uri = _partly_migrated_store(store)
    digest = _digest(store)
    cli, _ = _train("dqn/cartpole.yaml")  # the default sqlite:///mlflow.db of the working directory
    out = capsys.readouterr().out
    (aside,) = in_tmp.glob("mlflow.db.broken-*")
    assert _digest(aside) == digest  # kept byte for byte, not deleted
    assert f"moved it aside to {aside}" in out and "half-created" in out and "configuration" not in out
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.run_id == cli.trainer.logger.run_id
    assert client.get_metric_history(run.info.run_id, "eval/return_mean")
    assert check_sqlite_store(uri) is None  # the new store opens: nothing more is moved
    assert len(list(in_tmp.glob("mlflow.db.broken-*"))) == 1


def test_half_created_store_with_runs_is_left_alone_and_the_error_names_the_file_and_the_fix(tmp_path):
    store = tmp_path / "mlflow.db"
    uri = _partly_migrated_store(store, runs=2)
    digest = _digest(store)
    with pytest.raises(BrokenTrackingStore) as info:
        LightqMLFlowLogger(tracking_uri=uri)
    message = str(info.value)
    assert f"MLflow store {store} is half-created" in message
    assert "table registered_models already exists" in message and "holds 2 runs" in message
    assert f"mv {store} {store}.broken" in message
    assert "configuration" not in message
    assert _digest(store) == digest and sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_store_check_leaves_good_and_missing_stores_alone(tmp_path):
    assert check_sqlite_store(f"sqlite:///{tmp_path}/absent.db") is None
    assert not (tmp_path / "absent.db").exists()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).create_experiment("kept")
    digest = _digest(tmp_path / "mlflow.db")
    assert check_sqlite_store(uri) is None
    assert _digest(tmp_path / "mlflow.db") == digest
    assert check_sqlite_store("http://127.0.0.1:1") is None  # a server is not probed here


def test_experiments_are_marked_model_training_without_touching_other_tags(tmp_path):
    """MLflow 3's UI shows the runs table and charts for ``mlflow.experimentKind=custom_model_development``."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)

    def experiment_tags(name: str) -> dict[str, str]:
        logger = LightqMLFlowLogger(experiment_name=name, tracking_uri=uri)
        assert logger.run_id is not None  # creates the experiment (if new) and the run
        return client.get_experiment_by_name(name).tags

    assert experiment_tags("new")[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    # An experiment made before lightq set the kind: the tag is added, the others stay.
    old = client.create_experiment("old", tags={"team": "rl"})
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    assert experiment_tags("old") == {"team": "rl", EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    # A kind the user chose is kept.
    client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "finetuning"})
    assert experiment_tags("chosen")[EXPERIMENT_KIND_TAG] == "finetuning"


def test_report_on_a_half_created_store_says_what_happened(tmp_path):
    from lightq.commands.report import main

    store = tmp_path / "mlflow.db"
    uri = _partly_migrated_store(store, runs=1)
    with pytest.raises(SystemExit) as info:
        main(["--experiment", "lightq", "--tracking-uri", uri, "--out", str(tmp_path / "report")])
    assert str(info.value.code).startswith(f"lightq report: MLflow store {store} is half-created")


def test_cli_on_a_half_created_store_with_runs_says_what_happened_not_invalid_configuration(tmp_path):
    import os
    import subprocess
    import sys

    store = tmp_path / "mlflow.db"
    uri = _partly_migrated_store(store, runs=1)
    digest = _digest(store)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "lightq.cli", "fit", "--config", str(root / "configs/dqn/cartpole.yaml")],
                          cwd=tmp_path, env=dict(os.environ, MLFLOW_TRACKING_URI=uri), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert "invalid configuration" not in proc.stderr
    assert f"lightq: MLflow store {store} is half-created" in proc.stderr and "Traceback" not in proc.stderr
    assert _digest(store) == digest
