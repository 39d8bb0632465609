"""The web tool's API: correct answers, every refusal, no identifiers anywhere, nothing left behind."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import stat
import threading
import zipfile

import numpy as np
import pytest

from .helpers import CLINICAL, patient_zip, post


def _zip(members: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _left(root):
    return sorted(p.name for p in root.iterdir())


# --------------------------------------------------------------------------- answers
def test_predict_reproduces_the_runs_own_prediction(make_client, phantom_patient, served):
    """The served pipeline (upload -> ingest -> ROI -> checkpoint) gives the run's probability for a
    patient the run already predicted, and the request's folder is gone afterwards."""
    client, root = make_client()
    r = post(client, phantom_patient, query="?with_images=true")
    assert r.status_code == 200, r.text
    body = r.json()
    risk = body["outputs"]["risk"]
    assert risk["probability"] == pytest.approx(phantom_patient["prob"], abs=2e-3)
    ref = served.reference
    expected = 100 * ((ref < risk["probability"]).sum() + 0.5 * (ref == risk["probability"]).sum()) / len(ref)
    assert risk["percentile"] == pytest.approx(expected)
    assert risk["reference"]["n"] == len(ref) > 0
    assert risk["interval"] is None and risk["interval_note"]
    assert body["notice"].startswith("Research use only, not a medical device")
    assert body["pseudonym"].startswith("U-") and body["pseudonym"] != phantom_patient["patient_id"]
    cam = body["outputs"]["gradcam"]
    assert 1 <= len(cam["slices"]) <= 4
    for s in cam["slices"]:
        finite = [v for v in s["shares"].values() if v is not None]
        assert sum(finite) == pytest.approx(1.0, abs=1e-6)
        from PIL import Image

        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(s["overlay_png"]))).convert("RGB"))
        assert img.shape == (288, 288, 3)
        assert (img == 255).all(axis=2).sum() > 50            # the tumour outline (and the scale bar) are drawn
    assert base64.b64decode(body["figures"]["report_png"]).startswith(b"\x89PNG")
    assert body["clinical"] == {"age": 52.0, "t_stage": 3, "n_stage": 1, "treatment": "CCRT"}
    assert body["seconds"]["total"] >= body["seconds"]["model_compute"] > 0
    stages = ("upload", "unpack", "ingest", "roi_and_prediction", "forward", "cam", "render")
    assert 0 < sum(body["seconds"][k] for k in stages) <= body["seconds"]["total"] + 2e-3
    assert _left(root) == []


def test_contour_inside_the_zip_and_html_page(make_client, phantom_patient):
    client, root = make_client()
    data = patient_zip(phantom_patient["export"], phantom_patient["hospital_id"], contour_inside=True)
    r = post(client, phantom_patient, zip_bytes=data, contour=False)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["risk"]["probability"] == pytest.approx(phantom_patient["prob"], abs=2e-3)
    page = client.post("/predict", files={"images": ("p.zip", data, "application/zip")},
                       data={k: str(v) for k, v in CLINICAL.items()})
    assert page.status_code == 200
    for needle in ('id="results"', 'id="risk"', 'id="gradcam"', 'class="cam"', "Research use only, not a medical device",
                   'id="download-report"', 'id="model-card"'):
        assert needle in page.text
    assert _left(root) == []


