"""Signing keys that agree (issue #17): the CLI and the server use the same key and say which; a token
signed by a key the server does not know gets a 401 that says so; several hosts share their keys through
``TWINBASE_KEYS_DIR`` or the secret files ``TWINBASE_SIGNING_KEY_FILE`` / ``TWINBASE_URL_SIGNING_KEY_FILE``,
which twinbase never creates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import _backends, assert_error, create_pg_database, drop_pg_database, pg_url, start_server
from twinbase.identity.tokens import SigningKey, TokenIssuer
from twinbase.settings import Settings


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TWINBASE_")}
    return subprocess.run(
        [sys.executable, "-m", "twinbase", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _me(base_url: str, token: str) -> httpx.Response:
    return httpx.get(f"{base_url}/itwins/", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_token_never_makes_a_data_folder_of_its_own(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _cli("token", "--user", "alice", cwd=elsewhere)
    assert done.returncode == 2, done
    assert "There is no signing key at" in done.stderr and "twinbase serve" in done.stderr
    assert done.stdout == ""
    assert list(elsewhere.iterdir()) == []  # no twinbase-data folder, no key made


@pytest.mark.parametrize("backend", _backends())
def test_cli_tokens_and_foreign_keys(backend: str, tmp_path: Path) -> None:
    pg = create_pg_database() if backend == "postgres" else None
    url = pg_url(pg) if pg else f"sqlite:///{tmp_path / 'data' / 'twinbase.db'}"
    server = start_server(tmp_path / "data", url, backend)
    try:
        done = _cli("token", "--user", "alice", "--data-dir", str(server.data_dir), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        kid = SigningKey.load(Settings(data_dir=server.data_dir).token_key_path).kid
        assert f"signed with key {kid}" in done.stderr and str(server.data_dir) in done.stderr
        assert _me(server.base_url, done.stdout.strip()).status_code == 200

        # A token from another data folder's key: a 401 that names both keys.
        other = SigningKey.load_or_create(tmp_path / "other" / "signing-key.pem")
        foreign = TokenIssuer(Settings(data_dir=tmp_path / "other"), other).issue("alice")
        err = assert_error(_me(server.base_url, foreign), 401, "Unauthorized")
        assert f"kid {other.kid}" in err["message"] and f"kid {kid}" in err["message"], err
        # A token that is not a JWT at all keeps the platform's plain message.
        plain = assert_error(_me(server.base_url, "not-a-jwt"), 401, "Unauthorized")
        assert "does not know" not in plain["message"]
    finally:
        server.stop()
        if pg:
            drop_pg_database(pg)


@pytest.mark.parametrize("backend", _backends())
def test_hosts_sharing_a_keys_folder_accept_each_others_tokens(backend: str, tmp_path: Path) -> None:
    """Two servers (two hosts' data folders) over one database, keys in one shared folder."""
    shared = tmp_path / "secrets"
    pg = create_pg_database() if backend == "postgres" else None
    url = pg_url(pg) if pg else f"sqlite:///{tmp_path / 'shared.db'}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_server(tmp_path / "a" / "data", url, backend, TWINBASE_KEYS_DIR=str(shared))
    second = None
    try:
        second = start_server(tmp_path / "b" / "data", url, backend, TWINBASE_KEYS_DIR=str(shared))
        assert sorted(p.name for p in shared.iterdir()) == ["signing-key.pem", "url-signing.key"]
        assert not (first.data_dir / "keys").exists() and not (second.data_dir / "keys").exists()
        token = TokenIssuer(Settings(data_dir=first.data_dir), SigningKey.load(shared / "signing-key.pem"))
        alice = token.issue("alice", email="alice@example.com", name="Alice Tester")
        made = httpx.post(
            f"{first.base_url}/itwins/",
            json={"displayName": "Shared keys", "number": "K-1", "class": "Endeavor", "subClass": "Project"},
            headers={"Authorization": f"Bearer {alice}"},
            timeout=30,
        )
        assert made.status_code == 201, made.text
        got = httpx.get(
            f"{second.base_url}/itwins/{made.json()['iTwin']['id']}",
            headers={"Authorization": f"Bearer {alice}"},
            timeout=30,
        )
        assert got.status_code == 200, got.text
    finally:
        first.stop()
        if second is not None:
            second.stop()
        if pg:
            drop_pg_database(pg)


def test_named_key_files_are_never_created(tmp_path: Path) -> None:
    data = tmp_path / "data"
    missing = tmp_path / "mounted" / "token-key.pem"
    done = _cli(
        "serve", "--data-dir", str(data), "--port", "1", cwd=tmp_path, TWINBASE_SIGNING_KEY_FILE=str(missing)
    )
    assert done.returncode == 2, done
    assert f"There is no signing key at {missing}" in done.stderr and "Traceback" not in done.stderr
    assert not missing.parent.exists()
    short = tmp_path / "url.key"
    short.write_bytes(b"too short")
    done = _cli(
        "serve",
        "--data-dir",
        str(data),
        "--port",
        "1",
        cwd=tmp_path,
        TWINBASE_URL_SIGNING_KEY_FILE=str(short),
    )
    assert done.returncode == 2 and "at least 32 are needed" in done.stderr, done
    assert "Traceback" not in done.stderr

    # Given and present, they are what the server signs with, and the data folder holds no keys.
    data = tmp_path / "fresh"
    secrets = tmp_path / "mounted"
    secrets.mkdir()
    key = SigningKey.load_or_create(secrets / "token-key.pem")
    (secrets / "url.key").write_bytes(os.urandom(48))
    server = start_server(
        data,
        f"sqlite:///{data / 'twinbase.db'}",
        "sqlite",
        TWINBASE_SIGNING_KEY_FILE=str(secrets / "token-key.pem"),
        TWINBASE_URL_SIGNING_KEY_FILE=str(secrets / "url.key"),
    )
    try:
        assert not (data / "keys").exists()
        token = TokenIssuer(Settings(data_dir=data), key).issue("bob")
        assert _me(server.base_url, token).status_code == 200
        jwks = httpx.get(f"{server.base_url}/.well-known/jwks.json", timeout=30)
        assert jwks.status_code == 200 and [k["kid"] for k in jwks.json()["keys"]] == [key.kid]
    finally:
        server.stop()
        shutil.rmtree(secrets, ignore_errors=True)
