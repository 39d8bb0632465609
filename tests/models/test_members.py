"""The deep-ensemble option (``members``): the ensemble's arithmetic, each member trained exactly
as a one-network run of its own seed, a run that saves, reloads and predicts with all its members,
Grad-CAM through every member, and the options it refuses."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from npcai.errors import NpcaiError
from npcai.models.classifier import DeepEnsemble, ImageClassifier
from npcai.models.train import TrainConfig, build_network


def _members(k: int = 3) -> list[ImageClassifier]:
    import timm

    torch.manual_seed(0)
    return [ImageClassifier(timm.create_model("resnet18", num_classes=0, in_chans=1)) for _ in range(k)]


def test_the_ensemble_predicts_its_members_mean_probability():
    net = DeepEnsemble(_members()).eval()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        each = torch.stack([m(x) for m in net.members])
        assert torch.equal(net.member_logits(x), each)
        assert torch.allclose(torch.sigmoid(net(x)), torch.sigmoid(each).mean(0), atol=1e-6)
    assert len({round(float(e[0]), 6) for e in each}) == 3           # different initialisations
    with pytest.raises(ValueError, match="at least 2 members"):
        DeepEnsemble(_members(1))


def test_build_network_makes_the_ensemble_from_the_options():
    opts = dict(backbone="resnet18", unit="image", dropout=0.5, pretrained=False, pooling="mean", task="binary")
    net = build_network(dict(opts, members=3), 1)
    assert isinstance(net, DeepEnsemble) and len(net.members) == 3
    assert isinstance(build_network(opts, 1), ImageClassifier)      # a run written before the option: one network


@pytest.mark.parametrize("change, message", [
    ({"members": 0}, "--members 0: must be 1"),
    ({"members": 2, "unit": "patient"}, "binary task's image unit"),
    ({"members": 2, "task": "survival", "unit": "patient"}, "not the survival task"),
    ({"members": 2, "devices": 2, "accelerator": "cpu"}, "one after another in one process"),
])
def test_bad_members_are_one_clear_error(change, message):
    with pytest.raises(NpcaiError, match=message):
        TrainConfig(cohort="c", roi="r", endpoint="pfs-median", **change).validate()


def test_grad_cam_of_an_ensemble_is_the_mean_of_its_members_maps():
    from npcai.explain.cam import compute_cams
    from npcai.explain.target_layers import find_target_layer

    net = DeepEnsemble(_members(2)).eval()
    x = np.random.default_rng(0).normal(size=(3, 1, 64, 64)).astype(np.float32)
    layer = find_target_layer(net, input_shape=(1, 1, 64, 64))
    assert layer.module is net.members[0].backbone.get_submodule(layer.name)
    res = compute_cams(net, x, target="predicted")
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    assert np.allclose(res.logits, logits, atol=1e-5)
    assert np.array_equal(res.signs, np.where(logits >= 0, 1.0, -1.0))
    from npcai.explain.cam import _layer_cams

    each = [_layer_cams(m, torch.from_numpy(x), method="gradcam", target="predicted",
                        target_layer=find_target_layer(m, input_shape=(1, 1, 64, 64)), batch_size=16,
                        signs=res.signs).cams for m in net.members]
    assert np.allclose(res.cams, np.mean(each, axis=0), atol=1e-6) and res.cams.shape == (3, 64, 64)
    assert not np.allclose(each[0], each[1])                         # the members see differently


@pytest.mark.slow
def test_a_run_with_members_saves_reloads_and_predicts_with_all_of_them(train_cohort, tmp_path, cli):
    from npcai.models import load_run
    from npcai.runs import read_run

    out = tmp_path / "ens"
    r = cli("train", train_cohort, "--roi", "pre", "--endpoint", "pfs-median", "--backbone", "resnet18",
            "--no-pretrained", "--lr", "0.001", "--batch-size", "16", "--epochs", "2", "--members", "2",
            "--out", out)
    assert r.code == 0, r
    assert read_run(out).config.options["members"] == 2
    run = load_run(out)
    assert isinstance(run.model, DeepEnsemble) and len(run.model.members) == 2
    slices = pd.read_csv(out / "predictions_slices.csv", dtype={"patient_id": str})
    rows = slices.iloc[:4]
    x = torch.from_numpy(np.asarray(run.roi.images[rows["roi_row"].astype(int).tolist()], dtype=np.float32))
    with torch.no_grad():
        prob = torch.sigmoid(run.model(x)).numpy()
    assert np.allclose(prob, rows["prob"].to_numpy(), atol=1e-5)
    # the web tool serves it: its card names the ensemble, and its Grad-CAM path runs through every member
    from npcai.explain.cam import compute_cams
    from npcai.serve.model import open_model
    from npcai.serve.pipeline import _models

    served = open_model(out)
    assert served.card.backbone == "resnet18 x 2 (deep ensemble)"
    model, _, layer = _models(served)
    cams = compute_cams(model, x.numpy(), method="gradcam", target="high-risk", target_layer=layer)
    assert cams.cams.shape == (4, *x.shape[-2:]) and np.allclose(cams.logits, np.log(prob / (1 - prob)), atol=1e-4)


@pytest.mark.slow
def test_each_member_is_the_one_network_run_of_its_own_seed(train_cohort, tmp_path):
    """Members are trained independently: member k's history and selected weights are those of a
    one-network run with seed ``seed + k`` on the same split, and every member keeps its own
    selected epoch; the ensemble's patient probability is the members' mean."""
    from npcai.models import load_run
    from npcai.models.train import train
    from npcai.runs import read_history, read_split

    base = dict(cohort=str(train_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18", pretrained=False,
                batch_size=16, epochs=3, patience=3, size=32, seed=5)
    ens = train(TrainConfig(**base, members=2), tmp_path / "ens")
    split = read_split(ens.run_dir)["split"]
    solo = [train(TrainConfig(**dict(base, seed=5 + k)), tmp_path / f"solo{k}", split=split) for k in range(2)]
    history = read_history(ens.run_dir)
    members = ens.summary["members"]
    assert [m["seed"] for m in members] == [5, 6]
    net = load_run(ens.run_dir).model
    for k, run in enumerate(solo):
        pd.testing.assert_frame_equal(history[history["member"] == k].drop(columns="member").reset_index(drop=True),
                                      read_history(run.run_dir), check_dtype=False)
        assert members[k]["best_epoch"] == run.best_epoch
        one = load_run(run.run_dir).model.state_dict()
        assert all(torch.equal(w, one[name]) for name, w in net.members[k].state_dict().items())
    assert ens.best_epoch == max(m["best_epoch"] for m in members)
    assert not (ens.run_dir / "members" / "0" / "checkpoints").exists()     # the weights live in best.ckpt
    patients = pd.read_csv(ens.run_dir / "predictions_patients.csv", dtype={"patient_id": str}).set_index("patient_id")
    alone = [pd.read_csv(r.run_dir / "predictions_slices.csv", dtype={"patient_id": str}) for r in solo]
    ens_slices = pd.read_csv(ens.run_dir / "predictions_slices.csv", dtype={"patient_id": str})
    assert np.allclose(ens_slices["prob"], np.mean([a["prob"] for a in alone], axis=0), atol=1e-5)
    val = patients[patients["split"] == "val"]
    from npcai.stats.auc import roc_auc

    assert ens.summary["val_auc"] == pytest.approx(roc_auc(val["label"], val["prob"]))
    assert (ens.run_dir / "training_curve.png").stat().st_size > 10_000
    with pytest.raises(NpcaiError, match="cannot be resumed"):
        train(TrainConfig(**base, members=2), tmp_path / "ens", resume=True)
