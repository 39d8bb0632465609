"""A headless Chromium (Debian's package, driven by Playwright) that opens a report file.

Locally the browser tests skip with a reason when /usr/bin/chromium is missing; under CI
(``CI=true``, set by .ci/run, which installs chromium) a missing browser is a failure.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("NPCAI_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PAGE_FACTS = """() => ({
  title: document.title,
  sections: Array.from(document.querySelectorAll('section')).map(s => s.id),
  tables: Array.from(document.querySelectorAll('table.data')).map(t => t.rows.length),
  images: Array.from(document.images).map(i => ({src: i.src.slice(0, 22), w: i.naturalWidth, h: i.naturalHeight})),
  external: Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || e.getAttribute('href'))
             .filter(u => /^(https?:)?\\/\\//.test(u)),
  text: document.body.innerText,
})"""


def _browser_available() -> bool:
    return Path(CHROMIUM).is_file() and shutil.which(CHROMIUM) is not None


@pytest.fixture
def open_in_chromium(tmp_path):
    """Open an HTML file in headless Chromium; return page facts and write a screenshot."""
    if not _browser_available():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{CHROMIUM} is missing under CI; .ci/run installs it with apt-get install chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); the page test needs it")
    from playwright.sync_api import sync_playwright

    def run(html: Path, screenshot: Path | None = None) -> dict:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(Path(html).resolve().as_uri())
                page.wait_for_load_state("load")
                facts = page.evaluate(PAGE_FACTS)
                if screenshot is not None:
                    page.screenshot(path=str(screenshot), full_page=True)
            finally:
                browser.close()
        return facts

    return run
