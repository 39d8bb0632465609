"""The phantom hospital export: layout, reproducibility, geometry, marginals, signal, oracle."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from npcai.fsutil import OUTPUT_MARKER
from npcai.cohort.phantom import (CLINICAL_COLUMNS, generate_phantom, load_signal, load_truth,
                                  pfs_median_labels, simulate_patients)

DESCRIPTIONS = {"AX T1 C+": "T1c", "AX T2 FS": "T2", "AX T1": "T1"}


def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _read_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "export"
    generate_phantom(out, patients=6, size=64, slices=5, seed=3, centres=3,
                     sequences=("T1c", "T2"), post=True)
    return out


def test_layout_and_clinical_columns(export):
    assert sorted(p.name for p in export.iterdir() if p.name != OUTPUT_MARKER) == [
        "clinical.csv", "contours", "dicom", "phantom.json", "truth"]
    clinical = pd.read_csv(export / "clinical.csv")
    assert list(clinical.columns) == CLINICAL_COLUMNS
    assert len(clinical) == 6 and clinical["hospital_id"].is_unique
    assert set(clinical["treatment"]) <= {"CCRT", "IC+CCRT"}
    for ep in ("pfs", "dfs", "os", "dmfs"):
        assert set(clinical[f"{ep}_event"]) <= {0, 1}
        assert (clinical[f"{ep}_months"] > 0).all()
    # one folder per hospital id; 2 timepoints x 2 sequences series each; 4 contours each
    for hid in clinical["hospital_id"]:
        series = [d for d in (export / "dicom" / hid).glob("*/*") if d.is_dir()]
        assert len(series) == 4
        for tp in ("pre", "post"):
            for seq in ("T1c", "T2"):
                assert (export / "contours" / f"{hid}_{tp}_{seq}.nii.gz").is_file()
    for name in ("patients.csv", "oracle.json", "signal.json"):
        assert (export / "truth" / name).is_file()
    params = json.loads((export / "phantom.json").read_text())
    assert params["patients"] == 6 and params["sequences"] == ["T1c", "T2"] and params["post"]
    assert not list(export.parent.glob(".export.partial-*"))       # atomic: no leftovers


def test_same_seed_gives_identical_files(export, tmp_path):
    again = tmp_path / "again"
    generate_phantom(again, patients=6, size=64, slices=5, seed=3, centres=3,
                     sequences=("T1c", "T2"), post=True)
    assert _tree_hash(again) == _tree_hash(export)
    other = tmp_path / "other"
    generate_phantom(other, patients=6, size=64, slices=5, seed=4, centres=3,
                     sequences=("T1c", "T2"), post=True)
    assert _tree_hash(other) != _tree_hash(export)


def test_series_geometry_tags_and_contour_alignment(export):
    import pydicom

    clinical = pd.read_csv(export / "clinical.csv").set_index("hospital_id")
    signal = json.loads((export / "truth" / "signal.json").read_text())
    px = 230 / 64
    manufacturers = {}
    for hid in clinical.index:
        dates = {}
        for folder in sorted(d for d in (export / "dicom" / hid).glob("*/*") if d.is_dir()):
            image = _read_series(folder)
            ds = pydicom.dcmread(next(folder.glob("*.dcm")))
            seq = DESCRIPTIONS[ds.SeriesDescription]
            tp = "pre" if ds.StudyID == "1" else "post"
            dates[tp] = ds.StudyDate
            assert image.GetSize() == (64, 64, 5)
            assert np.allclose(image.GetSpacing(), (px, px, 5.0), atol=1e-5)
            assert np.allclose(image.GetDirection(), np.eye(3).ravel())
            assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
            assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
            assert ds.PatientID == hid and str(ds.PatientName) and ds.PatientBirthDate
            manufacturers[clinical.loc[hid, "centre"]] = (ds.Manufacturer, float(ds.MagneticFieldStrength))
            mask = sitk.ReadImage(str(export / "contours" / f"{hid}_{tp}_{seq}.nii.gz"))
            assert mask.GetSize() == image.GetSize()
            assert np.allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-6)
            assert np.allclose(mask.GetSpacing(), image.GetSpacing(), atol=1e-6)
            assert np.allclose(mask.GetDirection(), image.GetDirection())
            labels = sitk.GetArrayFromImage(mask)
            assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2}
            assert (labels == 1).sum() > 0                       # tumour (or its bed at post)
            if tp == "pre":
                # the tumour is brighter than the surrounding muscle on T1c and T2
                arr = sitk.GetArrayFromImage(image).astype(float)
                assert arr[labels == 1].mean() > np.median(arr[arr > 50])
        assert dates["pre"] < dates["post"]
    assert len(set(manufacturers.values())) == len(manufacturers)   # centres differ
    assert signal["size"] == 64 and signal["ring_band_px"][1] == pytest.approx(2.5)
    assert signal["ring_band_mm"][1] == pytest.approx(20 * 230 / 512, rel=1e-3)


def test_clinical_marginals_in_documented_ranges():
    df = simulate_patients(3000, seed=11, centres=4)
    assert 44 <= df["age"].mean() <= 52 and 9 <= df["age"].std() <= 13
    assert df["age"].between(18, 80).all()
    assert 0.65 <= (df["sex"] == "M").mean() <= 0.85
    t = df["t_stage"].value_counts(normalize=True)
    for k, target in {"T1": 0.10, "T2": 0.30, "T3": 0.35, "T4": 0.25}.items():
        assert abs(t[k] - target) < 0.04
    n = df["n_stage"].value_counts(normalize=True)
    for k, target in {"N0": 0.15, "N1": 0.25, "N2": 0.45, "N3": 0.15}.items():
        assert abs(n[k] - target) < 0.04
    assert set(df["stage"]) <= {"I", "II", "III", "IVA"}
    assert (df.loc[(df.t_stage == "T4") | (df.n_stage == "N3"), "stage"] == "IVA").all()
    assert 0.12 <= (df["ebv_dna"] == 0).mean() <= 0.25
    assert 300 <= df.loc[df.ebv_dna > 0, "ebv_dna"].median() <= 3000
    assert 0.35 <= df["pfs_event"].mean() <= 0.65
    assert 0.12 <= df["distant_metastasis"].mean() <= 0.35
    assert 0.15 <= df["residual_tumour"].mean() <= 0.45
    assert df["pfs_months"].max() <= 96.0 and (df["os_months"] >= df["pfs_months"] - 1e-9).all()
    labels, _ = pfs_median_labels(df["pfs_months"], df["pfs_event"])
    assert np.mean(~np.isnan(labels)) >= 0.85                          # few censored before t*
    assert 0.35 <= np.nanmean(labels) <= 0.6
    # confounding: advanced stage gets IC+CCRT more often
    ic = df["treatment"] == "IC+CCRT"
    assert ic[df.stage == "IVA"].mean() > ic[df.stage.isin(["I", "II"])].mean() + 0.3
    assert set(df["centre"]) == {"C1", "C2", "C3", "C4"}


def test_oracle_values_reproducible_from_truth_files(export, tmp_path):
    from lifelines.utils import concordance_index
    from sklearn.metrics import roc_auc_score

    out = tmp_path / "oracle"
    generate_phantom(out, patients=40, size=64, slices=3, seed=8, post=True)
    clinical = pd.read_csv(out / "clinical.csv")
    truth = pd.read_csv(out / "truth" / "patients.csv")
    assert list(truth["hospital_id"]) == list(clinical["hospital_id"])
    oracle = json.loads((out / "truth" / "oracle.json").read_text())
    t_star = clinical["pfs_months"].median()
    label = np.where((clinical.pfs_event == 1) & (clinical.pfs_months <= t_star), 1,
                     np.where(clinical.pfs_months > t_star, 0, -1))
    keep = label >= 0
    p = 1 - np.exp(-np.exp(truth["log_hazard_pfs"]) * t_star)
    assert np.allclose(p, truth["p_pfs_median"], rtol=1e-4)
    assert oracle["pfs-median"]["auc"] == pytest.approx(roc_auc_score(label[keep], p[keep]), abs=1e-4)
    assert oracle["pfs-median"]["t_star_months"] == pytest.approx(t_star)
    assert oracle["distant-metastasis"]["auc"] == pytest.approx(
        roc_auc_score(clinical.distant_metastasis, truth.p_distant_metastasis), abs=1e-4)
    assert oracle["residual-tumour"]["auc"] == pytest.approx(
        roc_auc_score(clinical.residual_tumour, truth.p_residual), abs=1e-4)
    for ep in ("pfs", "dfs", "os", "dmfs"):
        c = concordance_index(clinical[f"{ep}_months"], -truth[f"log_hazard_{ep}"], clinical[f"{ep}_event"])
        assert oracle[ep]["c_index"] == pytest.approx(c, abs=1e-4)
    # p_residual is the received treatment's; best treatment follows the 5-year DFS
    ic = clinical.treatment == "IC+CCRT"
    assert np.allclose(truth.p_residual, np.where(ic, truth.p_residual_ic_ccrt, truth.p_residual_ccrt))
    assert ((truth.best_treatment == "IC+CCRT") == (truth.dfs5_ic_ccrt > truth.dfs5_ccrt)).all()
    # post-treatment residual tissue (label 1 at post) is larger when residual tumour is likely
    post_area, pre_area = [], []
    for hid in clinical["hospital_id"]:
        for tp, acc in (("post", post_area), ("pre", pre_area)):
            lab = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "contours" / f"{hid}_{tp}_T1c.nii.gz")))
            acc.append((lab == 1).sum())
    post_area, pre_area = np.asarray(post_area, float), np.asarray(pre_area, float)
    assert (post_area > 0).all() and (post_area <= pre_area).all()
    assert roc_auc_score(clinical.residual_tumour, post_area / pre_area) > 0.7
    assert np.corrcoef(post_area / pre_area, truth.p_residual)[0, 1] > 0.6


def test_oracle_in_target_range_for_default_cohort():
    """The default cohort's label noise leaves room for a model to beat 0.7 (tabular only)."""
    from sklearn.metrics import roc_auc_score

    df = simulate_patients(2000, seed=0)
    labels, _ = pfs_median_labels(df["pfs_months"], df["pfs_event"])
    keep = ~np.isnan(labels)
    auc = roc_auc_score(labels[keep], df["p_pfs_median"][keep])
    assert 0.78 <= auc <= 0.90
    assert 0.75 <= roc_auc_score(df.distant_metastasis, df.p_distant_metastasis) <= 0.92
    # the image latent beats TNM, which is informative but weaker
    tnm = df["t_stage_num"] + df["n_stage_num"]
    assert roc_auc_score(labels[keep], df["z_ring"][keep]) > roc_auc_score(labels[keep], tnm[keep]) + 0.05
    assert roc_auc_score(labels[keep], tnm[keep]) > 0.55
    # necrosis decides who benefits from IC+CCRT
    best_ic = df["best_treatment"] == "IC+CCRT"
    assert best_ic[df.necrosis == 1].mean() > 0.95 and best_ic[df.necrosis == 0].mean() < 0.3