def test_model_card_and_health(make_client, served):
    client, _ = make_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    m = client.get("/api/model").json()
    card = m["card"]
    assert card["patients"] == {k: served.card.patients[k] for k in ("train", "val", "test")}
    assert sum(card["patients"].values()) > 0
    assert card["test_auc"] is None          # 3 test patients: DeLong's CI is undefined, so no AUC is shown
    assert "not a medical device" in card["intended_use"] and card["limits"]
    assert {f["name"] for f in m["fields"]} >= {"age", "t_stage", "n_stage"}
    assert m["outputs"] == ["risk", "gradcam"]
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_model_card_reads_the_runs_evaluation(serve_run, tmp_path):
    """With RUN/metrics.json (npcai evaluate), the card shows its test AUC and CI, on the page too."""
    import shutil

    from fastapi.testclient import TestClient

    from npcai.serve.app import create_app

    run = tmp_path / "run"
    shutil.copytree(serve_run, run)
    (run / "metrics.json").write_text(json.dumps({
        "patient": {"auc": {"auc": 0.71, "se": 0.05, "low": 0.61, "high": 0.81, "n_pos": 20, "n_neg": 25}},
        "threshold": {"value": 0.42, "source": "Youden's J on 12 validation patients"},
        "c_index": {"c_index": 0.66, "low": 0.58, "high": 0.74, "kind": "survival"}}))
    client = TestClient(create_app(run))
    card = client.get("/api/model").json()["card"]
    assert card["test_auc"] == {"auc": 0.71, "low": 0.61, "high": 0.81, "n_pos": 20, "n_neg": 25}
    assert card["threshold"]["value"] == 0.42 and card["test_c_index"]["c_index"] == 0.66
    page = client.get("/").text
    assert "0.71 (95% CI 0.61–0.81; 20 + 25 patients)" in page and "0.66 (95% CI 0.58–0.74)" in page


def test_form_is_prefilled_with_nothing(make_client):
    client, _ = make_client()
    page = client.get("/").text
    assert "Research use only, not a medical device" in page
    for name in ("age", "t_stage", "n_stage"):
        assert f'name="{name}"' in page
    import re

    inputs = re.findall(r"<input[^>]*>", page)
    assert inputs and not any(" value=" in tag for tag in inputs)
    assert "<option value=\"\" selected disabled>" in page and page.count(" selected") == 1


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("members, status, needle", [
    ({"../../evil.dcm": b"x"}, 422, "zip slip"),
    ({"/etc/evil.dcm": b"x"}, 422, "absolute path"),
    ({"notes.txt": b"hello"}, 422, "no DICOM image files"),
])
def test_bad_zips_are_refused(make_client, phantom_patient, members, status, needle):
    client, root = make_client()
    r = post(client, phantom_patient, zip_bytes=_zip(members))
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]
    assert _left(root) == []


def test_symlink_member_is_refused(make_client, phantom_patient):
    client, root = make_client()
    r = post(client, phantom_patient, zip_bytes=_zip({"a.dcm": b"x"}, symlink="link.dcm"))
    assert r.status_code == 422 and "symbolic link" in r.json()["error"]


def test_zip_bomb_is_refused_before_inflating(make_client, phantom_patient):
    client, root = make_client()
    bomb = _zip({"slice.dcm": bytes(64 * 1024 ** 2)})      # 64 MB of zeros, ~64 kB compressed
    assert len(bomb) < 1024 ** 2
    r = post(client, phantom_patient, zip_bytes=bomb)
    assert r.status_code == 413 and "zip bomb" in r.json()["error"]
    from npcai.serve.upload import UploadLimits

    client, _ = make_client(limits=UploadLimits(max_members=3))
    r = post(client, phantom_patient)
    assert r.status_code == 413 and "more than the limit of 3" in r.json()["error"]
    client, _ = make_client(limits=UploadLimits(max_uncompressed=10_000))
    r = post(client, phantom_patient)
    assert r.status_code == 413 and "unpacks to more than" in r.json()["error"]
    assert _left(root) == []


