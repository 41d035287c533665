"""twinbase's tessellation against the real iTwin.js backend: the same shapes, given to iTwin.js as
core-geometry objects in a fresh iModel (``compat/tessellate-truth.mjs``) and to ``twinbase.bim.tessellate``
as plain parameters, meshed by ``IModelDb.exportGraphics`` and by us at the same chord tolerances.

For solids, sweeps and regions the stroke counts follow the native library, so the facets are the same
surfaces: areas and volumes agree to rounding, and triangle counts agree except where a flat face is
cut differently (iTwin.js fans a disk from its centre, earcut does not). B-spline curves stroke as the
native library does (one edge fewer per Bezier span than its estimate, measured here). B-spline surfaces
are meshed patch by patch as the native mesher does (``twinbase.bim.tessellate.bspline``): the same
vertices and triangle counts; on multi-span surfaces the bands between a patch's edges and its lattice
may cut a square of four points on the other diagonal (exportGraphics' choice there follows rounding),
so only the area is compared, within 1e-4, and at least 90% of the triangles are the same.

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
# A tube, closed in u by its poles alone (first and last column equal; the knots are clamped): a
# rational quadratic circle, one pole pushed out, swept along a quadratic in v.
_CIRCLE = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0)]
_CIRCLE_W = [1, W, 1, W, 1, W, 1, W, 1]
_PUSH = [1, 1, 1, 1, 1, 1, 1, 1.6, 1]
TUBE = np.array(
    [
        [
            [r * b * x * w, r * b * y * w, z * w]
            for (x, y), w, b in zip(_CIRCLE, _CIRCLE_W, _PUSH, strict=True)
        ]
        for r, z in ((2, 0), (2.2, 1), (1.8, 2), (2, 3))
    ]
)
# Linear in u over three spans, cubic in v over two; the first column of patches flat.
RULED = np.array(
    [[[x, j * 0.7, 0.0 if x == 0 else 0.4 * x * math.sin(j * 1.3)] for x in range(4)] for j in range(5)]
)
# Bicubic, 3 x 3 patches: the middle one flat (one step each way) with its four edges cut in two by its
# neighbours, which the native mesher leaves as a single quad.
_ALT = np.array([0, 1, 0, 1, 0, 1.0])
QUIRK = np.stack([*np.meshgrid(np.arange(6.0), np.arange(6.0)), np.zeros((6, 6))], axis=-1)
QUIRK[[0, 5], :, 2] = 0.08 * _ALT
QUIRK[:, [0, 5], 2] += 0.08 * _ALT[:, None]
# Quintic by quadratic on uneven knots, the v knots not starting at 0.
_i, _j = np.meshgrid(np.arange(8.0), np.arange(6.0))
KNOTTY = np.stack([_i * 0.8, _j * 0.9, 0.5 * np.sin(1.7 * _i + 0.9 * _j) * np.cos(0.6 * _i * _j)], axis=-1)

# (case, what must agree): "same" = triangle count and area/volume to rounding; "area" = area to rounding
# (a flat face triangulated differently); "zip" = triangle count, and area within 1e-4 (a multi-span
# B-spline surface: see the module's notes); a float = area within that relative difference. Cases with
# "mesh" also get their points and triangles from iTwin.js (test_bspline_surface_vertices_as_export_graphics).
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
            "mesh": True,
        },
        "zip",
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
            "mesh": True,
        },
        "zip",
    ),
    (
        {
            "name": "closed_tube",
            "kind": "bsurface",
            "poles": TUBE.tolist(),
            "weights": [_CIRCLE_W] * 4,
            "orderU": 3,
            "orderV": 3,
            "knotsU": [0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1, 1, 1],
            "knotsV": [0, 0, 0, 0.5, 1, 1, 1],
            "mesh": True,
        },
        "zip",
    ),
    (
        {
            "name": "ruled_patches",
            "kind": "bsurface",
            "poles": RULED.tolist(),
            "orderU": 2,
            "orderV": 4,
            "knotsU": [0, 0, 1, 2, 3, 3],
            "knotsV": [0, 0, 0, 0, 1, 2, 2, 2, 2],
            "mesh": True,
        },
        "zip",
    ),
    (
        {
            "name": "flat_middle",
            "kind": "bsurface",
            "poles": QUIRK.tolist(),
            "orderU": 4,
            "orderV": 4,
            "knotsU": [0, 0, 0, 0, 1, 2, 3, 3, 3, 3],
            "knotsV": [0, 0, 0, 0, 1, 2, 3, 3, 3, 3],
            "mesh": True,
        },
        "zip",
    ),
    (
        {
            "name": "uneven_knots",
            "kind": "bsurface",
            "poles": KNOTTY.tolist(),
            "orderU": 5,
            "orderV": 3,
            "knotsU": [0, 0, 0, 0, 0, 0.13, 0.5, 0.71, 1, 1, 1, 1, 1],
            "knotsV": [2, 2, 2, 2.4, 3.1, 3.3, 4, 4, 4],
            "mesh": True,
        },
        "zip",
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
def itwinjs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
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
    result: dict[str, dict[str, Any]] = json.loads(out.read_text())
    return result


@pytest.mark.parametrize("tol", TOLERANCES)
@pytest.mark.parametrize(("case", "agree"), CASES, ids=[c["name"] for c, _ in CASES])
def test_same_facets_as_export_graphics(
    itwinjs: dict[str, dict[str, Any]], case: dict[str, Any], agree: str | float, tol: float
) -> None:
    truth = itwinjs[f"{case['name']}@{tol}"]
    mesh = ours(case, tol)
    area_diff = abs(mesh.area() - truth["area"]) / truth["area"]
    detail = f"{case['name']} @ {tol}: ours {mesh.n_triangles} tris, area {mesh.area():.9g}; iTwin.js {truth}"
    if isinstance(agree, float):
        assert area_diff <= agree, detail
        return
    if agree == "zip":
        assert mesh.n_triangles == truth["triangles"], detail
        assert area_diff < 1e-4, detail
        return
    assert area_diff < 1e-9, detail
    # About the origin, as the script sums it (an open surface's "volume" depends on that point).
    p = mesh.positions[mesh.indices]
    volume = float(np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6)
    assert volume == pytest.approx(truth["volume"], rel=1e-9, abs=1e-9), detail
    if agree == "same":
        assert mesh.n_triangles == truth["triangles"], detail


SURFACES = [c for c, _ in CASES if c.get("mesh")]


def nearest(points: np.ndarray, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``points``, the index of the nearest of ``among`` and the distance to it: looked up
    on a grid of 1e-7 of the size, the few on a cell boundary searched in full."""
    cell = 1e-7 * max(float(np.abs(among).max()), 1e-300)
    where = {k: i for i, k in enumerate(map(tuple, np.round(among / cell).astype(np.int64).tolist()))}
    index = np.array(
        [where.get(k, -1) for k in map(tuple, np.round(points / cell).astype(np.int64).tolist())]
    )
    for i in np.flatnonzero(index < 0):
        index[i] = int(np.linalg.norm(among - points[i], axis=1).argmin())
    return index, np.linalg.norm(points - among[index], axis=1)


