"""The management REST API under ``/api/``: users, workspaces, members, keys, provider
credentials, audit log.

FastAPI, because its OpenAPI document is generated from the typed handlers and it runs off
the hot path (the inference routes stay raw ASGI). ``build_management_app`` is the one entry.

While the database is unreachable every call that needs it (reads too, and authentication by
management token or session) answers 503 ``unavailable`` with ``Retry-After``, never a 500.
Each write is committed in a transaction of its own, so a failed one leaves nothing behind.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException

from orcarouter.accounts.audit import AuditTrail
from orcarouter.accounts.credentials import CredentialAdmin, keyring_from
from orcarouter.accounts.key_admin import KeyAdmin
from orcarouter.accounts.keys import KeyCache
from orcarouter.accounts.passwords import Passwords
from orcarouter.accounts.sessions import Sessions
from orcarouter.accounts.users import Accounts
from orcarouter.api.management import (
    analytics_routes,
    audit_routes,
    auth_routes,
    credential_routes,
    health_routes,
    key_routes,
    router_routes,
    wallet_routes,
    workspace_routes,
)
from orcarouter.api.management.body_limit import ASGIApp, BodyLimit
from orcarouter.api.management.context import SESSION_COOKIE, ApiError, ManagementContext
from orcarouter.api.management.schemas import ErrorResponse
from orcarouter.errors import openai_type_for
from orcarouter.metering.wallet import BudgetBook
from orcarouter.routing.health import HealthBook, RetryBudget
from orcarouter.routing.table import RouterTable
from orcarouter.settings import Settings
from orcarouter.store.accounts import SessionRepository, UserRepository, WorkspaceMembers
from orcarouter.store.analytics import UsageAnalytics
from orcarouter.store.audit import AuditRepository
from orcarouter.store.credentials import CredentialRepository
from orcarouter.store.repositories import KeyRepository
from orcarouter.store.routers import RouterRepository
from orcarouter.store.wallets import WalletRepository
from orcarouter.store.workspace_keys import WorkspaceKeys

__all__ = ["build_management_app"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
RETRY_AFTER_SECONDS = 5  # sent with every 503: the key cache retries the database every second
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 503)
}

# What a lost or refused database connection raises on its way out of a repository: SQLAlchemy
# wraps most driver errors, but a failed connect through asyncpg surfaces as the bare OSError
# (refused, reset, timed out) or asyncpg error. Builtin TimeoutError is an OSError.
_DRIVER_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    psycopg.OperationalError,
)
_UNAVAILABLE: tuple[type[Exception], ...] = (
    *_DRIVER_UNAVAILABLE,
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,  # no free connection in the pool in time
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached now (rather than a bug or a
    refused statement): a connection error, a timeout, an invalidated connection."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True  # psycopg's and SQLite's connection, lock and timeout errors
        # SQLAlchemy's asyncpg adapter raises its own error from the driver's
        orig = exc.orig
        return orig is not None and isinstance(orig.__cause__ or orig, _DRIVER_UNAVAILABLE)
    return isinstance(exc, _UNAVAILABLE)


def _summary(exc: BaseException) -> str:
    """The driver's first line of the error: never SQLAlchemy's statement and parameters."""
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    lines = str(cause).splitlines()
    return f"{type(cause).__name__}: {lines[0][:200] if lines else ''}"


def _error(status: int, code: str, message: str) -> JSONResponse:
    body = {"error": {"message": message, "type": openai_type_for(status), "code": code}}
    headers = {"retry-after": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _error(exc.status, exc.code, exc.message)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """503 ``unavailable`` when the database cannot be reached; anything else stays a 500
    (re-raised to the server, which logs it and answers without details)."""
    if not database_unavailable(exc):
        raise exc
    log.warning(
        "management %s %s: database unavailable (%s)",
        request.method,
        request.url.path,
        _summary(exc),
    )
    return _error(503, "unavailable", "the database is unreachable right now; retry shortly")


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "route_not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error(exc.status_code, code, str(exc.detail))


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    # Name the field and the rule, never echo the value: it may be a password.
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return _error(400, "invalid_request", "; ".join(problems) or "invalid request")


def build_management_app(
    engine: AsyncEngine,
    key_cache: KeyCache,
    settings: Settings,
    *,
    routers: RouterTable | None = None,
    health: HealthBook | None = None,
    retry_budget: RetryBudget | None = None,
    wallets: WalletRepository | None = None,
    budgets: BudgetBook | None = None,
) -> ASGIApp:
    """The management API as one ASGI app serving every ``/api/…`` path it declares.

    ``routers`` is the gateway's in-memory router table, refreshed after every router write;
    ``budgets`` its budget book, credited with every top-up this process commits.
    """
    app = FastAPI(
        title="OrcaRouter management API",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses=_ERRORS,
    )
    app.state.context = ManagementContext(
        settings=settings,
        key_cache=key_cache,
        accounts=Accounts(UserRepository(engine), Passwords()),
        users=UserRepository(engine),
        members=WorkspaceMembers(engine),
        sessions=Sessions(SessionRepository(engine)),
        keys=KeyAdmin(KeyRepository(engine), WorkspaceKeys(engine)),
        audit=AuditTrail(AuditRepository(engine)),
    )
    app.state.routers = router_routes.RouterAdmin(RouterRepository(engine), routers)
    app.state.health = health
    app.state.retry_budget = retry_budget
    app.state.wallets = wallets or WalletRepository(engine)
    app.state.budgets = budgets
    app.state.analytics = UsageAnalytics(engine)
    app.state.credentials = CredentialAdmin(
        CredentialRepository(engine), keyring_from(settings), (p.id for p in settings.providers)
    )
    modules = (
        auth_routes,
        workspace_routes,
        key_routes,
        router_routes,
        audit_routes,
        analytics_routes,
        health_routes,
        wallet_routes,
        credential_routes,
    )
    for module in modules:
        app.include_router(module.router)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    for kind in _UNAVAILABLE:
        app.add_exception_handler(kind, _database_error)
    app.openapi = lambda: _openapi_with_security(app)  # type: ignore[method-assign]
    return BodyLimit(app, MAX_BODY_BYTES)


def _openapi_with_security(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "an API key (sk-orca-…) or a management token (sk-mgmt-…)",
            },
            "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
        }
        schema["security"] = [{"bearer": []}, {"session": []}]
        app.openapi_schema = schema
    return app.openapi_schema
