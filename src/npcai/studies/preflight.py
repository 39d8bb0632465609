"""What a study will do with a cohort's patients, before anything is built or trained
(``npcai study run ... --dry-run --cohort COHORT``).

For every subset x ROI dataset (backbones and units train on the same patients): how many
patients the endpoint labels (and how many are label 1), how many it excludes and why, and
how many labelled patients are lost because a sequence the ROI needs is missing or their scan
has no mask of the kind the ROI uses. An endpoint column or a sequence that the cohort lacks
entirely is refused with one line.

Examples:
    >>> table = preflight(resolve_study("peritumoral", "fast"), "cohort")   # doctest: +SKIP
    >>> table[["subset", "roi", "labelled", "trainable"]]                   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from npcai.errors import NpcaiError
from npcai.studies.schema import ResolvedStudy, RoiSpec

__all__ = ["preflight", "baseline_plan", "PREFLIGHT_COLUMNS"]

PREFLIGHT_COLUMNS = ["subset", "roi", "labelled", "label_1", "excluded", "lost_sequence", "lost_mask",
                     "trainable", "external_test"]


def _timepoints(roi: RoiSpec) -> list[str]:
    return ["pre", "post"] if roi.timepoint == "both" else [roi.timepoint]


def _needs_mask(roi: RoiSpec) -> bool:
    """Every ROI but the whole slice on all slices selects or crops with the mask."""
    return not (roi.variant == "original" and roi.slices == "all")


def _check_sequences(cohort, resolved: ResolvedStudy) -> None:
    present = {s.sequence for s in cohort.scans()}
    for roi in resolved.study.rois:
        for seq in roi.sequences:
            if seq not in present:
                raise NpcaiError(f"{cohort.root}: ROI dataset {roi.name} needs sequence {seq}, which no scan of "
                                 f"the cohort has (present: {', '.join(sorted(present)) or 'none'}); choose "
                                 f"other sequences")


def _lost(cohort, patients: pd.Index, roi: RoiSpec) -> tuple[set[str], set[str]]:
    """(patients missing a needed sequence, patients whose needed scans lack the mask)."""
    no_seq, no_mask = set(), set()
    for pid in patients:
        scans = {(s.timepoint, s.sequence): s for s in cohort.patient(pid).scans}
        needed = [(tp, seq) for tp in _timepoints(roi) for seq in roi.sequences]
        if any(key not in scans for key in needed):
            no_seq.add(pid)
            continue
        if _needs_mask(roi):
            attr = "mask" if roi.mask == "manual" else "auto_mask"
            if not any(getattr(scans[key], attr) for key in needed):
                no_mask.add(pid)
    return no_seq, no_mask


def preflight(resolved: ResolvedStudy, cohort_dir: str | Path) -> pd.DataFrame:
    """One row per subset x ROI dataset (columns :data:`PREFLIGHT_COLUMNS`); raises
    :class:`NpcaiError` when the endpoint or a sequence is absent from the cohort."""
    from npcai.cohort.endpoints import endpoint_labels, filter_patients
    from npcai.cohort.model import Cohort

    cohort = Cohort.load(cohort_dir)
    clinical = cohort.clinical()
    s = resolved.study
    _check_sequences(cohort, resolved)
    known = set(cohort.patient_ids)
    rows = []
    for sub in s.subsets:
        ep = endpoint_labels(filter_patients(clinical, sub.where), s.endpoint)
        labels = ep.labels[ep.labels.index.isin(known)]
        external = 0
        if s.split.test_where:
            external = int(labels.index.isin(filter_patients(clinical, s.split.test_where).index).sum())
        excluded = "; ".join(f"{n} {why}" for why, n in ep.excluded_counts().items()) or "none"
        for roi in s.rois:
            no_seq, no_mask = _lost(cohort, labels.index, roi)
            kept = labels.drop(list(no_seq | no_mask))
            rows.append({"subset": sub.name, "roi": roi.name, "labelled": int(len(labels)),
                         "label_1": int(labels.sum()), "excluded": excluded,
                         "lost_sequence": len(no_seq), "lost_mask": len(no_mask), "trainable": int(len(kept)),
                         "external_test": external})
    return pd.DataFrame(rows, columns=PREFLIGHT_COLUMNS)


def baseline_plan(resolved: ResolvedStudy, cohort_dir: str | Path) -> str:
    """One line: the covariates of the study's clinical baseline on this cohort (the YAML's
    ``baseline:`` or the default choice, with what it leaves out and why), and whether the TNM
    baseline appears."""
    from npcai.cohort.endpoints import endpoint_labels
    from npcai.cohort.model import Cohort
    from npcai.stats.baseline import default_covariates
    from npcai.studies.analysis import has_tnm

    clinical = Cohort.load(cohort_dir).clinical()
    s = resolved.study
    tnm = "TNM baseline: " + ("yes" if s.tnm_baseline and has_tnm(clinical) else "no (no T and N stage)"
                              if s.tnm_baseline else "off")
    if s.baseline is not None:
        missing = [c for c in s.baseline if c not in clinical.columns]
        if missing:
            raise NpcaiError(f"{cohort_dir}/clinical.csv: study {s.name}: baseline covariate {missing[0]!r} is not a "
                             f"column (present: {', '.join(clinical.columns)}); edit the study's baseline:")
        if not s.baseline:
            return f"clinical baseline and combined model: none (the study's baseline: is empty); {tnm}"
        return f"clinical baseline and combined model on: {', '.join(s.baseline)} (the study's baseline:); {tnm}"
    labelled = endpoint_labels(clinical, s.endpoint).labels.index
    choice = default_covariates(clinical, labelled)
    left = "; ".join(f"{c}: {why}" for c, why in choice.dropped.items())
    return (f"clinical baseline and combined model on: {', '.join(choice.covariates) or 'none (no clinical covariate)'}"
            + (f" (left out: {left})" if left else "") + f"; {tnm}")
