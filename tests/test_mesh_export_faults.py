"""Mesh Export under faults, with real processes: a ``twinbase worker`` killed (SIGKILL) in the middle of
an export, then another worker: the export completes exactly once, with a whole, valid tileset and
nothing of the killed run left in the blob store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import _backends, new_imodel, new_itwin, running_server
from support.geometry_truth import make_geometry
from test_jobs_processes import cluster_of, wait_until
from twinbase.store.models import MeshExport
from twinbase.tiles.check import check_tileset, content_uris

REPRESENTATION = {"Prefer": "return=representation"}


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _export(client: httpx.Client, export_id: str) -> dict[str, Any]:
    resp = client.get(f"/mesh-export/{export_id}", headers=REPRESENTATION)
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["export"])


@pytest.mark.parametrize("backend", _backends())
def test_a_worker_killed_mid_export_and_the_export_completes_once(
    backend: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    model = make_geometry("bench", elements=30_000)  # several seconds of tiling: time to kill it
    with running_server(backend, tmp_path_factory, TWINBASE_JOB_HEAVY_IN_WEB="false") as server:
        cluster = cluster_of(server)
        try:
            first = cluster.worker(modules=())
            with server.user() as alice:
                itwin = new_itwin(alice)
                imodel = new_imodel(alice, itwin["id"], path=model)
                body = {
                    "iModelId": imodel["id"],
                    "exportType": "3DTILES",
                    "tilerConfig": [{"key": "maxTileSize", "value": 64}],
                }
                started = alice.post("/mesh-export", json=body)
                assert started.status_code == 202, started.text
                export_id = started.json()["export"]["id"]

                def tiling() -> bool:
                    export = _export(alice, export_id)
                    assert export["status"] != "Complete", "the export finished before the kill"
                    return export["status"] == "InProgress" and export["stats"].get("progress", 0) > 0.15

                wait_until("the export's tiles being written", tiling)
                with cluster.db.read() as session:
                    killed_bundle = session.get(MeshExport, export_id).bundle_id  # type: ignore[union-attr]
                bundles = server.data_dir / "blobs" / "bundles"
                assert killed_bundle and any((bundles / killed_bundle).iterdir())  # tiles were written
                tile_processes = _children(first.pid)
                assert tile_processes, "the export's tile processes were not found"
                first.process.kill()
                first.process.wait(10)
                # Its tile processes end too (they watch their parent), rather than linger as orphans.
                wait_until(
                    "the killed worker's tile processes to end",
                    lambda: not any(_alive(p) for p in tile_processes),
                )

                cluster.worker(modules=())

                def complete() -> dict[str, Any] | None:
                    export = _export(alice, export_id)
                    assert export["status"] in ("InProgress", "NotStarted", "Complete"), export
                    return export if export["status"] == "Complete" else None

                done = wait_until("the export completed by the second worker", complete, timeout=180)
                with cluster.db.read() as session:
                    final_bundle = session.get(MeshExport, export_id).bundle_id  # type: ignore[union-attr]
                # The killed run's files are gone; only the finished run's bundle is left.
                assert final_bundle != killed_bundle and not (bundles / killed_bundle).exists()
                assert sorted(p.name for p in bundles.iterdir()) == [final_bundle]
                stats = done["stats"]
                assert stats["elements"] == 30_000 and stats["elementsWithErrors"] == 0
                href = done["_links"]["mesh"]["href"]
                path, _, query = href.partition("?")
                tileset = httpx.get(f"{path}/tileset.json?{query}", timeout=60)
                assert tileset.status_code == 200
                (tmp_path / "tileset.json").write_bytes(tileset.content)
                uris = content_uris(json.loads(tileset.content))
                for uri in uris:
                    got = httpx.get(f"{path}/{uri}?{query}", timeout=60)
                    assert got.status_code == 200, uri
                    (tmp_path / uri).write_bytes(got.content)
                assert len(uris) == stats["tiles"] and check_tileset(tmp_path) == []
                assert _export(alice, export_id)["status"] == "Complete"
        finally:
            cluster.stop()
