"""Patient splits: disjoint, stratified, deterministic, reusable."""
import logging

import numpy as np
import pandas as pd
import pytest

from npcai.cohort.splits import reuse_split, split_patients
from npcai.errors import NpcaiError


def _labels(n=50, pos=0.4, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos).astype(int)
    y[:2] = [0, 1]
    return pd.Series(y, index=[f"P{i:04d}" for i in range(n)])


def test_split_sizes_stratification_and_disjointness():
    labels = _labels(100, 0.3)
    split = split_patients(labels, test_fraction=0.2, val_fraction=0.25, seed=1)
    assert split.index.is_unique and set(split.index) == set(labels.index)
    counts = split.value_counts()
    assert counts["test"] == 20 and counts["val"] == 20 and counts["train"] == 60
    prevalence = labels.mean()
    for name in ("train", "val", "test"):
        assert abs(labels[split == name].mean() - prevalence) < 0.06, name


def test_split_is_deterministic_and_seed_dependent():
    labels = _labels(60)
    a = split_patients(labels, seed=3)
    assert a.equals(split_patients(labels, seed=3))
    assert a.equals(split_patients(labels.sample(frac=1, random_state=0), seed=3))  # order-free
    assert not a.equals(split_patients(labels, seed=4))


def test_centre_strata_and_fallback(caplog):
    labels = _labels(80)
    centre = pd.Series(np.where(np.arange(80) % 2, "A", "B"), index=labels.index)
    split = split_patients(labels, strata=centre, seed=0)
    for c in ("A", "B"):
        share = (split[centre == c] == "test").mean()
        assert 0.15 <= share <= 0.25
    tiny = pd.Series(["X"] + ["A"] * 79, index=labels.index)
    with caplog.at_level(logging.INFO):
        split_patients(labels, strata=tiny, seed=0)
    assert "stratifying by label only" in caplog.text


def test_single_class_and_bad_fraction_fail():
    with pytest.raises(NpcaiError, match="both classes"):
        split_patients(pd.Series([1, 1, 1], index=["a", "b", "c"]))
    with pytest.raises(NpcaiError, match="fractions"):
        split_patients(_labels(), test_fraction=1.2)


def test_reuse_split_drops_unlabelled_and_refuses_new_patients(tmp_path):
    labels = _labels(30)
    split = split_patients(labels, seed=0)
    pd.DataFrame({"patient_id": split.index, "split": split.values, "label": labels.values}) \
        .to_csv(tmp_path / "split.csv", index=False)
    fewer = labels.iloc[5:]
    assert reuse_split(tmp_path, fewer).equals(split.iloc[5:])
    more = pd.concat([labels, pd.Series([1], index=["P9999"])])
    with pytest.raises(NpcaiError, match="P9999"):
        reuse_split(tmp_path, more)
    with pytest.raises(NpcaiError, match="split.csv: missing"):
        reuse_split(tmp_path / "nope", labels)


def test_external_patients_go_only_to_test_external():
    from npcai.cohort.splits import split_patients

    labels = _labels(60)
    centre = pd.Series(np.where(np.arange(60) < 40, "C1", "C2"), index=labels.index)
    external = labels.index[centre == "C2"]
    split = split_patients(labels, seed=0, strata=centre, external=external)
    assert set(split[external]) == {"test_external"}
    inner = split.drop(external)
    assert set(inner) == {"train", "val", "test"} and (inner == "test").sum() == 8   # 20 % of the 40 others
    with pytest.raises(NpcaiError, match="none is left for training"):
        split_patients(labels, external=labels.index)
    with pytest.raises(NpcaiError, match="none of its patients"):
        split_patients(labels, external=["nobody"])


def test_folds_are_stratified_disjoint_and_deterministic():
    from npcai.cohort.splits import assign_folds, fold_split

    labels = _labels(53, 0.3)
    folds = assign_folds(labels, 5, seed=1)
    assert set(folds) == {1, 2, 3, 4, 5} and folds.index.equals(labels.sort_index().index)
    sizes = folds.value_counts()
    assert sizes.max() - sizes.min() <= 1
    pos = labels[labels == 1].groupby(folds).size()
    assert pos.max() - pos.min() <= 1                      # each class spread evenly
    assert folds.equals(assign_folds(labels.sample(frac=1, random_state=2), 5, seed=1))
    assert not folds.equals(assign_folds(labels, 5, seed=2))
    seen = []
    for k in range(1, 6):
        s = fold_split(folds, k, labels, val_fraction=0.25, seed=0)
        assert set(s.index[s == "test"]) == set(folds.index[folds == k])
        val = s.index[s == "val"]
        assert not set(val) & set(folds.index[folds == k]) and labels[val].nunique() == 2
        seen.extend(s.index[s == "test"])
    assert sorted(seen) == sorted(labels.index)           # every patient held out exactly once


def test_folds_refused_when_a_class_is_too_small(tmp_path):
    from npcai.cohort.splits import assign_folds, reuse_folds

    labels = pd.Series([1, 1, 1] + [0] * 20, index=[f"P{i:04d}" for i in range(23)])
    with pytest.raises(NpcaiError, match="at most 3 folds"):
        assign_folds(labels, 5)
    with pytest.raises(NpcaiError, match="at least 2 folds"):
        assign_folds(labels, 1)
    folds = assign_folds(labels, 3)
    pd.DataFrame({"patient_id": folds.index, "split": "oof", "fold": folds.values,
                  "label": labels.sort_index().values}).to_csv(tmp_path / "split.csv", index=False)
    assert reuse_folds(tmp_path, labels.iloc[2:]).equals(folds.iloc[2:].sort_index())
    with pytest.raises(NpcaiError, match="P9999"):
        reuse_folds(tmp_path, pd.concat([labels, pd.Series([0], index=["P9999"])]))
