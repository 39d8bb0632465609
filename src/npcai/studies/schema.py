"""The study YAML: a seed paper's design as data (ROI variants x backbones x units x endpoint).

A study file lists the ROI datasets, backbones, training units, patient subsets and the
endpoint of one seed study, the training settings the paper used, and named *presets*
that override parts of it (``paper`` = the seed's own settings, ``fast`` = small backbones
and resolution for a 2-core CPU). :func:`load_study` validates a file and
:meth:`Study.resolve` applies a preset and command-line overrides, giving the
:class:`ResolvedStudy` whose :meth:`~ResolvedStudy.steps` the runner executes.

Examples:
    >>> from npcai.studies.schema import load_study
    >>> study = load_study("peritumoral")
    >>> resolved = study.resolve("fast")
    >>> [s.key for s in resolved.steps()][:1]     # doctest: +SKIP
    ['all__original__resnet18__image']
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from npcai.errors import NpcaiError
from npcai.fsutil import read_user_yaml

__all__ = [
    "RoiSpec", "SubsetSpec", "TrainingSpec", "SplitSpec", "EnsembleSpec", "ExplainSpec", "RadiomicsBlock",
    "ClusterSpec",
    "PresetSpec", "Study", "ResolvedStudy", "Step", "load_study", "list_studies",
    "study_path", "STUDY_DIR", "TRAINING_FIELDS", "SPLIT_FIELDS", "STUDY_OWNED",
]

STUDY_DIR = Path(__file__).parent
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
Layout = Literal["expansion", "prepost", "units", "metastasis", "generic"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _known_options(options: dict[str, Any], block: str, known) -> dict[str, Any]:
    """``options`` when every key is one of ``known``; else ValueError naming the unknown ones."""
    unknown = set(options) - set(known)
    if unknown:
        raise ValueError(f"unknown {block} option(s) {sorted(unknown)}; known: {sorted(known)}")
    return options


class RoiSpec(_Model):
    """One ROI dataset: the arguments of :func:`npcai.imaging.roi_cache.build_roi`, plus
    how the report labels and groups it."""

    name: str = Field(pattern=_NAME, description="short id used in run and table names")
    label: str | None = Field(None, description="how tables and figures name the dataset")
    variant: str = Field(description="original | segmented | expand:Npx | expand:Nmm | bbox[:margin] | bbox-expand:N")
    region: Literal["primary", "nodes", "both"] = "primary"
    slices: str = Field("tumour", description="tumour | all | max-area:K")
    sequences: list[str] = Field(default_factory=lambda: ["T1c"])
    timepoint: Literal["pre", "post", "both"] = "pre"
    mask: Literal["manual", "auto"] = "manual"
    min_component: tuple[int, int] = (10, 10)
    frame: Literal["slice", "bbox"] | None = Field(
        None, description="slice = whole slice; bbox = square crop around the kept region first (bbox variants always)")
    group: str | None = Field(None, description="dataset group in the main table (e.g. 'primary' in 003)")
    kind: str | None = Field(None, description="column in the main table (e.g. 'intratumoural' in 003)")
    expansion: float | None = Field(None, description="x position in the AUC-against-expansion plot")
    training: dict[str, Any] = Field(
        default_factory=dict, description="this dataset's own training options over the study's `training:` block "
                                          "(e.g. {size: 96, ema: 0.99} for a crop while the whole slice keeps 64 px)")

    @field_validator("training")
    @classmethod
    def _training_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _known_options(v, "training", TRAINING_FIELDS)

    @field_validator("variant")
    @classmethod
    def _variant(cls, v: str) -> str:
        from npcai.imaging.variants import parse_variant

        try:
            return str(parse_variant(v))
        except NpcaiError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("slices")
    @classmethod
    def _slices(cls, v: str) -> str:
        if v not in ("tumour", "all") and not re.fullmatch(r"max-area:\d+", v):
            raise ValueError(f"slices {v!r}: use tumour, all or max-area:K")
        return v

    @property
    def display(self) -> str:
        return self.label or self.name


class SubsetSpec(_Model):
    """A patient subset trained as its own model (002: CCRT and IC+CCRT patients)."""

    name: str = Field(pattern=_NAME)
    label: str | None = None
    where: str | None = Field(None, description="patient filter on the clinical table, as `npcai train --where`")

    @field_validator("where")
    @classmethod
    def _where(cls, v: str | None) -> str | None:
        from npcai.cohort.filters import parse_filter

        if v is not None:
            try:
                parse_filter(v)
            except NpcaiError as exc:
                raise ValueError(str(exc)) from None
        return v


# ---------------------------------------------------------------------------- training options
# The study's `training:` and `split:` blocks ARE npcai.models.train.TrainConfig: their fields,
# types and defaults are generated from the dataclass (one list of names and defaults) and a
# block is valid exactly when TrainConfig.validate() accepts it. The remaining TrainConfig
# fields are decided by the study's structure (STUDY_OWNED says where).

#: TrainConfig fields set by the ``split:`` block (shared by every run of the study)
SPLIT_FIELDS = ("seed", "val_fraction", "test_fraction", "test_where", "folds", "fold_seed", "stratify_centre")
#: TrainConfig fields the study sets from its structure, and where
STUDY_OWNED = {"cohort": "--cohort / --export", "roi": "rois", "endpoint": "endpoint",
               "backbone": "backbones", "unit": "units", "where": "subsets[].where",
               "split_from": "the first run of each subset (every other run reuses its split or folds)"}


def _train_config_fields(names) -> dict[str, Any]:
    from npcai.models.train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(TrainConfig) if f.name in names}


def _all_train_config_fields() -> list[str]:
    from npcai.models.train import TrainConfig

    return [f.name for f in dataclasses.fields(TrainConfig)]


#: TrainConfig fields set by the ``training:`` block (every option of `npcai train` but the above)
TRAINING_FIELDS = tuple(n for n in _all_train_config_fields() if n not in SPLIT_FIELDS and n not in STUDY_OWNED)


def _check_with_train_config(values: dict[str, Any]) -> None:
    """Raise ValueError with TrainConfig.validate()'s message when the options are invalid."""
    from npcai.models.train import TrainConfig

    try:
        TrainConfig(cohort="-", roi="-", endpoint="-", **values).validate()
    except NpcaiError as exc:
        raise ValueError(str(exc)) from None


