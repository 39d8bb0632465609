"""Grad-CAM of a deep survival run's two heads (study 004 Fig. D7).

Study 004 shows where its network looks for each signature: the Prognostic-score in high-
vs low-risk patients and the Predictive-score in CCRT- vs ICT-preferred patients. For a
``npcai train --task survival`` run this module explains, among the patients of one split,

* head ``prognostic`` (g): the ``top`` highest-risk patients (evidence *for* a higher hazard,
  target ``+g``) and the ``top`` lowest-risk patients (evidence for a lower hazard, ``-g``);
* head ``predictive`` (f, the log hazard ratio of IC+CCRT vs CCRT): the ``top`` most
  ICT-preferred patients (lowest f; evidence that IC+CCRT lowers the hazard, ``-f``) and the
  ``top`` most CCRT-preferred patients (highest f; ``+f``).

The CAM of a slice is Grad-CAM of the head's *patient* score (all of the patient's slices in
one bag, through the attention pooling, as the score was computed) with respect to that
slice's feature map; for a network with one backbone per sequence the per-sequence CAMs are
summed (all sequences share the ROI grid). Each slice's CAM energy is split into the regions
of :mod:`npcai.explain.localisation` (tumour, nodes, distance bands, far field; on a phantom
also the planted peritumoural band) against uniform attention, as for classifiers.

Output folder ``OUT/`` (written atomically)::

    montage_<head>_<group>.png      one panel per patient (its largest-lesion slice) of a group
    overlays/<head>_<patient>_z<k>.png   every explained slice
    localisation.csv                one row per slice, head and group (``run`` = ``head:group``)
    localisation_summary.csv        per head:group and region: mean share over patients, 95% CI
    localisation.png                the summary as grouped bars against uniform attention
    explain.json                    parameters, groups and their patients, target layers

Examples:
    >>> res = explain_survival_run("runs/surv", "explain/surv", top=3)     # doctest: +SKIP
    >>> res.summary.query("region == 'tumour'")[["run", "share_mean"]]    # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from npcai.errors import NpcaiError

__all__ = ["SurvivalHeadCam", "SurvivalExplainResult", "HEAD_GROUPS", "survival_groups", "explain_survival_run",
           "is_survival_run"]

log = logging.getLogger(__name__)

#: head -> ((group, sign of the explained score, rank the top patients by), ...)
HEAD_GROUPS = {
    "prognostic": (("high-risk", +1.0), ("low-risk", -1.0)),
    "predictive": (("ICT-preferred", -1.0), ("CCRT-preferred", +1.0)),
}
_SCORE = {"prognostic": "prognostic_score", "predictive": "predictive_score"}
_HEAD_INDEX = {"prognostic": 0, "predictive": 1}


class SurvivalHeadCam(nn.Module):
    """One patient's slices ``(N, C, H, W)`` -> the sign-adjusted head score, repeated ``(N,)``.

    The slices form one bag (the patient), so every slice's gradient is that of the patient's
    score; repeating it once per slice lets pytorch-grad-cam treat each slice as an image
    whose "logit" is the patient's score (the sum it back-propagates is N times the score:
    the same direction, so the same CAM up to scale).
    """

    def __init__(self, net: nn.Module, head: str, sign: float = 1.0):
        super().__init__()
        if head not in _HEAD_INDEX:
            raise ValueError(f"head must be one of {list(_HEAD_INDEX)}, not {head!r}")
        self.net, self.index, self.sign = net, _HEAD_INDEX[head], float(sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.net(x.unsqueeze(0))[0, self.index] * self.sign
        return score.expand(x.shape[0])


@dataclass
class SurvivalExplainResult:
    """What :func:`explain_survival_run` wrote (see the module docstring)."""

    out: Path
    localisation: pd.DataFrame
    summary: pd.DataFrame
    groups: dict[str, list[str]]
    target_layers: list[str]
    signal: dict[str, Any] | None
    files: list[Path] = field(default_factory=list)


def is_survival_run(run_dir: str | Path) -> bool:
    """True for a run trained with the survival task (False for anything else, which the
    classifier path then checks and refuses with its own message)."""
    from npcai.runs import is_finished, read_config

    if not is_finished(run_dir):
        return False
    return read_config(run_dir).raw.get("task") == "survival"


def survival_groups(patients: pd.DataFrame, *, top: int = 3, split: str = "test") -> dict[str, list[str]]:
    """``{"<head>:<group>": [patients]}``: the ``top`` patients of ``split`` at each end of each score."""
    if top < 1:
        raise NpcaiError(f"--top {top}: must be at least 1")
    part = patients[patients["split"] == split]
    if len(part) < 2:
        have = ", ".join(sorted(patients["split"].astype(str).unique()))
        raise NpcaiError(f"split {split!r}: {len(part)} predicted patients, at least 2 are needed to compare "
                         f"high and low scores (splits: {have}); choose --split")
    k = min(top, len(part) // 2)
    out = {}
    for head, groups in HEAD_GROUPS.items():
        ranked = part.sort_values([_SCORE[head], "patient_id"], kind="stable")["patient_id"].tolist()
        for group, sign in groups:
            # sign +1: the highest scores first; -1: the lowest first
            out[f"{head}:{group}"] = (ranked[::-1] if sign > 0 else ranked)[:k]
    return out


def _encoder_layers(net: nn.Module, channels: int, size: int):
    from npcai.explain.target_layers import find_target_layer

    per = channels if getattr(net, "stacked", False) else 1
    return [find_target_layer(b, input_shape=(1, per, size, size)) for b in net.backbones]


def _patient_cams(net: nn.Module, layers, images: np.ndarray, head: str, sign: float) -> tuple[np.ndarray, float]:
    """Grad-CAM (positive part, summed over encoders) of every slice of one patient, and the score."""
    from npcai.explain.cam import compute_cams

    model = SurvivalHeadCam(net, head, sign)
    total, score = None, float("nan")
    for layer in layers:
        res = compute_cams(model, images, method="gradcam", target="high-risk", target_layer=layer,
                           batch_size=len(images))
        total = res.cams if total is None else total + res.cams
        score = float(res.logits[0]) * sign
    return total, score


def explain_survival_run(run_dir: str | Path, out: str | Path, *, top: int = 3, split: str = "test",
                         max_slices: int | None = 4, overwrite: bool = False) -> SurvivalExplainResult:
    """Grad-CAM of the prognostic and the predictive head for the patients at both ends of
    each score (module docstring).

    Args:
        run_dir: a ``npcai train --task survival`` run folder.
        out: output folder (must be empty unless ``overwrite``).
        top: patients per group (at most half of the split's patients).
        split: the split the patients come from (``test`` by default; ``test_external`` too).
        max_slices: at most this many slices per patient (largest lesion area first).
        overwrite: replace a non-empty ``out``.
    """
    from npcai.explain.explain import _choose_rows, _resize, signal_band, summarise_localisation
    from npcai.explain.overlays import plot_localisation
    from npcai.fsutil import atomic_output_dir, atomic_write_text, check_output_path
    from npcai.runs import load_run

    run_dir = Path(run_dir)
    check_output_path(out, [run_dir])
    if max_slices is not None and max_slices < 1:
        raise NpcaiError(f"--max-slices {max_slices}: must be at least 1")
    loaded = load_run(run_dir)
    net = loaded.patient_model
    if net is None or not hasattr(net, "backbones"):
        raise NpcaiError(f"{run_dir}: not a survival run (no multi-task survival network)")
    net.eval()
    pats = loaded.predictions("patients")
    groups = survival_groups(pats, top=top, split=split)
    roi = loaded.roi
    size = int(roi.images.shape[-1])
    net_size = int((loaded.config.raw.get("resolved") or {}).get("input_size") or size)
    layers = _encoder_layers(net, int(roi.images.shape[1]), net_size)
    signal = signal_band(Path(roi.root).parent.parent)
    table, panels = [], {}
    for key, patients in groups.items():
        head, group = key.split(":")
        sign = dict(HEAD_GROUPS[head])[group]
        panels[key] = []
        for patient in patients:
            rows = _choose_rows(roi.index, roi.rows_of(patient), max_slices)
            if len(rows) == 0:
                log.warning("patient %s has no slices in ROI %s; skipped", patient, roi.root.name)
                continue
            images = np.asarray(roi.images[rows], dtype=np.float32)
            cams, score = _patient_cams(net, layers, _resize(images, net_size), head, sign)
            cams = _resize(cams[:, None], size)[:, 0].clip(min=0.0)
            recs = _slice_records(roi, rows, images, cams, key, head, group, patient, score, signal)
            table.extend(r for r, _ in recs)
            panels[key].append((patient, score, recs))
    if not table:
        raise NpcaiError(f"{run_dir}: none of the chosen patients has ROI slices")
    localisation = pd.DataFrame([{k: v for k, v in r.items()} for r in table])
    summary = summarise_localisation(localisation)
    files: list[Path] = []
    with atomic_output_dir(out, overwrite) as tmp:
        for key, entries in panels.items():
            files += _draw_group(tmp, key, entries)
        atomic_write_text(tmp / "localisation.csv", localisation.to_csv(index=False))
        atomic_write_text(tmp / "localisation_summary.csv", summary.to_csv(index=False))
        files.append(plot_localisation(summary, tmp / "localisation.png",
                                       title=f"Grad-CAM of the two heads ({split} patients): mean share of CAM "
                                             "energy with 95% CI, black ticks: uniform attention"))
        meta = {"run": str(run_dir.resolve()), "split": split, "top": top, "max_slices": max_slices,
                "groups": groups, "signs": {f"{h}:{g}": s for h, gs in HEAD_GROUPS.items() for g, s in gs},
                "target_layers": [layer.name for layer in layers], "signal": signal, "method": "gradcam",
                "cam": "gradient of the patient's head score (whole bag) per slice; encoders summed"}
        atomic_write_text(tmp / "explain.json", json.dumps(meta, indent=1, default=str))
        files = [Path(out) / f.relative_to(tmp) for f in files]
        files += [Path(out) / n for n in ("localisation.csv", "localisation_summary.csv", "explain.json")]
    return SurvivalExplainResult(Path(out), localisation, summary, groups, [layer.name for layer in layers],
                                 signal, files)


def _slice_records(roi, rows, images, cams, key, head, group, patient, score, signal) -> list[tuple[dict, Any]]:
    from npcai.explain.explain import _caption, _fmt_z
    from npcai.explain.localisation import (band_mask, band_share, energy_shares, excluded_share, flatten_shares,
                                            informative_pixels, roi_geometry, uniform_shares)
    from npcai.explain.overlays import Panel

    size = int(roi.images.shape[-1])
    out = []
    for k, r in enumerate(rows):
        meta = roi.index.iloc[r]
        labels = np.asarray(roi.masks[r])
        geometry = roi_geometry(meta, size)
        cam, valid = cams[k], informative_pixels(images[k])
        rec: dict[str, Any] = {"run": key, "variant": head, "method": "gradcam", "target": group, "head": head,
                               "group": group, "patient_id": patient, "roi_row": int(r),
                               "timepoint": meta.get("timepoint", ""), "slice_index": int(meta["slice_index"]),
                               f"{head}_score": score, "cam_energy": float(cam.sum()),
                               "share_excluded": excluded_share(cam, valid)}
        rec.update(flatten_shares(energy_shares(cam, labels, geometry, valid=valid), "share"))
        rec.update(flatten_shares(uniform_shares(labels, geometry, valid=valid), "uniform"))
        band = None
        if signal is not None:
            band = band_mask(labels, geometry, signal["band"], unit=signal["unit"])
            rec["share_signal_band"], rec["uniform_signal_band"] = band_share(
                cam, labels, geometry, signal["band"], unit=signal["unit"], valid=valid)
        panel = Panel(image=images[k, 0], cam=cam, labels=labels, geometry=geometry, band=band, valid=valid,
                      title=f"{patient} {_fmt_z(meta)} · {head} score {score:+.2f}", caption=_caption(rec))
        out.append((rec, (meta, panel)))
    return out


def _draw_group(tmp: Path, key: str, entries) -> list[Path]:
    """Every slice's overlay, and one montage of the group (each patient's largest-lesion slice)."""
    from npcai.explain.explain import _fmt_z
    from npcai.explain.overlays import save_montage, save_overlay

    head, group = key.split(":")
    files, best = [], []
    for patient, _, recs in entries:
        for _, (meta, panel) in recs:
            files.append(save_overlay(tmp / "overlays" / f"{head}_{patient}_{_fmt_z(meta)}.png", panel))
        area = [float(m.get("tumour_area_px", 0)) for _, (m, _) in recs]
        best.append(recs[int(np.argmax(area))][1][1])
    if best:
        sign = "+" if dict(HEAD_GROUPS[head])[group] > 0 else "-"
        what = {"prognostic": "g (Prognostic-score)", "predictive": "f (Predictive-score, log HR IC+CCRT vs CCRT)"}
        files.append(save_montage(tmp / f"montage_{head}_{group}.png", best,
                                  f"{group} patients: Grad-CAM of {sign}{what[head]}", ncols=len(best)))
    return files
