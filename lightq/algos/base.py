"""The shared base of lightq's algorithms: two clocks, the env → collector → replay → dataloader wiring.

Subclasses build their networks in ``__init__`` (from ``self.observation_space`` / ``self.action_space``),
and implement ``update`` (exactly one gradient update), ``explore_policy`` and ``greedy_policy``.
Optimization is manual: ``update`` reads like the lecture's pseudo-code, DDPG's two optimizers
fit the same shape, and Lightning's automatic-optimization closure (measurable per update on a small
MLP) is skipped. ``training_step`` (one Lightning iteration) runs ``updates_per_iteration`` (default 16)
``update`` calls with the per-update callbacks in between (see there).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_warn

from lightq.algos.resume import (capture_replay, capture_state, continue_unfinished_run, restore_replay,
                                 restore_state)
from lightq.callbacks.checkpoint import SIDECAR_DIR, AtomicCheckpointIO, read_sidecar, sidecar_name, write_sidecar
from lightq.callbacks.evaluation import EvalConfig, Evaluation, ValueProbe, evaluate_policy
from lightq.callbacks.progress import LightqProgressBar
from lightq.data.replay import ReplayConfig, ReplayIterable, make_replay_buffer
from lightq.distributed import DDPBatch, gather_values, world_size
from lightq.envs.factory import EnvConfig, check_spaces, make_env, make_vec_env
from lightq.interaction.callback import EnvInteractionCallback
from lightq.interaction.async_collector import AsyncCollector
from lightq.interaction.collector import Collector
from lightq.quiet import silence_irrelevant_output
from lightq.seeding import check_seed, eval_episode_seeds, numpy_rng, stream_seed
from lightq.reliability import GracefulShutdown, Watchdog, WatchdogConfig
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


def _watch_keys(optimizer_index: int) -> tuple[str, str, str]:
    """The ``module.watched`` names of one optimizer's loss, Q-values and gradient norm (made once)."""
    keys = _WATCH_KEYS.get(optimizer_index)
    if keys is None:
        keys = _WATCH_KEYS[optimizer_index] = tuple(
            f"{what} (optimizer {optimizer_index})" for what in ("loss", "q_values", "gradient norm"))
    return keys


_WATCH_KEYS: dict[int, tuple[str, str, str]] = {}


