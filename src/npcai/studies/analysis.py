"""A finished study's statistics: one results row per model on the shared test patients,
paired DeLong comparisons, the TNM baseline, Table 1, Grad-CAM localisation and, on the
phantom, the oracle ceiling. Pure reading of run folders plus ``npcai.stats`` functions;
nothing here trains.

Thresholds for sensitivity, specificity and the confusion matrix are fixed on the
*validation* patients (Youden) and applied unchanged to the test patients, never tuned on
test.

Examples:
    >>> analysis = analyse_study("cohort", "study", resolved, steps)   # doctest: +SKIP
    >>> analysis.results[["model", "auc"]]                               # doctest: +SKIP
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.progress import track
from npcai.report.tables import RESULT_COLUMNS
from npcai.studies.schema import ResolvedStudy

__all__ = ["StudyAnalysis", "analyse_study", "model_metrics", "read_predictions", "validation_auc"]

log = logging.getLogger(__name__)
#: the splits a model is evaluated on: the test patients, or every patient out of fold (CV runs)
EVALUATED = ("test", "oof")


@dataclass
class StudyAnalysis:
    """Everything the report shows, computed from the run folders."""

    results: pd.DataFrame                         # RESULT_COLUMNS, one row per model
    predictions: dict[str, pd.DataFrame]          # model key -> patient predictions (all splits)
    delong: pd.DataFrame                          # paired DeLong tests
    splits: pd.DataFrame                          # subset, split, patients, label 1, label 0
    endpoint: dict[str, Any]                      # description, cut-off, excluded counts
    table1: pd.DataFrame | None = None
    oracle: dict[str, Any] | None = None          # phantom ceiling: whole cohort and test patients
    localisation: pd.DataFrame | None = None      # per run Grad-CAM energy shares
    montages: list[tuple[str, Path]] = field(default_factory=list)
    tnm_predictions: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    baselines: Any = None                         # npcai.studies.baseline.StudyBaselines
    baseline_tests: pd.DataFrame = field(default_factory=pd.DataFrame)   # baselines vs every image model
    validation_auc: dict[str, float] = field(default_factory=dict)  # model key -> AUC on validation patients


def read_predictions(run_dir: str | Path) -> pd.DataFrame:
    """A run's patient predictions (patient_id, split, label, prob), through :mod:`npcai.runs`."""
    from npcai.runs import read_predictions as read

    return read(run_dir).patients


def validation_auc(run_dir: str | Path, pred: pd.DataFrame | None = None) -> float:
    """A model's AUC on its *validation* patients, what the study chooses among models by:
    the run's ``val`` split, or for a cross-validated run the mean over its folds of each fold
    model's validation AUC (validation patients carved from the other folds). Never the test
    or out-of-fold patients. NaN when no fold has both classes among its validation patients.

    Args:
        run_dir: the run (or ensemble) folder.
        pred: its patient predictions when already read.
    """
    from npcai.models.folds import is_cv_run
    from npcai.studies.baseline import _fold_preds, _val_auc

    if is_cv_run(run_dir):
        aucs = np.array([_val_auc(p) for _, p in _fold_preds(run_dir)], dtype=float)
        return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
    return _val_auc(read_predictions(run_dir) if pred is None else pred)


def _both_classes(y) -> bool:
    return len(np.unique(np.asarray(y))) == 2


