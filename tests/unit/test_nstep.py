"""N-step transitions at termination, truncation and across vector envs, against hand-computed values."""

import numpy as np
import pytest

from lightq.data.nstep import NStepAccumulator


def _step(acc, obs, action, reward, next_obs, term, trunc):
    return acc.add(
        np.array(obs, dtype=np.float32), np.array(action), np.array(reward, dtype=np.float32),
        np.array(next_obs, dtype=np.float32), np.array(term), np.array(trunc),
    )


def test_three_step_returns_and_termination_flush_hand_computed():
    g = 0.5
    acc = NStepAccumulator(num_envs=1, n_step=3, gamma=g)
    # Episode: s0 -r=1-> s1 -r=2-> s2 -r=4-> s3 -r=8-> s4 (terminal)
    assert _step(acc, [[0.0]], [0], [1.0], [[1.0]], [False], [False]) is None
    assert _step(acc, [[1.0]], [1], [2.0], [[2.0]], [False], [False]) is None
    out = _step(acc, [[2.0]], [0], [4.0], [[3.0]], [False], [False])
    # s0: 1 + 0.5*2 + 0.25*4 = 3, next s3, discount 0.125
    assert out["obs"].tolist() == [[0.0]] and out["next_obs"].tolist() == [[3.0]]
    assert out["reward"].tolist() == [3.0] and out["discount"].tolist() == [0.125]
    assert out["terminated"].tolist() == [False]
    out = _step(acc, [[3.0]], [1], [8.0], [[4.0]], [True], [False])
    # termination flushes s1 (2 + 2 + 2 = 6, k=3), s2 (4 + 4 = 8, k=2), s3 (8, k=1), all terminal
    assert out["obs"][:, 0].tolist() == [1.0, 2.0, 3.0]
    assert out["reward"].tolist() == [6.0, 8.0, 8.0]
    assert out["discount"].tolist() == [0.125, 0.25, 0.5]
    assert out["terminated"].tolist() == [True, True, True]
    assert out["next_obs"][:, 0].tolist() == [4.0, 4.0, 4.0]
    assert out["action"].tolist() == [1, 0, 1]


def test_truncation_flushes_without_cutting_bootstrap():
    acc = NStepAccumulator(num_envs=1, n_step=5, gamma=0.9)
    _step(acc, [[0.0]], [0], [1.0], [[1.0]], [False], [False])
    out = _step(acc, [[1.0]], [0], [1.0], [[2.0]], [False], [True])
    assert out["reward"].tolist() == pytest.approx([1.9, 1.0])
    assert out["discount"].tolist() == pytest.approx([0.81, 0.9])
    assert out["terminated"].tolist() == [False, False]  # truncated: the target still bootstraps
    assert out["next_obs"][:, 0].tolist() == [2.0, 2.0]


def test_envs_are_independent():
    acc = NStepAccumulator(num_envs=2, n_step=2, gamma=1.0)
    out = _step(acc, [[0.0], [10.0]], [0, 1], [1.0, 5.0], [[1.0], [11.0]], [False, True], [False, False])
    # env 1 terminated: its single pending step is flushed; env 0 still waits for a second reward
    assert out["obs"].tolist() == [[10.0]] and out["reward"].tolist() == [5.0] and out["terminated"].tolist() == [True]
    out = _step(acc, [[1.0], [20.0]], [1, 0], [2.0, 7.0], [[2.0], [21.0]], [False, False], [False, False])
    assert out["obs"].tolist() == [[0.0]] and out["reward"].tolist() == [3.0] and out["next_obs"].tolist() == [[2.0]]


def test_one_step_fast_path():
    acc = NStepAccumulator(num_envs=2, n_step=1, gamma=0.99)
    out = _step(acc, [[0.0], [1.0]], [0, 1], [1.0, 2.0], [[5.0], [6.0]], [True, False], [False, True])
    assert out["reward"].dtype == np.float32 and out["discount"].tolist() == pytest.approx([0.99, 0.99])
    assert out["terminated"].tolist() == [True, False]


def test_state_dict_round_trip_keeps_pending():
    acc = NStepAccumulator(num_envs=1, n_step=3, gamma=0.5)
    _step(acc, [[0.0]], [1], [1.0], [[1.0]], [False], [False])
    other = NStepAccumulator(num_envs=1, n_step=3, gamma=0.5)
    other.load_state_dict(acc.state_dict())
    _step(other, [[1.0]], [0], [2.0], [[2.0]], [False], [False])
    out = _step(other, [[2.0]], [0], [4.0], [[3.0]], [False], [False])
    assert out["reward"].tolist() == [3.0] and out["action"].tolist() == [1]
