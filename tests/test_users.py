"""API keys and users: 401s that say how to get a key, keys shown once and stored hashed, admin-only
management, the operator CLI, the first start's key, and per-user quotas and rate limits (429)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import app
from config import Settings, get_settings
from epochal.accounts_cli import ensure_first_key
from models import ApiKey, User
from models.accounts import hash_token, touch
from models.base import utcnow
from models.db import session_scope
from tests.support import ROOT, bearer


def me(client: TestClient, **headers: str) -> Any:
    return client.get("/me", headers=headers)


def create_user(client: TestClient, name: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/users", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_401(response: Any, *words: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    detail = response.json()["detail"]
    # It says how to get a key.
    for word in ("Authorization: Bearer", "api-key", "POST /users", *words):
        assert word in detail, (word, detail)


# --- 401 ---------------------------------------------------------------------------------------------------


def test_no_key_is_401_saying_how_to_get_one(anonymous_client: TestClient) -> None:
    assert_401(anonymous_client.get("/experiments"), "needs an API key")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", "bearer-epk_abc", "Bearer not-a-key", "Bearer epk_", "Token x"],
)
def test_a_malformed_key_is_401(anonymous_client: TestClient, authorization: str) -> None:
    assert_401(anonymous_client.get("/experiments", headers={"Authorization": authorization}))


def test_an_unknown_key_is_401(client: TestClient, anonymous_client: TestClient) -> None:
    real = client.headers["Authorization"].removeprefix("Bearer ")
    # Same prefix, different secret: the prefix finds the row, the hash comparison must still refuse it.
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    assert_401(anonymous_client.get("/experiments", headers=bearer(forged)), "not valid")
    assert_401(anonymous_client.get("/experiments", headers=bearer("epk_" + "x" * 43)), "not valid")


def test_a_revoked_key_is_401(client: TestClient, anonymous_client: TestClient) -> None:
    created = create_user(client, "carol")
    key = created["api_key"]
    assert me(anonymous_client, **bearer(key)).json()["name"] == "carol"
    revoked = client.post(f"/keys/{created['keys'][0]['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert_401(me(anonymous_client, **bearer(key)), "not valid")
    # Revoking twice is harmless.
    assert client.post(f"/keys/{created['keys'][0]['id']}/revoke").status_code == 200


def test_the_key_in_use_cannot_revoke_itself(client: TestClient) -> None:
    key_id = me(client).json()["keys"][-1]["id"]
    response = client.post(f"/keys/{key_id}/revoke")
    assert response.status_code == 409, response.text
    assert me(client).status_code == 200


# --- users and keys --------------------------------------------------------------------------------------------


def test_a_new_user_gets_a_key_shown_once_and_stored_hashed(client: TestClient, anonymous_client: TestClient) -> None:
    created = create_user(client, "dave", max_active_jobs=3)
    key = created["api_key"]
    assert key.startswith("epk_") and len(key) >= 40
    assert created["admin"] is False and created["max_active_jobs"] == 3
    assert me(anonymous_client, **bearer(key)).json()["id"] == created["id"]
    # Never shown again: the listing has the prefix only.
    listing = client.get("/users")
    assert listing.status_code == 200
    assert key not in listing.text
    assert created["keys"][0]["prefix"] == key[:12]
    with session_scope() as session:
        stored = session.scalars(select(ApiKey).where(ApiKey.user_id == created["id"])).one()
        assert stored.sha256 == hash_token(key) != key
        assert key not in (stored.prefix, stored.sha256)


def test_a_second_key_works_alongside_the_first(client: TestClient, anonymous_client: TestClient) -> None:
    created = create_user(client, "erin")
    response = client.post(f"/users/{created['id']}/keys")
    assert response.status_code == 201, response.text
    second = response.json()["api_key"]
    assert second != created["api_key"]
    for key in (created["api_key"], second):
        assert me(anonymous_client, **bearer(key)).status_code == 200


def test_names_are_unique(client: TestClient) -> None:
    create_user(client, "frank")
    response = client.post("/users", json={"name": "frank"})
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/users", None),
        ("POST", "/users", {"name": "mallory", "admin": True}),
        ("PATCH", "/users/1", {"max_active_jobs": 1000}),
        ("POST", "/users/1/keys", None),
        ("POST", "/keys/1/revoke", None),
    ],
)
def test_only_admins_manage_users_and_keys(
    other_client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = other_client.request(method, path, json=body)
    assert response.status_code == 403, response.text
    assert "admin" in response.json()["detail"]
    with session_scope() as session:
        assert session.scalars(select(User).where(User.name == "mallory")).first() is None


def test_unknown_users_and_keys_are_404(client: TestClient) -> None:
    for path in ("/users/4242/keys", "/keys/4242/revoke", f"/keys/{2**70}/revoke"):
        assert client.post(path).status_code == 404


def test_last_used_is_recorded_at_most_once_a_minute() -> None:
    key = ApiKey(prefix="epk_x", sha256="0" * 64)
    now = utcnow()
    assert touch(key, now) is True and key.last_used_at == now
    assert touch(key, now + timedelta(seconds=59)) is False and key.last_used_at == now
    assert touch(key, now + timedelta(seconds=61)) is True


def test_a_request_records_last_used(client: TestClient) -> None:
    before = me(client).json()["keys"]
    assert all(k["last_used_at"] is not None for k in before)


# --- operator CLI and first start ------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "epochal", *args], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True
    )


def test_the_operator_cli_creates_lists_and_revokes(client: TestClient, anonymous_client: TestClient) -> None:
    created = cli("users", "create", "grace", "--admin")
    assert created.returncode == 0, created.stderr
    first = created.stdout.split()[-1]
    assert me(anonymous_client, **bearer(first)).json()["admin"] is True
    assert cli("users", "create", "grace").returncode == 1
    added = cli("keys", "create", "grace")
    assert added.returncode == 0, added.stderr
    second = added.stdout.split()[-1]
    listing = cli("users", "list")
    assert "grace" in listing.stdout and first not in listing.stdout
    key_id = added.stdout.split()[1]
    assert cli("keys", "revoke", key_id).returncode == 0
    assert me(anonymous_client, **bearer(second)).status_code == 401
    assert me(anonymous_client, **bearer(first)).status_code == 200
    assert cli("keys", "create", "nobody").returncode == 1


def test_the_first_start_makes_one_admin_key_in_a_private_file(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(state_dir=tmp_path, database_url=get_settings().database_url)
    new_key = ensure_first_key(settings)
    assert new_key is not None
    key_file = tmp_path / "api-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == new_key.token
    assert new_key.token in capsys.readouterr().out
    # Printed once: a second start makes nothing and leaves the file alone.
    assert ensure_first_key(settings) is None
    assert key_file.read_text().strip() == new_key.token
    with session_scope() as session:
        admins = session.scalars(select(User).where(User.admin.is_(True))).all()
        assert [a.name for a in admins] == ["admin"]


# --- quotas and rate limits ------------------------------------------------------------------------------------


def other_user_id(other_client: TestClient) -> int:
    return int(me(other_client).json()["id"])


def set_quota(client: TestClient, user_id: int, **quota: int | None) -> None:
    response = client.patch(f"/users/{user_id}", json=quota)
    assert response.status_code == 200, response.text


def assert_429(response: Any, *words: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    for word in words:
        assert word in response.json()["detail"]


def test_active_jobs_are_capped_per_user(client: TestClient, other_client: TestClient) -> None:
    set_quota(client, other_user_id(other_client), max_active_jobs=2)
    ids = [other_client.post("/experiments", json={"dataset": "mnist"}).json()["id"] for _ in range(2)]
    assert_429(other_client.post("/experiments", json={"dataset": "mnist"}), "EPOCHAL_MAX_ACTIVE_JOBS", "2")
    # Someone else's quota is their own.
    assert client.post("/experiments", json={"dataset": "mnist"}).status_code == 202
    # A finished job frees its place.
    assert other_client.post(f"/experiments/{ids[0]}/cancel").status_code == 200
    assert other_client.post("/experiments", json={"dataset": "mnist"}).status_code == 202
    # Retrying counts too.
    assert_429(other_client.post(f"/experiments/{ids[0]}/retry"), "EPOCHAL_MAX_ACTIVE_JOBS")


def test_a_refused_submission_counts_only_what_was_active_and_stores_nothing(
    client: TestClient, other_client: TestClient
) -> None:
    set_quota(client, other_user_id(other_client), max_active_jobs=3)
    assert other_client.post("/experiments", json={"dataset": "mnist"}).status_code == 202
    # Three repeats (a sweep of one configuration) would make four: refused, the refused rows not counted as active.
    refused = other_client.post("/experiments", json={"dataset": "mnist", "repeats": 3})
    assert_429(refused, "1 of your experiments are queued or running and this would add 3", "limit is 3")
    sweep = {"base": {"dataset": "mnist"}, "grid": {"optimizer": ["adam", "sgd", "rmsprop"]}}
    assert_429(other_client.post("/sweeps", json=sweep), "1 of your experiments", "would add 3")
    assert other_client.get("/experiments").json()["total"] == 1
    assert other_client.get("/sweeps").json() == []
    # Exactly up to the limit is allowed.
    assert other_client.post("/experiments", json={"dataset": "mnist", "repeats": 2}).status_code == 202
    assert other_client.get("/experiments").json()["total"] == 3


def test_the_setting_applies_when_the_user_has_no_override(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "max_active_jobs", 1)
    assert client.post("/experiments", json={"dataset": "mnist"}).status_code == 202
    assert_429(client.post("/experiments", json={"dataset": "mnist"}), "limit is 1")


def test_sweeps_are_capped_per_user_and_create_nothing_over_it(client: TestClient, other_client: TestClient) -> None:
    set_quota(client, other_user_id(other_client), max_sweep_experiments=2)
    body = {"base": {"dataset": "mnist"}, "grid": {"optimizer": ["adam", "sgd", "rmsprop"]}}
    assert_429(other_client.post("/sweeps", json=body), "EPOCHAL_MAX_SWEEP_EXPERIMENTS", "3")
    assert other_client.get("/sweeps").json() == []
    assert other_client.get("/experiments").json()["total"] == 0
    body["grid"] = {"optimizer": ["adam", "sgd"]}
    assert other_client.post("/sweeps", json=body).status_code == 202
    # A sweep may not take the user over their active jobs either.
    set_quota(client, other_user_id(other_client), max_active_jobs=3)
    assert_429(other_client.post("/sweeps", json=body), "EPOCHAL_MAX_ACTIVE_JOBS")


def test_predictions_are_rate_limited_per_user(client: TestClient, other_client: TestClient) -> None:
    set_quota(client, other_user_id(other_client), predictions_per_second=2)
    image = {"file": ("a.png", b"x", "image/png")}
    answers = [other_client.post("/datasets/mnist/predictions", files=image) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [404, 404]  # nothing to predict with, but counted
    assert_429(answers[2], "EPOCHAL_PREDICTIONS_PER_SECOND", "2")
    # The admin is not held back by another user's requests.
    assert client.post("/datasets/mnist/predictions", files=image).status_code == 404


def test_an_override_can_be_reset_to_the_setting(client: TestClient, other_client: TestClient) -> None:
    user_id = other_user_id(other_client)
    set_quota(client, user_id, max_active_jobs=1)
    set_quota(client, user_id, max_active_jobs=None)
    assert me(other_client).json()["max_active_jobs"] is None


def test_concurrent_submissions_cannot_overshoot_the_active_jobs_limit(
    client: TestClient, other_client: TestClient
) -> None:
    set_quota(client, other_user_id(other_client), max_active_jobs=3)
    headers = dict(other_client.headers)
    start = threading.Barrier(8)

    def submit_one() -> int:
        with TestClient(app, headers=headers) as own:
            start.wait()
            return own.post("/experiments", json={"dataset": "mnist"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: submit_one(), range(8)))
    assert sorted(answers) == [202] * 3 + [429] * 5, answers
    assert other_client.get("/experiments").json()["total"] == 3


SMALL_GRAPH = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 16, "activation": "relu"}]}
SMALL_GRAPH_PARAMS = (784 * 16 + 16) + (16 * 10 + 10)  # and the mnist head's 10 units


def test_network_limits_are_per_user_and_an_admin_may_raise_them(client: TestClient, other_client: TestClient) -> None:
    user_id = other_user_id(other_client)
    spec = {"dataset": "mnist", "network": SMALL_GRAPH}
    set_quota(client, user_id, max_network_params=1000)
    refused = other_client.post("/experiments", json=spec)
    assert refused.status_code == 422, refused.text
    message = refused.json()["detail"]
    for words in (f"{SMALL_GRAPH_PARAMS:,} parameters", "limit of 1,000", "max_network_params", "an admin may raise"):
        assert words in message, (words, message)
    sweep = other_client.post("/sweeps", json={"base": spec, "grid": {"optimizer": ["adam", "sgd"]}})
    assert sweep.status_code == 422 and "limit of 1,000" in sweep.text, sweep.text
    assert other_client.get("/experiments").json()["total"] == 0
    # The check answers against the caller's limits, as their submissions are held to them.
    check = other_client.post("/networks/check", json={"network": SMALL_GRAPH, "dataset": "mnist"})
    assert check.status_code == 422 and "limit of 1,000" in check.json()["message"], check.text
    # Others (here the admin, on the service-wide limits) may queue the same network.
    assert client.post("/experiments", json=spec).status_code == 202
    mine = client.post("/networks/check", json={"network": SMALL_GRAPH, "dataset": "mnist"})
    assert mine.json()["limits"]["params"] == get_settings().max_network_params
    # An admin raising the override lets it through.
    set_quota(client, user_id, max_network_params=SMALL_GRAPH_PARAMS)
    assert me(other_client).json()["max_network_params"] == SMALL_GRAPH_PARAMS
    check = other_client.post("/networks/check", json={"network": SMALL_GRAPH, "dataset": "mnist"})
    assert check.status_code == 200 and check.json()["limits"]["params"] == SMALL_GRAPH_PARAMS, check.text
    assert other_client.post("/experiments", json=spec).status_code == 202
    # Each figure's limit is the user's own: lowering FLOPs refuses it again, naming that one.
    set_quota(client, user_id, max_network_flops=10)
    flops = other_client.post("/experiments", json=spec)
    assert flops.status_code == 422 and "max_network_flops" in flops.json()["detail"], flops.text
    set_quota(client, user_id, max_network_flops=None, max_network_params=None)
    assert other_client.post("/experiments", json=spec).status_code == 202


def test_network_limit_overrides_are_bounded(client: TestClient, other_client: TestClient) -> None:
    user_id = other_user_id(other_client)
    for value in (0, 2**53 + 1):
        response = client.patch(f"/users/{user_id}", json={"max_network_activation_bytes": value})
        assert response.status_code == 422, response.text
    set_quota(client, user_id, max_network_activation_bytes=2**53)  # past what INTEGER holds: the column is BIGINT
    assert me(other_client).json()["max_network_activation_bytes"] == 2**53


def test_the_storage_quota_is_set_per_user_by_an_admin_and_get_me_shows_it_with_what_they_store(
    client: TestClient, other_client: TestClient
) -> None:
    # It was one setting for everyone: a user who needed more could only be helped by raising it for all.
    from tests.test_dataset_rows import THREE_CLASSES, upload

    user_id = other_user_id(other_client)
    default = get_settings().max_storage_bytes
    shown = me(other_client).json()
    assert shown["max_storage_bytes"] is None and shown["storage"] == {"used_bytes": 0, "quota_bytes": default}
    assert {"id", "name", "admin", "keys", "max_active_jobs", "created_at"} <= shown.keys()  # its fields stay
    # Below the floor the setting has too, or not a whole number of bytes: refused, saying what is allowed.
    for value in (10, 1.5, 2**53 + 1):
        refused = client.patch(f"/users/{user_id}", json={"max_storage_bytes": value})
        assert refused.status_code == 422 and "max_storage_bytes" in refused.text, refused.text
    # Only an admin sets it.
    assert other_client.patch(f"/users/{user_id}", json={"max_storage_bytes": 2**40}).status_code == 403
    room = len(THREE_CLASSES) + 100
    set_quota(client, user_id, max_storage_bytes=room)
    assert me(other_client).json()["storage"]["quota_bytes"] == room
    assert next(u for u in client.get("/users").json() if u["id"] == user_id)["max_storage_bytes"] == room
    assert client.get(f"/users/{user_id}/usage").json()["max_storage_bytes"] == room
    # The quota check counts against their own quota: one upload fits, a second one does not.
    assert upload(other_client, "theirs", THREE_CLASSES).status_code == 202
    assert me(other_client).json()["storage"] == {"used_bytes": len(THREE_CLASSES), "quota_bytes": room}
    assert_429(upload(other_client, "theirs", THREE_CLASSES), "max_storage_bytes", f"{room:,} bytes")
    # Past the setting itself, and past 32 bits: the column is BIGINT.
    set_quota(client, user_id, max_storage_bytes=default * 4)
    assert me(other_client).json()["storage"]["quota_bytes"] == default * 4
    assert upload(other_client, "theirs", THREE_CLASSES).status_code == 202
    # Null goes back to the service-wide setting; an admin's own quota was never touched.
    set_quota(client, user_id, max_storage_bytes=None)
    assert me(other_client).json()["storage"]["quota_bytes"] == default
    assert me(client).json()["storage"]["quota_bytes"] == default
    created = create_user(client, "dora", max_storage_bytes=4096)
    assert created["max_storage_bytes"] == 4096