def model_metrics(pred: pd.DataFrame, survival: pd.DataFrame | None = None, *,
                  default_threshold: float | None = 0.5) -> dict[str, Any]:
    """Test-patient metrics of one model, with the threshold fixed on its validation patients:
    the functions of ``npcai evaluate`` (:mod:`npcai.stats.evaluate`), flattened into a row.

    Args:
        pred: patient predictions with ``split`` (train/val/test), ``label`` and ``prob``
            (or any score where higher means label 1).
        survival: optional (time, event) indexed by patient_id for the C-index.
        default_threshold: used when the validation patients cannot fix one (single class,
            equal scores); None leaves the threshold metrics empty (e.g. for TNM stage scores).
    """
    from npcai.stats.auc import auc_ci
    from npcai.stats.binary import binary_metrics
    from npcai.stats.evaluate import validation_threshold

    if (pred["split"] == "oof").any():      # a cross-validated run: pooled out-of-fold metrics
        from npcai.models.folds import oof_metrics

        return {**oof_metrics(pred), **_c_index(pred[pred["split"] == "oof"], survival)}
    val = pred[pred["split"] == "val"]
    test = pred[pred["split"] == "test"]
    out: dict[str, Any] = {"n_test": len(test), "n_pos": int(test["label"].sum())}
    thr = validation_threshold(val if len(val) else None, default=default_threshold)["value"]
    out["threshold"] = float("nan") if thr is None else float(thr)
    if len(test) and _both_classes(test["label"]):
        try:
            a = auc_ci(test["label"], test["prob"])
            out.update(auc=a.auc, auc_low=a.low, auc_high=a.high)
        except NpcaiError as exc:   # too few test patients of a class for DeLong's variance
            log.warning("test AUC left empty: %s", exc)
    bm = None
    if thr is not None and len(test):
        try:
            bm = binary_metrics(test["label"].to_numpy().astype(int), test["prob"].to_numpy(), thr)
        except NpcaiError as exc:    # F1 undefined: no positive patient and none predicted
            log.warning("threshold metrics left empty: %s", exc)
    if bm is not None:
        nan = float("nan")
        value = lambda p: nan if p.value is None else p.value  # noqa: E731
        out.update(**bm.confusion.to_dict(), sensitivity=value(bm.sensitivity), specificity=value(bm.specificity),
                   precision=value(bm.ppv), ppv=value(bm.ppv), npv=value(bm.npv), accuracy=value(bm.accuracy),
                   f1=bm.f1)
    out.update(_c_index(test, survival))
    return out


def _c_index(test: pd.DataFrame, survival: pd.DataFrame | None) -> dict[str, float]:
    """Harrell's C (95% CI) of the evaluated patients' probabilities against survival
    (:func:`npcai.stats.evaluate.survival_c_index`); empty, logged, when it cannot be computed."""
    from npcai.stats.evaluate import survival_c_index

    if survival is None or not len(test):
        return {}
    c = survival_c_index(test.set_index("patient_id")["prob"], survival)
    if "unavailable" in c:
        log.warning("C-index left empty: %s", c["unavailable"])
        return {}
    return {"c_index": c["c_index"], "c_low": c["low"], "c_high": c["high"]}


def _labels(cohort_dir: Path, resolved: ResolvedStudy):
    from npcai.cohort.endpoints import endpoint_labels
    from npcai.cohort.model import Cohort

    clinical = Cohort.load(cohort_dir).clinical()
    return clinical, endpoint_labels(clinical, resolved.study.endpoint)


def analyse_study(cohort_dir: str | Path, out: str | Path, resolved: ResolvedStudy,
                  steps: list[dict[str, Any]], *, explain: bool = True) -> StudyAnalysis:
    """Evaluate every run and ensemble of a study on its test patients (see module docstring)."""
    cohort_dir, out = Path(cohort_dir), Path(out)
    s = resolved.study
    clinical, labels = _labels(cohort_dir, resolved)
    survival = labels.survival
    rois = {r.name: r for r in s.rois}
    ens = {e.name: e for e in s.ensembles}
    subsets = {x.name: x for x in s.subsets}
    rows, preds, val_aucs = [], {}, {}
    for st in track(steps, "Evaluating runs"):
        pred = read_predictions(st["run"])
        preds[st["step"]] = pred
        val_aucs[st["step"]] = validation_auc(st["run"], pred)
        roi = rois.get(st["roi"])
        sub = subsets[st["subset"]]
        label = roi.display if roi else (ens[st["roi"]].label or st["roi"])
        multi_bb = len(s.backbones) > 1
        if st["source"] == "radiomics":       # the handcrafted baseline: named by the study's radiomics block
            model = s.radiomics.label + (f" · {label}" if len(resolved.radiomics_rois()) > 1 else "")
        else:
            model = label + (f" · {st['backbone']}" if multi_bb else "")
            if len(s.units) > 1:
                model += f" · {st['unit']} unit"
        if len(s.subsets) > 1:
            model = f"{sub.label or sub.name}: {model}"
        kind = "radiomics" if st["source"] == "radiomics" else roi.kind if roi else "ensemble"
        row = {"model": model, "source": st["source"], "subset": sub.name,
               "subset_label": sub.label or sub.name, "roi": st["roi"], "roi_label": label,
               "group": roi.group if roi else None, "kind": kind,
               "expansion": roi.expansion if roi else None, "backbone": st["backbone"],
               "unit": st["unit"], "run": str(Path(st["run"]).relative_to(out))
               if Path(st["run"]).is_relative_to(out) else st["run"]}
        row.update(model_metrics(pred, survival))
        rows.append(row)
    results = pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)

    analysis = StudyAnalysis(results=results, predictions=preds, delong=pd.DataFrame(),
                             splits=_split_table(steps, preds, subsets),
                             endpoint={"description": labels.description, "cutoff": labels.cutoff,
                                       "n_labelled": int(len(labels.labels)),
                                       "excluded": labels.excluded_counts()},
                             validation_auc=val_aucs)
    first = _first_runs(steps)
    if s.tnm_baseline:
        tnm_rows = _tnm_rows(clinical, preds, first, subsets, survival, analysis.tnm_predictions)
        analysis.results = pd.concat([analysis.results, tnm_rows], ignore_index=True).reindex(columns=RESULT_COLUMNS)
    _add_baselines(analysis, clinical, resolved, steps, survival)
    analysis.delong = _delong_table(resolved, steps, preds, clinical, analysis.results, val_aucs)
    analysis.table1 = _table1(cohort_dir, clinical, preds, first)
    analysis.oracle = _oracle(cohort_dir, resolved, preds, first)
    if explain and s.explain.enabled:
        _explain(out, resolved, steps, analysis)
    analysis.findings = findings(resolved, analysis)
    return analysis


