"""People sign in to the builtin issuer: authorization code with PKCE, against the real server."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import subprocess
import sys
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from conftest import Server, assert_error, new_itwin

REDIRECT = "http://localhost:3000/signin-callback"


def cli(server: Server, *args: str) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TWINBASE_DATABASE_URL": server.database_url}
    out = subprocess.run(
        [sys.executable, "-m", "twinbase", *args, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return dict(line.split("=", 1) for line in out.split())


class FormReader(HTMLParser):
    """The sign-in page's form: its action, inputs by id and hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.ids: set[str] = set()
        self.hidden: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a.get("value", "")


@pytest.fixture(scope="module")
def accounts(server: Server) -> dict[str, str]:
    email = f"signin-{secrets.token_hex(4)}@example.com"
    subject = cli(
        server, "user", "add", "--email", email, "--name", "Sam Signin", "--password", "correct horse"
    )
    spa = cli(server, "app", "register", "--name", "Viewer", "--redirect-uri", REDIRECT, "--public")
    web = cli(server, "app", "register", "--name", "Portal", "--redirect-uri", REDIRECT)
    return {
        "email": email,
        "subject": subject["subject"],
        "spa": spa["client_id"],
        **{"web": web["client_id"], "web_secret": web["client_secret"]},
    }


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def sign_in(server: Server, client_id: str, email: str, password: str, **extra: str) -> httpx.Response:
    params = {
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid profile email itwin-platform",
        "state": "st-1",
        "nonce": "n-1",
        **extra,
    }
    with httpx.Client(base_url=server.base_url) as browser:
        page = browser.get("/connect/authorize", params=params)
        assert page.status_code == 200, page.text
        form = FormReader()
        form.feed(page.text)
        # The element ids the platform's own sign-in page has (browser automation relies on them).
        assert {"identifierInput", "password", "sign-in-button"} <= form.ids
        return browser.post(form.action, data={**form.hidden, "email": email, "password": password})


