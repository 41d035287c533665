#!/usr/bin/env python3
"""IFC export benchmark (issue #15): twinbase writing the IFC of an iModel next to ifcopenshell reading
that IFC back (open, then its geometry iterator over every product), in one run.

The model is the tessellation benchmark's generated iModel (``compat/make-geometry.mjs bench``: 100,000
elements; cached in ``.cache/geometry``); ``--quick``: 10,000 elements.

1. twinbase: ``twinbase.export.ifc.write_ifc(model, out, ifc_version="IFC4 RV 1.2")`` at the Mesh
   Export benchmark's tolerances (chord 0.01 m, angle 15 degrees), in a child process: wall and CPU
   time, elements/s and triangles/s, peak RSS.
2. The peer: ``ifcopenshell.open`` of the written file and ``ifcopenshell.geom.iterator`` (one thread,
   world coordinates) over its products, in a child process: the same figures. The iterator takes
   about 40 ms a product (OpenCASCADE builds a face per triangle), so 100k products would take more
   than an hour: past ``--peer-sample`` products (default 10,000) it runs over an evenly spaced sample
   of that many and its rates are per sampled product. The open (and so the peer's memory for the
   whole model) is always of the whole file.

    PYTHONPATH=src .venv/bin/python bench/ifc_export.py [--quick] [--elements N] [--version "IFC4.3"]
        [--peer-sample N]

Targets: twinbase's export no slower than ifcopenshell's re-read of its output; peak memory at most
2 GB on 100k elements.
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
sys.path.insert(0, str(ROOT / "tests"))
from common import run_json  # noqa: E402

from support.geometry_truth import BENCH_ELEMENTS, load_manifest, make_geometry  # noqa: E402

QUICK_ELEMENTS = 10_000
CHORD = 0.01
ANGLE_DEG = 15.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_export(model: str, out: str, version: str) -> dict[str, Any]:
    import math

    from twinbase.export.ifc import write_ifc

    wall, cpu = time.perf_counter(), time.process_time()
    stats = write_ifc(
        Path(model),
        Path(out),
        ifc_version=version,
        chord_tolerance=CHORD,
        angle_tolerance=math.radians(ANGLE_DEG),
    )
    stats.pop("errors", None)
    return {
        "seconds": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "peak_mb": _peak_mb(),
        "stats": stats,
    }


def child_read(path: str, sample: str) -> dict[str, Any]:
    import ifcopenshell
    import ifcopenshell.geom

    wall, cpu = time.perf_counter(), time.process_time()
    f = ifcopenshell.open(path)
    opened = time.perf_counter() - wall
    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    products = f.by_type("IfcProduct")
    step = max(1, -(-len(products) // max(1, int(sample))))
    include = products[::step] if step > 1 else None
    iterator = ifcopenshell.geom.iterator(settings, f, 1, include=include)
    iterated = time.perf_counter()
    shapes = triangles = 0
    if iterator.initialize():
        while True:
            shape = iterator.get()
            shapes += 1
            triangles += len(shape.geometry.faces) // 3
            if not iterator.next():
                break
    return {
        "seconds": time.perf_counter() - wall,
        "iterate_seconds": time.perf_counter() - iterated,
        "sampled": len(include) if include is not None else None,
        "open_seconds": opened,
        "cpu": time.process_time() - cpu,
        "peak_mb": _peak_mb(),
        "shapes": shapes,
        "triangles": triangles,
    }


def _child(*args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return run_json([sys.executable, __file__, "--child", *args], args[0], env=env)


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        what, *rest = sys.argv[2:]
        result = child_export(*rest) if what == "export" else child_read(*rest)
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ELEMENTS:,} elements")
    parser.add_argument("--elements", type=int)
    parser.add_argument("--version", default="IFC4 RV 1.2", help="the platform's ifcVersion")
    parser.add_argument("--peer-sample", type=int, default=10_000, help="products the peer meshes")
    args = parser.parse_args()
    elements = args.elements or (QUICK_ELEMENTS if args.quick else BENCH_ELEMENTS)
    model = make_geometry("bench", elements=elements)
    manifest = load_manifest(model)
    print(f"model: {model} ({manifest['elementCount']:,} elements); {os.cpu_count()} cores; {args.version}")
    with tempfile.TemporaryDirectory(prefix="twinbase-bench-ifc-") as tmp:
        out = Path(tmp) / "model.ifc"
        mine = _child("export", str(model), str(out), args.version)
        s = mine["stats"]
        peer = _child("read", str(out), str(args.peer_sample))
    n, tris = s["products"], s["triangles"]
    print(
        f"twinbase write_ifc:       {mine['seconds']:7.2f} s wall, {mine['cpu']:7.2f} s CPU; "
        f"{n / mine['seconds']:8,.0f} elements/s, {tris / mine['seconds']:10,.0f} triangles/s; "
        f"peak RSS {mine['peak_mb']:5.0f} MB  ({n:,} products, {tris:,} triangles, "
        f"{s['mappedItems']:,} mapped items of {s['representationMaps']} maps, "
        f"{s['size'] / 1e6:.0f} MB; meshing {s['meshSeconds']:.1f} s, file write {s['fileSeconds']:.1f} s)"
    )
    shapes = peer["shapes"]
    # A sampled iterator's time scales up to every product; the open was of the whole file already.
    peer_seconds = peer["open_seconds"] + peer["iterate_seconds"] * (n / max(1, shapes))
    peer_tris = peer["triangles"] * (n / max(1, shapes))
    sampled = f", {shapes:,} shapes"
    if peer["sampled"]:
        sampled = f", meshed {shapes:,} sampled products in {peer['iterate_seconds']:.1f} s, scaled to all"
    print(
        f"ifcopenshell open + geom: {peer_seconds:7.2f} s wall{' (est.)' if peer['sampled'] else ''}; "
        f"{n / peer_seconds:8,.0f} elements/s, {peer_tris / peer_seconds:10,.0f} triangles/s; "
        f"peak RSS {peer['peak_mb']:5.0f} MB  (open {peer['open_seconds']:.1f} s{sampled})"
    )
    print(
        f"twinbase / ifcopenshell: {mine['seconds'] / peer_seconds:.2f}x the time (target <= 1.0x), "
        f"{mine['peak_mb'] / peer['peak_mb']:.2f}x the memory; peak {mine['peak_mb']:.0f} MB (target <= 2048)"
    )
    print(json.dumps({"elements": n, "twinbase": mine, "ifcopenshell": peer}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
