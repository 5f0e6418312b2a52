"""``lightq sweep``: variants × seeds as parallel ``lightq fit`` processes, one MLflow run each.

    lightq sweep --experiment target_networks --seeds 0 1 2 3 4 \\
        --variant "polyak=--config configs/dqn/cartpole.yaml" \\
        --variant "hard=--config configs/dqn/cartpole.yaml --model.init_args.tau null" \\
        -- --trainer.enable_checkpointing false

Each run is ``python -m lightq.cli fit <variant args> --model.init_args.seed S`` plus the arguments after
``--`` (shared by every run), logging into MLflow experiment ``--experiment`` with the tags the CLI sets
(algorithm, env, seed, git_sha) and the sweep's own: ``sweep_id``, ``variant``, ``args_hash`` (a hash of
the run's arguments without the seed). At most ``--workers`` runs at a time (default: the GPU count when
there are GPUs, each run pinned to one with ``CUDA_VISIBLE_DEVICES``; else the CPU core count). Every
run's stdout/stderr goes to ``<logs>/<variant>-seed<S>.log``.

Re-running the same sweep skips every run that MLflow holds as FINISHED with the same sweep id, variant,
seed and args hash, so an interrupted sweep resumes where it stopped (unfinished runs start afresh).

Beyond one machine (DESIGN: use an existing scheduler, not a home-made one): ``--launcher slurm`` writes
an sbatch job-array script whose task i runs ``lightq sweep <same arguments> --index i``, i.e. run i
of the list, with the same skip rule. Ray is not supported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Run", "build_runs", "main", "parse_variant"]


@dataclass
class Run:
    """One (variant, seed) job of a sweep."""

    index: int
    variant: str
    seed: int
    args: list[str]  # the variant's arguments + the shared extra arguments, without the seed
    args_hash: str
    status: str = "pending"  # pending | skipped | finished | failed
    wall_s: float = 0.0
    final_return: float | None = None
    log: Path | None = None
    run_id: str | None = None
    extra: dict = field(default_factory=dict)


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=ARGS`` (ARGS shell-quoted ``lightq fit`` arguments) → (name, args)."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not rest.strip():
        raise SystemExit(
            f"--variant {text!r}: expected NAME=ARGS, e.g. --variant \"double=--config configs/dqn/cartpole_double.yaml\"."
        )
    if not all(c.isalnum() or c in "-_." for c in name):
        raise SystemExit(f"--variant name {name!r}: use letters, digits, '-', '_' or '.' (it names log files).")
    return name, shlex.split(rest)


def _hash(args: list[str]) -> str:
    return hashlib.sha1(json.dumps(args).encode()).hexdigest()[:12]


def build_runs(variants: list[tuple[str, list[str]]], seeds: list[int], extra: list[str]) -> list[Run]:
    """The sweep's runs in a fixed order (variant-major, then seed): index i is SLURM array task i."""
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise SystemExit(f"Variant names must be unique, got {names}.")
    runs = []
    for name, vargs in variants:
        args = list(vargs) + list(extra)
        for seed in seeds:
            runs.append(Run(index=len(runs), variant=name, seed=seed, args=args, args_hash=_hash(args)))
    return runs


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(prog="lightq sweep", description=__doc__.splitlines()[0])
    p.add_argument("--experiment", required=True, help="MLflow experiment of every run.")
    p.add_argument("--sweep-id", default=None, help="Tag identifying this sweep (default: the experiment name).")
    p.add_argument("--config", action="append", default=[], help="A variant named by the config's file stem.")
    p.add_argument("--variant", action="append", default=[], help="NAME=ARGS: a variant with its own fit arguments.")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--workers", type=int, default=None, help="Parallel runs (default: GPUs, else CPU cores).")
    p.add_argument("--tracking-uri", default=None, help="Default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db.")
    p.add_argument("--logs", default=None, help="Folder of per-run logs (default: sweep_logs/<sweep id>).")
    p.add_argument("--launcher", choices=["local", "slurm"], default="local")
    p.add_argument("--index", type=int, default=None, help="Run only run INDEX of the sweep (a SLURM array task).")
    p.add_argument("--slurm-script", default=None, help="Where --launcher slurm writes the script.")
    p.add_argument("--slurm-options", default="", help="Extra '#SBATCH' lines, ';'-separated (e.g. '--time=2:00:00').")
    p.add_argument("--dry-run", action="store_true", help="Print the runs' commands and exit.")
    ns = p.parse_args(argv)
    return ns, extra