# ---------------------------------------------------------------------------- helpers
def _first_runs(steps: list[dict[str, Any]]) -> dict[str, str]:
    """subset -> key of its first training run (the one whose split all others reuse)."""
    first: dict[str, str] = {}
    for st in steps:
        if st["source"] == "run":
            first.setdefault(st["subset"], st["step"])
    return first


def _split_table(steps, preds, subsets) -> pd.DataFrame:
    rows = []
    for sub, key in _first_runs(steps).items():
        p = preds[key]
        for split in [x for x in ("train", "val", "test", "test_external", "oof") if (p["split"] == x).any()]:
            q = p[p["split"] == split]
            rows.append({"Subset": subsets[sub].label or sub, "Split": split, "Patients": len(q),
                         "Label 1": int(q["label"].sum()), "Label 0": int((q["label"] == 0).sum())})
    return pd.DataFrame(rows)


def _add_baselines(analysis: StudyAnalysis, clinical: pd.DataFrame, resolved: ResolvedStudy,
                   steps: list[dict[str, Any]], survival) -> None:
    """The clinical baseline and combined model of every subset (:mod:`npcai.studies.baseline`):
    results rows, predictions (keyed like runs) and paired DeLong tests against every image model."""
    from npcai.studies.baseline import fit_study_baselines

    r = analysis.results
    names = dict(zip(r["run"].map(lambda p: Path(str(p)).name), r["model"]))
    base = fit_study_baselines(clinical, resolved, steps, analysis.predictions, names)
    analysis.baselines = base            # its notes are shown beside the main table
    multi = len(resolved.study.subsets) > 1
    rows = []
    for m in base.models:
        sub = next(x for x in resolved.study.subsets if x.name == m.subset)
        analysis.predictions[m.key] = m.predictions
        row = {"model": (f"{sub.label or sub.name}: " if multi else "") + m.name,
               "source": "baseline" if m.kind == "clinical" else "combined", "subset": m.subset,
               "subset_label": sub.label or sub.name, "roi": m.kind, "roi_label": m.name, "kind": m.kind,
               "backbone": "–", "unit": "patient", "run": ""}
        row.update(model_metrics(m.predictions.dropna(subset=["prob"]), survival))
        rows.append(row)
    if rows:
        analysis.results = pd.concat([analysis.results, pd.DataFrame(rows)],
                                     ignore_index=True).reindex(columns=RESULT_COLUMNS)
    analysis.baseline_tests = _baseline_tests(base, steps, analysis.predictions, names, resolved)


