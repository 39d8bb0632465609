"""A study's clinical baseline and combined model: fitted on training / validation patients
only (never a test patient), evaluated on the image models' test patients, out of fold when
cross-validated."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import npcai.studies.baseline as B
from npcai.errors import NpcaiError
from npcai.studies.schema import load_study

KEYS = ("all__segmented__resnet18__image", "all__expand10__resnet18__image")


def _cohort(n=90, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"P{i:04d}" for i in range(1, n + 1)]
    clin = pd.DataFrame({"age": rng.normal(55, 10, n).round(), "sex": rng.choice(["M", "F"], n),
                         "t_stage": rng.integers(1, 5, n), "n_stage": rng.integers(0, 4, n)},
                        index=pd.Index(ids, name="patient_id"))
    risk = 0.05 * (clin["age"] - 55) + 0.6 * (clin["t_stage"] - 2.5) + rng.normal(0, 1, n)
    labels = (risk > 0).astype(int)
    split = np.array(["train"] * 50 + ["val"] * 20 + ["test"] * 20)
    preds = {}
    for j, key in enumerate(KEYS):
        prob = 1 / (1 + np.exp(-(labels * 1.5 - 0.75 + rng.normal(0, 1 + j, n))))
        preds[key] = pd.DataFrame({"patient_id": ids, "split": split, "label": labels.to_numpy(), "prob": np.asarray(prob)})
    steps = [{"step": k, "source": "run", "subset": "all", "roi": k.split("__")[1], "backbone": "resnet18",
              "unit": "image", "run": f"/nowhere/runs/{k}"} for k in KEYS]
    return clin, preds, steps


def _resolved(**changes):
    study = load_study("peritumoral")
    return study.model_copy(update=changes).resolve("fast")


def _fit(clin, preds, steps, resolved=None):
    return B.fit_study_baselines(clin, resolved or _resolved(), steps, preds,
                                 names={KEYS[0]: "Segmented", KEYS[1]: "Expand 10"})


def test_clinical_and_combined_models_on_the_image_models_test_patients():
    clin, preds, steps = _cohort()
    found = _fit(clin, preds, steps)
    assert found.covariates == ["age", "sex", "t_stage", "n_stage"]
    clinical, combined = found.models
    assert (clinical.kind, combined.kind) == ("clinical", "combined")
    assert clinical.name == "Clinical baseline (age, sex, T, N)" and clinical.fitted_on == "50 training patients"
    assert combined.fitted_on == "20 validation patients" and combined.image_model in KEYS
    assert combined.name == f"Combined: clinical + {'Segmented' if combined.image_model == KEYS[0] else 'Expand 10'}"
    for m in found.models:
        test = m.predictions[m.predictions["split"] == "test"]
        assert list(test["patient_id"]) == list(preds[KEYS[0]].query("split == 'test'")["patient_id"])
        assert test["prob"].between(0, 1).all()
    # the image model with the higher validation AUC is the one combined
    from npcai.stats.auc import roc_auc

    val_auc = {k: roc_auc(p.query("split == 'val'")["label"], p.query("split == 'val'")["prob"]) for k, p in preds.items()}
    assert combined.image_model == max(val_auc, key=val_auc.get)


def test_test_patients_never_enter_a_fit_by_construction():
    """Scrambling every test patient's label, covariates and image scores leaves both fitted
    models and every training / validation prediction unchanged."""
    clin, preds, steps = _cohort()
    ref = _fit(clin, preds, steps)
    test_ids = preds[KEYS[0]].query("split == 'test'")["patient_id"].to_list()
    rng = np.random.default_rng(9)
    clin2 = clin.copy()
    clin2.loc[test_ids, "age"] = rng.normal(30, 20, len(test_ids)).round()
    clin2.loc[test_ids, "t_stage"] = rng.integers(1, 5, len(test_ids))
    preds2 = {}
    for k, p in preds.items():
        p = p.copy()
        t = p["split"] == "test"
        p.loc[t, "label"] = 1 - p.loc[t, "label"]
        p.loc[t, "prob"] = rng.uniform(0, 1, int(t.sum()))
        preds2[k] = p
    new = _fit(clin2, preds2, steps)
    for a, b in zip(ref.models, new.models):
        pd.testing.assert_frame_equal(a.coefficients, b.coefficients)
        keep = a.predictions["split"] != "test"
        np.testing.assert_allclose(a.predictions.loc[keep, "prob"], b.predictions.loc[keep, "prob"])
        assert a.image_model == b.image_model


def test_spy_clinical_fit_sees_training_and_combined_fit_validation_patients_only(monkeypatch):
    clin, preds, steps = _cohort()
    split = preds[KEYS[0]].set_index("patient_id")["split"]
    seen = []
    original = B.ClinicalModel.fit

    def spy(self, data, outcome):
        seen.append((list(self.covariates), set(split.reindex(data.index))))
        return original(self, data, outcome)

    monkeypatch.setattr(B.ClinicalModel, "fit", spy)
    _fit(clin, preds, steps)
    assert seen == [(["age", "sex", "t_stage", "n_stage"], {"train"}), (["image_score", "clinical_score"], {"val"})]


def test_missing_covariates_are_complete_cases_and_counted():
    clin, preds, steps = _cohort()
    test_ids = preds[KEYS[0]].query("split == 'test'")["patient_id"].to_list()
    clin.loc[test_ids[:3], "age"] = np.nan
    clin.loc["P0001", "t_stage"] = np.nan                       # a training patient
    clinical = _fit(clin, preds, steps).models[0]
    assert clinical.n_unscored == 3 and clinical.n_missing == 1 and clinical.n_fit == 49
    assert clinical.predictions.set_index("patient_id").loc[test_ids[:3], "prob"].isna().all()


def test_cross_validated_study_fits_inside_each_fold_and_pools_out_of_fold(monkeypatch):
    clin, preds, steps = _cohort()
    ids = preds[KEYS[0]]["patient_id"].to_numpy()
    fold = np.arange(len(ids)) % 3 + 1
    fold_preds = {}
    for key, p in preds.items():
        parts = []
        for k in (1, 2, 3):
            q = p.copy()
            others = np.flatnonzero(fold != k)
            q["split"] = "train"
            q.loc[fold == k, "split"] = "test"
            q.loc[others[::4], "split"] = "val"
            parts.append((k, q))
        fold_preds[f"/nowhere/runs/{key}"] = parts
    monkeypatch.setattr(B, "_fold_preds", lambda run: fold_preds[str(run)])
    seen = []
    original = B.ClinicalModel.fit

    def spy(self, data, outcome):
        seen.append(set(data.index))
        return original(self, data, outcome)

    monkeypatch.setattr(B.ClinicalModel, "fit", spy)
    found = _fit(clin, preds, steps, _resolved(split=load_study("peritumoral").split.model_copy(update={"folds": 3})))
    for m in found.models:
        p = m.predictions
        assert (p["split"] == "oof").all() and p["patient_id"].is_unique and len(p) == len(ids)
        assert p.set_index("patient_id")["fold"].reindex(ids).to_numpy().tolist() == fold.tolist()
        assert p.groupby("fold")["threshold"].nunique().eq(1).all()
    assert found.models[0].fitted_on.startswith("the training patients of each fold (")
    assert found.models[0].fitted_on.endswith(" summed over the folds)")
    held = {k: set(ids[fold == k]) for k in (1, 2, 3)}
    assert len(seen) == 6 and all(any(not (s & held[k]) for k in held) for s in seen)   # a fold's fits never see it


def test_study_baseline_option_names_covariates_or_turns_it_off():
    clin, preds, steps = _cohort()
    found = _fit(clin, preds, steps, _resolved(baseline=["age"]))
    assert found.covariates == ["age"] and found.models[0].name == "Clinical baseline (age)"
    assert _fit(clin, preds, steps, _resolved(baseline=[])).models == []
    with pytest.raises(NpcaiError, match="'grade' is not a column"):
        _fit(clin, preds, steps, _resolved(baseline=["age", "grade"]))
    none = _fit(clin.drop(columns=["age", "sex", "t_stage", "n_stage"]).assign(x=1), preds, steps)
    assert none.models == [] and "No clinical baseline" in none.notes[0]


def test_survival_study_gets_a_cox_baseline_fitted_on_training_patients_and_no_combined_model():
    from npcai.survival.cox import CoxPH

    clin, preds, steps = _cohort()
    rng = np.random.default_rng(4)
    for k, p in preds.items():
        preds[k] = p.drop(columns="prob").assign(time=rng.exponential(30, len(p)).round(1) + 0.1, event=p["label"])
    study = load_study("peritumoral")
    resolved = _resolved(training=study.training.model_copy(update={"task": "survival"}))
    found = _fit(clin, {k: preds[KEYS[0]] for k in KEYS}, steps, resolved)
    (clinical,) = found.models
    assert "Cox regression" in clinical.description and "Cox model" in found.notes[0]
    train = preds[KEYS[0]].query("split == 'train'").set_index("patient_id")
    data = clin.loc[train.index].assign(sex_m=(clin.loc[train.index, "sex"] == "M").astype(float)).join(train)
    ref = CoxPH().fit(data, "time", "event", ["age", "sex_m", "t_stage", "n_stage"])
    coef = clinical.coefficients.set_index("term")["coef"]
    np.testing.assert_allclose(coef[["age", "t_stage", "n_stage"]], ref.coef_[["age", "t_stage", "n_stage"]], rtol=1e-8)
    no_times = {k: p.drop(columns=["time", "event"]) for k, p in preds.items()}
    found = _fit(clin, no_times, steps, resolved)
    assert found.models == [] and "no survival time and event" in found.notes[-1]
