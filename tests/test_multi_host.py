"""Several hosts, one deployment (issue #17), driven by the official clients.

One PostgreSQL database, one Azurite, one ``redis-server`` and one keys folder; two ``twinbase serve``
processes ("hosts" A and B, each with its own data folder, ``TWINBASE_JOB_WORKERS=0``: they run no jobs)
and two ``twinbase worker`` processes beside them, all with the same settings. ``compat/multi-host.mjs``
drives the official ``@itwin/itwins-client``, the iModels clients and the real iTwin.js backend through
both hosts alternately (create on one, read, lock, push and pull through the other); then a Mesh Export
started on A is made by a worker, found through B's list, and its Azurite link serves the tileset with
the elements the backend pushed. Last, every job of the run ran on a worker process.

Read caches live 300 s here: only the invalidation shared through Redis can make a host see another
host's write. Node.js, npm, redis-server and PostgreSQL are required: without them the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from conftest import (
    ROOT,
    SAMPLE_BIM,
    Azurite,
    Server,
    create_pg_database,
    drop_pg_database,
    pg_url,
    start_server,
)
from support.node import run_node
from test_compat_imodels import ensure_native_modules
from test_compat_itwins import COMPAT, _tool
from test_mesh_export_e2e import REPRESENTATION, fetch
from twinbase.tiles.check import check_tileset, content_uris
from twinbase.tiles.glb_read import Glb, decode_meshopt, read_property_table

SCRIPT_TIMEOUT = 120
EXPORT_TIMEOUT = 60


@dataclass
class Deployment:
    """Two web hosts and the worker processes of one deployment, and what they share."""

    pg: str
    tmp: Path
    env: dict[str, str]
    hosts: list[Server] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, name: str) -> None:
        """``twinbase worker`` with the hosts' settings and a data folder of its own (another machine)."""
        data = self.tmp / name / "data"
        data.mkdir(parents=True)
        env = {**os.environ, **self.env}
        env.pop("TWINBASE_CONFIG", None)
        env.pop("TWINBASE_JOB_WORKERS", None)
        with open(self.tmp / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "twinbase", "worker", "--concurrency", "1", "--data-dir", str(data)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp / name,
            )
        self.workers.append(proc)

    def check_workers_alive(self) -> None:
        for n, proc in enumerate(self.workers):
            if proc.poll() is not None:
                pytest.fail(f"worker {n} exited {proc.returncode}: {self.log(f'worker-{n}')}")

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def jobs(self) -> list[tuple[str, str, str | None, str | None]]:
        """(kind, status, locked_by, error) of every job in the shared database."""
        with psycopg.connect(pg_url(self.pg).replace("+psycopg", ""), connect_timeout=5) as conn:
            query = "SELECT kind, status, locked_by, error FROM jobs ORDER BY created_at"
            rows = conn.execute(query).fetchall()
        return [(str(k), str(s), w, e) for k, s, w, e in rows]

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for host in self.hosts:
            host.stop()
        drop_pg_database(self.pg)


@pytest.fixture
def deployment(tmp_path: Path, azurite: Azurite, redis_url: str) -> Iterator[Deployment]:
    pg = create_pg_database()  # PostgreSQL only: several hosts over one SQLite file is no deployment
    keys = tmp_path / "keys"
    keys.mkdir()
    env = {
        "TWINBASE_DATABASE_URL": pg_url(pg),
        **azurite.server_env(),  # one container for every process
        "TWINBASE_REDIS_URL": redis_url,
        "TWINBASE_REDIS_PREFIX": uuid.uuid4().hex,
        "TWINBASE_KEYS_DIR": str(keys),
        "TWINBASE_JOB_WORKERS": "0",  # web processes run no jobs: the workers do
        "TWINBASE_READ_CACHE_SECONDS": "300",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "PYTHONFAULTHANDLER": "1",
    }
    made = Deployment(pg, tmp_path, env)
    try:
        for name in ("host-a", "host-b"):  # A migrates the database, B finds it migrated
            (tmp_path / name).mkdir()
            made.hosts.append(start_server(tmp_path / name / "data", pg_url(pg), "postgres", **env))
        for n in range(2):
            made.start_worker(f"worker-{n}")
        yield made
    finally:
        made.close()


def run_driver(a: Server, b: Server, token: str, result: Path) -> dict[str, Any]:
    node = _tool("node")
    ensure_native_modules()
    assert SAMPLE_BIM.exists(), f"test data missing: {SAMPLE_BIM} (see ../shared/data/README.md)"
    env = {
        **os.environ,
        "TWINBASE_URL": a.base_url,
        "TWINBASE_URL_B": b.base_url,
        "TWINBASE_TOKEN": token,
        "TWINBASE_BASELINE": str(SAMPLE_BIM),
        "MULTI_HOST_RESULT": str(result),
    }
    env.pop("COMPAT_KEEP_GOING", None)
    proc = run_node(node, COMPAT / "multi-host.mjs", cwd=COMPAT, env=env, timeout=SCRIPT_TIMEOUT)
    output = f"{proc.stdout}\n{proc.stderr}".strip()
    print(output)
    assert proc.returncode == 0, f"compat/multi-host.mjs exited {proc.returncode}:\n{output}"
    assert "all " in proc.stdout and "steps passed" in proc.stdout, output
    return dict(json.loads(result.read_text()))


