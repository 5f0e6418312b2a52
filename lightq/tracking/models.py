"""The greedy policy as a self-contained MLflow PyTorch model.

``mlflow.pytorch.load_model("runs:/<run id>/policy")`` gives a module mapping an observation batch
``[B, *obs]`` (the env's observation dtype) to greedy actions (``[B]`` int64 for discrete actions,
``[B, A]`` float32 for boxes), with the preprocessing the networks do (flatten, cast) inside, and
without importing lightq.

Format: ``torch.export`` (MLflow's ``pt2`` serialization), not TorchScript or pickle. MLflow 3.17's
``load_model`` refuses pickle-format models unless ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is set, and
a ``ScriptModule`` is stored in that format; ``pt2`` is a traced graph plus tensors, loaded without
executing code, as every lightq loader (``weights_only``, no pickled code). The batch
dimension is dynamic (exported from a batch of 2).

The exported graph is ``algo.greedy_policy`` itself, so it holds whatever preprocessing the algorithm
does; its weights are the whole module's (target networks included: ``torch.export`` lifts every
parameter of the traced module, used or not). CEM-Q's greedy action is an optimisation with fresh
random samples at every call, which ``torch.export`` cannot carry as a generator; the exported CEM-Q
policy runs the same CEM (samples, elites, iterations) on the online critic with *fixed* draws made
from ``cem_noise_seed`` and shared by every state: a deterministic policy, close to but not the one
used during training (metadata ``cem_fixed_noise_seed`` says so).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from lightq.objectives.action_value import cem_maximize

__all__ = ["POLICY_ARTIFACT", "FixedNoiseCEMPolicy", "GreedyPolicy", "log_policy_model", "policy_module",
           "save_policy_model"]

POLICY_ARTIFACT = "policy"  # run-relative artifact path of the logged model: runs:/<run id>/policy


class GreedyPolicy(nn.Module):
    """``algo.greedy_policy`` as a module (what ``torch.export`` traces)."""

    def __init__(self, algo) -> None:
        super().__init__()
        self.algo = algo

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.algo.greedy_policy(obs)


class FixedNoiseCEMPolicy(nn.Module):
    """CEM-Q's greedy action with fixed draws (see the module docstring): a deterministic function of obs."""

    def __init__(self, algo, seed: int = 0) -> None:
        super().__init__()
        self.critic = algo.critic
        self.cem = algo.cem
        self.register_buffer("low", algo.action_low.detach().clone())
        self.register_buffer("high", algo.action_high.detach().clone())
        gen = torch.Generator().manual_seed(seed)
        shape = (1, self.cem.samples, self.low.shape[-1])
        draws = [torch.rand(shape, generator=gen)]
        draws += [torch.randn(shape, generator=gen) for _ in range(self.cem.iterations - 1)]
        for i, draw in enumerate(draws):
            self.register_buffer(f"noise_{i}", draw.to(self.low.device))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        noise = [getattr(self, f"noise_{i}") for i in range(self.cem.iterations)]
        return cem_maximize(self.critic, obs, self.low, self.high, self.cem, noise=noise)[0]


def policy_module(algo, *, cem_noise_seed: int = 0) -> nn.Module:
    """The eager module that gets exported: obs batch -> greedy actions."""
    if algo.algorithm_name == "CEMQ":
        return FixedNoiseCEMPolicy(algo, seed=cem_noise_seed)
    return GreedyPolicy(algo)


def _example_obs(space: gym.Space, batch: int = 2) -> np.ndarray:
    space = gym.spaces.Box(space.low, space.high, space.shape, space.dtype, seed=0)  # own RNG, not the env's
    return np.stack([space.sample() for _ in range(batch)])


def _metadata(algo, cem_noise_seed: int) -> dict:
    space = algo.action_space
    meta = {
        "lightq_algorithm": algo.algorithm_name,
        "env": asdict(algo.env_config),
        "evaluation": {k: v for k, v in asdict(algo.evaluation).items() if v is not None},
        "seed": int(algo.hparams.seed),
        "env_steps": int(algo.env_steps),
        "updates": int(algo.updates),
        "action_space": "Discrete" if isinstance(space, gym.spaces.Discrete) else "Box",
    }
    if isinstance(space, gym.spaces.Discrete):
        meta["num_actions"] = int(space.n)
    if algo.algorithm_name == "CEMQ":
        meta["cem_fixed_noise_seed"] = cem_noise_seed
    return meta


def save_policy_model(algo, path: str | Path, *, cem_noise_seed: int = 0) -> Path:
    """Export ``algo``'s greedy policy (on CPU) and save it as an MLflow PyTorch model directory at ``path``."""
    import mlflow.pytorch
    from mlflow.models import infer_signature

    device = algo.device
    was_training = algo.training
    algo.cpu().eval()
    try:
        module = policy_module(algo, cem_noise_seed=cem_noise_seed).eval()
        example = _example_obs(algo.observation_space)
        with torch.no_grad():
            actions = module(torch.from_numpy(example)).numpy()
        mlflow.pytorch.save_model(
            module, str(path), serialization_format="pt2", input_example=example,
            signature=infer_signature(example, actions),  # TensorSpecs, batch dim -1 (dynamic)
            metadata=_metadata(algo, cem_noise_seed),
            # Explicit requirements: MLflow's inference would load the model in a subprocess (seconds).
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
        )
    finally:
        algo.to(device)
        algo.train(was_training)
    return Path(path)


def log_policy_model(
    algo, *, tracking_uri: str, run_id: str, registered_model_name: str | None = None, cem_noise_seed: int = 0,
) -> str:
    """Log the greedy policy under ``policy/`` in an existing MLflow run; optionally register it.

    Written with ``MlflowClient`` on the given URI (no global ``mlflow.set_tracking_uri``, no active run
    to end): the model directory is saved locally and uploaded as the run's artifacts.

    Returns:
        The model URI: ``models:/<name>/<version>`` when registered, else ``runs:/<run id>/policy``.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = save_policy_model(algo, Path(tmp) / POLICY_ARTIFACT, cem_noise_seed=cem_noise_seed)
        client.log_artifacts(run_id, str(local), POLICY_ARTIFACT)
    uri = f"runs:/{run_id}/{POLICY_ARTIFACT}"
    if registered_model_name:
        try:
            client.create_registered_model(registered_model_name)
        except MlflowException as exc:  # already registered: add a version
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        source = f"{client.get_run(run_id).info.artifact_uri}/{POLICY_ARTIFACT}"
        version = client.create_model_version(registered_model_name, source=source, run_id=run_id)
        uri = f"models:/{registered_model_name}/{version.version}"
    return uri
