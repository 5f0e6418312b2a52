"""Atari through ale-py's ``AtariVectorEnv`` (C++ threads), under two named evaluation protocols.

``nature`` (Mnih et al. 2015, "Human-level control through deep RL", Methods and Extended Data Table 1):
    up to 30 no-op actions at reset, action repeat (frame skip) 4 with a max over the last two frames,
    84×84 grayscale, a stack of the last 4 frames, FIRE at reset for games that need it, no sticky actions;
    for *training* a life loss is a terminal transition (the game goes on) and rewards are clipped to
    their sign; *evaluation* plays full games and reports the unclipped score.
``machado`` (Machado et al. 2018, "Revisiting the ALE", §5): sticky actions with probability 0.25,
    no no-op starts, no life-loss signal, same frame processing (84×84 gray, skip 4, max-pool, stack 4)
    and reward clipping for training; evaluation reports the unclipped score of full games.

Both protocols end an episode at 108_000 frames (27_000 agent steps; 30 minutes of play), as both papers do.

What ``AtariVectorEnv`` does natively (ale-py 0.12.1, checked in ``ale_py/vector_env.py`` and by running it):
no-op starts, frame skip, max-pool, grayscale, resize, frame stack (zero-padded at a game's start),
sticky actions, FIRE reset, reward clipping, and ``life_loss_info`` (terminated on a life loss while the
game continues, the stack carries on). With ``SAME_STEP`` autoreset it returns the true final observation
in ``info["final_obs"]`` and the lives per env in ``info["lives"]``: everything the frame replay needs, so
no gymnasium wrappers are used, for training or evaluation. Reward clipping is done by lightq, not by the
env (``reward_clipping=False``), so that rollout logs still see the game score.

Evaluation uses the same C++ env with one sub-env behind a ``gymnasium.Env`` adapter, so its frames are
processed exactly like the training frames (gymnasium's ``AtariPreprocessing`` resizes differently).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

__all__ = [
    "AtariEvalEnv",
    "AtariProtocol",
    "PROTOCOLS",
    "atari_game",
    "is_atari",
    "make_atari_eval_env",
    "make_atari_vec_env",
]


@dataclass(frozen=True)
class AtariProtocol:
    """The settings of one named Atari protocol (logged with the run as ``env.atari_protocol``)."""

    name: str
    noop_max: int
    frame_skip: int
    max_pool: bool
    screen_size: int
    grayscale: bool
    frame_stack: int
    fire_reset: bool
    repeat_action_probability: float  # sticky actions
    life_loss_terminal: bool  # training only
    clip_rewards: bool  # training only
    max_frames_per_episode: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PROTOCOLS: dict[str, AtariProtocol] = {
    "nature": AtariProtocol(
        name="nature", noop_max=30, frame_skip=4, max_pool=True, screen_size=84, grayscale=True, frame_stack=4,
        fire_reset=True, repeat_action_probability=0.0, life_loss_terminal=True, clip_rewards=True,
        max_frames_per_episode=108_000,
    ),
    "machado": AtariProtocol(
        name="machado", noop_max=0, frame_skip=4, max_pool=True, screen_size=84, grayscale=True, frame_stack=4,
        fire_reset=True, repeat_action_probability=0.25, life_loss_terminal=False, clip_rewards=True,
        max_frames_per_episode=108_000,
    ),
}


def is_atari(env_id: str) -> bool:
    """Whether ``env_id`` names an Atari game (``ALE/<Game>-v5``): those go through this module."""
    return env_id.startswith("ALE/")


def atari_game(env_id: str) -> str:
    """``ALE/Pong-v5`` → ``pong``, ``ALE/MsPacman-v5`` → ``ms_pacman`` (ale-py's ROM names)."""
    match = re.fullmatch(r"ALE/([A-Za-z0-9]+)-v\d+", env_id)
    if match is None:
        raise ValueError(f"env.id={env_id!r} is not an Atari id of the form 'ALE/<Game>-v5', e.g. 'ALE/Pong-v5'.")
    game = re.sub(r"(?<!^)(?=[A-Z])", "_", match.group(1)).lower()
    from ale_py import roms

    known = roms.get_all_rom_ids()
    if game not in known:
        import difflib

        def env_id_of(rom: str) -> str:
            return "ALE/" + "".join(part.capitalize() for part in rom.split("_")) + "-v5"

        close = difflib.get_close_matches(game, known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(env_id_of(c)) for c in close)}?" if close else ""
        raise ValueError(f"env.id={env_id!r}: ale-py has no Atari game {game!r}.{hint}")
    return game


