"""Authentication: API tokens, browser sign-in with CSRF, sign-in limits, the audit log.

Each API test runs on SQLite and on PostgreSQL, with authentication on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.app import create_app
from backend.security.exposure import bind_address, is_loopback, open_lab_error, url_of
from biaslab.auth import (
    API_TOKEN_PREFIX,
    InvalidPassword,
    SignInThrottle,
    ThrottleLimits,
    digest_secret,
    hash_password,
    verify_password,
)
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import upgrade
from biaslab.store.models import ApiToken, SignInSession, Study
from biaslab.store.users import disable_user, require_user, start_session
from tests.accounts import PASSWORD, Account, add_account, lab_settings
from tests.examples import EXAMPLE_STUDY
from tests.server import free_port

FAILURES_PER_USER = 3
FAILURES_PER_ADDRESS = 5


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path) -> Iterator[Settings]:
    with lab_settings(
        request,
        tmp_path,
        request.param,
        sign_in_failures_per_user=FAILURES_PER_USER,
        sign_in_failures_per_address=FAILURES_PER_ADDRESS,
    ) as settings:
        yield settings


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def alice(settings) -> Account:
    return add_account(settings, "alice")


@pytest.fixture
def admin(settings) -> Account:
    return add_account(settings, "root", admin=True)


def count_rows(settings: Settings, model: type) -> int:
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            return session.scalar(select(func.count()).select_from(model)) or 0
    finally:
        engine.dispose()


def sign_in(client: TestClient, account: Account) -> str:
    """Sign `client` in as `account` and return the CSRF token."""
    response = client.post("/api/session", json={"name": account.name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]


# ---- Without credentials ----


def test_request_without_credentials_is_401(client, settings, alice):
    listing = client.get("/api/studies")
    assert listing.status_code == 401
    assert listing.headers["WWW-Authenticate"] == 'Bearer realm="biaslab"'
    assert "sign in at /signin" in listing.json()["detail"]

    created = client.post("/api/studies", json=EXAMPLE_STUDY)
    assert created.status_code == 401
    assert count_rows(settings, Study) == 0, "a rejected request created a study"


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Basic YWxpY2U6cGFzcw==", "the Authorization header is invalid"),
        ("Bearer", "the Authorization header is invalid"),
        ("Bearer blt_not-a-token", "the API token is invalid or revoked"),
    ],
)
def test_invalid_authorization_is_401(client, alice, header, detail):
    response = client.get("/api/studies", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["detail"].startswith(detail)


def test_two_authorization_headers_are_400(client, settings, alice):
    bob = add_account(settings, "bob")
    headers = [("Authorization", f"Bearer {bob.token}"), ("Authorization", f"Bearer {alice.token}")]
    response = client.post("/api/studies", json=EXAMPLE_STUDY, headers=headers)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "the request has 2 Authorization headers; send exactly one"
    }
    assert count_rows(settings, Study) == 0, "a rejected request created a study"


def test_pages_and_session_state_need_no_sign_in(client):
    assert client.get("/").status_code == 200
    assert client.get("/signin").status_code == 200
    assert client.get("/static/api.js").status_code == 200
    state = client.get("/api/session")
    assert state.status_code == 200
    assert state.json() == {"auth": "required", "user": None, "csrf_token": None}


def test_sse_stream_needs_credentials(client, alice):
    study_id = client.post("/api/studies", json=EXAMPLE_STUDY, headers=alice.headers).json()["id"]
    response = client.get(f"/api/studies/{study_id}/events")
    assert response.status_code == 401


# ---- API tokens ----


def test_bearer_token_records_last_use(client, alice):
    before = client.get("/api/tokens", headers=alice.headers).json()["tokens"]
    assert len(before) == 1
    assert before[0]["last_used_at"] is not None, "listing the tokens used the token"
    assert before[0]["display_prefix"].startswith(API_TOKEN_PREFIX)
    assert "token" not in before[0], "a token's secret is shown only when it is created"
    assert client.get("/api/studies", headers=alice.headers).status_code == 200


def test_token_is_stored_as_digest(settings, alice):
    engine = make_engine(settings.resolved_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        digests = session.scalars(select(ApiToken.token_digest)).all()
    engine.dispose()
    assert digests == [digest_secret(alice.token)]
    assert alice.token.startswith(API_TOKEN_PREFIX)
    assert alice.token not in digests


def test_token_create_and_revoke(client, alice):
    created = client.post("/api/tokens", json={"name": "laptop script"}, headers=alice.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["token"]
    assert secret.startswith(body["display_prefix"])
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/studies", headers=bearer).status_code == 200

    revoked = client.delete(f"/api/tokens/{body['id']}", headers=alice.headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None

    after = client.get("/api/studies", headers=bearer)
    assert after.status_code == 401
    assert after.json()["detail"].startswith("the API token is invalid or revoked")
    assert client.get("/api/studies", headers=alice.headers).status_code == 200, (
        "revoking one token left the user's other token working"
    )


def test_token_of_another_user_cannot_be_revoked(client, settings, alice):
    bob = add_account(settings, "bob")
    bob_tokens = client.get("/api/tokens", headers=bob.headers).json()["tokens"]
    response = client.delete(f"/api/tokens/{bob_tokens[0]['id']}", headers=alice.headers)
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"token {bob_tokens[0]['id']} not found among the tokens of 'alice'"
    }
    assert client.get("/api/studies", headers=bob.headers).status_code == 200


def test_token_name_is_validated(client, alice):
    response = client.post("/api/tokens", json={"name": ""}, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "name"


# ---- Browser sign-in and CSRF ----


def test_sign_in_sets_cookies(client, alice):
    response = client.post("/api/session", json={"name": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["name"] == "alice"
    cookies = {value.split("=", 1)[0]: value for value in response.headers.get_list("set-cookie")}
    session_cookie = cookies["biaslab_session"].lower()
    csrf_cookie = cookies["biaslab_csrf"].lower()
    assert "httponly" in session_cookie
    assert "samesite=lax" in session_cookie
    assert "path=/" in session_cookie
    assert "secure" not in session_cookie, "plain http cannot carry a Secure cookie"
    assert "httponly" not in csrf_cookie, "the pages' scripts read the CSRF cookie"
    assert body["csrf_token"] in cookies["biaslab_csrf"]

    state = client.get("/api/session").json()
    assert state["user"]["name"] == "alice"
    assert state["csrf_token"] == body["csrf_token"]


def test_sign_in_cookie_is_secure_over_https(settings, alice):
    with TestClient(create_app(settings), base_url="https://lab.test") as client:
        response = client.post("/api/session", json={"name": "alice", "password": PASSWORD})
    assert response.status_code == 200
    for cookie in response.headers.get_list("set-cookie"):
        assert "secure" in cookie.lower(), cookie


def test_cookie_request_without_csrf_is_403(client, settings, alice):
    csrf = sign_in(client, alice)
    assert client.get("/api/studies").status_code == 200, "reads need no CSRF token"

    missing = client.post("/api/studies", json=EXAMPLE_STUDY)
    assert missing.status_code == 403
    assert missing.json()["detail"].startswith("missing or invalid X-CSRF-Token header")
    wrong = client.post("/api/studies", json=EXAMPLE_STUDY, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    assert count_rows(settings, Study) == 0, "a request without the CSRF token created a study"

    created = client.post("/api/studies", json=EXAMPLE_STUDY, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201
    assert created.json()["owner"] == "alice"


def test_bearer_request_needs_no_csrf(client, alice):
    response = client.post("/api/studies", json=EXAMPLE_STUDY, headers=alice.headers)
    assert response.status_code == 201


def test_sign_in_from_other_site_is_403(client, alice):
    response = client.post(
        "/api/session",
        json={"name": "alice", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "biaslab_session" not in response.headers.get("set-cookie", "")


def test_sign_out_ends_session(client, alice):
    csrf = sign_in(client, alice)
    cookie = client.cookies["biaslab_session"]
    assert client.delete("/api/session").status_code == 403, "sign-out needs the CSRF token too"

    response = client.delete("/api/session", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert client.get("/api/studies").status_code == 401

    # The old cookie, sent again, no longer signs anyone in.
    replayed = client.get("/api/studies", cookies={"biaslab_session": cookie})
    assert replayed.status_code == 401
    assert replayed.json()["detail"] == "your sign-in has expired or ended; sign in again"


def test_expired_session_is_401(client, settings, alice):
    engine = make_engine(settings.resolved_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        user = require_user(session, "alice")
        expired = start_session(session, user, timedelta(seconds=-1))
    engine.dispose()
    response = client.get("/api/studies", cookies={"biaslab_session": expired.secret})
    assert response.status_code == 401


def test_disabled_user_is_rejected(client, settings, alice):
    sign_in(client, alice)
    engine = make_engine(settings.resolved_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        disable_user(session, require_user(session, "alice"))
    engine.dispose()

    assert client.get("/api/studies").status_code == 401, "the sign-in survived disabling"
    assert client.get("/api/studies", headers=alice.headers).status_code == 401
    again = client.post("/api/session", json={"name": "alice", "password": PASSWORD})
    assert again.status_code == 401
    assert count_rows(settings, SignInSession) == 0


def test_token_only_user_cannot_sign_in(client, settings):
    robot = add_account(settings, "robot", password=None)
    response = client.post("/api/session", json={"name": "robot", "password": "anything at all"})
    assert response.status_code == 401
    assert client.get("/api/studies", headers=robot.headers).status_code == 200


# ---- Sign-in limits ----


def test_failed_sign_ins_are_rate_limited(client, alice):
    for _ in range(FAILURES_PER_USER):
        wrong = client.post("/api/session", json={"name": "alice", "password": "wrong password"})
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == "wrong user name or password"

    # Past the limit even the right password is rejected, so guessing gains nothing.
    limited = client.post("/api/session", json={"name": "alice", "password": PASSWORD})
    assert limited.status_code == 429
    retry_after = int(limited.headers["Retry-After"])
    assert 0 < retry_after <= 900
    assert f"try again in {retry_after} s" in limited.json()["detail"]
    assert "biaslab_session" not in limited.headers.get("set-cookie", "")


def test_sign_ins_are_limited_per_address(client, settings, alice):
    bob = add_account(settings, "bob")
    names = ["nobody", "alice", "someone", "bob", "nobody"]
    assert len(names) == FAILURES_PER_ADDRESS
    for name in names:
        response = client.post("/api/session", json={"name": name, "password": "wrong password"})
        assert response.status_code == 401
    # bob has failed only once, but this address has reached its limit.
    limited = client.post("/api/session", json={"name": bob.name, "password": PASSWORD})
    assert limited.status_code == 429


def test_unknown_user_gets_same_answer(client, alice):
    unknown = client.post("/api/session", json={"name": "mallory", "password": "wrong password"})
    known = client.post("/api/session", json={"name": "alice", "password": "wrong password"})
    assert unknown.status_code == known.status_code == 401
    assert unknown.json() == known.json()


def test_throttle_window_and_success():
    now = [1000.0]
    throttle = SignInThrottle(
        ThrottleLimits(failures_per_user=2, failures_per_address=10, window_seconds=60),
        clock=lambda: now[0],
    )
    throttle.record_failure("alice", "10.0.0.1")
    now[0] += 10
    throttle.record_failure("alice", "10.0.0.1")
    assert throttle.retry_after("alice", "10.0.0.2") == 50, (
        "the first failure leaves the window in 50 s"
    )
    assert throttle.retry_after("bob", "10.0.0.1") is None

    now[0] += 50
    assert throttle.retry_after("alice", "10.0.0.1") is None

    throttle.record_failure("alice", "10.0.0.1")
    throttle.record_success("alice")
    throttle.record_failure("alice", "10.0.0.1")
    assert throttle.retry_after("alice", "10.0.0.1") is None, "success cleared the user's failures"


# ---- Audit log ----


def test_audit_log_records_changes(client, settings, alice, admin):
    bob = add_account(settings, "bob")
    created = client.post("/api/studies", json=EXAMPLE_STUDY, headers=alice.headers).json()
    run_id = created["run_ids"][0]
    client.post(f"/api/runs/{run_id}/cancel", headers=bob.headers)
    client.get("/api/studies", headers=bob.headers)

    log = client.get("/api/audit", headers=admin.headers)
    assert log.status_code == 200
    entries = log.json()["entries"]
    seen = [(e["user"], e["method"], e["path"], e["status"], e["study_id"]) for e in entries]
    assert seen == [
        ("bob", "POST", f"/api/runs/{run_id}/cancel", 403, created["id"]),
        ("alice", "POST", "/api/studies", 201, created["id"]),
    ]
    assert entries[0]["run_id"] == run_id
    assert entries[0]["client_address"] == "testclient"

    only_alice = client.get("/api/audit", params={"user": "alice"}, headers=admin.headers).json()
    assert only_alice["count"] == 1


def test_audit_log_is_for_admins(client, alice):
    response = client.get("/api/audit", headers=alice.headers)
    assert response.status_code == 403
    assert response.json() == {
        "detail": "user 'alice' is not an admin; only admins can use GET /api/audit"
    }


def test_failed_sign_in_is_audited(client, alice, admin):
    client.post("/api/session", json={"name": "alice", "password": "wrong password"})
    client.post("/api/session", json={"name": "mallory", "password": "guess"})
    client.post("/api/studies", json=EXAMPLE_STUDY, headers=alice.headers)
    entries = client.get("/api/audit", headers=admin.headers).json()["entries"]
    seen = [(e["user"], e["attempted_user"], e["path"], e["status"]) for e in entries]
    assert seen == [
        ("alice", None, "/api/studies", 201),
        (None, "mallory", "/api/session", 401),
        (None, "alice", "/api/session", 401),
    ], "a failed sign-in records the user name it tried"


# ---- Authentication off ----


def test_lab_without_auth_stays_open(tmp_path):
    settings = Settings(data_dir=tmp_path)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/studies").status_code == 200
        created = client.post("/api/studies", json=EXAMPLE_STUDY)
        assert created.status_code == 201
        assert created.json()["owner"] is None
        assert client.get("/api/session").json() == {
            "auth": "off",
            "user": None,
            "csrf_token": None,
        }
        tokens = client.get("/api/tokens")
        assert tokens.status_code == 409
        assert "authentication is off" in tokens.json()["detail"]


# ---- Passwords and the address served on ----


def test_password_hash_round_trip():
    stored = hash_password(PASSWORD)
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, PASSWORD + "!")
    assert not verify_password(None, PASSWORD), "a user without a password never matches"


@pytest.mark.parametrize(
    ("password", "problem"), [("short", "too short"), ("x" * 1025, "too long")]
)
def test_password_rules(password, problem):
    with pytest.raises(InvalidPassword, match=problem):
        hash_password(password)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("lab.example.org", False),
    ],
)
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback
    assert (open_lab_error(host, "off") is None) is loopback
    assert open_lab_error(host, "required") is None


def test_serve_off_loopback_without_auth_fails(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "BIASLAB_AUTH"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path),
            "--no-worker",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "serving on 0.0.0.0 without authentication is not allowed" in result.stderr
    assert "biaslab serve --auth" in result.stderr
    assert "biaslab users create NAME --admin" in result.stderr
    assert "biaslab is serving" not in result.stdout


@pytest.mark.parametrize(
    ("host", "address", "url"),
    [
        ("127.0.0.1", "127.0.0.1", "http://127.0.0.1:8000/"),
        ("::1", "::1", "http://[::1]:8000/"),
        ("[::1]", "::1", "http://[::1]:8000/"),
        ("localhost", "localhost", "http://localhost:8000/"),
    ],
)
def test_bind_address_and_url(host, address, url):
    assert bind_address(host, 8000) == address
    assert url_of(address, 8000) == url


def test_serve_rejects_unresolvable_host_before_serving(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "serve",
            "--host",
            "[no such host]",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path),
            "--no-worker",
            "--auth",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(
        "error: --host '[no such host]' is not an address this machine can bind: "
    ), result.stderr
    assert "biaslab is serving" not in result.stdout
