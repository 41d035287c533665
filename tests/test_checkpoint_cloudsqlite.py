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

The same with the Azure blob backend: Azurite serves HTTPS on 443 inside the namespace under its account's
production host name (``devstoreaccount1.blob.core.windows.net``), and the backend reads the containers
from the blob service itself with a container SAS; twinbase only says where they are.

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
from contextlib import ExitStack, contextmanager
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
from support.azurite import AZURITE_ACCOUNT, connection_string, running_azurite
from test_compat_imodels import ensure_native_modules, run_compat_script
from test_compat_itwins import _tool

BLOB_HOST = f"{CHECKPOINT_STORAGE_ACCOUNT}.blob.core.windows.net"
HEALTH_TIMEOUT = 60


# --------------------------------------------------------------------------------------- test CA


def make_certificates(folder: Path, host: str) -> tuple[Path, Path, Path]:
    """A test CA, and a server certificate it signed for ``host`` and 127.0.0.1."""
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
    names = [x509.DNSName(host), x509.DNSName("localhost"), loopback]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
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
def network_namespace(host: str) -> Iterator[tuple[str, ...]]:
    """A loopback-only network namespace whose hosts file resolves ``host`` to 127.0.0.1; yields the
    command prefix that runs a program in it."""
    ip = _tool("ip")
    if os.geteuid() != 0:
        pytest.fail("network namespaces need root (this test makes one with `ip netns add`)")
    name = f"tb{uuid.uuid4().hex[:10]}"
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True)
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.0.1 {host}\n")
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
deadline = time.monotonic() + float(sys.argv[3])
while True:
    try:
        with urllib.request.urlopen(sys.argv[2], context=context, timeout=1) as resp:
            if resp.status == 200:
                break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"no answer from {sys.argv[2]}")
        time.sleep(0.1)
"""


def wait_healthy(wrap: tuple[str, ...], url: str, ca: Path, log_path: Path) -> None:
    ready = subprocess.run(
        [*wrap, sys.executable, "-c", _WAIT_HEALTHY, str(ca), url, str(HEALTH_TIMEOUT)],
        capture_output=True,
        text=True,
        timeout=HEALTH_TIMEOUT + 30,
        check=False,
    )
    if ready.returncode != 0:
        pytest.fail(f"{ready.stderr}\n{log_path.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def server_in_namespace(
    wrap: tuple[str, ...], tmp: Path, database_url: str, backend: str, ca: Path, env: dict[str, str], url: str
) -> Iterator[Server]:
    """``twinbase serve`` inside the namespace at ``url`` (its port, and TLS when ``env`` names a
    certificate)."""
    data_dir = tmp / "data"
    full_env = {
        **os.environ,
        "TWINBASE_DATABASE_URL": database_url,
        "TWINBASE_JOB_WORKERS": "2",
        "TWINBASE_PUBLIC_URL": url,
        "TWINBASE_RATE_LIMIT_BURST": "100000",
        "PYTHONFAULTHANDLER": "1",
        **env,
    }
    full_env.pop("TWINBASE_CONFIG", None)
    port = url.rsplit(":", 1)[1] if url.count(":") == 2 else "443"
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", "twinbase", "serve", "--port", port, "--data-dir", str(data_dir)],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    try:
        wait_healthy(wrap, f"{url}/health", ca, log_path)
        yield Server(url, data_dir, database_url, proc, backend)
    finally:
        stop(proc)


@contextmanager
def azurite_in_namespace(wrap: tuple[str, ...], tmp: Path, cert: Path, key: Path, ca: Path) -> Iterator[None]:
    """Azurite's blob service on https://127.0.0.1:443 inside the namespace, with the test certificate."""

    def ready(proc: subprocess.Popen[bytes], log_path: Path) -> None:
        # Any answer will do (Azurite answers an unsigned request 4xx): it listens and speaks TLS.
        probe = subprocess.run(
            [*wrap, sys.executable, "-c", _WAIT_LISTENING, str(ca), str(HEALTH_TIMEOUT)],
            capture_output=True,
            text=True,
            timeout=HEALTH_TIMEOUT + 30,
            check=False,
        )
        if probe.returncode != 0:
            pytest.fail(f"Azurite in the namespace did not start: {probe.stderr}\n{log_path.read_text()}")

    with running_azurite(
        tmp,
        port=443,
        extra=("--cert", str(cert), "--key", str(key)),
        wrap=wrap,
        # Server-side copies: Azurite fetches the source blob from itself, through its certificate.
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(ca)},
        ready=ready,
    ):
        yield


_WAIT_LISTENING = """
import socket, ssl, sys, time
context = ssl.create_default_context(cafile=sys.argv[1])
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        with socket.create_connection(("127.0.0.1", 443), timeout=1) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("nothing speaks TLS on 127.0.0.1:443")
        time.sleep(0.1)
"""


def _socket_url(tcp_url: str) -> str:
    """The same PostgreSQL database through its Unix socket: the namespace has no route to 5432 on the
    host's loopback, but it shares the host's file system."""
    return tcp_url.replace("@127.0.0.1:5432/", "@/", 1) + "?host=/var/run/postgresql"


@pytest.mark.parametrize(
    ("backend", "blobs"), [("sqlite", "local"), ("postgres", "local"), ("sqlite", "azure")]
)
def test_unmodified_backend_reads_checkpoints_as_cloudsqlite_containers(
    backend: str, blobs: str, tmp_path: Path
) -> None:
    """``local``: twinbase serves the containers itself, on 443 under the blob host name. ``azure``: the
    blob service (Azurite, on 443 with the test certificate, under its account's production host name)
    serves them, twinbase only answers where they are."""
    ensure_native_modules()
    host = BLOB_HOST if blobs == "local" else f"{AZURITE_ACCOUNT}.blob.core.windows.net"
    ca, cert, key = make_certificates(tmp_path, host)
    pg_name = create_pg_database() if backend == "postgres" else None
    database_url = (
        _socket_url(pg_url(pg_name)) if pg_name else f"sqlite:///{tmp_path / 'data' / 'twinbase.db'}"
    )
    try:
        with ExitStack() as stack:
            wrap = stack.enter_context(network_namespace(host))
            if blobs == "local":
                env = {
                    "TWINBASE_CHECKPOINT_STORAGE_ACCOUNT": CHECKPOINT_STORAGE_ACCOUNT,
                    "TWINBASE_TLS_CERT_FILE": str(cert),
                    "TWINBASE_TLS_KEY_FILE": str(key),
                }
                url = "https://127.0.0.1"
            else:
                stack.enter_context(azurite_in_namespace(wrap, tmp_path, cert, key, ca))
                env = {
                    "TWINBASE_BLOB_BACKEND": "azure",
                    "TWINBASE_AZURE_CONNECTION_STRING": connection_string(443, scheme="https"),
                    "TWINBASE_AZURE_CONTAINER": "twinbase",
                    "TWINBASE_CHECKPOINT_STORAGE_ACCOUNT": AZURITE_ACCOUNT,
                    "REQUESTS_CA_BUNDLE": str(ca),  # twinbase's own Azure SDK calls
                }
                url = "http://127.0.0.1:8080"
            server = stack.enter_context(
                server_in_namespace(wrap, tmp_path, database_url, backend, ca, env, url)
            )
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
