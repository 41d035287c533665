"""The OpenAPI document tells the truth: every route is in it, with its body, answers and errors;
``/docs`` works with no network; and schemathesis, driving the live server from the document as a
member, finds no server error, no undocumented status and no answer that breaks its schema."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx

from conftest import ROOT, Server, assert_error, new_itwin


def _document(server: Server) -> dict[str, Any]:
    resp = httpx.get(f"{server.base_url}/openapi.json", timeout=30)
    assert resp.status_code == 200
    doc: dict[str, Any] = resp.json()
    return doc


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "put", "post", "patch", "delete")
    ]


def test_every_operation_is_described(server: Server) -> None:
    doc = _document(server)
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert doc["security"] == [{"bearer": []}]
    operations = _operations(doc)
    assert len(operations) >= 100
    ids = [op["operationId"] for _, _, op in operations]
    assert len(ids) == len(set(ids)), "operation ids are unique"
    schemas = doc["components"]["schemas"]
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert op["summary"], where
        public = op.get("security") == []
        if not public:
            assert "401" in op["responses"] and "429" in op["responses"], where
        if "{" in path:
            assert "404" in op["responses"], where
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(path.replace("}", "{").split("{")[1::2]), where
        if method in ("post", "patch", "put") and "requestBody" in op:
            assert "422" in op["responses"] and "413" in op["responses"], where
        for status, answer in op["responses"].items():
            for media in answer.get("content", {}).values():
                ref = media["schema"].get("$ref")
                if ref:
                    assert ref.rsplit("/", 1)[-1] in schemas, (where, status, ref)
            if status.startswith(("4", "5")) and not public:
                assert answer["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"
                }, where
    # Request bodies are the models the server validates with.
    create = doc["paths"]["/itwins"]["post"]
    body = schemas[create["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert {"class", "subClass", "displayName"} <= set(body["properties"])
    assert create["responses"]["201"]["links"]["GetITwin"]["operationId"] == "itwins.get_itwin"
    ops_by_id = {op["operationId"] for _, _, op in operations}
    for _, _, op in operations:
        for status in op["responses"].values():
            for link in status.get("links", {}).values():
                assert link["operationId"] in ops_by_id


def test_docs_work_offline(server: Server) -> None:
    page = httpx.get(f"{server.base_url}/docs", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/docs/assets/swagger-ui-bundle.js" in page.text and "/openapi.json" in page.text
    assert "cdn." not in page.text and "https://" not in page.text.replace("https://fastapi", "")
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        got = httpx.get(f"{server.base_url}/docs/assets/{asset}", timeout=30)
        assert got.status_code == 200 and len(got.content) > 1000, asset


def test_what_the_fuzzer_found(server: Server) -> None:
    """Each of these answered 500 or broke RFC 9110 before the document was checked by schemathesis."""
    with server.user() as alice:
        # A 405 lists what the path does serve.
        resp = alice.request("TRACE", "/itwins")
        assert_error(resp, 405, "MethodNotAllowed")
        assert set(resp.headers["allow"].split(", ")) >= {"GET", "POST", "OPTIONS"}
        # An offset beyond any database integer is a 422, not a 500.
        huge = alice.get("/itwins", params={"$skip": "6554207395988364066816"})
        assert_error(huge, 422, "InvalidiTwinsRequest")
        # A changeset index past PostgreSQL's integer is a 422 too.
        itwin = new_itwin(alice)
        made = alice.post("/imodels", json={"iTwinId": itwin["id"], "name": "Fuzzed"})
        assert made.status_code == 201, made.text
        released = alice.get(
            f"/imodels/{made.json()['iModel']['id']}/locks/released-locks",
            params={"afterChangesetIndex": "2147483648"},
        )
        assert_error(released, 422, "InvalidiModelsRequest")
        # A NUL character in a filter: PostgreSQL cannot compare it, so every backend refuses it.
        nul = alice.get(f"/imodels/{made.json()['iModel']['id']}/namedversions", params={"name": "\x00E"})
        err = assert_error(nul, 422, "InvalidiModelsRequest")
        assert err["details"][0]["target"] == "name"
    # A signature with non-ASCII characters is a bad link, not a 500.
    resp = httpx.get(
        f"{server.base_url}/blobs/x", params={"sp": "r", "se": "9703692022", "sig": "Ôl"}, timeout=30
    )
    assert_error(resp, 404, "FileNotFound")


def test_schemathesis_finds_nothing(server: Server) -> None:
    token = server.token()
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "api_fuzz.py"),
            "--base-url",
            server.base_url,
            "--token",
            token,
            "--examples",
            "3",
            "--seed",
            "20261129",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode in (0, 1), run.stderr
    counts = json.loads(run.stdout.strip().splitlines()[-1])
    assert counts["cases"] > 500, counts
    failures = {k: v for k, v in counts.items() if k not in ("cases", "seconds")}
    assert failures == {}, (failures, run.stdout[-5000:])
