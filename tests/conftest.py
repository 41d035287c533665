"""Test fixtures: the real server process, on SQLite and on PostgreSQL.

``server`` is a session-scoped running ``twinbase serve`` (uvicorn) on loopback, parametrized over
both metadata backends, so every test that uses it runs twice. PostgreSQL (127.0.0.1:5432, trust
auth) must be running: a missing database fails the run, it never skips.

One backend while developing: ``TWINBASE_TEST_DB=sqlite`` (or ``postgres``) with a direct pytest run.
``make test`` (and so CI, ``.ci/run``) sets ``TWINBASE_TEST_DB=both`` itself, so a value left in a
shell can never narrow the full run; any other value is a usage error, and a narrowed run says so in
its header and again, in red, at the end.

Blob backends: ``blob_server`` adds the dimension (local folder, Azure Blob Storage via Azurite) for
the tests of file links; ``azure_server`` is one server (SQLite) on Azurite for the compat tests.
``azurite`` starts Microsoft's emulator from ``compat/node_modules`` once per session: if it cannot
start, the tests fail (never skip).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.azurite import AZURITE_ACCOUNT, AzuriteError, running_azurite
from support.azurite import connection_string as azurite_connection_string
from twinbase.identity.tokens import SigningKey, TokenIssuer
from twinbase.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TWINBASE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base_url: str
    data_dir: Path
    database_url: str
    process: subprocess.Popen[bytes]
    backend: str
    env: dict[str, str] = field(default_factory=dict)
    blob_backend: str = "local"
    _issuer: TokenIssuer | None = None

    @property
    def issuer(self) -> TokenIssuer:
        if self._issuer is None:
            settings = Settings(
                data_dir=self.data_dir,
                database_url=self.database_url,
                keys_dir=self.env.get("TWINBASE_KEYS_DIR"),
                signing_key_file=self.env.get("TWINBASE_SIGNING_KEY_FILE"),
            )
            self._issuer = TokenIssuer(settings, SigningKey.load(settings.token_key_path))
        return self._issuer

    def token(self, user: str | None = None, **kwargs: Any) -> str:
        """A valid token for ``user`` (a fresh unique user when omitted)."""
        user = user or f"user-{uuid.uuid4().hex[:10]}"
        kwargs.setdefault("email", f"{user}@example.com")
        kwargs.setdefault("name", f"{user.title()} Tester")
        kwargs.setdefault("given_name", user.title())
        kwargs.setdefault("family_name", "Tester")
        return self.issuer.issue(user, **kwargs)

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        h = dict(headers)
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.base_url, headers=h, timeout=30)

    def user(self, name: str | None = None) -> httpx.Client:
        """A client for a brand-new user."""
        return self.client(self.token(name))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def create_pg_database() -> str:
    import psycopg

    name = f"twinbase_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL} and is not reachable: {exc}")
    return name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def start_server(data_dir: Path, database_url: str, backend: str, **env: str) -> Server:
    port = free_port()
    full_env = {
        **os.environ,
        "TWINBASE_DATABASE_URL": database_url,
        "TWINBASE_JOB_WORKERS": "2",
        # A crash in native code (SQLite, apsw) leaves the Python stacks of every thread in the log.
        "PYTHONFAULTHANDLER": "1",
        **env,
    }
    full_env.pop("TWINBASE_CONFIG", None)
    log = open(data_dir.parent / f"server-{port}.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinbase", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=data_dir.parent,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(data_dir.parent / f'server-{port}.log').read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("server did not start in 60 s")
    return Server(base, data_dir, database_url, proc, backend, env, env.get("TWINBASE_BLOB_BACKEND", "local"))


BACKENDS = ("sqlite", "postgres")


def _backends() -> list[str]:
    """The metadata backends this run covers: both, unless a developer asked for one (module docstring)."""
    choice = os.environ.get("TWINBASE_TEST_DB", "both").strip().lower() or "both"
    if choice == "both":
        return list(BACKENDS)
    if choice in BACKENDS:
        return [choice]
    # A typo must not quietly run one backend (anything but "postgres" used to mean SQLite).
    raise pytest.UsageError(f"TWINBASE_TEST_DB={choice!r}: expected both, sqlite or postgres")


def _narrowed() -> str | None:
    """What a one-backend run leaves out, as a warning; None when both run."""
    chosen = _backends()
    if len(chosen) == len(BACKENDS):
        return None
    left_out = ", ".join(b for b in BACKENDS if b not in chosen)
    return f"ONLY {chosen[0]} RUNS (TWINBASE_TEST_DB={chosen[0]}): {left_out} IS NOT TESTED"


def pytest_report_header(config: pytest.Config) -> str:
    return _narrowed() or f"twinbase metadata backends: {', '.join(BACKENDS)}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    warning = _narrowed()
    if warning is not None:
        terminalreporter.write_sep("!", warning, red=True, bold=True)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own (Debian's ``redis-server`` on a free port, no persistence), so a test
    can also stop it; the URL for ``TWINBASE_REDIS_URL``."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is required (Debian's redis-server package; `make test` installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    client.close()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Azurite:
    port: int

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.port)

    def server_env(self) -> dict[str, str]:
        """Settings of a twinbase server on this Azurite, in a container of its own."""
        return {
            "TWINBASE_BLOB_BACKEND": "azure",
            "TWINBASE_AZURE_CONNECTION_STRING": self.connection_string,
            "TWINBASE_AZURE_CONTAINER": f"tb-{uuid.uuid4().hex[:12]}",
            # The blob service serves checkpoint containers itself, under its own account's name.
            "TWINBASE_CHECKPOINT_STORAGE_ACCOUNT": AZURITE_ACCOUNT,
        }


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite for the session (tests/support/azurite.py); each server gets its own container."""
    from test_compat_itwins import _tool, ensure_node_modules

    _tool("node")
    ensure_node_modules()
    try:
        with running_azurite(tmp_path_factory.mktemp("azurite")) as port:
            yield Azurite(port)
    except AzuriteError as exc:
        pytest.fail(str(exc))


