#!/usr/bin/env python3
"""File transfer benchmark: a 1 GiB baseline file up and down through the iModels API, on both blob
backends (local folder; Azure Blob Storage on Azurite), next to a plain disk copy, with the server's
peak memory and CPU time.

1. writes a file of ``--size`` MiB of random bytes (default 1024) and times a disk copy of it (read and
   write in 1 MiB chunks, final fsync: what the local store does);
2. starts Azurite (``compat/node_modules``, disk persistence in the temp folder, telemetry off);
3. for each backend, starts ``twinbase serve`` (embedded SQLite, no job workers, a free port), then:
   - upload: ``POST /imodels`` with ``baselineFile.size``, one ``PUT`` of the file to the upload link (curl,
     ``x-ms-blob-type: BlockBlob``, the Azure single-shot flavour), timed until the 201. Local: the link is
     twinbase's own; Azure: a SAS URL, the bytes go from curl straight to the blob service;
   - complete: ``POST .../baselinefile`` (size check, promotion of the staged file, SHA-256), timed;
   - download: ``GET`` of a read link of the completed baseline (curl, to a file with fsync), timed;
   - samples the server's RSS every 20 ms and its CPU time: with Azure, near zero CPU during the
     transfers shows that no file byte passed through it.

Targets (issue #3, local): upload and download each >= 70% of the disk copy's throughput; server memory
flat, under 200 MB. Exit status 0 when met. Loopback only; every loop is bounded.

    .venv/bin/python bench/transfer.py [--size 1024] [--backends local,azure]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import api, free_port, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.azurite import connection_string, running_azurite

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 1 << 20


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of ``pid`` in MB, from /proc."""
    current = peak = 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return current, peak


class MemorySampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            try:
                self.samples.append(rss_mb(self.pid)[0])
            except OSError:
                return


def disk_copy(src: Path, dest: Path) -> float:
    start = time.perf_counter()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return time.perf_counter() - start


def drop_page_cache_hint(path: Path) -> None:
    """Ask the kernel to forget ``path``'s pages so each run reads from the same starting point."""
    try:
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    except (OSError, AttributeError):
        pass


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "-f", *args], check=True)


