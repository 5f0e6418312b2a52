"""Gymnasium ids to vector envs.

Autoreset mode is SAME_STEP on purpose: gymnasium 1.x defaults to NEXT_STEP, where the
step after an episode end returns the reset observation and silently ignores the action, so a naive
collector stores a transition that crosses two episodes (CleanRL#460/#499, SB3#934). With SAME_STEP,
``step`` returns the reset observation in ``obs`` and the true last observation of the finished episode
in ``info["final_obs"]``; the collector stores the latter as ``next_obs`` (truncation bootstraps from it).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from lightq.seeding import stream_seed

__all__ = [
    "EnvConfig", "LeanSyncVectorEnv", "UnsupportedSpaceError", "check_spaces", "env_seeds", "make_env", "make_vec_env",
]


@dataclass
class EnvConfig:
    """Which environment to train on and how to vectorize it.

    Attributes:
        id: A gymnasium id, e.g. ``CartPole-v1``.
        num_envs: Environments stepped together; each has its own seed (``lightq.seeding``, stream ``train_env``).
        vectorization: ``sync`` (one process; deterministic) or ``async`` (one subprocess per env).
        max_episode_steps: Override of the env's time limit (``None`` keeps the registered one).
        atari_protocol: For ``ALE/<Game>-v5`` ids: ``nature`` or ``machado`` (``lightq.envs.atari``; Atari
            always uses ale-py's C++ vector env, ``vectorization`` does not apply);
            ignored for other ids.
    """

    id: str = "CartPole-v1"
    num_envs: int = 1
    vectorization: Literal["sync", "async"] = "sync"
    max_episode_steps: int | None = None
    atari_protocol: Literal["nature", "machado"] = "nature"


class UnsupportedSpaceError(ValueError):
    """An algorithm was given an observation or action space it cannot handle."""


# Which algorithms accept which action spaces; used to name the alternatives in errors.
ACTION_SPACES = {
    "Discrete": ["DQN"],
    "Box": ["DDPG", "NAF", "CEMQ"],
}


def _check_env_id(env_id: str) -> None:
    if env_id in gym.registry:
        return
    if ":" in env_id:  # gymnasium's "package.module:EnvId": importing the module registers the id
        module, env_id = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"env.id: cannot import {module!r} to register {env_id!r} ({exc}).") from exc
        if env_id in gym.registry:
            return
    if env_id.startswith("ALE/"):
        import ale_py  # noqa: F401  registers ALE/* ids

        gym.register_envs(ale_py)
        if env_id in gym.registry:
            return
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"env.id={env_id!r} is not a registered gymnasium environment.{hint}")


def env_seeds(seed: int, num_envs: int, rank: int = 0) -> list[int]:
    """One reset seed per training env of this rank, from the run seed's ``train_env`` stream (``lightq.seeding``):
    no two envs of any two runs share one."""
    return [stream_seed(seed, "train_env", rank, i) for i in range(num_envs)]


class ShiftedDiscrete(gym.ActionWrapper):
    """``Discrete(n, start=k)`` seen as ``Discrete(n)``: the agent picks index i, the env receives i + k.

    lightq's policies, replay and losses index actions from 0 (argmax, ``gather``); converting once, at
    the env boundary, keeps every one of them right for spaces that start elsewhere.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.start = int(env.action_space.start)
        self.action_space = gym.spaces.Discrete(int(env.action_space.n), seed=None)

    def action(self, action):
        return np.asarray(action) + self.start


def _shift_discrete_start(env: gym.Env) -> gym.Env:
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete) and int(space.start) != 0:
        return ShiftedDiscrete(env)
    return env


def make_env(config: EnvConfig, *, render_mode: str | None = None) -> gym.Env:
    """A single (non-vector) env, e.g. for evaluation."""
    if config.id.startswith("ALE/"):  # full games, unclipped score (lightq.envs.atari)
        from lightq.envs.atari import make_atari_eval_env

        return make_atari_eval_env(config.id, protocol=config.atari_protocol, max_episode_steps=config.max_episode_steps)
    _check_env_id(config.id)
    kwargs = {}
    if config.max_episode_steps is not None:
        kwargs["max_episode_steps"] = config.max_episode_steps
    if render_mode is not None:  # only when asked: many research envs take no render_mode argument
        kwargs["render_mode"] = render_mode
    return _shift_discrete_start(gym.make(config.id, **kwargs))


