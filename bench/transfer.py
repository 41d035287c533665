#!/usr/bin/env python3
"""File transfer benchmark: a 1 GiB baseline file up and down through the iModels API, next to a
plain disk copy of the same file, with the server's peak memory.

1. starts ``twinbase serve`` (embedded SQLite, a temp data dir on the same disk, a free port);
2. writes a file of ``--size`` MiB of random bytes (default 1024);
3. disk copy: read it and write a copy in 1 MiB chunks with a final fsync (what the blob store does);
4. upload: ``POST /imodels`` with ``baselineFile.size``, then one ``PUT`` of the file to the upload link
   (curl, ``x-ms-blob-type: BlockBlob``, the Azure single-shot flavour), timed until the 201;
5. download: ``GET`` of the baseline's download link to a file on the same disk (curl), timed;
6. samples the server's RSS every 20 ms throughout and reports its peak (and ``VmHWM``).

Targets (issue #3): upload and download each >= 70% of the disk copy's throughput; server memory flat,
under 200 MB. Exit status 0 when met. Loopback only; every loop is bounded.

    .venv/bin/python bench/transfer.py [--size 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def api(
    base: str, token: str, method: str, path: str, body: dict[str, object] | None = None
) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as resp:
        payload: dict[str, object] = json.loads(resp.read() or b"{}")
        return payload


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="file size in MiB (default 1024)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    if shutil.which("curl") is None:
        print("curl is required", file=sys.stderr)
        return 2
    twinbase = [sys.executable, "-m", "twinbase"]
    (ROOT / ".bench-tmp").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="transfer-", dir=str(ROOT / ".bench-tmp")))
    data_dir = tmp / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TWINBASE_RATE_LIMIT_PER_MINUTE": "0",
        "TWINBASE_SIGNED_URL_LIFETIME_SECONDS": "3600",
    }
    server = subprocess.Popen(
        [*twinbase, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        # `twinbase serve` runs uvicorn in its own process: that is the one to watch.
        pid = server.pid
        token = subprocess.run(
            [*twinbase, "token", "--user", "bench", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.strip()

        src = tmp / "source.bin"
        size = args.size * CHUNK
        with open(src, "wb") as fh:
            block = os.urandom(CHUNK)
            for i in range(args.size):
                fh.write(block[i % 7 :] + block[: i % 7])
        drop_page_cache_hint(src)
        copy_s = disk_copy(src, tmp / "copy.bin")
        (tmp / "copy.bin").unlink()

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
        upload = created["iModel"]["_links"]["upload"]["href"]  # type: ignore[index]
        imodel_id = created["iModel"]["id"]  # type: ignore[index]

        sampler = MemorySampler(pid)
        sampler.start()
        idle_rss = rss_mb(pid)[0]
        drop_page_cache_hint(src)
        start = time.perf_counter()
        subprocess.run(
            [
                "curl",
                "-sS",
                "-f",
                "-o",
                "/dev/null",
                "-X",
                "PUT",
                "-H",
                "x-ms-blob-type: BlockBlob",
                "-H",
                "Expect:",
                "--upload-file",
                str(src),
                upload,
            ],
            check=True,
        )
        upload_s = time.perf_counter() - start
        blob = data_dir / "blobs" / "imodels" / imodel_id / "baseline.bim"
        link = f"{base}/blobs/imodels/{imodel_id}/baseline.bim"
        # The baseline is not initialized (random bytes), so sign a read link the way the API does.
        from twinbase.store.blobs import UrlSigner

        signer = UrlSigner.from_file(data_dir / "keys" / "url-signing.key")
        link = signer.url(base, f"imodels/{imodel_id}/baseline.bim", 3600)
        drop_page_cache_hint(blob)
        start = time.perf_counter()
        subprocess.run(["curl", "-sS", "-f", "-o", str(tmp / "down.bin"), link], check=True)
        with open(tmp / "down.bin", "rb+") as fh:
            os.fsync(fh.fileno())
        download_s = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
        ok_bytes = (tmp / "down.bin").stat().st_size == size and blob.stat().st_size == size
        peak_sampled = max(sampler.samples or [0.0])
        _, hwm = rss_mb(pid)

        mib = size / CHUNK
        rows = [
            ("disk copy (read + write + fsync)", copy_s),
            ("upload (PUT through the API)", upload_s),
            ("download (GET of the signed link)", download_s),
        ]
        print(f"\nfile: {mib:.0f} MiB, data dir on the same disk ({tmp})")
        print(f"{'':36} {'seconds':>8} {'MiB/s':>8} {'vs copy':>8}")
        for name, secs in rows:
            print(f"{name:36} {secs:8.2f} {mib / secs:8.0f} {copy_s / secs:8.0%}")
        print(
            f"server RSS: idle {idle_rss:.0f} MB, peak during transfers {peak_sampled:.0f} MB "
            f"(VmHWM {hwm:.0f} MB)"
        )
        print(f"bytes intact: {ok_bytes}")
        met = ok_bytes and copy_s / upload_s >= 0.7 and copy_s / download_s >= 0.7 and peak_sampled < 200
        print(f"targets (>= 70% of the disk copy both ways, peak < 200 MB): {'MET' if met else 'MISSED'}")
        return 0 if met else 1
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
