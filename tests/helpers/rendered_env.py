"""A tiny env that renders ``rgb_array`` frames with numpy (no pygame), for video tests.

A walker on a line of ``size`` cells: action 1 moves right, 0 left; reward 1 per step right of the
start; the episode terminates at the right end and is truncated after ``max_steps``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

ENV_ID = "LightqTest/RenderedWalk-v0"


class RenderedWalk(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, size: int = 12, max_steps: int = 40, render_mode: str | None = None) -> None:
        self.size, self.max_steps, self.render_mode = size, max_steps, render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = self.t = 0

    def _obs(self):
        return np.array([self.pos / (self.size - 1), self.t / self.max_steps], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = int(self.np_random.integers(0, self.size // 2))
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = int(np.clip(self.pos + (1 if int(action) == 1 else -1), 0, self.size - 1))
        self.t += 1
        terminated = self.pos == self.size - 1
        return self._obs(), float(self.pos > 0), terminated, self.t >= self.max_steps, {}

    def render(self):
        frame = np.zeros((64, 16 * self.size, 3), dtype=np.uint8)
        frame[24:40, 16 * self.pos:16 * (self.pos + 1)] = (255, 200, 0)
        return frame


def register() -> str:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=RenderedWalk)
    return ENV_ID
