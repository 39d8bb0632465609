"""Soft-voting ensembles of runs (study 001: pre- and post-treatment models).

The ensemble's patient probability is the (weighted) mean of its members' patient
probabilities. Members must share their test patients exactly (and agree on every shared
patient's label and split), otherwise the ensemble refuses and names the difference.

Examples:
    >>> ensemble_runs(["runs/pre", "runs/post"], "runs/pre+post")   # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["EnsembleResult", "ensemble_runs", "soft_vote"]


@dataclass
class EnsembleResult:
    run_dir: Path
    test_auc: float
    n_test: int
    weights: list[float]


def soft_vote(probs: list[np.ndarray], weights: list[float] | None = None) -> np.ndarray:
    """Weighted mean of aligned probability arrays (weights normalised to sum 1)."""
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=float)
    if len(w) != len(probs) or (w < 0).any() or w.sum() <= 0:
        raise NpcaiError(f"--weights: need {len(probs)} non-negative weights with a positive sum")
    w = w / w.sum()
    return np.sum([wi * np.asarray(p, dtype=float) for wi, p in zip(w, probs)], axis=0)


def _describe(ids) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:6]) + (", ..." if len(ids) > 6 else "")


def ensemble_runs(runs: list[str | os.PathLike], out: str | os.PathLike, *, weights: list[float] | None = None,
                  overwrite: bool = False) -> EnsembleResult:
    """Average the patient probabilities of ``runs`` into a new run folder ``out``.

    Writes ``predictions_patients.csv`` (patients in the same split in every member),
    ``split.csv``, ``config.yaml`` (members, weights) and ``summary.json``.

    Args:
        runs: two or more run folders written by ``npcai train``.
        out: the ensemble run folder.
        weights: one weight per run (default equal).
        overwrite: replace an existing ``out``.
    """
    from npcai.fsutil import atomic_output_dir, check_output_path, file_sha256
    from npcai.models.tasks import make_task
    from npcai.runs import CONFIG, RUN_FORMAT, package_versions, read_run, write_run

    if len(runs) < 2:
        raise NpcaiError("npcai ensemble: give at least two run folders")
    runs = [Path(r) for r in runs]
    check_output_path(out, runs)
    names = [r.name for r in runs]
    folders = [read_run(r) for r in runs]
    ids = {f.config.cohort_id for f in folders}
    if len(ids) > 1 or None in ids:
        shown = ", ".join(f"{n}: {str(f.config.cohort_id)[:12]}" for n, f in zip(names, folders))
        raise NpcaiError(f"cannot ensemble runs of different (or unrecorded) cohorts ({shown}); "
                         "train the members on the same cohort")
    preds = [f.patients.set_index("patient_id") for f in folders]
    configs = [f.config for f in folders]
    ref_test = set(preds[0].index[preds[0]["split"] == "test"])
    for name, p in zip(names[1:], preds[1:]):
        test = set(p.index[p["split"] == "test"])
        if test != ref_test:
            extra, lack = test - ref_test, ref_test - test
            parts = []
            if extra:
                parts.append(f"run {name} has {len(extra)} test patients run {names[0]} lacks: {_describe(extra)}")
            if lack:
                parts.append(f"run {names[0]} has {len(lack)} test patients run {name} lacks: {_describe(lack)}")
            raise NpcaiError(f"cannot ensemble runs with different test patients: {'; '.join(parts)}; "
                             f"train them with the same --split-from")
    endpoints = {c.endpoint for c in configs}
    if len(endpoints) > 1:
        raise NpcaiError(f"cannot ensemble runs of different endpoints: {', '.join(sorted(map(str, endpoints)))}")
    # patients in every member with the same split and label
    common = sorted(set.intersection(*(set(p.index) for p in preds)))
    table = pd.DataFrame(index=pd.Index(common, name="patient_id"))
    for name, p in zip(names, preds):
        table[f"split_{name}"] = p.loc[common, "split"]
        table[f"label_{name}"] = p.loc[common, "label"]
    for name in names[1:]:
        bad = table.index[table[f"label_{name}"] != table[f"label_{names[0]}"]]
        if len(bad):
            raise NpcaiError(f"run {name} and run {names[0]} disagree on the label of {len(bad)} patients "
                             f"({_describe(bad)}); ensemble runs of the same endpoint and cohort")
    same_split = np.all([table[f"split_{n}"] == table[f"split_{names[0]}"] for n in names], axis=0)
    kept = table.index[same_split]
    w = weights if weights is not None else [1.0] * len(runs)
    prob = soft_vote([p.loc[kept, "prob"].to_numpy() for p in preds], w)
    w_norm = (np.asarray(w, float) / np.sum(w)).tolist()
    out_df = pd.DataFrame({"patient_id": kept, "split": table.loc[kept, f"split_{names[0]}"].to_numpy(),
                           "label": table.loc[kept, f"label_{names[0]}"].astype(int).to_numpy(), "prob": prob,
                           "n_slices": np.sum([p.loc[kept, "n_slices"].to_numpy() for p in preds], axis=0)})
    for name, p in zip(names, preds):
        out_df[f"prob_{name}"] = p.loc[kept, "prob"].to_numpy()
    test = out_df[out_df["split"] == "test"]
    test_auc = make_task({}).summarise(out_df)["test_auc"]
    counts = {s: {"patients": int((out_df["split"] == s).sum()),
                  "label_0": int(((out_df["split"] == s) & (out_df["label"] == 0)).sum()),
                  "label_1": int(((out_df["split"] == s) & (out_df["label"] == 1)).sum())}
              for s in ("train", "val", "test")}
    summary = {"kind": "ensemble", "method": "soft voting (weighted mean of patient probabilities)",
               "members": names, "weights": w_norm, "splits": counts,
               "excluded": {"count": int(len(table) - len(kept)),
                            "reasons": {"different split across members": int(len(table) - len(kept))}},
               "test_auc": test_auc, "n_test": int(len(test)),
               "note": "no slice predictions: members may read different ROI caches (e.g. pre and post)"}
    config = {"format": RUN_FORMAT, "kind": "ensemble",
              "members": [{"path": str(r.resolve()), "weight": wn, "config_sha256": file_sha256(r / CONFIG)}
                          for r, wn in zip(runs, w_norm)],
              "options": {"endpoint": next(iter(endpoints)), "weights": w_norm},
              "cohort": {"path": str(folders[0].cohort), "id": folders[0].config.cohort_id},
              "versions": package_versions()}
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        write_run(tmp, config=config, split=out_df[["patient_id", "split", "label"]], patients=out_df,
                  summary=summary)
    return EnsembleResult(Path(out), test_auc, int(len(test)), w_norm)
