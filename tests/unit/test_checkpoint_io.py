"""Atomic checkpoint writes and the replay sidecar (lightq.callbacks.checkpoint)."""

import pytest
import torch
from tensordict import TensorDict

from lightq.callbacks.checkpoint import AtomicCheckpointIO, atomic_torch_save, read_sidecar, write_sidecar
from lightq.data.replay import ReplayConfig, make_replay_buffer


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"updates": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("crash in the middle of torch.save")

    with pytest.raises(RuntimeError, match="crash in the middle"):
        atomic_torch_save({"updates": 2, "x": Boom()}, path)
    assert torch.load(path, weights_only=True) == {"updates": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind


def _ckpt(name: str, folder) -> dict:
    return {"lightq": {"replay_sidecar": {"name": name, "path": str(folder)}}}


def test_sidecars_live_while_a_checkpoint_references_them(tmp_path):
    io = AtomicCheckpointIO()
    s1 = write_sidecar(tmp_path, "u0000000010", 0, {"served": 10})
    io.save_checkpoint(_ckpt("u0000000010", s1), tmp_path / "last.ckpt")
    io.save_checkpoint(_ckpt("u0000000010", s1), tmp_path / "step10.ckpt")
    s2 = write_sidecar(tmp_path, "u0000000020", 0, {"served": 20})
    io.save_checkpoint(_ckpt("u0000000020", s2), tmp_path / "last.ckpt")
    assert s1.is_dir() and s2.is_dir()  # step10.ckpt still needs u10
    io.remove_checkpoint(tmp_path / "step10.ckpt")
    assert not s1.exists() and read_sidecar(s2, 0) == {"served": 20}


def test_checkpoint_saved_elsewhere_gets_its_own_sidecar_copy(tmp_path):
    io = AtomicCheckpointIO()
    s1 = write_sidecar(tmp_path / "a", "u0000000005", 0, {"served": 5})
    ckpt = _ckpt("u0000000005", s1)
    io.save_checkpoint(ckpt, tmp_path / "b" / "manual.ckpt")
    copy = tmp_path / "b" / "replay" / "u0000000005"
    assert read_sidecar(copy, 0) == {"served": 5}
    saved = torch.load(tmp_path / "b" / "manual.ckpt", weights_only=True)
    assert saved["lightq"]["replay_sidecar"]["path"] == str(copy.resolve())


@pytest.mark.parametrize("storage", ["tensor", "memmap"])
@pytest.mark.parametrize("prioritized", [False, True])
def test_replay_buffer_state_roundtrips_through_a_weights_only_sidecar(tmp_path, storage, prioritized):
    config = ReplayConfig(capacity=64, storage=storage, prioritized=prioritized,
                          memmap_dir=str(tmp_path / "mm") if storage == "memmap" else None)
    buffer = make_replay_buffer(config, device="cpu", seed=1)
    for i in range(3):  # 90 > capacity: the write cursor has wrapped
        buffer.extend(TensorDict({"obs": torch.randn(30, 4), "action": torch.arange(30) + 100 * i}, batch_size=[30]))
    if prioritized:
        buffer.update_priority(torch.arange(10), torch.linspace(0.1, 5.0, 10))
    buffer.sample(8)
    write_sidecar(tmp_path, "u1", 0, {"buffer": buffer.state_dict()})
    restored_config = ReplayConfig(capacity=64, storage=storage, prioritized=prioritized,
                                   memmap_dir=str(tmp_path / "mm2") if storage == "memmap" else None)
    restored = make_replay_buffer(restored_config, device="cpu", seed=999)
    restored.load_state_dict(read_sidecar(tmp_path / "replay" / "u1", 0)["buffer"])
    assert len(restored) == len(buffer) == 64
    for _ in range(3):  # same generator state, same trees: the same draws
        a, b = buffer.sample(16), restored.sample(16)
        assert torch.equal(a["obs"], b["obs"]) and torch.equal(a["action"], b["action"])
    new = TensorDict({"obs": torch.zeros(5, 4), "action": torch.full((5,), -1)}, batch_size=[5])
    buffer.extend(new.clone())
    restored.extend(new.clone())  # the write cursor was restored: same slots overwritten
    assert torch.equal(buffer[:]["action"], restored[:]["action"])
