"""Assemble a study's report: methods from the resolved configuration, Table 1, the seed's
main table, DeLong comparisons, ROC and study figures, Grad-CAM, the oracle ceiling, and the
runs that produced every number.

Writes ``OUT/report/report.html`` (self-contained), ``OUT/report/tables/*.csv`` and
``OUT/report/figures/*.png``.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from npcai.report import figures as F
from npcai.report.html import Report, write_report
from npcai.report.tables import COMPARATOR_SOURCES, baseline_table, cv_table, fmt, main_tables

__all__ = ["build_report", "methods_text", "schedule_and_average_text", "package_versions"]


_MAIN_CAPTION = {
    "expansion": "Performance of each backbone on each ROI dataset in the test cohort (layout of seed 000, "
                 "Table 3). aAUC: mean AUC over backbones (SD, with two or more backbones).",
    "prepost": "AUC and C-index with 95% CI of the models and TNM staging in the test cohort (seed 001).",
    "units": "Residual-tumour models trained with each image or each patient as the unit, per treatment "
             "(layout of seed 002, Table 2). ACC, Se and Sp at the threshold fixed on validation patients.",
    "metastasis": "AUC (95% CI) and accuracy of each backbone on the intratumoural and intra-peritumoural "
                  "datasets, and TNM staging (layout of seed 003, Table 2).",
    "generic": "Performance of every model in the test cohort.",
}


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour decides the numbers (:func:`npcai.runs.package_versions`)."""
    from npcai.runs import package_versions as versions

    return versions()


def _roi_json(cohort_dir: Path, cache: str) -> dict:
    from npcai.imaging.roi_cache import RoiDataset, list_rois

    return RoiDataset.open(cohort_dir, cache).params if cache in list_rois(cohort_dir) else {}


def schedule_and_average_text(t) -> str:
    """The methods' clauses for a study's ``training:`` learning-rate schedule, weight average
    and deep ensemble (empty for a constant rate, no average and one network)."""
    out = ""
    if t.schedule == "cosine":
        out += f"; learning rate annealed towards 0 by a cosine schedule over the {t.epochs} epochs"
    if t.ema:
        out += (f"; validation, checkpoint selection and the saved network used an exponential moving average "
                f"of the weights (decay {t.ema:g} per step)")
    if t.members > 1:
        out += (f"; each model was a deep ensemble of {t.members} networks trained independently on the same "
                f"training and validation patients (each with its own seed: initialisation, augmentation and "
                f"batch order) and selected at its own best validation epoch, predicting the mean of their "
                f"probabilities")
    return out


def _sizes_text(sizes: dict[str, Any]) -> str:
    """'64×64 px' from {dataset: size}, or per dataset when the sizes differ ('64×64 px (Original
    image) and 96×96 px (Segmented image, Expand 5 px)')."""
    by_size: dict[Any, list[str]] = {}
    for name, size in sizes.items():
        by_size.setdefault(size, []).append(name)
    if len(by_size) == 1:
        size = next(iter(by_size))
        return f"{size}×{size} px"
    return " and ".join(f"{size}×{size} px ({', '.join(names)})" for size, names in by_size.items())


def _dataset_training_text(s) -> str:
    """The methods' clause on the datasets trained with their own options (a ROI's ``training:``;
    its size is in the preprocessing sentence), datasets with the same options named together."""
    groups: dict[str, list[str]] = {}
    for roi in s.rois:
        own = {k: v for k, v in roi.training.items() if k != "size"}
        if not own:
            continue
        clauses = ("schedule", "ema", "members")
        plain = [f"{k} {v}" for k, v in own.items() if k not in clauses]
        averaged = schedule_and_average_text(s.roi_training(roi)).lstrip("; ") if set(clauses) & set(own) else ""
        groups.setdefault("; ".join(plain + ([averaged] if averaged else [])), []).append(roi.display)
    return "".join(f"; for {', '.join(names)}: {text}" for text, names in groups.items())


