"""A cross-validated run applied to new patients: the soft vote of its fold models, evaluated at
the mean of the fold models' validation thresholds."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from npcai.runs import predict_patients, read_run


def _fold_thresholds(cv_run) -> list[float]:
    oof = read_run(cv_run).patients
    return oof.groupby("fold")["threshold"].first().sort_index().tolist()


@pytest.mark.slow
def test_cv_run_predicts_the_mean_of_its_fold_models(cli, cv_run, second_cohort, tmp_path):
    from npcai.models.folds import fold_run_dirs

    cohort = shutil.copytree(second_cohort, tmp_path / "cohort2")
    preds = predict_patients(cv_run, cohort)
    folds = fold_run_dirs(cv_run)
    assert len(folds) == 2
    each = [predict_patients(f, cohort).patients.set_index("patient_id")["prob"] for f in folds]
    got = preds.patients.set_index("patient_id")["prob"]
    assert len(got) >= 8 and (preds.patients["split"] == "external").all()
    assert np.allclose(got.to_numpy(), np.mean([e.loc[got.index].to_numpy() for e in each], axis=0), atol=1e-9)
    # the two fold models really differ, so the mean is not either of them
    assert not np.allclose(each[0].loc[got.index], each[1].loc[got.index])
    # slices: the same soft vote per ROI slice
    s_each = [predict_patients(f, cohort).slices.set_index("roi_row")["prob"] for f in folds]
    s_got = preds.slices.set_index("roi_row")["prob"]
    assert np.allclose(s_got.to_numpy(), np.mean([s.loc[s_got.index].to_numpy() for s in s_each], axis=0))
    thr = preds.info["threshold"]
    assert thr["value"] == pytest.approx(float(np.mean(_fold_thresholds(cv_run))))
    assert thr["folds"] == pytest.approx(_fold_thresholds(cv_run))

    out = tmp_path / "pred"
    r = cli("predict", cv_run, cohort, "--out", out)
    assert r.code == 0, r
    text = " ".join(r.stdout.split())
    assert "soft vote" in text and "mean of the 2 fold models' validation thresholds" in text
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["source_run"]["kind"] == "cv" and cfg["threshold"]["value"] == pytest.approx(thr["value"])
    saved = pd.read_csv(out / "predictions_patients.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert np.allclose(saved.loc[got.index, "prob"], got, atol=1e-8)

    r = cli("evaluate", out, "--n-boot", "0", "--no-figures")
    assert r.code == 0, r
    assert "AUC, patients" in r.stdout and "mean of the 2 fold" in " ".join(r.stdout.split())
    m = json.loads((out / "metrics.json").read_text())
    assert m["split"] == "external" and m["threshold"]["value"] == pytest.approx(thr["value"])
    lab = saved.dropna(subset=["label"])
    called = (lab["prob"] > thr["value"]).astype(int)
    assert m["binary"]["confusion"]["tp"] == int(((called == 1) & (lab["label"] == 1)).sum())
    assert m["binary"]["confusion"]["fp"] == int(((called == 1) & (lab["label"] == 0)).sum())

    # compare takes prediction folders of a cross-validated run at their recorded threshold too
    assert cli("predict", cv_run, cohort, "--out", tmp_path / "pred2").code == 0
    r = cli("compare", out, tmp_path / "pred2", "--out", tmp_path / "cmp", "--group-by", "backbone",
            "--pairs", "pred:pred2")
    assert r.code == 0, r
    t3 = pd.read_csv(tmp_path / "cmp" / "table3.csv")
    assert np.allclose(t3["threshold"], thr["value"])


@pytest.mark.slow
def test_cv_run_on_its_own_cohort_marks_its_patients_seen(cv_run, runs_cohort):
    oof = read_run(cv_run).patients
    some = oof["patient_id"].head(3).tolist()
    preds = predict_patients(cv_run, runs_cohort, patients=some)
    assert (preds.patients["split"] == "seen").all()
    assert set(preds.patients["patient_id"]) == set(some)
