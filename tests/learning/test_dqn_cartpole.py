"""Learning: the shipped DQN config reaches eval return ≥ 475 on CartPole-v1 within 50,000 env steps
for at least 2 of 3 seeds. Runs the `lightq` CLI (the user's path), two seeds at a time, and reads
the eval curve back from MLflow."""

import pytest

from tests.helpers.cli_runs import ROOT, train_seeds


@pytest.mark.slow
def test_dqn_cartpole_reaches_475_in_two_of_three_seeds(tmp_path):
    curves = train_seeds(ROOT / "configs" / "dqn" / "cartpole.yaml", [0, 1, 2], tmp_path)
    best = []
    for seed, curve in enumerate(curves):
        assert curve and max(step for step, _ in curve) <= 50_000
        best.append(max(value for _, value in curve))
        print(f"seed {seed}: eval curve {curve}")
    assert sum(b >= 475 for b in best) >= 2, f"best eval returns per seed: {best}"
