"""The ``twinbase`` command: serve, worker, token, db upgrade, app register, user add."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from twinbase.settings import Settings, load_settings

cli = typer.Typer(help="twinbase: a self-hosted iTwin Platform.", no_args_is_help=True, add_completion=False)
db_cli = typer.Typer(help="Metadata database commands.", no_args_is_help=True)
app_cli = typer.Typer(help="Service applications (client_credentials grant).", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(app_cli, name="app")
err = Console(stderr=True)

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Data folder (default ./twinbase-data).")]  # noqa: UP045


def _check_keys(settings: Settings) -> None:
    """The signing keys the server will use, made now when twinbase owns them: a missing or bad shared key
    file stops ``serve`` with one line instead of a traceback from every worker."""
    from twinbase.identity.tokens import SigningKey, SigningKeyMissing
    from twinbase.store.blobs import SigningKeyError, UrlSigner

    try:
        if settings.auth_mode == "builtin":
            if settings.signing_key_file is not None:
                SigningKey.load(settings.token_key_path)
            else:
                SigningKey.load_or_create(settings.token_key_path)
        UrlSigner.from_file(settings.url_key_path, create=settings.url_signing_key_file is None)
    except (SigningKeyMissing, SigningKeyError) as exc:
        err.print(f"serve: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None


def _check_tls(settings: Settings) -> None:
    """A certificate and key that do not load stop ``serve`` with one line (uvicorn would print a
    traceback per worker)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            settings.tls_cert_file, settings.tls_key_file
        )
    except (OSError, ssl.SSLError) as exc:
        err.print(
            f"serve: the TLS certificate {settings.tls_cert_file} and key {settings.tls_key_file} "
            f"cannot be used: {exc}",
            soft_wrap=True,
        )
        raise typer.Exit(2) from None


def _check_redis(settings: Settings) -> None:
    """A configured Redis that cannot be reached stops ``serve`` (the processes would each keep their
    own limits and cache, which is what Redis was configured to prevent)."""
    if not settings.redis_url:
        return
    import redis

    from twinbase.store.shared import SharedState

    shared = SharedState(settings.redis_url, settings.redis_prefix)
    try:
        shared.ping()
    except redis.RedisError as exc:
        err.print(f"serve: Redis at {settings.redis_url} cannot be reached: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    finally:
        shared.close()


@cli.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,  # noqa: UP045
    port: Annotated[Optional[int], typer.Option(help="Port (default 8080).")] = None,  # noqa: UP045
    data_dir: DataDir = None,
    workers: Annotated[Optional[int], typer.Option(help="uvicorn worker processes.")] = None,  # noqa: UP045
) -> None:
    """Run the server with embedded defaults (SQLite and a blob folder under the data dir)."""
    import os

    import uvicorn

    from twinbase.store.db import upgrade

    settings = load_settings(host=host, port=port, data_dir=data_dir, workers=workers)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _check_keys(settings)
    _check_tls(settings)
    _check_redis(settings)
    upgrade(settings.database_url)
    # Workers rebuild the settings from the environment, so pass the resolved values down.
    os.environ["TWINBASE_DATA_DIR"] = str(settings.data_dir)
    os.environ["TWINBASE_DATABASE_URL"] = settings.database_url
    os.environ["TWINBASE_WORKERS"] = str(settings.workers)  # the read cache depends on it
    os.environ["_TWINBASE_MIGRATED"] = "1"  # migrated once above; worker processes skip it
    tls = settings.tls_cert_file is not None
    scheme = "https" if tls else "http"
    err.print(f"[bold]twinbase[/] on {scheme}://{settings.host}:{settings.port}  data: {settings.data_dir}")
    uvicorn.run(
        "twinbase.asgi:app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        ssl_certfile=str(settings.tls_cert_file) if tls else None,
        ssl_keyfile=str(settings.tls_key_file) if tls else None,
    )