def methods_text(cohort_dir: Path, resolved, analysis) -> list[str]:
    """The methods paragraphs, generated from the resolved study and what the runs recorded."""
    from npcai.cohort.model import Cohort
    from npcai.studies.analysis import has_tnm

    s = resolved.study
    cohort = Cohort.load(cohort_dir)
    t = s.training
    ep = analysis.endpoint
    excluded = "; ".join(f"{n} {k}" for k, n in ep["excluded"].items()) or "none"
    splits = analysis.splits
    per_split = ", ".join(f"{r['Split']} {r['Patients']}" for _, r in splits.iterrows()
                          if len(s.subsets) == 1) if len(splits) else ""
    paras = [
        f"Cohort: {len(cohort.patients)} patients in {cohort_dir.name} "
        f"({len(cohort.scans())} scans). Endpoint {s.endpoint}: {ep['description']}. "
        f"{ep['n_labelled']} patients had a label; excluded: {excluded}."
        + (" Subsets trained as separate models: "
           + "; ".join(f"{x.label or x.name} ({x.where})" for x in s.subsets if x.where) + "." if
           any(x.where for x in s.subsets) else ""),
        _split_text(s, per_split),
    ]
    roi_lines, sizes = [], {}
    for roi in s.rois:
        v = _roi_json(cohort_dir, resolved.roi_cache_name(roi))
        sizes[roi.display] = v.get("size", resolved.roi_params(roi)["size"])
        n = f"{v.get('n_slices', '?')} slices of {v.get('n_patients', '?')} patients" if v else "not built"
        frame = v.get("frame", roi.frame or "slice") if v else roi.frame
        roi_lines.append(f"{roi.display} = {roi.variant} on {roi.region} region, {roi.slices} slices, "
                         f"{roi.timepoint}-treatment {'+'.join(roi.sequences)}, {roi.mask} masks, "
                         f"frame {frame} ({n})")
    norm = ""
    first = _roi_json(cohort_dir, resolved.roi_cache_name(s.rois[0]))
    if first:
        norm = (f" Intensities were normalised per scan ({first.get('normalisation')}); mask components "
                f"smaller than {first.get('min_component')} px were dropped; slices were resized to "
                f"{_sizes_text(sizes)}.")
    paras.append("Preprocessing: ROI datasets: " + "; ".join(roi_lines) + "." + norm)
    paras.append(
        f"Training: backbones {', '.join(s.backbones)} ({'ImageNet-pretrained' if t.pretrained else 'random initialisation, no pretrained weights'}), "
        f"head dropout {t.dropout:g} + linear layer; unit(s) {', '.join(s.units)}; optimiser {t.optimizer}, "
        f"learning rate {t.lr:g}, weight decay {t.weight_decay:g}, batch size {t.batch_size}, at most "
        f"{t.epochs} epoch{'s' if t.epochs != 1 else ''}" + (f" with early stopping after {t.patience} epochs without improvement"
                               if t.patience < t.epochs else " (no early stopping)")
        + schedule_and_average_text(t) + _dataset_training_text(s)
        + f"; {'augmentation (flips, small affine, intensity jitter)' if t.augment else 'no augmentation'}"
        + "; the checkpoint was selected on the validation patients' AUC only. A patient's probability is the "
          f"{t.aggregate} of its slices' probabilities (image unit)"
        + (f" or the {t.pooling}-pooled prediction of a bag of {t.bag_size} slices (patient unit)"
           if "patient" in s.units else "") + ".")
    paras.append(
        "Statistics: patient-level AUC with DeLong 95% CI; sensitivity, specificity, precision, F1 and accuracy "
        "at the Youden threshold chosen on the validation patients and applied unchanged to the test patients; "
        "paired DeLong tests between models on the same test patients; Harrell's C-index with 95% CI against the "
        "survival endpoint where the cohort has one"
        + ("; TNM stage as an ordinal score for the baseline." if s.tnm_baseline and "stage" in cohort.clinical().columns
           and has_tnm(cohort.clinical()) else ".") + _baseline_methods(s, analysis) + _radiomics_methods(s, analysis))
    vers = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    paras.append(f"Preset: {resolved.preset or 'none (the YAML as written)'}. {resolved.preset_description} "
                 f"Software: {vers}.")
    return paras


