"""Soft-voting ensembles: weighted means of patient probabilities; refuses mismatched test sets."""
import pandas as pd
import pytest
import yaml

from npcai.errors import NpcaiError
from npcai.models.ensemble import ensemble_runs
from npcai.runs import RUN_FORMAT


def _fake_run(path, rows, endpoint="pfs-median", cohort_id="c0"):
    path.mkdir(parents=True)
    df = pd.DataFrame(rows, columns=["patient_id", "split", "label", "prob", "n_slices"])
    df.to_csv(path / "predictions_patients.csv", index=False)
    df[["patient_id", "split", "label"]].to_csv(path / "split.csv", index=False)
    (path / "config.yaml").write_text(yaml.safe_dump({"format": RUN_FORMAT, "kind": "train",
                                                      "options": {"endpoint": endpoint},
                                                      "cohort": {"path": "cohort", "id": cohort_id}}))
    return path


def test_soft_vote_weighted_mean(tmp_path):
    a = _fake_run(tmp_path / "a", [("P1", "test", 1, 0.9, 3), ("P2", "test", 0, 0.2, 2), ("P3", "train", 0, 0.1, 1),
                                   ("P4", "val", 1, 0.5, 1)])
    b = _fake_run(tmp_path / "b", [("P1", "test", 1, 0.5, 4), ("P2", "test", 0, 0.6, 4), ("P3", "val", 0, 0.3, 1),
                                   ("P5", "train", 1, 0.7, 1)])
    res = ensemble_runs([a, b], tmp_path / "e", weights=[3, 1])
    out = pd.read_csv(tmp_path / "e" / "predictions_patients.csv").set_index("patient_id")
    assert out.index.tolist() == ["P1", "P2"]  # P3 differs in split, P4/P5 are in one run only
    assert out.loc["P1", "prob"] == pytest.approx(0.75 * 0.9 + 0.25 * 0.5)
    assert out.loc["P2", "prob"] == pytest.approx(0.75 * 0.2 + 0.25 * 0.6)
    assert out.loc["P1", "n_slices"] == 7
    assert res.test_auc == 1.0 and res.n_test == 2 and res.weights == [0.75, 0.25]
    for f in ("split.csv", "config.yaml", "summary.json"):
        assert (tmp_path / "e" / f).is_file()


def test_refuses_different_test_patients_naming_them(tmp_path):
    a = _fake_run(tmp_path / "a", [("P1", "test", 1, 0.9, 1), ("P2", "test", 0, 0.2, 1)])
    b = _fake_run(tmp_path / "b", [("P1", "test", 1, 0.9, 1), ("P3", "test", 0, 0.2, 1), ("P4", "test", 0, 0.2, 1)])
    with pytest.raises(NpcaiError, match=r"run b has 2 test patients run a lacks: P3, P4; run a has 1 test patients run b lacks: P2"):
        ensemble_runs([a, b], tmp_path / "e")
    c = _fake_run(tmp_path / "c", [("P1", "test", 1, 0.9, 1), ("P2", "test", 0, 0.2, 1)], endpoint="residual-tumour")
    with pytest.raises(NpcaiError, match="different endpoints"):
        ensemble_runs([a, c], tmp_path / "e")
    d = _fake_run(tmp_path / "d", [("P1", "test", 1, 0.9, 1), ("P2", "test", 0, 0.2, 1)], cohort_id="other")
    with pytest.raises(NpcaiError, match="different .*cohorts.*a: c0.*d: other"):
        ensemble_runs([a, d], tmp_path / "e")
    with pytest.raises(NpcaiError, match="at least two"):
        ensemble_runs([a], tmp_path / "e")


def test_cli_rejects_bad_weights(cli, tmp_path):
    a = _fake_run(tmp_path / "a", [("P1", "test", 1, 0.9, 1), ("P2", "test", 0, 0.2, 1)])
    r = cli("ensemble", a, a, "--out", tmp_path / "e", "--weights", "1,x")
    assert r.code == 2 and "--weights" in r.stderr
    r = cli("ensemble", a, a, "--out", tmp_path / "e", "--weights", "1")
    assert r.code == 2 and "1 weights for 2 runs" in r.stderr
