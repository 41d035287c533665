"""iModels API beyond create/get/list, against the real server (reference §5.1, §5.7, §5.8, §8a).

Update, delete, clone, fork, create from a template (durable copy jobs), favorites, recents,
thumbnails, users with statistics, the caller's permissions, empty create from the seed.
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import struct
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from conftest import SAMPLE_BIM, Server, _backends, assert_error, new_imodel, new_itwin, running_server
from support.changesets import make_changeset
from twinbase.bim.seed import SEED_PATH
from twinbase.store.blobs import LocalBlobStore
from twinbase.store.db import Database
from twinbase.store.models import (
    Briefcase,
    Changeset,
    Checkpoint,
    IModel,
    IModelFavorite,
    IModelRecent,
    Lock,
    NamedVersion,
    utcnow,
)

READ_PERMS = ["imodels_webview", "imodels_read"]
V2 = "application/vnd.bentley.itwin-platform.v2+json"
TOO_LONG = "Provided 'description' value is not valid. The value exceeds allowed 255 characters."


# -------------------------------------------------------------------------------------------- helpers


def member(server: Server, owner: httpx.Client, itwin_id: str, perms: list[str]) -> tuple[httpx.Client, str]:
    """A new user who is a member of the iTwin through a role holding exactly ``perms``."""
    role = owner.post(
        f"/accesscontrol/itwins/{itwin_id}/roles", json={"displayName": f"Role {uuid.uuid4().hex[:8]}"}
    ).json()["role"]
    patched = owner.patch(f"/accesscontrol/itwins/{itwin_id}/roles/{role['id']}", json={"permissions": perms})
    assert patched.status_code == 200, patched.text
    user_id = f"member-{uuid.uuid4().hex[:10]}"
    client = server.client(server.token(user_id))
    assert client.get("/itwins/myprimaryaccount").status_code == 200  # recorded on first sight
    added = owner.post(
        f"/accesscontrol/itwins/{itwin_id}/members/users",
        json={"members": [{"email": f"{user_id}@example.com", "roleIds": [role["id"]]}]},
    )
    assert added.status_code == 201, added.text
    return client, user_id


def user_id_of(client: httpx.Client) -> str:
    return str(client.get("/itwins/myprimaryaccount").json()["iTwin"]["createdBy"])


def wait_created(client: httpx.Client, imodel_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll ``operations/create`` as the clients do until it leaves ``scheduled``/``waitingForFile``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = client.get(f"/imodels/{imodel_id}/operations/create", headers={"Accept": V2})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"createOperation"}
        operation = dict(body["createOperation"])
        if operation["state"] not in ("scheduled", "waitingForFile"):
            return operation
        time.sleep(0.1)
    raise AssertionError("the create operation did not finish in time")


def identity_of(data: bytes, tmp_path: Path) -> tuple[str, str]:
    """(DbGuid, ProjectGuid) of an iModel file, read with sqlite3."""
    path = tmp_path / f"{uuid.uuid4().hex}.bim"
    path.write_bytes(data)
    conn = sqlite3.connect(path)
    try:
        rows = dict(
            conn.execute(
                "SELECT Name, Data FROM be_Prop WHERE Namespace='be_Db' AND Name IN ('DbGuid','ProjectGuid')"
            ).fetchall()
        )
    finally:
        conn.close()
    return str(uuid.UUID(bytes=rows["DbGuid"])), str(uuid.UUID(bytes=rows["ProjectGuid"]))


def baseline_bytes(client: httpx.Client, imodel_id: str) -> bytes:
    baseline = client.get(f"/imodels/{imodel_id}/baselinefile").json()["baselineFile"]
    assert baseline["state"] == "initialized", baseline
    resp = httpx.get(baseline["_links"]["download"]["href"], timeout=30)
    assert resp.status_code == 200
    return resp.content


def imodel_names(client: httpx.Client, itwin_id: str) -> list[str]:
    resp = client.get("/imodels", params={"iTwinId": itwin_id})
    assert resp.status_code == 200, resp.text
    return sorted(m["displayName"] for m in resp.json()["iModels"])


def png(width: int, height: int, shade: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(((x + shade) * 7) % 256 for x in range(width)) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def png_dimensions(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


class Direct:
    """Rows and files written straight into the server's stores, for state other endpoints would make."""

    def __init__(self, server: Server) -> None:
        self.db = Database(server.database_url)
        self.blobs = LocalBlobStore(server.data_dir / "blobs")

    def close(self) -> None:
        self.db.dispose()

    def push_changesets(self, imodel_id: str, user_id: str, count: int) -> list[dict[str, Any]]:
        """``count`` uploaded changesets (rows and files) after the iModel's current tip."""
        made: list[dict[str, Any]] = []
        with self.db.write() as session:
            imodel = session.get(IModel, imodel_id)
            assert imodel is not None
            parent, index = imodel.tip_changeset_id, imodel.tip_index
            for _ in range(count):
                index += 1
                # A real changeset file with the id its bytes hash to, recorded as a completion records
                # it (hash, per-table counts): clones, forks and replay read these files later.
                changeset = make_changeset(parent, payload=100 + index)
                cs_id, data = changeset.id, changeset.data
                key = f"imodels/{imodel_id}/changesets/{cs_id}.cs"
                self.blobs.put(key, [data])
                session.add(
                    Changeset(
                        imodel_id=imodel_id,
                        id=cs_id,
                        index=index,
                        parent_id=parent,
                        description=f"change {index}",
                        briefcase_id=2,
                        containing_changes=0,
                        file_size=len(data),
                        state="fileUploaded",
                        creator_id=user_id,
                        application_id="app-1",
                        application_name="App One",
                        blob_key=key,
                        content_sha256=hashlib.sha256(data).hexdigest(),
                        table_changes={"be_Prop": [1, 0, 0]},
                        pushed_at=utcnow(),
                    )
                )
                made.append({"id": cs_id, "index": index, "parentId": parent, "data": data})
                parent = cs_id
            imodel.tip_index, imodel.tip_changeset_id = index, parent
            imodel.last_changeset_push_at = utcnow()
        return made

    def changesets(self, imodel_id: str) -> list[tuple[str, int, str, str]]:
        with self.db.read() as session:
            return [
                (r.id, int(r.index or 0), r.parent_id, r.blob_key)
                for r in session.scalars(
                    select(Changeset).where(Changeset.imodel_id == imodel_id).order_by(Changeset.index)
                )
            ]

    def count(self, model: Any, imodel_id: str) -> int:
        with self.db.read() as session:
            return int(
                session.scalar(select(func.count()).select_from(model).where(model.imodel_id == imodel_id))
                or 0
            )


@pytest.fixture
def direct(server: Server) -> Iterator[Direct]:
    d = Direct(server)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def shared(server: Server) -> dict[str, Any]:
    """One initialized iModel to read from (module scope: baselines take a moment to initialize)."""
    alice = server.user()
    itwin = new_itwin(alice)
    imodel = new_imodel(alice, itwin["id"], name="Shared source", description="the source")
    return {"alice": alice, "itwin": itwin, "imodel": imodel}


# --------------------------------------------------------------------------------------------- update


