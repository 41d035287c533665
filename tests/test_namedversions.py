"""Named versions on the real server: create on the baseline or a changeset, list filters and order,
updates (hide, rename, describe), checkpoints, errors, access, and concurrent creates."""

from __future__ import annotations

import re
import uuid
from contextlib import closing
from typing import Any

import httpx

from conftest import Server, assert_error, new_imodel, new_itwin
from test_changesets import CHANGESET_LINK, USER_LINK, _race, acquire, create, hex40, member, push

REPRESENTATION = {"Prefer": "return=representation"}
MINIMAL_KEYS = {"id", "displayName", "changesetId", "changesetIndex"}
FULL_KEYS = MINIMAL_KEYS | {"name", "description", "createdDateTime", "state", "application", "_links"}
NAMED_VERSION_LINK = re.compile(r"^.*/imodels/([^/]+)/namedversions/([^/]+)$", re.I)


def history(client: httpx.Client, changesets: int) -> tuple[str, str, list[dict[str, Any]]]:
    """A new iTwin and iModel with ``changesets`` completed changesets: (iTwin id, iModel id, changesets)."""
    itwin = new_itwin(client)
    iid = new_imodel(client, itwin["id"])["id"]
    bc = acquire(client, iid)
    pushed: list[dict[str, Any]] = []
    parent = ""
    for _ in range(changesets):
        cs = push(client, iid, bc, parent)
        pushed.append(cs)
        parent = cs["id"]
    return itwin["id"], iid, pushed


def make(client: httpx.Client, iid: str, **body: Any) -> dict[str, Any]:
    resp = client.post(f"/imodels/{iid}/namedversions", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["namedVersion"])


def names(client: httpx.Client, iid: str, **params: str) -> list[str]:
    resp = client.get(f"/imodels/{iid}/namedversions", params=params)
    assert resp.status_code == 200, resp.text
    return [nv["displayName"] for nv in resp.json()["namedVersions"]]


def test_create_get_and_shapes(server: Server) -> None:
    with server.user() as alice:
        _, iid, pushed = history(alice, 3)
        base = make(alice, iid, name="Baseline")
        assert set(base) == FULL_KEYS
        assert base["name"] == base["displayName"] == "Baseline" and base["description"] is None
        assert base["changesetId"] is None and base["changesetIndex"] == 0 and base["state"] == "visible"
        assert base["_links"]["changeset"] is None
        assert USER_LINK.match(base["_links"]["creator"]["href"]) is not None
        assert isinstance(base["application"], dict) and set(base["application"]) == {"id", "name"}
        assert base["createdDateTime"].endswith("Z")

        v2 = make(alice, iid, name="Version 2", description="second", changesetId=pushed[1]["id"])
        assert v2["changesetId"] == pushed[1]["id"] and v2["changesetIndex"] == 2
        assert v2["description"] == "second"
        link = CHANGESET_LINK.match(v2["_links"]["changeset"]["href"])
        assert link is not None and link.groups() == (iid, pushed[1]["id"])
        assert alice.get(v2["_links"]["changeset"]["href"]).json()["changeset"]["index"] == 2
        v3 = make(alice, iid, name="By index", changesetIndex=3)
        assert v3["changesetId"] == pushed[2]["id"] and v3["changesetIndex"] == 3

        for nv in (base, v2, v3):
            assert alice.get(f"/imodels/{iid}/namedversions/{nv['id']}").json() == {"namedVersion": nv}
        # The changeset links back to its named version; changesets without one say null.
        cs2 = alice.get(f"/imodels/{iid}/changesets/2").json()["changeset"]
        nv_link = NAMED_VERSION_LINK.match(cs2["_links"]["namedVersion"]["href"])
        assert nv_link is not None and nv_link.groups() == (iid, v2["id"])
        assert alice.get(cs2["_links"]["namedVersion"]["href"]).json()["namedVersion"]["id"] == v2["id"]
        listed = alice.get(f"/imodels/{iid}/changesets", headers=REPRESENTATION).json()["changesets"]
        assert [c["_links"]["namedVersion"] is not None for c in listed] == [False, True, True]


