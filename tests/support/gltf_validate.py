"""Runs the Khronos glTF-Validator (``compat/validate-gltf.mjs``, npm ``gltf-validator``) on GLB bytes.

Node and the npm package are required: a missing one raises (the test fails, never skips). The validator
cannot look inside ``EXT_meshopt_compression`` streams, so ``validate_glbs`` validates each file as written
and, when it is compressed, once more after ``decode_meshopt``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twinbase.tiles.glb_read import Glb, decode_meshopt

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "compat" / "validate-gltf.mjs"


@dataclass
class Report:
    name: str
    errors: int
    warnings: int
    messages: list[dict[str, Any]] = field(default_factory=list)

    def codes(self, severity: int) -> list[str]:
        return sorted({f"{m['code']} {m['pointer']}" for m in self.messages if m["severity"] == severity})


def run_validator(files: dict[str, bytes]) -> dict[str, Report]:
    with tempfile.TemporaryDirectory(prefix="gltf-validate-") as tmp:
        paths = []
        for name, data in files.items():
            p = Path(tmp) / f"{name}.glb"
            p.write_bytes(data)
            paths.append(str(p))
        proc = subprocess.run(
            ["node", str(SCRIPT), *paths], cwd=SCRIPT.parent, capture_output=True, text=True, timeout=600
        )
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(
            f"gltf validator did not run (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    out = {}
    for r, name in zip(json.loads(proc.stdout), files, strict=True):
        out[name] = Report(name, r["errors"], r["warnings"], r["messages"])
    return out


def validate_glbs(files: dict[str, bytes]) -> dict[str, Report]:
    """Reports for every file, plus ``<name>.decoded`` for each meshopt-compressed one."""
    todo = dict(files)
    for name, data in files.items():
        decoded = decode_meshopt(data)
        if decoded is not data:
            todo[f"{name}.decoded"] = decoded
    return run_validator(todo)


def metadata_problems(data: bytes) -> list[str]:
    """What the glTF validator does not check: ``EXT_structural_metadata`` binary layout and
    ``EXT_mesh_features`` / ``EXT_instance_features`` ids. Empty when all is well. Checks (after meshopt
    decoding): property-table buffer views 8-byte aligned, numeric columns exactly ``count * size`` bytes,
    string offsets ``count + 1`` values from 0, non-decreasing, ending at the values' length; every feature
    id below the table's ``count``; ``featureCount`` equal to the distinct ids; the metadata extensions
    never in ``extensionsRequired``."""
    problems: list[str] = []
    glb = Glb.parse(decode_meshopt(data))
    doc = glb.json
    for ext in ("EXT_mesh_features", "EXT_structural_metadata", "EXT_instance_features"):
        if ext in doc.get("extensionsRequired", []):
            problems.append(f"{ext} is required")
    meta = doc.get("extensions", {}).get("EXT_structural_metadata")
    if meta is None:
        return problems
    tables = meta["propertyTables"]
    classes = meta["schema"]["classes"]
    sizes = {"UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "UINT32": 4, "INT32": 4, "FLOAT32": 4}
    sizes |= {"UINT64": 8, "INT64": 8, "FLOAT64": 8}
    for ti, table in enumerate(tables):
        count = table["count"]
        props = classes[table["class"]]["properties"]
        for name, prop in table["properties"].items():
            spec = props[name]
            where = f"propertyTables[{ti}].{name}"
            for key in ("values", "stringOffsets", "arrayOffsets"):
                if key in prop:
                    view = doc["bufferViews"][prop[key]]
                    if view.get("byteOffset", 0) % 8:
                        problems.append(
                            f"{where}.{key}: byteOffset {view.get('byteOffset', 0)} not 8-aligned"
                        )
            values = doc["bufferViews"][prop["values"]]["byteLength"]
            if spec["type"] == "STRING":
                offset_type = prop.get("stringOffsetType", "UINT32")
                size = {"UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8}[offset_type]
                raw = glb.view_bytes(prop["stringOffsets"])
                if len(raw) != (count + 1) * size:
                    problems.append(f"{where}: {len(raw)} offset bytes for {count} rows")
                    continue
                offsets = np.frombuffer(raw, f"<u{size}").astype(np.int64)
                if offsets[0] != 0 or (np.diff(offsets) < 0).any() or offsets[-1] != values:
                    problems.append(f"{where}: string offsets not monotonic from 0 to {values}")
            elif spec["type"] == "SCALAR":
                if values != count * sizes[spec["componentType"]]:
                    problems.append(f"{where}: {values} bytes for {count} {spec['componentType']}")
            else:
                problems.append(f"{where}: unchecked type {spec['type']}")

    def check_ids(where: str, ids: np.ndarray, fid: dict[str, Any]) -> None:
        table = tables[fid["propertyTable"]]
        distinct = len(np.unique(ids))
        if ids.size and (ids.min() < 0 or ids.max() >= table["count"]):
            problems.append(f"{where}: ids in [{ids.min()}, {ids.max()}], table has {table['count']} rows")
        if fid["featureCount"] != distinct:
            problems.append(f"{where}: featureCount {fid['featureCount']}, {distinct} distinct ids")
        if not np.array_equal(ids, np.rint(ids)):
            problems.append(f"{where}: non-integer ids")

    for mi, mesh in enumerate(doc.get("meshes", [])):
        for pi, prim in enumerate(mesh["primitives"]):
            for fid in prim.get("extensions", {}).get("EXT_mesh_features", {}).get("featureIds", []):
                acc = prim["attributes"][f"_FEATURE_ID_{fid['attribute']}"]
                check_ids(f"meshes[{mi}].primitives[{pi}]", glb.accessor_float(acc)[:, 0], fid)
    for ni, node in enumerate(doc.get("nodes", [])):
        ext = node.get("extensions", {})
        for fid in ext.get("EXT_instance_features", {}).get("featureIds", []):
            acc = ext["EXT_mesh_gpu_instancing"]["attributes"][f"_FEATURE_ID_{fid['attribute']}"]
            check_ids(f"nodes[{ni}]", glb.accessor_float(acc)[:, 0], fid)
    return problems
