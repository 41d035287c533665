"""One list toolkit (issue 11 part 4): every paged list walks to its end through ``_links.next``
with every item once; ``$continuationToken`` is honoured and a bad one is a 422 in the list's API
shape; ``$search`` takes ``%`` and ``_`` literally on every searchable list."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from conftest import Server, assert_error, new_imodel, new_itwin
from test_briefcases import acquire, push_changeset
from test_changesets import member
from test_repositories import add_repo, add_resource

# Names that tell a literal match from a wildcard one: "0%" and "a_b" as LIKE patterns would also
# match "100x done" and "axb".
LITERAL = ["100% done", "100x done", "a_b", "axb"]
REPRESENTATION = {"Prefer": "return=representation"}
IMODELS = "InvalidiModelsRequest"
ITWINS = "InvalidiTwinsRequest"
ACCESS = "InvalidAccessControlRequest"


def walk(
    client: httpx.Client, path: str, key: str, headers: dict[str, str] | None = None, **params: str
) -> list[Any]:
    """Every item of a list, two per page, following ``_links.next`` verbatim until it is absent."""
    items: list[Any] = []
    url, query = path, {"$top": "2", **params}
    for _ in range(100):
        resp = client.get(url, params=query, headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items.extend(body[key])
        nxt = body["_links"].get("next")
        if nxt is None:
            return items
        url, query = nxt["href"], None
    raise AssertionError(f"{path}: next never ends")


def everything(
    client: httpx.Client, path: str, key: str, headers: dict[str, str] | None = None, **params: str
) -> list[Any]:
    resp = client.get(path, params={"$top": "1000", **params}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert "next" not in resp.json()["_links"]
    return list(resp.json()[key])


def b64(value: Any) -> str:
    return base64.b64encode(orjson.dumps(value)).decode()


@pytest.fixture(scope="module")
def world(server: Server) -> Iterator[dict[str, Any]]:
    """One user's iTwins, iModels and everything listed under them, a few of each."""
    alice = server.user(f"lister-{uuid.uuid4().hex[:8]}")
    itwin = new_itwin(alice, displayName=f"Lists {uuid.uuid4().hex[:6]}")
    itwin_ids = [itwin["id"]] + [new_itwin(alice, displayName=name)["id"] for name in LITERAL]
    for itwin_id in itwin_ids:
        assert alice.post(f"/itwins/favorites/{itwin_id}").status_code in (200, 201, 204)
        assert alice.post(f"/itwins/recents/{itwin_id}").status_code in (200, 201, 204)
    imodels = [new_imodel(alice, itwin["id"], name=name) for name in LITERAL]
    for imodel in imodels:
        assert alice.put(f"/imodels/favorites/{imodel['id']}").status_code in (200, 201, 204)
        assert alice.post(f"/imodels/recents/{imodel['id']}").status_code in (200, 201, 204)
    iid = imodels[0]["id"]
    briefcases = [acquire(alice, iid)["briefcaseId"] for _ in range(3)]
    parent, pushed = "", []
    for _ in range(3):
        pushed.append(push_changeset(alice, iid, briefcases[0], parent))
        parent = pushed[-1]["id"]
    for name, changeset in zip(LITERAL, [None, *pushed], strict=True):
        body = {"name": name} if changeset is None else {"name": name, "changesetId": changeset["id"]}
        assert alice.post(f"/imodels/{iid}/namedversions", json=body).status_code == 201
    for changeset in pushed:
        created = alice.post(
            f"/imodels/{iid}/changesets/{changeset['index']}/extendeddata", json={"data": b64(1)}
        )
        assert created.status_code == 201, created.text
    for n in range(3):
        assert alice.post(f"/imodels/{iid}/changesetgroups", json={"description": f"g{n}"}).status_code == 201
    objects = [f"0x{n:x}" for n in range(0x100, 0x105)]
    locked = alice.patch(
        f"/imodels/{iid}/locks",
        json={
            "briefcaseId": briefcases[1],
            "lockedObjects": [{"lockLevel": "exclusive", "objectIds": objects}],
        },
    )
    assert locked.status_code == 200, locked.text
    released = [f"0x{n:x}" for n in range(0x200, 0x205)]
    for level in ("exclusive", "none"):
        resp = alice.patch(
            f"/imodels/{iid}/locks",
            json={
                "briefcaseId": briefcases[2],
                "changesetId": pushed[-1]["id"],
                "lockedObjects": [{"lockLevel": level, "objectIds": released}],
            },
        )
        assert resp.status_code == 200, resp.text
    members = [member(server, alice, itwin["id"], "imodels_read") for _ in range(3)]
    for _ in range(2):
        email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
        added = alice.post(f"/accesscontrol/itwins/{itwin['id']}/members/owners", json={"email": email})
        assert added.status_code == 201, added.text
    repo = add_repo(alice, itwin["id"])
    for name in LITERAL:
        add_resource(alice, repo, displayName=name)
    yield {
        "alice": alice,
        "itwin": itwin["id"],
        "imodel": iid,
        "objects": objects,
        "released": released,
        "resources": f"/itwins/{itwin['id']}/repositories/{repo['id']}/resources",
    }
    for client in (alice, *members):
        client.close()


