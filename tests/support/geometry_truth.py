"""The geometry truth: what the real iTwin.js backend meshes for each element, to compare twinbase with.

``make_geometry(profile)`` runs ``node compat/make-geometry.mjs`` once and keeps the generated iModel under
``.cache/geometry/<profile>-<key>/model.bim`` (git-ignored), where ``key`` hashes what it depends on: the
generator script, the installed ``@itwin/core-backend`` and native library versions, the profile and its
size. ``export_truth(profile, chord_tol, angle_tol)`` runs ``node compat/export-graphics.mjs`` on it
(``IModelDb.exportGraphics`` with those tolerances) once per tolerance and mode and keeps its
``index.json`` + ``meshes.bin`` next to the model; ``load_truth`` reads them into numpy arrays per element.
Generation is serialized by a file lock (pytest-xdist workers may ask at once) and written to a partial
folder renamed into place when complete, as ``tests/support/chains.py`` does.

``compare_meshes(ours, truth)`` applies issue #13's rules element by element: every element iTwin.js meshes
is present; ranges equal within 1 mm; surface area within 1% for faceted kinds and 3% for curved ones; the
same colours and transparencies (by area); elements iTwin.js gives no triangles (wires) never gain area.

Colours are iTwin.js ``ColorDef`` values as exportGraphics gives them: ``tbgr`` integers, red in the low
byte, then green, blue, and transparency in the high byte (0 opaque, 255 invisible).

No pytest import here: ``bench/tessellate.py`` uses it too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "compat"
MAKE_SCRIPT = COMPAT / "make-geometry.mjs"
EXPORT_SCRIPT = COMPAT / "export-graphics.mjs"
DEFAULT_CACHE = ROOT / ".cache" / "geometry"
PROFILES = ("truth", "geolocated", "bench")
BENCH_ELEMENTS = 100_000
GENERATION_TIMEOUT = 1800

# The tolerances of the comparison tests and of the benchmark: exportGraphics' chordTol (metres) and
# angleTol (radians; pi/12 is its own default). At these, a curved solid's facets are limited by the
# angle for anything smaller than ~0.4 m in radius and by the chord above.
TRUTH_CHORD_TOL = 0.01
TRUTH_ANGLE_TOL = math.pi / 12
BENCH_CHORD_TOL = 0.01
BENCH_ANGLE_TOL = math.pi / 12

# The families make-geometry.mjs writes in jsonProperties.truth; which area tolerance applies.
FACETED = "faceted"
CURVED = "curved"
WIRE = "wire"
TEXT = "text"
MIXED = "mixed"
BREP = "brep"


class GeometryTruthError(RuntimeError):
    """The truth could not be made or read; the message says why (with the generator's output)."""


# ------------------------------------------------------------------------------------------- making


def _package_version(name: str) -> str:
    manifest = COMPAT / "node_modules" / name / "package.json"
    if not manifest.exists():
        raise GeometryTruthError(f"{manifest} is missing: run 'npm ci' in compat/ (or 'make test')")
    return str(json.loads(manifest.read_text())["version"])


def _backend_versions() -> str:
    return ",".join(f"{p}={_package_version(p)}" for p in ("@itwin/core-backend", "@bentley/imodeljs-native"))


def _profile_label(profile: str, elements: int | None) -> str:
    if profile not in PROFILES:
        raise GeometryTruthError(f"unknown geometry profile {profile!r} (one of {', '.join(PROFILES)})")
    if profile == "bench" and elements is not None and elements != BENCH_ELEMENTS:
        return f"bench{elements}"
    return profile


def model_key(profile: str, elements: int | None = None) -> str:
    """What a generated model depends on, hashed: script, backend versions, profile and size."""
    digest = hashlib.sha256()
    digest.update(MAKE_SCRIPT.read_bytes())
    digest.update(f"\0{_backend_versions()}\0profile={_profile_label(profile, elements)}".encode())
    return digest.hexdigest()[:16]


def _cache_root(cache: Path | None) -> Path:
    root = Path(cache or os.environ.get("TWINBASE_GEOMETRY_CACHE") or DEFAULT_CACHE)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise GeometryTruthError("'node' is required to run the iTwin.js backend and is not on PATH")
    return node


def _run_node(args: list[str], env: Mapping[str, str], what: str) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [_node(), *args],
            cwd=COMPAT,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=GENERATION_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GeometryTruthError(f"{what} did not finish in {GENERATION_TIMEOUT} s") from exc
    if proc.returncode != 0:
        raise GeometryTruthError(
            f"{what} exited {proc.returncode} after {time.monotonic() - started:.1f} s:\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc


def _clean_env() -> dict[str, str]:
    # The generator's size knob is in the cache key only through `elements`: never let it leak in.
    return {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}


def make_geometry(profile: str, *, elements: int | None = None, cache: Path | None = None) -> Path:
    """The generated iModel of ``profile`` (made now if not cached): ``<folder>/model.bim``, with
    ``model.bim.manifest.json`` beside it. ``elements`` sizes the bench profile (default 100,000)."""
    label = _profile_label(profile, elements)
    root = _cache_root(cache)
    final = root / f"{label}-{model_key(profile, elements)}"
    model = final / "model.bim"
    if model.exists():
        return model
    with open(root / f".{label}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if model.exists():  # made by another process while this one waited
            return model
        # Older models of this profile (another script or backend) and partial folders of killed runs.
        mine = re.compile(rf"\.?{re.escape(label)}-[0-9a-f]{{16}}(\.partial-\d+)?")
        for old in root.iterdir():
            if old.is_dir() and mine.fullmatch(old.name):
                shutil.rmtree(old, ignore_errors=True)
        partial = root / f".{final.name}.partial-{os.getpid()}"
        partial.mkdir()
        try:
            env = _clean_env()
            if profile == "bench":
                env["BENCH_ELEMENTS"] = str(elements or BENCH_ELEMENTS)
            _run_node(
                [str(MAKE_SCRIPT), str(partial / "model.bim"), profile],
                env,
                f"compat/make-geometry.mjs {label}",
            )
            partial.rename(final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return model


def run_export(
    bim: Path,
    out_dir: Path,
    chord_tol: float,
    angle_tol: float,
    *,
    meshes: bool = True,
    use_async: bool = False,
    parts: bool = True,
) -> dict[str, Any]:
    """Run ``compat/export-graphics.mjs`` now (not cached) and answer its generator figures (timings,
    triangles, peak RSS of the node process in ``maxRssKb``)."""
    args = [str(EXPORT_SCRIPT), str(bim), str(out_dir), repr(chord_tol), repr(angle_tol)]
    if not meshes:
        args.append("--no-meshes")
    if use_async:
        args.append("--async")
    if not parts:
        args.append("--no-parts")
    proc = _run_node(args, _clean_env(), f"compat/export-graphics.mjs {bim.name}")
    try:
        figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise GeometryTruthError(f"export-graphics.mjs printed no figures:\n{proc.stdout}") from exc
    return figures


def export_truth(
    profile: str = "truth",
    chord_tol: float = TRUTH_CHORD_TOL,
    angle_tol: float = TRUTH_ANGLE_TOL,
    *,
    elements: int | None = None,
    meshes: bool = True,
    cache: Path | None = None,
) -> Path:
    """The folder of exportGraphics' output for ``profile`` at these tolerances (made now if not cached):
    ``index.json`` and, with ``meshes``, ``meshes.bin``. Load it with ``load_truth``."""
    model = make_geometry(profile, elements=elements, cache=cache)
    digest = hashlib.sha256()
    digest.update(EXPORT_SCRIPT.read_bytes())
    digest.update(f"\0{chord_tol!r}\0{angle_tol!r}\0{meshes}".encode())
    final = model.parent / f"export-{'meshes' if meshes else 'counts'}-{digest.hexdigest()[:16]}"
    if (final / "index.json").exists():
        return final
    with open(model.parent / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "index.json").exists():
            return final
        partial = model.parent / f".{final.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            run_export(model, partial, chord_tol, angle_tol, meshes=meshes)
            partial.rename(final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return final


# ------------------------------------------------------------------------------------------ loading

F64 = NDArray[np.float64]
F32 = NDArray[np.float32]
U32 = NDArray[np.uint32]


def tbgr_to_rgba(tbgr: int) -> tuple[int, int, int, int]:
    """A ColorDef tbgr integer as (r, g, b, alpha), alpha = 255 - transparency byte."""
    return (tbgr & 0xFF, (tbgr >> 8) & 0xFF, (tbgr >> 16) & 0xFF, 255 - ((tbgr >> 24) & 0xFF))


def rgba_to_tbgr(rgba: tuple[int, int, int, int]) -> int:
    r, g, b, a = rgba
    return (r & 0xFF) | ((g & 0xFF) << 8) | ((b & 0xFF) << 16) | (((255 - a) & 0xFF) << 24)


@dataclass(frozen=True)
class TruthPiece:
    """One onGraphics call: the triangles of an element in one colour / material / texture / subcategory.
    ``vertex_start``/``triangle_start`` index the element's concatenated arrays."""

    color_tbgr: int
    sub_category: str
    material_id: str | None
    texture_id: str | None
    geometry_class: int
    two_sided: bool
    vertex_start: int
    vertices: int
    triangle_start: int
    triangles: int
    area: float

    @property
    def color_rgba(self) -> tuple[int, int, int, int]:
        return tbgr_to_rgba(self.color_tbgr)

    @property
    def transparency(self) -> float:
        return ((self.color_tbgr >> 24) & 0xFF) / 255.0


@dataclass(frozen=True)
class TruthLines:
    """Polylines as segments: ``points`` (n, 3) float64 and ``segments`` (s, 2) uint32 into them;
    ``colors_tbgr`` (s,) the colour of each segment."""

    points: F64
    segments: U32
    colors_tbgr: U32
    length: float

    @property
    def count(self) -> int:
        return int(self.segments.shape[0])


def empty_lines() -> TruthLines:
    return TruthLines(np.zeros((0, 3), np.float64), np.zeros((0, 2), np.uint32), np.zeros(0, np.uint32), 0.0)


@dataclass(frozen=True)
class TruthElement:
    """What one element meshes to, all pieces concatenated (indices rebased): ``positions`` (n, 3)
    float64 world coordinates, ``indices`` (m, 3) uint32, ``normals`` (n, 3) float32. ``color_rgba`` and
    ``transparency`` are those of the piece with the largest area (``pieces`` has them all); ``area`` is the
    sum exportGraphics' triangles make (summed in JS); ``range_low``/``range_high`` bound the positions
    (None when there are no triangles). ``kind``/``family``/``expect`` are what make-geometry.mjs made it to
    be (empty for files it did not make)."""

    id: str
    color_rgba: tuple[int, int, int, int] | None
    transparency: float | None
    positions: F64
    indices: U32
    normals: F32
    area: float
    range_low: F64 | None
    range_high: F64 | None
    lines: TruthLines
    pieces: tuple[TruthPiece, ...] = ()
    kind: str = ""
    family: str = ""
    expect: Mapping[str, Any] = field(default_factory=dict)
    class_full_name: str = ""
    category: str = ""
    user_label: str = ""

    @property
    def triangles(self) -> int:
        return int(self.indices.shape[0])

    def triangle_colors(self) -> U32:
        """The tbgr colour of each triangle."""
        out = np.empty(self.triangles, np.uint32)
        for p in self.pieces:
            out[p.triangle_start : p.triangle_start + p.triangles] = p.color_tbgr
        return out


@dataclass(frozen=True)
class PartInstance:
    part_id: str
    element_id: str
    transform: F64  # (3, 4) row-major: world from part coordinates, placement and scale included
    display_key: str
    display: Mapping[str, Any]


@dataclass(frozen=True)
class PartGraphics:
    """exportPartGraphics' meshes of one part for one display (part coordinates, tessellated once)."""

    part_id: str
    display_key: str
    positions: F64
    indices: U32
    area: float


@dataclass(frozen=True)
class Truth:
    generator: Mapping[str, Any]
    elements: dict[str, TruthElement]
    instances: tuple[PartInstance, ...]
    parts: dict[str, PartGraphics]  # by display key
    parts_pass: dict[str, tuple[int, float]]  # element id -> (triangles, area) with instancing kept


def triangle_areas(positions: F64, indices: U32) -> F64:
    if indices.shape[0] == 0:
        return np.zeros(0, np.float64)
    a = positions[indices[:, 0]]
    cross = np.cross(positions[indices[:, 1]] - a, positions[indices[:, 2]] - a)
    areas: F64 = 0.5 * np.sqrt(np.einsum("ij,ij->i", cross, cross))
    return areas


def _array(buf: bytes, dtype: type[np.generic], offset: int, count: int) -> Any:
    if offset + count * np.dtype(dtype).itemsize > len(buf):
        raise GeometryTruthError(f"meshes.bin is truncated (an array at {offset} runs past its end)")
    return np.frombuffer(buf, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=offset)


def _pieces_mesh(
    buf: bytes, raw: list[dict[str, Any]]
) -> tuple[F64, U32, F32, list[tuple[dict[str, Any], int, int]]]:
    """Concatenate pieces' arrays; indices rebased. Answers (positions, indices, normals, starts)."""
    positions: list[Any] = []
    indices: list[Any] = []
    normals: list[Any] = []
    starts = []
    v0 = 0
    t0 = 0
    for p in raw:
        nv = int(p["vertices"])
        nt = int(p["triangles"])
        positions.append(_array(buf, np.float64, p["positions"], 3 * nv).reshape(nv, 3))
        normals.append(_array(buf, np.float32, p["normals"], 3 * nv).reshape(nv, 3))
        tri = _array(buf, np.uint32, p["indices"], 3 * nt).reshape(nt, 3)
        if nt and int(tri.max()) >= nv:
            raise GeometryTruthError(f"a piece has an index {int(tri.max())} >= its {nv} vertices")
        indices.append(tri + np.uint32(v0))
        starts.append((p, v0, t0))
        v0 += nv
        t0 += nt
    if not raw:
        return (
            np.zeros((0, 3), np.float64),
            np.zeros((0, 3), np.uint32),
            np.zeros((0, 3), np.float32),
            [],
        )
    return (
        np.concatenate(positions).astype(np.float64, copy=False),
        np.concatenate(indices).astype(np.uint32, copy=False),
        np.concatenate(normals).astype(np.float32, copy=False),
        starts,
    )


def _lines(buf: bytes, raw: list[dict[str, Any]]) -> TruthLines:
    if not raw:
        return empty_lines()
    points = []
    segments = []
    colors = []
    base = 0
    length = 0.0
    for p in raw:
        n = int(p["points"])
        s = int(p["segments"])
        points.append(_array(buf, np.float64, p["pointsOffset"], 3 * n).reshape(n, 3))
        segments.append(_array(buf, np.uint32, p["indicesOffset"], 2 * s).reshape(s, 2) + np.uint32(base))
        colors.append(np.full(s, int(p["color"]) & 0xFFFFFFFF, np.uint32))
        base += n
        length += float(p["length"])
    return TruthLines(np.concatenate(points), np.concatenate(segments), np.concatenate(colors), length)


def load_truth(folder: Path) -> Truth:
    """Read an export folder (``index.json`` + ``meshes.bin`` written by export-graphics.mjs)."""
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise GeometryTruthError(f"{folder}: no readable index.json ({exc})") from exc
    if "elements" not in index:
        raise GeometryTruthError(f"{folder}: a count-only export (--no-meshes) has no meshes to load")
    buf = (folder / "meshes.bin").read_bytes()
    elements: dict[str, TruthElement] = {}
    parts_pass: dict[str, tuple[int, float]] = {}
    for raw in index["elements"]:
        positions, indices, normals, starts = _pieces_mesh(buf, raw["pieces"])
        pieces = tuple(
            TruthPiece(
                color_tbgr=int(p["color"]) & 0xFFFFFFFF,
                sub_category=str(p["subCategory"]),
                material_id=p.get("materialId"),
                texture_id=p.get("textureId"),
                geometry_class=int(p["geometryClass"]),
                two_sided=bool(p["isTwoSided"]),
                vertex_start=v0,
                vertices=int(p["vertices"]),
                triangle_start=t0,
                triangles=int(p["triangles"]),
                area=float(p["area"]),
            )
            for p, v0, t0 in starts
        )
        dominant = max(pieces, key=lambda p: p.area) if pieces else None
        truth = raw.get("truth") or {}
        has_mesh = positions.shape[0] > 0
        elements[raw["id"]] = TruthElement(
            id=raw["id"],
            color_rgba=dominant.color_rgba if dominant else None,
            transparency=dominant.transparency if dominant else None,
            positions=positions,
            indices=indices,
            normals=normals,
            area=float(raw["area"]),
            range_low=positions.min(axis=0) if has_mesh else None,
            range_high=positions.max(axis=0) if has_mesh else None,
            lines=_lines(buf, raw["lines"]),
            pieces=pieces,
            kind=str(truth.get("kind", "")),
            family=str(truth.get("family", "")),
            expect=truth.get("expect") or {},
            class_full_name=raw.get("classFullName") or "",
            category=raw.get("category") or "",
            user_label=raw.get("userLabel") or "",
        )
        if "partsPass" in raw:
            parts_pass[raw["id"]] = (int(raw["partsPass"]["triangles"]), float(raw["partsPass"]["area"]))
    parts: dict[str, PartGraphics] = {}
    for raw in index.get("parts", []):
        positions, indices, _, _ = _pieces_mesh(buf, raw["pieces"])
        parts[raw["displayKey"]] = PartGraphics(
            part_id=raw["partId"],
            display_key=raw["displayKey"],
            positions=positions,
            indices=indices,
            area=float(raw["area"]),
        )
    instances = tuple(
        PartInstance(
            part_id=i["partId"],
            element_id=i["elementId"],
            transform=np.asarray(i["transform"], np.float64).reshape(3, 4),
            display_key=i["displayKey"],
            display=i["displayProps"],
        )
        for i in index.get("instances", [])
        if i.get("transform") is not None
    )
    return Truth(index["generator"], elements, instances, parts, parts_pass)


def load_manifest(model: Path) -> dict[str, Any]:
    """make-geometry.mjs's manifest of ``model`` (categories, materials, parts and elements made)."""
    manifest: dict[str, Any] = json.loads(Path(f"{model}.manifest.json").read_text())
    return manifest


def mesh_element(
    element_id: str,
    positions: ArrayLike,
    indices: ArrayLike,
    triangle_colors_tbgr: ArrayLike | None = None,
    *,
    normals: ArrayLike | None = None,
    lines: TruthLines | None = None,
    family: str = "",
    kind: str = "",
) -> TruthElement:
    """A TruthElement from any mesh (e.g. twinbase's), so ``compare_meshes`` can take it: ``positions``
    (n, 3), ``indices`` (m, 3), one piece per distinct colour in ``triangle_colors_tbgr`` (m,) (triangles
    reordered by colour; without colours, no pieces)."""
    points: F64 = np.asarray(positions, np.float64).reshape(-1, 3)
    triangles: U32 = np.asarray(indices, np.uint32).reshape(-1, 3)
    areas = triangle_areas(points, triangles)
    pieces: list[TruthPiece] = []
    if triangle_colors_tbgr is not None and triangles.shape[0]:
        colors: U32 = np.asarray(triangle_colors_tbgr, np.uint32).reshape(-1)
        order = np.argsort(colors, kind="stable")
        triangles, areas, colors = triangles[order], areas[order], colors[order]
        bounds = np.flatnonzero(np.diff(colors)) + 1
        starts = [0, *bounds.tolist()]
        ends = [*bounds.tolist(), int(colors.shape[0])]
        for start, end in zip(starts, ends, strict=True):
            pieces.append(
                TruthPiece(
                    color_tbgr=int(colors[start]),
                    sub_category="",
                    material_id=None,
                    texture_id=None,
                    geometry_class=0,
                    two_sided=False,
                    vertex_start=0,
                    vertices=int(points.shape[0]),
                    triangle_start=start,
                    triangles=end - start,
                    area=float(areas[start:end].sum()),
                )
            )
    dominant = max(pieces, key=lambda p: p.area) if pieces else None
    has_mesh = triangles.shape[0] > 0
    used = points[np.unique(triangles)] if has_mesh else points[:0]
    return TruthElement(
        id=element_id,
        color_rgba=dominant.color_rgba if dominant else None,
        transparency=dominant.transparency if dominant else None,
        positions=points,
        indices=triangles,
        normals=np.asarray(normals if normals is not None else np.zeros((0, 3)), np.float32).reshape(-1, 3),
        area=float(areas.sum()),
        range_low=used.min(axis=0) if has_mesh else None,
        range_high=used.max(axis=0) if has_mesh else None,
        lines=lines if lines is not None else empty_lines(),
        pieces=tuple(pieces),
        kind=kind,
        family=family,
    )


# ---------------------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Mismatch:
    element_id: str
    kind: str
    rule: str  # missing | range | area | colors | gained-area | lines | unknown
    detail: str


@dataclass
class ComparisonReport:
    compared: int = 0
    meshed: int = 0
    wires: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    worst_area: dict[str, float] = field(default_factory=dict)  # family -> worst relative area error
    worst_range: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def by_rule(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.mismatches:
            out[m.rule] = out.get(m.rule, 0) + 1
        return out

    def summary(self, limit: int = 20) -> str:
        worst = ", ".join(f"{k} {v:.3%}" for k, v in sorted(self.worst_area.items()))
        head = (
            f"{self.compared} elements compared ({self.meshed} meshed, {self.wires} without triangles); "
            f"worst area error: {worst or '-'}; worst range error {self.worst_range * 1000:.3f} mm; "
            f"{len(self.mismatches)} mismatches {self.by_rule()}"
        )
        lines = [head] + [f"  {m.element_id} {m.kind}: {m.rule}: {m.detail}" for m in self.mismatches[:limit]]
        if len(self.mismatches) > limit:
            lines.append(f"  ... {len(self.mismatches) - limit} more")
        return "\n".join(lines)


def _color_areas(e: TruthElement) -> dict[int, float]:
    out: dict[int, float] = {}
    for p in e.pieces:
        out[p.color_tbgr] = out.get(p.color_tbgr, 0.0) + p.area
    return out


def _fmt_color(tbgr: int) -> str:
    r, g, b, a = tbgr_to_rgba(tbgr)
    return f"rgba({r},{g},{b},{a})"


def compare_meshes(
    ours: Mapping[str, TruthElement],
    truth: Mapping[str, TruthElement],
    *,
    range_tol: float = 0.001,
    faceted_area_tol: float = 0.01,
    curved_area_tol: float = 0.03,
    check_colors: bool = True,
    check_lines: bool = True,
    range_only_families: Iterable[str] = (BREP,),
    may_gain_area_families: Iterable[str] = (TEXT,),
) -> ComparisonReport:
    """Compare ``ours`` with ``truth`` (both keyed by element id) by issue #13's rules:

    - every element the truth meshes (has triangles) is in ``ours`` with triangles;
    - the range of its triangles equals the truth's within ``range_tol`` (1 mm) on every axis;
    - its area is within ``faceted_area_tol`` (1%) of the truth's for the faceted family and within
      ``curved_area_tol`` (3%) for every other (curved, mixed, unknown); families in
      ``range_only_families`` (B-reps: twinbase has no Parasolid) are held to the range only;
    - the same set of colours (tbgr, so transparency too), each covering the same share of the element's
      area within the area tolerance;
    - an element the truth gives no triangles (wires, or text, where exportGraphics draws nothing) has no
      triangles in ``ours`` either (``may_gain_area_families`` excepted: twinbase may box text);
    - with ``check_lines``, an element that has line segments in the truth has some in ``ours``, of the same
      total length within the curved tolerance;
    - an element of ``ours`` the truth does not know at all is reported.
    """
    range_only = set(range_only_families)
    may_gain = set(may_gain_area_families)
    report = ComparisonReport()
    for eid, t in truth.items():
        report.compared += 1
        o = ours.get(eid)
        label = t.kind or t.user_label
        bad = report.mismatches.append
        if t.triangles == 0:
            report.wires += 1
            if o is not None and o.triangles > 0 and t.family not in may_gain:
                bad(Mismatch(eid, label, "gained-area", f"{o.triangles} triangles, area {o.area:.6g}"))
        else:
            report.meshed += 1
            if o is None or o.triangles == 0:
                bad(Mismatch(eid, label, "missing", f"iTwin.js meshes it ({t.triangles} triangles)"))
                continue
            assert t.range_low is not None and t.range_high is not None
            assert o.range_low is not None and o.range_high is not None
            err = float(
                max(np.abs(o.range_low - t.range_low).max(), np.abs(o.range_high - t.range_high).max())
            )
            report.worst_range = max(report.worst_range, err)
            if err > range_tol:
                bad(
                    Mismatch(
                        eid,
                        label,
                        "range",
                        f"off by {err * 1000:.3f} mm: ours {o.range_low.tolist()}..{o.range_high.tolist()}, "
                        f"iTwin.js {t.range_low.tolist()}..{t.range_high.tolist()}",
                    )
                )
            if t.family not in range_only:
                tol = faceted_area_tol if t.family == FACETED else curved_area_tol
                rel = abs(o.area - t.area) / t.area if t.area > 0 else abs(o.area)
                family = t.family or "unknown"
                report.worst_area[family] = max(report.worst_area.get(family, 0.0), rel)
                if rel > tol:
                    bad(
                        Mismatch(
                            eid,
                            label,
                            "area",
                            f"{o.area:.6g} vs iTwin.js {t.area:.6g} ({rel:.2%} > {tol:.0%}, {family})",
                        )
                    )
                if check_colors:
                    mine = _color_areas(o)
                    theirs = _color_areas(t)
                    if set(mine) != set(theirs):
                        bad(
                            Mismatch(
                                eid,
                                label,
                                "colors",
                                f"ours {sorted(map(_fmt_color, mine))}, "
                                f"iTwin.js {sorted(map(_fmt_color, theirs))}",
                            )
                        )
                    else:
                        for c, a in theirs.items():
                            share = abs(mine[c] / max(o.area, 1e-300) - a / t.area)
                            if share > tol:
                                bad(
                                    Mismatch(
                                        eid,
                                        label,
                                        "colors",
                                        f"{_fmt_color(c)} covers {mine[c] / o.area:.2%} of ours, "
                                        f"{a / t.area:.2%} in iTwin.js",
                                    )
                                )
        if check_lines and t.lines.count:
            mine_len = o.lines.length if o is not None else 0.0
            if o is None or o.lines.count == 0:
                bad(Mismatch(eid, label, "lines", f"iTwin.js has {t.lines.count} line segments, ours none"))
            elif abs(mine_len - t.lines.length) > curved_area_tol * t.lines.length:
                bad(
                    Mismatch(
                        eid,
                        label,
                        "lines",
                        f"length {mine_len:.6g} vs iTwin.js {t.lines.length:.6g}",
                    )
                )
    for eid in ours:
        if eid not in truth:
            report.mismatches.append(
                Mismatch(eid, ours[eid].kind, "unknown", "not an element iTwin.js exported")
            )
    return report
