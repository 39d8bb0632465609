"""`npcai explain CVRUN`: each patient's Grad-CAM comes from its out-of-fold model, the fold
run that held it out, never from a fold model that trained on it."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cv_run(train_cohort, tmp_path_factory, one_torch_thread):
    """A 2-fold, 1-epoch cross-validated run on the shared training cohort (ROI ``pre``)."""
    from npcai.models.folds import train_folds
    from npcai.models.train import TrainConfig

    cfg = TrainConfig(cohort=str(train_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, lr=1e-3, batch_size=16, epochs=1, seed=0, augment=False, folds=2,
                      fold_seed=1, val_fraction=0.25)
    return train_folds(cfg, tmp_path_factory.mktemp("explain_cv") / "cv2").run_dir


def test_each_patient_is_explained_by_its_out_of_fold_model(cv_run, tmp_path, monkeypatch):
    import npcai.explain.explain as ex
    from npcai.runs import read_run, read_split

    oof = read_run(cv_run).patients.set_index("patient_id")
    chosen = [*oof.index[oof["fold"] == 1][:2], *oof.index[oof["fold"] == 2][:2]]
    used: list[tuple[Path, list[str]]] = []
    real = ex._explain_one

    def spy(loaded, run_name, patients, **kw):
        used.append((Path(loaded.path).resolve(), list(patients)))
        return real(loaded, run_name, patients, **kw)

    monkeypatch.setattr(ex, "_explain_one", spy)
    res = ex.explain_run(cv_run, tmp_path / "exp", patients=chosen, max_slices=1)

    by_patient = {p: model for model, pts in used for p in pts}
    assert sorted(by_patient) == sorted(chosen) and sum(len(pts) for _, pts in used) == len(chosen)
    for p, model in by_patient.items():
        fold = int(oof.loc[p, "fold"])
        assert model == (cv_run / "folds" / f"fold{fold}").resolve()
        # that model held the patient out: it was neither a training nor a validation patient
        assert read_split(model).loc[p, "split"] == "test"
    loc = res.localisation.drop_duplicates("patient_id").set_index("patient_id")
    for p in chosen:
        assert loc.loc[p, "model"] == f"folds/fold{int(oof.loc[p, 'fold'])}"
        assert loc.loc[p, "patient_prob"] == pytest.approx(oof.loc[p, "prob"])
    assert set(loc["run"]) == {cv_run.name}


def test_explain_cli_on_a_cross_validated_run_takes_the_top_out_of_fold_patients(cli, cv_run, tmp_path):
    out = tmp_path / "exp"
    r = cli("explain", cv_run, "--out", out, "--top", "3", "--max-slices", "1")
    assert r.code == 0, r
    loc = pd.read_csv(out / "localisation.csv", dtype={"patient_id": str})
    oof = pd.read_csv(cv_run / "predictions_patients.csv", dtype={"patient_id": str})
    top = oof.sort_values(["prob", "patient_id"], ascending=[False, True])["patient_id"].head(3)
    assert set(loc["patient_id"]) == set(top) and (loc["split"] == "oof").all()
    fold_of = oof.set_index("patient_id")["fold"]
    assert (loc["model"] == "folds/fold" + fold_of.loc[loc["patient_id"]].astype(str).to_numpy()).all()
