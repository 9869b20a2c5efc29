"""The management API under attack: SQL injection, cross-workspace access, escalation, CSRF,
secrets leaking into responses, audit rows or logs."""

from __future__ import annotations

from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.gateway import GatewayProcess
from tests.support.management import (
    ADMIN_KEY,
    PASSWORD,
    Api,
    World,
    build_world,
    login_with_cookies,
    start_gateway,
    unique_email,
)

SQLI = (
    "' OR '1'='1",
    "' OR (SELECT pg_sleep(5)) IS NULL --",
    "'; DROP TABLE api_keys; --",
    '" OR ""="',
    "1 UNION SELECT key_hash FROM api_keys --",
    "admin'--",
    "%' OR 1=1 --",
)
TABLES = ("api_keys", "users", "workspace_members", "auth_sessions", "audit_log", "workspaces")


@pytest.fixture(scope="module")
def gateway_for_security(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = start_gateway(tmp_path_factory.mktemp("mgmt-security"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def world(gateway_for_security: GatewayProcess) -> World:
    return build_world(gateway_for_security)


def _counts(gateway: GatewayProcess) -> dict[str, int]:
    return {
        t: gateway.query(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"]  # noqa: S608 - fixed names
        for t in TABLES
    }


@pytest.mark.parametrize("payload", SQLI)
def test_sql_injection_as_credentials_is_refused(world: World, payload: str) -> None:
    api = world.api
    for token in (payload, "sk-orca-" + payload, "sk-mgmt-" + payload):
        assert api.call("GET", "/api/me", None, token).status == 401
        assert api.call("GET", f"/api/workspaces/{world.workspace}/keys", None, token).status == 401
        answer = api.call("POST", "/v1/chat/completions", b"{}", token)
        assert answer.status == 401
    cookie = {"cookie": f"orca_session={payload.replace(';', '')}"}
    assert api.call("GET", "/api/me", headers=cookie).status == 401
    assert api.login(payload, payload).status in (400, 401)


def _field_cases(world: World, payload: str, key_id: str) -> list[tuple[str, str, Any]]:
    ws = world.workspace
    base_key = {"name": "k"}
    return [
        ("POST", "/api/auth/register", {"email": payload, "password": PASSWORD}),
        ("POST", "/api/auth/register", {"email": unique_email("p"), "password": payload * 2}),
        (
            "POST",
            "/api/auth/register",
            {"email": unique_email("p"), "password": PASSWORD, "workspace_name": payload},
        ),
        ("POST", "/api/auth/login", {"email": payload, "password": PASSWORD}),
        ("POST", "/api/auth/login", {"email": world.emails["viewer"], "password": payload}),
        ("POST", "/api/workspaces", {"name": payload}),
        ("PATCH", f"/api/workspaces/{ws}", {"name": payload}),
        ("POST", f"/api/workspaces/{ws}/members", {"email": payload}),
        ("POST", f"/api/workspaces/{ws}/members", {"email": "x@example.com", "role": payload}),
        ("PATCH", f"/api/workspaces/{ws}/members/{world.user_ids['viewer']}", {"role": payload}),
        ("POST", f"/api/workspaces/{ws}/keys", {"name": payload}),
        ("POST", f"/api/workspaces/{ws}/keys", {**base_key, "role": payload}),
        ("POST", f"/api/workspaces/{ws}/keys", {**base_key, "model_limits": [payload]}),
        ("POST", f"/api/workspaces/{ws}/keys", {**base_key, "allow_ips": [payload]}),
        ("POST", f"/api/workspaces/{ws}/keys", {**base_key, "environment": payload}),
        ("POST", f"/api/workspaces/{ws}/keys", {**base_key, "expires_at": payload}),
        ("PATCH", f"/api/workspaces/{ws}/keys/{key_id}", {"name": payload}),
        ("PATCH", f"/api/workspaces/{ws}/keys/{key_id}", {"status": payload}),
        ("GET", f"/api/workspaces/{_path(payload)}/keys", None),
        ("GET", f"/api/workspaces/{ws}/keys/{_path(payload)}", None),
        ("DELETE", f"/api/workspaces/{ws}/members/{_path(payload)}", None),
        ("GET", f"/api/workspaces/{ws}/audit?limit={_path(payload)}", None),
    ]


def _path(payload: str) -> str:
    return quote(payload, safe="")


@pytest.mark.parametrize("payload", SQLI)
def test_sql_injection_in_every_field_is_harmless(world: World, payload: str) -> None:
    key_id = world.key("member")["id"]
    before = _counts(world.gateway)
    for method, path, body in _field_cases(world, payload, key_id):
        answer = world.api.call(method, path, body, world.tokens["admin"])
        assert answer.status in (200, 201, 204, 400, 401, 403, 404, 409), (path, answer.body)
        if answer.status in (200, 201) and isinstance(body, dict) and body.get("name") == payload:
            assert answer.json()["name"] == payload  # stored literally, as a bound parameter
    after = _counts(world.gateway)
    assert all(after[t] >= before[t] for t in TABLES)  # nothing dropped or deleted
    assert after["api_keys"] - before["api_keys"] <= 1  # only the key named with the payload
    key = world.api.call(
        "GET", f"/api/workspaces/{world.workspace}/keys/{key_id}", None, world.tokens["admin"]
    )
    assert key.json()["name"] == payload


def test_cross_workspace_access_is_refused(world: World) -> None:
    api = world.api
    victim = world.key("member")
    outsider = world.tokens["outsider"]
    other = world.other_workspace
    for method, body in (("GET", None), ("PATCH", {"name": "stolen"}), ("DELETE", None)):
        for path in (
            f"/api/workspaces/{other}/keys/{victim['id']}",
            f"/api/workspaces/{world.workspace}/keys/{victim['id']}",
        ):
            assert api.call(method, path, body, outsider).status == 404
    admin_user = world.user_ids["admin"]
    for path in (
        f"/api/workspaces/{other}/members/{admin_user}",
        f"/api/workspaces/{world.workspace}/members/{admin_user}",
    ):
        assert api.call("DELETE", path, None, outsider).status == 404
    # a key of workspace A reaches nothing of workspace B, even as its admin
    key_admin = world.key_secrets["admin"]
    assert api.call("GET", f"/api/workspaces/{other}/keys", None, key_admin).status == 404
    assert api.call("GET", f"/api/workspaces/{other}/audit", None, key_admin).status == 404
    listed = api.call("GET", f"/api/workspaces/{other}/keys", None, outsider).json()
    assert victim["id"] not in {k["id"] for k in listed}
    after = api.call(
        "GET", f"/api/workspaces/{world.workspace}/keys/{victim['id']}", None, world.tokens["admin"]
    ).json()
    assert (after["name"], after["status"]) == (victim["name"], "active")


def test_nobody_grants_more_than_they_hold(world: World) -> None:
    api, ws = world.api, world.workspace
    dev, viewer = world.tokens["developer"], world.tokens["viewer"]
    keys = f"/api/workspaces/{ws}/keys"
    assert api.call("POST", keys, {"name": "x", "role": "admin"}, dev).status == 403
    assert api.call("POST", keys, {"name": "x", "role": "developer"}, dev).status == 201
    assert api.call("POST", keys, {"name": "x"}, viewer).status == 403
    admin_key = world.key("admin")
    assert api.call("PATCH", f"{keys}/{admin_key['id']}", {"name": "n"}, dev).status == 403
    assert api.call("DELETE", f"{keys}/{admin_key['id']}", None, dev).status == 403
    mine = world.key("member")
    assert api.call("PATCH", f"{keys}/{mine['id']}", {"role": "admin"}, dev).status == 403
    for field in ("workspace_id", "created_by", "key_hash", "secret", "id"):
        answer = api.call("POST", keys, {"name": "x", field: "ws_default"}, world.tokens["admin"])
        assert answer.status == 400, field
    members = f"/api/workspaces/{ws}/members"
    admin_id = world.user_ids["admin"]
    assert api.call("PATCH", f"{members}/{admin_id}", {"role": "viewer"}, dev).status == 403
    own = api.call("PATCH", f"{members}/{admin_id}", {"role": "viewer"}, world.tokens["admin"])
    assert own.status == 403
    assert api.call("DELETE", f"{members}/{admin_id}", None, world.tokens["admin"]).status == 409
    # an admin key may demote nobody into an admin-less workspace either
    assert (
        api.call(
            "PATCH", f"{members}/{admin_id}", {"role": "viewer"}, world.key_secrets["admin"]
        ).status
        == 409
    )


def test_a_key_creates_keys_only_within_its_own_limits(world: World) -> None:
    api, keys = world.api, f"/api/workspaces/{world.workspace}/keys"
    parent = world.key(
        "developer",
        model_limits_enabled=True,
        model_limits=["openai/*", "anthropic/claude-sonnet-*"],
        allow_ips=["127.0.0.0/8", "::1"],
        usd_cap_micros=5_000_000,
        expires_at="2099-01-01T00:00:00Z",
    )["secret"]
    within = {
        "name": "child",
        "model_limits_enabled": True,
        "model_limits": ["openai/gpt-4o*", "anthropic/claude-sonnet-4-5"],
        "allow_ips": ["127.0.0.1", "::1/128"],
        "usd_cap_micros": 1_000_000,
        "expires_at": "2098-01-01T00:00:00Z",
    }
    created = api.call("POST", keys, within, parent)
    assert created.status == 201, created.body
    world.secrets.append(created.json()["secret"])
    outside: list[dict[str, Any]] = [
        {"role": "admin"},
        {"model_limits_enabled": False},
        {"model_limits": ["*"]},
        {"model_limits": ["anthropic/*"]},
        {"allow_ips": []},
        {"allow_ips": ["10.0.0.0/8"]},
        {"allow_ips": ["::/0"]},
        {"usd_cap_micros": None},
        {"usd_cap_micros": 6_000_000},
        {"expires_at": None},
        {"expires_at": "2100-01-01T00:00:00Z"},
    ]
    for change in outside:
        answer = api.call("POST", keys, {**within, **change}, parent)
        assert answer.status == 403, (change, answer.body)
        assert answer.json()["error"]["code"] == "grant_exceeded"
    child = created.json()["id"]
    assert api.call("PATCH", f"{keys}/{child}", {"model_limits": ["*"]}, parent).status == 403
    assert api.call("PATCH", f"{keys}/{child}", {"usd_cap_micros": 10}, parent).status == 200


def test_session_cookie_is_httponly_strict_and_writes_need_csrf(world: World) -> None:
    api = world.api
    login, raw_cookies = login_with_cookies(api.base_url, world.emails["developer"])
    session_line = next(c for c in raw_cookies if c.startswith("orca_session="))
    assert "HttpOnly" in session_line and "samesite=strict" in session_line.lower()
    jar = SimpleCookie()
    for line in raw_cookies:
        jar.load(line)
    cookie = {"cookie": f"orca_session={jar['orca_session'].value}"}
    csrf = login["csrf_token"]
    assert jar["orca_csrf"].value == csrf
    assert api.call("GET", "/api/me", headers=cookie).status == 200
    assert api.call("POST", "/api/workspaces", {"name": "w"}, headers=cookie).status == 403
    wrong = {**cookie, "x-csrf-token": "not-the-token"}
    assert api.call("POST", "/api/workspaces", {"name": "w"}, headers=wrong).status == 403
    good = {**cookie, "x-csrf-token": csrf}
    assert api.call("POST", "/api/workspaces", {"name": "w"}, headers=good).status == 201
    assert api.call("POST", "/api/auth/logout", headers=good).status == 204
    assert api.call("GET", "/api/me", headers=cookie).status == 401
    # the management token from the same login still works until it is logged out
    token = login["token"]
    assert api.call("GET", "/api/me", None, token).status == 200
    assert api.call("POST", "/api/auth/logout", None, token).status == 204
    assert api.call("GET", "/api/me", None, token).status == 401


def test_disabled_and_revoked_keys_stop_working(world: World) -> None:
    api, keys = world.api, f"/api/workspaces/{world.workspace}/keys"
    made = world.key("viewer")
    admin = world.tokens["admin"]
    assert api.call("GET", "/api/me", None, made["secret"]).status == 200
    assert api.call("PATCH", f"{keys}/{made['id']}", {"status": "disabled"}, admin).status == 200
    assert api.call("GET", "/api/me", None, made["secret"]).status == 401
    assert api.call("PATCH", f"{keys}/{made['id']}", {"status": "active"}, admin).status == 200
    assert api.call("GET", "/api/me", None, made["secret"]).status == 200
    revoked = api.call("DELETE", f"{keys}/{made['id']}", None, admin)
    assert (revoked.status, revoked.json()["status"]) == (200, "revoked")
    assert api.call("GET", "/api/me", None, made["secret"]).status == 401
    assert api.call("PATCH", f"{keys}/{made['id']}", {"status": "active"}, admin).status == 409
    past = api.call("POST", keys, {"name": "old", "expires_at": "2001-01-01T00:00:00Z"}, admin)
    assert past.status == 400


def test_oversized_bodies_are_refused(world: World) -> None:
    body = b'{"name": "' + b"x" * (300 * 1024) + b'"}'
    answer = world.api.call("POST", "/api/workspaces", body, world.tokens["admin"])
    assert answer.status == 413


def test_the_bootstrap_admin_key_administers_the_default_workspace(world: World) -> None:
    api = world.api
    me = api.call("GET", "/api/me", None, ADMIN_KEY).json()
    assert me["kind"] == "key" and me["workspaces"][0]["id"] == "ws_default"
    created = api.call("POST", "/api/workspaces/ws_default/keys", {"name": "ops"}, ADMIN_KEY)
    assert created.status == 201
    world.secrets.append(created.json()["secret"])
    added = api.call(
        "POST",
        "/api/workspaces/ws_default/members",
        {"email": world.emails["viewer"], "role": "developer"},
        ADMIN_KEY,
    )
    assert added.status == 201
    audit = api.call("GET", "/api/workspaces/ws_default/audit", None, ADMIN_KEY).json()
    assert [e["action"] for e in audit[:2]] == ["member.added", "key.created"]
    assert audit[0]["actor_type"] == "key" and audit[0]["target_id"] == world.user_ids["viewer"]


def test_no_secret_in_responses_audit_rows_or_logs(world: World) -> None:
    api, keys = world.api, f"/api/workspaces/{world.workspace}/keys"
    admin = world.tokens["admin"]
    created = world.key("developer", model_limits_enabled=True, model_limits=["openai/*"])
    secret = created["secret"]
    responses = [
        api.call("GET", keys, None, admin),
        api.call("GET", f"{keys}/{created['id']}", None, admin),
        api.call("PATCH", f"{keys}/{created['id']}", {"name": "renamed"}, admin),
        api.call("GET", f"/api/workspaces/{world.workspace}/audit?limit=500", None, admin),
        api.call("GET", "/api/me", None, secret),
        api.call("DELETE", f"{keys}/{created['id']}", None, admin),
    ]
    hashes = [r["key_hash"] for r in world.gateway.query("SELECT key_hash FROM api_keys")]
    everything = [*world.secrets, secret, PASSWORD]
    for answer in responses:
        assert answer.status == 200
        for value in (*everything, *hashes):
            assert value not in answer.body.decode()
        assert b'"secret"' not in answer.body  # (a key *named* "...key_hash..." may exist)
    dump = "\n".join(
        str(row)
        for table in ("audit_log", "auth_sessions", "users", "api_keys")
        for row in world.gateway.query(f"SELECT * FROM {table}")  # noqa: S608 - fixed names
    )
    audit_dump = "\n".join(str(r) for r in world.gateway.query("SELECT * FROM audit_log"))
    for value in everything:
        assert value not in dump
    for value in hashes:
        assert value not in audit_dump
    logs = world.gateway.logs()
    for value in (*everything, ADMIN_KEY):
        assert value not in logs


def test_registration_is_closed_unless_opened(tmp_path_factory: pytest.TempPathFactory) -> None:
    process = GatewayProcess(
        tmp_path_factory.mktemp("mgmt-closed"),
        {"providers": []},
        {"ORCAROUTER_ADMIN_KEY": ADMIN_KEY},
    )
    process.start()
    try:
        api = Api(process.base_url)
        api.register(unique_email("first"))  # the first user always may
        body = {"email": unique_email("second"), "password": PASSWORD}
        closed = api.call("POST", "/api/auth/register", body)
        assert (closed.status, closed.json()["error"]["code"]) == (403, "registration_closed")
        assert api.call("POST", "/api/auth/register", body, ADMIN_KEY).status == 201
    finally:
        process.stop()
