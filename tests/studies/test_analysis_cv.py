"""A cross-validated study's analysis: paired DeLong tests on the out-of-fold patients, and the
expanded ROI chosen on the folds' validation AUCs, never on the pooled out-of-fold AUC."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from npcai.report.tables import RESULT_COLUMNS
from npcai.stats.auc import auc_ci, roc_auc
from npcai.studies.analysis import StudyAnalysis, chosen_by_validation, findings, validation_auc
from npcai.studies.schema import load_study

N = 120


def _oof(y, score) -> pd.DataFrame:
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(len(y))], "split": "oof",
                         "fold": np.arange(len(y)) % 5 + 1, "label": y, "prob": score, "threshold": 0.5})


def _cv_analysis(oof_strength: dict[str, float], val_auc: dict[str, float]):
    """A 5-fold study on one backbone: each ROI's out-of-fold score is label * strength + noise;
    its validation AUC (mean over folds) is given separately."""
    resolved = load_study("peritumoral").resolve("fast-cv", backbones=["resnet18"])
    assert resolved.study.split.folds == 5
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(N // 2), np.zeros(N // 2)]
    shared = rng.normal(size=N)
    rows, preds, vals = [], {}, {}
    for roi in resolved.study.rois:
        score = oof_strength.get(roi.name, 0.2) * y + shared + rng.normal(scale=0.3, size=N)
        key = f"all__{roi.name}__resnet18__image"
        preds[key] = _oof(y, score)
        vals[key] = val_auc.get(roi.name, 0.5)
        a = auc_ci(y, score)
        rows.append({"model": roi.display, "source": "run", "subset": "all", "subset_label": "All",
                     "roi": roi.name, "roi_label": roi.display, "kind": roi.kind, "expansion": roi.expansion,
                     "backbone": "resnet18", "unit": "image", "auc": a.auc, "auc_low": a.low,
                     "auc_high": a.high, "n_test": N})
    results = pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)
    return resolved, StudyAnalysis(results=results, predictions=preds, delong=pd.DataFrame(),
                                   splits=pd.DataFrame(), endpoint={}, validation_auc=vals)


def test_expanded_roi_is_chosen_on_fold_validation_not_on_out_of_fold_auc():
    # expand40 has by far the best pooled out-of-fold AUC, expand10 the best validation AUC
    resolved, analysis = _cv_analysis({"expand40": 2.5, "expand10": 0.8},
                                      {"expand40": 0.55, "expand10": 0.80, "expand20": 0.60})
    runs = analysis.results
    assert runs.loc[runs["auc"].idxmax(), "roi"] == "expand40"
    text = findings(resolved, analysis)
    assert text[0].startswith("Expanded ROI chosen on the validation patients of the folds: Expand 5 px")
    assert "AUC 0.800, mean over folds; pooled out-of-fold AUC" in text[0]
    # its comparisons are paired DeLong tests on all out-of-fold patients
    assert "Expand 5 px" in text[1] and "Segmented image" in text[1]
    assert f"paired DeLong test, {N} patients" in text[1]
    assert f"paired DeLong test, {N} patients" in text[2] and "Original image" in text[2]
    assert chosen_by_validation(analysis, runs)["roi"] == "expand10"


def test_out_of_fold_comparisons_are_paired_delong_tests():
    """The findings compare cross-validated runs on their out-of-fold patients (split oof), not
    only on split test (which a CV run does not have)."""
    resolved, analysis = _cv_analysis({"expand20": 2.0}, {"expand20": 0.9})
    text = findings(resolved, analysis)
    assert all("not tested" not in line for line in text[1:3])
    assert any("had a higher AUC than" in line for line in text[1:3])


def _write_cv(root, folds: list[pd.DataFrame]):
    from npcai.runs import RUN_FORMAT, write_run

    names = []
    for k, pred in enumerate(folds, start=1):
        write_run(root / "folds" / f"fold{k}", config={"format": RUN_FORMAT, "kind": "train"}, patients=pred)
        names.append(f"folds/fold{k}")
    held = pd.concat([p[p["split"] == "test"].assign(split="oof", fold=k, threshold=0.5)
                      for k, p in enumerate(folds, start=1)])
    write_run(root, config={"format": RUN_FORMAT, "kind": "cv", "fold_runs": names}, patients=held)
    return root


def test_validation_auc_of_a_cv_run_is_the_mean_of_its_folds_validation_aucs(tmp_path):
    rng = np.random.default_rng(0)

    def fold(k):
        split = ["train"] * 10 + ["val"] * 8 + ["test"] * 8
        y = np.tile([0, 1], 13)
        prob = np.clip(0.5 + (y - 0.5) * 0.3 * k + rng.normal(scale=0.2, size=26), 0, 1)
        return pd.DataFrame({"patient_id": [f"F{k}P{i:02d}" for i in range(26)], "split": split,
                             "label": y, "prob": prob})

    folds = [fold(1), fold(2)]
    run = _write_cv(tmp_path / "cv", folds)
    want = np.mean([roc_auc(f[f.split == "val"]["label"], f[f.split == "val"]["prob"]) for f in folds])
    assert validation_auc(run) == pytest.approx(want)
    # the held-out (out-of-fold) patients play no part: scrambling them changes nothing
    folds[0].loc[folds[0]["split"] == "test", "prob"] = 1 - folds[0].loc[folds[0]["split"] == "test", "prob"]
    assert validation_auc(_write_cv(tmp_path / "cv_b", folds)) == pytest.approx(want)
