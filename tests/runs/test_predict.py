"""`predict_patients` / `npcai predict` / `npcai evaluate PRED`: a run applied to any cohort."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from npcai.errors import NpcaiError
from npcai.runs import predict_patients, read_predictions


@pytest.mark.slow
@pytest.mark.parametrize("which", ["image_run", "patient_run"])
def test_reproduces_saved_test_predictions(which, request, runs_cohort):
    run = request.getfixturevalue(which)
    saved = read_predictions(run)
    test_ids = saved.patients.loc[saved.patients["split"] == "test", "patient_id"].tolist()
    assert test_ids
    preds = predict_patients(run, runs_cohort, patients=test_ids)
    got = preds.patients.set_index("patient_id").loc[test_ids]
    want = saved.patients.set_index("patient_id").loc[test_ids]
    assert np.abs(got["prob"].to_numpy() - want["prob"].to_numpy()).max() <= 1e-6
    assert (got["split"] == "test").all() and (got["label"] == want["label"]).all()
    assert (got["n_slices"] == want["n_slices"]).all()
    s_got = preds.slices.set_index("roi_row")["prob"]
    s_want = saved.slices.set_index("roi_row")["prob"].loc[s_got.index]
    assert np.abs(s_got.to_numpy() - s_want.to_numpy()).max() <= 1e-6
    assert preds.info["same_cohort"] and preds.info["roi"]["name"] == "pre"   # the run's own cache, reused


@pytest.mark.slow
def test_external_predict_and_evaluate_via_cli(cli, image_run, second_cohort, tmp_path):
    cohort = shutil.copytree(second_cohort, tmp_path / "cohort2")
    out = tmp_path / "pred"
    r = cli("predict", image_run, cohort, "--out", out)
    assert r.code == 0, r
    p = pd.read_csv(out / "predictions_patients.csv", dtype={"patient_id": str})
    assert (p["split"] == "external").all() and len(p) >= 8
    assert p["prob"].between(0, 1).all() and p["label"].notna().any()
    # pfs-median labels on the external cohort use the training cut-off, not the new median
    from npcai.cohort.endpoints import endpoint_labels
    from npcai.cohort.model import Cohort
    from npcai.runs import read_summary

    cut = read_summary(image_run)["endpoint_cutoff_months"]
    ref = endpoint_labels(Cohort.load(cohort).clinical(), "pfs-median", cutoff=cut).labels
    lab = p.dropna(subset=["label"]).set_index("patient_id")["label"]
    assert (lab == ref.reindex(lab.index)).all()
    # the ROI was rebuilt from the run's recorded spec, in the new cohort, and is reused
    roi_dirs = [d.name for d in (cohort / "roi").iterdir()]
    assert len(roi_dirs) == 1 and roi_dirs[0].startswith("run-pre-")
    params = json.loads((cohort / "roi" / roi_dirs[0] / "variant.json").read_text())
    assert params["variant"] == "bbox:5mm" and params["size"] == 32

    r = cli("evaluate", out, "--n-boot", "0", "--no-figures")
    assert r.code == 0, r
    assert "AUC, patients" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["split"] == "external" and m["kind"] == "predictions"
    # the threshold comes from the RUN's validation patients, never from the external cohort
    from npcai.runs import read_run
    from npcai.stats.evaluate import validation_threshold

    val = read_run(image_run).validation()
    assert m["threshold"]["value"] == pytest.approx(validation_threshold(val)["value"])
    assert "validation patients" in m["threshold"]["source"]
    assert m["n_patients"] == int(p["label"].notna().sum())

    # one patient, quickly (the web tool's call), and the same probability as in the batch
    one = predict_patients(image_run, cohort, patients=[p["patient_id"].iloc[0]])
    assert len(one.patients) == 1
    assert one.patients["prob"].iloc[0] == pytest.approx(p["prob"].iloc[0], abs=1e-6)

    # compare accepts prediction folders of several runs on the same external cohort
    out2 = tmp_path / "pred2"
    assert cli("predict", image_run, cohort, "--out", out2).code == 0
    r = cli("compare", out, out2, "--out", tmp_path / "cmp", "--group-by", "backbone",
            "--pairs", "pred:pred2")
    assert r.code == 0, r
    d = pd.read_csv(tmp_path / "cmp" / "delong.csv")
    assert d["p_value"].iloc[0] == pytest.approx(1.0)


@pytest.mark.slow
def test_ensemble_predicts_members_and_soft_votes(cli, image_run, patient_run, second_cohort, tmp_path):
    ens = tmp_path / "ens"
    assert cli("ensemble", image_run, patient_run, "--out", ens, "--weights", "3,1").code == 0
    cohort = shutil.copytree(second_cohort, tmp_path / "cohort2")
    preds = predict_patients(ens, cohort)
    a = predict_patients(image_run, cohort).patients.set_index("patient_id")["prob"]
    b = predict_patients(patient_run, cohort).patients.set_index("patient_id")["prob"]
    got = preds.patients.set_index("patient_id")["prob"]
    assert np.allclose(got, 0.75 * a.loc[got.index] + 0.25 * b.loc[got.index], atol=1e-9)
    assert (preds.patients["split"] == "external").all()


@pytest.mark.slow
def test_refuses_a_cohort_without_the_runs_sequence(cli, image_run, runs_cohort, tmp_path):
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom

    generate_phantom(tmp_path / "export", patients=4, size=64, slices=4, seed=3, centres=1, sequences=("T2",))
    ingest(tmp_path / "export" / "dicom", clinical=tmp_path / "export" / "clinical.csv", out=tmp_path / "t2",
           contours=tmp_path / "export" / "contours")
    r = cli("predict", image_run, tmp_path / "t2", "--out", tmp_path / "pred")
    assert r.code == 2 and r.stderr.strip().count("\n") == 0
    assert "no pre T1c scans" in r.stderr and "needs sequences T1c" in r.stderr and "pre T2" in r.stderr
    assert not (tmp_path / "pred").exists() and not (tmp_path / "t2" / "roi").exists()
    with pytest.raises(NpcaiError, match="patient P9999: not in cohort"):
        predict_patients(image_run, runs_cohort, patients=["P9999"])


def test_spacing_warning(caplog, tmp_path):
    """A cohort whose pixels are >20 % larger than the training cohort's is warned about."""
    from types import SimpleNamespace

    from npcai.runs.folder import RoiSpec, RunConfig
    from npcai.runs.predict import _spacing_check

    scans = [SimpleNamespace(spacing=[1.3, 1.3, 5.0], patient_id="P0001", timepoint="pre", sequence="T1c")]
    cohort = SimpleNamespace(root=tmp_path, scans=lambda timepoint=None, sequence=None: scans)
    spec = RoiSpec("pre", {"sequences": ["T1c"], "timepoint": "pre"}, "h")
    cfg = RunConfig(tmp_path, "train", {}, None, None, spec, [], None, {"cohort": {"pixel_mm": 1.0}})
    with caplog.at_level("WARNING"):
        msg = _spacing_check(cfg, cohort, ["P0001"])
    assert "30%" in msg and "1.3 mm" in msg and "30%" in caplog.text
    cfg.raw["cohort"]["pixel_mm"] = 1.2
    assert _spacing_check(cfg, cohort, ["P0001"]) is None


@pytest.mark.slow
def test_pre_post_ensemble_reproduces_and_needs_the_post_timepoint(cli, image_run, runs_cohort, second_cohort,
                                                                   tmp_path):
    from .conftest import train_tiny

    post = train_tiny(runs_cohort, tmp_path / "post", roi="post", split_from=str(image_run))
    ens = tmp_path / "prepost"
    assert cli("ensemble", image_run, post, "--out", ens).code == 0
    saved = read_predictions(ens).patients.set_index("patient_id")
    got = predict_patients(ens, runs_cohort).patients.set_index("patient_id")
    assert set(saved.index) <= set(got.index)
    extra = got.drop(saved.index)
    assert (extra["split"] == "excluded").all() and extra["label"].isna().all()   # left out of the run
    got = got.loc[saved.index]
    assert np.abs(got["prob"] - saved.loc[got.index, "prob"]).max() <= 1e-6
    assert (got["split"] == saved.loc[got.index, "split"]).all()      # own cohort: the run's splits
    r = cli("predict", ens, second_cohort, "--out", tmp_path / "pred")
    assert r.code == 2 and "no post T1c scans" in r.stderr and "run post needs" in r.stderr
