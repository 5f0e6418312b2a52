"""The shared base of lightq's algorithms: two clocks, the env → collector → replay → dataloader wiring.

Subclasses build their networks in ``__init__`` (from ``self.observation_space`` / ``self.action_space``),
and implement ``training_step`` (exactly one gradient update), ``explore_policy`` and ``greedy_policy``.
Optimization is manual: ``training_step`` reads like the lecture's pseudo-code, DDPG's two optimizers
fit the same shape, and Lightning's automatic-optimization closure (measurable per update on a small
MLP) is skipped.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, fields, is_dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pytorch_lightning as pl
import torch

from lightq.callbacks.evaluation import EvalConfig, Evaluation, ValueProbe, evaluate_policy
from lightq.callbacks.progress import LightqProgressBar
from lightq.data.replay import ReplayConfig, ReplayIterable, make_replay_buffer
from lightq.envs.factory import EnvConfig, check_spaces, make_env, make_vec_env
from lightq.interaction.callback import EnvInteractionCallback
from lightq.interaction.collector import Collector
from lightq.tracking.mlflow import mlflow_run_record

__all__ = ["OffPolicyAlgorithm"]


def _as(cls, value):
    """Accept a dataclass instance or its dict form (checkpoints store dicts: loadable with weights_only)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"Unknown {cls.__name__} keys {sorted(unknown)}; valid keys: {sorted(known)}.")
        return cls(**value)
    raise TypeError(f"Expected {cls.__name__} or dict, got {type(value).__name__}.")


