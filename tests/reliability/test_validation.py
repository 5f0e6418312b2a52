"""Bad input is refused before any env step, with a message naming the key, the value and the fix."""

from pathlib import Path

import pytest
import torch

from lightq.cli import main
from lightq.interaction.collector import Collector

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = ROOT / "configs" / "dqn" / "cartpole.yaml"
PENDULUM = ROOT / "configs" / "ddpg" / "pendulum.yaml"


@pytest.fixture(autouse=True)
def no_env_steps(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an env step was taken before the bad input was refused")

    monkeypatch.setattr(Collector, "step", refuse)
    monkeypatch.setattr(Collector, "reset", refuse)


def _error(capsys, *args, config=CARTPOLE) -> str:
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(config), "--trainer.enable_progress_bar", "false", *args])
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model.init_args.lrr", "0.1"], "model.init_args.lrr: unknown option of lightq.algos.DQN. Did you mean 'lr'?"),
        (["--model.init_args.replay.capacty", "5"],
         "model.init_args.replay.capacty: unknown option of lightq.data.ReplayConfig. Did you mean 'capacity'"),
        (["--model.init_args.exploration.durationn", "3"],
         "model.init_args.exploration.durationn: unknown option of lightq.interaction.EpsilonSchedule. "
         "Did you mean 'duration_env_steps'?"),
        (["--trainer.max_epoch", "3"], "--trainer.max_epoch: unknown key. Did you mean 'max_epochs'"),
        (["--model.init_args.gamma", "abc"], "model.init_args.gamma=abc: expected a value of type float."),
        (["--model.init_args.gamma", "1.5"], "model.init_args.gamma=1.5 must be in (0, 1]."),
        (["--model.init_args.gamma", "0"], "model.init_args.gamma=0.0 must be in (0, 1]."),
        (["--model.init_args.replay.capacity", "0"], "model.init_args.replay.capacity=0 must be >= 1."),
        (["--model.init_args.replay.batch_size", "-4"], "model.init_args.replay.batch_size=-4 must be >= 1."),
        (["--model.init_args.target_update_period_updates", "0"],
         "model.init_args.target_update_period_updates=0 must be >= 1."),
        (["--model.init_args.total_env_steps", "0"], "model.init_args.total_env_steps=0 must be > 0."),
        (["--model.init_args.evaluation.episodes", "0"], "evaluation.episodes=0 must be >= 1"),
        (["--model.init_args.env.id", "CartPol-v1"],
         "model.init_args.env.id='CartPol-v1' is not a registered gymnasium environment. Did you mean 'CartPole-v1'"),
        (["--model.init_args.env.id", "ALE/Pongg-v5"],
         "model.init_args.env.id='ALE/Pongg-v5': ale-py has no Atari game 'pongg'. Did you mean 'ALE/Pong-v5'"),
        (["--model.init_args.env.id", "Pendulum-v1"],
         "DQN needs a Discrete action space, got Box(-2.0, 2.0, (1,), float32). Algorithms that accept Box actions: "
         "DDPG, NAF, CEMQ."),
        (["--model.init_args.replay.capacity", "64", "--model.init_args.replay.batch_size", "128"],
         "replay.capacity=64 is smaller than replay.batch_size=128"),
    ],
)
def test_bad_settings_are_refused_with_the_key_the_value_and_the_fix(capsys, args, expected):
    err = _error(capsys, *args)
    assert "invalid configuration" in err
    assert expected in err


def test_misspelled_key_in_a_config_file(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CARTPOLE.read_text().replace("    lr: 1.0e-3", "    learning_rate: 1.0e-3"))
    err = _error(capsys, config=bad)
    assert "model.init_args.learning_rate: unknown option of lightq.algos.DQN. lightq calls it 'lr'." in err
    bad.write_text(CARTPOLE.read_text().replace("      capacity: 50_000", "      capacty: 50_000"))
    err = _error(capsys, config=bad)
    assert "capacty (a key of a ReplayConfig section): unknown option of lightq.data.ReplayConfig. " \
           "Did you mean 'capacity'" in err


def _checkpoint(tmp_path, name, payload):
    path = tmp_path / name
    torch.save(payload, path)
    return path


def test_checkpoints_that_cannot_be_resumed(capsys, tmp_path, in_tmp):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    err = _error(capsys, "--ckpt_path", str(corrupt))
    assert f"ckpt_path='{corrupt}' is corrupted or truncated" in err and "earlier checkpoint" in err

    foreign = _checkpoint(tmp_path, "foreign.ckpt", {"state_dict": {}})
    err = _error(capsys, "--ckpt_path", str(foreign))
    assert "was not written by lightq (no 'lightq' section)" in err

    other = _checkpoint(tmp_path, "ddpg.ckpt", {"state_dict": {}, "lightq": {"algorithm": "DDPG"}})
    err = _error(capsys, "--ckpt_path", str(other))
    assert "is from algorithm 'DDPG', but the model is 'DQN'; resume it with the DDPG config" in err

    err = _error(capsys, "--ckpt_path", str(tmp_path / "missing.ckpt"))
    assert "does not exist" in err


def test_truncated_real_checkpoint(capsys, tmp_path, in_tmp):
    from lightq.algos import DQN

    model = DQN(env={"id": "CartPole-v1"}, total_env_steps=200, learning_starts_env_steps=32,
                replay={"batch_size": 16}, hidden=(8,))
    good = _checkpoint(tmp_path, "good.ckpt", {"state_dict": model.state_dict(), "lightq": {"algorithm": "DQN"}})
    data = good.read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    err = _error(capsys, "--ckpt_path", str(truncated))
    assert "is corrupted or truncated" in err


class _Code:  # an object whose unpickling would run this module's code
    pass


def test_a_text_file_is_not_a_checkpoint_and_pickled_code_is_still_unsafe(capsys, tmp_path, in_tmp):
    text = tmp_path / "notes.ckpt"
    text.write_text("epoch 3: looked good\n")
    err = _error(capsys, "--ckpt_path", str(text))
    assert f"ckpt_path='{text}' is not a checkpoint: it is a text file" in err
    assert "cannot be loaded safely" not in err
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    assert "is not a checkpoint: it is empty" in _error(capsys, "--ckpt_path", str(empty))
    # Real pickled code, in torch's zip format and in its legacy pickle format: refused as unsafe.
    for name, kwargs in (("code.ckpt", {}), ("legacy.ckpt", {"_use_new_zipfile_serialization": False})):
        path = tmp_path / name
        torch.save({"lightq": {"algorithm": "DQN"}, "x": _Code()}, path, **kwargs)
        err = _error(capsys, "--ckpt_path", str(path))
        assert "holds objects that cannot be loaded safely" in err, name


def test_evaluate_says_a_text_file_is_not_a_checkpoint(tmp_path):
    from lightq.commands.evaluate import load_checkpoint_agent

    text = tmp_path / "notes.ckpt"
    text.write_text("not weights\n")
    with pytest.raises(SystemExit) as info:
        load_checkpoint_agent(text)
    assert "is not a checkpoint: it is a text file" in str(info.value.code)
