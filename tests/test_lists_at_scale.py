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


def _pages(
    client: httpx.Client,
    path: str,
    params: dict[str, str],
    key: str,
    *,
    field: str = "id",
    headers: dict[str, str] | None = None,
) -> tuple[list[Any], list[str]]:
    """Every ``field`` of the ``key`` items along the ``next`` links, and the links followed."""
    values: list[Any] = []
    links: list[str] = []
    resp = client.get(path, params=params, headers=headers)
    while True:
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        values += [item[field] for item in body[key]]
        nxt = body["_links"].get("next")
        if not nxt:
            return values, links
        links.append(nxt["href"])
        resp = client.get(nxt["href"], headers=headers)


def _token(href: str) -> str:
    return str(httpx.URL(href).params["$continuationToken"])


def _keyset_links(links: list[str]) -> bool:
    return bool(links) and all("$continuationToken=" in h and "$skip=" not in h for h in links)


def test_filtered_and_ordered_itwins_lists_page_by_keyset(server: Server) -> None:
    with server.user() as jack:
        tag = uuid.uuid4().hex[:8]
        made: list[dict[str, Any]] = []
        for n in range(14):
            # Four names among fourteen iTwins: ties in the order fall back to the id.
            fields: dict[str, Any] = {"displayName": f"Walk {tag} {n % 4}", "number": f"W-{tag}-{n:02d}"}
            if n % 3 == 0:
                fields.update({"class": "Thing", "subClass": "Asset", "type": "Bridge"})
            made.append(new_itwin(jack, **fields))
        new_itwin(jack, displayName="Somewhere else")  # not found by the search
        rep = {"Prefer": "return=representation"}
        full = jack.get("/itwins/", params={"$search": tag, "$top": "1000"}, headers=rep).json()["iTwins"]
        assert {i["id"] for i in full} == {i["id"] for i in made}
        by_id = {i["id"]: i for i in full}
        ids = list(by_id)

        def newest_first(keep: list[str]) -> list[str]:
            return sorted(keep, key=lambda i: (by_id[i]["createdDateTime"], i), reverse=True)

        assets = [i for i in ids if by_id[i]["subClass"] == "Asset"]
        names = sorted(ids, key=lambda i: (by_id[i]["displayName"], i))
        cases: list[tuple[dict[str, str], list[str]]] = [
            ({"$search": tag}, newest_first(ids)),
            ({"subClass": "Asset"}, newest_first(assets)),
            ({"$filter": f"startswith(number, 'W-{tag}')"}, newest_first(ids)),
            ({"$search": tag, "$orderby": "displayName"}, names),
            ({"$search": tag, "$orderby": "DisplayName desc"}, names[::-1]),
            ({"$search": tag, "$orderby": "createdDateTime"}, newest_first(ids)[::-1]),
            (
                {"$search": tag, "$orderby": "number desc"},
                sorted(ids, key=lambda i: by_id[i]["number"])[::-1],
            ),
            ({"subClass": "Asset", "$orderby": "id"}, sorted(assets)),
        ]
        for params, expected in cases:
            for prefer in ("minimal", "representation"):
                walked, links = _pages(
                    jack,
                    "/itwins/",
                    {**params, "$top": "4"},
                    "iTwins",
                    headers={"Prefer": f"return={prefer}"},
                )
                assert walked == expected, (params, prefer)
                assert _keyset_links(links), params
        # A column that may be NULL pages by offset, still exactly once each.
        walked, links = _pages(jack, "/itwins/", {"$search": tag, "$orderby": "type", "$top": "4"}, "iTwins")
        assert sorted(walked) == sorted(ids) and links and all("$skip=" in h for h in links)
        # Several terms: by offset.
        walked, _ = _pages(
            jack, "/itwins/", {"$search": tag, "$orderby": "displayName,number desc", "$top": "4"}, "iTwins"
        )
        assert walked == sorted(
            ids, key=lambda i: (by_id[i]["displayName"], [-ord(c) for c in by_id[i]["number"]])
        )


def test_a_token_of_another_order_resumes_by_its_row_number(server: Server) -> None:
    with server.user() as kate:
        tag = uuid.uuid4().hex[:8]
        for n in range(9):
            new_itwin(kate, displayName=f"Order {tag} {8 - n}", number=f"O-{tag}-{n}")

        def listed(**params: str) -> list[str]:
            resp = kate.get("/itwins/", params={"$search": tag, **params})
            assert resp.status_code == 200, resp.text
            return [i["id"] for i in resp.json()["iTwins"]]

        first = kate.get("/itwins/", params={"$search": tag, "$orderby": "displayName", "$top": "3"}).json()
        token = _token(first["_links"]["next"]["href"])
        # displayName and number are both strings: the token names its order, so it is not read as a
        # number to resume after.
        assert (
            listed(**{"$orderby": "number", "$top": "3", "$continuationToken": token})
            == listed(**{"$orderby": "number"})[3:6]
        )
        assert listed(**{"$top": "3", "$continuationToken": token}) == listed()[3:6]
        # The plain list and the filtered lists in the default order read each other's tokens.
        plain = kate.get("/itwins/", params={"$top": "2"}).json()
        assert listed(**{"$continuationToken": _token(plain["_links"]["next"]["href"])}) == listed()[2:]


