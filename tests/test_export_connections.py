"""Export API (seed 004, reference §C) on the real server: connections, runs, their errors and access,
the 303 for an active run and the one winner of simultaneous starts.

Runs whose job must meet a given situation (the iModel deleted meanwhile, a user who lost access) are
driven in this process against the server's database and blob store: the run row is written without
its job, so no server worker takes it first.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Server, assert_error, new_imodel, running_server
from conftest import new_itwin as make_itwin
from test_changesets import member
from twinbase.api.deps import Services
from twinbase.app import build_services
from twinbase.domain import export_connections as domain
from twinbase.settings import Settings
from twinbase.store.models import ExportRun, utcnow

CODE = "InvalidExportConnectionRequest"
ZERO = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def world(server: Server) -> Iterator[dict[str, Any]]:
    alice = server.user()
    itwin = make_itwin(alice)
    imodel = new_imodel(alice, itwin["id"], name=f"Export {uuid.uuid4().hex[:6]}")
    reader = member(server, alice, itwin["id"], "imodels_webview", "imodels_read")
    viewer = member(server, alice, itwin["id"], "imodels_webview")  # sees the iModel, may not read it
    stranger = server.user()
    yield {
        "alice": alice,
        "reader": reader,
        "viewer": viewer,
        "stranger": stranger,
        "itwin": itwin,
        "imodel": imodel,
    }
    for client in (alice, reader, viewer, stranger):
        client.close()


@pytest.fixture(scope="module")
def services(server: Server) -> Iterator[Services]:
    svc = build_services(Settings(data_dir=server.data_dir, database_url=server.database_url), migrate=False)
    yield svc
    svc.db.dispose()


def connect(client: httpx.Client, imodel_id: str, **body: Any) -> dict[str, Any]:
    resp = client.post("/export/connections", json={"iModelId": imodel_id, **body})
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["connection"])


def wait_run(client: httpx.Client, location: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(location)
        assert resp.status_code == 200, resp.text
        run = resp.json()["run"]
        if run["state"] == "Completed" or time.monotonic() > deadline:
            return dict(run)
        time.sleep(0.2)


def details(err: dict[str, Any]) -> dict[str | None, str]:
    return {d.get("target"): d["code"] for d in err.get("details", [])}


# ------------------------------------------------------------------------------------- connections


def test_create_get_list_delete(server: Server, world: dict[str, Any]) -> None:
    alice, imodel = world["alice"], world["imodel"]
    conn = connect(alice, imodel["id"], displayName="IFC nightly", authenticationType="service")
    assert conn["displayName"] == "IFC nightly"
    assert conn["iModelId"] == imodel["id"] and conn["iTwinId"] == world["itwin"]["id"]
    assert conn["authenticationType"] == "Service"
    assert conn["_links"]["iModel"]["href"].endswith(f"/imodels/{imodel['id']}")
    assert conn["_links"]["iTwin"]["href"].endswith(f"/itwins/{world['itwin']['id']}")
    assert "lastRun" not in conn["_links"]
    plain = connect(alice, imodel["id"])
    assert plain["displayName"] == imodel["name"] and plain["authenticationType"] == "User"

    got = alice.get(f"/export/connections/{conn['id']}")
    assert got.status_code == 200 and got.json()["connection"] == conn
    # The reader may read it too; lists page with $top/$skip and a next link that ends.
    assert world["reader"].get(f"/export/connections/{conn['id']}").status_code == 200
    first = alice.get("/export/connections", params={"imodelId": imodel["id"], "$top": 1})
    assert first.status_code == 200, first.text
    body = first.json()
    assert len(body["connections"]) == 1 and "next" in body["_links"]
    ids: set[str] = set()
    href: str | None = body["_links"]["self"]["href"]
    while href:
        page = alice.get(href).json()
        ids |= {c["id"] for c in page["connections"]}
        href = page["_links"].get("next", {}).get("href")
    assert {conn["id"], plain["id"]} <= ids
    # iModelId spelled as the other APIs do works as well.
    assert alice.get("/export/connections", params={"iModelId": imodel["id"]}).status_code == 200

    assert alice.delete(f"/export/connections/{plain['id']}").status_code == 204
    assert_error(alice.get(f"/export/connections/{plain['id']}"), 404, "ConnectionNotFound")
    assert_error(alice.delete(f"/export/connections/{plain['id']}"), 404, "ConnectionNotFound")


def test_bad_bodies(world: dict[str, Any]) -> None:
    alice, imodel = world["alice"], world["imodel"]
    err = assert_error(
        alice.post("/export/connections", content=b"{nope", headers={"content-type": "application/json"}),
        422,
        CODE,
    )
    assert err["message"] == "Cannot perform operation."
    assert details(err) == {None: "InvalidRequestBody"}
    assert details(assert_error(alice.post("/export/connections", json=[1]), 422, CODE)) == {
        None: "InvalidRequestBody"
    }
    assert details(assert_error(alice.post("/export/connections", json={}), 422, CODE)) == {
        "iModelId": "MissingRequiredProperty"
    }
    for bad in ("not-a-guid", 42, ZERO):
        found = details(assert_error(alice.post("/export/connections", json={"iModelId": bad}), 422, CODE))
        assert found == {"iModelId": "InvalidValue"}, (bad, found)
    found = details(
        assert_error(
            alice.post(
                "/export/connections",
                json={
                    "iModelId": imodel["id"],
                    "authenticationType": "Robot",
                    "displayName": 7,
                    "colour": "red",
                },
            ),
            422,
            CODE,
        )
    )
    assert found == {
        "authenticationType": "InvalidValue",
        "displayName": "InvalidValue",
        "colour": "InvalidValue",
    }
    lists = alice.get("/export/connections")
    assert details(assert_error(lists, 422, CODE)) == {"imodelId": "MissingRequiredProperty"}
    assert details(assert_error(alice.get("/export/connections", params={"imodelId": "x"}), 422, CODE)) == {
        "imodelId": "InvalidValue"
    }
    bad_top = alice.get("/export/connections", params={"imodelId": imodel["id"], "$top": "0"})
    assert_error(bad_top, 422, CODE)
    assert_error(alice.get("/export/connections/not-a-guid"), 404, "ConnectionNotFound")
    assert_error(alice.get(f"/export/connections/{ZERO}/runs"), 404, "ConnectionNotFound")


def test_tokens_and_access(server: Server, world: dict[str, Any]) -> None:
    alice, imodel = world["alice"], world["imodel"]
    conn = connect(alice, imodel["id"])
    with httpx.Client(base_url=server.base_url) as anon:
        for method, path in (
            ("POST", "/export/connections"),
            ("GET", "/export/connections"),
            ("GET", f"/export/connections/{conn['id']}"),
            ("DELETE", f"/export/connections/{conn['id']}"),
            ("POST", f"/export/connections/{conn['id']}/runs"),
            ("GET", f"/export/connections/{conn['id']}/runs"),
            ("GET", f"/export/connections/{conn['id']}/runs/{ZERO}"),
            ("GET", "/export/authorizationinformation"),
        ):
            assert_error(anon.request(method, path), 401, "HeaderNotFound")
    stranger, viewer = world["stranger"], world["viewer"]
    # A non-member: the connection does not exist for them, nor may they name the iModel.
    for path in (f"/export/connections/{conn['id']}", f"/export/connections/{conn['id']}/runs"):
        assert_error(stranger.get(path), 404, "ConnectionNotFound")
    assert_error(stranger.post(f"/export/connections/{conn['id']}/runs", json={}), 404, "ConnectionNotFound")
    assert_error(stranger.delete(f"/export/connections/{conn['id']}"), 404, "ConnectionNotFound")
    assert details(
        assert_error(stranger.post("/export/connections", json={"iModelId": imodel["id"]}), 422, CODE)
    ) == {"iModelId": "InvalidValue"}
    assert stranger.get("/export/connections", params={"imodelId": imodel["id"]}).status_code == 422
    # A member who may see the iModel but not read it: 403.
    for resp in (
        viewer.get(f"/export/connections/{conn['id']}"),
        viewer.get(f"/export/connections/{conn['id']}/runs"),
        viewer.post(f"/export/connections/{conn['id']}/runs", json={}),
        viewer.delete(f"/export/connections/{conn['id']}"),
        viewer.post("/export/connections", json={"iModelId": imodel["id"]}),
        viewer.get("/export/connections", params={"imodelId": imodel["id"]}),
    ):
        assert_error(resp, 403, "InsufficientPermissions")
    assert alice.get(f"/export/connections/{conn['id']}").status_code == 200  # nothing was deleted


def test_authorization_information(world: dict[str, Any]) -> None:
    alice = world["alice"]
    resp = alice.get("/export/authorizationinformation", params={"redirectUrl": "https://app.example/done"})
    assert resp.status_code == 200, resp.text
    info = resp.json()["authorizationInformation"]
    assert info["isUserAuthorized"] is True
    assert info["_links"]["authorizationUrl"]["href"] == "https://app.example/done"
    err = assert_error(
        alice.get("/export/authorizationinformation", params={"redirectUrl": "not a url"}),
        422,
        "InvalidAuthorizationInformationRequest",
    )
    assert details(err) == {"$redirectUrl": "InvalidValue"}


# -------------------------------------------------------------------------------------------- runs


def test_run_options_are_checked(world: dict[str, Any]) -> None:
    alice, imodel = world["alice"], world["imodel"]
    conn = connect(alice, imodel["id"])
    runs = f"/export/connections/{conn['id']}/runs"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"exportType": "PDF"}, "exportType"),
        ({"exportType": "DWG"}, "exportType"),
        ({"ifcVersion": "IFC5"}, "ifcVersion"),
        ({"inputOptions": {"modelIds": []}}, "inputOptions.modelIds"),
        ({"inputOptions": {"modelIds": ["model one"]}}, "inputOptions.modelIds"),
        ({"inputOptions": {"changesetId": "f" * 40}}, "inputOptions.changesetId"),
        ({"inputOptions": {"mappingFileId": "x"}}, "inputOptions.mappingFileId"),
        ({"inputOptions": {"savedViewId": "x"}}, "inputOptions.savedViewId"),
        (
            {"outputOptions": {"location": "USER_BLOB_STORAGE", "outputSasUrl": "https://x"}},
            "outputOptions.location",
        ),
        ({"outputOptions": {"folderId": "x"}}, "outputOptions.folderId"),
        ({"inputOptions": "all"}, "inputOptions"),
        ({"colour": "red"}, "colour"),
    ]
    for body, target in cases:
        err = assert_error(alice.post(runs, json=body), 422, CODE)
        assert target in details(err), (body, err)
    err = assert_error(
        alice.post(runs, content=b"[", headers={"content-type": "application/json"}), 422, CODE
    )
    assert details(err) == {None: "InvalidRequestBody"}
    # Nothing was started by any of them.
    assert alice.get(runs).json()["runs"] == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_one_active_run_and_simultaneous_starts(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # No job workers: the runs stay active, so every start after the first meets an active run.
    with running_server(backend, tmp_path_factory, TWINBASE_JOB_WORKERS="0") as srv, srv.user() as alice:
        itwin = make_itwin(alice)
        # An empty iModel is initialized at once (a baseline upload would need a job worker).
        made = alice.post("/imodels", json={"iTwinId": itwin["id"], "name": "Race"})
        assert made.status_code == 201, made.text
        conn = connect(alice, made.json()["iModel"]["id"])
        runs = f"/export/connections/{conn['id']}/runs"
        token = alice.headers["authorization"].split()[1]
        answers: list[httpx.Response] = []
        lock = threading.Lock()
        barrier = threading.Barrier(6)

        def start() -> None:
            with srv.client(token) as c:
                barrier.wait()
                resp = c.post(runs, json={"ifcVersion": "IFC4.3"}, follow_redirects=False)
                with lock:
                    answers.append(resp)

        threads = [threading.Thread(target=start) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in answers if r.status_code == 202]
        assert len(winners) == 1, [(r.status_code, r.text) for r in answers]
        location = winners[0].headers["location"]
        assert location.startswith(f"{srv.base_url}{runs}/")
        for resp in answers:
            if resp is not winners[0]:
                assert resp.status_code in (303, 409), resp.text
                if resp.status_code == 303:
                    assert resp.headers["location"] == location
                else:
                    assert_error(resp, 409, "RunAlreadyStarting")
        # Later starts: 303 to the active run, whatever their options.
        again = alice.post(runs, json={"ifcVersion": "IFC2x3"}, follow_redirects=False)
        assert again.status_code == 303 and again.headers["location"] == location
        run = alice.get(location).json()["run"]
        assert run["connectionId"] == conn["id"] and run["ifcVersion"] == "IFC4.3"
        assert (run["state"], run["result"]) == ("Queued", "Undetermined")
        task = run["jobs"][0]["tasks"][0]
        assert {
            "id",
            "state",
            "result",
            "retryAttempts",
            "startDateTime",
            "endDateTime",
            "exportOutputFileId",
        } <= set(task)
        connection = alice.get(f"/export/connections/{conn['id']}").json()["connection"]
        assert connection["_links"]["lastRun"]["href"] == location
        assert [r["id"] for r in alice.get(runs).json()["runs"]] == [run["id"]]


# ------------------------------------------------------------------------------- the job's own paths


def _queued_run(
    svc: Services, conn: dict[str, Any], imodel: dict[str, Any], user_id: str, **fields: Any
) -> str:
    """A run row as ``start_run`` writes it, without its job (so no server worker takes it)."""
    run_id = str(uuid.uuid4())
    with svc.db.write() as session:
        session.add(
            ExportRun(
                id=run_id,
                connection_id=conn["id"],
                itwin_id=conn["iTwinId"],
                imodel_id=imodel["id"],
                started_by=user_id,
                run_as=fields.pop("run_as", user_id),
                export_type="IFC",
                ifc_version="IFC4 RV 1.2",
                changeset_id="",
                changeset_index=0,
                model_ids=None,
                options_key=uuid.uuid4().hex,
                active_slot=1,
                state="Queued",
                result="Undetermined",
                job_id=str(uuid.uuid4()),
                task_id=str(uuid.uuid4()),
                retry_attempts=0,
                created_at=utcnow(),
                **fields,
            )
        )
    return run_id


def test_a_run_whose_imodel_was_deleted_ends_with_an_error(
    server: Server, world: dict[str, Any], services: Services
) -> None:
    alice = world["alice"]
    doomed = new_imodel(alice, world["itwin"]["id"], name=f"Doomed {uuid.uuid4().hex[:6]}")
    conn = connect(alice, doomed["id"])
    run_id = _queued_run(services, conn, doomed, "someone")
    assert alice.delete(f"/imodels/{doomed['id']}").status_code == 204
    # The connection outlives its iModel; a new start is refused with a reason, the queued run fails.
    assert alice.get(f"/export/connections/{conn['id']}").status_code == 200
    assert domain.run_export(services, run_id) == {"result": "Error"}
    run = alice.get(f"/export/connections/{conn['id']}/runs/{run_id}").json()["run"]
    assert (run["state"], run["result"]) == ("Completed", "Error")
    error = run["jobs"][0]["tasks"][0]["error"]
    assert (
        error["errorCode"] == "IModelNotFound"
        and "deleted" in error["message"]
        and error["canUserFix"] is True
    )
    err = assert_error(alice.post(f"/export/connections/{conn['id']}/runs", json={}), 422, CODE)
    assert details(err) == {"iModelId": "InvalidValue"}


def test_a_user_run_checks_the_user_still_may_read(world: dict[str, Any], services: Services) -> None:
    alice, imodel = world["alice"], world["imodel"]
    conn = connect(alice, imodel["id"])
    run_id = _queued_run(services, conn, imodel, "nobody-" + uuid.uuid4().hex[:6])
    assert domain.run_export(services, run_id) == {"result": "Error"}
    run = alice.get(f"/export/connections/{conn['id']}/runs/{run_id}").json()["run"]
    assert run["jobs"][0]["tasks"][0]["error"]["errorCode"] == "InsufficientPermissions"
    # Ended: the connection takes a new run again (the active slot is free).
    assert run["endDateTime"] is not None


def test_a_deleted_run_leaves_nothing(world: dict[str, Any], services: Services) -> None:
    alice, imodel = world["alice"], world["imodel"]
    conn = connect(alice, imodel["id"])
    run_id = _queued_run(services, conn, imodel, "someone")
    assert alice.delete(f"/export/connections/{conn['id']}").status_code == 204
    assert domain.run_export(services, run_id) is None


# ----------------------------------------------------------------------------- runs end to end


def _start(client: httpx.Client, conn: dict[str, Any], body: dict[str, Any]) -> str:
    resp = client.post(f"/export/connections/{conn['id']}/runs", json=body, follow_redirects=False)
    assert resp.status_code == 202, resp.text
    return str(resp.headers["location"])


def test_a_run_writes_ifc_and_an_equal_run_reuses_it(world: dict[str, Any]) -> None:
    import ifcopenshell

    alice, imodel = world["alice"], world["imodel"]
    conn = connect(alice, imodel["id"], authenticationType="Service")
    run = wait_run(alice, _start(alice, conn, {"ifcVersion": "IFC4 RV 1.2"}))
    task = run["jobs"][0]["tasks"][0]
    done = (run["state"], run["result"])
    assert done in (("Completed", "Success"), ("Completed", "PartialSuccess")), task.get("error")
    assert run["endDateTime"] and task["endDateTime"] and task["exportOutputFileId"] == run["id"]
    href = task["_links"]["output"]["href"]
    assert task["_links"]["output"]["fileName"].endswith(".ifc")
    data = httpx.get(href, timeout=60).content  # a signed link: no Authorization header
    assert data.startswith(b"ISO-10303-21;")
    model = ifcopenshell.file.from_string(data.decode())
    assert model.schema == "IFC4"
    products = [p for p in model.by_type("IfcProduct") if p.is_a("IfcElement")]
    assert products and len(products) == task["stats"]["products"], task["stats"]
    assert model.by_type("IfcProject")[0].Name

    # Same changeset, options and models: the file is copied, not written again.
    again = wait_run(alice, _start(alice, conn, {"ifcVersion": "ifc4 rv 1.2"}))
    again_task = again["jobs"][0]["tasks"][0]
    assert again["result"] == run["result"] and again_task["stats"]["reusedFromRunId"] == run["id"]
    assert httpx.get(again_task["_links"]["output"]["href"], timeout=60).content == data

    # Another version and a model selection that holds no geometric element.
    other = wait_run(
        alice, _start(alice, conn, {"ifcVersion": "IFC4.3", "inputOptions": {"modelIds": ["0x1"]}})
    )
    other_task = other["jobs"][0]["tasks"][0]
    assert other["result"] == "Success", other_task
    assert "reusedFromRunId" not in other_task["stats"]
    assert other["inputOptions"]["modelIds"] == ["0x1"]
    text = httpx.get(other_task["_links"]["output"]["href"], timeout=60).text
    assert ifcopenshell.file.from_string(text).schema in ("IFC4X3", "IFC4X3_ADD2")
    assert other_task["stats"]["products"] == 0
    listed = alice.get(f"/export/connections/{conn['id']}/runs").json()["runs"]
    assert [r["id"] for r in listed] == [other["id"], again["id"], run["id"]]
