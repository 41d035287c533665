"""The iTwins API (reference part B) against the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from conftest import Server, assert_error, new_itwin


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------- create / get


def test_create_returns_representation_with_every_field(server: Server) -> None:
    with server.user() as alice:
        resp = alice.post(
            "/itwins/",
            json={
                "class": "Thing",
                "subClass": "Asset",
                "type": "Bridge",
                "number": unique("A"),
                "displayName": "Bridge A",
                "geographicLocation": "Vilnius",
                "latitude": 54.68,
                "longitude": 25.28,
                "ianaTimeZone": "Europe/Vilnius",
                "dataCenterLocation": "North Europe",
                "status": "Trial",
            },
        )
        assert resp.status_code == 201, resp.text
        it = resp.json()["iTwin"]
        assert it["class"] == "Thing" and it["subClass"] == "Asset" and it["type"] == "Bridge"
        assert it["latitude"] == 54.68 and it["ianaTimeZone"] == "Europe/Vilnius"
        assert it["dataCenterLocation"] == "North Europe" and it["status"] == "Trial"
        assert it["createdBy"] and it["createdDateTime"].endswith("Z")
        assert it["imageName"] is None and it["image"] is None
        account = alice.get("/itwins/myprimaryaccount").json()["iTwin"]
        assert account["class"] == "Account" and account["subClass"] == "Account"
        assert it["parentId"] == account["id"] and it["iTwinAccountId"] == account["id"]

        minimal = alice.get(f"/itwins/{it['id']}", headers={"Prefer": "return=minimal"}).json()["iTwin"]
        assert set(minimal) == {"id", "class", "subClass", "type", "number", "displayName", "iTwinAccountId"}
        full = alice.get(f"/itwins/{it['id']}", headers={"Prefer": "return=representation"}).json()["iTwin"]
        assert full == it
        assert alice.get(f"/itwins/{it['id']}/account").json()["iTwin"]["id"] == account["id"]


def test_defaults_and_case_insensitive_enums(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice, **{"class": "endeavor", "subClass": "workpackage"})
        assert it["class"] == "Endeavor" and it["subClass"] == "WorkPackage"
        assert it["status"] == "Active" and it["dataCenterLocation"] == "East US"
        # Without a number, the iTwin's number is its own id (so it is unique in the account).
        assert it["number"] == it["id"]
        unset = ("type", "geographicLocation", "latitude", "longitude", "ianaTimeZone", "imageName", "image")
        assert {k: it[k] for k in unset} == dict.fromkeys(unset)
        assert alice.get(f"/itwins/{it['id']}").json()["iTwin"] == it
        # A second one gets its own id as its number: no iTwinExists between them.
        other = new_itwin(alice)
        assert other["number"] == other["id"] != it["number"]
        listed = alice.get("/itwins/", params={"number": it["id"]}).json()["iTwins"]
        assert [i["id"] for i in listed] == [it["id"]]


def test_accept_header_with_version_or_missing(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        for accept in ("application/vnd.bentley.itwin-platform.v1+json", "application/json", None):
            headers = {"Accept": accept} if accept else {}
            resp = alice.get(f"/itwins/{it['id']}", headers=headers)
            assert resp.status_code == 200, (accept, resp.text)
            assert resp.headers["content-type"].startswith("application/json"), resp.headers
            # The same representation whatever the (supported) Accept says.
            assert resp.json() == {"iTwin": it}, accept


def test_child_itwin_under_parent(server: Server) -> None:
    with server.user() as alice:
        parent = new_itwin(alice)
        child = new_itwin(alice, subClass="WorkPackage", parentId=parent["id"])
        assert child["parentId"] == parent["id"]
        assert child["iTwinAccountId"] == parent["iTwinAccountId"]
        listed = alice.get("/itwins/", params={"parentId": parent["id"]}).json()["iTwins"]
        assert [i["id"] for i in listed] == [child["id"]]
        # A parent with children cannot be deleted; the child first.
        assert_error(alice.delete(f"/itwins/{parent['id']}"), 422, "InvalidiTwinsRequest")
        assert alice.delete(f"/itwins/{child['id']}").status_code == 204
        assert alice.delete(f"/itwins/{parent['id']}").status_code == 204


def test_duplicate_number_is_409_and_nothing_written(server: Server) -> None:
    number = unique("DUP")
    with server.user() as alice:
        new_itwin(alice, number=number)
        before = alice.get("/itwins/", params={"number": number}).json()["iTwins"]
        err = assert_error(
            alice.post(
                "/itwins/",
                json={"class": "Endeavor", "subClass": "Project", "displayName": "x", "number": number},
            ),
            409,
            "iTwinExists",
        )
        assert err["details"][0]["target"] == "number"
        after = alice.get("/itwins/", params={"number": number}).json()["iTwins"]
        assert before == after and len(after) == 1
    # Numbers are unique per account: another user's account may reuse it.
    with server.user() as bob:
        new_itwin(bob, number=number)


def test_update_fields_and_immutable_ones(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice, number=unique("U"))
        resp = alice.patch(
            f"/itwins/{it['id']}", json={"displayName": "Renamed", "status": "Inactive", "type": "Road"}
        )
        assert resp.status_code == 200, resp.text
        updated = resp.json()["iTwin"]
        assert (
            updated["displayName"] == "Renamed"
            and updated["status"] == "Inactive"
            and updated["type"] == "Road"
        )
        assert updated["number"] == it["number"]
        assert updated["lastModifiedDateTime"] >= it["lastModifiedDateTime"]
        err = assert_error(
            alice.patch(f"/itwins/{it['id']}", json={"subClass": "Asset"}), 422, "InvalidiTwinsRequest"
        )
        assert err["details"][0]["target"] == "subClass"
        other = new_itwin(alice, number=unique("U"))
        assert_error(alice.patch(f"/itwins/{it['id']}", json={"number": other["number"]}), 409, "iTwinExists")
        assert alice.get(f"/itwins/{it['id']}").json()["iTwin"]["number"] == it["number"]


def test_delete_then_404_everywhere(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        assert alice.post(f"/itwins/favorites/{it['id']}").status_code == 204
        assert alice.post(f"/itwins/recents/{it['id']}").status_code == 204
        resp = alice.delete(f"/itwins/{it['id']}")
        assert resp.status_code == 204 and resp.content == b""
        assert_error(alice.get(f"/itwins/{it['id']}"), 404, "iTwinNotFound")
        assert_error(alice.delete(f"/itwins/{it['id']}"), 404, "iTwinNotFound")
        assert_error(alice.patch(f"/itwins/{it['id']}", json={"displayName": "x"}), 404, "iTwinNotFound")
        assert it["id"] not in [i["id"] for i in alice.get("/itwins/favorites/").json()["iTwins"]]
        assert it["id"] not in [i["id"] for i in alice.get("/itwins/recents").json()["iTwins"]]


def test_account_cannot_be_deleted(server: Server) -> None:
    with server.user() as alice:
        account = alice.get("/itwins/myprimaryaccount").json()["iTwin"]
        assert_error(alice.delete(f"/itwins/{account['id']}"), 422, "InvalidiTwinsRequest")


# ------------------------------------------------------------------------------------------- queries


@pytest.fixture(scope="module")
def catalog(server: Server) -> tuple[httpx.Client, list[dict[str, Any]]]:
    """One user with a known set of iTwins."""
    client = server.user()
    made = []
    for i in range(7):
        made.append(
            new_itwin(client, displayName=f"Catalog Project {i:02d}", number=f"CAT-{i:02d}", type="Road")
        )
    made.append(
        new_itwin(
            client,
            **{
                "class": "Thing",
                "subClass": "Asset",
                "displayName": "Catalog Asset",
                "number": "CAT-A",
                "type": "Bridge",
            },
        )
    )
    inactive = new_itwin(client, displayName="Catalog Inactive", number="CAT-I")
    client.patch(f"/itwins/{inactive['id']}", json={"status": "Inactive"})
    trial = new_itwin(client, displayName="Catalog Trial", number="CAT-T", status="Trial")
    made.extend([inactive, trial])
    return client, made


def ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [i["id"] for i in resp.json()["iTwins"]]


def test_list_only_members_and_no_accounts(
    server: Server, catalog: tuple[httpx.Client, list[dict[str, Any]]]
) -> None:
    client, made = catalog
    listed = ids(client.get("/itwins/"))
    assert len(listed) == 9  # the inactive one is hidden by default; the account is not listed
    with server.user() as stranger:
        assert not set(ids(stranger.get("/itwins/"))) & {m["id"] for m in made}


def test_list_filters(catalog: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, made = catalog
    by_number = {m["number"]: m["id"] for m in made}
    assert ids(client.get("/itwins/", params={"subClass": "Asset"})) == [by_number["CAT-A"]]
    assert len(ids(client.get("/itwins/", params={"subClass": "Asset,Project"}))) == 9
    assert ids(client.get("/itwins/", params={"number": "CAT-03"})) == [by_number["CAT-03"]]
    assert ids(client.get("/itwins/", params={"displayName": "Catalog Trial"})) == [by_number["CAT-T"]]
    assert ids(client.get("/itwins/", params={"status": "Inactive"})) == [by_number["CAT-I"]]
    assert len(ids(client.get("/itwins/", params={"includeInactive": "true"}))) == 10
    assert ids(client.get("/itwins/", params={"type": "bridge"})) == [by_number["CAT-A"]]
    assert len(ids(client.get("/itwins/", params={"$search": "project 0"}))) == 7
    assert ids(client.get("/itwins/", params={"$search": "cat-a"})) == [by_number["CAT-A"]]
    assert ids(client.get("/itwins/", params={"iTwinAccountId": str(uuid.uuid4())})) == []


def test_list_odata_filter_order_select(catalog: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, _ = catalog
    got = client.get("/itwins/", params={"$filter": "status eq 'Active' or status eq 'Trial'"})
    assert len(ids(got)) == 9
    got = client.get(
        "/itwins/", params={"$filter": "startswith(number,'CAT-0') and not (number eq 'CAT-00')"}
    )
    assert len(ids(got)) == 6
    names = [
        i["displayName"]
        for i in client.get("/itwins/", params={"$orderby": "displayName desc"}).json()["iTwins"]
    ]
    assert names == sorted(names, reverse=True)
    numbers = [
        i["number"] for i in client.get("/itwins/", params={"$orderBy": "number asc"}).json()["iTwins"]
    ]
    assert numbers == sorted(numbers)
    rows = client.get("/itwins/", params={"$select": "id,displayName", "$top": "2"}).json()["iTwins"]
    assert all(set(r) == {"id", "displayName"} for r in rows) and len(rows) == 2


def test_paging_links(server: Server, catalog: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, _ = catalog
    page = client.get("/itwins/", params={"$top": "3", "$skip": "3", "$orderby": "number"}).json()
    assert len(page["iTwins"]) == 3
    links = page["_links"]
    assert links["self"]["href"].startswith(server.base_url + "/itwins/")
    assert "prev" in links and "next" in links
    # Following next until it disappears visits every row exactly once.
    seen: list[str] = []
    url: str | None = f"{server.base_url}/itwins/?$top=4&$orderby=number"
    while url:
        body = client.get(url).json()
        seen.extend(i["id"] for i in body["iTwins"])
        url = body["_links"].get("next", {}).get("href")
    assert len(seen) == len(set(seen)) == 9
    assert client.get("/itwins/", params={"$top": "0"}).json()["iTwins"] == []
    # The 1.x client sends an empty first parameter.
    assert client.get(f"{server.base_url}/itwins?&$top=2").status_code == 200


def test_query_scope_header(catalog: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, _ = catalog
    for scope in ("memberOfItwin", "all", "OrganizationAdmin"):
        assert len(ids(client.get("/itwins/", headers={"x-itwin-query-scope": scope}))) == 9
    assert_error(
        client.get("/itwins/", headers={"x-itwin-query-scope": "everything"}), 422, "InvalidiTwinsRequest"
    )


@pytest.mark.parametrize(
    ("params", "target"),
    [
        ({"$top": "1001"}, "$top"),
        ({"$top": "-1"}, "$top"),
        ({"$top": "ten"}, "$top"),
        ({"$skip": "-1"}, "$skip"),
        ({"subClass": "Invalid"}, "subClass"),
        ({"status": "Sleeping"}, "status"),
        ({"status": "Active", "includeInactive": "true"}, "includeInactive"),
        ({"$search": "x", "number": "y"}, "$search"),
        ({"$filter": "status eq 'Active'", "type": "x"}, "$filter"),
        ({"parentId": "not-a-uuid"}, "parentId"),
        ({"$orderby": "color desc"}, "$orderby"),
        ({"$filter": "invalid filter syntax without proper operators"}, "$filter"),
        ({"$filter": "colour eq 'red'"}, "$filter"),
        ({"$select": "invalidFieldName"}, "$select"),
    ],
)
def test_bad_list_parameters(server: Server, params: dict[str, str], target: str) -> None:
    with server.user() as alice:
        err = assert_error(alice.get("/itwins/", params=params), 422, "InvalidiTwinsRequest")
        assert target in [d.get("target") for d in err["details"]], err


def test_filter_syntax_error_message(server: Server) -> None:
    with server.user() as alice:
        text = "invalid filter syntax without proper operators"
        err = assert_error(alice.get("/itwins/", params={"$filter": text}), 422, "InvalidiTwinsRequest")
        assert err["message"] == f"Syntax error at position 14 in '{text}'."
        err = assert_error(
            alice.get("/itwins/", params={"$select": "invalidFieldName"}), 422, "InvalidiTwinsRequest"
        )
        assert err["message"] == "Cannot query iTwins."
        assert (
            err["details"][0]["message"]
            == "The $select string contains an unknown property 'invalidFieldName'."
        )


def test_favorites_and_recents(server: Server) -> None:
    with server.user() as alice:
        a, b, c = (
            new_itwin(alice),
            new_itwin(alice),
            new_itwin(alice, **{"class": "Thing", "subClass": "Asset"}),
        )
        for it in (a, b, c):
            assert alice.post(f"/itwins/favorites/{it['id']}").status_code == 204
        assert alice.post(f"/itwins/favorites/{a['id']}").status_code == 204  # idempotent
        assert len(ids(alice.get("/itwins/favorites/"))) == 3
        assert ids(alice.get("/itwins/favorites/", params={"subClass": "Asset"})) == [c["id"]]
        assert alice.delete(f"/itwins/favorites/{b['id']}").status_code == 204
        assert set(ids(alice.get("/itwins/favorites"))) == {a["id"], c["id"]}
        assert_error(alice.get("/itwins/favorites/", params={"$top": "1001"}), 422, "InvalidiTwinsRequest")
        assert_error(
            alice.get("/itwins/favorites/", params={"status": "Active", "includeInactive": "true"}),
            422,
            "InvalidiTwinsRequest",
        )

        for it in (a, b, c, a):
            assert alice.post(f"/itwins/recents/{it['id']}").status_code == 204
        assert ids(alice.get("/itwins/recents")) == [
            a["id"],
            c["id"],
            b["id"],
        ]  # newest first, re-add moves up
        assert ids(alice.get("/itwins/myitwins/recents"))[0] == a["id"]
        assert_error(alice.post(f"/itwins/recents/{uuid.uuid4()}"), 404, "iTwinNotFound")
        with server.user() as bob:
            assert_error(bob.post(f"/itwins/favorites/{a['id']}"), 404, "iTwinNotFound")
            assert_error(bob.post(f"/itwins/recents/{a['id']}"), 404, "iTwinNotFound")


def test_recents_keep_25(server: Server) -> None:
    with server.user() as alice:
        made = [new_itwin(alice) for _ in range(27)]
        for it in made:
            assert alice.post(f"/itwins/recents/{it['id']}").status_code == 204
        listed = ids(alice.get("/itwins/recents", params={"$top": "100"}))
        assert listed == [m["id"] for m in reversed(made)][:25]


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("body", "target", "detail_code"),
    [
        ({"subClass": "Project", "displayName": "x"}, "class", "MissingRequiredProperty"),
        ({"class": "Endeavor", "displayName": "x"}, "subClass", "MissingRequiredProperty"),
        ({"class": "Endeavor", "subClass": "Project"}, "displayName", "MissingRequiredProperty"),
        ({"class": "Endeavor", "subClass": "Project", "displayName": 5}, "displayName", "InvalidValue"),
        (
            {"class": "Endeavor", "subClass": "Project", "displayName": "x" * 256},
            "displayName",
            "InvalidValue",
        ),
        ({"class": "Endeavor", "subClass": "Project", "displayName": "   "}, "displayName", "InvalidValue"),
        ({"class": "Galaxy", "subClass": "Project", "displayName": "x"}, "class", "InvalidValue"),
        ({"class": "Endeavor", "subClass": "Planet", "displayName": "x"}, "subClass", "InvalidValue"),
        ({"class": "Thing", "subClass": "Project", "displayName": "x"}, "subClass", "InvalidValue"),
        ({"class": "Account", "subClass": "Account", "displayName": "x"}, "class", "InvalidValue"),
        (
            {"class": "Endeavor", "subClass": "Project", "displayName": "x", "number": 12},
            "number",
            "InvalidValue",
        ),
        (
            {"class": "Endeavor", "subClass": "Project", "displayName": "x", "latitude": 91},
            "latitude",
            "InvalidValue",
        ),
        (
            {"class": "Endeavor", "subClass": "Project", "displayName": "x", "latitude": "1"},
            "latitude",
            "InvalidValue",
        ),
        (
            {"class": "Endeavor", "subClass": "Project", "displayName": "x", "status": "Done"},
            "status",
            "InvalidValue",
        ),
        (
            {"class": "Endeavor", "subClass": "Project", "displayName": "x", "ianaTimeZone": "Mars/Olympus"},
            "ianaTimeZone",
            "InvalidValue",
        ),
        (
            {"class": "Endeavor", "subClass": "Project", "displayName": "x", "dataCenterLocation": "Moon"},
            "dataCenterLocation",
            "InvalidValue",
        ),
        (
            {"class": "Endeavor", "subClass": "Project", "displayName": "x", "parentId": "nope"},
            "parentId",
            "InvalidValue",
        ),
    ],
)
def test_create_bad_input_writes_nothing(
    server: Server, body: dict[str, Any], target: str, detail_code: str
) -> None:
    with server.user() as alice:
        before = ids(alice.get("/itwins/", params={"includeInactive": "true"}))
        err = assert_error(alice.post("/itwins/", json=body), 422, "InvalidiTwinsRequest")
        assert err["message"] == "Cannot create iTwin."
        assert {"code": detail_code, "target": target} in [
            {"code": d["code"], "target": d.get("target")} for d in err["details"]
        ], err
        assert ids(alice.get("/itwins/", params={"includeInactive": "true"})) == before


@pytest.mark.parametrize("raw", [b"{", b"not json", b"[1,2]", b'"text"', b"", b'{"class": "Endeavor",}'])
def test_malformed_bodies(server: Server, raw: bytes) -> None:
    with server.user() as alice:
        resp = alice.post("/itwins/", content=raw, headers={"Content-Type": "application/json"})
        err = assert_error(resp, 422, "InvalidiTwinsRequest")
        assert err["details"][0]["code"] in ("InvalidRequestBody", "MissingRequestBody")


def test_patch_bad_input(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        for body in (
            {"displayName": ""},
            {"displayName": None},
            {"latitude": "north"},
            {"status": "Gone"},
            {"number": "x" * 300},
        ):
            assert_error(alice.patch(f"/itwins/{it['id']}", json=body), 422, "InvalidiTwinsRequest")
        assert alice.get(f"/itwins/{it['id']}").json()["iTwin"] == it


def test_unknown_and_malformed_ids(server: Server) -> None:
    with server.user() as alice:
        for bad in (str(uuid.uuid4()), "not-a-uuid", "1"):
            assert_error(alice.get(f"/itwins/{bad}"), 404, "iTwinNotFound")
            assert_error(alice.get(f"/itwins/{bad}/account"), 404, "iTwinNotFound")


def test_body_too_large(server: Server) -> None:
    with server.user() as alice:
        big = b'{"displayName": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        assert_error(
            alice.post("/itwins/", content=big, headers={"Content-Type": "application/json"}),
            413,
            "RequestTooLarge",
        )


def test_concurrent_duplicate_numbers_one_winner(server: Server) -> None:
    import concurrent.futures

    token = server.token()
    number = unique("RACE")

    def attempt(_: int) -> int:
        with server.client(token) as c:
            return c.post(
                "/itwins/",
                json={"class": "Endeavor", "subClass": "Project", "displayName": "r", "number": number},
            ).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(attempt, range(8)))
    assert sorted(codes) == [201] + [409] * 7, codes
