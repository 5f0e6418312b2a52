"""Exploration noise for continuous actions: Gaussian and Ornstein–Uhlenbeck (Lillicrap et al. 2016)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["ActionNoise", "NoiseConfig"]


@dataclass
class NoiseConfig:
    """Additive action noise, in units of half the action range (σ = 0.1 → 10% of (high − low) / 2).

    Attributes:
        kind: ``gaussian`` (i.i.d.), ``ou`` (Ornstein–Uhlenbeck, θ, dt = 1e-2 as in DDPG), or ``none``.
        sigma: Noise scale.
        theta: OU mean reversion.
        dt: OU time step.
    """

    kind: Literal["gaussian", "ou", "none"] = "gaussian"
    sigma: float = 0.1
    theta: float = 0.15
    dt: float = 1e-2

    def __post_init__(self) -> None:
        if self.kind not in ("gaussian", "ou", "none"):
            raise ValueError(f"noise.kind={self.kind!r} must be 'gaussian', 'ou' or 'none'.")
        if self.sigma < 0:
            raise ValueError(f"noise.sigma={self.sigma} must be >= 0.")


class ActionNoise:
    """Per-env noise process; ``reset(mask)`` restarts OU for envs that began a new episode."""

    def __init__(self, config: NoiseConfig, *, num_envs: int, low: np.ndarray, high: np.ndarray, rng: np.random.Generator):
        self.config = config
        self.scale = (np.asarray(high, np.float32) - np.asarray(low, np.float32)) / 2
        self.rng = rng
        self.state = np.zeros((num_envs, *self.scale.shape), dtype=np.float32)

    def reset(self, mask: np.ndarray | None = None) -> None:
        if mask is None:
            self.state[:] = 0.0
        else:
            self.state[mask] = 0.0

    def __call__(self) -> np.ndarray:
        c = self.config
        if c.kind == "none" or c.sigma == 0:
            return np.zeros_like(self.state)
        eps = self.rng.standard_normal(self.state.shape).astype(np.float32)
        if c.kind == "gaussian":
            return c.sigma * self.scale * eps
        self.state += c.theta * (0.0 - self.state) * c.dt + c.sigma * np.sqrt(c.dt) * eps
        return self.state * self.scale