def test_errors_write_nothing(server: Server) -> None:
    with server.user() as alice, server.user() as stranger:
        itwin_id, iid, pushed = history(alice, 2)
        url = f"/imodels/{iid}/namedversions"
        first = make(alice, iid, name="Release", changesetId=pushed[0]["id"])
        make(alice, iid, name="Start")

        err = assert_error(alice.post(url, json={"name": "Release"}), 409, "NamedVersionExists")
        assert err["message"] == "Named Version with the same name already exists." and "details" not in err
        err = assert_error(
            alice.post(url, json={"name": "Other", "changesetId": pushed[0]["id"]}),
            409,
            "NamedVersionOnChangesetExists",
        )
        assert "details" not in err
        assert_error(alice.post(url, json={"name": "Other"}), 409, "NamedVersionOnChangesetExists")
        assert_error(
            alice.post(url, json={"name": "Other", "changesetIndex": 1}), 409, "NamedVersionOnChangesetExists"
        )
        assert_error(
            alice.post(url, json={"name": "Other", "changesetId": hex40()}), 404, "ChangesetNotFound"
        )
        assert_error(alice.post(url, json={"name": "Other", "changesetIndex": 7}), 404, "ChangesetNotFound")
        # A changeset still waiting for its file cannot carry a named version.
        bc = acquire(alice, iid)
        pending = create(alice, iid, bc, pushed[1]["id"], 5).json()["changeset"]
        assert_error(
            alice.post(url, json={"name": "Other", "changesetId": pending["id"]}), 404, "ChangesetNotFound"
        )

        bad_bodies: list[Any] = [
            {},
            {"name": ""},
            {"name": "   "},
            {"name": "n" * 256},
            {"name": 5},
            {"name": "Other", "description": "d" * 256},
            {"name": "Other", "changesetId": ""},
            {"name": "Other", "changesetId": 5},
            {"name": "Other", "changesetId": pushed[1]["id"], "changesetIndex": 2},
            {"name": "Other", "changesetIndex": -1},
            {"name": "Other", "changesetIndex": "2"},
        ]
        for body in bad_bodies:
            err = assert_error(alice.post(url, json=body), 422, "InvalidiModelsRequest")
            assert err["message"] == "Cannot create Named Version." and err["details"], body
        for raw in (b"{nope", b"[]", b""):
            assert_error(
                alice.post(url, content=raw, headers={"Content-Type": "application/json"}),
                422,
                "InvalidiModelsRequest",
            )
        assert sorted(names(alice, iid)) == ["Release", "Start"]

        for nv_id in (str(uuid.uuid4()), "not-an-id"):
            err = assert_error(alice.get(f"{url}/{nv_id}"), 404, "NamedVersionNotFound")
            assert err["message"] == "Requested Named Version is not available."
            assert_error(alice.patch(f"{url}/{nv_id}", json={"name": "x"}), 404, "NamedVersionNotFound")
            assert_error(alice.get(f"{url}/{nv_id}/checkpoint"), 404, "NamedVersionNotFound")

        # Readers may look, not create or change; strangers see nothing.
        reader = member(server, alice, itwin_id, "imodels_webview", "imodels_read")
        with closing(reader):
            assert sorted(names(reader, iid)) == ["Release", "Start"]
            assert reader.get(f"{url}/{first['id']}").status_code == 200
            assert_error(reader.post(url, json={"name": "Mine"}), 403, "InsufficientPermissions")
            assert_error(
                reader.patch(f"{url}/{first['id']}", json={"state": "hidden"}), 403, "InsufficientPermissions"
            )
        for resp in (
            stranger.get(url),
            stranger.get(f"{url}/{first['id']}"),
            stranger.post(url, json={"name": "Mine"}),
            stranger.patch(f"{url}/{first['id']}", json={"state": "hidden"}),
            stranger.get(f"{url}/{first['id']}/checkpoint"),
        ):
            assert_error(resp, 404, "iModelNotFound")
        assert_error(alice.get(f"/imodels/{uuid.uuid4()}/namedversions"), 404, "iModelNotFound")
        assert sorted(names(alice, iid)) == ["Release", "Start"]
        assert alice.get(f"{url}/{first['id']}").json()["namedVersion"] == first


