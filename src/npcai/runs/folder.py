"""The run folder on disk: the only code that reads or writes one.

::

    RUN/
      config.yaml                 format npcai-run/1; kind train | ensemble | predictions;
                                  options, seed, versions, cohort {path, id}, roi {name, input_hash,
                                  spec (every ROI build parameter)}, ...
      split.csv                   patient_id, split, label
      predictions_slices.csv      roi_row, patient_id, split, slice_index, label, prob
      predictions_patients.csv    patient_id, split, label, prob, n_slices (survival task: label = event,
                                  time, event, treatment, prognostic_score, predictive_score,
                                  log_hazard_ccrt, log_hazard_ic_ccrt, n_slices; slices: attention_*)
      checkpoints/best.ckpt       (train) selected on the validation patients only; last.ckpt for --resume
      history.csv                 (train) epoch, train_loss, val_loss, val_<metric>
      training_curve.png          (train)
      summary.json                counts per split and label, excluded patients, best epoch, ...
      metrics.json, figures/      written by ``npcai evaluate`` (:mod:`npcai.stats.evaluate`)
      histogram_landmarks.json    (train with normalise histogram) the Nyúl–Udupa landmarks learnt on
                                  the training patients (:mod:`npcai.imaging.histogram`); prediction
                                  on any cohort rebuilds the ROI with exactly these

A prediction folder (``npcai predict RUN COHORT --out PRED``) has the same layout with
``kind: predictions``, ``split = external`` and no checkpoints; its config names the source
run, so evaluation fixes the decision threshold on the *run's* validation patients. When the
source is a cross-validated run, the prediction is the soft vote (mean probability) of its
fold models and config.yaml records ``threshold`` {value, source, folds}: the mean of the fold
models' validation thresholds, which evaluation applies unchanged.

A cross-validated run (``kind: cv``, written by :func:`npcai.models.folds.train_folds`) has
the same files with split ``oof`` (out-of-fold) and a ``fold`` column in split.csv and the
patient predictions (+ ``threshold``, its fold's validation threshold), no checkpoints, and
one complete training run per fold in ``folds/fold1 .. foldK/`` (config ``fold_runs``).

A training run is built in ``.RUN.partial/`` beside ``RUN`` and renamed when complete.

Examples:
    >>> run = read_run("runs/r1")                       # doctest: +SKIP
    >>> run.split_patients("test")[["label", "prob"]]   # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from npcai.errors import NpcaiError
from npcai.fsutil import atomic_write_text, file_sha256

__all__ = ["RUN_FORMAT", "KINDS", "CONFIG", "SPLIT", "PATIENTS", "SLICES", "SUMMARY", "HISTORY", "LANDMARKS",
           "run_landmarks",
           "RoiSpec", "RunConfig", "Predictions", "RunFolder", "package_versions", "partial_dir",
           "cohort_id", "read_config", "read_split", "read_predictions", "read_summary", "read_history",
           "read_run", "write_run", "write_yaml", "write_json", "write_csv", "check_cohort", "check_roi",
           "is_finished", "RunSummary", "ROI_SPEC_KEYS"]

log = logging.getLogger(__name__)

RUN_FORMAT = "npcai-run/1"
KINDS = ("train", "ensemble", "predictions", "cv")
CONFIG, SPLIT, SUMMARY, HISTORY = "config.yaml", "split.csv", "summary.json", "history.csv"
PATIENTS, SLICES = "predictions_patients.csv", "predictions_slices.csv"
LANDMARKS = "histogram_landmarks.json"
_PATIENT_COLUMNS = ("patient_id", "split", "label", "prob")
_SURVIVAL_PATIENT_COLUMNS = ("patient_id", "split", "label", "prognostic_score", "predictive_score",
                             "log_hazard_ccrt", "log_hazard_ic_ccrt")   # + time, event, treatment when known
# the ROI build parameters a run needs to rebuild its input for unseen patients (variant.json keys)
ROI_SPEC_KEYS = ("variant", "region", "slices", "sequences", "timepoint", "mask", "size",
                 "min_component", "frame", "normalisation")


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's numbers (the one list every writer uses)."""
    from importlib import metadata

    import npcai

    out = {"python": platform.python_version(), "npcai": npcai.__version__}
    for name in ("torch", "torchvision", "timm", "lightning", "segmentation-models-pytorch", "monai", "numpy",
                 "pandas", "scipy", "scikit-learn", "lifelines", "grad-cam", "SimpleITK", "pydicom", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def partial_dir(out: str | Path) -> Path:
    """The folder a run is built in before it is renamed to ``out``."""
    out = Path(out).resolve()
    return out.parent / f".{out.name}.partial"


def cohort_id(cohort_dir: str | Path) -> str:
    """The identity of a cohort's patients and clinical data: SHA-256 over its patient list and
    ``clinical.csv`` (unchanged by ``npcai segment predict`` or ROI builds, changed by any
    re-ingest that alters patients or their clinical values)."""
    from npcai.cohort.model import Cohort

    cohort = Cohort.load(cohort_dir)
    h = hashlib.sha256("\n".join(sorted(cohort.patient_ids)).encode())
    clinical = Path(cohort_dir) / "clinical.csv"
    h.update(file_sha256(clinical).encode() if clinical.is_file() else b"no clinical.csv")
    return h.hexdigest()


# ---------------------------------------------------------------------------- writers
def write_yaml(path: Path, data: dict) -> None:
    plain = json.loads(json.dumps(data, default=str))  # numpy / version objects -> plain YAML types
    atomic_write_text(path, yaml.safe_dump(plain, sort_keys=False, default_flow_style=False))


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")


def write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False, float_format="%.9g"))