def test_favorite_itwins_page_by_keyset_newest_favorite_first(server: Server) -> None:
    with server.user() as liam:
        made = [
            new_itwin(liam, **({"class": "Thing", "subClass": "Asset"} if n % 2 else {}))["id"]
            for n in range(9)
        ]
        favored = made[4:] + made[:4]  # favorites in another order than the iTwins were made
        for itwin_id in favored:
            assert liam.post(f"/itwins/favorites/{itwin_id}").status_code == 204
        for params, expected in (
            ({}, favored[::-1]),
            ({"subClass": "Asset"}, [i for i in favored[::-1] if made.index(i) % 2]),
        ):
            walked, links = _pages(liam, "/itwins/favorites", {**params, "$top": "2"}, "iTwins")
            assert walked == expected, params
            assert _keyset_links(links)


def test_favorite_imodels_page_by_keyset_newest_favorite_first(server: Server) -> None:
    with server.user() as mia:
        itwin = new_itwin(mia)
        other = new_itwin(mia)
        made = []
        for n in range(8):
            resp = mia.post("/imodels", json={"iTwinId": itwin["id"], "name": f"Fav {n}"})
            assert resp.status_code == 201, resp.text
            made.append(resp.json()["iModel"]["id"])
        elsewhere = mia.post("/imodels", json={"iTwinId": other["id"], "name": "Elsewhere"}).json()["iModel"][
            "id"
        ]
        favored = [*made[3:], elsewhere, *made[:3]]
        for imodel_id in favored:
            assert mia.put(f"/imodels/favorites/{imodel_id}").status_code == 204
        walked, links = _pages(mia, "/imodels/favorites", {"iTwinId": itwin["id"], "$top": "3"}, "iModels")
        assert walked == [i for i in favored[::-1] if i != elsewhere]
        assert _keyset_links(links)


def test_imodel_users_page_by_keyset_in_every_order(server: Server) -> None:
    owner_id = f"owner-{uuid.uuid4().hex[:8]}"
    with server.client(server.token(owner_id, given_name="Owner", family_name="Keyset")) as owner:
        itwin = new_itwin(owner)
        made = owner.post("/imodels", json={"iTwinId": itwin["id"], "name": "Users"})
        assert made.status_code == 201, made.text
        path = f"/imodels/{made.json()['iModel']['id']}/users"
        roles = owner.get(f"/accesscontrol/itwins/{itwin['id']}/roles").json()["roles"]
        reader = next(r["id"] for r in roles if r["displayName"] == "Reader")
        members = []
        for n in range(9):
            # Three given names, two surnames: ties in every order.
            user_id = f"walker-{n}-{uuid.uuid4().hex[:6]}"
            given, surname = ("Ann", "Bea", "Cal")[n % 3], ("Smith", "Jones")[n % 2]
            with server.client(server.token(user_id, given_name=given, family_name=surname)) as joiner:
                assert joiner.get("/itwins/myprimaryaccount").status_code == 200  # recorded on first sight
            members.append({"email": f"{user_id}@example.com", "roleIds": [reader]})
        added = owner.post(f"/accesscontrol/itwins/{itwin['id']}/members/users", json={"members": members})
        assert added.status_code == 201, added.text
        rep = {"Prefer": "return=representation"}
        every = owner.get(path, params={"$top": "1000"}, headers=rep).json()["users"]
        assert len(every) == 10
        people = {u["id"]: (u["givenName"], u["surname"]) for u in every}
        for order, expected in (
            (None, sorted(people, key=lambda i: (*people[i], i))),
            ("givenName", sorted(people, key=lambda i: (people[i][0], i))),
            ("givenName desc", sorted(people, key=lambda i: (people[i][0], i), reverse=True)),
            ("surname desc", sorted(people, key=lambda i: (people[i][1], i), reverse=True)),
        ):
            params = {"$top": "3", **({"$orderBy": order} if order else {})}
            for headers in (None, rep):
                walked, links = _pages(owner, path, params, "users", headers=headers)
                assert walked == expected, order
                assert _keyset_links(links), order
        # Another order's token resumes by its row number.
        first = owner.get(path, params={"$top": "4", "$orderBy": "givenName"}).json()
        resp = owner.get(
            path,
            params={
                "$top": "4",
                "$orderBy": "surname",
                "$continuationToken": _token(first["_links"]["next"]["href"]),
            },
        )
        by_surname = sorted(people, key=lambda i: (people[i][1], i))
        assert [u["id"] for u in resp.json()["users"]] == by_surname[4:8]