class TrainingSpec(create_model("_TrainingFields", __base__=_Model, **_train_config_fields(TRAINING_FIELDS))):
    """The training options of every run: the fields of :class:`npcai.models.train.TrainConfig`
    (same names, types and defaults) except the split options and what the study's structure
    decides (ROI, backbone, unit, endpoint, subset filter)."""

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v   # `precision: 32` in YAML

    @model_validator(mode="after")
    def _valid(self) -> "TrainingSpec":
        _check_with_train_config(self.model_dump())
        return self


class SplitSpec(create_model("_SplitFields", __base__=_Model, **_train_config_fields(SPLIT_FIELDS))):
    """How patients are split, shared by every run of the study (paired comparisons): the
    split fields of :class:`npcai.models.train.TrainConfig`. ``folds: K`` cross-validates every
    run on the same K folds (those of each subset's first run); ``test_where`` puts every
    matching patient in the external test cohort."""

    @model_validator(mode="after")
    def _valid(self) -> "SplitSpec":
        _check_with_train_config(self.model_dump())
        return self


class EnsembleSpec(_Model):
    """Soft voting over runs that share test patients (001: Pre + Post)."""

    name: str = Field(pattern=_NAME)
    label: str | None = None
    rois: list[str] = Field(min_length=2)


class ExplainSpec(_Model):
    """Which runs get Grad-CAM: one backbone, the listed ROIs (all when empty), top-K test patients."""

    enabled: bool = True
    backbone: str | None = None
    rois: list[str] = Field(default_factory=list)
    top: int = Field(2, ge=1)


class RadiomicsBlock(_Model):
    """The handcrafted radiomics baseline (:mod:`npcai.radiomics`): an elastic-net logistic model on
    IBSI-style features of the listed ROI datasets, on the split (or folds) of each subset's first
    run, so it is compared with the deep models by the paired DeLong test. Example::

        radiomics:
          rois: [expand20]       # empty: every ROI dataset of the study
    """

    rois: list[str] = Field(default_factory=list, description="ROI datasets whose features are used (empty: all)")
    label: str = Field("Radiomics (elastic net)", description="how tables and figures name the model")
    l1_ratio: float = Field(0.5, ge=0, le=1, description="elastic-net mix: 0 ridge, 1 lasso")
    bin_count: int = Field(32, ge=2, description="grey-level bins of the features (IBSI fixed bin number)")


