"""iModels: create from a baseline file (the iTwin.js flow), get, list; access rules."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import httpx

from conftest import SAMPLE_BIM, Server, assert_error, new_imodel, new_itwin


def test_create_from_baseline_and_download_it(server: Server, tmp_path: Path) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"], name="Bridge model", description="first")
        assert imodel["state"] == "initialized" and imodel["iTwinId"] == itwin["id"]
        assert imodel["name"] == imodel["displayName"] == "Bridge model" and imodel["description"] == "first"
        assert imodel["_links"]["creator"]["href"].startswith(
            f"{server.base_url}/imodels/{imodel['id']}/users/"
        )
        baseline = alice.get(f"/imodels/{imodel['id']}/baselinefile").json()["baselineFile"]
        assert baseline["fileSize"] == SAMPLE_BIM.stat().st_size
        link = baseline["_links"]["download"]
        assert link["storageType"] == "azure"
        data = httpx.get(link["href"]).content
        path = tmp_path / "b.bim"
        path.write_bytes(data)
        conn = sqlite3.connect(path)
        db_guid = conn.execute(
            "SELECT Data FROM be_Prop WHERE Namespace='be_Db' AND Name='DbGuid'"
        ).fetchone()[0]
        project = conn.execute(
            "SELECT Data FROM be_Prop WHERE Namespace='be_Db' AND Name='ProjectGuid'"
        ).fetchone()[0]
        conn.close()
        assert str(uuid.UUID(bytes=db_guid)) == imodel["id"]
        assert str(uuid.UUID(bytes=project)) == itwin["id"]


def test_list_filters_and_prefer(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        a = new_imodel(alice, itwin["id"], name="Alpha", description="road works")
        b = new_imodel(alice, itwin["id"], name="Beta")
        minimal = alice.get("/imodels", params={"iTwinId": itwin["id"]}).json()
        assert {m["id"] for m in minimal["iModels"]} == {a["id"], b["id"]}
        assert all(set(m) == {"id", "displayName"} for m in minimal["iModels"])
        rep = alice.get(
            "/imodels/",
            params={"iTwinId": itwin["id"], "$orderBy": "name desc"},
            headers={"Prefer": "return=representation"},
        ).json()
        assert [m["name"] for m in rep["iModels"]] == ["Beta", "Alpha"]
        assert rep["_links"]["self"]["href"].startswith(server.base_url)
        assert [
            m["id"]
            for m in alice.get("/imodels", params={"iTwinId": itwin["id"], "name": "Alpha"}).json()["iModels"]
        ] == [a["id"]]
        assert [
            m["id"]
            for m in alice.get("/imodels", params={"iTwinId": itwin["id"], "$search": "ROAD"}).json()[
                "iModels"
            ]
        ] == [a["id"]]
        page = alice.get("/imodels", params={"iTwinId": itwin["id"], "$top": "1"}).json()
        assert len(page["iModels"]) == 1 and "next" in page["_links"]
        assert_error(alice.get("/imodels"), 422, "InvalidiModelsRequest")
        assert_error(
            alice.get("/imodels", params={"iTwinId": itwin["id"], "$top": "0"}), 422, "InvalidiModelsRequest"
        )


def test_duplicate_name_and_bad_input(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        new_imodel(alice, itwin["id"], name="Same")
        resp = alice.post(
            "/imodels", json={"iTwinId": itwin["id"], "name": "Same", "baselineFile": {"size": 10}}
        )
        err = assert_error(resp, 409, "iModelExists")
        assert "details" not in err
        long = alice.post(
            "/imodels",
            json={
                "iTwinId": itwin["id"],
                "name": "x",
                "description": "d" * 256,
                "baselineFile": {"size": 10},
            },
        )
        err = assert_error(long, 422, "InvalidiModelsRequest")
        assert err["message"] == "Cannot create iModel."
        assert err["details"][0]["code"] == "InvalidValue" and err["details"][0]["target"] == "description"
        for body in (
            {"name": "x"},
            {"iTwinId": itwin["id"]},
            {"iTwinId": "nope", "name": "x"},
            {"iTwinId": itwin["id"], "name": "x", "baselineFile": {"size": -1}},
        ):
            assert_error(alice.post("/imodels", json=body), 422, "InvalidiModelsRequest")
        assert_error(
            alice.post("/imodels", json={"iTwinId": str(uuid.uuid4()), "name": "x"}), 404, "iTwinNotFound"
        )
        names = [
            m["displayName"] for m in alice.get("/imodels", params={"iTwinId": itwin["id"]}).json()["iModels"]
        ]
        assert names == ["Same"]


def test_baseline_completion_rules(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        size = SAMPLE_BIM.stat().st_size
        created = alice.post(
            "/imodels", json={"iTwinId": itwin["id"], "name": "M", "baselineFile": {"size": size}}
        )
        imodel = created.json()["iModel"]
        # Completing before the upload, or with the wrong size, is refused and changes nothing.
        assert_error(
            alice.post(f"/imodels/{imodel['id']}/baselinefile", json={}), 422, "InvalidiModelsRequest"
        )
        httpx.put(
            imodel["_links"]["upload"]["href"], content=b"short", headers={"x-ms-blob-type": "BlockBlob"}
        )
        err = assert_error(
            alice.post(f"/imodels/{imodel['id']}/baselinefile", json={}), 422, "InvalidiModelsRequest"
        )
        assert err["details"][0]["code"] == "DataConflict"
        state = alice.get(f"/imodels/{imodel['id']}/baselinefile").json()["baselineFile"]["state"]
        assert state == "waitingForFile"
        assert alice.get(f"/imodels/{imodel['id']}").json()["iModel"]["state"] == "notInitialized"


def test_not_an_imodel_fails_initialization(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        junk = b"this is not sqlite" * 100
        created = alice.post(
            "/imodels", json={"iTwinId": itwin["id"], "name": "J", "baselineFile": {"size": len(junk)}}
        ).json()["iModel"]
        httpx.put(created["_links"]["upload"]["href"], content=junk, headers={"x-ms-blob-type": "BlockBlob"})
        assert alice.post(f"/imodels/{created['id']}/baselinefile", json={}).status_code == 200
        import time

        for _ in range(100):
            state = alice.get(f"/imodels/{created['id']}/baselinefile").json()["baselineFile"]["state"]
            if state != "initializationScheduled":
                break
            time.sleep(0.1)
        assert state == "initializationFailed"


def test_access(server: Server) -> None:
    with server.user() as alice, server.user() as mallory:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"])
        assert_error(mallory.get(f"/imodels/{imodel['id']}"), 404, "iModelNotFound")
        assert_error(mallory.get(f"/imodels/{imodel['id']}/baselinefile"), 404, "iModelNotFound")
        assert_error(mallory.get("/imodels", params={"iTwinId": itwin["id"]}), 404, "iTwinNotFound")
        assert_error(
            mallory.post("/imodels", json={"iTwinId": itwin["id"], "name": "x"}), 404, "iTwinNotFound"
        )
        assert_error(alice.get(f"/imodels/{uuid.uuid4()}"), 404, "iModelNotFound")
        assert_error(alice.get("/imodels/not-an-id"), 404, "iModelNotFound")


REPRESENTATION_KEYS = {
    "id",
    "displayName",
    "name",
    "description",
    "state",
    "createdDateTime",
    "lastChangesetPushDateTime",
    "iTwinId",
    "extent",
    "containersEnabled",
    "dataCenterLocation",
    "geographicCoordinateSystem",
    "_links",
}


def test_entity_shape(server: Server) -> None:
    """§6: minimal ``{id, displayName}``; the full entity with explicit nulls and the three links."""
    with server.user() as alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"], name="Shape")
        assert set(imodel) == REPRESENTATION_KEYS
        assert imodel["description"] is None and imodel["extent"] is None
        assert imodel["lastChangesetPushDateTime"] is None and imodel["containersEnabled"] == 0
        assert imodel["createdDateTime"].endswith("Z") and imodel["dataCenterLocation"]
        root = f"{server.base_url}/imodels/{imodel['id']}"
        links = imodel["_links"]
        assert set(links) == {"creator", "changesets", "namedVersions"}
        assert links["changesets"] == {"href": f"{root}/changesets"}
        assert links["namedVersions"] == {"href": f"{root}/namedversions"}
        creator = links["creator"]["href"]
        assert creator.startswith(f"{root}/users/")
        assert alice.get(creator).json()["user"]["id"] == creator.rsplit("/", 1)[1]
        listed = alice.get(
            "/imodels", params={"iTwinId": itwin["id"]}, headers={"Prefer": "return=representation"}
        ).json()["iModels"]
        assert listed == [imodel]
        minimal = alice.get("/imodels", params={"iTwinId": itwin["id"]}).json()["iModels"]
        assert minimal == [{"id": imodel["id"], "displayName": "Shape"}]