def make_vec_env(config: EnvConfig) -> gym.vector.VectorEnv:
    """A vector env with SAME_STEP autoreset (see the module docstring). Seed it with ``reset(seed=env_seeds(...))``."""
    if config.num_envs < 1:
        raise ValueError(f"env.num_envs={config.num_envs} must be >= 1.")
    if config.id.startswith("ALE/"):  # C++ vector env, SAME_STEP autoreset (lightq.envs.atari)
        from lightq.envs.atari import make_atari_vec_env

        return make_atari_vec_env(
            config.id, num_envs=config.num_envs, protocol=config.atari_protocol,
            max_episode_steps=config.max_episode_steps,
        )
    _check_env_id(config.id)
    kwargs = {}
    if config.max_episode_steps is not None:
        kwargs["max_episode_steps"] = config.max_episode_steps
    vector_kwargs: dict = {"autoreset_mode": AutoresetMode.SAME_STEP}
    if config.vectorization == "sync":
        # SyncVectorEnv's copy=True deep-copies the observations on every step (~10 µs, through copy.deepcopy);
        # with copy=False it returns its own buffer, overwritten by the next step: lightq.interaction.Collector
        # copies it (np.ndarray.copy) before keeping it.
        vector_kwargs["copy"] = False
    env = gym.make_vec(
        config.id,
        num_envs=config.num_envs,
        vectorization_mode=config.vectorization,
        vector_kwargs=vector_kwargs,
        wrappers=[_shift_discrete_start],
        **kwargs,
    )
    if type(env) is gym.vector.SyncVectorEnv and LeanSyncVectorEnv.handles(env):
        # gymnasium built and seeded-to-be the env; only ``step`` changes (same attributes, so the class
        # is switched rather than the env rebuilt by hand: make_vec's spec and wrapper handling stay theirs).
        env.__class__ = LeanSyncVectorEnv
    return env


class LeanSyncVectorEnv(gym.vector.SyncVectorEnv):
    """gymnasium's ``SyncVectorEnv`` with a leaner ``step`` for SAME_STEP autoreset, ``copy=False`` and Box
    observations (``make_vec_env`` switches the class of the env ``gym.make_vec`` built).

    ``step`` makes the same calls on the sub-envs in the same order and returns the same values
    (observation buffer, copies of rewards/terminations/truncations, infos with ``final_obs``/``final_info``
    and masks) as ``SyncVectorEnv.step``; it skips the generic per-step dispatch (``iterate`` over the action
    space, ``concatenate`` into the buffer, ``_add_info`` of empty infos): ~20 µs of a ~30 µs one-env
    CartPole step on this CPU. ``tests/unit/test_lean_vector_env.py`` checks it against ``SyncVectorEnv``.
    """

    @staticmethod
    def handles(env: gym.vector.SyncVectorEnv) -> bool:
        return (env.autoreset_mode == AutoresetMode.SAME_STEP and not env.copy
                and isinstance(env.single_observation_space, gym.spaces.Box)
                and isinstance(env.single_action_space, (gym.spaces.Discrete, gym.spaces.Box)))

    def step(self, actions):
        # No per-step check of ``handles``: make_vec_env switches the class only when it holds, and the
        # settings it reads (autoreset mode, copy, spaces) do not change after construction.
        infos: dict = {}
        observations, rewards, terminations, truncations = (
            self._observations, self._rewards, self._terminations, self._truncations)
        for i, env in enumerate(self.envs):
            obs, rewards[i], terminations[i], truncations[i], env_info = env.step(actions[i])
            if terminations[i] or truncations[i]:
                infos = self._add_info(infos, {"final_obs": obs, "final_info": env_info}, i)
                obs, env_info = env.reset()
            if env_info:
                infos = self._add_info(infos, env_info, i)
            self._env_obs[i] = obs
            observations[i] = obs
        self._autoreset_envs = np.logical_or(terminations, truncations)
        return observations, np.copy(rewards), np.copy(terminations), np.copy(truncations), infos


def check_spaces(
    observation_space: gym.Space, action_space: gym.Space, *, algorithm: str, action_kind: str
) -> None:
    """Fail before training when ``algorithm`` cannot handle the env's spaces.

    Args:
        observation_space: The single-env observation space.
        action_space: The single-env action space.
        algorithm: Name used in the message, e.g. ``DQN``.
        action_kind: ``Discrete`` or ``Box``: the action space the algorithm needs.
    """
    want = {"Discrete": gym.spaces.Discrete, "Box": gym.spaces.Box}[action_kind]
    if not isinstance(action_space, want):
        kind = type(action_space).__name__
        others = ACTION_SPACES.get(kind)
        fix = (
            f" Algorithms that accept {kind} actions: {', '.join(others)}."
            if others
            else f" No lightq algorithm accepts {kind} actions; wrap the env to give Discrete or Box actions."
        )
        raise UnsupportedSpaceError(
            f"{algorithm} needs a {action_kind} action space, got {action_space}.{fix}"
        )
    if isinstance(action_space, gym.spaces.Box):
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            raise UnsupportedSpaceError(
                f"{algorithm} needs a bounded Box action space, got {action_space}; "
                "wrap the env with gymnasium.wrappers.ClipAction or RescaleAction."
            )
    if not isinstance(observation_space, gym.spaces.Box):
        raise UnsupportedSpaceError(
            f"{algorithm} needs a Box observation space (vector or image), got {observation_space}; "
            "wrap the env with gymnasium.wrappers.FlattenObservation (Dict/Tuple) or a one-hot wrapper (Discrete)."
        )
