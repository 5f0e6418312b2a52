"""The Atari protocols on real ROMs: shapes, dtypes, life loss, reward clipping, full-game eval, sticky actions,
and the frame replay returning exactly the stacks the agent acted on."""

import dataclasses

import numpy as np
import pytest
import torch

from lightq.data.frame_replay import FrameReplay
from lightq.envs import EnvConfig, make_env, make_vec_env
from lightq.envs.atari import PROTOCOLS, AtariEvalEnv, _ale_kwargs, make_atari_vec_env
from lightq.interaction.atari_collector import AtariCollector


def _random_policy(seed, n_actions):
    rng = np.random.default_rng(seed)
    return lambda obs: rng.integers(0, n_actions, obs.shape[0])


def test_nature_training_env_shapes_dtypes_and_life_loss_terminals():
    env = make_vec_env(EnvConfig(id="ALE/Breakout-v5", num_envs=2, atari_protocol="nature"))
    assert env.single_observation_space.shape == (4, 84, 84) and env.single_observation_space.dtype == np.uint8
    obs, info = env.reset(seed=np.array([0, 1]))
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert not obs[:, :3].any() and obs[:, 3].any()  # a game starts zero-padded: [0, 0, 0, f_0]
    lives, act = info["lives"].copy(), _random_policy(0, env.single_action_space.n)
    life_loss_terminals = 0
    for _ in range(400):
        prev = obs
        obs, reward, terminated, truncated, info = env.step(act(obs))
        for i in np.flatnonzero(terminated & (info["lives"] < lives) & (info["lives"] > 0)):
            life_loss_terminals += 1
            assert np.array_equal(obs[i, :3], prev[i, 1:])  # the game and its frame stack go on
        lives = info["lives"].copy()
    assert life_loss_terminals >= 2
    env.close()


def test_machado_has_no_life_loss_signal():
    env = make_vec_env(EnvConfig(id="ALE/Breakout-v5", num_envs=2, atari_protocol="machado"))
    obs, info = env.reset(seed=np.array([0, 1]))
    lives, act, losses = info["lives"].copy(), _random_policy(0, env.single_action_space.n), 0
    for _ in range(400):
        obs, reward, terminated, truncated, info = env.step(act(obs))
        lost = (info["lives"] < lives) & (info["lives"] > 0)
        losses += int(lost.sum())
        assert not (terminated & lost).any()
        lives = info["lives"].copy()
    assert losses >= 2
    env.close()


