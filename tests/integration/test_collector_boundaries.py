"""The transitions the collector stores at vector-env episode ends are the true ones.

Scripted env (tests/helpers/scripted_env.py) with known rewards and mixed termination/truncation,
two envs with different episode lengths, SAME_STEP autoreset, n = 1 and 3, and a buffer small
enough to wrap around many times: every stored transition must equal the ground truth.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from lightq.data.replay import ReplayConfig, make_replay_buffer
from lightq.interaction.collector import Collector
from tests.helpers.scripted_env import ScriptedEnv, expected_transition

LENGTHS = [(3, 5, 1), (4, 2)]
ENDS = [("term", "trunc"), ("trunc", "term", "term")]


def _vec_env():
    fns = [lambda i=i: ScriptedEnv(LENGTHS[i], ENDS[i]) for i in range(2)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def _matches(data, row, i, n, gamma) -> bool:
    ep, t = int(data["obs"][row, 0]), int(data["obs"][row, 1])
    want = expected_transition(ep, t, LENGTHS[i], ENDS[i], n, gamma)
    return (
        tuple(data["next_obs"][row].numpy().astype(int)) == want["next_obs"]
        and bool(data["terminated"][row]) == want["terminated"]
        and float(data["reward"][row]) == pytest.approx(want["reward"], rel=1e-6)
        and float(data["discount"][row]) == pytest.approx(want["discount"], rel=1e-6)
    )


@pytest.mark.parametrize("n", [1, 3])
def test_every_stored_transition_is_true_across_episode_ends_and_wraparound(n):
    gamma = 0.9
    buffer = make_replay_buffer(ReplayConfig(capacity=11, batch_size=2), device="cpu", seed=0)
    collector = Collector(_vec_env(), buffer, n_step=n, gamma=gamma, seed=0)
    policy = lambda obs: np.zeros(len(obs), dtype=np.int64)  # noqa: E731
    written = 0
    for _ in range(40):  # 80 env steps through a buffer of 11: it wraps around ~7 times
        collector.step(policy)
        written += collector.flush()
        if len(buffer) == 0:
            continue
        data = buffer.storage[: len(buffer)]
        for row in range(len(buffer)):
            # Both envs start at episode 0, so a row is right if it equals the ground truth of
            # the env that wrote it: next_obs (n steps on, or the true final obs), reward sum,
            # γ^k and the terminated flag all at once.
            assert any(_matches(data, row, i, n, gamma) for i in range(2)), (
                f"row {row}: obs {data['obs'][row].tolist()} next {data['next_obs'][row].tolist()} "
                f"reward {float(data['reward'][row])} discount {float(data['discount'][row])} "
                f"terminated {bool(data['terminated'][row])}"
            )
    assert written > 3 * 11 and len(buffer) == 11  # wrapped around several times
    # Every env step became exactly one transition (n-step flushes included) except those pending.
    pending = sum(len(q) for q in collector.nstep._pending)
    assert written + pending == collector.env_steps


def test_final_observation_not_reset_observation_is_stored():
    buffer = make_replay_buffer(ReplayConfig(capacity=100, batch_size=2), device="cpu", seed=0)
    collector = Collector(_vec_env(), buffer, n_step=1, gamma=0.99, seed=0)
    collector.step(lambda obs: np.zeros(len(obs), dtype=np.int64), 12)
    collector.flush()
    data = buffer.storage[: len(buffer)]
    ends = data["terminated"].numpy() | (data["next_obs"][:, 1].numpy() == 0)
    # No stored next_obs is a reset observation (t = 0): SAME_STEP's info["final_obs"] was used.
    assert (data["next_obs"][:, 1] > 0).all()
    # Each next_obs continues the same episode one step later.
    assert torch.equal(data["next_obs"][:, 0], data["obs"][:, 0])
    assert torch.equal(data["next_obs"][:, 1], data["obs"][:, 1] + 1)
    assert ends.any()


def test_episode_statistics():
    buffer = make_replay_buffer(ReplayConfig(capacity=100, batch_size=2), device="cpu", seed=0)
    collector = Collector(_vec_env(), buffer, n_step=1, gamma=0.99, seed=0)
    collector.step(lambda obs: np.zeros(len(obs), dtype=np.int64), 6)
    finished = sorted(collector.pop_finished_episodes())
    # env 0: episode 0 (3 steps: 1+2+3=6), env 1: episode 0 (4 steps: 10), episode 1 (2 steps: 11+12=23)
    assert finished == [(6.0, 3), (10.0, 4), (23.0, 2)]
    assert collector.env_steps == 12 and collector.pop_finished_episodes() == []


def test_collector_rejects_next_step_autoreset():
    env = gym.vector.SyncVectorEnv([lambda: ScriptedEnv()])  # NEXT_STEP default
    buffer = make_replay_buffer(ReplayConfig(capacity=10, batch_size=2), device="cpu", seed=0)
    with pytest.raises(ValueError, match="SAME_STEP"):
        Collector(env, buffer, n_step=1, gamma=0.99, seed=0)
