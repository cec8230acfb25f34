"""The schema-driven designer in headless Chromium, against a real `biaslab serve`.

Every dataset family and model kind of the design classes is driven through the
form that the page builds from `GET /api/design/schema`. The server runs without
a worker: these tests end when a study is created, before anything trains.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from biaslab.design import DATASET_FAMILIES, MODEL_KINDS, Dataset, StudyCreate
from biaslab.presets import PRESETS
from tests.server import running_lab

sync_api = pytest.importorskip("playwright.sync_api")
PlaywrightTimeoutError = sync_api.TimeoutError

pytestmark = pytest.mark.browser

CHROMIUM_PATH = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
# Playwright timeouts are in milliseconds.
PAGE_TIMEOUT_MS = 20_000

# The dots design that the page starts from. Every other family starts from its defaults.
DOTS_START = {"family": "dots", "image_size": 32, "counts": [2, 4], "noise": 0.03}

SCHEMA = StudyCreate.model_json_schema()
DATASETS: TypeAdapter[Any] = TypeAdapter(Dataset)


def starting_dataset(family: str) -> dict[str, Any]:
    """Return the dataset that the designer shows when `family` is chosen."""
    given = DOTS_START if family == "dots" else {"family": family}
    return DATASETS.validate_python(given).model_dump(mode="json")


def family_schema(family: str) -> dict[str, Any]:
    reference = SCHEMA["properties"]["dataset"]["discriminator"]["mapping"][family]
    return SCHEMA["$defs"][reference.rsplit("/", 1)[1]]


def bounded_number_field(family: str) -> tuple[str, float]:
    """Return the first number field of a family with a maximum, and the maximum."""
    for name, prop in family_schema(family)["properties"].items():
        if prop.get("type") in ("integer", "number") and "maximum" in prop:
            return name, prop["maximum"]
    raise AssertionError(f"family {family} has no bounded number field to make invalid")


def row_list_fields(family: str) -> list[str]:
    """Return the family's list fields whose items are tuples or objects (shown as rows)."""
    names = []
    for name, prop in family_schema(family)["properties"].items():
        options = prop.get("anyOf", [prop])
        for option in options:
            items = option.get("items") if option.get("type") == "array" else None
            if items and ("$ref" in items or items.get("type") in ("array", "object")):
                names.append(name)
                break
    return names


def css_id(path: str) -> str:
    """Return the element id that the designer gives the control of a design path."""
    return re.sub(r"-$", "", re.sub(r"[^A-Za-z0-9]+", "-", path))


# ---- The server and the browser ----


@dataclass
class Lab:
    base_url: str
    log_path: Path

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(self.base_url + path, json=body, timeout=30)

    def get(self, path: str) -> Any:
        response = httpx.get(self.base_url + path, timeout=30)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    data_dir = tmp_path_factory.mktemp("designer-lab")
    with running_lab(data_dir, worker=False) as base_url:
        yield Lab(base_url, data_dir / "serve.log")


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


@dataclass
class Tab:
    page: Any
    errors: list[str]


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}")
            if message.type == "error" and "status of 422" not in message.text
            else None
        ),
    )
    yield Tab(page, errors)
    context.close()


@contextmanager
def explain_failure(tab: Tab, lab: Lab, screenshot: Path) -> Iterator[None]:
    """On failure, save a screenshot and add its path, the page errors and the server log."""
    try:
        yield
    except (AssertionError, PlaywrightTimeoutError) as error:
        tab.page.screenshot(path=str(screenshot), full_page=True)
        log = lab.log_path.read_text(errors="replace")
        raise AssertionError(
            f"{error}\nscreenshot: {screenshot}\npage errors: {tab.errors}\n{log[-4000:]}"
        ) from error


def is_post(path: str) -> Any:
    return lambda request: request.url.endswith(path) and request.method == "POST"


