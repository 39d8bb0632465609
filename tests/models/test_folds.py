"""Patient-level K-fold cross-validation and the external test cohort (--test-where):
what each fold's trainer holds, the out-of-fold predictions, evaluate and compare."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

FAST = ("--backbone", "resnet18", "--no-pretrained", "--lr", "1e-3", "--batch-size", "16")


def _spy():
    """A callback recording, per fit, the ROI rows the data module holds and the rows of every
    training and validation batch (the pattern of test_train's spy)."""
    from lightning.pytorch.callbacks import Callback

    fits: list[dict] = []

    class Spy(Callback):
        def on_fit_start(self, trainer, pl_module):
            fits.append({"held": set(trainer.datamodule.held_rows().tolist()), "train": set(), "val": set()})

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            fits[-1]["train"].update(batch[2].reshape(-1).tolist())

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            fits[-1]["val"].update(batch[2].reshape(-1).tolist())

        def on_validation_end(self, trainer, pl_module):
            fits[-1]["val_patients"] = set(pl_module.val_patients_seen_)

    return Spy(), fits


def _patients_of_rows(cohort, rows: set[int]) -> set[str]:
    from npcai.imaging.roi_cache import RoiDataset

    index = RoiDataset.open(cohort, "pre").index
    return set(index["patient_id"].iloc[sorted(rows)])


@pytest.fixture(scope="module")
def two_centre_cohort(tmp_path_factory):
    """40 phantom patients from two centres (64 px, 4 slices) with a 32-px ROI cache ``pre``:
    enough for an internal and an external test cohort that both hold each class twice."""
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom
    from npcai.imaging.roi_cache import build_roi

    root = tmp_path_factory.mktemp("two_centres")
    generate_phantom(root / "export", patients=40, size=64, slices=4, seed=2, centres=2, sequences=("T1c",))
    ingest(root / "export" / "dicom", clinical=root / "export" / "clinical.csv", out=root / "cohort",
           contours=root / "export" / "contours")
    build_roi(root / "cohort", "pre", "bbox:5mm", size=32, min_component=(1, 1))
    return root / "cohort"


@pytest.fixture(scope="module")
def cv_run(train_cohort, tmp_path_factory):
    """A 5-fold, 1-epoch cross-validation with a spy on every fold's trainer."""
    from npcai.models.folds import train_folds
    from npcai.models.train import TrainConfig

    spy, fits = _spy()
    cfg = TrainConfig(cohort=str(train_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, lr=1e-3, batch_size=16, epochs=1, seed=0, folds=5, fold_seed=3,
                      val_fraction=0.25)
    out = tmp_path_factory.mktemp("cv") / "cv5"
    result = train_folds(cfg, out, callbacks=[spy])
    return result, fits


@pytest.mark.slow
def test_every_patient_has_exactly_one_out_of_fold_prediction(cv_run, train_cohort):
    from npcai.cohort.endpoints import endpoint_labels
    from npcai.cohort.model import Cohort

    result, _ = cv_run
    run = result.run_dir
    pred = pd.read_csv(run / "predictions_patients.csv", dtype={"patient_id": str})
    labels = endpoint_labels(Cohort.load(train_cohort).clinical(), "pfs-median").labels
    assert pred["patient_id"].is_unique and set(pred["patient_id"]) == set(labels.index)
    assert (pred["split"] == "oof").all() and set(pred["fold"]) == {1, 2, 3, 4, 5}
    assert (pred.set_index("patient_id")["label"] == labels.loc[pred["patient_id"]].to_numpy()).all()
    split = pd.read_csv(run / "split.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert (split.loc[pred["patient_id"], "fold"].to_numpy() == pred["fold"].to_numpy()).all()
    # stratified: every fold holds both classes, sizes differ by at most one
    sizes = split.groupby("fold")["label"].agg(["size", "sum"])
    assert sizes["size"].max() - sizes["size"].min() <= 1 and (sizes["sum"] > 0).all()
    assert (sizes["sum"] < sizes["size"]).all()
    # each patient's out-of-fold probability is the prediction of the fold run that held it out
    for k in range(1, 6):
        fold = pd.read_csv(run / "folds" / f"fold{k}" / "predictions_patients.csv", dtype={"patient_id": str})
        held = fold[fold["split"] == "test"].set_index("patient_id")
        assert set(held.index) == set(split.index[split["fold"] == k])
        mine = pred.set_index("patient_id").loc[held.index]
        assert np.allclose(mine["prob"], held["prob"]) and (mine["fold"] == k).all()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["kind"] == "cv" and cfg["options"]["folds"] == 5 and len(cfg["fold_runs"]) == 5
    summary = json.loads((run / "summary.json").read_text())
    assert summary["patients"] == len(pred) and len(summary["per_fold"]) == 5


@pytest.mark.slow
def test_no_fold_selection_sees_its_held_out_patients(cv_run, train_cohort):
    result, fits = cv_run
    split = pd.read_csv(result.run_dir / "split.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert len(fits) == 5
    for k, fit in enumerate(fits, start=1):
        held_out = set(split.index[split["fold"] == k])
        fold_split = pd.read_csv(result.run_dir / "folds" / f"fold{k}" / "split.csv",
                                 dtype={"patient_id": str}).set_index("patient_id")["split"]
        assert set(fold_split.index[fold_split == "test"]) == held_out
        for what in ("held", "train", "val"):
            assert not _patients_of_rows(train_cohort, fit[what]) & held_out, (k, what)
        assert fit["val_patients"] == set(fold_split.index[fold_split == "val"])
        assert not fit["val_patients"] & held_out


@pytest.mark.slow
def test_evaluate_and_compare_cross_validated_runs(cv_run, cli, train_cohort, tmp_path):
    result, _ = cv_run
    r = cli("evaluate", result.run_dir)
    assert r.code == 0, r
    assert "pooled out-of-fold" in r.stdout and "mean ± SD" in r.stdout
    assert (result.run_dir / "figures" / "roc.png").is_file()
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    pred = pd.read_csv(result.run_dir / "predictions_patients.csv")
    from npcai.stats.auc import auc_ci

    ref = auc_ci(pred["label"], pred["prob"])
    assert metrics["patient"]["auc"]["auc"] == pytest.approx(ref.auc)
    assert metrics["patient"]["auc"]["low"] == pytest.approx(ref.low)
    assert len(metrics["folds"]) == 5 and metrics["fold_auc"]["k"] == 5
    # a second run on the same folds: compare pairs them on the out-of-fold predictions
    second = tmp_path / "cv5b"
    r = cli("train", train_cohort, "--roi", "pre", "--endpoint", "pfs-median", "--out", second, *FAST,
            "--epochs", "1", "--seed", "1", "--folds", "5", "--folds-from", result.run_dir, "--val-fraction", "0.25")
    assert r.code == 0, r
    assert "pooled out-of-fold AUC" in r.stdout
    a = pd.read_csv(result.run_dir / "split.csv").set_index("patient_id")["fold"]
    b = pd.read_csv(second / "split.csv").set_index("patient_id")["fold"]
    assert a.sort_index().equals(b.sort_index())
    r = cli("compare", result.run_dir, second, "--out", tmp_path / "cmp", "--pairs", "cv5:cv5b")
    assert r.code == 0, r
    delong = pd.read_csv(tmp_path / "cmp" / "delong.csv")
    assert len(delong) == 1 and int(delong["n"].iloc[0]) == len(a)
    # sensitivity and specificity at each patient's own fold threshold, as evaluate reports them
    table3 = pd.read_csv(tmp_path / "cmp" / "table3.csv").set_index("run")
    assert table3.loc["cv5", "sensitivity"] == pytest.approx(metrics["binary"]["sensitivity"]["value"])
    assert table3.loc["cv5", "specificity"] == pytest.approx(metrics["binary"]["specificity"]["value"])
    called = pred["prob"] > pred["threshold"]
    pos = pred["label"] == 1
    assert metrics["binary"]["sensitivity"]["value"] == pytest.approx((called & pos).sum() / pos.sum())
    # runs on other folds are refused with one line
    other = tmp_path / "cv5c"
    shutil.copytree(second, other)
    s = pd.read_csv(other / "split.csv")
    s.loc[0, "fold"] = s.loc[0, "fold"] % 5 + 1
    s.to_csv(other / "split.csv", index=False)
    r = cli("compare", result.run_dir, other, "--out", tmp_path / "cmp2")
    assert r.code == 2 and "different folds" in r.stderr and "\n" not in r.stderr.strip()


@pytest.mark.slow
def test_test_where_patients_never_reach_training_or_validation(two_centre_cohort, tmp_path, cli):
    """--test-where 'centre != "C1"': every other-centre patient is external test; the spy sees
    none of them in the data module, the training batches or the validation batches."""
    from npcai.cohort.model import Cohort
    from npcai.models.train import TrainConfig, train

    clinical = Cohort.load(two_centre_cohort).clinical()
    centres = sorted(clinical["centre"].dropna().unique())
    assert len(centres) >= 2
    keep = centres[0]
    spy, fits = _spy()
    cfg = TrainConfig(cohort=str(two_centre_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, lr=1e-3, batch_size=12, epochs=1, seed=2, val_fraction=0.3,
                      test_fraction=0.25, test_where=f'centre != "{keep}"')
    result = train(cfg, tmp_path / "ext", callbacks=[spy])
    split = pd.read_csv(result.run_dir / "split.csv", dtype={"patient_id": str}).set_index("patient_id")["split"]
    other = set(clinical.index[clinical["centre"] != keep]) & set(split.index)
    assert other and set(split.index[split == "test_external"]) == other
    assert set(split[list(other)]) == {"test_external"}
    assert (split[split.index.difference(list(other))] != "test_external").all()
    assert "test" in set(split)          # an internal test split from the training centre too
    fit = fits[0]
    for what in ("held", "train", "val"):
        assert not _patients_of_rows(two_centre_cohort, fit[what]) & other, what
    assert not fit["val_patients"] & other
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["splits"]["test_external"]["patients"] == len(other)
    # evaluate reports the internal and the external test cohort
    r = cli("evaluate", result.run_dir, "--n-boot", "0", "--no-figures")
    assert r.code == 0, r
    assert "test split" in r.stdout and "test_external split" in r.stdout
    ext = json.loads((result.run_dir / "metrics_test_external.json").read_text())
    assert ext["n_patients"] == len(other)


def test_folds_and_test_where_are_refused_together(train_cohort, cli, tmp_path):
    r = cli("train", train_cohort, "--roi", "pre", "--endpoint", "pfs-median", "--out", tmp_path / "x", *FAST,
            "--folds", "3", "--test-where", 'centre != "C1"')
    assert r.code == 2 and "folds" in r.stderr and "\n" not in r.stderr.strip()
    r = cli("train", train_cohort, "--roi", "pre", "--endpoint", "pfs-median", "--out", tmp_path / "x", *FAST,
            "--folds", "1")
    assert r.code == 2 and "at least 2" in r.stderr
    r = cli("train", train_cohort, "--roi", "pre", "--endpoint", "pfs-median", "--out", tmp_path / "x", *FAST,
            "--folds", "50")
    assert r.code == 2 and "folds" in r.stderr


@pytest.mark.slow
def test_cross_validated_run_is_an_npcai_run_folder(cv_run):
    from npcai.fsutil import OUTPUT_MARKER
    from npcai.models.folds import fold_run_dirs
    from npcai.runs import read_run

    result, _ = cv_run
    run = read_run(result.run_dir)
    assert run.config.kind == "cv" and run.default_split == "oof"
    assert len(run.split_patients("oof")) == result.n_patients
    assert run.config.cohort_id and run.config.roi is not None   # provenance of the folds, for --folds-from
    assert (result.run_dir / OUTPUT_MARKER).is_file()
    assert all((d / OUTPUT_MARKER).is_file() for d in fold_run_dirs(result.run_dir))


def test_cross_validation_never_writes_into_an_input_or_a_foreign_folder(train_cohort, tmp_path):
    from npcai.errors import NpcaiError
    from npcai.models.folds import train_folds
    from npcai.models.train import TrainConfig

    cfg = TrainConfig(cohort=str(train_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, epochs=1, folds=3)
    with pytest.raises(NpcaiError, match="lies inside the input"):
        train_folds(cfg, train_cohort / "cv")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(NpcaiError, match="not an output npcai wrote"):
        train_folds(cfg, mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"
