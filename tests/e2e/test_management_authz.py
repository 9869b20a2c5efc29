"""Role x route authorization matrix over every management route, on the real gateway.

Viewer reads, developer manages keys, admin manages the workspace and its members; a caller
outside the workspace gets 404 whatever it asks; an API key acts with its own role.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.gateway import GatewayProcess
from tests.support.management import (
    PASSWORD,
    Api,
    World,
    build_world,
    start_gateway,
    unique_email,
)

RANK = {"member": 0, "viewer": 1, "developer": 2, "admin": 3}
USERS = ("viewer", "developer", "admin", "outsider")
KEYS = ("key_member", "key_viewer", "key_developer", "key_admin")
CALLERS = ("anonymous", *USERS, *KEYS)


@dataclass
class Targets:
    """Objects the routes act on, made once; each case restores what it needs first."""

    patch_member: str
    delete_member: str
    delete_member_email: str
    add_member_email: str
    key_id: str


# A provider to store workspace credentials for, and a secret key so BYOK is on.
MATRIX_PROVIDER = {"id": "openai", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1"}
MATRIX_SECRET_KEY = "bWF0cml4LXRlc3Qtc2VjcmV0LWtleS0zMi1ieXRlcyE="


@pytest.fixture(scope="module")
def gateway_for_matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = start_gateway(
        tmp_path_factory.mktemp("mgmt-matrix"),
        providers=[MATRIX_PROVIDER],
        env={"ORCAROUTER_SECRET_KEY": MATRIX_SECRET_KEY},
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def world(gateway_for_matrix: GatewayProcess) -> World:
    return build_world(gateway_for_matrix)


@pytest.fixture(scope="module")
def targets(world: World) -> Targets:
    api = world.api
    emails = [unique_email("target") for _ in range(3)]
    ids = [api.register(email)["user"]["id"] for email in emails]
    admin = world.tokens["admin"]
    for email in emails[:2]:
        answer = api.call(
            "POST", f"/api/workspaces/{world.workspace}/members", {"email": email}, admin
        )
        assert answer.status == 201
    return Targets(ids[0], ids[1], emails[1], emails[2], world.key("member")["id"])


def _credentials(world: World, caller: str) -> str | None:
    if caller == "anonymous":
        return None
    if caller in USERS:
        return world.tokens[caller]
    return world.key_secrets[caller.removeprefix("key_")]


def _role(caller: str) -> str | None:
    if caller in ("viewer", "developer", "admin"):
        return caller
    if caller in KEYS:
        return caller.removeprefix("key_")
    return None


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    needs: str | None  # least workspace role, None for routes outside a workspace
    success: int
    body: Callable[[World, Targets], Any] | None = None
    prepare: Callable[[World, Targets], dict[str, str]] | None = None


def _ensure_member(world: World, email: str) -> None:
    world.api.call(
        "POST",
        f"/api/workspaces/{world.workspace}/members",
        {"email": email},
        world.tokens["admin"],
    )


def _ensure_not_member(world: World, targets: Targets) -> None:
    me = world.api.call(
        "GET", f"/api/workspaces/{world.workspace}/members", None, world.tokens["admin"]
    )
    for member in me.json():
        if member["email"] == targets.add_member_email:
            world.api.call(
                "DELETE",
                f"/api/workspaces/{world.workspace}/members/{member['user_id']}",
                None,
                world.tokens["admin"],
            )


def _prep_delete_member(world: World, targets: Targets) -> dict[str, str]:
    _ensure_member(world, targets.delete_member_email)
    return {"user_id": targets.delete_member}


def _prep_add_member(world: World, targets: Targets) -> dict[str, str]:
    _ensure_not_member(world, targets)
    return {}


def _prep_fresh_key(world: World, _targets: Targets) -> dict[str, str]:
    return {"key_id": world.key("member")["id"]}


WS = "/api/workspaces/{workspace_id}"
MATRIX_ROUTER = "matrix"


def _new_router(_w: World, _t: Targets) -> dict[str, str]:
    return {"name": f"m-{uuid.uuid4().hex[:12]}", "strategy": "cheapest"}


def _ensure_router(world: World, _targets: Targets) -> dict[str, str]:
    world.api.call(
        "POST",
        f"/api/workspaces/{world.workspace}/routers",
        {"name": MATRIX_ROUTER},
        world.tokens["admin"],
    )
    return {"name": MATRIX_ROUTER}


def _router_strategy(_w: World, _t: Targets) -> dict[str, str]:
    return {"strategy": "quality"}


def _new_user(_w: World, _t: Targets) -> dict[str, str]:
    return {"email": unique_email("m"), "password": "long enough password"}


def _viewer_login(w: World, _t: Targets) -> dict[str, str]:
    return {"email": w.emails["viewer"], "password": PASSWORD}


def _named(name: str) -> Callable[[World, Targets], Any]:
    return lambda _w, _t: {"name": name}


def _add_member_body(_w: World, t: Targets) -> dict[str, str]:
    return {"email": t.add_member_email, "role": "viewer"}


def _viewer_role(_w: World, _t: Targets) -> dict[str, str]:
    return {"role": "viewer"}


def _patch_member(_w: World, t: Targets) -> dict[str, str]:
    return {"user_id": t.patch_member}


def _top_up(_w: World, _t: Targets) -> dict[str, str]:
    return {"amount_usd": "1.25", "note": "matrix"}


def _the_key(_w: World, t: Targets) -> dict[str, str]:
    return {"key_id": t.key_id}


def _provider_key(_w: World, _t: Targets) -> dict[str, str]:
    return {"api_key": "sk-matrix-workspace-key-0123456789"}


def _the_provider(_w: World, _t: Targets) -> dict[str, str]:
    return {"provider_id": "openai"}


def _ensure_credential(world: World, targets: Targets) -> dict[str, str]:
    world.api.call(
        "PUT",
        f"/api/workspaces/{world.workspace}/credentials/openai",
        _provider_key(world, targets),
        world.tokens["admin"],
    )
    return _the_provider(world, targets)


ROUTES = (
    Route("POST", "/api/auth/register", None, 201, _new_user),
    Route("POST", "/api/auth/login", None, 200, _viewer_login),
    Route("POST", "/api/auth/logout", None, 204),
    Route("GET", "/api/me", None, 200),
    Route("GET", "/api/workspaces", None, 200),
    Route("POST", "/api/workspaces", None, 201, _named("another")),
    Route("GET", WS, "viewer", 200),
    Route("PATCH", WS, "admin", 200, _named("Workspace A")),
    Route("GET", WS + "/members", "viewer", 200),
    Route("POST", WS + "/members", "admin", 201, _add_member_body, _prep_add_member),
    Route("PATCH", WS + "/members/{user_id}", "admin", 200, _viewer_role, _patch_member),
    Route("DELETE", WS + "/members/{user_id}", "admin", 204, None, _prep_delete_member),
    Route("GET", WS + "/keys", "viewer", 200),
    Route("POST", WS + "/keys", "developer", 201, _named("matrix key")),
    Route("GET", WS + "/keys/{key_id}", "viewer", 200, None, _the_key),
    Route("PATCH", WS + "/keys/{key_id}", "developer", 200, _named("renamed"), _the_key),
    Route("DELETE", WS + "/keys/{key_id}", "developer", 200, None, _prep_fresh_key),
    Route("GET", WS + "/routers", "viewer", 200),
    Route("POST", WS + "/routers", "developer", 201, _new_router),
    Route("GET", WS + "/routers/{name}", "viewer", 200, None, _ensure_router),
    Route("PATCH", WS + "/routers/{name}", "developer", 200, _router_strategy, _ensure_router),
    Route("DELETE", WS + "/routers/{name}", "developer", 204, None, _ensure_router),
    Route("GET", WS + "/audit", "admin", 200),
    Route("GET", WS + "/analytics", "viewer", 200),
    Route("GET", WS + "/usage.csv", "viewer", 200),
    Route("GET", "/api/health/targets", None, 200),
    Route("GET", WS + "/wallet", "viewer", 200),
    Route("GET", WS + "/wallet/ledger", "viewer", 200),
    Route("POST", WS + "/wallet/topups", "admin", 201, _top_up),
    Route("GET", WS + "/credentials", "viewer", 200),
    Route("PUT", WS + "/credentials/{provider_id}", "admin", 200, _provider_key, _the_provider),
    Route("DELETE", WS + "/credentials/{provider_id}", "admin", 204, None, _ensure_credential),
)


def _expected(route: Route, caller: str) -> int:
    role = _role(caller)
    if route.path in ("/api/auth/register", "/api/auth/login"):
        return route.success  # public
    if caller == "anonymous":
        return 401
    if route.path == "/api/auth/logout":
        return route.success if caller in USERS else 400
    if route.method == "POST" and route.path == "/api/workspaces":
        return route.success if caller in USERS else 403
    if route.needs is None:
        return route.success
    if role is None:  # the outsider: not a member of workspace A
        return 404
    return route.success if RANK[role] >= RANK[route.needs] else 403


def test_the_matrix_covers_every_management_route(world: World) -> None:
    spec = world.api.call("GET", "/api/openapi.json").json()
    declared = {(m.upper(), path) for path, item in spec["paths"].items() for m in item}
    assert declared == {(r.method, r.path) for r in ROUTES}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_role_route_matrix(world: World, targets: Targets, route: Route, caller: str) -> None:
    params = {"workspace_id": world.workspace}
    if route.prepare is not None:
        params.update(route.prepare(world, targets))
    credentials = _credentials(world, caller)
    if route.path == "/api/auth/logout" and caller in USERS:
        credentials = world.api.token(world.emails[caller])  # logging out ends this token only
    body = route.body(world, targets) if route.body is not None else None
    answer = world.api.call(route.method, route.path.format(**params), body, credentials)
    assert answer.status == _expected(route, caller), answer.body
    if answer.status >= 400:
        error = answer.json()["error"]
        assert error["code"] and error["message"]


def test_an_outsider_and_a_member_see_the_same_404(world: World) -> None:
    api = world.api
    for workspace in (world.workspace, "ws_does_not_exist"):
        answer = api.call(
            "GET", f"/api/workspaces/{workspace}/keys", None, world.tokens["outsider"]
        )
        assert (answer.status, answer.json()["error"]["code"]) == (404, "workspace_not_found")


def test_unknown_api_paths_are_404_and_public_routes_stay_public(world: World) -> None:
    api: Api = world.api
    assert api.call("GET", "/api/nothing-here", None, world.tokens["admin"]).status == 404
    assert api.call("GET", "/api/public/providers").status == 200