def get_protocol(name: str) -> AtariProtocol:
    """The protocol named ``name`` (``nature`` or ``machado``)."""
    if name not in PROTOCOLS:
        raise ValueError(f"env.atari_protocol={name!r} is not a known protocol; choose one of {sorted(PROTOCOLS)}.")
    return PROTOCOLS[name]


def _ale_kwargs(protocol: AtariProtocol, *, training: bool, max_episode_steps: int | None) -> dict[str, Any]:
    frames = protocol.max_frames_per_episode
    if max_episode_steps is not None:
        frames = max_episode_steps * protocol.frame_skip
    return {
        "img_height": protocol.screen_size,
        "img_width": protocol.screen_size,
        "grayscale": protocol.grayscale,
        "stack_num": protocol.frame_stack,
        "frameskip": protocol.frame_skip,
        "maxpool": protocol.max_pool,
        "noop_max": protocol.noop_max,
        "use_fire_reset": protocol.fire_reset,
        "repeat_action_probability": protocol.repeat_action_probability,
        # ``episodic_life`` would *reset* the game on a life loss; ``life_loss_info`` only flags it.
        "episodic_life": False,
        "life_loss_info": protocol.life_loss_terminal and training,
        "reward_clipping": False,  # clipped by the collector (training only), see the module docstring
        "max_num_frames_per_episode": frames,
    }


def make_atari_vec_env(
    env_id: str, *, num_envs: int, protocol: str = "nature", max_episode_steps: int | None = None
) -> gym.vector.VectorEnv:
    """The training vector env: ``AtariVectorEnv`` with SAME_STEP autoreset, unclipped rewards.

    Observations are uint8 ``[num_envs, 4, 84, 84]``; ``terminated`` is also set on a life loss under
    ``nature`` (the game continues: compare ``info["lives"]``). ``max_episode_steps`` is in agent steps.
    """
    from ale_py.vector_env import AtariVectorEnv

    proto = get_protocol(protocol)
    env = AtariVectorEnv(
        atari_game(env_id), num_envs, autoreset_mode=AutoresetMode.SAME_STEP,
        **_ale_kwargs(proto, training=True, max_episode_steps=max_episode_steps),
    )
    env.metadata["lightq_atari_protocol"] = proto.as_dict()
    return env


def ale_seeds(seeds) -> np.ndarray:
    """ale-py's vector env takes C++ ``int`` seeds: lightq's 63-bit stream seeds (``lightq.seeding``) folded
    to 31 bits. Distinct streams can then coincide only by a 1-in-2^31 chance per pair."""
    return np.asarray([int(s) % 2**31 for s in np.atleast_1d(seeds)], dtype=np.int64)


class AtariEvalEnv(gym.Env):
    """One full-game Atari env (``AtariVectorEnv`` with a single sub-env) with the ``gymnasium.Env`` API.

    No life-loss signal and no reward clipping: ``step`` returns the game score change, and the episode
    is the whole game (or 108_000 frames).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, env_id: str, *, protocol: str = "nature", max_episode_steps: int | None = None) -> None:
        from ale_py.vector_env import AtariVectorEnv

        self.protocol = get_protocol(protocol)
        self._vec = AtariVectorEnv(
            atari_game(env_id), 1, autoreset_mode=AutoresetMode.SAME_STEP,
            **_ale_kwargs(self.protocol, training=False, max_episode_steps=max_episode_steps),
        )
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self._vec.reset(seed=None if seed is None else ale_seeds([seed]))
        return obs[0], {k: v[0] for k, v in info.items()}

    def step(self, action):
        obs, reward, terminated, truncated, info = self._vec.step(np.asarray(action, dtype=np.int64).reshape(1))
        done = bool(terminated[0] or truncated[0])
        last = info["final_obs"][0] if done and "final_obs" in info else obs[0]
        info = {k: v[0] for k, v in info.items() if k != "final_obs"}
        return last, float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def close(self) -> None:
        self._vec.close()


def make_atari_eval_env(env_id: str, *, protocol: str = "nature", max_episode_steps: int | None = None) -> AtariEvalEnv:
    """The evaluation env of ``protocol``: full games, unclipped score."""
    return AtariEvalEnv(env_id, protocol=protocol, max_episode_steps=max_episode_steps)