def open_designer(page: Any, lab: Lab, query: str = "") -> dict[str, Any]:
    """Open the designer and return the dataset its first preview request sends."""
    with page.expect_request(is_post("/api/datasets/preview")) as request:
        page.goto(f"{lab.base_url}/{query}")
    return json.loads(request.value.post_data)


def choose_family(page: Any, family: str) -> dict[str, Any]:
    """Choose a family and return the dataset the preview then requests."""
    if page.locator("#dataset-family").input_value() == family:
        page.fill("#dataset-noise", "0.05")
    with page.expect_request(is_post("/api/datasets/preview")) as request:
        page.select_option("#dataset-family", family)
    return json.loads(request.value.post_data)


def wait_for_views(page: Any) -> None:
    """Wait until the preview image and the histograms show the current design."""
    page.wait_for_function(
        """() => {
          const frame = document.getElementById("preview-frame");
          const img = document.getElementById("dataset-preview");
          const charts = document.getElementById("histograms");
          return frame.dataset.state === "ready" && img.complete && img.naturalWidth > 0
            && charts.dataset.state === "ready";
        }"""
    )


def wait_for_counts(page: Any, kind: str) -> None:
    page.wait_for_function(
        """kind => {
          const panel = document.querySelector('[data-testid="parameter-counts"]');
          return panel && panel.dataset.state === "ready" && panel.isConnected
            && panel.querySelector("caption").textContent.includes(kind);
        }""",
        arg=kind,
    )


# ---- Dataset families ----


@pytest.mark.parametrize("family", DATASET_FAMILIES)
def test_family_shows_preview_and_histograms(
    tab: Tab, lab: Lab, tmp_path: Path, family: str
) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / f"designer-{family}.png"):
        open_designer(page, lab)
        sent = choose_family(page, family)
        wait_for_views(page)

        # The form sends the family's starting design, every field included.
        assert sent == {**starting_dataset(family), **({"noise": 0.05} if family == "dots" else {})}

        expected = lab.post("/api/datasets/histograms", sent)
        assert expected.status_code == 200, expected.text
        names = [feature["name"] for feature in expected.json()["features"]]
        charts = page.locator('#histograms [data-testid="histogram"]')
        assert charts.evaluate_all("cs => cs.map(c => c.dataset.feature)") == names
        traces = charts.evaluate_all("cs => cs.map(c => (c.data || []).length)")
        assert all(count > 0 for count in traces), traces
        assert page.locator("#histograms").get_attribute("data-family") == family
        assert page.locator("#preview-error").is_hidden()
        assert page.locator("#histograms-error").is_hidden()
        page.screenshot(path=str(tmp_path / f"designer-{family}.png"), full_page=True)
    assert tab.errors == []


@pytest.mark.parametrize("family", DATASET_FAMILIES)
def test_family_invalid_value_shows_message(
    tab: Tab, lab: Lab, tmp_path: Path, family: str
) -> None:
    page = tab.page
    name, maximum = bounded_number_field(family)
    path = f"dataset.{name}"
    control = f"#{css_id(path)}"
    with explain_failure(tab, lab, tmp_path / f"designer-{family}-invalid.png"):
        open_designer(page, lab)
        choose_family(page, family)
        wait_for_views(page)

        with page.expect_response(
            lambda response: (
                response.url.endswith("/api/datasets/preview") and response.status == 422
            )
        ) as response_info:
            page.fill(control, str(maximum * 10 + 1))
        messages = [item["message"] for item in response_info.value.json()["detail"]]
        assert any(message.startswith(f"{name}:") for message in messages), messages

        # The server's message appears next to the field, under the study's field name.
        error = page.locator(f"{control}-error")
        error.wait_for(state="visible")
        assert error.inner_text().startswith(f"{path}:")
        # The message states the field's whole range, up to the maximum that was exceeded.
        assert re.search(rf"(to|at most) {re.escape(f'{maximum:g}')}\b", error.inner_text()), (
            error.inner_text()
        )
        assert page.locator(control).get_attribute("aria-invalid") == "true"
        page.locator("#preview-error").wait_for(state="visible")

        # A valid value takes the message away again.
        page.fill(control, str(maximum))
        error.wait_for(state="hidden")
        wait_for_views(page)
        assert page.locator(control).get_attribute("aria-invalid") is None
    assert tab.errors == []


