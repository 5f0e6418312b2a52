"""Saving and restoring the state of running environments, for exact resume (issue 6).

A checkpoint must be loadable with ``torch.load(..., weights_only=True)``, so states are plain
containers of ints, floats, strings, lists and tensors (``portable``/``unportable`` convert numpy).

What is restorable is decided per env by a small registry keyed on the *unwrapped* env:

- gymnasium classic control (CartPole, Pendulum, MountainCar[Continuous], Acrobot): the physical
  ``state`` (+ Pendulum's ``last_u``, CartPole's ``steps_beyond_terminated``) and the env's
  ``np_random`` bit-generator state;
- ale-py's ``AtariEnv``: ``ale.cloneState(include_rng=True)`` serialized to bytes, and the env's
  ``np_random`` (used for sticky actions / no-op starts);
- anything else: not restorable. ``get_vector_env_state`` then returns ``None`` and the resume
  resets the episodes (the caller warns that it does).

Wrappers are walked from the outside in; ``TimeLimit`` (its step count), ``OrderEnforcing`` and
``PassiveEnvChecker`` are known. An unknown wrapper may hold state we cannot see (frame stacks,
episode statistics), so it makes the env unrestorable rather than silently half-restored.
Only ``SyncVectorEnv`` sub-envs are reachable; ``AsyncVectorEnv`` runs them in other processes.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

__all__ = ["get_vector_env_state", "portable", "set_vector_env_state", "unportable", "why_not_restorable"]


# -- weights_only-safe conversion -------------------------------------------------------------------
def portable(x: Any) -> Any:
    """numpy arrays/scalars → tensors (dtype kept), tuples → lists, recursively; the rest unchanged."""
    if isinstance(x, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(x).copy())}
    if isinstance(x, np.generic):
        return {"__npscalar__": torch.from_numpy(np.asarray(x).reshape(1).copy())}
    if isinstance(x, dict):
        return {k: portable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [portable(v) for v in x]
    return x


def unportable(x: Any) -> Any:
    """Inverse of ``portable`` (tuples come back as lists)."""
    if isinstance(x, dict):
        if "__ndarray__" in x:
            return x["__ndarray__"].numpy().copy()
        if "__npscalar__" in x:
            return x["__npscalar__"].numpy()[0]
        return {k: unportable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [unportable(v) for v in x]
    return x


def _rng_state(rng: np.random.Generator | None) -> dict | None:
    return None if rng is None else rng.bit_generator.state


def _set_rng_state(env: gym.Env, state: dict | None) -> None:
    if state is None:
        return
    if env._np_random is None:  # never seeded: make one of the right kind, then overwrite its state
        env._np_random = np.random.Generator(getattr(np.random, state["bit_generator"])())
    env._np_random.bit_generator.state = state


# -- handlers for unwrapped envs --------------------------------------------------------------------
_CLASSIC_FIELDS = ("state", "last_u", "steps_beyond_terminated")


def _classic_get(env: gym.Env) -> dict:
    fields = {k: portable(getattr(env, k)) for k in _CLASSIC_FIELDS if hasattr(env, k)}
    return {"fields": fields, "np_random": _rng_state(env._np_random)}


def _classic_set(env: gym.Env, state: dict) -> None:
    for key, value in state["fields"].items():
        value = unportable(value)
        if key == "state" and isinstance(value, list):  # MountainCar/Acrobot may hold tuples
            value = tuple(value)
        setattr(env, key, value)
    _set_rng_state(env, state["np_random"])


def _ale_get(env: gym.Env) -> dict:
    # cloneState(include_rng=True) captures the emulator and its sticky-action RNG; ALEState pickles
    # to bytes through __getstate__, which we store as a uint8 tensor (no pickle in the checkpoint).
    ale_state = env.ale.cloneState(include_rng=True)
    raw = np.frombuffer(bytes(ale_state.__getstate__()), dtype=np.uint8)
    return {"ale": torch.from_numpy(raw.copy()), "np_random": _rng_state(env._np_random)}


def _ale_set(env: gym.Env, state: dict) -> None:
    import ale_py

    ale_state = ale_py.ALEState.__new__(ale_py.ALEState)
    ale_state.__setstate__(state["ale"].numpy().tobytes())
    env.ale.restoreState(ale_state)
    _set_rng_state(env, state["np_random"])


def _handler(env: gym.Env) -> tuple[str, Callable, Callable] | None:
    module = type(env).__module__
    if module.startswith("gymnasium.envs.classic_control"):
        return "classic_control", _classic_get, _classic_set
    if type(env).__name__ == "AtariEnv" and module.startswith("ale_py"):
        return "ale", _ale_get, _ale_set
    return None


# -- wrappers -----------------------------------------------------------------------------------
_WRAPPER_FIELDS = {
    "TimeLimit": ("_elapsed_steps",),
    "OrderEnforcing": ("_has_reset",),
    "PassiveEnvChecker": ("checked_reset", "checked_step", "checked_render"),
}


def _wrapper_chain(env: gym.Env) -> tuple[list[gym.Wrapper], gym.Env]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain, env


def _why_not_env(env: gym.Env) -> str | None:
    chain, base = _wrapper_chain(env)
    unknown = [type(w).__name__ for w in chain if type(w).__name__ not in _WRAPPER_FIELDS]
    if unknown:
        return f"wrapper(s) {unknown} hold state lightq cannot save"
    if _handler(base) is None:
        return f"no state handler for {type(base).__module__}.{type(base).__name__}"
    return None


def why_not_restorable(vec_env: gym.vector.VectorEnv) -> str | None:
    """``None`` when ``get_vector_env_state`` can capture ``vec_env``; otherwise the reason, in words."""
    if type(vec_env).__name__ == "AtariVectorEnv":  # ale-py's C++ vector env: the only Atari path of lightq
        return ("ale-py's AtariVectorEnv cannot save its emulators' state; the replay buffer and every random "
                "stream are restored exactly, and each game in flight is cut there as at a time limit")
    if not isinstance(vec_env, gym.vector.SyncVectorEnv):
        return f"{type(vec_env).__name__} runs its envs in other processes (use env.vectorization: sync)"
    for sub in vec_env.envs:
        reason = _why_not_env(sub)
        if reason is not None:
            return reason
    return None


def get_vector_env_state(vec_env: gym.vector.VectorEnv) -> dict | None:
    """The state of every sub-env of a ``SyncVectorEnv`` (weights_only-safe), or ``None`` if not restorable."""
    if why_not_restorable(vec_env) is not None:
        return None
    envs = []
    for sub in vec_env.envs:
        chain, base = _wrapper_chain(sub)
        kind, get, _ = _handler(base)
        wrappers = [{k: portable(getattr(w, k)) for k in _WRAPPER_FIELDS[type(w).__name__] if hasattr(w, k)}
                    for w in chain]
        envs.append({"kind": kind, "type": type(base).__name__, "env": get(base), "wrappers": wrappers})
    return {"envs": envs, "autoreset_envs": portable(vec_env._autoreset_envs)}


def set_vector_env_state(vec_env: gym.vector.VectorEnv, state: dict) -> None:
    """Restore ``get_vector_env_state``'s output into a vector env built from the same config.

    The vector env must have been ``reset`` once (wrappers such as ``OrderEnforcing`` demand it).
    """
    if why_not_restorable(vec_env) is not None or len(state["envs"]) != vec_env.num_envs:
        raise ValueError(
            f"Cannot restore env state into {type(vec_env).__name__} with {vec_env.num_envs} envs "
            f"(saved: {len(state['envs'])} envs); resume with the env config of the checkpoint."
        )
    for sub, saved in zip(vec_env.envs, state["envs"]):
        chain, base = _wrapper_chain(sub)
        if type(base).__name__ != saved["type"] or len(chain) != len(saved["wrappers"]):
            raise ValueError(
                f"Saved env is {saved['type']} with {len(saved['wrappers'])} wrappers, this one is "
                f"{type(base).__name__} with {len(chain)}; resume with the env config of the checkpoint."
            )
        for wrapper, fields in zip(chain, saved["wrappers"]):
            for key, value in fields.items():
                setattr(wrapper, key, unportable(value))
        _handler(base)[2](base, saved["env"])
    vec_env._autoreset_envs = unportable(state["autoreset_envs"])
