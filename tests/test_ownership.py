"""Study ownership: everyone signed in reads every study that is not private; only the
owner or an admin cancels, renames or deletes. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import text

from backend.app import create_app
from biaslab.settings import Settings
from biaslab.store.db import make_engine
from biaslab.store.migrate import alembic_config, upgrade
from tests.accounts import Account, add_account, lab_settings
from tests.conftest import empty_postgres_database
from tests.examples import EXAMPLE_STUDY
from tests.server import running_lab


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def settings(request, tmp_path, backend) -> Iterator[Settings]:
    with lab_settings(request, tmp_path, backend) as settings:
        yield settings


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@dataclass(frozen=True)
class Lab:
    alice: Account
    bob: Account
    admin: Account


@pytest.fixture
def lab(settings) -> Lab:
    return Lab(
        alice=add_account(settings, "alice"),
        bob=add_account(settings, "bob"),
        admin=add_account(settings, "root", admin=True),
    )


def create(client: TestClient, account: Account, name: str = "alice's dots") -> dict:
    response = client.post(
        "/api/studies", json={**EXAMPLE_STUDY, "name": name}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def forbidden_detail(study: dict) -> str:
    return (
        f"study {study['id']} ({study['name']!r}) belongs to 'alice'; "
        "only its owner or an admin can change it"
    )


def test_everyone_reads_a_shared_study(client, lab):
    study = create(client, lab.alice)
    read = client.get(f"/api/studies/{study['id']}", headers=lab.bob.headers)
    assert read.status_code == 200
    assert read.json()["owner"] == "alice"
    assert read.json()["private"] is False
    run = client.get(f"/api/runs/{study['run_ids'][0]}", headers=lab.bob.headers)
    assert run.status_code == 200
    listing = client.get("/api/studies", headers=lab.bob.headers).json()
    assert [item["id"] for item in listing["studies"]] == [study["id"]]


def test_other_user_cannot_cancel(client, lab):
    study = create(client, lab.alice)
    run_id = study["run_ids"][0]
    response = client.post(f"/api/runs/{run_id}/cancel", headers=lab.bob.headers)
    assert response.status_code == 403
    assert response.json() == {"detail": forbidden_detail(study)}
    run = client.get(f"/api/runs/{run_id}", headers=lab.alice.headers).json()
    assert run["status"] == "queued"
    assert run["cancel_requested"] is False


def test_other_user_cannot_rename(client, lab):
    study = create(client, lab.alice)
    response = client.patch(
        f"/api/studies/{study['id']}", json={"name": "bob's now"}, headers=lab.bob.headers
    )
    assert response.status_code == 403
    assert response.json() == {"detail": forbidden_detail(study)}
    after = client.get(f"/api/studies/{study['id']}", headers=lab.alice.headers).json()
    assert after["name"] == "alice's dots"
    assert after["design"]["name"] == "alice's dots"


def test_other_user_cannot_delete(client, lab):
    study = create(client, lab.alice)
    response = client.delete(f"/api/studies/{study['id']}", headers=lab.bob.headers)
    assert response.status_code == 403
    assert response.json() == {"detail": forbidden_detail(study)}
    assert client.get(f"/api/studies/{study['id']}", headers=lab.alice.headers).status_code == 200
    run = client.get(f"/api/runs/{study['run_ids'][0]}", headers=lab.alice.headers).json()
    assert run["status"] == "queued"


def test_owner_renames_and_cancels(client, lab):
    study = create(client, lab.alice)
    renamed = client.patch(
        f"/api/studies/{study['id']}", json={"name": "  two, four  "}, headers=lab.alice.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "two, four"
    assert renamed.json()["design"]["name"] == "two, four"

    cancelled = client.post(f"/api/runs/{study['run_ids'][0]}/cancel", headers=lab.alice.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"


def test_owner_deletes_study_and_runs(client, lab):
    study = create(client, lab.alice)
    response = client.delete(f"/api/studies/{study['id']}", headers=lab.alice.headers)
    assert response.status_code == 204
    assert client.get(f"/api/studies/{study['id']}", headers=lab.alice.headers).status_code == 404
    run = client.get(f"/api/runs/{study['run_ids'][0]}", headers=lab.alice.headers)
    assert run.status_code == 404
    assert client.get("/api/studies", headers=lab.alice.headers).json()["count"] == 0


def test_admin_changes_any_study(client, lab):
    study = create(client, lab.alice)
    renamed = client.patch(
        f"/api/studies/{study['id']}", json={"name": "checked by admin"}, headers=lab.admin.headers
    )
    assert renamed.status_code == 200
    cancelled = client.post(f"/api/runs/{study['run_ids'][0]}/cancel", headers=lab.admin.headers)
    assert cancelled.status_code == 200
    deleted = client.delete(f"/api/studies/{study['id']}", headers=lab.admin.headers)
    assert deleted.status_code == 204


def test_private_study_is_hidden(client, lab):
    shared = create(client, lab.alice, "shared")
    hidden = create(client, lab.alice, "hidden")
    made_private = client.patch(
        f"/api/studies/{hidden['id']}", json={"private": True}, headers=lab.alice.headers
    )
    assert made_private.status_code == 200
    assert made_private.json()["private"] is True

    # To others it does not exist: the same 404 as a missing study, so its name does not leak.
    assert client.get(f"/api/studies/{hidden['id']}", headers=lab.bob.headers).json() == {
        "detail": f"study {hidden['id']} not found"
    }
    assert (
        client.get(f"/api/runs/{hidden['run_ids'][0]}", headers=lab.bob.headers).status_code == 404
    )
    assert (
        client.post(f"/api/runs/{hidden['run_ids'][0]}/cancel", headers=lab.bob.headers).status_code
        == 404
    )
    assert (
        client.get(f"/api/studies/{hidden['id']}/events", headers=lab.bob.headers).status_code
        == 404
    )
    bob_list = client.get("/api/studies", headers=lab.bob.headers).json()
    assert [item["id"] for item in bob_list["studies"]] == [shared["id"]]
    assert bob_list["count"] == 1

    for account in (lab.alice, lab.admin):
        listing = client.get("/api/studies", headers=account.headers).json()
        assert listing["count"] == 2, f"{account.name} should see the private study"
        assert (
            client.get(f"/api/studies/{hidden['id']}", headers=account.headers).status_code == 200
        )


def test_study_without_owner_is_admins_only(tmp_path, request, backend):
    # Made while authentication was off, then the lab is served with it on.
    with lab_settings(request, tmp_path, backend, auth="off") as open_settings:
        with TestClient(create_app(open_settings)) as client:
            study = client.post("/api/studies", json=EXAMPLE_STUDY).json()
        settings = open_settings.model_copy(update={"auth": "required"})
        bob = add_account(settings, "bob")
        admin = add_account(settings, "root", admin=True)
        with TestClient(create_app(settings)) as client:
            assert (
                client.get(f"/api/studies/{study['id']}", headers=bob.headers).json()["owner"]
                is None
            )
            denied = client.post(f"/api/runs/{study['run_ids'][0]}/cancel", headers=bob.headers)
            assert denied.status_code == 403
            assert denied.json()["detail"] == (
                f"study {study['id']} ('two and four dots') has no owner (it was made while "
                "authentication was off); only an admin can change it"
            )
            allowed = client.post(f"/api/runs/{study['run_ids'][0]}/cancel", headers=admin.headers)
            assert allowed.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"name": ""}, "name"),
        ({"owner": "bob"}, "owner"),
        ({"private": "maybe"}, "private"),
    ],
)
def test_study_update_is_validated(client, lab, body, field):
    study = create(client, lab.alice)
    response = client.patch(f"/api/studies/{study['id']}", json=body, headers=lab.alice.headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == field


# ---- Two users at once, on a real server ----

STUDIES_PER_USER = 6


def test_concurrent_users_never_change_each_other(request, tmp_path, backend):
    """Two users submit and cancel at once while attacking each other's studies.

    Each cancels half of their own runs; every attempt on the other's studies
    must be rejected and change nothing.
    """
    with lab_settings(request, tmp_path, backend) as settings:
        alice = add_account(settings, "alice")
        bob = add_account(settings, "bob")
        admin = add_account(settings, "root", admin=True)
        env = {"BIASLAB_AUTH": "required"}
        if settings.database_url:
            env["BIASLAB_DATABASE_URL"] = settings.database_url
        with running_lab(Path(tmp_path), worker=False, env=env) as base_url:
            run_concurrent_users(base_url, alice, bob, admin)


def run_concurrent_users(base_url: str, alice: Account, bob: Account, admin: Account) -> None:
    owners = {alice.name: alice, bob.name: bob}

    def submit(account: Account, index: int) -> tuple[str, dict]:
        with httpx.Client(base_url=base_url, headers=account.headers, timeout=30) as http:
            response = http.post(
                "/api/studies", json={**EXAMPLE_STUDY, "name": f"{account.name} {index}"}
            )
        assert response.status_code == 201, response.text
        return account.name, response.json()

    jobs = [(account, index) for index in range(STUDIES_PER_USER) for account in (alice, bob)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        submitted = list(pool.map(lambda job: submit(*job), jobs))
    studies = {name: [study for owner, study in submitted if owner == name] for name in owners}

    # Each user cancels the runs of their first half of studies, and tries to cancel,
    # rename and delete every study of the other user, all at once in a random order.
    half = STUDIES_PER_USER // 2
    actions: list[tuple[Account, str, str, dict | None, int]] = []
    for name, account in owners.items():
        other = bob.name if name == alice.name else alice.name
        for study in studies[name][:half]:
            actions.append((account, "POST", f"/api/runs/{study['run_ids'][0]}/cancel", None, 200))
        for study in studies[other]:
            actions.append((account, "POST", f"/api/runs/{study['run_ids'][0]}/cancel", None, 403))
            actions.append(
                (account, "PATCH", f"/api/studies/{study['id']}", {"name": "taken"}, 403)
            )
            actions.append((account, "DELETE", f"/api/studies/{study['id']}", None, 403))
    random.Random(0).shuffle(actions)

    def act(action: tuple[Account, str, str, dict | None, int]) -> tuple[str, str, int, int]:
        account, method, path, body, _expected = action
        with httpx.Client(base_url=base_url, headers=account.headers, timeout=30) as http:
            response = http.request(method, path, json=body)
        return account.name, f"{method} {path}", response.status_code, _expected

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(act, actions))
    unexpected = [outcome for outcome in outcomes if outcome[2] != outcome[3]]
    assert unexpected == [], f"(user, request, status, expected): {unexpected}"

    with httpx.Client(base_url=base_url, headers=admin.headers, timeout=30) as http:
        for name in owners:
            for position, study in enumerate(studies[name]):
                stored = http.get(f"/api/studies/{study['id']}").json()
                assert stored["name"] == f"{name} {position}", "another user renamed the study"
                assert stored["owner"] == name
                expected = "cancelled" if position < half else "queued"
                status = stored["runs"][0]["status"]
                assert status == expected, f"run of {stored['name']!r} is {status}, not {expected}"
        audit = http.get("/api/audit", params={"limit": 1000}).json()["entries"]

    owner_of = {study["id"]: name for name in owners for study in studies[name]}
    cross_writes = [
        entry
        for entry in audit
        if entry["status"] < 400
        and entry["study_id"] is not None
        and entry["user"] != owner_of[entry["study_id"]]
    ]
    assert cross_writes == []
    rejected = [entry for entry in audit if entry["status"] == 403]
    assert len(rejected) == 2 * 3 * STUDIES_PER_USER


# ---- The migration that adds owners ----


def test_upgrade_keeps_existing_studies(tmp_path, backend):
    """Studies and runs made before users existed survive the upgrade, without an owner."""

    def check(url: str) -> None:
        engine = make_engine(url)
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0002")
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO studies (name, design, created_at) VALUES ('old', '{}', :now)"),
                {"now": "2025-01-01 00:00:00"},
            )
            connection.execute(
                text(
                    'INSERT INTO runs (study_id, "index", spec, status, step, progress, '
                    "cancel_requested, created_at) "
                    "VALUES (1, 0, '{}', 'queued', 0, 0, false, :now)"
                ),
                {"now": "2025-01-01 00:00:00"},
            )
        engine.dispose()

        upgrade(url)

        engine = make_engine(url)
        with engine.connect() as connection:
            runs = connection.execute(text("SELECT count(*) FROM runs")).scalar()
            study = connection.execute(text("SELECT owner_id, private FROM studies")).one()
        engine.dispose()
        assert runs == 1, "the upgrade deleted the runs of an existing study"
        assert study.owner_id is None
        assert not study.private

    if backend == "sqlite":
        check(f"sqlite:///{tmp_path / 'old.sqlite'}")
    else:
        with empty_postgres_database("biaslab_upgrade") as url:
            check(url)
