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