def test_unplaceable_dots_message_on_counts(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / "designer-unplaceable.png"):
        open_designer(page, lab)
        wait_for_views(page)
        page.fill("#dataset-dot-radius", "0.15")
        page.fill("#dataset-counts", "16")

        # A rule over several fields is shown beside the field it names, not on the group.
        error = page.locator("#dataset-counts-error")
        error.wait_for(state="visible")
        assert error.inner_text().startswith("dataset.counts: [16] is invalid: counts [16] do not")
        assert page.locator("#dataset-error").is_hidden()
        # The preview box names the field; the message itself is shown only beside it.
        assert "dataset.counts" in page.locator("#preview-error").inner_text()
        assert "do not fit" not in page.locator("#preview-error").inner_text()
        page.locator("#histograms-error").wait_for(state="visible")
        assert page.locator('#histograms [data-testid="histogram"]').count() == 0
    assert tab.errors == []


def test_colour_mode_message_beside_colours(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / "designer-colour-mode.png"):
        open_designer(page, lab)
        wait_for_views(page)
        page.select_option("#dataset-colour-mode", "one")

        error = page.locator("#dataset-colours-error")
        error.wait_for(state="visible")
        assert error.inner_text().startswith("dataset.colours: None is invalid: colours has 0")
        assert "{" not in error.inner_text(), "the message dumps the dataset"
        assert page.locator("#dataset-error").is_hidden()
    assert tab.errors == []


def test_family_change_sets_default_name(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / "designer-default-name.png"):
        open_designer(page, lab)
        assert page.locator("#name").input_value() == "two and four dots"
        choose_family(page, "shapes")
        assert page.locator("#name").input_value() == "two shapes"
        choose_family(page, "combinations")
        assert page.locator("#name").input_value() == "ten pie combinations"

        # A name the user typed stays.
        page.fill("#name", "my pies")
        choose_family(page, "pie")
        assert page.locator("#name").input_value() == "my pies"
    assert tab.errors == []


def test_pin_starts_valid(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / "designer-pin.png"):
        open_designer(page, lab)
        choose_family(page, "combinations")
        wait_for_views(page)
        with page.expect_response(
            lambda response: response.url.endswith("/api/datasets/preview")
        ) as response_info:
            page.check("#dataset-pin-enabled")
        assert response_info.value.status == 200, response_info.value.text()
        assert page.locator("#dataset-pin-values").input_value() == "1"
        assert page.locator("#dataset-pin-values-error").is_hidden()
    assert tab.errors == []


def test_labels_and_hints_read_well(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / "designer-labels.png"):
        open_designer(page, lab)
        assert (
            page.locator('label[for="model-kl-warmup-steps"]')
            .inner_text()
            .startswith("KL warmup steps")
        )
        assert (
            page.locator('label[for="training-lr-schedule"]')
            .inner_text()
            .startswith("Learning-rate schedule")
        )
        assert (
            page.locator('label[for="training-batch-size"]').inner_text().startswith("Batch size")
        )
        # Names between backticks in descriptions are shown as code, not as backticks.
        family_hint = page.locator("#dataset-family-hint")
        assert "`" not in family_hint.inner_text()
        assert family_hint.locator("code", has_text="dot_radius").count() >= 1
        assert "`" not in page.locator("#training-device-hint").inner_text()
    assert tab.errors == []


