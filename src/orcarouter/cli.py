"""The command line: ``serve``, ``migrate``, ``keys create|list|revoke``,
``routers list|create|update|delete``, ``wallet topup|show``, ``credentials new-key|list|rotate``
and ``catalog refresh``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from orcarouter import NATIVE
from orcarouter.accounts.bootstrap import bootstrap
from orcarouter.accounts.credentials import (
    CredentialError,
    Keyring,
    keyring_from,
    new_secret_key,
    rotate,
)
from orcarouter.accounts.keys import DEFAULT_WORKSPACE, issue_key
from orcarouter.api.listeners import BALANCED, OwnListener
from orcarouter.api.server import ServerProtocol
from orcarouter.app import Gateway
from orcarouter.catalog import CatalogError, refresh_catalog
from orcarouter.metering.pricing import parse_usd, usd
from orcarouter.observability.logging import configure_logging
from orcarouter.routing.routers import DEFAULT_STRATEGY, STRATEGIES, RouterError, check_fields
from orcarouter.settings import (
    PREVIOUS_SECRET_KEY_ENV,
    SECRET_KEY_ENV,
    ConfigError,
    Settings,
    decode_secret_key,
    load_settings,
    read_secret_keys,
)
from orcarouter.store.credentials import CredentialConflict, CredentialRepository
from orcarouter.store.database import create_engine_for, migrate
from orcarouter.store.repositories import KeyRepository, WorkspaceRepository
from orcarouter.store.routers import RouterExists, RouterRepository, RouterRow, new_router_id
from orcarouter.store.wallets import WalletRepository

log = logging.getLogger("orcarouter")

NEW_SECRET_KEY_ENV = "ORCAROUTER_SECRET_KEY_NEW"  # noqa: S105 - a variable's name
WORKERS_ENV = "ORCAROUTER_WORKERS"
CONFIG_ENV = "ORCAROUTER_CONFIG"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(prog="orcarouter", description="OrcaRouter LLM gateway")
    parser.add_argument("--config", help="YAML config file (or ORCAROUTER_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="migrate the database and start the gateway")
    serve.add_argument("--host", help="listen address (or ORCAROUTER_HOST)")
    serve.add_argument("--port", type=int, help="listen port (or ORCAROUTER_PORT)")
    serve.add_argument(
        "--workers",
        type=int,
        help=(
            f"worker processes (or {WORKERS_ENV}; default 1). Without ORCAROUTER_REDIS_URL, "
            "rate limits, budget holds and provider health are per process; with it they are "
            "shared"
        ),
    )
    commands.add_parser("migrate", help="apply database migrations")
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key and print its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--workspace", default=DEFAULT_WORKSPACE)
    keys.add_parser("list", help="list keys (never their secrets)")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    _add_router_commands(commands)
    _add_credential_commands(commands)
    wallet = commands.add_parser("wallet", help="a workspace's wallet").add_subparsers(
        dest="wallet_command", required=True
    )
    topup = wallet.add_parser("topup", help="add money (a negative amount takes it back)")
    topup.add_argument("--workspace", default=DEFAULT_WORKSPACE)
    topup.add_argument("--usd", required=True, help="decimal US dollars, e.g. 25 or 0.50")
    topup.add_argument("--note")
    show = wallet.add_parser("show", help="the balance and the newest ledger entries")
    show.add_argument("--workspace", default=DEFAULT_WORKSPACE)
    catalog = commands.add_parser("catalog", help="the model catalog").add_subparsers(
        dest="catalog_command", required=True
    )
    refresh = catalog.add_parser("refresh", help="rebuild the shipped catalog from models.dev")
    refresh.add_argument("--from", dest="source", required=True, help="models.dev JSON file")
    refresh.add_argument("--to", dest="dest", help="catalog file to update (default: shipped)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"orcarouter: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.secrets())
    try:
        return _run(settings, args)
    except ConfigError as exc:  # found late: a database URL no driver can serve, say
        print(f"orcarouter: configuration error: {exc}", file=sys.stderr)
        return 2


def _run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "serve":
        workers = _workers(args.workers)
        if workers > 1 and args.config:  # the workers read their settings from the environment
            os.environ[CONFIG_ENV] = args.config
        return _serve(settings, args.host, args.port, workers)
    if args.command == "migrate":
        migrate(settings.database_url)
        print("database is up to date")
        return 0
    if args.command == "keys":
        migrate(settings.database_url)
        return asyncio.run(_keys(settings, args))
    if args.command == "routers":
        migrate(settings.database_url)
        return asyncio.run(_routers(settings, args))
    if args.command == "wallet":
        migrate(settings.database_url)
        return asyncio.run(_wallet(settings, args))
    if args.command == "credentials":
        if args.credentials_command == "new-key":
            print(new_secret_key())
            return 0
        migrate(settings.database_url)
        return asyncio.run(_credentials(settings, args))
    if args.command == "catalog":
        written = refresh_catalog(Path(args.source), Path(args.dest) if args.dest else None)
        print(f"catalog written to {written}")
        return 0
    return 2


def _workers(given: int | None) -> int:
    """``--workers``, else ``ORCAROUTER_WORKERS``, else 1."""
    if given is None:
        raw = os.environ.get(WORKERS_ENV, "").strip()
        if not raw:
            return 1
        if not raw.isdigit():
            raise ConfigError(f"{WORKERS_ENV} must be a whole number, not {raw!r}")
        given = int(raw)
    if given < 1:
        raise ConfigError("the number of workers must be at least 1")
    return given


def _serve(settings: Settings, host: str | None, port: int | None, workers: int = 1) -> int:
    """Migrate and bootstrap once, here; then serve in this process or in ``workers``."""
    try:
        gateway = Gateway(settings)
    except CatalogError as exc:
        print(f"orcarouter: configuration error: models: {exc}", file=sys.stderr)
        return 2
    migrate(settings.database_url)
    log.info("request path: %s", NATIVE.describe())
    if settings.providers:
        log.info("providers enabled: %s", ", ".join(p.id for p in settings.providers))
    else:
        log.warning(
            "no provider is enabled: set a provider key such as OPENAI_API_KEY or "
            "ANTHROPIC_API_KEY, or declare providers in a config file (see README)"
        )
    secret = asyncio.run(_bootstrap(settings))
    if secret is not None:
        print(
            "\nOrcaRouter generated an admin key. It is shown only this once; store it now:\n\n"
            f"    {secret}\n",
            flush=True,
        )
    listen: dict[str, Any] = {"host": host or settings.host, "port": port or settings.port}
    if workers > 1:
        del gateway  # each worker builds its own (orcarouter.app:create_app)
        return _serve_workers(workers, listen)
    config = uvicorn.Config(gateway, **listen, **_UVICORN)
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


_FACTORY = "orcarouter.app:create_app"
_UVICORN: dict[str, Any] = {
    "loop": "uvloop",
    "http": ServerProtocol,  # uvicorn runs the sockets, workers and lifespan; this, each connection
    "proxy_headers": False,  # the peer is the client: no X-Forwarded-For is trusted
    "lifespan": "on",
    "access_log": False,
    "log_config": None,
    "server_header": False,
}


def _serve_workers(workers: int, listen: dict[str, Any]) -> int:
    """Several worker processes on one port, each running ``create_app()`` (on Linux each with
    a listening socket of its own, so that connections spread over them).

    The parent only supervises (uvicorn restarts a worker that dies); the database is migrated
    and the admin key created before the workers start, so they never race for either.
    """
    config = uvicorn.Config(_FACTORY, factory=True, workers=workers, **listen, **_UVICORN)
    log.info("starting %d worker processes", config.workers)
    own = OwnListener(config.host, config.port) if BALANCED else None
    if own is not None:
        host, port = own.address[:2]
        log.info("listening on %s port %d, each worker on a socket of its own", host, port)
    # A listener pickles into each worker as that worker's own socket (api/listeners.py).
    sockets: list[Any] = [own] if own is not None else [config.bind_socket()]
    supervisor = Multiprocess(config, sockets=sockets)
    try:
        supervisor.run()
    finally:
        if own is not None:
            own.close()
    failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
    return 1 if failed else 0


async def _bootstrap(settings: Settings) -> str | None:
    engine = create_engine_for(settings.database_url)
    try:
        return await bootstrap(
            WorkspaceRepository(engine),
            KeyRepository(engine),
            settings.admin_key,
            RouterRepository(engine),
        )
    finally:
        await engine.dispose()


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine_for(settings.database_url)
    try:
        repo = KeyRepository(engine)
        if args.keys_command == "create":
            await WorkspaceRepository(engine).ensure(args.workspace, args.workspace)
            issued = await issue_key(repo, args.name, workspace_id=args.workspace)
            print(f"id:     {issued.row.id}\nname:   {issued.row.name}\nsecret: {issued.secret}")
            print("The secret is shown only this once.", file=sys.stderr)
            return 0
        if args.keys_command == "list":
            for row in await repo.list():
                used = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "-"
                print(
                    f"{row.id}  {row.status:8}  {row.role:7}  {row.display_prefix:14}  "
                    f"last used {used:25}  {row.name}"
                )
            return 0
        if await repo.set_status(args.key_id, "revoked"):
            print(f"revoked {args.key_id}")
            return 0
        print(f"orcarouter: no key with id {args.key_id}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


async def _wallet(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine_for(settings.database_url)
    repo = WalletRepository(engine)
    try:
        if args.wallet_command == "topup":
            try:
                amount = parse_usd(args.usd)
            except ValueError as exc:
                print(f"orcarouter: --usd: {exc}", file=sys.stderr)
                return 2
            await WorkspaceRepository(engine).ensure(args.workspace, args.workspace)
            balance = await repo.top_up(args.workspace, amount, "cli", args.note)
            print(f"balance: ${usd(balance)}")
            return 0
        current = await repo.balance(args.workspace)
        print("no wallet (not metered)" if current is None else f"balance: ${usd(current)}")
        for entry in await repo.ledger(args.workspace, 20):
            when = entry["created_at"].isoformat(timespec="seconds")
            about = entry["request_id"] or entry["note"] or ""
            print(f"{when}  {entry['kind']:10}  {usd(entry['amount_micros']):>14}  {about}")
        return 0
    finally:
        await repo.close()
        await engine.dispose()


def _add_credential_commands(commands: Any) -> None:
    credentials = commands.add_parser(
        "credentials", help="workspaces' own provider keys (BYOK), encrypted at rest"
    )
    verbs = credentials.add_subparsers(dest="credentials_command", required=True)
    verbs.add_parser("new-key", help=f"print a fresh secret key for {SECRET_KEY_ENV}")
    listing = verbs.add_parser("list", help="list stored credentials (hints, never the keys)")
    listing.add_argument("--workspace", help="only this workspace")
    rotation = verbs.add_parser(
        "rotate",
        help="re-encrypt every credential under a new secret key, in one transaction",
        description=(
            f"Re-encrypt every stored credential under the key in --new-key-file (or "
            f"{NEW_SECRET_KEY_ENV}), reading them with {SECRET_KEY_ENV} and "
            f"{PREVIOUS_SECRET_KEY_ENV}; then switch {SECRET_KEY_ENV} to the new key. Without "
            f"a new key, re-encrypt rows still under a previous key with {SECRET_KEY_ENV}."
        ),
    )
    rotation.add_argument("--new-key-file", help="a file holding the new secret key")


def _new_secret_key(settings: Settings, args: argparse.Namespace) -> str | None:
    if args.new_key_file:
        env = {NEW_SECRET_KEY_ENV + "_FILE": args.new_key_file}
    else:
        env = {k: v for k, v in os.environ.items() if k.startswith(NEW_SECRET_KEY_ENV)}
    keys = read_secret_keys(env, NEW_SECRET_KEY_ENV)
    if len(keys) > 1:
        raise ConfigError(f"{NEW_SECRET_KEY_ENV} holds one key")
    return keys[0] if keys else settings.secret_key


async def _credentials(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine_for(settings.database_url)
    repo = CredentialRepository(engine)
    readable = keyring_from(settings)
    try:
        if args.credentials_command == "list":
            for row in await repo.all():
                if args.workspace and row.workspace_id != args.workspace:
                    continue
                state = "unreadable"
                if readable is not None and readable.can_open(row.key_version):
                    state = "current" if row.key_version == readable.current_id else "previous"
                when = row.updated_at.isoformat(timespec="seconds")
                print(
                    f"{row.workspace_id}  {row.provider_id:20}  {row.hint:14}  "
                    f"key {row.key_version} ({state})  updated {when}"
                )
            return 0
        target_text = _new_secret_key(settings, args)
        if target_text is None:
            print(
                f"orcarouter: give --new-key-file PATH (or {NEW_SECRET_KEY_ENV}); "
                "make a key with 'orcarouter credentials new-key'",
                file=sys.stderr,
            )
            return 2
        target = Keyring(decode_secret_key(target_text))
        try:
            done = await rotate(repo, readable, target)
        except CredentialError as exc:
            print(f"orcarouter: nothing was changed: {exc}", file=sys.stderr)
            return 1
        except CredentialConflict:
            print(
                "orcarouter: a credential changed meanwhile; nothing was changed, run it again",
                file=sys.stderr,
            )
            return 1
        print(
            f"re-encrypted {done.changed} of {done.total} credentials under key {done.key_version}"
        )
        if target_text != settings.secret_key:
            print(
                f"Now set {SECRET_KEY_ENV} to the new key (and {PREVIOUS_SECRET_KEY_ENV} to the "
                "old one until every gateway has restarted), then restart the gateways.",
                file=sys.stderr,
            )
        return 0
    finally:
        await engine.dispose()


def _add_router_commands(commands: Any) -> None:
    routers = commands.add_parser("routers", help="named routers (orcarouter/{name})")
    verbs = routers.add_subparsers(dest="routers_command", required=True)
    listing = verbs.add_parser("list", help="list a workspace's routers")
    listing.add_argument("--workspace", default=DEFAULT_WORKSPACE)
    for verb in ("create", "update"):
        command = verbs.add_parser(verb, help=f"{verb} a router")
        command.add_argument("name")
        command.add_argument("--workspace", default=DEFAULT_WORKSPACE)
        command.add_argument("--strategy", choices=STRATEGIES)
        command.add_argument("--models", help="comma-separated allowed-model globs ('' = all)")
        command.add_argument("--default-model", help="the safety-net model ('' = none)")
        command.add_argument("--quality-bar", type=int)
        command.add_argument("--priority", help="comma-separated model ids or globs, in order")
        command.add_argument("--enabled", choices=("true", "false"))
        if verb == "update":
            command.add_argument("--rename", help="a new name")
    delete = verbs.add_parser("delete", help="delete a router")
    delete.add_argument("name")
    delete.add_argument("--workspace", default=DEFAULT_WORKSPACE)


def _router_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, value in (("strategy", args.strategy), ("quality_bar", args.quality_bar)):
        if value is not None:
            changes[name] = value
    for name, value in (("allowed_models", args.models), ("priority", args.priority)):
        if value is not None:
            changes[name] = [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]
    if args.default_model is not None:
        changes["default_model"] = args.default_model or None
    if args.enabled is not None:
        changes["enabled"] = args.enabled == "true"
    if getattr(args, "rename", None):
        changes["name"] = args.rename
    return changes


async def _routers(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine_for(settings.database_url)
    repo = RouterRepository(engine)
    try:
        if args.routers_command == "list":
            for row in await repo.list(args.workspace):
                state = "enabled" if row.enabled else "disabled"
                models = ",".join(row.allowed_models) or "*"
                print(f"orcarouter/{row.name}  {row.strategy:9}  {state:8}  models={models}")
            return 0
        if args.routers_command == "delete":
            if await repo.delete(args.workspace, args.name):
                print(f"deleted orcarouter/{args.name}")
                return 0
            print(f"orcarouter: no router named {args.name}", file=sys.stderr)
            return 1
        changes = _router_changes(args)
        if args.routers_command == "create":
            changes = {"name": args.name, "strategy": DEFAULT_STRATEGY, **changes}
        check_fields(changes)
        if args.routers_command == "create":
            await repo.create(RouterRow(id=new_router_id(), workspace_id=args.workspace, **changes))
        elif await repo.update(args.workspace, args.name, changes) is None:
            print(f"orcarouter: no router named {args.name}", file=sys.stderr)
            return 1
        print(f"saved orcarouter/{changes.get('name', args.name)}")
        return 0
    except (RouterError, RouterExists) as exc:
        message = f"a router named {exc} exists" if isinstance(exc, RouterExists) else str(exc)
        print(f"orcarouter: {message}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
