"""DDP scaling: one process vs N data-parallel processes (DDP) on the same DQN run, measured in one run.

Each configuration is a fresh process group (``torch.distributed.run``) fitting DQN on CartPole-v1
(2 envs per rank, MLP 120-84, global batch 64, 2 env steps per update, evaluation and logging off):

    1 proc               one process, Lightning's single-device strategy (the baseline);
    N proc split        ``ddp_batch: split``: the one-process run's updates, each rank sampling 64 / N and
                         collecting 1 / N of the env steps;
    N proc per_rank     ``ddp_batch: per_rank``: each rank samples 64 and collects 2 env steps per update
                         (global batch N · 64, N times fewer updates for the same env steps).

Timing covers the training loop only (from the end of the warm-up to the end of fit, measured by every
rank; the slowest rank is reported). Printed per configuration: updates/s (every rank does every update),
env steps/s per rank and in total, then ``ratio ... / 1 proc`` lines for total env steps/s and updates/s.
Rounds are interleaved and medians compared (this machine's speed drifts).
Usage: ``python benchmarks/ddp_scaling.py [--procs 2] [--rounds 2] [--accelerator cpu|gpu] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import harness  # benchmarks/harness.py (this script and its workers run from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.strategies import DDPStrategy

    from lightq.algos import DQN

    harness.quiet()

    class Clock(pl.Callback):
        def on_train_start(self, trainer, module):  # runs after EnvInteractionCallback's warm-up
            self.t0, self.e0, self.u0 = time.perf_counter(), module.collector.env_steps, module.updates

        def on_train_end(self, trainer, module):
            self.secs = time.perf_counter() - self.t0
            self.local_steps = module.collector.env_steps - self.e0
            self.updates = module.updates - self.u0

    world = int(os.environ.get("WORLD_SIZE", "1"))
    model = DQN(
        env={"id": "CartPole-v1", "num_envs": 2}, replay={"batch_size": 64, "capacity": 50_000},
        total_env_steps=args.total, learning_starts_env_steps=2_000, env_steps_per_update=2.0,
        evaluation={"every_env_steps": None}, log_every_updates=10**9, ddp_batch=args.mode, tau=0.01,
    )
    clock = Clock()
    strategy = DDPStrategy(process_group_backend="gloo" if args.accelerator == "cpu" else "nccl") if world > 1 else "auto"
    trainer = pl.Trainer(
        accelerator=args.accelerator, devices=world, strategy=strategy, max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[clock],
    )
    trainer.fit(model)
    rank = trainer.global_rank
    Path(args.out, f"rank{rank}.json").write_text(json.dumps(
        {"secs": clock.secs, "local_env_steps": clock.local_steps, "updates": clock.updates, "world": world}))


def launch(procs: int, mode: str, total: int, accelerator: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
               __file__, "--worker", "--out", out, "--mode", mode, "--total", str(total), "--accelerator", accelerator]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-4000:])
        ranks = [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank*.json"))]
    secs = max(r["secs"] for r in ranks)
    total_steps = sum(r["local_env_steps"] for r in ranks)
    return {"secs": secs, "updates_per_s": ranks[0]["updates"] / secs,
            "env_steps_per_s_per_rank": ranks[0]["local_env_steps"] / secs, "env_steps_per_s": total_steps / secs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="split", help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, default=22_000, help="env steps per run (warm-up 2,000 included)")
    parser.add_argument("--procs", type=int, default=2, help="DDP processes to compare with one")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--quick", action="store_true", help="8,000 env steps per run, 1 round")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.total, args.rounds = 8_000, 1
    n = args.procs
    configs = {"1 proc": (1, "split"), f"{n} proc split": (n, "split"), f"{n} proc per_rank": (n, "per_rank")}
    results: dict[str, list[dict]] = {name: [] for name in configs}
    print(f"DQN CartPole-v1, {args.total} env steps per run, accelerator {args.accelerator}, {args.rounds} rounds")
    for r in range(args.rounds):
        for name, (procs, mode) in configs.items():
            res = launch(procs, mode, args.total, args.accelerator)
            results[name].append(res)
            print(f"round {r} {name:16s}: {res['secs']:.1f}s, {res['updates_per_s']:.0f} updates/s, "
                  f"{res['env_steps_per_s_per_rank']:.0f} env steps/s per rank, {res['env_steps_per_s']:.0f} in total",
                  flush=True)
    med = {name: {k: float(np.median([x[k] for x in runs])) for k in runs[0]} for name, runs in results.items()}
    for name, m in med.items():
        print(f"{name:16s} median: {m['updates_per_s']:.0f} updates/s, {m['env_steps_per_s_per_rank']:.0f} env steps/s "
              f"per rank, {m['env_steps_per_s']:.0f} env steps/s in total")
    base = med["1 proc"]
    for name in list(configs)[1:]:
        print(f"ratio {name} / 1 proc: env steps/s {med[name]['env_steps_per_s'] / base['env_steps_per_s']:.2f}, "
              f"updates/s {med[name]['updates_per_s'] / base['updates_per_s']:.2f}")


if __name__ == "__main__":
    main()