def test_sticky_actions_only_in_machado():
    assert PROTOCOLS["nature"].repeat_action_probability == 0.0
    assert PROTOCOLS["machado"].repeat_action_probability == 0.25
    for training in (True, False):
        assert _ale_kwargs(PROTOCOLS["nature"], training=training, max_episode_steps=None)["repeat_action_probability"] == 0.0
        assert _ale_kwargs(PROTOCOLS["machado"], training=training, max_episode_steps=None)["repeat_action_probability"] == 0.25

    # Behaviour: same seed, same actions; machado's trajectory differs from the same settings without stickiness.
    def trajectory(protocol):
        from ale_py.vector_env import AtariVectorEnv
        from gymnasium.vector import AutoresetMode

        env = AtariVectorEnv("pong", 1, autoreset_mode=AutoresetMode.SAME_STEP,
                             **_ale_kwargs(protocol, training=False, max_episode_steps=None))
        obs, _ = env.reset(seed=np.array([3]))
        frames = []
        for t in range(150):
            obs, *_ = env.step(np.array([2 if (t // 5) % 2 else 3]))  # alternate UP / DOWN every 5 steps
            frames.append(obs[0, -1].copy())
        env.close()
        return np.stack(frames)

    machado = trajectory(PROTOCOLS["machado"])
    assert np.array_equal(machado, trajectory(PROTOCOLS["machado"]))  # deterministic given the seed
    not_sticky = trajectory(dataclasses.replace(PROTOCOLS["machado"], repeat_action_probability=0.0))
    assert not np.array_equal(machado, not_sticky)


def test_reward_clipping_in_training_only_and_eval_scores_unclipped():
    # Space Invaders pays 5–30 points per alien: clipping is visible.
    env = make_atari_vec_env("ALE/SpaceInvaders-v5", num_envs=2, protocol="nature")
    buffer = FrameReplay(capacity=2_000, num_streams=2, n_step=1)
    collector = AtariCollector(env, buffer, seed=0, clip_rewards=PROTOCOLS["nature"].clip_rewards)
    raw = []
    step = env.step

    def recording_step(action):
        out = step(action)
        raw.append(out[1].copy())
        return out

    env.step = recording_step
    collector.step(_random_policy(0, env.single_action_space.n), 300)
    raw = np.stack(raw)  # [steps, envs]
    assert raw.max() > 1  # the env gives the game score
    stored = buffer._columns["reward"][: 2 * buffer.segment].view(2, buffer.segment)  # [stream, row]
    last = buffer._columns["last"][: 2 * buffer.segment].view(2, buffer.segment)
    for s in range(2):
        rows = stored[s, : buffer.count[s]][~last[s, : buffer.count[s]]].numpy()
        assert np.array_equal(rows, np.sign(raw[:, s]))  # stored = sign(score change)
    collector.close()

    # Evaluation: one full game (no life-loss end), unclipped score.
    eval_env = make_env(EnvConfig(id="ALE/SpaceInvaders-v5", atari_protocol="nature"))
    assert isinstance(eval_env, AtariEvalEnv)
    obs, info = eval_env.reset(seed=5)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and info["lives"] == 3
    rng, rewards, lives, done = np.random.default_rng(1), [], [], False
    while not done:
        obs, r, terminated, truncated, info = eval_env.step(rng.integers(0, eval_env.action_space.n))
        rewards.append(r)
        done = terminated or truncated
        if not done:
            lives.append(int(info["lives"]))  # (after the last step, info is the next game's)
    # One full game: lives went 3 → 1 without ending the episode; it ended at game over.
    assert terminated and {3, 2, 1} <= set(lives)
    assert max(rewards) > 1  # unclipped score
    eval_env.close()


def test_replayed_stacks_equal_the_stacks_the_agent_acted_on():
    # Short time limit (40 agent steps) so games reset often; capacity holds everything (no wrap).
    env = make_atari_vec_env("ALE/Pong-v5", num_envs=2, protocol="nature", max_episode_steps=40)
    buffer = FrameReplay(capacity=2 * 400, num_streams=2, n_step=1, seed=0)
    collector = AtariCollector(env, buffer, seed=0)
    acted: dict[tuple[int, int], np.ndarray] = {}  # (stream, row) -> the stack the policy saw
    act = _random_policy(0, env.single_action_space.n)

    def policy(obs):
        for s in range(2):
            acted[(s, int(buffer.count[s]))] = obs[s].copy()
        return act(obs)

    collector.step(policy, 150)
    assert collector.episodes >= 4
    td, info = buffer.sample(256, return_info=True)
    stream, row = info["index"] // buffer.segment, info["index"] % buffer.segment
    for b in range(256):
        key = (int(stream[b]), int(row[b]))
        assert np.array_equal(td["obs"][b].numpy(), acted[key])
        nxt = acted.get((key[0], key[1] + 1))
        if nxt is not None:  # not the last step of a game (that one's next_obs is the final observation)
            assert np.array_equal(td["next_obs"][b].numpy(), nxt)
        else:
            assert td["next_obs"][b, -1].any()
    collector.close()


def test_prioritized_replay_with_atari_fails_clearly():
    from lightq.algos import DQN

    model = DQN(env={"id": "ALE/Pong-v5"}, replay={"prioritized": True, "capacity": 1_000},
                total_env_steps=2_000, learning_starts_env_steps=100)
    with pytest.raises(ValueError, match="replay.prioritized=false"):
        model.setup("fit")


def test_bad_protocol_and_game_names_fail_clearly():
    with pytest.raises(ValueError, match="choose one of"):
        make_atari_vec_env("ALE/Pong-v5", num_envs=1, protocol="dopamine")
    with pytest.raises(ValueError, match="has no Atari game"):
        make_atari_vec_env("ALE/Pongg-v5", num_envs=1)
