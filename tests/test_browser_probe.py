"""The probe page in headless Chromium, against a real `biaslab serve` without a worker.

The test renders dots images with known counts, uploads them through the page and
reads the count histogram and the per-image table. Bad uploads must show the
server's message next to the field it names.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from biaslab.datasets.dots import render_counts
from tests.server import running_lab

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

CHROMIUM_PATH = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
# Playwright timeouts are in milliseconds.
PAGE_TIMEOUT_MS = 20_000

COUNTS = [3, 1, 5, 2, 4, 6, 1, 3]
DOT_RADIUS = 0.08

# The bars of the count histogram: the label and height of each, the unrecognized bar last.
HISTOGRAM_JS = """
() => {
  const chart = document.querySelector('[data-testid="probe-histogram"][data-feature="count"]');
  if (!chart || !Array.isArray(chart.data) || !chart.data.length) return null;
  return {x: Array.from(chart.data[0].x, String), y: Array.from(chart.data[0].y, Number)};
}
"""


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_lab(tmp_path_factory.mktemp("probe-lab"), worker=False) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM_PATH.exists():
        pytest.skip(f"no Chromium at {CHROMIUM_PATH}; set CHROMIUM_PATH")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    yield page
    context.close()
    assert errors == [], f"the page raised errors: {errors}"


@pytest.fixture(scope="module")
def dots_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .npz of 32x32 renders with COUNTS dots, in that order."""
    rng = np.random.default_rng(11)
    images = render_counts(
        np.array(COUNTS), image_size=32, dot_radius=DOT_RADIUS, noise=0.02, rng=rng
    )
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images)
    path = tmp_path_factory.mktemp("probe-files") / "dots.npz"
    path.write_bytes(buffer.getvalue())
    return path


def field_errors(page: Any, field: str) -> list[str]:
    return page.locator(f'[data-field="{field}"] [data-testid="field-error"]').all_inner_texts()


def test_probe_page_shows_counts(page: Any, base_url: str, dots_file: Path) -> None:
    page.goto(f"{base_url}/probe")
    page.locator("#probe-file").set_input_files(str(dots_file))
    page.locator("#probe-family").select_option("dots")
    page.locator("#probe-dot-radius").fill(str(DOT_RADIUS))
    page.locator("#probe-submit").click()

    page.locator('[data-testid="probe-image"]').first.wait_for()
    histogram = page.wait_for_function(HISTOGRAM_JS).json_value()
    assert histogram["x"][-1] == "unrecognized", "the last bar counts unrecognized images"
    bars = dict(zip(histogram["x"], histogram["y"], strict=True))
    for count in set(COUNTS):
        assert bars[str(count)] == COUNTS.count(count), f"bar of {count} dots: {bars}"
    assert sum(histogram["y"]) == len(COUNTS), f"the bars hold every image once: {bars}"

    header = page.locator("#probe-images-head th").all_inner_texts()
    assert header[:2] == ["index", "count"], f"table columns: {header}"
    rows = page.locator('[data-testid="probe-image"]')
    table_rows = [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]
    assert [row[0] for row in table_rows] == [str(i) for i in range(len(COUNTS))]
    shown_counts = [row[1] for row in table_rows]
    assert shown_counts == [str(count) for count in COUNTS], "counts in input order"
    charts = page.locator('[data-testid="probe-histogram"]').count()
    assert charts == len(header) - 1, f"one chart per feature column of {header}"
    note = page.locator('[data-testid="probe-images-note"]').inner_text()
    assert f"All {len(COUNTS)} images" in note, note
    assert page.locator('[data-testid="probe-scores"] tr').count() >= 1


def test_probe_page_shows_server_errors(
    page: Any, base_url: str, dots_file: Path, tmp_path: Path
) -> None:
    page.goto(f"{base_url}/probe")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("these are not images\n")
    page.locator("#probe-file").set_input_files(str(text_file))
    page.locator("#probe-submit").click()
    page.locator('[data-field="file"] [data-testid="field-error"]').wait_for()
    (message,) = field_errors(page, "file")
    assert message.startswith("file: unsupported file type"), message
    assert page.locator("#probe-results").is_hidden(), "no results after a rejected upload"

    page.locator("#probe-file").set_input_files(str(dots_file))
    page.locator("#probe-dot-radius").fill("0.2")
    page.locator("#probe-submit").click()
    page.locator('[data-field="dot_radius"] [data-testid="field-error"]').wait_for()
    (message,) = field_errors(page, "dot_radius")
    assert "from 0.04 to 0.15" in message, message
    assert field_errors(page, "file") == [], "the earlier file message is cleared"

    # Text that is not a number reads as an empty box, which would probe at the default.
    page.locator("#probe-dot-radius").fill("")
    page.locator("#probe-dot-radius").press_sequentially("1e")
    page.locator("#probe-submit").click()
    page.wait_for_function(
        """() => document.querySelector('[data-field="dot_radius"] [data-testid="field-error"]')
            ?.innerText.includes('not a number')"""
    )
    (message,) = field_errors(page, "dot_radius")
    assert message.startswith("dot_radius: the text in the box is not a number"), message
    assert page.locator("#probe-results").is_hidden(), "no probe ran with the default radius"

    page.locator("#probe-family").select_option("shapes")
    page.locator("#probe-submit").click()
    page.locator('[data-field="study_id"] [data-testid="field-error"]').wait_for()
    (message,) = field_errors(page, "study_id")
    assert "send the study_id of a shapes study" in message, message
