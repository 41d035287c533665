#!/usr/bin/env python3
"""Checkpoints as CloudSqlite containers (issue #18): bytes stored for ten checkpoints of one iModel with
and without block sharing, and the time to write a container next to a plain ``.bim`` copy and next to
the iTwin.js native library's own ``CloudSqlite.uploadDb`` of the same files, in one run.

The checkpoints (``compat/checkpoint-versions.mjs make``, @itwin/core-backend and its native library,
cached in ``.cache/checkpoint-versions`` by parameters and script): a SnapshotDb of about ``--size`` MiB of
geometric elements (meshes with normals and params, boxes, cylinders, spheres on a grid), then ten rounds
of ~300 updates (geometry, placement, label and jsonProperties), ~100 inserts and ~50 deletes, each round's
edits in one work area of the grid (``--pattern area``, ~2% of the model), on the newest ~2% of the
elements (``recent``, the best case for locality) or anywhere (``scattered``);
after each round's saveChanges the WAL is folded in and the file copied, never vacuumed: version k is
the checkpoint after changeset k.

1. Bytes. Every checkpoint is cut into 4 MiB blocks with content ids (``twinbase.bim.cloudsqlite``). Per
   version: its blocks, the blocks no earlier version has (what ``store_blocks`` writes), the SQLite pages
   that differ from the previous version and the 4 MiB blocks they fall in. Totals: the ten plain files;
   the container without sharing (every checkpoint's blocks on their own, what the native writer's random
   ids give); with sharing (distinct blocks + the manifest of ten databases). The same distinct count at
   smaller block sizes is computed too (not written): how much sharing 4 MiB blocks give away.
2. Time, per checkpoint in order, each writer in a child process of its own (its peak RSS is the
   figure, the RSS after its imports beside it):
   * ``store_blocks`` (``twinbase.domain.containers``) into a ``LocalBlobStore`` on local disk, every blob
     fsynced as the store always does, and into Azurite through twinbase's ``AzureBlobStore``;
   * ``write_container`` (``twinbase.bim.cloudsqlite``) into a folder, each checkpoint added to the
     previous manifest (``existing``), the manifest rewritten each time; no fsync;
   * the plain copy the checkpoint is today: ``upload_from`` of the ``.bim`` into the same two stores;
   * the peer: ``CloudSqlite.uploadDb`` (``compat/checkpoint-versions.mjs upload``) of the same files, one
     after another into one Azurite container under the write lock, once with the default random block
     ids and once with ``checksumBlockNames`` (MD5-prefixed ids: an upload reuses blocks already in the
     manifest). Its time is uploadDb's alone (host startup and lock apart); its stored bytes are read back
     from Azurite, as are those of twinbase's Azurite runs.
   Azurite runs in memory on this machine (``--inMemoryPersistence --disableTelemetry``): no disk, but it
   shares the CPUs with the writer. The files are read once before any timing, so every writer reads them
   from the page cache.

    PYTHONPATH=src .venv/bin/python bench/checkpoint_containers.py [--size MIB] [--versions N]
        [--pattern area|recent|scattered] [--keep]

Prints the per-version table, the bytes table and the time table (MiB/s is checkpoint bytes per second).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "compat"
SCRIPT = COMPAT / "checkpoint-versions.mjs"
CACHE = ROOT / ".cache" / "checkpoint-versions"
NODE_TIMEOUT = 1800
MIB = 2**20
IMODEL_ID = "5b0e3c1a-18cf-4a6e-9d2b-0c0c0c0c0018"
SMALLER_BLOCKS = (1024 * 1024, 256 * 1024, 64 * 1024)

sys.path.insert(0, str(ROOT / "tests"))
from common import run_json  # noqa: E402

from support.azurite import AZURITE_ACCOUNT, AZURITE_KEY, connection_string, running_azurite  # noqa: E402


def node() -> str:
    found = shutil.which("node")
    if found is None:
        raise RuntimeError("'node' is required for the iTwin.js side and is not on PATH")
    return found


def last_json(proc: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    lines = proc.stdout.strip().splitlines()
    try:
        answer: dict[str, Any] = json.loads(lines[-1])
    except (ValueError, IndexError):
        answer = {"error": "no JSON answer"}
    if proc.returncode != 0 or "error" in answer:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return answer


# ------------------------------------------------------------------------------------------ the versions


def make_versions(size_mib: int, count: int, pattern: str) -> tuple[list[Path], dict[str, Any]]:
    """The ``count`` checkpoint files (made now unless cached) and the generator's summary."""
    backend = json.loads((COMPAT / "node_modules/@itwin/core-backend/package.json").read_text())["version"]
    key = hashlib.sha256(
        json.dumps([SCRIPT.read_bytes().hex(), backend, size_mib, count, pattern]).encode()
    ).hexdigest()[:16]
    label = f"{pattern}-{size_mib}mib-{count}v"
    final = CACHE / f"{label}-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{label}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker per label; a second run waits and reuses its files
        if not (final / "versions.json").exists():
            for old in CACHE.iterdir():  # older versions of this label (another script) and partial runs
                if old.is_dir() and old.name.lstrip(".").startswith(f"{label}-"):
                    shutil.rmtree(old, ignore_errors=True)
            partial = CACHE / f".{final.name}.partial-{os.getpid()}"
            try:
                started = time.perf_counter()
                proc = subprocess.run(
                    [node(), str(SCRIPT), "make", str(partial), str(size_mib), str(count), pattern],
                    cwd=COMPAT,
                    capture_output=True,
                    text=True,
                    timeout=NODE_TIMEOUT,
                    check=False,
                )
                last_json(proc, "compat/checkpoint-versions.mjs make")
                partial.rename(final)
                print(f"made the versions in {time.perf_counter() - started:.1f} s")
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    summary: dict[str, Any] = json.loads((final / "versions.json").read_text())
    return [final / r["file"] for r in summary["rounds"]], summary


