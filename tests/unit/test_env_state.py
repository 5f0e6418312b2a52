"""Env-state adapter (lightq.envs.state): a restored env continues exactly, through episode ends."""

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from lightq.envs.factory import EnvConfig, make_vec_env
from lightq.envs.state import get_vector_env_state, set_vector_env_state, why_not_restorable


def _roundtrip(state):
    f = io.BytesIO()
    torch.save(state, f)
    f.seek(0)
    return torch.load(f, weights_only=True)  # nothing pickled but tensors and plain containers


def _rollout(env, actions):
    return [env.step(a) for a in actions]


def _same(a, b):
    return all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) and np.array_equal(x[2], y[2])
               and np.array_equal(x[3], y[3]) for x, y in zip(a, b))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0",
                                    "MountainCarContinuous-v0"])
def test_classic_control_state_restores_exactly(env_id):
    config = EnvConfig(id=env_id, num_envs=2, max_episode_steps=40)  # several time-limit ends in the rollout
    env = make_vec_env(config)
    env.reset(seed=[1, 2])
    env.action_space.seed(0)
    for _ in range(25):
        env.step(env.action_space.sample())
    state = _roundtrip(get_vector_env_state(env))
    actions = [env.action_space.sample() for _ in range(200)]
    expected = _rollout(env, actions)
    assert sum(int((t[2] | t[3]).sum()) for t in expected) >= 4  # crosses episode ends (resets draw np_random)

    restored = make_vec_env(config)
    restored.reset(seed=[7, 8])
    other = _rollout(restored, actions[:5])
    assert not _same(expected[:5], other)  # a different env really differs: the comparison can fail
    set_vector_env_state(restored, state)
    assert _same(expected, _rollout(restored, actions))


def test_atari_state_restores_exactly():
    ale_py = pytest.importorskip("ale_py")
    gym.register_envs(ale_py)

    def make():
        return gym.make_vec("ALE/Pong-v5", num_envs=1, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})

    env = make()
    env.reset(seed=[3])
    for _ in range(30):
        env.step(np.array([2]))
    state = _roundtrip(get_vector_env_state(env))
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 6, size=1) for _ in range(300)]  # sticky actions draw the saved ALE RNG
    expected = _rollout(env, actions)
    restored = make()
    restored.reset(seed=[4])
    set_vector_env_state(restored, state)
    assert _same(expected, _rollout(restored, actions))


def test_unknown_wrapper_and_async_are_reported_not_restorable():
    env = gym.vector.SyncVectorEnv([lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))],
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    assert "RecordEpisodeStatistics" in why_not_restorable(env)
    assert get_vector_env_state(env) is None
    fake_async = type("AsyncVectorEnv", (), {})()
    assert "other processes" in why_not_restorable(fake_async)


def test_restoring_into_a_different_env_is_refused():
    env = make_vec_env(EnvConfig(id="CartPole-v1", num_envs=2))
    env.reset(seed=[1, 2])
    state = get_vector_env_state(env)
    other = make_vec_env(EnvConfig(id="CartPole-v1", num_envs=3))
    other.reset(seed=[1, 2, 3])
    with pytest.raises(ValueError, match="resume with the env config of the checkpoint"):
        set_vector_env_state(other, state)