def run_backend(backend: str, tmp: Path, src: Path, size: int, azure_env: dict[str, str]) -> dict[str, float]:
    """One server on ``backend``: upload, complete, download. Returns seconds, memory and CPU figures."""
    twinbase = [sys.executable, "-m", "twinbase"]
    data_dir = tmp / f"data-{backend}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TWINBASE_RATE_LIMIT_PER_MINUTE": "0",
        "TWINBASE_SIGNED_URL_LIFETIME_SECONDS": "3600",
        "TWINBASE_JOB_WORKERS": "0",  # the baseline (random bytes) is not initialized: no job reads it
        **(azure_env if backend == "azure" else {}),
    }
    server = subprocess.Popen(
        [*twinbase, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"{base}/health", server, "twinbase")
        pid = server.pid  # `twinbase serve` runs uvicorn in its own process: that is the one to watch
        token = subprocess.run(
            [*twinbase, "token", "--user", "bench", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.strip()
        itwin = api(
            base, token, "POST", "/itwins/", {"class": "Endeavor", "subClass": "Project", "displayName": "T"}
        )
        itwin_id = itwin["iTwin"]["id"]  # type: ignore[index]
        created = api(
            base,
            token,
            "POST",
            "/imodels",
            {"iTwinId": itwin_id, "name": "big", "baselineFile": {"size": size}},
        )
        upload = str(created["iModel"]["_links"]["upload"]["href"])  # type: ignore[index]
        imodel_id = str(created["iModel"]["id"])  # type: ignore[index]
        if backend == "azure":
            assert not upload.startswith(base), upload  # a SAS URL to the blob service

        sampler = MemorySampler(pid)
        sampler.start()
        idle_rss = rss_mb(pid)[0]
        cpu0 = cpu_seconds(pid)
        drop_page_cache_hint(src)
        start = time.perf_counter()
        curl("-o", "/dev/null", "-X", "PUT", "-H", "x-ms-blob-type: BlockBlob", "-H", "Expect:",
             "--upload-file", str(src), upload)  # fmt: skip
        upload_s = time.perf_counter() - start
        cpu_upload = cpu_seconds(pid) - cpu0

        start = time.perf_counter()
        api(base, token, "POST", f"/imodels/{imodel_id}/baselinefile", {})
        complete_s = time.perf_counter() - start

        from twinbase.store.blobs import UrlSigner, keys

        key = keys.baseline(imodel_id)
        if backend == "azure":
            from twinbase.store.blobs.azure import AzureBlobStore

            store = AzureBlobStore.from_connection_string(
                azure_env["TWINBASE_AZURE_CONNECTION_STRING"], azure_env["TWINBASE_AZURE_CONTAINER"]
            )
            link = store.presign(key, "r", 3600, base)
        else:
            # The baseline is not initialized (random bytes), so sign a read link the way the API does.
            signer = UrlSigner.from_file(data_dir / "keys" / "url-signing.key")
            link = signer.url(base, key, 3600)
            drop_page_cache_hint(data_dir / "blobs" / key)
        down = tmp / f"down-{backend}.bin"
        cpu0 = cpu_seconds(pid)
        start = time.perf_counter()
        curl("-o", str(down), link)
        with open(down, "rb+") as fh:
            os.fsync(fh.fileno())
        download_s = time.perf_counter() - start
        cpu_download = cpu_seconds(pid) - cpu0
        sampler.stop.set()
        sampler.join()
        intact = down.stat().st_size == size
        down.unlink()
        return {
            "upload": upload_s,
            "complete": complete_s,
            "download": download_s,
            "idle_rss": idle_rss,
            "peak_rss": max(sampler.samples or [0.0]),
            "cpu_upload": cpu_upload,
            "cpu_download": cpu_download,
            "intact": float(intact),
        }
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="file size in MiB (default 1024)")
    ap.add_argument("--backends", default="local,azure", help="comma-separated: local, azure")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if shutil.which("curl") is None:
        print("curl is required", file=sys.stderr)
        return 2
    (ROOT / ".bench-tmp").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="transfer-", dir=str(ROOT / ".bench-tmp")))
    services = contextlib.ExitStack()
    try:
        src = tmp / "source.bin"
        size = args.size * CHUNK
        with open(src, "wb") as fh:
            block = os.urandom(CHUNK)
            for i in range(args.size):
                fh.write(block[i % 7 :] + block[: i % 7])
        drop_page_cache_hint(src)
        copy_s = disk_copy(src, tmp / "copy.bin")
        (tmp / "copy.bin").unlink()

        azure_env: dict[str, str] = {}
        if "azure" in backends:
            # On disk (a 1 GiB file would sit in Azurite's memory otherwise), beside the data dir.
            port = services.enter_context(running_azurite(tmp / "azurite-run", location=tmp / "azurite"))
            connection = connection_string(port)
            azure_env = {
                "TWINBASE_BLOB_BACKEND": "azure",
                "TWINBASE_AZURE_CONNECTION_STRING": connection,
                "TWINBASE_AZURE_CONTAINER": "bench",
            }
        results = {b: run_backend(b, tmp, src, size, azure_env) for b in backends}

        mib = size / CHUNK
        print(f"\nfile: {mib:.0f} MiB, data dir and Azurite's folder on the same disk ({tmp})")
        print(f"disk copy (read + write + fsync): {copy_s:.2f} s, {mib / copy_s:.0f} MiB/s\n")
        header = "".join(f"{b + ' s':>10}{'MiB/s':>8}{'vs copy':>8}" for b in backends)
        print(f"{'':34}{header}")
        for name, label in (
            ("upload", "upload (one PUT to the link)"),
            ("download", "download (GET of the link)"),
        ):
            cells = "".join(
                f"{r[name]:10.2f}{mib / r[name]:8.0f}{copy_s / r[name]:8.0%}" for r in results.values()
            )
            print(f"{label:34}{cells}")
        print(
            f"{'complete (check, promote, SHA-256)':34}"
            + "".join(f"{r['complete']:10.2f}{'':16}" for r in results.values())
        )
        for b, r in results.items():
            print(
                f"{b}: server RSS idle {r['idle_rss']:.0f} MB, peak {r['peak_rss']:.0f} MB; "
                f"server CPU during upload {r['cpu_upload']:.2f} s, download {r['cpu_download']:.2f} s; "
                f"bytes intact {bool(r['intact'])}"
            )
        local = results.get("local")
        met = all(r["intact"] for r in results.values()) and all(
            r["peak_rss"] < 200 for r in results.values()
        )
        if local is not None:
            met = met and copy_s / local["upload"] >= 0.7 and copy_s / local["download"] >= 0.7
        print(
            f"targets (local: >= 70% of the disk copy both ways; every backend: peak < 200 MB): "
            f"{'MET' if met else 'MISSED'}"
        )
        return 0 if met else 1
    finally:
        services.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
