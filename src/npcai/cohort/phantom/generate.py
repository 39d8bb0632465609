"""Generate a complete phantom hospital export (DICOM, contours, clinical.csv, truth/).

Examples:
    >>> summary = generate_phantom("/tmp/export", patients=16, size=64, slices=4)  # doctest: +SKIP
    >>> summary["oracle"]["pfs-median"]["auc"]                                       # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.cohort.phantom.anatomy import (CENTRE_SCANNER, SEQUENCE_CONTRAST, SERIES_DESCRIPTION,
                                          Geometry, render_tissues, ring_band_outer_mm,
                                          to_intensities)
from npcai.cohort.phantom.clinical import CLINICAL_COLUMNS, simulate_patients
from npcai.cohort.phantom.dicom_writer import SeriesInfo, uid, write_contour, write_series
from npcai.cohort.phantom.truth import oracle_metrics, pfs_median_labels
from npcai.errors import NpcaiError
from npcai.limits import check_image_side
from npcai.fsutil import atomic_output_dir, atomic_write_text
from npcai.progress import track

__all__ = ["generate_phantom", "validate_parameters", "PHANTOM_VERSION", "SEQUENCES",
           "summary_lines", "summary_table"]

PHANTOM_VERSION = "npcai-phantom/1"
SEQUENCES = tuple(SEQUENCE_CONTRAST)            # ("T1c", "T1", "T2")
MIN_SIZE = 64
# fake names; parts of 4+ letters avoid English substrings ("ling" would match "sampling")
_FIRST = ["WEI", "LI", "JUN", "MEI", "HUA", "YAN", "ZHIWEI", "XIA", "QIANG", "XIAOMEI", "TAO", "HUIFEN"]
_LAST = ["CHEN", "WANG", "LIN", "HUANG", "ZHANG", "LIU", "WU", "HO", "LAM", "TAN", "NG", "YEO"]
_INSTITUTION = ["PHANTOM CANCER CENTRE 1", "PHANTOM HOSPITAL 2", "PHANTOM HOSPITAL 3",
                "PHANTOM MEDICAL UNIVERSITY 4"]
TRUTH_COLUMNS = [
    "hospital_id", "centre", "z_ring", "z_core", "z_node", "necrosis", "has_nodes",
    "t_stage_num", "n_stage_num", "log_hazard_pfs", "log_hazard_dfs", "log_hazard_os",
    "log_hazard_dmfs", "log_hazard_pfs_ccrt", "log_hazard_pfs_ic_ccrt", "dfs5_ccrt",
    "dfs5_ic_ccrt", "pfs_t_star_months", "p_pfs_median", "p_distant_metastasis",
    "p_residual_ccrt", "p_residual_ic_ccrt", "p_residual", "best_treatment",
    "best_treatment_residual", "followup_potential_months",
]


def validate_parameters(*, patients: int, size: int, slices: int, centres: int,
                        sequences: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Check the generator's options; raise NpcaiError with one line, return the sequences."""
    if patients < 1:
        raise NpcaiError(f"--patients {patients}: need at least 1 patient")
    check_image_side(size, what="--size", minimum=MIN_SIZE, hint="the phantom's matrix is 256 px by default")
    if slices < 2:
        raise NpcaiError(f"--slices {slices}: need at least 2 slices")
    if not 1 <= centres <= len(CENTRE_SCANNER):
        raise NpcaiError(f"--centres {centres}: choose 1 to {len(CENTRE_SCANNER)} centres")
    seqs: list[str] = []
    for s in sequences:
        for part in str(s).split(","):
            part = part.strip()
            if not part:
                continue
            match = {k.lower(): k for k in SEQUENCES}.get(part.lower())
            if match is None:
                raise NpcaiError(f"--sequences: unknown sequence {part!r}; choose from {', '.join(SEQUENCES)}")
            if match not in seqs:
                seqs.append(match)
    if not seqs:
        raise NpcaiError("--sequences: give at least one of " + ", ".join(SEQUENCES))
    return tuple(seqs)


def _date(base: dt.date, days: int) -> str:
    return (base + dt.timedelta(days=int(days))).strftime("%Y%m%d")


