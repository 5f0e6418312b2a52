"""What a user types on the command line (issue 14, items 9 and 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightq.cli import join_negative_values

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", ["-1e-3", "-1E+2", "-0.5", "-3", "-.25", "-2.", "-inf", "-nan"])
def test_negative_numbers_are_joined_to_their_key(value):
    assert join_negative_values(["fit", "--model.init_args.lr", value, "--x", "1"]) == [
        "fit", f"--model.init_args.lr={value}", "--x", "1"]


def test_options_and_words_that_are_not_numbers_stay_apart():
    argv = ["fit", "--trainer.fast_dev_run", "--model.init_args.lr=1e-3", "--a", "-e", "--b", "-1x", "-1e-3"]
    assert join_negative_values(argv) == argv


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "lightq.cli", "fit", "--config",
                           str(ROOT / "configs" / "dqn" / "cartpole.yaml"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_negative_value_as_a_separate_word_reaches_the_setting(tmp_path):
    # argparse used to answer "argument --model: expected one argument": the value never reached lightq.
    proc = _cli(tmp_path, "--model.init_args.lr", "-1e-3")
    assert proc.returncode == 2
    assert "expected one argument" not in proc.stderr
    assert "model.init_args.lr=-0.001 must be > 0" in proc.stderr  # read as the number, refused by lightq


def test_make_train_output_has_no_lightning_advertising_or_foreign_warnings(tmp_path):
    """The run's output is the run: no litlogger/litmodels tips, no pytree deprecation, and with periodic
    checkpoints no manual-optimization warning (lightq saves a consistent post-update state itself)."""
    proc = _cli(tmp_path, "--model.init_args.total_env_steps", "1_500", "--trainer.enable_progress_bar", "false",
                "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.every_n_train_steps", "100")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for noise in ("💡 Tip", "litlogger", "litmodels", "LeafSpec", "pre-optimization state",
                  "`weights_only` was not set", "exists and is not empty"):
        assert noise not in out, noise
    assert "final eval return" in proc.stdout
