"""No identifier of the export reaches any output (issue 18).

A tiny end-to-end study (ingest from the export, ROI dataset, training, Grad-CAM, report) on
the phantom whose clinical table carries extra identifying columns planted here. Every file
the study writes is searched for every identifier of the export: patient names, hospital
ids, birth dates, DICOM UIDs, institution names, accession numbers and the planted values.
The search looks at raw bytes, inside gunzipped files (.nii.gz), inside zip members
(.ckpt), inside PNG text chunks (compressed ones too) and inside base64 images in HTML.
"""
from __future__ import annotations

import base64
import contextlib
import gzip
import io
import re
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import pandas as pd
import pydicom
import pytest
import yaml

from npcai.cohort.deidentify import load_pseudonym_map
from npcai.cohort.model import pseudonym_map_path

STUDY = {
    "name": "deid", "title": "De-identification check", "endpoint": "pfs-median",   # generic layout
    "rois": [{"name": "box", "label": "Bounding box", "variant": "bbox:2px", "region": "both"}],
    "backbones": ["resnet18"],
    "training": {"epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 0.001, "size": 32,
                 "pretrained": False},
    "split": {"test_fraction": 0.35, "val_fraction": 0.35, "seed": 0},
    "explain": {"top": 1},
}
_DATA_URI = re.compile(rb"data:[\w/+.-]+;base64,([A-Za-z0-9+/=]+)")


def _planted(ids: list[str]) -> pd.DataFrame:
    """Identifying columns a hospital spreadsheet might carry, one value per patient."""
    n = len(ids)
    return pd.DataFrame({
        "姓名": [f"患者{chr(0x4E00 + 37 * i)}{chr(0x4E80 + 11 * i)}" for i in range(n)],
        "住院号": [f"ZY2023{i:05d}" for i in range(n)],
        "id_card": [f"4401061975{i:02d}0{i % 10}{i:03d}X" for i in range(n)],
        "PatientBirthDate": [f"19{50 + i % 30}-0{1 + i % 9}-1{i % 10}" for i in range(n)],
        "old_id": [f"OLD-{7000 + 13 * i}" for i in range(n)],
        "study_uid": [f"1.2.840.99999.7.{1000 + i}.{31 * i + 5}" for i in range(n)],
        "联系电话": [f"+86 139 {1000 + i:04d} {7000 + i:04d}" for i in range(n)],
        "notes": [f"reviewed with chart {h}; referral letter REF-{9000 + i}" for i, h in enumerate(ids)],
    })


