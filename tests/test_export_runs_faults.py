"""Export API runs are durable: a worker SIGKILLed in the middle of writing the IFC loses nothing. The
run is taken again by another worker process once its heartbeat stalls and ends once, ``Success``,
with one valid file and the retry counted on its task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import _backends, new_imodel, new_itwin, running_server
from support.geometry_truth import make_geometry
from test_jobs_processes import cluster_of, wait_until
from twinbase.domain.export_connections import JOB_KIND
from twinbase.store.models import ExportRun, Job


@pytest.mark.parametrize("backend", _backends())
def test_a_run_survives_its_killed_worker(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    import ifcopenshell

    model: Path = make_geometry("bench", elements=3_000)
    with running_server(backend, tmp_path_factory, TWINBASE_JOB_HEAVY_IN_WEB="false") as server:
        cluster = cluster_of(server)
        try:
            doomed = cluster.worker("--kinds", JOB_KIND, modules=())
            with server.user() as alice:
                itwin = new_itwin(alice)
                imodel = new_imodel(alice, itwin["id"], path=model)
                made = alice.post("/export/connections", json={"iModelId": imodel["id"]})
                assert made.status_code == 201, made.text
                conn = made.json()["connection"]
                started = alice.post(
                    f"/export/connections/{conn['id']}/runs", json={}, follow_redirects=False
                )
                assert started.status_code == 202, started.text
                location = started.headers["location"]
                run_id = location.rsplit("/", 1)[1]

                def writing() -> ExportRun | None:
                    with cluster.db.read() as session:
                        run = session.get(ExportRun, run_id)
                        # Past making the file: the writer is at work.
                        if run is not None and run.state == "Executing" and (run.progress or 0) > 0.1:
                            session.expunge(run)
                            return run
                    return None

                wait_until("the run writing its IFC on the doomed worker", writing, timeout=120)
                doomed.process.kill()
                doomed.process.wait(10)
                cluster.worker("--kinds", JOB_KIND, modules=())

                def completed() -> dict[str, Any] | None:
                    run = alice.get(location).json()["run"]
                    assert run["result"] in ("Undetermined", "Success"), run
                    return dict(run) if run["state"] == "Completed" else None

                run = wait_until("the run completed by the other worker", completed, timeout=240)
                task = run["jobs"][0]["tasks"][0]
                assert run["result"] == "Success" and task["retryAttempts"] == 1, task
                with cluster.db.read() as session:
                    jobs = [j for j in session.query(Job).filter(Job.kind == JOB_KIND).all()]
                    assert [(j.status, j.attempts) for j in jobs if j.payload.get("run_id") == run_id] == [
                        ("succeeded", 2)
                    ]
                data = httpx.get(task["_links"]["output"]["href"], timeout=60).text
                ifc = ifcopenshell.file.from_string(data)
                products = [p for p in ifc.by_type("IfcProduct") if p.is_a("IfcElement")]
                assert len(products) == task["stats"]["products"] == 3_000
                # One file: the killed attempt left nothing else behind.
                stored = list((server.data_dir / "blobs" / "export-runs" / run_id).iterdir())
                assert [p.name for p in stored] == [task["_links"]["output"]["fileName"]]
        finally:
            cluster.stop()
