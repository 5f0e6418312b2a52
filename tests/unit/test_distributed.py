"""DDP settings that fail early with a clear message, and the world-size arithmetic, without processes."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from lightq.algos import DQN

KW = dict(env={"id": "CartPole-v1"}, replay={"batch_size": 32}, evaluation={"every_env_steps": None},
          total_env_steps=300, learning_starts_env_steps=100, hidden=[16])


def test_bad_ddp_batch_names_the_choices():
    with pytest.raises(ValueError, match="ddp_batch='global'.*'split'.*'per_rank'"):
        DQN(**KW, ddp_batch="global")


def test_split_batch_must_divide_over_ranks():
    model = DQN(**KW)
    model._world = 3  # as set in setup under 3 ranks
    with pytest.raises(ValueError, match="batch_size=32 is not divisible by the 3 DDP ranks.*per_rank"):
        model._rank_replay_config()
    model._world = 4
    assert model._rank_replay_config().batch_size == 8
    assert model.num_updates == 200  # split: env_steps_per_update is global


def test_per_rank_batch_scales_env_steps_per_update():
    model = DQN(**KW, ddp_batch="per_rank")
    model._world = 4
    assert model._rank_replay_config().batch_size == 32
    assert model.global_env_steps_per_update == 4.0
    assert model.num_updates == 50  # (300 − 100) / (4 × 1)


def test_resuming_with_another_world_size_is_refused(tmp_path):
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(DQN(**KW))
    path = trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["lightq"]["world_size"] == 1
    ckpt["lightq"]["world_size"] = 2  # as if written by two DDP ranks
    torch.save(ckpt, tmp_path / "ddp.ckpt")
    resumed = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match="written by 2 DDP rank.*this run has 1.*Resume with 2 rank"):
        resumed.fit(DQN(**{**KW, "total_env_steps": 400}), ckpt_path=tmp_path / "ddp.ckpt")