class OffPolicyAlgorithm(pl.LightningModule):
    """Base of every lightq algorithm (do not instantiate directly).

    Args:
        env: Training environment (gymnasium id, number of envs, vectorization).
        replay: Replay buffer settings.
        evaluation: Evaluation protocol.
        seed: Run seed (>= 0); every random stream of the run derives from it (``lightq.seeding``).
        total_env_steps: Length of the run on the env-step clock (warm-up included).
        learning_starts_env_steps: Env steps of warm-up (uniform random actions) before the first update.
        env_steps_per_update: Replay ratio: env steps collected after each gradient update (fractional
            allowed: 0.25 = four updates per env step).
        gamma: Discount per env step.
        n_step: Rewards summed per transition (discount γ^k for the k summed, cut at episode ends).
        log_every_updates: Period of ``train/``, ``rollout/`` and ``perf/`` logging, in updates.
        watchdog: Divergence checks (non-finite / exploding loss, Q, gradients, rewards, observations).
        ddp_batch: Under DDP with N ranks: ``split`` = ``replay.batch_size`` and ``env_steps_per_update``
            are global (each rank samples batch_size / N and collects env_steps_per_update / N per update:
            the one-GPU update); ``per_rank`` = both are per rank (global batch N · batch_size, N ·
            env_steps_per_update env steps per update, N times fewer updates). Ignored with one process.
        updates_per_iteration: Gradient updates per Lightning iteration (``training_step`` call).
            Lightning's loop costs ~0.2–0.5 ms per iteration on this CPU (batch fetch, hook dispatch
            with profiler contexts, progress tracking), a third of a small-MLP update; k updates per
            iteration pay it once per k. The run is the same update for update (same env steps,
            batches and random streams; ``tests/integration/test_fused_iterations.py`` checks it
            bitwise): between the updates of an iteration lightq itself calls every callback's
            ``on_train_batch_end`` (env steps, evaluation, watchdog, checkpoints, user callbacks);
            only ``on_train_batch_start``, progress bars and Lightning's own loop bookkeeping see
            iterations. A SIGTERM / Ctrl-C / ``trainer.should_stop`` / ``trainer.max_steps`` still stops
            at the next update. Under DDP or with a ``16-mixed`` loss scaler it is 1 (a warning says so).
        async_collection: Step the envs in a worker process while the next update runs
            (``lightq.interaction.async_collector``): the same transitions as synchronous collection, but
            a batch drawn right after update u misses update u's env steps (stored with the next draw), so
            the run is not bitwise the synchronous one (it is deterministic). The replay ratio holds to
            within one update. Vector-observation envs, ``vectorization: sync``, one process, Linux.
        compile_update: ``torch.compile`` the algorithm's ``td_loss`` (forward, TD target, loss; the
            backward graph through AOTAutograd); the optimizer step stays eager. Costs a compilation
            (tens of seconds on CPU) at the first update; implemented for the DQN family.
    """

    algorithm_name = "base"
    action_kind = "Discrete"
    # Whether some backward of an update leaves parameters without a gradient (DDPG's critic loss never
    # reaches the actor): DDP must then look for unused parameters, or it waits for their gradients.
    ddp_find_unused_parameters = False

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
        watchdog: WatchdogConfig | None = None,
        ddp_batch: DDPBatch = "split",
        updates_per_iteration: int = 16,
        async_collection: bool = False,
        compile_update: bool = False,
    ) -> None:
        super().__init__()
        silence_irrelevant_output()
        self.env_config = _as(EnvConfig, env)
        self.replay_config = _as(ReplayConfig, replay)
        self.evaluation = _as(EvalConfig, evaluation)
        self.watchdog = _as(WatchdogConfig, watchdog)
        check_seed(seed)
        self._validate(total_env_steps, learning_starts_env_steps, env_steps_per_update, gamma, n_step, log_every_updates)
        if async_collection and self.env_config.id.startswith("ALE/"):
            raise ValueError("async_collection is not supported for Atari (frame replay writes every step): "
                             "set model.async_collection false.")
        if compile_update and not hasattr(type(self), "td_loss"):
            raise ValueError(f"compile_update is implemented for the DQN family, not {self.algorithm_name}: "
                             "set model.compile_update false.")
        if updates_per_iteration < 1:
            raise ValueError(f"updates_per_iteration={updates_per_iteration} must be >= 1.")
        if ddp_batch not in ("split", "per_rank"):
            raise ValueError(f"ddp_batch={ddp_batch!r} must be 'split' (global batch) or 'per_rank'.")
        self._base_hparams = {
            "env": self.env_config, "replay": self.replay_config, "evaluation": self.evaluation, "seed": seed,
            "total_env_steps": total_env_steps, "learning_starts_env_steps": learning_starts_env_steps,
            "env_steps_per_update": env_steps_per_update, "gamma": gamma, "n_step": n_step,
            "log_every_updates": log_every_updates, "watchdog": self.watchdog, "ddp_batch": ddp_batch,
            "updates_per_iteration": updates_per_iteration, "async_collection": async_collection,
            "compile_update": compile_update,
        }
        self.automatic_optimization = False
        self.env_steps = 0  # the RL clock: env steps taken (all envs, all ranks)
        self.updates = 0  # gradient updates done (not Lightning's global_step: DDPG has two optimizers)
        self._world = 1  # DDP world size, set in setup
        self.last_eval_return: float | None = None
        self.last_eval_env_steps: int | None = None
        self.last_rollout_return: float | None = None
        self.final_eval: dict[str, float] | None = None
        self.collector: Collector | None = None
        self.last_batch = None  # the batch of the latest update (the Watchdog's evidence)
        self._iteration_updates = 1  # updates per training_step, set in on_train_start
        self._per_update_callbacks: list[pl.Callback] = []
        self.loss_fn = getattr(self, "td_loss", None)  # compiled in setup with compile_update
        self.watched: dict[str, torch.Tensor] = {}  # the last update's loss / Q-values, for the Watchdog
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
                                   "last_eval_env_steps", "last_rollout_return", "final_eval", "_world",
                                   "last_batch"})

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
    def global_env_steps_per_update(self) -> float:
        """Env steps (all ranks) collected per update: ``env_steps_per_update``, × N ranks with ``per_rank``."""
        hp = self.hparams
        scale = self._world if hp.get("ddp_batch", "split") == "per_rank" else 1  # _world: set in setup
        return hp.env_steps_per_update * scale

    @property
    def num_updates(self) -> int:
        hp = self.hparams
        return math.ceil((hp.total_env_steps - hp.learning_starts_env_steps) / self.global_env_steps_per_update)

    def sync_env_steps(self) -> None:
        """Refresh ``env_steps`` from the collector: the sum over ranks under DDP.

        Ranks collect in lockstep (same updates, same env steps per update; ``check_lockstep``), so the
        sum is this rank's count × world size, with no collective per env step.
        """
        self.env_steps = self.collector.env_steps * self._world

    def collect_until(self, target: float, policy) -> None:
        """Step this rank's envs until the global env-step clock reaches ``target`` (every rank the same)."""
        self.sync_env_steps()
        if self.env_steps < target:
            per_vector_step = self.collector.num_envs * self._world
            self.collector.step(policy, math.ceil((target - self.env_steps) / per_vector_step))
            if not isinstance(self.collector, AsyncCollector):  # async: the clock moves when the chunk is joined
                self.sync_env_steps()

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
            # Under DDP, manual_backward runs the strategy's pre_backward, which prepares DDP's reducer
            # (training_step runs inside the DDP wrapper's forward, so its own preparation comes too late):
            # a bare loss.backward() would skip the gradient all-reduce.
            cached = cached and world_size(self) == 1
            self._direct_opt_cached = cached
        return cached

    def gradient_step(
        self, loss: torch.Tensor, optimizer_index: int = 0, *, max_grad_norm: float | None = None,
        params: list[torch.nn.Parameter] | None = None, q_values: torch.Tensor | None = None,
    ) -> None:
        """zero_grad → backward → clip the global grad norm → step, for one of the module's optimizers."""
        keys = _watch_keys(optimizer_index)
        watched = self.watched
        # Detached: the Watchdog reads values only, and a kept reference to the loss would keep the
        # update's autograd graph alive until the next update.
        watched[keys[0]] = loss.detach()
        if q_values is not None:
            watched[keys[1]] = q_values.detach()
        if self._direct_optimization():
            opts = self.optimizers(use_pl_optimizer=False)
            opt = opts[optimizer_index] if isinstance(opts, (list, tuple)) else opts
            opt_params = self._optimizer_params(opt)
            for p in opt_params:  # opt.zero_grad(set_to_none=True), without its profiler scope (~10 µs here)
                p.grad = None
            loss.backward()
            if max_grad_norm is not None:
                watched[keys[2]] = torch.nn.utils.clip_grad_norm_(
                    opt_params if params is None else params, max_grad_norm, foreach=True
                )
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
        """Advance the update clock; subclasses call this in ``update`` once the parameters have moved."""
        self.updates += 1

    # -- one Lightning iteration ----------------------------------------------------------------------
    def update(self, batch) -> None:
        """Exactly one gradient update on ``batch`` (the lecture's inner loop); subclasses implement it."""
        raise NotImplementedError

    def training_step(self, batch, batch_idx: int) -> None:
        """``updates_per_iteration`` updates; after each but the last, every callback's per-update work.

        Lightning calls ``on_train_batch_end`` after the last update of the iteration; the updates
        before it get the same calls from here, in the same order (``_per_update_callbacks``), so env
        steps, evaluation, the watchdog and checkpoint schedules run after every update as with one
        update per iteration. The next batch is drawn after those env steps, as Lightning would.

        The unit of the lecture's loop is ``update``; an iteration holds several because Lightning's
        per-iteration cost is then paid once per k updates (measured in benchmarks/RESULTS.md).
        """
        self.update(batch)
        if self._iteration_updates == 1:
            self.last_batch = batch
            return
        trainer, replay, callbacks = self.trainer, self.replay, self._per_update_callbacks
        device_type = self.device.type
        autocast = torch.is_autocast_enabled(device_type)  # mixed precision: Lightning autocasts training_step
        for _ in range(self._iteration_updates - 1):
            if (replay.served >= replay.num_updates or trainer.should_stop or trainer.received_sigterm
                    or 0 <= trainer.max_steps <= trainer.global_step):
                break
            self.last_batch = batch
            if autocast:
                with torch.autocast(device_type, enabled=False):  # env steps act in full precision, as outside
                    for callback in callbacks:
                        callback.on_train_batch_end(trainer, self, None, batch, batch_idx)
            else:
                for callback in callbacks:
                    callback.on_train_batch_end(trainer, self, None, batch, batch_idx)
            batch = replay.next_batch()
            self.update(batch)
        self.last_batch = batch

    def on_train_start(self) -> None:
        from pytorch_lightning.callbacks import ProgressBar
        from pytorch_lightning.utilities.model_helpers import is_overridden

        k = self.hparams.get("updates_per_iteration", 1)
        if k > 1 and not self._direct_optimization():
            rank_zero_warn(f"updates_per_iteration={k} is not supported under DDP or with a 16-mixed loss scaler: "
                           "using 1 update per Lightning iteration.")
            k = 1
        self._iteration_updates = k
        # Lightning's order (trainer.callbacks); progress bars count iterations and refresh themselves.
        self._per_update_callbacks = [
            cb for cb in self.trainer.callbacks
            if is_overridden("on_train_batch_end", cb, pl.Callback) and not isinstance(cb, ProgressBar)
        ]

    # -- wiring -------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage != "fit" or self.collector is not None:
            return
        if self._trainer is not None and type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()  # fsync + rename, replay sidecars
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        rank = self.trainer.global_rank if self._trainer is not None else 0
        self._world = world_size(self)
        if self._world > 1 and self.ddp_find_unused_parameters:
            # setup runs before the strategy wraps the module in DistributedDataParallel; Lightning keeps
            # the wrapper's kwargs in _ddp_kwargs (no public setter), so `strategy: ddp` just works.
            ddp_kwargs = getattr(self.trainer.strategy, "_ddp_kwargs", None)
            if ddp_kwargs is not None:
                ddp_kwargs.setdefault("find_unused_parameters", True)
        seed = self.hparams.seed
        if self.env_config.id.startswith("ALE/"):  # pixels: frames stored once (lightq.data.frame_replay)
            from lightq.interaction.atari_collector import make_atari_collector

            self.collector = make_atari_collector(self, device=device, rank=rank)
            buffer = self.collector.buffer
        else:
            buffer = make_replay_buffer(self.replay_config, device=device, seed=stream_seed(seed, "replay", rank))
            self.collector = Collector(
                make_vec_env(self.env_config),
                buffer,
                n_step=self.hparams.n_step,
                gamma=self.hparams.gamma,
                seed=seed,
                rank=rank,
                device=device,
                env_id=self.env_config.id,
            )
            if self.hparams.get("async_collection", False):
                if self._world > 1:
                    rank_zero_warn("async_collection is not supported under DDP: collecting synchronously.")
                elif self.env_config.vectorization != "sync":
                    rank_zero_warn("async_collection needs env.vectorization: sync (the worker process forks the "
                                   "envs): collecting synchronously.")
                else:
                    self.collector = AsyncCollector(self.collector, self)
        self.eval_env = self.make_eval_env()
        if self.hparams.get("compile_update", False):
            # fullgraph=False: the loss reads hyper-parameters (Python constants, guarded) and may break the
            # graph under a debugger; dynamic=False: one batch shape per run.
            self.loss_fn = torch.compile(self.td_loss, dynamic=False)
        # Exploration and eval-ε randomness: numpy generators of the run seed's streams (lightq.seeding).
        self.explore_rng = numpy_rng(seed, "explore", rank)
        self.eval_rng = numpy_rng(seed, "eval_epsilon", rank)
        self.replay = ReplayIterable(
            buffer, self._rank_replay_config(), num_updates=self.num_updates, before_sample=self.collector.flush
        )

    def make_eval_env(self, *, render_mode: str | None = None):
        """The single env of the evaluation protocol (``lightq evaluate`` and videos use it too)."""
        return make_env(self.env_config, render_mode=render_mode)

    def _rank(self) -> int:
        """This process's global rank (0 without a Trainer): per-rank generators derive from it."""
        return self.trainer.global_rank if self._trainer is not None else 0

    def _rank_replay_config(self) -> ReplayConfig:
        """This rank's replay settings: with ``ddp_batch: split`` each rank samples batch_size / N."""
        n, config = self._world, self.replay_config
        if n == 1 or self.hparams.get("ddp_batch", "split") == "per_rank":
            return config
        if config.batch_size % n:
            raise ValueError(
                f"replay.batch_size={config.batch_size} is not divisible by the {n} DDP ranks (ddp_batch: split "
                f"gives each rank batch_size / {n}); use a multiple of {n} or set model ddp_batch: per_rank."
            )
        return replace(config, batch_size=config.batch_size // n)

    def teardown(self, stage: str) -> None:
        if self.collector is not None:
            self.collector.close()
        if self.eval_env is not None:
            self.eval_env.close()

    def train_dataloader(self) -> ReplayIterable:
        return self.replay

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        # Replay storage already lives on the training device: skip Lightning's recursive per-tensor ``.to``.
        return batch

    def configure_callbacks(self):
        callbacks: list[pl.Callback] = [EnvInteractionCallback(), Evaluation(), GracefulShutdown()]
        if self.evaluation.video_every_env_steps is not None:
            from lightq.callbacks.video import VideoRecording

            callbacks.append(VideoRecording())
        if self.evaluation.log_model:
            from lightq.callbacks.policy_model import PolicyModelLogging

            callbacks.append(PolicyModelLogging())
        if self.watchdog.enabled:
            callbacks.append(Watchdog(self.watchdog))
        bar = getattr(self._trainer, "progress_bar_callback", None) if self._trainer is not None else None
        if bar is not None and type(bar).__name__ == "TQDMProgressBar":
            callbacks.append(LightqProgressBar())
        return callbacks

    # -- policies ---------------------------------------------------------------------------------
    def warmup_policy(self, obs: np.ndarray) -> np.ndarray:
        """Uniform random actions for the warm-up, drawn from the exploration generator."""
        n = obs.shape[0]
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):  # indices 0..n-1 (make_env shifts a space's start away)
            return (self.explore_rng.random(n) * int(space.n)).astype(np.int64)
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

    def greedy_actions(self, obs: np.ndarray) -> np.ndarray:
        """``greedy_policy`` on a numpy batch, back to numpy."""
        device = self.collector.device if self.collector is not None else self.device  # no collector: evaluate
        with torch.inference_mode():
            return self.greedy_policy(torch.as_tensor(obs, device=device)).cpu().numpy()

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
        # Under DDP, rank r runs episodes r, r + N, ...: the same episode seeds as one process, gathered.
        rank, n = (self.trainer.global_rank, self._world) if self._trainer is not None else (0, 1)
        seeds = eval_episode_seeds(self.hparams.seed, ev.seed_offset, ev.episodes)[rank::n]
        was_training = self.training
        self.eval()
        probe = None
        if ev.value_probe and self.has_value_estimate:
            probe = ValueProbe(self.value_estimate, self.hparams.gamma)
        returns, lengths = evaluate_policy(
            self.eval_env, self.eval_policy, seeds=seeds, device=self.device, probe=probe
        )
        self.train(was_training)
        if n > 1:
            per_rank = math.ceil(ev.episodes / n)
            returns = gather_values(self, returns, per_rank)
            lengths = gather_values(self, lengths, per_rank)
        metrics = {
            "eval/return_mean": float(returns.mean()),
            "eval/return_std": float(returns.std()),
            "eval/length_mean": float(lengths.mean()),
        }
        if probe is not None:  # sums and counts of every rank's visited states (one rank: its own)
            metrics.update(ValueProbe.metrics_from(gather_values(self, probe.totals(), 3).reshape(-1, 3).sum(0)))
        self.last_eval_return = metrics["eval/return_mean"]
        self.last_eval_env_steps = self.env_steps
        self.final_eval = metrics
        self.log_metrics(metrics)
        if self._trainer is not None:
            self.trainer.callback_metrics["eval/return_mean"] = torch.tensor(metrics["eval/return_mean"])
        return metrics

    # -- checkpoint ---------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        is_async = isinstance(self.collector, AsyncCollector)
        if is_async:  # join the chunk in flight: a consistent state
            self.sync_env_steps()
        checkpoint["lightq"] = {
            "async_collection": is_async,  # episode state lives in the worker: not in this checkpoint
            "algorithm": self.algorithm_name,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "world_size": getattr(self, "_world", 1),
            "collector": self.collector.state_dict() if self.collector is not None else None,
            "replay_iterable": self.replay.state_dict() if self.collector is not None else None,
            "mlflow_run": mlflow_run_record(self._trainer),
        }
        if self.collector is not None and "optimizer_states" in checkpoint:  # not for weights-only saves
            checkpoint["lightq"]["resume"] = capture_state(self)
            checkpoint["lightq"]["replay_sidecar"] = self._write_replay_sidecar()

    def _write_replay_sidecar(self) -> dict[str, str]:
        """This rank's replay sidecar for the current update (once per update, however many .ckpt refer to it)."""
        trainer = self.trainer
        callback = trainer.checkpoint_callback
        root = Path(getattr(callback, "dirpath", None) or trainer.default_root_dir)
        name = sidecar_name(self.updates)
        if getattr(self, "_sidecar_written", None) != (name, str(root)):
            write_sidecar(root, name, trainer.global_rank, capture_replay(self))
            self._sidecar_written = (name, str(root))
        trainer.strategy.barrier("lightq_replay_sidecar")  # every rank's sidecar is complete before the .ckpt
        return {"name": name, "path": str((root / SIDECAR_DIR / name).resolve())}

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
        if self._trainer is not None:
            continue_unfinished_run(self.trainer, checkpoint, remaining_updates=self.num_updates - self.updates)

    def on_fit_start(self) -> None:
        state = getattr(self, "_pending_state", None)
        if state is not None and self.collector is not None:
            saved_world = int(state.get("world_size", 1))
            if saved_world != self._world:
                raise ValueError(
                    f"This checkpoint was written by {saved_world} DDP rank(s) but this run has {self._world}: "
                    "the per-rank env-step clocks would not add up to the saved global one. Resume with "
                    f"{saved_world} rank(s) (trainer.devices × trainer.num_nodes)."
                )
            if state.get("collector") is not None:
                self.collector.load_state_dict(state["collector"])
            if state.get("replay_iterable") is not None:
                self.replay.load_state_dict(state["replay_iterable"])
            self._restore_exact(state)
            self._pending_state = None

    def _restore_exact(self, state: dict[str, Any]) -> None:
        """Replay sidecar, RNG, env and exploration state (``lightq.algos.resume``); warns where impossible."""
        sidecar = state.get("replay_sidecar")
        replay = None
        if sidecar is not None:
            ckpt_path = self._trainer.ckpt_path if self._trainer is not None else None
            beside = Path(ckpt_path).parent / SIDECAR_DIR / sidecar["name"] if ckpt_path else None
            folder = beside if beside is not None and beside.is_dir() else Path(sidecar["path"])
            replay = read_sidecar(folder, self.trainer.global_rank)
        if replay is not None:
            restore_replay(self, replay)
        else:
            self._replay_sidecar_missing = True
            rank_zero_warn(
                "RESUME IS NOT EXACT: this checkpoint's replay sidecar "
                f"({sidecar['path'] if sidecar else 'none recorded: written by an older lightq'}) is missing, "
                "so the replay buffer starts empty and is refilled with the current policy (counted env steps)."
            )
        if state.get("resume") is not None:
            restore_state(self, state["resume"])
        if state.get("async_collection"):
            rank_zero_warn("RESUME IS NOT EXACT: this checkpoint was written with async_collection, whose worker "
                           "process holds the episodes in flight; every env starts a new episode now.")