def _tracking_uri(uri: str | None) -> str:
    from lightq.tracking.mlflow import DEFAULT_TRACKING_URI, absolute_sqlite_uri

    return absolute_sqlite_uri(uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)


def fit_command(run: Run, *, experiment: str, sweep_id: str) -> list[str]:
    tags = {"sweep_id": sweep_id, "variant": run.variant, "args_hash": run.args_hash}
    return [
        sys.executable, "-m", "lightq.cli", "fit", *run.args,
        "--model.init_args.seed", str(run.seed),
        "--trainer.logger.class_path", "lightq.tracking.LightqMLFlowLogger",
        "--trainer.logger.init_args.experiment_name", experiment,
        "--trainer.logger.init_args.run_name", f"{run.variant}-seed{run.seed}",
        "--trainer.logger.init_args.tags", json.dumps(tags),
    ]


def finished_runs(uri: str, experiment: str, sweep_id: str) -> dict[tuple[str, int, str], object]:
    """FINISHED, complete MLflow runs of this sweep keyed by (variant, seed, args_hash)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    found = {}
    for r in client.search_runs([exp.experiment_id], filter_string=f"tags.sweep_id = '{sweep_id}'", max_results=50_000):
        t = r.data.tags
        complete = t.get("complete") != "false"  # a run stopped before its end (max_steps) is not done
        if r.info.status == "FINISHED" and complete and "variant" in t and "seed" in t and "args_hash" in t:
            found[(t["variant"], int(t["seed"]), t["args_hash"])] = r
    return found


def _ensure_experiment(uri: str, experiment: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment)


def _default_workers() -> tuple[int, list[str] | None]:
    try:
        import torch

        gpus = torch.cuda.device_count()
    except Exception:  # noqa: BLE001  (no torch CUDA runtime: CPU sweep)
        gpus = 0
    if gpus:
        return gpus, [str(i) for i in range(gpus)]
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)), None


def _execute(run: Run, cmd: list[str], env: dict[str, str], slots, lock) -> None:
    run.log.parent.mkdir(parents=True, exist_ok=True)
    gpu = None
    if slots is not None:
        with lock:
            gpu = slots.pop()
        env = dict(env, CUDA_VISIBLE_DEVICES=gpu)
    start = time.perf_counter()
    try:
        with open(run.log, "w") as log:
            log.write("$ " + shlex.join(cmd) + "\n")
            log.flush()
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    finally:
        if gpu is not None:
            with lock:
                slots.append(gpu)
    run.wall_s = time.perf_counter() - start
    run.status = "finished" if rc == 0 else "failed"
    print(f"[sweep] {run.variant} seed {run.seed}: {run.status} in {run.wall_s:.0f} s (log {run.log})", flush=True)


def _slurm_script(ns: argparse.Namespace, argv: list[str], n_runs: int, workers: int, logs: Path) -> str:
    # Task i re-enters this command with --index i; drop --launcher/--slurm-* so it runs locally.
    keep, skip = [], 0
    for i, a in enumerate(argv):
        if skip:
            skip -= 1
            continue
        if a in ("--launcher", "--slurm-script", "--slurm-options"):
            skip = 1
            continue
        if a.split("=")[0] in ("--launcher", "--slurm-script", "--slurm-options"):
            continue
        keep.append(a)
    cut = keep.index("--") if "--" in keep else len(keep)  # --index goes before the fit arguments
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=lightq-{ns.sweep_id}",
        f"#SBATCH --array=0-{n_runs - 1}%{workers}",
        f"#SBATCH --output={logs}/slurm-%A_%a.out",
        "#SBATCH --cpus-per-task=1",
    ]
    lines += [f"#SBATCH {o.strip()}" for o in ns.slurm_options.split(";") if o.strip()]
    lines += [
        f"# {n_runs} runs of lightq sweep {ns.sweep_id!r}; array task i runs run i (variant-major, then seed).",
        f"export MLFLOW_TRACKING_URI={shlex.quote(ns.tracking_uri)}",
        f"cd {shlex.quote(os.getcwd())}",
        f"{shlex.quote(sys.executable)} -m lightq.cli sweep {shlex.join(keep[:cut])} --index $SLURM_ARRAY_TASK_ID"
        + (f" -- {shlex.join(keep[cut + 1:])}" if cut < len(keep) else ""),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    ns, extra = _parse(list(argv))
    ns.sweep_id = ns.sweep_id or ns.experiment
    ns.tracking_uri = _tracking_uri(ns.tracking_uri)
    variants = [(Path(c).stem, ["--config", c]) for c in ns.config] + [parse_variant(v) for v in ns.variant]
    if not variants:
        raise SystemExit("lightq sweep: give at least one --config PATH or --variant NAME=ARGS.")
    runs = build_runs(variants, ns.seeds, extra)
    logs = Path(ns.logs or Path("sweep_logs") / ns.sweep_id).resolve()
    workers, gpu_ids = _default_workers()
    workers = ns.workers or workers
    if workers < 1:
        raise SystemExit(f"--workers={workers} must be >= 1.")

    if ns.launcher == "slurm":
        script = Path(ns.slurm_script or f"sweep_{ns.sweep_id}.sbatch")
        script.write_text(_slurm_script(ns, list(argv), len(runs), workers, logs))
        print(f"[sweep] wrote {script} ({len(runs)} array tasks); submit with: sbatch {script}")
        return
    if ns.index is not None:
        if not 0 <= ns.index < len(runs):
            raise SystemExit(f"--index {ns.index} is out of range: this sweep has runs 0..{len(runs) - 1}.")
        runs = [runs[ns.index]]
        workers, gpu_ids = 1, None  # the scheduler gave this task its devices

    cmds = {r.index: fit_command(r, experiment=ns.experiment, sweep_id=ns.sweep_id) for r in runs}
    if ns.dry_run:
        for r in runs:
            print(f"{r.index}\t{shlex.join(cmds[r.index])}")
        return

    _ensure_experiment(ns.tracking_uri, ns.experiment)  # parallel runs would race to create it
    done = finished_runs(ns.tracking_uri, ns.experiment, ns.sweep_id)
    todo = []
    for r in runs:
        r.log = logs / f"{r.variant}-seed{r.seed}.log"
        if (r.variant, r.seed, r.args_hash) in done:
            r.status = "skipped"
        else:
            todo.append(r)
    print(f"[sweep] {ns.sweep_id}: {len(runs)} runs, {len(runs) - len(todo)} already finished, "
          f"{len(todo)} to run on {workers} workers; MLflow {ns.tracking_uri}, logs {logs}", flush=True)
    env = dict(os.environ, MLFLOW_TRACKING_URI=ns.tracking_uri)
    env.setdefault("OMP_NUM_THREADS", "1")  # one core per run; parallelism comes from the workers
    # One slot per worker; with more workers than GPUs, GPUs are shared round-robin.
    slots = [gpu_ids[i % len(gpu_ids)] for i in reversed(range(workers))] if gpu_ids else None
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda r: _execute(r, cmds[r.index], env, slots, lock), todo))

    _summary(runs, ns)
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        raise SystemExit(f"[sweep] {len(failed)} of {len(runs)} runs failed; see their logs: "
                         + ", ".join(str(r.log) for r in failed))


def _summary(runs: list[Run], ns: argparse.Namespace) -> None:
    done = finished_runs(ns.tracking_uri, ns.experiment, ns.sweep_id)
    print(f"\n[sweep] summary of {ns.sweep_id} (experiment {ns.experiment}):")
    print(f"{'variant':<20} {'seed':>4}  {'status':<9} {'wall s':>7}  final eval/return_mean")
    for r in runs:
        mr = done.get((r.variant, r.seed, r.args_hash))
        final = mr.data.metrics.get("eval/return_mean") if mr is not None else None
        final_s = f"{final:.1f}" if final is not None else "-"
        wall = f"{r.wall_s:.0f}" if r.status in ("finished", "failed") else "-"
        print(f"{r.variant:<20} {r.seed:>4}  {r.status:<9} {wall:>7}  {final_s}")
    print(f"report: lightq report --experiment {ns.experiment} --tracking-uri {ns.tracking_uri}", flush=True)
