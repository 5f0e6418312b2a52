"""``LeanSyncVectorEnv.step`` (what ``make_vec_env`` returns for sync vectorization) equals gymnasium's
``SyncVectorEnv.step``: observations, rewards, terminations, truncations and infos, across episode ends."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from lightq.envs import EnvConfig, make_vec_env
from lightq.envs.factory import LeanSyncVectorEnv


def _same_info(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        if isinstance(a[key], dict):
            _same_info(a[key], b[key])
        elif key == "final_obs":
            for x, y in zip(a[key], b[key], strict=True):
                assert (x is None and y is None) or np.array_equal(x, y)
        else:
            assert np.array_equal(a[key], b[key]), key


@pytest.mark.parametrize("env_id, num_envs, max_steps", [("CartPole-v1", 3, None), ("Pendulum-v1", 2, 17)])
def test_lean_step_equals_sync_vector_env(env_id, num_envs, max_steps) -> None:
    config = EnvConfig(id=env_id, num_envs=num_envs, max_episode_steps=max_steps)
    lean = make_vec_env(config)
    assert type(lean) is LeanSyncVectorEnv
    kwargs = {"max_episode_steps": max_steps} if max_steps else {}
    reference = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                             vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP, "copy": False}, **kwargs)
    assert type(reference) is gym.vector.SyncVectorEnv
    seeds = list(range(10, 10 + num_envs))
    obs_a, _ = lean.reset(seed=seeds)
    obs_b, _ = reference.reset(seed=seeds)
    assert np.array_equal(obs_a, obs_b)
    reference.action_space.seed(0)
    ends = 0
    for _ in range(400):
        actions = reference.action_space.sample()
        out_a, out_b = lean.step(actions), reference.step(actions)
        for x, y in zip(out_a[:4], out_b[:4]):
            assert x.dtype == y.dtype and np.array_equal(x, y)
        _same_info(out_a[4], out_b[4])
        assert np.array_equal(lean._autoreset_envs, reference._autoreset_envs)
        ends += int(np.sum(out_a[2] | out_a[3]))
    assert ends >= 5  # episode ends (termination for CartPole, truncation for Pendulum) were compared
