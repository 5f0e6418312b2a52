"""QT-Opt-style Q-learning with CEM over actions (Kalashnikov et al. 2018, "QT-Opt").

The lecture's first answer to max_a Q: maximize by optimization. A critic Q(s, a); the greedy action is
CEM on Q_online(s, ·); the target is ``y = r + γ^k (1 − terminated) Q_target(s', a*)`` with a* from CEM on
Q_target(s', ·), and with clipped double Q (two critics, two targets) the min of the target critics at a*.
Random shooting is CEM with one iteration.

Deviations from the paper: no distributed replay/Bellman updaters; Gaussian exploration noise added to
the CEM action (QT-Opt: ε-greedy with uniform random actions); the min over two target critics is taken at
the action CEM found on the first (QT-Opt: clipped double Q with a lagged second target).
"""

from __future__ import annotations

import copy

import torch

from lightq.algos.continuous import ContinuousAlgorithm
from lightq.algos.dqn import hard_update, polyak_update
from lightq.algos.base import _as
from lightq.data.replay import Batch
from lightq.nn.continuous import Critic
from lightq.objectives.action_value import CEMConfig, ContinuousQ, MinOfQ, bootstrap_value
from lightq.objectives.common import check_loss_name, td_target
from lightq.objectives.continuous import critic_loss
from lightq.seeding import generator, seeded_init

__all__ = ["CEMQ"]


class CEMQ(ContinuousAlgorithm):
    """Q-learning with CEM (or random shooting) as the max over actions.

    Args:
        cem: CEM settings for acting and for the target max.
        lr: Adam learning rate of the critic(s).
        clipped_double_q: Two critics; the target is the min of their targets at the CEM action.
        tau: Polyak weight of the online critic per update; ``None`` = hard copies.
        target_update_period_updates: Period of hard copies when ``tau`` is ``None``.
        loss: ``mse`` (``F.mse_loss``: mean (q − y)²), ``half_mse`` (½ of it) or ``huber``
            (δ = 1); one vocabulary for every algorithm.
        max_grad_norm: Clip the gradient norm (``None`` = off).
        **kwargs: ``ContinuousAlgorithm`` settings (noise, hidden) and the shared ones.
    """

    algorithm_name = "CEMQ"

    def __init__(
        self,
        *,
        cem: CEMConfig | None = None,
        lr: float = 1e-3,
        clipped_double_q: bool = True,
        tau: float | None = 0.005,
        target_update_period_updates: int = 1000,
        loss: str = "mse",
        max_grad_norm: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.cem = _as(CEMConfig, cem)
        check_loss_name(loss)
        if not lr > 0:
            raise ValueError(f"lr={lr} must be > 0.")
        if tau is not None and not 0.0 < tau <= 1.0:
            raise ValueError(f"tau={tau} must be in (0, 1].")
        self.save_hyperparameters_as_dicts()
        hidden = self.hparams.hidden
        with seeded_init(self.hparams.seed):
            self.critic = Critic(self.obs_dim, self.act_dim, hidden)
            self.critic2 = Critic(self.obs_dim, self.act_dim, hidden) if clipped_double_q else None
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic2_target = copy.deepcopy(self.critic2).requires_grad_(False) if clipped_double_q else None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        self._cem_gen = generator(self.hparams.seed, "cem", self._rank(), device=device)

    def _generator(self):
        return getattr(self, "_cem_gen", None)

    def action_value(self, target: bool = False):
        critic = self.critic_target if target else self.critic
        first = ContinuousQ(critic, low=self.action_low, high=self.action_high, cem=self.cem,
                            generator=self._generator())
        other = self.critic2_target if target else self.critic2
        return MinOfQ(first, other) if other is not None else first

    def update(self, batch: Batch) -> None:
        hp = self.hparams
        with torch.no_grad():
            v_t = bootstrap_value(self.action_value(target=True), batch.next_obs)  # max_a' Q'(s', a') by CEM
            y = td_target(batch.reward, batch.discount, batch.terminated, v_t)
        q1 = self.critic(batch.obs, batch.action)
        qs = (q1, self.critic2(batch.obs, batch.action)) if self.critic2 is not None else q1
        out = critic_loss(qs, y, loss=hp.loss, weights=batch.weight)
        self.gradient_step(out.loss, max_grad_norm=hp.max_grad_norm, q_values=q1)
        self.after_update()
        pairs = [(self.critic_target, self.critic)] + ([(self.critic2_target, self.critic2)] if self.critic2 else [])
        for target, online in pairs:
            if hp.tau is not None:
                polyak_update(target, online, hp.tau)
            elif self.updates % hp.target_update_period_updates == 0:
                hard_update(target, online)
        if batch.index is not None:
            self.replay.update_priorities(batch.index, out.priorities)
        if self.updates % hp.log_every_updates == 0:
            self.log_metrics({f"train/{k}": float(v) for k, v in out.metrics.items()})

    def configure_optimizers(self):
        params = list(self.critic.parameters()) + (list(self.critic2.parameters()) if self.critic2 else [])
        return torch.optim.Adam(params, lr=self.hparams.lr)

    def greedy_policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.action_value().greedy(obs)

    has_value_estimate = True

    def value_estimate(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.action_value().evaluate(obs, action)  # Q(s, a) at the eval action (min over twins)
