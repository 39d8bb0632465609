"""What ``npcai serve MODEL_DIR`` serves: the folder, its run, its model card and its form.

``MODEL_DIR`` is either

- a **run** (``npcai train``): a classifier; the page offers its risk, its place among the
  run's training/validation patients, Grad-CAM with localisation shares and a model card;
- a **study** (``npcai study run``): the run with the highest *validation* AUC among its
  trained runs is served (the test patients choose nothing), with the same sections.

A cross-validated run (``npcai train --folds K``) or study is refused with one line naming a fold
run to serve instead (``RUN/folds/fold1``, a complete training run): the page describes one
network (its Grad-CAM, its training patients as reference, its model card), while a CV run's
prediction is the vote of K. ``npcai predict CVRUN COHORT`` scores new patients with that vote.

Survival, nomogram and treatment-recommendation outputs join :attr:`ServedModel.outputs`
as those packages land; the page draws one section per available output.

Examples:
    >>> served = open_model("demo/study")          # doctest: +SKIP
    >>> served.card.test_auc                         # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["ClinicalField", "ModelCard", "ServedModel", "open_model", "validate_clinical_values",
           "FOLDER_KINDS"]

log = logging.getLogger(__name__)

#: what each kind of MODEL_DIR offers (the CLI's --help and GET /api/model show it)
FOLDER_KINDS = {
    "run": "a classifier run (npcai train): risk with its place among the training patients, Grad-CAM "
           "with localisation shares, model card",
    "study": "a finished study (npcai study run): its run with the best validation AUC, served as a run",
}

#: why a cross-validated run is not served: its K fold models vote, but the page's Grad-CAM, reference
#: distribution and model card describe one network
CV_REFUSAL = "K fold models and no single network for the page's Grad-CAM, reference patients and model card"

INTENDED_USE = ("Research use only, not a medical device. For researchers and clinicians exploring how this "
                "model, trained on one retrospective cohort, responds to one pre-treatment MRI of a patient with "
                "nasopharyngeal carcinoma. It must not guide diagnosis or treatment.")


@dataclass(frozen=True)
class ClinicalField:
    """One input of the clinical form (validated on the server; the page shows the same rules)."""

    name: str
    label: str
    unit: str = ""
    kind: str = "number"                     # number | choice
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    integer: bool = False
    required: bool = True
    why: str = ""

    def rule(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        return f"{self.minimum:g}-{self.maximum:g}{(' ' + self.unit) if self.unit else ''}"


@dataclass
class ModelCard:
    """The facts the page, the API and the report show about the served model."""

    kind: str
    name: str
    endpoint: str
    endpoint_description: str
    backbone: str
    unit: str
    roi: dict[str, Any]
    patients: dict[str, int]
    trained: str
    best_epoch: int | None
    val_auc: float | None
    test_auc: dict[str, Any] | None
    test_c_index: dict[str, Any] | None
    threshold: dict[str, Any] | None
    external: str
    selection: str
    intended_use: str
    limits: list[str]
    outputs: list[str]
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ServedModel:
    """An opened MODEL_DIR, ready to score patients.

    Attributes:
        path: MODEL_DIR as given.
        run_dir: the run that scores.
        run: its :class:`npcai.runs.LoadedRun`.
        card: the :class:`ModelCard`.
        roi_params: the ROI build parameters the run was trained on (``variant.json``).
        net_size: the network's input side in px.
        reference: patient probabilities of the run's training and validation patients.
        fields: the clinical form.
        population: per clinical field, the training patients' range (number) or values (choice).
    """

    path: Path
    run_dir: Path
    run: Any
    card: ModelCard
    roi_params: dict[str, Any]
    net_size: int
    reference: np.ndarray
    fields: list[ClinicalField]
    population: dict[str, Any] = field(default_factory=dict)

    @property
    def outputs(self) -> list[str]:
        return self.card.outputs


# --------------------------------------------------------------------------- open
def _is_run(path: Path) -> bool:
    from npcai.runs import is_finished

    return is_finished(path)


def _study_run(study: Path) -> tuple[Path, str]:
    """The trained run of a study with the highest validation AUC, and how it was chosen."""
    runs = sorted(p for p in (study / "runs").iterdir() if p.is_dir() and _is_run(p))
    best, best_auc = None, -np.inf
    for run in runs:
        cfg_kind = _config(run).kind
        summary = _summary(run)
        auc = summary.get("val_auc")
        if cfg_kind != "train" or auc is None or not np.isfinite(float(auc)):
            continue
        if float(auc) > best_auc:
            best, best_auc = run, float(auc)
    if best is None:
        cv = [run for run in runs if _config(run).kind == "cv"]
        if cv:
            raise NpcaiError(f"{study}: its runs are cross-validated ({CV_REFUSAL}); serve a fold run, "
                             f"e.g. {cv[0] / 'folds' / 'fold1'}, or a study without folds")
        raise NpcaiError(f"{study}: no finished training run with a validation AUC under runs/; "
                         "finish the study with `npcai study run`")
    return best, (f"highest validation AUC ({best_auc:.3f}) among the study's {len(runs)} runs; "
                  "the test patients chose nothing")


def _config(run: Path):
    """The run's :class:`npcai.runs.RunConfig`."""
    from npcai.runs import read_config

    return read_config(run)


