"""``npcai study init COHORT --design D --out my.yaml``: a study YAML fitted to a cohort.

A shipped design (peritumoral, metastasis, residual, prepost) assumes a cohort like its seed
paper's: PFS columns, T1c scans, treatment groups, two centres. :func:`draft_study` starts from
the design and fits each choice to the cohort, with a comment above every block saying what it
found and why it chose so:

- **endpoint**: the design's when the cohort labels both classes with it, else the first of the
  named endpoints and 0/1 columns that does (refused when none does);
- **sequences**: the design's sequences that most patients have (at least
  :data:`MIN_SEQUENCE_SHARE`), else the cohort's most common sequence; how many patients lack
  each is said;
- **subsets**: the design's patient subsets that label both classes (e.g. 002's CCRT / IC+CCRT),
  else every patient;
- **split**: with several centres, one centre as the external test cohort (``test_where``); with
  one centre and fewer than :data:`SMALL_COHORT` labelled patients, 5-fold cross-validation;
  else the design's random split;
- **baseline**: the clinical covariates present (:func:`npcai.stats.baseline.default_covariates`);
  the TNM baseline only where T and N exist.

The draft is validated against :class:`npcai.studies.schema.Study` before it is written, so
``npcai study run my.yaml --cohort COHORT --dry-run`` accepts it.

Examples:
    >>> draft = draft_study("cohort", "peritumoral")          # doctest: +SKIP
    >>> write_study(draft, "my.yaml").name                    # doctest: +SKIP
    'my.yaml'
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from npcai.errors import NpcaiError
from npcai.fsutil import read_user_yaml
from npcai.studies.schema import STUDY_DIR, Study, load_study, study_path

__all__ = ["DESIGNS", "MIN_SEQUENCE_SHARE", "SMALL_COHORT", "StudyDraft", "draft_study", "write_study"]

#: the shipped designs `study init` starts from
DESIGNS = ("peritumoral", "metastasis", "residual", "prepost")
#: a design sequence is kept when at least this share of patients has it
MIN_SEQUENCE_SHARE = 0.8
#: below this many labelled patients (one centre) the draft cross-validates instead of one test split
SMALL_COHORT = 100
_ORDER = ["name", "title", "seed_paper", "reference", "description", "endpoint", "layout", "rois", "backbones",
          "units", "subsets", "training", "split", "ensembles", "delong", "tnm_baseline", "baseline", "radiomics",
          "explain", "presets"]


@dataclass
class StudyDraft:
    """A study fitted to a cohort: the YAML's content, a comment per block, and the one-line
    summary of each choice (what the CLI prints)."""

    design: str
    data: dict[str, Any]
    comments: dict[str, list[str]] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)

    @property
    def choices(self) -> list[str]:
        return [f"{key}: {lines[0]}" for key, lines in self.comments.items() if lines]

    def to_yaml(self) -> str:
        """The YAML text with the comments above their blocks."""
        out = [f"# {line}" if line else "#" for line in self.header] + [""]
        for key in _ORDER + [k for k in self.data if k not in _ORDER]:     # a design's newer blocks too
            if key not in self.data:
                continue
            out += [f"# {line}" for line in self.comments.get(key, [])]
            value = self.data[key]
            flow = None if isinstance(value, (dict, list)) else False     # scalars as `key: value`
            out.append(yaml.safe_dump({key: value}, sort_keys=False, allow_unicode=True,
                                      default_flow_style=flow, width=110).rstrip())
            out.append("")
        return "\n".join(out)


# ---------------------------------------------------------------------------- the cohort's facts
def _endpoint_stats(clinical: pd.DataFrame, endpoint: str) -> tuple[int, int] | None:
    """(labelled patients, label 1) under ``endpoint``; None when the cohort cannot label it."""
    from npcai.cohort.endpoints import endpoint_labels

    try:
        labels = endpoint_labels(clinical, endpoint).labels
    except NpcaiError:
        return None
    return int(len(labels)), int(labels.sum())


def _candidate_endpoints(design_endpoint: str, clinical: pd.DataFrame) -> list[str]:
    from npcai.cohort.clinical_schema import binary_columns

    named = ["pfs-median", "distant-metastasis", "residual-tumour"]
    columns = [c for c in binary_columns(clinical) if c not in ("distant_metastasis", "residual_tumour")]
    return list(dict.fromkeys([design_endpoint] + named + columns))


def _choose_endpoint(design: Study, clinical: pd.DataFrame) -> tuple[str, list[str]]:
    usable = {}
    for ep in _candidate_endpoints(design.endpoint, clinical):
        st = _endpoint_stats(clinical, ep)
        if st and st[1] > 0 and st[1] < st[0]:
            usable[ep] = st
    if not usable:
        raise NpcaiError(f"clinical.csv: no endpoint labels both classes (tried {design.endpoint}, the named "
                         "endpoints and every 0/1 column); add an outcome column (0/1) to the clinical table "
                         "and ingest it with --keep-columns")
    chosen = design.endpoint if design.endpoint in usable else next(iter(usable))
    n, pos = usable[chosen]
    why = ("the design's endpoint" if chosen == design.endpoint else
           f"the design's endpoint {design.endpoint} is not available in this cohort")
    lines = [f"{chosen}: {n} patients labelled, {pos} label 1 ({why})"]
    others = [f"{ep} ({st[0]} labelled, {st[1]} label 1)" for ep, st in usable.items() if ep != chosen]
    if others:
        lines.append("also possible (edit, or use --endpoint): " + "; ".join(others))
    return chosen, lines


def _sequence_counts(cohort, timepoints: list[str]) -> dict[str, int]:
    """sequence -> patients having it at every one of ``timepoints``."""
    counts: dict[str, int] = {}
    for p in cohort.patients:
        have = set.intersection(*({s.sequence for s in p.scans if s.timepoint == tp} for tp in timepoints))
        for seq in have:
            counts[seq] = counts.get(seq, 0) + 1
    return counts


def _choose_sequences(design: Study, cohort) -> tuple[list[str], list[str]]:
    n = len(cohort.patients)
    used = {tp for r in design.rois for tp in (["pre", "post"] if r.timepoint == "both" else [r.timepoint])}
    timepoints = [tp for tp in ("pre", "post") if tp in used]
    counts = _sequence_counts(cohort, timepoints)
    if not counts:
        raise NpcaiError(f"{cohort.root}: no patient has scans at {' and '.join(timepoints)}-treatment of one "
                         f"sequence, which design {design.name} needs; choose another design")
    wanted = list(dict.fromkeys(seq for r in design.rois for seq in r.sequences))
    kept = [s for s in wanted if counts.get(s, 0) >= MIN_SEQUENCE_SHARE * n]
    if not kept:
        kept = [max(counts, key=lambda s: (counts[s], s))]
        why = "the design's " + ", ".join(f"{s} is missing for {n - counts.get(s, 0)} of {n} patients" for s in wanted)
    else:
        why = "the design's sequence" + ("s" if len(kept) > 1 else "")
    lines = [f"{'+'.join(kept)} ({why}); patients with each at {'/'.join(timepoints)}: "
             + ", ".join(f"{s} {c} of {n}" for s, c in sorted(counts.items()))]
    lost = {s: n - counts.get(s, 0) for s in kept if counts.get(s, 0) < n}
    if lost:
        lines.append("lost for a missing sequence: " + ", ".join(f"{c} patients lack {s}" for s, c in lost.items()))
    return kept, lines


def _choose_subsets(design: Study, clinical: pd.DataFrame, endpoint: str) -> tuple[list[dict] | None, list[str]]:
    from npcai.cohort.endpoints import filter_patients

    if all(s.where is None for s in design.subsets):
        return None, []
    kept, lines = [], []
    for sub in design.subsets:
        try:
            st = _endpoint_stats(filter_patients(clinical, sub.where), endpoint)
        except NpcaiError as exc:
            lines.append(f"subset {sub.name} ({sub.where}) dropped: {exc}")
            continue
        if st and 0 < st[1] < st[0]:
            kept.append(sub.model_dump(exclude_none=True))
            lines.append(f"subset {sub.name} ({sub.where}): {st[0]} labelled, {st[1]} label 1")
        else:
            lines.append(f"subset {sub.name} ({sub.where}) dropped: it does not label both classes")
    if not kept:
        lines.insert(0, "every patient as one subset: none of the design's subsets labels both classes here")
        return [{"name": "all"}], lines
    lines.insert(0, f"{len(kept)} of the design's {len(design.subsets)} patient subsets")
    return kept, lines


def _centres(cohort, clinical: pd.DataFrame) -> pd.Series:
    if "centre" in clinical.columns:
        return clinical["centre"].dropna().astype(str)
    return pd.Series({p.patient_id: p.centre for p in cohort.patients if p.centre}, dtype=object)


def _choose_split(design: Study, raw_split: dict, clinical: pd.DataFrame, cohort,
                  endpoint: str) -> tuple[dict, list[str], bool]:
    """(split block, comment lines, whether the split uses test_where)."""
    from npcai.cohort.endpoints import endpoint_labels

    split = dict(raw_split)
    split.pop("folds", None)
    split.pop("test_where", None)
    labels = endpoint_labels(clinical, endpoint).labels
    centre = _centres(cohort, clinical).reindex(labels.index)
    counts = centre.value_counts()
    if len(counts) >= 2:
        text = ", ".join(f"{c} {n}" for c, n in counts.items())
        for c in sorted(counts.index, key=lambda c: (counts[c], c)):
            held = labels[centre == c]
            rest = len(labels) - len(held)
            if len(held) >= 10 and 0 < held.sum() < len(held) and rest >= 0.5 * len(labels):
                split["test_where"] = f'centre == "{c}"'
                return split, [f'external test cohort = centre {c} ({len(held)} labelled patients, '
                               f'{int(held.sum())} label 1); training, validation and internal test from the '
                               f'others ({rest}); labelled patients per centre: {text}'], True
        split["stratify_centre"] = True
        return split, [f"random split stratified by label and centre (no centre can be held out with both classes "
                       f"and enough patients left: {text})"], False
    n = len(labels)
    if n < SMALL_COHORT and labels.sum() >= 5 and n - labels.sum() >= 5:
        split["folds"] = 5
        return split, [f"5-fold cross-validation: {n} labelled patients in one centre, so a 20% test split would "
                       f"hold about {round(0.2 * n)} patients; every patient is scored once, out of fold"], False
    return split, [f"the design's random split (test fraction {design.split.test_fraction:g}, validation "
                   f"{design.split.val_fraction:g}): {n} labelled patients, one centre"], False


def _choose_baseline(clinical: pd.DataFrame, endpoint: str) -> tuple[list[str], bool, list[str]]:
    from npcai.cohort.endpoints import endpoint_labels
    from npcai.stats.baseline import default_covariates
    from npcai.studies.analysis import has_tnm

    labelled = endpoint_labels(clinical, endpoint).labels.index
    choice = default_covariates(clinical, labelled)
    lines = [("clinical baseline and combined model on " + ", ".join(choice.covariates)) if choice.covariates
             else "no clinical baseline: none of age, sex, T, N, stage, EBV DNA, grade is usable in this cohort"]
    if choice.dropped:
        lines.append("left out: " + "; ".join(f"{c} ({why})" for c, why in choice.dropped.items()))
    return choice.covariates, has_tnm(clinical.reindex(labelled)), lines


# ---------------------------------------------------------------------------- the draft
def _study_name(design: str, cohort_dir: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.+-]+", "_", cohort_dir.resolve().name).strip("_") or "cohort"
    return f"{design}_{stem}"


def draft_study(cohort_dir: str | Path, design: str) -> StudyDraft:
    """A study YAML for ``cohort_dir`` from the shipped ``design`` (see the module docstring).

    Raises:
        NpcaiError: unknown design, or a cohort the design cannot use (no endpoint labelling
            both classes, no scan at the design's timepoint).
    """
    from npcai.cohort.model import Cohort

    if design not in DESIGNS:
        raise NpcaiError(f"design {design!r}: choose one of {', '.join(DESIGNS)}")
    cohort_dir = Path(cohort_dir)
    cohort = Cohort.load(cohort_dir)
    clinical = cohort.clinical()
    base = load_study(design)
    # through JSON: the design's YAML anchors (shared preset blocks) become plain copies
    data = json.loads(json.dumps(read_user_yaml(study_path(design), what="study file", example="'name: my_study'")))
    comments: dict[str, list[str]] = {}

    data["name"] = _study_name(design, cohort_dir)
    endpoint, comments["endpoint"] = _choose_endpoint(base, clinical)
    data["endpoint"] = endpoint
    data["title"] = (f"{base.title} ({cohort_dir.name})" if endpoint == base.endpoint else
                     f"Design of seed {base.seed_paper} ({design}) on {cohort_dir.name}: endpoint {endpoint}")
    sequences, comments["rois"] = _choose_sequences(base, cohort)
    for roi in data["rois"]:
        roi["sequences"] = list(sequences)
    subsets, sub_lines = _choose_subsets(base, clinical, endpoint)
    if subsets is not None:
        data["subsets"] = subsets
        comments["subsets"] = sub_lines
    data["split"], comments["split"], external = _choose_split(base, data.get("split") or {}, clinical, cohort,
                                                               endpoint)
    covariates, tnm, comments["baseline"] = _choose_baseline(clinical, endpoint)
    data["baseline"] = covariates
    data["tnm_baseline"] = bool(base.tnm_baseline and tnm)
    comments["tnm_baseline"] = ["TNM stages as ordinal scores: " + ("T and N are present" if tnm else
                                "off: the cohort lacks T or N stage")]
    if external or "folds" in data["split"]:
        dropped = [n for n, p in data.get("presets", {}).items() if (p.get("split") or {}).get("folds")]
        for n in dropped:       # folds and an external centre exclude each other; the draft's split already has folds
            del data["presets"][n]
        if dropped:
            comments["presets"] = [f"the design's presets; {', '.join(dropped)} left out (its folds replace the "
                                   "split chosen above)"]
    data = {k: v for k, v in data.items() if v is not None}
    from pydantic import ValidationError

    try:
        Study(**data)
    except ValidationError as exc:          # a draft that does not validate is a bug here, not the user's
        raise RuntimeError(f"study init drafted an invalid study: {exc}") from exc
    n_pat = len(cohort.patients)
    header = [f"Study drafted by `npcai study init` from design {design} (seed {base.seed_paper}) for cohort "
              f"{cohort_dir.name} ({n_pat} patients, {len(cohort.scans())} scans, {cohort.modality}).",
              "Each comment says what the cohort has and why the value below it was chosen; edit freely.",
              f"Check it with: npcai study run {{this file}} --cohort {cohort_dir} --dry-run"]
    return StudyDraft(design=design, data=data, comments=comments, header=header)


def write_study(draft: StudyDraft, out: str | Path, *, force: bool = False,
                inputs: tuple[str | Path, ...] = ()) -> Path:
    """Write the draft's YAML to ``out``; an existing file is refused unless ``force``, and an
    input (the cohort, a shipped design) never, even with ``force``."""
    from npcai.fsutil import atomic_write_text, check_output_path

    out = Path(out)
    check_output_path(out, [*inputs, STUDY_DIR])
    if out.is_dir():
        raise NpcaiError(f"{out}: is a folder; give the path of the YAML file to write")
    if out.exists() and not force:
        raise NpcaiError(f"{out}: exists; choose another file or pass --force to replace it")
    if out.suffix not in (".yaml", ".yml"):
        raise NpcaiError(f"{out}: a study file ends in .yaml or .yml")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, draft.to_yaml().replace("{this file}", str(out)) + "\n")
    return out
