"""Patient-level train / validation / test splits and K-fold assignments, stratified by label
(and centre).

A patient's slices never straddle two splits because the unit of splitting is the patient.
The test split is drawn first (``test_fraction`` of all patients), then validation is
carved from the rest (``val_fraction`` of the training patients). Deterministic for a seed.

Split names (:data:`SPLITS`): ``train`` and ``val`` (model fitting and selection), ``test``
(internal test patients, drawn at random), ``test_external`` (patients put in the test
cohort by a filter, e.g. every centre but one: they never reach training or validation) and,
in a cross-validated run's own tables, ``oof`` (every patient predicted by the fold model
that did not see it).

Examples:
    >>> import pandas as pd
    >>> labels = pd.Series([0, 1] * 10, index=[f"P{i:04d}" for i in range(20)])
    >>> split = split_patients(labels, seed=0)
    >>> split.value_counts().to_dict()
    {'train': 13, 'test': 4, 'val': 3}
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["split_patients", "assign_folds", "fold_split", "read_split", "reuse_split", "reuse_folds",
           "SPLITS", "TEST_SPLITS"]

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test", "test_external", "oof")
#: the splits whose patients are never seen while fitting or selecting a model
TEST_SPLITS = ("test", "test_external", "oof")


def _stratified_pick(ids: pd.Index, strata: pd.Series, fraction: float, rng: np.random.Generator,
                     what: str) -> pd.Index:
    """Pick ~fraction of ``ids`` with every stratum represented proportionally.

    Falls back to the label-only strata (the first component) when a combined stratum has
    fewer than 2 patients, and logs that it did.
    """
    n_pick = int(round(fraction * len(ids)))
    if n_pick == 0 or fraction <= 0:
        return pd.Index([])
    counts = strata.loc[ids].value_counts()
    if (counts < 2).any() and strata.loc[ids].str.contains("|", regex=False).any():
        log.info("%s split: some label x centre strata have fewer than 2 patients; stratifying by label only",
                 what)
        strata = strata.str.split("|", regex=False).str[0]
    picked: list[str] = []
    groups = {k: sorted(v) for k, v in strata.loc[ids].groupby(strata.loc[ids]).groups.items()}
    # largest-remainder allocation so that the total is exactly n_pick
    sizes = {k: len(v) for k, v in groups.items()}
    quotas = {k: fraction * s for k, s in sizes.items()}
    alloc = {k: int(np.floor(q)) for k, q in quotas.items()}
    rest = n_pick - sum(alloc.values())
    for k in sorted(quotas, key=lambda k: (-(quotas[k] - alloc[k]), str(k)))[:max(rest, 0)]:
        alloc[k] += 1
    for k in sorted(groups, key=str):
        members = np.array(groups[k])
        take = min(alloc[k], len(members))
        picked.extend(rng.permutation(members)[:take].tolist())
    return pd.Index(sorted(picked))


def _checked(labels: pd.Series) -> pd.Series:
    """Labels sorted by patient, unique ids, both classes present."""
    labels = labels.sort_index()
    if labels.index.has_duplicates:
        dup = labels.index[labels.index.duplicated()][0]
        raise NpcaiError(f"patient {dup}: appears twice in the labels; patient ids must be unique")
    counts = labels.value_counts()
    if len(counts) < 2:
        what = f"label {counts.index[0]}" if len(counts) else "no label"
        raise NpcaiError(f"endpoint labels: all {len(labels)} patients have {what}; "
                         f"a classifier needs both classes")
    return labels


def _strata_key(labels: pd.Series, strata: pd.Series | None) -> pd.Series:
    key = labels.astype(str)
    if strata is not None:
        key = key + "|" + strata.reindex(labels.index).fillna("NA").astype(str)
    return key


def split_patients(labels: pd.Series, *, test_fraction: float = 0.2, val_fraction: float = 0.2,
                   seed: int = 0, strata: pd.Series | None = None,
                   external: pd.Index | list[str] | None = None) -> pd.Series:
    """Assign each patient to "train", "val", "test" or "test_external", stratified by label
    (and ``strata``).

    Args:
        labels: Series patient_id -> 0/1.
        test_fraction: share of the (non-external) patients in the internal test split.
        val_fraction: share of the remaining (training) patients moved to validation.
        seed: random seed; the same seed and labels give the same split.
        strata: optional Series patient_id -> group (e.g. centre) to stratify on as well.
        external: patients that go to the test cohort as ``test_external`` whatever their
            label (e.g. every centre but the training centre); the other splits are drawn
            from the remaining patients only.

    Returns:
        Series patient_id -> split name, in the order of ``labels``.
    """
    if not 0 <= test_fraction < 1 or not 0 <= val_fraction < 1:
        raise NpcaiError(f"test fraction {test_fraction} / validation fraction {val_fraction}: "
                         f"fractions must be in [0, 1)")
    labels = labels.sort_index()
    ext = labels.index.intersection(pd.Index(external if external is not None else []))
    if external is not None and len(ext) == 0:
        raise NpcaiError("external test cohort: none of its patients has a label for this endpoint; "
                         "check the test filter")
    inner = labels.drop(ext)
    if len(ext) and inner.empty:
        raise NpcaiError(f"external test cohort: all {len(labels)} labelled patients match the test filter, "
                         "none is left for training; check the test filter")
    inner = _checked(inner)
    key = _strata_key(inner, strata)
    rng = np.random.default_rng(seed)
    test = _stratified_pick(inner.index, key, test_fraction, rng, "test")
    rest = inner.index.difference(test)
    val = _stratified_pick(rest, key, val_fraction, rng, "validation")
    out = pd.Series("train", index=labels.index, name="split")
    out.loc[test] = "test"
    out.loc[val] = "val"
    out.loc[ext] = "test_external"
    for name, fraction in (("val", val_fraction), ("test", test_fraction), ("test_external", len(ext))):
        sub = labels[out == name]
        if fraction > 0 and sub.nunique() < 2:
            log.warning("%s split has %d patients of a single class; its AUC is undefined — "
                        "use more patients or a larger fraction", name, len(sub))
    out.index.name = "patient_id"
    return out


def assign_folds(labels: pd.Series, folds: int, *, seed: int = 0,
                 strata: pd.Series | None = None) -> pd.Series:
    """Patient-level stratified K-fold assignment: patient_id -> fold number 1..K.

    Within every stratum (label, and centre when ``strata`` is given) the patients are
    shuffled and dealt to the folds in turn, each stratum continuing where the previous one
    stopped, so fold sizes differ by at most one and every fold holds both classes when
    each class has at least K patients. Label x centre strata with fewer than K patients
    fall back to label-only stratification (logged).

    Examples:
        >>> labels = pd.Series([0, 1] * 10, index=[f"P{i:04d}" for i in range(20)])
        >>> assign_folds(labels, 5, seed=0).value_counts().sort_index().tolist()
        [4, 4, 4, 4, 4]
    """
    if int(folds) != folds or folds < 2:
        raise NpcaiError(f"folds {folds}: cross-validation needs at least 2 folds")
    labels = _checked(labels)
    smallest = labels.value_counts().min()
    if smallest < folds:
        raise NpcaiError(f"{folds}-fold cross-validation: only {smallest} patients have label "
                         f"{labels.value_counts().idxmin()}; every fold needs both classes — use at most "
                         f"{smallest} folds")
    key = _strata_key(labels, strata)
    if strata is not None and (key.value_counts() < folds).any():
        log.info("fold assignment: some label x centre strata have fewer than %d patients; "
                 "stratifying by label only", folds)
        key = labels.astype(str)
    rng = np.random.default_rng(seed)
    out = pd.Series(0, index=labels.index, name="fold", dtype=int)
    position = 0
    for k in sorted(key.unique(), key=str):
        members = rng.permutation(np.array(sorted(key.index[key == k])))
        for i, pid in enumerate(members):
            out.loc[pid] = (position + i) % folds + 1
        position = (position + len(members)) % folds
    out.index.name = "patient_id"
    return out


def fold_split(folds: pd.Series, fold: int, labels: pd.Series, *, val_fraction: float = 0.2,
               seed: int = 0, strata: pd.Series | None = None) -> pd.Series:
    """The train / val / test split of fold ``fold``: its patients are ``test`` (held out),
    and the validation patients (early stopping, thresholds) are carved from the *other*
    folds only, stratified by label (and ``strata``).

    Deterministic for (seed, fold).
    """
    if fold not in set(folds):
        raise NpcaiError(f"fold {fold}: not in the fold assignment (folds {sorted(set(folds))})")
    labels = labels.reindex(folds.index)
    held_out = folds.index[folds == fold]
    rest = folds.index.difference(held_out)
    key = _strata_key(labels, strata)
    rng = np.random.default_rng([seed, fold])
    val = _stratified_pick(rest, key, val_fraction, rng, f"fold {fold} validation")
    out = pd.Series("train", index=folds.index, name="split")
    out.loc[held_out] = "test"
    out.loc[val] = "val"
    out.index.name = "patient_id"
    return out.sort_index()


def read_split(run_dir: str | Path) -> pd.DataFrame:
    """A run's split (split, label) indexed by patient_id (read by :mod:`npcai.runs`)."""
    from npcai.runs import read_split as read

    df = read(run_dir)
    if "split" not in df.columns:
        raise NpcaiError(f"run {run_dir}: its split has no 'split' column; train the run again")
    return df