def _summary(run: Path) -> dict[str, Any]:
    """The run's summary.json (empty when the run wrote none)."""
    from npcai.runs import read_summary

    try:
        return read_summary(run)
    except NpcaiError as exc:
        log.warning("%s", exc)
        return {}


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NpcaiError(f"{path}: not valid JSON ({exc}); re-run the command that wrote it") from exc


def open_model(path: str | Path) -> ServedModel:
    """Open a run or study folder for serving.

    Raises:
        NpcaiError: the folder is neither, the run is an ensemble, or its files are missing.
    """
    from npcai.runs import load_run

    path = Path(path)
    if not path.is_dir():
        raise NpcaiError(f"{path}: folder not found; give a run (npcai train) or study (npcai study run) folder")
    if _is_run(path):
        kind, run_dir, selection = "run", path, "the run given"
    elif (path / "study.yaml").is_file() and (path / "runs").is_dir():
        kind = "study"
        run_dir, selection = _study_run(path)
    else:
        raise NpcaiError(f"{path}: neither a finished run nor a study (study.yaml + runs/); "
                         "serve a folder written by `npcai train` or `npcai study run`")
    cfg = _config(run_dir)
    if cfg.kind == "cv":
        raise NpcaiError(f"{run_dir}: a cross-validated run ({CV_REFUSAL}); serve one of its fold runs, "
                         f"e.g. {run_dir / 'folds' / 'fold1'}, or a run trained without --folds")
    if cfg.kind != "train":
        raise NpcaiError(f"{run_dir}: a {cfg.kind} folder cannot be served yet; serve a training run")
    run = load_run(run_dir)
    opt = cfg.options
    roi_params = dict(run.roi.params)
    if roi_params.get("mask") == "auto":
        raise NpcaiError(f"{run_dir}: trained on automatic masks; serving needs the drawn tumour contour, so serve "
                         "a run trained on manual contours")
    net_size = int((cfg.raw.get("resolved") or {}).get("input_size") or run.roi.images.shape[-1])
    preds = run.predictions("patients")
    reference = preds.loc[preds["split"].isin(["train", "val"]), "prob"].to_numpy(dtype=float)
    metrics = _metrics(run_dir)
    summary = _summary(run_dir)
    clinical = _training_clinical(opt["cohort"], run.split)
    fields = _fields(clinical)
    card = _card(kind, path, run_dir, cfg, summary, metrics, roi_params, selection)
    return ServedModel(path=path, run_dir=run_dir, run=run, card=card, roi_params=roi_params, net_size=net_size,
                       reference=reference, fields=fields, population=_population(clinical, fields))


