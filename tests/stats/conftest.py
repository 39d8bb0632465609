"""Fake cohorts and run folders following docs/contracts.md, for the evaluation tests.

Evaluation reads only files (config.yaml, split.csv, predictions_*.csv, the cohort's
clinical.csv), so these fixtures write exactly those, fast, with planted signal.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from npcai.cohort.model import Cohort, Patient


def make_cohort(root: Path, n: int = 90, seed: int = 0) -> Path:
    """A cohort folder with cohort.json and a clinical.csv (no images: evaluation needs none)."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:04d}" for i in range(1, n + 1)]
    risk = rng.normal(size=n)
    t_stage = np.clip(np.round(2.5 + 0.6 * risk + rng.normal(scale=0.8, size=n)), 1, 4).astype(int)
    n_stage = np.clip(np.round(1.5 + 0.4 * risk + rng.normal(scale=0.9, size=n)), 0, 3).astype(int)
    stage = np.clip(np.maximum(t_stage, n_stage + 1), 1, 4)
    t_event = rng.exponential(30 * np.exp(-0.8 * risk))
    t_cens = rng.uniform(12, 72, size=n)
    clinical = pd.DataFrame({
        "patient_id": ids, "centre": rng.choice(["A", "B"], size=n),
        "age": np.round(rng.normal(50, 10, size=n), 1), "sex": rng.choice(["M", "F"], size=n, p=[.7, .3]),
        "t_stage": t_stage, "n_stage": n_stage, "stage": stage,
        "treatment": rng.choice(["CCRT", "IC+CCRT"], size=n),
        "pfs_months": np.round(np.minimum(t_event, t_cens), 1),
        "pfs_event": (t_event <= t_cens).astype(int),
        "distant_metastasis": (rng.uniform(size=n) < 1 / (1 + np.exp(-(risk - 0.5)))).astype(int),
        "risk_latent": risk,
    })
    root.mkdir(parents=True)
    Cohort(root=root, patients=[Patient(patient_id=i) for i in ids]).save()
    clinical.to_csv(root / "clinical.csv", index=False)
    return root


def make_run(root: Path, cohort: Path, *, roi: str, backbone: str, signal: float = 1.5,
             seed: int = 0, endpoint: str = "pfs-median", split_seed: int = 0,
             drop_test: int = 0) -> Path:
    """A run folder: config.yaml, split.csv, predictions_patients.csv, predictions_slices.csv."""
    from npcai.cohort.endpoints import endpoint_labels

    clinical = Cohort.load(cohort).clinical()
    ep = endpoint_labels(clinical, endpoint)
    labels = ep.labels
    rs = np.random.default_rng(split_seed)
    split = pd.Series("train", index=labels.index)
    for lab in (0, 1):       # stratified: ~25% val, ~30% test
        ids = rs.permutation(labels.index[labels == lab])
        k_val, k_test = int(round(0.25 * len(ids))), int(round(0.3 * len(ids)))
        split.loc[ids[:k_val]] = "val"
        split.loc[ids[k_val:k_val + k_test]] = "test"
    if drop_test:
        test_ids = split.index[split == "test"][:drop_test]
        split = split.drop(test_ids)
        labels = labels.drop(test_ids)
    rng = np.random.default_rng(seed)
    latent = clinical.loc[labels.index, "risk_latent"].to_numpy()
    logit = signal * (labels.to_numpy() - 0.5) * 2 + 0.3 * latent + rng.normal(scale=1.0, size=len(labels))
    prob = 1 / (1 + np.exp(-logit))
    root.mkdir(parents=True)
    from npcai.runs import RUN_FORMAT, cohort_id

    cfg = {"format": RUN_FORMAT, "kind": "train",
           "options": {"cohort": str(cohort), "endpoint": endpoint, "roi": roi, "backbone": backbone,
                       "seed": seed},
           "cohort": {"path": str(cohort), "id": cohort_id(cohort)}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    sp = pd.DataFrame({"patient_id": labels.index, "split": split.loc[labels.index].to_numpy(),
                       "label": labels.to_numpy()})
    sp.to_csv(root / "split.csv", index=False)
    pp = sp.assign(prob=np.round(prob, 6), n_slices=3)
    pp.to_csv(root / "predictions_patients.csv", index=False)
    rows = []
    for k, r in enumerate(pp.itertuples()):
        for z in range(3):
            p = 1 / (1 + np.exp(-(np.log(r.prob / (1 - r.prob)) + rng.normal(scale=0.5))))
            rows.append({"roi_row": 3 * k + z, "patient_id": r.patient_id, "split": r.split,
                         "slice_index": z, "label": r.label, "prob": round(float(p), 6)})
    pd.DataFrame(rows).to_csv(root / "predictions_slices.csv", index=False)
    return root


@pytest.fixture(scope="module")
def fake_cohort(tmp_path_factory) -> Path:
    return make_cohort(tmp_path_factory.mktemp("stats") / "cohort")


@pytest.fixture(scope="module")
def fake_runs(fake_cohort, tmp_path_factory) -> dict[str, Path]:
    """Two ROI variants x two backbones sharing one split (as `npcai compare` expects)."""
    base = tmp_path_factory.mktemp("runs")
    runs = {}
    for i, roi in enumerate(["segmented", "expand20"]):
        for j, bb in enumerate(["efficientnet_b0", "ecaresnet50t"]):
            name = f"{roi}_{bb}"
            runs[name] = make_run(base / name, fake_cohort, roi=roi, backbone=bb,
                                  signal=1.0 + 0.6 * i + 0.2 * j, seed=10 * i + j)
    return runs
