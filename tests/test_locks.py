"""Locks (reference §5.6) against the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx

from conftest import Server, assert_error, new_imodel, new_itwin
from test_briefcases import READER, WRITER, acquire, member, push_changeset

INVALID = "InvalidiModelsRequest"
E1 = "0x20000000001"
E2 = "0x20000000002"
E3 = "0x20000000003"


def patch(
    client: httpx.Client,
    imodel_id: str,
    briefcase_id: int,
    changeset_id: str | None = None,
    **levels: list[str],
) -> httpx.Response:
    """PATCH /locks with one group per level, e.g. ``patch(c, iid, 2, exclusive=[E1], none=[E2])``."""
    body: dict[str, Any] = {
        "briefcaseId": briefcase_id,
        "lockedObjects": [{"lockLevel": level, "objectIds": ids} for level, ids in levels.items()],
    }
    if changeset_id is not None:
        body["changesetId"] = changeset_id
    return client.patch(f"/imodels/{imodel_id}/locks", json=body)


def locked(
    client: httpx.Client,
    imodel_id: str,
    briefcase_id: int,
    changeset_id: str | None = None,
    **levels: list[str],
) -> list[dict[str, Any]]:
    resp = patch(client, imodel_id, briefcase_id, changeset_id, **levels)
    assert resp.status_code == 200, resp.text
    lock = resp.json()["lock"]
    assert lock["briefcaseId"] == briefcase_id
    return list(lock["lockedObjects"])


def held(client: httpx.Client, imodel_id: str, **params: str) -> dict[int, dict[str, list[str]]]:
    """Every lock in the iModel (all pages): briefcase id -> level -> object ids."""
    out: dict[int, dict[str, list[str]]] = {}
    url: str | None = f"/imodels/{imodel_id}/locks"
    query: dict[str, str] | None = {"$top": "1000", **params}
    while url:
        resp = client.get(url, params=query)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        for entity in body["locks"]:
            assert entity["lockedObjects"], entity  # never an entity without objects
            for group in entity["lockedObjects"]:
                assert group["objectIds"], group
                out.setdefault(entity["briefcaseId"], {}).setdefault(group["lockLevel"], []).extend(
                    group["objectIds"]
                )
        nxt = body["_links"].get("next")
        url, query = (nxt["href"], None) if nxt else (None, None)
    return out


def ids(start: int, count: int) -> list[str]:
    return [f"0x{n:x}" for n in range(start, start + count)]


def setup(server: Server, briefcases: int = 2) -> tuple[httpx.Client, str, str, list[int]]:
    alice = server.user()
    itwin = new_itwin(alice)
    iid = new_imodel(alice, itwin["id"])["id"]
    return alice, itwin["id"], iid, [acquire(alice, iid)["briefcaseId"] for _ in range(briefcases)]


# -------------------------------------------------------------------------------------------- tests


def test_acquire_release_and_response_shape(server: Server) -> None:
    alice, _, iid, (b1, _) = setup(server)
    got = locked(alice, iid, b1, shared=["0xaa"], exclusive=["0xBB", E1])
    assert got == [
        {"lockLevel": "shared", "objectIds": ["0xaa"]},
        {"lockLevel": "exclusive", "objectIds": ["0xbb", E1]},
    ]
    # The answer is the briefcase's whole lock set; ids come back canonical (lower case, no leading zeros).
    assert locked(alice, iid, b1, shared=["0X000CC"]) == [
        {"lockLevel": "shared", "objectIds": ["0xaa", "0xcc"]},
        {"lockLevel": "exclusive", "objectIds": ["0xbb", E1]},
    ]
    # Asking again for what is held is a no-op; an empty request answers the current set.
    assert locked(alice, iid, b1, exclusive=["0xbb"]) == locked(alice, iid, b1)
    assert locked(alice, iid, b1, none=["0xaa", "0xbb", "0xcc", E1]) == []
    assert held(alice, iid) == {}
    err = assert_error(patch(alice, iid, b1, none=["0xaa"]), 404, "LockNotFound")
    assert err["message"] == "Requested Lock(s) is not available." and "details" not in err
    # All or nothing: one unheld object in a release keeps everything else.
    locked(alice, iid, b1, exclusive=[E1])
    assert_error(patch(alice, iid, b1, none=[E1, E2]), 404, "LockNotFound")
    assert held(alice, iid) == {b1: {"exclusive": [E1]}}


def test_shared_by_many_exclusive_by_one(server: Server) -> None:
    alice, _, iid, (b1, b2, b3) = setup(server, 3)
    locked(alice, iid, b1, shared=[E1])
    locked(alice, iid, b2, shared=[E1])
    # b3 wants E1 exclusive (held shared by b1 and b2) plus a free E2: refused as a whole.
    resp = patch(alice, iid, b3, exclusive=[E2, E1])
    err = assert_error(resp, 409, "ConflictWithAnotherUser")
    assert err["message"] == "Lock(s) is owned by another Briefcase." and "details" not in err
    assert err["conflictingLocks"] == [{"objectId": E1, "lockLevel": "shared", "briefcaseIds": [b1, b2]}]
    assert held(alice, iid) == {b1: {"shared": [E1]}, b2: {"shared": [E1]}}
    # A shared holder cannot upgrade while another briefcase shares the object.
    err = assert_error(patch(alice, iid, b1, exclusive=[E1]), 409, "ConflictWithAnotherUser")
    assert err["conflictingLocks"] == [{"objectId": E1, "lockLevel": "shared", "briefcaseIds": [b2]}]
    # Once it is the sole holder it may.
    locked(alice, iid, b2, none=[E1])
    assert locked(alice, iid, b1, exclusive=[E1]) == [{"lockLevel": "exclusive", "objectIds": [E1]}]
    for other in (b2, b3):
        for level in ("shared", "exclusive"):
            err = assert_error(patch(alice, iid, other, **{level: [E1]}), 409, "ConflictWithAnotherUser")
            assert err["conflictingLocks"] == [
                {"objectId": E1, "lockLevel": "exclusive", "briefcaseIds": [b1]}
            ]
    # Downgrading to shared lets others share again.
    assert locked(alice, iid, b1, shared=[E1]) == [{"lockLevel": "shared", "objectIds": [E1]}]
    locked(alice, iid, b3, shared=[E1])
    assert held(alice, iid) == {b1: {"shared": [E1]}, b3: {"shared": [E1]}}
    assert held(alice, iid, briefcaseId=str(b3)) == {b3: {"shared": [E1]}}


def test_errors(server: Server) -> None:
    alice, itwin_id, iid, (b1,) = setup(server, 1)
    for bad in (0, 1, 999, -5, 2**40):
        err = assert_error(patch(alice, iid, bad, shared=[E1]), 404, "BriefcaseNotFound")
        assert err["message"] == "Requested Briefcase is not available." and "details" not in err
    err = assert_error(patch(alice, iid, b1, "f" * 40, shared=[E1]), 404, "ChangesetNotFound")
    assert err["message"] == "Requested Changeset is not available."
    assert_error(patch(alice, iid, b1, "invalid changeset id", shared=[E1]), 404, "ChangesetNotFound")
    assert_error(patch(alice, str(uuid.uuid4()), b1, shared=[E1]), 404, "iModelNotFound")
    assert_error(patch(alice, "invalid iModel id", b1, shared=[E1]), 404, "iModelNotFound")
    # A briefcase of another iModel is unknown here.
    other = new_imodel(alice, itwin_id)["id"]
    assert [acquire(alice, other)["briefcaseId"] for _ in range(2)] == [b1, b1 + 1]
    assert_error(patch(alice, iid, b1 + 1, shared=[E1]), 404, "BriefcaseNotFound")
    assert held(alice, iid) == {} and held(alice, other) == {}


def test_access(server: Server) -> None:
    alice, itwin_id, iid, (b1,) = setup(server, 1)
    locked(alice, iid, b1, exclusive=[E1])
    with server.user() as mallory:
        assert_error(patch(mallory, iid, b1, none=[E1]), 404, "iModelNotFound")
        assert_error(mallory.get(f"/imodels/{iid}/locks"), 404, "iModelNotFound")
        assert_error(mallory.get(f"/imodels/{iid}/locks/released-locks"), 404, "iModelNotFound")
        assert_error(
            mallory.post(f"/imodels/{iid}/locks/release-chunk", json={"briefcaseId": b1}),
            404,
            "iModelNotFound",
        )
    _, reader = member(server, alice, itwin_id, *READER)
    assert held(reader, iid) == {b1: {"exclusive": [E1]}}
    assert reader.get(f"/imodels/{iid}/locks/released-locks").status_code == 200
    assert_error(patch(reader, iid, b1, shared=[E2]), 403, "InsufficientPermissions")
    assert_error(patch(reader, iid, b1, none=[E1]), 403, "InsufficientPermissions")
    assert_error(
        reader.post(f"/imodels/{iid}/locks/release-chunk", json={"briefcaseId": b1}),
        403,
        "InsufficientPermissions",
    )
    _, viewer = member(server, alice, itwin_id, "imodels_webview")
    assert_error(viewer.get(f"/imodels/{iid}/locks"), 403, "InsufficientPermissions")
    # A writer uses their own briefcase only.
    _, bob = member(server, alice, itwin_id, *WRITER)
    bobs = acquire(bob, iid)["briefcaseId"]
    assert_error(patch(bob, iid, b1, shared=[E2]), 403, "InsufficientPermissions")
    assert_error(patch(bob, iid, b1, none=[E1]), 403, "InsufficientPermissions")
    assert_error(
        bob.post(f"/imodels/{iid}/locks/release-chunk", json={"briefcaseId": b1}),
        403,
        "InsufficientPermissions",
    )
    assert locked(bob, iid, bobs, shared=[E2]) == [{"lockLevel": "shared", "objectIds": [E2]}]
    # imodels_manage administers other users' locks: it may release them, never acquire for them.
    assert_error(patch(alice, iid, bobs, exclusive=[E3]), 403, "InsufficientPermissions")
    assert locked(alice, iid, bobs, none=[E2]) == []
    assert held(alice, iid) == {b1: {"exclusive": [E1]}}


def test_bad_input_writes_nothing(server: Server) -> None:
    alice, _, iid, (b1,) = setup(server, 1)
    url = f"/imodels/{iid}/locks"
    good = {"briefcaseId": b1, "lockedObjects": [{"lockLevel": "exclusive", "objectIds": [E1]}]}
    bodies: list[Any] = [
        {"lockedObjects": good["lockedObjects"]},
        {"briefcaseId": b1},
        {"briefcaseId": str(b1), "lockedObjects": good["lockedObjects"]},
        {"briefcaseId": True, "lockedObjects": good["lockedObjects"]},
        {"briefcaseId": b1, "changesetId": 5, "lockedObjects": good["lockedObjects"]},
        {"briefcaseId": b1, "lockedObjects": {"lockLevel": "shared", "objectIds": [E1]}},
        {"briefcaseId": b1, "lockedObjects": [{"objectIds": [E1]}]},
        {"briefcaseId": b1, "lockedObjects": [{"lockLevel": "exclusive"}]},
        {"briefcaseId": b1, "lockedObjects": [{"lockLevel": "exclusive", "objectIds": E1}]},
        {"briefcaseId": b1, "lockedObjects": [{"lockLevel": "exclusive", "objectIds": [17]}]},
        [good],
        "x",
    ]
    for body in bodies:
        assert_error(alice.patch(url, json=body), 422, INVALID)
    for raw in (b"", b"{", b'{"briefcaseId": 2,'):
        assert_error(
            alice.patch(url, content=raw, headers={"Content-Type": "application/json"}), 422, INVALID
        )

    def content_error(*groups: dict[str, Any]) -> None:
        # Valid JSON types, invalid content: one InvalidValue detail on `lockedObjects`, nothing written.
        resp = alice.patch(url, json={"briefcaseId": b1, "lockedObjects": list(groups)})
        err = assert_error(resp, 422, INVALID)
        assert [(d["code"], d.get("target")) for d in err["details"]] == [("InvalidValue", "lockedObjects")]

    for bad_id in ("zz", "0x", "0xg1", "20000000001", "0x0", "0x" + "1" * 17, " 0x1", "0x1 ", ""):
        content_error({"lockLevel": "exclusive", "objectIds": [E1, bad_id]})
    for level in ("locked", "", "read"):
        content_error({"lockLevel": level, "objectIds": [E1]})
    content_error(
        {"lockLevel": "exclusive", "objectIds": ids(1, 600)},
        {"lockLevel": "shared", "objectIds": ids(601, 401)},
    )
    content_error(
        {"lockLevel": "exclusive", "objectIds": [E1]},
        {"lockLevel": "shared", "objectIds": ["0x020000000001"]},
    )
    assert held(alice, iid) == {}
    # Exactly 1000 is fine, and the lock level is not case sensitive.
    assert locked(alice, iid, b1, Exclusive=ids(1, 1000))[0]["objectIds"] == ids(1, 1000)


def test_newer_changes_exist(server: Server) -> None:
    alice, _, iid, (b1, b2) = setup(server)
    assert locked(alice, iid, b1, "", exclusive=[E1, E2])
    cs1 = push_changeset(alice, iid, b1, "")
    cs2 = push_changeset(alice, iid, b1, cs1["id"])
    assert (cs1["index"], cs2["index"]) == (1, 2)
    # The 6.0.x client releases after a push with the new changeset id: E1 and E2 were changed in cs2.
    assert locked(alice, iid, b1, cs2["id"], none=[E1, E2]) == []
    for stale in ("", cs1["id"]):
        err = assert_error(
            patch(alice, iid, b2, stale, shared=[E3], exclusive=[E2, E1]), 409, "NewerChangesExist"
        )
        assert err["message"] == "One or more objects have been locked in a newer Changeset."
        assert err["objectIds"] == [E2, E1] and "details" not in err
    assert held(alice, iid) == {}
    # Up to date: granted. Without a changesetId nothing can be checked.
    assert locked(alice, iid, b2, cs2["id"], exclusive=[E1]) == [
        {"lockLevel": "exclusive", "objectIds": [E1]}
    ]
    assert locked(alice, iid, b1, shared=[E2]) == [{"lockLevel": "shared", "objectIds": [E2]}]
    # A release with an older changeset never lowers the recorded index (abandonAllLocks sends "").
    assert locked(alice, iid, b2, "", none=[E1]) == []
    assert_error(patch(alice, iid, b1, cs1["id"], exclusive=[E1]), 409, "NewerChangesExist")
    # Shared releases are not recorded: E3 was only ever shared.
    locked(alice, iid, b1, cs2["id"], shared=[E3])
    locked(alice, iid, b1, cs2["id"], none=[E3])
    locked(alice, iid, b2, "", shared=[E3])

    def released(**params: str) -> list[str]:
        resp = alice.get(f"/imodels/{iid}/locks/released-locks", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert "self" in body["_links"]
        assert all(group["lockLevel"] == "exclusive" for group in body["releasedLocks"])
        return [o for group in body["releasedLocks"] for o in group["objectIds"]]

    assert released(afterChangesetIndex="0") == [E1, E2]
    assert released(afterChangesetIndex="1") == [E1, E2]
    assert released(afterChangesetIndex="2") == []
    assert released() == [E1, E2]
    page = alice.get(f"/imodels/{iid}/locks/released-locks", params={"afterChangesetIndex": "0", "$top": "1"})
    assert page.json()["releasedLocks"] == [{"lockLevel": "exclusive", "objectIds": [E1]}]
    assert httpx.get(page.json()["_links"]["next"]["href"], headers=alice.headers).json()[
        "releasedLocks"
    ] == [{"lockLevel": "exclusive", "objectIds": [E2]}]
    for bad in ("-1", "x", "1.5"):
        assert_error(
            alice.get(f"/imodels/{iid}/locks/released-locks", params={"afterChangesetIndex": bad}),
            422,
            INVALID,
        )


def test_newer_changes_exist_for_a_lock_held_at_a_newer_changeset(server: Server) -> None:
    alice, _, iid, (b1, b2) = setup(server)
    cs1 = push_changeset(alice, iid, b1, "")
    locked(alice, iid, b1, cs1["id"], shared=["0x5"])
    err = assert_error(patch(alice, iid, b2, "", shared=["0x5"]), 409, "NewerChangesExist")
    assert err["objectIds"] == ["0x5"]


def test_release_loop_of_the_6_0_client_terminates(server: Server) -> None:
    alice, _, iid, (b1, b2) = setup(server)
    locked(alice, iid, b1, shared=ids(0x100, 150), exclusive=ids(0x1000, 180))
    locked(alice, iid, b2, shared=ids(0x100, 3))
    cs = push_changeset(alice, iid, b1, "")
    # BackendIModelsAccess.releaseAllLocks (6.0.2): take the first page of GET /locks?briefcaseId=,
    # PATCH every entity's objects to `none`, and repeat until a page comes back empty.
    rounds = 0
    while True:
        page = alice.get(f"/imodels/{iid}/locks", params={"briefcaseId": str(b1)})
        assert page.status_code == 200, page.text
        entities = page.json()["locks"]
        if not entities:
            break
        rounds += 1
        assert rounds <= 10, "the release loop does not terminate"
        for entity in entities:
            assert entity["briefcaseId"] == b1 and entity["lockedObjects"]
            groups = [{"lockLevel": "none", "objectIds": g["objectIds"]} for g in entity["lockedObjects"]]
            resp = alice.patch(
                f"/imodels/{iid}/locks",
                json={"briefcaseId": b1, "changesetId": cs["id"], "lockedObjects": groups},
            )
            assert resp.status_code == 200, resp.text
    assert rounds == 4  # 330 objects, pages of 100 (the default $top counts object ids)
    assert held(alice, iid) == {b2: {"shared": ids(0x100, 3)}}
    after = alice.get(f"/imodels/{iid}/locks/released-locks", params={"afterChangesetIndex": "0"}).json()
    assert after["releasedLocks"] == [{"lockLevel": "exclusive", "objectIds": ids(0x1000, 100)}]


def test_released_locks_lists_only_releases_with_a_pushed_changeset(server: Server) -> None:
    """Bentley's management LockOperations suite: locks released by release-chunk (no changeset) and
    by a PATCH to ``none`` without a changeset are not released locks; those released together with a
    pushed changeset are."""
    alice, _, iid, (b1, b2) = setup(server)
    cs1 = push_changeset(alice, iid, b1, "")
    cs2 = push_changeset(alice, iid, b1, cs1["id"])
    # release-chunk without a changeset, then PATCH to none without one and with the baseline "".
    locked(alice, iid, b1, exclusive=["0xdd", "0xee", "0xff"])
    resp = alice.post(f"/imodels/{iid}/locks/release-chunk", json={"briefcaseId": b1})
    assert resp.json() == {"isLastChunk": True}
    locked(alice, iid, b1, exclusive=["0xb1", "0xb2"])
    assert locked(alice, iid, b1, none=["0xb1"]) == [{"lockLevel": "exclusive", "objectIds": ["0xb2"]}]
    assert locked(alice, iid, b1, "", none=["0xb2"]) == []
    # Released together with a pushed changeset (index 1 while the tip is 2).
    locked(alice, iid, b2, exclusive=["0xa1", "0xa2"])
    assert locked(alice, iid, b2, cs1["id"], none=["0xa1", "0xa2"]) == []

    def released(**params: str) -> list[dict[str, Any]]:
        resp = alice.get(f"/imodels/{iid}/locks/released-locks", params=params)
        assert resp.status_code == 200, resp.text
        return list(resp.json()["releasedLocks"])

    expected = [{"lockLevel": "exclusive", "objectIds": ["0xa1", "0xa2"]}]
    assert released(afterChangesetIndex="0") == expected
    assert released() == expected
    assert released(afterChangesetIndex="1") == []
    # The unlisted releases still guard acquisition: they happened at the tip (index 2).
    err = assert_error(patch(alice, iid, b2, cs1["id"], exclusive=["0xdd", "0xb1"]), 409, "NewerChangesExist")
    assert err["objectIds"] == ["0xdd", "0xb1"]
    # Released again with the pushed tip changeset: now listed at index 2.
    locked(alice, iid, b2, cs2["id"], exclusive=["0xdd"])
    assert locked(alice, iid, b2, cs2["id"], none=["0xdd"]) == []
    assert released(afterChangesetIndex="1") == [{"lockLevel": "exclusive", "objectIds": ["0xdd"]}]
    # A briefcase deleted with its locks pushes nothing either.
    locked(alice, iid, b1, cs2["id"], exclusive=["0xc1"])
    assert alice.delete(f"/imodels/{iid}/briefcases/{b1}").status_code == 204
    assert released(afterChangesetIndex="1") == [{"lockLevel": "exclusive", "objectIds": ["0xdd"]}]


def test_release_chunk_loop(server: Server) -> None:
    alice, _, iid, (b1, b2) = setup(server)
    for start in (0x10000, 0x20000, 0x30000):
        locked(alice, iid, b1, exclusive=ids(start, 1000 if start < 0x30000 else 500))
    locked(alice, iid, b2, shared=[E1])
    cs = push_changeset(alice, iid, b1, "")
    url = f"/imodels/{iid}/locks/release-chunk"
    answers = []
    while True:
        resp = alice.post(url, json={"briefcaseId": b1, "changesetId": cs["id"]})
        assert resp.status_code == 200, resp.text
        answers.append(resp.json())
        if resp.json()["isLastChunk"]:
            break
        assert len(answers) < 10
    assert answers == [{"isLastChunk": False}, {"isLastChunk": False}, {"isLastChunk": True}]
    assert held(alice, iid) == {b2: {"shared": [E1]}}
    assert alice.post(url, json={"briefcaseId": b1}).json() == {"isLastChunk": True}
    released = alice.get(f"/imodels/{iid}/locks/released-locks", params={"$top": "1000"}).json()
    assert len(released["releasedLocks"][0]["objectIds"]) == 1000 and "next" in released["_links"]
    for body in ({}, {"briefcaseId": "2"}, {"briefcaseId": b1, "changesetId": 1}):
        assert_error(alice.post(url, json=body), 422, INVALID)
    assert_error(alice.post(url, content=b"{", headers={"Content-Type": "application/json"}), 422, INVALID)
    assert_error(alice.post(url, json={"briefcaseId": 999}), 404, "BriefcaseNotFound")
    assert_error(alice.post(url, json={"briefcaseId": b1, "changesetId": "a" * 40}), 404, "ChangesetNotFound")


def test_list_filters_and_paging(server: Server) -> None:
    alice, _, iid, (b1, b2, b3) = setup(server, 3)
    locked(alice, iid, b1, shared=["0x1", "0x2"], exclusive=["0xa", "0x10", "0xb"])
    locked(alice, iid, b2, shared=["0x1", "0x2"])
    locked(alice, iid, b3, exclusive=["0x30"])
    body = alice.get(f"/imodels/{iid}/locks").json()
    assert body["locks"] == [
        {
            "briefcaseId": b1,
            "lockedObjects": [
                {"lockLevel": "shared", "objectIds": ["0x1", "0x2"]},
                {"lockLevel": "exclusive", "objectIds": ["0xa", "0xb", "0x10"]},
            ],
        },
        {"briefcaseId": b2, "lockedObjects": [{"lockLevel": "shared", "objectIds": ["0x1", "0x2"]}]},
        {"briefcaseId": b3, "lockedObjects": [{"lockLevel": "exclusive", "objectIds": ["0x30"]}]},
    ]
    assert body["_links"]["self"]["href"].startswith(f"{server.base_url}/imodels/{iid}/locks?")
    assert "next" not in body["_links"]
    # `lockLevel` filters the objects inside each briefcase's entity; entities left empty are dropped.
    assert held(alice, iid, lockLevel="shared") == {
        b1: {"shared": ["0x1", "0x2"]},
        b2: {"shared": ["0x1", "0x2"]},
    }
    assert held(alice, iid, lockLevel="exclusive") == {
        b1: {"exclusive": ["0xa", "0xb", "0x10"]},
        b3: {"exclusive": ["0x30"]},
    }
    assert held(alice, iid, briefcaseId=str(b2), lockLevel="exclusive") == {}
    assert alice.get(f"/imodels/{iid}/locks", params={"briefcaseId": "500"}).json()["locks"] == []
    assert alice.get(f"/imodels/{iid}/locks", params={"briefcaseId": str(2**40)}).json()["locks"] == []
    # `$top` counts object ids, across entities.
    first = alice.get(f"/imodels/{iid}/locks", params={"$top": "3"}).json()
    assert first["locks"] == [
        {
            "briefcaseId": b1,
            "lockedObjects": [
                {"lockLevel": "shared", "objectIds": ["0x1", "0x2"]},
                {"lockLevel": "exclusive", "objectIds": ["0xa"]},
            ],
        }
    ]
    second = httpx.get(first["_links"]["next"]["href"], headers=alice.headers).json()
    assert second["locks"][0] == {
        "briefcaseId": b1,
        "lockedObjects": [{"lockLevel": "exclusive", "objectIds": ["0xb", "0x10"]}],
    }
    assert second["locks"][1]["briefcaseId"] == b2
    # Paging through everything gives exactly what is held.
    assert held(alice, iid, **{"$top": "1"}) == held(alice, iid)
    for params in (
        {"briefcaseId": "abc"},
        {"lockLevel": "none"},
        {"lockLevel": "x"},
        {"$top": "1001"},
        {"$skip": "-1"},
    ):
        assert_error(alice.get(f"/imodels/{iid}/locks", params=params), 422, INVALID)


def test_releasing_a_briefcase_releases_its_locks(server: Server) -> None:
    alice, _, iid, (b1, b2) = setup(server)
    locked(alice, iid, b1, shared=[E1], exclusive=[E2])
    locked(alice, iid, b2, shared=[E1])
    assert alice.delete(f"/imodels/{iid}/briefcases/{b1}").status_code == 204
    assert held(alice, iid) == {b2: {"shared": [E1]}}
    assert locked(alice, iid, b2, exclusive=[E1, E2]) == [{"lockLevel": "exclusive", "objectIds": [E1, E2]}]
    assert_error(patch(alice, iid, b1, shared=[E3]), 404, "BriefcaseNotFound")


def test_parallel_exclusive_requests_have_one_winner(server: Server) -> None:
    n = 8
    alice, _, iid, briefcases = setup(server, n)
    token = alice.headers["Authorization"]
    barrier = threading.Barrier(n)
    results: dict[int, httpx.Response] = {}

    def request(briefcase_id: int) -> None:
        with httpx.Client(base_url=server.base_url, headers={"Authorization": token}, timeout=60) as client:
            barrier.wait()
            results[briefcase_id] = patch(client, iid, briefcase_id, exclusive=[E1, E2])

    threads = [threading.Thread(target=request, args=(b,)) for b in briefcases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [b for b, r in results.items() if r.status_code == 200]
    assert len(winners) == 1, {b: r.text for b, r in results.items()}
    for b, resp in results.items():
        if b != winners[0]:
            err = assert_error(resp, 409, "ConflictWithAnotherUser")
            assert err["conflictingLocks"] == [
                {"objectId": E1, "lockLevel": "exclusive", "briefcaseIds": winners},
                {"objectId": E2, "lockLevel": "exclusive", "briefcaseIds": winners},
            ]
    assert held(alice, iid) == {winners[0]: {"exclusive": [E1, E2]}}

    # Shared requests in parallel all succeed.
    locked(alice, iid, winners[0], none=[E1, E2])
    barrier = threading.Barrier(n)
    results.clear()

    def share(briefcase_id: int) -> None:
        with httpx.Client(base_url=server.base_url, headers={"Authorization": token}, timeout=60) as client:
            barrier.wait()
            results[briefcase_id] = patch(client, iid, briefcase_id, shared=[E3])

    threads = [threading.Thread(target=share, args=(b,)) for b in briefcases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in results.values()), [r.text for r in results.values()]
    assert held(alice, iid) == {b: {"shared": [E3]} for b in briefcases}
