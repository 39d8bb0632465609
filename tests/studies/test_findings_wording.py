"""The study summary's sentences follow the paired tests: "higher than" only when significant,
aAUC ± SD only over two or more backbones, the compared expanded ROI chosen on validation."""
from __future__ import annotations

import numpy as np
import pandas as pd

from npcai.report.tables import RESULT_COLUMNS
from npcai.stats.auc import auc_ci
from npcai.studies.analysis import StudyAnalysis, findings
from npcai.studies.schema import load_study

N_VAL, N_TEST = 40, 120


def _pred(y_val, s_val, y_test, s_test) -> pd.DataFrame:
    return pd.DataFrame({"patient_id": [f"V{i}" for i in range(len(y_val))] + [f"T{i}" for i in range(len(y_test))],
                         "split": ["val"] * len(y_val) + ["test"] * len(y_test),
                         "label": np.r_[y_val, y_test], "prob": np.r_[s_val, s_test]})


def _analysis(strength: dict[str, float], backbones: list[str]):
    """Runs whose score is label * strength + noise (the same noise across ROIs of a backbone,
    so paired tests see correlated models)."""
    resolved = load_study("peritumoral").resolve("fast", backbones=backbones)
    rng = np.random.default_rng(0)
    y_val = np.r_[np.ones(N_VAL // 2), np.zeros(N_VAL // 2)]
    y_test = np.r_[np.ones(N_TEST // 2), np.zeros(N_TEST // 2)]
    rows, preds = [], {}
    for bb in backbones:
        nv, nt = rng.normal(size=N_VAL), rng.normal(size=N_TEST)
        for roi in resolved.study.rois:
            k = strength.get(roi.name, 0.3)
            own = rng.normal(scale=0.3, size=N_TEST)
            p = _pred(y_val, k * y_val + nv, y_test, k * y_test + nt + own)
            key = f"all__{roi.name}__{bb}__image"
            preds[key] = p
            test = p[p["split"] == "test"]
            a = auc_ci(test["label"], test["prob"])
            rows.append({"model": f"{roi.display} · {bb}", "source": "run", "subset": "all", "subset_label": "All",
                         "roi": roi.name, "roi_label": roi.display, "kind": roi.kind, "expansion": roi.expansion,
                         "backbone": bb, "unit": "image", "auc": a.auc, "auc_low": a.low, "auc_high": a.high})
    results = pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)
    return resolved, StudyAnalysis(results=results, predictions=preds, delong=pd.DataFrame(),
                                   splits=pd.DataFrame(), endpoint={})


def test_significant_and_non_significant_comparisons_are_worded_by_the_test():
    # expand20 (fast: "Expand 10 px") carries much more signal than the tumour-only ROI, the
    # whole slice almost as much as expand20
    resolved, analysis = _analysis({"expand20": 2.0, "segmented": 0.2, "original": 1.9}, ["resnet18", "efficientnet_b0"])
    text = findings(resolved, analysis)
    chosen, vs_tumour, vs_whole = text[:3]
    assert chosen.startswith("Expanded ROI chosen on the validation patients: Expand 10 px")
    assert "(SD over 2 backbones)" in chosen
    assert vs_tumour.startswith("Expand 10 px (seed: 20 px at 512) (aAUC")
    assert "vs Segmented image" in vs_tumour and "higher on 2 of 2 backbones" in vs_tumour
    assert "vs Original image" in vs_whole and "no significant difference on" in vs_whole
    assert "higher" not in vs_whole and "beat" not in " ".join(text)


def test_one_backbone_gives_auc_without_sd_and_a_single_test():
    resolved, analysis = _analysis({"expand20": 2.0, "segmented": 2.0, "original": 0.1}, ["resnet18"])
    text = findings(resolved, analysis)
    assert "±" not in " ".join(text)
    assert text[0].startswith("Expanded ROI chosen on the validation patients: Expand 10 px")
    assert text[1].startswith("No significant difference in AUC between Expand 10 px (seed: 20 px at 512)")
    assert "paired DeLong test, 120 patients" in text[1]
    assert text[2].startswith("Expand 10 px (seed: 20 px at 512) had a higher AUC than Original image")
