"""NAF's quadratic Q (``naf_q``), its network (``NAFNetwork``) and its closed-form ActionValue.

Q(s, a) = V(s) − ½ (a − μ(s))ᵀ L(s) L(s)ᵀ (a − μ(s)): checked against numbers worked out by hand, and
the network's structural promises (L lower-triangular with a positive diagonal, P = L Lᵀ positive
definite, μ in the box, argmax_a Q = μ, max_a Q = V) on a randomly initialised network.
"""

from __future__ import annotations

import pytest
import torch

from lightq.algos.naf import NAFActionValue
from lightq.nn.continuous import NAFNetwork, naf_q
from lightq.objectives.action_value import CEMConfig, bootstrap_value, cem_maximize

LOW, HIGH = torch.tensor([-2.0, -2.0]), torch.tensor([2.0, 2.0])


def test_naf_q_hand_computation_2d() -> None:
    # State 0: L = [[2, 0], [1, 3]], μ = (0.5, −0.5), V = 1, a = (1, 0.5).
    #   P = L Lᵀ = [[4, 2], [2, 10]];  d = a − μ = (0.5, 1)
    #   dᵀ P d = 4·0.25 + 2·2·0.5·1 + 10·1 = 1 + 2 + 10 = 13  ->  Q = 1 − 6.5 = −5.5
    # State 1: L = [[1, 0], [−2, 0.5]], μ = (0, 1), V = −2, a = (1, 0).
    #   P = [[1, −2], [−2, 4.25]];  d = (1, −1)
    #   dᵀ P d = 1 + 2·(−2)·(1)(−1) + 4.25 = 1 + 4 + 4.25 = 9.25  ->  Q = −2 − 4.625 = −6.625
    # State 2: a = μ  ->  Q = V = 3.
    v = torch.tensor([1.0, -2.0, 3.0])
    mu = torch.tensor([[0.5, -0.5], [0.0, 1.0], [0.3, -0.7]])
    l_mat = torch.tensor([[[2.0, 0.0], [1.0, 3.0]], [[1.0, 0.0], [-2.0, 0.5]], [[5.0, 0.0], [4.0, 6.0]]])
    action = torch.tensor([[1.0, 0.5], [1.0, 0.0], [0.3, -0.7]])

    q = naf_q(v, mu, l_mat, action)

    torch.testing.assert_close(q, torch.tensor([-5.5, -6.625, 3.0]), rtol=0, atol=1e-6)


def test_naf_q_matches_explicit_quadratic_form() -> None:
    # A peer formula: V − ½ dᵀ (L Lᵀ) d with an explicit matrix product, on random inputs (3-D actions).
    g = torch.Generator().manual_seed(0)
    b, a_dim = 7, 3
    v = torch.randn(b, generator=g)
    mu = torch.randn(b, a_dim, generator=g)
    l_mat = torch.randn(b, a_dim, a_dim, generator=g).tril()
    action = torch.randn(b, a_dim, generator=g)
    d = (action - mu).unsqueeze(-1)
    p = l_mat @ l_mat.transpose(-1, -2)
    expected = v - 0.5 * (d.transpose(-1, -2) @ p @ d).squeeze(-1).squeeze(-1)
    torch.testing.assert_close(naf_q(v, mu, l_mat, action), expected, rtol=1e-5, atol=1e-5)
    # the upper triangle of L would matter if it were used: a non-triangular L gives a different Q
    full = l_mat + torch.triu(torch.ones(a_dim, a_dim), diagonal=1)
    assert not torch.allclose(naf_q(v, mu, full, action), expected)


@pytest.fixture(scope="module")
def net_and_obs():
    torch.manual_seed(0)
    net = NAFNetwork(obs_dim=3, act_dim=2, low=LOW.numpy(), high=HIGH.numpy(), hidden=(16, 16))
    with torch.no_grad():  # make L's off-diagonal and diagonal entries clearly non-trivial
        net.l_entries.weight.mul_(5.0)
        net.l_entries.bias.copy_(torch.tensor([0.3, -1.0, -0.4]))
    obs = torch.randn(64, 3, generator=torch.Generator().manual_seed(1)) * 2
    return net, obs


