"""`lightq evaluate` on checkpoints of short runs: the printed table against a direct rollout, bad input."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from lightq.algos import DDPG, DQN
from lightq.cli import LightqCLI, main
from lightq.seeding import eval_episode_seeds
from tests.integration.test_cli_configs import ROOT, _short_run_args


def _train(config: str, **extra) -> tuple[LightqCLI, Path]:
    cli = LightqCLI(args=_short_run_args(ROOT / "configs" / config, **extra))
    ckpt = cli.trainer.checkpoint_callback
    return cli, Path(ckpt.last_model_path or ckpt.best_model_path)


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """One short CartPole DQN run shared by the tests below: (checkpoint path, env steps, final eval metrics)."""
    workdir = tmp_path_factory.mktemp("cartpole")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cli, path = _train("dqn/cartpole.yaml")
        yield path.resolve(), cli.model.env_steps, cli.model.final_eval


def _evaluate(capsys, *argv: str) -> str:
    capsys.readouterr()
    main(["evaluate", *argv])
    return capsys.readouterr().out


def _table(out: str) -> dict[str, list[float]]:
    rows = {}
    for name in ("return", "length"):
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        rows[name] = [float(x) for x in line.split()[1:]]
    episodes = re.findall(r"^\s+(\d+)\s+(\d+)\s+(-?[\d.]+)\s+(\d+)$", out, flags=re.M)
    rows["episodes"] = [(int(i), int(s), float(r), int(n)) for i, s, r, n in episodes]
    return rows


def _rebuild(cls, path: Path):
    """The checkpoint's module, rebuilt here without lightq.commands (the oracle's own loading)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    module = cls(**{k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")})
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


def _direct_rollout(env_id: str, act, seeds: list[int]) -> tuple[list[float], list[int]]:
    """A plain gymnasium loop, independent of evaluate_policy."""
    env = gym.make(env_id)
    returns, lengths = [], []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total, steps, done = 0.0, 0, False
        while not done:
            with torch.no_grad():
                action = act(torch.as_tensor(obs).unsqueeze(0))[0].numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
        returns.append(total)
        lengths.append(steps)
    return returns, lengths


@pytest.mark.parametrize(
    ("config", "cls", "env_id", "act"),
    [
        ("dqn/cartpole.yaml", DQN, "CartPole-v1", lambda m: (lambda o: m.q_net(o).argmax(-1))),
        ("ddpg/pendulum.yaml", DDPG, "Pendulum-v1", lambda m: m.actor),
    ],
    ids=["cartpole-dqn", "pendulum-ddpg"],
)
def test_evaluate_prints_table_matching_direct_rollout(config, cls, env_id, act, in_tmp, capsys, request):
    path = request.getfixturevalue("cartpole_run")[0] if cls is DQN else _train(config)[1]
    out = _evaluate(capsys, "--ckpt_path", str(path), "--episodes", "3", "--device", "cpu")
    table = _table(out)
    seeds = eval_episode_seeds(0, 0, 3)  # run seed 0, the default seed_offset: the training-time eval episodes
    assert f"seeds: {', '.join(map(str, seeds))} (eval episodes 0..2 of run seed 0" in out
    assert [e[1] for e in table["episodes"]] == seeds
    returns, lengths = _direct_rollout(env_id, act(_rebuild(cls, path)), seeds)
    assert [e[2] for e in table["episodes"]] == pytest.approx(returns, abs=0.006)  # printed with 2 decimals
    assert [e[3] for e in table["episodes"]] == lengths
    mean, std, lo, hi = table["return"]
    assert mean == pytest.approx(np.mean(returns), abs=0.006)
    assert std == pytest.approx(np.std(returns), abs=0.006)
    assert (lo, hi) == pytest.approx((min(returns), max(returns)), abs=0.006)
    assert table["length"] == pytest.approx([np.mean(lengths), np.std(lengths), min(lengths), max(lengths)], abs=0.006)
    # Other seeds give other episodes, and the seeds printed follow --seed / --seed_offset.
    out2 = _evaluate(capsys, "--ckpt_path", str(path), "--episodes", "2", "--seed", "5", "--seed_offset", "10")
    assert [e[1] for e in _table(out2)["episodes"]] == eval_episode_seeds(5, 10, 2)
    if cls is DDPG:
        with pytest.raises(SystemExit, match="--epsilon applies to discrete actions"):
            main(["evaluate", "--ckpt_path", str(path), "--epsilon", "0.1"])


def test_evaluate_logs_to_the_checkpoints_run(cartpole_run, in_tmp, capsys):
    from mlflow import MlflowClient

    path, env_steps, _ = cartpole_run
    out = _evaluate(capsys, "--ckpt_path", str(path), "--episodes", "2", "--log")
    mean = _table(out)["return"][0]
    run = torch.load(path, map_location="cpu", weights_only=True)["lightq"]["mlflow_run"]
    client = MlflowClient(run["tracking_uri"])
    history = client.get_metric_history(run["run_id"], "evaluate/return_mean")
    assert [(m.step, round(m.value, 2)) for m in history] == [(env_steps, mean)]
    assert [a.path for a in client.list_artifacts(run["run_id"], "evaluate")] == [
        f"evaluate/evaluate-env_steps{env_steps}.txt"
    ]


def test_evaluate_defaults_replay_the_training_time_evaluation(cartpole_run, in_tmp, capsys):
    path, _, final_eval = cartpole_run
    episodes = torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]["evaluation"]["episodes"]
    table = _table(_evaluate(capsys, "--ckpt_path", str(path), "--episodes", str(episodes)))
    assert [e[1] for e in table["episodes"]] == eval_episode_seeds(0, 0, episodes)
    assert table["return"][0] == pytest.approx(final_eval["eval/return_mean"], abs=0.006)
    assert table["length"][0] == pytest.approx(final_eval["eval/length_mean"], abs=0.006)


def test_epsilon_greedy_evaluation_is_seeded(cartpole_run, in_tmp, capsys):
    path = cartpole_run[0]
    args = ["--ckpt_path", str(path), "--episodes", "3", "--epsilon", "0.5"]
    first, second = _table(_evaluate(capsys, *args)), _table(_evaluate(capsys, *args))
    assert first == second  # ε's coin flips come from a generator derived from the run seed
    assert "ε-greedy actions, ε = 0.5" in _evaluate(capsys, *args)


def test_bad_checkpoints_give_clear_errors(in_tmp, capsys):
    garbage = in_tmp / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")  # text: said to be no checkpoint at all (issue 14, item 10)
    with pytest.raises(SystemExit, match="garbage.ckpt is not a checkpoint: it is a text file"):
        main(["evaluate", "--ckpt_path", str(garbage)])
    broken = in_tmp / "broken.ckpt"
    broken.write_bytes(b"PK\x03\x04 a zip that ends here")
    with pytest.raises(SystemExit, match="could not read .*broken.ckpt as a checkpoint"):
        main(["evaluate", "--ckpt_path", str(broken)])
    foreign = in_tmp / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, foreign)
    with pytest.raises(SystemExit, match="not a lightq checkpoint"):
        main(["evaluate", "--ckpt_path", str(foreign)])
    unknown = in_tmp / "unknown.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "lightq": {"algorithm": "SAC"}}, unknown)
    with pytest.raises(SystemExit, match=r"Unknown lightq algorithm 'SAC'; known: .*DQN"):
        main(["evaluate", "--ckpt_path", str(unknown)])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["evaluate", "--ckpt_path", str(in_tmp / "missing.ckpt")])


def test_logged_model_gives_the_checkpoints_episodes(cartpole_run, in_tmp, capsys):
    """The policy logged at the end of training, evaluated by run id, replays the checkpoint's episodes
    (greedy, and ε-greedy: the model path draws ε's coin flips like DQN.eval_policy, from the same seed)."""
    path, _, _ = cartpole_run
    run = torch.load(path, map_location="cpu", weights_only=True)["lightq"]["mlflow_run"]
    for extra in ([], ["--epsilon", "0.5"]):
        from_ckpt = _table(_evaluate(capsys, "--ckpt_path", str(path), "--episodes", "3", *extra))
        out = _evaluate(capsys, "--run_id", run["run_id"], "--tracking_uri", run["tracking_uri"], "--episodes", "3", *extra)
        assert f"MLflow model runs:/{run['run_id']}/policy" in out
        assert _table(out) == from_ckpt
    with pytest.raises(SystemExit, match="need --ckpt_path"):
        main(["evaluate", "--run_id", run["run_id"], "--log-model"])
