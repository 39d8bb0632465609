"""Checkpoints load with weights_only: a pickled payload is refused and never runs."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from npcai.errors import NpcaiError
from npcai.runs.checkpoint import load_checkpoint, load_model_weights, save_checkpoint


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_payload_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "best.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "evil": _Payload(marker)}, ckpt)
    with pytest.raises(NpcaiError) as err:
        load_checkpoint(ckpt)
    msg = str(err.value)
    assert str(ckpt) in msg and "refused" in msg and "\n" not in msg
    assert not marker.exists()
    # the same through the model loader that `explain` / `predict` use
    with pytest.raises(NpcaiError, match="refused"):
        load_model_weights(torch.nn.Linear(2, 1), ckpt)
    assert not marker.exists()
    # and plain pickle really would have run it (the test would be vacuous otherwise)
    with open(ckpt, "rb") as fh:
        assert fh.read(2)  # a real file
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


def test_round_trip_and_garbage(tmp_path):
    net = torch.nn.Linear(3, 1)
    path = save_checkpoint({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}, "epoch": 4},
                           tmp_path / "ck" / "best.ckpt")
    other = torch.nn.Linear(3, 1)
    assert load_model_weights(other, path) == 4
    assert torch.equal(other.weight, net.weight)
    assert [p.name for p in path.parent.iterdir()] == ["best.ckpt"]  # no temporary left
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(NpcaiError, match="bad.ckpt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.ckpt")
    with pytest.raises(NpcaiError, match="do not fit"):
        load_model_weights(torch.nn.Linear(5, 1), path)


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    def boom(obj, fh):
        fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint({"epoch": 1}, tmp_path / "best.ckpt")
    assert list(tmp_path.iterdir()) == []
