"""Sign-in, sign-out and study ownership in headless Chromium, on a lab served with --auth.

The lab is a real `biaslab serve` without a worker, so runs stay queued and can be
cancelled. Chromium is the system one (CHROMIUM_PATH, /usr/bin/chromium by default).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from biaslab.settings import Settings
from biaslab.store.migrate import upgrade
from tests.accounts import PASSWORD, Account, add_account
from tests.examples import EXAMPLE_STUDY
from tests.server import running_lab

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

CHROMIUM_PATH = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
# Playwright timeouts are in milliseconds.
PAGE_TIMEOUT_MS = 20_000


@dataclass(frozen=True)
class AuthLab:
    base_url: str
    alice: Account
    bob: Account


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthLab]:
    data_dir = tmp_path_factory.mktemp("auth-lab")
    settings = Settings(data_dir=data_dir, auth="required")
    upgrade(settings.resolved_database_url)
    alice = add_account(settings, "alice")
    bob = add_account(settings, "bob")
    env = {"BIASLAB_AUTH": "required"}
    with running_lab(data_dir, worker=False, env=env) as base_url:
        yield AuthLab(base_url, alice, bob)


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
def new_page(browser: Any) -> Iterator[Any]:
    """Open pages in contexts of their own: each has its own cookies, like another browser."""
    contexts = []
    errors: list[str] = []

    def open_page() -> Any:
        context = browser.new_context()
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == []


def sign_in(page: Any, lab: AuthLab, account: Account, start: str = "/") -> None:
    page.goto(lab.base_url + start)
    page.wait_for_url(re.compile(r"/signin\?next="))
    page.locator("#signin-form").wait_for(state="visible")
    page.fill("#signin-name", account.name)
    page.fill("#signin-password", PASSWORD)
    page.click("#signin-submit")
    page.wait_for_url(lab.base_url + start)
    page.locator('[data-testid="account-name"]').wait_for()


def create_study(lab: AuthLab, account: Account, name: str) -> dict:
    response = httpx.post(
        lab.base_url + "/api/studies",
        json={**EXAMPLE_STUDY, "name": name},
        headers=account.headers,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_sign_in_redirects_back(new_page, lab):
    page = new_page()
    page.goto(lab.base_url + "/signin?next=/")
    page.locator("#signin-form").wait_for(state="visible")
    page.fill("#signin-name", "alice")
    page.fill("#signin-password", "wrong password")
    page.click("#signin-submit")
    error = page.locator('[data-testid="signin-error"]')
    error.wait_for(state="visible")
    assert error.inner_text() == "wrong user name or password"
    assert page.evaluate("location.pathname") == "/signin"

    study = create_study(lab, lab.alice, "alice signs in")
    sign_in(page, lab, lab.alice, start=f"/studies/{study['id']}")
    assert page.locator('[data-testid="account-name"]').inner_text() == "alice"
    page.locator('[data-testid="study-name"]').wait_for()
    assert page.locator('[data-testid="study-name"]').inner_text() == "alice signs in"


def test_owner_cancels_from_study_page(new_page, lab):
    study = create_study(lab, lab.alice, "alice cancels")
    page = new_page()
    sign_in(page, lab, lab.alice, start=f"/studies/{study['id']}")
    # The page fills its name and owner line once the study has loaded.
    page.locator('[data-testid="study-name"]').wait_for()
    assert "owned by alice" in page.locator("#study-meta").inner_text()
    # The live stream is authenticated with the session cookie.
    page.wait_for_function(
        "document.querySelector('[data-testid=\"live-status\"]').dataset.state === 'open'"
    )
    cancel = page.locator('[data-testid="cancel-run"]')
    assert cancel.is_visible()
    with page.expect_response(lambda response: response.url.endswith("/cancel")) as answer:
        cancel.click()
    assert answer.value.status == 200, "the page sent its CSRF token with the cancel"
    page.locator('[data-testid="run"][data-status="cancelled"]').wait_for()

    run = httpx.get(
        f"{lab.base_url}/api/runs/{study['run_ids'][0]}", headers=lab.alice.headers, timeout=30
    ).json()
    assert run["status"] == "cancelled"


def test_other_user_sees_study_read_only(new_page, lab):
    study = create_study(lab, lab.alice, "alice's, seen by bob")
    page = new_page()
    sign_in(page, lab, lab.bob, start=f"/studies/{study['id']}")
    page.locator('[data-testid="study-name"]').wait_for()
    assert "owned by alice" in page.locator("#study-meta").inner_text()
    assert "Only its owner or an admin can cancel" in page.locator("#study-meta").inner_text()
    page.locator('[data-testid="run"][data-status="queued"]').wait_for()
    assert page.locator('[data-testid="cancel-run"]').is_hidden()

    # The API refuses bob's cancel even when a script sends it with his CSRF token.
    status = page.evaluate(
        """async (runId) => {
          const { request } = await import("/static/api.js");
          try { await request(`/api/runs/${runId}/cancel`, { method: "POST" }); return 200; }
          catch (error) { return error.status; }
        }""",
        study["run_ids"][0],
    )
    assert status == 403
    # Without the CSRF token the request is refused before ownership is checked.
    without_csrf = page.evaluate(
        "async (runId) => (await fetch(`/api/runs/${runId}/cancel`, {method: 'POST'})).status",
        study["run_ids"][0],
    )
    assert without_csrf == 403
    run = httpx.get(
        f"{lab.base_url}/api/runs/{study['run_ids'][0]}", headers=lab.alice.headers, timeout=30
    ).json()
    assert run["status"] == "queued"
    assert run["cancel_requested"] is False


def test_sign_out_returns_to_sign_in(new_page, lab):
    page = new_page()
    sign_in(page, lab, lab.bob)
    page.click('[data-testid="sign-out"]')
    page.wait_for_url(re.compile(r"/signin$"))
    status = page.evaluate("async () => (await fetch('/api/studies')).status")
    assert status == 401
    page.goto(lab.base_url + "/")
    page.wait_for_url(re.compile(r"/signin\?next=%2F$"))