def _baseline_tests(base, steps, preds, names: dict[str, str], resolved: ResolvedStudy) -> pd.DataFrame:
    """Paired DeLong tests of each baseline against every image model (and the combined model
    against the clinical baseline) on the evaluated patients both score."""
    from npcai.stats.auc import delong_test

    rows = []
    for m in base.models:
        others = [(names.get(st["step"], st["step"]), preds[st["step"]]) for st in steps
                  if st["subset"] == m.subset and st["source"] in ("run", "ensemble")]
        if m.kind == "combined":
            clin = [b for b in base.models if b.subset == m.subset and b.kind == "clinical"]
            others = [(b.name, b.predictions) for b in clin] + others
        for other_name, other in others:
            a = m.predictions[m.predictions["split"].isin(EVALUATED)].dropna(subset=["prob"])
            b = other[other["split"].isin(EVALUATED)]
            both = a.merge(b, on="patient_id", suffixes=("_a", "_b"))
            row = {"Subset": m.subset, "Model A": m.name, "Model B": other_name, "Paired test patients": len(both)}
            if len(both) < len(b):
                row["Note"] = f"{len(b) - len(both)} of {len(b)} evaluated patients lack a baseline prediction"
            try:
                d = delong_test(both["label_a"], both["prob_a"], both["prob_b"])
                row.update({"AUC A": d.auc1, "AUC B": d.auc2, "Difference": d.auc1 - d.auc2,
                            "Difference low": d.diff_low, "Difference high": d.diff_high,
                            "z": d.statistic, "p (DeLong, paired)": d.p_value})
            except NpcaiError as exc:
                row["Note"] = str(exc)
            rows.append(row)
    df = pd.DataFrame(rows)
    if len(df) and len(resolved.study.subsets) == 1:
        df = df.drop(columns="Subset")
    return df


def has_tnm(clinical: pd.DataFrame) -> bool:
    """Whether the cohort is staged: both T and N stage columns with values (the TNM baseline
    appears only then)."""
    cols = {"t_stage", "n_stage"}
    return cols <= set(clinical.columns) and not clinical[sorted(cols)].isna().all().any()


def _tnm_rows(clinical, preds, first, subsets, survival, store: dict) -> pd.DataFrame:
    """TNM staging as an ordinal score on each subset's test patients (threshold from validation),
    only where the cohort has both T and N stage."""
    rows = []
    if not has_tnm(clinical):
        return pd.DataFrame(rows)
    for sub, key in first.items():
        p = preds[key][["patient_id", "split", "label"]]
        for col, name in (("stage", "TNM stage"), ("t_stage", "T stage"), ("n_stage", "N stage")):
            if col not in clinical.columns:
                continue
            score = pd.to_numeric(clinical[col], errors="coerce").reindex(p["patient_id"]).to_numpy()
            q = p.assign(prob=score).dropna(subset=["prob"])
            store[(sub, col)] = q
            row = {"model": name + ("" if len(first) == 1 else f" ({subsets[sub].label or sub})"),
                   "source": "tnm", "subset": sub, "subset_label": subsets[sub].label or sub,
                   "roi": col, "roi_label": name, "kind": "tnm", "backbone": "–", "unit": "patient"}
            row.update(model_metrics(q, survival, default_threshold=None))
            rows.append(row)
    return pd.DataFrame(rows)