def _metrics(run_dir: Path) -> dict[str, Any]:
    """RUN/metrics.json (``npcai evaluate``), else the same numbers computed now (nothing written)."""
    from npcai.stats.evaluate import evaluate_run

    found = _json(run_dir / "metrics.json")
    if found:
        return found
    try:
        return evaluate_run(run_dir, write=False, figures=False, n_boot=200, tnm=False)
    except NpcaiError as exc:
        log.warning("%s: no test metrics for the model card (%s)", run_dir.name, exc)
        return {}


def _training_clinical(cohort: str, split: pd.DataFrame) -> pd.DataFrame | None:
    """The clinical table of the run's training and validation patients (None when unreadable)."""
    from npcai.cohort.model import Cohort

    try:
        clin = Cohort.load(cohort).clinical()
    except NpcaiError as exc:
        log.warning("training cohort unreadable (%s); no population check on the form values", exc)
        return None
    clin = clin.set_index("patient_id") if "patient_id" in clin.columns else clin
    keep = split.index[split["split"].isin(["train", "val"])]
    return clin.loc[clin.index.intersection(keep)]


_BASE_FIELDS = (
    ClinicalField("age", "Age at diagnosis", "years", minimum=0, maximum=120,
                  why="checked against the training patients' ages"),
    ClinicalField("t_stage", "T stage (AJCC 8th)", "", minimum=1, maximum=4, integer=True,
                  why="checked against the training patients' T stages"),
    ClinicalField("n_stage", "N stage (AJCC 8th)", "", minimum=0, maximum=3, integer=True,
                  why="checked against the training patients' N stages"),
)


def _fields(clinical: pd.DataFrame | None) -> list[ClinicalField]:
    """The form: age, T and N stage, and the treatment when the training patients had one recorded."""
    from npcai.cohort.clinical_schema import TREATMENTS

    fields = list(_BASE_FIELDS)
    if clinical is not None and "treatment" in clinical.columns and clinical["treatment"].notna().any():
        fields.append(ClinicalField("treatment", "Planned treatment", kind="choice", choices=TREATMENTS,
                                    why="the model was trained on patients of these treatments"))
    return fields


def _population(clinical: pd.DataFrame | None, fields: list[ClinicalField]) -> dict[str, Any]:
    if clinical is None:
        return {}
    pop: dict[str, Any] = {}
    for f in fields:
        if f.name not in clinical.columns:
            continue
        col = clinical[f.name].dropna()
        if col.empty:
            continue
        if f.kind == "choice":
            pop[f.name] = sorted({str(v) for v in col})
        else:
            values = pd.to_numeric(col, errors="coerce").dropna()
            if not values.empty:
                pop[f.name] = (float(values.min()), float(values.max()))
    return pop


