#!/usr/bin/env python3
"""Lists at scale (issue #17): the iTwins lists of one user who is a member of N iTwins, at N = 10k, 100k
and 1M, on SQLite and PostgreSQL, through a real ``twinbase serve`` with the read cache off.

The database is seeded directly (one user, N iTwins with distinct numbers and names, one membership
each; made through the API this would take hours at 1M), then each request is sent 30 times after a
warm-up and its p50 and p99 printed:

- ``page``: ``GET /itwins/?$top=100`` (the first page, newest first);
- ``next``: the page ``_links.next`` leads to from the page before the last (the continuation the clients
  follow);
- ``skip-end``: ``$skip`` to the last page;
- ``number``: ``$filter=number eq '<one>'``;
- ``name``: ``$filter=displayName eq '<one>'``;
- ``search``: ``$search=<a name's middle>``;
- ``order-name``: ``$orderby=displayName`` first page;
- ``order-name-next``: the page ``_links.next`` leads to from the page before the last, in that order;
- ``favorites``: ``GET /itwins/favorites?$top=100`` (every iTwin is also a favorite);
- ``favorites-next``: the favorites page ``_links.next`` leads to from the page before the last.

    PYTHONPATH=src .venv/bin/python bench/lists.py [--sizes 10000,100000,1000000] [--backends sqlite,postgres]

Target: p99 under 20 ms for every request at every size. The peer figure is the same request at the
smallest size: the work should not grow with N.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

REPEATS = 30
USER = "bench-user"
BATCH = 20_000


def _name(i: int) -> str:
    return f"Project {i:07d} {hashlib.blake2b(str(i).encode(), digest_size=4).hexdigest()}"


def seed(url: str, n: int) -> list[dict[str, str]]:
    """``n`` iTwins the user is a member of and has as favorites; answers a few of them (numbers and
    names) to look up."""
    from sqlalchemy import create_engine, insert

    from twinbase.store.db import upgrade
    from twinbase.store.models import Favorite, ITwin, Member, User

    upgrade(url)
    engine = create_engine(url)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    picks: list[dict[str, str]] = []
    with engine.begin() as conn:
        conn.execute(insert(User), [{"id": USER, "display_name": "Bench User", "email": "bench@example.com"}])
        for start in range(0, n, BATCH):
            rows = []
            members = []
            favorites = []
            for i in range(start, min(n, start + BATCH)):
                iid = str(uuid.UUID(int=i + 1))
                stamp = base + timedelta(seconds=i)
                rows.append(
                    {
                        "id": iid,
                        "class": "Endeavor",
                        "sub_class": "Project",
                        "number": f"N-{i:07d}",
                        "display_name": _name(i),
                        "status": "Active",
                        "data_center_location": "East US",
                        "created_at": stamp,
                        "created_by": USER,
                        "modified_at": stamp,
                        "modified_by": USER,
                    }
                )
                members.append(
                    {
                        "itwin_id": iid,
                        "user_id": USER,
                        "is_owner": True,
                        "created_at": stamp,
                        "itwin_created_at": stamp,
                    }
                )
                favorites.append({"user_id": USER, "itwin_id": iid, "created_at": stamp})
            conn.execute(insert(ITwin), rows)
            conn.execute(insert(Member), members)
            conn.execute(insert(Favorite), favorites)
        for i in (0, n // 2, n - 1):
            picks.append({"number": f"N-{i:07d}", "name": _name(i)})
    if engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk insert: without it the planner knows nothing of the new
        # trigram indexes' size and scans the table for a $search.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return picks


def _timed(client: httpx.Client, path: str, params: dict[str, str] | None = None) -> tuple[float, Any]:
    started = time.perf_counter()
    resp = client.get(path, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    if resp.status_code != 200:
        raise SystemExit(f"{path} {params}: {resp.status_code} {resp.text[:300]}")
    return elapsed, resp.json()


def measure(base: str, token: str, n: int, picks: list[dict[str, str]]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    last_skip = max(0, (n - 1) // 100 * 100)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:

        def next_of(path: str, params: dict[str, str]) -> str:
            """The ``next`` link of the page before the last (reached by ``$skip``), as a path."""
            page = {"$top": "100", "$skip": str(max(0, last_skip - 100)), **params}
            href = str(_timed(client, path, page)[1]["_links"].get("next", {}).get("href", ""))
            return href.replace(base, "") if href else path

        cases: dict[str, tuple[str, dict[str, str] | None]] = {
            "page": ("/itwins/", {"$top": "100"}),
            "next": (next_of("/itwins/", {}), None),
            "skip-end": ("/itwins/", {"$top": "100", "$skip": str(last_skip)}),
            "number": ("/itwins/", {"$filter": f"number eq '{picks[1]['number']}'"}),
            "name": ("/itwins/", {"$filter": f"displayName eq '{picks[1]['name']}'"}),
            "search": ("/itwins/", {"$search": picks[1]["name"][-6:]}),
            "order-name": ("/itwins/", {"$top": "100", "$orderby": "displayName"}),
            "order-name-next": (next_of("/itwins/", {"$orderby": "displayName"}), None),
            "favorites": ("/itwins/favorites", {"$top": "100"}),
            "favorites-next": (next_of("/itwins/favorites", {}), None),
        }
        for name, (path, params) in cases.items():
            for _ in range(3):
                _timed(client, path, params)
            times = sorted(_timed(client, path, params)[0] for _ in range(REPEATS))
            out[name] = (statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))])
    return out


def run(backend: str, n: int, tmp: Path) -> dict[str, tuple[float, float]]:
    from conftest import create_pg_database, drop_pg_database, pg_url, start_server

    pg = create_pg_database() if backend == "postgres" else None
    data = tmp / f"{backend}-{n}" / "data"
    data.parent.mkdir(parents=True)
    url = pg_url(pg) if pg else f"sqlite:///{data / 'twinbase.db'}"
    data.mkdir()
    try:
        started = time.perf_counter()
        picks = seed(url, n)
        print(f"  {backend} {n:>9,}: seeded in {time.perf_counter() - started:.1f} s", flush=True)
        server = start_server(
            data,
            url,
            backend,
            TWINBASE_READ_CACHE_SECONDS="0",
            TWINBASE_RATE_LIMIT_PER_MINUTE="0",
            TWINBASE_JOB_WORKERS="0",
        )
        try:
            return measure(server.base_url, server.token(USER), n, picks)
        finally:
            server.stop()
    finally:
        if pg:
            drop_pg_database(pg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, int], dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="twinbase-bench-lists-") as tmp:
        for backend in args.backends.split(","):
            for n in sizes:
                results[(backend, n)] = run(backend, n, Path(tmp))
    cases = list(next(iter(results.values())))
    print(f"{'backend':9s} {'iTwins':>10s} " + " ".join(f"{c:>17s}" for c in cases))
    worst = 0.0
    for (backend, n), figures in results.items():
        cells = []
        for c in cases:
            p50, p99 = figures[c]
            worst = max(worst, p99)
            cells.append(f"{p50:7.1f} /{p99:7.1f}")
        print(f"{backend:9s} {n:>10,} " + " ".join(f"{cell:>17s}" for cell in cells))
    print(f"(p50 / p99 ms; read cache off) worst p99 {worst:.1f} ms (target < 20 ms)")
    return 0 if worst < 20 else 1


if __name__ == "__main__":
    os.environ.setdefault("TWINBASE_TEST_DB", "both")
    raise SystemExit(main())
