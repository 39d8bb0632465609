"""Training end to end on the small phantom: run folder, honest selection, determinism, resume."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml


FAST = ("--backbone", "resnet18", "--no-pretrained", "--lr", "1e-3", "--batch-size", "16")


def _train(cli, cohort, out, *extra):
    return cli("train", cohort, "--roi", "pre", "--endpoint", "pfs-median", "--out", out, *FAST, *extra)


@pytest.fixture(scope="module")
def run_a(train_cohort, tmp_path_factory):
    """One 2-epoch run through the library, shared by the read-only checks below."""
    from npcai.models.train import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "a"
    cfg = TrainConfig(cohort=str(train_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, lr=1e-3, batch_size=16, epochs=2, seed=0)
    return train(cfg, out)


@pytest.mark.slow
def test_run_folder_is_complete(run_a, train_cohort):
    run = run_a.run_dir
    for name in ("config.yaml", "split.csv", "predictions_slices.csv", "predictions_patients.csv",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt", "history.csv", "training_curve.png",
                 "summary.json"):
        assert (run / name).is_file(), name
    assert not any(p.name.startswith(f".{run.name}.partial") for p in run.parent.iterdir())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["options"]["backbone"] == "resnet18" and cfg["seed"] == 0
    assert {"torch", "timm", "lightning", "npcai"} <= set(cfg["versions"])
    assert len(cfg["cohort"]["cohort_json_sha256"]) == 64 and len(cfg["roi"]["input_hash"]) == 64
    slices = pd.read_csv(run / "predictions_slices.csv", dtype={"patient_id": str})
    patients = pd.read_csv(run / "predictions_patients.csv", dtype={"patient_id": str})
    assert list(slices.columns) == ["roi_row", "patient_id", "split", "slice_index", "label", "prob"]
    assert list(patients.columns) == ["patient_id", "split", "label", "prob", "n_slices"]
    # patient probability = mean of its slices' probabilities (default aggregation)
    mean = slices.groupby("patient_id")["prob"].mean()
    assert np.allclose(patients.set_index("patient_id")["prob"], mean.loc[patients.patient_id], atol=1e-5)
    history = pd.read_csv(run / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_auc"] and len(history) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] == int(history["val_auc"].idxmax())
    total = sum(summary["splits"][s]["patients"] for s in ("train", "val", "test"))
    from npcai.cohort.model import Cohort

    assert total + summary["excluded"]["count"] == len(Cohort.load(train_cohort).clinical())
    text = "".join((run / f).read_text() for f in ("config.yaml", "split.csv", "summary.json"))
    assert "hospital" not in text.lower()


@pytest.mark.slow
def test_no_patient_in_two_splits(run_a):
    split = pd.read_csv(run_a.run_dir / "split.csv", dtype={"patient_id": str})
    assert split["patient_id"].is_unique
    slices = pd.read_csv(run_a.run_dir / "predictions_slices.csv", dtype={"patient_id": str})
    assert (slices.groupby("patient_id")["split"].nunique() == 1).all()
    assert set(split["split"]) == {"train", "val", "test"}


@pytest.mark.slow
def test_selection_path_never_receives_test_patients(train_cohort, tmp_path):
    """Spy on what the Trainer holds: only train/val rows; val_auc computed over val patients only."""
    from lightning.pytorch.callbacks import Callback

    from npcai.imaging.roi_cache import RoiDataset
    from npcai.models.train import TrainConfig, train

    seen = {}

    class Spy(Callback):
        def on_fit_start(self, trainer, pl_module):
            dm = trainer.datamodule
            seen["rows"] = set(dm.held_rows().tolist())
            seen["loaders"] = [n for n in ("test_dataloader", "predict_dataloader")
                               if type(dm).__dict__.get(n) is not None]

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.setdefault("batch_rows", set()).update(batch[2].reshape(-1).tolist())

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            seen.setdefault("val_rows", set()).update(batch[2].reshape(-1).tolist())

        def on_validation_end(self, trainer, pl_module):
            seen["val_patients"] = set(pl_module.val_patients_seen_)

    cfg = TrainConfig(cohort=str(train_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, lr=1e-3, batch_size=16, epochs=1, seed=5)
    result = train(cfg, tmp_path / "spy", callbacks=[Spy()])
    split = pd.read_csv(result.run_dir / "split.csv", dtype={"patient_id": str}).set_index("patient_id")["split"]
    index = RoiDataset.open(train_cohort, "pre").index
    rows_of = lambda names: set(np.flatnonzero(index["patient_id"].map(split).isin(names).to_numpy()).tolist())  # noqa: E731
    test_rows = rows_of(["test"])
    assert test_rows, "the test split must have slices for this check to mean anything"
    assert seen["rows"] == rows_of(["train", "val"])
    assert not seen["rows"] & test_rows and not seen["batch_rows"] & test_rows and not seen["val_rows"] & test_rows
    assert seen["batch_rows"] <= rows_of(["train"]) and seen["val_rows"] == rows_of(["val"])
    assert seen["val_patients"] == set(split.index[split == "val"])
    assert seen["loaders"] == []  # the selection data module offers no test/predict loader


@pytest.mark.slow
def test_same_seed_same_predictions_and_resume(cli, run_a, train_cohort, tmp_path):
    out = tmp_path / "b"
    r = _train(cli, train_cohort, out, "--epochs", "2", "--seed", "0")
    assert r.code == 0, r
    assert "test AUC" in r.stdout and "n = " in r.stdout
    a = pd.read_csv(run_a.run_dir / "predictions_slices.csv")
    b = pd.read_csv(out / "predictions_slices.csv")
    pd.testing.assert_frame_equal(a, b)
    hist2 = pd.read_csv(out / "history.csv")
    # continue the finished run for one more epoch
    r = _train(cli, train_cohort, out, "--epochs", "3", "--seed", "0", "--resume")
    assert r.code == 0, r
    hist3 = pd.read_csv(out / "history.csv")
    assert hist3["epoch"].tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(hist3.iloc[:2], hist2)
    # without --resume or --overwrite an existing run is refused
    r = _train(cli, train_cohort, out, "--epochs", "1")
    assert r.code == 2 and "--overwrite" in r.stderr


@pytest.mark.slow
def test_resume_an_interrupted_run(train_cohort, tmp_path):
    from lightning.pytorch.callbacks import Callback

    from npcai.runs import partial_dir
    from npcai.models.train import TrainConfig, train

    class Crash(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:  # after epoch 0 was checkpointed
                raise RuntimeError("power cut")

    cfg = TrainConfig(cohort=str(train_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, lr=1e-3, batch_size=16, epochs=2, seed=1)
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="power cut"):
        train(cfg, out, callbacks=[Crash()])
    assert not out.exists() and (partial_dir(out) / "checkpoints" / "last.ckpt").is_file()
    import torch

    assert torch.load(partial_dir(out) / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    result = train(cfg, out, resume=True)
    assert result.epochs_run == 2 and not partial_dir(out).exists()
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [0, 1]
    # the uninterrupted run gives the same history
    ref = train(cfg, tmp_path / "ref")
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv"), pd.read_csv(ref.run_dir / "history.csv"))


@pytest.mark.slow
def test_patient_unit_attention_and_load_run(cli, train_cohort, tmp_path):
    import torch

    from npcai.models import PatientMILClassifier, load_run

    out = tmp_path / "mil"
    r = _train(cli, train_cohort, out, "--unit", "patient", "--pooling", "attention", "--bag-size", "3",
               "--epochs", "1", "--batch-size", "4")
    assert r.code == 0, r
    run = load_run(out)
    assert isinstance(run.patient_model, PatientMILClassifier) and run.patient_model.pooling_name == "attention"
    assert run.model is run.patient_model.slice_model and not run.model.training
    patients = pd.read_csv(out / "predictions_patients.csv", dtype={"patient_id": str}).set_index("patient_id")
    pid = patients.index[0]
    rows = run.roi.rows_of(pid)
    x = torch.from_numpy(np.asarray(run.roi.images[rows], dtype=np.float32))[None]
    with torch.no_grad():
        prob = float(torch.sigmoid(run.patient_model(x))[0])
    assert prob == pytest.approx(patients.loc[pid, "prob"], abs=1e-5)
    assert run.split.loc[pid, "split"] == patients.loc[pid, "split"]


@pytest.mark.slow
def test_config_reproduces_a_run(cli, run_a, tmp_path):
    out = tmp_path / "again"
    r = cli("train", "--config", run_a.run_dir / "config.yaml", "--out", out, "--no-pretrained")
    assert r.code == 0, r
    pd.testing.assert_frame_equal(pd.read_csv(run_a.run_dir / "predictions_patients.csv"),
                                  pd.read_csv(out / "predictions_patients.csv"))
    # options given on the command line override the config's
    r = cli("train", "--config", run_a.run_dir / "config.yaml", "--out", tmp_path / "one", "--no-pretrained",
            "--epochs", "1")
    assert r.code == 0, r
    assert yaml.safe_load((tmp_path / "one" / "config.yaml").read_text())["options"]["epochs"] == 1


def test_bad_inputs_fail_with_one_line(cli, train_cohort, tmp_path, monkeypatch):
    from npcai.models import factory

    out = tmp_path / "bad"
    r = _train(cli, train_cohort, out, "--where", "therapy == 'CCRT'")
    assert r.code == 2 and "therapy" in r.stderr and r.stderr.strip().count("\n") == 0
    r = _train(cli, train_cohort, out, "--schedule", "step")
    assert r.code == 2 and "--schedule 'step'" in r.stderr and r.stderr.strip().count("\n") == 0
    r = _train(cli, train_cohort, out, "--ema", "1.5")
    assert r.code == 2 and "--ema 1.5: the decay must be in [0, 1)" in r.stderr and r.stderr.strip().count("\n") == 0
    r = cli("train", train_cohort, "--roi", "pre", "--endpoint", "no_such_column", "--out", out, *FAST)
    assert r.code == 2 and "no_such_column" in r.stderr
    r = cli("train", train_cohort, "--roi", "nope", "--endpoint", "pfs-median", "--out", out, *FAST)
    assert r.code == 2 and "nope" in r.stderr
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        r = _train(cli, train_cohort, out, "--mlflow")
        assert r.code == 2 and "pip install mlflow" in r.stderr
    (tmp_path / "not_a_run").mkdir()
    r = _train(cli, train_cohort, out, "--split-from", tmp_path / "not_a_run")
    assert r.code == 2 and "not an npcai run" in r.stderr
    r = _train(cli, train_cohort, out, "--split-from", tmp_path)          # the run would lie inside it
    assert r.code == 2 and "the output folder lies inside the input" in r.stderr
    r = cli("train", train_cohort, "--roi", "pre", "--endpoint", "pfs-median", "--out", out,
            "--backbone", "resnet18", "--no-pretrained", "--weights", tmp_path / "w.pth")
    assert r.code == 2 and "exactly one of" in r.stderr
    # default is --pretrained (the papers' method): offline it fails in one line, never silently
    monkeypatch.setattr(factory, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    r = cli("train", train_cohort, "--roi", "pre", "--endpoint", "pfs-median", "--out", out,
            "--backbone", "resnet18")
    assert r.code == 2 and "--no-pretrained" in r.stderr and "--weights" in r.stderr
    assert not out.exists()


def test_threads_option_sets_and_records_the_thread_count(cli, train_cohort, tmp_path):
    import torch
    import yaml

    before = torch.get_num_threads()
    try:
        r = _train(cli, train_cohort, tmp_path / "t1", "--epochs", "1", "--threads", "1")
        assert r.code == 0, r
        cfg = yaml.safe_load((tmp_path / "t1" / "config.yaml").read_text())
        assert cfg["resolved"]["torch_threads"] == 1
        r = _train(cli, train_cohort, tmp_path / "t0", "--threads", "0")
        assert r.code == 2 and "threads" in r.stderr and not (tmp_path / "t0").exists()
    finally:
        torch.set_num_threads(before)
