"""Briefcases (reference §5.3, §6) against the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from conftest import SAMPLE_BIM, Server, assert_error, new_imodel, new_itwin
from support.changesets import make_changeset

INVALID = "InvalidiModelsRequest"


# ------------------------------------------------------------------------------------------ helpers
# (test_locks.py uses these too)


def person(server: Server, prefix: str = "user") -> tuple[str, httpx.Client]:
    """A named user (id == name) and their client, already recorded by the server."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    token = server.token(name)
    with server.client(token) as first:
        assert first.get("/itwins/myprimaryaccount").status_code == 200
    return name, server.client(token)


def member(server: Server, owner: httpx.Client, itwin_id: str, *permissions: str) -> tuple[str, httpx.Client]:
    """A new user who is a member of the iTwin through a role with exactly ``permissions``."""
    name, client = person(server, "member")
    role = owner.post(
        f"/accesscontrol/itwins/{itwin_id}/roles", json={"displayName": f"R {uuid.uuid4().hex}"}
    )
    assert role.status_code == 201, role.text
    rid = role.json()["role"]["id"]
    patched = owner.patch(
        f"/accesscontrol/itwins/{itwin_id}/roles/{rid}", json={"permissions": list(permissions)}
    )
    assert patched.status_code == 200, patched.text
    added = owner.post(
        f"/accesscontrol/itwins/{itwin_id}/members/users",
        json={"members": [{"email": f"{name}@example.com", "roleIds": [rid]}]},
    )
    assert added.status_code == 201, added.text
    return name, client


WRITER = ("imodels_webview", "imodels_read", "imodels_write")
READER = ("imodels_webview", "imodels_read")


def acquire(client: httpx.Client, imodel_id: str, **body: Any) -> dict[str, Any]:
    resp = client.post(f"/imodels/{imodel_id}/briefcases", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["briefcase"])


def push_changeset(client: httpx.Client, imodel_id: str, briefcase_id: int, parent: str) -> dict[str, Any]:
    """Push one changeset the way the authoring client does: create, upload, complete."""
    made = make_changeset(parent, payload=97)
    created = client.post(
        f"/imodels/{imodel_id}/changesets",
        json={"id": made.id, "parentId": parent, "briefcaseId": briefcase_id, "fileSize": len(made.data)},
    )
    assert created.status_code == 201, created.text
    links = created.json()["changeset"]["_links"]
    put = httpx.put(links["upload"]["href"], content=made.data, headers={"x-ms-blob-type": "BlockBlob"})
    assert put.status_code == 201, put.text
    done = client.patch(
        links["complete"]["href"], json={"state": "fileUploaded", "briefcaseId": briefcase_id}
    )
    assert done.status_code == 200, done.text
    return dict(done.json()["changeset"])


def briefcase_ids(client: httpx.Client, imodel_id: str, **params: str) -> list[int]:
    resp = client.get(
        f"/imodels/{imodel_id}/briefcases", params=params, headers={"Prefer": "return=representation"}
    )
    assert resp.status_code == 200, resp.text
    return [b["briefcaseId"] for b in resp.json()["briefcases"]]


# -------------------------------------------------------------------------------------------- tests


def test_acquire_with_and_without_device_name(server: Server) -> None:
    alice_id, alice = person(server, "alice")
    with alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"])
        iid = imodel["id"]
        first = acquire(alice, iid, deviceName="Some device name")
        second = acquire(alice, iid)
        bare = alice.post(f"/imodels/{iid}/briefcases")  # no body at all
        assert bare.status_code == 201, bare.text
        third = bare.json()["briefcase"]
        assert [first["briefcaseId"], second["briefcaseId"], third["briefcaseId"]] == [2, 3, 4]
        assert first["id"] == "2" and first["displayName"]
        assert first["deviceName"] == "Some device name" and second["deviceName"] is None
        root = f"{server.base_url}/imodels/{iid}"
        for b in (first, second, third):
            assert b["ownerId"] == alice_id
            assert b["acquiredDateTime"].endswith("Z")
            assert b["fileSize"] > 0
            assert b["application"] is not None and b["application"]["id"] and b["application"]["name"]
            assert b["_links"] == {
                "owner": {"href": f"{root}/users/{alice_id}"},
                "checkpoint": {"href": f"{root}/briefcases/checkpoint"},
            }
        # The file a briefcase starts from is the latest checkpoint: here the baseline.
        cp = alice.get(first["_links"]["checkpoint"]["href"]).json()["checkpoint"]
        assert first["fileSize"] == cp["size"]
        # A trailing slash is the same resource.
        assert alice.post(f"/imodels/{iid}/briefcases/", json={}).json()["briefcase"]["briefcaseId"] == 5


