"""Changesets on the real server: push (create, upload, complete), the linear timeline under
concurrency, lists and their filters, download links, checkpoints, extended data and groups."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import apsw
import httpx
import orjson
import pytest
from sqlalchemy import func, select

from conftest import SHARED_DATA, Server, assert_error, new_imodel, new_itwin
from support.changesets import MadeChangeset, encode, make_changeset, session_changeset
from twinbase.bim.changeset import ChangeSummary, changeset_id, read_changeset
from twinbase.bim.replay import open_for_replay
from twinbase.bim.seed import write_empty_seed
from twinbase.domain import summaries
from twinbase.errors import BlobNotFound
from twinbase.store.blobs import BlobStore, LocalBlobStore
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.db import Database
from twinbase.store.models import Changeset, ChangesetElement

REPRESENTATION = {"Prefer": "return=representation"}
MINIMAL_KEYS = {
    "id",
    "displayName",
    "description",
    "index",
    "parentId",
    "creatorId",
    "pushDateTime",
    "state",
    "containingChanges",
    "fileSize",
    "briefcaseId",
    "groupId",
    "_links",
}
FULL_KEYS = MINIMAL_KEYS | {"application", "synchronizationInfo"}
# The client's link parsers (reference §1), matched case-insensitively on "/imodels/".
CHANGESET_LINK = re.compile(r"^.*/imodels/([^/]+)/changesets/([^/]+)$", re.I)
CHECKPOINT_LINK = re.compile(r"^.*/imodels/([^/]+)/changesets/([^/]+)/checkpoint$", re.I)
USER_LINK = re.compile(r"^.*/imodels/([^/]+)/users/([^/]+)$", re.I)


def hex40() -> str:
    return secrets.token_hex(20)


def acquire(client: httpx.Client, imodel_id: str) -> int:
    resp = client.post(f"/imodels/{imodel_id}/briefcases", json={})
    assert resp.status_code == 201, resp.text
    return int(resp.json()["briefcase"]["briefcaseId"])


def create(
    client: httpx.Client, imodel_id: str, briefcase: int, parent: str, size: int, **fields: Any
) -> httpx.Response:
    body: dict[str, Any] = {"briefcaseId": briefcase, "fileSize": size, "parentId": parent}
    body.setdefault("id", hex40())
    body.update(fields)
    return client.post(f"/imodels/{imodel_id}/changesets", json=body)


def upload(changeset: dict[str, Any], data: bytes) -> None:
    link = changeset["_links"]["upload"]
    assert link["storageType"] == "azure"
    resp = httpx.put(link["href"], content=data, headers={"x-ms-blob-type": "BlockBlob"})
    assert resp.status_code == 201, resp.text


def complete(client: httpx.Client, changeset: dict[str, Any], briefcase: int) -> httpx.Response:
    return client.patch(
        changeset["_links"]["complete"]["href"], json={"state": "fileUploaded", "briefcaseId": briefcase}
    )


def push(
    client: httpx.Client,
    imodel_id: str,
    briefcase: int,
    parent: str,
    made: MadeChangeset | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Push ``made`` (a new valid changeset on ``parent`` when omitted): create, upload, complete."""
    made = made or make_changeset(parent)
    assert made.parent_id == parent, "a changeset's id hashes its parent: push it on the one it was made for"
    resp = create(client, imodel_id, briefcase, parent, len(made.data), id=made.id, **fields)
    assert resp.status_code == 201, resp.text
    created = resp.json()["changeset"]
    upload(created, made.data)
    done = complete(client, created, briefcase)
    assert done.status_code == 200, done.text
    return dict(done.json()["changeset"])


def indexes(client: httpx.Client, imodel_id: str, **params: str) -> list[int]:
    resp = client.get(f"/imodels/{imodel_id}/changesets", params=params)
    assert resp.status_code == 200, resp.text
    return [c["index"] for c in resp.json()["changesets"]]


def member(server: Server, owner: httpx.Client, itwin_id: str, *permissions: str) -> httpx.Client:
    """A new user holding a new role with exactly ``permissions`` in the iTwin."""
    name = f"member-{uuid.uuid4().hex[:8]}"
    client = server.user(name)
    assert client.get("/itwins/myprimaryaccount").status_code == 200  # recorded on first sight
    ac = f"/accesscontrol/itwins/{itwin_id}"
    role = owner.post(f"{ac}/roles", json={"displayName": f"Role {name}", "description": "test"})
    assert role.status_code == 201, role.text
    role_id = role.json()["role"]["id"]
    patched = owner.patch(f"{ac}/roles/{role_id}", json={"permissions": list(permissions)})
    assert patched.status_code == 200, patched.text
    added = owner.post(
        f"{ac}/members/users", json={"members": [{"email": f"{name}@example.com", "roleIds": [role_id]}]}
    )
    assert added.status_code == 201, added.text
    return client


@pytest.fixture(scope="module")
def chain(server: Server) -> Iterator[dict[str, Any]]:
    """One iModel with five completed changesets; tests using it must not move its tip."""
    with server.user() as alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"])
        briefcase = acquire(alice, imodel["id"])
        pushed: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        parent = ""
        for i in range(5):
            made = make_changeset(parent, payload=1000 + 517 * i)
            cs = push(alice, imodel["id"], briefcase, parent, made, description=f"change {i + 1}")
            pushed.append(cs)
            blobs.append(made.data)
            parent = cs["id"]
        yield {
            "alice": alice,
            "itwin": itwin,
            "imodel": imodel,
            "briefcase": briefcase,
            "pushed": pushed,
            "data": blobs,
        }


# ------------------------------------------------------------------------------------------- push


