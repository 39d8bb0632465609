"""The page in a real browser: Debian's chromium driven by Playwright against a live server on 127.0.0.1.

Locally the test skips with a reason when /usr/bin/chromium is missing; under CI (``CI=true``)
a missing browser is a failure. Screenshots of the form, the results and an error go to
``$NPCAI_SCREENSHOTS`` when set (else the test's temporary folder).
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from .helpers import CLINICAL

CHROMIUM = os.environ.get("NPCAI_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _need_browser() -> None:
    if Path(CHROMIUM).is_file() and shutil.which(CHROMIUM):
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{CHROMIUM} is missing under CI; .ci/install-system-packages installs chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); the browser test needs it")


@pytest.fixture
def live_server(served, tmp_path):
    """uvicorn serving the tiny run on a free 127.0.0.1 port, in a thread."""
    import uvicorn

    from npcai.serve.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "requests"
    root.mkdir()
    server = uvicorn.Server(uvicorn.Config(create_app(served, tmp_root=root), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", root
    server.should_exit = True
    thread.join(10)


def test_upload_a_phantom_patient_in_chromium(live_server, phantom_patient, tmp_path):
    _need_browser()
    from playwright.sync_api import sync_playwright

    url, root = live_server
    shots = Path(os.environ.get("NPCAI_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    (tmp_path / "patient.zip").write_bytes(phantom_patient["zip"])
    (tmp_path / "contour.nii.gz").write_bytes(phantom_patient["contour"])
    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.4 not a zip")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url + "/")
            assert page.locator("#notice").is_visible() and not page.locator("#progress").is_visible()
            assert "not a medical device" in page.locator("#notice").inner_text()
            page.set_input_files("#images", str(tmp_path / "patient.zip"))
            page.set_input_files("#contour", str(tmp_path / "contour.nii.gz"))
            page.fill("#f-age", str(CLINICAL["age"]))
            page.fill("#f-t_stage", str(CLINICAL["t_stage"]))
            page.fill("#f-n_stage", str(CLINICAL["n_stage"]))
            page.select_option("#f-treatment", CLINICAL["treatment"])
            page.screenshot(path=str(shots / "serve_form.png"), full_page=True)
            page.click("#submit")
            page.wait_for_selector("#results", timeout=120_000)
            page.wait_for_function("Array.from(document.querySelectorAll('img.cam')).every(i => i.complete)")
            facts = page.evaluate("""() => ({
                cams: Array.from(document.querySelectorAll('img.cam')).map(i => i.naturalWidth),
                reference: document.getElementById('reference-plot').naturalWidth,
                text: document.body.innerText,
                report: document.getElementById('download-report').getAttribute('href').slice(0, 22),
                progressHidden: document.getElementById('progress').hidden})""")
            page.screenshot(path=str(shots / "serve_results.png"), full_page=True)
            assert facts["cams"] and all(w > 100 for w in facts["cams"])
            assert facts["reference"] > 100
            assert facts["report"] == "data:image/png;base64,"
            assert facts["progressHidden"] and not page.locator("#progress").is_visible()
            assert "Research use only, not a medical device" in facts["text"]
            assert "Where the model looked (Grad-CAM)" in facts["text"]
            assert f"{phantom_patient['prob']:.2f}" in facts["text"]
            for ident in phantom_patient["identifiers"]:
                assert ident.lower() not in facts["text"].lower()
            # an error: not a zip
            page.set_input_files("#images", str(tmp_path / "scan.pdf"))
            page.click("#submit")
            page.wait_for_selector("#error", timeout=60_000)
            assert "not a zip archive" in page.locator("#error").inner_text()
            assert page.locator("#results").count() == 0
            page.screenshot(path=str(shots / "serve_error.png"), full_page=True)
        finally:
            browser.close()
    assert sorted(root.iterdir()) == []
