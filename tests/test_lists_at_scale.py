"""Lists that stay fast at scale (issue #17): the plain iTwins list pages by keyset behind its
``_links.next`` (a continuation token carrying the last row's sort key), so a page costs the same at
any depth and paging stays exact while iTwins are added; equality filters find their rows by index.
``bench/lists.py`` measures the latencies at 10k to 1M iTwins; these tests pin the behaviour."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import orjson

from conftest import Server, assert_error, new_itwin


def _walk(client: httpx.Client, first: str, params: dict[str, str]) -> tuple[list[str], list[str]]:
    """Every id along the ``next`` links, and the links followed."""
    ids: list[str] = []
    links: list[str] = []
    resp = client.get(first, params=params) if params else client.get(first)  # params={} drops the query
    while True:
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        ids += [i["id"] for i in body["iTwins"]]
        nxt = body["_links"].get("next")
        if not nxt:
            return ids, links
        links.append(nxt["href"])
        resp = client.get(nxt["href"])


def test_next_links_walk_every_itwin_once_newest_first(server: Server) -> None:
    with server.user() as alice:
        made = [new_itwin(alice, number=f"K-{n:03d}")["id"] for n in range(23)]
        full = alice.get("/itwins/").json()["iTwins"]
        assert [i["id"] for i in full][:23] == made[::-1]  # newest first
        ids, links = _walk(alice, "/itwins/", {"$top": "5"})
        assert ids == [i["id"] for i in full] and len(ids) == len(set(ids))
        assert links and all("%24continuationToken=" in h or "$continuationToken=" in h for h in links)
        assert all("$skip" not in h and "%24skip" not in h for h in links)


def test_paging_stays_exact_while_itwins_are_added(server: Server) -> None:
    with server.user() as bob:
        before = [new_itwin(bob)["id"] for _ in range(6)][::-1]
        first = bob.get("/itwins/", params={"$top": "3"}).json()
        assert [i["id"] for i in first["iTwins"]] == before[:3]
        newer = new_itwin(bob)["id"]  # would shift an offset page by one
        rest, _ = _walk(bob, first["_links"]["next"]["href"], {})
        assert rest[:3] == before[3:] and newer not in rest


def test_a_tampered_token_is_refused(server: Server) -> None:
    with server.user() as carol:
        for _ in range(3):
            new_itwin(carol)
        href = carol.get("/itwins/", params={"$top": "1"}).json()["_links"]["next"]["href"]
        token = httpx.URL(href).params["$continuationToken"]
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = orjson.loads(raw[6:])
        body["after"][1] = "someone-else's-row"
        forged = base64.urlsafe_b64encode(raw[:6] + orjson.dumps(body)).decode().rstrip("=")
        err = assert_error(
            carol.get("/itwins/", params={"$top": "1", "$continuationToken": forged}),
            422,
            "InvalidiTwinsRequest",
        )
        assert err["details"][0]["target"] == "$continuationToken"


def test_equality_filters_are_case_insensitive_and_exact(server: Server) -> None:
    with server.user() as dave, server.user() as erin:
        mine = new_itwin(dave, number="Eq-Number-1", displayName="Equality Name One")
        new_itwin(dave, number="Eq-Number-10", displayName="Equality Name One Zero")
        new_itwin(erin, number="Eq-Number-1-erin", displayName="Equality Name One")
        for expr in ("number eq 'eq-number-1'", "displayName eq 'EQUALITY NAME ONE'"):
            got = dave.get("/itwins/", params={"$filter": expr}).json()["iTwins"]
            assert [i["id"] for i in got] == [mine["id"]], expr
        exact = dave.get("/itwins/", params={"number": "Eq-Number-1"}).json()["iTwins"]
        assert [i["id"] for i in exact] == [mine["id"]]
        assert dave.get("/itwins/", params={"number": "eq-number-1"}).json()["iTwins"] == []


def test_search_finds_substrings_of_names_and_numbers_as_they_change(server: Server) -> None:
    with server.user() as frank:
        tag = uuid.uuid4().hex[:10]
        bridge = new_itwin(frank, number=f"BR-{tag}-01", displayName=f"Harbour Bridge {tag}")
        tunnel = new_itwin(frank, number=f"TN-{tag}-02", displayName=f'Tunnel "50%_done" {tag}')

        def search(text: str) -> set[str]:
            resp = frank.get("/itwins/", params={"$search": text})
            assert resp.status_code == 200, resp.text
            return {i["id"] for i in resp.json()["iTwins"]}

        assert search(f"bridge {tag}".upper()) == {bridge["id"]}  # displayName, case-insensitive
        assert search(f"tn-{tag}") == {tunnel["id"]}  # number
        assert search(tag) == {bridge["id"], tunnel["id"]}
        assert search('"50%_d') == {tunnel["id"]}  # quotes and wildcards are literal
        assert search("50%x") == set()
        assert search(tag[:2]) >= {bridge["id"], tunnel["id"]}  # shorter than a trigram
        renamed = frank.patch(f"/itwins/{bridge['id']}", json={"displayName": f"Viaduct {tag}"})
        assert renamed.status_code == 200, renamed.text
        assert search(f"bridge {tag}") == set() and search(f"viaduct {tag}") == {bridge["id"]}
        assert frank.delete(f"/itwins/{tunnel['id']}").status_code == 204
        assert search(tag) == {bridge["id"]}


def test_imodels_list_pages_by_keyset_in_every_single_order(server: Server) -> None:
    with server.user() as gail:
        itwin = new_itwin(gail)
        names = [f"Model {n:02d} {uuid.uuid4().hex[:4]}" for n in range(11)]
        made = []
        for name in names:
            resp = gail.post("/imodels", json={"iTwinId": itwin["id"], "name": name})
            assert resp.status_code == 201, resp.text
            made.append(resp.json()["iModel"]["id"])
        for order, expected in (
            (None, made[::-1]),  # newest first
            ("name", [i for _, i in sorted(zip(names, made, strict=True))]),
            ("name desc", [i for _, i in sorted(zip(names, made, strict=True), reverse=True)]),
            ("createdDateTime", made),
        ):
            params = {"iTwinId": itwin["id"], "$top": "4"}
            if order:
                params["$orderBy"] = order
            ids: list[str] = []
            resp = gail.get("/imodels", params=params)
            while True:
                assert resp.status_code == 200, resp.text
                ids += [m["id"] for m in resp.json()["iModels"]]
                nxt = resp.json()["_links"].get("next")
                if not nxt:
                    break
                assert "continuationToken" in nxt["href"], nxt
                resp = gail.get(nxt["href"])
            assert ids == expected, order


def test_briefcases_page_by_keyset_in_both_orders(server: Server) -> None:
    with server.user() as hana:
        itwin = new_itwin(hana)
        made = hana.post("/imodels", json={"iTwinId": itwin["id"], "name": "Briefcases"})
        assert made.status_code == 201, made.text
        path = f"/imodels/{made.json()['iModel']['id']}/briefcases"
        ids = [hana.post(path, json={}).json()["briefcase"]["briefcaseId"] for _ in range(7)]
        for order, expected in ((None, ids), ("acquiredDateTime desc", ids[::-1])):
            params = {"$top": "3", **({"$orderBy": order} if order else {})}
            seen: list[int] = []
            resp = hana.get(path, params=params, headers={"Prefer": "return=representation"})
            while True:
                assert resp.status_code == 200, resp.text
                seen += [b["briefcaseId"] for b in resp.json()["briefcases"]]
                nxt = resp.json()["_links"].get("next")
                if not nxt:
                    break
                assert "continuationToken" in nxt["href"]
                resp = hana.get(nxt["href"], headers={"Prefer": "return=representation"})
            assert seen == expected, order


def test_members_page_by_keyset_in_the_order_they_joined(server: Server) -> None:
    with server.user() as ivan:
        itwin = new_itwin(ivan)
        roles = ivan.get(f"/accesscontrol/itwins/{itwin['id']}/roles").json()["roles"]
        reader = next(r["id"] for r in roles if r["displayName"] == "Reader")
        emails = [f"joiner-{n}-{uuid.uuid4().hex[:6]}@example.com" for n in range(7)]
        for email in emails:
            added = ivan.post(
                f"/accesscontrol/itwins/{itwin['id']}/members/users",
                json={"members": [{"email": email, "roleIds": [reader]}]},
            )
            assert added.status_code == 201, added.text
        seen: list[str] = []
        resp = ivan.get(f"/accesscontrol/itwins/{itwin['id']}/members/users", params={"$top": "3"})
        while True:
            assert resp.status_code == 200, resp.text
            seen += [m["email"] for m in resp.json()["members"]]
            nxt = resp.json()["_links"].get("next")
            if not nxt:
                break
            assert "continuationToken" in nxt["href"]
            resp = ivan.get(nxt["href"])
        assert [e for e in seen if e.startswith("joiner-")] == emails
        owners = ivan.get(f"/accesscontrol/itwins/{itwin['id']}/members/owners", params={"$top": "1"})
        assert owners.status_code == 200 and len(owners.json()["members"]) == 1
