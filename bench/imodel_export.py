#!/usr/bin/env python3
"""IMODEL export benchmark (issue #16): Mesh Export's iMdl tileset next to the 3DTILES tileset of the same
iModel, in one run.

The model is the tessellation benchmark's generated iModel (``compat/make-geometry.mjs bench``: 100,000
elements; cached in ``.cache/geometry``); ``--quick``: 10,000 elements. Each export runs in a fresh child
process (``twinbase.export.produce`` on every core, chordTolerance 0.01 m, angleTolerance 15 degrees, as
``bench/mesh_export.py``): wall time, peak RSS of the process and of its tile processes, the tiles'
bytes as written and gzip -6 (how they travel: twinbase's file routes and the Azure backend send them
gzip-encoded), per triangle drawn (instances counted per instance), all tiles and leaves only.

    PYTHONPATH=src .venv/bin/python bench/imodel_export.py [--quick] [--elements N]

Targets: an IMODEL export within 1.5x the 3DTILES export's time; its gzipped bytes per triangle within
2x the 3DTILES tiles' (iMdl has no meshopt form here: 16-bit positions, oct normals and 24-bit indices,
against meshopt-coded GLB).
"""

from __future__ import annotations

import argparse
import gzip
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
TYPES = ("3DTILES", "IMODEL")


class FolderSink:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, relative_path: str, data: bytes) -> None:
        (self.root / relative_path).write_bytes(data)


def child(model: str, export_type: str, out: str) -> dict[str, Any]:
    from twinbase.export.config import parse_tiler_config
    from twinbase.export.produce import produce
    from twinbase.export.tiling import SHARED_POOL

    config = parse_tiler_config(
        [{"key": "chordTolerance", "value": CHORD}, {"key": "angleTolerance", "value": ANGLE_DEG}]
    )
    started = time.perf_counter()
    stats = produce(Path(model), export_type, config, FolderSink(Path(out)), lambda f, m: None)
    seconds = time.perf_counter() - started
    SHARED_POOL.shutdown()
    return {
        "seconds": seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tile_process_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "tiles": stats["tiles"],
        "tile_triangles": stats["tileTriangles"],
    }


def _run(model: Path, export_type: str, out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, __file__, "--child", str(model), export_type, str(out)]
    return run_json(command, f"{export_type} export", env=env)


def _sizes(folder: Path) -> dict[str, Any]:
    """Bytes of the tiles as written and gzipped: all tiles, and the leaves (full detail)."""
    from twinbase.tiles.check import content_uris

    document = json.loads((folder / "tileset.json").read_text())
    every = content_uris(document)
    leaves = set(content_uris(document, leaves_only=True))
    out = {"raw": 0, "gzip": 0, "leaf_raw": 0, "leaf_gzip": 0}
    for name in every:
        data = (folder / name).read_bytes()
        packed = len(gzip.compress(data, 6))
        out["raw"] += len(data)
        out["gzip"] += packed
        if name in leaves:
            out["leaf_raw"] += len(data)
            out["leaf_gzip"] += packed
    return out


def _leaf_triangles(folder: Path) -> int:
    manifest = json.loads((folder / "twinbase-tiles.json").read_text())
    document = json.loads((folder / "tileset.json").read_text())
    from twinbase.tiles.check import content_uris

    leaves = set(content_uris(document, leaves_only=True))
    return sum(int(entry.get("triangles", 0)) for name, entry in manifest["tiles"].items() if name in leaves)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(child(*sys.argv[2:])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ELEMENTS:,} elements")
    parser.add_argument("--elements", type=int)
    args = parser.parse_args()
    elements = args.elements or (QUICK_ELEMENTS if args.quick else BENCH_ELEMENTS)
    model = make_geometry("bench", elements=elements)
    manifest = load_manifest(model)
    print(f"model: {model} ({manifest['elementCount']:,} elements); {os.cpu_count()} cores")
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="twinbase-bench-imodel-") as tmp:
        for export_type in TYPES:
            out = Path(tmp) / export_type
            one = _run(model, export_type, out)
            one.update(_sizes(out))
            one["leaf_triangles"] = _leaf_triangles(out)
            figures[export_type] = one
    for export_type, f in figures.items():
        tris = max(1, f["tile_triangles"])
        leaf_tris = max(1, f["leaf_triangles"])
        print(
            f"{export_type:8s} {f['seconds']:7.2f} s; {f['tiles']:5d} tiles, "
            f"{f['tile_triangles']:,} triangles; "
            f"{f['raw'] / 1e6:7.1f} MB ({f['raw'] / tris:5.2f} B/tri), gzip {f['gzip'] / 1e6:6.1f} MB "
            f"({f['gzip'] / tris:5.2f} B/tri); leaves gzip {f['leaf_gzip'] / leaf_tris:5.2f} B/tri; "
            f"peak RSS {f['peak_mb']:.0f} MB, tile process {f['tile_process_peak_mb']:.0f} MB"
        )
    mine, peer = figures["IMODEL"], figures["3DTILES"]
    bpt = (mine["gzip"] / max(1, mine["tile_triangles"])) / (peer["gzip"] / max(1, peer["tile_triangles"]))
    print(
        f"IMODEL / 3DTILES: {mine['seconds'] / peer['seconds']:.2f}x the time (target <= 1.5x), "
        f"{bpt:.2f}x the gzipped bytes per triangle (target <= 2.0x)"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
