"""Shared by the throughput scripts: quiet logging, Lightning fit timing, interleaved rounds and medians."""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch

Impl = Callable[[dict, int], "tuple[float, int, int]"]  # (cfg, seed) -> (seconds, updates, env steps)


def quiet() -> None:
    """One intra-op thread and no warnings or INFO logs: the setup every benchmark here measures under."""
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "torchrl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(1)


def time_fit(model: pl.LightningModule) -> tuple[float, int, int]:
    """``Trainer.fit`` on CPU with logging, checkpoints and the progress bar off; (seconds, updates, env steps)."""
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    t0 = time.perf_counter()
    trainer.fit(model)
    return time.perf_counter() - t0, model.updates, model.env_steps


def run(description: str, settings: dict[str, dict], impls: dict[str, Impl], quick_fraction: int) -> None:
    """Rounds of every impl back to back per setting; prints medians and ``ratio lightq/plain`` lines.

    The machine's speed drifts by ±30% over minutes, so rounds are interleaved and medians compared.
    The last line is the lowest ratio of all settings.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=f"1/{quick_fraction} of the env steps after warm-up")
    parser.add_argument("--settings", nargs="*", default=list(settings))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    quiet()
    print(f"torch {torch.__version__}, threads 1")
    ratios = []
    for name in args.settings:
        cfg = dict(settings[name])
        if args.quick:
            cfg["total"] = cfg["starts"] + (cfg["total"] - cfg["starts"]) // quick_fraction
        times: dict[str, list[float]] = {impl: [] for impl in impls}
        for r in range(args.rounds):
            for impl, fn in impls.items():
                secs, updates, steps = fn(cfg, r)
                times[impl].append(secs)
                print(f"[{name}] round {r} {impl:6s}: {updates} updates, {steps} env steps in {secs:.2f}s")
        speed = {}
        for impl in impls:
            secs = float(np.median(times[impl]))
            speed[impl] = updates / secs
            print(f"[{name}] {impl:6s} median: {updates / secs:.0f} updates/s, {steps / secs:.0f} env steps/s")
        ratios.append(speed["lightq"] / speed["plain"])
        print(f"[{name}] ratio lightq/plain: {ratios[-1]:.2f}")
    print(f"ratio lightq/plain: {min(ratios):.2f}")