def paged_lists(world: dict[str, Any]) -> list[tuple[str, str, str, dict[str, str]]]:
    """(path, item key, invalid-request code, extra params) of every paged list."""
    iid, itwin = world["imodel"], world["itwin"]
    imodels = f"/imodels/{iid}"
    return [
        ("/itwins", "iTwins", ITWINS, {}),
        ("/itwins/favorites", "iTwins", ITWINS, {}),
        ("/itwins/recents", "iTwins", ITWINS, {}),
        ("/imodels", "iModels", IMODELS, {"iTwinId": itwin}),
        ("/imodels/favorites", "iModels", IMODELS, {"iTwinId": itwin}),
        ("/imodels/recents", "iModels", IMODELS, {"iTwinId": itwin}),
        (f"{imodels}/briefcases", "briefcases", IMODELS, {}),
        (f"{imodels}/changesets", "changesets", IMODELS, {}),
        (f"{imodels}/changesets/extendeddata", "extendedData", IMODELS, {}),
        (f"{imodels}/changesetgroups", "changesetGroups", IMODELS, {}),
        (f"{imodels}/namedversions", "namedVersions", IMODELS, {}),
        (f"{imodels}/users", "users", IMODELS, {}),
        (f"{imodels}/locks", "locks", IMODELS, {}),
        (f"{imodels}/locks/released-locks", "releasedLocks", IMODELS, {}),
        (f"/accesscontrol/itwins/{itwin}/members/users", "members", ACCESS, {}),
        (f"/accesscontrol/itwins/{itwin}/members/owners", "members", ACCESS, {}),
        (world["resources"], "resources", ITWINS, {}),
    ]


def identity(key: str) -> Callable[[dict[str, Any]], list[str]]:
    """What names an item: its id, or for the lock lists each object id it holds."""
    if key == "locks":
        return lambda e: [f"{e['briefcaseId']}:{o}" for g in e["lockedObjects"] for o in g["objectIds"]]
    if key == "releasedLocks":
        return lambda e: list(e["objectIds"])
    if key == "extendedData":
        return lambda e: [e["changesetId"]]
    return lambda e: [e["id"]]


def test_next_walks_every_list_to_its_end_with_every_item_once(world: dict[str, Any]) -> None:
    alice = world["alice"]
    for path, key, _, params in paged_lists(world):
        name = identity(key)
        walked = [i for item in walk(alice, path, key, REPRESENTATION, **params) for i in name(item)]
        listed = [i for item in everything(alice, path, key, REPRESENTATION, **params) for i in name(item)]
        assert len(walked) == len(set(walked)), f"{path}: an item came twice"
        assert sorted(walked) == sorted(listed), path
        assert len(listed) >= 3, f"{path}: too few items to page ({listed})"
    locks = everything(alice, f"/imodels/{world['imodel']}/locks", "locks")
    assert [o for e in locks for g in e["lockedObjects"] for o in g["objectIds"]] == world["objects"]
    released = walk(alice, f"/imodels/{world['imodel']}/locks/released-locks", "releasedLocks")
    assert [o for e in released for o in e["objectIds"]] == world["released"]


def test_continuation_tokens(world: dict[str, Any]) -> None:
    alice = world["alice"]
    path = f"/imodels/{world['imodel']}/locks/released-locks"
    # The released-locks list pages with a continuation token; following it resumes where it left.
    first = alice.get(path, params={"$top": "2"}).json()
    nxt = first["_links"]["next"]["href"]
    assert "$continuationToken=" in nxt and "$skip" not in nxt
    second = alice.get(nxt).json()
    assert second["releasedLocks"][0]["objectIds"] == world["released"][2:4]
    token = httpx.URL(nxt).params["$continuationToken"]
    # Any paged list takes a token (it resumes at the same offset), and answers with $skip links.
    briefcases = alice.get(
        f"/imodels/{world['imodel']}/briefcases", params={"$top": "1", "$continuationToken": token}
    )
    assert briefcases.status_code == 200, briefcases.text
    every = everything(alice, f"/imodels/{world['imodel']}/briefcases", "briefcases")
    assert briefcases.json()["briefcases"] == every[2:3]
    assert "$continuationToken" not in briefcases.json()["_links"]["self"]["href"]
    # A token and $skip together are a contradiction.
    err = assert_error(alice.get(path, params={"$skip": "1", "$continuationToken": token}), 422, IMODELS)
    assert err["details"][0]["target"] == "$continuationToken"


def test_a_bad_continuation_token_is_refused_on_every_list(world: dict[str, Any]) -> None:
    alice = world["alice"]
    forged = base64.urlsafe_b64encode(b'\0\0\0\0\0\0{"skip":1}').decode().rstrip("=")
    for path, _, code, params in paged_lists(world):
        for bad in ("not-a-token", forged, "%%%", "A" * 500):
            resp = alice.get(path, params={**params, "$continuationToken": bad})
            err = assert_error(resp, 422, code)
            assert [d["target"] for d in err["details"]] == ["$continuationToken"], (path, err)


def test_search_takes_wildcards_literally_on_every_searchable_list(world: dict[str, Any]) -> None:
    alice = world["alice"]
    iid = world["imodel"]
    searchable: list[tuple[str, str, str, dict[str, str]]] = [
        ("/itwins", "iTwins", "displayName", {}),
        ("/imodels", "iModels", "name", {"iTwinId": world["itwin"]}),
        (f"/imodels/{iid}/namedversions", "namedVersions", "name", {}),
        (world["resources"], "resources", "displayName", {}),
    ]
    for path, key, field, params in searchable:
        for search, expected in (("0%", ["100% done"]), ("A_B", ["a_b"]), ("x", ["100x done", "axb"])):
            found = everything(alice, path, key, REPRESENTATION, **params, **{"$search": search})
            assert sorted(item[field] for item in found) == expected, (path, search)
