"""The phantom's ground truth: oracle metrics and the readers used by later stages.

``truth/`` sits beside the export (never inside a cohort). It holds the latent variables and
true probabilities per patient (``patients.csv``), the Bayes-optimal metrics on the cohort
(``oracle.json``) and where the signals were planted (``signal.json``). Reports use it to say
how close a trained model gets to the best achievable AUC / C-index.

Examples:
    >>> truth = load_truth("cohort")          # doctest: +SKIP
    >>> truth.loc["P0001", "p_pfs_median"]    # doctest: +SKIP
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["pfs_median_labels", "oracle_metrics", "load_truth", "load_signal", "truth_dir_of"]


def pfs_median_labels(months: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, float]:
    """The contract's ``pfs-median`` label (1, 0, or NaN when censored at or before t*) and t*,
    by the cohort's own rule (:func:`npcai.cohort.endpoints.pfs_median_rule`)."""
    from npcai.cohort.endpoints import pfs_median_rule

    return pfs_median_rule(months, event)


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return None
    return float(roc_auc_score(y, score))


def _cindex(months: np.ndarray, event: np.ndarray, log_hazard: np.ndarray) -> float | None:
    from lifelines.utils import concordance_index

    if np.sum(event) == 0:
        return None
    try:
        return float(concordance_index(months, -np.asarray(log_hazard), event))
    except ZeroDivisionError:          # no comparable pairs (e.g. a single patient)
        return None


def oracle_metrics(truth: pd.DataFrame, clinical: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Bayes-optimal metrics: the true probabilities / log-hazards scored against the outcomes.

    ``truth`` and ``clinical`` are aligned row by row (same patients, same order). AUCs use
    the true event probability as the score; C-indices use the true log-hazard.
    """
    pfs_label, t_star = pfs_median_labels(clinical["pfs_months"], clinical["pfs_event"])
    keep = ~np.isnan(pfs_label)
    out: dict[str, dict[str, Any]] = {
        "pfs-median": {"auc": _auc(pfs_label[keep], truth["p_pfs_median"].to_numpy()[keep]),
                       "t_star_months": t_star, "n_labelled": int(keep.sum()),
                       "n_positive": int(np.nansum(pfs_label)),
                       "score": "p_pfs_median"},
        "distant-metastasis": {"auc": _auc(clinical["distant_metastasis"].to_numpy(),
                                           truth["p_distant_metastasis"].to_numpy()),
                               "n_positive": int(clinical["distant_metastasis"].sum()),
                               "score": "p_distant_metastasis"},
        "residual-tumour": {"auc": _auc(clinical["residual_tumour"].to_numpy(),
                                        truth["p_residual"].to_numpy()),
                            "n_positive": int(clinical["residual_tumour"].sum()),
                            "score": "p_residual"},
    }
    for ep in ("pfs", "dfs", "os", "dmfs"):
        out[ep] = {"c_index": _cindex(clinical[f"{ep}_months"].to_numpy(),
                                      clinical[f"{ep}_event"].to_numpy(),
                                      truth[f"log_hazard_{ep}"].to_numpy()),
                   "n_events": int(clinical[f"{ep}_event"].sum()),
                   "score": f"log_hazard_{ep}"}
    return out


def truth_dir_of(cohort_dir: str | Path) -> Path | None:
    """The export's ``truth/`` folder recorded by ingest in ``cohort.json``, or None."""
    cohort_dir = Path(cohort_dir)
    meta = cohort_dir / "cohort.json"
    if not meta.is_file():
        raise NpcaiError(f"{cohort_dir}: not an npcai cohort (no cohort.json); create one with `npcai ingest`")
    source = json.loads(meta.read_text()).get("source", {}) or {}
    path = source.get("phantom_truth")
    if not path:
        return None
    path = Path(path)
    if not (path / "patients.csv").is_file():
        raise NpcaiError(f"{cohort_dir}/cohort.json: phantom truth {path} is missing; "
                         "regenerate the phantom or re-run `npcai ingest`")
    return path


def load_truth(cohort_dir: str | Path) -> pd.DataFrame | None:
    """The phantom truth table indexed by the cohort's pseudonyms, or None (not a phantom).

    Joins ``truth/patients.csv`` (keyed by hospital id) through the pseudonym map beside
    the cohort (:func:`npcai.cohort.model.pseudonym_map_path`). Patients of the cohort only.
    """
    from npcai.cohort.model import pseudonym_map_path

    truth_dir = truth_dir_of(cohort_dir)
    if truth_dir is None:
        return None
    map_path = pseudonym_map_path(cohort_dir)
    if not map_path.is_file():
        raise NpcaiError(f"{map_path}: pseudonym map missing, so the phantom truth cannot be "
                         "joined; re-run `npcai ingest`")
    from npcai.cohort.deidentify import read_pseudonym_map

    pseudo = pd.DataFrame(list(read_pseudonym_map(map_path).items()), columns=["patient_id", "hospital_id"])
    truth = pd.read_csv(truth_dir / "patients.csv", dtype={"hospital_id": str})
    joined = pseudo.merge(truth, on="hospital_id", how="inner")
    return joined.drop(columns=["hospital_id"]).set_index("patient_id").sort_index()


def load_signal(cohort_dir: str | Path) -> dict[str, Any] | None:
    """``truth/signal.json`` of the phantom behind a cohort (where signals are), or None."""
    truth_dir = truth_dir_of(cohort_dir)
    if truth_dir is None:
        return None
    return json.loads((truth_dir / "signal.json").read_text())
