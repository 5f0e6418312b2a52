"""DQN and its family as one LightningModule: DQN, Double DQN, Dueling DQN, N-step, prioritized replay.

Papers:
    Mnih et al. 2013, "Playing Atari with Deep Reinforcement Learning".
    Mnih et al. 2015, "Human-level control through deep reinforcement learning" (target network).
    van Hasselt et al. 2016, "Deep Reinforcement Learning with Double Q-learning" (``double_q``).
    Wang et al. 2016, "Dueling Network Architectures for Deep RL" (``dueling``).
    Sutton 1988 / Hessel et al. 2018 (``n_step``), Schaul et al. 2016 (``replay.prioritized``).

Deviations from the papers:
    - Adam instead of RMSProp by default (the lecture's advice; Dopamine's and CleanRL's Atari DQNs
      use Adam too). ``lr`` and ``adam_eps`` are exposed.
    - Warm-up actions are uniform random (Nature: "a uniform random policy run for 50,000 frames").
    - The ε schedule runs on the env-step clock from step 0, warm-up included (CleanRL's convention).
    - Polyak averaging uses τ as the weight of the *online* network (τ = 0.005 ≈ the lecture's 0.995).
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import torch

from lightq.algos.base import OffPolicyAlgorithm, _as
from lightq.data.replay import Batch
from lightq.interaction.exploration import EpsilonSchedule
from lightq.nn.cnn import NatureQNetwork
from lightq.nn.mlp import QNetwork
from lightq.objectives.common import check_loss_name, float32_math
from lightq.objectives.dqn import dqn_loss
from lightq.seeding import seeded_init

__all__ = ["DQN", "hard_update", "polyak_update"]


@torch.no_grad()
def hard_update(target: torch.nn.Module, online: torch.nn.Module) -> None:
    """φ' ← φ."""
    torch._foreach_copy_(list(target.parameters()), list(online.parameters()))


