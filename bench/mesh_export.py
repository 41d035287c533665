#!/usr/bin/env python3
"""Mesh Export benchmark (issue #14): a whole 3DTILES export next to iTwin.js ``exportGraphics`` of the
same file, and the tiles' size next to ``gltfpack -cc`` on the same meshes, in one run.

The model is the tessellation benchmark's generated iModel (``compat/make-geometry.mjs bench``: 100,000
elements, about 10.6M triangles at chordTol 0.01 m, angleTol 15 degrees; cached in ``.cache/geometry``).

1. iTwin.js: ``compat/export-graphics.mjs --no-meshes`` (exportGraphics of every element, one node
   process; its callback only counts), the time of the export call and its peak RSS.
2. twinbase: ``twinbase.export.produce(model, "3DTILES", ...)`` in a child process at the same
   tolerances (``chordTolerance`` 0.01, ``angleTolerance`` 15): plan, every tile meshed, simplified,
   meshopt-encoded and written, ``tileset.json``, on every core. Wall time; peak RSS of the parent and of
   the largest tile worker.
3. Size: the largest leaf tiles (full detail) as written (meshopt + quantization, per-element metadata
   kept), gzip -6, in bytes per triangle; next to ``gltfpack -cc`` (npm ``gltfpack``) of the same tiles
   written without compression, gzip -6 (gltfpack drops the metadata: its figure has none).

    PYTHONPATH=src .venv/bin/python bench/mesh_export.py [--quick] [--elements N]

4. Incremental: the same file after 1% of its elements (one area) changed, exported with the first
   export as the previous one (its unchanged tiles copied), against the full export's time.

Targets: the export at most 1.0x exportGraphics' time on all cores; at most 1.0x gltfpack's bytes per
triangle; the incremental export under 10% of the full one; peak memory at most 2 GB.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.geometry_truth import BENCH_ELEMENTS, load_manifest, make_geometry, run_export  # noqa: E402

QUICK_ELEMENTS = 10_000
CHORD = 0.01
ANGLE_DEG = 15.0
SAMPLE_LEAVES = 8
GLTFPACK = ROOT / "compat" / "node_modules" / ".bin" / "gltfpack"


class FolderSink:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, relative_path: str, data: bytes) -> None:
        (self.root / relative_path).write_bytes(data)


def _config(compression: bool) -> Any:
    from twinbase.export.config import parse_tiler_config

    return parse_tiler_config(
        [
            {"key": "chordTolerance", "value": CHORD},
            {"key": "angleTolerance", "value": ANGLE_DEG},
            {"key": "enableCompression", "value": compression},
        ]
    )


def _previous(folder: Path, out: Path) -> Any:
    import shutil

    from twinbase.export.produce import MANIFEST, PreviousTiles

    def copy(old_name: str, new_name: str) -> int:
        # As the local blob store copies (``store.blobs.local``): a hard link, a copy where links fail.
        try:
            os.link(folder / old_name, out / new_name)
        except OSError:
            shutil.copyfile(folder / old_name, out / new_name)
        return (folder / old_name).stat().st_size

    return PreviousTiles(json.loads((folder / MANIFEST).read_text()), copy)


def child(exports: list[tuple[str, str, str | None]]) -> None:
    """In the child process: each export in turn (model, output folder, and the folder of an earlier
    export whose unchanged tiles it copies, or none), its figures as one JSON line each. Several exports
    in one process are what a server's worker does: the later ones find the tile processes started."""
    from twinbase.export.produce import produce

    for model, out, previous_folder in exports:
        Path(out).mkdir(parents=True, exist_ok=True)
        previous = _previous(Path(previous_folder), Path(out)) if previous_folder else None
        started = time.perf_counter()
        stats = produce(
            Path(model), "3DTILES", _config(True), FolderSink(Path(out)), lambda f, m: None, previous=previous
        )
        seconds = time.perf_counter() - started
        self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        figures = {k: v for k, v in stats.items() if k not in ("files", "geometryKinds", "errors")}
        line = {"seconds": seconds, "peak_mb": self_mb, "worker_peak_mb": worker_mb, "stats": figures}
        print(json.dumps(line), flush=True)
    # The tile processes stay up between exports; stopped and reaped, their peak is known.
    from twinbase.export.tiling import SHARED_POOL

    SHARED_POOL.shutdown()
    print(json.dumps({"tile_process_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def run_twinbase(*exports: tuple[Path, Path, Path | None]) -> list[dict[str, Any]]:
    """The exports in one fresh child process; their figures in order."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    spec = json.dumps([[str(m), str(o), str(p) if p else None] for m, o, p in exports])
    proc = subprocess.run(
        [sys.executable, __file__, "--child", spec], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"twinbase export failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    *figures, last = lines[-len(exports) - 1 :]
    for one in figures:
        one["worker_peak_mb"] = max(one["worker_peak_mb"], last["tile_process_peak_mb"])
    return figures


def touch_one_percent(model: Path, target: Path) -> int:
    """A copy of ``model`` as a changeset touching 1% of the elements in one area would leave it: the
    first 1% of the geometric elements by id (neighbours: the generator lays elements out row by row)
    moved up 0.5 m, their ``LastMod`` advanced, as iTwin.js stamps an update. Made with SQL on the copy
    (the bench needs the file after such a change, not the change's history)."""
    import shutil

    from twinbase.bim.replay import open_for_replay

    shutil.copyfile(model, target)
    db = open_for_replay(target)  # with the DGN_* functions the iModel's triggers call
    ids = [r[0] for r in db.execute("SELECT ElementId FROM bis_GeometricElement3d ORDER BY ElementId")]
    chosen = ids[: max(1, len(ids) // 100)]
    marks = json.dumps(chosen)
    with db:
        db.execute(
            "UPDATE bis_GeometricElement3d SET Origin_Z = Origin_Z + 0.5"
            " WHERE ElementId IN (SELECT value FROM json_each(?))",
            (marks,),
        )
        db.execute(
            "UPDATE bis_Element SET LastMod = LastMod + 0.001 WHERE Id IN (SELECT value FROM json_each(?))",
            (marks,),
        )
    db.close()
    return len(chosen)


def leaves(folder: Path) -> list[str]:
    from twinbase.tiles.check import content_uris

    return content_uris(json.loads((folder / "tileset.json").read_text()), leaves_only=True)


def drawn_triangles(data: bytes) -> int:
    from twinbase.tiles.glb_read import read_triangles

    return len(read_triangles(data).positions)


def _grid_error(data: bytes) -> float:
    """The largest position error a GLB's quantization allows: half the largest dequantizing node scale
    (KHR_mesh_quantization positions on a uniform grid; 0 for float positions)."""
    from twinbase.tiles.glb import unpack_glb

    doc, _ = unpack_glb(data)
    scales = [max(n["scale"]) for n in doc.get("nodes", []) if "mesh" in n and "scale" in n]
    return max(scales, default=0.0) / 2


def size_comparison(model: Path, folder: Path, workdir: Path) -> dict[str, Any]:
    """The largest leaves: ours (as written) against gltfpack -cc of the same tiles written plain, at its
    default 14-bit positions and at 16 bits (its finest, nearer our grid). gltfpack quantizes positions over
    the bounds of all the file's meshes together: the flattened triangles in tile coordinates and the
    instanced parts in their own, so its grid is much coarser than 14 bits over the tile; the largest
    position error of each (half the grid step) is reported next to the sizes."""
    from twinbase.bim.imodel import IModelFile
    from twinbase.export.tiling import _Tiler, plan_from_file

    if not GLTFPACK.exists():
        raise SystemExit(f"{GLTFPACK} is missing: run `make test` or `cd compat && npm ci` first")
    names = sorted(leaves(folder), key=lambda n: -(folder / n).stat().st_size)[:SAMPLE_LEAVES]
    plain_config = _config(False)
    with IModelFile.open(model) as imodel:
        # The export's own plan (planned for compressed tiles), so each plain tile has the same elements.
        plan = plan_from_file(imodel, _config(True))
    by_name = {n.name: n.index for n in plan.nodes}
    tiler = _Tiler(model, plan, plain_config)
    variants = {"gltfpack": [], "gltfpack_vp16": ["-vp", "16"]}
    ours = tris = 0
    ours_error = 0.0
    theirs = dict.fromkeys(variants, 0)
    their_error = dict.fromkeys(variants, 0.0)
    try:
        for name in names:
            _, made, _ = tiler.node(by_name[name])
            assert made is not None
            plain = workdir / f"plain-{name}"
            plain.write_bytes(made.data)
            written = (folder / name).read_bytes()
            tris += drawn_triangles(written)
            ours += len(gzip.compress(written, 6))
            # the triangles' grid; instanced parts stay within the same tolerance (see tiles.gltf)
            ours_error = max(ours_error, _grid_error(written))
            for key, extra in variants.items():
                packed = workdir / f"packed-{key}-{name}"
                subprocess.run(
                    [str(GLTFPACK), "-i", str(plain), "-o", str(packed), "-cc", *extra],
                    check=True,
                    capture_output=True,
                )
                data = packed.read_bytes()
                theirs[key] += len(gzip.compress(data, 6))
                their_error[key] = max(their_error[key], _grid_error(data))
    finally:
        tiler.close()
    out: dict[str, Any] = {
        "tiles": len(names),
        "triangles": tris,
        "twinbase_bytes_per_triangle": ours / max(tris, 1),
        "twinbase_max_position_error": ours_error,
    }
    for key in variants:
        out[f"{key}_bytes_per_triangle"] = theirs[key] / max(tris, 1)
        out[f"{key}_max_position_error"] = their_error[key]
    return out


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child([(m, o, p) for m, o, p in json.loads(sys.argv[2])])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ELEMENTS:,} elements")
    parser.add_argument("--elements", type=int)
    args = parser.parse_args()
    elements = args.elements or (QUICK_ELEMENTS if args.quick else BENCH_ELEMENTS)
    model = make_geometry("bench", elements=elements)
    manifest = load_manifest(model)
    print(f"model: {model} ({manifest['elementCount']:,} elements); {os.cpu_count()} cores")
    results: dict[str, Any] = {
        "elements": manifest["elementCount"],
        "chordTol": CHORD,
        "angleTolDeg": ANGLE_DEG,
    }
    with tempfile.TemporaryDirectory(prefix="twinbase-bench-export-") as tmp:
        native = run_export(
            model, Path(tmp) / "native", CHORD, math.radians(ANGLE_DEG), meshes=False, parts=False
        )
        results["itwinjs"] = native
        print(
            f"iTwin.js exportGraphics: {native['exportSeconds']:.2f} s, {native['triangles']:,} triangles, "
            f"peak RSS {native['maxRssKb'] / 1024:.0f} MB"
        )
        out = Path(tmp) / "tiles"
        changed = touch_one_percent(model, Path(tmp) / "v1.bim")
        # The full export in a fresh process (its tile processes start cold), then, in the same process
        # as a server's worker would, the export of the changed file copying its unchanged tiles.
        mine, warm = run_twinbase((model, out, None), (Path(tmp) / "v1.bim", Path(tmp) / "tiles-v1", out))
        results["twinbase"] = mine
        s = mine["stats"]
        total_mb = mine["peak_mb"] + (os.cpu_count() or 1) * mine["worker_peak_mb"]
        print(
            f"twinbase 3DTILES export: {mine['seconds']:.2f} s ({s['tiles']} tiles, {s['levels']} levels, "
            f"{s['elements']:,} elements, {s['triangles']:,} full-detail triangles, "
            f"{s['tileTriangles']:,} in all tiles); "
            f"{mine['seconds'] / native['exportSeconds']:.2f}x exportGraphics (target <= 1.0x); "
            f"peak RSS {mine['peak_mb']:.0f} MB + workers of at most {mine['worker_peak_mb']:.0f} MB "
            f"= {total_mb:.0f} MB at most (target <= 2048)"
        )
        print(
            f"tiles: root {s['rootTileSize'] / 1024:.0f} KB (target <= 256 KB), "
            f"median {s['tileSizeMedian'] / 1024:.0f} KB, "
            f"largest {s['tileSizeMax'] / 1024:.0f} KB, all {s['rawSize'] / 1e6:.1f} MB"
        )
        sizes = size_comparison(model, out, Path(tmp))
        results["size"] = sizes
        ratio = sizes["twinbase_bytes_per_triangle"] / sizes["gltfpack_bytes_per_triangle"]
        ratio16 = sizes["twinbase_bytes_per_triangle"] / sizes["gltfpack_vp16_bytes_per_triangle"]
        print(
            f"size, {sizes['tiles']} largest leaves ({sizes['triangles']:,} triangles), gzip -6: twinbase "
            f"{sizes['twinbase_bytes_per_triangle']:.2f} B/tri with per-element metadata "
            f"(positions within {sizes['twinbase_max_position_error'] * 1000:.1f} mm), gltfpack -cc "
            f"{sizes['gltfpack_bytes_per_triangle']:.2f} B/tri without "
            f"(within {sizes['gltfpack_max_position_error'] * 1000:.1f} mm): {ratio:.2f}x (target <= 1.0x); "
            f"gltfpack -cc -vp 16 {sizes['gltfpack_vp16_bytes_per_triangle']:.2f} B/tri "
            f"(within {sizes['gltfpack_vp16_max_position_error'] * 1000:.1f} mm): {ratio16:.2f}x"
        )
        (cold,) = run_twinbase((Path(tmp) / "v1.bim", Path(tmp) / "tiles-v1-cold", out))
        results["incremental"] = {"changed_elements": changed, "warm": warm, "cold": cold}
        print(
            f"incremental re-export after {changed:,} elements (1%, one area) changed: "
            f"{warm['seconds']:.2f} s in the worker that made the full export, "
            f"{warm['stats']['tilesReused']} of {warm['stats']['tiles']} tiles copied: "
            f"{warm['seconds'] / mine['seconds']:.0%} of the full export (target < 10%); "
            f"in a fresh process {cold['seconds']:.2f} s ({cold['seconds'] / mine['seconds']:.0%})"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
