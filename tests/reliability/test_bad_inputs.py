"""Bad inputs and faults across every command: one ``error:`` line naming the culprit, exit 2,
nothing half-written.

Each case is one command line (placeholders: ``{export}``, ``{cohort}``, ``{run}``, ``{run_b}``,
``{segrun}``, ``{tmp}``, plus what its ``setup`` returns), the text the error line must name,
and optionally a ``setup`` that writes the bad input into the test's own folder and a ``fault``
that makes the file system fail (permission denied, disk full) through monkeypatch. After the
command, no file may have appeared or vanished anywhere under the inputs or the test folder:
not the output, not a ``.partial`` folder. Add a case for every new defect; the count only grows.
"""
from __future__ import annotations

import errno
import gzip
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml


@dataclass(frozen=True)
class Case:
    id: str
    argv: str
    culprit: str | tuple[str, ...]
    setup: Callable[..., dict] | None = None
    fault: Callable[..., None] | None = None
    xfail: str | None = None     # a known defect of another branch (strict: flip it when fixed)


# ------------------------------------------------------------------ setups (write the bad input)
def _copy(what: str):
    def setup(env, tmp):
        src = getattr(env, what)
        dst = tmp / src.name
        shutil.copytree(src, dst)
        return {what: dst}
    return setup


def _file(name: str, content: bytes | str):
    def setup(env, tmp):
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        return {"x": p}
    return setup


def _edit(what: str, rel: str, change: Callable[[str], str]):
    """Copy ``env.<what>`` into the test folder and rewrite one of its text files."""
    def setup(env, tmp):
        out = _copy(what)(env, tmp)
        p = out[what] / rel
        p.write_text(change(p.read_text()))
        return out
    return setup


def _edit_csv(what: str, rel: str, change: Callable[[pd.DataFrame], pd.DataFrame]):
    def setup(env, tmp):
        out = _copy(what)(env, tmp)
        p = out[what] / rel
        change(pd.read_csv(p, dtype=str)).to_csv(p, index=False)
        return out
    return setup


def _clinical(change: Callable[[pd.DataFrame], pd.DataFrame], name: str = "clinical.csv"):
    def setup(env, tmp):
        df = change(pd.read_csv(env.export / "clinical.csv", dtype=str))
        p = tmp / name
        df.to_csv(p, index=False)
        return {"x": p}
    return setup


def _garbage_volume(env, tmp):
    """A cohort whose first scan's image is not a volume (valid gzip, garbage inside)."""
    out = _copy("cohort")(env, tmp)
    img = sorted((out["cohort"] / "images").glob("*_pre_T1c.nii.gz"))[0]
    img.write_bytes(gzip.compress(b"this is not a NIfTI volume" * 20))
    return {**out, "x": img.name}


def _truncated_volume(env, tmp):
    out = _copy("cohort")(env, tmp)
    img = sorted((out["cohort"] / "images").glob("*_pre_T1c.nii.gz"))[0]
    img.write_bytes(img.read_bytes()[:300])
    return {**out, "x": img.name}


def _out_is_file(env, tmp):
    p = tmp / "taken"
    p.write_text("a file the user keeps\n")
    return {"x": p}


def _nonempty_dir(env, tmp):
    p = tmp / "full"
    p.mkdir()
    (p / "keep.txt").write_text("keep\n")
    return {"x": p}


def _both(*setups):
    def setup(env, tmp):
        out: dict = {}
        for s in setups:
            out.update(s(env, tmp))
        return out
    return setup


def _images_dir_with(name: str, content: bytes):
    def setup(env, tmp):
        d = tmp / "volumes"
        d.mkdir()
        (d / name).write_bytes(content)
        ids = tmp / "ids.csv"
        ids.write_text("hospital_id\n" + name.split("_")[0] + "\n")
        return {"x": d, "ids": ids}
    return setup


def _yaml(name: str, data) -> Callable:
    return _file(name, yaml.safe_dump(data))


# ------------------------------------------------------------------ faults (monkeypatched I/O)
def _deny_writes():
    """Permission denied on creating any folder (as in a read-only folder; root ignores chmod)."""
    def fault(monkeypatch, paths):
        import os
        import tempfile

        def denied(path, *a, **k):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

        def mkdtemp(*a, dir=None, **k):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))

        monkeypatch.setattr(os, "mkdir", denied)
        monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    return fault


