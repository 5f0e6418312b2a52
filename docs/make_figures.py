"""Make the README's figures from a real run of the default job (``make train``'s config).

    .venv/bin/python docs/make_figures.py [--workdir EMPTY_DIR]

Trains ``configs/dqn/cartpole.yaml`` (DQN on CartPole-v1, seed 0) with ``lightq fit`` in ``--workdir``,
then writes ``docs/learning_curve.png`` (``eval/return_mean`` ± ``eval/return_std`` read back from the
run's MLflow store) and ``docs/cartpole_agent.gif`` (the trained greedy policy's first eval episode, as
``lightq evaluate`` plays it, every other frame at half size).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def train(workdir: Path) -> tuple[str, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    if any(workdir.iterdir()):  # the figures must come from this one run, not an older one beside it
        raise SystemExit(f"make_figures: {workdir} is not empty; pass a new --workdir (or omit it).")
    uri = f"sqlite:///{workdir}/mlflow.db"
    cmd = [sys.executable, "-m", "lightq.cli", "fit", "--config", str(ROOT / "configs/dqn/cartpole.yaml"),
           "--trainer.enable_progress_bar", "false"]
    subprocess.run(cmd, cwd=workdir, env=dict(os.environ, MLFLOW_TRACKING_URI=uri), check=True)
    (ckpt,) = sorted(workdir.glob("runs/*/checkpoints/last.ckpt"))
    return uri, ckpt


def learning_curve(uri: str, path: Path) -> float:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    mean = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval/return_mean")}
    std = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval/return_std")}
    steps = sorted(mean)
    m = [mean[s] for s in steps]
    s = [std.get(t, 0.0) for t in steps]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(steps, m, color="C0")
    ax.fill_between(steps, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color="C0", alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return (10 episodes)")
    ax.set_title("make train: DQN on CartPole-v1, seed 0", fontsize=9)
    ax.set_ylim(0, 520)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return m[-1]


def agent_gif(ckpt: Path, path: Path, every: int = 2, scale: int = 2) -> int:
    import numpy as np
    from PIL import Image

    from lightq.callbacks.evaluation import evaluate_policy
    from lightq.commands.evaluate import load_checkpoint_agent
    from lightq.seeding import eval_episode_seeds

    agent = load_checkpoint_agent(ckpt)
    env = agent.make_env(render_mode="rgb_array")
    frames = []
    seed = eval_episode_seeds(agent.seed, int(agent.evaluation.get("seed_offset", 0)), 1)[0]
    _, lengths = evaluate_policy(env, agent.policy, seeds=[seed], device=agent.device,
                                 on_step=lambda episode: frames.append(np.asarray(env.render())))
    env.close()
    images = [Image.fromarray(f[::scale, ::scale]).quantize(colors=16) for f in frames[::every]]
    fps = int(env.metadata.get("render_fps") or 50)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 * every / fps), loop=0,
                   optimize=True)
    return int(lengths[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=None, help="an empty folder (default: a new temporary one)")
    ns = p.parse_args()
    if ns.workdir is None:
        import tempfile

        ns.workdir = Path(tempfile.mkdtemp(prefix="lightq-figures-"))
    uri, ckpt = train(ns.workdir)
    final = learning_curve(uri, DOCS / "learning_curve.png")
    length = agent_gif(ckpt, DOCS / "cartpole_agent.gif")
    print(f"final eval return {final:.1f}; GIF episode of {length} steps")
    for name in ("learning_curve.png", "cartpole_agent.gif"):
        print(f"{DOCS / name}: {(DOCS / name).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
