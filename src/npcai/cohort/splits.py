"""Patient-level train / validation / test splits, stratified by label (and centre).

A patient's slices never straddle two splits because the unit of splitting is the patient.
The test split is drawn first (``test_fraction`` of all patients), then validation is
carved from the rest (``val_fraction`` of the training patients). Deterministic for a seed.

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

__all__ = ["split_patients", "read_split", "reuse_split", "SPLITS"]

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


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


def split_patients(labels: pd.Series, *, test_fraction: float = 0.2, val_fraction: float = 0.2,
                   seed: int = 0, strata: pd.Series | None = None) -> pd.Series:
    """Assign each patient to "train", "val" or "test", stratified by label (and ``strata``).

    Args:
        labels: Series patient_id -> 0/1.
        test_fraction: share of all patients in the test split.
        val_fraction: share of the remaining (training) patients moved to validation.
        seed: random seed; the same seed and labels give the same split.
        strata: optional Series patient_id -> group (e.g. centre) to stratify on as well.

    Returns:
        Series patient_id -> split name, in the order of ``labels``.
    """
    if not 0 <= test_fraction < 1 or not 0 <= val_fraction < 1:
        raise NpcaiError(f"--test-fraction {test_fraction} / --val-fraction {val_fraction}: "
                         f"fractions must be in [0, 1)")
    labels = labels.sort_index()
    if labels.index.has_duplicates:
        dup = labels.index[labels.index.duplicated()][0]
        raise NpcaiError(f"patient {dup}: appears twice in the labels; patient ids must be unique")
    counts = labels.value_counts()
    if len(counts) < 2:
        raise NpcaiError(f"endpoint labels: all {len(labels)} patients have label {counts.index[0]}; "
                         f"a classifier needs both classes")
    key = labels.astype(str)
    if strata is not None:
        key = key + "|" + strata.reindex(labels.index).fillna("NA").astype(str)
    rng = np.random.default_rng(seed)
    test = _stratified_pick(labels.index, key, test_fraction, rng, "test")
    rest = labels.index.difference(test)
    val = _stratified_pick(rest, key, val_fraction, rng, "validation")
    out = pd.Series("train", index=labels.index, name="split")
    out.loc[test] = "test"
    out.loc[val] = "val"
    for name in SPLITS:
        sub = labels[out == name]
        if name != "train" and (test_fraction if name == "test" else val_fraction) > 0 \
                and sub.nunique() < 2:
            log.warning("%s split has %d patients of a single class; its AUC is undefined — "
                        "use more patients or a larger fraction", name, len(sub))
    out.index.name = "patient_id"
    return out


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
