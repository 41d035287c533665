"""Every endpoint checks its token; bad tokens get 401 in the error shape. Also OIDC mode."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import Server, assert_error, new_itwin, running_server
from twinbase.app import create_app
from twinbase.settings import Settings

# Endpoints that are public by design: discovery, keys, the token grant, signed blob links and
# checkpoint containers, health.
PUBLIC = {
    "/.well-known/openid-configuration",
    "/.well-known/jwks.json",
    "/connect/token",
    "/connect/authorize",  # the sign-in page: public by design
    "/blobs/{key:path}",
    # Checkpoint containers: their token is in the query (tests/test_checkpoint_containers.py).
    "/{container:container}/manifest.bcv",
    "/{container:container}/{name}",
    "/health",
    "/docs",
    "/openapi.json",
    "/docs/oauth2-redirect",
    "/redoc",
}


def all_endpoints() -> list[tuple[str, str]]:
    """(method, path) for every route the app serves, path parameters filled with random ids."""
    app = create_app(Settings(data_dir="/tmp/twinbase-route-listing"))
    out = []
    routes = list(app.routes)
    while routes:
        route = routes.pop(0)
        if hasattr(route, "original_router"):  # FastAPI keeps included routers as one node
            routes.extend(route.original_router.routes)
            continue
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if not path or not methods or path in PUBLIC:
            continue
        # Deterministic ids: pytest-xdist workers must collect the same test ids.
        concrete = re.sub(r"\{[^}]+\}", lambda m: str(uuid.uuid5(uuid.NAMESPACE_URL, m.group(0))), path)
        for method in sorted(methods - {"HEAD"}):
            out.append((method, concrete))
    return out


ENDPOINTS = all_endpoints()


def test_route_table_is_not_empty() -> None:
    assert len(ENDPOINTS) > 20


def forged_token(server: Server, **overrides: object) -> str:
    """A token signed with a key twinbase does not know, claims otherwise valid."""
    now = int(time.time())
    claims = {
        "sub": "mallory",
        "aud": "itwin-platform",
        "scope": "itwin-platform",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256")


@pytest.fixture(scope="module")
def bad_tokens(server: Server) -> dict[str, str]:
    return {
        "expired": server.token(expires_in=-120),
        "wrong-signature": forged_token(server),
        "wrong-audience": server.token(audience="somebody-else"),
        "missing-scope": server.token(scopes=["openid"]),
        "garbage": "abc.def.ghi",
        "alg-none": jwt.encode(
            {"sub": "x", "aud": "itwin-platform", "scope": "itwin-platform", "exp": int(time.time()) + 60},
            None,
            algorithm="none",
        ),
    }


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_needs_a_token(
    server: Server, bad_tokens: dict[str, str], method: str, path: str
) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as anon:
        err = assert_error(anon.request(method, path), 401, "HeaderNotFound")
        assert err["message"] == "Header Authorization was not found in the request. Access denied."
        err = assert_error(
            anon.request(method, path, headers={"Authorization": "invalid-token"}),
            401,
            "InvalidAuthorizationScheme",
        )
        assert err["message"] == "Authorization scheme 'invalid-token' is not valid."
        assert_error(
            anon.request(method, path, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
            401,
            "InvalidAuthorizationScheme",
        )
        for _name, token in bad_tokens.items():
            resp = anon.request(method, path, headers={"Authorization": f"Bearer {token}"})
            assert_error(resp, 401, "Unauthorized")


def test_bad_token_message(server: Server, bad_tokens: dict[str, str]) -> None:
    with server.client(bad_tokens["expired"]) as c:
        err = assert_error(c.get("/itwins/"), 401, "Unauthorized")
        assert err["message"] == (
            "Access denied due to invalid access_token. Make sure that issuer is correct, "
            "the token is not expired and is not corrupted."
        )


def test_non_member_gets_404_never_403(server: Server) -> None:
    with server.user() as alice, server.user() as mallory:
        it = new_itwin(alice)
        assert_error(mallory.get(f"/itwins/{it['id']}"), 404, "iTwinNotFound")
        assert_error(
            mallory.patch(f"/itwins/{it['id']}", json={"displayName": "pwned"}), 404, "iTwinNotFound"
        )
        assert_error(mallory.delete(f"/itwins/{it['id']}"), 404, "iTwinNotFound")
        assert_error(mallory.get(f"/itwins/{it['id']}/account"), 404, "iTwinNotFound")
        assert_error(
            mallory.post(
                "/itwins/",
                json={
                    "class": "Endeavor",
                    "subClass": "WorkPackage",
                    "displayName": "x",
                    "parentId": it["id"],
                },
            ),
            404,
            "iTwinNotFound",
        )
        assert it["id"] not in [i["id"] for i in mallory.get("/itwins/").json()["iTwins"]]
        assert alice.get(f"/itwins/{it['id']}").json()["iTwin"]["displayName"] == it["displayName"]


def owners_of(client: httpx.Client, itwin_id: str) -> list[dict[str, Any]]:
    resp = client.get(f"/accesscontrol/itwins/{itwin_id}/members/owners")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["members"])


def test_user_recorded_from_claims(server: Server) -> None:
    """A token's profile claims become the user's record, as the APIs that show people answer them."""
    user = f"claims-{uuid.uuid4().hex[:10]}"
    email = f"Claire.{user}@Example.com"
    token = server.token(user, name="Claire Userton", email=email, given_name="Claire", family_name="Userton")
    with server.client(token) as c:
        it = new_itwin(c)
        assert it["createdBy"] == user
        account = c.get("/itwins/myprimaryaccount").json()["iTwin"]
        assert account["createdBy"] == user
        assert account["displayName"] == "Claire Userton's organization"  # from ``name``
        # The creator is the iTwin's owner: that record carries the claims, the email lowercased.
        recorded = {"id": user, "email": email.lower(), "givenName": "Claire", "surname": "Userton"}
        assert owners_of(c, it["id"]) == [{**recorded, "organization": ""}]
        imodel = c.post("/imodels", json={"iTwinId": it["id"], "name": "Claims"})
        assert imodel.status_code == 201, imodel.text
        users = c.get(
            f"/imodels/{imodel.json()['iModel']['id']}/users", headers={"Prefer": "return=representation"}
        ).json()["users"]
        assert [(u["id"], u["displayName"], u["givenName"], u["surname"], u["email"]) for u in users] == [
            (user, email.lower(), "Claire", "Userton", email.lower())
        ]
    # A later token with new names updates the record when that user next creates an iTwin (a server
    # process records a user's profile on their first request and then on such writes, not on every read).
    renamed = server.token(user, name="Clara Other", email=email, given_name="Clara", family_name="Other")
    with server.client(renamed) as c:
        new_itwin(c)
        [owner] = owners_of(c, it["id"])
        assert (owner["givenName"], owner["surname"], owner["email"]) == ("Clara", "Other", email.lower())


def test_an_unverified_email_is_not_recorded(server: Server) -> None:
    """An email the issuer has not verified never becomes the user's (it would claim invitations)."""
    user = f"unverified-{uuid.uuid4().hex[:10]}"
    token = server.token(user, email=f"{user}@example.com", extra={"email_verified": False})
    with server.client(token) as c:
        it = new_itwin(c)
        [owner] = owners_of(c, it["id"])
        assert owner["id"] == user and owner["email"] is None
        assert c.get("/connect/userinfo").json()["email"] is None


