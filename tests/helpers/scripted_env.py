"""A scripted env with known rewards and episode ends, for boundary tests.

Observation = [episode_id, t] (t = steps taken in the episode). Reward of the step from t to t+1 is
``10 * episode_id + t + 1``. Episode k of env ``env_index`` lasts ``lengths[k % len(lengths)]`` steps and
ends by termination or truncation as ``ends[k % len(ends)]`` says ("term" / "trunc").
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class ScriptedEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, lengths=(3, 5), ends=("term", "trunc"), num_actions: int = 2) -> None:
        self.lengths = list(lengths)
        self.ends = list(ends)
        self.observation_space = gym.spaces.Box(-1e9, 1e9, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(num_actions)
        self.episode = -1
        self.t = 0

    def _obs(self):
        return np.array([self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        reward = 10.0 * self.episode + self.t
        k = self.episode % len(self.lengths)
        end = self.t >= self.lengths[k]
        kind = self.ends[self.episode % len(self.ends)]
        return self._obs(), reward, end and kind == "term", end and kind == "trunc", {}


def expected_transition(episode: int, t: int, lengths, ends, n: int, gamma: float):
    """Ground truth of the n-step transition stored for state (episode, t)."""
    length = lengths[episode % len(lengths)]
    k = min(n, length - t)
    reward = sum(gamma**j * (10.0 * episode + t + j + 1) for j in range(k))
    ended = t + k == length
    terminated = ended and ends[episode % len(ends)] == "term"
    return {"next_obs": (episode, t + k), "reward": reward, "discount": gamma**k, "terminated": terminated}