def _baseline_methods(s, analysis) -> str:
    """The methods' sentences on the clinical baseline and the combined model (only what ran)."""
    base = analysis.baselines
    if base is None or not base.models:
        return ""
    clinical = next((m for m in base.models if m.kind == "clinical"), None)
    combined = next((m for m in base.models if m.kind == "combined"), None)
    where = " within each fold" if s.split.folds else ""
    text = ""
    if clinical is not None:
        text += (f" Clinical baseline{where}: {clinical.description.split('; ')[0]}, fitted on the training "
                 "patients only; patients missing a covariate were left out (complete cases) of the fit and of "
                 "the evaluation, and are counted in the baseline table.")
    if combined is not None:
        text += (f" Combined model{where}: logistic regression (ridge penalty 1 on standardised scores) of the label "
                 "on logit(image probability) of the image model with the highest validation AUC and the clinical "
                 "baseline's linear predictor, fitted on the validation patients only (the training patients' image "
                 "scores are in-sample for the network); its threshold is fixed on those same validation patients. "
                 "Test patients were used in no fit.")
    return text


def _radiomics_methods(s, analysis) -> str:
    """The methods' sentence on the radiomics baseline (only when it ran)."""
    res = analysis.results
    rows = res[res["source"] == "radiomics"] if "source" in res else res.iloc[:0]
    if s.radiomics is None or rows.empty:
        return ""
    from npcai.radiomics.extractor import package_version

    where = " within each training fold" if s.split.folds else ""
    rois = ", ".join(dict.fromkeys(rows["roi_label"].astype(str)))
    return (f" {s.radiomics.label}: first-order, 2D shape, GLCM, GLRLM, GLSZM, GLDM and NGTDM features "
            f"(pyradiomics-bhklab {package_version()}, {s.radiomics.bin_count} grey-level bins) of every ROI slice of "
            f"{rois}, on the region that dataset keeps, averaged over each patient's slices; median imputation, "
            f"variance and correlation (|r| > 0.9) filters, standardisation and an elastic-net logistic regression "
            f"(L1 ratio {s.radiomics.l1_ratio}) fitted on the training patients only{where}, its penalty and "
            "threshold chosen on the validation patients, on the same split as the deep models; it is compared "
            "with the deep model of highest validation AUC by the paired DeLong test.")


def _split_text(s, per_split: str) -> str:
    """The methods' sentence on how patients were split (single split or K folds)."""
    sp = s.split
    if sp.folds:
        return (f"Split: patient-level {sp.folds}-fold cross-validation, stratified by label"
                f"{' and centre' if sp.stratify_centre else ''} (fold seed {sp.fold_seed}). Each fold's "
                f"patients were held out while a model was trained on the other folds, its validation "
                f"patients ({sp.val_fraction:g} of the training folds, seed {sp.seed}) choosing the epoch and "
                f"the decision threshold; every patient was predicted once, by the model that never saw it "
                f"(out-of-fold). Every run of a subset uses the folds of its first run, so all models are "
                f"compared on the same out-of-fold patients (paired DeLong tests). AUCs are pooled over the "
                f"out-of-fold predictions (DeLong 95% CI); the per-fold AUCs are summarised as mean ± SD.")
    external = (f" Every patient matching {sp.test_where} formed the external test cohort and none was "
                f"used for training or validation." if sp.test_where else "")
    return (f"Split: patients (never slices) were divided into training, validation and test sets, "
            f"stratified by label (test fraction {sp.test_fraction:g}, validation fraction "
            f"{sp.val_fraction:g} of the rest, seed {sp.seed})"
            + (f": {per_split} patients" if per_split else "") + "." + external
            + " Every run of a subset reuses the split of its first run, so all models are compared on the "
              "same test patients (paired DeLong tests).")


def _evaluated(s) -> str:
    """Whom the study's metrics describe: its test patients or, cross-validated, every patient
    out of fold."""
    return "out-of-fold patients" if s.split.folds else "test patients"


