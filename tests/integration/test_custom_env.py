"""A research-style custom env through the CLI (issue 14, items 4 and 5).

``tests.helpers.custom_env:LightqTinyChain-v0``: registered when its module is imported (gymnasium's
``module:EnvId`` syntax), a constructor without ``render_mode``, and ``Discrete(3, start=-1)`` actions.
"""

from __future__ import annotations

import numpy as np

from lightq.cli import LightqCLI
from tests.helpers.custom_env import TinyChain
from tests.integration.test_atari_cli import ROOT

ENV = "tests.helpers.custom_env:LightqTinyChain-v0"


def test_custom_env_without_render_mode_and_with_shifted_discrete_actions_trains(in_tmp):
    TinyChain.received.clear()
    cli = LightqCLI(args=[
        "fit", "--config", str(ROOT / "configs" / "dqn" / "cartpole.yaml"), "--model.init_args.env.id", ENV,
        "--model.init_args.total_env_steps", "3_000", "--trainer.enable_progress_bar", "false",
    ])
    model = cli.model
    # The env got only its own actions, all three of them, in warm-up, ε-greedy and evaluation alike.
    received = np.array(TinyChain.received)
    assert set(received.tolist()) == {-1, 0, 1}
    # The agent and the replay see indices 0..2 (gather/argmax index from 0).
    assert model.action_space.n == 3 and model.action_space.start == 0
    stored = model.collector.buffer[: len(model.collector.buffer)]["action"]
    assert set(stored.unique().tolist()) == {0, 1, 2}
    # Index 2 (= +1, toward the reward) is what the greedy policy learned: every eval episode reaches the end.
    assert model.final_eval["eval/return_mean"] == 1.0
    obs = np.eye(7, dtype=np.float32)[:6]
    assert (model.greedy_actions(obs) == 2).all()
