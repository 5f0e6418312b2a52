"""The Atari collector: act on 4-frame stacks, store only the newest frame per step (``FrameReplay``).

Same interface as ``Collector`` (``step``, ``flush``, ``env_steps``, ``pop_finished_episodes``, state), so
``EnvInteractionCallback`` and ``ReplayIterable`` drive it unchanged. Differences:

- Rows are written at every step (one ``storage.set`` of ``num_envs`` rows; ``flush`` has nothing to do):
  n-step targets are built at sample time from the stored rows, not at insertion (``NStepAccumulator``
  would store a second copy of every next frame).
- A *game* ends when the env resets (game over or the time limit). Under ``nature`` a life loss sets
  ``terminated`` (no bootstrap) while the game, and the frame stack, go on; it is told apart from a
  game over by ``info["lives"]`` dropping (after a game over the env has already reset to full lives).
- Rewards are clipped to their sign for storage when the protocol says so; ``rollout/episode_return``
  is the unclipped score of whole games.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from lightq.data.frame_replay import FrameReplay
from lightq.envs.factory import env_seeds
from lightq.interaction.collector import EpisodeBookkeeping, Policy
from lightq.seeding import stream_seed

__all__ = ["AtariCollector", "make_atari_collector"]


class AtariCollector(EpisodeBookkeeping):
    """Steps an ``AtariVectorEnv`` (SAME_STEP autoreset) with a policy and writes frames to a ``FrameReplay``.

    Args:
        env: From ``lightq.envs.atari.make_atari_vec_env``.
        buffer: The frame replay (one stream per env).
        seed: Run seed; env i of rank r is reset with ``env_seeds(seed, num_envs, r)[i]`` (``lightq.seeding``).
        rank: Process rank (DDP), for seeds.
        clip_rewards: Store ``sign(r)`` instead of ``r`` (training-time clipping of the protocol).
        device: Where the replay storage lives.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        buffer: FrameReplay,
        *,
        seed: int,
        rank: int = 0,
        clip_rewards: bool = True,
        device: torch.device | str = "cpu",
    ) -> None:
        if getattr(env, "metadata", {}).get("autoreset_mode") != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError("AtariCollector needs SAME_STEP autoreset; use lightq.envs.atari.make_atari_vec_env.")
        if buffer.num_streams != env.num_envs:
            raise ValueError(f"FrameReplay has {buffer.num_streams} streams for {env.num_envs} envs; make them equal.")
        self.env = env
        self.buffer = buffer
        self.num_envs = env.num_envs
        self.seed, self.rank = seed, rank
        self.clip_rewards = clip_rewards
        self.device = torch.device(device)
        self.env_steps = 0
        self.episodes = 0
        self._staged: list = []  # nothing is staged (EnvInteractionCallback reads it)
        self._obs: np.ndarray | None = None
        self._lives = np.zeros(self.num_envs, dtype=np.int64)
        self._ep_step = np.zeros(self.num_envs, dtype=np.int64)  # frame index in the current game
        self._ep_return = np.zeros(self.num_envs, dtype=np.float64)
        self._ep_length = np.zeros(self.num_envs, dtype=np.int64)
        self._finished: list[tuple[float, int]] = []
        self._streams = np.arange(self.num_envs)
        self._false = np.zeros(self.num_envs, dtype=bool)

    def reset(self) -> None:
        from lightq.envs.atari import ale_seeds

        self._obs, info = self.env.reset(seed=ale_seeds(env_seeds(self.seed, self.num_envs, self.rank)))
        self._lives = np.asarray(info["lives"], dtype=np.int64).copy()
        self._ep_step[:] = 0
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0

    def step(self, policy: Policy, num_vector_steps: int = 1) -> int:
        """Take ``num_vector_steps`` steps of every env; return the env steps taken."""
        if self._obs is None:
            self.reset()
        for _ in range(num_vector_steps):
            obs = self._obs
            action = np.asarray(policy(obs), dtype=np.int64)
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            lives = np.asarray(info["lives"], dtype=np.int64)
            life_lost = terminated & ~truncated & (lives < self._lives)
            game_over = (terminated | truncated) & ~life_lost  # the env reset this sub-env
            stored_reward = np.sign(reward) if self.clip_rewards else reward
            stream, frame = self._streams, obs[:, -1]
            act, rew, term, ep_step, last = action, stored_reward, terminated, self._ep_step, self._false
            ended = np.flatnonzero(game_over)
            if len(ended):  # one extra row per ended game: the newest frame of its true final observation
                final = np.stack([info["final_obs"][i][-1] for i in ended])
                stream = np.concatenate([stream, ended])
                frame = np.concatenate([frame, final])
                act = np.concatenate([act, np.zeros(len(ended), dtype=np.int64)])
                rew = np.concatenate([rew, np.zeros(len(ended), dtype=rew.dtype)])
                term = np.concatenate([term, np.zeros(len(ended), dtype=bool)])
                ep_step = np.concatenate([ep_step, self._ep_step[ended] + 1])
                last = np.concatenate([last, np.ones(len(ended), dtype=bool)])
            self.buffer.add(stream=stream, frame=frame, action=act, reward=rew, terminated=term, ep_step=ep_step,
                            last=last)
            self._ep_step += 1
            self._ep_step[ended] = 0
            self._ep_return += reward
            self._ep_length += 1
            for i in ended:
                self._finished.append((float(self._ep_return[i]), int(self._ep_length[i])))
                self._ep_return[i] = 0.0
                self._ep_length[i] = 0
                self.episodes += 1
            self._lives = lives.copy()
            self._obs = next_obs
        taken = num_vector_steps * self.num_envs
        self.env_steps += taken
        return taken

    def end_games(self, obs: np.ndarray) -> None:
        """Close every stream's game at ``obs`` (the observation the collector would act on next) as a
        time-limit cut: one final-frame row each, as at a game end, so no stored transition bootstraps
        from the frames of the game that starts next. Used when a resume cannot restore the env state."""
        n = self.num_envs
        self.buffer.add(stream=self._streams, frame=obs[:, -1], action=np.zeros(n, dtype=np.int64),
                        reward=np.zeros(n, dtype=np.float32), terminated=np.zeros(n, dtype=bool),
                        ep_step=self._ep_step.copy(), last=np.ones(n, dtype=bool))  # index of obs in its game
        self._ep_step[:] = 0

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["ep_step"] = self._ep_step.tolist()  # frame index in each stream's game: its rows' ep_step
        state["lives"] = self._lives.tolist()  # a life loss is told from a game over by lives dropping
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "ep_step" in state:
            self._ep_step[:] = state["ep_step"]
            self._lives[:] = state["lives"]

    def flush(self) -> int:
        """Rows are written at every step; nothing to flush."""
        return 0


def make_atari_collector(module, *, device: torch.device | str, rank: int) -> AtariCollector:
    """The Atari collector and frame replay of an ``OffPolicyAlgorithm`` (its env, replay, n_step, γ, seed)."""
    from lightq.envs.atari import get_protocol
    from lightq.envs.factory import make_vec_env

    replay, hp = module.replay_config, module.hparams
    if replay.prioritized:
        raise ValueError(
            "replay.prioritized=true is not supported with Atari frame replay yet (validity of a row changes "
            "as the write pointer moves, which the sum tree does not track); set replay.prioritized=false."
        )
    env = make_vec_env(module.env_config)
    obs_shape = env.single_observation_space.shape
    buffer = FrameReplay(
        capacity=replay.capacity, num_streams=env.num_envs, frame_shape=obs_shape[1:], stack=obs_shape[0],
        n_step=hp.n_step, gamma=hp.gamma, device=device, storage=replay.storage, memmap_dir=replay.memmap_dir,
        seed=stream_seed(hp.seed, "replay", rank),
    )
    protocol = get_protocol(module.env_config.atari_protocol)
    return AtariCollector(env, buffer, seed=hp.seed, rank=rank, clip_rewards=protocol.clip_rewards, device=device)