def test_naf_network_heads_structure(net_and_obs) -> None:
    net, obs = net_and_obs
    with torch.no_grad():
        v, mu, l_mat = net.heads(obs)
    assert v.shape == (64,) and mu.shape == (64, 2) and l_mat.shape == (64, 2, 2)

    # lower triangular, positive diagonal, non-trivial off-diagonal
    assert (l_mat[:, 0, 1] == 0).all()
    assert (torch.diagonal(l_mat, dim1=-2, dim2=-1) > 0).all()
    assert l_mat[:, 1, 0].abs().max() > 0.1
    # the diagonal is exp of the raw head output (tril_indices order: (0,0), (1,0), (1,1))
    raw = net.l_entries(net.torso(obs))
    torch.testing.assert_close(l_mat[:, 0, 0], raw[:, 0].exp())
    torch.testing.assert_close(l_mat[:, 1, 0], raw[:, 1])
    torch.testing.assert_close(l_mat[:, 1, 1], raw[:, 2].exp())

    # P = L Lᵀ positive definite
    p = l_mat @ l_mat.transpose(-1, -2)
    eig = torch.linalg.eigvalsh(p)
    assert (eig > 0).all()
    torch.testing.assert_close(p, p.transpose(-1, -2))

    # μ inside the box, and spread over it (not all at the centre)
    assert ((mu > LOW) & (mu < HIGH)).all()
    assert mu.std(0).min() > 0.05


def test_naf_q_maximum_is_v_at_mu(net_and_obs) -> None:
    net, obs = net_and_obs
    with torch.no_grad():
        v, mu, _ = net.heads(obs)
        torch.testing.assert_close(net(obs, mu), v, rtol=0, atol=1e-6)  # Q(s, μ(s)) = V(s)
        g = torch.Generator().manual_seed(2)
        for _ in range(5):
            a = LOW + torch.rand(64, 2, generator=g) * (HIGH - LOW)
            q = net(obs, a)
            assert (q <= v + 1e-6).all()
            assert (q < v - 1e-4).any()


def test_naf_hessian_is_minus_p(net_and_obs) -> None:
    # ∂²Q/∂a² = −P for one state (autograd is the peer here)
    net, obs = net_and_obs
    s = obs[:1]
    with torch.no_grad():
        _, mu, l_mat = net.heads(s)
    hess = torch.autograd.functional.hessian(lambda a: net(s, a.unsqueeze(0)).sum(), mu[0] + 0.3)
    torch.testing.assert_close(hess, -(l_mat[0] @ l_mat[0].T), rtol=1e-4, atol=1e-5)


def test_naf_action_value_is_closed_form(net_and_obs) -> None:
    net, obs = net_and_obs
    av = NAFActionValue(net)
    with torch.no_grad():
        v, mu, _ = net.heads(obs)
        torch.testing.assert_close(av.greedy(obs), mu, rtol=0, atol=0)
        torch.testing.assert_close(av.max(obs), v, rtol=0, atol=0)
        a = torch.zeros(64, 2)
        torch.testing.assert_close(av.evaluate(obs, a), net(obs, a), rtol=0, atol=0)
    # the target NAF uses (bootstrap without selector) is max = V(s')
    torch.testing.assert_close(bootstrap_value(av, obs), v, rtol=0, atol=0)
    # double-Q style with itself as selector gives Q(s', μ(s')) = V(s') too
    torch.testing.assert_close(bootstrap_value(av, obs, selector=av), v, rtol=0, atol=1e-6)


def test_naf_closed_form_agrees_with_cem(net_and_obs) -> None:
    # A peer maximizer: CEM over the box finds ≈ μ(s) and ≈ V(s) for the first 8 states.
    net, obs = net_and_obs
    s = obs[:8]
    with torch.no_grad():
        v, mu, _ = net.heads(s)
        a, q = cem_maximize(net, s, LOW, HIGH, CEMConfig(256, 10, 5), torch.Generator().manual_seed(3))
    assert (q <= v + 1e-6).all()
    assert (v - q).max() < 1e-2
    assert (a - mu).norm(dim=-1).max() < 0.1


def test_preactivation_is_the_tanh_input_of_mu_and_penalty_is_validated():
    from lightq.algos import NAF
    from lightq.nn.continuous import NAFNetwork

    torch.manual_seed(0)
    net = NAFNetwork(3, 2, low=[-2.0, -1.0], high=[2.0, 3.0], hidden=[8])
    obs = torch.randn(5, 3)
    v, mu, l_mat, pre = net.heads(obs, with_preactivation=True)
    mid = torch.tensor([0.0, 1.0])
    half = torch.tensor([2.0, 2.0])
    torch.testing.assert_close(mu, mid + half * torch.tanh(pre))
    torch.testing.assert_close(v, net.heads(obs)[0])
    with pytest.raises(ValueError, match="mu_preactivation_penalty=-1"):
        NAF(env={"id": "Pendulum-v1"}, mu_preactivation_penalty=-1.0)