def _region_stats(image: np.ndarray, labels: np.ndarray, outer_px: float) -> dict[str, list[float]]:
    from scipy import ndimage

    tumour = labels == 1
    dist = ndimage.distance_transform_edt(~tumour, sampling=(1e4, 1, 1))
    regions = {"ring": (dist > 0) & (dist <= outer_px) & (labels == 0),
               "interior": tumour,
               "far": (dist > 3 * outer_px + 3) & (dist < 1e3) & (labels == 0) & (image > 100)}
    ref = np.median(image[regions["far"]])
    return {k: [image[m].mean() / ref, image[m].std() / ref, np.percentile(image[m], 90) / ref]
            for k, m in regions.items()}


def test_planted_ring_signal_separates_pfs_median_label(tmp_path):
    """Ring-band intensity statistics predict the PFS-median label; interior and far field do not."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    out = tmp_path / "signal"
    generate_phantom(out, patients=80, size=64, slices=4, seed=0)
    clinical = pd.read_csv(out / "clinical.csv")
    truth = pd.read_csv(out / "truth" / "patients.csv")
    outer = json.loads((out / "truth" / "signal.json").read_text())["ring_band_px"][1]
    feats: dict[str, list[list[float]]] = {"ring": [], "interior": [], "far": []}
    dark: list[float] = []
    for hid in clinical["hospital_id"]:
        folder = next(d for d in (out / "dicom" / hid).glob("*/*") if d.is_dir())
        image = sitk.GetArrayFromImage(_read_series(folder)).astype(float)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "contours" / f"{hid}_pre_T1c.nii.gz")))
        for k, v in _region_stats(image, labels, outer).items():
            feats[k].append(v)
        tumour = image[labels == 1]
        dark.append(np.percentile(tumour, 10) / np.median(tumour))
    y, _ = pfs_median_labels(clinical["pfs_months"], clinical["pfs_event"])
    keep = ~np.isnan(y)
    auc, corr = {}, {}
    for name, rows in feats.items():
        X = np.asarray(rows)
        corr[name] = abs(np.corrcoef(X[:, 0], truth["z_ring"])[0, 1])
        Xk = (X[keep] - X[keep].mean(0)) / X[keep].std(0)
        p = cross_val_predict(LogisticRegression(max_iter=1000), Xk, y[keep].astype(int),
                              cv=StratifiedKFold(5, shuffle=True, random_state=0),
                              method="predict_proba")[:, 1]
        auc[name] = roc_auc_score(y[keep], p)
    assert corr["ring"] > 0.7 and corr["interior"] < 0.3 and corr["far"] < 0.3, corr
    assert auc["ring"] > 0.68, auc
    assert auc["ring"] > auc["interior"] + 0.1 and auc["ring"] > auc["far"] + 0.1, auc
    # the treatment-interaction feature: a dark necrotic core inside the tumour
    nec = truth["necrosis"].to_numpy()
    interior_p10 = np.asarray(dark)
    assert roc_auc_score(nec, -interior_p10) > 0.8


def test_node_signal_tracks_z_node(export, tmp_path):
    out = tmp_path / "nodes"
    generate_phantom(out, patients=30, size=64, slices=4, seed=2)
    truth = pd.read_csv(out / "truth" / "patients.csv").set_index("hospital_id")
    xs, zs = [], []
    for hid in truth.index[truth.has_nodes == 1]:
        folder = next(d for d in (out / "dicom" / hid).glob("*/*") if d.is_dir())
        image = sitk.GetArrayFromImage(_read_series(folder)).astype(float)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "contours" / f"{hid}_pre_T1c.nii.gz")))
        if (labels == 2).sum() < 3:
            continue
        muscle = np.median(image[(labels == 0) & (image > 100)])
        xs.append(image[labels == 2].mean() / muscle)
        zs.append(truth.loc[hid, "z_node"])
    assert len(xs) >= 10
    assert np.corrcoef(xs, zs)[0, 1] > 0.5


def test_load_truth_and_signal_join_through_pseudonyms(export, tmp_path):
    from npcai.cohort.model import pseudonym_map_path

    clinical = pd.read_csv(export / "clinical.csv")
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "cohort.json").write_text(json.dumps(
        {"format": "npcai-cohort/1", "patients": [],
         "source": {"phantom_truth": str((export / "truth").resolve())}}))
    ids = [f"P{i + 1:04d}" for i in range(len(clinical))]
    pd.DataFrame({"patient_id": ids, "hospital_id": clinical["hospital_id"]}).to_csv(
        pseudonym_map_path(cohort), index=False)
    truth = load_truth(cohort)
    assert list(truth.index) == ids and "hospital_id" not in truth.columns
    assert {"z_ring", "p_pfs_median", "p_residual_ccrt", "p_residual_ic_ccrt",
            "best_treatment", "log_hazard_pfs"} <= set(truth.columns)
    raw = pd.read_csv(export / "truth" / "patients.csv")
    assert truth.loc["P0001", "z_ring"] == pytest.approx(raw.loc[0, "z_ring"])
    assert load_signal(cohort)["ring_band_px"][1] == pytest.approx(2.5)
    # a non-phantom cohort has no truth
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "cohort.json").write_text(json.dumps({"format": "npcai-cohort/1", "patients": [], "source": {}}))
    assert load_truth(plain) is None and load_signal(plain) is None


@pytest.mark.parametrize("args, words", [
    (["--patients", "0"], "--patients"),
    (["--size", "32"], "--size"),
    (["--sequences", "FLAIR"], "FLAIR"),
    (["--centres", "9"], "--centres"),
])
def test_cli_bad_input_exits_2_with_one_line(cli, tmp_path, args, words):
    r = cli("phantom", tmp_path / "out", *args)
    assert r.code == 2, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0]
    assert not (tmp_path / "out").exists()


def test_single_patient_export_has_undefined_oracle(cli, tmp_path):
    r = cli("phantom", tmp_path / "one", "--patients", "1", "--size", "64", "--slices", "2", "--centres", "4")
    assert r.code == 0, r
    oracle = json.loads((tmp_path / "one" / "truth" / "oracle.json").read_text())
    assert oracle["pfs-median"]["auc"] is None and oracle["pfs"]["c_index"] is None
    assert "n/a" in r.stdout


def test_cli_refuses_non_empty_out_and_overwrites_when_asked(cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    r = cli("phantom", out, "--patients", "2", "--size", "64", "--slices", "2", "--overwrite")
    assert r.code == 2 and "keep.txt" in r.stderr and "not an output npcai wrote" in r.stderr
    assert (out / "keep.txt").exists()                      # a folder npcai did not write is never replaced
    (out / "keep.txt").unlink()
    r = cli("phantom", out, "--patients", "2", "--size", "64", "--slices", "2")
    assert r.code == 0, r
    r = cli("phantom", out, "--patients", "2", "--size", "64", "--slices", "2")
    assert r.code == 2 and "--overwrite" in r.stderr
    r = cli("phantom", out, "--patients", "2", "--size", "64", "--slices", "2",
            "--sequences", "T1c,T1", "--post", "--overwrite")
    assert r.code == 0, r
    assert "oracle AUC" in r.stdout and "patients" in r.stdout
    assert len(list((out / "contours").glob("*.nii.gz"))) == 2 * 2 * 2
