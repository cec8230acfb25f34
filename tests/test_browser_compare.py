"""The study page's comparison and analysis panels in headless Chromium, on a trained sweep.

A two-run sweep (counts {2, 4} and its control {2}) trains on the embedded
worker of a real `biaslab serve`; the test then checks the overlaid histograms,
that the one step slider moves every panel, the analysis panel, the exports,
and the templates section of the home page.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_browser import (
    RUN_END_TIMEOUT_MS,
    BrowserPage,
    LabServer,
    browser,
    explain_failure,
    server,
    tab,
)

pytestmark = pytest.mark.browser

# The fixtures come from the single-run browser tests; naming them here keeps linters quiet.
__all__ = ["browser", "server", "tab"]

SWEEP = {
    "name": "browser test: sweep",
    "dataset": {"family": "dots", "image_size": 32, "counts": [2, 4]},
    "model": {"kind": "vae", "architecture": "conv_small", "z_dim": 8},
    "training": {
        "steps": 30,
        "batch_size": 16,
        "snapshot_every": 10,
        "samples_per_snapshot": 64,
    },
    "sweep": [
        {
            "name": "counts",
            "path": "dataset.counts",
            "values": [[2, 4], [2]],
            "labels": ["2 and 4", "2"],
        },
    ],
}
STEPS = [10, 20, 30]

# The overlay chart of one feature: its step, title and the names of its bar traces.
OVERLAY_JS = """
(feature) => {
  const chart = document.querySelector(`[data-testid="overlay-chart"][data-feature="${feature}"]`);
  if (!chart || !Array.isArray(chart.data)) return null;
  return {
    step: chart.dataset.step,
    title: chart.layout.title.text,
    bars: chart.data.filter((t) => t.type === "bar").map((t) => t.name),
    lines: chart.data.filter((t) => t.type === "scatter").map((t) => t.name),
  };
}
"""

# The step marked on the heatmap of the count feature.
HEATMAP_STEP_JS = """
() => {
  const chart = document.querySelector('[data-testid="heatmap-chart"][data-run-id]');
  const shapes = chart && chart.layout && chart.layout.shapes;
  return shapes && shapes.length ? shapes[0].x0 : null;
}
"""


def wait_until_ended(server: LabServer, study_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_END_TIMEOUT_MS / 1000
    while True:
        study = server.get_json(f"/api/studies/{study_id}")
        statuses = {run["status"] for run in study["runs"]}
        if statuses <= {"succeeded", "failed", "cancelled"}:
            assert statuses == {"succeeded"}, [run["error"] for run in study["runs"]]
            return study
        assert time.monotonic() < deadline, f"runs did not end: {statuses}"
        time.sleep(1)


def move_slider(page: Any, index: int) -> None:
    page.eval_on_selector(
        "#study-step",
        "(slider, index) => { slider.value = String(index);"
        " slider.dispatchEvent(new Event('input', {bubbles: true})); }",
        index,
    )


# True once every overlay and heatmap chart is drawn no wider than its box.
CHARTS_FIT_JS = """
() => {
  const charts = [...document.querySelectorAll(".overlay-charts .chart")];
  return charts.length >= 2 && charts.every((chart) => {
    const svg = chart.querySelector(".main-svg");
    return svg !== null && svg.getBoundingClientRect().width <= chart.clientWidth + 1;
  });
}
"""


def test_sweep_overlay_slider_and_analysis(
    tab: BrowserPage, server: LabServer, tmp_path: Path
) -> None:
    page = tab.page
    screenshot = tmp_path / "study-compare.png"
    status, created = server.post_json("/api/studies", SWEEP)
    assert status == 201, created
    study = wait_until_ended(server, created["id"])
    run_ids = [run["id"] for run in study["runs"]]

    with explain_failure(tab, server, screenshot):
        page.goto(f"{server.base_url}/studies/{study['id']}")

        # Both runs overlaid, with the training shares as lines, at the newest snapshot.
        page.wait_for_function(f"() => ({OVERLAY_JS})('count')?.bars.length === 2")
        overlay = page.evaluate(f"({OVERLAY_JS})('count')")
        assert overlay["bars"] == ["run 1 (counts 2 and 4)", "run 2 (counts 2)"]
        assert overlay["lines"] == [
            "training: run 1 (counts 2 and 4)",
            "training: run 2 (counts 2)",
        ]
        assert page.locator("#study-step-label").inner_text() == "step 30"
        # Charts drawn before the grid split into columns shrink to their column.
        page.wait_for_function(CHARTS_FIT_JS, timeout=10_000)
        varying = page.locator('[data-testid="varying-table"]')
        assert varying.locator("thead th").all_inner_texts() == ["Run", "dataset.counts"]
        assert varying.locator("tbody tr").nth(1).inner_text().split("\t") == ["Run 2", "[2]"]

        # Grouped by the sweep axis.
        page.select_option("#compare-group", "counts")
        page.wait_for_function(f"() => ({OVERLAY_JS})('count')?.bars[0] === 'counts 2 and 4'")

        # One slider moves the overlays, the heatmap, the analysis and every run card.
        page.wait_for_function(f"() => ({HEATMAP_STEP_JS})() === {STEPS[-1]}")
        move_slider(page, 0)
        page.wait_for_function(f"() => ({OVERLAY_JS})('count')?.step === '{STEPS[0]}'")
        assert f"at step {STEPS[0]}" in page.evaluate(f"({OVERLAY_JS})('count')")["title"]
        page.wait_for_function(f"() => ({HEATMAP_STEP_JS})() === {STEPS[0]}")
        page.wait_for_function(
            f"() => document.getElementById('analysis').dataset.step === '{STEPS[0]}'"
        )
        for run_id in run_ids:
            label = page.locator(f'#run-{run_id} [data-testid="snapshot-step"]')
            page.wait_for_function(
                "([id, step]) => document.querySelector("
                "`#run-${id} [data-testid='snapshot-step']`).textContent === String(step)",
                arg=[run_id, STEPS[0]],
            )
            assert label.inner_text() == str(STEPS[0])
        assert "at or before step 10" in page.locator("#analysis-methods").inner_text()

        move_slider(page, len(STEPS) - 1)
        page.wait_for_function(f"() => ({OVERLAY_JS})('count')?.step === '{STEPS[-1]}'")
        assert page.locator("#study-step-label").inner_text() == f"step {STEPS[-1]}"

        # The analysis panel: the mixture against its one control, and the distances.
        modes = page.locator('[data-testid="modes-entry"]')
        modes.first.wait_for()
        assert "counts 2 and 4: count" in modes.first.inner_text()
        # The {4} control is not in the study, so the entry names it as missing.
        assert "4 alone has recognized samples" in modes.first.inner_text()
        # A chart is drawn when the mixture runs recognized some samples; 30 steps may give none.
        analysis = server.get_json(f"/api/studies/{study['id']}/analysis")
        has_observed = analysis["modes"][0]["observed"] is not None
        charts = modes.first.locator(".analysis-chart .main-svg").count()
        assert (charts > 0) == has_observed, analysis["modes"][0]
        distances = page.locator('[data-testid="distances-table"] tbody tr')
        # Two conditions, each with the count and dot size features.
        assert distances.count() == 4
        assert "percentile bootstrap over seeds" in page.locator("#analysis-methods").inner_text()

        # Exports: the chart as SVG in the browser, the data from the server.
        chart_block = page.locator('[data-testid="overlay-chart"][data-feature="count"]').locator(
            ".."
        )
        with page.expect_download() as download:
            chart_block.locator('button[data-format="svg"]').click()
        assert download.value.suggested_filename.endswith(".svg")
        assert page.locator("#export-csv").get_attribute("href") == (
            f"/api/studies/{study['id']}/export.csv"
        )
        assert page.locator("#export-bundle").get_attribute("href") == (
            f"/api/studies/{study['id']}/bundle"
        )
        page.screenshot(path=str(screenshot), full_page=True)
    assert tab.errors == []


def test_template_creates_study_in_one_click(
    tab: BrowserPage, server: LabServer, tmp_path: Path
) -> None:
    page = tab.page
    with explain_failure(tab, server, tmp_path / "templates.png"):
        page.goto(server.base_url + "/")
        # The designer's default design has no sweep axes, so it makes one run.
        page.wait_for_function(
            "() => document.getElementById('run-count').textContent === 'This design makes 1 run.'"
        )
        template = page.locator('[data-testid="template"][data-template="counts-2-4"]')
        button = template.locator('[data-testid="template-create"][data-preset="quick"]')
        assert button.inner_text() == "Create quick study (18 runs)"
        button.click()
        page.wait_for_url("**/studies/*")
        study_id = int(page.url.rsplit("/", 1)[1])
        page.wait_for_function(
            "() => document.getElementById('study-name').textContent.includes('(quick)')"
        )
        study = server.get_json(f"/api/studies/{study_id}")
        assert len(study["runs"]) == 18
        # Stop the runs, so that the worker is free for the other tests.
        for run in study["runs"]:
            server.post_json(f"/api/runs/{run['id']}/cancel", {})
        assert "sweep: 18 runs" in page.locator("#design-summary").inner_text().lower()
    assert tab.errors == []
