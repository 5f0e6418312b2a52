"""One loss vocabulary in every algorithm (``mse`` is ``F.mse_loss``), and ``td_target``'s shape contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightq.algos import CEMQ, DDPG, DQN, NAF
from lightq.data.replay import Batch
from lightq.objectives import td_target

B = 5


def _model(cls, loss):
    common = dict(learning_starts_env_steps=100, replay={"batch_size": B}, seed=0, loss=loss)
    if cls is DQN:
        return DQN(env={"id": "CartPole-v1"}, hidden=[8], **common)
    extra = {"twin_critics": False} if cls is DDPG else {"clipped_double_q": False} if cls is CEMQ else {}
    return cls(env={"id": "Pendulum-v1"}, hidden=[8, 8], **common, **extra)


def _batch(cls):
    g = torch.Generator().manual_seed(3)
    discrete = cls is DQN
    obs_dim = 4 if discrete else 3
    action = torch.randint(0, 2, (B,), generator=g) if discrete else torch.rand(B, 1, generator=g) * 4 - 2
    return Batch(obs=torch.randn(B, obs_dim, generator=g), action=action, reward=torch.randn(B, generator=g),
                 next_obs=torch.randn(B, obs_dim, generator=g),
                 terminated=torch.tensor([True, False, False, True, False]),
                 discount=torch.full((B,), 0.9))


@pytest.mark.parametrize("cls", [DQN, DDPG, NAF, CEMQ], ids=lambda c: c.__name__)
@pytest.mark.parametrize(("loss", "scale"), [("mse", 1.0), ("half_mse", 0.5)])
def test_each_algorithms_mse_is_f_mse_loss(monkeypatch, cls, loss, scale):
    import lightq.objectives.dqn as dqn_objectives

    model = _model(cls, loss)
    targets, steps = [], []
    module = dqn_objectives if cls is DQN else __import__(cls.__module__, fromlist=["td_target"])

    def spy(*args):
        y = td_target(*args)
        targets.append(y)
        return y

    monkeypatch.setattr(module, "td_target", spy)
    model.gradient_step = lambda value, *a, q_values=None, **k: steps.append((value.detach(), q_values))
    model.log_metrics = lambda metrics: None
    batch = _batch(cls)
    model.update(batch)
    (y,), (value, q) = targets, steps[0]  # the first step is the critic's
    q = q.detach()
    if cls is DQN:
        q = q.gather(-1, batch.action.long().unsqueeze(-1)).squeeze(-1)
    assert q.shape == y.shape == (B,)
    torch.testing.assert_close(value, scale * F.mse_loss(q, y))
    assert value > 1e-3  # not a trivially zero comparison


@pytest.mark.parametrize("cls", [DQN, DDPG, NAF, CEMQ], ids=lambda c: c.__name__)
def test_old_loss_name_l2_is_refused_with_the_new_name(cls):
    with pytest.raises(ValueError, match=r"loss='l2'.*use loss='mse'"):
        _model(cls, "l2")
    with pytest.raises(ValueError, match="must be one of"):
        _model(cls, "l1")


def test_td_target_per_row_terms_on_b_by_n_values_when_b_equals_n():
    # B = N = 2: plain broadcasting would pair r[j] with column j. Rows by hand:
    # row 0: r=1, γ=0.5, not terminal: [1 + 0.5*10, 1 + 0.5*20] = [6, 11]
    # row 1: r=-2, terminal:            [-2, -2]
    r, discount = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.9])
    terminated = torch.tensor([False, True])
    v = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    y = td_target(r, discount, terminated, v)
    torch.testing.assert_close(y, torch.tensor([[6.0, 11.0], [-2.0, -2.0]]), rtol=0, atol=0)


def test_td_target_b_by_n_by_k_and_b_unchanged():
    r, discount = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 0.5, 0.5])
    terminated = torch.tensor([False, True, False])
    v = torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(3, 4, 2)
    y = td_target(r, discount, terminated, v)
    naive = torch.stack([r[b] + (0.0 if terminated[b] else discount[b]) * v[b] for b in range(3)])
    torch.testing.assert_close(y, naive, rtol=0, atol=0)
    torch.testing.assert_close(td_target(r, discount, terminated, v[:, 0, 0]), naive[:, 0, 0], rtol=0, atol=0)


@pytest.mark.parametrize("shapes", [((4,), (4,), (4,), (3, 4)), ((4, 1), (4,), (4,), (4,)), ((4,), (4,), (3,), (4,))])
def test_td_target_refuses_mismatched_leading_dimensions(shapes):
    r, d, t, v = (torch.zeros(s) for s in shapes)
    with pytest.raises(ValueError, match=r"v_t \("):
        td_target(r, d, t.bool(), v)


def test_td_error_loss_refuses_q_and_y_of_different_shapes():
    from lightq.objectives import td_error_loss

    with pytest.raises(ValueError, match=r"\(4, 1\) and \(4,\)"):
        td_error_loss(torch.zeros(4, 1), torch.zeros(4), loss="mse")