def test_token_cli_prints_a_working_token(server: Server) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinbase",
            "token",
            "--user",
            "cli-user",
            "--email",
            "cli@example.com",
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    ).stdout.strip()
    assert out.count(".") == 2
    with server.client(out) as c:
        assert c.get("/itwins/").status_code == 200


def test_client_credentials_grant(server: Server) -> None:
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TWINBASE_DATABASE_URL": server.database_url}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinbase",
            "app",
            "register",
            "--name",
            "CI robot",
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    creds = dict(line.split("=", 1) for line in out.split())
    with httpx.Client(base_url=server.base_url) as anon:
        disco = anon.get("/.well-known/openid-configuration").json()
        assert disco["token_endpoint"].endswith("/connect/token")
        assert anon.get("/.well-known/jwks.json").json()["keys"][0]["kty"] == "RSA"
        resp = anon.post(
            "/connect/token",
            data={"grant_type": "client_credentials", "scope": "itwin-platform"},
            auth=(creds["client_id"], creds["client_secret"]),
        )
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]
        bad = anon.post(
            "/connect/token", data={"grant_type": "client_credentials"}, auth=(creds["client_id"], "wrong")
        )
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        wrong_grant = anon.post(
            "/connect/token",
            data={
                "grant_type": "password",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
            },
        )
        assert wrong_grant.status_code == 400 and wrong_grant.json()["error"] == "unsupported_grant_type"
        bad_scope = anon.post(
            "/connect/token",
            data={"grant_type": "client_credentials", "scope": "admin"},
            auth=(creds["client_id"], creds["client_secret"]),
        )
        assert bad_scope.status_code == 400 and bad_scope.json()["error"] == "invalid_scope"
    with server.client(token) as robot:
        it = new_itwin(robot)
        assert robot.get(f"/itwins/{it['id']}").status_code == 200


