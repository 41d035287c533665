"""twinbase's tessellation against the real iTwin.js backend: the same shapes, given to iTwin.js as
core-geometry objects in a fresh iModel (``compat/tessellate-truth.mjs``) and to ``twinbase.bim.tessellate``
as plain parameters, meshed by ``IModelDb.exportGraphics`` and by us at the same chord tolerances.

For solids, sweeps and regions the stroke counts follow the native library, so the facets are the same
surfaces: areas and volumes agree to rounding, and triangle counts agree except where a flat face is
cut differently (iTwin.js fans a disk from its centre, earcut does not). B-spline curves stroke as the
native library does (one edge fewer per Bezier span than its estimate, measured here); B-spline surfaces
match on single-span patches, while on multi-span curved ones the native mesher is adaptive (odd triangle
counts) and only the area is compared (0.07% apart at chord 0.01 on a wavy bicubic).

Node.js and the compat packages are required: without them the test fails, it never skips.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from test_compat_imodels import ensure_native_modules
from test_compat_itwins import _tool
from twinbase.bim.tessellate import (
    Arc,
    BSplineCurve,
    LineSegment,
    LineString,
    Mesh,
    StrokeOptions,
    boxes,
    bspline_surface_mesh,
    cones,
    curve_polyline,
    linear_sweep,
    planar_region,
    polyface_mesh,
    rotational_sweep,
    ruled_sweep,
    spheres,
    torus_pipes,
)

ROOT = Path(__file__).resolve().parent.parent
# One worker runs them all (the suite runs with --dist loadgroup), so iTwin.js meshes the iModel once.
pytestmark = pytest.mark.xdist_group("tessellate-itwinjs")
TOLERANCES = [0.01, 0.001]
EYE = np.eye(3).tolist()
W = math.sqrt(0.5)


def square(x: float, y: float, s: float, z: float = 0.0) -> dict[str, Any]:
    return {"points": [[x, y, z], [x + s, y, z], [x + s, y + s, z], [x, y + s, z]]}


def circle(c: list[float], r: float) -> dict[str, Any]:
    return {"arc": [c, [r, 0, 0], [0, r, 0], 0.0, 2 * math.pi]}


RATIONAL_CIRCLE = {
    "bspline": {
        "poles": [
            [x * w, y * w, 0.0]
            for (x, y), w in zip(
                [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0)],
                [1, W, 1, W, 1, W, 1, W, 1],
                strict=True,
            )
        ],
        "weights": [1, W, 1, W, 1, W, 1, W, 1],
        "knots": [0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1, 1, 1],
        "order": 3,
    }
}
CUBIC_LOOP = {
    "bspline": {
        "poles": [
            [0, 0, 0],
            [3, -1, 0],
            [6, 0, 0],
            [7, 3, 0],
            [6, 6, 0],
            [3, 7, 0],
            [0, 6, 0],
            [-1, 3, 0],
            [0, 0, 0],
        ],
        "knots": [0, 0, 0, 0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1, 1, 1, 1],
        "order": 4,
    }
}
SLOT = [
    {"segment": [[0, -1, 0], [4, -1, 0]]},
    {"arc": [[4, 0, 0], [0, -1, 0], [1, 0, 0], 0.0, math.pi]},
    {"segment": [[4, 1, 0], [0, 1, 0]]},
    {"arc": [[0, 0, 0], [0, 1, 0], [-1, 0, 0], 0.0, math.pi]},
]
RECT = {"points": [[1, 0, 0], [2, 0, 0], [2, 0, 1], [1, 0, 1]]}
CUBE_POINTS = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]]
CUBE_INDEX = [
    i
    for f in ([1, 4, 3, 2], [5, 6, 7, 8], [1, 2, 6, 5], [3, 4, 8, 7], [1, 5, 8, 4], [2, 3, 7, 6])
    for i in (*f, 0)
]
QUARTER = np.array([[2, 0, 0], [2, 2, 0], [0, 2, 0]], float)
_u, _v = np.meshgrid(np.linspace(0, 6, 6), np.linspace(0, 4, 4))
WAVY = np.stack([_u, _v, np.sin(_u) * np.cos(_v) * 1.5], axis=-1)
WAVY_W = 1.0 + 0.3 * np.sin(_u + _v) ** 2

# (case, what must agree): "same" = triangle count and area/volume to rounding; "area" = area to rounding
# (a flat face triangulated differently); a float = area within that relative difference.
CASES: list[tuple[dict[str, Any], str | float]] = [
    (
        {
            "name": "sphere",
            "kind": "sphere",
            "center": [0, 0, 0],
            "axes": EYE,
            "lat0": -math.pi / 2,
            "sweep": math.pi,
            "capped": False,
        },
        "same",
    ),
    (
        {
            "name": "band",
            "kind": "sphere",
            "center": [1, 2, 3],
            "axes": (2 * np.eye(3)).tolist(),
            "lat0": -0.4,
            "sweep": 1.1,
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "ellipsoid",
            "kind": "sphere",
            "center": [0, 0, 0],
            "axes": np.diag([1.0, 2.0, 3.0]).tolist(),
            "lat0": -math.pi / 2,
            "sweep": math.pi,
            "capped": False,
        },
        "same",
    ),
    (
        {
            "name": "cylinder",
            "kind": "cone",
            "a": [0, 0, 0],
            "b": [0, 0, 3],
            "v0": [1, 0, 0],
            "v90": [0, 1, 0],
            "ra": 0.5,
            "rb": 0.5,
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "cone",
            "kind": "cone",
            "a": [0, 0, 0],
            "b": [0, 0, 2],
            "v0": [1, 0, 0],
            "v90": [0, 1, 0],
            "ra": 1.0,
            "rb": 0.0,
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "slanted_frustum",
            "kind": "cone",
            "a": [0, 0, 0],
            "b": [1, 0, 2],
            "v0": [1, 0, 0],
            "v90": [0, -1, 0],
            "ra": 2.0,
            "rb": 1.0,
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "torus",
            "kind": "torus",
            "center": [0, 0, 0],
            "vx": [1, 0, 0],
            "vy": [0, 1, 0],
            "major": 3.0,
            "minor": 0.75,
            "sweep": 2 * math.pi,
            "capped": False,
        },
        "same",
    ),
    (
        {
            "name": "torus_part",
            "kind": "torus",
            "center": [1, 1, 1],
            "vx": [0, 1, 0],
            "vy": [0, 0, 1],
            "major": 3.0,
            "minor": 0.75,
            "sweep": -2.0,
            "capped": True,
        },
        "area",
    ),
    (
        {
            "name": "box",
            "kind": "box",
            "origin": [0, 0, 0],
            "vx": [1, 0, 0],
            "vy": [0, 1, 0],
            "top": [0, 0, 3],
            "bx": 1,
            "by": 2,
            "tx": 1,
            "ty": 2,
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "box_frustum",
            "kind": "box",
            "origin": [0, 0, 0],
            "vx": [1, 0, 0],
            "vy": [0, 1, 0],
            "top": [0.5, 0.5, 2],
            "bx": 3,
            "by": 2,
            "tx": 1,
            "ty": 1,
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "extrusion_hole",
            "kind": "linear",
            "loops": [square(0, 0, 4), square(1, 1, 2)],
            "vector": [0, 0, 2],
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "extrusion_circle",
            "kind": "linear",
            "loops": [circle([0, 0, 0], 1.0)],
            "vector": [0, 0, 3],
            "capped": True,
        },
        "same",
    ),
    (
        {"name": "extrusion_slot", "kind": "linear", "loops": [SLOT], "vector": [0, 0, 1], "capped": True},
        "same",
    ),
    (
        {
            "name": "extrusion_rational_circle",
            "kind": "linear",
            "loops": [RATIONAL_CIRCLE],
            "vector": [0, 0, 1],
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "extrusion_cubic",
            "kind": "linear",
            "loops": [CUBIC_LOOP],
            "vector": [0, 0, 1],
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "washer",
            "kind": "rotational",
            "loops": [RECT],
            "origin": [0, 0, 0],
            "axis": [0, 0, 1],
            "sweep": 2 * math.pi,
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "washer_part",
            "kind": "rotational",
            "loops": [RECT],
            "origin": [0, 0, 0],
            "axis": [0, 0, 1],
            "sweep": 2.0,
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "ruled_circles",
            "kind": "ruled",
            "sections": [[circle([0, 0, 0], 1.0)], [circle([0, 0, 3], 2.0)]],
            "capped": True,
        },
        "same",
    ),
    (
        {
            "name": "ruled_squares",
            "kind": "ruled",
            "sections": [[square(0, 0, 4)], [square(1, 1, 2, 2.0)]],
            "capped": True,
        },
        "same",
    ),
    ({"name": "region_hole", "kind": "region", "loops": [square(0, 0, 4), square(1, 1, 2)]}, "same"),
    ({"name": "disk", "kind": "region", "loops": [circle([0, 0, 0], 1.0)]}, "area"),
    (
        {
            "name": "patch",
            "kind": "bsurface",
            "poles": [[[x, y, 0.0] for x in (0, 0.3, 1.5, 2.2, 3.0)] for y in (0, 0.5, 1.6, 2.0)],
            "orderU": 3,
            "orderV": 4,
            "knotsU": [0, 0, 0, 0.4, 0.7, 1, 1, 1],
            "knotsV": [0, 0, 0, 0, 1, 1, 1, 1],
        },
        "same",
    ),
    (
        {
            "name": "quarter_cylinder",
            "kind": "bsurface",
            "poles": (
                np.stack([QUARTER, QUARTER + np.array([0, 0, 3])]) * np.array([[1, W, 1]] * 2)[..., None]
            ).tolist(),
            "weights": [[1, W, 1], [1, W, 1]],
            "orderU": 3,
            "orderV": 2,
            "knotsU": [0, 0, 0, 1, 1, 1],
            "knotsV": [0, 0, 1, 1],
        },
        "same",
    ),
    (
        {
            "name": "wavy_surface",
            "kind": "bsurface",
            "poles": WAVY.tolist(),
            "orderU": 4,
            "orderV": 3,
            "knotsU": [0, 0, 0, 0, 0.3, 0.6, 1, 1, 1, 1],
            "knotsV": [0, 0, 0, 0.5, 1, 1, 1],
        },
        0.003,
    ),
    (
        {
            "name": "rational_wavy",
            "kind": "bsurface",
            "poles": (WAVY * WAVY_W[..., None]).tolist(),
            "weights": WAVY_W.tolist(),
            "orderU": 4,
            "orderV": 3,
            "knotsU": [0, 0, 0, 0, 0.3, 0.6, 1, 1, 1, 1],
            "knotsV": [0, 0, 0, 0.5, 1, 1, 1],
        },
        0.003,
    ),
    ({"name": "polyface_cube", "kind": "polyface", "points": CUBE_POINTS, "index": CUBE_INDEX}, "same"),
    (
        {
            "name": "polyface_concave",
            "kind": "polyface",
            # An L (concave) and a convex hexagon.
            "points": [
                *([0, 0, 0], [2, 0, 0], [2, 1, 0], [1, 1, 0], [1, 2, 0], [0, 2, 0]),
                *([5, 0, 0], [7, 0, 0], [8, 1, 0], [7, 2, 0], [5, 2, 0], [4, 1, 0]),
            ],
            "index": [1, 2, 3, 4, 5, 6, 0, 7, 8, 9, 10, 11, 12, 0],
        },
        "same",
    ),
]
# Wires: exportGraphics' line output (segments and length) against ``curve_polyline``.
WIRES: list[dict[str, Any]] = [
    {"name": "arc_wire", "kind": "path", "curves": [{"arc": [[0, 0, 0], [2, 0, 0], [0, 2, 0], 0.3, 2.0]}]},
    {
        "name": "ellipse_wire",
        "kind": "path",
        "curves": [{"arc": [[1, 0, 0], [2, 0, 0], [0, 1, 0], 0.0, 2 * math.pi]}],
    },
    {"name": "bspline_wire", "kind": "path", "curves": [CUBIC_LOOP]},
    {"name": "rational_wire", "kind": "path", "curves": [RATIONAL_CIRCLE]},
    {"name": "slot_wire", "kind": "path", "curves": SLOT},
    {
        "name": "polyline_wire",
        "kind": "path",
        "curves": [{"segment": [[0, 0, 0], [3, 4, 0]]}, {"segment": [[3, 4, 0], [3, 4, 5]]}],
    },
]


def loop_primitives(spec: dict[str, Any] | list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for c in spec if isinstance(spec, list) else [spec]:
        if "segment" in c:
            out.append(LineSegment(*c["segment"]))
        elif "points" in c:
            out.append(np.asarray(c["points"], float))
        elif "arc" in c:
            out.append(Arc(*c["arc"]))
        else:
            b = c["bspline"]
            out.append(BSplineCurve(b["poles"], b["order"], b["knots"], b.get("weights")))
    if len(out) == 1 and isinstance(out[0], np.ndarray):
        return out[0]  # type: ignore[no-any-return]
    return out


def ours(case: dict[str, Any], tol: float) -> Mesh:
    o = StrokeOptions(tol)
    kind = case["kind"]
    if kind == "sphere":
        return spheres(
            [case["center"]], [case["axes"]], case["lat0"], case["sweep"], case["capped"], options=o
        )
    if kind == "cone":
        c = case
        return cones([c["a"]], [c["b"]], [c["v0"]], [c["v90"]], c["ra"], c["rb"], c["capped"], options=o)
    if kind == "torus":
        c = case
        return torus_pipes(
            [c["center"]], [c["vx"]], [c["vy"]], c["major"], c["minor"], c["sweep"], c["capped"], options=o
        )
    if kind == "box":
        c = case
        return boxes(
            [c["origin"]],
            [c["top"]],
            [c["vx"]],
            [c["vy"]],
            c["bx"],
            c["by"],
            c["tx"],
            c["ty"],
            c["capped"],
            options=o,
        )
    if kind == "linear":
        return linear_sweep(
            [loop_primitives(lp) for lp in case["loops"]], case["vector"], capped=case["capped"], options=o
        )
    if kind == "rotational":
        profile = [loop_primitives(lp) for lp in case["loops"]]
        return rotational_sweep(
            profile, case["origin"], case["axis"], case["sweep"], capped=case["capped"], options=o
        )
    if kind == "ruled":
        sections = [[loop_primitives(lp) for lp in section] for section in case["sections"]]
        return ruled_sweep(sections, capped=case["capped"], options=o)
    if kind == "region":
        return planar_region([loop_primitives(lp) for lp in case["loops"]], o)
    if kind == "bsurface":
        return bspline_surface_mesh(
            case["poles"],
            case["orderU"],
            case["orderV"],
            case["knotsU"],
            case["knotsV"],
            case.get("weights"),
            options=o,
        )
    return polyface_mesh(case["points"], case["index"])


@pytest.fixture(scope="module")
def itwinjs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    ensure_native_modules()
    work = tmp_path_factory.mktemp("tessellate-truth")
    spec = work / "spec.json"
    out = work / "out.json"
    spec.write_text(json.dumps({"tolerances": TOLERANCES, "cases": [c for c, _ in CASES] + WIRES}))
    proc = subprocess.run(
        [_tool("node"), str(ROOT / "compat" / "tessellate-truth.mjs"), str(spec), str(out), str(work)],
        cwd=ROOT / "compat",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"tessellate-truth.mjs failed:\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, dict[str, float]] = json.loads(out.read_text())
    return result


@pytest.mark.parametrize("tol", TOLERANCES)
@pytest.mark.parametrize(("case", "agree"), CASES, ids=[c["name"] for c, _ in CASES])
def test_same_facets_as_export_graphics(
    itwinjs: dict[str, dict[str, float]], case: dict[str, Any], agree: str | float, tol: float
) -> None:
    truth = itwinjs[f"{case['name']}@{tol}"]
    mesh = ours(case, tol)
    area_diff = abs(mesh.area() - truth["area"]) / truth["area"]
    detail = f"{case['name']} @ {tol}: ours {mesh.n_triangles} tris, area {mesh.area():.9g}; iTwin.js {truth}"
    if isinstance(agree, float):
        assert area_diff <= agree, detail
        return
    assert area_diff < 1e-9, detail
    # About the origin, as the script sums it (an open surface's "volume" depends on that point).
    p = mesh.positions[mesh.indices]
    volume = float(np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6)
    assert volume == pytest.approx(truth["volume"], rel=1e-9, abs=1e-9), detail
    if agree == "same":
        assert mesh.n_triangles == truth["triangles"], detail


@pytest.mark.parametrize("tol", TOLERANCES)
@pytest.mark.parametrize("case", WIRES, ids=[c["name"] for c in WIRES])
def test_same_wires_as_export_graphics(
    itwinjs: dict[str, dict[str, float]], case: dict[str, Any], tol: float
) -> None:
    truth = itwinjs[f"{case['name']}@{tol}"]
    line = curve_polyline([[p for c in case["curves"] for p in loop_primitives_list(c)]], StrokeOptions(tol))
    ours = f"ours {len(line.segments())} segments, length {line.length():.12g}"
    detail = f"{case['name']} @ {tol}: {ours}; iTwin.js {truth}"
    assert len(line.segments()) == truth["segments"], detail
    assert line.length() == pytest.approx(truth["length"], rel=1e-12), detail
    assert line.n_lines == 1 and not line.points_only


def loop_primitives_list(spec: dict[str, Any]) -> list[Any]:
    out = loop_primitives(spec)
    return [LineString(out)] if isinstance(out, np.ndarray) else out
