"""A large Mesh Export split into tile jobs that other worker processes make (``domain.mesh_tile_jobs``),
with real processes: one ``twinbase worker`` plans (the coordinator, told to make no tiles itself), others
make the batches from the iModel's file they rebuild themselves. A tile worker SIGKILLed in the middle of
a batch: the batch is recovered and made by another worker, and the export completes with exactly the
tiles a one-process export writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import _backends, new_imodel, new_itwin, running_server
from support.geometry_truth import make_geometry
from test_jobs_processes import cluster_of, pid_of, wait_until
from twinbase.domain.mesh_tile_jobs import TILE_JOB_KIND
from twinbase.export.config import parse_tiler_config
from twinbase.export.produce import produce
from twinbase.jobs.queue import job_status
from twinbase.store.models import Job, MeshExport
from twinbase.tiles.check import check_tileset, content_uris

REPRESENTATION = {"Prefer": "return=representation"}
TILER_CONFIG = [{"key": "maxTileSize", "value": 64}]
SPLIT = {
    "TWINBASE_EXPORT_TILE_JOB_TRIANGLES": "40000",  # the 3,000-element model: several batches
    "TWINBASE_EXPORT_PROCESSES": "1",  # each worker process makes its batch itself (2 cores here)
}


class FolderSink:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, relative_path: str, data: bytes) -> None:
        (self.root / relative_path).write_bytes(data)


def _export(client: httpx.Client, export_id: str) -> dict[str, Any]:
    resp = client.get(f"/mesh-export/{export_id}", headers=REPRESENTATION)
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["export"])


@dataclass(frozen=True)
class TileJob:
    id: str
    status: str
    attempts: int
    locked_by: str | None


def _start_export(client: httpx.Client, model: Path) -> str:
    """A new iTwin and iModel of ``model``, and a 3DTILES export of it started; the export's id."""
    itwin = new_itwin(client)
    imodel = new_imodel(client, itwin["id"], path=model)
    body = {"iModelId": imodel["id"], "exportType": "3DTILES", "tilerConfig": TILER_CONFIG}
    started = client.post("/mesh-export", json=body)
    assert started.status_code == 202, started.text
    return str(started.json()["export"]["id"])


def _tile_jobs(db: Any, bundle_id: str) -> list[TileJob]:
    with db.read() as session:
        rows = session.query(Job).filter(Job.kind == TILE_JOB_KIND).all()
        return [
            TileJob(job.id, job.status, job.attempts, job.locked_by)
            for job in rows
            if job.payload.get("bundle_id") == bundle_id
        ]