# ---------------------------------------------------------------------------- typed views
@dataclass(frozen=True)
class RoiSpec:
    """How a run's input was built: enough to rebuild it for patients the run never saw.

    Attributes:
        name: the ROI cache's name in the training cohort.
        params: the build parameters (:data:`ROI_SPEC_KEYS`: variant, region, frame, slices rule,
            sequences, timepoint, mask source, size, normalisation and any fitted parameters).
        input_hash: the cache's input hash when the run was trained.
        channels: the channel names (e.g. ``["T1c"]`` or ``["pre:T1c", "post:T1c"]``).
    """

    name: str
    params: dict[str, Any]
    input_hash: str
    channels: tuple[str, ...] = ()

    @classmethod
    def of(cls, roi) -> "RoiSpec":
        """The spec of an open :class:`~npcai.imaging.roi_cache.RoiDataset`."""
        params = {k: roi.params[k] for k in ROI_SPEC_KEYS if k in roi.params}
        params.update({k: v for k, v in roi.params.items() if k.startswith("fitted")})
        return cls(roi.root.name, params, roi.input_hash, tuple(roi.params.get("channels", ())))

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`npcai.imaging.roi_cache.build_roi` that rebuild this input."""
        p = dict(self.params)
        kwargs = {k: p[k] for k in ("region", "slices", "timepoint", "mask", "size", "frame") if k in p}
        kwargs["sequences"] = tuple(p.get("sequences", ("T1c",)))
        if "min_component" in p:
            kwargs["min_component"] = tuple(p["min_component"])
        if "normalisation" in p:
            kwargs["normalise"] = p["normalisation"]
        return {"variant": p["variant"], **kwargs}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "input_hash": self.input_hash, "spec": dict(self.params),
                "channels": list(self.channels)}


@dataclass
class RunConfig:
    """A run's ``config.yaml``, typed.

    Attributes:
        path: the run folder.
        kind: ``train``, ``ensemble``, ``predictions`` or ``cv`` (cross-validated).
        options: the training options (``TrainConfig`` fields) or, for the other kinds, the
            identity keys (endpoint, roi, backbone, cohort).
        cohort_path: the cohort the predictions are about (None when not recorded).
        cohort_id: :func:`cohort_id` of that cohort when the run was written.
        roi: the :class:`RoiSpec` of a training run (None for ensembles).
        members: ensemble member run folders.
        source_run: for a prediction folder, the run that made the predictions.
        raw: the whole document.
    """

    path: Path
    kind: str
    options: dict[str, Any]
    cohort_path: Path | None
    cohort_id: str | None
    roi: RoiSpec | None
    members: list[Path]
    source_run: dict[str, Any] | None
    raw: dict[str, Any]

    def option(self, key: str, default=None):
        value = self.options.get(key)
        return default if value is None else value

    @property
    def endpoint(self) -> str | None:
        return self.option("endpoint")

    @property
    def backbone(self) -> str | None:
        return self.option("backbone")

    @property
    def roi_name(self) -> str | None:
        return self.option("roi")

    @property
    def method(self) -> str:
        """``deep`` (a network trained by npcai) or ``radiomics`` (elastic net on handcrafted
        features, :mod:`npcai.radiomics`)."""
        return str(self.raw.get("method") or "deep")


def _config_from_doc(run_dir: Path, doc: dict[str, Any]) -> RunConfig:
    opts = doc.get("options") if isinstance(doc.get("options"), dict) else {}
    cohort = doc.get("cohort") if isinstance(doc.get("cohort"), dict) else {}
    cohort_path = cohort.get("path") or opts.get("cohort")
    if cohort_path is not None:
        cohort_path = Path(cohort_path)
        if not cohort_path.is_absolute() and not cohort_path.exists() and (run_dir / cohort_path).exists():
            cohort_path = run_dir / cohort_path
    roi = None
    r = doc.get("roi")
    if isinstance(r, dict) and r.get("spec"):
        roi = RoiSpec(str(r.get("name")), dict(r["spec"]), str(r.get("input_hash", "")),
                      tuple(r.get("channels") or ()))
    members = [Path(m["path"] if isinstance(m, dict) else m) for m in doc.get("members", [])]
    return RunConfig(path=run_dir, kind=str(doc.get("kind", "train")), options=dict(opts),
                     cohort_path=cohort_path, cohort_id=cohort.get("id"), roi=roi, members=members,
                     source_run=doc.get("source_run"), raw=doc)


def read_config(run_dir: str | Path) -> RunConfig:
    """A run's config.yaml (fails with one line when the folder is not a run)."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not path.is_file():
        raise NpcaiError(f"{run_dir}: not an npcai run (no {CONFIG}); create one with `npcai train`")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise NpcaiError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); write the run again") from exc
    if not isinstance(doc, dict) or doc.get("format") != RUN_FORMAT:
        raise NpcaiError(f"{path}: not an {RUN_FORMAT} config; write the run again")
    if doc.get("kind", "train") not in KINDS:
        raise NpcaiError(f"{path}: kind {doc.get('kind')!r} is not one of {', '.join(KINDS)}")
    return _config_from_doc(run_dir, doc)


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise NpcaiError(f"{path}: missing; the run did not finish (write it again)")
    try:
        df = pd.read_csv(path, dtype={"patient_id": str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise NpcaiError(f"{path}: cannot read ({str(exc).splitlines()[0]}); write the run again") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise NpcaiError(f"{path}: column {missing[0]!r} missing (expected {', '.join(required)}); "
                         "write the run again")
    for col in ("prob", "label"):
        if col in df.columns and col in required:
            values = pd.to_numeric(df[col], errors="coerce")
            bad = values.isna() & df[col].notna()
            if bad.any():
                raise NpcaiError(f"{path}: column {col!r} has a non-numeric value {df[col][bad].iloc[0]!r} "
                                 f"(row {int(bad.idxmax()) + 2}); write the run again")
            df[col] = values
    _check_prediction_values(path, df, required)
    return df


def _check_prediction_values(path: Path, df: pd.DataFrame, required: tuple[str, ...]) -> None:
    """``prob`` present and within [0, 1] in every row; ``label`` 0, 1 or empty (unknown).

    pandas reads "n/a", "NA" or an empty cell as missing, so a damaged probability would
    otherwise slip through as NaN and silently drop or mis-rank a patient.
    """
    def where(mask) -> str:
        i = int(mask.to_numpy().argmax())
        who = f"patient {df['patient_id'].iloc[i]}, " if "patient_id" in df.columns else ""
        return f"{who}row {i + 2}"

    if "prob" in required and "prob" in df.columns:
        prob = df["prob"]
        if prob.isna().any():
            raise NpcaiError(f"{path}: column 'prob' is empty or NaN, not a number ({where(prob.isna())}); "
                             "write the run again")
        out = (prob < 0) | (prob > 1)
        if out.any():
            raise NpcaiError(f"{path}: column 'prob' has {prob[out].iloc[0]!r} ({where(out)}), not a "
                             "probability in [0, 1]; write the run again")
    if "label" in required and "label" in df.columns:
        bad = df["label"].notna() & ~df["label"].isin([0, 1])
        if bad.any():
            raise NpcaiError(f"{path}: column 'label' has {df['label'][bad].iloc[0]!r} ({where(bad)}); labels are "
                             "0, 1 or empty; write the run again")


def read_split(run_dir: str | Path) -> pd.DataFrame:
    """A run's split.csv (split, label) indexed by patient_id."""
    df = _read_csv(Path(run_dir) / SPLIT, ("patient_id", "split"))
    return df.set_index("patient_id")


@dataclass
class Predictions:
    """Slice and patient predictions (the run-folder CSVs).

    Attributes:
        patients: one row per patient: patient_id, split, label (NaN when unknown), prob, n_slices.
        slices: one row per ROI slice: roi_row, patient_id, split, slice_index, label, prob (or None).
        info: how they were made (:func:`npcai.runs.predict_patients`: ROI used, skipped patients).
    """

    patients: pd.DataFrame
    slices: pd.DataFrame | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def split_patients(self, split: str, *, where: str = "predictions") -> pd.DataFrame:
        """Patient rows of one split, indexed by patient_id; fails when there are none."""
        d = self.patients[self.patients["split"] == split].set_index("patient_id")
        if d.empty:
            have = ", ".join(sorted(self.patients["split"].astype(str).unique())) or "none"
            raise NpcaiError(f"{where}: no patients in split {split!r} (splits present: {have})")
        return d


def _patient_columns(path: Path) -> tuple[str, ...]:
    """Required columns: a survival run's patients carry scores and outcomes instead of ``prob``."""
    try:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return _PATIENT_COLUMNS            # _read_csv reports the problem
    return _SURVIVAL_PATIENT_COLUMNS if "prognostic_score" in header else _PATIENT_COLUMNS


def read_predictions(run_dir: str | Path) -> Predictions:
    """``predictions_patients.csv`` (one row per patient, checked) and ``predictions_slices.csv``."""
    run_dir = Path(run_dir)
    patients = _read_csv(run_dir / PATIENTS, _patient_columns(run_dir / PATIENTS))
    dup = patients["patient_id"][patients["patient_id"].duplicated()]
    if len(dup):
        raise NpcaiError(f"{run_dir / PATIENTS}: patient {dup.iloc[0]} appears more than once; "
                         "one row per patient expected")
    spath = run_dir / SLICES
    survival = "prognostic_score" in patients.columns
    slices = _read_csv(spath, ("roi_row", "patient_id", "split") if survival else _PATIENT_COLUMNS) \
        if spath.is_file() else None
    return Predictions(patients, slices)


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        raise NpcaiError(f"{path}: missing; the run did not finish (write it again)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NpcaiError(f"{path}: not valid JSON ({exc}); write the run again") from exc


def read_history(run_dir: str | Path) -> pd.DataFrame:
    return _read_csv(Path(run_dir) / HISTORY, ("epoch",))


def is_finished(run_dir: str | Path) -> bool:
    """True when the folder holds a complete run (config and patient predictions)."""
    run_dir = Path(run_dir)
    return (run_dir / CONFIG).is_file() and (run_dir / PATIENTS).is_file()


# ---------------------------------------------------------------------------- provenance
def check_cohort(config: RunConfig, cohort_dir: str | Path, what: str) -> None:
    """Refuse (one line naming both ids) when ``cohort_dir`` is not the cohort the run recorded."""
    if config.cohort_id is None:
        raise NpcaiError(f"{config.path / CONFIG}: records no cohort id, so {what} cannot check that "
                         f"{cohort_dir} is the run's cohort; train the run again")
    now = cohort_id(cohort_dir)
    if now != config.cohort_id:
        raise NpcaiError(f"{what}: cohort {cohort_dir} (id {now[:12]}) is not the cohort run "
                         f"{config.path.name} was trained on (id {config.cohort_id[:12]}); "
                         "its patients or clinical data changed")


def check_roi(config: RunConfig, roi, what: str) -> None:
    """Refuse when the ROI cache ``roi`` was rebuilt since the run recorded its input hash."""
    recorded = config.roi.input_hash if config.roi else None
    if not recorded:
        raise NpcaiError(f"{config.path / CONFIG}: records no ROI input hash; train the run again")
    if roi.input_hash != recorded:
        raise NpcaiError(f"{what}: ROI dataset {roi.root.name!r} has input hash {roi.input_hash[:12]} but run "
                         f"{config.path.name} was trained on {recorded[:12]}; the cache was rebuilt with "
                         "other parameters or inputs")


# ---------------------------------------------------------------------------- one run
@dataclass
class RunFolder:
    """A run (or prediction) folder's config and predictions: what evaluation reads.

    Attributes:
        path: the folder; ``name`` its name.
        config: the :class:`RunConfig`.
        predictions: the :class:`Predictions`.
        cohort: the cohort the predictions are about (None if not recorded).
        endpoint, roi, backbone: identity (backbone "ensemble"-like joins for ensembles).
    """

    path: Path
    name: str
    config: RunConfig
    predictions: Predictions
    cohort: Path | None
    endpoint: str | None
    roi: str | None
    backbone: str | None

    @property
    def patients(self) -> pd.DataFrame:
        return self.predictions.patients

    @property
    def slices(self) -> pd.DataFrame | None:
        return self.predictions.slices

    @property
    def default_split(self) -> str:
        """The split evaluated by default: ``external`` for prediction folders, ``oof`` for
        cross-validated runs, else ``test``."""
        return {"predictions": "external", "cv": "oof"}.get(self.config.kind, "test")

    def split_patients(self, split: str) -> pd.DataFrame:
        return self.predictions.split_patients(split, where=str(self.path / PATIENTS))

    def recorded_threshold(self) -> dict[str, Any] | None:
        """The decision threshold a prediction folder records (``config.yaml["threshold"]``:
        {value, source, folds}), written when a cross-validated run predicted: the mean of its
        fold models' validation thresholds. None for every other folder (their threshold is
        fixed on validation patients by :meth:`validation`)."""
        if self.config.kind != "predictions":
            return None
        thr = self.config.raw.get("threshold")
        if not isinstance(thr, dict) or thr.get("value") is None:
            return None
        try:
            value = float(thr["value"])
        except (TypeError, ValueError):
            raise NpcaiError(f"{self.path / CONFIG}: threshold {thr['value']!r} is not a number; predict again") from None
        return {**thr, "value": value}

    def validation(self) -> pd.DataFrame:
        """The validation patients that fix the decision threshold (indexed by patient_id):
        the run's own, or for a prediction folder those of the run that predicted; empty for a
        prediction folder that records its threshold (:meth:`recorded_threshold`)."""
        if self.config.kind != "predictions":
            return self.patients[self.patients["split"] == "val"].set_index("patient_id")
        if self.recorded_threshold() is not None:
            return self.patients.iloc[:0].set_index("patient_id")
        src = self.config.source_run or {}
        source = Path(str(src.get("path", "")))
        if not (source / PATIENTS).is_file():
            raise NpcaiError(f"{self.path / CONFIG}: the run that made these predictions ({source}) is not "
                             "there; its validation patients fix the threshold — move it back")
        if src.get("predictions_sha256") and file_sha256(source / PATIENTS) != src["predictions_sha256"]:
            raise NpcaiError(f"{self.path}: run {source} changed since it made these predictions "
                             f"({PATIENTS} hash differs); predict again")
        pred = read_predictions(source).patients
        return pred[pred["split"] == "val"].set_index("patient_id")


def read_run(run_dir: str | Path) -> RunFolder:
    """Open a run or prediction folder's config and predictions (files only, no model)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    preds = read_predictions(run_dir)
    roi, backbone = cfg.roi_name, cfg.backbone
    cohort = cfg.cohort_path
    if cfg.kind == "ensemble":
        cohort, roi, backbone = _ensemble_identity(cfg, cohort, roi, backbone)
    return RunFolder(path=run_dir, name=run_dir.resolve().name, config=cfg, predictions=preds,
                     cohort=cohort, endpoint=cfg.endpoint, roi=roi, backbone=backbone)


def _ensemble_identity(cfg: RunConfig, cohort, roi, backbone):
    """An ensemble takes its cohort from its members (they must agree), its dataset name from
    their ROI names joined by "+" and its model from their backbones."""
    members = []
    for path in cfg.members:
        try:
            members.append(read_config(path))
        except NpcaiError as exc:
            raise NpcaiError(f"{cfg.path / CONFIG}: member run {path} cannot be read ({exc}); "
                             "move the member runs back or build the ensemble again") from exc
    if cohort is None and members:
        cohorts = {str(c.cohort_path) for c in members}
        if len(cohorts) > 1:
            raise NpcaiError(f"{cfg.path}: ensemble members come from different cohorts "
                             f"({', '.join(sorted(cohorts))}); evaluate them separately")
        cohort = Path(cohorts.pop())

    def joined(key: str) -> str:
        return "+".join(dict.fromkeys(str(c.option(key)) for c in members))

    roi = roi or (joined("roi") if members else None)
    backbone = backbone or (joined("backbone") if members else "ensemble")
    return cohort, roi, backbone


@dataclass
class RunSummary:
    """A few typed fields of summary.json (the rest stays in ``raw``)."""

    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def endpoint_cutoff(self) -> float | None:
        value = self.raw.get("endpoint_cutoff_months")
        return None if value is None else float(value)


def run_landmarks(run_dir: str | Path) -> Path | None:
    """The histogram landmarks a run learnt on its training patients (None when it learnt none)."""
    path = Path(run_dir) / LANDMARKS
    return path if path.is_file() else None


def write_run(folder: str | Path, *, config: dict[str, Any] | None = None, split: pd.DataFrame | None = None,
              slices: pd.DataFrame | None = None, patients: pd.DataFrame | None = None,
              history: pd.DataFrame | None = None, summary: dict[str, Any] | None = None,
              landmarks: str | Path | None = None) -> Path:
    """Write the given parts of a run folder (each file atomically; config.yaml last, so a
    folder whose config and predictions both exist is complete). ``landmarks``: a histogram
    landmarks file whose byte-identical copy the run keeps (:data:`LANDMARKS`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if landmarks is not None:
        atomic_write_text(folder / LANDMARKS, Path(landmarks).read_text())
    for name, df in ((SPLIT, split), (SLICES, slices), (PATIENTS, patients), (HISTORY, history)):
        if df is not None:
            write_csv(folder / name, df)
    if summary is not None:
        write_json(folder / SUMMARY, summary)
    if config is not None:
        write_yaml(folder / CONFIG, config)
    return folder