def test_external_oidc_issuer(server: Server, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A second twinbase trusts the first as its external OpenID Connect issuer, through its JWKS."""
    issuer = server.base_url
    with running_server(
        "sqlite",
        tmp_path_factory,
        TWINBASE_AUTH_MODE="oidc",
        TWINBASE_AUTH_ISSUER=issuer,
        TWINBASE_AUTH_JWKS_URL=f"{issuer}/.well-known/jwks.json",
    ) as relying:
        good = server.issuer.issue("oidc-user", email="oidc@example.com", extra={"iss": issuer})
        with relying.client(good) as c:
            it = new_itwin(c)
            assert c.get(f"/itwins/{it['id']}").status_code == 200
        wrong_iss = server.issuer.issue("oidc-user", extra={"iss": "https://elsewhere.example"})
        with relying.client(wrong_iss) as c:
            assert_error(c.get("/itwins/"), 401, "Unauthorized")
        with relying.client(forged_token(server, iss=issuer)) as c:
            assert_error(c.get("/itwins/"), 401, "Unauthorized")
        with httpx.Client(base_url=relying.base_url) as anon:
            # In OIDC mode twinbase issues nothing itself.
            assert_error(
                anon.post("/connect/token", data={"grant_type": "client_credentials"}), 404, "NotFound"
            )


def test_oidc_email_claims_an_invitation_only_when_verified(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An email hands over the memberships of the person invited by it: an external issuer's token
    must say ``email_verified: true`` for that. The builtin issuer marks the emails it signs verified
    (an administrator set each one)."""
    issuer = server.base_url
    with running_server(
        "sqlite",
        tmp_path_factory,
        TWINBASE_AUTH_MODE="oidc",
        TWINBASE_AUTH_ISSUER=issuer,
        TWINBASE_AUTH_JWKS_URL=f"{issuer}/.well-known/jwks.json",
    ) as relying:
        invited = f"invited-{uuid.uuid4().hex[:8]}@example.com"

        def person(sub: str, **extra: object) -> httpx.Client:
            token = server.issuer.issue(sub, email=invited, extra={"iss": issuer, **extra})
            return relying.client(token)

        with relying.client(server.issuer.issue("oidc-owner", extra={"iss": issuer})) as owner:
            itwin = new_itwin(owner)
            ac = f"/accesscontrol/itwins/{itwin['id']}"
            role = owner.post(f"{ac}/roles", json={"displayName": "Readers", "description": "read"})
            assert role.status_code == 201, role.text
            role_id = role.json()["role"]["id"]
            assert (
                owner.patch(f"{ac}/roles/{role_id}", json={"permissions": ["itwins_read"]}).status_code == 200
            )
            added = owner.post(
                f"{ac}/members/users", json={"members": [{"email": invited, "roleIds": [role_id]}]}
            )
            assert added.status_code == 201, added.text

        for verified in (False, "false", None):  # None: an issuer that says nothing about it
            sub = f"oidc-unverified-{uuid.uuid4().hex[:8]}"
            claims = jwt.decode(
                server.issuer.issue(sub, email=invited, extra={"iss": issuer}),
                options={"verify_signature": False},
            )
            if verified is None:
                del claims["email_verified"]
            else:
                claims["email_verified"] = verified
            key = server.issuer.key
            token = jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})
            with relying.client(token) as stranger:
                assert_error(stranger.get(f"/itwins/{itwin['id']}"), 404, "iTwinNotFound")

        # A verified email claims the invitation (the builtin issuer's tokens say verified).
        assert (
            jwt.decode(server.issuer.issue("x", email=invited), options={"verify_signature": False})[
                "email_verified"
            ]
            is True
        )
        with person("oidc-verified", email_verified=True) as member:
            got = member.get(f"/itwins/{itwin['id']}")
            assert got.status_code == 200, got.text
