"""Exploration schedules, indexed by environment steps (every step-valued setting names its clock)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["EpsilonSchedule"]


@dataclass
class EpsilonSchedule:
    """ε for ε-greedy exploration as a function of env steps.

    ``linear``: from ``start`` to ``end`` over ``duration_env_steps``, then constant (Mnih et al. 2015:
    1.0 → 0.1 over 1M frames). ``exponential``: ``end + (start - end) * exp(-t / duration_env_steps)``,
    so ``duration_env_steps`` is the e-folding time.

    Attributes:
        kind: ``linear`` or ``exponential``.
        start: ε at env step 0.
        end: final ε (the floor).
        duration_env_steps: length of the linear decay / e-folding time, in env steps.
    """

    kind: Literal["linear", "exponential"] = "linear"
    start: float = 1.0
    end: float = 0.05
    duration_env_steps: int = 10_000

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "exponential"):
            raise ValueError(f"exploration.kind={self.kind!r} must be 'linear' or 'exponential'.")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"exploration.{name}={value} must be in [0, 1].")
        if self.duration_env_steps <= 0:
            raise ValueError(f"exploration.duration_env_steps={self.duration_env_steps} must be > 0.")

    def __call__(self, env_steps: int) -> float:
        t = max(env_steps, 0)
        if self.kind == "linear":
            frac = min(t / self.duration_env_steps, 1.0)
            return self.start + frac * (self.end - self.start)
        if self.kind == "exponential":
            return self.end + (self.start - self.end) * math.exp(-t / self.duration_env_steps)
        raise ValueError(f"exploration.kind={self.kind!r} must be 'linear' or 'exponential'.")
