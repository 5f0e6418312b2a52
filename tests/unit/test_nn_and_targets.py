"""Dueling aggregation, target-network updates and the ε schedule, against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightq.algos.dqn import hard_update, polyak_update
from lightq.interaction.exploration import EpsilonSchedule
from lightq.nn import DuelingHead, QNetwork

# ---------------------------------------------------------------------------------------------------
# Dueling head: Q = V + A - mean_a(A)
# ---------------------------------------------------------------------------------------------------
#
# V(x) = [1, -1]·x + 0.5 ;  A(x) = [[1, 0], [0, 1], [1, 1]] x + [0, 1, -1]
# x0 = [1, 2]:   V = 1 - 2 + 0.5 = -0.5 ;  A = [1, 3, 2], mean 2 -> A - mean = [-1, 1, 0]
#                Q = [-1.5, 0.5, -0.5]
# x1 = [-1, 0.5]: V = -1 - 0.5 + 0.5 = -1 ; A = [-1, 1.5, -1.5], mean -1/3
#                A - mean = [-2/3, 11/6, -7/6] ;  Q = [-5/3, 5/6, -13/6]

X = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
Q_EXPECTED = torch.tensor([[-1.5, 0.5, -0.5], [-5.0 / 3, 5.0 / 6, -13.0 / 6]])
V_EXPECTED = torch.tensor([[-0.5], [-1.0]])


def _set_head(head: DuelingHead) -> None:
    with torch.no_grad():
        head.value.weight.copy_(torch.tensor([[1.0, -1.0]]))
        head.value.bias.copy_(torch.tensor([0.5]))
        head.advantage.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        head.advantage.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))


def test_dueling_head_by_hand() -> None:
    head = DuelingHead(in_dim=2, num_actions=3)
    _set_head(head)
    q = head(X)
    torch.testing.assert_close(q, Q_EXPECTED, rtol=0, atol=1e-6)
    torch.testing.assert_close(head.value(X), V_EXPECTED)
    # identifiability: mean over actions of Q - V is zero, i.e. mean_a Q = V
    torch.testing.assert_close((q - V_EXPECTED).mean(dim=-1), torch.zeros(2), rtol=0, atol=1e-6)
    torch.testing.assert_close(q.mean(dim=-1), V_EXPECTED.squeeze(-1), rtol=0, atol=1e-6)


def test_qnetwork_dueling_uses_the_same_aggregation() -> None:
    # No hidden layers: the torso is the identity, so the network is exactly the hand-set head.
    net = QNetwork(obs_dim=2, num_actions=3, hidden=(), dueling=True)
    assert isinstance(net.head, DuelingHead)
    _set_head(net.head)
    torch.testing.assert_close(net(X), Q_EXPECTED, rtol=0, atol=1e-6)


def test_dueling_with_hidden_layers_mean_advantage_is_zero() -> None:
    torch.manual_seed(0)
    head = DuelingHead(in_dim=5, num_actions=4, hidden=8)
    feats = torch.randn(6, 5)
    q = head(feats)
    v = head.value(feats)
    a = head.advantage(feats)
    assert q.shape == (6, 4)
    torch.testing.assert_close((q - v).mean(dim=-1), torch.zeros(6), rtol=0, atol=1e-5)
    torch.testing.assert_close(q, v + a - a.mean(dim=-1, keepdim=True))


def test_plain_qnetwork_is_linear_head() -> None:
    net = QNetwork(obs_dim=2, num_actions=3, hidden=(), dueling=False)
    assert isinstance(net.head, nn.Linear)
    with torch.no_grad():
        net.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        net.head.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    torch.testing.assert_close(net(X), torch.tensor([[1.0, 3.0, 2.0], [-1.0, 1.5, -1.5]]))


# ---------------------------------------------------------------------------------------------------
# Target-network updates
# ---------------------------------------------------------------------------------------------------


def _linear(w: list[float], b: float) -> nn.Linear:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([w]))
        layer.bias.copy_(torch.tensor([b]))
    return layer


def test_hard_update_copies_exactly_and_does_not_alias() -> None:
    torch.manual_seed(0)
    online = QNetwork(4, 3, hidden=(8, 8), dueling=True)
    target = QNetwork(4, 3, hidden=(8, 8), dueling=True)
    assert any(not torch.equal(p, q) for p, q in zip(target.parameters(), online.parameters()))
    hard_update(target, online)
    for (name, p), q in zip(target.named_parameters(), online.parameters()):
        assert torch.equal(p, q), name
        assert p.data_ptr() != q.data_ptr(), name
        assert p.requires_grad  # still a trainable-shaped Parameter, just detached values
    # a later change to online must not leak into target
    with torch.no_grad():
        next(online.parameters()).add_(1.0)
    assert not torch.equal(next(target.parameters()), next(online.parameters()))
    obs = torch.randn(3, 4)
    assert not torch.equal(target(obs), online(obs))


def test_polyak_update_by_hand() -> None:
    target = _linear([1.0, 2.0], 0.0)
    online = _linear([3.0, -2.0], 1.0)
    polyak_update(target, online, tau=0.1)
    # 0.9*[1, 2] + 0.1*[3, -2] = [1.2, 1.6] ; 0.9*0 + 0.1*1 = 0.1
    torch.testing.assert_close(target.weight, torch.tensor([[1.2, 1.6]]), rtol=0, atol=1e-6)
    torch.testing.assert_close(target.bias, torch.tensor([0.1]), rtol=0, atol=1e-6)
    # online untouched
    torch.testing.assert_close(online.weight, torch.tensor([[3.0, -2.0]]))
    torch.testing.assert_close(online.bias, torch.tensor([1.0]))

    # second step; closed form after k steps: online + (1-τ)^k (target_0 - online)
    polyak_update(target, online, tau=0.1)
    # [3, -2] + 0.81*([1, 2] - [3, -2]) = [1.38, 1.24] ; 1 + 0.81*(0 - 1) = 0.19
    torch.testing.assert_close(target.weight, torch.tensor([[1.38, 1.24]]), rtol=0, atol=1e-6)
    torch.testing.assert_close(target.bias, torch.tensor([0.19]), rtol=0, atol=1e-6)


def test_polyak_many_steps_match_closed_form_and_extremes() -> None:
    torch.manual_seed(1)
    online = QNetwork(4, 3, hidden=(8,))
    target = QNetwork(4, 3, hidden=(8,))
    t0 = [p.detach().clone() for p in target.parameters()]
    tau, k = 0.05, 7
    for _ in range(k):
        polyak_update(target, online, tau=tau)
    for p, p0, q in zip(target.parameters(), t0, online.parameters()):
        torch.testing.assert_close(p.detach(), q + (1 - tau) ** k * (p0 - q))

    # τ = 0 keeps the target, τ = 1 is a hard copy
    keep = [p.detach().clone() for p in target.parameters()]
    polyak_update(target, online, tau=0.0)
    for p, p0 in zip(target.parameters(), keep):
        assert torch.equal(p, p0)
    polyak_update(target, online, tau=1.0)
    for p, q in zip(target.parameters(), online.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------
# EpsilonSchedule
# ---------------------------------------------------------------------------------------------------


def test_linear_schedule_endpoints_and_midpoint() -> None:
    s = EpsilonSchedule(kind="linear", start=1.0, end=0.1, duration_env_steps=1000)
    assert s(0) == pytest.approx(1.0, abs=1e-12)
    assert s(250) == pytest.approx(0.775, abs=1e-12)  # 1 + 0.25 * (0.1 - 1)
    assert s(500) == pytest.approx(0.55, abs=1e-12)  # midpoint (1 + 0.1) / 2
    assert s(1000) == pytest.approx(0.1, abs=1e-12)
    assert s(1001) == pytest.approx(0.1, abs=1e-12)
    assert s(10**7) == pytest.approx(0.1, abs=1e-12)
    assert s(-5) == pytest.approx(1.0, abs=1e-12)  # negative clocks clamp to step 0
    values = [s(t) for t in range(0, 1500, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_exponential_schedule() -> None:
    s = EpsilonSchedule(kind="exponential", start=1.0, end=0.05, duration_env_steps=100)
    assert s(0) == pytest.approx(1.0, abs=1e-12)
    # one e-folding time: 0.05 + 0.95 / e = 0.05 + 0.349485469...
    assert s(100) == pytest.approx(0.3994854691, abs=1e-9)
    assert s(100) == pytest.approx(0.05 + 0.95 / math.e, abs=1e-12)
    # two e-folding times: 0.05 + 0.95 * e^-2 = 0.05 + 0.128568520...
    assert s(200) == pytest.approx(0.1785685197, abs=1e-9)
    assert s(10**6) == pytest.approx(0.05, abs=1e-9)  # never below the floor
    assert s(10**6) >= 0.05


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": 1.5},
        {"start": -0.1},
        {"end": 1.01},
        {"end": -0.2},
        {"duration_env_steps": 0},
        {"duration_env_steps": -10},
    ],
)
def test_schedule_rejects_invalid_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        EpsilonSchedule(**kwargs)


def test_schedule_unknown_kind_raises_at_construction() -> None:
    with pytest.raises(ValueError, match="exploration.kind='cosine'"):
        EpsilonSchedule(kind="cosine")  # type: ignore[arg-type]
