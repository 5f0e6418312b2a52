"""The DQN module end to end: clocks, replay ratio, warm-up, storage and vectorization options, errors."""

import math
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lightq.algos import DQN
from lightq.envs import UnsupportedSpaceError


def _fit(model: DQN) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model)
    return trainer


class _Spy(pl.Callback):
    """Records (env_steps, buffer size) seen by each training step."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.append((module.env_steps, len(module.collector.buffer) + sum(
            len(c["reward"]) for c in module.collector._staged)))


@pytest.mark.parametrize(
    "num_envs, ratio, vectorization",
    [(1, 1.0, "sync"), (4, 0.25, "sync"), (3, 2.5, "sync"), (2, 1.0, "async")],
)
def test_replay_ratio_and_warmup_clocks(num_envs, ratio, vectorization):
    model = DQN(
        env={"id": "CartPole-v1", "num_envs": num_envs, "vectorization": vectorization},
        replay={"capacity": 5_000, "batch_size": 16, "batches_per_sample": 3},
        evaluation={"every_env_steps": None},
        total_env_steps=600, learning_starts_env_steps=200, env_steps_per_update=ratio,
        updates_per_iteration=1,  # the spy's on_train_batch_start sees every update (k > 1: test_fused_iterations)
    )
    spy = _Spy()
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[spy],
    )
    trainer.fit(model)
    assert model.updates == math.ceil((600 - 200) / ratio) == model.num_updates
    # Warm-up: the first update sees at least learning_starts env steps, in the buffer.
    assert spy.seen[0][0] >= 200 and spy.seen[0][1] >= 200
    # Replay ratio: before update u (0-based) the env-step clock is at start + u * ratio, rounded up to
    # whole vector steps (num_envs env steps each).
    for u, (env_steps, _) in enumerate(spy.seen):
        target = 200 + u * ratio
        assert target <= env_steps < target + num_envs, (u, env_steps)
    assert model.env_steps >= 600


def test_memmap_storage(tmp_path):
    model = DQN(
        env={"id": "CartPole-v1"},
        replay={"capacity": 1_000, "batch_size": 16, "storage": "memmap", "memmap_dir": str(tmp_path / "rb")},
        evaluation={"every_env_steps": None}, total_env_steps=300, learning_starts_env_steps=100,
    )
    _fit(model)
    assert len(model.collector.buffer) >= 290
    assert any((tmp_path / "rb").rglob("*.memmap"))


def test_prioritized_replay_updates_priorities():
    model = DQN(
        env={"id": "CartPole-v1"},
        replay={"capacity": 1_000, "batch_size": 16, "prioritized": True, "batches_per_sample": 2},
        evaluation={"every_env_steps": None}, total_env_steps=400, learning_starts_env_steps=100,
    )
    _fit(model)
    sampler = model.collector.buffer.sampler
    assert sampler.beta == pytest.approx(1.0)  # annealed from beta_start to 1 at the last update
    tree = sampler.state_dict()["sum_tree"]
    leaves = tree[tree.numel() // 2 : tree.numel() // 2 + len(model.collector.buffer)]
    # New items enter at the max priority; TD errors written back make the leaves differ.
    assert leaves.unique().numel() > 100
    assert torch.isclose(tree[1], leaves.sum(), rtol=1e-9)


class _MetricRecorder(pl.loggers.logger.Logger):
    """Every (step, metric, value) logged, wall-clock ``perf/*`` left out."""

    name, version = "recorder", 0

    def __init__(self):
        super().__init__()
        self.rows = []

    def log_metrics(self, metrics, step=None):
        self.rows += [(step, k, v) for k, v in sorted(metrics.items()) if not k.startswith("perf/")]

    def log_hyperparams(self, *args, **kwargs):
        pass


def test_seeded_runs_are_identical_and_seeds_differ():
    def run(seed):
        model = DQN(
            env={"id": "CartPole-v1"}, replay={"capacity": 1_000, "batch_size": 16},
            evaluation={"every_env_steps": 100, "episodes": 2}, seed=seed,
            total_env_steps=400, learning_starts_env_steps=100, log_every_updates=20,
        )
        recorder = _MetricRecorder()
        trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=recorder, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(model)
        return torch.cat([p.detach().flatten() for p in model.q_net.parameters()]), recorder.rows

    a, metrics_a = run(1)
    b, metrics_b = run(1)
    c, metrics_c = run(2)
    assert {k for _, k, _ in metrics_a} >= {"train/loss", "eval/return_mean", "rollout/episode_return"}
    assert torch.equal(a, b) and metrics_a == metrics_b  # every metric, every step, bitwise
    assert not torch.equal(a, c) and metrics_a != metrics_c


def test_dqn_rejects_continuous_actions_before_training():
    with pytest.raises(UnsupportedSpaceError, match=r"DQN needs a Discrete action space.*DDPG, NAF, CEMQ"):
        DQN(env={"id": "Pendulum-v1"})


def test_unknown_env_id_suggests_close_match():
    with pytest.raises(ValueError, match=r"CartPole-v2.*Did you mean 'CartPole-v1'"):
        DQN(env={"id": "CartPole-v2"})


def test_batch_larger_than_warmup_trains_with_a_warning():
    # Once refused; RL Baselines3 Zoo's settings need it (SB3 samples with replacement): a warning now
    # (tests/integration/test_warmup_edges.py); only a capacity below the batch is refused.
    model = DQN(env={"id": "CartPole-v1"}, replay={"batch_size": 512, "batches_per_sample": 1},
                learning_starts_env_steps=100, total_env_steps=140, evaluation={"every_env_steps": None}, hidden=(8,))
    with pytest.warns(UserWarning, match=r"replay.batch_size=512 is larger than the 100 transitions stored"):
        pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False).fit(model)
    assert model.updates == model.num_updates == 40


@pytest.mark.parametrize("kwargs, field", [
    ({"gamma": 1.5}, "gamma=1.5"), ({"n_step": 0}, "n_step=0"), ({"env_steps_per_update": 0}, "env_steps_per_update=0"),
    ({"target_update_period_updates": 0}, "target_update_period_updates=0"), ({"tau": 2.0}, "tau=2.0"),
])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DQN(env={"id": "CartPole-v1"}, **kwargs)


def _first_half(tmp_path):
    kwargs = dict(env={"id": "CartPole-v1"}, replay={"capacity": 2_000, "batch_size": 16},
                  evaluation={"every_env_steps": None}, learning_starts_env_steps=100)
    first = DQN(total_env_steps=300, **kwargs)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(first)
    ckpt = trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path
    assert ckpt
    return kwargs, first, trainer, ckpt


def test_resume_restores_the_replay_buffer_from_its_sidecar(tmp_path):
    kwargs, first, _, ckpt = _first_half(tmp_path)
    saved = first.replay.buffer[:]
    second = DQN(total_env_steps=500, **kwargs)
    trainer2 = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                          enable_model_summary=False, enable_checkpointing=False, max_steps=201)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*(empty replay buffer|RESUME IS NOT EXACT).*")
        trainer2.fit(second, ckpt_path=ckpt)
    restored = second.replay.buffer[: len(saved)]
    assert torch.equal(restored["obs"], saved["obs"]) and torch.equal(restored["action"], saved["action"])
    assert second.env_steps == 301  # no refill: one more update, one more env step


def test_resume_from_checkpoint_refills_the_empty_buffer(tmp_path):
    kwargs, first, trainer, ckpt = _first_half(tmp_path)
    for f in Path(ckpt).parent.glob("replay/u*/rank0.pt"):  # the sidecar is lost
        f.unlink()
    second = DQN(total_env_steps=500, **kwargs)
    trainer2 = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                          enable_model_summary=False, enable_checkpointing=False)
    with pytest.warns(UserWarning, match="RESUME IS NOT EXACT"), pytest.warns(UserWarning, match="empty replay buffer"):
        trainer2.fit(second, ckpt_path=ckpt)
    assert second.updates == second.num_updates == 400
    assert second.env_steps == 500  # refill steps count; stepping pauses until the ratio clock catches up
    assert trainer.global_step == first.updates == 200  # Lightning's step counter follows the updates
