"""Train -> evaluate -> compare -> predict -> overlay on a small phantom, through the CLI.

One module fixture trains a light U-Net (resnet18 encoder, 3 stages) for a few epochs on a
20-patient, 96 px phantom; the other tests reuse that run. The phantom's tumours are ~10 px
across at 96 px, so evaluation drops components under 3x3 px (10x10 is for 256 px slices).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from npcai.cohort.model import Cohort

TRAIN = ["--arch", "unet", "--encoder", "resnet18", "--encoder-depth", "3", "--no-pretrained",
         "--size", "96", "--batch-size", "8", "--patience", "12"]


@pytest.fixture(scope="module")
def phantom_cohort(tmp_path_factory) -> Path:
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom

    root = tmp_path_factory.mktemp("segpipe")
    generate_phantom(root / "export", patients=20, size=96, slices=4, seed=3, centres=1, sequences=("T1c",))
    ingest(root / "export" / "dicom", clinical=root / "export" / "clinical.csv", out=root / "cohort",
           contours=root / "export" / "contours")
    return root / "cohort"


SEEN: dict[str, set] = {"train": set(), "val": set()}   # (patient, scan, slice) each loader fetched


def _spy_dataset(real):
    """A SliceDataset that records every slice the training (augmented) or validation loader
    fetches, so the test can check that no test patient's slice reached either."""

    class Spy(real):
        def __init__(self, slices, **kwargs):
            super().__init__(slices, **kwargs)
            self._role = "train" if kwargs.get("augment") else "val"
            self._keys = list(zip(slices.index["patient_id"], slices.index["scan_id"], slices.index["slice_index"]))

        def __getitem__(self, i):
            SEEN[self._role].add(self._keys[i])
            return super().__getitem__(i)

    return Spy


@pytest.fixture(scope="module")
def trained(phantom_cohort, tmp_path_factory):
    import npcai.segmentation.train as seg_train
    from npcai.cli import main

    out = tmp_path_factory.mktemp("segruns") / "unet"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(seg_train, "SliceDataset", _spy_dataset(seg_train.SliceDataset))
        code = main(["segment", "train", str(phantom_cohort), "--out", str(out), "--epochs", "10", *TRAIN])
    assert code == 0
    return out


def test_train_writes_honest_run(trained, phantom_cohort):
    split = pd.read_csv(trained / "split.csv", dtype={"patient_id": str})
    assert set(split["split"]) == {"train", "val", "test"}
    assert split["patient_id"].is_unique and len(split) == 20
    cfg = yaml.safe_load((trained / "config.yaml").read_text())
    assert cfg["options"]["arch"] == "unet" and cfg["options"]["normalise"] == "robust"
    assert cfg["packages"]["torch"] and cfg["cohort"]["input_sha256"]
    hist = pd.read_csv(trained / "history.csv")
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["best_epoch"] == int(hist.loc[hist["val_dice"].idxmax(), "epoch"])
    assert (trained / "checkpoints" / "best.ckpt").is_file() and (trained / "checkpoints" / "last.ckpt").is_file()
    # the test patients' slices were never fetched for training or validation
    assert summary["slices"]["test"] > 0
    role = split.set_index("patient_id")["split"]
    fetched = {r: {p for p, _, _ in SEEN[r]} for r in ("train", "val")}
    assert fetched["train"] == set(role.index[role == "train"])     # every training patient, no other
    assert fetched["val"] == set(role.index[role == "val"])
    assert not (fetched["train"] | fetched["val"]) & set(role.index[role == "test"])
    assert len(SEEN["train"]) == summary["slices"]["train"] and len(SEEN["val"]) == summary["slices"]["val"]


def test_evaluate_reaches_dice_and_writes_files(trained, cli):
    r = cli("segment", "evaluate", trained, "--min-component", "3x3", "--n-boot", "300")
    assert r.code == 0, r
    ev = trained / "evaluation"
    for name in ("metrics.json", "slices.csv", "patients.csv", "dice_per_epoch.png"):
        assert (ev / name).is_file(), name
    m = json.loads((ev / "metrics.json").read_text())
    tumour = m["slice"]["tumour"]["dice"]
    assert tumour["estimate"] > 0.6, m["slice"]
    assert tumour["low"] <= tumour["estimate"] <= tumour["high"]
    split = pd.read_csv(trained / "split.csv", dtype={"patient_id": str})
    tested = set(pd.read_csv(ev / "patients.csv", dtype={"patient_id": str})["patient_id"])
    assert tested == set(split.loc[split["split"] == "test", "patient_id"])
    assert {"hd95_mm_tumour", "volume_rel_error_tumour", "dice_both"} <= set(pd.read_csv(ev / "patients.csv"))


def test_predict_masks_carry_scan_geometry(trained, phantom_cohort, tmp_path, cli):
    cohort = tmp_path / "cohort"
    shutil.copytree(phantom_cohort, cohort)
    r = cli("segment", "predict", cohort, "--model", trained, "--min-component", "3x3")
    assert r.code == 0, r
    co = Cohort.load(cohort)
    for scan in co.scans():
        assert scan.auto_mask == f"masks/{scan.scan_id}_auto.nii.gz"
        prov = scan.auto_mask_provenance
        assert prov["arch"] == "unet" and len(prov["model_sha256"]) == 64
        assert prov["patient_split"] in ("train", "val", "test")
        img = sitk.ReadImage(str(cohort / scan.image))
        auto = sitk.ReadImage(str(cohort / scan.auto_mask))
        assert auto.GetSize() == img.GetSize()
        assert np.allclose(auto.GetSpacing(), img.GetSpacing())
        assert np.allclose(auto.GetOrigin(), img.GetOrigin())
        assert np.allclose(auto.GetDirection(), img.GetDirection())
        assert set(np.unique(co.read_mask(scan, "auto"))) <= {0, 1, 2}
    masks = [co.read_mask(s, "auto") for s in co.scans()]
    assert sum(int((m == 1).any()) for m in masks) >= 15      # tumour found in (nearly) every patient
    # the automatic masks feed the ROI builder
    r = cli("roi", "build", cohort, "--variant", "expand:5px", "--name", "auto5", "--mask", "auto",
            "--size", "64")
    assert r.code == 0, r
    # overlay of automatic vs manual contours for a test patient
    r = cli("segment", "overlay", cohort, "--model", trained, "--out", tmp_path / "overlay.png")
    assert r.code == 0, r
    assert (tmp_path / "overlay.png").stat().st_size > 10_000


def test_compare_names_the_better_and_resume(trained, phantom_cohort, tmp_path, cli):
    weak = tmp_path / "weak"
    r = cli("segment", "train", phantom_cohort, "--out", weak, "--epochs", "1", "--lr", "1e-5", *TRAIN)
    assert r.code == 0, r
    r = cli("segment", "compare", weak, trained, "--out", tmp_path / "cmp.json", "--n-boot", "200")
    assert r.code == 0, r
    res = json.loads((tmp_path / "cmp.json").read_text())
    assert res["better"] == trained.name and f"better: {trained.name}" in r.stdout
    assert res["dice_b"]["estimate"] > res["dice_a"]["estimate"] and 0 <= res["p_value"] <= 1
    # resume the weak run for one more epoch: the history continues
    r = cli("segment", "train", phantom_cohort, "--out", weak, "--resume", "--epochs", "2")
    assert r.code == 0, r
    assert pd.read_csv(weak / "history.csv")["epoch"].tolist() == [1, 2]
    r = cli("segment", "train", phantom_cohort, "--out", weak, *TRAIN)
    assert r.code == 2 and "--overwrite, --resume" in r.stderr