def _grouped_caption(runs: pd.DataFrame, s) -> str:
    """Caption of the grouped AUC figures: what is drawn (SD bars only with two or more backbones)."""
    what = "pooled out-of-fold AUC" if s.split.folds else "test AUC"
    if runs["backbone"].nunique() > 1:
        return f"Mean {what} over backbones (bars ± SD) and each backbone's AUC with DeLong 95% CI."
    return f"{what[0].upper()}{what[1:]} (bars) with DeLong 95% CI (points)."


def _fig_path(out: Path, name: str) -> Path:
    return out / "report" / "figures" / f"{name}.png"


def _roc_figures(out: Path, resolved, analysis) -> list[tuple[str, Path]]:
    s = resolved.study
    res = analysis.results
    figs = []
    groups: dict[tuple, list] = {}
    for _, r in res.iterrows():
        if r["source"] == "tnm" and r["roi"] != "stage":
            continue
        if r["source"] in ("tnm",) + COMPARATOR_SOURCES:     # scores that join every group of their subset
            key = (r["subset"], None)
        elif s.layout == "metastasis":
            key = (r["subset"], r["group"])
        elif s.layout == "units":
            key = (r["subset"], r["unit"])
        else:
            key = (r["subset"], r["backbone"])
        groups.setdefault(key, []).append(r)
    # TNM (key with None) joins every group of its subset
    tnm = {k[0]: v for k, v in groups.items() if k[1] is None}
    for key, rows in groups.items():
        if key[1] is None:
            continue
        rows = rows + tnm.get(key[0], [])
        curves = []
        for r in rows:
            pred = _pred_for(analysis, r)
            if pred is None:
                continue
            test = pred[pred["split"].isin(("test", "oof"))]
            test = test.dropna(subset=["prob"])        # a baseline cannot score a patient missing a covariate
            curves.append({"label": r["model"] if r["source"] in ("tnm", "radiomics") else r["roi_label"],
                           "y_true": test["label"].to_numpy(), "y_score": test["prob"].to_numpy(),
                           "auc": r["auc"], "low": r["auc_low"], "high": r["auc_high"],
                           "ls": "--" if r["source"] == "tnm" else ":" if r["source"] in COMPARATOR_SOURCES else "-"})
        if not curves:
            continue
        sub = rows[0]["subset_label"]
        what = key[1]
        if s.layout == "units":
            what = f"{key[1]} as unit"
        who = _evaluated(s)
        title = f"ROC, {who} — {what}" + (f" ({sub})" if len(s.subsets) > 1 else "")
        name = f"roc_{key[0]}_{key[1]}".replace(" ", "-").replace("/", "-")
        figs.append((title, F.save_png(F.roc_figure(curves, title), _fig_path(out, name))))
    return figs


def _baseline_section(sec, s, analysis) -> None:
    """The clinical baseline and combined model beside the main table: how each was fitted,
    its AUC, and its paired DeLong test against every image model on the same patients."""
    base = analysis.baselines
    if base is None:
        return
    for note in base.notes:
        sec.note(note)
    if not base.models:
        return
    who = _evaluated(s)
    sec.text(f"Clinical baseline and combined model on the same {who}: the clinical covariates alone, fitted on "
             "the training patients, and the image score combined with them, fitted on the validation patients; "
             f"each is tested against every image model with the paired DeLong test on the {who} both score.")
    sec.table("Clinical baseline and combined model", baseline_table(analysis.results, base.models),
              csv_name="baselines")
    d = analysis.baseline_tests
    if len(d):
        d = d.copy()
        if "Difference low" in d:
            d.insert(d.columns.get_loc("Difference") + 1, "Difference 95% CI",
                     [f"{fmt(lo)} to {fmt(hi)}" for lo, hi in zip(d.pop("Difference low"), d.pop("Difference high"))])
        for c in ("AUC A", "AUC B", "Difference", "z"):
            if c in d:
                d[c] = d[c].map(fmt)
        if "p (DeLong, paired)" in d:
            d["p (DeLong, paired)"] = d["p (DeLong, paired)"].map(lambda p: "–" if pd.isna(p) else
                                                                  ("<0.001" if p < 0.001 else f"{p:.3f}"))
        sec.table(f"Paired DeLong tests: clinical baseline and combined model (A) against every image model (B) on "
                  f"the same {who}", d, csv_name="baseline_delong")


