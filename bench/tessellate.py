#!/usr/bin/env python3
"""Tessellation benchmark: twinbase's Python tessellation next to iTwin.js ``IModelDb.exportGraphics`` on the
same generated iModel (issue #13).

The "bench" iModel (``compat/make-geometry.mjs bench``, cached in ``.cache/geometry`` by
``tests/support/geometry_truth.py``): 100,000 geometric elements, a realistic mix: 30% instances of six
geometry parts (boxes, I-beams, cylinders, polyface grids, pipe fittings, balls; one or two instances each,
placed, rotated and scaled), polyfaces (grids with normals and params, prisms), extrusions (plates with
round holes, I-beams), boxes, cylinders, cones, spheres, torus pipes, rotational sweeps and B-spline
surfaces, in eight categories (one transparent). About 10.6M triangles under exportGraphics at the bench
tolerance (chordTol 0.01 m, angleTol pi/12).

1. iTwin.js (``compat/export-graphics.mjs --no-meshes``, @itwin/core-backend and its native library): every
   element through ``exportGraphics`` (one thread) and through ``exportGraphicsAsync`` (the native thread
   pool), each in its own node process; the callback only counts triangles and sums areas, so the figure is
   the export. Time of the export call and the node process's peak RSS.
2. twinbase: ``twinbase_tessellate`` below (``twinbase.bim.mesher`` over element batches, one worker process
   per core), in a child Python process; peak RSS of the child and of its largest worker.

    PYTHONPATH=src .venv/bin/python bench/tessellate.py [--quick] [--elements N] [--mode sync|async|both]

``--quick``: a 10,000-element model of the same mix. Prints a table and a JSON line of the figures.
Targets (issue #13): twinbase at most 1.0x the native time using every core, at most 2 GB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the geometry maker and truth loader live with the tests
from common import run_json  # noqa: E402

from support.geometry_truth import (  # noqa: E402
    BENCH_ANGLE_TOL,
    BENCH_CHORD_TOL,
    BENCH_ELEMENTS,
    load_manifest,
    make_geometry,
    run_export,
)

QUICK_ELEMENTS = 10_000


class TwinbaseNotWired(RuntimeError):
    """twinbase's file-level tessellation is not available (kept for the child's protocol)."""


BATCH = 2_000  # elements per work unit: worker w takes the units u with u % workers == w


def _twinbase_worker(args: tuple[str, float, float, int, int]) -> dict[str, Any]:
    """One worker: open the file, mesh its share of the elements (every other unit of BATCH elements, read
    by id range), count what exportGraphics would count."""
    import math  # noqa: F401  (kept local: the worker is a fresh process under spawn)

    from twinbase.bim.imodel import IModelFile
    from twinbase.bim.mesher import mesh_elements
    from twinbase.bim.tessellate import StrokeOptions

    path, chord_tol, angle_tol, worker, workers = args
    with IModelFile.open(path) as imodel:
        # The ids alone (no streams) cut the work into units; each unit is then read by its id range, so
        # a worker reads only its own streams.
        ids = [e.id for e in imodel.elements(geometric_only=True)]
        units = [(ids[u], ids[min(u + BATCH, len(ids)) - 1]) for u in range(0, len(ids), BATCH)]
        mine = (
            e
            for lo, hi in units[worker::workers]
            for e in imodel.elements(geometric_only=True, with_geometry=True, id_min=lo, id_max=hi)
        )
        result = mesh_elements(imodel, mine, StrokeOptions(chord_tol, angle_tol))
    part_tris = {pid: sum(m.n_triangles for _, m in p.meshes) for pid, p in result.parts.items()}
    triangles = sum(e.triangles() for e in result.elements.values())
    instanced = sum(part_tris[i.part_id] for e in result.elements.values() for i in e.instances)
    return {
        "elements": len(result.elements),
        "triangles": triangles + instanced,
        "part_triangles_once": sum(part_tris.values()),
        "instances": sum(len(e.instances) for e in result.elements.values()),
        "errors": len(result.errors),
        "fallbacks": dict(result.fallbacks),
    }


def twinbase_tessellate(model: Path, chord_tol: float, angle_tol: float) -> dict[str, Any]:
    """Tessellate every 3D geometric element of ``model`` with twinbase (``twinbase.bim.mesher``) at these
    tolerances, one worker process per core, parts kept as instances, and answer ``{"elements": n,
    "triangles": m}`` (triangles counted as exportGraphics counts them: instanced parts once per
    instance). Runs in a child process (``--twinbase-child``); its peak RSS there is the parent's, the
    largest worker's as ``worker_peak_rss_mb``."""
    import multiprocessing

    workers = os.cpu_count() or 1
    jobs = [(str(model), chord_tol, angle_tol, w, workers) for w in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_twinbase_worker, jobs)
    fallbacks: dict[str, int] = {}
    for p in parts:
        for k, v in p["fallbacks"].items():
            fallbacks[k] = fallbacks.get(k, 0) + v
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "elements": sum(p["elements"] for p in parts),
        "triangles": sum(p["triangles"] for p in parts),
        "instances": sum(p["instances"] for p in parts),
        "errors": sum(p["errors"] for p in parts),
        "fallbacks": fallbacks,
        "workers": workers,
        "worker_peak_rss_mb": children,
    }


