"""Hand-computed checks of the TD target and the DQN / Double-DQN loss (lightq.objectives).

Every expected number below was worked out by hand and is written out literally; the comments show
the arithmetic so a reader can re-check it.
"""

from __future__ import annotations

import pytest
import torch

from lightq.objectives import double_q_bootstrap, dqn_loss, max_q_bootstrap, td_error_loss, td_target

# ---------------------------------------------------------------------------------------------------
# td_target
# ---------------------------------------------------------------------------------------------------


def test_td_target_terminal_truncated_and_nstep_discounts() -> None:
    # Sample 0: terminated -> no bootstrap, y = r.
    # Sample 1: truncated but NOT terminated (the replay stores terminated=False) -> bootstrap kept.
    # Sample 2: 3-step return, discount 0.99**3 = 0.970299.
    # Sample 3: 2-step return, discount 0.99**2 = 0.9801, negative bootstrap value.
    r = torch.tensor([1.0, 0.5, -1.0, 2.0])
    discount = torch.tensor([0.99, 0.99, 0.99**3, 0.99**2])
    terminated = torch.tensor([True, False, False, False])
    v = torch.tensor([10.0, 4.0, 2.0, -3.0])

    y = td_target(r, discount, terminated, v)

    expected = torch.tensor(
        [
            1.0,  # 1.0 (the 10.0 bootstrap is cut)
            4.46,  # 0.5 + 0.99 * 4
            0.940598,  # -1 + 0.970299 * 2
            -0.9403,  # 2 + 0.9801 * (-3)
        ]
    )
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)
    assert y.dtype == torch.float32
    assert y.shape == (4,)


def test_td_target_is_float32_and_has_no_grad() -> None:
    r = torch.tensor([1.0, 0.5], dtype=torch.float64)
    discount = torch.tensor([0.9, 0.81], dtype=torch.float64)
    terminated = torch.tensor([0.0, 1.0])  # float flags are accepted too (1.0 = terminated)
    v = torch.tensor([2.0, 7.0], dtype=torch.float64, requires_grad=True)

    y = td_target(r, discount, terminated, v)

    assert y.dtype == torch.float32
    assert not y.requires_grad
    assert y.grad_fn is None
    # 1 + 0.9 * 2 = 2.8 ; 0.5 (terminated, 7.0 ignored)
    torch.testing.assert_close(y, torch.tensor([2.8, 0.5]), rtol=0, atol=1e-6)


def test_td_target_half_precision_inputs_upcast() -> None:
    r = torch.tensor([0.25], dtype=torch.bfloat16)
    discount = torch.tensor([0.5], dtype=torch.bfloat16)
    terminated = torch.tensor([False])
    v = torch.tensor([3.0], dtype=torch.float16)
    y = td_target(r, discount, terminated, v)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, torch.tensor([1.75]))  # 0.25 + 0.5 * 3


# ---------------------------------------------------------------------------------------------------
# dqn_loss: a 3-sample batch worked out by hand
# ---------------------------------------------------------------------------------------------------
#
# q_tm1 = [[1, 2, 3], [0.5, -1, 0], [2, 2, 1]],  a = [2, 0, 1]  ->  Q(s, a) = [3, 0.5, 2]
# r = [1.2, 0, -1],  discount = [0.5, 0.5, 0.25],  terminated = [F, T, F]
# q_t_target = [[2, 4, 1], [10, 0, 0], [0, -2, 6]]  -> max = [4, 10, 6]
#
# plain: y = [1.2 + 0.5*4, 0 (terminated), -1 + 0.25*6] = [3.2, 0, 0.5]
#        td = y - Q(s,a) = [0.2, -0.5, -1.5]
#        mse      per-sample td^2            = [0.04, 0.25, 2.25]        mean = 2.54/3
#        half_mse per-sample 0.5*td^2        = [0.02, 0.125, 1.125]      mean = 1.27/3
#        huber per-sample (δ=1)              = [0.02, 0.125, 1.5 - 0.5]  mean = 1.145/3
#
# q_t_online = [[5, 0, 0], [0, 0, 1], [0, 3, 1]] -> argmax = [0, 2, 1]
#   (differs from argmax of q_t_target = [1, 0, 2] in every row)
# double: v = q_t_target[argmax online] = [2, 0, -2]
#         y = [1.2 + 0.5*2, 0, -1 + 0.25*(-2)] = [2.2, 0, -1.5]
#         td = [-0.8, -0.5, -3.5]
#         mse      per-sample = [0.64, 0.25, 12.25]      mean = 13.14/3 = 4.38
#         half_mse per-sample = [0.32, 0.125, 6.125]     mean = 6.57/3 = 2.19
#         huber per-sample = [0.32, 0.125, 3.5 - 0.5]    mean = 3.445/3