@torch.no_grad()
def polyak_update(target: torch.nn.Module, online: torch.nn.Module, tau: float) -> None:
    """φ' ← (1 − τ) φ' + τ φ."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


class DQN(OffPolicyAlgorithm):
    """The DQN family on discrete actions.

    Args:
        exploration: ε-greedy schedule on the env-step clock.
        hidden: Hidden widths of the MLP torso (vector observations).
        network: ``mlp``, ``nature_cnn`` (Mnih et al. 2015; uint8 ``[C, H, W]`` stacks, 512-unit layer) or
            ``auto``: the CNN for image observations (3-D uint8 Box), the MLP otherwise.
        dueling: Dueling head ``V + A − mean(A)``.
        double_q: Double-DQN target (select with the online net, evaluate with the target net).
        lr: Adam learning rate.
        adam_eps: Adam ε.
        target_update_period_updates: Hard copy φ' ← φ every this many updates (ignored when ``tau`` is set).
        tau: Polyak weight of the online net, applied every update; ``None`` = hard updates.
        loss: ``huber`` (δ = ``huber_delta``), ``mse`` (``F.mse_loss``: mean (q − y)²) or ``half_mse``
            (½ of it: its gradient is the TD error); one vocabulary for every algorithm.
        huber_delta: Huber threshold.
        max_grad_norm: Clip the global gradient norm to this; ``None`` = no clipping.
        **kwargs: Shared settings of ``OffPolicyAlgorithm`` (env, replay, evaluation, seed, clocks, γ, n_step).
    """

    algorithm_name = "DQN"
    action_kind = "Discrete"

    def __init__(
        self,
        *,
        exploration: EpsilonSchedule | None = None,
        hidden: list[int] = [120, 84],  # noqa: B006  (jsonargparse needs a literal default)
        network: Literal["auto", "mlp", "nature_cnn"] = "auto",
        dueling: bool = False,
        double_q: bool = False,
        lr: float = 2.5e-4,
        adam_eps: float = 1e-8,
        target_update_period_updates: int = 500,
        tau: float | None = None,
        loss: str = "huber",  # str, not Literal: an old name gets check_loss_name's message
        huber_delta: float = 1.0,
        max_grad_norm: float | None = 10.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.exploration = _as(EpsilonSchedule, exploration)
        if target_update_period_updates < 1:
            raise ValueError(f"target_update_period_updates={target_update_period_updates} must be >= 1.")
        if not lr > 0:
            raise ValueError(f"lr={lr} must be > 0.")
        if tau is not None and not 0.0 < tau <= 1.0:
            raise ValueError(f"tau={tau} must be in (0, 1] (weight of the online net per Polyak update).")
        check_loss_name(loss)
        self.save_hyperparameters_as_dicts()
        obs_dim = int(torch.tensor(self.observation_space.shape).prod())
        self.num_actions = int(self.action_space.n)
        with seeded_init(self.hparams.seed):  # the run's network stream; the caller's global RNG is kept
            if network == "auto":
                space = self.observation_space
                network = "nature_cnn" if len(space.shape) == 3 and space.dtype == np.uint8 else "mlp"
            if network == "nature_cnn":
                self.q_net = NatureQNetwork(self.observation_space.shape, self.num_actions, dueling=dueling)
            elif network == "mlp":
                self.q_net = QNetwork(obs_dim, self.num_actions, hidden=hidden, dueling=dueling)
            else:
                raise ValueError(f"network={network!r} must be 'auto', 'mlp' or 'nature_cnn'.")
        self.target_net = copy.deepcopy(self.q_net).requires_grad_(False)

    # -- the lecture's loop, one gradient update --------------------------------------------------------
    def update(self, batch: Batch) -> None:
        hp = self.hparams
        log_now = (self.updates + 1) % hp.log_every_updates == 0
        out, q_tm1 = self.loss_fn(batch, log_now)  # td_loss: Q_φ(s, ·) and L(Q_φ(s, a), r + γ^k max_a' Q_φ'(s', a'))
        self.gradient_step(out.loss, max_grad_norm=hp.max_grad_norm, q_values=q_tm1)  # φ ← φ − α ∇_φ L
        self.after_update()
        if hp.tau is not None:  # φ' ← (1 − τ) φ' + τ φ
            polyak_update(self.target_net, self.q_net, hp.tau)
        elif self.updates % hp.target_update_period_updates == 0:  # φ' ← φ every N updates
            hard_update(self.target_net, self.q_net)
        if batch.index is not None:
            self.replay.update_priorities(batch.index, out.priorities)
        if log_now:
            self.log_metrics({f"train/{k}": float(v) for k, v in out.metrics.items()})

    def td_loss(self, batch: Batch, log_now: bool):
        """The TD loss of one batch and Q_φ(s, ·): everything of the update before ``backward``.

        ``compile_update`` compiles this function (forward, target, loss and, through AOTAutograd, its
        backward graph).
        """
        hp = self.hparams
        q_tm1 = self.q_net(batch.obs)  # [B, A]  Q_φ(s, ·)
        with torch.no_grad(), float32_math(batch.next_obs.device):  # the TD target in float32 (mixed precision)
            q_t_target = self.target_net(batch.next_obs)  # [B, A]  Q_φ'(s', ·)
            q_t_online = self.q_net(batch.next_obs) if hp.double_q else None  # [B, A]  Q_φ(s', ·)
        out = dqn_loss(  # y = r + γ^k (1 − terminated) max_a' Q_φ'(s', a')
            q_tm1, batch.action, batch.reward, batch.discount, batch.terminated, q_t_target, q_t_online,
            loss=hp.loss, huber_delta=hp.huber_delta, weights=batch.weight, with_metrics=log_now,
            with_priorities=batch.index is not None,
        )
        return out, q_tm1

    def configure_optimizers(self):
        fused = self.device.type == "cpu" or self.device.type == "cuda"
        # A fused Adam unscales 16-mixed gradients inside its step, so Lightning cannot unscale them
        # before clipping and refuses to clip: with a GradScaler and clipping, use the plain Adam.
        plugin = self._trainer.precision_plugin if self._trainer is not None else None
        if getattr(plugin, "scaler", None) is not None and self.hparams.max_grad_norm is not None:
            fused = False
        try:
            return torch.optim.Adam(self.q_net.parameters(), lr=self.hparams.lr, eps=self.hparams.adam_eps, fused=fused)
        except (RuntimeError, TypeError):  # fused Adam unsupported on this device / dtype
            return torch.optim.Adam(self.q_net.parameters(), lr=self.hparams.lr, eps=self.hparams.adam_eps)

    # -- policies ---------------------------------------------------------------------------------
    def epsilon(self) -> float:
        return self.exploration(self.env_steps)

    def greedy_policy(self, obs: torch.Tensor) -> torch.Tensor:
        # Callers run it under no_grad / inference_mode (greedy_actions, evaluate_policy).
        return self.q_net(obs).argmax(dim=-1)

    def _epsilon_greedy(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        # The coin flips come first, so the Q-network runs only when some env acts greedily (with ε
        # near 1 early in training most steps need no forward pass).
        u = rng.random((2, obs.shape[0]))  # one call: coin flips and random actions (Generator.integers is slow)
        if obs.shape[0] == 1:  # one env: the same draws, Python scalars instead of array ops
            if u[0, 0] < epsilon:
                return (u[1] * self.num_actions).astype(np.int64)
            return self.greedy_actions(obs)
        explore = u[0] < epsilon
        random = (u[1] * self.num_actions).astype(np.int64)
        if explore.all():
            return random
        greedy = self.greedy_actions(obs)
        return np.where(explore, random, greedy) if explore.any() else greedy

    def explore_policy(self, obs: np.ndarray) -> np.ndarray:
        return self._epsilon_greedy(obs, self.epsilon(), self.explore_rng)

    def eval_policy(self, obs: torch.Tensor) -> torch.Tensor:
        if self.evaluation.epsilon <= 0.0:
            return self.greedy_policy(obs)
        actions = self._epsilon_greedy(obs.cpu().numpy(), self.evaluation.epsilon, self.eval_rng)
        return torch.from_numpy(actions)

    def exploration_metrics(self) -> dict[str, float]:
        return {"epsilon": self.epsilon()}

    has_value_estimate = True

    def value_estimate(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.q_net(obs).max(dim=-1).values  # max_a Q_φ(s, a), as in van Hasselt et al. 2016, Fig. 3
