#!/usr/bin/env python3
"""Reading speed of ``twinbase.bim.imodel`` on a large iModel made by the real iTwin.js backend.

The file (``compat/make-elements.mjs``, cached in ``.cache/elements/elements-<count>-<key>.bim``, the key
hashing the generator script and the backend versions): ``count`` elements in 10 physical models, 8
categories; most are instances of 6 geometry parts, some boxes or lines, every 10th a 2D drawing graphic,
every 4th an instance of a custom class with 10 properties in shared columns.

Measured, each the best of ``--repeat`` runs, in this process (one core), as wall-clock and CPU time (the
second is what to compare on a loaded machine):

- open (profile checks, class catalog);
- ``elements()``: every element, no geometry (the plain iteration: target well under 1 s per 100k);
- ``elements(geometric_only=True)`` and the same with ``with_geometry=True`` (the blobs read too);
- ``elements(model_ids=...)`` with every spatial model (the filter path);
- ``element.placement`` and ``element.range`` computed for every geometric element;
- ``placements()`` (numpy arrays) and ``PlacementArrays.ranges()``;
- ``class_properties`` of the custom class (all its instances, one query) and of ``Generic:PhysicalObject``;
- ``properties(id)`` for 1,000 random elements (two queries each).

    PYTHONPATH=src .venv/bin/python bench/elements.py [--count 200000] [--repeat 3] [--file some.bim]

``--file`` measures an existing iModel instead (the custom-class figures are then skipped). Prints one
line per figure (seconds, and microseconds per element) and the peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "compat"
sys.path.insert(0, str(ROOT / "src"))

from twinbase.bim.imodel import IModelFile  # noqa: E402

GENERATOR = COMPAT / "make-elements.mjs"
NODE_TIMEOUT = 3600


def _version(package: str) -> str:
    manifest = COMPAT / "node_modules" / package / "package.json"
    return str(json.loads(manifest.read_text())["version"])


def bench_file(count: int) -> Path:
    """The cached generated file for ``count`` elements (made now if missing)."""
    digest = hashlib.sha256(GENERATOR.read_bytes())
    for package in ("@itwin/core-backend", "@bentley/imodeljs-native"):
        digest.update(f"\0{package}={_version(package)}".encode())
    cache = ROOT / ".cache" / "elements"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"elements-{count}-{digest.hexdigest()[:12]}.bim"
    if target.exists():
        return target
    node = shutil.which("node")
    if node is None:
        raise SystemExit("'node' is required to make the benchmark iModel")
    partial = target.with_suffix(".partial.bim")
    started = time.monotonic()
    print(f"making {target.name} with iTwin.js ({count:,} elements)...", flush=True)
    subprocess.run(
        [node, str(GENERATOR), str(partial), str(count)], cwd=COMPAT, check=True, timeout=NODE_TIMEOUT
    )
    partial.rename(target)
    print(f"  made in {time.monotonic() - started:.1f} s", flush=True)
    return target


def best(repeat: int, run: Callable[[], int]) -> tuple[float, float, int]:
    """Best wall-clock and best CPU time of ``repeat`` runs (CPU time: what a shared machine's load
    does not inflate), and the item count."""
    walls, cpus = [], []
    n = 0
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        n = run()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), n


def report(label: str, wall: float, cpu: float, n: int) -> None:
    per = f"{cpu / n * 1e6:7.2f} us/item (cpu)" if n else ""
    print(f"{label:56} wall {wall:7.3f} s  cpu {cpu:7.3f} s {n:>9,} items {per}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    path = args.file or bench_file(args.count)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    r = args.repeat

    w0, c0 = time.perf_counter(), time.process_time()
    imodel = IModelFile.open(path)
    report("open (profile, class catalog)", time.perf_counter() - w0, time.process_time() - c0, 0)

    report("elements(): every element, no geometry", *best(r, lambda: sum(1 for _ in imodel.elements())))
    report(
        "elements(geometric_only=True)",
        *best(r, lambda: sum(1 for _ in imodel.elements(geometric_only=True))),
    )
    report(
        "elements(geometric_only=True, with_geometry=True)",
        *best(r, lambda: sum(1 for _ in imodel.elements(geometric_only=True, with_geometry=True))),
    )

    spatial = [m.id for m in imodel.models() if m.is_spatial]
    report(
        f"elements(model_ids=<{len(spatial)} spatial models>)",
        *best(r, lambda: sum(1 for _ in imodel.elements(model_ids=spatial))),
    )

    def ranges() -> int:
        n = 0
        for element in imodel.elements(geometric_only=True):
            if element.range is not None:
                n += 1
        return n

    report("elements(geometric_only=True) + placement + range each", *best(r, ranges))

    def arrays() -> int:
        placements = imodel.placements()
        placements.ranges()
        return len(placements)

    report("placements() arrays + ranges() (numpy)", *best(r, arrays))

    for cls in ("BenchRead:Fitting", "Generic:PhysicalObject"):
        if imodel.classes.class_id(cls) is not None:
            report(
                f"class_properties({cls})", *best(r, lambda c=cls: sum(1 for _ in imodel.class_properties(c)))
            )

    ids = [e.id for e in imodel.elements()]
    sample = random.Random(7).sample(ids, min(1000, len(ids)))

    def one_by_one() -> int:
        for eid in sample:
            imodel.properties(eid)
        return len(sample)

    report("properties(id) for random elements, one by one", *best(r, one_by_one))
    report(
        "properties_of(the same ids), grouped by class",
        *best(r, lambda: sum(1 for _ in imodel.properties_of(sample))),
    )
    imodel.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