def leaf_elements(folder: Path, tileset: dict[str, Any]) -> set[int]:
    """Element ids drawn by the full-detail tiles, read from each GLB's property table."""
    found: set[int] = set()
    for uri in content_uris(tileset, leaves_only=True):
        table = read_property_table(Glb.parse(decode_meshopt((folder / uri).read_bytes())))
        found.update(int(e) for e in table["element"])
    return found


def test_two_hosts_one_deployment_with_the_official_clients(deployment: Deployment, tmp_path: Path) -> None:
    a, b = deployment.hosts
    token = a.token(f"multihost-{uuid.uuid4().hex[:8]}")
    with b.client(token) as on_b:  # the keys are shared: A's token is good on B
        assert on_b.get("/itwins/").status_code == 200
    keys = Path(deployment.env["TWINBASE_KEYS_DIR"])
    assert sorted(p.name for p in keys.iterdir()) == ["signing-key.pem", "url-signing.key"]
    assert not any((host.data_dir / "keys").exists() for host in (a, b))  # no key of their own

    # The official clients and the iTwin.js backend through both hosts, alternately.
    state = run_driver(a, b, token, tmp_path / "driver.json")
    deployment.check_workers_alive()
    imodel_id, tip = state["iModelId"], state["tip"]
    assert tip["index"] == 2, tip
    assert state["hubCalls"]["A"] > 0 and state["hubCalls"]["B"] > 0, state

    # A Mesh Export started on A, made by a worker, found through B.
    with a.client(token) as on_a, b.client(token) as on_b:
        started = on_a.post(
            "/mesh-export", json={"iModelId": imodel_id, "exportType": "3DTILES"}, headers=REPRESENTATION
        )
        assert started.status_code == 202, started.text
        export_id = started.json()["export"]["id"]
        request = started.json()["export"]["request"]
        # At the tip (omitted changesetId); the index is a string, as the platform sends it.
        assert (request["changesetId"], request["changesetIndex"]) == (tip["id"], "2"), request

        deadline = time.monotonic() + EXPORT_TIMEOUT
        while True:
            got = on_b.get(f"/mesh-export/{export_id}", headers=REPRESENTATION)
            assert got.status_code == 200, got.text
            export = got.json()["export"]
            if export["status"] == "Complete":
                break
            assert export["status"] in ("NotStarted", "InProgress"), export
            if time.monotonic() > deadline:
                deployment.check_workers_alive()
                pytest.fail(f"export still {export['status']} after {EXPORT_TIMEOUT} s: {export}")
            time.sleep(0.2)

        listed = on_b.get(
            "/mesh-export",
            params={"iModelId": imodel_id, "exportType": "3DTILES"},
            headers={**REPRESENTATION, "Accept": "application/vnd.bentley.itwin-platform.v1+json"},
        )
        assert listed.status_code == 200, listed.text
        mine = [e for e in listed.json()["exports"] if e["id"] == export_id]
        assert len(mine) == 1 and mine[0]["status"] == "Complete", listed.json()
        assert mine[0]["request"]["changesetId"] == tip["id"]
        href = mine[0]["_links"]["mesh"]["href"]
        on_a_view = on_a.get(f"/mesh-export/{export_id}").json()["export"]
        assert on_a_view["status"] == "Complete", on_a_view

    # The link is an Azurite SAS (the tiles never pass through twinbase) and serves the tileset.
    parts = urlsplit(href)
    azure = deployment.env["TWINBASE_AZURE_CONNECTION_STRING"]
    assert f"{parts.scheme}://{parts.netloc}" in azure, (href, azure)
    folder = tmp_path / "tiles"
    folder.mkdir()
    tileset_resp = fetch(href, "tileset.json")
    assert tileset_resp.status_code == 200, tileset_resp.text
    tileset = tileset_resp.json()
    (folder / "tileset.json").write_bytes(tileset_resp.content)
    for uri in content_uris(tileset):
        tile = fetch(href, uri)
        assert tile.status_code == 200, (uri, tile.status_code)
        (folder / uri).write_bytes(tile.content)
    assert check_tileset(folder) == []
    # At the tip: X's boxes as Y left them (one moved, one deleted).
    drawn = leaf_elements(folder, tileset)
    elements = {k: int(v, 16) for k, v in state["elements"].items()}
    assert {elements["first"], elements["second"]} <= drawn, (elements, sorted(drawn))
    assert elements["deleted"] not in drawn

    # Every job of the run (the baseline, the export) ran on a worker process, none on a host. (The
    # checkpoints at 1 and 2 are no jobs: the host completing a push makes the next one, by design.)
    worker_pids = {str(p.pid) for p in deployment.workers}
    jobs = deployment.jobs()
    kinds = {kind for kind, *_ in jobs}
    assert {"imodel_baseline", "mesh_export"} <= kinds, jobs
    for kind, status, locked_by, error in jobs:
        assert status == "succeeded", (kind, status, error)
        pid = (locked_by or "").split(":")[-1].split("/")[0]  # "<hostname>:<pid>/<thread>"
        assert pid in worker_pids, (kind, locked_by, worker_pids)
    print("jobs (kind, worker pid/thread):", [(kind, str(by).split(":")[-1]) for kind, _, by, _ in jobs])
    deployment.check_workers_alive()
    with httpx.Client(timeout=5) as plain:
        for host in (a, b):
            assert plain.get(f"{host.base_url}/health").status_code == 200
