"""The overestimation probe: value estimates and discounted MC returns of visited eval states, by hand."""

import gymnasium as gym
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from lightq.seeding import eval_episode_seeds

from lightq.algos import DQN
from lightq.callbacks.evaluation import ValueProbe, evaluate_policy
from tests.helpers.scripted_env import ScriptedEnv


def _q(obs: torch.Tensor) -> torch.Tensor:
    """Fixed Q(s, ·) = [2t, 2t + 1] for obs = [episode, t]: greedy action 1, max_a Q = 2t + 1."""
    t = obs[:, 1:2]
    return torch.cat([2 * t, 2 * t + 1], dim=1)


def test_probe_on_scripted_episodes_matches_hand_computation():
    # Two episodes of 3 steps: rewards 1, 2, 3 then 11, 12, 13 (ScriptedEnv: 10 * episode + t + 1).
    env = ScriptedEnv(lengths=(3,), ends=("term",))
    probe = ValueProbe(lambda obs, action: _q(obs).max(dim=-1).values, gamma=0.5)
    returns, lengths = evaluate_policy(env, lambda obs: _q(obs).argmax(-1), seeds=[0, 1], probe=probe)
    assert returns.tolist() == [6.0, 36.0] and lengths.tolist() == [3, 3]
    # G_t = r_t + γ G_{t+1}, per episode: (2.75, 3.5, 3) and (20.25, 18.5, 13).
    assert probe.mc_returns == pytest.approx([2.75, 3.5, 3.0, 20.25, 18.5, 13.0])
    assert probe.estimates == pytest.approx([1.0, 3.0, 5.0, 1.0, 3.0, 5.0])  # max_a Q at t = 0, 1, 2
    m = probe.metrics()
    assert m["eval/q_estimate"] == pytest.approx(3.0)
    assert m["eval/mc_return"] == pytest.approx(61.0 / 6.0)
    assert m["eval/q_overestimation"] == pytest.approx(3.0 - 61.0 / 6.0)


def test_truncated_episode_return_is_cut_at_the_time_limit():
    # The MC return of a truncated episode stops at the cap (documented caveat): G_{last} = r_last.
    env = ScriptedEnv(lengths=(2,), ends=("trunc",))
    probe = ValueProbe(lambda obs, action: torch.zeros(1), gamma=0.9)
    evaluate_policy(env, lambda obs: torch.zeros(1, dtype=torch.long), seeds=[0], probe=probe)
    assert probe.mc_returns == pytest.approx([1.0 + 0.9 * 2.0, 2.0])


def _fit_dqn(value_probe: bool) -> DQN:
    model = DQN(
        env={"id": "CartPole-v1"}, replay={"capacity": 1_000, "batch_size": 16}, seed=3, gamma=0.9,
        evaluation={"every_env_steps": 0, "episodes": 2, "value_probe": value_probe},
        total_env_steps=300, learning_starts_env_steps=100,
    )
    pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(model)
    return model


def test_dqn_logs_max_q_and_mc_return_of_its_eval_episodes():
    model = _fit_dqn(value_probe=True)
    # Replay the same eval episodes (same reset seeds, greedy on the trained net) and compute by hand.
    env = gym.make("CartPole-v1")
    q_values, mc = [], []
    with torch.no_grad():
        for i in range(2):
            obs, _ = env.reset(seed=eval_episode_seeds(3, 0, 2)[i])
            rewards, done = [], False
            while not done:
                q = model.q_net(torch.as_tensor(obs).unsqueeze(0))[0]
                q_values.append(float(q.max()))
                obs, r, term, trunc, _ = env.step(int(q.argmax()))
                rewards.append(r)
                done = term or trunc
            mc += [sum(0.9**k * x for k, x in enumerate(rewards[t:])) for t in range(len(rewards))]
    ev = model.final_eval
    assert ev["eval/q_estimate"] == pytest.approx(np.mean(q_values), rel=1e-5)
    assert ev["eval/mc_return"] == pytest.approx(np.mean(mc), rel=1e-9)
    assert ev["eval/length_mean"] == pytest.approx(len(mc) / 2)


def test_value_probe_can_be_turned_off():
    ev = _fit_dqn(value_probe=False).final_eval
    assert "eval/return_mean" in ev and "eval/q_estimate" not in ev and "eval/mc_return" not in ev