def _batch(requires_grad: bool = False) -> dict[str, torch.Tensor]:
    return {
        "q_tm1": torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0], [2.0, 2.0, 1.0]], requires_grad=requires_grad),
        "a_tm1": torch.tensor([2, 0, 1]),
        "r_t": torch.tensor([1.2, 0.0, -1.0]),
        "discount_t": torch.tensor([0.5, 0.5, 0.25]),
        "terminated_t": torch.tensor([False, True, False]),
        "q_t_target": torch.tensor([[2.0, 4.0, 1.0], [10.0, 0.0, 0.0], [0.0, -2.0, 6.0]], requires_grad=requires_grad),
    }


Q_T_ONLINE = [[5.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 3.0, 1.0]]


def test_bootstraps_by_hand() -> None:
    b = _batch()
    torch.testing.assert_close(max_q_bootstrap(b["q_t_target"]), torch.tensor([4.0, 10.0, 6.0]))
    torch.testing.assert_close(
        double_q_bootstrap(b["q_t_target"], torch.tensor(Q_T_ONLINE)), torch.tensor([2.0, 0.0, -2.0])
    )


@pytest.mark.parametrize(
    ("loss", "expected"),
    [("mse", 2.54 / 3), ("half_mse", 1.27 / 3), ("huber", 1.145 / 3)],
)
def test_dqn_loss_plain_by_hand(loss: str, expected: float) -> None:
    out = dqn_loss(**_batch(), loss=loss)
    torch.testing.assert_close(out.loss, torch.tensor(expected), rtol=0, atol=1e-6)
    assert out.loss.shape == ()
    torch.testing.assert_close(out.priorities, torch.tensor([0.2, 0.5, 1.5]), rtol=0, atol=1e-6)
    # metrics: q_mean = mean(3, 0.5, 2) ; td_abs_mean = mean(0.2, 0.5, 1.5)
    torch.testing.assert_close(out.metrics["loss"], torch.tensor(expected), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.metrics["q_mean"], torch.tensor(5.5 / 3), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.metrics["td_abs_mean"], torch.tensor(2.2 / 3), rtol=0, atol=1e-6)


def test_huber_delta_changes_the_quadratic_zone() -> None:
    # δ = 0.5: |0.2| -> 0.5*0.04 = 0.02 ; |0.5| -> 0.5*0.25 = 0.125 (boundary; linear branch agrees:
    # 0.5*(0.5-0.25)) ; |1.5| -> 0.5*(1.5 - 0.25) = 0.625.  Mean = 0.77/3.
    out = dqn_loss(**_batch(), loss="huber", huber_delta=0.5)
    torch.testing.assert_close(out.loss, torch.tensor(0.77 / 3), rtol=0, atol=1e-6)
    # δ = 2: every |td| <= 2 so Huber == ½ td² == the half_mse value.
    out2 = dqn_loss(**_batch(), loss="huber", huber_delta=2.0)
    torch.testing.assert_close(out2.loss, torch.tensor(1.27 / 3), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("loss", "expected"),
    [("mse", 4.38), ("half_mse", 2.19), ("huber", 3.445 / 3)],
)
def test_double_dqn_loss_by_hand(loss: str, expected: float) -> None:
    b = _batch()
    plain = dqn_loss(**b, loss=loss)
    double = dqn_loss(**b, q_t_online=torch.tensor(Q_T_ONLINE), loss=loss)
    torch.testing.assert_close(double.loss, torch.tensor(expected), rtol=0, atol=1e-6)
    torch.testing.assert_close(double.priorities, torch.tensor([0.8, 0.5, 3.5]), rtol=0, atol=1e-6)
    # the two targets really differ (sample 1 is terminal, so its td is the same in both)
    assert not torch.allclose(plain.loss, double.loss)
    torch.testing.assert_close(plain.priorities[1], double.priorities[1])


def test_double_with_online_equal_to_target_is_plain() -> None:
    b = _batch()
    plain = dqn_loss(**b, loss="mse")
    double = dqn_loss(**b, q_t_online=b["q_t_target"].clone(), loss="mse")
    torch.testing.assert_close(double.loss, plain.loss)
    torch.testing.assert_close(double.priorities, plain.priorities)


