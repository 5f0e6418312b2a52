"""One rank of the DDP integration tests: ``torchrun --nproc_per_node 2 ddp_worker.py OUT SCENARIO...``.

Each scenario fits a small model with ``strategy="ddp"`` on CPU (gloo) and writes what this rank saw to
``OUT/<scenario>.rank<r>.pt`` (tensors and numbers only: read back with ``weights_only=True``):
its parameters, the first observations in its replay buffer, the first sampled batches, its local and
global clocks and the final evaluation. Scenarios run in order in the same processes (one start-up).

    dqn        DQN, 2 ranks, ddp_batch split, evaluation at the end; saves OUT/dqn.ckpt after update 100
    resume     resumes dqn.ckpt under DDP and finishes the run
    ddpg       DDPG with TD3's switches (twin critics, smoothing, policy delay 2)
    control    DQN with DDP's gradient all-reduce replaced by a no-op (the ranks must diverge)
    per_rank   DQN with ddp_batch per_rank
    bf16       DDPG (TD3 switches) under DDP with precision bf16-mixed
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy

from lightq.algos import DDPG, DQN

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
for name in ("pytorch_lightning", "lightning.pytorch", "torchrl", "lightning_fabric"):
    logging.getLogger(name).setLevel(logging.ERROR)

DQN_KW = dict(
    env={"id": "CartPole-v1", "num_envs": 2}, replay={"batch_size": 32, "batches_per_sample": 1},
    total_env_steps=600, learning_starts_env_steps=200, env_steps_per_update=2.0, seed=3,
    evaluation={"every_env_steps": 0, "episodes": 3}, hidden=[32], lr=1e-3, target_update_period_updates=50,
    log_every_updates=50,
)
DDPG_KW = dict(
    env={"id": "Pendulum-v1", "num_envs": 1}, replay={"batch_size": 16, "batches_per_sample": 1},
    total_env_steps=300, learning_starts_env_steps=100, seed=5, hidden=[32],
    evaluation={"every_env_steps": None}, twin_critics=True, target_policy_noise=0.2, policy_delay=2,
    log_every_updates=50,
)


class Recorder(pl.Callback):
    """Keeps the first sampled batches (observation sums) of this rank."""

    def __init__(self) -> None:
        self.batch_obs: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if len(self.batch_obs) < 5:
            self.batch_obs.append(batch.obs.detach().clone())


class SaveAt(pl.Callback):
    """Saves a checkpoint (every rank calls, rank 0 writes) right after update ``at``."""

    def __init__(self, path: Path, at: int) -> None:
        self.path, self.at = path, at

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if module.updates == self.at:
            trainer.save_checkpoint(self.path)


def _noop_allreduce(state, bucket):
    """A DDP comm hook that keeps each rank's local gradient: DDP without the all-reduce."""
    fut = torch.futures.Future()
    fut.set_result(bucket.buffer())
    return fut


class NoAllReduce(pl.Callback):
    """Registers ``_noop_allreduce`` on the DDP wrapper (Lightning registers comm hooks on CUDA only)."""

    def on_train_start(self, trainer, module) -> None:
        trainer.strategy.model.register_comm_hook(None, _noop_allreduce)


def fit(model, out: Path, name: str, *, ckpt_path=None, precision="32-true") -> None:
    recorder = Recorder()
    callbacks = [recorder]
    if name == "dqn":
        callbacks.append(SaveAt(out / "dqn.ckpt", 100))
    if name == "control":
        callbacks.append(NoAllReduce())
    strategy = DDPStrategy(process_group_backend="gloo")
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy=strategy, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, precision=precision,
    )
    trainer.fit(model, ckpt_path=ckpt_path)
    rank = trainer.global_rank
    record = {
        "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "buffer_obs": model.collector.buffer.storage[:64]["obs"].clone(),
        "batch_obs": torch.stack(recorder.batch_obs),
        "batch_size": int(recorder.batch_obs[0].shape[0]),
        "local_env_steps": int(model.collector.env_steps),
        "env_steps": int(model.env_steps),
        "updates": int(model.updates),
        "num_updates": int(model.num_updates),
        "world_size": int(trainer.world_size),
        "final_eval": {k: float(v) for k, v in (model.final_eval or {}).items()},
        "precision": str(trainer.precision_plugin.precision),
    }
    torch.save(record, out / f"{name}.rank{rank}.pt")


def main() -> None:
    out = Path(sys.argv[1])
    for name in sys.argv[2:]:
        if name == "dqn":
            fit(DQN(**DQN_KW), out, name)
        elif name == "resume":
            fit(DQN(**DQN_KW), out, name, ckpt_path=out / "dqn.ckpt")
        elif name == "ddpg":
            fit(DDPG(**DDPG_KW), out, name)
        elif name == "control":
            fit(DQN(**DQN_KW), out, name)
        elif name == "per_rank":
            fit(DQN(**{**DQN_KW, "ddp_batch": "per_rank"}), out, name)
        elif name == "bf16":
            fit(DDPG(**DDPG_KW), out, name, precision="bf16-mixed")
        else:
            raise SystemExit(f"unknown scenario {name!r}")


if __name__ == "__main__":
    main()