@pytest.mark.parametrize("tol", TOLERANCES)
@pytest.mark.parametrize("case", SURFACES, ids=[c["name"] for c in SURFACES])
def test_bspline_surface_vertices_as_export_graphics(
    itwinjs: dict[str, dict[str, Any]], case: dict[str, Any], tol: float
) -> None:
    """The native mesher's vertices, exactly (so the same range), and its triangles but where a band's
    square of four points is cut on the other diagonal. What this pins (bspline.py's notes): counts per
    Bezier patch from its own net (twist, sag and angle of each row of poles), shared edges cut in the
    larger interior count of their two patches (wrapping round a surface closed by its poles), a
    lattice one step in from the edges of a patch whose edges differ, bands zipped by midpoints, and a
    patch with all four edges in two but a smaller interior left as one quad."""
    truth = itwinjs[f"{case['name']}@{tol}"]
    theirs = np.asarray(truth["positions"], float).reshape(-1, 3)
    their_tris = np.asarray(truth["indices"], np.int64).reshape(-1, 3)
    mesh = ours(case, tol)
    detail = f"{case['name']} @ {tol}: ours {mesh.n_vertices} vertices, {mesh.n_triangles} triangles"
    # exportGraphics repeats a point where its pieces meet, and a closed surface has its seam twice:
    # compare the sets of points, both ways.
    size = float(np.abs(theirs).max())
    native, gap = nearest(theirs, mesh.positions)
    assert gap.max() < 1e-12 * size, detail
    assert nearest(mesh.positions, theirs)[1].max() < 1e-12 * size, detail
    assert np.allclose(mesh.range(), [theirs.min(axis=0), theirs.max(axis=0)], rtol=0, atol=1e-12 * size)
    assert mesh.n_triangles == len(their_tris), detail
    same = {tuple(sorted(t)) for t in native[their_tris].tolist()} & {
        tuple(sorted(t)) for t in mesh.indices.tolist()
    }
    assert len(same) >= 0.9 * mesh.n_triangles, f"{detail}, {len(same)} the same"
    assert abs(mesh.area() - truth["area"]) < 1e-4 * truth["area"], detail


@pytest.mark.parametrize("tol", TOLERANCES)
@pytest.mark.parametrize("case", WIRES, ids=[c["name"] for c in WIRES])
def test_same_wires_as_export_graphics(
    itwinjs: dict[str, dict[str, Any]], case: dict[str, Any], tol: float
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