class ServerPool:
    """Session servers by (metadata backend, blob backend): started on first use, stopped at the end."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.running: dict[tuple[str, str], running_server] = {}

    def get(self, backend: str, azurite: Azurite | None = None) -> Server:
        blob_backend = "local" if azurite is None else "azure"
        found = self.running.get((backend, blob_backend))
        if found is None:
            env = {} if azurite is None else azurite.server_env()
            # Every test of the session shares one server and one client address: unauthenticated
            # requests (each endpoint's token checks, signed-link fetches) all fill the address's one
            # bucket. The limiter itself is tested on servers of its own (tests/test_http.py).
            env["TWINBASE_RATE_LIMIT_BURST"] = "100000"
            # Likewise the per-user briefcase limit (tests/test_shared_state.py tests it): the quota
            # tests acquire a user's 100 briefcases at once.
            env["TWINBASE_BRIEFCASE_ACQUISITIONS_PER_MINUTE"] = "0"
            # Checkpoints answer their CloudSqlite container (tests/test_checkpoint_containers.py), so
            # every client test reads that part of the answer too.
            env.setdefault("TWINBASE_CHECKPOINT_STORAGE_ACCOUNT", CHECKPOINT_STORAGE_ACCOUNT)
            found = running_server(backend, self.tmp_path_factory, **env)
            found.__enter__()
            self.running[(backend, blob_backend)] = found
        assert found.server is not None
        return found.server

    def close(self) -> None:
        for each in self.running.values():
            each.__exit__(None, None, None)


@pytest.fixture(scope="session")
def server_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    pool = ServerPool(tmp_path_factory)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session", params=_backends())
def server(request: pytest.FixtureRequest, server_pool: ServerPool) -> Server:
    return server_pool.get(request.param)


@pytest.fixture(
    scope="session",
    params=[(db, blob) for db in _backends() for blob in ("local", "azure")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def blob_server(request: pytest.FixtureRequest, server_pool: ServerPool) -> Server:
    """A server per metadata backend and per blob backend (local folder, Azurite)."""
    db, blob = request.param
    return server_pool.get(db, request.getfixturevalue("azurite") if blob == "azure" else None)


@pytest.fixture(scope="session")
def azure_server(server_pool: ServerPool, azurite: Azurite) -> Server:
    """One server on SQLite whose blobs live in Azurite (the compat tests' Azure run)."""
    return server_pool.get("sqlite", azurite)


class running_server:
    """Context manager: a server on a fresh database of ``backend`` ('sqlite' or 'postgres')."""

    def __init__(self, backend: str, tmp_path_factory: pytest.TempPathFactory, **env: str) -> None:
        self.backend = backend
        self.tmp = tmp_path_factory.mktemp(f"srv-{backend}")
        self.env = env
        self.pg_name: str | None = None
        self.server: Server | None = None

    def __enter__(self) -> Server:
        data_dir = self.tmp / "data"
        if self.backend == "postgres":
            self.pg_name = create_pg_database()
            url = pg_url(self.pg_name)
        else:
            url = f"sqlite:///{data_dir / 'twinbase.db'}"
        self.server = start_server(data_dir, url, self.backend, **self.env)
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()
        if self.pg_name is not None:
            drop_pg_database(self.pg_name)


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Every failure has the iTwin error shape and the documented status and code."""
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["code"], str) and isinstance(err["message"], str) and err["message"], err
    assert err["code"] == code, err
    for detail in err.get("details", []):
        assert isinstance(detail["code"], str) and isinstance(detail["message"], str), detail
    assert "Traceback" not in resp.text
    return dict(err)


def new_itwin(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"class": "Endeavor", "subClass": "Project", "displayName": f"Project {uuid.uuid4().hex[:6]}"}
    body.update(fields)
    resp = client.post("/itwins/", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["iTwin"])


SHARED_DATA = ROOT.parent / "shared" / "data"
CHECKPOINT_STORAGE_ACCOUNT = "twinbasetest"
SAMPLE_BIM = SHARED_DATA / "bim" / "imodelnative_test.bim"


def new_imodel(
    client: httpx.Client, itwin_id: str, *, name: str | None = None, path: Path = SAMPLE_BIM, **fields: Any
) -> dict[str, Any]:
    """An initialized iModel made the way iTwin.js makes one: POST with baselineFile, PUT, complete, poll."""
    assert path.exists(), f"test data missing: {path} (see ../shared/data/README.md)"
    size = path.stat().st_size
    body = {
        "iTwinId": itwin_id,
        "name": name or f"iModel {uuid.uuid4().hex[:8]}",
        "baselineFile": {"size": size},
    }
    body.update(fields)
    resp = client.post("/imodels/", json=body)
    assert resp.status_code == 201, resp.text
    created = resp.json()["iModel"]
    upload = created["_links"]["upload"]["href"]
    with open(path, "rb") as fh:
        put = httpx.put(upload, content=fh.read(), headers={"x-ms-blob-type": "BlockBlob"}, timeout=60)
    assert put.status_code == 201, put.text
    done = client.post(created["_links"]["complete"]["href"], json={})
    assert done.status_code == 200, done.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = client.get(f"/imodels/{created['id']}/baselinefile").json()["baselineFile"]["state"]
        if state == "initialized":
            break
        assert state in ("waitingForFile", "initializationScheduled"), state
        time.sleep(0.2)
    else:
        raise AssertionError("baseline did not initialize in 60 s")
    got = client.get(f"/imodels/{created['id']}")
    assert got.status_code == 200
    return dict(got.json()["iModel"])
