"""A real browser drives the real app: Debian's chromium, headless, through Playwright (no `playwright install`).

It loads the page, picks the 4x super-resolution task, uploads an example photo, ticks "degrade it first", presses
Restore, waits until the before/after slider shows the restored image (and the PSNR/LPIPS report), and saves a
screenshot: to $INDI_SCREENSHOT when set (`INDI_SCREENSHOT=docs/images/screenshot.png python -m pytest -q
tests/app/test_app_browser.py` refreshes the committed one), else to pytest's tmp folder. Skips with the reason when
chromium or the playwright package is missing.

Needs: `apt-get install -y chromium` and `pip install playwright`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from benchmarks.app_server import REPO, running_app
from indi_pipeline.tasks import TASKS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("INDI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
EXAMPLE = REPO / "examples" / "mountains.png"  # a clean photo; degraded for 4x super-resolution by the app


@pytest.fixture(scope="module")
def chromium():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium); set INDI_CHROMIUM to another binary")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.skipif(
    not (TASKS["sr4"].local_path / "model_index.json").is_file(),
    reason=f"no trained model at {TASKS['sr4'].local_path}",
)
def test_upload_restore_and_screenshot(chromium, tmp_path):
    screenshot = Path(os.environ.get("INDI_SCREENSHOT") or tmp_path / "screenshot.png")
    with running_app(tmp_path) as url:
        page = chromium.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page.set_default_timeout(60_000)
        page.goto(url, wait_until="networkidle")

        page.locator("#task-dropdown input").click()
        page.get_by_role("option", name="4x super-resolution").click()
        page.get_by_text("Low-resolution image").first.wait_for(state="visible")  # the task's change event ran
        page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLE))
        page.locator("#input-image img").first.wait_for(state="visible")
        page.get_by_label("This is a clean photo").check()
        page.locator("#restore-button").click()

        # The slider shows two images (before and after) once the restoration is back; the report gets the metrics.
        slider_images = page.locator("#before-after img")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#before-after img')]"
            ".filter(i => i.complete && i.naturalWidth > 0).length >= 2",
            timeout=240_000,
        )
        page.locator("#report table").wait_for(state="visible", timeout=30_000)
        sources = [slider_images.nth(i).get_attribute("src") for i in range(slider_images.count())]
        assert any(src and src.endswith(".png") for src in sources), sources  # format="png": lossless output
        report = page.locator("#report").inner_text()
        assert "4x super-resolution" in report and "512×384 px" in report and "dB" in report, report
        page.wait_for_timeout(500)  # let the trajectory gallery's images paint

        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        errors = page.locator(".toast-body.error, [data-testid='toast-body']").count()
        assert errors == 0, "the page shows an error toast"
    assert screenshot.stat().st_size > 10_000
