"""The Lightning-free collector: act → step → store whole vector steps into the replay buffer.

It knows nothing of Lightning, so it is usable from a plain loop, a test, or the async collector.
Transitions are staged in host memory and written to the TorchRL buffer by ``flush()`` in one
``extend`` call (TorchRL's per-call overhead is ~0.1–0.3 ms here; per transition in a chunk it is
~5 µs), right before the next sample is drawn, so no sample ever misses a staged transition.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict

from lightq.data.nstep import NStepAccumulator
from lightq.envs.factory import env_seeds
from lightq.reliability.faults import EnvFaultError

__all__ = ["Collector", "EpisodeBookkeeping", "Policy"]

# obs (num_envs, *obs_shape) numpy -> actions (num_envs, *action_shape) numpy. Policies take and give
# numpy so that steps needing no network (warm-up, ε coin flips that all came up "explore") pay no
# tensor conversions; a policy that runs a network moves the observation to its device itself.
Policy = Callable[[np.ndarray], np.ndarray]


class EpisodeBookkeeping:
    """What every collector keeps beside its env and buffer: the env-step clock and episode statistics.

    Subclasses set ``env``, ``env_steps``, ``episodes``, ``_ep_return``, ``_ep_length`` and ``_finished``.
    """

    def pop_finished_episodes(self) -> list[tuple[float, int]]:
        """(return, length) of the episodes finished since the last call."""
        done, self._finished = self._finished, []
        return done

    def state_dict(self) -> dict:
        return {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "ep_return": torch.as_tensor(self._ep_return),
            "ep_length": torch.as_tensor(self._ep_length),
        }

    def load_state_dict(self, state: dict) -> None:
        self.env_steps = int(state["env_steps"])
        self.episodes = int(state["episodes"])
        self._ep_return = state["ep_return"].numpy().copy()
        self._ep_length = state["ep_length"].numpy().copy()

    def close(self) -> None:
        self.env.close()


class Collector(EpisodeBookkeeping):
    """Steps a vector env with a policy and stores n-step transitions in a replay buffer.

    Args:
        env: A vector env created with SAME_STEP autoreset (``lightq.envs.make_vec_env``).
        buffer: A TorchRL replay buffer (``lightq.data.make_replay_buffer``).
        n_step: Rewards summed per stored transition.
        gamma: Discount per env step.
        seed: Run seed; env i of rank r is reset with ``env_seeds(seed, num_envs, r)[i]`` (``lightq.seeding``).
        rank: Process rank (DDP), for seeds.
        device: Where the replay storage lives (transitions are moved there at insertion).
        env_id: Named in the error when the env raises (``EnvFaultError``).
        check_data: Called as ``check_data(reward, next_obs, transition, env_step)`` after every vector
            step, before anything is stored; it may raise (the Watchdog's env-side checks).
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        buffer,
        *,
        n_step: int,
        gamma: float,
        seed: int,
        rank: int = 0,
        device: torch.device | str = "cpu",
        env_id: str = "env",
        check_data: Callable | None = None,
    ) -> None:
        if getattr(env, "metadata", {}).get("autoreset_mode") != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError("Collector needs a vector env with SAME_STEP autoreset; use lightq.envs.make_vec_env.")
        self.env = env
        self._env_copies = getattr(env, "copy", True)  # False: SyncVectorEnv(copy=False) from make_vec_env
        self.buffer = buffer
        self.num_envs = env.num_envs
        self.seed = seed
        self.rank = rank
        self.device = torch.device(device)
        self.env_id = env_id
        self.check_data = check_data
        self.nstep = NStepAccumulator(num_envs=self.num_envs, n_step=n_step, gamma=gamma)
        self.env_steps = 0  # env steps taken by this collector (all envs counted)
        self._obs: np.ndarray | None = None
        self._staged: list[dict[str, np.ndarray]] = []
        self._ep_return = np.zeros(self.num_envs, dtype=np.float64)
        self._ep_length = np.zeros(self.num_envs, dtype=np.int64)
        self._finished: list[tuple[float, int]] = []  # (return, length) since the last pop
        self.episodes = 0

    # -- acting ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Reset all envs with their derived seeds and drop partial episodes."""
        try:
            obs, _ = self.env.reset(seed=env_seeds(self.seed, self.num_envs, self.rank))
            self._obs = obs if self._env_copies else obs.copy()
        except Exception as exc:
            raise EnvFaultError(self.env_id, "reset", self.env_steps, exc) from exc
        self.nstep.reset()
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0

    def step(self, policy: Policy, num_vector_steps: int = 1) -> int:
        """Take ``num_vector_steps`` steps of every env; return the env steps taken."""
        if self._obs is None:
            self.reset()
        env_step, check, staged = self.env.step, self.check_data, self._staged
        for k in range(num_vector_steps):
            obs = self._obs
            action = policy(obs)
            try:
                next_obs, reward, terminated, truncated, info = env_step(action)
            except Exception as exc:  # includes a dead AsyncVectorEnv worker
                raise EnvFaultError(self.env_id, "step", self.env_steps + k * self.num_envs, exc) from exc
            if check is not None:
                check(reward, next_obs, {"obs": obs, "action": action, "reward": reward, "next_obs": next_obs,
                                         "terminated": terminated, "truncated": truncated},
                      self.env_steps + (k + 1) * self.num_envs)
            if not self._env_copies:  # the env's buffer: overwritten by its next step
                next_obs = next_obs.copy()
            done = terminated | truncated
            ended = np.flatnonzero(done) if done.any() else ()
            stored_next = next_obs
            if len(ended):
                # SAME_STEP autoreset: next_obs already holds the reset observation of finished envs;
                # the true last observation is in info["final_obs"]. Store that one.
                stored_next = next_obs.copy()
                for i in ended:
                    stored_next[i] = info["final_obs"][i]
            chunk = self.nstep.add(obs, action, reward, stored_next, terminated, truncated)
            if chunk is not None:
                staged.append(chunk)
            self._ep_return += reward
            self._ep_length += 1
            for i in ended:
                self._finished.append((float(self._ep_return[i]), int(self._ep_length[i])))
                self._ep_return[i] = 0.0
                self._ep_length[i] = 0
                self.episodes += 1
            self._obs = next_obs
        taken = num_vector_steps * self.num_envs
        self.env_steps += taken
        return taken

    # -- storing --------------------------------------------------------------------------------
    def flush(self) -> int:
        """Write staged transitions to the buffer in one ``extend``; return how many."""
        staged, self._staged = self._staged, []
        return self.write(staged)

    def write(self, chunks: list[dict[str, np.ndarray]]) -> int:
        """Write staged chunks to the buffer in one ``extend``; return how many transitions."""
        if not chunks:
            return 0
        if len(chunks) == 1:
            arrays = chunks[0]
        else:
            arrays = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        n = len(arrays["reward"])
        td = TensorDict(
            {k: torch.as_tensor(v, device=self.device) for k, v in arrays.items()},
            batch_size=[n],
        )
        self.buffer.extend(td)
        return n

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "nstep": self.nstep.state_dict()}

