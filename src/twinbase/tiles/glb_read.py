"""Reading GLBs back: meshopt decoding into a plain GLB, accessors, the feature property table, and every
drawn triangle in iModel coordinates. The tests use it to check round trips; it also serves debugging.

``decode_meshopt`` rewrites a file that uses ``EXT_meshopt_compression`` into one that does not (every
compressed buffer view decoded into a single BIN buffer, the fallback buffer and the extension dropped), so
a validator that cannot look inside compressed streams sees all the data. ``read_triangles`` walks the
scene (node transforms, ``EXT_mesh_gpu_instancing``), applies quantization and undoes the Y-up rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import meshoptimizer
import numpy as np
from numpy.typing import NDArray

from twinbase.tiles.glb import (
    BYTE,
    FLOAT,
    MESHOPT,
    SHORT,
    UNSIGNED_BYTE,
    UNSIGNED_INT,
    UNSIGNED_SHORT,
    GlbError,
    pack_glb,
    unpack_glb,
)
from twinbase.tiles.quantize import linear_to_srgb
from twinbase.tiles.transforms import quaternion_to_matrix

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

DTYPES = {BYTE: "<i1", UNSIGNED_BYTE: "<u1", SHORT: "<i2", UNSIGNED_SHORT: "<u2", UNSIGNED_INT: "<u4"}
DTYPES[FLOAT] = "<f4"
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
Y_UP_MATRIX = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@dataclass(eq=False)
class Glb:
    json: dict[str, Any]
    bin: bytes

    @staticmethod
    def parse(data: bytes) -> Glb:
        doc, binary = unpack_glb(data)
        return Glb(doc, binary)

    def view_bytes(self, index: int) -> bytes:
        view = self.json["bufferViews"][index]
        if view.get("buffer", 0) != 0 or MESHOPT in view.get("extensions", {}):
            raise GlbError(f"bufferView {index} is not plain GLB data (decode meshopt first)")
        start = view.get("byteOffset", 0)
        return self.bin[start : start + view["byteLength"]]

    def accessor(self, index: int) -> np.ndarray:
        """Raw values (count, components) in the accessor's own type."""
        acc = self.json["accessors"][index]
        dtype = np.dtype(DTYPES[acc["componentType"]])
        width = WIDTH[acc["type"]]
        count = acc["count"]
        view = self.json["bufferViews"][acc["bufferView"]]
        raw = self.view_bytes(acc["bufferView"])
        stride = view.get("byteStride", dtype.itemsize * width)
        start = acc.get("byteOffset", 0)
        if count == 0:
            return np.zeros((0, width), dtype)
        need = start + (count - 1) * stride + dtype.itemsize * width
        if need > len(raw):
            raise GlbError(f"accessor {index} runs past its bufferView")
        rows = np.frombuffer(raw, np.uint8, count=need - start, offset=start)
        rows = np.lib.stride_tricks.as_strided(rows, (count, dtype.itemsize * width), (stride, 1))
        return np.ascontiguousarray(rows).view(dtype).reshape(count, width)

    def accessor_float(self, index: int) -> F64:
        """Values as float64, normalized integers mapped as glTF defines (u: c / max, s: max(c / max, -1))."""
        acc = self.json["accessors"][index]
        raw = self.accessor(index)
        if not acc.get("normalized"):
            return raw.astype(np.float64)
        info = np.iinfo(raw.dtype)
        return np.maximum(raw.astype(np.float64) / info.max, -1.0)


def _filter_fits(name: str, stride: int) -> bool:
    """The filters ``EXT_meshopt_compression`` defines and the strides it allows each."""
    if name == "NONE":
        return True
    if name == "OCTAHEDRAL":
        return stride in (4, 8)
    if name == "QUATERNION":
        return stride == 8
    if name == "EXPONENTIAL":
        return stride % 4 == 0
    return False


