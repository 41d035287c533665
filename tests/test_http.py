"""Cross-cutting HTTP behaviour: error shape for unknown routes, 405, 500; CORS; request ids; rate limits."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import Server, assert_error, running_server
from twinbase.api.limits import TokenBucket
from twinbase.app import create_app
from twinbase.settings import Settings


def test_unknown_route_and_method(server: Server) -> None:
    with server.user() as alice:
        assert_error(alice.get("/nothing/here"), 404, "NotFound")
        assert_error(alice.put("/itwins/"), 405, "MethodNotAllowed")
    with httpx.Client(base_url=server.base_url) as anon:
        assert_error(anon.get("/nothing/here"), 404, "NotFound")


def test_unexpected_errors_never_leak() -> None:
    app = create_app(Settings(data_dir="/tmp/twinbase-500-test"))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    client = TestClient(app, raise_server_exceptions=False)
    resp = client.get("/boom")
    assert resp.status_code == 500
    assert resp.json() == {
        "error": {
            "code": "Unknown",
            "message": "An unexpected error occurred. The request id identifies it in the logs.",
        }
    }
    assert "secret" not in resp.text and "Traceback" not in resp.text


def test_request_id_and_correlation(server: Server) -> None:
    with server.user() as alice:
        resp = alice.get("/itwins/")
        assert len(resp.headers["x-request-id"]) >= 16
        resp = alice.get("/itwins/", headers={"X-Correlation-Id": "corr-123"})
        assert resp.headers["x-request-id"] == "corr-123"
    with httpx.Client(base_url=server.base_url) as anon:
        assert anon.get("/itwins/").headers["x-request-id"]


def test_cors_preflight_and_headers(server: Server) -> None:
    with httpx.Client(base_url=server.base_url) as anon:
        resp = anon.options(
            "/itwins/",
            headers={
                "Origin": "http://viewer.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, accept, prefer, sessionid, content-type, "
                "x-itwin-query-scope",
            },
        )
        assert resp.status_code == 200
        allowed = resp.headers["access-control-allow-headers"].lower()
        for header in ("authorization", "prefer", "sessionid", "x-itwin-query-scope", "content-type"):
            assert header in allowed
        assert resp.headers["access-control-allow-origin"] in ("*", "http://viewer.example")
        resp = anon.get("/itwins/", headers={"Origin": "http://viewer.example"})
        assert resp.status_code == 401 and resp.headers["access-control-allow-origin"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_rate_limit(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    with running_server(
        backend, tmp_path_factory, TWINBASE_RATE_LIMIT_PER_MINUTE="60", TWINBASE_RATE_LIMIT_BURST="5"
    ) as srv:
        token = srv.token("busy")
        with srv.client(token) as c:
            codes = [c.get("/itwins/").status_code for _ in range(8)]
            assert codes[:5] == [200] * 5
            assert 429 in codes
            resp = c.get("/itwins/")
            err = assert_error(resp, 429, "RateLimitExceeded")
            assert err["message"]
            assert int(resp.headers["retry-after"]) >= 1
            # The Export API (seed 004) spells its 429 its own way.
            resp = c.get("/export/connections", params={"imodelId": "00000000-0000-0000-0000-000000000000"})
            err = assert_error(resp, 429, "TooManyRequests")
            assert int(resp.headers["retry-after"]) >= 1
        # Another client has its own budget.
        with srv.user() as other:
            assert other.get("/itwins/").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"])
def test_rate_limit_is_keyed_on_the_verified_caller(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # One token a minute: nothing refills while the test runs.
    with running_server(
        backend,
        tmp_path_factory,
        TWINBASE_RATE_LIMIT_PER_MINUTE="1",
        TWINBASE_RATE_LIMIT_BURST="3",
        TWINBASE_RATE_LIMIT_CLIENTS="4",
    ) as srv:
        # The same token, its scheme and spacing re-spelled: one caller, one bucket.
        token = srv.token("respelled")
        with httpx.Client(base_url=srv.base_url) as c:
            codes = [
                c.get("/itwins", headers={"Authorization": f"{scheme} {token}"}).status_code
                for scheme in ("Bearer", "bearer ", "BEARER  ", "bearer")
            ]
            assert codes == [200, 200, 200, 429]
            # Made-up tokens from one address share that address's bucket (no fresh bucket each).
            garbage = [
                c.get("/itwins", headers={"Authorization": f"Bearer made-up-{n}"}).status_code
                for n in range(4)
            ]
            assert garbage == [401, 401, 401, 429]
            assert_error(c.get("/itwins"), 429, "RateLimitExceeded")  # no token: the address too
        # Many new callers (more than the table holds) never reset a caller that spent its budget.
        busy = srv.token("busy")
        with srv.client(busy) as c:
            assert [c.get("/itwins").status_code for _ in range(4)] == [200, 200, 200, 429]
        for _ in range(10):
            with srv.user() as newcomer:
                assert newcomer.get("/itwins").status_code == 200
        with srv.client(busy) as c:
            assert_error(c.get("/itwins"), 429, "RateLimitExceeded")
        with srv.client(token) as c:
            assert_error(c.get("/itwins"), 429, "RateLimitExceeded")


def test_rate_limit_table_is_bounded_without_a_reset() -> None:
    bucket = TokenBucket(per_minute=60, burst=2, max_clients=10)
    assert bucket.take("spent", now=0.0) == 0.0
    assert bucket.take("spent", now=0.0) == 0.0
    assert bucket.take("spent", now=0.0) > 0
    for n in range(1000):
        assert bucket.take(f"caller-{n}", now=0.5) == 0.0
        assert len(bucket) <= 10
    assert bucket.take("spent", now=0.5) > 0  # still spent: never evicted while others were fuller
    # A bucket that has refilled is dropped first; its caller comes back with the same full burst.
    assert bucket.take("caller-999", now=100.0) == 0.0


def test_default_limits_allow_a_busy_client(server: Server) -> None:
    """One user's parallel test suite (hundreds of requests at once) must not trip the defaults."""
    import concurrent.futures

    token = server.token()

    def hit(_: int) -> int:
        with server.client(token) as c:
            return sum(c.get("/itwins/", params={"$top": "1"}).status_code == 200 for _ in range(10))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(hit, range(40))) == 400


def test_accept_versions(server: Server) -> None:
    with server.user() as alice:
        ok = [
            "application/vnd.bentley.itwin-platform.v1+json",
            "application/json",
            "*/*",
            "application/vnd.bentley.itwin-platform.v2+json, application/json",
        ]
        for accept in ok:
            assert alice.get("/itwins/", headers={"Accept": accept}).status_code == 200, accept
        resp = alice.get("/itwins/", headers={"Accept": "application/vnd.bentley.itwin-platform.v9+json"})
        assert_error(resp, 406, "InvalidHeaderValue")