# ----------------------------------------------------------------------------------------------- bytes


def block_ids(path: Path, block_size: int) -> list[bytes]:
    from twinbase.bim.cloudsqlite import split_file

    return [bid for bid, _ in split_file(path, block_size)]


def page_size(path: Path) -> int:
    with open(path, "rb") as f:
        header = f.read(100)
    raw = int.from_bytes(header[16:18], "big")
    return 65536 if raw == 1 else raw


def changed_pages(old: Path, new: Path, page: int) -> list[int]:
    """Page numbers (0-based) of ``new`` that differ from ``old`` or that ``old`` does not have."""
    out: list[int] = []
    with open(old, "rb") as a, open(new, "rb") as b:
        number = 0
        while True:
            chunk_b = b.read(page * 256)
            if not chunk_b:
                return out
            chunk_a = a.read(page * 256)
            for k in range(0, len(chunk_b), page):
                if chunk_a[k : k + page] != chunk_b[k : k + page]:
                    out.append(number + k // page)
            number += len(chunk_b) // page


def owners(path: Path, pages: list[int], page: int, block_size: int) -> list[tuple[str, int, int]]:
    """Which tables and indexes the pages belong to (the dbstat table): (name, pages, 4 MiB blocks they
    fall in), most blocks first."""
    import sqlite3

    wanted = {p + 1 for p in pages}  # dbstat counts pages from 1
    found: dict[str, list[int]] = {}
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)) as db:
        try:
            for name, pageno in db.execute("SELECT name, pageno FROM dbstat"):
                if pageno in wanted:
                    found.setdefault(name, []).append(pageno - 1)
        except sqlite3.OperationalError:
            return []  # this sqlite3 was built without dbstat
    counts = [(name, len(ps), len({p * page // block_size for p in ps})) for name, ps in found.items()]
    return sorted(counts, key=lambda item: (-item[2], -item[1]))


# --------------------------------------------------------------------------------------- the writers


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def writer_child(method: str, target: str, listing: str) -> None:
    """In the child process: write every file of ``listing`` with ``method``; print the figures."""
    from twinbase.bim.cloudsqlite import Manifest, write_container
    from twinbase.domain.containers import store_blocks
    from twinbase.store.blobs import BlobStore, LocalBlobStore
    from twinbase.store.blobs import keys as blob_keys

    files = [Path(line) for line in Path(listing).read_text().splitlines() if line]
    blobs: BlobStore | None = None
    if method.endswith("-azurite"):
        from twinbase.store.blobs.azure import AzureBlobStore

        connection, container = target.split("|")
        blobs = AzureBlobStore.from_connection_string(connection, container)
    elif method != "write_container":
        blobs = LocalBlobStore(Path(target))
    rss_before = rss_mb()
    existing: Manifest | None = None
    seconds = []
    for index, path in enumerate(files, start=1):
        started = time.perf_counter()
        if method == "write_container":
            existing = write_container(Path(target), [(path.name, path)], existing=existing)
        elif method.startswith("store_blocks"):
            assert blobs is not None
            store_blocks(blobs, IMODEL_ID, path)
        else:
            assert blobs is not None
            blobs.upload_from(blob_keys.checkpoint_of(IMODEL_ID, index, path.stem), path)
        seconds.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "rss_before_mb": rss_before, "peak_rss_mb": peak}))


def run_writer(method: str, target: str, files: list[Path], tmp: Path) -> dict[str, Any]:
    listing = tmp / "files.txt"
    listing.write_text("".join(f"{p}\n" for p in files))
    command = [sys.executable, __file__, "--writer-child", method, target, str(listing)]
    return run_json(command, f"writer {method}", timeout=NODE_TIMEOUT)


def folder_bytes(folder: Path) -> int:
    """Bytes of the blobs under ``folder`` (the local store's own temporary folder left out)."""
    return sum(
        p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and ".tmp" not in p.relative_to(folder).parts and not p.name.startswith(".")
    )


# -------------------------------------------------------------------------------------------- Azurite


def container_bytes(port: int, container: str) -> int:
    """Bytes of the blobs in ``container`` and in the ones named after it: ``AzureBlobStore`` puts an
    iModel's CloudSqlite container in a storage container of its own (``<container>-<iModel id>``)."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string(port))
    return sum(
        int(b.size)
        for c in service.list_containers(name_starts_with=container)
        if c.name == container or c.name.startswith(f"{container}-")
        for b in service.get_container_client(c.name).list_blobs()
    )


def native_upload(port: int, files: list[Path], tmp: Path, checksum: bool) -> dict[str, Any]:
    """``CloudSqlite.uploadDb`` of every file into one new container; its answer and stored bytes."""
    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

    container = f"native-{'md5' if checksum else 'random'}-{uuid.uuid4().hex[:8]}"
    BlobServiceClient.from_connection_string(connection_string(port)).create_container(container)
    everything = ContainerSasPermissions(read=True, add=True, create=True, write=True, delete=True, list=True)
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)
    sas = generate_container_sas(
        AZURITE_ACCOUNT, container, account_key=AZURITE_KEY, permission=everything, expiry=expiry
    )
    spec = {
        "baseUri": f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}",
        "accessToken": sas,
        "container": container,
        "work": str(tmp / container),
        "checksumBlockNames": checksum,
        "files": [{"dbName": p.name, "file": str(p)} for p in files],
    }
    env = {**os.environ, "CHECKPOINT_UPLOAD": json.dumps(spec), "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.run(
        [node(), str(SCRIPT), "upload"],
        cwd=COMPAT,
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    answer = last_json(proc, "compat/checkpoint-versions.mjs upload")
    if sorted(answer["databases"]) != sorted(p.name for p in files):
        raise RuntimeError(f"the native container lists {answer['databases']}")
    answer["stored"] = container_bytes(port, container)
    answer["container"] = container
    return answer


# ----------------------------------------------------------------------------------------------- main


def mib(n: float) -> str:
    return f"{n / MIB:,.1f}"


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--writer-child":
        writer_child(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100, help="the model's size in MiB (default 100)")
    ap.add_argument("--versions", type=int, default=10, help="checkpoints (default 10)")
    ap.add_argument(
        "--pattern", choices=("area", "recent", "scattered"), default="area", help="where edits fall"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()

    from twinbase.bim.cloudsqlite import (
        BLOCK_SIZE,
        Manifest,
        ManifestDatabase,
        block_count,
        compose_manifest,
    )

    files, summary = make_versions(args.size, args.versions, args.pattern)
    base = summary["baseline"]
    gen_time = summary["timings"]["totalSeconds"]
    print(
        f"{len(files)} checkpoints of one iModel made by iTwin.js {summary['coreBackend']} (native "
        f"{summary['native']}) in {gen_time:.0f} s: baseline {base['elements']:,} elements, "
        f"{mib(base['bytes'])} MiB; edits per round in {args.pattern!r} pattern: "
        f"{summary['rounds'][0]['updates']} updates, {summary['rounds'][0]['inserts']} inserts, "
        f"{summary['rounds'][0]['deletes']} deletes"
    )

    # 1. Bytes (this also reads every file once, so every writer below reads them from the page cache).
    sizes = [p.stat().st_size for p in files]
    ids = [block_ids(p, BLOCK_SIZE) for p in files]
    page = page_size(files[0])
    seen: set[bytes] = set()
    print(f"\nper checkpoint (4 MiB blocks; SQLite pages of {page} bytes, compared with the previous one):")
    print(
        f"{'version':>8}{'file MiB':>10}{'blocks':>8}{'new blocks':>12}"
        f"{'pages changed':>15}{'of pages':>10}{'blocks they hit':>17}"
    )
    for k, (path, size, blocks) in enumerate(zip(files, sizes, ids, strict=True)):
        new = sum(1 for b in set(blocks) if b not in seen)
        seen.update(blocks)
        if k:
            pages = changed_pages(files[k - 1], path, page)
            hit = len({p * page // BLOCK_SIZE for p in pages})
            changed = f"{len(pages):>15,}{size // page:>10,}{hit:>17}"
        else:
            changed = f"{'-':>15}{size // page:>10,}{'-':>17}"
        print(f"{path.stem:>8}{mib(size):>10}{len(blocks):>8}{new:>12}{changed}")
    if len(files) > 1:
        top = owners(files[1], changed_pages(files[0], files[1], page), page, BLOCK_SIZE)
        print(f"pages changed by {files[1].stem}, by table or index (pages / 4 MiB blocks they fall in):")
        for name, n, hit in top[:6]:
            print(f"  {name:70}{n:>6}{hit:>5}")

    manifest = Manifest(
        block_size=BLOCK_SIZE,
        databases=tuple(
            ManifestDatabase(id=k + 1, name=p.name, block_ids=tuple(b))
            for k, (p, b) in enumerate(zip(files, ids, strict=True))
        ),
    )
    manifest_bytes = len(compose_manifest(manifest))
    plain = sum(sizes)
    unshared = sum(len(b) for b in ids) * BLOCK_SIZE
    shared = len(seen) * BLOCK_SIZE + manifest_bytes
    smaller = []
    for size in SMALLER_BLOCKS:
        distinct: set[bytes] = set()
        for p in files:
            distinct.update(block_ids(p, size))
        smaller.append((size, len(distinct) * size))

    # 2. Time.
    (ROOT / ".bench-tmp").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cpcontainers-", dir=str(ROOT / ".bench-tmp")))
    rows: list[tuple[str, list[float], float, float | None, float | None]] = []
    try:
        local = {}
        for method in ("store_blocks", "write_container", "copy"):
            target = tmp / method
            figures = run_writer(method, str(target), files, tmp)
            local[method] = folder_bytes(target)
            rows.append((f"{method} -> local disk", figures["seconds"], local[method],
                         figures["peak_rss_mb"], figures["rss_before_mb"]))  # fmt: skip
        with running_azurite(tmp / "azurite") as port:
            from azure.storage.blob import BlobServiceClient

            for method in ("store_blocks-azurite", "copy-azurite"):
                container = f"tb-{method.split('-')[0].replace('_', '')}-{uuid.uuid4().hex[:8]}"
                BlobServiceClient.from_connection_string(connection_string(port)).create_container(container)
                figures = run_writer(method, f"{connection_string(port)}|{container}", files, tmp)
                name = method.replace("-azurite", " -> Azurite")
                rows.append((name, figures["seconds"], container_bytes(port, container),
                             figures["peak_rss_mb"], figures["rss_before_mb"]))  # fmt: skip
            natives = {}
            for checksum in (False, True):
                answer = native_upload(port, files, tmp, checksum)
                natives[checksum] = answer
                name = "native uploadDb, " + ("MD5 ids" if checksum else "random ids") + " -> Azurite"
                seconds = [float(u["seconds"]) for u in answer["uploads"]]
                rows.append((name, seconds, answer["stored"], float(answer["peakRssMB"]), None))

        print(f"\nbytes stored for the {len(files)} checkpoints:")
        print(f"{'':52}{'MiB':>10}{'x plain':>9}")
        table = [
            ("plain .bim files (sum)", plain),
            ("container without sharing (every version's blocks)", unshared),
            ("container with sharing (distinct blocks + manifest)", shared),
            ("  twinbase store_blocks, measured on disk", local["store_blocks"]),
            ("  twinbase write_container, measured on disk", local["write_container"]),
            ("  native uploadDb, random ids, measured in Azurite", natives[False]["stored"]),
            ("  native uploadDb, MD5 ids, measured in Azurite", natives[True]["stored"]),
        ]
        for size, distinct_bytes in smaller:
            table.append((f"  shared at {size // 1024} KiB blocks (computed)", distinct_bytes))
        for label, n in table:
            print(f"{label:52}{mib(n):>10}{n / plain:>9.2f}")
        print(
            f"(manifest of {len(files)} databases: {manifest_bytes:,} bytes; "
            f"{sum(len(b) for b in ids)} blocks in all, {len(seen)} distinct)"
        )

        print("\ntime to store each checkpoint, in order (all from the page cache):")
        print(
            f"{'':40}{'total s':>9}{'MiB/s':>8}{'first s':>9}{'later s':>9}{'stored MiB':>12}"
            f"{'peak RSS MB':>13}{'RSS before':>12}"
        )
        for name, seconds, stored, peak, before in rows:
            later = sum(seconds[1:]) / max(1, len(seconds) - 1)
            total = sum(seconds)
            print(
                f"{name:40}{total:9.2f}{plain / MIB / total:8.0f}{seconds[0]:9.2f}{later:9.2f}"
                f"{mib(stored):>12}{f'{peak:.0f}' if peak is not None else '-':>13}"
                f"{f'{before:.0f}' if before is not None else '-':>12}"
            )
        print(
            "(later s: mean of checkpoints 2..; native RSS is its node process, IModelHost included; "
            f"native startup + connect {float(natives[False]['startupSeconds']):.2f} s not counted)"
        )
        assert block_count(sizes[0]) == len(ids[0])
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
