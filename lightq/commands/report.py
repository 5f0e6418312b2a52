"""``lightq report``: learning curves and a final-score table of an MLflow experiment, over seeds.

    lightq report --experiment cartpole_lecture --variants dqn double --out reports/double [--value-probe]

Reads the FINISHED runs of the experiment (optionally of one ``--sweep-id``), groups them by their
``variant`` tag (``lightq sweep`` sets it; runs without one are grouped by ``algorithm``), one run per
seed (the latest when a seed was run twice; when a variant was re-run with other arguments, only the runs
with its latest ``args_hash``), and writes into ``--out``:

- ``curves.png``: ``--metric`` (default ``eval/return_mean``) against env steps, the mean over seeds and
  a 95% percentile-bootstrap band (seeds resampled), on the eval steps every seed of a variant logged;
- ``value_estimates.png`` (``--value-probe``): ``eval/q_estimate`` (solid) beside ``eval/mc_return``
  (dashed) per variant, the overestimation probe of van Hasselt et al. 2016, Fig. 3;
- ``report.md`` (+ ``report.html`` with ``--html``) and ``report.json``: per variant the final score of
  every seed (final = the metric at the run's last evaluation), and IQM, mean and median with 95%
  stratified-bootstrap CIs (``lightq.tracking.analysis``; rliable's estimators).
"""

from __future__ import annotations

import argparse
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lightq.tracking.analysis import aggregate, bootstrap_band

__all__ = ["VariantRuns", "load_runs", "main", "summarize"]

PROBE_METRICS = ("eval/q_estimate", "eval/mc_return")


