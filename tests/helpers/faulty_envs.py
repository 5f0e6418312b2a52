"""Environments that misbehave on purpose, registered under ``lightq-test/*`` when imported.

Use them from a config or the command line as ``tests.helpers.faulty_envs:lightq-test/<Name>-v0``
(gymnasium imports the module, which registers the ids, in whatever process makes the env).
Each fault fires on the env's ``at_step``-th step counted over the env's lifetime (across resets).
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np


class _Fault(gym.Wrapper):
    def __init__(self, env: gym.Env, at_step: int) -> None:
        super().__init__(env)
        self.at_step = at_step
        self.steps = 0


class NaNReward(_Fault):
    """Returns a NaN reward on its ``at_step``-th step."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs, (np.nan if self.steps == self.at_step else reward), terminated, truncated, info


class RaiseOnStep(_Fault):
    """Raises ``RuntimeError`` on its ``at_step``-th step."""

    def step(self, action):
        self.steps += 1
        if self.steps == self.at_step:
            raise RuntimeError(f"simulated env crash at step {self.steps}")
        return self.env.step(action)


class SlowStep(gym.Wrapper):
    """Sleeps ``LIGHTQ_TEST_STEP_SLEEP`` seconds per step (for signal tests that need a long run)."""

    def step(self, action):
        import time

        time.sleep(float(os.environ.get("LIGHTQ_TEST_STEP_SLEEP", "0.001")))
        return self.env.step(action)


def _cartpole(wrapper, **kwargs):
    def make(render_mode=None, **extra):
        return wrapper(gym.make("CartPole-v1", render_mode=render_mode).unwrapped, **kwargs)
    return make


for _name, _entry, _kwargs in [
    ("NaNRewardCartPole-v0", NaNReward, {"at_step": 300}),
    ("RaiseOnStepCartPole-v0", RaiseOnStep, {"at_step": 900}),
    ("SlowCartPole-v0", SlowStep, {}),
]:
    if f"lightq-test/{_name}" not in gym.registry:
        gym.register(f"lightq-test/{_name}", entry_point=_cartpole(_entry, **_kwargs), max_episode_steps=500)
