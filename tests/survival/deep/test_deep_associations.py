"""Table D1 (Predictive-score vs clinical factors) against R, and in `npcai evaluate`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from npcai.survival.deep.associations import predictive_score_associations

FIX = Path(__file__).parent / "fixtures"


def test_spearman_and_kruskal_wallis_equal_r():
    d = pd.read_csv(FIX / "association_data.csv")
    ref = json.loads((FIX / "association_reference.json").read_text())
    table = predictive_score_associations(d, factors=("age", "sex", "t_stage", "stage", "ebv_dna", "centre"))
    assert list(table["factor"]) == ["age", "sex", "t_stage", "ebv_dna", "centre"]   # no stage column
    for _, row in table.iterrows():
        r = ref[row["factor"]]
        assert row["test"] == r["test"] and row["n"] == r["n"], row["factor"]
        stat = "rho" if r["test"] == "Spearman" else "h"
        assert row[stat] == pytest.approx(r[stat], rel=1e-9), row["factor"]
        assert row["p"] == pytest.approx(r["p"], rel=1e-7), row["factor"]
    kw = table.set_index("factor").loc["centre"]
    assert kw["epsilon2"] == pytest.approx(kw["h"] / (kw["n"] - 1))


def test_a_constant_factor_gets_no_test_and_says_why():
    d = pd.DataFrame({"predictive_score": [0.1, 0.5, 0.2, 0.7], "centre": ["C1"] * 4, "age": [50] * 4})
    table = predictive_score_associations(d).set_index("factor")
    assert np.isnan(table.loc["centre", "p"]) and "one level" in table.loc["centre", "note"]
    assert np.isnan(table.loc["age", "p"]) and "constant" in table.loc["age", "note"]


def test_evaluate_writes_table_d1_and_the_phantom_truth(cli, survival_run):
    """A survival run on the phantom: evaluate adds Table D1 (file and print), the oracle C-index
    on the same patients and the necrosis AUC of the predictive score."""
    from npcai.cohort.model import Cohort
    from npcai.cohort.phantom.truth import load_truth
    from npcai.runs import read_predictions, read_run
    from npcai.stats.auc import auc_ci
    from npcai.stats.concordance import harrell_c
    from npcai.survival.deep.evaluate import ASSOCIATIONS_CSV

    run = survival_run
    cohort = read_run(run).cohort
    r = cli("evaluate", run)
    assert r.code == 0, r.stderr
    assert "Table D1" in r.stdout and "oracle C-index" in r.stdout and "Phantom truth" in r.stdout
    m = json.loads((run / "metrics.json").read_text())
    table = pd.read_csv(run / ASSOCIATIONS_CSV)
    assert set(table["cohort"]) == set(m["cohorts"]) == {"train", "val", "test"}
    assert {"age", "sex", "t_stage", "n_stage", "stage", "ebv_dna", "centre"} <= set(table["factor"])
    pats = read_predictions(run).patients.set_index("patient_id")
    train = pats[pats["split"] == "train"]
    clinical = Cohort.load(cohort).clinical()
    direct = predictive_score_associations(train[["predictive_score"]].join(clinical))
    got = table[table["cohort"] == "train"].reset_index(drop=True)
    np.testing.assert_allclose(got["p"], direct["p"])
    truth = load_truth(cohort).loc[train.index]
    ph = m["cohorts"]["train"]["phantom"]
    assert ph["oracle_c_index"]["c_index"] == pytest.approx(
        harrell_c(train["time"], train["event"], truth["log_hazard_dfs"]).c_index)
    assert "p" in ph["necrosis_interaction"] or "unavailable" in ph["necrosis_interaction"]
    assert ph["necrosis_auc"]["auc"] == pytest.approx(
        auc_ci(truth["necrosis"].astype(int), -train["predictive_score"]).auc)