def test_list_filters_order_and_paging(server: Server) -> None:
    with server.user() as alice:
        _, iid, pushed = history(alice, 3)
        url = f"/imodels/{iid}/namedversions"
        # Created out of index order, so the two orderings differ.
        make(alice, iid, name="ALPHA fix", changesetIndex=3)
        beta = make(alice, iid, name="beta", changesetId=pushed[0]["id"])
        make(alice, iid, name="Alpha release")
        gamma = make(alice, iid, name="Gamma_1", changesetIndex=2)
        hidden = alice.patch(f"{url}/{gamma['id']}", json={"state": "hidden"})
        assert hidden.status_code == 200 and hidden.json()["namedVersion"]["state"] == "hidden"

        minimal = alice.get(url).json()
        assert all(set(nv) == MINIMAL_KEYS for nv in minimal["namedVersions"])
        assert [nv["changesetIndex"] for nv in minimal["namedVersions"]] == [0, 1, 2, 3]
        assert minimal["_links"]["self"]["href"].startswith(f"{server.base_url}{url}?")
        full = alice.get(url, headers=REPRESENTATION).json()["namedVersions"]
        assert all(set(nv) == FULL_KEYS for nv in full)

        assert names(alice, iid, name="beta") == ["beta"]
        got = alice.get(url, params={"name": "beta"}).json()["namedVersions"]
        assert got == [
            {"id": beta["id"], "displayName": "beta", "changesetId": pushed[0]["id"], "changesetIndex": 1}
        ]
        assert names(alice, iid, name="Beta") == []
        assert names(alice, iid, state="hidden") == ["Gamma_1"]
        assert names(alice, iid, state="visible") == ["Alpha release", "beta", "ALPHA fix"]
        assert names(alice, iid, **{"$search": "alpha"}) == ["Alpha release", "ALPHA fix"]
        assert names(alice, iid, **{"$search": "PHA R"}) == ["Alpha release"]
        assert names(alice, iid, **{"$search": "_"}) == ["Gamma_1"]
        assert names(alice, iid, **{"$search": "%"}) == []
        assert names(
            alice, iid, **{"$search": "alpha", "state": "visible", "$orderBy": "changesetIndex desc"}
        ) == [
            "ALPHA fix",
            "Alpha release",
        ]
        assert names(alice, iid, **{"$orderBy": "changesetIndex desc"}) == [
            "ALPHA fix",
            "Gamma_1",
            "beta",
            "Alpha release",
        ]
        assert names(alice, iid, **{"$orderBy": "createdDateTime"}) == [
            "ALPHA fix",
            "beta",
            "Alpha release",
            "Gamma_1",
        ]
        assert names(alice, iid, **{"$orderBy": "createdDateTime desc"}) == [
            "Gamma_1",
            "Alpha release",
            "beta",
            "ALPHA fix",
        ]

        seen: list[str] = []
        resp = alice.get(url, params={"$top": "3", "$orderBy": "changesetIndex desc"}, headers=REPRESENTATION)
        while True:
            body = resp.json()
            assert all(set(nv) == FULL_KEYS for nv in body["namedVersions"])
            seen.extend(nv["name"] for nv in body["namedVersions"])
            nxt = body["_links"].get("next")
            if not nxt:
                break
            resp = alice.get(nxt["href"], headers=REPRESENTATION)
        assert seen == ["ALPHA fix", "Gamma_1", "beta", "Alpha release"]
        assert names(alice, iid, **{"$top": "2", "$skip": "1"}) == ["beta", "Gamma_1"]

        for params in (
            {"state": "bogus"},
            {"$orderBy": "name"},
            {"$orderBy": "changesetIndex down"},
            {"$top": "0"},
            {"$top": "x"},
            {"$skip": "-2"},
        ):
            assert_error(alice.get(url, params=params), 422, "InvalidiModelsRequest")


def test_update(server: Server) -> None:
    with server.user() as alice:
        _, iid, pushed = history(alice, 1)
        url = f"/imodels/{iid}/namedversions"
        nv = make(alice, iid, name="V1", description="first", changesetId=pushed[0]["id"])
        make(alice, iid, name="Taken")

        hidden = alice.patch(f"{url}/{nv['id']}", json={"state": "hidden"}).json()["namedVersion"]
        assert hidden["state"] == "hidden" and hidden["name"] == "V1" and hidden["description"] == "first"
        # A description change leaves the state as it was.
        described = alice.patch(f"{url}/{nv['id']}", json={"description": "better"}).json()["namedVersion"]
        assert described["description"] == "better" and described["state"] == "hidden"
        renamed = alice.patch(f"{url}/{nv['id']}", json={"name": "V1 final"}).json()["namedVersion"]
        assert renamed["name"] == renamed["displayName"] == "V1 final" and renamed["state"] == "hidden"
        assert alice.patch(f"{url}/{nv['id']}", json={"name": "V1 final"}).status_code == 200
        shown = alice.patch(f"{url}/{nv['id']}", json={"state": "visible", "description": None}).json()
        assert shown["namedVersion"]["state"] == "visible" and shown["namedVersion"]["description"] is None
        assert shown["namedVersion"]["changesetIndex"] == 1 and shown["namedVersion"]["id"] == nv["id"]

        before = alice.get(f"{url}/{nv['id']}").json()
        assert_error(alice.patch(f"{url}/{nv['id']}", json={"name": "Taken"}), 409, "NamedVersionExists")
        for body in (
            {},
            {"state": "gone"},
            {"name": ""},
            {"name": None},
            {"state": None},
            {"name": "n" * 256},
            {"description": 3},
        ):
            err = assert_error(alice.patch(f"{url}/{nv['id']}", json=body), 422, "InvalidiModelsRequest")
            assert err["message"] == "Cannot update Named Version.", body
        assert_error(alice.patch(f"{url}/{nv['id']}", content=b"{x"), 422, "InvalidiModelsRequest")
        assert alice.get(f"{url}/{nv['id']}").json() == before