@pytest.mark.parametrize(
    "family", [family for family in DATASET_FAMILIES if row_list_fields(family)]
)
def test_family_rows_add_and_remove(tab: Tab, lab: Lab, tmp_path: Path, family: str) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / f"designer-{family}-rows.png"):
        open_designer(page, lab)
        choose_family(page, family)
        wait_for_views(page)
        for name in row_list_fields(family):
            field = page.locator(f'[data-field="dataset.{name}"]')
            before = len(starting_dataset(family)[name] or [])
            with page.expect_request(is_post("/api/datasets/preview")) as request:
                field.locator(".add-row").click()
            added = json.loads(request.value.post_data)[name]
            assert len(added) == before + 1
            assert field.locator(":scope > .row-list > .rows > .row").count() == before + 1

            with page.expect_request(is_post("/api/datasets/preview")) as request:
                field.locator(".remove-row").last.click()
            removed = json.loads(request.value.post_data)[name]
            assert removed == starting_dataset(family)[name]
    assert tab.errors == []


@pytest.mark.parametrize("family", DATASET_FAMILIES)
def test_study_variant_fills_form(tab: Tab, lab: Lab, tmp_path: Path, family: str) -> None:
    design = {
        "name": f"designer test: {family} variant",
        "dataset": {**starting_dataset(family), "noise": 0.1},
        "model": {"kind": "vae", "z_dim": 12},
        "training": {"steps": 40, "snapshot_every": 20, "seed": 3},
    }
    response = lab.post("/api/studies", design)
    assert response.status_code == 201, response.text
    study = response.json()
    page = tab.page
    with explain_failure(tab, lab, tmp_path / f"designer-{family}-variant.png"):
        sent = open_designer(page, lab, f"?from={study['id']}")
        assert sent == study["design"]["dataset"]
        assert page.locator("#name").input_value() == f"{design['name']} (variant)"
        assert page.locator("#model-z-dim").input_value() == "12"
        assert page.locator("#training-seed").input_value() == "3"
    assert tab.errors == []


# ---- Model kinds and presets ----


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_model_kind_shows_parameter_counts(tab: Tab, lab: Lab, tmp_path: Path, kind: str) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / f"designer-{kind}.png"):
        open_designer(page, lab)
        page.select_option("#model-kind", kind)
        wait_for_counts(page, kind)

        expected = lab.post(
            "/api/models/parameters", {"model": {"kind": kind}, "image_size": 32}
        ).json()["parameters"]
        panel = page.locator('[data-field="model.architecture"] [data-testid="parameter-counts"]')
        rows = panel.locator("tr[data-architecture]")
        shown = {
            row.get_attribute("data-architecture"): int(
                row.locator("td").inner_text().replace(",", "")
            )
            for row in rows.all()
        }
        assert shown == expected

        # The chosen architecture's row is marked, and follows a new choice.
        architecture = page.locator("#model-architecture").input_value()
        assert panel.locator("tr.current").get_attribute("data-architecture") == architecture
        page.select_option("#model-architecture", "fc")
        page.wait_for_function(
            """() => document.querySelector('[data-testid="parameter-counts"] tr.current')
                 ?.dataset.architecture === "fc" """
        )
        page.screenshot(path=str(tmp_path / f"designer-{kind}.png"), full_page=True)
    assert tab.errors == []


def test_parameter_counts_follow_image_size(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / "designer-image-size.png"):
        open_designer(page, lab)
        wait_for_counts(page, "vae")
        page.select_option("#dataset-image-size", "64")
        page.wait_for_function(
            """() => document.querySelector('[data-testid="parameter-counts"] caption')
                 .textContent.includes("64 × 64")"""
        )
        expected = lab.post(
            "/api/models/parameters", {"model": {"kind": "vae"}, "image_size": 64}
        ).json()["parameters"]
        conv = page.locator('[data-testid="parameter-counts"] tr[data-architecture="conv"] td')
        conv.filter(has_text=f"{expected['conv']:,}").wait_for()
    assert tab.errors == []


