"""Facets of Parasolid B-reps from the iTwin.js native library: an optional helper of ``bim.mesher``.

twinbase has no Parasolid: a B-rep stored without its facets (no BRepPolyface after it) is drawn as its
range box. Where the iTwin.js backend is installed (``compat/``: node, ``@itwin/core-backend`` and the
native library ``@bentley/imodeljs-native``), ``NativeFacetProvider`` runs ``compat/brep-facets.mjs`` in
one node process for the elements and geometry parts whose streams hold such B-reps, and answers the
meshes ``IModelDb.exportGraphics`` (elements, world coordinates, part instances left out) and
``IModelDb.exportPartGraphics`` (parts, part coordinates) make of them.

Off by default (``mesh_imodel(..., native_breps=True)`` turns it on; the server setting
``TWINBASE_NATIVE_BREP_FACETS``): the native library is not open source. It runs under Bentley's
right-to-run authorization (``compat/node_modules/@bentley/imodeljs-native/LICENSE.md``), which allows
it on snapshot iModels, and on any other iModel only when you and the program are identified and
authorized by the owner of the data, that owner being authorized by Bentley (or a third party Bentley
authorized) to grant it; no modifying or reverse engineering, as is, no support. Whoever turns this on
answers for those terms; twinbase itself stays pure Python without it. ``@itwin/core-backend`` is MIT.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from twinbase.bim.geometry.types import GeometryClass, Symbology
from twinbase.bim.mesher import (
    Appearance,
    AppearanceResolver,
    ElementMeshes,
    MeshPiece,
    PartMeshes,
    PartRef,
    _merge,
)
from twinbase.bim.tessellate import Mesh

if TYPE_CHECKING:
    from twinbase.bim.mesher import _Fallbacks, _Mesher

__all__ = [
    "NativeBReps",
    "NativeFacetProvider",
    "NativeFacets",
    "NativeFacetsError",
    "NativeFacetsUnavailable",
    "NativePart",
    "NativePiece",
    "default_compat_dir",
]

SCRIPT = "brep-facets.mjs"
DEFAULT_TIMEOUT = 1800.0


class NativeFacetsError(RuntimeError):
    """The native library was asked and failed (the message carries node's output)."""


class NativeFacetsUnavailable(NativeFacetsError):
    """The option is on but node or the iTwin.js backend (with its native library) is not installed."""


def default_compat_dir() -> Path:
    """The repository's ``compat/`` folder (where ``npm ci`` installs the iTwin.js backend)."""
    return Path(__file__).resolve().parents[3] / "compat"


@dataclass(frozen=True)
class NativePiece:
    """One onGraphics / onPartGraphics call: triangles in one appearance as the native library resolved
    it. ``color_tbgr`` 0xTTBBGGRR; ids are ints, None when not given (``subcategory_id`` is None for
    parts: exportPartGraphics names none)."""

    color_tbgr: int
    material_id: int | None
    texture_id: int | None
    subcategory_id: int | None
    geometry_class: int
    mesh: Mesh


@dataclass(frozen=True)
class NativePart:
    """exportPartGraphics of one part: ``display`` the display props taken from the instance it was asked
    for (None: that element did not instance the part, neutral props were used); ``status`` its answer."""

    part_id: int
    instanced_by: int | None
    display: Mapping[str, Any] | None
    status: int
    pieces: tuple[NativePiece, ...]


@dataclass
class NativeFacets:
    elements: dict[int, tuple[NativePiece, ...]] = field(default_factory=dict)
    parts: dict[int, NativePart] = field(default_factory=dict)
    generator: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of the node process, startup included


def _id(value: Any) -> int | None:
    """An iTwin.js hex id string as an int; None for none ("0", "", null)."""
    if not value:
        return None
    number = int(str(value), 16)
    return number or None


def _array(buf: bytes, dtype: str, offset: int, count: int) -> Any:
    if offset + count * np.dtype(dtype).itemsize > len(buf):
        raise NativeFacetsError(f"{SCRIPT}: meshes.bin is truncated (an array at {offset} runs past its end)")
    # copied: frombuffer's arrays are read-only views of the whole file's bytes
    return np.frombuffer(buf, dtype, count, offset).copy()


def _pieces(buf: bytes, raw: Sequence[Mapping[str, Any]]) -> tuple[NativePiece, ...]:
    out: list[NativePiece] = []
    for p in raw:
        nv = int(p["vertices"])
        nt = int(p["triangles"])
        mesh = Mesh(
            _array(buf, "<f8", int(p["positions"]), 3 * nv),
            _array(buf, "<f4", int(p["normals"]), 3 * nv),
            _array(buf, "<u4", int(p["indices"]), 3 * nt),
            params=_array(buf, "<f4", int(p["params"]), 2 * nv),
            two_sided=bool(p["isTwoSided"]),
        )
        sub = p.get("subCategory")
        out.append(
            NativePiece(
                color_tbgr=int(p["color"]) & 0xFFFFFFFF,
                material_id=_id(p.get("materialId")),
                texture_id=_id(p.get("textureId")),
                subcategory_id=_id(sub) if sub is not None else None,
                geometry_class=int(p["geometryClass"]),
                mesh=mesh,
            )
        )
    return tuple(out)


class NativeFacetProvider:
    """Runs ``compat/brep-facets.mjs``: node from ``node`` (default: PATH), the backend from
    ``compat_dir`` (default: the repository's ``compat/``). ``check()`` raises
    ``NativeFacetsUnavailable`` when either is missing; ``facets()`` asks for meshes (one process)."""

    def __init__(
        self,
        compat_dir: str | os.PathLike[str] | None = None,
        *,
        node: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.compat_dir = Path(compat_dir) if compat_dir is not None else default_compat_dir()
        self.node = node
        self.timeout = timeout
        self._checked: str | None = None

    def check(self) -> str:
        """The node executable, once node, the script, core-backend and the native add-on are found."""
        if self._checked is not None:
            return self._checked
        node = shutil.which(self.node or "node")
        if node is None:
            raise NativeFacetsUnavailable(
                f"native B-rep facets are on but node ({self.node or 'node'}) is not found: install Node.js "
                "and the iTwin.js backend ('npm ci' in compat/), or turn the option off"
            )
        script = self.compat_dir / SCRIPT
        if not script.is_file():
            raise NativeFacetsUnavailable(f"native B-rep facets are on but {script} is missing")
        modules = self.compat_dir / "node_modules"
        backend = modules / "@itwin" / "core-backend" / "package.json"
        native = modules / "@bentley" / "imodeljs-native"
        if not backend.is_file() or not native.is_dir():
            raise NativeFacetsUnavailable(
                f"native B-rep facets are on but the iTwin.js backend is not installed in {self.compat_dir} "
                "(run 'npm ci' there)"
            )
        # npm may install the package without running its install script (npm 11's allowScripts): then
        # the add-on itself is missing and the backend fails only at startup.
        if not any(native.glob("*/imodeljs.node")):
            raise NativeFacetsUnavailable(
                f"native B-rep facets are on but {native} has no native add-on (imodeljs.node): its install "
                "script did not run (compat/package.json allowScripts)"
            )
        self._checked = node
        return node

    def facets(
        self,
        bim: str | os.PathLike[str],
        elements: Iterable[int],
        parts: Iterable[tuple[int, int | None]],
        chord_tolerance: float,
        angle_tolerance: float,
        max_edge_length: float | None = None,
    ) -> NativeFacets:
        """exportGraphics meshes of ``elements`` (their part instances left out) and exportPartGraphics
        meshes of ``parts`` ``(part id, instancing element id or None)`` in the file ``bim``. Elements
        the library gives no triangles are absent from the answer."""
        node = self.check()
        request = {
            "elements": [f"0x{e:x}" for e in elements],
            "parts": [
                {"id": f"0x{p:x}", "instancedBy": f"0x{by:x}" if by is not None else None} for p, by in parts
            ],
            "chordTol": chord_tolerance,
            "angleTol": angle_tolerance,
            "maxEdgeLength": max_edge_length or None,
        }
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="twinbase-brep-facets-") as work:
            req = Path(work) / "request.json"
            req.write_text(json.dumps(request))
            out = Path(work) / "out"
            try:
                proc = subprocess.run(
                    [node, str(self.compat_dir / SCRIPT), str(Path(bim).resolve()), str(req), str(out)],
                    cwd=self.compat_dir,
                    capture_output=True,
                    text=True,
                    timeout=self.timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise NativeFacetsError(f"{SCRIPT} did not finish in {self.timeout:g} s") from exc
            except OSError as exc:
                raise NativeFacetsUnavailable(f"cannot run {node}: {exc}") from exc
            if proc.returncode != 0:
                raise NativeFacetsError(
                    f"{SCRIPT} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
                )
            try:
                index = json.loads((out / "index.json").read_text())
                buf = (out / "meshes.bin").read_bytes()
            except (OSError, ValueError) as exc:
                raise NativeFacetsError(f"{SCRIPT} left no readable output: {exc}\n{proc.stderr}") from exc
        result = NativeFacets(generator=index.get("generator", {}), seconds=time.monotonic() - started)
        for raw in index["elements"]:
            eid = _id(raw["id"])
            if eid is not None:
                result.elements[eid] = _pieces(buf, raw["pieces"])
        for raw in index["parts"]:
            pid = _id(raw["id"])
            if pid is not None:
                result.parts[pid] = NativePart(
                    part_id=pid,
                    instanced_by=_id(raw.get("instancedBy")),
                    display=raw.get("display"),
                    status=int(raw.get("status", 0)),
                    pieces=_pieces(buf, raw["pieces"]),
                )
        return result


# -- the mesher's side ----------------------------------------------------------------------------------


@dataclass
class _NativePart:
    fallbacks: list[str]  # one per facet-less B-rep of the part's stream
    # every instance of the part: (owner, index in owner.instances, instance symbology, category)
    refs: list[tuple[ElementMeshes, int, Symbology, int]] = field(default_factory=list)


class NativeBReps:
    """The streams holding B-reps without facets, meshed by the native library once the pass is over
    (one node process for the whole call), and their meshes put in place of ours.

    exportGraphics and exportPartGraphics answer per element and per part, one piece per appearance,
    never per geometry entry: the B-rep's triangles cannot be told from the rest of the stream's. So the
    rule is per stream: an element or part whose stream holds such a B-rep takes the native meshes for
    the whole stream (the other entries too, which the native library meshes as we do), and keeps its
    own lines (wires, text outlines: exportGraphics draws no text) and part instances (the element
    export leaves instances out, so parts stay parts). Colours: an element's pieces take the appearance
    the native library resolved (colour, transparency, material, subcategory, class), which is what ours
    resolves. A part is meshed once, for display props of one of its instances, and its pieces are
    mapped back to the part stream's symbologies by resolving each through that same instance, so every
    other instance still resolves its own colours; a piece no symbology explains (B-rep face colours)
    keeps the native colour for all instances. If the library gives no triangles for a stream, our
    range box stays and counts as before."""

    def __init__(self, provider: NativeFacetProvider) -> None:
        self.provider = provider
        self.elements: dict[int, list[str]] = {}
        self.parts: dict[int, _NativePart] = {}

    def element(self, element_id: int, fallbacks: list[str]) -> None:
        """An element whose stream holds facet-less B-reps (one fallback name each)."""
        self.elements[element_id] = fallbacks

    def part(self, part_id: int, fallbacks: list[str]) -> None:
        """A part whose stream holds facet-less B-reps (one fallback name each)."""
        self.parts[part_id] = _NativePart(fallbacks)

    def instance(self, owner: ElementMeshes, part_id: int, sym: Symbology, category: int) -> None:
        """``owner`` has just listed an instance of ``part_id`` (its pieces' appearances may change)."""
        state = self.parts.get(part_id)
        if state is not None:
            state.refs.append((owner, len(owner.instances) - 1, sym, category))

    def apply(self, mesher: _Mesher) -> None:
        if not self.elements and not self.parts:
            return  # no node process for a file without such B-reps
        o = mesher.options
        facets = self.provider.facets(
            mesher.imodel.path,
            self.elements,
            [(pid, state.refs[0][0].element_id if state.refs else None) for pid, state in self.parts.items()],
            o.chord_tolerance,
            o.angle_tolerance,
            o.max_edge_length,
        )
        result, fb, resolver = mesher.result, mesher.fb, mesher.appearance
        for eid, fallbacks in self.elements.items():
            pieces = [p for p in facets.elements.get(eid, ()) if p.mesh.n_triangles]
            element = result.elements.get(eid)
            if not pieces or element is None:
                self._fell_back(fb, fallbacks)
                continue
            by_app: dict[Appearance, list[Mesh]] = {}
            for p in pieces:
                material = p.material_id if p.material_id in resolver.materials else None
                app = Appearance(p.color_tbgr, material, p.subcategory_id or 0, p.geometry_class)
                by_app.setdefault(app, []).append(p.mesh)
            element.meshes = [
                MeshPiece(app, ms[0] if len(ms) == 1 else Mesh.concat(ms)) for app, ms in by_app.items()
            ]
            fb.counts["brep-native-facets"] += len(fallbacks)
        for pid, state in self.parts.items():
            native = facets.parts.get(pid)
            old = result.parts.get(pid)
            pieces = [p for p in native.pieces if p.mesh.n_triangles] if native and not native.status else []
            if not pieces or old is None or not state.refs:
                self._fell_back(fb, state.fallbacks)
                continue
            _, _, ref_sym, ref_category = state.refs[0]
            stream = [s for s, _ in old.meshes]
            syms = _native_part_symbologies(pieces, stream, ref_sym, ref_category, resolver)
            meshes = tuple((s, p.mesh) for s, p in zip(syms, pieces, strict=True))
            result.parts[pid] = PartMeshes(pid, meshes, old.lines)
            for owner, index, sym, category in state.refs:
                ref = owner.instances[index]
                apps = tuple(resolver.resolve(_merge(s, sym), category) for s, _ in meshes)
                owner.instances[index] = PartRef(pid, ref.transform, apps, ref.line_appearances)
            fb.counts["brep-native-facets"] += len(state.fallbacks)
        mesher._instance_apps.clear()  # resolved for the replaced parts' old pieces

    @staticmethod
    def _fell_back(fb: _Fallbacks, fallbacks: list[str]) -> None:
        for name in fallbacks:
            if name == "brep-range-box":
                fb.counts[name] += 1
            else:
                fb.skipped[name] += 1


def _native_part_symbologies(
    pieces: Sequence[NativePiece],
    stream: Sequence[Symbology],
    ref_sym: Symbology,
    ref_category: int,
    resolver: AppearanceResolver,
) -> list[Symbology]:
    """The part-stream symbology of each native piece: the one that resolves, through the instance the
    display props came from, to the piece's colour, material and class. With a single symbology and a
    single piece, that one (our resolution of every instance stays in charge, as for other parts).
    A piece none explains gets a symbology of its own colour (subcategory still the instance's)."""
    distinct = list(dict.fromkeys(stream))
    if len(distinct) == 1 and len(pieces) == 1:
        return distinct
    apps = [(s, resolver.resolve(_merge(s, ref_sym), ref_category)) for s in distinct]
    out: list[Symbology] = []
    for p in pieces:
        material = p.material_id if p.material_id in resolver.materials else None
        want = (p.color_tbgr, material, p.geometry_class)
        found = next((s for s, a in apps if (a.color_tbgr, a.material_id, a.geometry_class) == want), None)
        if found is None:
            byte = (p.color_tbgr >> 24) & 0xFF
            found = Symbology(
                color=p.color_tbgr & 0xFFFFFF,
                # (byte + 0.5) / 255: floor(255 t) gives the byte back despite rounding
                transparency=(byte + 0.5) / 255 if byte else 0.0,
                geometry_class=GeometryClass(p.geometry_class),
                material_id=material if material is not None else 0,
            )
        out.append(found)
    return out
