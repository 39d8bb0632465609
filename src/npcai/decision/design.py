"""The decision-study YAML (study 004): one deep survival training run, then statistics.

A classifier study (:mod:`npcai.studies.schema`) is a grid of training runs; a decision
study has a different shape: 1:1 matching of the treatment groups, ONE multi-task deep
survival run (Prognostic- and Predictive-score; training + validation from the development
centre, the internal test from the same centre, the external test from the other centres),
then the CPTDN nomogram, comparison models, calibration, risk groups, subgroups and the
DFS-difference recommendation. A file is a decision study when it says ``kind: decision``.

Its ``roi``, ``training`` and ``split`` blocks are those of the classifier studies
(:class:`npcai.studies.schema.RoiSpec`, ``TrainingSpec``, ``SplitSpec``: every option of
``npcai train``); the survival task and the patient unit are fixed.

Examples:
    >>> s = load_decision_study("decision").resolve("fast")
    >>> s.study.endpoint, s.study.training.task
    ('dfs', 'survival')
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from npcai.errors import NpcaiError
from npcai.studies.schema import RoiSpec, SplitSpec, TrainingSpec, _default_roi_size, _first_error

__all__ = ["MatchingSpec", "DecisionSpec", "DecisionPreset", "DecisionStudy", "ResolvedDecisionStudy",
           "load_decision_study", "is_decision_study"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MatchingSpec(_Model):
    """1:1 matching of the treatment groups before the split (:func:`npcai.survival.match_nearest`)."""

    enabled: bool = True
    covariates: list[str] = Field(default_factory=lambda: ["age", "sex", "t_stage", "n_stage", "ebv_dna"])
    exact: list[str] = Field(default_factory=lambda: ["centre"], description="columns equal within a pair")
    distance: Literal["propensity", "mahalanobis"] = "propensity"
    caliper: float | None = Field(0.2, gt=0, description="in SDs of the propensity score")
    covariate_caliper: float | None = Field(None, gt=0, description="in SDs of each numeric covariate "
                                            "(none: only the propensity caliper, as study 004)")


class DecisionSpec(_Model):
    """The statistics after the deep run: nomogram, recommendation, subgroups."""

    clinical_factors: list[str] = Field(default_factory=lambda: ["age", "sex", "t_stage", "n_stage", "ebv_dna_high",
                                                                 "tumour_volume"],
                                        description="candidate clinical terms (screening and stepwise)")
    nomogram_times: list[float] = Field(default_factory=lambda: [36.0, 60.0])
    horizon: float = Field(60.0, gt=0, description="months: the DFS rate the recommendation compares")
    thresholds: list[float] = Field(default_factory=lambda: [0.0, 2.0, 5.0], min_length=1,
                                    description="DFS-difference thresholds, percentage points")
    subgroups: list[str] = Field(default_factory=lambda: ["sex", "age", "tumour_volume", "centre", "field_strength",
                                                          "manufacturer"])
    second_endpoints: list[str] = Field(default_factory=lambda: ["os", "dmfs"])
    calibration_group_size: int = Field(50, ge=2)
    calibration_boot: int = Field(40, ge=0)
    n_boot: int = Field(200, ge=0, description="bootstrap resamples of the C-for-benefit CI")
    fit_on: Literal["train", "train+val"] = Field(
        "train+val", description="the CPTDN's training cohort: the deep run's training patients, with or "
                                 "without its validation patients (never test patients)")

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        bad = [t for t in v if not 0 <= t <= 100]
        if bad:
            raise ValueError(f"threshold {bad[0]:g} must be between 0 and 100 percentage points")
        return v


class DecisionPreset(_Model):
    """Overrides applied by ``--preset``."""

    description: str = ""
    backbone: str | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    split: dict[str, Any] = Field(default_factory=dict)
    roi: dict[str, Any] = Field(default_factory=dict)
    matching: dict[str, Any] = Field(default_factory=dict)
    decision: dict[str, Any] = Field(default_factory=dict)


class DecisionStudy(_Model):
    """A decision study as written in its YAML (``kind: decision``)."""

    kind: Literal["decision"]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    title: str
    seed_paper: str | None = None
    reference: str = ""
    description: str = ""
    endpoint: str = "dfs"
    treatment: str = Field("treatment", description="the clinical column holding CCRT / IC+CCRT")
    development_where: str | None = Field(None, description="informational: the development centre filter")
    roi: RoiSpec
    backbone: str
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    matching: MatchingSpec = Field(default_factory=MatchingSpec)
    decision: DecisionSpec = Field(default_factory=DecisionSpec)
    presets: dict[str, DecisionPreset] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _survival(self) -> "DecisionStudy":
        if self.training.task != "survival":
            raise ValueError(f"training.task {self.training.task!r}: a decision study trains the survival task")
        if self.split.folds:
            raise ValueError("split.folds: a decision study trains one split (training, internal and external test)")
        return self

    @property
    def layout(self) -> str:
        return "decision"

    def resolve(self, preset: str | None = None, *, backbone: str | None = None, epochs: int | None = None,
                size: int | None = None, pretrained: bool | None = None,
                sequences: list[str] | None = None, endpoint: str | None = None) -> "ResolvedDecisionStudy":
        """Apply a preset, then overrides; returns the study that will run."""
        data = self.model_dump()
        presets = data.pop("presets")
        if preset is not None:
            if preset not in presets:
                raise NpcaiError(f"study {self.name}: no preset {preset!r}; choose one of {sorted(presets)}")
            p = presets[preset]
            if p["backbone"]:
                data["backbone"] = p["backbone"]
            for key in ("training", "split", "roi", "matching", "decision"):
                data[key].update(copy.deepcopy(p[key]))
        if backbone:
            data["backbone"] = backbone
        if epochs is not None:
            data["training"]["epochs"] = epochs
        if size is not None:
            data["training"]["size"] = size
        if pretrained is not None:
            data["training"]["pretrained"] = pretrained
        if sequences:
            data["roi"]["sequences"] = list(sequences)
        if endpoint is not None:
            data["endpoint"] = endpoint
        try:
            study = DecisionStudy(**data)
        except ValidationError as exc:
            raise NpcaiError(f"study {self.name}, preset {preset}: {_first_error(exc)}") from exc
        return ResolvedDecisionStudy(study=study, preset=preset,
                                     preset_description=presets.get(preset, {}).get("description", "") if preset else "")


@dataclass
class ResolvedDecisionStudy:
    """A decision study with its preset and overrides applied."""

    study: DecisionStudy
    preset: str | None
    preset_description: str = ""

    def steps(self) -> list[str]:
        """The training runs (one: the deep survival model)."""
        return ["deep_survival"]

    def roi_params(self) -> dict[str, Any]:
        r = self.study.roi
        return {"variant": r.variant, "region": r.region, "slices": r.slices, "sequences": tuple(r.sequences),
                "timepoint": r.timepoint, "mask": r.mask, "size": self.study.training.size or _default_roi_size(),
                "min_component": tuple(r.min_component), "frame": r.frame}

    def roi_cache_name(self) -> str:
        params = self.roi_params()
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
        return f"study-{self.study.roi.name}-{params['size']}px-{digest}"

    def to_dict(self) -> dict[str, Any]:
        d = self.study.model_dump(mode="json")
        d.pop("presets", None)
        return {"preset": self.preset, "preset_description": self.preset_description, "study": d}


def is_decision_study(study: str | Path) -> bool:
    """True when the shipped study or YAML file says ``kind: decision``."""
    from npcai.fsutil import read_user_yaml
    from npcai.studies.schema import study_path

    data = read_user_yaml(study_path(study), what="study file", example="'name: my_study'")
    return isinstance(data, dict) and data.get("kind") == "decision"


def load_decision_study(study: str | Path) -> DecisionStudy:
    """Read and validate a decision study (shipped name or YAML path); one-line error on any problem."""
    from npcai.fsutil import read_user_yaml
    from npcai.studies.schema import STUDY_DIR, study_path

    path = study_path(study)
    data = read_user_yaml(path, what="study file", example="'kind: decision'")
    if not isinstance(data, dict):
        raise NpcaiError(f"{path}: a decision study must be a mapping with kind, name, roi, backbone")
    try:
        return DecisionStudy(**data)
    except ValidationError as exc:
        raise NpcaiError(f"{path}: {_first_error(exc)}; see the shipped decision study in {STUDY_DIR}") from exc