def test_invalid_model_field_shows_message(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / "designer-model-invalid.png"):
        open_designer(page, lab)
        wait_for_counts(page, "vae")
        page.fill("#model-z-dim", "1")
        error = page.locator("#model-z-dim-error")
        error.wait_for(state="visible")
        assert error.inner_text().startswith("model.z_dim: 1 is invalid")
        assert page.locator('[data-testid="parameter-counts-error"]').is_visible()
        page.fill("#model-z-dim", "16")
        error.wait_for(state="hidden")
        wait_for_counts(page, "vae")
    assert tab.errors == []


@pytest.mark.parametrize(
    ("kind", "name"), [(kind, name) for kind, presets in PRESETS.items() for name in presets]
)
def test_preset_fills_model_and_training(
    tab: Tab, lab: Lab, tmp_path: Path, kind: str, name: str
) -> None:
    preset = PRESETS[kind][name]
    page = tab.page
    with explain_failure(tab, lab, tmp_path / f"designer-preset-{kind}-{name}.png"):
        open_designer(page, lab)
        page.locator(f'#preset option[value="{kind}/{name}"]').wait_for(state="attached")
        page.select_option("#preset", f"{kind}/{name}")
        wait_for_counts(page, kind)

        assert page.locator("#model-kind").input_value() == kind
        for field, value in preset.model.model_dump(mode="json").items():
            if field != "kind" and not isinstance(value, list) and value is not None:
                control = page.locator(f"#{css_id(f'model.{field}')}")
                assert _same_value(control.input_value(), value), field
        for field, value in preset.training.model_dump(mode="json").items():
            if not isinstance(value, list) and value is not None:
                control = page.locator(f"#{css_id(f'training.{field}')}")
                assert _same_value(control.input_value(), value), field
        assert preset.description in page.locator("#preset-hint").inner_text()

        # Editing a filled field shows that the form no longer matches the preset.
        page.fill("#training-seed", "7")
        assert page.locator("#preset").input_value() == ""
    assert tab.errors == []