def _identifiers(export: Path, planted: pd.DataFrame, hospital_ids: list[str]) -> set[str]:
    found: set[str] = set(hospital_ids)
    for f in (export / "dicom").rglob("*"):
        if not f.is_file():
            continue
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        name = str(ds.get("PatientName", ""))
        if name:
            found.add(name)
            parts = name.split("^")
            if len(parts) == 2 and all(len(p) >= 2 for p in parts):
                found.update({f"{parts[1]} {parts[0]}", f"{parts[0]} {parts[1]}"})
        for tag in ("PatientID", "PatientBirthDate", "InstitutionName", "AccessionNumber", "StudyInstanceUID",
                    "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "StudyID"):
            value = str(ds.get(tag, "")).strip()
            if len(value) >= 4:
                found.add(value)
    for col in planted.columns:
        found.update(str(v) for v in planted[col])
    found.update(re.findall(r"REF-\d+", " ".join(planted["notes"])))
    return {v for v in found if len(v) >= 4}


def _payloads(name: str, data: bytes, depth: int = 0):
    """``data`` and every decoded payload inside it: gzip, zip members, PNG text, base64 images."""
    yield name, data
    if depth > 3:
        return
    if data[:2] == b"\x1f\x8b":
        yield from _payloads(f"{name}!gunzip", gzip.decompress(data), depth + 1)
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for member in z.namelist():
                yield from _payloads(f"{name}!{member}", z.read(member), depth + 1)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        pos = 8
        while pos + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if kind in (b"tEXt", b"iTXt"):
                yield f"{name}!{kind.decode()}", body
            elif kind == b"zTXt":
                yield f"{name}!zTXt", zlib.decompress(body.split(b"\x00", 1)[1][1:])
            pos += 12 + length
    if b"base64," in data:
        for m in _DATA_URI.finditer(data):
            yield from _payloads(f"{name}!base64", base64.b64decode(m.group(1)), depth + 1)


@pytest.fixture(scope="module")
def deid_study(small_export, tmp_path_factory):
    """The small phantom export with planted identifying columns, run as a tiny study."""
    import torch

    from npcai.cli import main

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("deid")
    export = root / "export"
    shutil.copytree(small_export, export)
    clinical = pd.read_csv(export / "clinical.csv", dtype=str)
    planted = _planted(clinical["hospital_id"].tolist())
    pd.concat([clinical, planted], axis=1).to_csv(export / "clinical.csv", index=False)
    study = root / "deid.yaml"
    study.write_text(yaml.safe_dump(STUDY, allow_unicode=True))
    out = root / "study"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
        code = main(["study", "run", str(study), "--export", str(export), "--out", str(out)])
    assert code == 0, err.getvalue()[-3000:]
    return export, out, planted, clinical["hospital_id"].tolist(), err.getvalue()


@pytest.mark.slow
def test_no_identifier_of_the_export_reaches_any_output(deid_study):
    export, out, planted, hospital_ids, console = deid_study
    needles = _identifiers(export, planted, hospital_ids)
    assert len(needles) > 16 * 8                     # the search really has identifiers to look for
    encoded = {n: n.encode("utf-8") for n in needles}
    files = [p for p in out.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files} | {"".join(p.suffixes[-2:]) for p in files}
    assert {".gz", ".ckpt", ".png", ".html", ".csv", ".json", ".yaml"} <= kinds, kinds
    searched, leaks = 0, []
    for path in files:
        for where, data in _payloads(str(path.relative_to(out)), path.read_bytes()):
            searched += 1
            leaks += [(where, n) for n, b in encoded.items() if b in data]
    assert not leaks, leaks[:10]
    assert searched > len(files)                     # gz, zip members, PNG chunks and images were opened
    leaked_to_console = [n for n in needles if n in console]
    assert not leaked_to_console, leaked_to_console[:10]


@pytest.mark.slow
def test_the_pseudonym_map_lies_outside_the_study_and_holds_the_salt(deid_study):
    export, out, _, hospital_ids, _ = deid_study
    assert not list(out.rglob("*.pseudonyms.csv"))
    pmap = load_pseudonym_map(pseudonym_map_path(out / "cohort"))
    assert pseudonym_map_path(out / "cohort").parent == out.resolve().parent
    assert sorted(pmap.pseudonyms) == sorted(hospital_ids) and len(pmap.salt) == 32


def test_reingest_of_the_phantom_without_one_patient_keeps_every_pseudonym(cli, small_export, small_cohort,
                                                                           tmp_path):
    first = load_pseudonym_map(pseudonym_map_path(small_cohort)).pseudonyms
    clinical = pd.read_csv(small_export / "clinical.csv", dtype=str)
    gone = sorted(first, key=first.get)[2]             # the third patient leaves the cohort
    clinical[clinical["hospital_id"] != gone].to_csv(tmp_path / "clinical.csv", index=False)
    r = cli("ingest", small_export / "dicom", "--clinical", tmp_path / "clinical.csv",
            "--contours", small_export / "contours", "--out", tmp_path / "cohort",
            "--pseudonyms", pseudonym_map_path(small_cohort))
    assert r.code == 0, r
    again = load_pseudonym_map(pseudonym_map_path(tmp_path / "cohort")).pseudonyms
    assert again == first
    from npcai.cohort.model import Cohort

    assert Cohort.load(tmp_path / "cohort").patient_ids == sorted(p for h, p in first.items() if h != gone)


def test_the_search_finds_identifiers_hidden_in_every_container(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    needle = "ZS980791"
    fig = plt.figure(figsize=(1, 1))
    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Title": f"patient {needle}"})
    plt.close(fig)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", f"..{needle}..".encode() * 50)
    html = b'<img src="data:image/png;base64,' + base64.b64encode(png.getvalue()) + b'">'
    for data in (gzip.compress(needle.encode() * 3), zipped.getvalue(), png.getvalue(), html):
        found = [where for where, d in _payloads("x", data) if needle.encode() in d]
        assert found and found[-1] != "x", found          # found inside a decoded payload
    assert needle.encode() not in html and needle.encode() not in gzip.compress(needle.encode() * 3)