def _disk_full_after(n_ok: int):
    """The n+1-th file opened for writing fails with ENOSPC (the first n succeed)."""
    def fault(monkeypatch, paths):
        import builtins

        real_open = builtins.open
        count = {"n": 0}

        def open_(file, mode="r", *a, **k):
            if any(c in mode for c in "wax"):
                count["n"] += 1
                if count["n"] > n_ok:
                    raise OSError(errno.ENOSPC, "No space left on device", str(file))
            return real_open(file, mode, *a, **k)

        monkeypatch.setattr(builtins, "open", open_)
    return fault


def _disk_full_on_numpy_save(monkeypatch, paths):
    import numpy as np

    def full(file, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    monkeypatch.setattr(np, "save", full)


# ------------------------------------------------------------------ the table
CASES = [
    # --- npcai phantom
    Case("phantom-patients-not-int", "phantom {tmp}/e --patients abc", ("--patients", "'abc'")),
    Case("phantom-patients-zero", "phantom {tmp}/e --patients 0", "--patients"),
    Case("phantom-size-absurd", "phantom {tmp}/e --size 100000", ("--size", "100000")),
    Case("phantom-size-small", "phantom {tmp}/e --size 10", "--size"),
    Case("phantom-slices-one", "phantom {tmp}/e --slices 1", "--slices"),
    Case("phantom-centres", "phantom {tmp}/e --centres 9", "--centres"),
    Case("phantom-sequence", "phantom {tmp}/e --sequences FLAIR", "FLAIR"),
    Case("phantom-unknown-option", "phantom {tmp}/e --bogus", "--bogus"),
    Case("phantom-missing-out", "phantom", "OUT"),
    Case("phantom-out-is-file", "phantom {x} --patients 2 --size 64 --slices 2", "taken", _out_is_file),
    Case("phantom-out-not-empty", "phantom {x} --patients 2 --size 64 --slices 2", "full", _nonempty_dir),
    Case("phantom-out-under-file", "phantom {x}/sub --patients 2 --size 64 --slices 2", "taken", _out_is_file),
    Case("phantom-read-only", "phantom {tmp}/ro/e --patients 2 --size 64 --slices 2", ("ro", "ermission"),
         fault=_deny_writes()),
    Case("phantom-disk-full", "phantom {tmp}/e --patients 2 --size 64 --slices 2", "No space left",
         fault=_disk_full_after(3)),
    # --- npcai ingest
    Case("ingest-export-missing", "ingest {tmp}/nothing --clinical {export}/clinical.csv --out {tmp}/c", "nothing"),
    Case("ingest-export-is-file", "ingest {export}/clinical.csv --clinical {export}/clinical.csv --out {tmp}/c",
         "clinical.csv"),
    Case("ingest-clinical-missing", "ingest {export}/dicom --clinical {tmp}/none.csv --out {tmp}/c", "none.csv"),
    Case("ingest-clinical-is-folder", "ingest {export}/dicom --clinical {export}/dicom --out {tmp}/c", "dicom"),
    Case("ingest-clinical-garbage", "ingest {export}/dicom --clinical {x} --out {tmp}/c", "junk.csv",
         _file("junk.csv", bytes(range(256)) * 8)),
    Case("ingest-clinical-empty", "ingest {export}/dicom --clinical {x} --out {tmp}/c", "empty.csv",
         _file("empty.csv", "")),
    Case("ingest-clinical-no-id", "ingest {export}/dicom --clinical {x} --out {tmp}/c", "hospital_id",
         _clinical(lambda d: d.drop(columns="hospital_id"))),
    Case("ingest-clinical-bad-event", "ingest {export}/dicom --clinical {x} --out {tmp}/c", "pfs_event",
         _clinical(lambda d: d.assign(pfs_event="3"))),
    Case("ingest-clinical-bad-time", "ingest {export}/dicom --clinical {x} --out {tmp}/c", "pfs_months",
         _clinical(lambda d: d.assign(pfs_months="soon"))),
    Case("ingest-clinical-duplicate-id", "ingest {export}/dicom --clinical {x} --out {tmp}/c", "hospital_id",
         _clinical(lambda d: pd.concat([d, d.iloc[:1]]))),
    Case("ingest-clinical-bad-xlsx", "ingest {export}/dicom --clinical {x} --out {tmp}/c", "table.xlsx",
         _file("table.xlsx", b"PK\x03\x04 not really a workbook")),
    Case("ingest-clinical-unknown-ext", "ingest {export}/dicom --clinical {x} --out {tmp}/c", "table.pdf",
         _file("table.pdf", "%PDF-1.4")),
    Case("ingest-out-is-file", "ingest {export}/dicom --clinical {export}/clinical.csv --out {x}", "taken",
         _out_is_file),
    Case("ingest-out-not-empty", "ingest {export}/dicom --clinical {export}/clinical.csv --out {x}", "full",
         _nonempty_dir),
    Case("ingest-contours-missing",
         "ingest {export}/dicom --clinical {export}/clinical.csv --contours {tmp}/nocontours --out {tmp}/c",
         "nocontours"),
    Case("ingest-sequence-map-missing",
         "ingest {export}/dicom --clinical {export}/clinical.csv --sequence-map {tmp}/seq.yaml --out {tmp}/c",
         "seq.yaml"),
    Case("ingest-sequence-map-bad-yaml",
         "ingest {export}/dicom --clinical {export}/clinical.csv --sequence-map {x} --out {tmp}/c", "seq.yaml",
         _file("seq.yaml", "T1c: [unclosed\n")),
    Case("ingest-sequence-map-bad-regex",
         "ingest {export}/dicom --clinical {export}/clinical.csv --sequence-map {x} --out {tmp}/c", "seq.yaml",
         _yaml("seq.yaml", {"T1c": "(unclosed"})),
    Case("ingest-roi-map-bad",
         "ingest {export}/dicom --clinical {export}/clinical.csv --roi-map {x} --out {tmp}/c", "roi.yaml",
         _yaml("roi.yaml", ["not", "a", "mapping"])),
    Case("ingest-garbage-volume", "ingest --images {x} --clinical {ids} --out {tmp}/c", "H001_pre_T1c.nii.gz",
         _images_dir_with("H001_pre_T1c.nii.gz", gzip.compress(b"garbage" * 100))),
    Case("ingest-not-gzip-volume", "ingest --images {x} --clinical {ids} --out {tmp}/c", "H001_pre_T1c.nii.gz",
         _images_dir_with("H001_pre_T1c.nii.gz", b"plain bytes, not gzip")),
    Case("ingest-read-only", "ingest {export}/dicom --clinical {export}/clinical.csv --out {tmp}/ro/c",
         "ermission", fault=_deny_writes()),
    # --- npcai validate
    Case("validate-missing", "validate {tmp}/nocohort", "nocohort"),
    Case("validate-no-cohort-json", "validate {x}", "full", _nonempty_dir),
    Case("validate-is-file", "validate {x}", "taken", _out_is_file),
    Case("validate-cohort-json-garbage", "validate {cohort}", "cohort.json",
         _edit("cohort", "cohort.json", lambda s: s[: len(s) // 2])),
    Case("validate-cohort-json-list", "validate {cohort}", "cohort.json",
         _edit("cohort", "cohort.json", lambda s: "[1, 2, 3]\n")),
    Case("validate-cohort-json-no-patients", "validate {cohort}", "cohort.json",
         _edit("cohort", "cohort.json", lambda s: '{"format": "npcai-cohort/1"}\n')),
    # --- npcai roi build
    Case("roi-variant", "roi build {cohort} --variant blur:3 --name v", "blur:3"),
    Case("roi-variant-negative", "roi build {cohort} --variant expand:-5px --name v", "expand:-5px"),
    Case("roi-size-absurd", "roi build {cohort} --variant segmented --name v --size 100000", ("--size", "100000")),
    Case("roi-size-small", "roi build {cohort} --variant segmented --name v --size 8", "--size"),
    Case("roi-size-not-int", "roi build {cohort} --variant segmented --name v --size big", ("--size", "'big'")),
    Case("roi-region", "roi build {cohort} --variant segmented --name v --region brain", "brain"),
    Case("roi-slices", "roi build {cohort} --variant segmented --name v --slices max-area:x", "max-area:x"),
    Case("roi-sequence", "roi build {cohort} --variant segmented --name v --sequences FLAIR", "FLAIR"),
    Case("roi-timepoint", "roi build {cohort} --variant segmented --name v --timepoint never", "never"),
    Case("roi-min-component", "roi build {cohort} --variant segmented --name v --min-component axb", "axb"),
    Case("roi-normalise", "roi build {cohort} --variant segmented --name v --normalise window:abc", "window:abc"),
    Case("roi-frame", "roi build {cohort} --variant segmented --name v --frame circle", "circle"),
    Case("roi-no-auto-masks", "roi build {cohort} --variant segmented --name v --mask auto", "auto"),
    Case("roi-cohort-missing", "roi build {tmp}/nocohort --variant segmented --name v", "nocohort"),
    Case("roi-cohort-json-garbage", "roi build {cohort} --variant segmented --name v", "cohort.json",
         _edit("cohort", "cohort.json", lambda s: s.replace('"patients"', '"patients" ]', 1))),
    Case("roi-garbage-volume", "roi build {cohort} --variant segmented --name v --size 32 --min-component 0",
         "{x}", _garbage_volume),
    Case("roi-truncated-volume", "roi build {cohort} --variant segmented --name v --size 32 --min-component 0",
         "{x}", _truncated_volume),
    Case("roi-disk-full", "roi build {cohort} --variant segmented --name v --size 32 --min-component 0",
         "No space left", _copy("cohort"), fault=_disk_full_on_numpy_save),
    # --- npcai roi preview
    Case("preview-patient", "roi preview {cohort} --patient P9999 --out {tmp}/p.png", "P9999"),
    Case("preview-slice", "roi preview {cohort} --patient P0001 --slice middle --out {tmp}/p.png", "middle"),
    Case("preview-variants", "roi preview {cohort} --patient P0001 --variants wobble --out {tmp}/p.png", "wobble"),
    Case("preview-size-absurd", "roi preview {cohort} --patient P0001 --size 100000 --out {tmp}/p.png",
         ("--size", "100000")),
    Case("preview-out-is-folder", "roi preview {cohort} --patient P0001 --variants original --out {x}", "full",
         _nonempty_dir),
    # --- npcai segment
    Case("segment-train-arch", "segment train {cohort} --out {tmp}/s --arch transformer --no-pretrained",
         "transformer"),
    Case("segment-train-labels", "segment train {cohort} --out {tmp}/s --labels brain --no-pretrained", "brain"),
    Case("segment-train-batch", "segment train {cohort} --out {tmp}/s --batch-size 1 --no-pretrained",
         "--batch-size"),
    Case("segment-train-lr", "segment train {cohort} --out {tmp}/s --lr -1 --no-pretrained", "--lr"),
    Case("segment-train-size-absurd", "segment train {cohort} --out {tmp}/s --size 100000 --no-pretrained",
         ("--size", "100000")),
    Case("segment-train-out-is-file", "segment train {cohort} --out {x} --no-pretrained", "taken", _out_is_file),
    Case("segment-train-weights-missing", "segment train {cohort} --out {tmp}/s --weights {tmp}/w.pt",
         "w.pt"),
    Case("segment-train-cohort-missing", "segment train {tmp}/nocohort --out {tmp}/s --no-pretrained",
         "nocohort"),
    Case("segment-evaluate-missing", "segment evaluate {tmp}/nosegrun", "nosegrun"),
    Case("segment-evaluate-unfinished", "segment evaluate {segrun}", "segrun"),
    Case("segment-evaluate-split", "segment evaluate {segrun} --split train", "train"),
    Case("segment-predict-model-missing", "segment predict {cohort} --model {tmp}/nosegrun", "nosegrun"),
    Case("segment-compare-missing", "segment compare {tmp}/a {tmp}/b", "a"),
    # --- npcai train (all fail before training)
    Case("train-roi-missing", "train {cohort} --roi nothere --endpoint pfs-median --backbone resnet18 "
         "--no-pretrained --out {tmp}/r", "nothere"),
    Case("train-endpoint", "train {cohort} --roi seg --endpoint survival-ish --backbone resnet18 "
         "--no-pretrained --out {tmp}/r", "survival-ish"),
    Case("train-backbone", "train {cohort} --roi seg --endpoint pfs-median --backbone notanet "
         "--no-pretrained --out {tmp}/r", "notanet"),
    Case("train-unit", "train {cohort} --roi seg --endpoint pfs-median --backbone resnet18 --unit scan "
         "--no-pretrained --out {tmp}/r", "scan"),
    Case("train-where-column", "train {cohort} --roi seg --endpoint pfs-median --backbone resnet18 "
         "--where 'grade == 2' --no-pretrained --out {tmp}/r", "grade"),
    Case("train-lr-not-number", "train {cohort} --roi seg --endpoint pfs-median --backbone resnet18 "
         "--lr fast --no-pretrained --out {tmp}/r", ("--lr", "'fast'")),
    Case("train-test-fraction", "train {cohort} --roi seg --endpoint pfs-median --backbone resnet18 "
         "--test-fraction 1.5 --no-pretrained --out {tmp}/r", "--test-fraction"),
    Case("train-out-is-file", "train {cohort} --roi seg --endpoint pfs-median --backbone resnet18 "
         "--no-pretrained --out {x}", "taken", _out_is_file),
    Case("train-cohort-missing", "train {tmp}/nocohort --roi seg --endpoint pfs-median --backbone resnet18 "
         "--no-pretrained --out {tmp}/r", "nocohort"),
    Case("train-split-from-missing", "train {cohort} --roi seg --endpoint pfs-median --backbone resnet18 "
         "--split-from {tmp}/norun --no-pretrained --out {tmp}/r", "norun"),
    Case("train-config-missing", "train --config {tmp}/none.yaml --out {tmp}/r", "none.yaml"),
    Case("train-config-bad-yaml", "train --config {x} --out {tmp}/r", "config.yaml",
         _file("config.yaml", "options: {cohort: [unclosed\n")),
    Case("train-config-not-mapping", "train --config {x} --out {tmp}/r", "config.yaml",
         _file("config.yaml", "- just\n- a list\n")),
    Case("train-config-unknown-option", "train --config {x} --out {tmp}/r", "config.yaml",
         _yaml("config.yaml", {"options": {"learning_speed": 3}})),
    # --- npcai ensemble
    Case("ensemble-one-run", "ensemble {run} --out {tmp}/e", "two"),
    Case("ensemble-run-missing", "ensemble {run} {tmp}/norun --out {tmp}/e", "norun"),
    Case("ensemble-weights-text", "ensemble {run} {run_b} --weights a,b --out {tmp}/e", "a,b"),
    Case("ensemble-weights-count", "ensemble {run} {run_b} --weights 1,2,3 --out {tmp}/e", "1,2,3"),
    Case("ensemble-out-is-file", "ensemble {run} {run_b} --out {x}", "taken", _out_is_file),
    Case("ensemble-bad-prob", "ensemble {run} {run_b} --out {tmp}/e", "predictions_patients.csv",
         _edit_csv("run", "predictions_patients.csv", lambda d: d.assign(prob="high"))),
    # --- npcai evaluate
    Case("evaluate-missing", "evaluate {tmp}/norun", "norun"),
    Case("evaluate-is-file", "evaluate {x}", "taken", _out_is_file),
    Case("evaluate-prob-not-number", "evaluate {run}", ("predictions_patients.csv", "prob"),
         _edit_csv("run", "predictions_patients.csv", lambda d: d.assign(prob=d["prob"].where(d.index != 2, "n/a")))),
    Case("evaluate-prob-out-of-range", "evaluate {run}", ("predictions_patients.csv", "prob"),
         _edit_csv("run", "predictions_patients.csv", lambda d: d.assign(prob="7"))),
    Case("evaluate-prob-missing-column", "evaluate {run}", ("predictions_patients.csv", "prob"),
         _edit_csv("run", "predictions_patients.csv", lambda d: d.drop(columns="prob"))),
    Case("evaluate-label-not-binary", "evaluate {run}", ("predictions_patients.csv", "label"),
         _edit_csv("run", "predictions_patients.csv", lambda d: d.assign(label="2"))),
    Case("evaluate-predictions-garbage", "evaluate {run}", "predictions_patients.csv",
         _edit("run", "predictions_patients.csv", lambda s: "\x00\x01\x02 garbage\n")),
    Case("evaluate-config-garbage", "evaluate {run}", "config.yaml",
         _edit("run", "config.yaml", lambda s: "options: [unclosed\n")),
    Case("evaluate-config-list", "evaluate {run}", "config.yaml",
         _edit("run", "config.yaml", lambda s: "- 1\n- 2\n")),
    Case("evaluate-split", "evaluate {run} --split holdout", "holdout"),
    Case("evaluate-threshold", "evaluate {run} --threshold high", ("--threshold", "'high'")),
    Case("evaluate-read-only", "evaluate {run}", "ermission", _copy("run"), fault=_deny_writes()),
    Case("evaluate-disk-full", "evaluate {run} --n-boot 0", "No space left", _copy("run"),
         fault=_disk_full_after(0)),
    # --- npcai compare
    Case("compare-one-run", "compare {run} --out {tmp}/c", "two"),
    Case("compare-run-missing", "compare {run} {tmp}/norun --out {tmp}/c", "norun"),
    Case("compare-group-by", "compare {run} {run_b} --group-by colour --out {tmp}/c", "colour"),
    Case("compare-pairs", "compare {run} {run_b} --pairs r18-b0 --out {tmp}/c", "r18-b0"),
    Case("compare-out-is-file", "compare {run} {run_b} --out {x}", "taken", _out_is_file),
    Case("compare-out-not-empty", "compare {run} {run_b} --out {x}", "full", _nonempty_dir),
    Case("compare-bad-prob", "compare {run} {run_b} --out {tmp}/c", ("predictions_patients.csv", "prob"),
         _edit_csv("run", "predictions_patients.csv", lambda d: d.assign(prob="x"))),
    # --- npcai table1
    Case("table1-missing", "table1 {tmp}/nothing", "nothing"),
    Case("table1-by", "table1 {cohort} --by shoe_size", "shoe_size"),
    Case("table1-variables", "table1 {cohort} --by centre --variables age,shoe_size", "shoe_size"),
    Case("table1-label-no-endpoint", "table1 {cohort} --by label", "endpoint"),
    Case("table1-out-is-folder", "table1 {cohort} --by centre --out {x}", "full", _nonempty_dir),
    Case("table1-run-split-garbage", "table1 {run}", "split.csv",
         _edit("run", "split.csv", lambda s: "\x00garbage\n")),
    # --- npcai explain (all fail before any model is loaded)
    Case("explain-missing", "explain {tmp}/norun --out {tmp}/x", "norun"),
    Case("explain-method", "explain {run} --method magic --out {tmp}/x", "magic"),
    Case("explain-split", "explain {run} --split holdout --out {tmp}/x", "holdout"),
    Case("explain-target", "explain {run} --target everything --out {tmp}/x", "everything"),
    Case("explain-top", "explain {run} --top 0 --out {tmp}/x", "--top"),
    Case("explain-no-checkpoint", "explain {run} --out {tmp}/x", "best.ckpt"),
    # --- npcai study
    Case("study-unknown", "study run nosuchstudy --cohort {cohort} --out {tmp}/s", "nosuchstudy"),
    Case("study-init-exists", "study init {cohort} --out {x}", "mine.yaml", setup=_file("mine.yaml", "mine\n")),
    Case("study-init-design", "study init {cohort} --design nosuchdesign --out {tmp}/s.yaml", "nosuchdesign"),
    Case("study-init-cohort-missing", "study init {tmp}/nocohort --out {tmp}/s.yaml", "nocohort"),
    Case("study-init-into-cohort", "study init {cohort} --out {cohort}/study.yaml --force", "cohort"),
    Case("study-yaml-garbage", "study run {x} --cohort {cohort} --out {tmp}/s", "mine.yaml",
         _file("mine.yaml", "name: [unclosed\n")),
    Case("study-yaml-extra-key", "study run {x} --cohort {cohort} --out {tmp}/s", "mine.yaml",
         _yaml("mine.yaml", {"name": "mine", "colour": "blue"})),
    Case("study-cohort-missing", "study run peritumoral --cohort {tmp}/nocohort --out {tmp}/s", "nocohort"),
    Case("study-preset", "study run peritumoral --cohort {cohort} --preset turbo --out {tmp}/s", "turbo"),
    Case("study-epochs", "study run peritumoral --cohort {cohort} --epochs 0 --out {tmp}/s", "--epochs"),
    Case("study-export-missing", "study run peritumoral --export {tmp}/noexport --out {tmp}/s", "noexport"),
    Case("study-no-input", "study run peritumoral --out {tmp}/s", "cohort"),
    Case("study-decision-folds", "study run decision --cohort {cohort} --folds 3 --out {tmp}/s", "--folds"),
    Case("study-decision-no-treatment", "study run decision --cohort {cohort} --out {tmp}/s",
         ("clinical.csv", "'treatment'"),
         _edit("cohort", "clinical.csv", lambda t: "\n".join(
             ",".join(c for i, c in enumerate(row.split(",")) if i != t.splitlines()[0].split(",").index("treatment"))
             for row in t.splitlines()) + "\n")),
    # --- npcai recommend
    Case("recommend-decision-not-a-study", "recommend decision {cohort} --cohort {cohort} --out {tmp}/r",
         "not a finished decision study"),
]


def _snapshot(*roots: Path) -> set[str]:
    return {str(p) for r in roots if r.exists() for p in r.rglob("*")}


def _params():
    return [pytest.param(c, id=c.id, marks=pytest.mark.xfail(strict=True, reason=c.xfail) if c.xfail else ())
            for c in CASES]


@pytest.mark.parametrize("case", _params())
def test_bad_input_gives_one_error_line(case: Case, env, tmp_path, cli, monkeypatch):
    values = {"export": env.export, "cohort": env.cohort, "run": env.run, "run_b": env.run_b,
              "segrun": env.segrun, "tmp": tmp_path}
    if case.setup is not None:
        values.update(case.setup(env, tmp_path))
    argv = [tok.format(**values) for tok in shlex.split(case.argv)]
    roots = (tmp_path, env.cohort.parent, env.export)
    before = _snapshot(*roots)
    if case.fault is not None:
        case.fault(monkeypatch, values)
    r = cli(*argv)
    monkeypatch.undo()
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert r.code == 2, r
    assert len(errors) == 1 and lines[-1] == errors[0], r
    assert "Traceback" not in r.stderr, r
    culprits = (case.culprit,) if isinstance(case.culprit, str) else case.culprit
    for c in culprits:
        assert c.format(**values) in errors[0], (c, errors[0])
    after = _snapshot(*roots)
    assert after == before, f"files appeared: {sorted(after - before)[:5]}, vanished: {sorted(before - after)[:5]}"


def test_the_table_covers_every_command_with_at_least_60_inputs():
    commands = {c.argv.split()[0] if c.argv.split()[0] not in ("roi", "segment", "study")
                else " ".join(c.argv.split()[:2]) for c in CASES}
    assert len(CASES) >= 60
    assert {"phantom", "ingest", "validate", "roi build", "roi preview", "segment train", "segment evaluate",
            "segment predict", "segment compare", "train", "ensemble", "evaluate", "compare", "table1",
            "explain", "study run"} <= commands
    assert len({c.id for c in CASES}) == len(CASES)


def test_fixture_runs_are_valid(env, tmp_path, cli):
    """The untouched fixtures pass, so each case above fails for its one bad input."""
    run = tmp_path / "run"
    shutil.copytree(env.run, run)
    assert cli("evaluate", run, "--n-boot", "0", "--no-figures").code == 0
    r = cli("compare", env.run, env.run_b, "--out", tmp_path / "cmp")
    assert r.code == 0, r
    assert cli("validate", env.cohort, "--no-hashes").code == 0
    assert cli("table1", env.cohort, "--by", "centre").code == 0