def decode_meshopt(data: bytes) -> bytes:
    """A GLB without ``EXT_meshopt_compression``: compressed views decoded, plain views copied."""
    glb = Glb.parse(data)
    doc = glb.json
    if MESHOPT not in doc.get("extensionsUsed", []):
        return data
    out = bytearray()
    views: list[dict[str, Any]] = []
    for view in doc.get("bufferViews", []):
        ext = view.get("extensions", {}).get(MESHOPT)
        if ext is None:
            chunk = glb.view_bytes(len(views))
        else:
            if ext.get("buffer") != 0:
                raise GlbError("compressed data outside the GLB buffer")
            start = ext.get("byteOffset", 0)
            src = glb.bin[start : start + ext["byteLength"]]
            count, stride, mode = ext["count"], ext["byteStride"], ext["mode"]
            filter_ = ext.get("filter", "NONE")
            if not _filter_fits(filter_, stride):
                raise GlbError(f"meshopt filter {filter_} (byteStride {stride}) is not read here")
            if mode == "ATTRIBUTES":
                decoded = meshoptimizer.decode_vertex_buffer(
                    count, stride, src, dtype=np.dtype((np.void, stride))
                )
                if filter_ == "OCTAHEDRAL":
                    rows = decoded.view(np.int8 if stride == 4 else "<i2").reshape(count, 4)
                    decoded = meshoptimizer.decode_filter_oct(rows, count, stride)
                elif filter_ == "QUATERNION":
                    rows = decoded.view("<i2").reshape(count, 4)
                    decoded = meshoptimizer.decode_filter_quat(rows, count, 8)
                elif filter_ == "EXPONENTIAL":
                    rows = decoded.view("<u4").reshape(count, stride // 4)
                    decoded = meshoptimizer.decode_filter_exp(rows, count, stride)
                chunk = np.ascontiguousarray(decoded).tobytes()
            elif mode == "TRIANGLES":
                # The wrapper decodes into a uint32 array whatever the index size; 2-byte indices fill its
                # first half.
                decoded = meshoptimizer.decode_index_buffer(count, stride, src)
                chunk = decoded.view(np.uint8)[: count * stride].tobytes()
            elif mode == "INDICES":
                decoded = meshoptimizer.decode_index_sequence(count, stride, src)
                chunk = decoded.view(np.uint8)[: count * stride].tobytes()
            else:
                raise GlbError(f"unknown meshopt mode {mode}")
            if len(chunk) != view["byteLength"]:
                raise GlbError(f"decoded {len(chunk)} bytes for a {view['byteLength']}-byte view")
        out += b"\0" * ((8 - len(out) % 8) % 8)
        new = {k: v for k, v in view.items() if k != "extensions"}
        new["buffer"] = 0
        new["byteOffset"] = len(out)
        views.append(new)
        out += chunk
    doc = dict(doc)
    doc["bufferViews"] = views
    doc["buffers"] = [{"byteLength": len(out) + (8 - len(out) % 8) % 8}]
    for key in ("extensionsUsed", "extensionsRequired"):
        rest = [e for e in doc.get(key, []) if e != MESHOPT]
        if rest:
            doc[key] = rest
        else:
            doc.pop(key, None)
    return pack_glb(doc, bytes(out))


def read_property_table(glb: Glb, table: int = 0) -> dict[str, Any]:
    """Columns of an ``EXT_structural_metadata`` property table: numbers as numpy arrays (UINT64 stays
    uint64), strings as lists (``noData`` values as None)."""
    meta = glb.json["extensions"]["EXT_structural_metadata"]
    pt = meta["propertyTables"][table]
    klass = meta["schema"]["classes"][pt["class"]]["properties"]
    count = pt["count"]
    out: dict[str, Any] = {}
    for name, prop in pt["properties"].items():
        spec = klass[name]
        values = glb.view_bytes(prop["values"])
        if spec["type"] == "STRING":
            offset_type = prop.get("stringOffsetType", "UINT32")
            offset_dtype = {"UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8"}[offset_type]
            offsets = np.frombuffer(glb.view_bytes(prop["stringOffsets"]), offset_dtype)
            strings = [values[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(count)]
            nodata = spec.get("noData")
            out[name] = [None if s == nodata else s for s in strings]
        elif spec["type"] == "SCALAR":
            dtype = {"UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT64": "<i8"}
            out[name] = np.frombuffer(values, dtype[spec["componentType"]], count=count).copy()
        else:
            raise GlbError(f"property type {spec['type']} is not read here")
    return out


@dataclass(eq=False)
class Material:
    name: str
    rgba: NDArray[np.uint8]  # sRGB bytes, back from the linear factor
    double_sided: bool
    blend: bool
    extras: dict[str, Any]


def read_materials(glb: Glb) -> list[Material]:
    out = []
    for m in glb.json.get("materials", []):
        factor = np.asarray(m.get("pbrMetallicRoughness", {}).get("baseColorFactor", [1.0, 1.0, 1.0, 1.0]))
        rgb = np.rint(linear_to_srgb(factor[:3]) * 255.0)
        rgba = np.array([*rgb, np.rint(factor[3] * 255.0)], np.uint8)
        out.append(
            Material(
                m.get("name", ""),
                rgba,
                bool(m.get("doubleSided", False)),
                m.get("alphaMode") == "BLEND",
                m.get("extras", {}),
            )
        )
    return out


@dataclass(eq=False)
class Drawn:
    """Every triangle drawn, expanded: ``positions`` (m, 3, 3) and ``normals`` (m, 3, 3) in iModel
    coordinates, ``feature`` (m, 3) the feature id of each corner (-1 when none), ``material`` (m,) glTF
    material index, ``instanced`` (m,) drawn by ``EXT_mesh_gpu_instancing``."""

    positions: F64
    normals: F64
    feature: I64
    material: I64
    instanced: NDArray[np.bool_]


def _node_matrix(node: dict[str, Any]) -> F64:
    if "matrix" in node:
        return np.asarray(node["matrix"], np.float64).reshape(4, 4).T
    m = np.eye(4)
    if "scale" in node:
        m[:3, :3] = np.diag(node["scale"])
    if "rotation" in node:
        m[:3, :3] = quaternion_to_matrix(np.asarray([node["rotation"]], np.float64))[0] @ m[:3, :3]
    if "translation" in node:
        m[:3, 3] = node["translation"]
    return m


def _instance_matrices(glb: Glb, attrs: dict[str, int]) -> F64:
    count = glb.json["accessors"][next(iter(attrs.values()))]["count"]
    t = glb.accessor_float(attrs["TRANSLATION"]) if "TRANSLATION" in attrs else np.zeros((count, 3))
    r = (
        glb.accessor_float(attrs["ROTATION"])
        if "ROTATION" in attrs
        else np.tile([0.0, 0.0, 0.0, 1.0], (count, 1))
    )
    s = glb.accessor_float(attrs["SCALE"]) if "SCALE" in attrs else np.ones((count, 3))
    m = np.tile(np.eye(4), (count, 1, 1))
    m[:, :3, :3] = quaternion_to_matrix(r) * s[:, None, :]
    m[:, :3, 3] = t
    return m


def read_triangles(data: bytes, *, y_up: bool = True) -> Drawn:
    glb = Glb.parse(decode_meshopt(data))
    doc = glb.json
    parts: list[tuple[F64, F64, I64, I64, bool]] = []

    def visit(index: int, parent: F64) -> None:
        node = doc["nodes"][index]
        world = parent @ _node_matrix(node)
        if "mesh" in node:
            inst = node.get("extensions", {}).get("EXT_mesh_gpu_instancing")
            if inst:
                mats = world @ _instance_matrices(glb, inst["attributes"])
                ifeat = node.get("extensions", {}).get("EXT_instance_features", {}).get("featureIds", [])
                if ifeat:
                    key = f"_FEATURE_ID_{ifeat[0]['attribute']}"
                    inst_fid = glb.accessor_float(inst["attributes"][key])[:, 0].astype(np.int64)
                else:
                    inst_fid = np.full(len(mats), -1, np.int64)
            else:
                mats, inst_fid = world[None], np.full(1, -1, np.int64)
            for prim in doc["meshes"][node["mesh"]]["primitives"]:
                if prim.get("mode", 4) != 4:
                    raise GlbError("only TRIANGLES primitives are read here")
                attrs = prim["attributes"]
                pos = glb.accessor_float(attrs["POSITION"])
                nrm = glb.accessor_float(attrs["NORMAL"]) if "NORMAL" in attrs else np.zeros_like(pos)
                tri = glb.accessor(prim["indices"]).reshape(-1, 3).astype(np.int64)
                fids = prim.get("extensions", {}).get("EXT_mesh_features", {}).get("featureIds", [])
                if fids:
                    vfid = glb.accessor_float(attrs[f"_FEATURE_ID_{fids[0]['attribute']}"])[:, 0].astype(
                        np.int64
                    )
                    feat = np.broadcast_to(vfid[tri], (len(mats), *tri.shape))
                else:
                    feat = np.broadcast_to(inst_fid[:, None, None], (len(mats), *tri.shape))
                lin = mats[:, :3, :3]
                p = np.einsum("kij,nj->kni", lin, pos) + mats[:, None, :3, 3]
                inv_t = np.linalg.inv(lin).transpose(0, 2, 1)
                n = np.einsum("kij,nj->kni", inv_t, nrm)
                n /= np.maximum(np.linalg.norm(n, axis=2, keepdims=True), 1e-300)
                k = len(mats)
                parts.append(
                    (
                        p[:, tri].reshape(-1, 3, 3),
                        n[:, tri].reshape(-1, 3, 3),
                        np.ascontiguousarray(feat).reshape(-1, 3),
                        np.full(k * len(tri), prim.get("material", -1), np.int64),
                        bool(inst),
                    )
                )
        for child in node.get("children", []):
            visit(child, world)

    for root in doc["scenes"][doc.get("scene", 0)]["nodes"]:
        visit(root, np.eye(4))
    if not parts:
        z = np.zeros((0, 3, 3))
        return Drawn(z, z.copy(), np.zeros((0, 3), np.int64), np.zeros(0, np.int64), np.zeros(0, bool))
    positions = np.concatenate([p[0] for p in parts])
    normals = np.concatenate([p[1] for p in parts])
    if y_up:
        # glTF (x, y, z) = Y_UP @ iModel, so iModel = Y_UP.T @ glTF.
        positions = positions @ Y_UP_MATRIX
        normals = normals @ Y_UP_MATRIX
    return Drawn(
        positions,
        normals,
        np.concatenate([p[2] for p in parts]),
        np.concatenate([p[3] for p in parts]),
        np.concatenate([np.full(len(p[0]), p[4]) for p in parts]),
    )