def code_of(resp: httpx.Response) -> str:
    assert resp.status_code == 302, resp.text
    location = urlsplit(resp.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st-1"]
    return query["code"][0]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verified_id_token(http: httpx.Client, id_token: str, *, audience: str) -> dict[str, Any]:
    """The id token's claims, checked as a relying party checks them: the signature against the key the
    discovery document's JWKS publishes under the token's ``kid``, the algorithm it advertises, the
    issuer it names, the audience (the client id) and the expiry."""
    discovery = http.get("/.well-known/openid-configuration")
    assert discovery.status_code == 200, discovery.text
    config = discovery.json()
    assert config["jwks_uri"] == f"{http.base_url}/.well-known/jwks.json"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    jwks = httpx.get(config["jwks_uri"])
    assert jwks.status_code == 200, jwks.text
    header = jwt.get_unverified_header(id_token)
    assert header["alg"] == "RS256"
    keys = {k["kid"]: k for k in jwks.json()["keys"]}
    assert header["kid"] in keys, (header, list(keys))
    key = jwt.PyJWK(keys[header["kid"]])
    return dict(
        jwt.decode(
            id_token,
            key.key,
            algorithms=["RS256"],
            audience=audience,
            issuer=config["issuer"],
            options={"require": ["iss", "sub", "aud", "exp", "iat", "nonce"]},
        )
    )


def test_browser_app_signs_in_with_pkce(server: Server, accounts: dict[str, str]) -> None:
    verifier, challenge = pkce()
    code = code_of(
        sign_in(
            server,
            accounts["spa"],
            accounts["email"],
            "correct horse",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    with httpx.Client(base_url=server.base_url) as http:
        token = http.post(
            "/connect/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "client_id": accounts["spa"],
                "code_verifier": verifier,
            },
        )
        assert token.status_code == 200, token.text
        body = token.json()
        assert body["token_type"] == "Bearer" and body["scope"] == "email itwin-platform openid profile"
        claims = verified_id_token(http, body["id_token"], audience=accounts["spa"])
        assert claims["nonce"] == "n-1"
        assert claims["exp"] - claims["iat"] == body["expires_in"] > 0
        assert claims["iat"] <= time.time() + 5 and claims["exp"] > time.time()
        assert claims["sub"] == accounts["subject"] and claims["email"] == accounts["email"]
        assert claims["email_verified"] is True and claims["name"] == "Sam Signin"
        # Signed by the key the JWKS publishes, and by nothing else: a forged body fails the check.
        header, _payload, signature = body["id_token"].split(".")
        forged_claims = {**claims, "sub": "someone-else"}
        forged = ".".join([header, b64url(json.dumps(forged_claims).encode()), signature])
        with pytest.raises(jwt.InvalidSignatureError):
            verified_id_token(http, forged, audience=accounts["spa"])
        with pytest.raises(jwt.InvalidAudienceError):
            verified_id_token(http, body["id_token"], audience=accounts["web"])
        # The same code cannot be used twice.
        again = http.post(
            "/connect/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "client_id": accounts["spa"],
                "code_verifier": verifier,
            },
        )
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        info = http.get("/connect/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert info.json()["email"] == accounts["email"] and info.json()["name"] == "Sam Signin"
    # The access token works on the APIs, as that person.
    with server.client(body["access_token"]) as sam:
        it = new_itwin(sam)
        assert it["createdBy"] == accounts["subject"]


def test_confidential_app_and_bad_attempts(server: Server, accounts: dict[str, str]) -> None:
    wrong = sign_in(server, accounts["web"], accounts["email"], "wrong password")
    assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
    code = code_of(sign_in(server, accounts["web"], accounts["email"], "correct horse"))
    with httpx.Client(base_url=server.base_url) as http:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        bad = http.post("/connect/token", data=form, auth=(accounts["web"], "not-the-secret"))
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        ok = http.post("/connect/token", data=form, auth=(accounts["web"], accounts["web_secret"]))
        assert ok.status_code == 200, ok.text
    # A browser app without PKCE, a wrong verifier, an unregistered redirect, an unknown client.
    code = code_of(sign_in(server, accounts["spa"], accounts["email"], "correct horse"))
    with httpx.Client(base_url=server.base_url) as http:
        no_pkce = http.post(
            "/connect/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "client_id": accounts["spa"],
            },
        )
        assert no_pkce.status_code == 400 and no_pkce.json()["error"] == "invalid_grant"
        _, challenge = pkce()
        code = code_of(
            sign_in(
                server,
                accounts["spa"],
                accounts["email"],
                "correct horse",
                code_challenge=challenge,
                code_challenge_method="S256",
            )
        )
        wrong_verifier = http.post(
            "/connect/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "client_id": accounts["spa"],
                "code_verifier": "nope",
            },
        )
        assert wrong_verifier.json()["error"] == "invalid_grant"
        evil = http.get(
            "/connect/authorize",
            params={
                "client_id": accounts["spa"],
                "response_type": "code",
                "redirect_uri": "https://evil.example/cb",
                "scope": "openid",
            },
        )
        assert evil.status_code == 400 and "location" not in evil.headers
        unknown = http.get(
            "/connect/authorize",
            params={
                "client_id": "nobody",
                "response_type": "code",
                "redirect_uri": REDIRECT,
                "scope": "openid",
            },
        )
        assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_client"
        bad_scope = http.get(
            "/connect/authorize",
            params={
                "client_id": accounts["spa"],
                "response_type": "code",
                "redirect_uri": REDIRECT,
                "scope": "admin",
            },
            follow_redirects=False,
        )
        assert bad_scope.status_code == 302 and "error=invalid_scope" in bad_scope.headers["location"]
        disco = http.get("/.well-known/openid-configuration").json()
        assert disco["authorization_endpoint"].endswith("/connect/authorize")
        assert "S256" in disco["code_challenge_methods_supported"]
        assert_error(http.get("/connect/userinfo"), 401, "HeaderNotFound")
        assert re.match(r"^[0-9a-f-]{36}$", accounts["subject"])
