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


SB3_INSTALL = "pip install -c constraints.txt -r benchmarks/requirements-sb3.txt"
BASELINES = ("plain", "sb3")  # impls every other impl is compared with, when present


def run(
    description: str, settings: dict[str, dict], impls: dict[str, Impl], quick_fraction: int,
    notes: tuple[str, ...] | list[str] = (),
) -> None:
    """Rounds of every impl back to back per setting; prints medians and ``ratio <impl>/<baseline>`` lines.

    The machine's speed drifts by ±30% over minutes, so rounds are interleaved and each ratio is the median
    over rounds of the ratio within a round (the two impls ran back to back).
    Each impl that is not a baseline (``plain``, ``sb3``) is compared with each baseline present, in updates/s:
    per setting ``[setting] ratio lightq/plain: X.XX`` (and ``ratio lightq/sb3``, ``ratio lightq-async/plain``, ...),
    then the lowest ratio of all settings for each pair; ``ratio lightq/plain: X.XX`` is always the last line.
    An impl whose update count differs from plain's by more than 1 gets a warning line. ``notes`` are printed
    after the version line (versions of the compared libraries, or why an impl was left out).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=f"1/{quick_fraction} of the env steps after warm-up")
    parser.add_argument("--settings", nargs="*", default=list(settings))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--impls", nargs="*", default=list(impls), choices=list(impls),
                        help="the implementations to run (default: all)")
    args = parser.parse_args()
    impls = {name: fn for name, fn in impls.items() if name in args.impls}
    quiet()
    print(f"torch {torch.__version__}, threads 1")
    for note in notes:
        print(note)
    width = max(6, *(len(impl) for impl in impls))
    pairs = [(impl, base) for impl in impls if impl not in BASELINES for base in BASELINES if base in impls]
    ratios: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    for name in args.settings:
        cfg = dict(settings[name])
        if args.quick:
            cfg["total"] = cfg["starts"] + (cfg["total"] - cfg["starts"]) // quick_fraction
        times: dict[str, list[float]] = {impl: [] for impl in impls}
        updates: dict[str, int] = {}
        steps: dict[str, int] = {}
        for r in range(args.rounds):
            for impl, fn in impls.items():
                secs, updates[impl], steps[impl] = fn(cfg, r)
                times[impl].append(secs)
                print(f"[{name}] round {r} {impl:{width}s}: {updates[impl]} updates, {steps[impl]} env steps "
                      f"in {secs:.2f}s")
        if "plain" in updates:
            for impl in impls:
                if abs(updates[impl] - updates["plain"]) > 1:
                    print(f"[{name}] WARNING: {impl} did {updates[impl]} updates, plain {updates['plain']}")
        speed = {}
        for impl in impls:
            secs = float(np.median(times[impl]))
            speed[impl] = updates[impl] / secs
            print(f"[{name}] {impl:{width}s} median: {speed[impl]:.0f} updates/s, {steps[impl] / secs:.0f} env steps/s")
        for impl, base in pairs:
            # Median over rounds of the paired ratio (both ran back to back in the same round): the machine's
            # drift between rounds cancels, which a ratio of the two medians does not do.
            paired = [(updates[impl] / t_impl) / (updates[base] / t_base)
                      for t_impl, t_base in zip(times[impl], times[base])]
            ratios[impl, base].append(float(np.median(paired)))
            print(f"[{name}] ratio {impl}/{base}: {ratios[impl, base][-1]:.2f}")
    # Lowest over the settings; lightq/plain last (other code parses the last line).
    for pair in sorted(pairs, key=lambda p: p == ("lightq", "plain")):
        print(f"ratio {pair[0]}/{pair[1]}: {min(ratios[pair]):.2f}")