def generate_phantom(out: str | Path, *, patients: int = 120, size: int = 256, slices: int = 16,
                     seed: int = 0, centres: int = 2, sequences: tuple[str, ...] = ("T1c",),
                     post: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Write a phantom hospital export to ``out`` and return its summary.

    Layout (docs/contracts.md): ``dicom/<hospital-id>/<study>/<series>/<n>.dcm``,
    ``contours/<hospital-id>_<timepoint>_<sequence>.nii.gz``, ``clinical.csv``,
    ``truth/{patients.csv, oracle.json, signal.json}`` and ``phantom.json``. The folder is
    written under a temporary name and renamed when complete. Same seed, same bytes.

    Args:
        out: the export folder (must be empty or absent unless ``overwrite``).
        patients: number of patients (>= 1).
        size: in-plane matrix (>= 64); the field of view is always 230 mm.
        slices: axial slices of 5 mm.
        seed: random seed for everything (patients, anatomy, noise, UIDs, dates).
        centres: 1-4 centres (scanner vendor, field strength, intensity scale and noise).
        sequences: any of "T1c", "T1", "T2".
        post: also write post-treatment scans (about 4 months after pre).
        overwrite: replace a non-empty ``out``.

    Returns:
        The summary: counts, endpoint balance, oracle metrics and the path.
    """
    seqs = validate_parameters(patients=patients, size=size, slices=slices, centres=centres,
                               sequences=sequences)
    start = time.perf_counter()
    out = Path(out)
    geom = Geometry(size=size, slices=slices)
    df = simulate_patients(patients, seed=seed, centres=centres)
    rng = np.random.default_rng([seed, 3])
    df["anatomy_seed"] = rng.integers(0, 2**31 - 1, patients)
    base = dt.date(2011, 1, 1)
    pre_days = rng.integers(0, 6 * 365, patients)
    post_days = pre_days + rng.integers(105, 136, patients)
    birth_offset = rng.integers(0, 365, patients)
    names = [f"{_LAST[a]}^{_FIRST[b]}" for a, b in rng.integers(0, 12, (patients, 2))]
    timepoints = ("pre", "post") if post else ("pre",)
    z0 = -(slices - 1) / 2 * geom.slice_mm
    origin = geom.origin(z0)
    n_files = 0
    patient_info: list[dict[str, Any]] = []

    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        for i in track(range(patients), "Generating phantom patients"):
            row = df.iloc[i]
            hid = row["hospital_id"]
            centre_index = int(row["centre_index"])
            scanner = CENTRE_SCANNER[centre_index]
            info_rows: dict[str, Any] = {"hospital_id": hid}
            for ti, tp in enumerate(timepoints):
                days = pre_days[i] if tp == "pre" else post_days[i]
                study_date = _date(base, days)
                study_uid = uid(seed, hid, tp, "study")
                frame_uid = uid(seed, hid, tp, "frame")
                tissues = render_tissues(row.to_dict(), geom, timepoint=tp, seed=int(row["anatomy_seed"]) + ti)
                for si, seq in enumerate(seqs):
                    volume = to_intensities(tissues, seq, centre_index=centre_index,
                                            seed=int(row["anatomy_seed"]) * 7 + 31 * ti + si)
                    series_uid = uid(seed, hid, tp, seq, "series")
                    series_number = 100 * (si + 1) + 1
                    info = SeriesInfo(
                        hospital_id=hid, patient_name=names[i],
                        birth_date=_date(base, days - 365.25 * row["age"] - birth_offset[i]),
                        sex=row["sex"], age=int(row["age"]), study_uid=study_uid,
                        study_date=study_date, study_id=f"{ti + 1}",
                        accession=f"A{int(row['anatomy_seed']) % 10**7:07d}{ti}",
                        series_uid=series_uid, frame_uid=frame_uid, series_number=series_number,
                        sequence=seq, description=SERIES_DESCRIPTION[seq],
                        manufacturer=scanner["manufacturer"], model=scanner["model"],
                        tesla=scanner["tesla"], institution=_INSTITUTION[centre_index],
                        pixel_mm=geom.pixel_mm, slice_mm=geom.slice_mm, origin=origin,
                        uid_seed=str(seed))
                    folder = (tmp / "dicom" / hid / f"ST{study_uid[-10:]}"
                              / f"SE{series_number}_{SERIES_DESCRIPTION[seq].replace(' ', '_').replace('+', 'C')}")
                    n_files += len(write_series(volume, info, folder))
                    write_contour(tissues.labels, pixel_mm=geom.pixel_mm, slice_mm=geom.slice_mm,
                                  origin=origin, path=tmp / "contours" / f"{hid}_{tp}_{seq}.nii.gz")
                for key, value in tissues.info.items():
                    info_rows[f"{tp}_{key}"] = value
            patient_info.append(info_rows)

        clinical = df[CLINICAL_COLUMNS].copy()
        clinical.to_csv(tmp / "clinical.csv", index=False)
        truth = df[TRUTH_COLUMNS].merge(pd.DataFrame(patient_info), on="hospital_id")
        (tmp / "truth").mkdir()
        truth.to_csv(tmp / "truth" / "patients.csv", index=False, float_format="%.6g")
        oracle = oracle_metrics(df, df)
        atomic_write_text(tmp / "truth" / "oracle.json", json.dumps(oracle, indent=1))
        signal = signal_description(geom, post=post)
        atomic_write_text(tmp / "truth" / "signal.json", json.dumps(signal, indent=1))
        params = dict(format=PHANTOM_VERSION, patients=patients, size=size, slices=slices,
                      seed=seed, centres=centres, sequences=list(seqs), post=post,
                      timepoints=list(timepoints), pixel_mm=geom.pixel_mm, slice_mm=geom.slice_mm,
                      npcai_version=_version())
        atomic_write_text(tmp / "phantom.json", json.dumps(params, indent=1))

    labels, t_star = pfs_median_labels(df["pfs_months"], df["pfs_event"])
    summary = dict(
        out=str(out.resolve()), patients=patients, scans=patients * len(timepoints) * len(seqs),
        files=n_files, size=size, slices=slices, pixel_mm=geom.pixel_mm, sequences=list(seqs),
        timepoints=list(timepoints), centres=df["centre"].value_counts().sort_index().to_dict(),
        treatment=df["treatment"].value_counts().sort_index().to_dict(),
        endpoints={
            "pfs_events": int(df["pfs_event"].sum()),
            "pfs_median": {"t_star_months": t_star, "high_risk": int(np.nansum(labels == 1)),
                           "low_risk": int(np.nansum(labels == 0)),
                           "unlabelled": int(np.isnan(labels).sum())},
            "distant_metastasis": int(df["distant_metastasis"].sum()),
            "residual_tumour": int(df["residual_tumour"].sum()),
            "os_events": int(df["os_event"].sum()),
        },
        oracle=oracle, seconds=round(time.perf_counter() - start, 2),
    )
    return summary


def signal_description(geom: Geometry, *, post: bool) -> dict[str, Any]:
    """Where the planted signals live, in pixels of this export and in millimetres."""
    outer_mm = ring_band_outer_mm()
    outer_px = outer_mm / geom.pixel_mm
    return {
        "size": geom.size, "slices": geom.slices, "pixel_mm": geom.pixel_mm,
        "slice_mm": geom.slice_mm, "fov_mm": geom.size * geom.pixel_mm,
        "ring_band_px": [0.0, round(outer_px, 3)], "ring_band_mm": [0.0, round(outer_mm, 3)],
        "ring_band_px_at_512": [0, 20],
        "ring_band_reference": "distance outside the label-1 (tumour) mask, per axial slice",
        "best_expansion_px": round(outer_px, 3),
        "far_field_min_px": round((outer_mm + 8.0) / geom.pixel_mm, 3),
        "signals": {
            "ring": {"region": "band 0..ring_band outside tumour", "latent": "z_ring",
                     "endpoints": ["pfs", "dfs", "pfs-median", "residual-tumour"], "strength": "strongest"},
            "core": {"region": "tumour interior (label 1)", "latent": "z_core",
                     "endpoints": ["pfs", "dfs", "residual-tumour"], "strength": "weak"},
            "nodes": {"region": "label 2", "latent": "z_node",
                      "endpoints": ["distant-metastasis", "dmfs"], "strength": "strong"},
            "necrosis": {"region": "dark core inside the tumour, pre-treatment", "latent": "necrosis",
                         "endpoints": ["treatment interaction: IC+CCRT benefits when present"]},
            "residual": {"region": "label 1 at post", "latent": "p_residual",
                         "endpoints": ["residual-tumour", "pfs"], "present": post},
            "distractors": {"region": "bright blobs further than far_field_min_px from the "
                            "tumour; posterior cerebellum-like folia", "endpoints": []},
        },
    }


def _version() -> str:
    from npcai import __version__

    return __version__


def summary_lines(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary as (label, value) rows, shared by the CLI and the demo."""
    ep = summary["endpoints"]
    pm = ep["pfs_median"]
    o = summary["oracle"]

    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    return [
        ("export", summary["out"]),
        ("patients", f"{summary['patients']} ({', '.join(f'{k} {v}' for k, v in summary['centres'].items())})"),
        ("scans", f"{summary['scans']} series, {summary['files']} DICOM files "
                  f"({'/'.join(summary['timepoints'])} x {'/'.join(summary['sequences'])}, "
                  f"{summary['size']} px x {summary['slices']} slices, {summary['pixel_mm']:.2f} mm/px)"),
        ("treatment", ", ".join(f"{k} {v}" for k, v in summary["treatment"].items())),
        ("PFS", f"{ep['pfs_events']} events; median split t*={pm['t_star_months']:.1f} mo: "
                f"{pm['high_risk']} high / {pm['low_risk']} low / {pm['unlabelled']} unlabelled"),
        ("distant metastasis", f"{ep['distant_metastasis']} of {summary['patients']}"),
        ("residual tumour", f"{ep['residual_tumour']} of {summary['patients']}"),
        ("oracle AUC", f"pfs-median {f(o['pfs-median']['auc'])}, distant-metastasis "
                       f"{f(o['distant-metastasis']['auc'])}, residual-tumour {f(o['residual-tumour']['auc'])}"),
        ("oracle C-index", ", ".join(f"{k.upper()} {f(o[k]['c_index'])}" for k in ("pfs", "dfs", "os", "dmfs"))),
        ("time", f"{summary['seconds']:.1f} s"),
    ]


def summary_table(summary: dict[str, Any]):
    """A rich Table of :func:`summary_lines` (printed by ``npcai phantom`` and the demo)."""
    from rich.table import Table

    table = Table(title="Phantom hospital export", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in summary_lines(summary):
        table.add_row(k, v)
    return table
