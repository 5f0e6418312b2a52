"""DDP on CPU (gloo, 2 processes launched by torchrun): all-reduced updates, per-rank data, global clocks.

One torchrun launch runs every scenario of ``tests/helpers/ddp_worker.py`` (one start-up, ~1 min on 2
cores); each test reads back what the ranks wrote. The ``control`` scenario replaces DDP's gradient
all-reduce with a no-op and must diverge: that is what makes "parameters identical on both ranks" a
test of the all-reduce, not of the seeds.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightq.seeding import eval_episode_seeds
import torch

from lightq.algos import DQN
from lightq.callbacks.evaluation import ValueProbe, evaluate_policy
from lightq.envs.factory import make_env
from tests.helpers.ddp_worker import DDPG_KW, DQN_KW

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["dqn", "resume", "ddpg", "control", "per_rank", "bf16"]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests/helpers/ddp_worker.py"), str(out), *SCENARIOS]
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    def load(name: str) -> tuple[dict, dict]:
        return tuple(torch.load(out / f"{name}.rank{r}.pt", weights_only=True) for r in (0, 1))

    load.dir = out
    return load


def _max_param_gap(a: dict, b: dict) -> float:
    return max(float((a["params"][k] - b["params"][k]).abs().max()) for k in a["params"])


@pytest.mark.parametrize("name", ["dqn", "ddpg", "per_rank", "resume", "bf16"])
def test_parameters_identical_on_both_ranks_after_training(ranks, name):
    r0, r1 = ranks(name)
    assert r0["updates"] == r1["updates"] > 0
    assert _max_param_gap(r0, r1) == 0.0  # online AND target networks (DDPG: actor, twin critics, targets)
    trained = DQN(**DQN_KW) if name not in ("ddpg", "bf16") else None
    if name == "bf16":
        assert r0["precision"] == "bf16-mixed"
    if trained is not None:  # the parameters moved away from their (seeded) initial values
        init = trained.q_net.torso[0].weight.detach()
        assert float((r0["params"]["q_net.torso.0.weight"] - init).abs().max()) > 1e-3


def test_without_the_all_reduce_the_ranks_diverge(ranks):
    # Same run as "dqn" with DDP's gradient all-reduce replaced by a no-op comm hook.
    r0, r1 = ranks("control")
    assert _max_param_gap(r0, r1) > 1e-2


@pytest.mark.parametrize("name", ["dqn", "ddpg"])
def test_ranks_collect_and_sample_different_data(ranks, name):
    r0, r1 = ranks(name)
    # Per-rank env seeds and exploration (lightq.seeding): different transitions in each buffer.
    assert not torch.equal(r0["buffer_obs"], r1["buffer_obs"])
    assert not torch.equal(r0["batch_obs"], r1["batch_obs"])  # per-rank sampler generators


def test_counters_are_global_sums_over_ranks(ranks):
    r0, r1 = ranks("dqn")
    for r in (r0, r1):
        assert r["world_size"] == 2
        assert r["env_steps"] == r0["local_env_steps"] + r1["local_env_steps"] == 600  # total_env_steps
        # ddp_batch split: env_steps_per_update is global, so the one-GPU number of updates.
        assert r["updates"] == r["num_updates"] == math.ceil((600 - 200) / 2.0)
        assert r["batch_size"] == DQN_KW["replay"]["batch_size"] // 2
    d0, d1 = ranks("ddpg")
    assert d0["env_steps"] == d0["local_env_steps"] + d1["local_env_steps"] == DDPG_KW["total_env_steps"]


def test_per_rank_batch_scales_the_batch_and_the_env_steps_per_update(ranks):
    r0, r1 = ranks("per_rank")
    assert r0["batch_size"] == DQN_KW["replay"]["batch_size"]  # per rank: global batch 2 × 32
    # 2 ranks × 2 env steps per update: half the updates for the same total_env_steps.
    assert r0["updates"] == r0["num_updates"] == math.ceil((600 - 200) / (2 * 2.0))
    assert r0["env_steps"] == r0["local_env_steps"] + r1["local_env_steps"] == 600


def test_evaluation_is_aggregated_over_ranks(ranks):
    r0, r1 = ranks("dqn")
    assert r0["final_eval"] == r1["final_eval"]
    # Rank r ran episodes r, r + 2, ...; together they are the one-process evaluation of the same policy.
    model = DQN(**DQN_KW)
    model.q_net.load_state_dict({k[len("q_net."):]: v for k, v in r0["params"].items() if k.startswith("q_net.")})
    model.eval()
    seeds = eval_episode_seeds(DQN_KW["seed"], model.evaluation.seed_offset, DQN_KW["evaluation"]["episodes"])
    returns, _ = evaluate_policy(make_env(model.env_config), model.greedy_policy, seeds=seeds)
    assert r0["final_eval"]["eval/return_mean"] == pytest.approx(float(np.mean(returns)))
    assert r0["final_eval"]["eval/return_std"] == pytest.approx(float(np.std(returns)))
    # The overestimation probe: means over the visited states of all ranks' episodes.
    probe = ValueProbe(model.value_estimate, model.hparams.gamma)
    evaluate_policy(make_env(model.env_config), model.greedy_policy, seeds=seeds, probe=probe)
    for key in ("eval/q_estimate", "eval/mc_return"):
        assert r0["final_eval"][key] == pytest.approx(probe.metrics()[key], rel=1e-5)


def test_ddp_checkpoint_resumes_under_ddp_with_global_counters(ranks):
    ckpt = torch.load(ranks.dir / "dqn.ckpt", weights_only=True)
    state = ckpt["lightq"]
    assert state["world_size"] == 2 and state["updates"] == 100
    # Saved after update 100: 200 warm-up + 100 × 2 env steps, half of them on each rank.
    assert state["env_steps"] == 400 == 2 * state["collector"]["env_steps"]
    r0, r1 = ranks("resume")
    assert r0["updates"] == r1["updates"] == r0["num_updates"] == 200  # finished the run from update 100
    assert r0["env_steps"] == r0["local_env_steps"] + r1["local_env_steps"] >= 600


def test_cli_ddp_two_cpu_processes_log_once_with_global_steps(tmp_path):
    # The user's path: `lightq fit ... --trainer.strategy ddp --trainer.devices 2` (Lightning launches rank 1).
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "lightq.cli", "fit", "--config", str(ROOT / "configs/dqn/cartpole.yaml"),
           "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
           "--trainer.enable_progress_bar", "false", "--model.init_args.total_env_steps", "600",
           "--model.init_args.learning_starts_env_steps", "200", "--model.init_args.log_every_updates", "50",
           "--model.init_args.evaluation.every_env_steps", "400", "--model.init_args.evaluation.episodes", "3"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1  # rank 1 logs nothing
    run_id = runs[0].info.run_id
    evals = [m.step for m in client.get_metric_history(run_id, "eval/return_mean")]
    assert evals == [400, 600]  # once per evaluation, against the global env-step clock
    updates = {m.step: m.value for m in client.get_metric_history(run_id, "perf/updates")}
    assert updates == {300: 50.0, 400: 100.0, 500: 150.0, 600: 200.0}  # 2 env steps per update, global
    (ckpt,) = list(tmp_path.glob("runs/**/last.ckpt"))  # lightq always writes last.ckpt beside Lightning's own
    state = torch.load(ckpt, weights_only=True)["lightq"]
    assert state["world_size"] == 2 and state["env_steps"] == 600 == 2 * state["collector"]["env_steps"]
