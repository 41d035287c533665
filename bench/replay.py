#!/usr/bin/env python3
"""Changeset replay benchmark: twinbase's pure-Python replay next to the real iTwin.js backend, on the same
100 real changesets.

The "bench" chain (``compat/make-chain.mjs bench``, cached in ``.cache/chains`` by
``tests/support/chains.py``): a baseline of 10,000 geometric elements (boxes, spheres, cones, meshes) made
on twinbase's seed, then 100 changesets of ~50 inserts, ~100 updates (placement, label, geometry,
jsonProperties) and ~20 deletes each, two of them schema changesets (a class whose properties overflow
the shared columns, then an upgrade), later ones with instances of the new classes and aspects.

1. twinbase: ``twinbase.bim.replay.replay`` applies all changesets, in one call, to a copy of the
   baseline, in a child Python process (its own peak RSS is the figure; the RSS it had after its imports
   is printed too). The result is then compared, every change-tracked table row by row
   (``tests/support/bimtables.py``), with iTwin.js's own briefcase after the last changeset.
2. iTwin.js (``compat/apply-chain.mjs``, @itwin/core-backend and its native library): by default the chain
   is pushed into a running twinbase server (``twinbase serve`` on loopback, the iModel created from the
   baseline, each changeset file pushed with its own id through the official iModels client), then a
   briefcase downloaded at changeset 0 pulls all 100 from twinbase: ``BriefcaseDb.pullChanges``, which
   applies each file with the native ``applyChangeset``. The changeset files are fetched into the
   briefcase's cache first (timed apart), so the pull time is the apply. ``--hub hubmock`` does the same
   through core-backend's in-process HubMock (local file copies), without a server.

    PYTHONPATH=src .venv/bin/python bench/replay.py [--quick] [--hub twinbase|hubmock] [--keep]

``--quick``: the "bench-small" chain (2,000 elements, 20 changesets). Prints a table: replay time, ratio,
peak memory. Exit status 0 when both ran and the replay equals iTwin.js's state.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import api, free_port, run_json, wait_for

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "compat"
sys.path.insert(0, str(ROOT / "tests"))  # the chain maker and the table comparison live with the tests

from support.chains import Chain, load_chain, make_chain  # noqa: E402

NODE_TIMEOUT = 900


def vm_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def replay_child(target: str, listing: str) -> None:
    """In the child process: replay the files named in ``listing`` onto ``target``; print the figures."""
    from twinbase.bim.replay import replay

    files = [Path(line) for line in Path(listing).read_text().splitlines() if line]
    rss_before = vm_rss_mb()
    started = time.perf_counter()
    replay(Path(target), files)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "rss_before_mb": rss_before, "peak_rss_mb": peak}))


def run_twinbase_replay(chain: Chain, tmp: Path) -> dict[str, float]:
    target = tmp / "replayed.bim"
    shutil.copyfile(chain.baseline, target)
    listing = tmp / "changesets.txt"
    listing.write_text("".join(f"{c.path}\n" for c in chain.changesets))
    command = [sys.executable, __file__, "--replay-child", str(target), str(listing)]
    return {k: float(v) for k, v in run_json(command, "twinbase replay", timeout=NODE_TIMEOUT).items()}


def run_node(chain: Chain, tmp: Path, mode: str, extra_env: dict[str, str]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("'node' is required for the iTwin.js side and is not on PATH")
    return run_json(
        [node, str(COMPAT / "apply-chain.mjs"), str(chain.root), str(tmp / f"itwinjs-{mode}"), mode],
        f"compat/apply-chain.mjs {mode}",
        cwd=COMPAT,
        env={**os.environ, **extra_env},
        timeout=NODE_TIMEOUT,
    )


def run_itwinjs_from_twinbase(chain: Chain, tmp: Path) -> dict[str, Any]:
    """A twinbase server on loopback as the hub: the chain pushed into it, then pulled by iTwin.js."""
    twinbase = [sys.executable, "-m", "twinbase"]
    data_dir = tmp / "twinbase-data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TWINBASE_RATE_LIMIT_PER_MINUTE": "0",
        "TWINBASE_SIGNED_URL_LIFETIME_SECONDS": "3600",
        # Keep only what is pinned (baseline, every 10th) and the tip: a checkpoint at a random index
        # is then made on request, replaying from the nearest pinned one (the warm cache of the issue).
        "TWINBASE_CHECKPOINT_BUDGET_BYTES": "0",
        "TWINBASE_CHECKPOINT_INTERVAL": "10",
    }
    server = subprocess.Popen(
        [*twinbase, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"{base}/health", server, "twinbase")
        token = subprocess.run(
            [*twinbase, "token", "--user", "bench", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.strip()
        itwin = api(
            base, token, "POST", "/itwins/", {"class": "Endeavor", "subClass": "Project", "displayName": "R"}
        )
        itwin_id = str(itwin["iTwin"]["id"])  # type: ignore[index]
        figures = run_node(
            chain,
            tmp,
            "twinbase",
            {"TWINBASE_URL": base, "TWINBASE_TOKEN": token, "TWINBASE_ITWIN_ID": itwin_id},
        )
        figures["checkpoints"] = time_checkpoints(base, token, itwin_id, len(chain.changesets))
        return figures
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def time_checkpoints(base: str, token: str, itwin_id: str, count: int) -> list[tuple[int, float, float]]:
    """(index, seconds until the checkpoint is successful, its size in MiB) for a few random indexes
    that are neither pinned nor the tip: each is made on request by the checkpoint job."""
    listed = api(base, token, "GET", f"/imodels?iTwinId={itwin_id}")
    imodel_id = str(listed["iModels"][0]["id"])  # type: ignore[index]
    rng = random.Random(12)
    indexes = rng.sample([i for i in range(1, count) if i % 10], k=min(5, count - count // 10 - 1))
    results = []
    for index in indexes:
        url = f"/imodels/{imodel_id}/changesets/{index}/checkpoint"
        started = time.perf_counter()
        while True:
            checkpoint = api(base, token, "GET", url)["checkpoint"]
            state = checkpoint["state"]  # type: ignore[index]
            if state != "scheduled":
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        if state != "successful":
            raise SystemExit(f"checkpoint {index}: {checkpoint}")
        results.append((index, elapsed, int(checkpoint["size"]) / 2**20))  # type: ignore[index]
    return results


def same_as_itwinjs(replayed: Path, expected: Path) -> str:
    from support.bimtables import assert_same_content

    try:
        assert_same_content(replayed, expected)
    except AssertionError as exc:
        return f"NO: {str(exc).splitlines()[0] if str(exc) else 'differs'}"
    return "yes"


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--replay-child":
        replay_child(sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 elements and 20 changesets")
    ap.add_argument(
        "--hub", choices=("twinbase", "hubmock"), default="twinbase", help="where iTwin.js pulls from"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()

    profile = "bench-small" if args.quick else "bench"
    started = time.perf_counter()
    chain = load_chain(make_chain(profile))
    made = time.perf_counter() - started
    gen = chain.generator
    timings = gen.get("timings", {})
    assert isinstance(timings, dict)
    count = len(chain.changesets)
    total_bytes = sum(c.path.stat().st_size for c in chain.changesets)
    print(
        f"chain {chain.root.name}: {count} changesets, {total_bytes / 2**20:.1f} MiB compressed, baseline "
        f"{chain.baseline.stat().st_size / 2**20:.1f} MiB; made by iTwin.js {gen['coreBackend']} "
        f"(native {gen['native']}) in {timings.get('totalSeconds', 0):.1f} s "
        f"({'cached' if made < 5 else f'now, {made:.1f} s'})"
    )

    (ROOT / ".bench-tmp").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="replay-", dir=str(ROOT / ".bench-tmp")))
    try:
        tb = run_twinbase_replay(chain, tmp)
        verdict = same_as_itwinjs(tmp / "replayed.bim", chain.expected(count))
        if args.hub == "twinbase":
            js = run_itwinjs_from_twinbase(chain, tmp)
            where = "pulled from a twinbase server on loopback (files fetched into the cache first)"
        else:
            js = run_node(chain, tmp, "hubmock", {})
            where = "pulled from core-backend's in-process HubMock (local file copies, NOT from twinbase)"
        pull = float(js["pullSeconds"])
        print(f"\niTwin.js: {where}")
        print(
            f"  iModel and {count} pushes {float(js['setupSeconds']):.1f} s; briefcase at 0 "
            f"{float(js['openSeconds']):.2f} s; fetching the {count} files "
            f"{float(js['downloadSeconds']):.2f} s"
        )
        print(f"twinbase replay equals iTwin.js's briefcase after changeset {count}: {verdict}\n")
        print(f"{'':34}{'twinbase (Python)':>20}{'iTwin.js (native)':>20}")
        print(f"{f'apply {count} changesets, s':34}{tb['seconds']:20.2f}{pull:20.2f}")
        print(f"{'per changeset, ms':34}{tb['seconds'] / count * 1000:20.1f}{pull / count * 1000:20.1f}")
        print(f"{'ratio (twinbase / iTwin.js)':34}{tb['seconds'] / pull:20.2f}{1:20.2f}")
        print(f"{'process RSS before, MB':34}{tb['rss_before_mb']:20.0f}{float(js['rssBeforeMB']):20.0f}")
        print(f"{'process peak RSS, MB':34}{tb['peak_rss_mb']:20.0f}{float(js['peakRssMB']):20.0f}")
        grow_tb = tb["peak_rss_mb"] - tb["rss_before_mb"]
        grow_js = float(js["peakRssMB"]) - float(js["rssBeforeMB"])
        print(f"{'peak growth during the apply, MB':34}{grow_tb:20.0f}{grow_js:20.0f}")
        if "checkpoints" in js:
            print("\ncheckpoint at a random index (warm: every 10th pinned + the tip; made on request):")
            for index, seconds, size in js["checkpoints"]:
                print(f"  index {index:3d}: {seconds:6.2f} s to successful ({size:.1f} MiB file)")
        return 0 if verdict == "yes" else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