def test_importance_weights_scale_per_sample_loss() -> None:
    w = torch.tensor([1.0, 0.5, 0.2])
    # half_mse per-sample [0.02, 0.125, 1.125] * w = [0.02, 0.0625, 0.225] -> mean 0.3075/3 = 0.1025
    out = dqn_loss(**_batch(), loss="half_mse", weights=w)
    torch.testing.assert_close(out.loss, torch.tensor(0.1025), rtol=0, atol=1e-6)
    # mse per-sample [0.04, 0.25, 2.25] * w = [0.04, 0.125, 0.45] -> mean 0.615/3 = 0.205
    out_m = dqn_loss(**_batch(), loss="mse", weights=w)
    torch.testing.assert_close(out_m.loss, torch.tensor(0.205), rtol=0, atol=1e-6)
    # huber per-sample [0.02, 0.125, 1.0] * w = [0.02, 0.0625, 0.2] -> mean 0.2825/3
    out_h = dqn_loss(**_batch(), loss="huber", weights=w)
    torch.testing.assert_close(out_h.loss, torch.tensor(0.2825 / 3), rtol=0, atol=1e-6)
    # priorities are the raw |td|, not weighted
    torch.testing.assert_close(out.priorities, torch.tensor([0.2, 0.5, 1.5]), rtol=0, atol=1e-6)
    # all-ones weights == no weights
    ones = dqn_loss(**_batch(), loss="mse", weights=torch.ones(3))
    torch.testing.assert_close(ones.loss, dqn_loss(**_batch(), loss="mse").loss)


@pytest.mark.parametrize(
    ("loss", "expected_grad_at_action"),
    [
        # half_mse: d/dQ mean(½(y-Q)²) = -(y-Q)/B = -td/3
        ("half_mse", [-0.2 / 3, 0.5 / 3, 1.5 / 3]),
        # mse: d/dQ mean((y-Q)²) = -2 td/3
        ("mse", [-0.4 / 3, 1.0 / 3, 3.0 / 3]),
        # huber δ=1: -clip(td, -1, 1)/B
        ("huber", [-0.2 / 3, 0.5 / 3, 1.0 / 3]),
    ],
)
def test_gradient_flows_only_into_q_tm1(loss: str, expected_grad_at_action: list[float]) -> None:
    b = _batch(requires_grad=True)
    q_t_online = torch.tensor(Q_T_ONLINE, requires_grad=True)
    out = dqn_loss(**b, q_t_online=None, loss=loss)
    out.loss.backward()
    expected = torch.zeros(3, 3)
    expected[0, 2], expected[1, 0], expected[2, 1] = expected_grad_at_action
    torch.testing.assert_close(b["q_tm1"].grad, expected, rtol=0, atol=1e-6)
    assert b["q_t_target"].grad is None
    assert not out.priorities.requires_grad
    assert all(not m.requires_grad for m in out.metrics.values())

    # double: neither the target nor the online next-state values receive gradient
    b2 = _batch(requires_grad=True)
    out2 = dqn_loss(**b2, q_t_online=q_t_online, loss=loss)
    out2.loss.backward()
    assert b2["q_t_target"].grad is None
    assert q_t_online.grad is None
    assert b2["q_tm1"].grad is not None


def test_gradient_does_not_reach_target_network_params() -> None:
    torch.manual_seed(0)
    online = torch.nn.Linear(4, 3)
    target = torch.nn.Linear(4, 3)
    s, s_next = torch.randn(5, 4), torch.randn(5, 4)
    out = dqn_loss(
        online(s),
        torch.tensor([0, 1, 2, 0, 1]),
        torch.randn(5),
        torch.full((5,), 0.99),
        torch.tensor([False, True, False, False, True]),
        target(s_next),  # built with grad tracking on purpose
        online(s_next),
        loss="huber",
    )
    out.loss.backward()
    assert all(p.grad is None for p in target.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in online.parameters())


def test_td_error_loss_rejects_unknown_loss() -> None:
    with pytest.raises(ValueError):
        td_error_loss(torch.zeros(2), torch.ones(2), loss="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="use loss='mse'"):
        td_error_loss(torch.zeros(2), torch.ones(2), loss="l2")  # type: ignore[arg-type]


@pytest.mark.parametrize(("loss", "expected"), [("mse", 2.54 / 3), ("half_mse", 1.27 / 3), ("huber", 1.145 / 3)])
def test_dqn_loss_lean_path_same_value_and_gradient(loss: str, expected: float) -> None:
    """Without metrics and priorities the loss is one fused op: same value and gradient as the full path."""
    grads = []
    for lean in (False, True):
        b = _batch()
        q = b["q_tm1"].clone().requires_grad_(True)
        b["q_tm1"] = q
        out = dqn_loss(**b, loss=loss, with_metrics=not lean, with_priorities=not lean)
        torch.testing.assert_close(out.loss, torch.tensor(expected), rtol=0, atol=1e-6)
        assert (out.priorities is None) == lean
        out.loss.backward()
        grads.append(q.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-7)
