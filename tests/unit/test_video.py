"""EpisodeRecorder: one MP4 per recorded episode, T + 1 frames for T steps, through evaluate_policy's hook."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from lightq.callbacks.evaluation import EvalConfig
from lightq.callbacks.video import EpisodeRecorder, record_episodes
from tests.helpers import rendered_env


def _frames(path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def test_recorder_writes_the_first_episodes_with_one_frame_per_step(tmp_path):
    env = gym.make(rendered_env.register(), render_mode="rgb_array")
    always_right = lambda obs: torch.ones(obs.shape[0], dtype=torch.int64)  # noqa: E731
    returns, lengths, paths, frames = record_episodes(
        env, always_right, seeds=[3, 4, 5], directory=tmp_path, name="walk", episodes=2
    )
    # Start cell drawn from the seed, then straight to the right end (cell 11): 11 - start steps.
    starts = [int(np.random.default_rng(s).integers(0, 6)) for s in (3, 4, 5)]  # gymnasium's np_random(seed)
    assert list(lengths) == [11 - s for s in starts]
    assert [p.name for p in paths] == ["walk-episode0.mp4", "walk-episode1.mp4"]
    assert frames == [int(lengths[0]) + 1, int(lengths[1]) + 1]
    assert [_frames(p) for p in paths] == frames
    assert len(list(tmp_path.glob("*.mp4"))) == 2  # the third episode ran without rendering


def test_recording_needs_an_rgb_array_env_and_video_period_is_validated(tmp_path):
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        EpisodeRecorder(gym.make(rendered_env.register()), tmp_path, name="x")
    with pytest.raises(ValueError, match="video_every_env_steps=0 must be >= 1"):
        EvalConfig(video_every_env_steps=0)
