"""Exact resume: everything beyond networks/optimizers/clocks that an ``OffPolicyAlgorithm`` must carry
across a checkpoint so that "train N, checkpoint, resume in a new process, train N" equals "train 2N".

Two parts, both loadable with ``torch.load(..., weights_only=True)``:

- ``capture_state`` → ``checkpoint["lightq"]["resume"]`` (small): every random generator the module
  owns (numpy ``Generator`` bit-generator states, ``torch.Generator`` states), the global torch / numpy /
  python RNG states, the collector's current observations, episode statistics, n-step pending
  transitions, the env state (``lightq.envs.state``), and the evaluation bookkeeping.
- ``capture_replay`` → the per-rank replay sidecar (large): the TorchRL buffer's ``state_dict`` (storage,
  write cursor, length, sampler trees, generator), the batches already drawn but not yet served
  (``ReplayConfig.batches_per_sample``), queued priority updates, and staged transitions.

Capturing changes nothing in the running process (no flush, no early priority update), so a run that
writes checkpoints computes exactly what a run that does not would.
"""

from __future__ import annotations

import random
import warnings
from collections import deque
from typing import Any

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_warn

from lightq.data.replay import Batch
from lightq.envs.factory import env_seeds
from lightq.envs.state import get_vector_env_state, portable, set_vector_env_state, unportable, why_not_restorable

__all__ = ["capture_replay", "capture_state", "continue_unfinished_run", "restore_replay", "restore_state"]


def continue_unfinished_run(trainer, checkpoint: dict[str, Any], *, remaining_updates: int) -> None:
    """Let a resumed run train its remaining updates.

    A lightq run is one Lightning epoch. A run stopped by ``trainer.max_steps`` (or a finished run that
    is extended with a larger ``total_env_steps``) was saved with that epoch counted as processed, so
    Lightning would stop at once with "max_epochs=1 reached". Lightning compares ``max_epochs`` with the
    processed-epoch count that it restores from the checkpoint's loop state (after this hook runs), so
    the limit is raised to one epoch more when lightq's own clock says updates remain.
    """
    if remaining_updates <= 0:
        return
    fit_loop = trainer.fit_loop
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    processed = int(progress.get("processed", checkpoint.get("epoch", 0)))
    if fit_loop.max_epochs is not None and 0 <= fit_loop.max_epochs <= processed:
        fit_loop.max_epochs = processed + 1


# -- random generators ----------------------------------------------------------------------------
def _generators(module) -> dict[str, np.random.Generator | torch.Generator]:
    """Every generator the module owns: its attributes, and its exploration noise's."""
    found = {name: v for name, v in vars(module).items() if isinstance(v, (np.random.Generator, torch.Generator))}
    noise = getattr(module, "noise", None)
    if noise is not None and isinstance(getattr(noise, "rng", None), np.random.Generator):
        found["noise.rng"] = noise.rng
    return found


def _generator_state(gen) -> dict:
    if isinstance(gen, np.random.Generator):
        return {"numpy": gen.bit_generator.state}
    return {"torch": gen.get_state(), "device": str(gen.device)}


def _set_generator_state(gen, state: dict) -> None:
    if isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state["numpy"]
    else:
        gen.set_state(state["torch"])


def _global_rng_state() -> dict:
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt), gauss],
        "numpy": [kind, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_global_rng_state(state: dict) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the checkpoint part ----------------------------------------------------------------------------
def capture_state(module) -> dict[str, Any]:
    c = module.collector
    env_state = get_vector_env_state(c.env)
    return {
        "generators": {name: _generator_state(g) for name, g in _generators(module).items()},
        "noise_state": torch.from_numpy(module.noise.state.copy()) if hasattr(module, "noise") else None,
        "global_rng": _global_rng_state(),
        "collector": {
            "obs": portable(c._obs) if c._obs is not None else None,
            "finished": [list(e) for e in c._finished],
            # The Atari collector builds n-step targets at sample time: it has no pending transitions.
            "nstep_pending": [[portable(list(item)) for item in q] for q in c.nstep._pending] if hasattr(c, "nstep")
            else [],
            "env": env_state,
            "env_not_restorable": None if env_state is not None else why_not_restorable(c.env),
        },
        "evaluation": {
            "last_eval_return": module.last_eval_return,
            "last_eval_env_steps": module.last_eval_env_steps,
            "last_rollout_return": module.last_rollout_return,
            "final_eval": module.final_eval,
        },
    }


def restore_state(module, state: dict[str, Any]) -> None:
    c = module.collector
    gens = _generators(module)
    for name, saved in state["generators"].items():
        if name in gens:
            _set_generator_state(gens[name], saved)
    if state.get("noise_state") is not None and hasattr(module, "noise"):
        module.noise.state[...] = state["noise_state"].numpy()
    for key, value in state["evaluation"].items():
        setattr(module, key, value)
    saved = state["collector"]
    c._finished = [(float(r), int(n)) for r, n in saved["finished"]]
    if saved["obs"] is None:  # checkpoint taken before the first env step
        c._obs = None
    elif saved["env"] is not None and why_not_restorable(c.env) is None:
        c.env.reset(seed=env_seeds(c.seed, c.num_envs, c.rank))  # wrappers need one reset; state overwritten next
        set_vector_env_state(c.env, saved["env"])
        c._obs = unportable(saved["obs"])
        if hasattr(c, "nstep"):
            c.nstep._pending = [deque(tuple(unportable(item)) for item in q) for q in saved["nstep_pending"]]
    else:
        reason = saved.get("env_not_restorable") or why_not_restorable(c.env)
        rank_zero_warn(
            f"Resume: the environments' state could not be saved or restored ({reason}); every env starts a "
            "new episode now, so the partial episodes in flight are dropped and the run is not an exact "
            "continuation (lightq saves env state for gymnasium classic control and ale-py Atari envs in a "
            "SyncVectorEnv)."
        )
        if hasattr(c, "end_games") and saved["obs"] is not None:  # frame replay: cut the games in flight
            c.end_games(unportable(saved["obs"]))
        c._obs = None  # the next collector.step resets every env
        c._ep_return[:] = 0.0
        c._ep_length[:] = 0
        if hasattr(c, "nstep"):
            c.nstep.reset()
    _set_global_rng_state(state["global_rng"])


# -- the sidecar part -------------------------------------------------------------------------------
def _batch_state(batch: Batch) -> list:
    return list(batch)


def capture_replay(module) -> dict[str, Any]:
    replay, c = module.replay, module.collector
    return {
        "buffer": replay.buffer.state_dict(),
        "served": replay.served,
        "queue": [_batch_state(b) for b in replay._queue],
        "priority_updates": [list(u) for u in replay._priority_updates],
        "staged": [portable(chunk) for chunk in c._staged],
    }


def restore_replay(module, state: dict[str, Any]) -> None:
    replay, c = module.replay, module.collector
    with warnings.catch_warnings():
        # TorchRL warns that a memmap storage is filled from an uninitialized one: that is the intent.
        warnings.filterwarnings("ignore", message="Loading the storage on an uninitialized")
        replay.buffer.load_state_dict(state["buffer"])
    replay.served = int(state["served"])
    replay._queue = [Batch(*parts) for parts in state["queue"]]
    replay._priority_updates = [tuple(u) for u in state["priority_updates"]]
    c._staged = [unportable(chunk) for chunk in state["staged"]]