def _delong_table(resolved: ResolvedStudy, steps, preds, clinical, results: pd.DataFrame | None = None,
                  val_aucs: dict[str, float] | None = None) -> pd.DataFrame:
    """Paired DeLong tests for the study's ROI pairs (per subset, backbone and unit), each
    model against TNM stage when the study uses the TNM baseline, and the radiomics baseline
    against the subset's best deep model: the one with the highest validation AUC
    (``val_aucs``; the mean over the folds for cross-validated runs), so the evaluated
    patients choose nothing."""
    from npcai.stats.auc import delong_test

    s = resolved.study
    label = {r.name: r.display for r in s.rois} | {e.name: e.label or e.name for e in s.ensembles}
    by_key = {(st["subset"], st["roi"], st["backbone"], st["unit"]): st["step"] for st in steps}
    rows = []

    def test(pa: pd.DataFrame, pb: pd.DataFrame, name_a: str, name_b: str, ctx: dict) -> None:
        ta, tb = pa[pa["split"].isin(EVALUATED)], pb[pb["split"].isin(EVALUATED)]
        m = ta.merge(tb, on="patient_id", suffixes=("_a", "_b"))
        row = {**ctx, "Model A": name_a, "Model B": name_b, "Paired test patients": len(m)}
        if len(m) < len(ta) or len(m) < len(tb):
            row["Note"] = f"only {len(m)} test patients in common"
        try:
            d = delong_test(m["label_a"], m["prob_a"], m["prob_b"])
            row.update({"AUC A": d.auc1, "AUC B": d.auc2, "Difference": d.auc1 - d.auc2,
                        "z": d.statistic, "p (DeLong, paired)": d.p_value})
        except NpcaiError as exc:
            row["Note"] = str(exc)
        rows.append(row)

    for sub in s.subsets:
        for bb in s.backbones:
            for unit in s.units:
                ctx = {"Subset": sub.label or sub.name, "Backbone": bb, "Unit": unit}
                for a, b in s.delong:
                    ka, kb = by_key.get((sub.name, a, bb, unit)), by_key.get((sub.name, b, bb, unit))
                    if ka and kb:
                        test(preds[ka], preds[kb], label[a], label[b], ctx)
                if s.tnm_baseline and "stage" in clinical.columns and has_tnm(clinical):
                    for name in [r.name for r in s.rois] + [e.name for e in s.ensembles]:
                        k = by_key.get((sub.name, name, bb, unit))
                        if not k:
                            continue
                        pa = preds[k]
                        stage = pd.to_numeric(clinical["stage"], errors="coerce")
                        pb = pa[["patient_id", "split", "label"]].assign(
                            prob=stage.reindex(pa["patient_id"]).to_numpy()).dropna(subset=["prob"])
                        test(pa, pb, label[name], "TNM stage", ctx)
    if results is not None:
        for st in steps:
            if st["source"] != "radiomics":
                continue
            deep = results[(results["source"] == "run") & (results["subset"] == st["subset"])]
            if deep.empty:
                continue
            val = deep.apply(lambda r: (val_aucs or {}).get(_pred_key(r), float("nan")), axis=1)
            best = deep.loc[val.idxmax()] if val.notna().any() else deep.iloc[0]
            mine = results[(results["source"] == "radiomics") & (results["subset"] == st["subset"])
                           & (results["roi"] == st["roi"])]
            sub = next(x for x in s.subsets if x.name == st["subset"])
            ctx = {"Subset": sub.label or sub.name, "Backbone": best["backbone"], "Unit": best["unit"]}
            test(preds[st["step"]], preds[_pred_key(best)], mine["model"].iloc[0] if len(mine) else st["roi"],
                 f"{best['model']} (best deep model)", ctx)
    df = pd.DataFrame(rows)
    keep = [c for c in ("Subset", "Backbone", "Unit") if c in df and df[c].nunique() > 1]
    drop = [c for c in ("Subset", "Backbone", "Unit") if c in df and c not in keep]
    return df.drop(columns=drop)


def _table1(cohort_dir: Path, clinical: pd.DataFrame, preds, first) -> pd.DataFrame | None:
    from npcai.studies.backend import table1

    key = next(iter(first.values()))
    pred = preds[key].set_index("patient_id")
    split = pred["split"] if "fold" not in pred else "fold " + pred["fold"].astype(str)
    return table1(clinical, split)


def _oracle(cohort_dir: Path, resolved: ResolvedStudy, preds, first) -> dict[str, Any] | None:
    from npcai.studies.backend import oracle_scores

    found = oracle_scores(cohort_dir, resolved.study.endpoint)
    if found is None:
        return None
    score, whole = found
    from npcai.stats.auc import auc_ci

    out: dict[str, Any] = {"whole_cohort_auc": whole, "subsets": {}}
    for sub, key in first.items():
        test = preds[key][preds[key]["split"].isin(EVALUATED)]
        sc = score.reindex(test["patient_id"])
        ok = sc.notna().to_numpy()
        try:
            a = auc_ci(test["label"][ok], sc[ok])
            out["subsets"][sub] = {"auc": a.auc, "low": a.low, "high": a.high, "n": int(ok.sum())}
        except NpcaiError as exc:
            log.warning("oracle AUC on the test patients of %s left empty: %s", sub, exc)
    return out