def validate_clinical_values(served: ServedModel, values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Check the form values; returns (typed values, population warnings).

    Raises:
        UploadError: a required value is missing, not a number, out of range, or unknown (422).
    """
    from npcai.serve.upload import UploadError

    known = {f.name for f in served.fields}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UploadError(f"clinical: unknown field(s) {', '.join(map(repr, unknown[:5]))}; "
                          f"the model asks for {', '.join(sorted(known))}")
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for f in served.fields:
        raw = values.get(f.name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if f.required:
                raise UploadError(f"clinical: {f.label} ({f.name}) is missing; enter {f.rule()}")
            continue
        if f.kind == "choice":
            v = str(raw).strip()
            if v not in f.choices:
                raise UploadError(f"clinical: {f.label} ({f.name}) {v[:40]!r} is not valid; enter {f.rule()}")
        else:
            try:
                v = float(str(raw).strip())
            except ValueError:
                raise UploadError(f"clinical: {f.label} ({f.name}) {str(raw)[:40]!r} is not a number; "
                                  f"enter {f.rule()}") from None
            if not np.isfinite(v) or v < f.minimum or v > f.maximum:
                raise UploadError(f"clinical: {f.label} ({f.name}) {v:g} is outside {f.rule()}; check the value")
            if f.integer:
                if v != int(v):
                    raise UploadError(f"clinical: {f.label} ({f.name}) {v:g} must be a whole number ({f.rule()})")
                v = int(v)
        out[f.name] = v
        seen = served.population.get(f.name)
        if seen is None:
            continue
        if f.kind == "choice" and v not in seen:
            warnings.append(f"{f.label} {v} was not among the training patients ({', '.join(seen)}): "
                            "the model has not seen such patients")
        elif f.kind != "choice" and not (seen[0] <= v <= seen[1]):
            warnings.append(f"{f.label} {v:g} lies outside the training patients' range ({seen[0]:g}-{seen[1]:g}"
                            f"{(' ' + f.unit) if f.unit else ''}): the model has not seen such patients")
    return out, warnings


# --------------------------------------------------------------------------- card
def _trained_date(run_dir: Path) -> str:
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    stamp = (ckpt if ckpt.is_file() else run_dir).stat().st_mtime
    return _dt.datetime.fromtimestamp(stamp, _dt.timezone.utc).strftime("%Y-%m-%d")


def _card(kind: str, path: Path, run_dir: Path, cfg, summary: dict, metrics: dict, roi_params: dict,
          selection: str) -> ModelCard:
    opt = cfg.options
    splits = summary.get("splits") or {}
    patients = {k: int((splits.get(k) or {}).get("patients", 0)) for k in ("train", "val", "test")}
    auc = (metrics.get("patient") or {}).get("auc")
    cidx = metrics.get("c_index")
    if cidx and "unavailable" in cidx:
        cidx = {"unavailable": cidx["unavailable"]}
    thr = metrics.get("threshold")
    limits = [
        f"Trained on {patients['train'] + patients['val']} patients of one cohort "
        f"({patients['train']} training, {patients['val']} validation); tested on {patients['test']}.",
        "No external validation is recorded for this run: performance at another hospital, scanner or "
        "protocol is unknown.",
        f"Needs a pre-treatment {'/'.join(roi_params.get('sequences', []))} MRI with the primary tumour contoured; "
        f"the image is cropped as '{roi_params.get('variant')}' around the contour, so the contour shapes the "
        "prediction.",
        "The risk is the model's probability, not a calibrated clinical probability; no interval is given "
        "for a single patient.",
        "Grad-CAM shows where the network's evidence lies, not why; it is no proof that the model is right.",
    ]
    if summary.get("excluded", {}).get("count"):
        limits.append(f"{summary['excluded']['count']} cohort patients had no label for this endpoint "
                      "and were not used.")
    return ModelCard(
        kind=kind, name=path.resolve().name if kind == "study" else run_dir.resolve().name,
        endpoint=str(opt.get("endpoint")), endpoint_description=str(summary.get("endpoint_description") or ""),
        backbone=str(opt.get("backbone")) + (f" x {opt['members']} (deep ensemble)" if (opt.get("members") or 1) > 1
                                             else ""), unit=str(opt.get("unit")),
        roi={k: roi_params.get(k) for k in ("variant", "region", "slices", "sequences", "timepoint", "size",
                                              "normalisation")},
        patients=patients, trained=_trained_date(run_dir), best_epoch=summary.get("best_epoch"),
        val_auc=summary.get("val_auc"),
        test_auc={k: auc.get(k) for k in ("auc", "low", "high", "n_pos", "n_neg")} if auc else None,
        test_c_index={k: v for k, v in cidx.items() if k in ("c_index", "low", "high", "kind", "unavailable")}
        if cidx else None,
        threshold={"value": thr.get("value"), "source": thr.get("source")} if thr else None,
        external="none recorded", selection=selection, intended_use=INTENDED_USE, limits=limits,
        outputs=["risk", "gradcam"], versions=dict(cfg.raw.get("versions") or {}))
