"""``lightq evaluate``: run a trained agent for N complete episodes and print a score table.

    lightq evaluate --ckpt_path runs/.../last.ckpt [--episodes 10] [--video] [--log] [--log-model]
    lightq evaluate --model_uri runs:/<run id>/policy        # or models:/<name>/<version>, or --run_id <id>

A checkpoint is read with ``torch.load(weights_only=True)`` (tensors and plain containers, no code),
the algorithm class is looked up by the name the checkpoint records (``lightq.algos.registry``),
rebuilt from its stored hyperparameters and given the stored weights. A logged MLflow policy model
(``lightq.tracking.models``, pickle-free ``pt2``) carries the env and evaluation protocol in its metadata.

The protocol is the training-time one (``lightq.callbacks.evaluation``): the algorithm's eval env
(``make_eval_env``, built from the checkpoint's env config), its eval policy (ε-greedy at
``evaluation.epsilon`` for discrete actions, the deterministic greedy action for boxes), episode i
reset with the run's eval-episode seed ``seed_offset + i`` (``lightq.seeding.eval_episode_seeds``); the return is the sum of the eval env's rewards (no clipping).
``--seed``, ``--seed_offset``, ``--episodes`` and ``--epsilon`` override it; the seeds used are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lightq.callbacks.evaluation import evaluate_policy
from lightq.seeding import eval_episode_seeds, numpy_rng, stream_seed
from lightq.tracking.mlflow import DEFAULT_TRACKING_URI, absolute_sqlite_uri

__all__ = ["EvaluationResult", "LoadedAgent", "format_table", "load_checkpoint_agent", "load_model_agent", "main"]


@dataclass
class LoadedAgent:
    """What the command evaluates: a policy, its eval env factory and where it came from."""

    algorithm: str
    env_id: str
    policy: Callable[[torch.Tensor], torch.Tensor]
    make_env: Callable[..., object]
    seed: int
    evaluation: dict
    source: str
    env_steps: int | None = None
    updates: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    mlflow_run: dict | None = None
    module: object = None  # the rebuilt LightningModule (checkpoints only)
    set_epsilon: Callable[[float], None] | None = None
    discrete: bool = True


@dataclass
class EvaluationResult:
    returns: np.ndarray
    lengths: np.ndarray
    seeds: list[int]
    epsilon: float
    videos: list[Path]
    video_frames: list[int]


# -- loading --------------------------------------------------------------------------------------------
def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"lightq evaluate: --device {name} asked for, but CUDA is not available here; use --device cpu.")
    return device


def load_checkpoint_agent(path: str | Path, *, device: torch.device | str = "cpu") -> LoadedAgent:
    """Rebuild the algorithm a lightq checkpoint was written by, with its weights, on ``device``."""
    from lightq.algos.registry import algorithm_class
    from lightq.reliability.validation import not_a_torch_file

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"lightq evaluate: checkpoint {path} does not exist (the path `lightq fit` printed?).")
    why = not_a_torch_file(path)
    if why is not None:
        raise SystemExit(f"lightq evaluate: {path} is not a checkpoint: {why}. Pass a .ckpt file written by "
                         "`lightq fit`, or a logged policy with --model_uri.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, not a torch archive, or pickled objects beyond weights
        raise SystemExit(
            f"lightq evaluate: could not read {path} as a checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            "Pass a .ckpt file written by `lightq fit` (loaded with weights_only=True: no pickled code)."
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("lightq"), dict):
        raise SystemExit(
            f"lightq evaluate: {path} is not a lightq checkpoint (no 'lightq' section); pass a .ckpt written by "
            "`lightq fit`, or a logged policy with --model_uri."
        )
    for key in ("state_dict", "hyper_parameters"):
        if key not in ckpt:
            raise SystemExit(f"lightq evaluate: {path} has no {key!r}; it is not a complete lightq checkpoint.")
    state = ckpt["lightq"]
    try:
        cls = algorithm_class(str(state.get("algorithm")))
    except ValueError as exc:
        raise SystemExit(f"lightq evaluate: {path}: {exc}") from None
    # LightningCLI adds "_class_path" / "_instantiator" entries to the hyperparameters: not init args.
    module = cls(**{k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")})
    module.load_state_dict(ckpt["state_dict"])
    module.env_steps = int(state.get("env_steps", 0))
    module.updates = int(state.get("updates", 0))
    device = torch.device(device)
    module.to(device).eval()
    seed = int(module.hparams.seed)

    def set_epsilon(epsilon: float) -> None:
        module.evaluation.epsilon = epsilon

    return LoadedAgent(
        algorithm=module.algorithm_name, env_id=module.env_config.id, policy=module.eval_policy,
        make_env=module.make_eval_env, seed=seed, evaluation=dict(module.hparams.evaluation),
        source=f"checkpoint {path}", env_steps=module.env_steps, updates=module.updates, device=device,
        mlflow_run=state.get("mlflow_run"), module=module, set_epsilon=set_epsilon,
        discrete=module.action_kind == "Discrete",
    )


def load_model_agent(uri: str, *, tracking_uri: str | None = None) -> LoadedAgent:
    """A policy logged by ``lightq.tracking.models`` (``runs:/<id>/policy``, ``models:/<name>/<version>``, a path)."""
    import mlflow
    import mlflow.pytorch
    from mlflow.models import get_model_info

    from lightq.envs.factory import EnvConfig, make_env

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        info = get_model_info(uri)
        net = mlflow.pytorch.load_model(uri)
    except Exception as exc:
        raise SystemExit(
            f"lightq evaluate: could not load MLflow model {uri!r} from {mlflow.get_tracking_uri()} "
            f"({type(exc).__name__}: {str(exc)[:300]}). Check the URI and --tracking_uri."
        ) from None
    meta = info.metadata or {}
    if "lightq_algorithm" not in meta or "env" not in meta:
        raise SystemExit(f"lightq evaluate: {uri} was not logged by lightq (no lightq metadata: env, algorithm).")
    env_config = EnvConfig(**meta["env"])
    discrete = meta.get("action_space") == "Discrete"
    evaluation = dict(meta.get("evaluation", {}))
    seed = int(meta.get("seed", 0))
    agent = LoadedAgent(
        algorithm=meta["lightq_algorithm"], env_id=env_config.id, policy=net,
        make_env=lambda render_mode=None: make_env(env_config, render_mode=render_mode), seed=seed,
        evaluation=evaluation, source=f"MLflow model {uri}", env_steps=meta.get("env_steps"),
        updates=meta.get("updates"), discrete=discrete,
    )
    run_id = _run_id_of(uri)
    if run_id:
        agent.mlflow_run = {"tracking_uri": mlflow.get_tracking_uri(), "run_id": run_id}
    if discrete:
        num_actions = int(meta["num_actions"])

        def set_epsilon(epsilon: float) -> None:
            # The same ε-greedy draw as DQN's eval policy (one rng.random((2, B)) call), from the same
            # generator seed, so a model and its checkpoint give the same episodes.
            rng = numpy_rng(seed, "eval_epsilon", 0)

            def policy(obs: torch.Tensor) -> torch.Tensor:
                greedy = net(obs)
                if epsilon <= 0.0:
                    return greedy
                u = rng.random((2, obs.shape[0]))
                random = torch.from_numpy((u[1] * num_actions).astype(np.int64))
                return torch.where(torch.from_numpy(u[0] < epsilon), random, greedy.cpu())

            agent.policy = policy

        agent.set_epsilon = set_epsilon
    return agent


def _run_id_of(uri: str) -> str | None:
    """The MLflow run a ``runs:/`` or ``models:/<name>/<version>`` URI belongs to (None for plain paths)."""
    from mlflow import MlflowClient

    if uri.startswith("runs:/"):
        return uri[len("runs:/"):].split("/", 1)[0]
    if uri.startswith("models:/"):
        name, _, version = uri[len("models:/"):].partition("/")
        if version.isdigit():
            return MlflowClient().get_model_version(name, version).run_id
    return None


# -- evaluating -----------------------------------------------------------------------------------------
def run_evaluation(
    agent: LoadedAgent, *, episodes: int, seeds: list[int], epsilon: float, video_dir: Path | None = None,
    video_episodes: int = 1,
) -> EvaluationResult:
    """N complete episodes with ``evaluate_policy`` (and WebM videos of the first ``video_episodes`` when asked)."""
    if agent.set_epsilon is not None:
        agent.set_epsilon(epsilon)
    if agent.module is not None:  # DQN's eval ε draws from eval_rng; derived as in OffPolicyAlgorithm.setup
        agent.module.eval_rng = numpy_rng(agent.seed, "eval_epsilon", 0)
    env = agent.make_env(render_mode="rgb_array" if video_dir is not None else None)
    try:
        # Algorithms that act with the global torch RNG (CEM without a generator) get one seeded from
        # the run seed, without disturbing the caller's stream.
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(stream_seed(agent.seed, "cem", 0))
            if video_dir is None:
                returns, lengths = evaluate_policy(env, agent.policy, seeds=seeds, device=agent.device)
                videos, frames = [], []
            else:
                from lightq.callbacks.video import record_episodes

                name = f"{agent.algorithm}-{agent.env_id.replace('/', '_')}-env_steps{agent.env_steps or 0}"
                returns, lengths, videos, frames = record_episodes(
                    env, agent.policy, seeds=seeds, directory=video_dir, name=name,
                    episodes=min(video_episodes, episodes), device=agent.device,
                )
    finally:
        env.close()
    return EvaluationResult(returns, lengths, seeds, epsilon, videos, frames)


def format_table(agent: LoadedAgent, result: EvaluationResult, seed: int, seed_offset: int) -> str:
    r, n = result.returns, result.lengths
    counters = (
        f" (env steps {agent.env_steps}, updates {agent.updates})" if agent.env_steps is not None else ""
    )
    if agent.discrete:
        acting = "greedy actions (ε = 0)" if result.epsilon <= 0 else f"ε-greedy actions, ε = {result.epsilon:g}"
    else:
        acting = "deterministic greedy actions (no exploration noise)"
    lines = [
        f"lightq evaluate: {agent.algorithm} on {agent.env_id}, {agent.source}{counters}, device {agent.device}",
        f"protocol: {len(r)} complete episodes, {acting}; return = sum of the eval env's rewards (unclipped)",
        f"seeds: {', '.join(map(str, result.seeds))} (eval episodes {seed_offset}..{seed_offset + len(result.seeds) - 1} "
        f"of run seed {seed}: lightq.seeding.eval_episode_seeds)",
        "",
        f"{'episode':>7}  {'seed':>10}  {'return':>10}  {'length':>7}",
    ]
    for i, (s, ret, length) in enumerate(zip(result.seeds, r, n)):
        lines.append(f"{i:>7}  {s:>10}  {ret:>10.2f}  {int(length):>7}")
    lines += [
        "",
        f"{'':>7}  {'mean':>10}  {'std':>10}  {'min':>10}  {'max':>10}",
        f"{'return':>7}  {r.mean():>10.2f}  {r.std():>10.2f}  {r.min():>10.2f}  {r.max():>10.2f}",
        f"{'length':>7}  {n.mean():>10.2f}  {n.std():>10.2f}  {n.min():>10d}  {n.max():>10d}",
    ]
    for path, frames in zip(result.videos, result.video_frames):
        lines.append(f"video: {path} ({frames} frames)")
    return "\n".join(lines)


def _log_to_mlflow(agent: LoadedAgent, result: EvaluationResult, table: str, tracking_uri: str) -> str:
    from mlflow import MlflowClient

    run = agent.mlflow_run
    client = MlflowClient(tracking_uri)
    r, n = result.returns, result.lengths
    step = int(agent.env_steps or 0)
    metrics = {
        "evaluate/return_mean": r.mean(), "evaluate/return_std": r.std(), "evaluate/return_min": r.min(),
        "evaluate/return_max": r.max(), "evaluate/length_mean": n.mean(), "evaluate/episodes": len(r),
    }
    for key, value in metrics.items():
        client.log_metric(run["run_id"], key, float(value), step=step)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"evaluate-env_steps{step}.txt"
        path.write_text(table + "\n")
        client.log_artifact(run["run_id"], str(path), "evaluate")
    for video in result.videos:
        client.log_artifact(run["run_id"], str(video), "videos")
    return run["run_id"]


# -- command line ---------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lightq evaluate",
        description="Run a trained agent for N complete episodes with its evaluation protocol; print a table.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt_path", "--ckpt-path", help="a .ckpt written by `lightq fit`")
    src.add_argument("--model_uri", "--model-uri", help="a logged policy: runs:/<run id>/policy, models:/<name>/<v>")
    src.add_argument("--run_id", "--run-id", help="shorthand for --model_uri runs:/<run id>/policy")
    p.add_argument("--tracking_uri", "--tracking-uri", default=None,
                   help="MLflow tracking URI (default: the checkpoint's run, else $MLFLOW_TRACKING_URI, else "
                        f"{DEFAULT_TRACKING_URI})")
    p.add_argument("--episodes", type=int, default=None, help="complete episodes (default: evaluation.episodes)")
    p.add_argument("--epsilon", type=float, default=None, help="eval ε for discrete actions (default: evaluation.epsilon)")
    p.add_argument("--seed", type=int, default=None, help="base seed (default: the run's seed)")
    p.add_argument("--seed_offset", "--seed-offset", type=int, default=None,
                   help="episode i uses the run's eval-episode seed seed_offset + i (default: evaluation.seed_offset)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, or auto (checkpoints; models run on CPU)")
    p.add_argument("--video", nargs="?", const="videos", default=None, metavar="DIR",
                   help="record WebM (VP8) videos of the first --video_episodes episodes into DIR (default ./videos)")
    p.add_argument("--video_episodes", "--video-episodes", type=int, default=1)
    p.add_argument("--log", action="store_true",
                   help="log the table (evaluate/* metrics, evaluate/*.txt) and videos to the agent's MLflow run")
    p.add_argument("--log_model", "--log-model", action="store_true",
                   help="log the greedy policy as an MLflow model (policy/) in the checkpoint's run")
    p.add_argument("--register_name", "--register-name", default=None,
                   help="also register the logged policy under this name in the model registry (implies --log_model)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if args.ckpt_path:
        agent = load_checkpoint_agent(args.ckpt_path, device=_resolve_device(args.device))
        record_uri = (agent.mlflow_run or {}).get("tracking_uri")
        tracking_uri = absolute_sqlite_uri(args.tracking_uri or record_uri or env_uri or DEFAULT_TRACKING_URI)
    else:
        if args.log_model or args.register_name:
            raise SystemExit("lightq evaluate: --log_model/--register_name need --ckpt_path (the model is already logged).")
        tracking_uri = absolute_sqlite_uri(args.tracking_uri or env_uri or DEFAULT_TRACKING_URI)
        uri = args.model_uri or f"runs:/{args.run_id}/policy"
        agent = load_model_agent(uri, tracking_uri=tracking_uri)
    ev = agent.evaluation
    episodes = args.episodes if args.episodes is not None else int(ev.get("episodes", 10))
    epsilon = args.epsilon if args.epsilon is not None else float(ev.get("epsilon", 0.0))
    seed = args.seed if args.seed is not None else agent.seed
    seed_offset = args.seed_offset if args.seed_offset is not None else int(ev.get("seed_offset", 0))
    if episodes < 1 or not 0.0 <= epsilon <= 1.0 or args.video_episodes < 1:
        raise SystemExit(
            f"lightq evaluate: need --episodes >= 1 (got {episodes}), --epsilon in [0, 1] (got {epsilon}) and "
            f"--video_episodes >= 1 (got {args.video_episodes})."
        )
    if seed < 0 or seed_offset < 0:
        raise SystemExit(f"lightq evaluate: need --seed >= 0 (got {seed}) and --seed_offset >= 0 (got {seed_offset}): "
                         "they pick the run and its eval episodes (lightq.seeding).")
    if not agent.discrete and args.epsilon:
        raise SystemExit(
            f"lightq evaluate: --epsilon applies to discrete actions; {agent.algorithm} on {agent.env_id} is "
            "evaluated with its deterministic greedy action. Drop --epsilon."
        )
    if (args.log or args.log_model or args.register_name) and not agent.mlflow_run:
        raise SystemExit(
            f"lightq evaluate: {agent.source} records no MLflow run (trained without the MLflow logger?); "
            "drop --log/--log_model, or evaluate a logged model with --model_uri."
        )
    seeds = eval_episode_seeds(seed, seed_offset, episodes)
    result = run_evaluation(
        agent, episodes=episodes, seeds=seeds, epsilon=epsilon,
        video_dir=Path(args.video) if args.video is not None else None, video_episodes=args.video_episodes,
    )
    table = format_table(agent, result, seed, seed_offset)
    print(table, flush=True)
    if args.log:
        run_id = _log_to_mlflow(agent, result, table, tracking_uri)
        print(f"logged evaluate/* metrics{' and videos' if result.videos else ''} to MLflow run {run_id} "
              f"({tracking_uri})", flush=True)
    if args.log_model or args.register_name:
        from lightq.tracking.models import log_policy_model

        uri = log_policy_model(
            agent.module, tracking_uri=tracking_uri, run_id=agent.mlflow_run["run_id"],
            registered_model_name=args.register_name,
        )
        print(f"policy model: {uri} (load with mlflow.pytorch.load_model; evaluate with "
              f"lightq evaluate --model_uri {uri})", flush=True)