class OffPolicyAlgorithm(pl.LightningModule):
    """Base of every lightq algorithm (do not instantiate directly).

    Args:
        env: Training environment (gymnasium id, number of envs, vectorization).
        replay: Replay buffer settings.
        evaluation: Evaluation protocol.
        seed: Run seed; env, buffer, exploration and network-init seeds all derive from it.
        total_env_steps: Length of the run on the env-step clock (warm-up included).
        learning_starts_env_steps: Env steps of warm-up (uniform random actions) before the first update.
        env_steps_per_update: Replay ratio: env steps collected after each gradient update (fractional
            allowed: 0.25 = four updates per env step).
        gamma: Discount per env step.
        n_step: Rewards summed per transition (discount γ^k for the k summed, cut at episode ends).
        log_every_updates: Period of ``train/``, ``rollout/`` and ``perf/`` logging, in updates.
    """

    algorithm_name = "base"
    action_kind = "Discrete"

    def __init__(
        self,
        *,
        env: EnvConfig | None = None,
        replay: ReplayConfig | None = None,
        evaluation: EvalConfig | None = None,
        seed: int = 0,
        total_env_steps: int = 50_000,
        learning_starts_env_steps: int = 1_000,
        env_steps_per_update: float = 1.0,
        gamma: float = 0.99,
        n_step: int = 1,
        log_every_updates: int = 100,
    ) -> None:
        super().__init__()
        self.env_config = _as(EnvConfig, env)
        self.replay_config = _as(ReplayConfig, replay)
        self.evaluation = _as(EvalConfig, evaluation)
        self._validate(total_env_steps, learning_starts_env_steps, env_steps_per_update, gamma, n_step, log_every_updates)
        self._base_hparams = {
            "env": self.env_config, "replay": self.replay_config, "evaluation": self.evaluation, "seed": seed,
            "total_env_steps": total_env_steps, "learning_starts_env_steps": learning_starts_env_steps,
            "env_steps_per_update": env_steps_per_update, "gamma": gamma, "n_step": n_step,
            "log_every_updates": log_every_updates,
        }
        self.automatic_optimization = False
        self.env_steps = 0  # the RL clock: env steps taken (all envs, all ranks)
        self.updates = 0  # gradient updates done (not Lightning's global_step: DDPG has two optimizers)
        self.last_eval_return: float | None = None
        self.last_eval_env_steps: int | None = None
        self.last_rollout_return: float | None = None
        self.final_eval: dict[str, float] | None = None
        self.collector: Collector | None = None
        self.eval_env = None
        probe = make_env(self.env_config)
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        probe.close()
        check_spaces(
            self.observation_space, self.action_space, algorithm=self.algorithm_name, action_kind=self.action_kind
        )

    # Attributes written on every update (by lightq, or by Lightning on every hook call) that are never
    # parameters, buffers or submodules: nn.Module.__setattr__'s type checks on them cost ~4 µs each,
    # ~30 times per update. Writing them with object.__setattr__ is what nn.Module would end up doing.
    _PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "env_steps", "updates", "last_eval_return",
                                   "last_eval_env_steps", "last_rollout_return", "final_eval"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _validate(self, total, starts, ratio, gamma, n_step, log_every) -> None:
        if total <= 0:
            raise ValueError(f"total_env_steps={total} must be > 0.")
        if starts < 0 or starts >= total:
            raise ValueError(f"learning_starts_env_steps={starts} must be in [0, total_env_steps={total}).")
        if ratio <= 0:
            raise ValueError(f"env_steps_per_update={ratio} must be > 0 (0.25 = four updates per env step).")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma={gamma} must be in (0, 1].")
        if n_step < 1:
            raise ValueError(f"n_step={n_step} must be >= 1.")
        if log_every < 1:
            raise ValueError(f"log_every_updates={log_every} must be >= 1.")
        if self.replay_config.batch_size > max(starts, 1) and starts > 0:
            raise ValueError(
                f"replay.batch_size={self.replay_config.batch_size} is larger than the warm-up "
                f"learning_starts_env_steps={starts}: the first batch would repeat transitions. "
                "Raise learning_starts_env_steps or lower the batch size."
            )

    def save_hyperparameters_as_dicts(self) -> None:
        """``save_hyperparameters`` with dataclasses stored as dicts (checkpoints stay weights_only-loadable)."""
        self.save_hyperparameters(frame=inspect.currentframe().f_back)
        self.hparams.pop("kwargs", None)
        self.hparams.update(self._base_hparams)
        for key, value in list(self.hparams.items()):
            if is_dataclass(value):
                self.hparams[key] = asdict(value)

    # -- the RL clocks ------------------------------------------------------------------------------
    @property
    def num_updates(self) -> int:
        hp = self.hparams
        return math.ceil((hp.total_env_steps - hp.learning_starts_env_steps) / hp.env_steps_per_update)

    def sync_env_steps(self) -> None:
        """Refresh ``env_steps`` from the collector (the sum over ranks under DDP)."""
        self.env_steps = self.collector.env_steps

    def _direct_optimization(self) -> bool:
        """Whether backward/clip/step may bypass Lightning's wrappers (no loss scaler to honour).

        Lightning's ``manual_backward`` + ``LightningOptimizer.step`` + ``clip_gradients`` cost ~0.3 ms
        per update here (hook dispatch, precision plugin, closure), a third of a small-MLP update.
        With 32-bit or bf16 precision there is nothing for them to do that ``loss.backward()``,
        ``clip_grad_norm_`` and ``optimizer.step()`` don't, so we call those. With ``16-mixed`` the
        GradScaler must see the loss and the step, and Lightning's path is used. Cost: the
        ``on_before_backward``/``on_after_backward``/``on_before_optimizer_step`` hooks don't fire.
        """
        cached = getattr(self, "_direct_opt_cached", None)
        if cached is None:
            from pytorch_lightning.plugins.precision import MixedPrecision

            plugin = self.trainer.precision_plugin
            scaler = getattr(plugin, "scaler", None) if isinstance(plugin, MixedPrecision) else None
            cached = scaler is None and type(plugin).__name__ in ("Precision", "MixedPrecision")
            self._direct_opt_cached = cached
        return cached

    def gradient_step(
        self, loss: torch.Tensor, optimizer_index: int = 0, *, max_grad_norm: float | None = None,
        params: list[torch.nn.Parameter] | None = None,
    ) -> None:
        """zero_grad → backward → clip the global grad norm → step, for one of the module's optimizers."""
        if self._direct_optimization():
            opts = self.optimizers(use_pl_optimizer=False)
            opt = opts[optimizer_index] if isinstance(opts, (list, tuple)) else opts
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                if params is None:
                    params = self._optimizer_params(opt)
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
            # Keep Lightning's step counter (trainer.global_step: checkpoint and logging schedules) as
            # LightningOptimizer.step would: one count per optimizer step.
            if self._trainer is None:  # driven directly (tests, custom loops)
                opt.step()
                return
            progress = self._trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
            progress.increment_ready()
            opt.step()
            progress.increment_completed()
            return
        opts = self.optimizers()
        opt = opts[optimizer_index] if isinstance(opts, (list, tuple)) else opts
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if max_grad_norm is not None:
            self.clip_gradients(opt, gradient_clip_val=max_grad_norm, gradient_clip_algorithm="norm")
        opt.step()

    def _optimizer_params(self, opt: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
        cache = self.__dict__.setdefault("_params_cache", {})
        params = cache.get(id(opt))
        if params is None:
            params = cache[id(opt)] = [p for group in opt.param_groups for p in group["params"]]
        return params

    def after_update(self) -> None:
        """Advance the update clock; subclasses call this at the end of ``training_step``."""
        self.updates += 1

    # -- wiring -------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage != "fit" or self.collector is not None:
            return
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        rank = self.trainer.global_rank if self._trainer is not None else 0
        seed = self.hparams.seed
        buffer = make_replay_buffer(self.replay_config, device=device, seed=seed + 7919 * (rank + 1))
        self.collector = Collector(
            make_vec_env(self.env_config),
            buffer,
            n_step=self.hparams.n_step,
            gamma=self.hparams.gamma,
            seed=seed,
            rank=rank,
            device=device,
        )
        self.eval_env = make_env(self.env_config)
        # Exploration and eval-ε randomness: numpy generators derived from the run seed (and rank).
        self.explore_rng = np.random.default_rng([seed, rank, 1])
        self.eval_rng = np.random.default_rng([seed, rank, 2])
        self.replay = ReplayIterable(
            buffer, self.replay_config, num_updates=self.num_updates, before_sample=self.collector.flush
        )

    def teardown(self, stage: str) -> None:
        if self.collector is not None:
            self.collector.close()
        if self.eval_env is not None:
            self.eval_env.close()

    def train_dataloader(self) -> ReplayIterable:
        return self.replay

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        # Replay storage already lives on the training device (DESIGN.md §6): skip Lightning's
        # recursive per-tensor ``.to`` (~0.1 ms per batch of 8 tensors here).
        return batch

    def configure_callbacks(self):
        callbacks: list[pl.Callback] = [EnvInteractionCallback(), Evaluation()]
        bar = getattr(self._trainer, "progress_bar_callback", None) if self._trainer is not None else None
        if bar is not None and type(bar).__name__ == "TQDMProgressBar":
            callbacks.append(LightqProgressBar())
        return callbacks

    # -- policies ---------------------------------------------------------------------------------
    def warmup_policy(self, obs: np.ndarray) -> np.ndarray:
        """Uniform random actions for the warm-up, drawn from the exploration generator."""
        n = obs.shape[0]
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):  # floor(u·n): numpy's Generator.integers costs ~10 µs a call
            return (self.explore_rng.random(n) * int(space.n)).astype(np.int64) + int(space.start)
        u = self.explore_rng.random((n, *space.shape), dtype=np.float32)
        return space.low + u * (space.high - space.low)

    def explore_policy(self, obs: np.ndarray) -> np.ndarray:
        """The behaviour policy used to collect data (numpy in and out; see ``Collector``)."""
        raise NotImplementedError

    def greedy_policy(self, obs: torch.Tensor) -> torch.Tensor:
        """The greedy action for a batch of observations on the module's device."""
        raise NotImplementedError

    def eval_policy(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation policy (greedy unless the algorithm declares otherwise)."""
        return self.greedy_policy(obs)

    @torch.inference_mode()
    def greedy_actions(self, obs: np.ndarray) -> np.ndarray:
        """``greedy_policy`` on a numpy batch, back to numpy."""
        return self.greedy_policy(torch.as_tensor(obs, device=self.collector.device)).cpu().numpy()

    def exploration_metrics(self) -> dict[str, float]:
        return {}

    has_value_estimate = False  # True where value_estimate is implemented (the eval overestimation probe)

    def value_estimate(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The algorithm's value of a visited eval state [B] (see ``ValueProbe``)."""
        raise NotImplementedError

    # -- logging and evaluation ---------------------------------------------------------------------
    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Send metrics to every logger against the env-step clock (x-axis = env steps)."""
        if self._trainer is None:
            return
        for logger in self.trainer.loggers:
            logger.log_metrics(metrics, step=self.env_steps)

    def run_evaluation(self) -> dict[str, float]:
        ev = self.evaluation
        seeds = [self.hparams.seed + ev.seed_offset + i for i in range(ev.episodes)]
        was_training = self.training
        self.eval()
        probe = None
        if ev.value_probe and self.has_value_estimate:
            probe = ValueProbe(self.value_estimate, self.hparams.gamma)
        returns, lengths = evaluate_policy(
            self.eval_env, self.eval_policy, seeds=seeds, device=self.device, probe=probe
        )
        self.train(was_training)
        metrics = {
            "eval/return_mean": float(returns.mean()),
            "eval/return_std": float(returns.std()),
            "eval/length_mean": float(lengths.mean()),
        }
        if probe is not None:
            metrics.update(probe.metrics())
        self.last_eval_return = metrics["eval/return_mean"]
        self.last_eval_env_steps = self.env_steps
        self.final_eval = metrics
        self.log_metrics(metrics)
        if self._trainer is not None:
            self.trainer.callback_metrics["eval/return_mean"] = torch.tensor(metrics["eval/return_mean"])
        return metrics

    # -- checkpoint ---------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lightq"] = {
            "algorithm": self.algorithm_name,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "collector": self.collector.state_dict() if self.collector is not None else None,
            "replay_iterable": self.replay.state_dict() if self.collector is not None else None,
            "mlflow_run": mlflow_run_record(self._trainer),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("lightq")
        if state is None:
            raise ValueError("This checkpoint was not written by lightq (no 'lightq' section).")
        if state["algorithm"] != self.algorithm_name:
            raise ValueError(
                f"Checkpoint is from algorithm {state['algorithm']!r}, but the model is {self.algorithm_name!r}; "
                f"use the {state['algorithm']} config to resume it."
            )
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        self._pending_state = state

    def on_fit_start(self) -> None:
        state = getattr(self, "_pending_state", None)
        if state is not None and self.collector is not None:
            if state.get("collector") is not None:
                self.collector.load_state_dict(state["collector"])
            if state.get("replay_iterable") is not None:
                self.replay.load_state_dict(state["replay_iterable"])
            self._pending_state = None
