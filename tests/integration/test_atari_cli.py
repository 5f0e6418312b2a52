"""Atari configs through the CLI: the quick Pong run trains, logs to MLflow and checkpoints; the paper-size
configs parse and build (without allocating their 1M-row replay, which happens only in ``setup``)."""

from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient

from lightq.cli import LightqCLI
from lightq.nn.cnn import NatureQNetwork
from lightq.nn.mlp import DuelingHead

ROOT = Path(__file__).resolve().parents[2]
ATARI = ROOT / "configs" / "dqn" / "atari"
PAPER = sorted(p for p in ATARI.glob("*.yaml") if p.stem != "pong_quick")


def test_quick_pong_run_logs_to_mlflow_and_checkpoints(in_tmp):
    cli = LightqCLI(args=["fit", "--config", str(ATARI / "pong_quick.yaml"), "--trainer.enable_progress_bar", "false"])
    model = cli.model
    assert model.env_steps >= 2_000 and model.updates == model.num_updates == 375
    assert isinstance(model.q_net, NatureQNetwork)
    assert len(model.collector.buffer) >= 2_000  # frames stored (one row per agent step, plus game ends)
    assert -21 <= model.final_eval["eval/return_mean"] <= 21  # a full Pong game's score, unclipped scale
    assert model.final_eval["eval/length_mean"] > 700  # a whole game (~800+ agent steps), not one point

    client = MlflowClient(f"sqlite:///{in_tmp}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["env"] == "ALE/Pong-v5" and run.data.tags["protocol"] == "nature"
    assert {"eval/return_mean", "rollout/epsilon", "train/loss"} <= set(run.data.metrics)
    local = client.download_artifacts(run.info.run_id, "config.yaml", str(in_tmp))
    env = yaml.safe_load(Path(local).read_text())["model"]["init_args"]["env"]
    assert env["atari_protocol"] == "nature"

    ckpt_path = cli.trainer.checkpoint_callback.last_model_path or cli.trainer.checkpoint_callback.best_model_path
    assert Path(ckpt_path).is_file()
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ckpt["lightq"]["updates"] == 375 and ckpt["lightq"]["mlflow_run"]["run_id"] == run.info.run_id
    assert ckpt["hyper_parameters"]["env"]["atari_protocol"] == "nature"
    weights = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("q_net.")}
    assert weights["q_net.torso.net.0.weight"].shape == (32, 4, 8, 8)


@pytest.mark.parametrize("config", PAPER, ids=lambda p: p.stem)
def test_paper_configs_parse_and_build(config, in_tmp):
    text = config.read_text()
    assert text.startswith("#") and "agent steps" in text  # provenance header states the clock
    cli = LightqCLI(args=["--config", str(config)], run=False)
    model, hp = cli.model, cli.model.hparams
    assert hp.replay["capacity"] == 1_000_000 and hp.replay["batch_size"] == 32
    assert hp.total_env_steps == 10_000_000 and hp.env_steps_per_update == 4.0
    assert hp.learning_starts_env_steps == 50_000 and hp.gamma == 0.99
    assert model.observation_space.shape == (4, 84, 84)
    assert isinstance(model.q_net, NatureQNetwork)
    assert isinstance(model.q_net.head, DuelingHead) == ("dueling" in config.stem)
    assert hp.double_q == ("dqn" not in config.stem)
    game = "Pong" if config.stem.startswith("pong") else "Breakout"
    assert hp.env["id"] == f"ALE/{game}-v5" and hp.env["atari_protocol"] == "nature"
    assert model.collector is None  # nothing allocated before fit