def test_update_name_description_extent(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"], name="Before", description="old")
        iid = imodel["id"]
        resp = alice.patch(f"/imodels/{iid}", json={"name": "After"})
        assert resp.status_code == 200, resp.text
        got = resp.json()["iModel"]
        assert got["name"] == got["displayName"] == "After" and got["description"] == "old"
        assert got["_links"]["creator"]["href"].startswith(f"{server.base_url}/imodels/{iid}/users/")
        extent = {
            "southWest": {"latitude": 80, "longitude": 170},
            "northEast": {"latitude": -80, "longitude": -170},
        }
        resp = alice.patch(f"/imodels/{iid}", json={"description": "new description", "extent": extent})
        assert resp.status_code == 200, resp.text
        again = alice.get(f"/imodels/{iid}").json()["iModel"]
        assert again["description"] == "new description" and again["extent"] == extent
        assert again["name"] == "After" and again["state"] == "initialized"
        # Null clears the optional ones; an empty body changes nothing.
        cleared = alice.patch(f"/imodels/{iid}", json={"description": None, "extent": None}).json()["iModel"]
        assert cleared["description"] is None and cleared["extent"] is None
        assert alice.patch(f"/imodels/{iid}/", json={}).json()["iModel"]["name"] == "After"
        # Renaming to its own name is fine.
        assert alice.patch(f"/imodels/{iid}", json={"name": "After"}).status_code == 200


def test_update_errors_write_nothing(server: Server) -> None:
    with server.user() as alice, server.user() as mallory:
        itwin = new_itwin(alice)
        new_imodel(alice, itwin["id"], name="Taken")
        imodel = new_imodel(alice, itwin["id"], name="Mine", description="keep")
        iid = imodel["id"]
        err = assert_error(alice.patch(f"/imodels/{iid}", json={"name": "Taken"}), 409, "iModelExists")
        assert "details" not in err
        err = assert_error(
            alice.patch(f"/imodels/{iid}", json={"description": "x" * 256}), 422, "InvalidiModelsRequest"
        )
        assert err == {
            "code": "InvalidiModelsRequest",
            "message": "Cannot update iModel.",
            "details": [
                {
                    "code": "InvalidValue",
                    "message": TOO_LONG,
                    "target": "description",
                }
            ],
        }
        err = assert_error(
            alice.patch(f"/imodels/{iid}", json={"name": "n" * 256}), 422, "InvalidiModelsRequest"
        )
        assert err["details"][0]["target"] == "name"
        for body in (
            {"name": ""},
            {"name": "   "},
            {"name": None},
            {"name": 5},
            {"description": 7},
            {"extent": {"southWest": 1}},
        ):
            err = assert_error(alice.patch(f"/imodels/{iid}", json=body), 422, "InvalidiModelsRequest")
            assert err["details"], err
        bad_json = alice.patch(
            f"/imodels/{iid}", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert (
            assert_error(bad_json, 422, "InvalidiModelsRequest")["details"][0]["code"] == "InvalidRequestBody"
        )
        assert_error(alice.patch(f"/imodels/{iid}", json=["name"]), 422, "InvalidiModelsRequest")
        assert_error(alice.patch(f"/imodels/{uuid.uuid4()}", json={"name": "x"}), 404, "iModelNotFound")
        assert_error(mallory.patch(f"/imodels/{iid}", json={"name": "x"}), 404, "iModelNotFound")
        reader, _ = member(server, alice, itwin["id"], READ_PERMS)
        assert_error(reader.patch(f"/imodels/{iid}", json={"name": "x"}), 403, "InsufficientPermissions")
        after = alice.get(f"/imodels/{iid}").json()["iModel"]
        assert (after["name"], after["description"]) == ("Mine", "keep")
        assert imodel_names(alice, itwin["id"]) == ["Mine", "Taken"]


def test_create_description_error_is_the_platform_one(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        resp = alice.post(
            "/imodels",
            json={"iTwinId": itwin["id"], "name": "x", "description": "x" * 256, "baselineFile": {"size": 1}},
        )
        err = assert_error(resp, 422, "InvalidiModelsRequest")
        assert err["message"] == "Cannot create iModel."
        assert err["details"] == [
            {
                "code": "InvalidValue",
                "message": TOO_LONG,
                "target": "description",
            }
        ]
        assert imodel_names(alice, itwin["id"]) == []


# --------------------------------------------------------------------------------------------- delete


def test_delete_removes_rows_and_files(server: Server, direct: Direct) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"], name="Doomed")
        iid = imodel["id"]
        direct.push_changesets(iid, user_id_of(alice), 2)
        assert alice.put(f"/imodels/favorites/{iid}").status_code == 204
        assert alice.post(f"/imodels/recents/{iid}", json={}).status_code == 204
        assert (
            alice.put(
                f"/imodels/{iid}/thumbnail", content=png(8, 5), headers={"Content-Type": "image/png"}
            ).status_code
            == 204
        )
        link = alice.get(f"/imodels/{iid}/baselinefile").json()["baselineFile"]["_links"]["download"]["href"]
        assert httpx.get(link).status_code == 200
        folder = server.data_dir / "blobs" / "imodels" / iid
        assert folder.is_dir()

        resp = alice.delete(f"/imodels/{iid}")
        assert resp.status_code == 204 and resp.content == b""
        assert_error(alice.get(f"/imodels/{iid}"), 404, "iModelNotFound")
        assert_error(alice.delete(f"/imodels/{iid}"), 404, "iModelNotFound")
        assert httpx.get(link).status_code == 404
        assert not folder.exists()
        for model in (Changeset, Checkpoint, IModelFavorite, IModelRecent):
            assert direct.count(model, iid) == 0, model
        assert alice.get("/imodels/favorites", params={"iTwinId": itwin["id"]}).json()["iModels"] == []
        # The name is free again.
        new_imodel(alice, itwin["id"], name="Doomed")


def test_delete_permissions(server: Server) -> None:
    with server.user() as alice, server.user() as mallory:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"])
        assert_error(mallory.delete(f"/imodels/{imodel['id']}"), 404, "iModelNotFound")
        manager, _ = member(server, alice, itwin["id"], [*READ_PERMS, "imodels_write", "imodels_manage"])
        assert_error(manager.delete(f"/imodels/{imodel['id']}"), 403, "InsufficientPermissions")
        assert_error(alice.delete("/imodels/not-an-id"), 404, "iModelNotFound")
        assert alice.get(f"/imodels/{imodel['id']}").status_code == 200
        deleter, _ = member(server, alice, itwin["id"], ["imodels_webview", "imodels_delete"])
        assert deleter.delete(f"/imodels/{imodel['id']}").status_code == 204


def test_itwin_with_imodels_cannot_be_deleted(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"])
        err = assert_error(alice.delete(f"/itwins/{itwin['id']}"), 422, "InvalidiTwinsRequest")
        assert err["details"] == [
            {"code": "InvalidChange", "message": "The iTwin has iModels; delete them first.", "target": "id"}
        ]
        assert alice.get(f"/itwins/{itwin['id']}").status_code == 200
        assert alice.delete(f"/imodels/{imodel['id']}").status_code == 204
        assert alice.delete(f"/itwins/{itwin['id']}").status_code == 204


# ------------------------------------------------------------------------------------- clone and fork


def test_clone_baseline_only_into_another_itwin(server: Server, tmp_path: Path) -> None:
    with server.user() as alice:
        source_itwin = new_itwin(alice)
        target_itwin = new_itwin(alice)
        extent = {"southWest": {"latitude": 1, "longitude": 2}, "northEast": {"latitude": 3, "longitude": 4}}
        source = new_imodel(alice, source_itwin["id"], name="Original", description="desc", extent=extent)
        resp = alice.post(
            f"/imodels/{source['id']}/clone",
            json={"iTwinId": target_itwin["id"], "name": "Copy", "changesetIndex": 0, "containersEnabled": 7},
        )
        assert resp.status_code == 202, resp.text
        assert resp.json() == {}
        location = resp.headers["location"]
        assert location.startswith(f"{server.base_url}/imodels/")
        new_id = location.rsplit("/", 1)[1]
        assert new_id != source["id"]
        operation = wait_created(alice, new_id)
        assert operation == {
            "state": "successful",
            "clonedFrom": {"iModelId": source["id"], "changesetId": ""},
            "forkedFrom": None,
        }
        clone = alice.get(f"/imodels/{new_id}").json()["iModel"]
        assert clone["state"] == "initialized" and clone["iTwinId"] == target_itwin["id"]
        assert (clone["name"], clone["description"], clone["extent"]) == ("Copy", "desc", extent)
        assert clone["containersEnabled"] == 7 and clone["dataCenterLocation"]
        assert identity_of(baseline_bytes(alice, new_id), tmp_path) == (new_id, target_itwin["id"])
        # The source is untouched.
        assert identity_of(baseline_bytes(alice, source["id"]), tmp_path) == (
            source["id"],
            source_itwin["id"],
        )
        checkpoint = alice.get(f"/imodels/{new_id}/baselinefile").json()["baselineFile"]
        assert checkpoint["fileSize"] == SAMPLE_BIM.stat().st_size


def test_clone_copies_changesets_up_to_the_requested_one(
    server: Server, direct: Direct, tmp_path: Path
) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        source = new_imodel(alice, itwin["id"], name="With history")
        pushed = direct.push_changesets(source["id"], user_id_of(alice), 3)

        # By index: changesets 1 and 2, same ids, indexes and parents, files copied.
        resp = alice.post(
            f"/imodels/{source['id']}/clone",
            json={"iTwinId": itwin["id"], "name": "Upto2", "changesetIndex": 2},
        )
        assert resp.status_code == 202, resp.text
        by_index = resp.headers["location"].rsplit("/", 1)[1]
        operation = wait_created(alice, by_index)
        assert operation["state"] == "successful"
        # Exactly the client's ClonedFrom: {iModelId, changesetId} (its tests compare deep-equal).
        assert operation["clonedFrom"] == {"iModelId": source["id"], "changesetId": pushed[1]["id"]}
        rows = direct.changesets(by_index)
        assert [(r[0], r[1], r[2]) for r in rows] == [
            (c["id"], c["index"], c["parentId"]) for c in pushed[:2]
        ]
        for (_, _, _, key), original in zip(rows, pushed[:2], strict=True):
            assert key.startswith(f"imodels/{by_index}/")
            assert b"".join(direct.blobs.open_range(key)) == original["data"]
        assert identity_of(baseline_bytes(alice, by_index), tmp_path)[0] == by_index

        # By id, and everything when neither is given.
        by_id = (
            alice.post(
                f"/imodels/{source['id']}/clone",
                json={"iTwinId": itwin["id"], "name": "ById", "changesetId": pushed[0]["id"].upper()},
            )
            .headers["location"]
            .rsplit("/", 1)[1]
        )
        everything = (
            alice.post(f"/imodels/{source['id']}/clone", json={"iTwinId": itwin["id"], "name": "All"})
            .headers["location"]
            .rsplit("/", 1)[1]
        )
        baseline_only = (
            alice.post(
                f"/imodels/{source['id']}/clone",
                json={"iTwinId": itwin["id"], "name": "None", "changesetId": ""},
            )
            .headers["location"]
            .rsplit("/", 1)[1]
        )
        assert wait_created(alice, by_id)["clonedFrom"] == {
            "iModelId": source["id"],
            "changesetId": pushed[0]["id"],
        }
        assert wait_created(alice, everything)["clonedFrom"]["changesetId"] == pushed[2]["id"]
        assert wait_created(alice, baseline_only)["clonedFrom"]["changesetId"] == ""
        assert [r[1] for r in direct.changesets(by_id)] == [1]
        assert [r[1] for r in direct.changesets(everything)] == [1, 2, 3]
        assert direct.changesets(baseline_only) == []
        # The source keeps its own rows and files.
        assert [r[1] for r in direct.changesets(source["id"])] == [1, 2, 3]


def test_fork(server: Server, tmp_path: Path) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        extent = {"southWest": {"latitude": 1, "longitude": 2}, "northEast": {"latitude": 3, "longitude": 4}}
        source = new_imodel(alice, itwin["id"], name="Main", description="main one", extent=extent)
        resp = alice.post(
            f"/imodels/{source['id']}/fork",
            json={"iTwinId": itwin["id"], "name": "Branch", "preserveHistory": True, "containersEnabled": 0},
        )
        assert resp.status_code == 202, resp.text
        new_id = resp.headers["location"].rsplit("/", 1)[1]
        operation = wait_created(alice, new_id)
        assert operation["state"] == "successful" and operation["clonedFrom"] is None
        forked = operation["forkedFrom"]
        # Exactly the client's ForkedFrom: {iModelId, changesetId, relationshipId}.
        assert set(forked) == {"iModelId", "changesetId", "relationshipId"}
        assert forked["iModelId"] == source["id"] and forked["changesetId"] == ""
        assert uuid.UUID(forked["relationshipId"])
        fork = alice.get(f"/imodels/{new_id}").json()["iModel"]
        assert fork["state"] == "initialized" and fork["description"] == "main one" and fork["extent"] is None
        assert identity_of(baseline_bytes(alice, new_id), tmp_path) == (new_id, itwin["id"])
        # Without a name the source's is used: taken in the same iTwin.
        assert_error(
            alice.post(f"/imodels/{source['id']}/fork", json={"iTwinId": itwin["id"]}), 409, "iModelExists"
        )
        other = new_itwin(alice)
        unnamed = alice.post(
            f"/imodels/{source['id']}/fork", json={"iTwinId": other["id"], "preserveHistory": False}
        )
        assert unnamed.status_code == 202, unnamed.text
        unnamed_id = unnamed.headers["location"].rsplit("/", 1)[1]
        assert wait_created(alice, unnamed_id)["state"] == "successful"
        assert alice.get(f"/imodels/{unnamed_id}").json()["iModel"]["name"] == "Main"


def test_copy_errors_write_nothing(server: Server, shared: dict[str, Any], direct: Direct) -> None:
    alice: httpx.Client = shared["alice"]
    source = shared["imodel"]
    src = source["id"]
    with server.user() as mallory:
        target = new_itwin(alice)
        tid = target["id"]
        for op in ("clone", "fork"):
            url = f"/imodels/{src}/{op}"
            assert_error(
                alice.post(f"/imodels/{uuid.uuid4()}/{op}", json={"iTwinId": tid}), 404, "iModelNotFound"
            )
            assert_error(alice.post(f"/imodels/nope/{op}", json={"iTwinId": tid}), 404, "iModelNotFound")
            assert_error(
                alice.post(url, json={"iTwinId": tid, "changesetId": "ab" * 20}), 404, "ChangesetNotFound"
            )
            assert_error(
                alice.post(url, json={"iTwinId": tid, "changesetIndex": 5}), 404, "ChangesetNotFound"
            )
            assert_error(alice.post(url, json={"iTwinId": str(uuid.uuid4())}), 404, "iTwinNotFound")
            assert_error(mallory.post(url, json={"iTwinId": tid}), 404, "iModelNotFound")
            err = assert_error(
                alice.post(url, json={"iTwinId": tid, "changesetId": "", "changesetIndex": 0}),
                422,
                "InvalidiModelsRequest",
            )
            assert err["details"][0]["code"] == "MutuallyExclusivePropertiesProvided"
            for body in (
                {},
                {"iTwinId": "not-a-guid"},
                {"iTwinId": 5},
                {"iTwinId": tid, "changesetIndex": -1},
                {"iTwinId": tid, "changesetIndex": "1"},
                {"iTwinId": tid, "name": ""},
                {"iTwinId": tid, "name": "n" * 256},
                {"iTwinId": tid, "description": "d" * 256},
                {"iTwinId": tid, "containersEnabled": 8},
            ):
                assert_error(alice.post(url, json=body), 422, "InvalidiModelsRequest")
            bad = alice.post(url, content=b"[", headers={"Content-Type": "application/json"})
            assert_error(bad, 422, "InvalidiModelsRequest")
            assert_error(alice.post(url, content=b""), 422, "InvalidiModelsRequest")
        assert_error(
            alice.post(f"/imodels/{src}/fork", json={"iTwinId": tid, "preserveHistory": "yes"}),
            422,
            "InvalidiModelsRequest",
        )
        # Permissions: imodels_read on the source, imodels_manage on the target iTwin.
        reader, _ = member(server, alice, shared["itwin"]["id"], READ_PERMS)
        assert_error(reader.post(f"/imodels/{src}/clone", json={"iTwinId": tid}), 404, "iTwinNotFound")
        member(server, alice, tid, [])  # (another member of the target, to be sure lists stay empty)
        viewer, _ = member(server, alice, shared["itwin"]["id"], ["imodels_webview", "imodels_manage"])
        assert_error(
            viewer.post(f"/imodels/{src}/clone", json={"iTwinId": shared["itwin"]["id"], "name": "v"}),
            403,
            "InsufficientPermissions",
        )
        assert_error(
            reader.post(f"/imodels/{src}/clone", json={"iTwinId": shared["itwin"]["id"], "name": "r"}),
            403,
            "InsufficientPermissions",
        )
        # An iModel still waiting for its baseline cannot be copied.
        pending = alice.post(
            "/imodels", json={"iTwinId": tid, "name": "Pending", "baselineFile": {"size": 10}}
        ).json()["iModel"]
        err = assert_error(
            alice.post(f"/imodels/{pending['id']}/clone", json={"iTwinId": tid, "name": "p"}),
            422,
            "InvalidiModelsRequest",
        )
        assert err["details"][0]["code"] == "InvalidChange"
        assert imodel_names(alice, tid) == ["Pending"]
        assert imodel_names(alice, shared["itwin"]["id"]) == ["Shared source"]
        assert_error(mallory.get(f"/imodels/{src}/operations/create"), 404, "iModelNotFound")
        assert_error(alice.get(f"/imodels/{uuid.uuid4()}/operations/create"), 404, "iModelNotFound")


def empty_imodel(client: httpx.Client, itwin_id: str, name: str) -> dict[str, Any]:
    """An empty iModel: initialized by the request itself (no job runs for it)."""
    resp = client.post("/imodels", json={"iTwinId": itwin_id, "name": name})
    assert resp.status_code == 201, resp.text
    created = dict(resp.json()["iModel"])
    assert created["state"] == "initialized"
    return created


def start_copies(client: httpx.Client, source_id: str, itwin_id: str) -> dict[str, str]:
    """A clone and a fork of the source: the new ids by operation."""
    copies = {}
    for op in ("clone", "fork"):
        resp = client.post(f"/imodels/{source_id}/{op}", json={"iTwinId": itwin_id, "name": f"Copy {op}"})
        assert resp.status_code == 202, resp.text
        copies[op] = resp.headers["location"].rsplit("/", 1)[1]
    return copies


def assert_copied_from(operation: dict[str, Any], op: str, source_id: str) -> None:
    """The create operation names its source (a deleted one too) in ``clonedFrom`` xor ``forkedFrom``."""
    link, other = ("clonedFrom", "forkedFrom") if op == "clone" else ("forkedFrom", "clonedFrom")
    assert operation[other] is None, operation
    assert operation[link]["iModelId"] == source_id and operation[link]["changesetId"] == "", operation


def start_worker(srv: Server, log: Path) -> subprocess.Popen[bytes]:
    """A ``twinbase worker`` process on the server's database and data folder."""
    env = {**os.environ, **srv.env, "TWINBASE_DATABASE_URL": srv.database_url}
    env.pop("TWINBASE_CONFIG", None)
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twinbase",
                "worker",
                "--concurrency",
                "1",
                "--data-dir",
                str(srv.data_dir),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )


@pytest.mark.parametrize("backend", _backends())
def test_copies_of_a_source_deleted_before_they_run_fail_cleanly(
    backend: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    # No job worker in the web process: the copy jobs wait until a worker process starts, after the
    # source is deleted, so they certainly run on a source that is gone.
    with running_server(backend, tmp_path_factory, TWINBASE_JOB_WORKERS="0") as srv, srv.user() as alice:
        itwin = new_itwin(alice)
        source = empty_imodel(alice, itwin["id"], "Vanishing")
        copies = start_copies(alice, source["id"], itwin["id"])
        for op, new_id in copies.items():
            operation = alice.get(f"/imodels/{new_id}/operations/create").json()["createOperation"]
            assert operation["state"] == "scheduled"
            assert_copied_from(operation, op, source["id"])
        assert alice.delete(f"/imodels/{source['id']}").status_code == 204
        assert_error(alice.get(f"/imodels/{source['id']}"), 404, "iModelNotFound")
        worker = start_worker(srv, tmp_path / "worker.log")
        try:
            for op, new_id in copies.items():
                operation = wait_created(alice, new_id)
                assert operation["state"] == "failed", (tmp_path / "worker.log").read_text()
                assert_copied_from(operation, op, source["id"])
                assert alice.get(f"/imodels/{new_id}").json()["iModel"]["state"] == "notInitialized"
                assert_error(alice.get(f"/imodels/{new_id}/baselinefile"), 404, "BaselineFileNotFound")
                assert alice.get(f"/imodels/{new_id}/changesets").json()["changesets"] == []
                # The failed job wrote no file for the copy.
                assert not (srv.data_dir / "blobs" / "imodels" / new_id).exists()
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
        assert imodel_names(alice, itwin["id"]) == ["Copy clone", "Copy fork"]
        # A failed copy can be deleted like any iModel.
        for new_id in copies.values():
            assert alice.delete(f"/imodels/{new_id}").status_code == 204
        assert imodel_names(alice, itwin["id"]) == []


def test_copies_outlive_their_source_deleted_after_they_finished(server: Server, tmp_path: Path) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        source = empty_imodel(alice, itwin["id"], "Original")
        copies = start_copies(alice, source["id"], itwin["id"])
        for op, new_id in copies.items():
            operation = wait_created(alice, new_id)
            assert operation["state"] == "successful"
            assert_copied_from(operation, op, source["id"])
        assert alice.delete(f"/imodels/{source['id']}").status_code == 204
        assert_error(alice.get(f"/imodels/{source['id']}"), 404, "iModelNotFound")
        # The copies' files are their own: deleting the source's files left them whole.
        for op, new_id in copies.items():
            operation = wait_created(alice, new_id)
            assert operation["state"] == "successful"
            assert_copied_from(operation, op, source["id"])
            assert alice.get(f"/imodels/{new_id}").json()["iModel"]["state"] == "initialized"
            baseline = baseline_bytes(alice, new_id)
            assert identity_of(baseline, tmp_path) == (new_id, itwin["id"])
            checkpoint = alice.get(f"/imodels/{new_id}/changesets/0/checkpoint").json()["checkpoint"]
            assert checkpoint["state"] == "successful"
            assert httpx.get(checkpoint["_links"]["download"]["href"], timeout=30).content == baseline
        assert imodel_names(alice, itwin["id"]) == ["Copy clone", "Copy fork"]


def test_create_operation_of_a_baseline_upload(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        size = SAMPLE_BIM.stat().st_size
        created = alice.post(
            "/imodels", json={"iTwinId": itwin["id"], "name": "Upload", "baselineFile": {"size": size}}
        ).json()["iModel"]
        operation = alice.get(f"/imodels/{created['id']}/operations/create").json()["createOperation"]
        assert operation == {"state": "waitingForFile", "clonedFrom": None, "forkedFrom": None}
        put = httpx.put(
            created["_links"]["upload"]["href"],
            content=SAMPLE_BIM.read_bytes(),
            headers={"x-ms-blob-type": "BlockBlob"},
        )
        assert put.status_code == 201
        assert alice.post(created["_links"]["complete"]["href"], json={}).status_code == 200
        assert wait_created(alice, created["id"])["state"] == "successful"
        assert alice.get(f"/imodels/{created['id']}").json()["iModel"]["state"] == "initialized"


def test_copy_of_a_broken_source_reports_failed(server: Server, direct: Direct) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        source = new_imodel(alice, itwin["id"], name="Broken")
        with direct.db.read() as session:
            checkpoint = session.get(Checkpoint, (source["id"], 0))
            assert checkpoint is not None
            key = checkpoint.blob_key
        direct.blobs.put(key, [b"no longer an iModel" * 10])
        for op in ("clone", "fork"):
            resp = alice.post(
                f"/imodels/{source['id']}/{op}", json={"iTwinId": itwin["id"], "name": f"B-{op}"}
            )
            assert resp.status_code == 202, resp.text
            new_id = resp.headers["location"].rsplit("/", 1)[1]
            operation = wait_created(alice, new_id)
            assert operation["state"] == "failed"
            assert (operation["clonedFrom"] is None) == (op == "fork")
            assert alice.get(f"/imodels/{new_id}").json()["iModel"]["state"] == "notInitialized"
            assert_error(alice.get(f"/imodels/{new_id}/baselinefile"), 404, "BaselineFileNotFound")
            assert direct.changesets(new_id) == []
            # A failed copy can be deleted like any iModel.
            assert alice.delete(f"/imodels/{new_id}").status_code == 204


# ------------------------------------------------------------------------------------------ template


def test_create_from_template(server: Server, shared: dict[str, Any], tmp_path: Path) -> None:
    alice: httpx.Client = shared["alice"]
    itwin = new_itwin(alice)
    body = {
        "iTwinId": itwin["id"],
        "name": "From template",
        "template": {"iModelId": shared["imodel"]["id"]},
        "containersEnabled": 7,
        "geographicCoordinateSystem": {"horizontalCRSId": "EPSG:3857"},
    }
    resp = alice.post("/imodels", json=body)
    assert resp.status_code == 201, resp.text
    created = resp.json()["iModel"]
    assert created["state"] == "notInitialized"
    assert "upload" not in created["_links"]
    operation = wait_created(alice, created["id"])
    assert operation == {"state": "successful", "clonedFrom": None, "forkedFrom": None}
    got = alice.get(f"/imodels/{created['id']}").json()["iModel"]
    assert got["state"] == "initialized" and got["containersEnabled"] == 7 and got["description"] is None
    assert got["geographicCoordinateSystem"] == {"horizontalCRSId": "EPSG:3857"}
    assert identity_of(baseline_bytes(alice, created["id"]), tmp_path) == (created["id"], itwin["id"])
    baseline_only = alice.post(
        "/imodels",
        json={
            "iTwinId": itwin["id"],
            "name": "T2",
            "template": {"iModelId": shared["imodel"]["id"], "changesetId": ""},
        },
    )
    assert baseline_only.status_code == 201, baseline_only.text
    assert wait_created(alice, baseline_only.json()["iModel"]["id"])["state"] == "successful"


def test_template_errors_write_nothing(server: Server, shared: dict[str, Any]) -> None:
    alice: httpx.Client = shared["alice"]
    itwin = new_itwin(alice)
    src = shared["imodel"]["id"]

    def create(template: Any, **extra: Any) -> httpx.Response:
        return alice.post(
            "/imodels", json={"iTwinId": itwin["id"], "name": "T", "template": template, **extra}
        )

    assert_error(create({"iModelId": str(uuid.uuid4())}), 404, "iModelNotFound")
    assert_error(create({"iModelId": "nope"}), 404, "iModelNotFound")
    assert_error(create({"iModelId": src, "changesetId": "cd" * 20}), 404, "ChangesetNotFound")
    assert_error(create({"iModelId": src}, baselineFile={"size": 3}), 422, "InvalidiModelsRequest")
    assert_error(create({"iModelId": 5}), 422, "InvalidiModelsRequest")
    assert_error(create({}), 422, "InvalidiModelsRequest")
    assert_error(create("x"), 422, "InvalidiModelsRequest")
    with server.user() as mallory:
        other = new_itwin(mallory)
        resp = mallory.post(
            "/imodels", json={"iTwinId": other["id"], "name": "T", "template": {"iModelId": src}}
        )
        assert_error(resp, 404, "iModelNotFound")
        assert imodel_names(mallory, other["id"]) == []
    assert imodel_names(alice, itwin["id"]) == []


# ------------------------------------------------------------------------------------------ favorites


def test_favorites(server: Server) -> None:
    with server.user() as alice, server.user() as mallory:
        itwin = new_itwin(alice)
        other_itwin = new_itwin(alice)
        ids = [
            alice.post(
                "/imodels", json={"iTwinId": itwin["id"], "name": f"F{i}", "baselineFile": {"size": 5}}
            ).json()["iModel"]["id"]
            for i in range(3)
        ]
        elsewhere = alice.post(
            "/imodels", json={"iTwinId": other_itwin["id"], "name": "Else", "baselineFile": {"size": 5}}
        ).json()["iModel"]["id"]
        for iid in [*ids, elsewhere]:
            resp = alice.put(f"/imodels/favorites/{iid}")
            assert resp.status_code == 204, resp.text
        assert alice.put(f"/imodels/favorites/{ids[0]}").status_code == 204  # twice is fine
        listed = alice.get("/imodels/favorites", params={"iTwinId": itwin["id"]}).json()
        assert sorted(m["id"] for m in listed["iModels"]) == sorted(ids)
        assert all(set(m) == {"id", "displayName"} for m in listed["iModels"])
        assert listed["_links"]["self"]["href"].startswith(f"{server.base_url}/imodels/favorites?")
        rep = alice.get(
            "/imodels/favorites/",
            params={"iTwinId": itwin["id"]},
            headers={"Prefer": "return=representation"},
        ).json()["iModels"]
        assert {m["name"] for m in rep} == {"F0", "F1", "F2"} and all(
            m["iTwinId"] == itwin["id"] for m in rep
        )
        page = alice.get("/imodels/favorites", params={"iTwinId": itwin["id"], "$top": "2"}).json()
        assert len(page["iModels"]) == 2 and "next" in page["_links"]
        rest = alice.get(page["_links"]["next"]["href"]).json()
        assert len(rest["iModels"]) == 1
        assert alice.delete(f"/imodels/favorites/{ids[1]}").status_code == 204
        assert alice.delete(f"/imodels/favorites/{ids[1]}").status_code == 204
        left = alice.get("/imodels/favorites", params={"iTwinId": itwin["id"]}).json()["iModels"]
        assert sorted(m["id"] for m in left) == sorted([ids[0], ids[2]])
        # Another user's favorites are their own.
        bob, _ = member(server, alice, itwin["id"], READ_PERMS)
        assert bob.get("/imodels/favorites", params={"iTwinId": itwin["id"]}).json()["iModels"] == []
        assert bob.put(f"/imodels/favorites/{ids[2]}").status_code == 204
        assert [
            m["id"] for m in bob.get("/imodels/favorites", params={"iTwinId": itwin["id"]}).json()["iModels"]
        ] == [ids[2]]
        # Errors.
        err = assert_error(alice.get("/imodels/favorites"), 422, "InvalidiModelsRequest")
        assert err["details"][0]["code"] == "MissingRequiredParameter"
        assert_error(
            alice.get("/imodels/favorites", params={"iTwinId": itwin["id"], "$top": "0"}),
            422,
            "InvalidiModelsRequest",
        )
        assert_error(
            alice.get("/imodels/favorites", params={"iTwinId": str(uuid.uuid4())}), 404, "iTwinNotFound"
        )
        assert_error(mallory.get("/imodels/favorites", params={"iTwinId": itwin["id"]}), 404, "iTwinNotFound")
        assert_error(mallory.put(f"/imodels/favorites/{ids[0]}"), 404, "iModelNotFound")
        assert_error(alice.put(f"/imodels/favorites/{uuid.uuid4()}"), 404, "iModelNotFound")
        assert_error(alice.delete(f"/imodels/favorites/{uuid.uuid4()}"), 404, "iModelNotFound")


def test_recents_newest_first_at_most_25(server: Server) -> None:
    with server.user() as alice, server.user() as mallory:
        itwin = new_itwin(alice)
        ids = [
            alice.post(
                "/imodels", json={"iTwinId": itwin["id"], "name": f"R{i:02}", "baselineFile": {"size": 5}}
            ).json()["iModel"]["id"]
            for i in range(27)
        ]
        for iid in ids[:3]:
            assert alice.post(f"/imodels/recents/{iid}", json={}).status_code == 204
        listed = alice.get("/imodels/recents", params={"iTwinId": itwin["id"]}).json()
        assert [m["id"] for m in listed["iModels"]] == [ids[2], ids[1], ids[0]]
        assert alice.post(f"/imodels/recents/{ids[0]}").status_code == 204  # revisiting moves it first
        order = [
            m["id"] for m in alice.get("/imodels/recents", params={"iTwinId": itwin["id"]}).json()["iModels"]
        ]
        assert order == [ids[0], ids[2], ids[1]]
        rep = alice.get(
            "/imodels/recents",
            params={"iTwinId": itwin["id"], "$top": "2"},
            headers={"Prefer": "return=representation"},
        ).json()
        assert [m["name"] for m in rep["iModels"]] == ["R00", "R02"]
        for iid in ids[3:]:
            assert alice.post(f"/imodels/recents/{iid}").status_code == 204
        everything = alice.get("/imodels/recents", params={"iTwinId": itwin["id"], "$top": "100"}).json()[
            "iModels"
        ]
        visits = [*reversed(ids[3:]), ids[0], ids[2], ids[1]]  # newest first
        assert [m["id"] for m in everything] == visits[:25]
        assert alice.delete(f"/imodels/recents/{ids[-1]}").status_code == 204
        after = [
            m["id"] for m in alice.get("/imodels/recents", params={"iTwinId": itwin["id"]}).json()["iModels"]
        ]
        assert ids[-1] not in after and len(after) == 24
        assert_error(alice.get("/imodels/recents"), 422, "InvalidiModelsRequest")
        assert_error(mallory.post(f"/imodels/recents/{ids[0]}"), 404, "iModelNotFound")
        assert_error(mallory.get("/imodels/recents", params={"iTwinId": itwin["id"]}), 404, "iTwinNotFound")


# ----------------------------------------------------------------------------------------- thumbnails


def test_default_thumbnails(server: Server, shared: dict[str, Any]) -> None:
    alice: httpx.Client = shared["alice"]
    iid = shared["imodel"]["id"]
    small = alice.get(f"/imodels/{iid}/thumbnail", params={"size": "small"}, headers={"Accept": V2})
    assert small.status_code == 200, small.text
    assert small.headers["content-type"] == "image/png"
    assert png_dimensions(small.content) == (400, 250)
    large = alice.get(f"/imodels/{iid}/thumbnail", params={"size": "large"}, headers={"Accept": V2})
    assert png_dimensions(large.content) == (800, 500)
    assert png_dimensions(alice.get(f"/imodels/{iid}/thumbnail").content) == (400, 250)
    # A real PNG: the image data inflates to height rows of (1 + 3 * width) bytes.
    length = struct.unpack(">I", small.content[33:37])[0]
    assert small.content[37:41] == b"IDAT"
    assert len(zlib.decompress(small.content[41 : 41 + length])) == 250 * (1 + 3 * 400)
    assert_error(
        alice.get(f"/imodels/{iid}/thumbnail", params={"size": "huge"}), 422, "InvalidiModelsRequest"
    )


def real_image(kind: str, size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=kind)
    return buf.getvalue()


def decoded(data: bytes) -> tuple[tuple[int, int], tuple[int, ...]]:
    """(width, height) and the centre pixel's colour of a served thumbnail."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
        return rgb.size, tuple(rgb.getpixel((rgb.width // 2, rgb.height // 2)))  # type: ignore[arg-type]


def test_upload_thumbnail(server: Server) -> None:
    with server.user() as alice, server.user() as mallory:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        image = real_image("PNG", (1200, 900), (200, 30, 30))
        resp = alice.put(f"/imodels/{iid}/thumbnail", content=image, headers={"Content-Type": "image/png"})
        assert resp.status_code == 204, resp.text
        # Each size is served at the platform's dimensions, scaled and cropped from the upload.
        for size, box in (("small", (400, 250)), ("large", (800, 500))):
            got = alice.get(f"/imodels/{iid}/thumbnail", params={"size": size}, headers={"Accept": V2})
            assert got.status_code == 200 and got.headers["content-type"] == "image/png"
            assert decoded(got.content) == (box, (200, 30, 30))
        jpeg = real_image("JPEG", (320, 200), (20, 160, 40))
        resp = alice.put(f"/imodels/{iid}/thumbnail", content=jpeg, headers={"Content-Type": "image/jpeg"})
        assert resp.status_code == 204, resp.text
        large = alice.get(f"/imodels/{iid}/thumbnail", params={"size": "large"}).content
        assert decoded(large)[0] == (800, 500)
        assert all(abs(a - b) < 8 for a, b in zip(decoded(large)[1], (20, 160, 40), strict=True))

        # Bad uploads change nothing.
        for data, kind in (
            (b"not an image", "image/png"),
            (b"", "image/png"),
            (png(10, 10), "image/jpeg"),
            (jpeg, "image/png"),
            (png(10, 10), "text/plain"),
            (png(10, 10), ""),
        ):
            headers = {"Content-Type": kind} if kind else {}
            err = assert_error(
                alice.put(f"/imodels/{iid}/thumbnail", content=data, headers=headers),
                422,
                "InvalidiModelsRequest",
            )
            assert err["details"][0]["code"] == "InvalidThumbnailFormat", err
        big = png(10, 10) + b"\0" * (5 * 1024 * 1024)
        assert_error(
            alice.put(f"/imodels/{iid}/thumbnail", content=big, headers={"Content-Type": "image/png"}),
            413,
            "RequestTooLarge",
        )
        assert alice.get(f"/imodels/{iid}/thumbnail", params={"size": "large"}).content == large

        # Permissions: webview reads it, imodels_manage changes it; a non-member sees nothing.
        viewer, _ = member(server, alice, itwin["id"], ["imodels_webview"])
        small = alice.get(f"/imodels/{iid}/thumbnail").content
        assert decoded(small)[0] == (400, 250)
        assert viewer.get(f"/imodels/{iid}/thumbnail").content == small
        assert_error(
            viewer.put(f"/imodels/{iid}/thumbnail", content=image, headers={"Content-Type": "image/png"}),
            403,
            "InsufficientPermissions",
        )
        reader, _ = member(server, alice, itwin["id"], ["imodels_read"])
        assert_error(reader.get(f"/imodels/{iid}/thumbnail"), 403, "InsufficientPermissions")
        assert_error(mallory.get(f"/imodels/{iid}/thumbnail"), 404, "iModelNotFound")
        assert_error(
            mallory.put(f"/imodels/{iid}/thumbnail", content=image, headers={"Content-Type": "image/png"}),
            404,
            "iModelNotFound",
        )
        assert_error(alice.get(f"/imodels/{uuid.uuid4()}/thumbnail"), 404, "iModelNotFound")
        assert alice.get(f"/imodels/{iid}/thumbnail").content == small


# --------------------------------------------------------------------------------- users, permissions


def test_users_and_statistics(server: Server, direct: Direct) -> None:
    alice_id = f"alice-{uuid.uuid4().hex[:8]}"
    with server.client(server.token(alice_id, given_name="Zoe", family_name="Alpha")) as alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"])
        iid = imodel["id"]
        bob, bob_id = member(server, alice, itwin["id"], READ_PERMS)

        minimal = alice.get(f"/imodels/{iid}/users").json()
        assert sorted(u["id"] for u in minimal["users"]) == sorted([alice_id, bob_id])
        for u in minimal["users"]:
            assert set(u) == {"id", "displayName", "_links"}
            assert u["displayName"] == f"{u['id']}@example.com"
            assert u["_links"]["self"]["href"] == f"{server.base_url}/imodels/{iid}/users/{u['id']}"
        assert imodel["_links"]["creator"]["href"] == f"{server.base_url}/imodels/{iid}/users/{alice_id}"

        rep = alice.get(
            f"/imodels/{iid}/users",
            params={"$orderBy": "givenName desc"},
            headers={"Prefer": "return=representation"},
        ).json()["users"]
        assert [u["id"] for u in rep] == [alice_id, bob_id]  # "Zoe" after "Member-..."
        first = rep[0]
        assert (first["givenName"], first["surname"], first["email"]) == (
            "Zoe",
            "Alpha",
            f"{alice_id}@example.com",
        )
        assert first["statistics"] == {
            "pushedChangesetsCount": 0,
            "lastChangesetPushDate": None,
            "createdVersionsCount": 0,
            "briefcasesCount": 0,
            "applications": [],
        }
        asc = alice.get(
            f"/imodels/{iid}/users",
            params={"$orderBy": "surname asc,givenName asc"},
            headers={"Prefer": "return=representation"},
        ).json()["users"]
        assert [u["surname"] for u in asc] == sorted(u["surname"] for u in asc)
        page = alice.get(f"/imodels/{iid}/users", params={"$top": "1"}).json()
        assert len(page["users"]) == 1 and "next" in page["_links"]
        assert len(alice.get(page["_links"]["next"]["href"]).json()["users"]) == 1

        # Work in the iModel, written directly: two pushes, a named version, briefcases and locks.
        direct.push_changesets(iid, alice_id, 2)
        with direct.db.write() as session:
            session.add(
                NamedVersion(
                    imodel_id=iid, name="v1", changeset_id=None, changeset_index=0, creator_id=bob_id
                )
            )
            session.add(
                Briefcase(
                    imodel_id=iid,
                    briefcase_id=2,
                    owner_id=alice_id,
                    application_id="app-1",
                    application_name="App One",
                )
            )
            session.add(
                Briefcase(
                    imodel_id=iid,
                    briefcase_id=3,
                    owner_id=alice_id,
                    application_id="app-1",
                    application_name="App One",
                )
            )
            session.add(
                Briefcase(
                    imodel_id=iid,
                    briefcase_id=4,
                    owner_id=bob_id,
                    application_id="app-2",
                    application_name="App Two",
                )
            )
            session.add(Lock(imodel_id=iid, object_id="0x1", briefcase_id=3, lock_level="exclusive"))
            session.add(Lock(imodel_id=iid, object_id="0x20", briefcase_id=4, lock_level="shared"))
        got = alice.get(f"/imodels/{iid}/users/{alice_id}")
        assert got.status_code == 200, got.text
        user = got.json()["user"]
        stats = user["statistics"]
        assert stats["pushedChangesetsCount"] == 2 and stats["lastChangesetPushDate"].endswith("Z")
        assert (stats["createdVersionsCount"], stats["briefcasesCount"]) == (0, 2)
        assert stats["applications"] == [
            {"id": "app-1", "name": "App One", "ownsLocks": True, "ownsExclusiveRootElementLock": True}
        ]
        bob_stats = bob.get(f"/imodels/{iid}/users/{bob_id}").json()["user"]["statistics"]
        assert (
            bob_stats["pushedChangesetsCount"],
            bob_stats["createdVersionsCount"],
            bob_stats["briefcasesCount"],
        ) == (0, 1, 1)
        assert bob_stats["lastChangesetPushDate"] is None
        assert bob_stats["applications"] == [
            {"id": "app-2", "name": "App Two", "ownsLocks": True, "ownsExclusiveRootElementLock": False}
        ]
        listed = {
            u["id"]: u
            for u in alice.get(f"/imodels/{iid}/users", headers={"Prefer": "return=representation"}).json()[
                "users"
            ]
        }
        assert listed[alice_id]["statistics"] == stats

        # Errors.
        with server.user() as mallory:
            mallory_id = user_id_of(mallory)
            assert_error(alice.get(f"/imodels/{iid}/users/{mallory_id}"), 404, "UserNotFound")
            assert_error(alice.get(f"/imodels/{iid}/users/nobody"), 404, "UserNotFound")
            assert_error(mallory.get(f"/imodels/{iid}/users"), 404, "iModelNotFound")
            assert_error(mallory.get(f"/imodels/{iid}/users/{alice_id}"), 404, "iModelNotFound")
        for order in ("email", "givenName sideways", "givenName asc desc"):
            assert_error(
                alice.get(f"/imodels/{iid}/users", params={"$orderBy": order}), 422, "InvalidiModelsRequest"
            )
        assert_error(alice.get(f"/imodels/{iid}/users", params={"$top": "x"}), 422, "InvalidiModelsRequest")
        assert_error(alice.get(f"/imodels/{uuid.uuid4()}/users"), 404, "iModelNotFound")


def test_permissions(server: Server, shared: dict[str, Any]) -> None:
    alice: httpx.Client = shared["alice"]
    iid = shared["imodel"]["id"]
    resp = alice.get(f"/imodels/{iid}/permissions", headers={"Accept": V2})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "permissions": ["imodels_webview", "imodels_read", "imodels_write", "imodels_manage"]
    }
    reader, _ = member(server, alice, shared["itwin"]["id"], [*READ_PERMS, "itwins_read", "imodels_delete"])
    assert reader.get(f"/imodels/{iid}/permissions").json() == {"permissions": READ_PERMS}
    nothing, _ = member(server, alice, shared["itwin"]["id"], ["itwins_read"])
    assert_error(nothing.get(f"/imodels/{iid}/permissions"), 403, "InsufficientPermissions")
    with server.user() as mallory:
        assert_error(mallory.get(f"/imodels/{iid}/permissions"), 404, "iModelNotFound")


# ------------------------------------------------------------------------------------- empty create


def test_create_empty_from_the_seed(server: Server, tmp_path: Path) -> None:
    """An empty create copies the packaged seed: initialized at once, its own identity stamped in.

    The seed (``bim/data/empty.bim.gz``) is part of the repository and of the package, so a 503
    ``ServiceUnavailable`` here (what the server answers without it) is a broken build, never a pass.
    """
    assert SEED_PATH.is_file(), f"{SEED_PATH} is missing: the package must ship the seed (make seed)"
    with server.user() as alice:
        itwin = new_itwin(alice)
        resp = alice.post("/imodels", json={"iTwinId": itwin["id"], "name": "Empty", "description": "e"})
        assert resp.status_code == 201, resp.text
        created = resp.json()["iModel"]
        assert created["state"] == "initialized" and created["description"] == "e"
        assert created["name"] == "Empty" and created["iTwinId"] == itwin["id"]
        assert "upload" not in created["_links"]
        assert wait_created(alice, created["id"]) == {
            "state": "successful",
            "clonedFrom": None,
            "forkedFrom": None,
        }
        assert alice.get(f"/imodels/{created['id']}").json()["iModel"]["state"] == "initialized"
        assert imodel_names(alice, itwin["id"]) == ["Empty"]
        baseline = baseline_bytes(alice, created["id"])
        assert baseline[:16] == b"SQLite format 3\x00"
        assert identity_of(baseline, tmp_path) == (created["id"], itwin["id"])
        # Checkpoint 0 is that same stamped file.
        checkpoint = alice.get(f"/imodels/{created['id']}/changesets/0/checkpoint").json()["checkpoint"]
        assert checkpoint["state"] == "successful" and checkpoint["changesetIndex"] == 0
        assert checkpoint["size"] == len(baseline)
        assert httpx.get(checkpoint["_links"]["download"]["href"], timeout=30).content == baseline
        assert_error(
            alice.post("/imodels", json={"iTwinId": itwin["id"], "name": "Empty"}), 409, "iModelExists"
        )
        assert imodel_names(alice, itwin["id"]) == ["Empty"]


# ------------------------------------------------------------------- end to end with the other APIs


def push_through_api(client: httpx.Client, imodel_id: str, briefcase: int, parent: str) -> dict[str, Any]:
    """Push one changeset as the authoring client does: create, upload, complete."""
    made = make_changeset(parent, payload=64)
    data = made.data
    created = client.post(
        f"/imodels/{imodel_id}/changesets",
        json={"id": made.id, "parentId": parent, "briefcaseId": briefcase, "fileSize": len(data)},
    )
    assert created.status_code == 201, created.text
    links = created.json()["changeset"]["_links"]
    put = httpx.put(links["upload"]["href"], content=data, headers={"x-ms-blob-type": "BlockBlob"})
    assert put.status_code == 201, put.text
    done = client.patch(links["complete"]["href"], json={"state": "fileUploaded", "briefcaseId": briefcase})
    assert done.status_code == 200, done.text
    return {**done.json()["changeset"], "data": data}


def test_clone_and_statistics_with_pushed_history(server: Server, tmp_path: Path) -> None:
    with server.user() as alice:
        alice_id = user_id_of(alice)
        itwin = new_itwin(alice)
        source = new_imodel(alice, itwin["id"], name="Pushed")
        sid = source["id"]
        acquired = alice.post(f"/imodels/{sid}/briefcases", json={})
        assert acquired.status_code == 201, acquired.text
        briefcase = int(acquired.json()["briefcase"]["briefcaseId"])
        pushed: list[dict[str, Any]] = []
        for _ in range(3):
            pushed.append(push_through_api(alice, sid, briefcase, pushed[-1]["id"] if pushed else ""))
        locked = alice.patch(
            f"/imodels/{sid}/locks",
            json={
                "briefcaseId": briefcase,
                "changesetId": pushed[-1]["id"],
                "lockedObjects": [{"lockLevel": "exclusive", "objectIds": ["0x1"]}],
            },
        )
        assert locked.status_code == 200, locked.text
        version = alice.post(
            f"/imodels/{sid}/namedversions", json={"name": "v1", "changesetId": pushed[1]["id"]}
        )
        assert version.status_code == 201, version.text

        stats = alice.get(f"/imodels/{sid}/users/{alice_id}").json()["user"]["statistics"]
        assert (stats["pushedChangesetsCount"], stats["createdVersionsCount"], stats["briefcasesCount"]) == (
            3,
            1,
            1,
        )
        assert stats["lastChangesetPushDate"] is not None
        assert len(stats["applications"]) == 1
        app = stats["applications"][0]
        assert (
            app["id"]
            and app["name"]
            and app["ownsLocks"] is True
            and app["ownsExclusiveRootElementLock"] is True
        )

        resp = alice.post(
            f"/imodels/{sid}/clone", json={"iTwinId": itwin["id"], "name": "Pushed 2", "changesetIndex": 2}
        )
        assert resp.status_code == 202, resp.text
        clone_id = resp.headers["location"].rsplit("/", 1)[1]
        operation = wait_created(alice, clone_id)
        assert operation["clonedFrom"] == {"iModelId": sid, "changesetId": pushed[1]["id"]}
        listed = alice.get(
            f"/imodels/{clone_id}/changesets", headers={"Prefer": "return=representation"}
        ).json()["changesets"]
        assert [(c["id"], c["index"], c["parentId"]) for c in listed] == [
            (c["id"], c["index"], c["parentId"]) for c in pushed[:2]
        ]
        for copied, original in zip(listed, pushed[:2], strict=True):
            assert httpx.get(copied["_links"]["download"]["href"]).content == original["data"]
        checkpoint = alice.get(f"/imodels/{clone_id}/changesets/0/checkpoint").json()["checkpoint"]
        data = httpx.get(checkpoint["_links"]["download"]["href"]).content
        assert identity_of(data, tmp_path) == (clone_id, itwin["id"])
        # The clone goes on from where it was copied: the next push is index 3 on changeset 2.
        clone_briefcase = int(
            alice.post(f"/imodels/{clone_id}/briefcases", json={}).json()["briefcase"]["briefcaseId"]
        )
        third = push_through_api(alice, clone_id, clone_briefcase, pushed[1]["id"])
        assert third["index"] == 3
        clone_stats = alice.get(f"/imodels/{clone_id}/users/{alice_id}").json()["user"]["statistics"]
        # The clone took the named version at changeset 2 along with the history (made by alice).
        assert (clone_stats["pushedChangesetsCount"], clone_stats["createdVersionsCount"]) == (3, 1)
