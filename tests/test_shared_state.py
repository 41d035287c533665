"""Several hosts, one deployment (issue #17): two ``twinbase serve`` processes over one database and one
Redis (``TWINBASE_REDIS_URL``) share their rate-limit buckets, the per-user briefcase-acquisition limit
and the read cache's invalidation; when Redis goes away mid-flight they go on with their own.

Each test starts its own ``redis-server`` (Debian's, on a free port), so it can also stop it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import (
    Server,
    _backends,
    assert_error,
    create_pg_database,
    drop_pg_database,
    free_port,
    new_imodel,
    new_itwin,
    pg_url,
    start_server,
)
from test_accesscontrol import ac, add_member, role_ids


class Hosts:
    """Two servers ("hosts": their own data folders) on one database, keys and Redis."""

    def __init__(self, backend: str, tmp: Path, **env: str) -> None:
        self.pg = create_pg_database() if backend == "postgres" else None
        url = pg_url(self.pg) if self.pg else f"sqlite:///{tmp / 'shared.db'}"
        common = {"TWINBASE_KEYS_DIR": str(tmp / "keys"), "TWINBASE_REDIS_PREFIX": uuid.uuid4().hex, **env}
        self.servers: list[Server] = []
        for name in ("a", "b"):
            (tmp / name).mkdir()
            self.servers.append(start_server(tmp / name / "data", url, backend, **common))

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        if self.pg:
            drop_pg_database(self.pg)


@pytest.fixture(params=_backends())
def hosts_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Hosts]]:
    made: list[Hosts] = []

    def make(**env: str) -> Hosts:
        hosts = Hosts(request.param, tmp_path, **env)
        made.append(hosts)
        return hosts

    yield make
    for hosts in made:
        hosts.close()


def test_one_rate_limit_budget_for_every_host(hosts_factory: Callable[..., Hosts], redis_url: str) -> None:
    a, b = hosts_factory(
        TWINBASE_REDIS_URL=redis_url, TWINBASE_RATE_LIMIT_PER_MINUTE="6", TWINBASE_RATE_LIMIT_BURST="4"
    ).servers
    token = a.token("carol")
    answers = []
    for n in range(6):  # alternately: 4 pass (the burst), then the shared bucket is empty on both
        host = (a, b)[n % 2]
        with host.client(token) as client:
            answers.append(client.get("/itwins/").status_code)
    assert answers == [200, 200, 200, 200, 429, 429], answers
    with b.client(token) as client:
        err = assert_error(client.get("/itwins/"), 429, "RateLimitExceeded")
        assert err["message"]
        assert int(client.get("/itwins/").headers["Retry-After"]) >= 1


def test_briefcase_acquisitions_are_limited_per_user_across_hosts(
    hosts_factory: Callable[..., Hosts], redis_url: str
) -> None:
    a, b = hosts_factory(TWINBASE_REDIS_URL=redis_url, TWINBASE_BRIEFCASE_ACQUISITIONS_PER_MINUTE="2").servers
    with a.user("dave") as dave_a, b.client(a.token("dave")) as dave_b, a.user("erin") as erin:
        itwin = new_itwin(dave_a)
        imodel = new_imodel(dave_a, itwin["id"])
        path = f"/imodels/{imodel['id']}/briefcases"
        assert dave_a.post(path, json={}).status_code == 201
        assert dave_b.post(path, json={}).status_code == 201
        resp = dave_a.post(path, json={})
        err = assert_error(resp, 429, "RateLimitExceeded")
        assert "briefcases" in err["message"] and int(resp.headers["Retry-After"]) >= 1
        assert_error(dave_b.post(path, json={}), 429, "RateLimitExceeded")
        # Per user: another member still acquires (after being made one).
        editor = role_ids(dave_a, itwin["id"])["Contributor"]
        add_member(dave_a, itwin["id"], "erin@example.com", editor)
        assert erin.post(path, json={}).status_code == 201


def test_a_removed_member_is_refused_at_once_on_every_host(
    hosts_factory: Callable[..., Hosts], redis_url: str
) -> None:
    # A long read-cache lifetime: only the shared invalidation can make the second host forget.
    a, b = hosts_factory(TWINBASE_REDIS_URL=redis_url, TWINBASE_READ_CACHE_SECONDS="300").servers
    with a.user("frank") as owner, b.client(a.token("gina")) as gina_b, a.user("gina") as gina_a:
        itwin = new_itwin(owner)
        add_member(owner, itwin["id"], "gina@example.com", role_ids(owner, itwin["id"])["Reader"])
        assert gina_a.get("/itwins/").status_code == 200  # gina is recorded
        for _ in range(2):  # the second answer comes from host b's cache
            seen = gina_b.get(f"/itwins/{itwin['id']}")
            assert seen.status_code == 200, seen.text
            assert itwin["id"] in [i["id"] for i in gina_b.get("/itwins/").json()["iTwins"]]
        assert owner.delete(ac(itwin["id"], "/members/users/gina")).status_code == 204
        assert_error(gina_b.get(f"/itwins/{itwin['id']}"), 404, "iTwinNotFound")
        assert itwin["id"] not in [i["id"] for i in gina_b.get("/itwins/").json()["iTwins"]]


def test_without_redis_hosts_go_on_with_their_own(
    hosts_factory: Callable[..., Hosts], redis_url: str, tmp_path: Path
) -> None:
    """Redis stopping mid-flight is not an outage: limits fall back to each process's buckets and the
    read cache serves nothing (a cached answer can no longer be proven fresh)."""
    hosts = hosts_factory(TWINBASE_REDIS_URL=redis_url, TWINBASE_READ_CACHE_SECONDS="300")
    a, b = hosts.servers
    import redis

    redis.Redis.from_url(redis_url).shutdown(nosave=True)
    with a.user("hank") as owner, b.client(a.token("ivy")) as ivy_b, a.user("ivy") as ivy_a:
        itwin = new_itwin(owner)
        add_member(owner, itwin["id"], "ivy@example.com", role_ids(owner, itwin["id"])["Reader"])
        assert ivy_a.get("/itwins/").status_code == 200
        for _ in range(2):  # host b would answer the second from its cache, were it trusted
            assert ivy_b.get(f"/itwins/{itwin['id']}").status_code == 200
        assert owner.delete(ac(itwin["id"], "/members/users/ivy")).status_code == 204
        assert_error(ivy_b.get(f"/itwins/{itwin['id']}"), 404, "iTwinNotFound")


def test_serve_refuses_an_unreachable_redis(tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "twinbase", "serve", "--data-dir", str(tmp_path / "data"), "--port", "1"],
        env={"PATH": "/usr/bin:/bin", "TWINBASE_REDIS_URL": f"redis://127.0.0.1:{port}/0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert f"Redis at redis://127.0.0.1:{port}/0 cannot be reached" in done.stderr
    assert "Traceback" not in done.stderr
