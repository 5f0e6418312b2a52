"""FrameReplay against naive stacking: scripted frame streams with game ends, life losses, n-step, wrap-around.

Every frame carries a unique id (two uint8 pixels), so a sampled stack decodes to the ids it holds and is
compared with the stack built naively from the scripted game (zero-padded before the game's first frame).
"""

import numpy as np
import pytest
import torch

from lightq.data.frame_replay import FrameReplay

STACK = 4


def _encode(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, ids // 256], axis=-1).astype(np.uint8)


def _decode(frames: torch.Tensor) -> np.ndarray:
    f = frames.cpu().numpy().astype(np.int64)
    return f[..., 0] + 256 * f[..., 1]


class Script:
    """Streams of scripted games fed to the buffer in lockstep, like ``AtariCollector`` does.

    Each game has frames f_0..f_T (f_T = the true final frame), T actions, rewards, terminated flags
    (life losses inside the game; the last step is terminated for a game over, not for a time limit).
    """

    def __init__(self, *, num_streams: int, seed: int, max_len: int = 9) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_streams, self.max_len = num_streams, max_len
        self.next_id = 1
        self.rows: list[list[int]] = [[] for _ in range(num_streams)]  # frame id per written row, per stream
        self.transitions: dict[int, dict] = {}  # frame id of s_t -> naive transition data
        self.games = [self._new_game() for _ in range(num_streams)]
        self.pos = [0] * num_streams

    def _new_game(self) -> dict:
        T = int(self.rng.integers(1, self.max_len + 1))
        ids = np.arange(self.next_id, self.next_id + T + 1)
        self.next_id += T + 1
        terminated = self.rng.random(T) < 0.15  # life losses
        game_over = bool(self.rng.random() < 0.6)  # else truncated by the time limit
        terminated[-1] = game_over
        return {"ids": ids, "action": self.rng.integers(0, 6, T), "reward": self.rng.integers(-1, 2, T).astype(np.float32),
                "terminated": terminated}

    def vector_step(self, buffer: FrameReplay, n_step: int, gamma: float) -> None:
        stream, frame, action, reward, term, ep_step, last = [], [], [], [], [], [], []
        ended = []
        for s in range(self.num_streams):
            g, t = self.games[s], self.pos[s]
            self._record_truth(g, t, n_step, gamma)
            stream.append(s), frame.append(g["ids"][t]), action.append(g["action"][t]), reward.append(g["reward"][t])
            term.append(g["terminated"][t]), ep_step.append(t), last.append(False)
            self.rows[s].append(int(g["ids"][t]))
            self.pos[s] += 1
            if self.pos[s] == len(g["action"]):
                ended.append(s)
        for s in ended:  # the final-frame rows come after the step rows, as in AtariCollector
            g = self.games[s]
            T = len(g["action"])
            stream.append(s), frame.append(g["ids"][T]), action.append(0), reward.append(0.0)
            term.append(False), ep_step.append(T), last.append(True)
            self.rows[s].append(int(g["ids"][T]))
            self.games[s], self.pos[s] = self._new_game(), 0
        buffer.add(stream=np.array(stream), frame=_encode(np.array(frame)), action=np.array(action),
                   reward=np.array(reward, dtype=np.float32), terminated=np.array(term), ep_step=np.array(ep_step),
                   last=np.array(last))

    @staticmethod
    def _stack(ids: np.ndarray, t: int) -> list[int]:
        return [int(ids[j]) if j >= 0 else 0 for j in range(t - STACK + 1, t + 1)]

    def _record_truth(self, g: dict, t: int, n: int, gamma: float) -> None:
        T = len(g["action"])
        ret, k, term = 0.0, 0, False
        while k < n and t + k < T:
            ret += gamma**k * float(g["reward"][t + k])
            k += 1
            if g["terminated"][t + k - 1]:
                term = True
                break
        self.transitions[int(g["ids"][t])] = {
            "obs": self._stack(g["ids"], t), "next_obs": self._stack(g["ids"], t + k), "action": int(g["action"][t]),
            "reward": ret, "discount": gamma**k, "terminated": term, "game_ids": set(g["ids"].tolist()),
        }

    def sampleable(self, segment: int, n: int) -> set[int]:
        """Naive validity: start row not final, n later rows written, its in-game history still held."""
        out = set()
        for rows in self.rows:
            first_held = max(0, len(rows) - segment)
            for L in range(first_held, len(rows) - n):
                fid = rows[L]
                truth = self.transitions.get(fid)
                if truth is None:  # a final-frame row
                    continue
                history = [i for i in truth["obs"] if i != 0]
                if all(rows.index(i) >= first_held for i in history):
                    out.add(fid)
        return out


def _fill(*, num_streams, capacity, vector_steps, n_step=1, gamma=0.9, seed=0, storage="tensor", tmp_path=None):
    buffer = FrameReplay(capacity=capacity, num_streams=num_streams, frame_shape=(2,), n_step=n_step, gamma=gamma,
                         seed=seed, storage=storage, memmap_dir=str(tmp_path) if tmp_path else None)
    script = Script(num_streams=num_streams, seed=seed)
    for _ in range(vector_steps):
        script.vector_step(buffer, n_step, gamma)
    return buffer, script


def _check_samples(buffer: FrameReplay, script: Script, *, draws: int, batch: int = 256) -> set[int]:
    expected = script.sampleable(buffer.segment, buffer.n_step)
    seen = set()
    for _ in range(draws):
        td, info = buffer.sample(batch, return_info=True)
        obs, next_obs = _decode(td["obs"]), _decode(td["next_obs"])
        assert td["obs"].dtype == torch.uint8 and td["obs"].shape == (batch, STACK, 2)
        for b in range(batch):
            fid = int(obs[b, -1])
            assert fid in expected, f"sampled a transition that is not valid/held: {fid}"
            truth = script.transitions[fid]
            assert obs[b].tolist() == truth["obs"]
            assert next_obs[b].tolist() == truth["next_obs"]
            assert int(td["action"][b]) == truth["action"]
            assert float(td["reward"][b]) == pytest.approx(truth["reward"], abs=1e-6)
            assert float(td["discount"][b]) == pytest.approx(truth["discount"], abs=1e-6)
            assert bool(td["terminated"][b]) == truth["terminated"]
            # No stack spans two games: every non-padding id belongs to this game.
            assert {i for i in obs[b].tolist() + next_obs[b].tolist() if i} <= truth["game_ids"]
            seen.add(fid)
    return seen, expected


def test_stacks_match_naive_stacking_without_wraparound():
    buffer, script = _fill(num_streams=3, capacity=3 * 400, vector_steps=120)
    seen, expected = _check_samples(buffer, script, draws=30)
    assert seen == expected  # every valid transition is reachable, nothing else is
    assert len(expected) > 250


def test_wraparound_keeps_stacks_correct_and_drops_overwritten_history():
    # 17 rows per stream, ~10 laps of the circular segments; checked after each of 25 further steps so the
    # oldest held row is sometimes mid-game (its history overwritten) and sometimes a game start.
    buffer, script = _fill(num_streams=2, capacity=34, vector_steps=150, seed=3)
    assert buffer.count.min() > 8 * buffer.segment
    excluded_mid_game = 0
    for _ in range(25):
        script.vector_step(buffer, buffer.n_step, 0.9)
        seen, expected = _check_samples(buffer, script, draws=2)
        assert seen == expected
        for rows in script.rows:
            oldest = rows[len(rows) - buffer.segment]
            truth = script.transitions.get(oldest)
            if truth is not None and sum(1 for i in truth["obs"] if i) > 1:
                assert oldest not in expected  # its earlier frames were overwritten
                excluded_mid_game += 1
    assert excluded_mid_game > 5


@pytest.mark.parametrize("n_step", [2, 3, 5])
def test_n_step_targets_cut_at_terminals_and_game_ends(n_step):
    buffer, script = _fill(num_streams=3, capacity=3 * 25, vector_steps=200, n_step=n_step, seed=n_step)
    seen, expected = _check_samples(buffer, script, draws=20)
    assert seen == expected
    truths = [script.transitions[f] for f in seen]
    assert any(t["discount"] > 0.9**n_step + 1e-9 for t in truths)  # some cut short (k < n)
    assert any(t["discount"] == pytest.approx(0.9**n_step) for t in truths)  # some full length
    assert any(t["terminated"] for t in truths) and any(not t["terminated"] for t in truths)


def test_memmap_storage_gives_the_same_samples(tmp_path):
    a, script = _fill(num_streams=2, capacity=60, vector_steps=80, seed=5)
    b, _ = _fill(num_streams=2, capacity=60, vector_steps=80, seed=5, storage="memmap", tmp_path=tmp_path)
    assert list(tmp_path.glob("*.memmap"))
    ta, tb = a.sample(64), b.sample(64)
    for key in ("obs", "next_obs", "action", "reward", "terminated", "discount"):
        assert torch.equal(ta[key], tb[key])


def test_sampling_before_any_complete_transition_fails_clearly():
    buffer = FrameReplay(capacity=100, num_streams=1, frame_shape=(2,), n_step=3)
    buffer.add(stream=np.array([0]), frame=_encode(np.array([1])), action=np.array([0]), reward=np.array([0.0]),
               terminated=np.array([False]), ep_step=np.array([0]), last=np.array([False]))
    with pytest.raises(RuntimeError, match="no valid transition"):
        buffer.sample(4)


def test_too_small_capacity_is_rejected():
    with pytest.raises(ValueError, match="Raise replay.capacity"):
        FrameReplay(capacity=10, num_streams=4, frame_shape=(2,))


@pytest.mark.parametrize("storage", ["tensor", "memmap"])
def test_state_dict_round_trip_gives_the_same_samples(storage, tmp_path):
    """The frame replay's checkpoint (contents, per-stream cursors, generator) restores it exactly, wrapped."""
    a, script = _fill(num_streams=2, capacity=40, vector_steps=90, n_step=3, seed=7)  # several laps
    assert a.count.min() > 2 * a.segment
    state = a.state_dict()
    b = FrameReplay(capacity=40, num_streams=2, frame_shape=(2,), n_step=3, gamma=0.9, seed=123, storage=storage,
                    memmap_dir=str(tmp_path) if storage == "memmap" else None)
    b.load_state_dict(state)
    assert b.count.tolist() == a.count.tolist() and len(b) == len(a)
    for _ in range(3):
        ta, tb = a.sample(32), b.sample(32)
        for key in ("obs", "next_obs", "action", "reward", "terminated", "discount"):
            assert torch.equal(ta[key], tb[key]), key
    # Writing continues at the saved cursors: the restored buffer stays correct against the naive script.
    script.vector_step(b, 3, 0.9)
    seen, expected = _check_samples(b, script, draws=2)
    assert seen == expected


def test_load_state_dict_refuses_another_shape():
    a, _ = _fill(num_streams=2, capacity=40, vector_steps=10)
    b = FrameReplay(capacity=60, num_streams=2, frame_shape=(2,))
    with pytest.raises(ValueError, match="replay.capacity"):
        b.load_state_dict(a.state_dict())


def test_cut_games_do_not_bootstrap_from_the_next_game():
    """A resume that cannot restore the emulators cuts each game in flight like a time limit: a final-frame
    row from the saved observation, so no transition's next stack holds a frame of the game after it."""
    from lightq.interaction.atari_collector import AtariCollector

    buffer, script = _fill(num_streams=2, capacity=200, vector_steps=20, n_step=3, seed=2)
    collector = AtariCollector.__new__(AtariCollector)  # only the bookkeeping end_games uses
    collector.buffer, collector.num_envs = buffer, 2
    collector._streams = np.arange(2)
    collector._ep_step = np.array(script.pos, dtype=np.int64)
    # The observation the collector would act on next: frame t of each stream's current game.
    current = np.array([script.games[s]["ids"][script.pos[s]] for s in range(2)])
    obs = np.stack([_encode(current)] * STACK, axis=1)  # [envs, stack, 2]; only the newest frame is stored
    collector.end_games(obs)
    cut_ids = set(current.tolist())
    # The script's truth for the cut games ends at the cut (time-limit semantics: bootstrap, not terminal).
    for s in range(2):
        g, t = script.games[s], script.pos[s]
        g["ids"], g["action"] = g["ids"][: t + 1], g["action"][:t]
        g["reward"], g["terminated"] = g["reward"][:t], g["terminated"][:t]  # life losses stay terminal
        for j in range(t):
            script._record_truth(g, j, 3, 0.9)
        script.rows[s].append(int(g["ids"][t]))
        script.games[s], script.pos[s] = script._new_game(), 0
    assert (collector._ep_step == 0).all()
    for _ in range(6):  # new games after the cut
        script.vector_step(buffer, 3, 0.9)
    seen, expected = _check_samples(buffer, script, draws=10)
    assert seen == expected
    assert not cut_ids & seen  # the cut frames are final rows, never transition starts
