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


def test_atari_resume_restores_the_frame_replay_and_trains_to_the_end(in_tmp):
    """``--ckpt_path last`` on an Atari run used to crash (FrameReplay had no load_state_dict): now the frame
    replay comes back from the sidecar with its cursors and generator, the games in flight are cut, and the
    run trains its remaining updates."""
    args = ["fit", "--config", str(ATARI / "pong_quick.yaml"), "--trainer.enable_progress_bar", "false",
            "--model.init_args.total_env_steps", "1_000", "--model.init_args.evaluation.episodes", "1"]
    first = LightqCLI(args=[*args, "--trainer.max_steps", "40"])
    saved = first.model.collector.buffer.state_dict()
    assert first.model.updates == 40
    with pytest.warns(UserWarning, match="cut there as at a time limit"):
        second = LightqCLI(args=[*args, "--ckpt_path", "last", "--trainer.max_steps", "41"])
    buffer = second.model.collector.buffer
    # One update later: the saved rows are still there (one final-frame row per env was added by the cut,
    # and 4 env steps of 2 envs), at the saved cursors.
    assert (buffer.count == saved["count"].numpy() + 1 + 2).all()
    rows = buffer._held_rows()[: len(saved["columns"]["frame"])]
    held = int(saved["count"].clamp(max=buffer.segment).sum())
    assert held == len(rows)
    for s in range(buffer.num_streams):  # the first saved rows of each stream are unchanged
        n = int(saved["count"][s])
        start = sum(int(c) for c in saved["count"][:s])
        got = buffer._columns["frame"][s * buffer.segment: s * buffer.segment + n]
        assert torch.equal(got, saved["columns"]["frame"][start: start + n])
    third = LightqCLI(args=[*args, "--ckpt_path", "last"])
    assert third.model.updates == third.model.num_updates == 125
