"""The study runner's calls into the other packages, in one place.

Each function here calls the library function behind one CLI command (`npcai train`,
`npcai ensemble`, `npcai table1`, `npcai explain`) or reads the phantom's truth, and adapts
its inputs and outputs to what the runner needs. Keeping them together makes it easy to see
what a study depends on, and to follow API changes of those packages.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.studies.schema import SplitSpec, TrainingSpec

__all__ = ["train_config", "train_run", "train_step", "ensemble_runs", "c_index_ci", "table1", "oracle_scores", "explain_runs"]

log = logging.getLogger(__name__)


def train_config(cohort_dir: Path, *, roi: str, endpoint: str, backbone: str, unit: str,
                 training: TrainingSpec, split: SplitSpec, split_from: Path | None, where: str | None,
                 weights: str | Path | None):
    """The :class:`~npcai.models.train.TrainConfig` of one study step: every option of the
    study's ``training:`` and ``split:`` blocks passed through unchanged, plus the step's
    ROI cache, backbone, unit and subset filter. ``weights`` (a local file given to the study
    run) replaces the hub weights."""
    from npcai.models.train import TrainConfig

    opts = {**training.model_dump(), **split.model_dump()}
    if weights is not None:
        opts.update(weights=str(weights), pretrained=False)
    return TrainConfig(cohort=str(cohort_dir), roi=roi, endpoint=endpoint, backbone=backbone, unit=unit,
                       where=where, split_from=str(split_from) if split_from and not split.folds else None,
                       **opts)


def train_run(cohort_dir: Path, *, roi: str, endpoint: str, backbone: str, out: Path, unit: str,
              training: TrainingSpec, split: SplitSpec, split_from: Path | None, where: str | None,
              weights: str | Path | None, resume: bool) -> Path:
    """`npcai train` for one study step (with ``split.folds``: `npcai train --folds K`, the folds
    of ``split_from`` reused); an unfinished or outdated run folder is replaced unless ``resume``."""
    from npcai.models.folds import train_folds
    from npcai.models.train import train

    config = train_config(cohort_dir, roi=roi, endpoint=endpoint, backbone=backbone, unit=unit,
                          training=training, split=split, split_from=split_from, where=where, weights=weights)
    if config.folds:
        return Path(train_folds(config, out, resume=resume, overwrite=True, folds_from=split_from).run_dir)
    return Path(train(config, out, resume=resume, overwrite=True).run_dir)


def train_step(*, threads: int, **train_run_kwargs) -> float:
    """One study step as an executor job (this process, a worker process or a SLURM task):
    set the step's torch thread count, run :func:`train_run`, return the seconds it took."""
    import time

    from npcai.threads import configure_threads

    configure_threads(threads)
    t = time.perf_counter()
    train_run(**train_run_kwargs)
    return time.perf_counter() - t


def ensemble_runs(members: list[Path], out: Path) -> Path:
    """`npcai ensemble` (soft voting of patient probabilities) into ``out``."""
    from npcai.models.ensemble import ensemble_runs as soft_voting

    soft_voting(members, out, overwrite=True)
    return out


def c_index_ci(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> tuple[float, float, float]:
    """Harrell's C of a risk score with its 95% CI (``npcai.stats.concordance.harrell_c``)."""
    from npcai.stats.concordance import harrell_c

    c = harrell_c(time, event, risk)
    return c.c_index, c.low, c.high


def table1(clinical: pd.DataFrame, split: pd.Series) -> pd.DataFrame | None:
    """Clinical characteristics by split (train / val / test) as the seeds' Table 1."""
    from npcai.stats.table1 import table1 as make_table1

    df = clinical.loc[clinical.index.intersection(split.index)].copy()
    df["split"] = split.reindex(df.index)
    return make_table1(df, by="split")


def oracle_scores(cohort_dir: Path, endpoint: str) -> tuple[pd.Series, float | None] | None:
    """The phantom's true probability of the endpoint per patient, and its whole-cohort
    oracle AUC from ``truth/oracle.json``; None for a cohort that is not a phantom."""
    from npcai.cohort.phantom.truth import load_truth, truth_dir_of

    truth_dir = truth_dir_of(cohort_dir)
    if truth_dir is None:
        return None
    oracle = json.loads((truth_dir / "oracle.json").read_text())
    entry = oracle.get(endpoint)
    if not entry or "score" not in entry:
        log.warning("phantom truth has no oracle for endpoint %s; the report shows no ceiling", endpoint)
        return None
    truth = load_truth(cohort_dir)
    col = entry["score"]
    if col not in truth.columns:
        raise NpcaiError(f"{truth_dir}/patients.csv: column {col!r} named by oracle.json is missing; "
                         "regenerate the phantom")
    return truth[col].astype(float), entry.get("auc")


def explain_runs(main_run: Path, others: list[Path], out: Path, *, top: int, max_slices: int = 2):
    """`npcai explain MAIN --runs OTHERS --top K` into ``out`` (one panel per run for the same
    patients, study 000 Fig. 5; a cross-validated run explains each patient with its out-of-fold
    model, on the highest out-of-fold risks); returns :class:`npcai.explain.explain.ExplainResult`."""
    from npcai.explain.explain import explain_run

    return explain_run(main_run, out, top=top, runs=others, max_slices=max_slices, overwrite=True,
                       write_to_runs=False)