def _pred_for(analysis, row) -> pd.DataFrame | None:
    if row["source"] == "tnm":
        return analysis.tnm_predictions.get((row["subset"], row["roi"]))
    key = f"{row['subset']}__{row['roi']}__{row['backbone']}__{row['unit']}"
    return analysis.predictions.get(key)


def build_report(out: Path, cohort_dir: Path, resolved, analysis, steps: pd.DataFrame, seconds: float) -> Path:
    """Write the study's report folder and return the path of report.html."""
    s = resolved.study
    out = Path(out)
    rdir = out / "report"
    res = analysis.results
    oracle_auc = None
    if analysis.oracle and analysis.oracle["subsets"]:
        oracle_auc = next(iter(analysis.oracle["subsets"].values()))["auc"]

    rep = Report(
        title=s.title,
        subtitle=(f"npcai study '{s.name}'" + (f" · design of seed {s.seed_paper}" if s.seed_paper else "")
                  + f" · preset {resolved.preset or 'none'}"),
        facts=[("Study", f"{s.name}" + (f" — {s.reference}" if s.reference else "")), ("Preset", f"{resolved.preset or 'none (the YAML as written)'}"
                                                    + (f": {resolved.preset_description}" if resolved.preset_description else "")),
               ("Cohort", str(Path(cohort_dir).name)), ("Endpoint", s.endpoint),
               ("Models", f"{len(steps)} ({(steps['status'] == 'reused').sum()} reused from earlier runs)"),
               ("Generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                + f" in {seconds / 60:.1f} min")],
        footer="Generated by npcai. Every number is reproducible from OUT/study.yaml and the run folders listed under Runs.",
    )

    sec = rep.section("summary", "Summary")
    sec.text(s.description)
    if analysis.findings:
        sec.bullets(analysis.findings)
    if resolved.preset == "fast":
        sec.note("Preset 'fast': small backbones, low resolution and few epochs so that the study finishes on a "
                 "CPU in minutes. The numbers demonstrate the pipeline; run --preset paper for the seed's protocol.")

    sec = rep.section("methods", "Methods")
    for p in methods_text(Path(cohort_dir), resolved, analysis):
        sec.text(p)

    sec = rep.section("cohort", "Cohort, split and Table 1")
    sec.table("Patients per split (first run of each subset; every other run uses the same split)",
              analysis.splits, csv_name="split")
    if analysis.table1 is not None and len(analysis.table1):
        atomic_csv(rdir / "tables" / "table1.csv", analysis.table1)
        sec.table("Table 1. Clinical characteristics of the patients by split (p: difference between splits)",
                  table1_display(analysis.table1))
    else:
        sec.note("Table 1 could not be made for this cohort (see the log).")

    tables = main_tables(res, s.layout)
    sec = rep.section("main", "Main results")
    if s.split.folds:
        sec.note(f"{s.split.folds}-fold cross-validation: 'test cohort' below means every patient's out-of-fold "
                 "prediction; sensitivity, specificity and F1 use each fold's threshold fixed on its validation "
                 "patients.")
    sec.table(_MAIN_CAPTION[s.layout], tables["main"], csv_name="main_table")
    if "confusion" in tables:
        sec.table("Table 2 layout: confusion matrices of the models and TNM staging in the test cohort "
                  "(threshold fixed on validation patients)", tables["confusion"], csv_name="confusion")
    _baseline_section(sec, s, analysis)
    if "all_models" in tables:   # the generic layout's main table already lists every model
        sec.table("All models: test-patient metrics", tables["all_models"], csv_name="all_models")
    atomic_csv(rdir / "tables" / "results.csv", res)
    if analysis.baselines is not None and analysis.baselines.models:
        atomic_csv(rdir / "tables" / "baseline_predictions.csv", analysis.baselines.predictions_table())
        atomic_csv(rdir / "tables" / "baseline_coefficients.csv", analysis.baselines.coefficients_table())

    if s.split.folds:
        sec = rep.section("cv", "Cross-validation")
        sec.text(f"Patient-level {s.split.folds}-fold cross-validation: the pooled out-of-fold AUC scores every "
                 "labelled patient once, by the fold model that never saw it (DeLong 95% CI); the per-fold AUC "
                 "shows how much one held-out fold varies (mean ± SD over the folds).")
        sec.table("Pooled out-of-fold AUC (95% CI) and per-fold AUC per ROI dataset", cv_table(res),
                  csv_name="cross_validation")

    sec = rep.section("figures", "Figures")
    runs = res[res["source"] == "run"]
    if s.layout == "expansion":
        exp = runs.dropna(subset=["expansion"])
        base = runs[runs["kind"] == "whole-slice"]
        unit = "px"
        fig = F.expansion_figure(exp, unit=unit, baseline=base, oracle_auc=oracle_auc,
                                 title=("Pooled out-of-fold" if s.split.folds else "Test")
                                 + " AUC against expansion of the tumour mask (seed 000, Fig. 4)",
                                 ylabel="Pooled out-of-fold AUC" if s.split.folds else "Patient-level test AUC")
        n_bb = exp["backbone"].nunique()
        sec.figure("AUC against expansion of the region of interest, per backbone with DeLong 95% CI; black: "
                   + ("aAUC ± SD over backbones" if n_bb > 1 else "the backbone's AUC")
                   + ("; red: whole slice" if len(base) else "")
                   + (f"; green: oracle ceiling on the same {_evaluated(s)}" if oracle_auc is not None else "") + ".",
                   F.save_png(fig, _fig_path(out, "auc_vs_expansion")))
    if s.layout == "metastasis":
        fig = F.grouped_auc_figure(runs, group="group", hue="kind", oracle_auc=oracle_auc,
                                   title="Intratumoural vs intra-peritumoural datasets (test AUC)",
                                   group_label="Dataset")
        sec.figure(_grouped_caption(runs, s), F.save_png(fig, _fig_path(out, "auc_by_dataset")))
    if s.layout == "units":
        fig = F.grouped_auc_figure(runs.assign(unit=runs["unit"] + " unit"), group="subset_label", hue="unit",
                                   title="Image vs patient as the training unit (test AUC)",
                                   group_label="Treatment model", oracle_auc=None)
        sec.figure(_grouped_caption(runs, s), F.save_png(fig, _fig_path(out, "auc_by_unit")))
    if s.layout == "prepost":
        conf = res[res["source"].isin(["run", "ensemble"]) | (res["roi"] == "stage")]
        fig = F.confusion_figure(conf, "Confusion matrices, test patients")
        sec.figure("Confusion matrices at the threshold fixed on validation patients.",
                   F.save_png(fig, _fig_path(out, "confusion")))
    for title, path in _roc_figures(out, resolved, analysis):
        sec.figure(title + ". Legend: AUC (DeLong 95% CI).", path)

    sec = rep.section("delong", "DeLong comparisons")
    if len(analysis.delong):
        d = analysis.delong.copy()
        for c in ("AUC A", "AUC B", "Difference", "z"):
            if c in d:
                d[c] = d[c].map(fmt)
        if "p (DeLong, paired)" in d:
            d["p (DeLong, paired)"] = d["p (DeLong, paired)"].map(lambda p: "–" if pd.isna(p) else
                                                                  ("<0.001" if p < 0.001 else f"{p:.3f}"))
        sec.text(f"Paired two-sided DeLong tests on the {_evaluated(s)} that both models share.")
        sec.table("DeLong tests", d, csv_name="delong")
    else:
        sec.note("No pairs to compare.")

    if analysis.oracle:
        sec = rep.section("oracle", "Oracle ceiling (phantom)")
        o = analysis.oracle
        sec.text("This cohort is the synthetic phantom, whose true event probabilities are known. The oracle AUC "
                 "scores those true probabilities against the observed labels: the best any model can reach on "
                 "these patients.")
        rows = [{"Patients": f"{_evaluated(s)} ({k})", "n": v["n"], "Oracle AUC (95% CI)":
                 f"{v['auc']:.3f} ({v['low']:.3f}–{v['high']:.3f})"} for k, v in o["subsets"].items()]
        if o.get("whole_cohort_auc") is not None:
            rows.append({"Patients": "whole cohort", "n": "", "Oracle AUC (95% CI)": f"{o['whole_cohort_auc']:.3f}"})
        from npcai.studies.analysis import chosen_by_validation

        best = chosen_by_validation(analysis, runs[runs["auc"].notna()])   # chosen on validation, never on test
        if best is not None:
            rows.append({"Patients": f"model chosen on validation patients: {best['model']}", "n": int(best["n_test"]),
                         "Oracle AUC (95% CI)": f"{best['auc']:.3f} (model)"})
        sec.table("Oracle AUC", pd.DataFrame(rows), csv_name="oracle")

    from npcai.report.recommendation import recommendation_section   # study 002's Table 3 (residual studies)

    recommendation_section(rep, out, Path(cohort_dir), resolved, steps)

    sec = rep.section("gradcam", "Grad-CAM")
    if analysis.montages:
        for i, (caption, path) in enumerate(analysis.montages):
            dest = _fig_path(out, f"gradcam_{i:02d}_{Path(path).stem}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(Path(path).read_bytes())
            sec.figure(f"Grad-CAM (high-risk class): {caption}", dest)
    if analysis.localisation is not None and len(analysis.localisation):
        sec.text("Share of positive Grad-CAM energy in the tumour, the nodes, bands outside the lesion (pixels of the "
                 "native slice) and the far field, mean over the explained test patients; in brackets the ratio to "
                 "what uniform attention over the network's input would give (>1: the network looks there more "
                 "than chance).")
        sec.table("Grad-CAM localisation", localisation_table(analysis.localisation, analysis.results),
                  csv_name="localisation")
        atomic_csv(rdir / "tables" / "localisation_long.csv", analysis.localisation)
    if not analysis.montages and analysis.localisation is None:
        sec.note("Grad-CAM was not run (--no-explain) or produced no output.")

    sec = rep.section("runs", "Runs and reproducibility")
    st = steps.copy()
    st["run"] = st["run"].map(lambda p: str(Path(p).relative_to(out)) if Path(p).is_relative_to(out) else p)
    sec.table("Training runs and ensembles (reused = finished earlier with identical inputs)", st, csv_name="steps")
    sec.text("Re-run with `npcai study run` and the same options: finished steps are reused; the resolved design is "
             "in study.yaml beside the report.")
    for n in analysis.notes:
        sec.note(n)
    return write_report(rep, rdir)


def _p(p) -> str:
    if p is None or (isinstance(p, float) and pd.isna(p)) or p == "":
        return ""
    p = float(p)
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def table1_display(t1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 for reading: variable names once, p-values rounded, test names kept."""
    t = t1.copy()
    if "variable" in t:
        t["variable"] = t["variable"].where(t["variable"].ne(t["variable"].shift()), "")
    if "p_value" in t:
        t["p_value"] = t["p_value"].map(_p)
    return t.rename(columns={"variable": "Characteristic", "level": "", "p_value": "p", "test_used": "Test"})


def localisation_table(summary: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Runs as rows, regions (px bands and the phantom's signal band) as columns:
    ``mean share (x ratio to uniform)``."""
    label = {Path(r).name: m for r, m in zip(results["run"].astype(str), results["model"])}
    part = summary[summary["scale"].isin(["px", "signal"])]
    rows = []
    for run, g in part.groupby("run", sort=False):
        row = {"Model": label.get(str(run), str(run))}
        if "subset" in g and g["subset"].nunique() == 1 and summary["subset"].nunique() > 1:
            row["Subset"] = g["subset"].iloc[0]
        for _, r in g.iterrows():
            name = str(r["region"]).replace("_", " ")
            ratio = r["share_over_uniform"]
            row[name] = (f"{r['share_mean']:.2f}" + (f" (×{ratio:.1f})" if pd.notna(ratio) else "")
                         if pd.notna(r["share_mean"]) else "–")
        rows.append(row)
    return pd.DataFrame(rows)


def atomic_csv(path: Path, df: pd.DataFrame) -> None:
    from npcai.fsutil import atomic_write_text

    atomic_write_text(path, df.to_csv(index=False))
