"""Mesh Export API (reference §A, seeds 000/001) on the real server: start, dedupe, validation,
access, lists, get/patch/delete, the Prefer shapes and the job's lifecycle.

The lifecycle tests hold whatever the tile pipeline can do: an export ends ``Complete`` with its files
served through ``_links.mesh.href``, or ``Invalid`` with an error and no files. The job's own paths
(files, stats, failures, deletion while running, re-runs) are driven in this process against the
server's database and blob folder, with small pipelines passed to ``run_export``.
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Server, assert_error
from conftest import new_itwin as make_itwin
from support.changesets import make_changeset
from test_changesets import acquire, member, push
from twinbase.api.deps import Services
from twinbase.app import build_services
from twinbase.domain import mesh_exports as domain
from twinbase.errors import BlobNotFound
from twinbase.export.config import TilerConfig
from twinbase.settings import Settings
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.models import MeshExport, utcnow

MINIMAL_KEYS = {"id", "displayName", "status", "lastModified"}
REQUEST_KEYS = {"iModelId", "iTwinId", "contextId", "changesetId", "changesetIndex", "exportType"}
TERMINAL = ("Complete", "Invalid")
REPRESENTATION = {"Prefer": "return=representation"}


@pytest.fixture(scope="module")
def world(server: Server) -> Iterator[dict[str, Any]]:
    alice = server.user()
    itwin = make_itwin(alice)
    made = alice.post("/imodels", json={"iTwinId": itwin["id"], "name": f"Mesh {uuid.uuid4().hex[:6]}"})
    assert made.status_code == 201, made.text
    imodel = made.json()["iModel"]
    changeset = push(alice, imodel["id"], acquire(alice, imodel["id"]), "", make_changeset(""))
    reader = member(server, alice, itwin["id"], "imodels_webview", "imodels_read")
    viewer = member(server, alice, itwin["id"], "imodels_webview")  # may see the iModel, not read it
    stranger = server.user()
    yield {
        "alice": alice,
        "reader": reader,
        "viewer": viewer,
        "stranger": stranger,
        "itwin": itwin,
        "imodel": imodel,
        "changeset": changeset,
    }
    for client in (alice, reader, viewer, stranger):
        client.close()


@pytest.fixture(scope="module")
def services(server: Server) -> Iterator[Services]:
    """The server's own database and blob folder, for driving the job in this process (no workers)."""
    svc = build_services(Settings(data_dir=server.data_dir, database_url=server.database_url), migrate=False)
    yield svc
    svc.db.dispose()


def start(client: httpx.Client, body: dict[str, Any], path: str = "/mesh-export", status: int = 202) -> Any:
    resp = client.post(path, json=body)
    assert resp.status_code == status, resp.text
    export = resp.json()["export"]
    assert MINIMAL_KEYS | {"request"} <= set(export), export
    return export