@cli.command()
def worker(
    kinds: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--kinds", help="Job kinds to run (repeatable or comma-separated; default: all)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker threads in this process.")] = 2,
    modules: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--import", help="A module with extra job kinds, `register(services)` (repeatable)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run job workers in this process (no HTTP), until SIGTERM or Ctrl-C.

    The first signal stops claiming: running jobs finish, or stop at their next cancellation point and
    go back to the queue. A second signal exits at once (the jobs are then recovered as stalled).
    """
    import os
    import signal
    from types import FrameType

    from twinbase.app import build_services
    from twinbase.jobs.worker import WorkerPool

    settings = load_settings(data_dir=data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    _wait_for_schema(settings.database_url)
    svc = build_services(settings, migrate=False, job_modules=modules or [])
    wanted = [name.strip() for value in kinds or [] for name in value.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(svc.jobs.kinds))
    if unknown:
        known = ", ".join(svc.jobs.kind_names())
        err.print(f"worker: unknown job kind(s) {', '.join(unknown)}; known: {known}")
        raise typer.Exit(2)
    pool = WorkerPool(svc.jobs, concurrency, kinds=wanted or None)
    signals = {"count": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            os._exit(128 + signum)
        err.print("worker: stopping (running jobs finish or go back to the queue; signal again to quit now)")
        pool.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pool.start()
    names = ", ".join(pool.kinds)
    err.print(f"[bold]twinbase worker[/] {svc.jobs.process_id}: {concurrency} thread(s), kinds: {names}")
    while not pool.join(timeout=0.5):
        pass  # short joins: the main thread must stay free to take signals
    svc.db.dispose()


def _wait_for_schema(url: str, timeout: float = 60.0) -> None:
    """Wait until ``twinbase serve`` or ``twinbase db upgrade`` has migrated the database: workers never
    migrate, so several starting at once cannot race each other."""
    import time

    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import SQLAlchemyError

    from twinbase.store.db import MIGRATIONS_DIR, make_engine

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    engine = make_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with engine.connect() as conn:
                    current = MigrationContext.configure(conn).get_current_revision()
            except SQLAlchemyError:
                current = None
            if current == head:
                return
            if time.monotonic() > deadline:
                err.print("worker: database not migrated: run `twinbase db upgrade` or `twinbase serve`")
                raise typer.Exit(2)
            time.sleep(0.5)
    finally:
        engine.dispose()


@cli.command()
def token(
    user: Annotated[str, typer.Option(help="Subject (user id).")],
    email: Annotated[Optional[str], typer.Option(help="Email claim.")] = None,  # noqa: UP045
    name: Annotated[Optional[str], typer.Option(help="Display name claim.")] = None,  # noqa: UP045
    scope: Annotated[Optional[list[str]], typer.Option(help="Scope (repeatable).")] = None,  # noqa: UP045
    expires: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
    data_dir: DataDir = None,
) -> None:
    """Print an access token (the bare JWT) signed by this server's key (the one its data folder or
    keys settings name; nothing is created: a missing key is an error)."""
    from twinbase.identity.tokens import SigningKey, SigningKeyMissing, TokenIssuer

    settings = load_settings(data_dir=data_dir)
    if settings.auth_mode != "builtin":
        err.print("token: only the builtin issuer can mint tokens (auth_mode=builtin)")
        raise typer.Exit(2)
    try:
        key = SigningKey.load(settings.token_key_path)
    except SigningKeyMissing as exc:
        err.print(
            f"token: {exc} The server makes its key on its first start (`twinbase serve`, data folder "
            f"{settings.data_dir}): run this with the server's --data-dir (or TWINBASE_DATA_DIR, "
            "TWINBASE_KEYS_DIR, TWINBASE_SIGNING_KEY_FILE).",
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
    err.print(
        f"token: signed with key {key.kid} ({settings.token_key_path}; data: {settings.data_dir})",
        soft_wrap=True,
    )
    issuer = TokenIssuer(settings, key)
    given, _, family = (name or "").partition(" ")
    typer.echo(
        issuer.issue(
            user,
            name=name,
            email=email,
            given_name=given or None,
            family_name=family or None,
            scopes=scope,
            expires_in=expires,
        )
    )


@db_cli.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply the database migrations."""
    from twinbase.store.db import upgrade

    settings = load_settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    err.print("database is up to date")


@app_cli.command("register")
def app_register(
    name: Annotated[str, typer.Option(help="Display name of the service application.")],
    scope: Annotated[str, typer.Option(help="Space-separated scopes it may ask for.")] = "itwin-platform",
    redirect_uri: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(help="A sign-in redirect URI (repeatable): the app may then sign people in."),
    ] = None,
    public: Annotated[bool, typer.Option(help="A browser app: no secret, PKCE required.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Register an application; prints its client id and secret (shown once)."""
    from twinbase.identity.apps import register
    from twinbase.store.db import Database, upgrade

    settings = load_settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    with db.write() as session:
        client_id, secret = register(session, name, scope, redirect_uris=redirect_uri, public=public)
    db.dispose()
    typer.echo(f"client_id={client_id}")
    if secret:
        typer.echo(f"client_secret={secret}")


user_cli = typer.Typer(help="People who sign in to the builtin issuer.", no_args_is_help=True)
cli.add_typer(user_cli, name="user")


@user_cli.command("add")
def user_add(
    email: Annotated[str, typer.Option(help="Email, the sign-in name.")],
    name: Annotated[str, typer.Option(help='Display name, "Given Family".')] = "",
    password: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Password (asked for when omitted).", hide_input=True),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a person's account (or reset its password); prints the account's subject id."""
    from twinbase.identity.signin import add_account
    from twinbase.store.db import Database, upgrade

    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        err.print("user add: the password needs at least 8 characters")
        raise typer.Exit(2)
    settings = load_settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    given, _, family = name.partition(" ")
    with db.write() as session:
        subject = add_account(session, email, password, given, family)
    db.dispose()
    typer.echo(f"subject={subject}")


def main() -> None:
    cli()