def test_get_release_and_ids_never_reused(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        b = acquire(alice, iid, deviceName="laptop")
        got = alice.get(f"/imodels/{iid}/briefcases/{b['briefcaseId']}")
        assert got.status_code == 200 and got.json() == {"briefcase": b}
        for bad in ("abc", "0", "1", "999", "-2", "2.0", "99999999999999999999"):
            err = assert_error(alice.get(f"/imodels/{iid}/briefcases/{bad}"), 404, "BriefcaseNotFound")
            assert err["message"] == "Requested Briefcase is not available." and "details" not in err
        assert alice.delete(f"/imodels/{iid}/briefcases/{b['briefcaseId']}").status_code == 204
        assert_error(alice.get(f"/imodels/{iid}/briefcases/{b['briefcaseId']}"), 404, "BriefcaseNotFound")
        assert_error(alice.delete(f"/imodels/{iid}/briefcases/{b['briefcaseId']}"), 404, "BriefcaseNotFound")
        assert acquire(alice, iid)["briefcaseId"] == b["briefcaseId"] + 1
        # Briefcase ids are per iModel.
        other = new_imodel(alice, itwin["id"])["id"]
        assert acquire(alice, other)["briefcaseId"] == 2
        assert_error(alice.get(f"/imodels/{other}/briefcases/3"), 404, "BriefcaseNotFound")


def test_list_owner_order_paging_prefer(server: Server) -> None:
    _, alice = person(server, "alice")
    with alice:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        bob_id, bob = member(server, alice, itwin["id"], *WRITER)
        _, carol = member(server, alice, itwin["id"], *WRITER)
        assert briefcase_ids(carol, iid, ownerId="me") == []
        mine = [acquire(alice, iid)["briefcaseId"] for _ in range(2)]
        bobs = [acquire(bob, iid, deviceName="bob's")["briefcaseId"] for _ in range(2)]
        mine.append(acquire(alice, iid)["briefcaseId"])
        assert briefcase_ids(alice, iid) == [2, 3, 4, 5, 6]
        assert briefcase_ids(alice, iid, ownerId="me") == mine == [2, 3, 6]
        assert briefcase_ids(bob, iid, ownerId="me") == bobs == [4, 5]
        assert briefcase_ids(carol, iid, ownerId=bob_id) == bobs
        assert briefcase_ids(carol, iid, ownerId="me") == []
        assert briefcase_ids(alice, iid, **{"$orderBy": "acquiredDateTime desc"}) == [6, 5, 4, 3, 2]
        assert briefcase_ids(alice, iid, **{"$orderBy": "acquiredDateTime asc"}) == [2, 3, 4, 5, 6]
        assert briefcase_ids(alice, iid, **{"$orderBy": "acquiredDateTime"}) == [2, 3, 4, 5, 6]

        minimal = alice.get(f"/imodels/{iid}/briefcases").json()
        assert all(set(b) == {"id", "displayName"} for b in minimal["briefcases"])
        assert [b["id"] for b in minimal["briefcases"]] == ["2", "3", "4", "5", "6"]
        assert (
            alice.get(f"/imodels/{iid}/briefcases", headers={"Prefer": "return=minimal"}).json()["briefcases"]
            == minimal["briefcases"]
        )
        assert minimal["_links"]["self"]["href"].startswith(f"{server.base_url}/imodels/{iid}/briefcases?")

        # Paging: follow `next` exactly as the clients do, with the same headers.
        seen: list[int] = []
        url: str | None = f"/imodels/{iid}/briefcases?$top=2&$orderBy=acquiredDateTime desc"
        pages = 0
        while url:
            page = alice.get(url, headers={"Prefer": "return=representation"}).json()
            seen += [b["briefcaseId"] for b in page["briefcases"]]
            nxt = page["_links"].get("next")
            url = nxt["href"] if nxt else None
            pages += 1
        assert seen == [6, 5, 4, 3, 2] and pages == 3
        skipped = alice.get(f"/imodels/{iid}/briefcases", params={"$top": "2", "$skip": "4"}).json()
        assert [b["id"] for b in skipped["briefcases"]] == ["6"] and "next" not in skipped["_links"]
        assert "prev" in skipped["_links"]

        for params in ({"$orderBy": "deviceName"}, {"$orderBy": "acquiredDateTime up"}, {"$top": "0"}):
            assert_error(alice.get(f"/imodels/{iid}/briefcases", params=params), 422, INVALID)


def test_checkpoint_link_downloads_the_baseline(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        b = acquire(alice, iid)
        resp = alice.get(b["_links"]["checkpoint"]["href"])
        assert resp.status_code == 200, resp.text
        cp = resp.json()["checkpoint"]
        assert cp["changesetIndex"] == 0 and cp["changesetId"] == "" and cp["state"] == "successful"
        assert cp["_links"]["download"]["storageType"] in ("azure", "google")
        data = httpx.get(cp["_links"]["download"]["href"]).content
        baseline = alice.get(f"/imodels/{iid}/baselinefile").json()["baselineFile"]
        assert data == httpx.get(baseline["_links"]["download"]["href"]).content
        assert len(data) == cp["size"] == b["fileSize"] == SAMPLE_BIM.stat().st_size
        # After a push the latest checkpoint is the new tip's, made by the completion.
        cs = push_changeset(alice, iid, b["briefcaseId"], "")
        assert cs["index"] == 1
        after = alice.get(f"/imodels/{iid}/briefcases/checkpoint").json()["checkpoint"]
        assert (after["changesetIndex"], after["changesetId"], after["state"]) == (1, cs["id"], "successful")
        tip = httpx.get(after["_links"]["download"]["href"]).content
        assert tip[:16] == b"SQLite format 3\x00" and len(tip) == after["size"]
        assert acquire(alice, iid)["fileSize"] == after["size"]


def test_quota_per_user(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        _, bob = member(server, alice, itwin["id"], *WRITER)
        for _ in range(100):
            assert alice.post(f"/imodels/{iid}/briefcases", json={}).status_code == 201
        err = assert_error(alice.post(f"/imodels/{iid}/briefcases", json={}), 409, "ResourceQuotaExceeded")
        assert "details" not in err
        # Another user still can; releasing one makes room again, with a fresh id.
        assert acquire(bob, iid)["briefcaseId"] == 102
        assert alice.delete(f"/imodels/{iid}/briefcases/2").status_code == 204
        assert acquire(alice, iid)["briefcaseId"] == 103
        assert len(briefcase_ids(alice, iid, ownerId="me", **{"$top": "1000"})) == 100


def test_bad_input_writes_nothing(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        url = f"/imodels/{iid}/briefcases"
        headers = {"Content-Type": "application/json"}
        for raw in (b"{", b"[]", b'"x"', b'{"deviceName": 5}', b'{"deviceName": ["a"]}'):
            err = assert_error(alice.post(url, content=raw, headers=headers), 422, INVALID)
            assert err["details"], err
        long = alice.post(url, json={"deviceName": "d" * 256})
        assert assert_error(long, 422, INVALID)["details"][0]["target"] == "deviceName"
        assert briefcase_ids(alice, iid) == []
        assert acquire(alice, iid, deviceName=None, unknown="ignored")["briefcaseId"] == 2


def test_not_initialized_imodel(server: Server) -> None:
    with server.user() as alice:
        itwin = new_itwin(alice)
        created = alice.post(
            "/imodels", json={"iTwinId": itwin["id"], "name": "pending", "baselineFile": {"size": 10}}
        ).json()["iModel"]
        err = assert_error(alice.post(f"/imodels/{created['id']}/briefcases", json={}), 422, INVALID)
        assert err["details"][0]["code"] == "InvalidChange"
        assert briefcase_ids(alice, created["id"]) == []


def test_access(server: Server) -> None:
    with server.user() as alice, server.user() as mallory:
        itwin = new_itwin(alice)
        iid = new_imodel(alice, itwin["id"])["id"]
        mine = acquire(alice, iid)["briefcaseId"]
        for method, path in (
            ("POST", f"/imodels/{iid}/briefcases"),
            ("GET", f"/imodels/{iid}/briefcases"),
            ("GET", f"/imodels/{iid}/briefcases/checkpoint"),
            ("GET", f"/imodels/{iid}/briefcases/{mine}"),
            ("DELETE", f"/imodels/{iid}/briefcases/{mine}"),
        ):
            kwargs: dict[str, Any] = {"json": {}} if method == "POST" else {}
            assert_error(mallory.request(method, path, **kwargs), 404, "iModelNotFound")
            assert_error(
                alice.request(method, path.replace(iid, str(uuid.uuid4())), **kwargs), 404, "iModelNotFound"
            )

        _, reader = member(server, alice, itwin["id"], *READER)
        assert briefcase_ids(reader, iid) == [mine]
        assert reader.get(f"/imodels/{iid}/briefcases/{mine}").status_code == 200
        assert reader.get(f"/imodels/{iid}/briefcases/checkpoint").status_code == 200
        assert_error(reader.post(f"/imodels/{iid}/briefcases", json={}), 403, "InsufficientPermissions")
        assert_error(reader.delete(f"/imodels/{iid}/briefcases/{mine}"), 403, "InsufficientPermissions")
        _, viewer = member(server, alice, itwin["id"], "imodels_webview")
        assert_error(viewer.get(f"/imodels/{iid}/briefcases"), 403, "InsufficientPermissions")

        # A writer acquires and releases their own briefcase, not someone else's.
        _, bob = member(server, alice, itwin["id"], *WRITER)
        bobs = acquire(bob, iid)["briefcaseId"]
        assert_error(bob.delete(f"/imodels/{iid}/briefcases/{mine}"), 403, "InsufficientPermissions")
        assert bob.delete(f"/imodels/{iid}/briefcases/{bobs}").status_code == 204
        # imodels_manage administers everybody's briefcases.
        bobs = acquire(bob, iid)["briefcaseId"]
        assert alice.delete(f"/imodels/{iid}/briefcases/{bobs}").status_code == 204
        assert briefcase_ids(alice, iid) == [mine]
