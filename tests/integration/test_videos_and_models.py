"""Training-time WebM (VP8) videos as MLflow artifacts, and the greedy policy as an MLflow model loadable without lightq."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightq.seeding import eval_episode_seeds
import torch
from mlflow import MlflowClient

from lightq.commands.evaluate import load_checkpoint_agent
from lightq.tracking.models import FixedNoiseCEMPolicy
from tests.helpers import rendered_env
from tests.integration.test_evaluate_command import _evaluate, _table, _train
from tests.unit.test_video import codec_of


def _frames(path: Path) -> tuple[int, int]:
    """(frames decoded one by one, the container's frame count)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    cap.release()
    return decoded, declared


def _only_run(uri: str):
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    return client, runs[0].info.run_id


@pytest.mark.parametrize("env_id", [rendered_env.ENV_ID, "CartPole-v1"])
def test_training_video_is_an_mlflow_webm_with_one_frame_per_step(env_id, in_tmp, capsys):
    if env_id == "CartPole-v1":
        pytest.importorskip("pygame", reason="classic-control rendering needs pygame: pip install -e '.[video]'")
    else:
        rendered_env.register()  # renders with numpy: runs where pygame is missing
    cli, ckpt = _train(
        "dqn/cartpole.yaml",
        **{"model.init_args.env.id": env_id, "model.init_args.evaluation.video_every_env_steps": 150,
           "model.init_args.evaluation.log_model": "false"},
    )
    assert cli.model.env_steps == 300
    client, run_id = _only_run(f"sqlite:///{in_tmp}/mlflow.db")
    names = sorted(a.path for a in client.list_artifacts(run_id, "videos"))
    assert names == ["videos/eval-env_steps000000150-episode0.webm", "videos/eval-env_steps000000300-episode0.webm"]
    lengths = {m.step: int(m.value) for m in client.get_metric_history(run_id, "eval/video_episode_length")}
    assert sorted(lengths) == [150, 300]
    for name in names:
        local = Path(client.download_artifacts(run_id, name, str(in_tmp)))
        step = int(name.split("env_steps")[1][:9])
        # The reset frame, then one per step: T + 1 frames for an episode of T steps.
        assert _frames(local) == (lengths[step] + 1, lengths[step] + 1)
        assert codec_of(local) == ("webm", "V_VP8")  # plays in the MLflow UI (tests/browser)
    # The last video shows the checkpointed policy on the first eval episode: `lightq evaluate --video`
    # records the same episode.
    out = _evaluate(capsys, "--ckpt_path", str(ckpt), "--episodes", "1", "--video", str(in_tmp / "vids"))
    (_, seed, _, length), = _table(out)["episodes"]
    assert (seed, length) == (eval_episode_seeds(0, 0, 1)[0], lengths[300])
    (video,) = (in_tmp / "vids").iterdir()
    assert f"video: {video} ({length + 1} frames)" in out
    assert _frames(video) == (length + 1, length + 1)
    assert (video.suffix, codec_of(video)) == (".webm", ("webm", "V_VP8"))


_FRESH_PROCESS = """
import json, sys
import numpy as np
import mlflow.pytorch
import torch

cases = json.loads(sys.argv[1])
for name, case in cases.items():
    model = mlflow.pytorch.load_model(case["uri"])
    obs = torch.from_numpy(np.load(case["obs"]))
    with torch.no_grad():
        np.save(case["out"], model(obs).numpy())
assert "lightq" not in sys.modules, "the logged policy must load without lightq"
print("loaded", sorted(cases))
"""


def test_logged_policy_model_loads_in_a_fresh_process_and_acts_like_the_checkpoint(in_tmp, capsys):
    from mlflow.models import get_model_info

    configs = {"dqn": "dqn/cartpole.yaml", "ddpg": "ddpg/pendulum.yaml", "naf": "naf/pendulum.yaml",
               "cemq": "cemq/pendulum.yaml"}
    cases, modules, ckpts = {}, {}, {}
    rng = np.random.default_rng(0)
    for name, config in configs.items():
        cli, ckpt = _train(config)  # evaluation.log_model is on by default: policy/ logged at the end
        run = torch.load(ckpt, map_location="cpu", weights_only=True)["lightq"]["mlflow_run"]
        assert cli.model.policy_model_uri == f"runs:/{run['run_id']}/policy"
        modules[name], ckpts[name] = load_checkpoint_agent(ckpt).module, ckpt
        obs_dim = modules[name].observation_space.shape[0]
        obs = rng.normal(size=(16, obs_dim)).astype(np.float32)
        np.save(in_tmp / f"{name}-obs.npy", obs)
        cases[name] = {"uri": cli.model.policy_model_uri, "obs": str(in_tmp / f"{name}-obs.npy"),
                       "out": str(in_tmp / f"{name}-out.npy")}
        # The signature has a dynamic batch dimension (the test batch is 16, the export example 2).
        info = get_model_info(cli.model.policy_model_uri)
        assert json.loads(info.signature.to_dict()["inputs"])[0]["tensor-spec"]["shape"] == [-1, obs_dim]
        assert info.metadata["lightq_algorithm"] == modules[name].algorithm_name
    # On demand, registered under a name: models:/<name>/1 (the DQN run's checkpoint).
    out = _evaluate(capsys, "--ckpt_path", str(ckpts["dqn"]), "--episodes", "1", "--register-name", "cartpole-dqn")
    assert "policy model: models:/cartpole-dqn/1" in out
    cases["dqn-registered"] = dict(cases["dqn"], uri="models:/cartpole-dqn/1",
                                   out=str(in_tmp / "dqn-registered-out.npy"))

    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{in_tmp}/mlflow.db", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, json.dumps(cases)], cwd=in_tmp, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    for name, case in cases.items():
        module = modules[name.split("-")[0]]
        obs = torch.from_numpy(np.load(case["obs"]))
        got = torch.from_numpy(np.load(case["out"]))
        with torch.no_grad():
            if module.algorithm_name == "CEMQ":  # exported CEM uses fixed draws (lightq.tracking.models)
                want = FixedNoiseCEMPolicy(module)(obs)
            else:
                want = module.greedy_policy(obs)
        if module.algorithm_name == "DQN":
            assert got.dtype == torch.int64 and torch.equal(got, want)
            assert torch.equal(got, module.q_net(obs).argmax(-1))
        else:
            assert got.shape == (16, 1) and torch.allclose(got, want, atol=1e-6)
            assert bool(((got >= -2.0) & (got <= 2.0)).all())
    # The fixed-draw CEM still maximizes the critic: within 5% of the Q range of a 401-point grid.
    critic, obs = modules["cemq"].critic, torch.from_numpy(np.load(cases["cemq"]["obs"]))
    got = torch.from_numpy(np.load(cases["cemq"]["out"]))
    grid = torch.linspace(-2, 2, 401)
    with torch.no_grad():
        q_grid = critic(obs.repeat_interleave(401, 0), grid.repeat(16).unsqueeze(-1)).reshape(16, 401)
        q_got = critic(obs, got)
    span = q_grid.max(1).values - q_grid.min(1).values
    assert bool((q_got >= q_grid.max(1).values - 0.05 * span - 1e-6).all())
