"""Every random stream of a run, derived from its seed: the one place seeds are made.

Runs with seeds 0 and 1 must not share a stream: confidence intervals over seeds assume independent
runs. Additive seeds (``seed + i``) make neighbouring runs share all but one eval episode, or their env
seeds when several envs run. Here each stream is ``numpy.random.SeedSequence(entropy=seed,
spawn_key=(stream, *index))``, the construction ``SeedSequence(seed).spawn`` uses: the children of
different seeds, streams or indices are hashed apart, so no two coincide (a test checks seeds 0–99).

Streams (the name, then the indices that tell its members apart):

- ``train_env`` (rank, i): reset seed of training env i of DDP rank r;
- ``eval_episode`` (i): reset seed of evaluation episode i (``evaluation.seed_offset`` + episode number,
  the same for every evaluation of the run, for ``lightq evaluate`` and for eval videos);
- ``replay`` (rank): the replay buffer's sampling generator;
- ``explore`` (rank), ``eval_epsilon`` (rank): ε-greedy draws while collecting / evaluating;
- ``action_noise`` (rank), ``cem`` (rank), ``target_noise`` (rank): continuous-action exploration noise,
  CEM samples, TD3 target smoothing;
- ``network`` (): initial weights.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["STREAMS", "check_seed", "eval_episode_seeds", "generator", "numpy_rng", "seeded_init", "stream_seed"]

STREAMS = {
    "train_env": 1,
    "eval_episode": 2,
    "replay": 3,
    "explore": 4,
    "eval_epsilon": 5,
    "action_noise": 6,
    "cem": 7,
    "target_noise": 8,
    "network": 9,
}


def check_seed(seed: int) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an integer >= 0 (every random stream of the run derives from it).")
    return int(seed)


def stream_seed(seed: int, stream: str, *index: int) -> int:
    """A 63-bit seed for member ``index`` of ``stream`` of the run seeded ``seed``."""
    key = (STREAMS[stream], *(int(i) for i in index))
    words = np.random.SeedSequence(entropy=check_seed(seed), spawn_key=key).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])  # < 2**63: fits torch.manual_seed and gymnasium resets


def eval_episode_seeds(seed: int, offset: int, episodes: int) -> list[int]:
    """Reset seeds of evaluation episodes ``offset, offset + 1, ...`` (``episodes`` of them)."""
    return [stream_seed(seed, "eval_episode", offset + i) for i in range(episodes)]


def numpy_rng(seed: int, stream: str, *index: int) -> np.random.Generator:
    return np.random.default_rng(stream_seed(seed, stream, *index))


def generator(seed: int, stream: str, *index: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=torch.device(device)).manual_seed(stream_seed(seed, stream, *index))


@contextmanager
def seeded_init(seed: int):
    """Build networks from the run's ``network`` stream without touching the caller's global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, "network"))
        yield
