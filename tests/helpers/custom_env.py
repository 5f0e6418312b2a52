"""A research-style custom env: registered at import, constructor without ``render_mode`` (issue 14, item 5).

Used through the CLI as ``env.id: tests.helpers.custom_env:LightqTinyChain-v0``. Its action space starts
at −1 (``Discrete(3, start=-1)``), and it records the actions it receives, for item 4.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class TinyChain(gym.Env):
    """Move left (−1), stay (0) or right (+1) on a line of 7 cells; reward 1 at the right end (terminal)."""

    received: list[int] = []  # every action any instance was given, in order (class-wide, for tests)

    def __init__(self, length: int = 7):  # no render_mode: research code rarely has one
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(length,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(3, start=-1)
        self.pos = 0

    def _obs(self):
        obs = np.zeros(self.length, dtype=np.float32)
        obs[self.pos] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = int(self.np_random.integers(0, self.length // 2))
        return self._obs(), {}

    def step(self, action):
        action = int(action)
        TinyChain.received.append(action)
        if action not in (-1, 0, 1):
            raise ValueError(f"TinyChain got action {action}, outside Discrete(3, start=-1)")
        self.pos = min(max(self.pos + action, 0), self.length - 1)
        done = self.pos == self.length - 1
        return self._obs(), float(done), done, False, {}


if "LightqTinyChain-v0" not in gym.registry:
    gym.register(id="LightqTinyChain-v0", entry_point=TinyChain, max_episode_steps=30)