def test_push_flow_and_shapes(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"])
        iid = imodel["id"]
        assert imodel["lastChangesetPushDateTime"] is None
        bc = acquire(alice, iid)
        made = make_changeset("", payload=4096)
        data, cs_id = made.data, made.id
        # iTwin.js sends parentId "" for the first changeset; the authoring client leaves it out.
        resp = alice.post(
            f"/imodels/{iid}/changesets",
            json={"id": cs_id, "briefcaseId": bc, "fileSize": len(data), "containingChanges": 0},
        )
        assert resp.status_code == 201, resp.text
        created = resp.json()["changeset"]
        assert set(created) == FULL_KEYS
        assert created["id"] == cs_id and created["state"] == "waitingForFile" and created["index"] is None
        assert created["parentId"] == "" and created["description"] is None and created["groupId"] is None
        assert created["synchronizationInfo"] is None and created["briefcaseId"] == bc
        assert created["fileSize"] == len(data) and created["containingChanges"] == 0
        assert isinstance(created["application"], dict) and set(created["application"]) == {"id", "name"}
        links = created["_links"]
        assert links["download"] is None and links["currentOrPrecedingCheckpoint"] is None
        assert links["namedVersion"] is None
        assert links["complete"] == {"href": f"{server.base_url}/imodels/{iid}/changesets/{cs_id}"}
        assert links["upload"]["storageType"] == "azure" and cs_id in links["upload"]["href"]
        assert USER_LINK.match(links["creator"]["href"]).group(1) == iid  # type: ignore[union-attr]
        assert CHANGESET_LINK.match(links["self"]["href"]).groups() == (iid, cs_id)  # type: ignore[union-attr]

        # Pending: visible by id, never in a list, not addressable by index.
        assert (
            alice.get(f"/imodels/{iid}/changesets/{cs_id}").json()["changeset"]["state"] == "waitingForFile"
        )
        assert indexes(alice, iid) == []
        assert_error(alice.get(f"/imodels/{iid}/changesets/1"), 404, "ChangesetNotFound")

        upload(created, data)
        done = complete(alice, created, bc)
        assert done.status_code == 200, done.text
        first = done.json()["changeset"]
        assert first["index"] == 1 and first["state"] == "fileUploaded" and first["displayName"] == "1"
        assert first["synchronizationInfo"] is None and first["_links"]["download"] is None
        # The completion made the new tip's checkpoint: the link leads to the changeset's own.
        checkpoint_href = first["_links"]["currentOrPrecedingCheckpoint"]["href"]
        assert CHECKPOINT_LINK.match(checkpoint_href).groups() == (iid, "1")  # type: ignore[union-attr]
        # Completing again (a client retry after a lost answer) returns the same changeset unchanged.
        again = complete(alice, created, bc)
        assert again.status_code == 200 and again.json()["changeset"]["index"] == 1
        assert again.json()["changeset"]["pushDateTime"] == first["pushDateTime"]

        second_made = make_changeset(cs_id)
        posted = create(
            alice,
            iid,
            bc,
            cs_id,
            len(second_made.data),
            id=second_made.id,
            description="Second change",
            containingChanges=65,
            synchronizationInfo={"taskId": "task-1", "changedFiles": ["a.dgn", "b.dgn"]},
        )
        assert posted.status_code == 201, posted.text
        assert posted.json()["changeset"]["synchronizationInfo"] is None  # as the platform answers
        upload(posted.json()["changeset"], second_made.data)
        completed = complete(alice, posted.json()["changeset"], bc)
        assert completed.status_code == 200, completed.text
        second = completed.json()["changeset"]
        assert second["index"] == 2 and second["parentId"] == cs_id
        assert second["description"] == "Second change" and second["containingChanges"] == 65
        # The push answers carry synchronizationInfo null as the platform's do; a GET has the stored value.
        assert second["synchronizationInfo"] is None
        got = alice.get(f"/imodels/{iid}/changesets/2").json()["changeset"]
        assert got["id"] == second["id"]
        assert got["synchronizationInfo"] == {"taskId": "task-1", "changedFiles": ["a.dgn", "b.dgn"]}
        after = alice.get(f"/imodels/{iid}").json()["iModel"]
        assert after["lastChangesetPushDateTime"] is not None


def test_list_shapes_and_fresh_download_links(server: Server, chain: dict[str, Any]) -> None:
    alice, iid, pushed = chain["alice"], chain["imodel"]["id"], chain["pushed"]
    minimal = alice.get(f"/imodels/{iid}/changesets").json()
    assert [c["id"] for c in minimal["changesets"]] == [c["id"] for c in pushed]
    assert all(set(c) == MINIMAL_KEYS for c in minimal["changesets"])
    assert all(set(c["_links"]) == {"self", "creator"} for c in minimal["changesets"])
    assert minimal["_links"]["self"]["href"].startswith(f"{server.base_url}/imodels/{iid}/changesets?")
    assert "next" not in minimal["_links"]
    assert [c["parentId"] for c in minimal["changesets"]] == [""] + [c["id"] for c in pushed[:-1]]

    full = alice.get(f"/imodels/{iid}/changesets", headers=REPRESENTATION).json()["changesets"]
    again = alice.get(f"/imodels/{iid}/changesets", headers=REPRESENTATION).json()["changesets"]
    for cs, cs2, data in zip(full, again, chain["data"], strict=True):
        assert set(cs) == FULL_KEYS and cs["fileSize"] == len(data)
        href = cs["_links"]["download"]["href"]
        assert cs["_links"]["download"]["storageType"] == "azure" and cs["id"] in href
        assert href != cs2["_links"]["download"]["href"]  # every GET signs a fresh link
        got = httpx.get(href)
        assert got.status_code == 200 and got.content == data and got.headers["etag"]
        assert httpx.get(cs2["_links"]["download"]["href"]).content == data
        checkpoint = CHECKPOINT_LINK.match(cs["_links"]["currentOrPrecedingCheckpoint"]["href"])
        assert checkpoint is not None and checkpoint.groups() == (iid, str(cs["index"]))
        assert cs["_links"]["namedVersion"] is None
        assert cs["application"] is not None

    by_id = alice.get(f"/imodels/{iid}/changesets/{pushed[2]['id']}").json()["changeset"]
    by_index = alice.get(f"/imodels/{iid}/changesets/3").json()["changeset"]
    assert by_id["index"] == 3 and by_id["id"] == by_index["id"] == pushed[2]["id"]
    assert httpx.get(by_index["_links"]["download"]["href"]).content == chain["data"][2]
    assert by_id["_links"]["download"]["href"] != by_index["_links"]["download"]["href"]
    for ref in ("6", "0", hex40(), "not-a-changeset", "9" * 39, "1" * 40, "x" * 300):
        err = assert_error(alice.get(f"/imodels/{iid}/changesets/{ref}"), 404, "ChangesetNotFound")
        assert err["message"] == "Requested Changeset is not available." and "details" not in err


def test_list_filters_order_and_paging(chain: dict[str, Any]) -> None:
    alice, iid = chain["alice"], chain["imodel"]["id"]
    assert indexes(alice, iid) == [1, 2, 3, 4, 5]
    assert indexes(alice, iid, afterIndex="2") == [3, 4, 5]
    assert indexes(alice, iid, afterIndex="0") == [1, 2, 3, 4, 5]
    assert indexes(alice, iid, lastIndex="3") == [1, 2, 3]
    assert indexes(alice, iid, afterIndex="2", lastIndex="3") == [3]
    assert indexes(alice, iid, afterIndex="5") == []
    assert indexes(alice, iid, afterIndex="3", lastIndex="3") == []
    assert indexes(alice, iid, **{"$orderBy": "index desc"}) == [5, 4, 3, 2, 1]
    assert indexes(alice, iid, **{"$orderBy": "index asc"}) == [1, 2, 3, 4, 5]
    assert indexes(alice, iid, **{"$orderBy": "index"}) == [1, 2, 3, 4, 5]
    assert indexes(alice, iid, **{"$skip": "3"}) == [4, 5]
    assert indexes(alice, iid, **{"$top": "2", "$skip": "1", "$orderBy": "index desc"}) == [4, 3]
    # "Latest changeset", as iTwin.js asks for it.
    latest = alice.get(
        f"/imodels/{iid}/changesets?$top=1&$orderBy=index desc", headers=REPRESENTATION
    ).json()["changesets"]
    assert [c["index"] for c in latest] == [5] and latest[0]["_links"]["download"] is not None
    # The pull iTwin.js does, as a plain query string without encoding.
    assert indexes(alice, iid, lastIndex="4", afterIndex="1") == [2, 3, 4]

    # Following next links visits every changeset once, with the caller's filters and Prefer kept.
    seen: list[int] = []
    resp = alice.get(
        f"/imodels/{iid}/changesets", params={"$top": "2", "afterIndex": "1"}, headers=REPRESENTATION
    )
    pages = 0
    while True:
        body = resp.json()
        pages += 1
        assert all("download" in c["_links"] for c in body["changesets"])
        seen.extend(c["index"] for c in body["changesets"])
        if pages > 1:
            assert "prev" in body["_links"]
        nxt = body["_links"].get("next")
        if not nxt:
            break
        assert "afterIndex=1" in nxt["href"]
        resp = alice.get(nxt["href"], headers=REPRESENTATION)
    assert seen == [2, 3, 4, 5] and pages == 2

    for params in (
        {"afterIndex": "-1"},
        {"afterIndex": "x"},
        {"lastIndex": "1.5"},
        {"$top": "0"},
        {"$top": "1001"},
        {"$skip": "-1"},
        {"$orderBy": "name"},
        {"$orderBy": "index sideways"},
        {"$orderBy": "index asc desc"},
    ):
        assert_error(alice.get(f"/imodels/{iid}/changesets", params=params), 422, "InvalidiModelsRequest")
    assert indexes(alice, iid, **{"$top": "1000"}) == [1, 2, 3, 4, 5]


# ----------------------------------------------------------------------------------------- errors


def test_push_errors(server: Server) -> None:
    with server.user() as alice, server.user() as bob:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        bc = acquire(alice, iid)
        first = push(alice, iid, bc, "")

        # The parent must be the tip: "" (the baseline) is no longer, an unknown id never was.
        for parent in ("", hex40()):
            err = assert_error(create(alice, iid, bc, parent, 3), 409, "NewerChangesExist")
            assert "details" not in err
        # A changeset id is pushed once.
        err = assert_error(create(alice, iid, bc, "", 3, id=first["id"]), 409, "ChangesetExists")
        assert err["message"] == "Changeset with the same id already exists." and "details" not in err
        assert_error(create(alice, iid, bc, first["id"], 3, id=first["id"]), 409, "ChangesetExists")
        # Briefcases: unknown, or someone else's.
        assert_error(create(alice, iid, 999_999, first["id"], 3), 404, "BriefcaseNotFound")
        member_client = member(server, alice, itwin["id"], "imodels_webview", "imodels_read", "imodels_write")
        other_bc = acquire(member_client, iid)
        assert_error(create(alice, iid, other_bc, first["id"], 3), 404, "BriefcaseNotFound")
        # Groups.
        assert_error(
            create(alice, iid, bc, first["id"], 3, groupId=str(uuid.uuid4())), 404, "ChangesetGroupNotFound"
        )
        assert_error(create(alice, iid, bc, first["id"], 3, groupId="nope"), 404, "ChangesetGroupNotFound")

        # Completion checks the upload: missing, then the wrong size (one byte more was declared).
        made = make_changeset(first["id"])
        pending = create(alice, iid, bc, first["id"], len(made.data) + 1, id=made.id).json()["changeset"]
        err = assert_error(complete(alice, pending, bc), 422, "InvalidiModelsRequest")
        assert err["details"][0]["code"] == "InvalidChange"
        upload(pending, made.data)
        err = assert_error(complete(alice, pending, bc), 422, "InvalidiModelsRequest")
        assert err["details"][0]["code"] == "DataConflict"
        got = alice.get(f"/imodels/{iid}/changesets/{pending['id']}").json()["changeset"]
        assert got["state"] == "waitingForFile" and got["index"] is None
        assert indexes(alice, iid) == [1]
        # Another briefcase pushing on the same tip while this push is open: ConflictWithAnotherUser.
        err = assert_error(
            create(member_client, iid, other_bc, first["id"], 3), 409, "ConflictWithAnotherUser"
        )
        assert "details" not in err
        member_client.close()
        # Completion with a bad body, the wrong briefcase, or an unknown changeset.
        for body in (
            {"state": "waitingForFile", "briefcaseId": bc},
            {"state": "fileUploaded"},
            {"state": "fileUploaded", "briefcaseId": "2"},
            {"briefcaseId": bc},
        ):
            resp = alice.patch(f"/imodels/{iid}/changesets/{pending['id']}", json=body)
            assert_error(resp, 422, "InvalidiModelsRequest")
        assert_error(
            alice.patch(
                f"/imodels/{iid}/changesets/{pending['id']}",
                json={"state": "fileUploaded", "briefcaseId": other_bc},
            ),
            422,
            "InvalidiModelsRequest",
        )
        assert_error(
            alice.patch(
                f"/imodels/{iid}/changesets/{hex40()}", json={"state": "fileUploaded", "briefcaseId": bc}
            ),
            404,
            "ChangesetNotFound",
        )
        # The same create sent again (a retry) answers the same pending changeset with fresh links.
        retry = create(alice, iid, bc, first["id"], len(made.data), id=pending["id"])
        assert retry.status_code == 201, retry.text
        assert retry.json()["changeset"]["_links"]["upload"]["href"] != pending["_links"]["upload"]["href"]
        done = complete(alice, pending, bc)
        assert done.status_code == 200, done.text
        assert done.json()["changeset"]["index"] == 2
        assert done.json()["changeset"]["fileSize"] == len(made.data)

        # A user who is not a member sees nothing.
        assert_error(create(bob, iid, bc, pending["id"], 3), 404, "iModelNotFound")
        assert_error(bob.get(f"/imodels/{iid}/changesets"), 404, "iModelNotFound")
        assert_error(alice.get(f"/imodels/{uuid.uuid4()}/changesets"), 404, "iModelNotFound")
        assert_error(alice.post("/imodels/not-an-id/changesets", json={}), 404, "iModelNotFound")
        assert indexes(alice, iid) == [1, 2]


def test_bad_input_writes_nothing(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        bc = acquire(alice, iid)
        url = f"/imodels/{iid}/changesets"
        made = make_changeset("")
        good = {"id": made.id, "briefcaseId": bc, "fileSize": len(made.data), "parentId": ""}
        cases: list[tuple[dict[str, Any], str | None]] = [
            ({k: v for k, v in good.items() if k != "id"}, "id"),
            ({**good, "id": hex40().upper()}, "id"),
            ({**good, "id": hex40()[:39]}, "id"),
            ({**good, "id": 12345}, "id"),
            ({**good, "parentId": "abc"}, "parentId"),
            ({**good, "fileSize": 0}, "fileSize"),
            ({**good, "fileSize": -5}, "fileSize"),
            ({**good, "fileSize": "10"}, "fileSize"),
            ({k: v for k, v in good.items() if k != "fileSize"}, "fileSize"),
            ({**good, "briefcaseId": "2"}, "briefcaseId"),
            ({k: v for k, v in good.items() if k != "briefcaseId"}, "briefcaseId"),
            ({**good, "description": "d" * 256}, "description"),
            ({**good, "description": 5}, "description"),
            ({**good, "containingChanges": -1}, "containingChanges"),
            ({**good, "synchronizationInfo": "task"}, "synchronizationInfo"),
            ({**good, "synchronizationInfo": {"changedFiles": []}}, "synchronizationInfo.taskId"),
        ]
        for body, target in cases:
            err = assert_error(alice.post(url, json=body), 422, "InvalidiModelsRequest")
            assert err["message"] == "Cannot create Changeset."
            assert target in [d.get("target") for d in err["details"]], (body, err)
        long = assert_error(
            alice.post(url, json={**good, "description": "d" * 256}), 422, "InvalidiModelsRequest"
        )
        assert long["details"][0]["message"] == (
            "Provided 'description' value is not valid. The value exceeds allowed 255 characters."
        )
        for raw, detail in (
            (b"{not json", "InvalidRequestBody"),
            (b"[1, 2]", "InvalidRequestBody"),
            (b"", "MissingRequestBody"),
        ):
            resp = alice.post(url, content=raw, headers={"Content-Type": "application/json"})
            err = assert_error(resp, 422, "InvalidiModelsRequest")
            assert err["details"][0]["code"] == detail
        # Nothing was written: none of the ids exists, the timeline is empty, the next push is index 1.
        for body, _ in cases:
            if isinstance(body.get("id"), str):
                assert alice.get(f"{url}/{body['id']}").status_code == 404
        assert indexes(alice, iid) == []
        assert push(alice, iid, bc, "", made)["index"] == 1


def test_permissions(server: Server, chain: dict[str, Any]) -> None:
    alice, itwin_id, iid = chain["alice"], chain["itwin"]["id"], chain["imodel"]["id"]
    reader = member(server, alice, itwin_id, "imodels_webview", "imodels_read")
    viewer = member(server, alice, itwin_id, "imodels_webview")
    nothing = member(server, alice, itwin_id, "itwins_read")
    tip = chain["pushed"][-1]["id"]
    with closing(reader), closing(viewer), closing(nothing):
        # Readers read everything, files included, but cannot push.
        full = reader.get(f"/imodels/{iid}/changesets", headers=REPRESENTATION).json()["changesets"]
        assert len(full) == 5 and httpx.get(full[0]["_links"]["download"]["href"]).content == chain["data"][0]
        assert reader.get(f"/imodels/{iid}/changesets/1/checkpoint").status_code == 200
        assert_error(create(reader, iid, chain["briefcase"], tip, 3), 403, "InsufficientPermissions")
        assert_error(
            reader.patch(
                f"/imodels/{iid}/changesets/{tip}", json={"state": "fileUploaded", "briefcaseId": 2}
            ),
            403,
            "InsufficientPermissions",
        )
        assert_error(reader.post(f"/imodels/{iid}/changesetgroups", json={}), 403, "InsufficientPermissions")
        # Web viewers see the metadata without file links.
        seen = viewer.get(f"/imodels/{iid}/changesets/2").json()["changeset"]
        assert seen["index"] == 2 and seen["_links"]["download"] is None
        assert all(
            c["_links"]["download"] is None
            for c in viewer.get(f"/imodels/{iid}/changesets", headers=REPRESENTATION).json()["changesets"]
        )
        assert_error(viewer.get(f"/imodels/{iid}/changesets/2/checkpoint"), 403, "InsufficientPermissions")
        # Members without any iModel permission get 403, strangers 404.
        assert_error(nothing.get(f"/imodels/{iid}/changesets"), 403, "InsufficientPermissions")
    with server.user() as stranger:
        for resp in (
            stranger.get(f"/imodels/{iid}/changesets/1"),
            stranger.get(f"/imodels/{iid}/changesets/1/checkpoint"),
            stranger.get(f"/imodels/{iid}/changesets/extendeddata"),
            stranger.get(f"/imodels/{iid}/changesetgroups"),
            stranger.post(f"/imodels/{iid}/changesets", content=b"{bad"),
        ):
            assert_error(resp, 404, "iModelNotFound")
    assert indexes(alice, iid) == [1, 2, 3, 4, 5]


# ------------------------------------------------------------------------------------ concurrency


def _race(workers: int, fn: Any) -> list[Any]:
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers

    def run(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_concurrent_pushes_from_many_briefcases(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        bc0 = acquire(alice, iid)
        tip = push(alice, iid, bc0, "")
        n = 8
        briefcases = [acquire(alice, iid) for _ in range(n)]
        token = alice.headers["Authorization"]

        def attempt(i: int) -> tuple[str, int, str]:
            made = make_changeset(tip["id"], payload=2000 + i)
            with httpx.Client(base_url=server.base_url, headers={"Authorization": token}, timeout=60) as c:
                resp = create(c, iid, briefcases[i], tip["id"], len(made.data), id=made.id)
                if resp.status_code != 201:
                    return ("create", resp.status_code, resp.json()["error"]["code"])
                created = resp.json()["changeset"]
                upload(created, made.data)
                done = complete(c, created, briefcases[i])
                if done.status_code != 200:
                    return ("complete", done.status_code, done.json()["error"]["code"])
                return ("done", 200, created["id"])

        results = _race(n, attempt)
        winners = [r for r in results if r[0] == "done"]
        assert len(winners) == 1, results
        for r in results:
            if r[0] != "done":
                assert r[1] == 409 and r[2] in ("NewerChangesExist", "ConflictWithAnotherUser"), r
        listed = alice.get(f"/imodels/{iid}/changesets").json()["changesets"]
        assert [c["index"] for c in listed] == [1, 2]
        assert listed[1]["id"] == winners[0][2] and listed[1]["parentId"] == tip["id"]


def test_concurrent_completions_on_one_parent(server: Server) -> None:
    """Many pending changesets on the same parent (one briefcase retrying): one completion wins."""
    with server.user() as alice:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        bc = acquire(alice, iid)
        tip = push(alice, iid, bc, "")
        n = 8
        pending = []
        for i in range(n):
            made = make_changeset(tip["id"], payload=100 + i)
            created = create(alice, iid, bc, tip["id"], len(made.data), id=made.id).json()["changeset"]
            upload(created, made.data)
            pending.append(created)
        token = alice.headers["Authorization"]

        def finish(i: int) -> tuple[int, str]:
            with httpx.Client(headers={"Authorization": token}, timeout=60) as c:
                resp = complete(c, pending[i], bc)
                body = resp.json()
                return resp.status_code, body["changeset"]["id"] if resp.status_code == 200 else body[
                    "error"
                ]["code"]

        results = _race(n, finish)
        winners = [r for r in results if r[0] == 200]
        assert len(winners) == 1, results
        assert sorted(r for r in results if r[0] != 200) == [(409, "NewerChangesExist")] * (n - 1)
        listed = alice.get(f"/imodels/{iid}/changesets").json()["changesets"]
        assert [(c["index"], c["id"]) for c in listed] == [(1, tip["id"]), (2, winners[0][1])]
        for cs in pending:
            if cs["id"] != winners[0][1]:
                got = alice.get(f"/imodels/{iid}/changesets/{cs['id']}").json()["changeset"]
                assert got["state"] == "waitingForFile" and got["index"] is None
                # A loser retried later still loses: its parent is no longer the tip.
                assert_error(complete(alice, cs, bc), 409, "NewerChangesExist")
                resent = create(alice, iid, bc, tip["id"], cs["fileSize"], id=cs["id"])
                assert_error(resent, 409, "NewerChangesExist")
        # The timeline goes on from the winner.
        assert push(alice, iid, bc, winners[0][1])["index"] == 3


# ------------------------------------------------------------------------------------ checkpoints


def test_checkpoints(chain: dict[str, Any]) -> None:
    alice, iid, pushed = chain["alice"], chain["imodel"]["id"], chain["pushed"]
    baseline = alice.get(f"/imodels/{iid}/changesets/0/checkpoint")
    assert baseline.status_code == 200, baseline.text
    cp = baseline.json()["checkpoint"]
    assert cp["changesetIndex"] == 0 and cp["changesetId"] == "" and cp["state"] == "successful"
    assert cp["directoryAccessInfo"]["baseDirectory"] == f"tb-{iid}" and cp["size"] > 0
    link = cp["_links"]["download"]
    assert link["storageType"] == "azure"
    first_byte = httpx.get(link["href"], headers={"Range": "bytes=0-0"})
    assert first_byte.status_code == 206
    assert first_byte.headers["content-range"] == f"bytes 0-0/{cp['size']}"
    data = httpx.get(link["href"]).content
    assert len(data) == cp["size"] and data[:16] == b"SQLite format 3\x00"
    # Every changeset answers its own checkpoint (each completion stored it), by index or id.
    for ref, index in (("1", 1), ("5", 5), (pushed[2]["id"], 3)):
        got = alice.get(f"/imodels/{iid}/changesets/{ref}/checkpoint")
        assert got.status_code == 200, got.text
        cp = got.json()["checkpoint"]
        assert (cp["changesetIndex"], cp["changesetId"]) == (index, pushed[index - 1]["id"])
        assert cp["state"] == "successful" and cp["size"] > 0
        file = httpx.get(cp["_links"]["download"]["href"]).content
        assert len(file) == cp["size"] and file[:16] == b"SQLite format 3\x00"
    # The link in a changeset leads to a working checkpoint.
    href = alice.get(f"/imodels/{iid}/changesets/4").json()["changeset"]["_links"][
        "currentOrPrecedingCheckpoint"
    ]
    assert alice.get(href["href"]).json()["checkpoint"]["changesetIndex"] == 4
    for ref in ("6", hex40(), "abc"):
        assert_error(alice.get(f"/imodels/{iid}/changesets/{ref}/checkpoint"), 404, "ChangesetNotFound")


# ---------------------------------------------------------------------------------- extended data


def b64(value: Any) -> str:
    return base64.b64encode(orjson.dumps(value)).decode()


def test_extended_data(server: Server, chain: dict[str, Any]) -> None:
    alice, iid, pushed = chain["alice"], chain["imodel"]["id"], chain["pushed"]
    url = f"/imodels/{iid}/changesets"
    created = alice.post(f"{url}/2/extendeddata", json={"data": b64({"step": 2, "tags": ["a"]})})
    assert created.status_code == 201, created.text
    wire = created.json()["extendedData"]
    assert wire == {
        "changesetId": pushed[1]["id"],
        "changesetIndex": 2,
        "data": b64({"step": 2, "tags": ["a"]}),
    }
    assert alice.get(f"{url}/2/extendeddata").json() == {"extendedData": wire}
    assert alice.get(f"{url}/{pushed[1]['id']}/extendeddata").json() == {"extendedData": wire}
    by_id = alice.post(f"{url}/{pushed[3]['id']}/extendeddata", json={"data": b64([4])})
    assert by_id.status_code == 201 and by_id.json()["extendedData"]["changesetIndex"] == 4

    # Once per changeset; only valid base64 of JSON up to 200 KiB; only by the changeset's creator.
    assert_error(
        alice.post(f"{url}/2/extendeddata", json={"data": b64({})}), 409, "ChangesetExtendedDataExists"
    )
    for data in (
        "***not base64***",
        base64.b64encode(b"not json").decode(),
        b64({"big": "x" * (200 * 1024)}),
        12,
        None,
    ):
        assert_error(alice.post(f"{url}/3/extendeddata", json={"data": data}), 422, "InvalidiModelsRequest")
    assert_error(alice.post(f"{url}/3/extendeddata", json={}), 422, "InvalidiModelsRequest")
    near_limit = b64({"big": "x" * (200 * 1024 - 20)})
    writer = member(server, alice, chain["itwin"]["id"], "imodels_webview", "imodels_read", "imodels_write")
    with closing(writer):
        assert_error(
            writer.post(f"{url}/3/extendeddata", json={"data": b64({})}), 403, "InsufficientPermissions"
        )
    assert_error(alice.get(f"{url}/3/extendeddata"), 404, "ChangesetExtendedDataNotFound")
    assert alice.post(f"{url}/3/extendeddata", json={"data": near_limit}).status_code == 201
    assert_error(alice.post(f"{url}/9/extendeddata", json={"data": b64({})}), 404, "ChangesetNotFound")
    err = assert_error(alice.get(f"{url}/1/extendeddata"), 404, "ChangesetExtendedDataNotFound")
    assert err["message"] == "Requested Changeset Extended Data is not available."
    assert_error(alice.get(f"{url}/{hex40()}/extendeddata"), 404, "ChangesetNotFound")

    listed = alice.get(f"{url}/extendeddata").json()
    assert [e["changesetIndex"] for e in listed["extendedData"]] == [2, 3, 4]
    assert listed["_links"]["self"]["href"].startswith(f"{server.base_url}{url}/extendeddata?")
    page = alice.get(f"{url}/extendeddata", params={"$top": "2"}).json()
    assert [e["changesetIndex"] for e in page["extendedData"]] == [2, 3]
    rest = alice.get(page["_links"]["next"]["href"]).json()
    assert [e["changesetIndex"] for e in rest["extendedData"]] == [4] and "next" not in rest["_links"]
    assert_error(alice.get(f"{url}/extendeddata", params={"$top": "0"}), 422, "InvalidiModelsRequest")


# --------------------------------------------------------------------------------- changeset groups


def test_changeset_groups(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        bc = acquire(alice, iid)
        url = f"/imodels/{iid}/changesetgroups"
        resp = alice.post(url, json={"description": "Sync run 1"})
        assert resp.status_code == 201, resp.text
        group = resp.json()["changesetGroup"]
        assert set(group) == {"id", "description", "state", "creatorId", "createdDateTime", "_links"}
        assert group["state"] == "inProgress" and group["description"] == "Sync run 1"
        assert USER_LINK.match(group["_links"]["creator"]["href"]) is not None
        assert alice.get(f"{url}/{group['id']}").json() == {"changesetGroup": group}
        other = alice.post(url, json={"description": "Sync run 2"}).json()["changesetGroup"]

        first = push(alice, iid, bc, "", groupId=group["id"])
        assert first["groupId"] == group["id"]
        second = push(alice, iid, bc, first["id"])
        assert second["groupId"] is None

        done = alice.patch(f"{url}/{group['id']}", json={"state": "completed"})
        assert done.status_code == 200 and done.json()["changesetGroup"]["state"] == "completed"
        assert alice.patch(f"{url}/{group['id']}", json={"state": "completed"}).status_code == 200
        err = assert_error(
            create(alice, iid, bc, second["id"], 3, groupId=group["id"]), 422, "InvalidiModelsRequest"
        )
        assert err["details"][0]["target"] == "groupId"
        assert indexes(alice, iid) == [1, 2]

        listed = alice.get(url).json()
        assert [g["id"] for g in listed["changesetGroups"]] == [group["id"], other["id"]]
        assert [g["state"] for g in listed["changesetGroups"]] == ["completed", "inProgress"]
        page = alice.get(url, params={"$top": "1"}).json()
        assert len(page["changesetGroups"]) == 1 and "next" in page["_links"]

        for bad in ({"state": "inProgress"}, {"state": "bogus"}, {}, {"state": 1}):
            assert_error(alice.patch(f"{url}/{other['id']}", json=bad), 422, "InvalidiModelsRequest")
        assert_error(alice.post(url, json={"description": "d" * 256}), 422, "InvalidiModelsRequest")
        assert_error(alice.post(url, content=b"{oops"), 422, "InvalidiModelsRequest")
        assert len(alice.get(url).json()["changesetGroups"]) == 2
        for gid in (str(uuid.uuid4()), "nope"):
            err = assert_error(alice.get(f"{url}/{gid}"), 404, "ChangesetGroupNotFound")
            assert err["message"] == "Requested Changeset Group is not available."
            assert_error(
                alice.patch(f"{url}/{gid}", json={"state": "completed"}), 404, "ChangesetGroupNotFound"
            )


# ------------------------------------------------------------------------------ file verification
# Completion reads the uploaded file whole (header, LZMA2, session changeset) and hashes its content
# with the declared parent: a file that is not a changeset, or not the declared one, is refused
# (422), removed from its final key, and the changeset keeps waiting for the right file.


def seeded_imodel(client: httpx.Client) -> str:
    """An iModel made from twinbase's seed (no baseline upload): enough for tests of the timeline."""
    itwin = new_itwin(client)
    resp = client.post("/imodels/", json={"iTwinId": itwin["id"], "name": f"v-{uuid.uuid4().hex[:8]}"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["iModel"]["id"])


def server_blobs(server: Server) -> BlobStore:
    """The server's own blob store, opened on the side (local folder or its Azurite container)."""
    if server.blob_backend == "azure":
        from twinbase.store.blobs.azure import AzureBlobStore

        return AzureBlobStore.from_connection_string(
            server.env["TWINBASE_AZURE_CONNECTION_STRING"], server.env["TWINBASE_AZURE_CONTAINER"]
        )
    return LocalBlobStore(server.data_dir / "blobs")


def same_size_changeset(parent: str, like: MadeChangeset) -> MadeChangeset:
    """Another valid changeset on ``parent`` with exactly as many bytes as ``like`` (so it passes the
    size check and reaches the content check through the same upload link)."""
    payload = len(like.data) - len(make_changeset(parent).data)
    for _ in range(50):
        made = make_changeset(parent, payload=payload)
        if len(made.data) == len(like.data):
            assert made.id != like.id
            return made
        payload += len(like.data) - len(made.data)
    raise AssertionError(f"no changeset of {len(like.data)} bytes in 50 tries")


def timeline(client: httpx.Client, imodel_id: str) -> tuple[Any, ...]:
    """What a refused completion must not change: the list, the tip and the last push time."""
    listed = client.get(f"/imodels/{imodel_id}/changesets").json()["changesets"]
    latest = client.get(
        f"/imodels/{imodel_id}/changesets", params={"$orderBy": "index desc", "$top": "1"}
    ).json()["changesets"]
    pushed_at = client.get(f"/imodels/{imodel_id}").json()["iModel"]["lastChangesetPushDateTime"]
    return [(c["index"], c["id"]) for c in listed], [c["id"] for c in latest], pushed_at


class WaitingChangeset:
    """One changeset waiting for its file, sent file after file through its one upload link."""

    def __init__(
        self, server: Server, client: httpx.Client, imodel_id: str, briefcase: int, right: MadeChangeset
    ) -> None:
        self.client, self.imodel_id, self.briefcase, self.right = client, imodel_id, briefcase, right
        resp = create(client, imodel_id, briefcase, right.parent_id, len(right.data), id=right.id)
        assert resp.status_code == 201, resp.text
        self.changeset: dict[str, Any] = resp.json()["changeset"]
        self.link = self.changeset["_links"]["upload"]["href"]
        self.declared = len(right.data)
        self.before = timeline(client, imodel_id)
        self.blobs = server_blobs(server)
        self.final_key = blob_keys.changeset(imodel_id, right.id)
        self.db = Database(server.database_url)
        self.summary_rows = self._summary_rows()

    def close(self) -> None:
        self.db.dispose()

    def _summary_rows(self) -> int:
        with self.db.read() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(ChangesetElement)
                    .where(ChangesetElement.imodel_id == self.imodel_id)
                )
                or 0
            )

    def _send(self, data: bytes) -> httpx.Response:
        if len(data) != self.declared:
            # A client whose file changed size declares it again (the same create: the latest
            # declaration wins); the upload link it already has stays the one to use.
            again = create(
                self.client, self.imodel_id, self.briefcase, self.right.parent_id, len(data), id=self.right.id
            )
            assert again.status_code == 201, again.text
            self.declared = len(data)
        put = httpx.put(self.link, content=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=60)
        assert put.status_code == 201, (
            f"the upload link no longer accepts a file: {put.status_code} {put.text}"
        )
        return complete(self.client, self.changeset, self.briefcase)

    def refuse(self, data: bytes, code: str, target: str, *message_parts: str) -> str:
        """Upload ``data``: the completion answers 422 with one ``code`` detail on ``target`` whose
        message holds ``message_parts``, and nothing changes. Returns the detail's message."""
        err = assert_error(self._send(data), 422, "InvalidiModelsRequest")
        assert err["message"] == "Cannot update Changeset.", err
        assert len(err["details"]) == 1, err
        detail = err["details"][0]
        assert (detail["code"], detail["target"]) == (code, target), err
        for part in message_parts:
            assert part in detail["message"], (part, err)
        self.assert_untouched()
        return str(detail["message"])

    def assert_untouched(self) -> None:
        assert timeline(self.client, self.imodel_id) == self.before
        got = self.client.get(
            f"/imodels/{self.imodel_id}/changesets/{self.right.id}", headers=REPRESENTATION
        ).json()["changeset"]
        assert got["state"] == "waitingForFile" and got["index"] is None, got
        assert got["_links"]["download"] is None
        with pytest.raises(BlobNotFound):
            self.blobs.stat(self.final_key)  # the refused file is not kept under the changeset's name
        with self.db.read() as session:
            row = session.get(Changeset, (self.imodel_id, self.right.id))
            assert row is not None and row.content_sha256 is None and row.table_changes is None
        assert self._summary_rows() == self.summary_rows

    def accept(self, index: int) -> dict[str, Any]:
        """Upload the right file through the same link: the changeset completes at ``index``."""
        done = self._send(self.right.data)
        assert done.status_code == 200, done.text
        completed = done.json()["changeset"]
        assert completed["index"] == index and completed["state"] == "fileUploaded", completed
        assert completed["fileSize"] == len(self.right.data)
        got = self.client.get(f"/imodels/{self.imodel_id}/changesets/{index}", headers=REPRESENTATION)
        download = httpx.get(got.json()["changeset"]["_links"]["download"]["href"], timeout=60)
        assert download.status_code == 200 and download.content == self.right.data
        assert self.blobs.stat(self.final_key).size == len(self.right.data)
        with self.db.read() as session:
            row = session.get(Changeset, (self.imodel_id, self.right.id))
            assert row is not None and row.table_changes == {"be_Prop": [1, 0, 0]}
        return dict(completed)


@pytest.fixture
def waiting(blob_server: Server) -> Iterator[Any]:
    """``waiting(right)``: ``right`` created (waiting for its file) on a new seeded iModel; closes them."""
    client = blob_server.user()
    iid = seeded_imodel(client)
    briefcase = acquire(client, iid)
    opened: list[WaitingChangeset] = []

    def start(right: MadeChangeset) -> WaitingChangeset:
        one = WaitingChangeset(blob_server, client, iid, briefcase, right)
        opened.append(one)
        return one

    try:
        yield start
    finally:
        for one in opened:
            one.close()
        client.close()


def test_completion_refuses_the_file_of_another_changeset(waiting: Any) -> None:
    right = make_changeset("", payload=3000)
    other = same_size_changeset("", right)
    push_ = waiting(right)
    message = push_.refuse(other.data, "DataConflict", "id", other.id, right.id)
    assert message == (
        f"The uploaded file is changeset {other.id} (with no parent), not {right.id}: "
        "its bytes do not hash to the Changeset's id."
    )
    # Refused twice over the same link (the staging key is writable again each time), then accepted.
    push_.refuse(other.data, "DataConflict", "id", other.id)
    push_.accept(1)


def test_completion_refuses_a_truncated_file(waiting: Any) -> None:
    right = make_changeset("", payload=3000)
    push_ = waiting(right)
    size = len(right.data)
    # Inside the 22-byte header, the header without its LZMA2 dictionary byte, the header alone (an
    # empty LZMA2 stream), a few bytes into the stream, half of it, all but the end marker.
    for cut in (10, 22, 23, 40, size // 2, size - 1):
        message = push_.refuse(right.data[:cut], "InvalidChange", "file", "not a valid changeset")
        expected = "truncated changeset header" if cut < 23 else "the LZMA2 stream is truncated"
        assert expected in message, (cut, message)
    push_.accept(1)


def test_completion_refuses_garbage(waiting: Any) -> None:
    right = make_changeset("", payload=3000)
    push_ = waiting(right)
    size = len(right.data)
    session = session_changeset(100)
    for data, expected in (
        (os.urandom(size), "not a changeset file"),
        (b"\0" * size, "not a changeset file"),
        # 0x03 is no LZMA2 control byte; a random first byte would be the end marker 1 time in 256.
        (right.data[:23] + b"\x03" + os.urandom(size - 24), "the LZMA2 stream is corrupt"),
        (right.data + b"trailing bytes", "unexpected bytes after the end of the LZMA2 stream"),
        # A sound LZMA2 stream whose content is not a session changeset, or a cut one.
        (encode(os.urandom(200)), "session changeset is malformed"),
        (encode(session[: len(session) // 2]), "session changeset is malformed"),
    ):
        push_.refuse(data, "InvalidChange", "file", "The uploaded file is not a valid changeset: ", expected)
    push_.accept(1)


def test_completion_refuses_a_changeset_made_for_another_parent(blob_server: Server, waiting: Any) -> None:
    first = make_changeset("", payload=3000)
    head = waiting(first)
    head.accept(1)
    client, iid, briefcase = head.client, head.imodel_id, head.briefcase

    # A client that made its changeset on the baseline but pushes it on the tip: the bytes are that
    # changeset's, but with the declared parent they hash to another id. It can never complete.
    stale = make_changeset("", payload=3000)
    with read_changeset(io.BytesIO(stale.data)) as decoded:
        rehashed = decoded.changeset_id(first.id)
    declared = MadeChangeset(stale.id, first.id, stale.data)  # its own id, the tip as its parent
    stuck = WaitingChangeset(blob_server, client, iid, briefcase, declared)
    try:
        message = stuck.refuse(stale.data, "DataConflict", "id")
        assert message.startswith(f"The uploaded file is changeset {rehashed} (with parent {first.id}), ")
        assert f"not {stale.id}" in message
    finally:
        stuck.close()

    # The changeset made on the tip, sent first with a file made for another parent (the baseline).
    right = make_changeset(first.id, payload=3000)
    push_ = waiting(right)
    other = same_size_changeset("", right)
    with read_changeset(io.BytesIO(other.data)) as decoded:
        as_on_tip = decoded.changeset_id(first.id)
    push_.refuse(other.data, "DataConflict", "id", f"changeset {as_on_tip} (with parent {first.id})")
    push_.accept(2)
    listed = client.get(f"/imodels/{iid}/changesets").json()["changesets"]
    assert [(c["index"], c["id"], c["parentId"]) for c in listed] == [
        (1, first.id, ""),
        (2, right.id, first.id),
    ]
    stuck_row = client.get(f"/imodels/{iid}/changesets/{stale.id}").json()["changeset"]
    assert stuck_row["state"] == "waitingForFile" and stuck_row["index"] is None


# ---------------------------------------------------------------------------------- change summaries

CLIENTS_CHAIN = SHARED_DATA / "bim" / "chains" / "imodels-clients-test-imodel"


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


Row = tuple[int, int, str, Any]  # changeset index, element id, op, model id


def stored_summaries(server: Server, imodel_id: str) -> tuple[dict[int, Any], list[Row]]:
    """``changesets.table_changes`` by index, and every ``changeset_elements`` row, in order."""
    db = Database(server.database_url)
    try:
        with db.read() as session:
            tables = {
                int(index): changes
                for index, changes in session.execute(
                    select(Changeset.index, Changeset.table_changes).where(
                        Changeset.imodel_id == imodel_id, Changeset.index.is_not(None)
                    )
                )
            }
            rows = [
                (r.changeset_index, r.element_id, r.op, r.model_id)
                for r in session.scalars(
                    select(ChangesetElement)
                    .where(ChangesetElement.imodel_id == imodel_id)
                    .order_by(ChangesetElement.changeset_index, ChangesetElement.element_id)
                )
            ]
    finally:
        db.dispose()
    return tables, rows


def expected_rows(index: int, summary: ChangeSummary) -> list[Row]:
    """The ``changeset_elements`` rows of a changeset whose updated elements have no model on record."""
    rows = [
        (index, _signed(element), op, None if op == "u" else _signed(summary.element_models[element]))
        for op, elements in (
            ("i", summary.elements_inserted),
            ("u", summary.elements_updated),
            ("d", summary.elements_deleted),
        )
        for element in elements
    ]
    return sorted(rows, key=lambda r: r[1])


def test_change_summaries_of_a_real_chain_are_stored(server: Server) -> None:
    """Four changesets of a real chain (iTwin.js-made files, golden ids) pushed on a seeded iModel:
    completion verifies them (it does not replay) and stores what each one changed."""
    listing = json.loads((CLIENTS_CHAIN / "changesets.json").read_text())["changesets"][:4]
    with server.user() as alice:
        iid = seeded_imodel(alice)
        bc = acquire(alice, iid)
        expected_tables: dict[int, Any] = {}
        expected: list[Row] = []
        for entry in listing:
            path = CLIENTS_CHAIN / entry["fileName"]
            with read_changeset(path) as decoded:
                summary = decoded.summary
                assert decoded.changeset_id(entry["parentId"]) == entry["id"]
            data = path.read_bytes()
            made = MadeChangeset(entry["id"], entry["parentId"], data)
            pushed = push(alice, iid, bc, entry["parentId"], made, description=entry["description"])
            assert pushed["index"] == entry["index"]
            expected_tables[entry["index"]] = {
                name: [t.inserts, t.updates, t.deletes] for name, t in summary.tables.items()
            }
            expected += expected_rows(entry["index"], summary)
        tables, rows = stored_summaries(server, iid)
        assert tables == expected_tables
        assert rows == expected
        # What the files say, spelled out: each inserts one partition element into the repository model.
        assert all(t["bis_Element"] == [1, 0, 0] for t in tables.values())
        assert [(r[0], r[2], r[3]) for r in rows] == [(i, "i", 1) for i in range(1, 5)]

        db = Database(server.database_url)
        try:
            with db.read() as session:
                net = summaries.element_changes(session, iid, 0, 4)
                assert net == {"inserted": {r[1]: 1 for r in rows}, "updated": {}, "deleted": {}}
                later = summaries.element_changes(session, iid, 2, 4)
                assert later["inserted"] == {r[1]: 1 for r in rows[2:]}
        finally:
            db.dispose()


# Changesets that insert, update and delete elements, recorded on a copy of twinbase's seed (the file a
# seeded iModel starts from) with foreign keys enforced, as iTwin.js and the server's replay enforce
# them: completion applies each one to its parent's checkpoint, and what applied here applies there.
# The server stamps only the iModel's identity and be_Local into its copy, never bis_Element.
#
# What the seed holds: element 0x1, its root Subject, modelled by the RepositoryModel 0x1; in that
# model, the partitions 0xe (LinkPartition "BisCore.RealityDataSources", modelled by an empty
# LinkModel 0xe that nothing else points at) and 0x10 (DefinitionPartition "BisCore.DictionaryModel").
# Every seed element is referenced (by a model, or as a parent and code scope), so the seed element a
# changeset deletes is 0xe, after its empty model, as iTwin.js deletes a partition.
SEED_REPOSITORY_MODEL = 0x1
SEED_ROOT_SUBJECT = 0x1
SEED_REALITY_PARTITION = 0xE
SEED_DICTIONARY_PARTITION = 0x10
Statement = tuple[str, tuple[Any, ...]]
# BisCore classes by name, so no class id of this seed is written down here.
_BIS_CLASS = (
    "(SELECT c.Id FROM ec_Class c JOIN ec_Schema s ON s.Id = c.SchemaId"
    " WHERE s.Name = 'BisCore' AND c.Name = '{}')"
)


class ElementChain:
    """Valid changesets, one after the other, each recorded by an ``apsw.Session`` while SQL runs on a
    copy of the seed: every step leaves a file whose foreign keys all hold."""

    def __init__(self, path: Path) -> None:
        write_empty_seed(path)
        # DGN_* functions registered, profile checked, PRAGMA foreign_keys=ON: as the server's replay.
        self.db = open_for_replay(path)
        assert self.db.execute("PRAGMA foreign_keys").fetchone() == (1,)
        self.parent = ""

    def next(self, *steps: list[Statement]) -> MadeChangeset:
        session = apsw.Session(self.db, "main")
        session.attach()
        with self.db:  # one transaction per changeset: a failing statement leaves nothing behind
            for sql, args in (statement for step in steps for statement in step):
                self.db.execute(sql, args)
            violations = self.db.execute("PRAGMA foreign_key_check").fetchall()
            assert violations == [], violations
        data = session.changeset()
        session.close()
        made = MadeChangeset(changeset_id(self.parent, b"", data), self.parent, encode(data))
        self.parent = made.id
        return made

    def close(self) -> None:
        self.db.close()


def new_model(model: int) -> list[Statement]:
    """A LinkModel ``model`` in the repository, modelling a new LinkPartition of the same id under the
    root Subject: rows copied from the seed's RealityDataSources partition and model, code renamed."""
    return [
        (
            "INSERT INTO bis_Element(Id, ECClassId, ModelId, CodeSpecId, CodeScopeId, CodeValue,"
            " ParentId, ParentRelECClassId) SELECT ?1, ECClassId, ModelId, CodeSpecId, CodeScopeId,"
            " 'ElementChain ' || ?1, ParentId, ParentRelECClassId FROM bis_Element WHERE Id = ?2",
            (model, SEED_REALITY_PARTITION),
        ),
        (
            "INSERT INTO bis_InformationPartitionElement(ElementId, ECClassId)"
            " SELECT ?, ECClassId FROM bis_InformationPartitionElement WHERE ElementId = ?",
            (model, SEED_REALITY_PARTITION),
        ),
        (
            "INSERT INTO bis_Model(Id, ECClassId, ParentModelId, ModeledElementId,"
            " ModeledElementRelECClassId, IsPrivate, IsTemplate) SELECT ?1, ECClassId, ParentModelId, ?1,"
            " ModeledElementRelECClassId, 0, IsTemplate FROM bis_Model WHERE Id = ?2",
            (model, SEED_REALITY_PARTITION),
        ),
    ]


def insert(element: int, model: int) -> list[Statement]:
    """A UrlLink in ``model`` with an empty code (NullCodeSpec, scoped to the root Subject; NULL value,
    no FederationGuid: no unique index involved), and its row in its class's joined table."""
    url_link = _BIS_CLASS.format("UrlLink")
    return [
        (
            "INSERT INTO bis_Element(Id, ECClassId, ModelId, CodeSpecId, CodeScopeId)"
            f" VALUES(?, {url_link}, ?, (SELECT Id FROM bis_CodeSpec WHERE Name = 'bis:NullCodeSpec'), ?)",
            (element, model, SEED_ROOT_SUBJECT),
        ),
        (
            "INSERT INTO bis_InformationReferenceElement(ElementId, ECClassId, js1)"
            f" VALUES(?, {url_link}, ?)",
            (element, f"https://example.com/{element}"),
        ),
    ]


def update(element: int) -> list[Statement]:
    # bis_Element's trigger also moves LastMod: still one UPDATE of the row in the changeset.
    return [("UPDATE bis_Element SET UserLabel = hex(randomblob(4)) WHERE Id = ?", (element,))]


def delete(element: int) -> list[Statement]:
    # Its joined-table row goes with it (ON DELETE CASCADE, recorded in the changeset too).
    return [("DELETE FROM bis_Element WHERE Id = ?", (element,))]


def delete_partition(element: int) -> list[Statement]:
    """A partition and the (empty) model it models: the model first, or the element's delete fails."""
    return [("DELETE FROM bis_Model WHERE ModeledElementId = ?", (element,)), *delete(element)]


def test_element_changes_net_of_a_range(server: Server, tmp_path: Path) -> None:
    """Inserts, updates and deletes recorded at completion, with models for updates taken from the
    element's earlier insert, and ``element_changes`` netting a range of the timeline."""
    m1, m2 = 0x20, 0x21  # LinkModels the first changeset adds
    m3 = SEED_REPOSITORY_MODEL
    a, b, c, d = 0x30, 0x31, 0x32, 0x33
    high = -5  # an Id64 with its top bit set (0xfffffffffffffffb), stored signed as SQLite stores it
    e, f = SEED_DICTIONARY_PARTITION, SEED_REALITY_PARTITION  # elements of the seed, in m3
    with closing(ElementChain(tmp_path / "elements.bim")) as chain:
        made = [
            chain.next(new_model(m1), new_model(m2)),
            chain.next(insert(a, m1), insert(b, m2), insert(c, m1), insert(high, m2)),
            chain.next(update(a), delete(b), insert(d, m2), update(e)),
            chain.next(delete(d), update(c), delete_partition(f)),
            chain.next(insert(b, m2), update(high)),  # b's id used again (d then i nets to an update)
        ]
    with server.user() as alice:
        iid = seeded_imodel(alice)
        bc = acquire(alice, iid)
        for index, one in enumerate(made, start=1):
            assert push(alice, iid, bc, one.parent_id, one)["index"] == index
        tables, rows = stored_summaries(server, iid)
        assert tables == {
            1: {
                "bis_Element": [2, 0, 0],
                "bis_InformationPartitionElement": [2, 0, 0],
                "bis_Model": [2, 0, 0],
            },
            2: {"bis_Element": [4, 0, 0], "bis_InformationReferenceElement": [4, 0, 0]},
            3: {"bis_Element": [1, 2, 1], "bis_InformationReferenceElement": [1, 0, 1]},
            4: {
                "bis_Element": [0, 1, 2],
                "bis_InformationPartitionElement": [0, 0, 1],
                "bis_InformationReferenceElement": [0, 0, 1],
                "bis_Model": [0, 0, 1],
            },
            5: {"bis_Element": [1, 1, 0], "bis_InformationReferenceElement": [1, 0, 0]},
        }
        # An update's model is read from the file the completion made (a baseline element's too, e);
        # a delete's comes from its own row.
        assert sorted(rows) == sorted(
            [
                (1, m1, "i", m3), (1, m2, "i", m3),
                (2, a, "i", m1), (2, b, "i", m2), (2, c, "i", m1), (2, high, "i", m2),
                (3, a, "u", m1), (3, b, "d", m2), (3, d, "i", m2), (3, e, "u", m3),
                (4, d, "d", m2), (4, c, "u", m1), (4, f, "d", m3),
                (5, b, "i", m2), (5, high, "u", m2),
            ]
        )  # fmt: skip
        for one, index in zip(made, range(1, 6), strict=True):
            with read_changeset(io.BytesIO(one.data)) as decoded:
                summary = decoded.summary
            assert tables[index] == {n: [t.inserts, t.updates, t.deletes] for n, t in summary.tables.items()}
            assert sorted(r[1] for r in rows if r[0] == index) == sorted(
                _signed(x)
                for x in summary.elements_inserted + summary.elements_updated + summary.elements_deleted
            )

        db = Database(server.database_url)
        try:
            with db.read() as session:

                def net(after: int, last: int) -> dict[str, dict[int, int | None]]:
                    return summaries.element_changes(session, iid, after, last)

                # From the baseline: inserted then updated is inserted; inserted then deleted is absent
                # (d); inserted, deleted, inserted again is inserted (b); baseline elements stay
                # updated (e) or deleted (f).
                assert net(0, 5) == {
                    "inserted": {m1: m3, m2: m3, a: m1, b: m2, c: m1, high: m2},
                    "updated": {e: m3},
                    "deleted": {f: m3},
                }
                assert net(1, 5) == {
                    "inserted": {a: m1, b: m2, c: m1, high: m2},
                    "updated": {e: m3},
                    "deleted": {f: m3},
                }
                assert net(2, 4) == {
                    "inserted": {},
                    "updated": {a: m1, c: m1, e: m3},
                    "deleted": {b: m2, f: m3},
                }
                # Deleted then inserted again nets to an update.
                assert net(2, 5) == {
                    "inserted": {},
                    "updated": {a: m1, b: m2, c: m1, e: m3, high: m2},
                    "deleted": {f: m3},
                }
                assert net(4, 5) == {"inserted": {b: m2}, "updated": {high: m2}, "deleted": {}}
                assert net(3, 3) == {"inserted": {}, "updated": {}, "deleted": {}}
                assert net(5, 9) == {"inserted": {}, "updated": {}, "deleted": {}}
        finally:
            db.dispose()
