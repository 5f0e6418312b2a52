"""Every stream of a run derives from its seed, and no two runs share one (issue 14, item 12).

Before, eval episode i of a run was reset with ``seed + 1_000_000 + i`` and training env i of rank r with
``seed + r·num_envs + i``: runs with seeds 0 and 1 shared 9 of their 10 eval episodes and, with several
envs, their training env seeds, which breaks the independence that confidence intervals over seeds assume.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lightq.algos import DQN
from lightq.envs.factory import env_seeds
from lightq.seeding import STREAMS, eval_episode_seeds, seeded_init, stream_seed


def test_no_two_runs_share_an_eval_episode_or_a_training_env_seed():
    seeds = range(100)
    evals = {s: set(eval_episode_seeds(s, 0, 10)) for s in seeds}
    trains = {s: {x for rank in range(2) for x in env_seeds(s, 4, rank)} for s in seeds}
    for a, b in itertools.combinations(seeds, 2):
        assert not evals[a] & evals[b], (a, b)
        assert not trains[a] & trains[b], (a, b)
    # Within a run: 8 distinct training envs (4 envs × 2 ranks), 10 distinct eval episodes, disjoint.
    assert all(len(trains[s]) == 8 and len(evals[s]) == 10 and not trains[s] & evals[s] for s in seeds)


def test_streams_are_reproducible_distinct_and_in_range():
    assert stream_seed(3, "replay", 1) == stream_seed(3, "replay", 1)
    values = {stream_seed(3, name, 0) for name in STREAMS}
    assert len(values) == len(STREAMS)
    assert all(0 <= v < 2**63 for v in values)
    torch.Generator().manual_seed(max(values))  # accepted by torch (and gymnasium's reset)
    # The same eval episode of a run, whatever the number of episodes asked for (evaluate --episodes).
    assert eval_episode_seeds(5, 2, 3) == eval_episode_seeds(5, 0, 5)[2:]


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match=r"seed=-1 must be an integer >= 0"):
        DQN(env={"id": "CartPole-v1"}, seed=-1)


def test_network_init_does_not_reset_the_callers_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with seeded_init(0):
        a = torch.nn.Linear(3, 3).weight.detach().clone()
    assert torch.equal(torch.rand(3), expected)  # the caller's stream went on as if nothing happened
    with seeded_init(0):
        assert torch.equal(torch.nn.Linear(3, 3).weight, a)
    with seeded_init(1):
        assert not torch.equal(torch.nn.Linear(3, 3).weight, a)


def test_models_of_different_seeds_differ_and_the_same_seed_repeats():
    w = [DQN(env={"id": "CartPole-v1"}, seed=s, hidden=(8,)).q_net.state_dict() for s in (0, 0, 1)]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    assert not all(torch.equal(w[0][k], w[2][k]) for k in w[0])
    assert np.isfinite([float(v.sum()) for v in w[0].values()]).all()


def test_negative_seed_offset_is_refused():
    from lightq.callbacks.evaluation import EvalConfig

    with pytest.raises(ValueError, match=r"evaluation.seed_offset=-1 must be >= 0"):
        EvalConfig(seed_offset=-1)