def reuse_split(run_dir: str | Path, labels: pd.Series) -> pd.Series:
    """The split of an earlier run for the patients in ``labels`` (``--split-from RUN``).

    Patients of the old run without a label now are dropped; labelled patients that the old
    run does not know are an error naming them (they would have no honest split).
    """
    old = read_split(run_dir)["split"]
    new = labels.index.difference(old.index)
    if len(new):
        raise NpcaiError(f"--split-from {run_dir}: {len(new)} patients are not in its split.csv: "
                         f"{', '.join(sorted(new)[:8])}{', ...' if len(new) > 8 else ''}; "
                         f"filter them out with --where or make a new split")
    out = old.loc[labels.index].rename("split")
    dropped = old.index.difference(labels.index)
    if len(dropped):
        log.info("--split-from: %d patients of %s have no label for this endpoint and are left out",
                 len(dropped), run_dir)
    out.index.name = "patient_id"
    return out.sort_index()


def reuse_folds(run_dir: str | Path, labels: pd.Series) -> pd.Series:
    """The fold assignment (patient_id -> fold) of an earlier cross-validated run, for the
    patients in ``labels``, so that several runs are compared on the same folds.

    Labelled patients that the earlier run does not know are an error naming them.
    """
    old = read_split(run_dir)
    if "fold" not in old.columns:
        raise NpcaiError(f"run {run_dir}: its split has no fold column; the run was not cross-validated "
                         f"— reuse folds only from a run trained with folds")
    new = labels.index.difference(old.index)
    if len(new):
        raise NpcaiError(f"{run_dir}: {len(new)} patients are not in its folds: "
                         f"{', '.join(sorted(new)[:8])}{', ...' if len(new) > 8 else ''}; "
                         f"filter them out or assign new folds")
    out = old.loc[labels.index, "fold"].astype(int).rename("fold")
    out.index.name = "patient_id"
    return out.sort_index()