class ClusterSpec(_Model):
    """Where the study's training steps run (``npcai study run`` options; a flag given on the
    command line wins over the block). Example::

        cluster:
          executor: slurm        # local | local:N | slurm
          partition: gpu
          gpus_per_task: 1
          cpus_per_task: 8
          time: 240              # minutes per array task (then requeued, resumed from its checkpoint)
          max_parallel: 16
    """

    executor: str = Field("local", description="local (one after another), local:N (N processes) or slurm")
    partition: str | None = Field(None, description="SLURM partition (None: the cluster's default)")
    gpus_per_task: int = Field(0, ge=0, description="GPUs per SLURM array task")
    cpus_per_task: int = Field(2, ge=1, description="CPUs per SLURM array task")
    time: int = Field(240, ge=1, description="time limit per SLURM array task, minutes")
    max_parallel: int = Field(32, ge=1, description="SLURM array tasks running at once")

    @field_validator("executor")
    @classmethod
    def _executor(cls, v: str) -> str:
        from npcai.studies.executors import parse_executor

        try:
            parse_executor(v)
        except NpcaiError as exc:
            raise ValueError(str(exc)) from None
        return v.strip().lower()

    def executor_spec(self, *, executor: str | None = None, partition: str | None = None,
                      gpus_per_task: int | None = None, cpus_per_task: int | None = None,
                      time: int | None = None, max_parallel: int | None = None):
        """The :class:`~npcai.studies.executors.ExecutorSpec` of this block with the given
        overrides (None: the block's value)."""
        from npcai.studies.executors import SlurmOptions, parse_executor

        pick = lambda given, own: own if given is None else given  # noqa: E731
        slurm = SlurmOptions(partition=pick(partition, self.partition),
                             gpus_per_task=pick(gpus_per_task, self.gpus_per_task),
                             cpus_per_task=pick(cpus_per_task, self.cpus_per_task),
                             time_minutes=pick(time, self.time), max_parallel=pick(max_parallel, self.max_parallel))
        return parse_executor(pick(executor, self.executor), slurm)


class PresetSpec(_Model):
    """Overrides applied by ``--preset``; unspecified fields keep the study's values."""

    description: str = ""
    backbones: list[str] | None = None
    units: list[Literal["image", "patient"]] | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    split: dict[str, Any] = Field(default_factory=dict, description="split options, e.g. {folds: 5}")
    roi_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per ROI name (or '*' for all) field overrides")
    rois: list[str] | None = Field(None, description="keep only these ROI names")
    radiomics: bool | None = Field(None, description="false: leave out the study's radiomics baseline")

    @field_validator("training", "split")
    @classmethod
    def _known_keys(cls, v: dict[str, Any], info) -> dict[str, Any]:
        spec = TrainingSpec if info.field_name == "training" else SplitSpec
        return _known_options(v, info.field_name, spec.model_fields)