@dataclass
class VariantRuns:
    """The runs of one variant: seed → {metric: [(step, value), ...]}, and the envs they ran on."""

    name: str
    histories: dict[int, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)
    envs: dict[int, str] = field(default_factory=dict)

    def curves(self, metric: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(steps [P], values [seeds, P], seeds) on the steps every seed logged."""
        seeds = sorted(s for s in self.histories if self.histories[s].get(metric))
        if not seeds:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0)), []
        per_seed = [dict(self.histories[s][metric]) for s in seeds]
        common = sorted(set.intersection(*(set(h) for h in per_seed)))
        return np.asarray(common), np.asarray([[h[t] for t in common] for h in per_seed]), seeds

    def final(self, metric: str) -> dict[int, float]:
        """seed → the metric at the run's last logged step."""
        return {s: max(h[metric])[1] for s, h in sorted(self.histories.items()) if h.get(metric)}


def load_runs(
    uri: str, experiment: str, *, metrics: list[str], sweep_id: str | None = None, variants: list[str] | None = None
) -> dict[str, VariantRuns]:
    """FINISHED runs of ``experiment`` grouped by variant, in ``variants`` order when given."""
    from mlflow import MlflowClient

    from lightq.tracking.mlflow import BrokenTrackingStore, check_sqlite_store

    try:
        check_sqlite_store(uri)
    except BrokenTrackingStore as exc:  # what happened and the fix, without a traceback
        raise SystemExit(f"lightq report: {exc}") from None
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise SystemExit(f"lightq report: no MLflow experiment {experiment!r} in {uri} (it has: {names}); "
                         "pass --tracking-uri or set MLFLOW_TRACKING_URI to the store the runs logged to.")
    flt = "attributes.status = 'FINISHED'" + (f" and tags.sweep_id = '{sweep_id}'" if sweep_id else "")
    runs = client.search_runs([exp.experiment_id], filter_string=flt, max_results=50_000,
                              order_by=["attributes.start_time ASC"])
    # A variant re-run with other settings (its args_hash changed): keep only its latest settings' runs.
    latest_hash = {}
    for r in runs:
        t = r.data.tags
        latest_hash[t.get("variant") or t.get("algorithm") or r.info.run_name] = t.get("args_hash")
    groups: dict[str, VariantRuns] = {}
    dropped: dict[str, int] = {}
    dropped_incomplete: dict[str, int] = {}
    for r in runs:  # oldest first: a later run of the same (variant, seed) replaces an earlier one
        t = r.data.tags
        name = t.get("variant") or t.get("algorithm") or r.info.run_name
        if variants and name not in variants:
            continue
        if "seed" not in t:
            continue
        if t.get("complete") == "false":  # stopped before its total_env_steps: its last eval is not final
            dropped_incomplete[name] = dropped_incomplete.get(name, 0) + 1
            continue
        if t.get("args_hash") != latest_hash[name]:
            dropped[name] = dropped.get(name, 0) + 1
            continue
        seed = int(t["seed"])
        g = groups.setdefault(name, VariantRuns(name))
        g.histories[seed] = {
            m: sorted((h.step, h.value) for h in client.get_metric_history(r.info.run_id, m)) for m in metrics
        }
        g.envs[seed] = t.get("env", "?")
    for name, n in dropped.items():
        print(f"[report] {name}: left out {n} run(s) with other settings (args_hash) than its latest runs.")
    for name, n in dropped_incomplete.items():
        print(f"[report] {name}: left out {n} run(s) stopped before their total_env_steps (tag complete=false); "
              "continue them with lightq fit ... --ckpt_path last.")
    if variants:
        missing = [v for v in variants if v not in groups]
        if missing:
            raise SystemExit(f"lightq report: no FINISHED runs of variant(s) {missing} in experiment {experiment!r}.")
        return {v: groups[v] for v in variants}
    if not groups:
        raise SystemExit(f"lightq report: experiment {experiment!r} has no FINISHED runs with a seed tag.")
    return dict(sorted(groups.items()))


def summarize(groups: dict[str, VariantRuns], metric: str, *, reps: int, seed: int) -> dict[str, dict]:
    """Per variant: final scores per seed and IQM / mean / median with stratified-bootstrap CIs."""
    out = {}
    for name, g in groups.items():
        finals = g.final(metric)
        if not finals:
            continue
        envs = sorted({g.envs[s] for s in finals})
        # [runs, tasks]: tasks = envs; a variant over several envs needs as many seeds on each (strata).
        cols = [[finals[s] for s in finals if g.envs[s] == e] for e in envs]
        if len({len(c) for c in cols}) != 1:
            raise SystemExit(f"lightq report: variant {name!r} has unequal seed counts per env "
                             f"{dict(zip(envs, map(len, cols)))}; the stratified bootstrap needs equal strata.")
        scores = np.asarray(cols, dtype=np.float64).T
        last_steps = {s: max(g.histories[s][metric])[0] for s in finals}
        out[name] = {
            "envs": envs, "seeds": list(finals), "final": finals, "final_env_steps": last_steps,
            "stats": aggregate(scores, reps=reps, seed=seed),
        }
        for m in PROBE_METRICS:
            probe = g.final(m)
            if probe:
                out[name][m] = float(np.mean(list(probe.values())))
    return out


def _plot_curves(groups, metric: str, path: Path, title: str, *, reps: int, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, g in groups.items():
        steps, values, seeds = g.curves(metric)
        if not seeds:
            continue
        mean, lo, hi = bootstrap_band(values, reps=reps, seed=seed)
        (line,) = ax.plot(steps, mean, label=f"{name} ({len(seeds)} seeds)")
        ax.fill_between(steps, lo, hi, alpha=0.2, color=line.get_color())
    ax.set_xlabel("env steps")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_probe(groups, path: Path, title: str, *, reps: int, seed: int) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    drawn, peaks = False, []
    for name, g in groups.items():
        color = None
        for metric, style, label in (("eval/q_estimate", "-", "max_a Q(s, a)"), ("eval/mc_return", "--", "MC return")):
            steps, values, seeds = g.curves(metric)
            if not seeds:
                continue
            mean, lo, hi = bootstrap_band(values, reps=reps, seed=seed)
            (line,) = ax.plot(steps, mean, style, color=color, label=f"{name}: {label}")
            color = line.get_color()
            ax.fill_between(steps, lo, hi, alpha=0.15, color=color)
            drawn = True
            peaks.append(float(np.abs(mean).max()))
    if drawn and max(peaks) > 100 * (float(np.median(peaks)) + 1):  # a diverged variant: keep the rest readable
        ax.set_yscale("symlog", linthresh=10)
    if drawn:
        ax.set_xlabel("env steps")
        ax.set_ylabel("value (discounted return)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn


def _ci(s: dict[str, float]) -> str:
    return f"{s['value']:.1f} [{s['lo']:.1f}, {s['hi']:.1f}]"


def _table(summary: dict[str, dict], probe: bool) -> tuple[list[str], list[list[str]]]:
    head = ["variant", "seeds", "final env steps", "IQM [95% CI]", "mean [95% CI]", "median [95% CI]",
            "final score per seed"]
    if probe:
        head += ["final max_a Q (mean)", "final MC return (mean)"]
    rows = []
    for name, s in summary.items():
        steps = sorted(set(s["final_env_steps"].values()))
        row = [name, str(len(s["seeds"])), ", ".join(f"{x:,}" for x in steps), _ci(s["stats"]["IQM"]),
               _ci(s["stats"]["mean"]), _ci(s["stats"]["median"]),
               ", ".join(f"{v:.1f}" for v in s["final"].values())]
        if probe:
            row += [f"{s.get('eval/q_estimate', float('nan')):.1f}", f"{s.get('eval/mc_return', float('nan')):.1f}"]
        rows.append(row)
    return head, rows


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="lightq report", description=__doc__.splitlines()[0])
    p.add_argument("--experiment", required=True, help="MLflow experiment name.")
    p.add_argument("--tracking-uri", default=None, help="Default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db.")
    p.add_argument("--sweep-id", default=None, help="Only runs tagged with this sweep id.")
    p.add_argument("--variants", nargs="+", default=None, help="Variants to include, in this order (default: all).")
    p.add_argument("--metric", default="eval/return_mean")
    p.add_argument("--value-probe", action="store_true", help="Also plot eval/q_estimate beside eval/mc_return.")
    p.add_argument("--out", default="report", help="Output folder.")
    p.add_argument("--title", default=None)
    p.add_argument("--html", action="store_true", help="Also write report.html.")
    p.add_argument("--reps", type=int, default=10_000, help="Bootstrap replicates.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the bootstrap resampling.")
    ns = p.parse_args(argv)

    from lightq.tracking.mlflow import DEFAULT_TRACKING_URI, absolute_sqlite_uri

    uri = absolute_sqlite_uri(ns.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)
    metrics = [ns.metric] + (list(PROBE_METRICS) if ns.value_probe else [])
    groups = load_runs(uri, ns.experiment, metrics=metrics, sweep_id=ns.sweep_id, variants=ns.variants)
    summary = summarize(groups, ns.metric, reps=ns.reps, seed=ns.seed)
    if not summary:
        raise SystemExit(f"lightq report: no run of experiment {ns.experiment!r} logged {ns.metric!r}.")
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    title = ns.title or f"{ns.experiment}: mean over seeds, 95% bootstrap band"
    _plot_curves(groups, ns.metric, out / "curves.png", title, reps=ns.reps, seed=ns.seed)
    probe = ns.value_probe and _plot_probe(groups, out / "value_estimates.png",
                                           f"{ns.title or ns.experiment}: value estimate vs MC return", reps=ns.reps, seed=ns.seed)
    (out / "report.json").write_text(json.dumps({"experiment": ns.experiment, "metric": ns.metric,
                                                 "variants": summary}, indent=1, default=str))
    head, rows = _table(summary, probe)
    md = [f"# {ns.experiment}", "",
          f"Final score = `{ns.metric}` at each run's last evaluation. IQM = mean of the middle 50% of the seeds' "
          f"final scores; 95% CIs by stratified percentile bootstrap over seeds ({ns.reps:,} replicates, seed "
          f"{ns.seed}; rliable's estimators, Agarwal et al. 2021). Curves: mean over seeds with a 95% bootstrap band.",
          "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", "![curves](curves.png)"] + (["", "![value estimates](value_estimates.png)"] if probe else [])
    (out / "report.md").write_text("\n".join(md) + "\n")
    if ns.html:
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        imgs = '<img src="curves.png">' + ('<img src="value_estimates.png">' if probe else "")
        (out / "report.html").write_text(
            f"<!doctype html><meta charset='utf-8'><title>{html.escape(ns.experiment)}</title>"
            f"<h1>{html.escape(ns.experiment)}</h1><p>{html.escape(md[2])}</p><table border=1>"
            "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr>{cells}</table>{imgs}\n"
        )
    print("\n".join(md[4:4 + len(rows) + 2]))
    print(f"[report] wrote {out}/report.md, curves.png" + (", value_estimates.png" if probe else ""), flush=True)