def test_not_a_zip_and_missing_fields(make_client, phantom_patient):
    client, root = make_client()
    r = post(client, phantom_patient, zip_bytes=b"%PDF-1.4 not a zip")
    assert r.status_code == 415 and "not a zip archive" in r.json()["error"]
    r = client.post("/api/predict", data={"clinical": json.dumps(CLINICAL)})
    assert r.status_code == 422 and r.json()["error"].startswith("images: missing")
    r = client.post("/api/predict", files={"images": ("p.zip", phantom_patient["zip"], "application/zip")})
    assert r.status_code == 422 and r.json()["error"].startswith("clinical: missing")
    r = post(client, phantom_patient, clinical={"age": 52, "n_stage": 1, "treatment": "CCRT"})
    assert r.status_code == 422 and "t_stage" in r.json()["error"] and "missing" in r.json()["error"]
    r = client.post("/api/predict", files={"images": ("p.zip", phantom_patient["zip"], "application/zip")},
                    data={"clinical": "{age: 52"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]
    assert _left(root) == []


@pytest.mark.parametrize("field, value, needle", [
    ("age", 150, "outside 0-120 years"), ("t_stage", 7, "outside 1-4"), ("n_stage", 1.5, "whole number"),
    ("treatment", "surgery", "not valid"), ("age", "fifty", "not a number"),
])
def test_clinical_values_out_of_range(make_client, phantom_patient, field, value, needle):
    client, _ = make_client()
    r = post(client, phantom_patient, clinical={**CLINICAL, field: value})
    assert r.status_code == 422
    assert field in r.json()["error"] and needle in r.json()["error"]


def test_population_warning(make_client, phantom_patient, served):
    client, _ = make_client()
    low = served.population["age"][0]
    r = post(client, phantom_patient, clinical={**CLINICAL, "age": max(low - 10, 0)})
    assert r.status_code == 200
    assert any("outside the training patients' range" in w for w in r.json()["warnings"])


def test_oversize_upload_is_cut_while_streaming(make_client, phantom_patient):
    from npcai.serve.upload import UploadLimits

    client, root = make_client(limits=UploadLimits(max_bytes=20_000))
    r = post(client, phantom_patient)
    assert r.status_code == 413 and "larger than the limit" in r.json()["error"]
    assert _left(root) == []


def test_body_limit_counts_chunks_without_content_length():
    """No Content-Length: the middleware stops reading at the first chunk over the limit."""
    from npcai.serve.app import BodyLimitMiddleware

    read = []

    async def app(scope, receive, send):
        while True:
            msg = await receive()
            read.append(len(msg["body"]))
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    chunks = [{"type": "http.request", "body": b"x" * 1000, "more_body": True} for _ in range(50)]
    sent = []

    async def receive():
        return chunks.pop(0)

    async def send(msg):
        sent.append(msg)

    asyncio.run(BodyLimitMiddleware(app, 3500)({"type": "http", "headers": []}, receive, send))
    assert sent[0]["status"] == 413
    assert len(read) == 3 and len(chunks) == 46          # the 4th chunk crossed the limit; 46 never read


@pytest.mark.parametrize("description, needles", [
    ("AX T2 FSE", ("reads a pre-treatment T1c scan", "pre T2")),
    ("SCOUT", ("images: no MR/CT series with a recognised sequence", "SCOUT")),
])
def test_wrong_sequence_is_named(make_client, phantom_patient, description, needles):
    """A T2-only (or localiser-only) upload for a T1c model: the message names what the model reads and what came."""
    import pydicom

    buf = io.BytesIO()
    src = zipfile.ZipFile(io.BytesIO(phantom_patient["zip"]))
    with zipfile.ZipFile(buf, "w") as zf:
        for info in src.infolist():
            ds = pydicom.dcmread(io.BytesIO(src.read(info)))
            ds.SeriesDescription = description
            out = io.BytesIO()
            ds.save_as(out)
            zf.writestr(info.filename, out.getvalue())
    client, root = make_client()
    r = post(client, phantom_patient, zip_bytes=buf.getvalue())
    assert r.status_code == 422
    assert all(n in r.json()["error"] for n in needles), r.json()
    assert _left(root) == []


def test_contour_on_another_grid(make_client, phantom_patient, tmp_path):
    import SimpleITK as sitk

    path = tmp_path / "c.nii.gz"
    path.write_bytes(phantom_patient["contour"])
    img = sitk.ReadImage(str(path))
    img.SetOrigin(tuple(o + 80.0 for o in img.GetOrigin()))
    sitk.WriteImage(img, str(path))
    client, root = make_client()
    r = post(client, phantom_patient, contour=path.read_bytes())
    assert r.status_code == 422
    assert "another physical space" in r.json()["error"]
    assert "npcai-serve-" not in r.json()["error"]       # no private path in the message
    assert _left(root) == []


def test_two_patients_in_one_zip(make_client, phantom_patient, small_export):
    other = sorted(p.name for p in (small_export / "dicom").iterdir() if p.name != phantom_patient["hospital_id"])[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for hid in (phantom_patient["hospital_id"], other):
            for p in (small_export / "dicom" / hid).rglob("*.dcm"):
                zf.write(p, p.relative_to(small_export / "dicom"))
    client, _ = make_client()
    r = post(client, phantom_patient, zip_bytes=buf.getvalue())
    assert r.status_code == 422 and "2 different patients" in r.json()["error"]
    assert other not in r.text and phantom_patient["hospital_id"] not in r.text


def test_missing_contour(make_client, phantom_patient):
    client, _ = make_client()
    r = post(client, phantom_patient, contour=False)
    assert r.status_code == 422 and r.json()["error"].startswith("contour: no tumour contour")


# --------------------------------------------------------------------------- identifiers
def test_identifiers_never_leave(make_client, phantom_patient, caplog):
    """PatientName, PatientID and birth date: absent from every answer (JSON, page, report) and every log."""
    assert len(phantom_patient["identifiers"]) >= 3
    uploaded = b"".join(zipfile.ZipFile(io.BytesIO(phantom_patient["zip"])).read(n)
                        for n in zipfile.ZipFile(io.BytesIO(phantom_patient["zip"])).namelist()[:1])
    assert all(i.encode() in uploaded for i in phantom_patient["identifiers"])   # they were there to leak
    client, _ = make_client()
    caplog.set_level(logging.DEBUG)
    answers = [post(client, phantom_patient, query="?with_images=true"),
               client.post("/predict", files={"images": ("p.zip", phantom_patient["zip"], "application/zip"),
                                              "contour": ("c.nii.gz", phantom_patient["contour"])},
                           data={k: str(v) for k, v in CLINICAL.items()}),
               post(client, phantom_patient, contour=False),             # an error names things too
               client.get("/api/model"), client.get("/")]
    assert answers[0].status_code == 200 and answers[1].status_code == 200 and answers[2].status_code == 422
    texts = [a.text for a in answers]
    body = answers[0].json()
    texts.append(base64.b64decode(body["figures"]["report_png"]).decode("latin-1"))
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "ingest" in logs or "refused upload" in logs          # the logs were captured
    for ident in phantom_patient["identifiers"]:
        for text in texts + [logs]:
            assert ident.lower() not in text.lower(), f"identifier {ident!r} leaked"


# --------------------------------------------------------------------------- access and load
def test_token_required_except_health(make_client, phantom_patient):
    client, _ = make_client(token="s3cret-token")
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/model").status_code == 401
    assert client.get("/api/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/model", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert post(client, phantom_patient).status_code == 401
    r = client.get("/?token=s3cret-token", follow_redirects=False)
    assert r.status_code == 303 and "npcai_token" in r.headers["set-cookie"]
    assert client.get("/").status_code == 200          # the cookie now authorises the browser


def test_worker_pool_is_bounded():
    from npcai.serve.service import WorkerPool
    from npcai.serve.upload import UploadError

    pool = WorkerPool(workers=1, queue=1)
    gate = threading.Event()

    async def scenario():
        first = asyncio.ensure_future(pool.run(gate.wait, 5))
        second = asyncio.ensure_future(pool.run(lambda: "second"))
        await asyncio.sleep(0.05)
        with pytest.raises(UploadError) as exc:
            await pool.run(lambda: "third")
        gate.set()
        return exc.value.status, await first, await second

    status, a, b = asyncio.run(scenario())
    assert status == 503 and a is True and b == "second" and pool.peak == 1
    pool.shutdown()


def test_concurrent_requests_all_correct(make_client, phantom_patient):
    """Four at a time through two workers: every answer right, no folder left."""
    from concurrent.futures import ThreadPoolExecutor

    client, root = make_client(workers=2, queue=4)
    with ThreadPoolExecutor(4) as ex:
        answers = list(ex.map(lambda _: post(client, phantom_patient), range(4)))
    probs = [a.json()["outputs"]["risk"]["probability"] for a in answers]
    assert all(a.status_code == 200 for a in answers)
    assert np.allclose(probs, phantom_patient["prob"], atol=2e-3)
    assert len({a.json()["pseudonym"] for a in answers}) == 4
    assert _left(root) == []


def test_nifti_volumes_give_the_same_answer(make_client, phantom_patient, small_cohort):
    """A zip of NIfTI volumes (named by sequence) + a NIfTI contour: the same probability as from DICOM."""
    pid = phantom_patient["patient_id"]
    volume = (small_cohort / "images" / f"{pid}_pre_T1c.nii.gz").read_bytes()
    contour = (small_cohort / "masks" / f"{pid}_pre_T1c.nii.gz").read_bytes()
    client, root = make_client()
    r = post(client, phantom_patient, zip_bytes=_zip({"scan/T1c.nii.gz": volume}), contour=contour)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["risk"]["probability"] == pytest.approx(phantom_patient["prob"], abs=2e-3)
    r = post(client, phantom_patient, zip_bytes=_zip({"scan/T2.nii.gz": volume}), contour=contour)
    assert r.status_code == 422 and "reads a pre-treatment T1c scan" in r.json()["error"]
    r = post(client, phantom_patient, zip_bytes=_zip({"scan/brain.nii.gz": volume}), contour=contour)
    assert r.status_code == 422 and "not named <sequence>.nii.gz" in r.json()["error"]
    assert _left(root) == []


def test_rtstruct_contour(make_client, phantom_patient, tmp_path):
    """An RTSTRUCT (rt-utils, from the phantom's own contour) as the contour: answered, no identifier echoed."""
    import pydicom
    import SimpleITK as sitk
    from rt_utils import RTStructBuilder

    export, hid = phantom_patient["export"], phantom_patient["hospital_id"]
    series = sorted({p.parent for p in (export / "dicom" / hid).rglob("*.dcm")},
                    key=lambda d: pydicom.dcmread(next(d.glob("*.dcm")), stop_before_pixels=True).StudyDate)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(export / "contours" / f"{hid}_pre_T1c.nii.gz")))
    rt = RTStructBuilder.create_new(dicom_series_path=str(series[0]))
    rt.add_roi(mask=np.transpose(label == 1, (1, 2, 0)), name="GTVnx")
    rt.save(str(tmp_path / "RS.dcm"))
    rs = (tmp_path / "RS.dcm").read_bytes()
    assert hid.encode() in rs                                   # the RTSTRUCT carries the PatientID too
    client, root = make_client()
    r = client.post("/api/predict", files={"images": ("p.zip", phantom_patient["zip"], "application/zip"),
                                           "contour": ("RS.dcm", rs, "application/dicom")},
                    data={"clinical": json.dumps(CLINICAL)})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["risk"]["probability"] == pytest.approx(phantom_patient["prob"], abs=0.05)
    assert hid not in r.text
    r = client.post("/api/predict", files={"images": ("p.zip", phantom_patient["zip"], "application/zip"),
                                           "contour": ("notes.txt", b"not a contour")},
                    data={"clinical": json.dumps(CLINICAL)})
    assert r.status_code == 415 and r.json()["error"].startswith("contour: neither")
    assert _left(root) == []