class Study(_Model):
    """A study design as written in its YAML file (see the shipped ``*.yaml``)."""

    name: str = Field(pattern=_NAME)
    title: str
    seed_paper: str | None = Field(None, description="seed file id, e.g. '000'")
    reference: str = ""
    description: str = ""
    endpoint: str
    layout: Layout = "generic"
    rois: list[RoiSpec] = Field(min_length=1)
    backbones: list[str] = Field(min_length=1)
    units: list[Literal["image", "patient"]] = Field(default_factory=lambda: ["image"])
    subsets: list[SubsetSpec] = Field(default_factory=lambda: [SubsetSpec(name="all")])
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    ensembles: list[EnsembleSpec] = Field(default_factory=list)
    delong: list[tuple[str, str]] = Field(default_factory=list,
                                          description="ROI pairs compared with the paired DeLong test per backbone")
    tnm_baseline: bool = True
    baseline: list[str] | None = Field(
        None, description="clinical covariates of the clinical baseline and the combined model (e.g. [age, t_stage, "
                          "n_stage]); unset: every one of age, sex, T, N, stage, EBV DNA, grade the cohort has; "
                          "[]: no clinical baseline")
    explain: ExplainSpec = Field(default_factory=ExplainSpec)
    radiomics: RadiomicsBlock | None = Field(None, description="the handcrafted radiomics baseline (none: left out)")
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    presets: dict[str, PresetSpec] = Field(default_factory=dict)

    def roi_training(self, roi: RoiSpec) -> TrainingSpec:
        """The training options of ``roi``'s runs: the study's ``training:`` block with the
        dataset's own ``training:`` options over it."""
        if not roi.training:
            return self.training
        try:
            return TrainingSpec(**{**self.training.model_dump(), **roi.training})
        except ValidationError as exc:
            raise ValueError(f"rois {roi.name}: training: {_first_error(exc)}") from None

    @model_validator(mode="after")
    def _one_process_per_run(self) -> "Study":
        for t in [self.roi_training(r) for r in self.rois]:
            if t.devices * t.num_nodes > 1:
                raise ValueError(f"training: devices {t.devices} x num_nodes {t.num_nodes}: a "
                                 f"study trains each run in one process; run its steps side by side instead "
                                 f"(cluster executor local:N, or slurm with gpus_per_task 1), or train one model "
                                 f"on several devices with `npcai train --devices N`")
            if t.members > 1 and set(self.units) != {"image"}:
                raise ValueError(f"training: members {t.members}: a deep ensemble is built for the image unit, and "
                                 f"this study also trains the {', '.join(u for u in self.units if u != 'image')} "
                                 f"unit; train it with members 1")
        return self

    @model_validator(mode="after")
    def _check_names(self) -> "Study":
        names = [r.name for r in self.rois]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate ROI names {sorted(dup)}")
        subs = [s.name for s in self.subsets]
        if len(set(subs)) != len(subs):
            raise ValueError("duplicate subset names")
        known = set(names)
        comparable = known | {e.name for e in self.ensembles}
        for a, b in self.delong:
            if a not in comparable or b not in comparable:
                raise ValueError(f"delong pair ({a}, {b}) names an unknown ROI or ensemble; known: {sorted(comparable)}")
        for e in self.ensembles:
            bad = [r for r in e.rois if r not in known]
            if bad:
                raise ValueError(f"ensemble {e.name} names unknown ROI(s) {bad}")
        for r in self.explain.rois:
            if r not in known:
                raise ValueError(f"explain names unknown ROI {r!r}")
        for r in (self.radiomics.rois if self.radiomics else []):
            if r not in known:
                raise ValueError(f"radiomics names unknown ROI {r!r}")
        for pname, p in self.presets.items():
            for r in list(p.roi_overrides) + list(p.rois or []):
                if r != "*" and r not in known:
                    raise ValueError(f"preset {pname!r} names unknown ROI {r!r}")
        return self

    # ------------------------------------------------------------------ resolution
    def resolve(self, preset: str | None = None, *, backbones: list[str] | None = None,
                epochs: int | None = None, size: int | None = None,
                pretrained: bool | None = None, folds: int | None = None,
                rois: list[str] | None = None, endpoint: str | None = None,
                sequences: list[str] | None = None, members: int | None = None) -> "ResolvedStudy":
        """Apply a preset, then overrides (given ones win); returns the study that will run.

        Args:
            preset: a preset name of the study (None: the YAML as written).
            backbones, epochs, size, pretrained: training overrides.
            folds: cross-validate every run on K folds (replaces the test split).
            rois: keep only these ROI datasets (by name).
            endpoint: another endpoint (a named one or a 0/1 clinical column).
            sequences: the MRI sequences (channels) of every ROI dataset.
            members: train every run as a deep ensemble of this many networks (1: one network).
        """
        data = self.model_dump()
        presets = data.pop("presets")
        if preset is not None:
            if preset not in presets:
                raise NpcaiError(f"study {self.name}: no preset {preset!r}; choose one of {sorted(presets)}")
            p = presets[preset]
            if p["backbones"]:
                data["backbones"] = list(p["backbones"])
            if p["units"]:
                data["units"] = list(p["units"])
            data["training"].update(p["training"])
            data["split"].update(p["split"])
            for roi in data["rois"]:
                for key in ("*", roi["name"]):
                    roi.update(copy.deepcopy(p["roi_overrides"].get(key, {})))
            if p["rois"]:
                keep = set(p["rois"])
                data["rois"] = [r for r in data["rois"] if r["name"] in keep]
            if p["radiomics"] is False:
                data["radiomics"] = None
        if backbones:
            data["backbones"] = list(backbones)
        given = {k: v for k, v in {"epochs": epochs, "size": size, "pretrained": pretrained,
                                   "members": members}.items() if v is not None}
        data["training"].update(given)
        for roi in data["rois"]:          # an option given here holds for every dataset, its own options too
            roi["training"] = {k: v for k, v in roi["training"].items() if k not in given}
        if folds is not None:
            data["split"]["folds"] = folds
        if endpoint is not None:
            data["endpoint"] = endpoint
        if sequences:
            for roi in data["rois"]:
                roi["sequences"] = list(sequences)
        if rois:
            unknown = [r for r in rois if r not in {x["name"] for x in data["rois"]}]
            if unknown:
                raise NpcaiError(f"study {self.name}: no ROI dataset {unknown[0]!r}; choose from "
                                 f"{', '.join(x['name'] for x in data['rois'])}")
            data["rois"] = [r for r in data["rois"] if r["name"] in set(rois)]
        kept = {r["name"] for r in data["rois"]}
        data["ensembles"] = [e for e in data["ensembles"] if set(e["rois"]) <= kept]
        comparable = kept | {e["name"] for e in data["ensembles"]}
        data["delong"] = [pair for pair in data["delong"] if set(pair) <= comparable]
        data["explain"]["rois"] = [r for r in data["explain"]["rois"] if r in kept]
        if data.get("radiomics") is not None and data["radiomics"]["rois"]:
            data["radiomics"]["rois"] = [r for r in data["radiomics"]["rois"] if r in kept]
            if not data["radiomics"]["rois"]:        # its ROI datasets were all left out
                data["radiomics"] = None
        try:
            study = Study(**data)
        except ValidationError as exc:
            raise NpcaiError(f"study {self.name}, preset {preset}: {_first_error(exc)}") from exc
        return ResolvedStudy(study=study, preset=preset,
                             preset_description=presets.get(preset, {}).get("description", "") if preset else "")


