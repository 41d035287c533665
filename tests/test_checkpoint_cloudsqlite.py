"""An unmodified iTwin.js backend against twinbase: no adapter, no internal hooks.

core-backend 5.x reads checkpoints only as CloudSqlite containers from
``https://<storage>.blob.core.windows.net`` (the host is fixed in its code), so this is the site setup the
README describes, made in miniature: a network namespace of the test's own, with only a loopback, where
``twinbasetest.blob.core.windows.net`` resolves to 127.0.0.1 (``ip netns exec`` mounts
``/etc/netns/<name>/hosts`` over ``/etc/hosts``); twinbase serves HTTPS on port 443 there with a
certificate from a test CA, which Node trusts through ``NODE_EXTRA_CA_CERTS`` and the native library
through ``CLOUDSQLITE_CAINFO``. ``compat/backend-e2e.mjs`` with ``TWINBASE_HUB=plain`` (Bentley's own
``BackendIModelsAccess``) then creates an iModel, downloads briefcases, pushes and pulls, downloads
briefcases at every version and opens checkpoints with ``SnapshotDb.openCheckpoint``, at a named version
too. Nothing can leave the namespace: it has no other interface.

Needs root (network namespaces) and ``ip``: without them the test fails, it never skips.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import (
    CHECKPOINT_STORAGE_ACCOUNT,
    Server,
    create_pg_database,
    drop_pg_database,
    pg_url,
)
from test_compat_imodels import ensure_native_modules, run_compat_script
from test_compat_itwins import _tool

BLOB_HOST = f"{CHECKPOINT_STORAGE_ACCOUNT}.blob.core.windows.net"
HEALTH_TIMEOUT = 60


# --------------------------------------------------------------------------------------- test CA


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA, and a server certificate it signed for the blob host name and 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "twinbase test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    names = [x509.DNSName(BLOB_HOST), x509.DNSName("localhost"), loopback]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BLOB_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_pem, cert_pem, key_pem


# ---------------------------------------------------------------------------------------- namespace


@contextmanager
def network_namespace() -> Iterator[tuple[str, ...]]:
    """A loopback-only network namespace whose hosts file resolves the blob host to 127.0.0.1; yields
    the command prefix that runs a program in it."""
    ip = _tool("ip")
    if os.geteuid() != 0:
        pytest.fail("network namespaces need root (this test makes one with `ip netns add`)")
    name = f"tb{uuid.uuid4().hex[:10]}"
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True)
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.0.1 {BLOB_HOST}\n")
    subprocess.run([ip, "netns", "add", name], check=True)
    try:
        wrap = (ip, "netns", "exec", name)
        subprocess.run([*wrap, ip, "link", "set", "lo", "up"], check=True)
        yield wrap
    finally:
        subprocess.run([ip, "netns", "del", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)


_WAIT_HEALTHY = """
import ssl, sys, time, urllib.request
context = ssl.create_default_context(cafile=sys.argv[1])
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        with urllib.request.urlopen("https://127.0.0.1/health", context=context, timeout=1) as resp:
            if resp.status == 200:
                break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("twinbase did not answer https://127.0.0.1/health")
        time.sleep(0.1)
"""


@contextmanager
def server_in_namespace(
    wrap: tuple[str, ...], tmp: Path, database_url: str, backend: str, cert: Path, key: Path, ca: Path
) -> Iterator[Server]:
    """``twinbase serve`` on https://127.0.0.1:443 inside the namespace."""
    data_dir = tmp / "data"
    env = {
        **os.environ,
        "TWINBASE_DATABASE_URL": database_url,
        "TWINBASE_JOB_WORKERS": "2",
        "TWINBASE_CHECKPOINT_STORAGE_ACCOUNT": CHECKPOINT_STORAGE_ACCOUNT,
        "TWINBASE_TLS_CERT_FILE": str(cert),
        "TWINBASE_TLS_KEY_FILE": str(key),
        "TWINBASE_PUBLIC_URL": "https://127.0.0.1",
        "TWINBASE_RATE_LIMIT_BURST": "100000",
        "PYTHONFAULTHANDLER": "1",
    }
    env.pop("TWINBASE_CONFIG", None)
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", "twinbase", "serve", "--port", "443", "--data-dir", str(data_dir)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    try:
        ready = subprocess.run(
            [*wrap, sys.executable, "-c", _WAIT_HEALTHY, str(ca), str(HEALTH_TIMEOUT)],
            capture_output=True,
            text=True,
            timeout=HEALTH_TIMEOUT + 30,
            check=False,
        )
        if ready.returncode != 0:
            pytest.fail(f"twinbase in the namespace did not start: {ready.stderr}\n{log_path.read_text()}")
        yield Server("https://127.0.0.1", data_dir, database_url, proc, backend)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _socket_url(tcp_url: str) -> str:
    """The same PostgreSQL database through its Unix socket: the namespace has no route to 5432 on the
    host's loopback, but it shares the host's file system."""
    return tcp_url.replace("@127.0.0.1:5432/", "@/", 1) + "?host=/var/run/postgresql"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_unmodified_backend_reads_checkpoints_as_cloudsqlite_containers(backend: str, tmp_path: Path) -> None:
    ensure_native_modules()
    ca, cert, key = make_certificates(tmp_path)
    pg_name = create_pg_database() if backend == "postgres" else None
    database_url = (
        _socket_url(pg_url(pg_name)) if pg_name else f"sqlite:///{tmp_path / 'data' / 'twinbase.db'}"
    )
    try:
        with (
            network_namespace() as wrap,
            server_in_namespace(wrap, tmp_path, database_url, backend, cert, key, ca) as server,
        ):
            output = run_compat_script(
                server,
                "backend-e2e.mjs",
                wrap=wrap,
                TWINBASE_HUB="plain",
                NODE_EXTRA_CA_CERTS=str(ca),
                CLOUDSQLITE_CAINFO=str(ca),
            )
            assert "downloadBriefcase at every version" in output
    finally:
        if pg_name:
            drop_pg_database(pg_name)
