"""The clinical baseline's regressions against R (fixture: tests/stats/fixtures/baseline.R), its
covariate coding, complete-case handling and the default covariate choice."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from npcai.errors import NpcaiError
from npcai.stats.baseline import ClinicalModel, default_covariates

FIX = Path(__file__).parent / "fixtures"
COVS = ["age", "sex", "t_stage", "n_stage", "ebv_dna"]


@pytest.fixture(scope="module")
def data():
    d = pd.read_csv(FIX / "baseline_clinical.csv").set_index("patient_id")
    ref = json.loads((FIX / "baseline_r.json").read_text())
    return d, ref


@pytest.mark.parametrize("penalty,key", [(0.0, "glm"), (1.0, "ridge")])
def test_logistic_fit_equals_r(data, penalty, key):
    """Unpenalised = R's glm(binomial); the default light ridge = the penalised likelihood
    minimised by R's optim on the same standardised design."""
    d, ref = data
    m = ClinicalModel(COVS, penalty=penalty).fit(d, d["label"])
    assert m.terms_ == ref["terms"]
    assert m.n_fit_ == ref["n_complete"] and m.n_missing_ == ref["n_missing"] == 3
    np.testing.assert_allclose(m.coef_.to_numpy(), ref[key]["coef"], rtol=1e-5, atol=1e-7)
    assert m.intercept_ == pytest.approx(ref[key]["intercept"], rel=1e-5, abs=1e-7)
    prob = m.predict(d.loc[ref["complete_ids"]])
    np.testing.assert_allclose(prob.to_numpy(), ref[key]["prob"], rtol=1e-5, atol=1e-8)


def test_missing_covariate_means_no_prediction_and_is_counted(data):
    d, _ = data
    m = ClinicalModel(COVS).fit(d, d["label"])
    p = m.predict(d)
    assert p.isna().sum() == 3 and p[d["ebv_dna"].isna()].isna().all()
    assert "3 left out for a missing value" in m.describe()
    assert "log10(1 + EBV DNA copies/ml)" in m.describe() and "ridge penalty 1" in m.describe()


def test_text_covariates_get_one_indicator_per_level_but_the_most_frequent():
    idx = pd.Index([f"P{i}" for i in range(9)], name="patient_id")
    d = pd.DataFrame({"treatment": ["CCRT"] * 5 + ["RT"] * 2 + ["IC+CCRT"] * 2,
                      "age": [40, 50, 60, 45, 55, 65, 70, 52, 48]}, index=idx)
    y = pd.Series([0, 1, 0, 1, 0, 1, 1, 0, 1], index=idx)
    m = ClinicalModel(["treatment", "age"]).fit(d, y)
    assert sorted(m.terms_) == ["age", "treatment=IC+CCRT", "treatment=RT"]
    new = pd.DataFrame({"treatment": ["CCRT", "unheard-of"], "age": [50, 50]}, index=["A", "B"])
    p = m.predict(new)
    assert np.isfinite(p["A"]) and np.isnan(p["B"])      # a level the training patients lacked: no prediction


def test_constant_term_is_dropped_and_said():
    idx = pd.Index([f"P{i}" for i in range(8)])
    d = pd.DataFrame({"age": [40, 50, 60, 70, 45, 65, 58, 49], "n_stage": [1] * 8}, index=idx)
    y = pd.Series([0, 0, 1, 1, 0, 1, 1, 0], index=idx)
    m = ClinicalModel(["age", "n_stage"]).fit(d, y)
    assert m.terms_ == ["age"] and "n_stage" in m.dropped_terms_
    assert m.predict(d).notna().all()


def test_bad_inputs_are_one_line_errors():
    idx = pd.Index(list("ABCD"))
    d = pd.DataFrame({"age": [40, 50, 60, 70], "t_stage": [1, 2, "T3", 4]}, index=idx)
    with pytest.raises(NpcaiError, match="t_stage.*'T3'"):
        ClinicalModel(["t_stage"]).fit(d, pd.Series([0, 1, 0, 1], index=idx))
    with pytest.raises(NpcaiError, match="both classes"):
        ClinicalModel(["age"]).fit(d, pd.Series([1, 1, 1, 1], index=idx))
    with pytest.raises(NpcaiError, match="'grade' is not in the clinical table"):
        ClinicalModel(["grade"]).fit(d, pd.Series([0, 1, 0, 1], index=idx))
    with pytest.raises(RuntimeError, match="not fitted"):
        ClinicalModel(["age"]).predict(d)


def test_cox_kind_equals_the_r_checked_coxph():
    from npcai.survival.cox import CoxPH

    rng = np.random.default_rng(3)
    n = 60
    d = pd.DataFrame({"age": rng.normal(55, 10, n).round(), "t_stage": rng.integers(1, 5, n)},
                     index=[f"P{i}" for i in range(n)])
    surv = pd.DataFrame({"time": rng.exponential(30, n).round(1) + 0.1, "event": rng.integers(0, 2, n)}, index=d.index)
    m = ClinicalModel(["age", "t_stage"], kind="cox").fit(d, surv)
    ref = CoxPH().fit(d.join(surv), "time", "event", ["age", "t_stage"])
    np.testing.assert_allclose(m.coef_.to_numpy(), ref.coef_[["age", "t_stage"]].to_numpy(), rtol=1e-10)
    lp = m.predict(d)
    assert lp.corr(pd.Series(d.to_numpy() @ m.coef_.to_numpy(), index=d.index)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unpenalised"):
        ClinicalModel(["age"], kind="cox", penalty=1.0)


def test_default_covariates_skip_absent_sparse_and_constant_columns():
    idx = pd.Index([f"P{i}" for i in range(10)])
    d = pd.DataFrame({"age": range(40, 50), "sex": ["M"] * 10, "t_stage": [1, 2] * 5,
                      "ebv_dna": [1.0, None, None, None, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
                      "treatment": ["CCRT"] * 10}, index=idx)
    choice = default_covariates(d)
    assert choice.covariates == ["age", "t_stage"]
    assert set(choice.dropped) == {"sex", "ebv_dna"}
    assert "3 of 10" in choice.dropped["ebv_dna"]
    assert default_covariates(d, max_missing=0.5).covariates == ["age", "t_stage", "ebv_dna"]
