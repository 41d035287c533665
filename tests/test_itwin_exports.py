"""iTwins export jobs: ``/itwins/exports`` on the real server and its job workers (reference B.5, B.6)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
import uuid
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Server, assert_error, new_itwin
from twinbase.api.deps import Services
from twinbase.app import build_services
from twinbase.domain import itwin_exports as exports
from twinbase.domain.itwins import ensure_user
from twinbase.errors import BlobNotFound, ExportNotFound
from twinbase.identity.tokens import Principal
from twinbase.settings import Settings
from twinbase.store.models import ITwinExport

DEFAULT_SELECT = ("id", "class", "subClass", "type", "number", "displayName")
EXPORT_KEYS = {
    "id",
    "request",
    "status",
    "outputUrl",
    "createdBy",
    "createdDateTime",
    "startedDateTime",
    "completedDateTime",
}


def start(client: httpx.Client, body: dict[str, Any], path: str = "/itwins/exports") -> dict[str, Any]:
    resp = client.post(path, json=body)
    assert resp.status_code == 201, resp.text
    export = resp.json()["export"]
    assert set(export) == EXPORT_KEYS
    return dict(export)


def wait_done(client: httpx.Client, export_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(f"/itwins/exports/{export_id}")
        assert resp.status_code == 200, resp.text
        export = resp.json()["export"]
        if export["status"] in ("Completed", "Failed"):
            return dict(export)
        assert export["status"] in ("Queued", "InProgress"), export
        assert export["outputUrl"] is None
        if time.monotonic() > deadline:
            raise AssertionError(f"export still {export['status']} after {timeout} s")
        time.sleep(0.1)


def download(export: dict[str, Any]) -> bytes:
    assert export["status"] == "Completed", export
    resp = httpx.get(export["outputUrl"], timeout=30)  # signed: no Authorization header
    assert resp.status_code == 200, resp.text
    return resp.content


def read_rows(export: dict[str, Any]) -> list[dict[str, Any]]:
    """The exported iTwins, whatever the format; CSV cells come back as strings."""
    data = download(export)
    fmt = export["request"]["outputFormat"]
    url = export["outputUrl"].split("?")[0]
    if fmt == "JsonGZip":
        assert url.endswith(f"/itwin-exports/{export['id']}.json.gz")
        return list(json.loads(gzip.decompress(data))["iTwins"])
    if fmt == "JsonZipArchive":
        assert url.endswith(f"/itwin-exports/{export['id']}.zip")
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.namelist() == ["iTwins.json"]
            return list(json.loads(archive.read("iTwins.json"))["iTwins"])
    if fmt == "CsvGZip":
        assert url.endswith(f"/itwin-exports/{export['id']}.csv.gz")
        text = gzip.decompress(data).decode("utf-8")
    else:
        assert url.endswith(f"/itwin-exports/{export['id']}.csv")
        text = data.decode("utf-8")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    select = export["request"].get("select")
    assert header == (select.split(",") if select else list(DEFAULT_SELECT))
    return [dict(zip(header, row, strict=True)) for row in reader]


@pytest.fixture
def world(server: Server) -> Iterator[dict[str, Any]]:
    """A user with an active project, an active asset, an inactive project and a child of the project."""
    alice = server.user()
    project = new_itwin(alice, displayName="Alpha Project", number=f"A-{uuid.uuid4().hex[:6]}")
    asset = new_itwin(alice, **{"class": "Thing", "subClass": "Asset", "displayName": "Beta Asset"})
    inactive = new_itwin(alice, displayName="Gamma Retired", status="Inactive")
    child = new_itwin(
        alice,
        **{"class": "Endeavor", "subClass": "WorkPackage", "displayName": "Delta Package"},
        parentId=project["id"],
    )
    yield {"alice": alice, "project": project, "asset": asset, "inactive": inactive, "child": child}
    alice.close()


@pytest.mark.parametrize("fmt", ["JsonGZip", "JsonZipArchive", "CsvGZip", "Csv"])
def test_export_each_format(server: Server, world: dict[str, Any], fmt: str) -> None:
    alice = world["alice"]
    body = {"outputFormat": fmt, "select": "id,displayName,status"}
    export = start(alice, body)
    assert export["status"] in ("Queued", "InProgress", "Completed")
    assert export["request"] == body
    assert export["createdBy"] and export["createdDateTime"].endswith("Z")
    done = wait_done(alice, export["id"])
    assert done["status"] == "Completed", done
    assert done["startedDateTime"] and done["completedDateTime"]
    assert done["completedDateTime"] >= done["startedDateTime"] >= done["createdDateTime"]
    rows = read_rows(done)
    names = sorted(r["displayName"] for r in rows)
    # Inactive iTwins and the Account iTwin are left out by default.
    assert names == ["Alpha Project", "Beta Asset", "Delta Package"]
    for row in rows:
        assert list(row) == ["id", "displayName", "status"]
        assert row["status"] == "Active"
    ids = {r["id"] for r in rows}
    assert ids == {world["project"]["id"], world["asset"]["id"], world["child"]["id"]}


def test_export_default_select_filter_subclass_inactive(server: Server, world: dict[str, Any]) -> None:
    alice = world["alice"]
    default = wait_done(alice, start(alice, {"outputFormat": "JsonGZip"})["id"])
    rows = read_rows(default)
    assert len(rows) == 3
    assert all(tuple(r) == DEFAULT_SELECT for r in rows)

    filtered = wait_done(
        alice, start(alice, {"outputFormat": "JsonGZip", "filter": "startswith(displayName, 'alpha')"})["id"]
    )
    assert [r["id"] for r in read_rows(filtered)] == [world["project"]["id"]]

    assets = wait_done(
        alice, start(alice, {"outputFormat": "Csv", "subClass": "Asset", "select": "id"})["id"]
    )
    assert read_rows(assets) == [{"id": world["asset"]["id"]}]

    body = {"outputFormat": "CsvGZip", "includeInactive": True, "select": "displayName,status"}
    every = wait_done(alice, start(alice, body)["id"])
    got = sorted((r["displayName"], r["status"]) for r in read_rows(every))
    assert got == [
        ("Alpha Project", "Active"),
        ("Beta Asset", "Active"),
        ("Delta Package", "Active"),
        ("Gamma Retired", "Inactive"),
    ]

    # What the iTwins client's own test sends, '+' for spaces included, echoed verbatim.
    client_body = {
        "outputFormat": "JsonGZip",
        "queryScope": "MemberOfiTwin",
        "subClass": "Asset,Project",
        "select": "id,displayName,status,number,createdDateTime",
        "filter": "status+eq+'Active'",
        "includeInactive": False,
    }
    created = start(alice, client_body)
    assert created["request"] == client_body
    done = wait_done(alice, created["id"])
    assert done["request"] == client_body
    rows = read_rows(done)
    assert sorted(r["displayName"] for r in rows) == ["Alpha Project", "Beta Asset"]
    assert all(list(r) == ["id", "displayName", "status", "number", "createdDateTime"] for r in rows)

    org = wait_done(
        alice, start(alice, {"outputFormat": "JsonGZip", "queryScope": "OrganizationAdmin"})["id"]
    )
    assert len(read_rows(org)) == 3


def test_list_and_get_only_mine(server: Server, world: dict[str, Any]) -> None:
    alice = world["alice"]
    first = start(alice, {"outputFormat": "Csv"})
    time.sleep(0.01)
    second = start(alice, {"outputFormat": "JsonGZip"})
    for path in ("/itwins/exports", "/itwins/exports/"):
        listed = alice.get(path)
        assert listed.status_code == 200, listed.text
        exports = listed.json()["exports"]
        assert [e["id"] for e in exports][:2] == [second["id"], first["id"]]  # newest first
        assert all(set(e) == EXPORT_KEYS for e in exports)
    done = wait_done(alice, second["id"])
    assert alice.get(f"/itwins/exports/{second['id']}/").json()["export"]["id"] == second["id"]
    listed_done = next(e for e in alice.get("/itwins/exports").json()["exports"] if e["id"] == second["id"])
    assert listed_done["status"] == "Completed" and listed_done["outputUrl"]

    with server.user() as bob:
        assert_error(bob.get(f"/itwins/exports/{first['id']}"), 404, "iTwinExportNotFound")
        assert bob.get("/itwins/exports").json() == {"exports": []}
    # The same user through another client application does not see it either.
    alice_id = done["createdBy"]
    with server.client(server.token(alice_id, client_id="another-app")) as other_app:
        assert_error(other_app.get(f"/itwins/exports/{first['id']}"), 404, "iTwinExportNotFound")
        assert other_app.get("/itwins/exports").json() == {"exports": []}
    assert_error(alice.get("/itwins/exports/not-a-uuid"), 404, "iTwinExportNotFound")
    assert_error(alice.get(f"/itwins/exports/{uuid.uuid4()}"), 404, "iTwinExportNotFound")
    # The output link does not need the creator, but it must be intact.
    tampered = done["outputUrl"].replace("sig=", "sig=x")
    assert_error(httpx.get(tampered), 404, "FileNotFound")


def _invalid(client: httpx.Client, body: Any, target: str) -> dict[str, Any]:
    resp = client.post("/itwins/exports", json=body)
    err = assert_error(resp, 422, "InvalidiTwinsRequest")
    assert any(d["target"] == target for d in err["details"]), err
    return err


def test_invalid_requests_write_nothing(server: Server, world: dict[str, Any]) -> None:
    alice = world["alice"]
    before = alice.get("/itwins/exports").json()["exports"]

    err = _invalid(alice, {"outputFormat": "InvalidFormat", "queryScope": "MemberOfiTwin"}, "outputFormat")
    assert err["details"][0]["code"] == "InvalidValue"
    err = _invalid(alice, {"outputFormat": "JsonGZip", "queryScope": "InvalidScope"}, "queryScope")
    assert err["details"][0]["code"] == "InvalidValue"
    err = _invalid(alice, {"outputFormat": "JsonGZip", "subClass": "InvalidSubClass"}, "subClass")
    assert err["details"][0]["code"] == "InvalidValue"
    err = _invalid(alice, {"outputFormat": "JsonGZip", "subClass": "Asset,Nope"}, "subClass")
    assert err["details"] == [
        {
            "code": "InvalidValue",
            "target": "subClass",
            "message": "Provided 'subClass' value 'Nope' is not valid.",
        }
    ]
    err = _invalid(alice, {"queryScope": "MemberOfiTwin"}, "outputFormat")
    assert err["details"][0]["code"] == "MissingRequiredProperty"
    _invalid(alice, {"outputFormat": "JsonGZip", "includeInactive": "yes"}, "includeInactive")

    err = _invalid(
        alice,
        {
            "outputFormat": "JsonGZip",
            "queryScope": "MemberOfiTwin",
            "subClass": "Asset",
            "filter": "invalid filter syntax without proper operators",
        },
        "$filter",
    )
    assert (
        err["message"] == "Syntax error at position 14 in 'invalid filter syntax without proper operators'."
    )

    err = _invalid(
        alice,
        {
            "outputFormat": "JsonGZip",
            "subClass": "Asset",
            "select": "id,invalidFieldName,anotherInvalidField",
        },
        "$select",
    )
    assert err["message"] == "Cannot query iTwins."
    assert {
        "code": "InvalidValue",
        "target": "$select",
        "message": "The $select string contains an unknown property 'invalidFieldName'.",
    } in err["details"]

    err = _invalid(alice, {"outputFormat": "JsonGZip", "filter": "colour eq 'red'"}, "$filter")
    assert err["message"] == "Cannot query iTwins."
    assert err["details"][0]["message"] == "The $filter string contains an unknown property 'colour'."

    for raw in (b"", b"not json", b"[1, 2]"):
        resp = alice.post("/itwins/exports", content=raw, headers={"Content-Type": "application/json"})
        assert_error(resp, 422, "InvalidiTwinsRequest")

    assert alice.get("/itwins/exports").json()["exports"] == before

    with server.client() as anonymous:
        assert_error(anonymous.post("/itwins/exports", json={"outputFormat": "Csv"}), 401, "HeaderNotFound")
        assert_error(anonymous.get("/itwins/exports"), 401, "HeaderNotFound")


def test_per_itwin_alias(server: Server, world: dict[str, Any]) -> None:
    alice = world["alice"]
    project_id = world["project"]["id"]
    export = start(alice, {"outputFormat": "JsonGZip", "select": "id"}, path=f"/itwins/{project_id}/exports")
    done = wait_done(alice, export["id"])
    assert done["request"] == {"outputFormat": "JsonGZip", "select": "id"}
    assert sorted(r["id"] for r in read_rows(done)) == sorted([project_id, world["child"]["id"]])

    mine = alice.get(f"/itwins/{project_id}/exports/")
    assert mine.status_code == 200, mine.text
    assert [e["id"] for e in mine.json()["exports"]] == [export["id"]]
    assert alice.get(f"/itwins/{world['asset']['id']}/exports").json() == {"exports": []}
    got = alice.get(f"/itwins/{project_id}/exports/{export['id']}")
    assert got.status_code == 200 and got.json()["export"]["id"] == export["id"]
    assert_error(
        alice.get(f"/itwins/{world['asset']['id']}/exports/{export['id']}"), 404, "iTwinExportNotFound"
    )
    # The global list includes the per-iTwin export.
    assert export["id"] in [e["id"] for e in alice.get("/itwins/exports").json()["exports"]]

    with server.user() as bob:
        before = bob.get("/itwins/exports").json()
        resp = bob.post(f"/itwins/{project_id}/exports", json={"outputFormat": "Csv"})
        assert_error(resp, 404, "iTwinNotFound")
        assert_error(bob.get(f"/itwins/{project_id}/exports"), 404, "iTwinNotFound")
        assert bob.get("/itwins/exports").json() == before
    assert_error(
        alice.post(f"/itwins/{uuid.uuid4()}/exports", json={"outputFormat": "Csv"}), 404, "iTwinNotFound"
    )


def test_literal_routes_not_shadowed(server: Server, world: dict[str, Any]) -> None:
    alice = world["alice"]
    # /itwins/exports is the export list, not an iTwin called "exports".
    resp = alice.get("/itwins/exports")
    assert resp.status_code == 200 and "exports" in resp.json()
    # and the iTwin routes still work next to it.
    assert alice.get(f"/itwins/{world['project']['id']}").status_code == 200


# ------------------------------------------------------------------ the job handler, in process


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = build_services(Settings(data_dir=tmp_path / "data"))  # SQLite; no workers started
    yield svc
    svc.db.dispose()


def _queued(svc: Services, principal: Principal, body: dict[str, Any]) -> str:
    with svc.db.write() as session:
        ensure_user(session, principal)
        export = exports.create(
            session, svc.jobs, principal, exports.ExportBody.model_validate(body), base_url="http://x"
        )
        return export.id


def test_failed_export_keeps_no_output(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    principal = Principal(user_id="failing-user", client_id="app")
    export_id = _queued(services, principal, {"outputFormat": "Csv"})

    def broken_put(key: str, chunks: Any) -> Any:
        next(iter(chunks))  # start reading the rows, then fail like a full disk would
        raise OSError("No space left on device")

    monkeypatch.setattr(services.blobs, "put", broken_put)
    exports.run_export(services, export_id, "http://x")
    with services.db.read() as session:
        row = session.get(ITwinExport, export_id)
        assert row is not None
        assert row.status == "Failed" and row.output_key is None
        assert row.error and "No space left" in row.error
        wire = exports.to_wire(row, None)
    assert wire["status"] == "Failed" and wire["outputUrl"] is None
    assert "error" not in wire and "No space" not in json.dumps(wire)
    # A re-delivered job does not run a finished export again.
    monkeypatch.undo()
    exports.run_export(services, export_id, "http://x")
    with services.db.read() as session:
        row = session.get(ITwinExport, export_id)
        assert row is not None and row.status == "Failed"


def test_expired_exports_are_hidden_and_purged(services: Services) -> None:
    principal = Principal(user_id="old-user", client_id="app")
    export_id = _queued(services, principal, {"outputFormat": "JsonGZip"})
    exports.run_export(services, export_id, "http://x")
    with services.db.write() as session:
        row = session.get(ITwinExport, export_id)
        assert row is not None and row.status == "Completed" and row.output_key
        key = row.output_key
        assert exports.list_mine(session, principal, services.settings)[0].id == export_id
        retention = services.settings.export_retention_seconds
        row.created_at = row.created_at - timedelta(seconds=retention + 60)
    assert services.blobs.stat(key).size > 0
    with services.db.read() as session:
        assert exports.list_mine(session, principal, services.settings) == []
        with pytest.raises(ExportNotFound):
            exports.get_mine(session, principal, services.settings, export_id)
    assert exports.purge_expired(services) == 1
    with services.db.read() as session:
        assert session.get(ITwinExport, export_id) is None
    with pytest.raises(BlobNotFound):
        services.blobs.stat(key)