@pytest.mark.parametrize("backend", _backends())
def test_tile_jobs_made_by_other_workers_survive_a_killed_one(
    backend: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    model = make_geometry("bench", elements=3_000)
    # What one process writes for the same file and configuration: the reference bytes.
    alone = tmp_path / "alone"
    alone.mkdir()
    produce(
        model, "3DTILES", parse_tiler_config(TILER_CONFIG), FolderSink(alone), lambda f, m: None, workers=1
    )

    with running_server(backend, tmp_path_factory, TWINBASE_JOB_HEAVY_IN_WEB="false") as server:
        cluster = cluster_of(server)
        try:
            coordinator = cluster.worker(
                "--kinds",
                "mesh_export",
                modules=(),
                env={**SPLIT, "TWINBASE_EXPORT_COORDINATOR_MAKES_TILES": "false"},
            )
            doomed = cluster.worker("--kinds", TILE_JOB_KIND, modules=(), env=SPLIT)
            with server.user() as alice:
                export_id = _start_export(alice, model)

                def bundle() -> str | None:
                    with cluster.db.read() as session:
                        export = session.get(MeshExport, export_id)
                        return export.bundle_id if export is not None else None

                def running_batch() -> TileJob | None:
                    found = bundle()
                    jobs = _tile_jobs(cluster.db, found) if found else []
                    return next((j for j in jobs if j.status == "running"), None)

                # The only tile worker takes a batch; it dies in the middle of it.
                batch = wait_until("a tile job running on the tile worker", running_batch, timeout=120)
                assert batch.locked_by is not None and f":{doomed.pid}/" in batch.locked_by
                doomed.process.kill()
                doomed.process.wait(10)
                rescuers = [cluster.worker("--kinds", TILE_JOB_KIND, modules=(), env=SPLIT) for _ in range(2)]

                def complete() -> dict[str, Any] | None:
                    export = _export(alice, export_id)
                    assert export["status"] in ("InProgress", "NotStarted", "Complete"), export
                    return export if export["status"] == "Complete" else None

                done = wait_until("the export completed by the other tile workers", complete, timeout=240)
                final_bundle = bundle()
                assert final_bundle is not None
                jobs = _tile_jobs(cluster.db, final_bundle)
                assert len(jobs) >= 3 and all(job.status == "succeeded" for job in jobs)
                makers = {pid_of(job_status_of(cluster.db, job.id)) for job in jobs}
                assert makers <= {w.pid for w in rescuers} | {doomed.pid}
                assert coordinator.pid not in makers  # it planned and assembled only
                retried = next(job for job in jobs if job.id == batch.id)
                assert retried.attempts == 2 and f":{doomed.pid}/" not in (retried.locked_by or "")

                # The tileset the clients fetch is whole, valid, and the one-process export's bytes.
                href = done["_links"]["mesh"]["href"]
                path, _, query = href.partition("?")
                fetched = tmp_path / "fetched"
                fetched.mkdir()
                tileset = httpx.get(f"{path}/tileset.json?{query}", timeout=60)
                assert tileset.status_code == 200
                (fetched / "tileset.json").write_bytes(tileset.content)
                uris = content_uris(json.loads(tileset.content))
                for uri in uris:
                    got = httpx.get(f"{path}/{uri}?{query}", timeout=60)
                    assert got.status_code == 200, uri
                    (fetched / uri).write_bytes(got.content)
                    assert got.content == (alone / uri).read_bytes(), uri
                assert check_tileset(fetched) == []
                assert json.loads(tileset.content) == json.loads((alone / "tileset.json").read_bytes())
                assert done["stats"]["tiles"] == len(uris)
                assert done["stats"]["elements"] == 3_000
        finally:
            cluster.stop()


def job_status_of(db: Any, job_id: str) -> Any:
    with db.read() as session:
        return job_status(session, job_id)


def test_the_web_process_alone_makes_a_split_export(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Embedded defaults (no ``twinbase worker``): the web process's job workers coordinate the split
    export and make its batches on its pool of processes; the tiles are the one-process export's."""
    model = make_geometry("bench", elements=3_000)
    alone = tmp_path / "alone"
    alone.mkdir()
    produce(model, "3DTILES", parse_tiler_config(TILER_CONFIG), FolderSink(alone), lambda *_: None, workers=1)
    env = {"TWINBASE_EXPORT_TILE_JOB_TRIANGLES": "40000", "TWINBASE_EXPORT_PROCESSES": "2"}
    with running_server("sqlite", tmp_path_factory, **env) as server:
        cluster = cluster_of(server)
        with server.user() as alice:
            export_id = _start_export(alice, model)

            def complete() -> dict[str, Any] | None:
                export = _export(alice, export_id)
                assert export["status"] in ("InProgress", "NotStarted", "Complete"), export
                return export if export["status"] == "Complete" else None

            done = wait_until("the split export to complete", complete, timeout=240)
            with cluster.db.read() as session:
                export = session.get(MeshExport, export_id)
                assert export is not None and export.bundle_id is not None
                bundle = export.bundle_id
            jobs = _tile_jobs(cluster.db, bundle)
            assert len(jobs) >= 3 and all(job.status == "succeeded" for job in jobs)
            folder = server.data_dir / "blobs" / "bundles" / bundle
            names = content_uris(json.loads((folder / "tileset.json").read_bytes()))
            assert names and done["stats"]["tiles"] == len(names)
            for name in names:
                assert (folder / name).read_bytes() == (alone / name).read_bytes(), name
            assert done["stats"]["exportDirSize"] == sum(
                p.stat().st_size for p in folder.iterdir() if p.is_file()
            )