def test_preset_clears_stale_submit_errors(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    gamma = f"#{css_id('model.min_snr_gamma')}"
    with explain_failure(tab, lab, tmp_path / "designer-preset-clears-errors.png"):
        open_designer(page, lab)
        page.locator('#preset option[value="ddpm/quick"]').wait_for(state="attached")
        page.select_option("#preset", "ddpm/quick")
        wait_for_counts(page, "ddpm")
        page.fill(gamma, "0")
        with page.expect_response(is_post_response("/api/studies")) as response_info:
            page.click("#submit-study")
        assert response_info.value.status == 422
        page.locator("#form-errors").wait_for(state="visible")
        assert "model.min_snr_gamma" in page.locator("#form-errors").inner_text()

        # The preset writes a valid gamma, so the summary of the failed submit is cleared.
        page.select_option("#preset", "ddpm/quick")
        page.locator("#form-errors").wait_for(state="hidden")
        assert float(page.locator(gamma).input_value()) == 5
        page.locator(f"{gamma}-error").wait_for(state="hidden")
    assert tab.errors == []


def _same_value(shown: str, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return shown == str(value)
    return float(shown) == float(value)


# ---- Submitting ----


def test_submit_dots_study_opens_study_page(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / "designer-submit.png"):
        open_designer(page, lab)
        page.fill("#name", "designer test: three dots")
        page.fill("#dataset-counts", "3")
        page.fill("#training-steps", "40")
        page.fill("#training-snapshot-every", "20")
        page.fill("#training-batch-size", "16")
        page.click("#submit-study")
        page.wait_for_url(re.compile(r"/studies/\d+$"))
        study_id = int(page.url.rsplit("/", 1)[1])

        study = lab.get(f"/api/studies/{study_id}")
        assert study["name"] == "designer test: three dots"
        assert study["design"]["dataset"] == {**starting_dataset("dots"), "counts": [3]}
        assert study["design"]["model"]["kind"] == "vae"
        assert study["design"]["training"]["steps"] == 40
        assert study["design"]["training"]["batch_size"] == 16
        page.locator("#study-name").filter(has_text="designer test: three dots").wait_for()
    assert tab.errors == []


def test_submit_invalid_training_shows_message(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    studies_before = lab.get("/api/studies")["count"]
    with explain_failure(tab, lab, tmp_path / "designer-submit-invalid.png"):
        open_designer(page, lab)
        page.fill("#training-steps", "100")
        page.fill("#training-snapshot-every", "500")
        with page.expect_response(is_post_response("/api/studies")) as response_info:
            page.click("#submit-study")
        assert response_info.value.status == 422
        error = page.locator("#training-snapshot-every-error")
        error.wait_for(state="visible")
        assert error.inner_text().startswith("training.snapshot_every: 500 is invalid")
        assert "larger than steps 100" in error.inner_text()
        assert page.locator("#training-snapshot-every").get_attribute("aria-invalid") == "true"
        assert page.evaluate("document.activeElement.id") == "training-snapshot-every"
        assert page.evaluate("location.pathname") == "/"

        # Editing the field takes the submitted message away.
        page.fill("#training-snapshot-every", "50")
        error.wait_for(state="hidden")
        assert page.locator("#training-snapshot-every").get_attribute("aria-invalid") is None
    assert lab.get("/api/studies")["count"] == studies_before


def test_blank_number_message_shown_once(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    message = "dataset.noise: no value (null), this field is required, use a number from 0 to 0.3"
    with explain_failure(tab, lab, tmp_path / "designer-blank-number.png"):
        open_designer(page, lab)
        wait_for_views(page)

        # A blank box is sent as null: the preview, the histograms and the submit reject it.
        with page.expect_response(
            lambda response: (
                response.url.endswith("/api/datasets/preview") and response.status == 422
            )
        ):
            page.fill("#dataset-noise", "")
        error = page.locator("#dataset-noise-error")
        error.wait_for(state="visible")
        page.locator("#histograms-error").wait_for(state="visible")
        with page.expect_response(is_post_response("/api/studies")) as response_info:
            page.click("#submit-study")
        assert response_info.value.status == 422
        page.locator("#form-errors").wait_for(state="visible")

        assert error.inner_text() == message
        assert page.locator("body").inner_text().count(message) == 1
        assert "None is invalid" not in page.locator("body").inner_text()
        assert "dataset.noise" in page.locator("#form-errors").inner_text()
        assert "dataset.noise" in page.locator("#preview-error").inner_text()
        assert page.locator("#dataset-noise").get_attribute("aria-invalid") == "true"
    assert tab.errors == []


def test_study_page_uses_designer_labels(tab: Tab, lab: Lab, tmp_path: Path) -> None:
    page = tab.page
    body = {
        "name": "designer labels",
        "dataset": DOTS_START,
        "model": {"kind": "ddpm", "architecture": "conv_small"},
        "training": {"steps": 20, "snapshot_every": 10, "batch_size": 8},
    }
    response = lab.post("/api/studies", body)
    assert response.status_code == 201, response.text
    study_id = response.json()["id"]
    ddpm = SCHEMA["$defs"]["DdpmModel"]["properties"]
    with explain_failure(tab, lab, tmp_path / "study-labels.png"):
        page.goto(f"{lab.base_url}/studies/{study_id}")
        model_group = page.locator("#design-summary .design-group", has_text="Model: ddpm")
        model_group.wait_for()
        labels = model_group.locator("dt").all_inner_texts()
        assert "EMA decay" in labels
        assert labels == [ddpm[name]["title"] for name in ddpm if name != "kind"]

        # The designer shows the same labels for the same fields.
        page.goto(f"{lab.base_url}/?from={study_id}")
        wait_for_counts(page, "ddpm")
        assert page.locator('label[for="model-ema-decay"]').inner_text().startswith("EMA decay")
    assert tab.errors == []


def is_post_response(path: str) -> Any:
    return lambda response: response.url.endswith(path) and response.request.method == "POST"