@dataclass(frozen=True)
class Step:
    """One training run of a study: subset x ROI x backbone x unit."""

    subset: SubsetSpec
    roi: RoiSpec
    backbone: str
    unit: str

    @property
    def key(self) -> str:
        return f"{self.subset.name}__{self.roi.name}__{self.backbone}__{self.unit}"


@dataclass
class ResolvedStudy:
    """A study with its preset and overrides applied: what runs and what the report states."""

    study: Study
    preset: str | None
    preset_description: str = ""

    def steps(self) -> list[Step]:
        """Every training run, subset-major so that each subset's first run defines its split."""
        s = self.study
        return [Step(sub, roi, bb, unit) for sub in s.subsets for roi in s.rois
                for bb in s.backbones for unit in s.units]

    def radiomics_rois(self) -> list[RoiSpec]:
        """The ROI datasets of the radiomics baseline (none when the study has no ``radiomics:``)."""
        r = self.study.radiomics
        if r is None:
            return []
        return [x for x in self.study.rois if not r.rois or x.name in r.rois]

    def roi_cache_name(self, roi: RoiSpec) -> str:
        """Cache name under COHORT/roi/: the ROI id plus a hash of every build parameter, so
        two presets (or studies) never overwrite each other's caches."""
        params = self.roi_params(roi)
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
        return f"study-{roi.name}-{params['size']}px-{digest}"

    def training(self, roi: RoiSpec) -> TrainingSpec:
        """The training options of ``roi``'s runs (:meth:`Study.roi_training`)."""
        return self.study.roi_training(roi)

    def roi_params(self, roi: RoiSpec) -> dict[str, Any]:
        """Keyword arguments of ``build_roi`` for this ROI at its runs' training size."""
        return {"variant": roi.variant, "region": roi.region, "slices": roi.slices,
                "sequences": tuple(roi.sequences), "timepoint": roi.timepoint, "mask": roi.mask,
                "size": self.training(roi).size or _default_roi_size(), "min_component": tuple(roi.min_component),
                "frame": roi.frame}

    def to_dict(self) -> dict[str, Any]:
        d = self.study.model_dump(mode="json")
        d.pop("presets", None)
        return {"preset": self.preset, "preset_description": self.preset_description, "study": d}


def _default_roi_size() -> int:
    """build_roi's own default size, used when the study leaves ``training.size`` unset."""
    import inspect

    from npcai.imaging.roi_cache import build_roi

    return int(inspect.signature(build_roi).parameters["size"].default)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")        # pydantic's prefix for a validator's own message
    return f"{loc}: {msg}" if loc else msg


def list_studies() -> list[str]:
    """Names of the studies shipped with npcai."""
    return sorted(p.stem for p in STUDY_DIR.glob("*.yaml"))


def study_path(study: str | Path) -> Path:
    """A shipped study name or the path of a study YAML -> the file."""
    p = Path(study)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise NpcaiError(f"{p}: study file not found; give a shipped study ({', '.join(list_studies())}) or a YAML path")
        return p
    shipped = STUDY_DIR / f"{study}.yaml"
    if not shipped.is_file():
        raise NpcaiError(f"study {study!r}: unknown; choose one of {', '.join(list_studies())} or give a YAML path")
    return shipped


def load_study(study: str | Path) -> Study:
    """Read and validate a study (shipped name or YAML path); one-line error on any problem."""
    path = study_path(study)
    data = read_user_yaml(path, what="study file", example="'name: my_study'")
    if not isinstance(data, dict):
        raise NpcaiError(f"{path}: a study file must be a mapping with name, endpoint, rois, backbones")
    if data.get("kind") == "decision":
        raise NpcaiError(f"{path}: a decision study (kind: decision); read it with "
                         "npcai.decision.design.load_decision_study or run it with npcai study run")
    try:
        return Study(**data)
    except ValidationError as exc:
        raise NpcaiError(f"{path}: {_first_error(exc)}; see the shipped studies in {STUDY_DIR}") from exc
