"""Radiomics runs: split, folds, reused splits; evaluate and compare accept them; held-out
patients never reach the fitted model."""
from __future__ import annotations

import numpy as np
import pytest

import npcai.radiomics.train as rtrain
from npcai.errors import NpcaiError
from npcai.radiomics.train import MODEL_NAME, RadiomicsConfig, train_radiomics


@pytest.fixture
def fit_spy(monkeypatch):
    """Record the patients every fit of the model sees (training and validation)."""
    calls = []
    real = rtrain.fit_elastic_net

    def spy(X_train, y_train, X_val, y_val, settings=None):
        calls.append((set(X_train.index), set(X_val.index)))
        return real(X_train, y_train, X_val, y_val, settings)

    monkeypatch.setattr(rtrain, "fit_elastic_net", spy)
    return calls


def _cfg(cohort, **kw):
    """15 labelled patients (7 positive): 30 % test and validation keep both classes in each."""
    kw = {"val_fraction": 0.3, "test_fraction": 0.3, **kw}
    return RadiomicsConfig(cohort=str(cohort), roi="pre", endpoint="pfs-median", c_grid=(0.1, 1.0), **kw)


def test_split_run_is_an_ordinary_run_and_never_fits_on_test(rad_cohort, tmp_path, fit_spy):
    from npcai.runs import read_run, read_summary
    from npcai.stats.evaluate import evaluate_run

    res = train_radiomics(_cfg(rad_cohort), tmp_path / "rad")
    run = read_run(res.run_dir)
    assert run.config.kind == "train" and run.config.raw["method"] == "radiomics"
    assert run.backbone == MODEL_NAME and run.roi == "pre" and run.endpoint == "pfs-median"
    p = run.patients
    assert set(p["split"]) == {"train", "val", "test"} and p["prob"].between(0, 1).all()
    test_ids = set(p.loc[p["split"] == "test", "patient_id"])
    assert len(fit_spy) == 1
    train_ids, val_ids = fit_spy[0]
    assert train_ids == set(p.loc[p["split"] == "train", "patient_id"])
    assert not (train_ids | val_ids) & test_ids
    s = read_summary(res.run_dir)
    assert s["n_test"] == len(test_ids) and s["model"]["features"]["input"] > 50
    m = evaluate_run(res.run_dir, n_boot=0, figures=False, tnm=False)
    assert m["n_patients"] == len(test_ids) and "auc" in m["patient"]
    assert "threshold" in m and "binary" in m
    assert s["model"]["features"]["selected"] > 0


def test_reused_split_and_compare_with_paired_delong(rad_cohort, tmp_path, fit_spy):
    from npcai.runs import read_run
    from npcai.stats.compare import compare_runs

    a = train_radiomics(_cfg(rad_cohort), tmp_path / "a").run_dir
    b = train_radiomics(_cfg(rad_cohort, split_from=str(a), l1_ratio=1.0), tmp_path / "b").run_dir
    sa, sb = read_run(a).patients, read_run(b).patients
    assert sa.set_index("patient_id")["split"].equals(sb.set_index("patient_id")["split"])
    assert read_run(b).config.raw["split_source"].startswith("reused from")
    result = compare_runs([a, b], pairs=[("a", "b")])
    assert len(result.delong) == 1 and bool(result.delong["paired"].iloc[0])
    assert np.isfinite(result.delong["p_value"].iloc[0])
    # aAUC is the mean over a dataset's networks: radiomics runs are listed but not averaged in
    assert result.table3["aauc"].isna().all() and len(result.table3) == 2


def test_cv_run_fits_inside_the_training_folds_only(rad_cohort, tmp_path, fit_spy):
    from npcai.models.folds import check_same_folds, evaluate_cv, is_cv_run
    from npcai.runs import read_run, read_split

    res = train_radiomics(_cfg(rad_cohort, folds=3), tmp_path / "cv")
    assert is_cv_run(res.run_dir) and res.kind == "cv" and len(res.fold_aucs) == 3
    folds = read_split(res.run_dir)["fold"]
    assert len(fit_spy) == 3
    for k, (train_ids, val_ids) in enumerate(fit_spy, start=1):
        held = set(folds.index[folds == k])
        assert not (train_ids | val_ids) & held
        fold_run = read_run(res.run_dir / "folds" / f"fold{k}")
        assert set(fold_run.split_patients("test").index) == held
    oof = read_run(res.run_dir).patients
    assert (oof["split"] == "oof").all() and set(oof["patient_id"]) == set(folds.index)
    ev = evaluate_cv(res.run_dir, figures=False)
    assert ev.n_patients == len(oof) and len(ev.folds) == 3

    # --split-from a cross-validated run reuses its folds: paired out-of-fold comparisons
    again = train_radiomics(_cfg(rad_cohort, split_from=str(res.run_dir), l1_ratio=0.9), tmp_path / "cv2")
    check_same_folds([res.run_dir, again.run_dir])
    assert read_split(again.run_dir)["fold"].equals(folds)


def test_cli_train_evaluate_and_a_radiomics_run_has_no_network(cli, rad_cohort, tmp_path):
    from npcai.runs import load_run

    out = tmp_path / "cli_run"
    r = cli("radiomics", "train", rad_cohort, "--roi", "pre", "--endpoint", "pfs-median", "--out", out,
            "--val-fraction", "0.3", "--test-fraction", "0.3", "--c-grid", "0.1,1")
    assert r.code == 0, r
    assert "test AUC" in r.stdout and "selected" in r.stdout
    r = cli("evaluate", out)
    assert r.code == 0, r
    with pytest.raises(NpcaiError, match="radiomics run"):
        load_run(out)
    r = cli("radiomics", "train", rad_cohort, "--roi", "pre", "--endpoint", "pfs-median", "--out", rad_cohort / "x")
    assert r.code == 2 and "input" in r.stderr
    r = cli("radiomics", "train", rad_cohort, "--roi", "pre", "--endpoint", "pfs-median", "--out", tmp_path / "y",
            "--c-grid", "a,b")
    assert r.code == 2 and "--c-grid" in r.stderr


def test_options_are_checked_before_anything_is_read(tmp_path):
    for kw, match in (({"folds": 1}, "at least 2"), ({"folds": 3, "test_where": "centre == 'C1'"}, "exclusive"),
                      ({"folds_from": "x"}, "needs --folds"), ({"val_fraction": 0.0}, "fractions")):
        with pytest.raises(NpcaiError, match=match):
            train_radiomics(RadiomicsConfig(cohort=str(tmp_path), roi="r", endpoint="e", **kw), tmp_path / "o")