def _explain(out: Path, resolved: ResolvedStudy, steps, analysis: StudyAnalysis) -> None:
    """Grad-CAM of the study's chosen runs (one backbone, the listed ROIs) on the same
    highest-risk test patients, one panel per ROI dataset."""
    from npcai.studies.backend import explain_runs

    s = resolved.study
    bb = s.explain.backbone or s.backbones[0]
    rois = s.explain.rois or [r.name for r in s.rois]
    for sub in s.subsets:
        chosen = [st for st in steps if st["source"] == "run" and st["backbone"] == bb
                  and st["roi"] in rois and st["unit"] == s.units[0] and st["subset"] == sub.name]
        if not chosen:
            continue
        chosen.sort(key=lambda st: rois.index(st["roi"]))
        exp_dir = out / "explain" / sub.name
        res = explain_runs(Path(chosen[0]["run"]), [Path(st["run"]) for st in chosen[1:]], exp_dir,
                           top=s.explain.top)
        where = f" ({sub.label or sub.name})" if len(s.subsets) > 1 else ""
        across = sorted(exp_dir.glob("runs_*.png"))
        for path in across or sorted(exp_dir.glob("montage_*.png")):
            what = "one slice across ROI datasets" if across else "slices of one run"
            analysis.montages.append((f"{path.stem.split('_', 1)[1]}: {what}, {bb}{where}", path))
        if (exp_dir / "localisation.png").is_file():
            analysis.montages.append((f"Where the Grad-CAM energy goes, per run{where}", exp_dir / "localisation.png"))
        summary = res.summary.assign(subset=sub.label or sub.name)
        analysis.localisation = summary if analysis.localisation is None else \
            pd.concat([analysis.localisation, summary], ignore_index=True)


# ---------------------------------------------------------------------------- findings
def _pred_key(row) -> str:
    return f"{row['subset']}__{row['roi']}__{row['backbone']}__{row['unit']}"


def _paired_comparison(preds: dict[str, pd.DataFrame], key_a: str, key_b: str, name_a: str, name_b: str):
    """Paired DeLong test of two runs on the evaluated patients they share (test, or every
    patient out of fold for cross-validated runs), as a wording Comparison (untested when the
    test cannot be computed)."""
    from npcai.report.wording import Comparison
    from npcai.stats.auc import auc_ci, delong_test

    ta, tb = (preds[k][preds[k]["split"].isin(EVALUATED)] for k in (key_a, key_b))
    m = ta.merge(tb, on="patient_id", suffixes=("_a", "_b"))
    try:
        return Comparison.from_delong(name_a, name_b, delong_test(m["label_a"], m["prob_a"], m["prob_b"]), n=len(m))
    except NpcaiError:
        def auc(df):
            try:
                return auc_ci(df["label"], df["prob"]).auc
            except NpcaiError:
                return float("nan")
        return Comparison(name_a, name_b, auc(ta), auc(tb), n=len(m))


