"""iMdl tiles as the REAL iTwin.js code sees them: the oracle for Mesh Export's IMODEL tiles.

- ``dump_imdl``: every file decoded by the pinned @itwin/core-frontend reader
  (``compat/frontend/imdl-dump.mjs``, one Node process for all files); one dict per file, the JSON shape
  documented at the top of that script.
- ``native_root_tiles``: the native backend's golden tiles (``compat/imdl-native.mjs``): the root tile of the
  per-model tile tree of every spatial model of a .bim, written to a folder; one dict per model.
- ``to_multi_model``: a single-model tile (as the native backend writes them) rewritten with a multi-model
  feature table (header flag 16), the form frontend-tiles needs (research note imdl-format.md 3.2).
- ``to_world``: a tree-local point through a native tree's ``location`` (3x4 row-major).

Node and the npm packages are required: a missing one raises ``ImdlToolError`` (the test fails, never skips).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "compat"
FRONTEND = COMPAT / "frontend"
DUMP_SCRIPT = FRONTEND / "imdl-dump.mjs"
NATIVE_SCRIPT = COMPAT / "imdl-native.mjs"

HEADER_FLAGS_OFFSET = 12
TILE_LENGTH_OFFSET = 80
MULTI_MODEL_FLAG = 16


class ImdlToolError(RuntimeError):
    """The Node tooling could not run (missing node or packages, or the script failed)."""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ImdlToolError("node is not on PATH: the iMdl checks need Node 20 (see Makefile)")
    return node


def _require_packages(folder: Path, package: str) -> None:
    if not (folder / "node_modules" / package / "package.json").is_file():
        raise ImdlToolError(
            f"{folder / 'node_modules' / package} is missing: "
            f"install {folder.relative_to(ROOT)} (make test does)"
        )


def _run(args: list[str], cwd: Path, timeout: float) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ImdlToolError(
            f"{' '.join(args[:2])} failed (exit {proc.returncode}): {proc.stderr.strip()[-3000:]}"
        )
    return proc.stdout


def dump_imdl(
    paths: Sequence[Path], batch_model_id: str | Sequence[str] = "0x1", timeout: float = 600
) -> list[dict[str, Any]]:
    """What core-frontend's parseImdlDocument + convertFeatureTable make of each file, in the order given.

    ``batch_model_id`` is the model a single-model feature table gives its features (a native tile's model):
    one id for every file, or one per file."""
    if not paths:
        return []
    ids = [batch_model_id] * len(paths) if isinstance(batch_model_id, str) else list(batch_model_id)
    if len(ids) != len(paths):
        raise ValueError(f"{len(ids)} batch model ids for {len(paths)} files")
    _require_packages(FRONTEND, "@itwin/core-frontend")
    args = [_node(), str(DUMP_SCRIPT)]
    for path, model in zip(paths, ids, strict=True):
        args += ["--batch-model", model, str(Path(path).resolve())]
    lines = _run(args, FRONTEND, timeout).splitlines()
    if len(lines) != len(paths):
        raise ImdlToolError(f"imdl-dump answered {len(lines)} lines for {len(paths)} files")
    return [json.loads(line) for line in lines]


def reader_versions() -> dict[str, str]:
    """The core-frontend / core-common versions the dump decodes with."""
    _require_packages(FRONTEND, "@itwin/core-frontend")
    return dict(json.loads(_run([_node(), str(DUMP_SCRIPT), "--versions"], FRONTEND, 60)))


def native_root_tiles(bim: Path, out: Path, timeout: float = 600) -> list[dict[str, Any]]:
    """The native root tile of every spatial model of ``bim``, written as ``out/<modelId>.imdl``: one dict per
    model (``modelId``, ``treeId``, ``location``, ``rootContentId``, ``rootTile``, ``isLeaf``, ``header``,
    ``file``, ... or ``error``), as ``compat/imdl-native.mjs`` prints them."""
    _require_packages(COMPAT, "@itwin/core-backend")
    stdout = _run(
        [_node(), str(NATIVE_SCRIPT), str(Path(bim).resolve()), str(Path(out).resolve())], COMPAT, timeout
    )
    models: list[dict[str, Any]] = json.loads(stdout)["models"]
    return models


def to_multi_model(tile: bytes, model_id: int) -> bytes:
    """A single-model tile with its feature table rewritten as multi-model: every feature in ``model_id``.

    The table's second word (a dead "max features" slot, 0xFFFFFF in native tiles) must then hold the exact
    subcategory count, because the reader finds the model table after the subcategories."""
    (header_length,) = struct.unpack_from("<I", tile, 8)
    table_length, _, count = struct.unpack_from("<3I", tile, header_length)
    words = (table_length - 12) // 4
    subcategories, rest = divmod(words - 3 * count, 2)
    if rest or subcategories < 0:
        raise ValueError(
            f"feature table of {words} words does not hold {count} features and whole subcategories"
        )
    end = header_length + table_length
    model_entry = struct.pack("<3I", max(count - 1, 0), model_id & 0xFFFFFFFF, model_id >> 32)
    table = struct.pack("<3I", table_length + 12, subcategories, count) + tile[header_length + 12 : end]
    out = bytearray(tile[:header_length] + table + model_entry + tile[end:])
    (flags,) = struct.unpack_from("<I", out, HEADER_FLAGS_OFFSET)
    struct.pack_into("<I", out, HEADER_FLAGS_OFFSET, flags | MULTI_MODEL_FLAG)
    struct.pack_into("<I", out, TILE_LENGTH_OFFSET, len(out))
    return bytes(out)


def to_world(location: Sequence[Sequence[float]], point: Sequence[float]) -> tuple[float, float, float]:
    """``point`` (tree-local) through a tile tree's ``location`` (TransformProps: 3 rows of 4)."""
    x, y, z = point
    r0, r1, r2 = location
    return (
        r0[0] * x + r0[1] * y + r0[2] * z + r0[3],
        r1[0] * x + r1[1] * y + r1[2] * z + r1[3],
        r2[0] * x + r2[1] * y + r2[2] * z + r2[3],
    )
