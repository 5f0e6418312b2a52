"""CEM-Q vs NAF vs DDPG on Pendulum-v1: 5 seeds each, learning curves with 95% bootstrap bands, a table.

    .venv/bin/python experiments/continuous_actions/run.py [--seeds 0 1 2 3 4] [--workers 2]

Trains the shipped configs (configs/{cemq,naf,ddpg}/pendulum.yaml) through the `lightq` CLI, each run in
its own process and MLflow store under experiments/continuous_actions/runs/ (re-running skips finished
runs), then writes curves.png and results.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ALGOS = {"CEM-Q": "cemq", "NAF": "naf", "DDPG": "ddpg"}


def run_one(algo: str, seed: int) -> list[tuple[int, float]]:
    out = HERE / "runs" / f"{ALGOS[algo]}-seed{seed}"
    done = out / "eval.json"
    if done.exists():
        return [tuple(x) for x in json.loads(done.read_text())]
    out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{out}/mlflow.db"
    cmd = [sys.executable, "-m", "lightq.cli", "fit", "--config", str(ROOT / "configs" / ALGOS[algo] / "pendulum.yaml"),
           "--model.init_args.seed", str(seed), "--trainer.enable_progress_bar", "false",
           "--trainer.enable_checkpointing", "false"]
    proc = subprocess.run(cmd, cwd=out, env=dict(os.environ, MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{algo} seed {seed} failed:\n{proc.stderr[-2000:]}")
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    curve = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/return_mean")]
    done.write_text(json.dumps(curve))
    return curve


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n: int = 2000) -> tuple[float, float]:
    """95% percentile bootstrap CI of the mean over seeds (axis 0)."""
    idx = rng.integers(0, len(values), size=(n, len(values)))
    means = values[idx].mean(axis=1)
    return tuple(np.percentile(means, [2.5, 97.5], axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(a, s) for a in ALGOS for s in args.seeds]
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        curves = dict(zip(jobs, pool.map(lambda j: run_one(*j), jobs)))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = []
    for algo in ALGOS:
        steps = np.array([s for s, _ in curves[(algo, args.seeds[0])]])
        values = np.array([[v for _, v in curves[(algo, s)]] for s in args.seeds])  # [seeds, evals]
        lo, hi = bootstrap_ci(values, rng)
        ax.plot(steps, values.mean(0), label=algo)
        ax.fill_between(steps, lo, hi, alpha=0.2)
        final = values[:, -1]
        flo, fhi = bootstrap_ci(final[:, None], rng)
        reached = [int(steps[np.argmax(v >= -200)]) if (v >= -200).any() else None for v in values]
        rows.append((algo, final.mean(), float(flo[0]), float(fhi[0]), sum(r is not None for r in reached),
                     int(np.median([r for r in reached if r is not None])) if any(r is not None for r in reached) else None))
    ax.axhline(-200, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return (mean of 5 episodes)")
    ax.set_title(f"Pendulum-v1, {len(args.seeds)} seeds, mean and 95% bootstrap CI")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=120)
    lines = ["| algorithm | final eval return (20k env steps), mean | 95% bootstrap CI | seeds reaching ≥ −200 | median env steps to ≥ −200 |",
             "|---|---|---|---|---|"]
    for algo, mean, lo, hi, n_ok, med in rows:
        lines.append(f"| {algo} | {mean:.1f} | [{lo:.1f}, {hi:.1f}] | {n_ok}/{len(args.seeds)} | {med if med is not None else '—'} |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