def _per_backbone(runs: pd.DataFrame, preds, roi_a: str, roi_b: str, name_a: str, name_b: str):
    """{(subset label, unit): {backbone: Comparison of roi_a vs roi_b}} on shared test patients."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for (sub, unit), g in runs.groupby(["subset_label", "unit"], sort=False):
        by_roi = {(r["roi"], r["backbone"]): _pred_key(r) for _, r in g.iterrows()}
        for bb in dict.fromkeys(g["backbone"]):
            ka, kb = by_roi.get((roi_a, bb)), by_roi.get((roi_b, bb))
            if ka in preds and kb in preds:
                out.setdefault((sub, unit), {})[bb] = _paired_comparison(preds, ka, kb, name_a, name_b)
    return out


def _validation_aucs(runs: pd.DataFrame, preds, roi: str, known: dict[str, float] | None = None) -> list[float]:
    """A ROI's AUC on the *validation* patients, one per backbone where it is defined: the
    analysis's :func:`validation_auc` of each run (for cross-validated runs the mean of the
    fold models' validation AUCs), else computed from the ``val`` rows of its predictions. The
    test or out-of-fold patients never enter."""
    from npcai.stats.auc import roc_auc

    values = []
    for _, r in runs[runs["roi"] == roi].iterrows():
        key = _pred_key(r)
        if known and key in known:
            if np.isfinite(known[key]):
                values.append(float(known[key]))
            continue
        p = preds.get(key)
        if p is None:
            continue
        val = p[p["split"] == "val"]
        try:
            values.append(roc_auc(val["label"], val["prob"]))
        except NpcaiError:
            continue
    return values


def chosen_by_validation(analysis: StudyAnalysis, rows: pd.DataFrame) -> pd.Series | None:
    """The results row with the highest validation AUC among ``rows`` (models of the study;
    for cross-validated runs the mean of their folds' validation AUCs), None when none has one:
    the evaluated (test or out-of-fold) patients choose nothing."""
    best, best_auc = None, -np.inf
    for _, r in rows.iterrows():
        auc = analysis.validation_auc.get(_pred_key(r), float("nan"))
        if np.isfinite(auc) and auc > best_auc:
            best, best_auc = r, float(auc)
    return best


def _comparison_lines(per: dict, name_a: str, name_b: str, multi: bool) -> list[str]:
    from npcai.report.wording import backbone_comparison_sentence

    lines = []
    for (sub, unit), tests in per.items():
        prefix = f"{sub}, {unit} unit: " if multi else ""
        lines.append(prefix + backbone_comparison_sentence(name_a, name_b, tests))
    return lines


def findings(resolved: ResolvedStudy, analysis: StudyAnalysis) -> list[str]:
    """Plain sentences with the study's key numbers (the report's summary, the CLI's output).

    Every comparison follows its paired DeLong test on the shared test patients
    (:mod:`npcai.report.wording`): "higher than" only when significant, "no significant
    difference (p = ...)" otherwise, aAUC ± SD only over two or more backbones, estimates with
    their CI. The expanded ROI that is compared is chosen on the validation patients, never
    on test."""
    from npcai.report.wording import average_auc_text, estimate_text

    s = resolved.study
    r = analysis.results
    runs = r[r["source"] == "run"]
    out: list[str] = []
    if runs.empty:
        return out
    preds = analysis.predictions
    label = {x.name: x.display for x in s.rois}
    multi = runs.groupby(["subset_label", "unit"]).ngroups > 1
    if runs["auc"].dropna().empty:
        out.append("No test AUC could be computed (too few test patients of each class); "
                   "use a larger cohort or a larger test fraction.")
    if s.layout == "expansion":
        kinds = {x.name: x.kind for x in s.rois}
        present = list(dict.fromkeys(runs["roi"]))
        expanded = [n for n in present if kinds.get(n) == "expanded"]
        tumour = [n for n in present if kinds.get(n) == "tumour-only"]
        whole = [n for n in present if kinds.get(n) == "whole-slice"]
        if expanded:
            val = {n: _validation_aucs(runs, preds, n, analysis.validation_auc) for n in expanded}
            chosen = [n for n in expanded if val[n]]
            if chosen:
                best = max(chosen, key=lambda n: float(np.mean(val[n])))
                cv = bool(s.split.folds)
                out.append(f"Expanded ROI chosen on the validation patients{' of the folds' if cv else ''}: "
                           f"{label[best]} (validation {average_auc_text(val[best])}"
                           f"{', mean over folds' if cv else ''}; {'pooled out-of-fold' if cv else 'test'} "
                           f"{average_auc_text(runs.loc[runs['roi'] == best, 'auc'])}).")
                picks = [best]
            else:
                out.append("No expanded ROI could be chosen on the validation patients (one class there); "
                           "each is compared below.")
                picks = expanded
            for pick in picks:
                for ref in (tumour[:1] + whole[:1]):
                    out += _comparison_lines(_per_backbone(runs, preds, pick, ref, label[pick], label[ref]),
                                             label[pick], label[ref], multi)
    elif s.layout == "metastasis":
        kind_of = {x.name: x.kind for x in s.rois}
        for group in dict.fromkeys(x.group for x in s.rois if x.group):
            g = runs[runs["group"] == group]
            rois = list(dict.fromkeys(g["roi"]))
            if len(rois) == 2:       # intra-peritumoural vs intratumoural, as the seed compares them
                a, b = sorted(rois, key=lambda n: kind_of[n] != "intra-peritumoural")
                out += _comparison_lines(_per_backbone(g, preds, a, b, label[a], label[b]), label[a], label[b],
                                         multi)
    else:
        for _, row in r[~r["source"].isin(("baseline", "combined"))].iterrows():     # those: _baseline_lines
            if pd.notna(row["auc"]):
                out.append(f"{row['model']}: test {estimate_text(row['auc'], row['auc_low'], row['auc_high'])}.")
    if s.layout == "units":
        u = runs.groupby(["subset_label", "unit"], sort=False)["auc"]
        out.append("By unit: " + "; ".join(f"{a} {b}: {average_auc_text(v)}" for (a, b), v in u) + ".")
    out += _baseline_lines(analysis, multi=len(s.subsets) > 1)
    out += _radiomics_lines(analysis)
    if analysis.oracle:
        for sub, o in analysis.oracle["subsets"].items():
            out.append(f"Oracle ceiling on the same test patients ({sub}): "
                       f"{estimate_text(o['auc'], o.get('low'), o.get('high'))}.")
    return out


def _radiomics_lines(analysis: StudyAnalysis) -> list[str]:
    """The radiomics baseline's estimate and its paired test against the best deep model."""
    from npcai.report.wording import Comparison, comparison_sentence, estimate_text

    r = analysis.results
    lines = []
    for _, row in r[r["source"] == "radiomics"].iterrows():
        if pd.isna(row["auc"]):
            continue
        lines.append(f"{row['model']} on {row['roi_label']} features: "
                     f"{estimate_text(row['auc'], row['auc_low'], row['auc_high'])} ({int(row['n_test'])} patients).")
        d = analysis.delong
        if not len(d) or "Model A" not in d:
            continue
        t = d[(d["Model A"] == row["model"]) & d["Model B"].astype(str).str.endswith("(best deep model)")]
        if len(t) and pd.notna(t.iloc[0].get("AUC A")):
            lines.append("Radiomics against the best deep model: " + comparison_sentence(Comparison.from_row(t.iloc[0])))
    return lines


def _baseline_lines(analysis: StudyAnalysis, *, multi: bool) -> list[str]:
    """The clinical baseline's and the combined model's estimates, and what their paired tests
    support: the image model chosen on validation patients against the clinical baseline, and
    the combined model against the clinical baseline."""
    from npcai.report.wording import Comparison, comparison_sentence, estimate_text

    base = analysis.baselines
    if base is None or not base.models:
        return []
    r = analysis.results.set_index("model", drop=False)
    tests = analysis.baseline_tests
    lines = []
    for m in base.models:
        row = r[(r["source"] == ("baseline" if m.kind == "clinical" else "combined")) & (r["subset"] == m.subset)]
        if row.empty:
            continue
        row = row.iloc[0]
        prefix = f"{row['subset_label']}: " if multi else ""
        scored = f"{int(row['n_test'])} patients" + (f"; {m.n_unscored} without a complete covariate set left out"
                                                     if m.n_unscored else "")
        lines.append(f"{prefix}{m.name}, fitted on {m.fitted_on}: "
                     f"{estimate_text(row['auc'], row['auc_low'], row['auc_high'])} ({scored}).")
        if m.kind != "combined" or not len(tests):
            continue
        clinical = next((b for b in base.models if b.subset == m.subset and b.kind == "clinical"), None)
        image_name = next((n for n, run in zip(r["model"], r["run"]) if Path(str(run)).name == m.image_model), None)
        if clinical is None:
            continue
        sub_tests = tests[tests["Subset"] == m.subset] if "Subset" in tests else tests
        # baseline_tests rows: A = the baseline model, B = the model it is tested against
        for a_name, b_name, flip in ((clinical.name, image_name, True), (m.name, clinical.name, False)):
            t = sub_tests[(sub_tests["Model A"] == a_name) & (sub_tests["Model B"] == b_name)]
            if t.empty or pd.isna(t.iloc[0].get("AUC A")):
                continue
            t = t.iloc[0]
            c = Comparison.from_row(t)
            if flip:             # the image model first: the difference changes sign
                c = Comparison(b_name, a_name, c.value_b, c.value_a, p_value=c.p_value,
                               diff_low=None if c.diff_high is None else -c.diff_high,
                               diff_high=None if c.diff_low is None else -c.diff_low, n=c.n)
            lead = "Image model chosen on the validation patients against the clinical baseline: " if flip else ""
            lines.append(prefix + lead + comparison_sentence(c))
    return lines
