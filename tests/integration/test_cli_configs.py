"""Every config in configs/ parses and runs a few hundred env steps through the CLI, logging to MLflow."""

from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient

from lightq.cli import LightqCLI

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml"))


def _short_run_args(config: Path, **extra) -> list[str]:
    args = [
        "fit", "--config", str(config),
        "--model.init_args.total_env_steps", "300",
        "--model.init_args.learning_starts_env_steps", "100",
        "--model.init_args.replay.batch_size", "16",
        "--model.init_args.evaluation.every_env_steps", "150",
        "--model.init_args.evaluation.episodes", "2",
        "--model.init_args.log_every_updates", "50",
        "--trainer.enable_progress_bar", "false",
    ]
    for key, value in extra.items():
        args += [f"--{key}", str(value)]
    return args


def test_configs_exist():
    names = {p.relative_to(ROOT / "configs").as_posix() for p in CONFIGS}
    assert {"dqn/cartpole.yaml", "dqn/cartpole_double.yaml", "dqn/cartpole_dueling.yaml",
            "dqn/cartpole_nstep.yaml", "dqn/acrobot.yaml", "ddpg/pendulum.yaml", "naf/pendulum.yaml",
            "cemq/pendulum.yaml", "ddpg/mountaincar.yaml", "naf/mountaincar.yaml", "cemq/mountaincar.yaml",
            "ddpg/halfcheetah.yaml", "ddpg/hopper.yaml", "naf/hopper.yaml", "cemq/halfcheetah.yaml"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_config_runs_through_cli(config, in_tmp):
    text = config.read_text()
    assert text.startswith("#"), "configs open with a provenance comment"
    if "atari" in config.relative_to(ROOT / "configs").parts:
        pytest.skip("Atari configs: pong_quick runs in test_atari_cli.py; paper-size ones (1M-row replay) are parsed there")
    env_id = yaml.safe_load(text)["model"]["init_args"]["env"]["id"]
    if env_id.split("-")[0] in ("HalfCheetah", "Hopper"):
        pytest.importorskip("mujoco", reason="MuJoCo configs need the optional extra: pip install -e '.[mujoco]'")
    cli = LightqCLI(args=_short_run_args(config))
    model = cli.model
    assert model.env_steps >= 300 and model.updates == model.num_updates
    assert model.final_eval is not None
    client = MlflowClient(f"sqlite:///{in_tmp}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["algorithm"] == model.algorithm_name
    assert run.data.tags["env"] == env_id
    assert "eval/return_mean" in run.data.metrics
    history = client.get_metric_history(run.info.run_id, "eval/return_mean")
    assert [m.step for m in history] == [150, 300]  # x-axis = env steps
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "config.yaml" in artifacts


def test_command_line_overrides_and_config_artifact(in_tmp):
    config = ROOT / "configs" / "dqn" / "cartpole.yaml"
    cli = LightqCLI(args=_short_run_args(config, **{"model.init_args.seed": 7, "model.init_args.double_q": "true"}))
    assert cli.model.hparams.seed == 7 and cli.model.hparams.double_q is True
    client = MlflowClient(f"sqlite:///{in_tmp}/mlflow.db")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    assert run.data.tags["seed"] == "7"
    assert run.data.params["double_q"] == "True"
    local = client.download_artifacts(run.info.run_id, "config.yaml", str(in_tmp))
    saved = yaml.safe_load(Path(local).read_text())
    init = saved["model"]["init_args"]
    assert init["seed"] == 7 and init["double_q"] is True
    # The checkpoint records the MLflow run it belongs to (resume and `lightq evaluate` use it).
    ckpt = torch.load(cli.trainer.checkpoint_callback.last_model_path or cli.trainer.checkpoint_callback.best_model_path,
                      map_location="cpu", weights_only=True)
    assert ckpt["lightq"]["mlflow_run"] == {
        "tracking_uri": f"sqlite:///{in_tmp.resolve()}/mlflow.db", "experiment_name": "lightq",
        "experiment_id": run.info.experiment_id, "run_id": run.info.run_id,
    }
    # The resolved config holds every default, not only what the YAML set.
    assert init["replay"]["batches_per_sample"] == 16 and init["n_step"] == 1


def test_tracking_uri_from_environment(in_tmp, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{in_tmp}/elsewhere.db")
    LightqCLI(args=_short_run_args(ROOT / "configs" / "dqn" / "cartpole.yaml"))
    assert (in_tmp / "elsewhere.db").exists() and not (in_tmp / "mlflow.db").exists()
