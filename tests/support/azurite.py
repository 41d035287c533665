"""Microsoft's Azurite blob emulator from compat/node_modules, started one way for every test and bench.

Always ``--disableTelemetry`` (without it Azurite reaches out to an outside host) and
``--skipApiVersionCheck`` (the Python SDK may be newer than the emulator); in memory unless a ``location``
is given. ``running_azurite`` yields once it listens; ``wrap`` runs it through another command (``ip netns
exec <name>``), where the caller checks readiness itself (``ready``), as the port is not reachable from here.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "compat" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (documented by Microsoft; not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT = 60.0


class AzuriteError(RuntimeError):
    """Azurite is missing, exited, or did not listen in time; the message has its log."""


def connection_string(port: int, *, scheme: str = "http") -> str:
    return (
        f"DefaultEndpointsProtocol={scheme};AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={scheme}://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_azurite(
    workdir: Path,
    *,
    port: int | None = None,
    location: Path | None = None,
    extra: Sequence[str] = (),
    wrap: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ready: Callable[[subprocess.Popen[bytes], Path], None] | None = None,
) -> Iterator[int]:
    """Azurite's blob service on 127.0.0.1 (``port``, else a free one) until the block ends; its port.
    ``ready`` replaces the default check (a TCP connection) and raises when Azurite is not up."""
    if not BINARY.exists():
        raise AzuriteError(f"{BINARY} is missing: azurite is a dependency in compat/package.json (npm ci)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "azurite.log"
    storage = ["--location", str(location)] if location is not None else ["--inMemoryPersistence"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*wrap, shutil.which("node") or "node", str(BINARY), "--silent", "--disableTelemetry",
             "--skipApiVersionCheck", *storage, "--blobHost", "127.0.0.1", "--blobPort", str(port), *extra],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        (ready or _listening(port))(proc, log_path)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _listening(port: int) -> Callable[[subprocess.Popen[bytes], Path], None]:
    def check(proc: subprocess.Popen[bytes], log_path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AzuriteError(f"Azurite exited ({proc.returncode}): {log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    why = f"Azurite did not listen on {port} in {START_TIMEOUT:g} s: {log_path.read_text()}"
                    raise AzuriteError(why) from None
                time.sleep(0.1)

    return check
