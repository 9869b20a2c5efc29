"""A client for the management API and a gateway with a populated workspace, for e2e tests."""

from __future__ import annotations

import itertools
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.support.gateway import GatewayProcess
from tests.support.http import Answer, request

ADMIN_KEY = "sk-orca-mgmt-tests-admin-0123456789abcdefghijklmnop"
PASSWORD = "correct horse battery staple"
_counter = itertools.count()


def unique_email(tag: str) -> str:
    """A fresh address for each registration."""
    return f"{tag}-{next(_counter)}@example.com"


@dataclass
class Api:
    """Calls one gateway's management API with JSON bodies."""

    base_url: str

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request; ``token`` goes in ``Authorization: Bearer``."""
        sent = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            sent["content-type"] = "application/json"
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        return request(self.base_url + path, data, sent, method=method)

    def register(self, email: str, password: str = PASSWORD, name: str | None = None) -> Any:
        """Register a user (open registration) and return the response body."""
        body: dict[str, Any] = {"email": email, "password": password}
        if name is not None:
            body["workspace_name"] = name
        answer = self.call("POST", "/api/auth/register", body)
        assert answer.status == 201, answer.body
        return answer.json()

    def login(self, email: str, password: str = PASSWORD) -> Answer:
        """Log in; the answer carries the token and the cookies."""
        return self.call("POST", "/api/auth/login", {"email": email, "password": password})

    def token(self, email: str) -> str:
        """A fresh management token for a registered user."""
        answer = self.login(email)
        assert answer.status == 200, answer.body
        token: str = answer.json()["token"]
        return token


@dataclass
class World:
    """Workspace A with an admin, a developer, a viewer and keys of every role; an outsider
    who administers workspace B."""

    gateway: GatewayProcess
    api: Api
    workspace: str
    other_workspace: str
    tokens: dict[str, str]
    user_ids: dict[str, str]
    emails: dict[str, str]
    key_secrets: dict[str, str]
    secrets: list[str] = field(default_factory=list)

    def key(self, role: str = "member", **extra: Any) -> Any:
        """A new key in workspace A made by its admin; returns the creation body."""
        body = {"name": f"k-{next(_counter)}", "role": role, **extra}
        answer = self.api.call(
            "POST", f"/api/workspaces/{self.workspace}/keys", body, self.tokens["admin"]
        )
        assert answer.status == 201, answer.body
        created = answer.json()
        self.secrets.append(created["secret"])
        return created


def start_gateway(
    workdir: Path,
    providers: list[dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
) -> GatewayProcess:
    """A gateway with open registration, its own database and (by default) no providers."""
    process = GatewayProcess(
        workdir,
        {"providers": providers or []},
        env={
            "ORCAROUTER_ADMIN_KEY": ADMIN_KEY,
            "ORCAROUTER_OPEN_REGISTRATION": "true",
            **(env or {}),
        },
    )
    process.start()
    return process


def build_world(gateway: GatewayProcess) -> World:
    """Register the users, put them in workspace A with their roles, make keys of every role."""
    api = Api(gateway.base_url)
    emails = {role: unique_email(role) for role in ("admin", "developer", "viewer", "outsider")}
    made = {role: api.register(email, name=f"ws of {role}") for role, email in emails.items()}
    workspace = made["admin"]["workspace"]["id"]
    tokens = {role: api.token(email) for role, email in emails.items()}
    for role in ("developer", "viewer"):
        added = api.call(
            "POST",
            f"/api/workspaces/{workspace}/members",
            {"email": emails[role], "role": role},
            tokens["admin"],
        )
        assert added.status == 201, added.body
    world = World(
        gateway=gateway,
        api=api,
        workspace=workspace,
        other_workspace=made["outsider"]["workspace"]["id"],
        tokens=tokens,
        user_ids={role: body["user"]["id"] for role, body in made.items()},
        emails=emails,
        key_secrets={},
    )
    for role in ("member", "viewer", "developer", "admin"):
        world.key_secrets[role] = world.key(role)["secret"]
    world.secrets.extend(tokens.values())
    return world


def login_with_cookies(base_url: str, email: str) -> tuple[Any, list[str]]:
    """Log in and return the body and every ``Set-Cookie`` line (``Answer`` keeps only one)."""
    req = urllib.request.Request(  # noqa: S310 - a local test URL
        base_url + "/api/auth/login",
        data=orjson.dumps({"email": email, "password": PASSWORD}),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as answer:  # noqa: S310
        return orjson.loads(answer.read()), answer.headers.get_all("set-cookie") or []