def twinbase_child(model: str, chord_tol: str, angle_tol: str) -> None:
    """In the child process: run the hook once, print its figures as JSON."""
    started = time.perf_counter()
    try:
        counts = twinbase_tessellate(Path(model), float(chord_tol), float(angle_tol))
    except TwinbaseNotWired as exc:
        print(json.dumps({"wired": False, "reason": str(exc)}))
        return
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"wired": True, "seconds": seconds, "peak_rss_mb": peak, **counts}))


def run_twinbase(model: Path, chord_tol: float, angle_tol: float) -> dict[str, Any]:
    started = time.perf_counter()
    figures = run_json(
        [sys.executable, __file__, "--twinbase-child", str(model), repr(chord_tol), repr(angle_tol)],
        "twinbase tessellation",
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        },
    )
    figures["wall_seconds"] = time.perf_counter() - started
    return figures


def run_native(model: Path, chord_tol: float, angle_tol: float, use_async: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="twinbase-bench-tess-") as tmp:
        started = time.perf_counter()
        figures = run_export(
            model, Path(tmp) / "out", chord_tol, angle_tol, meshes=False, use_async=use_async, parts=False
        )
        figures["wall_seconds"] = time.perf_counter() - started
    return figures


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--twinbase-child":
        twinbase_child(*sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ELEMENTS:,} elements")
    parser.add_argument("--elements", type=int, help=f"model size (default {BENCH_ELEMENTS:,})")
    parser.add_argument("--mode", choices=("sync", "async", "both"), default="both")
    parser.add_argument("--chord", type=float, default=BENCH_CHORD_TOL, help="chordTol, metres")
    parser.add_argument("--angle", type=float, default=BENCH_ANGLE_TOL, help="angleTol, radians")
    args = parser.parse_args()
    elements = args.elements or (QUICK_ELEMENTS if args.quick else BENCH_ELEMENTS)

    t0 = time.perf_counter()
    model = make_geometry("bench", elements=elements)
    manifest = load_manifest(model)
    made = time.perf_counter() - t0
    print(
        f"model: {model} ({model.stat().st_size / 1e6:.0f} MB, {manifest['elementCount']:,} elements; "
        f"generated in {manifest['timings']['totalSeconds']:.1f} s"
        + (", cached)" if made < manifest["timings"]["totalSeconds"] else ")")
    )
    print(f"tolerances: chordTol {args.chord} m, angleTol {args.angle:.6f} rad; {os.cpu_count()} cores")

    results: dict[str, Any] = {
        "elements": manifest["elementCount"],
        "chordTol": args.chord,
        "angleTol": args.angle,
    }
    modes = ("sync", "async") if args.mode == "both" else (args.mode,)
    for mode in modes:
        native = run_native(model, args.chord, args.angle, mode == "async")
        results[f"itwinjs_{mode}"] = native
        print(
            f"iTwin.js exportGraphics{'Async' if mode == 'async' else ''}: {native['exportSeconds']:.2f} s "
            f"({native['wall_seconds']:.1f} s with node start-up and the element query), "
            f"{native['triangles']:,} triangles, peak RSS {native['maxRssKb'] / 1024:.0f} MB"
        )
    twinbase = run_twinbase(model, args.chord, args.angle)
    results["twinbase"] = twinbase
    if not twinbase["wired"]:
        print(f"twinbase: NOT WIRED: {twinbase['reason']}")
    else:
        best = min(results[f"itwinjs_{m}"]["exportSeconds"] for m in modes)
        # All processes at once at worst: the parent plus every worker at the largest worker's peak.
        total = twinbase["peak_rss_mb"] + twinbase["workers"] * twinbase["worker_peak_rss_mb"]
        twinbase["total_peak_rss_mb_bound"] = total
        print(
            f"twinbase: {twinbase['seconds']:.2f} s, {twinbase['triangles']:,} triangles "
            f"({twinbase['elements']:,} elements, {twinbase['errors']} errors, "
            f"fallbacks {twinbase['fallbacks']}); "
            f"peak RSS {twinbase['peak_rss_mb']:.0f} MB + {twinbase['workers']} workers of at most "
            f"{twinbase['worker_peak_rss_mb']:.0f} MB = {total:.0f} MB at most; "
            f"{twinbase['seconds'] / best:.2f}x the faster native export (target <= 1.0x), "
            f"peak {'within' if total <= 2048 else 'OVER'} 2 GB"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