def test_checkpoints(server: Server) -> None:
    with server.user() as alice:
        itwin_id, iid, pushed = history(alice, 2)
        url = f"/imodels/{iid}/namedversions"
        base = make(alice, iid, name="Base")
        later = make(alice, iid, name="Later", changesetId=pushed[1]["id"])
        baseline = alice.get(f"/imodels/{iid}/changesets/0/checkpoint").json()["checkpoint"]
        for nv, index in ((base, 0), (later, 2)):
            got = alice.get(f"{url}/{nv['id']}/checkpoint")
            assert got.status_code == 200, got.text
            cp = got.json()["checkpoint"]
            # Exactly the named version's changeset (the tip's was made when it was pushed).
            assert (
                cp["changesetIndex"] == index
                and cp["changesetId"] == (pushed[1]["id"] if index else "")
                and cp["directoryAccessInfo"]["storageType"] == "azure"
                and cp["state"] == "successful"
            )
            if index == 0:
                assert cp["size"] == baseline["size"] > 0
            first = httpx.get(cp["_links"]["download"]["href"], headers={"Range": "bytes=0-0"})
            assert first.status_code == 206 and first.headers["content-range"] == f"bytes 0-0/{cp['size']}"
            regenerated = alice.put(f"{url}/{nv['id']}/checkpoint")
            assert regenerated.status_code == 200, regenerated.text
            assert regenerated.json()["checkpoint"]["changesetIndex"] == index
            assert (
                httpx.get(regenerated.json()["checkpoint"]["_links"]["download"]["href"]).content[:6]
                == b"SQLite"
            )

        reader = member(server, alice, itwin_id, "imodels_webview", "imodels_read")
        viewer = member(server, alice, itwin_id, "imodels_webview")
        with closing(reader), closing(viewer):
            assert reader.get(f"{url}/{base['id']}/checkpoint").status_code == 200
            assert_error(reader.put(f"{url}/{base['id']}/checkpoint"), 403, "InsufficientPermissions")
            assert viewer.get(f"{url}/{base['id']}").status_code == 200
            assert_error(viewer.get(f"{url}/{base['id']}/checkpoint"), 403, "InsufficientPermissions")


def test_concurrent_creates(server: Server) -> None:
    with server.user() as alice:
        _, iid, pushed = history(alice, 8)
        token = alice.headers["Authorization"]
        n = 8

        def post(body: dict[str, Any]) -> tuple[int, str]:
            with httpx.Client(base_url=server.base_url, headers={"Authorization": token}, timeout=60) as c:
                resp = c.post(f"/imodels/{iid}/namedversions", json=body)
                data = resp.json()
                return resp.status_code, data["namedVersion"]["id"] if resp.status_code == 201 else data[
                    "error"
                ]["code"]

        # One name on eight changesets at once: one wins, the rest are told the name exists.
        same_name = _race(n, lambda i: post({"name": "Race", "changesetId": pushed[i]["id"]}))
        assert [r[0] for r in same_name].count(201) == 1, same_name
        assert sorted(r for r in same_name if r[0] != 201) == [(409, "NamedVersionExists")] * (n - 1)
        # Eight names on one changeset at once: one wins, the rest hit the one-per-changeset rule.
        same_changeset = _race(n, lambda i: post({"name": f"Name {i}"}))
        assert [r[0] for r in same_changeset].count(201) == 1, same_changeset
        assert sorted(r for r in same_changeset if r[0] != 201) == [
            (409, "NamedVersionOnChangesetExists")
        ] * (n - 1)
        assert len(names(alice, iid)) == 2