def get(client: httpx.Client, export_id: str, **headers: str) -> Any:
    resp = client.get(f"/mesh-export/{export_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["export"]


def wait_terminal(client: httpx.Client, export_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        export = get(client, export_id, **REPRESENTATION)
        if export["status"] in TERMINAL:
            return export
        assert export["status"] in ("NotStarted", "InProgress"), export
        assert "mesh" not in export["_links"], export
        if time.monotonic() > deadline:
            raise AssertionError(f"export still {export['status']} after {timeout} s")
        time.sleep(0.1)


def bundle_dir(server: Server, bundle_id: str) -> Path:
    return server.data_dir / "blobs" / blob_keys.bundle(bundle_id)


def row(svc: Services, export_id: str) -> MeshExport | None:
    with svc.db.read() as session:
        found = session.get(MeshExport, export_id)
        if found is not None:
            session.expunge(found)
        return found


def invalid_body(resp: httpx.Response, target: str | None, message: str = "Cannot create export job.") -> Any:
    err = assert_error(resp, 422, "InvalidMeshExportRequest")
    assert err["message"] == message, err
    details = err["details"]
    assert any(d["code"] == "InvalidRequestBody" and d.get("target") == target for d in details), err
    return err


# ------------------------------------------------------------------------------------------- start


def test_start_on_both_paths_and_dedupe(world: dict[str, Any]) -> None:
    alice, imodel, cs = world["alice"], world["imodel"], world["changeset"]
    body = {"iModelId": imodel["id"], "changesetId": cs["id"], "exportType": "3DTiles"}
    first = start(alice, body)
    assert first["displayName"] == imodel["displayName"]
    assert first["request"] == {
        "iModelId": imodel["id"],
        "iTwinId": world["itwin"]["id"],
        "contextId": world["itwin"]["id"],
        "changesetId": cs["id"],
        "changesetIndex": str(cs["index"]),
        "exportType": "3DTILES",
    }
    datetime.fromisoformat(first["lastModified"].replace("Z", "+00:00"))
    # The same request on the seed's path, with a trailing slash, in another spelling of the type, or
    # with the changeset left out (the tip is that changeset): the same export.
    assert start(alice, body, "/exports", 201)["id"] == first["id"]
    assert start(alice, {**body, "exportType": "3DTILES"}, "/mesh-export/")["id"] == first["id"]
    assert start(alice, {"iModelId": imodel["id"]})["id"] == first["id"]
    # The Unreal plugin's request (its extra header ignored) and frontend-tiles' legacy fields.
    unreal = alice.post(
        "/mesh-export/",
        json={"iModelId": imodel["id"], "changesetId": cs["id"], "exportType": "CESIUM"},
        headers={"use-new-exporter": "3"},
    )
    assert unreal.status_code == 202, unreal.text
    assert unreal.json()["export"]["request"]["exportType"] == "CESIUM"
    legacy = {**body, "geometryOptions": {"chordTol": 0.1}, "viewDefinitionFilter": {"models": []}}
    assert start(alice, legacy)["id"] == first["id"]
    # The baseline ("" changeset) and another configuration are other exports; tilerConfig keys match
    # case-insensitively and in any order.
    baseline = start(alice, {**body, "changesetId": ""})
    assert baseline["id"] != first["id"] and baseline["request"]["changesetIndex"] == "0"
    config = [{"key": "maxTileSize", "value": 256}, {"key": "enableCompression", "value": False}]
    tuned = start(alice, {**body, "tilerConfig": config})
    assert tuned["id"] != first["id"]
    assert tuned["request"]["tilerConfig"] == [
        {"key": "maxTileSize", "value": 256},
        {"key": "enableCompression", "value": False},
    ]
    swapped = [{"key": "ENABLECOMPRESSION", "value": False}, {"key": "maxtilesize", "value": 256}]
    assert start(alice, {**body, "tilerConfig": swapped})["id"] == tuned["id"]


@pytest.mark.parametrize(
    ("body", "target", "text"),
    [
        ({"iModelId": ""}, "iModelId", "iModelId cannot be empty."),
        ({"iModelId": "   "}, "iModelId", "iModelId cannot be empty."),
        ({"iModelId": None}, "iModelId", "iModelId is required."),
        ({"iModelId": 42}, "iModelId", "must be a string"),
        ({"exportType": "FBX"}, "exportType", "'FBX' is not valid"),
        ({"exportType": "3DFT"}, "exportType", "not supported"),
        ({"tilerConfig": [{"key": "bogusKey", "value": 1}]}, "tilerConfig", "bogusKey"),
        ({"tilerConfig": [{"key": "maxTileSize", "value": 3}]}, "tilerConfig", "maxTileSize"),
        ({"tilerConfig": []}, "tilerConfig", "1 to 100"),
        ({"lastModified": "yesterday"}, "lastModified", "date-time"),
        ({"lastModified": "2024-08-22"}, "lastModified", "date-time"),
        ({"colour": "red"}, "colour", "'colour' is not allowed"),
        ({"changesetId": 7}, "changesetId", "must be a string"),
    ],
)
def test_invalid_start_bodies(world: dict[str, Any], body: dict[str, Any], target: str, text: str) -> None:
    # iModelId None: leave the property out.
    full = {k: v for k, v in {"iModelId": world["imodel"]["id"], **body}.items() if v is not None}
    err = invalid_body(world["alice"].post("/mesh-export", json=full), target)
    assert any(text in d["message"] for d in err["details"]), err


def test_invalid_start_requests(world: dict[str, Any]) -> None:
    alice, imodel = world["alice"], world["imodel"]
    for raw in (b"", b"{", b"[1]", b'"x"'):
        resp = alice.post("/mesh-export", content=raw, headers={"content-type": "application/json"})
        invalid_body(resp, None)
    # A changeset the iModel does not have: 422 on the target changesetId (no ChangesetNotFound here).
    err = invalid_body(
        alice.post("/mesh-export", json={"iModelId": imodel["id"], "changesetId": "ab" * 20}), "changesetId"
    )
    assert "ab" * 20 in err["details"][0]["message"]
    # A valid date-time is accepted (and otherwise ignored).
    ok = alice.post("/mesh-export", json={"iModelId": imodel["id"], "lastModified": "2024-08-22T03:18:43Z"})
    assert ok.status_code == 202, ok.text
    # Every problem is reported at once.
    many = alice.post("/exports", json={"iModelId": "", "exportType": "X", "extra": 1})
    err = invalid_body(many, "iModelId")
    assert {d["target"] for d in err["details"]} == {"iModelId", "exportType", "extra"}


def test_start_access(world: dict[str, Any], server: Server) -> None:
    body = {"iModelId": world["imodel"]["id"]}
    with server.client() as anon:
        err = assert_error(anon.post("/mesh-export", json=body), 401, "HeaderNotFound")
        assert err["message"] == "Header Authorization was not found in the request. Access denied."
    for who, iid in (("stranger", world["imodel"]["id"]), ("alice", str(uuid.uuid4())), ("alice", "nope")):
        err = assert_error(world[who].post("/mesh-export", json={"iModelId": iid}), 404, "IModelNotFound")
        assert err["message"] == "Requested iModel is not available."
    assert_error(world["viewer"].post("/mesh-export", json=body), 403, "InsufficientPermissions")
    assert world["reader"].post("/mesh-export", json=body).status_code == 202


# ------------------------------------------------------------------------------ get, list, access


def test_get_and_shapes(world: dict[str, Any], server: Server) -> None:
    alice = world["alice"]
    export = start(alice, {"iModelId": world["imodel"]["id"], "exportType": "GLTF"})
    minimal = get(alice, export["id"])
    assert MINIMAL_KEYS <= set(minimal) <= MINIMAL_KEYS | {"error"}
    assert get(alice, export["id"], Prefer="return=minimal").keys() == minimal.keys()
    seed_path = alice.get(f"/exports/{export['id']}", headers=REPRESENTATION)
    assert seed_path.status_code == 200
    full = seed_path.json()["export"]
    assert set(full["request"]) == REQUEST_KEYS and full["request"]["exportType"] == "GLTF"
    assert isinstance(full["_links"], dict)
    assert ("mesh" in full["_links"]) == (full["status"] == "Complete")
    # Who may see it: members with imodels_read; others get 404 (non-member) or 403.
    assert get(world["reader"], export["id"])["id"] == export["id"]
    err = assert_error(world["stranger"].get(f"/mesh-export/{export['id']}"), 404, "ExportNotFound")
    assert err["message"] == "Requested export is not available."
    assert_error(world["viewer"].get(f"/exports/{export['id']}"), 403, "InsufficientPermissions")
    for missing in (str(uuid.uuid4()), "not-an-id"):
        assert_error(alice.get(f"/mesh-export/{missing}"), 404, "ExportNotFound")
    with server.client() as anon:
        assert_error(anon.get(f"/mesh-export/{export['id']}"), 401, "HeaderNotFound")
        assert_error(anon.get("/mesh-export"), 401, "HeaderNotFound")


def _all_pages(client: httpx.Client, url: str, params: dict[str, str]) -> list[dict[str, Any]]:
    resp = client.get(url, params=params, headers=REPRESENTATION)
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert set(page) == {"exports", "_links"} and "self" in page["_links"], page
        items.extend(page["exports"])
        pages += 1
        nxt = page["_links"].get("next")
        if nxt is None:
            return items
        assert pages < 50, "next never disappears"
        resp = client.get(nxt["href"], headers=REPRESENTATION)


def test_lists(world: dict[str, Any], server: Server) -> None:
    alice = world["alice"]
    itwin = make_itwin(alice)
    made = alice.post("/imodels", json={"iTwinId": itwin["id"], "name": "Listed"})
    assert made.status_code == 201, made.text
    iid = made.json()["iModel"]["id"]
    cs = push(alice, iid, acquire(alice, iid), "", make_changeset(""))
    ids = set()
    for kind in ("3DTILES", "CESIUM", "GLTF", "3TZ"):
        for changeset in ("", cs["id"]):
            ids.add(start(alice, {"iModelId": iid, "changesetId": changeset, "exportType": kind})["id"])
    assert len(ids) == 8
    for export_id in ids:  # settle: lastModified moves while jobs run
        wait_terminal(alice, export_id)

    everything = _all_pages(alice, "/mesh-export", {"iModelId": iid, "$top": "3"})
    assert [e["id"] for e in everything] and {e["id"] for e in everything} == ids
    assert len(everything) == 8
    stamps = [e["lastModified"] for e in everything]
    assert stamps == sorted(stamps, reverse=True)  # newest first by default
    ascending = _all_pages(alice, "/exports", {"iModelId": iid, "$orderBy": "date:asc"})
    assert [e["lastModified"] for e in ascending] == sorted(stamps)
    last = alice.get("/mesh-export/", params={"iModelId": iid, "$top": "3", "$skip": "6"}).json()
    assert len(last["exports"]) == 2 and "next" not in last["_links"] and "prev" in last["_links"]

    # Filters: exportType case-insensitively, changesetId; IMODEL (frontend-tiles) matches nothing here.
    tiles = _all_pages(alice, "/mesh-export", {"iModelId": iid, "exportType": "3dTiles"})
    assert len(tiles) == 2 and {e["request"]["exportType"] for e in tiles} == {"3DTILES"}
    on_cs = _all_pages(alice, "/mesh-export", {"iModelId": iid, "changesetId": cs["id"]})
    assert len(on_cs) == 4 and {e["request"]["changesetId"] for e in on_cs} == {cs["id"]}
    cesium = alice.get(
        "/mesh-export",
        params={
            "iModelId": iid,
            "exportType": "3DTILES",
            "$top": "5",
            "client": "CesiumJS",
            "clientVersion": "1.130",
            "changesetId": cs["id"],
        },
    )
    assert cesium.status_code == 200 and len(cesium.json()["exports"]) == 1
    frontend = alice.get(
        "/mesh-export/",
        params={"iModelId": iid, "$orderBy": "date:desc", "$top": "5", "cdn": "1", "tileVersion": "37",
                "iTwinJS": "5.0.0", "exportType": "IMODEL"},
    )  # fmt: skip
    assert frontend.status_code == 200 and frontend.json()["exports"] == []
    assert "next" not in frontend.json()["_links"]

    # Bad parameters: 422 with an InvalidParameter detail naming each.
    for params, target in (
        ({"$orderBy": "name"}, "$orderBy"),
        ({"tileVersion": "latest"}, "tileVersion"),
        ({"$top": "0"}, "$top"),
        ({"$skip": "-1"}, "$skip"),
    ):
        err = assert_error(alice.get("/mesh-export", params=params), 422, "InvalidMeshExportRequest")
        assert err["details"][0] == {**err["details"][0], "code": "InvalidParameter", "target": target}

    # Without iModelId: every export the caller may read, nobody else's.
    start(alice, {"iModelId": world["imodel"]["id"]})
    mine = {e["id"] for e in _all_pages(alice, "/mesh-export", {"$top": "1000"})}
    assert ids <= mine
    assert not ids & {e["id"] for e in _all_pages(world["reader"], "/mesh-export", {})}  # other iTwin
    assert _all_pages(world["stranger"], "/mesh-export", {}) == []
    # With an iModel the caller cannot read: 404 for a stranger, 403 for a viewer.
    assert_error(world["stranger"].get("/mesh-export", params={"iModelId": iid}), 404, "IModelNotFound")
    viewer_iid = world["imodel"]["id"]
    assert_error(
        world["viewer"].get("/mesh-export", params={"iModelId": viewer_iid}), 403, "InsufficientPermissions"
    )
    assert _all_pages(world["viewer"], "/mesh-export", {}) == []
    readable = _all_pages(world["reader"], "/exports", {"iModelId": viewer_iid})
    assert readable and {e["request"]["iModelId"] for e in readable} == {viewer_iid}


# ---------------------------------------------------------------------------------------- lifecycle


def test_export_ends_complete_with_files_or_invalid_without(
    world: dict[str, Any], server: Server, services: Services
) -> None:
    """Until the tile pipeline exists every export ends Invalid; afterwards Complete. Either way the
    files agree with the status, and deleting removes both."""
    alice = world["alice"]
    export = start(alice, {"iModelId": world["imodel"]["id"], "changesetId": world["changeset"]["id"]})
    done = wait_terminal(alice, export["id"])
    stored = row(services, export["id"])
    assert stored is not None and stored.bundle_id is not None
    files = bundle_dir(server, stored.bundle_id)
    if done["status"] == "Invalid":
        assert done["error"] and "mesh" not in done["_links"]
        assert get(alice, export["id"])["error"] == done["error"]  # minimal shows why
        assert not files.exists()
        tileset_url = None
    else:
        href = done["_links"]["mesh"]["href"]
        path, _, query = href.partition("?")
        assert query and not path.endswith("/") and path.endswith(stored.bundle_id)
        tileset_url = f"{path}/tileset.json?{query}"
        tileset = httpx.get(tileset_url, timeout=30)  # no Authorization: the query is the credential
        assert tileset.status_code == 200 and "asset" in tileset.json()
        stats = done["stats"]
        assert stats["exportDirSize"] > 0 and stats["duration"] >= 0 and stats["startTime"]
        assert files.is_dir()
    assert alice.delete(f"/mesh-export/{export['id']}").status_code == 204
    assert_error(alice.get(f"/mesh-export/{export['id']}"), 404, "ExportNotFound")
    assert_error(alice.delete(f"/exports/{export['id']}"), 404, "ExportNotFound")
    assert not files.exists()
    if tileset_url is not None:
        assert httpx.get(tileset_url, timeout=30).status_code == 404
    # An equal request answers the export; an Invalid one is retried in place.
    body = {"iModelId": world["imodel"]["id"], "exportType": "3TZ"}
    again = start(alice, body)
    ended = wait_terminal(alice, again["id"])
    retried = start(alice, body)
    assert retried["id"] == again["id"] and "error" not in retried
    assert retried["status"] == ("NotStarted" if ended["status"] == "Invalid" else "Complete")


def _insert(svc: Services, world: dict[str, Any], status: str, **fields: Any) -> str:
    """An export row with no job behind it (the server's workers leave it alone)."""
    export_id = str(uuid.uuid4())
    now = utcnow()
    with svc.db.write() as session:
        session.add(
            MeshExport(
                id=export_id,
                imodel_id=world["imodel"]["id"],
                itwin_id=world["itwin"]["id"],
                changeset_id="",
                changeset_index=0,
                export_type=fields.pop("export_type", "3DTILES"),
                tiler_config=None,
                config_key=hashlib.sha256(export_id.encode()).hexdigest(),
                display_name="Inserted",
                status=status,
                created_by="test",
                created_at=now,
                last_modified=now,
                **fields,
            )
        )
    return export_id


def test_delete_and_patch_while_running(world: dict[str, Any], services: Services) -> None:
    alice = world["alice"]
    for status in ("NotStarted", "InProgress"):
        export_id = _insert(services, world, status)
        for path in ("/mesh-export", "/exports"):
            err = assert_error(alice.delete(f"{path}/{export_id}"), 422, "InvalidMeshExportRequest")
            assert err["message"] == "Cannot delete exported job."
            assert err["details"][0]["code"] == "InvalidParameter" and err["details"][0]["target"] == "id"
        if status == "InProgress":
            new_config = {"tilerConfig": [{"key": "levelsOfDetail", "value": 3}]}
            err = assert_error(
                alice.patch(f"/exports/{export_id}", json=new_config), 422, "InvalidMeshExportRequest"
            )
            assert err["details"][0]["target"] == "id"
        with services.db.write() as session:
            found = session.get(MeshExport, export_id)
            assert found is not None
            found.status = "Complete"
        assert alice.delete(f"/exports/{export_id}").status_code == 204
    err = assert_error(alice.delete("/mesh-export/not-an-id"), 422, "InvalidMeshExportRequest")
    assert err["details"][0]["target"] == "id"
    assert_error(world["stranger"].delete(f"/mesh-export/{uuid.uuid4()}"), 404, "ExportNotFound")


def test_patch(world: dict[str, Any], services: Services, server: Server) -> None:
    alice = world["alice"]
    export = start(alice, {"iModelId": world["imodel"]["id"], "exportType": "CESIUM", "changesetId": ""})
    renamed = alice.patch(f"/exports/{export['id']}", json={"displayName": "Renamed"}, headers=REPRESENTATION)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["export"]["displayName"] == "Renamed" and "request" in renamed.json()["export"]
    assert get(alice, export["id"])["displayName"] == "Renamed"
    for body, target in (
        ({"displayName": ""}, "displayName"),
        ({"name": "x"}, "name"),
        ({"tilerConfig": [{"key": "nope", "value": 1}]}, "tilerConfig"),
    ):
        invalid_body(alice.patch(f"/exports/{export['id']}", json=body), target, "Cannot update export job.")
    assert_error(
        world["stranger"].patch(f"/exports/{export['id']}", json={"displayName": "x"}), 404, "ExportNotFound"
    )
    assert_error(
        world["viewer"].patch(f"/exports/{export['id']}", json={"displayName": "x"}),
        403,
        "InsufficientPermissions",
    )
    assert_error(
        alice.patch(f"/mesh-export/{export['id']}", json={"displayName": "x"}), 405, "MethodNotAllowed"
    )

    # A new tilerConfig runs a finished export again; the old files go at once.
    wait_terminal(alice, export["id"])
    old = row(services, export["id"])
    assert old is not None and old.bundle_id
    config = [{"key": "levelsOfDetail", "value": 4}]
    rerun = alice.patch(f"/exports/{export['id']}", json={"tilerConfig": config}, headers=REPRESENTATION)
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["export"]["status"] == "NotStarted"
    assert rerun.json()["export"]["request"]["tilerConfig"] == config
    assert not bundle_dir(server, old.bundle_id).exists()
    done = wait_terminal(alice, export["id"])
    assert done["request"]["tilerConfig"] == config
    # The same configuration as another export of that changeset and type: refused.
    other = start(alice, {"iModelId": world["imodel"]["id"], "exportType": "CESIUM", "changesetId": ""})
    assert other["id"] != export["id"]
    wait_terminal(alice, other["id"])  # a running export refuses any new tilerConfig first
    clash = alice.patch(f"/exports/{other['id']}", json={"tilerConfig": config})
    invalid_body(clash, "tilerConfig", "Cannot update export job.")
    # Back to the defaults (null) is that other export's configuration too.
    invalid_body(
        alice.patch(f"/exports/{export['id']}", json={"tilerConfig": None}),
        "tilerConfig",
        "Cannot update export job.",
    )


def test_deleting_the_imodel_deletes_its_exports(server: Server, services: Services) -> None:
    with server.user() as alice:
        itwin = make_itwin(alice)
        made = alice.post("/imodels", json={"iTwinId": itwin["id"], "name": "Doomed"})
        iid = made.json()["iModel"]["id"]
        export = start(alice, {"iModelId": iid})
        wait_terminal(alice, export["id"])
        stored = row(services, export["id"])
        assert stored is not None and stored.bundle_id
        assert alice.delete(f"/imodels/{iid}").status_code == 204
        assert_error(alice.get(f"/mesh-export/{export['id']}"), 404, "ExportNotFound")
        assert row(services, export["id"]) is None
        assert not bundle_dir(server, stored.bundle_id).exists()


# ------------------------------------------------------------------------------ the job, in process


TILESET = b'{"asset":{"version":"1.1"},"root":{"geometricError":0}}'


def tiny_pipeline(
    bim: Path, export_type: str, config: TilerConfig, sink: Any, progress: Any
) -> dict[str, Any]:
    """Writes a two-tile tileset; the stand-in for ``export.produce`` when testing the job itself."""
    assert bim.stat().st_size > 0 and export_type == "3DTILES" and isinstance(config, TilerConfig)
    progress(0.5, "half")
    sink.put("tileset.json", TILESET)
    sink.put("0-0.glb", b"glTF" + bytes(60))
    sink.put("tiles/1-0.glb", b"glTF" + bytes(28))
    progress(1.0, "done")
    return {"compressedSize": 96, "tiles": 2}


def test_job_completes_with_files_and_stats(
    world: dict[str, Any], services: Services, server: Server
) -> None:
    export_id = _insert(services, world, "NotStarted")
    result = domain.run_export(services, export_id, producer=tiny_pipeline)
    assert result is not None and result["status"] == "Complete"
    stored = row(services, export_id)
    assert stored is not None and stored.status == "Complete" and stored.progress == 1.0
    assert stored.bundle_id and len(stored.bundle_id) == 32
    folder = bundle_dir(server, stored.bundle_id)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "0-0.glb",
        "tiles/1-0.glb",
        "tileset.json",
    ]
    stats = stored.stats or {}
    assert stats["exportDirSize"] == len(TILESET) + 64 + 32 and stats["rawSize"] == stats["exportDirSize"]
    assert stats["compressedSize"] == 96 and stats["tiles"] == 2 and stats["iModelSize"] > 0
    assert stats["exportDirStructure"] == [
        {"name": "0-0.glb", "size": 64},
        {"name": "tiles", "size": 32, "files": 1},
        {"name": "tileset.json", "size": len(TILESET)},
    ]
    assert stats["duration"] >= 0 and stats["startTime"].endswith("Z") and "progress" not in stats
    # Served through the prefix link, as clients use it.
    alice = world["alice"]
    href = get(alice, export_id, **REPRESENTATION)["_links"]["mesh"]["href"]
    path, _, query = href.partition("?")
    for name in ("tileset.json", "tiles/1-0.glb"):
        got = httpx.get(f"{path}/{name}?{query}", timeout=30)
        assert got.status_code == 200, got.text
    assert httpx.get(f"{path}/0-0.glb", timeout=30).status_code == 404  # the query is the credential
    # A re-delivered job of a finished export does nothing.
    assert domain.run_export(services, export_id, producer=tiny_pipeline) is None
    assert alice.delete(f"/mesh-export/{export_id}").status_code == 204
    assert not folder.exists()


def test_job_failure_leaves_no_files(world: dict[str, Any], services: Services, server: Server) -> None:
    def broken(bim: Path, export_type: str, config: TilerConfig, sink: Any, progress: Any) -> dict[str, Any]:
        sink.put("tileset.json", b"{}")
        raise RuntimeError("the mesher tripped")

    export_id = _insert(services, world, "NotStarted")
    assert domain.run_export(services, export_id, producer=broken) == {"status": "Invalid"}
    stored = row(services, export_id)
    assert stored is not None and stored.status == "Invalid" and stored.bundle_id
    assert "RuntimeError: the mesher tripped" in (stored.error or "")
    assert not bundle_dir(server, stored.bundle_id).exists()

    def silent(bim: Path, export_type: str, config: TilerConfig, sink: Any, progress: Any) -> dict[str, Any]:
        return {}

    export_id = _insert(services, world, "NotStarted")
    domain.run_export(services, export_id, producer=silent)
    stored = row(services, export_id)
    assert stored is not None and stored.status == "Invalid" and "wrote no files" in (stored.error or "")

    def escaping(
        bim: Path, export_type: str, config: TilerConfig, sink: Any, progress: Any
    ) -> dict[str, Any]:
        sink.put("../outside.json", b"{}")
        return {}

    export_id = _insert(services, world, "NotStarted")
    domain.run_export(services, export_id, producer=escaping)
    stored = row(services, export_id)
    assert stored is not None and stored.status == "Invalid" and "outside" in (stored.error or "")


def test_job_without_the_pipeline_is_invalid(
    world: dict[str, Any], services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, domain.PRODUCE_MODULE, None)  # as on a server without it
    export_id = _insert(services, world, "NotStarted")
    assert domain.run_export(services, export_id) == {"status": "Invalid"}
    stored = row(services, export_id)
    assert stored is not None and stored.status == "Invalid"
    assert "tile pipeline (twinbase.export.produce) is not installed" in (stored.error or "")


def test_job_notices_a_deleted_export(world: dict[str, Any], services: Services, server: Server) -> None:
    export_id = _insert(services, world, "NotStarted")
    seen: list[str] = []

    def deleting(
        bim: Path, export_type: str, config: TilerConfig, sink: Any, progress: Any
    ) -> dict[str, Any]:
        sink.put("tileset.json", b"{}")
        with services.db.write() as session:
            found = session.get(MeshExport, export_id)
            assert found is not None and found.bundle_id
            seen.append(found.bundle_id)
            session.delete(found)
        sink.put("0-0.glb", b"glTF")
        return {}

    assert domain.run_export(services, export_id, producer=deleting) == {"status": "deleted"}
    assert row(services, export_id) is None and not bundle_dir(server, seen[0]).exists()


def test_rerun_cleans_the_dead_attempt(world: dict[str, Any], services: Services, server: Server) -> None:
    dead = uuid.uuid4().hex
    services.blobs.put(f"{blob_keys.bundle(dead)}/tileset.json", [b"half written"])
    export_id = _insert(services, world, "InProgress", bundle_id=dead)
    assert domain.run_export(services, export_id, producer=tiny_pipeline) is not None
    stored = row(services, export_id)
    assert stored is not None and stored.status == "Complete" and stored.bundle_id != dead
    assert not bundle_dir(server, dead).exists() and bundle_dir(server, stored.bundle_id or "").is_dir()


def test_retryable_failure_and_giving_up(world: dict[str, Any], services: Services, server: Server) -> None:
    def vanishing(
        bim: Path, export_type: str, config: TilerConfig, sink: Any, progress: Any
    ) -> dict[str, Any]:
        sink.put("tileset.json", b"{}")
        raise BlobNotFound()

    export_id = _insert(services, world, "NotStarted")
    with pytest.raises(BlobNotFound):
        domain.run_export(services, export_id, producer=vanishing)
    stored = row(services, export_id)
    assert stored is not None and stored.status == "InProgress" and stored.bundle_id
    assert not bundle_dir(server, stored.bundle_id).exists()
    # The queue gives up (attempts used, or the worker kept dying): Invalid, the last files removed.
    services.blobs.put(f"{blob_keys.bundle(stored.bundle_id)}/tileset.json", [b"left by a dead worker"])
    with services.db.write() as session:
        domain.export_failed(services, session, {"export_id": export_id}, "The worker stopped responding.")
    stored = row(services, export_id)
    assert stored is not None and stored.status == "Invalid"
    assert stored.error == "The export job failed: The worker stopped responding."
    assert not bundle_dir(server, stored.bundle_id or "").exists()


# ---------------------------------------------------------------------------- x-api-host-and-root


def test_list_links_use_x_api_host_and_root(world: dict[str, Any], server: Server) -> None:
    """A gateway in front of twinbase names the public prefix; ``self``/``prev``/``next`` of the list
    start with it (the rest of the link is what it would be without the header)."""
    alice = world["alice"]
    iid = world["imodel"]["id"]
    for kind in ("3DTILES", "GLTF", "3TZ"):
        start(alice, {"iModelId": iid, "exportType": kind})
    params = {"iModelId": iid, "$top": "1", "$skip": "1"}
    plain = alice.get("/mesh-export", params=params)
    assert plain.status_code == 200, plain.text
    links = plain.json()["_links"]
    assert {"self", "prev", "next"} <= set(links), links
    assert all(link["href"].startswith(f"{server.base_url}/mesh-export?") for link in links.values())

    for header, prefix in (
        ("https://gateway.example/twinbase", "https://gateway.example/twinbase"),
        ("http://10.0.0.1:8443/a/b/", "http://10.0.0.1:8443/a/b"),  # no trailing slash kept
        ("https://gateway.example", "https://gateway.example"),
    ):
        for path in ("/mesh-export", "/exports/"):
            resp = alice.get(path, params=params, headers={"x-api-host-and-root": header})
            assert resp.status_code == 200, resp.text
            got = resp.json()["_links"]
            assert set(got) == set(links)
            canonical = path.rstrip("/")
            for name, link in got.items():
                expected = links[name]["href"].replace(f"{server.base_url}/mesh-export", prefix + canonical)
                assert link["href"] == expected, (header, path, name, link)

    # The next link of a gateway's answer is followed through the gateway: here, twinbase itself.
    gateway = {"x-api-host-and-root": server.base_url}
    through = alice.get("/mesh-export", params={"iModelId": iid, "$top": "1"}, headers=gateway)
    nxt = through.json()["_links"]["next"]["href"]
    assert nxt.startswith(f"{server.base_url}/mesh-export?") and "%24skip=1" in nxt.replace("$", "%24")
    assert alice.get(nxt).status_code == 200

    # The header shapes only the list links: one export's answer and its mesh link do not change.
    one = plain.json()["exports"][0]["id"]
    same = alice.get(f"/mesh-export/{one}", headers={"x-api-host-and-root": "https://gateway.example"})
    assert same.status_code == 200 and same.json() == alice.get(f"/mesh-export/{one}").json()


@pytest.mark.parametrize(
    "header",
    [
        "gateway.example/twinbase",  # no scheme
        "ftp://gateway.example",
        "https://",
        "https:///root",
        "https://user:secret@gateway.example",
        "https://gateway.example/root?x=1",
        "https://gateway.example/root#part",
        "https://gateway.example:99999",
        "https://gateway.example/a b",
        "",
    ],
)
def test_an_invalid_x_api_host_and_root_is_a_422(world: dict[str, Any], header: str) -> None:
    resp = world["alice"].get(
        "/mesh-export", params={"iModelId": world["imodel"]["id"]}, headers={"x-api-host-and-root": header}
    )
    err = assert_error(resp, 422, "InvalidMeshExportRequest")
    assert err["message"] == "Cannot get exports."
    assert err["details"] == [
        {**err["details"][0], "code": "InvalidHeaderValue", "target": "x-api-host-and-root"}
    ], err
