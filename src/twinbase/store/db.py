"""The metadata database: engine, sessions and migrations.

Callers own the transaction: ``with db.write() as session: ...`` commits once at the end (or rolls
back on any exception), so nothing half-written stays behind. Domain functions never commit.

On SQLite every write transaction starts with ``BEGIN IMMEDIATE``: writers queue on the database
lock up front (busy timeout) instead of failing half-way when a read lock cannot be upgraded.
Read sessions run each statement on its own snapshot (no explicit transaction).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from twinbase.errors import ServiceUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=16,
            max_overflow=16,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Writers take the write lock up front. Readers open no transaction at all: in WAL mode
            # each SELECT reads a consistent snapshot on its own, and a BEGIN/ROLLBACK pair per
            # request costs more than the query it wraps.
            if conn.get_execution_options().get("twinbase_write", False):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        # Bumped after every committed write in this process; read caches compare against it.
        self.generation = 0
        self._generation_lock = threading.Lock()
        # Called after each committed write that invalidates reads (the shared cache generation).
        self.after_write: list[Callable[[], None]] = []
        self._read = sessionmaker(bind=self.engine, expire_on_commit=False, autoflush=False)
        self._write = sessionmaker(
            bind=self.engine.execution_options(twinbase_write=True), expire_on_commit=False, autoflush=True
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            try:
                yield session
            except OperationalError as exc:
                raise ServiceUnavailable() from exc
            finally:
                session.rollback()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A plain Core connection for hot read paths: a fraction of an ORM session's cost per request."""
        with self.engine.connect() as conn:
            try:
                yield conn
            except OperationalError as exc:
                raise ServiceUnavailable() from exc

    @contextmanager
    def write(self, *, invalidates_reads: bool = True) -> Iterator[Session]:
        """A write transaction, committed at the end. ``invalidates_reads=False`` is for bookkeeping
        (job claims, heartbeats) that no API answer depends on, so read caches survive it."""
        with self._write() as session:
            try:
                yield session
                session.commit()
                if invalidates_reads:
                    with self._generation_lock:
                        self.generation += 1
                    for hook in self.after_write:
                        hook()
            except OperationalError as exc:
                session.rollback()
                raise ServiceUnavailable() from exc
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def upgrade(url: str) -> None:
    """Apply every Alembic migration to ``url``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()
