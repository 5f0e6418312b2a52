"""N-step transitions, built at insertion time (Acme's NStepTransitionAdder shape).

For each env, the last n (obs, action, reward) are kept. A transition is emitted when n rewards are
pending, and at every episode end all pending ones are flushed with the k < n rewards actually
received. Each stored transition is self-contained:

    reward   = Σ_{j<k} γ^j r_{t+j}
    next_obs = s_{t+k}                 (the true final observation at an episode end)
    terminated = whether s_{t+k} is terminal (cuts the bootstrap; truncation does not)
    discount = γ^k                      (k = number of rewards summed, k ≤ n)

so the TD target is ``reward + discount * (1 - terminated) * max_a Q'(next_obs, a)``. Because nothing is
computed at sample time, a transition can never read across the buffer's write pointer or across
two episodes, whatever the wrap-around (the bug class of SB3's n-step buffer, see its ``test_n_step_replay``).
The price is n-1 steps of delay before a transition becomes sampleable.
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["NStepAccumulator"]


class NStepAccumulator:
    """Turns vector-env steps into n-step transitions (numpy in, dict of numpy arrays out).

    Args:
        num_envs: Number of envs in the vector env.
        n_step: Rewards summed per transition (1 = one-step Q-learning).
        gamma: Discount per env step.
    """

    def __init__(self, *, num_envs: int, n_step: int, gamma: float) -> None:
        if n_step < 1:
            raise ValueError(f"n_step={n_step} must be >= 1.")
        self.num_envs = num_envs
        self.n_step = n_step
        self.gamma = float(gamma)
        self._pending: list[deque] = [deque() for _ in range(num_envs)]
        self._gamma_1 = np.full(num_envs, self.gamma, dtype=np.float32)  # γ^1, shared (extend copies it)

    def reset(self) -> None:
        """Drop pending partial transitions (the envs were reset)."""
        for q in self._pending:
            q.clear()

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> dict[str, np.ndarray] | None:
        """Add one vector step; return the transitions that became complete (or ``None``).

        ``next_obs`` must hold the true final observation for envs whose episode ended at this step.
        """
        if self.n_step == 1:  # fast path: every step is a complete transition
            return {
                "obs": obs,
                "action": action,
                "reward": reward.astype(np.float32),
                "next_obs": next_obs,
                "terminated": terminated.astype(bool),
                "discount": self._gamma_1,
            }
        out: dict[str, list] = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated", "discount")}
        for i in range(self.num_envs):
            q = self._pending[i]
            q.append((obs[i], action[i], float(reward[i])))
            done = bool(terminated[i]) or bool(truncated[i])
            if done:
                while q:  # flush: k = len(q) rewards for the oldest, down to 1 for the newest
                    self._emit(out, q, next_obs[i], bool(terminated[i]))
                    q.popleft()
            elif len(q) == self.n_step:
                self._emit(out, q, next_obs[i], False)
                q.popleft()
        if not out["obs"]:
            return None
        return {
            "obs": np.stack(out["obs"]),
            "action": np.stack(out["action"]),
            "reward": np.asarray(out["reward"], dtype=np.float32),
            "next_obs": np.stack(out["next_obs"]),
            "terminated": np.asarray(out["terminated"], dtype=bool),
            "discount": np.asarray(out["discount"], dtype=np.float32),
        }

    def _emit(self, out: dict, q: deque, next_obs: np.ndarray, terminated: bool) -> None:
        ret, g = 0.0, 1.0
        for _, _, r in q:
            ret += g * r
            g *= self.gamma
        o, a, _ = q[0]
        out["obs"].append(o)
        out["action"].append(a)
        out["reward"].append(ret)
        out["next_obs"].append(next_obs)
        out["terminated"].append(terminated)
        out["discount"].append(g)  # γ^k for the k rewards summed

    def state_dict(self) -> dict:
        return {
            "pending": [
                [(np.asarray(o).tolist(), np.asarray(a).tolist(), r) for o, a, r in q] for q in self._pending
            ]
        }

    def load_state_dict(self, state: dict, *, obs_dtype=np.float32, action_dtype=np.int64) -> None:
        self._pending = [
            deque((np.asarray(o, dtype=obs_dtype), np.asarray(a, dtype=action_dtype), float(r)) for o, a, r in q)
            for q in state["pending"]
        ]
