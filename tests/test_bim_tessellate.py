"""Tessellation (issue #13, part 2) against analytic truth: areas, volumes, watertightness, outward
normals, segment counts that follow the tolerance, and the native iTwin.js counting rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twinbase.bim.tessellate import (
    Arc,
    BSplineCurve,
    LineSegment,
    LineString,
    Mesh,
    Polyline,
    StrokeOptions,
    TessellationError,
    arc_segments,
    box,
    boxes,
    bspline_surface_mesh,
    cone,
    cones,
    core_geometry_arc_segments,
    curve_polyline,
    de_boor,
    extrude_polygons,
    extrude_regions,
    full_ellipse_segments,
    linear_sweep,
    planar_region,
    point_string,
    polyface_mesh,
    polyface_meshes,
    rotational_sweep,
    ruled_sweep,
    sphere,
    spheres,
    stroke_bspline_curve,
    stroke_curve,
    text_box_outline,
    text_range,
    torus_pipe,
    torus_pipes,
    union_region,
)
from twinbase.bim.tessellate import region_chains as tess_region_chains
from twinbase.bim.tessellate.options import arc_segments_array, full_ellipse_segments_array

TOL = StrokeOptions(0.01)
FINE = StrokeOptions(0.001)


def rel(value: float, truth: float) -> float:
    return abs(value - truth) / abs(truth)


def assert_outward_solid(mesh: Mesh) -> None:
    """Closed (every welded edge used twice, once each way), positive volume, and vertex normals on
    the side the winding faces."""
    assert mesh.is_closed()
    assert mesh.signed_volume() > 0
    assert_normals_follow_winding(mesh)


def assert_normals_follow_winding(mesh: Mesh) -> None:
    facet = mesh.triangle_normals()
    corner = mesh.normals.astype(np.float64)[mesh.indices].sum(axis=1)
    big = np.linalg.norm(facet, axis=1) > 1e-12 * np.abs(mesh.positions).max() ** 2
    assert (np.einsum("ij,ij->i", facet[big], corner[big]) > 0).all()
    assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-5)


# -- counts -----------------------------------------------------------------------------------------


def test_full_circle_counts_follow_the_native_rule() -> None:
    # exportGraphics' default: no chord tolerance, 15 degrees -> 24, a multiple of 4.
    assert full_ellipse_segments(1.0, StrokeOptions()) == 24
    # 0.01 on a unit radius allows 16.2 degrees, so 15 degrees still decides.
    assert full_ellipse_segments(1.0, TOL) == 24
    # Chord only: 2 acos(0.99) = 0.2838 rad -> 22.1 -> 23 -> rounded up to 24.
    assert full_ellipse_segments(1.0, StrokeOptions(0.01, 0.0)) == 24
    # Neither tolerance: the pi/2 default step gives the minimum of 4; 5 rounds to 6.
    assert full_ellipse_segments(1.0, StrokeOptions(0.0, 0.0)) == 4
    assert full_ellipse_segments(1.0, StrokeOptions(0.0, 2 * math.pi / 5)) == 6
    # A radius at or below the chord tolerance ignores it.
    assert full_ellipse_segments(0.005, StrokeOptions(0.01, 0.0)) == 4
    # The cap of 600 strokes per full ellipse.
    assert full_ellipse_segments(1000.0, StrokeOptions(1e-6, 0.0)) == 600
    # max_edge_length: 2 pi 10 / 1 = 62.8 -> 63 -> 64.
    assert full_ellipse_segments(10.0, StrokeOptions(0.0, 0.0, 1.0)) == 64
    for r in (0.01, 0.3, 1.0, 7.0, 250.0):
        assert full_ellipse_segments(r, TOL) % 4 == 0


def test_partial_arc_counts() -> None:
    full = full_ellipse_segments(2.0, TOL)
    assert arc_segments(2.0, 2 * math.pi, TOL) == full
    assert arc_segments(2.0, math.pi, TOL) == (full + 1) // 2
    assert arc_segments(2.0, -math.pi / 2, TOL) == math.ceil(full / 4)
    assert arc_segments(2.0, 0.1, TOL) == math.ceil(0.1 / (2 * math.pi) * full)
    radii = np.array([0.02, 0.5, 1.0, 3.0, 40.0, 900.0])
    sweeps = np.array([0.3, math.pi, 2 * math.pi, 1.0, 5.0, math.pi / 2])
    for options in (TOL, FINE, StrokeOptions(0.0, 0.2, 0.5)):
        assert list(full_ellipse_segments_array(radii, options)) == [
            full_ellipse_segments(r, options) for r in radii
        ]
        assert list(arc_segments_array(radii, sweeps, options)) == [
            arc_segments(r, a, options) for r, a in zip(radii, sweeps, strict=True)
        ]


def test_halving_the_chord_tolerance_multiplies_segments_by_about_sqrt2() -> None:
    for tol in (1e-2, 1e-3, 1e-4):
        coarse = full_ellipse_segments(1.0, StrokeOptions(tol, 0.0))
        fine = full_ellipse_segments(1.0, StrokeOptions(tol / 2, 0.0))
        assert 1.2 < fine / coarse < 1.65, (tol, coarse, fine)
        # Without the rounding to multiples of 4 (core-geometry's rule) it is closer still.
        c = core_geometry_arc_segments(0.1, 2 * math.pi, StrokeOptions(tol, math.pi))
        f = core_geometry_arc_segments(0.1, 2 * math.pi, StrokeOptions(tol / 2, math.pi))
        assert 1.3 < f / c < 1.5


def test_stroke_options_reject_bad_values() -> None:
    with pytest.raises(TessellationError):
        StrokeOptions(-1.0)
    with pytest.raises(TessellationError):
        StrokeOptions(0.01, float("nan"))


# -- spheres ----------------------------------------------------------------------------------------


def test_unit_sphere_area_and_volume() -> None:
    coarse = sphere([0, 0, 0], 1.0, options=TOL)
    fine = sphere([0, 0, 0], 1.0, options=FINE)
    # Native counts at 0.01 give 24 meridians and 12 bands: 1.42% below 4 pi (iTwin.js would
    # facet it exactly the same way); at 0.001, 72 x 36: 0.16%.
    assert (coarse.n_triangles, fine.n_triangles) == (24 * 10 * 2 + 2 * 24, 72 * 34 * 2 + 2 * 72)
    assert rel(coarse.area(), 4 * math.pi) < 0.015
    assert rel(fine.area(), 4 * math.pi) < 0.002
    assert rel(fine.area(), 4 * math.pi) < rel(coarse.area(), 4 * math.pi)
    assert rel(fine.signed_volume(), 4 / 3 * math.pi) < 0.005
    assert_outward_solid(coarse)
    assert_outward_solid(fine)
    assert np.allclose(fine.range(), [[-1, -1, -1], [1, 1, 1]], atol=1e-12)
    assert np.allclose(np.linalg.norm(fine.positions, axis=1), 1.0)


def test_partial_latitude_sphere_matches_the_zone_formula() -> None:
    lat0, sweep = -0.4, 1.1
    lat1 = lat0 + sweep
    zone = 2 * math.pi * (math.sin(lat1) - math.sin(lat0))
    caps = math.pi * (math.cos(lat0) ** 2 + math.cos(lat1) ** 2)
    capped = sphere([1, 2, 3], 2.0, lat0, sweep, True, options=FINE)
    assert rel(capped.area(), 4 * (zone + caps)) < 0.005
    assert_outward_solid(capped)
    open_band = sphere([1, 2, 3], 2.0, lat0, sweep, False, options=FINE)
    assert rel(open_band.area(), 4 * zone) < 0.005
    assert open_band.two_sided and not open_band.is_closed()
    # A hemisphere reaching the north pole, capped at the equator: 2 pi + pi.
    dome = sphere([0, 0, 0], 1.0, 0.0, math.pi / 2, True, options=FINE)
    assert rel(dome.area(), 3 * math.pi) < 0.005
    assert_outward_solid(dome)


def test_ellipsoid_normals_follow_the_inverse_transpose() -> None:
    axes = np.diag([1.0, 2.0, 3.0])
    mesh = sphere([0, 0, 0], axes, options=FINE)
    assert rel(mesh.signed_volume(), 4 / 3 * math.pi * 6) < 0.005
    assert_outward_solid(mesh)
    p = mesh.positions
    gradient = p / np.array([1.0, 4.0, 9.0])
    gradient /= np.linalg.norm(gradient, axis=1)[:, None]
    assert np.allclose(mesh.normals, gradient, atol=1e-5)


def test_rotated_ellipsoid_axes_are_the_matrix_columns() -> None:
    """``axes`` columns are the x, y and pole axes (a DgnSphereDetail's localToWorld): a rotated and
    sheared frame puts every vertex on ``center + A u`` with |u| = 1, normals along A^-T u."""
    rot = np.array([[0.0, -1.0, 0.0], [0.6, 0.0, -0.8], [0.8, 0.0, 0.6]])
    axes = rot @ np.diag([5.0, 2.5, 1.5]) + np.array([[0, 0.3, 0], [0, 0, 0], [0, 0, 0]])
    center = np.array([1.0, 2.0, 3.0])
    mesh = sphere(center, axes, options=FINE)
    u = np.linalg.solve(axes, (mesh.positions - center).T).T
    assert np.allclose(np.linalg.norm(u, axis=1), 1.0)
    expected = np.linalg.inv(axes).T @ u.T
    expected = (expected / np.linalg.norm(expected, axis=0)).T
    assert np.allclose(mesh.normals, expected, atol=1e-5)
    assert_outward_solid(mesh)
    round_one = sphere(center, rot * 2.0, options=FINE)  # conformal: normals are radial
    radial = (round_one.positions - center) / 2.0
    assert np.allclose(round_one.normals, radial, atol=1e-5)


def test_a_batch_of_round_spheres_and_ellipsoids_has_unit_normals() -> None:
    """Round spheres and ellipsoids tessellated together: every normal unit length (a round sphere in
    a batch with an ellipsoid used to take the ellipsoid's path without being normalized)."""
    axes = np.stack([np.eye(3) * 2.5, np.diag([1.0, 2.0, 3.0]), np.eye(3) * 0.4])
    mesh = spheres(np.zeros((3, 3)), axes, options=FINE)
    assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-5)


def test_mirrored_sphere_still_faces_out() -> None:
    axes = np.diag([-1.0, 1.0, 1.0])  # a left-handed frame
    mesh = sphere([5, 0, 0], axes, options=TOL)
    assert_outward_solid(mesh)


# -- cones, cylinders -------------------------------------------------------------------------------


def test_cylinder_lateral_and_caps() -> None:
    r, h = 0.5, 3.0
    mesh = cone([0, 0, 0], [0, 0, h], r, r, options=FINE)
    assert rel(mesh.area(), 2 * math.pi * r * h + 2 * math.pi * r * r) < 0.001
    assert rel(mesh.signed_volume(), math.pi * r * r * h) < 0.005
    assert_outward_solid(mesh)
    open_tube = cone([0, 0, 0], [0, 0, h], r, r, capped=False, options=FINE)
    assert rel(open_tube.area(), 2 * math.pi * r * h) < 0.001
    assert open_tube.two_sided and not open_tube.is_closed()
    coarse = cone([0, 0, 0], [0, 0, h], r, r, options=TOL)
    assert rel(coarse.area(), 2 * math.pi * r * h + 2 * math.pi * r * r) < 0.01


def test_cone_to_a_point_and_frustum() -> None:
    r, h = 1.0, 2.0
    slant = math.hypot(r, h)
    apex = cone([0, 0, 0], [0, 0, h], r, 0.0, options=FINE)
    assert rel(apex.area(), math.pi * r * (r + slant)) < 0.001
    assert_outward_solid(apex)
    inverted = cone([0, 0, 0], [0, 0, h], 0.0, r, options=FINE)
    assert_outward_solid(inverted)
    frustum = cone([0, 0, 0], [0, 0, 1], 2.0, 1.0, options=FINE)
    lateral = math.pi * (2.0 + 1.0) * math.hypot(1.0, 1.0)
    assert rel(frustum.area(), lateral + math.pi * 4 + math.pi) < 0.001
    assert rel(frustum.signed_volume(), math.pi / 3 * (4 + 2 + 1)) < 0.001
    assert_outward_solid(frustum)


def test_cone_with_vectors_against_the_axis_and_a_slanted_axis() -> None:
    # vector0 x vector90 points from B to A: the winding must be reversed to face out.
    mesh = cones([0, 0, 0], [0, 0, 2], [1, 0, 0], [0, -1, 0], 1.0, 0.5, options=TOL)
    assert_outward_solid(mesh)
    slanted = cones([0, 0, 0], [1, 0, 2], [1, 0, 0], [0, 1, 0], 1.0, 1.0, options=FINE)
    assert rel(slanted.signed_volume(), math.pi * 2) < 0.005  # an oblique cylinder: base area x height
    assert_outward_solid(slanted)


# -- torus ------------------------------------------------------------------------------------------


def test_torus_area_and_partial_sweeps() -> None:
    big, small = 3.0, 0.75
    full = torus_pipe([0, 0, 0], [1, 0, 0], [0, 1, 0], big, small, options=FINE)
    assert rel(full.area(), 4 * math.pi**2 * big * small) < 0.002
    assert rel(full.signed_volume(), 2 * math.pi**2 * big * small**2) < 0.002
    assert_outward_solid(full)
    coarse = torus_pipe([0, 0, 0], [1, 0, 0], [0, 1, 0], big, small, options=TOL)
    assert rel(coarse.area(), 4 * math.pi**2 * big * small) < 0.01
    for sweep in (math.pi / 3, -2.0):
        part = torus_pipe([1, 1, 1], [0, 1, 0], [0, 0, 1], big, small, sweep, True, options=FINE)
        ends = 2 * math.pi * small**2
        assert rel(part.area(), abs(sweep) * big * 2 * math.pi * small + ends) < 0.002
        assert rel(part.signed_volume(), abs(sweep) * big * math.pi * small**2) < 0.002
        assert_outward_solid(part)
    uncapped = torus_pipe([0, 0, 0], [1, 0, 0], [0, 1, 0], big, small, 1.0, False, options=TOL)
    assert uncapped.two_sided and not uncapped.is_closed()


def test_torus_counts_follow_native_rule() -> None:
    mesh = torus_pipe([0, 0, 0], [1, 0, 0], [0, 1, 0], 3.0, 1.0, options=TOL)
    around = full_ellipse_segments(1.0, TOL)
    along = arc_segments(4.0, 2 * math.pi, TOL)  # the profile's largest distance from the axis
    assert mesh.n_triangles == 2 * around * along


# -- boxes ------------------------------------------------------------------------------------------


def test_box_frustum_wedge_and_uncapped() -> None:
    cuboid = box([0, 0, 0], [0, 0, 3], [1, 0, 0], [0, 1, 0], 1, 2, 1, 2)
    assert cuboid.n_triangles == 12
    assert cuboid.area() == pytest.approx(2 * (2 + 3 + 6))
    assert cuboid.signed_volume() == pytest.approx(6.0)
    assert_outward_solid(cuboid)
    frustum = box([0, 0, 0], [0.5, 0.5, 2], [1, 0, 0], [0, 1, 0], 3, 2, 1, 1)
    # Prismoidal formula: h/6 (A_base + 4 A_mid + A_top).
    assert frustum.signed_volume() == pytest.approx(2 / 6 * (6 + 4 * 2 * 1.5 + 1))
    assert_outward_solid(frustum)
    pyramid = box([0, 0, 0], [0, 0, 3], [1, 0, 0], [0, 1, 0], 1, 2, 0, 0)
    assert pyramid.signed_volume() == pytest.approx(2.0)
    assert_outward_solid(pyramid)
    left = box([0, 0, 0], [0, 0, 1], [1, 0, 0], [0, -1, 0], 1, 1, 1, 1)
    assert_outward_solid(left)
    tube = box([0, 0, 0], [0, 0, 3], [1, 0, 0], [0, 1, 0], 1, 2, 1, 2, capped=False)
    assert tube.n_triangles == 8 and tube.two_sided and not tube.is_closed()
    gridded = box(
        [0, 0, 0], [0, 0, 3], [1, 0, 0], [0, 1, 0], 1, 2, 1, 2, options=StrokeOptions(0.0, 0.1, 0.5)
    )
    assert gridded.n_triangles > 12 and gridded.area() == pytest.approx(22.0)
    assert_outward_solid(gridded)


def test_batches_give_the_same_meshes_as_single_calls() -> None:
    rng = np.random.default_rng(7)
    k = 40
    origin = rng.uniform(-10, 10, (k, 3))
    size = rng.uniform(0.1, 2, (k, 3))
    flip = np.where(rng.random(k) < 0.3, -1.0, 1.0)
    vy = np.array([0.0, 1.0, 0.0]) * flip[:, None]
    mesh = boxes(
        origin,
        origin + [0, 0, 1] * size[:, 2:3],
        [1, 0, 0],
        vy,
        size[:, 0],
        size[:, 1],
        size[:, 0],
        size[:, 1],
    )
    assert mesh.entry is not None and set(np.unique(mesh.entry)) == set(range(k))
    for i in (0, 5, k - 1):
        single = box(origin[i], origin[i] + [0, 0, size[i, 2]], [1, 0, 0], vy[i], *size[i, :2], *size[i, :2])
        part = mesh.subset(np.isin(mesh.indices[:, 0], np.flatnonzero(mesh.entry == i)))
        assert part.area() == pytest.approx(single.area())
        assert part.signed_volume() == pytest.approx(single.signed_volume())
    radii = rng.uniform(0.05, 3.0, k)
    many = spheres(origin, np.eye(3)[None] * radii[:, None, None], options=TOL)
    assert many.is_closed()
    for i in (0, 17):
        single = sphere(origin[i], radii[i], options=TOL)
        part = many.subset(np.isin(many.indices[:, 0], np.flatnonzero(many.entry == i)))
        assert part.n_triangles == single.n_triangles
        assert part.area() == pytest.approx(single.area())
    tori = torus_pipes(
        origin, [1, 0, 0], [0, 1, 0], radii + 1, radii / 2, rng.uniform(-6, 6, k), True, options=TOL
    )
    assert tori.is_closed() and tori.signed_volume() > 0


# -- sweeps -----------------------------------------------------------------------------------------

SQUARE = np.array([[0, 0, 0], [4, 0, 0], [4, 4, 0], [0, 4, 0]], dtype=float)
HOLE = np.array([[1, 1, 0], [1, 3, 0], [3, 3, 0], [3, 1, 0]], dtype=float)


def test_extrusion_of_a_square_with_a_hole() -> None:
    mesh = linear_sweep([SQUARE, HOLE], [0, 0, 2], options=TOL)
    # Caps 2 x (16 - 4), outer walls 4 x 4 x 2, inner walls 4 x 2 x 2.
    assert mesh.area() == pytest.approx(24 + 32 + 16)
    assert mesh.signed_volume() == pytest.approx(24.0)
    assert_outward_solid(mesh)
    # Either loop direction, and sweeping downwards, still faces out.
    down = linear_sweep([SQUARE[::-1], HOLE[::-1]], [0, 0, -2], options=TOL)
    assert down.signed_volume() == pytest.approx(24.0)
    assert_outward_solid(down)
    # A slanted sweep keeps the volume (base area x height).
    slanted = linear_sweep([SQUARE, HOLE], [1, 2, 2], options=TOL)
    assert slanted.signed_volume() == pytest.approx(24.0)
    assert_outward_solid(slanted)
    walls = linear_sweep([SQUARE], [0, 0, 2], capped=False, options=TOL)
    assert walls.area() == pytest.approx(32.0) and walls.two_sided


def test_many_polygon_extrusions_at_once() -> None:
    ell = np.array([[0, 0, 0], [3, 0, 0], [3, 1, 0], [1, 1, 0], [1, 3, 0], [0, 3, 0]], float)
    tilted = SQUARE @ np.array([[1, 0, 0], [0, 0.6, 0.8], [0, -0.8, 0.6]]).T + 5
    polygons = [
        SQUARE,
        SQUARE[::-1],  # clockwise
        np.vstack([ell, ell[:1]]),  # a repeated closing point, concave
        tilted,
        ell[::-1] + np.array([0, 0, 7.0]),
    ]
    vectors = np.array([[0, 0, 2], [0, 0, 2], [0, 0, -1.5], [0, -0.8, 0.6], [1, 1, 3]], float)
    many = extrude_polygons(polygons, vectors)
    assert many.entry is not None and set(np.unique(many.entry).tolist()) == set(range(len(polygons)))
    for i, (poly, vector) in enumerate(zip(polygons, vectors, strict=True)):
        one = many.subset(np.isin(many.indices[:, 0], np.flatnonzero(many.entry == i)))
        alone = linear_sweep([poly], vector, options=TOL)
        assert one.n_triangles == alone.n_triangles
        assert one.area() == pytest.approx(alone.area())
        assert one.signed_volume() == pytest.approx(alone.signed_volume())
        assert_outward_solid(one)
    packed = extrude_polygons((np.concatenate(polygons), [len(p) for p in polygons]), vectors)
    assert packed.n_triangles == many.n_triangles and packed.area() == pytest.approx(many.area())
    walls = extrude_polygons([SQUARE], [0, 0, 2], capped=False)
    assert walls.area() == pytest.approx(32.0) and walls.two_sided
    with pytest.raises(TessellationError):
        extrude_polygons([SQUARE[:2]], [0, 0, 1])


def test_extrusion_of_curves() -> None:
    disk = [Arc([0, 0, 0], [1, 0, 0], [0, 1, 0], 0.0, 2 * math.pi)]
    mesh = linear_sweep([disk], [0, 0, 3], options=FINE)
    assert rel(mesh.area(), 2 * math.pi * 3 + 2 * math.pi) < 0.001
    assert_outward_solid(mesh)
    # Smooth walls: the normals of the side vertices are radial.
    side = np.abs(mesh.normals[:, 2]) < 0.5
    radial = mesh.positions[side, :2] / np.linalg.norm(mesh.positions[side, :2], axis=1)[:, None]
    assert np.allclose(mesh.normals[side, :2], radial, atol=1e-6)
    # A slot: two lines and two half circles.
    slot = [
        LineSegment([0, -1, 0], [4, -1, 0]),
        Arc([4, 0, 0], [0, -1, 0], [1, 0, 0], 0.0, math.pi),
        LineSegment([4, 1, 0], [0, 1, 0]),
        Arc([0, 0, 0], [0, 1, 0], [-1, 0, 0], 0.0, math.pi),
    ]
    slab = linear_sweep([slot], [0, 0, 1], options=FINE)
    assert rel(slab.signed_volume(), 8 + math.pi) < 0.001
    assert_outward_solid(slab)
    path = linear_sweep(
        [[LineString([[0, 0, 0], [1, 0, 0], [1, 1, 0]])]], [0, 0, 2], closed=False, options=TOL
    )
    assert path.area() == pytest.approx(4.0) and path.two_sided


def test_many_region_extrusions_at_once_are_each_alone() -> None:
    """``extrude_regions`` (the mesher's batch for holes and curved edges) gives, region by region, the
    facets ``linear_sweep`` gives: same vertices, triangles, area, volume and normals."""
    disk = [Arc([0, 0, 0], [1, 0, 0], [0, 1, 0], 0.0, 2 * math.pi)]
    hole = [Arc([2, 2, 0], [0.5, 0, 0], [0, 0.5, 0], 0.0, 2 * math.pi)]
    slot = [
        LineSegment([0, -1, 0], [4, -1, 0]),
        Arc([4, 0, 0], [0, -1, 0], [1, 0, 0], 0.0, math.pi),
        LineSegment([4, 1, 0], [0, 1, 0]),
        Arc([0, 0, 0], [0, 1, 0], [-1, 0, 0], 0.0, math.pi),
    ]
    square = [LineString(np.vstack([SQUARE, SQUARE[:1]]))]
    cases = [
        ([square, hole], [0, 0, 2]),  # a plate with a round hole
        ([square[::-1], hole], [0, 0, -2]),  # downwards
        (
            [[LineString(np.vstack([SQUARE[::-1], SQUARE[3:]]))], [LineString(HOLE)]],
            [1, 2, 2],
        ),  # clockwise outer
        ([disk], [0, 0, 3]),
        ([slot], [0.5, 0, 1]),
        ([slot, [LineString(HOLE * 0.2 + [0.5, -0.2, 0])]], [0, 0, 1]),
    ]
    regions = [tess_region_chains(loops, FINE) for loops, _ in cases]
    many = extrude_regions(regions, np.array([v for _, v in cases], float))
    assert many.entry is not None
    for i, (loops, vector) in enumerate(cases):
        one = many.subset(np.isin(many.indices[:, 0], np.flatnonzero(many.entry == i)))
        alone = linear_sweep(loops, vector, options=FINE)
        assert (one.n_vertices, one.n_triangles) == (alone.n_vertices, alone.n_triangles)
        assert one.area() == pytest.approx(alone.area())
        assert one.signed_volume() == pytest.approx(alone.signed_volume()) and one.signed_volume() > 0
        assert_outward_solid(one)
        assert_normals_follow_winding(one)
        # The same vertex normals (as sets: the vertex order may differ).
        ours = np.round(np.hstack([one.positions, one.normals]), 6)
        theirs = np.round(np.hstack([alone.positions, alone.normals]), 6)
        assert np.array_equal(np.unique(ours, axis=0), np.unique(theirs, axis=0))
    walls = extrude_regions([regions[0]], [0, 0, 2], capped=False)
    assert walls.two_sided and walls.area() == pytest.approx(
        linear_sweep(cases[0][0], [0, 0, 2], capped=False, options=FINE).area()
    )


def test_rotational_sweep_of_a_rectangle_is_a_washer() -> None:
    rect = np.array([[1, 0, 0], [2, 0, 0], [2, 0, 1], [1, 0, 1]], dtype=float)
    washer = rotational_sweep([rect], [0, 0, 0], [0, 0, 1], 2 * math.pi, options=FINE)
    # Outer wall 2 pi 2 + inner wall 2 pi 1 + two rings pi (4 - 1).
    assert rel(washer.area(), 12 * math.pi) < 0.001
    assert rel(washer.signed_volume(), 3 * math.pi) < 0.001
    assert_outward_solid(washer)
    coarse = rotational_sweep([rect], [0, 0, 0], [0, 0, 1], 2 * math.pi, options=TOL)
    assert rel(coarse.area(), 12 * math.pi) < 0.01
    for sweep, axis in ((math.pi / 2, [0, 0, 1]), (-math.pi / 2, [0, 0, 1]), (1.0, [0, 0, -1])):
        part = rotational_sweep([rect[::-1]], [0, 0, 0], axis, sweep, options=FINE)
        assert rel(part.signed_volume(), 1.5 * abs(sweep)) < 0.001
        assert_outward_solid(part)
    # A profile with an edge on the axis makes a solid cylinder (the axis edge leaves nothing).
    solid = rotational_sweep(
        [np.array([[0, 0, 0], [2, 0, 0], [2, 0, 1], [0, 0, 1]], float)],
        [0, 0, 0],
        [0, 0, 1],
        2 * math.pi,
        options=FINE,
    )
    assert rel(solid.signed_volume(), 4 * math.pi) < 0.001
    assert_outward_solid(solid)


def test_rotational_sweep_of_a_circle_is_a_torus() -> None:
    circle = [Arc([3, 0, 0], [1, 0, 0], [0, 0, 1], 0.0, 2 * math.pi)]
    torus = rotational_sweep([circle], [0, 0, 0], [0, 0, 1], 2 * math.pi, options=FINE)
    assert rel(torus.area(), 4 * math.pi**2 * 3) < 0.002
    assert_outward_solid(torus)


def test_ruled_sweep() -> None:
    frustum = ruled_sweep([[SQUARE], [SQUARE * 0.5 + [1, 1, 2]]], options=TOL)
    assert frustum.signed_volume() == pytest.approx(2 / 3 * (16 + 4 + 8))
    assert_outward_solid(frustum)
    a = [Arc([0, 0, 0], [1, 0, 0], [0, 1, 0], 0.0, 2 * math.pi)]
    b = [Arc([0, 0, 3], [2, 0, 0], [0, 2, 0], 0.0, 2 * math.pi)]
    c = [Arc([0, 0, 4], [2, 0, 0], [0, 2, 0], 0.0, 2 * math.pi)]
    stack = ruled_sweep([[a], [b], [c]], options=FINE)
    truth = math.pi / 3 * 3 * (1 + 2 + 4) + math.pi * 4
    assert rel(stack.signed_volume(), truth) < 0.002
    assert_outward_solid(stack)
    # Sections of different structure are resampled to match.
    mixed = ruled_sweep([[SQUARE - [2, 2, 0]], [b]], options=FINE)
    assert_outward_solid(mixed)


# -- regions and curves -----------------------------------------------------------------------------


def test_planar_regions() -> None:
    mesh = planar_region([SQUARE, HOLE], TOL)
    assert mesh.area() == pytest.approx(12.0)
    assert np.allclose(mesh.normals, [0, 0, 1]) and mesh.two_sided
    assert_normals_follow_winding(mesh)
    flipped = planar_region([SQUARE[::-1], HOLE], TOL)
    assert np.allclose(flipped.normals, [0, 0, -1])
    assert_normals_follow_winding(flipped)
    # A tilted, non-convex region: an L with a round hole.
    frame = np.array([[1, 0, 0], [0, 0.6, 0.8], [0, -0.8, 0.6]])
    ell = np.array([[0, 0, 0], [3, 0, 0], [3, 1, 0], [1, 1, 0], [1, 3, 0], [0, 3, 0]], float)
    hole = [Arc([0.5, 0.5, 0], [0.25, 0, 0], [0, 0.25, 0], 0.0, 2 * math.pi)]
    tilted = planar_region(
        [
            ell @ frame.T + 7,
            [
                Arc(
                    np.array(hole[0].center) @ frame.T + 7,
                    np.array(hole[0].vector0) @ frame.T,
                    np.array(hole[0].vector90) @ frame.T,
                )
            ],
        ],
        FINE,
    )
    assert rel(tilted.area(), 5 - math.pi * 0.0625) < 0.001
    assert np.allclose(tilted.normals, frame @ [0, 0, 1], atol=1e-9)
    union = union_region([[SQUARE], [HOLE + np.array([10.0, 0, 0])]], TOL)
    assert union.area() == pytest.approx(20.0)


def test_curves_are_polylines() -> None:
    arc = Arc([0, 0, 0], [2, 0, 0], [0, 2, 0], 0.0, math.pi / 2)
    pts = stroke_curve(arc, TOL)
    # Drawn as a line, an arc gets one segment fewer than as a facet edge, as in iTwin.js.
    assert len(pts) == arc_segments(2.0, math.pi / 2, TOL)
    assert np.allclose(np.linalg.norm(pts, axis=1), 2.0)
    lines = curve_polyline([arc, [LineSegment([0, 0, 0], [1, 0, 0]), LineSegment([1, 0, 0], [1, 1, 0])]], TOL)
    assert lines.n_lines == 2
    n = len(pts) - 1
    assert lines.length() == pytest.approx(n * 2 * 2.0 * math.sin(math.pi / 4 / n) + 2.0)
    assert len(lines.segments()) == (len(pts) - 1) + 2
    dots = point_string([[0, 0, 0], [1, 1, 1]])
    assert dots.points_only and len(dots.segments()) == 0
    low, high = text_range(5, 2.0, 0.8)
    outline = text_box_outline(low, high, np.array([[0, -1, 0, 10], [1, 0, 0, 0], [0, 0, 1, 0]]))
    assert outline.n_lines == 1 and len(outline.points) == 5
    assert np.allclose(outline.range(), [[8, 0, 0], [10, 8, 0]])
    both = Polyline.concat([lines, outline])
    assert both.entry is not None and both.n_lines == 3


# -- B-splines --------------------------------------------------------------------------------------

W = math.sqrt(0.5)
CIRCLE_POLES = np.array(
    [[1, 0, 0], [1, 1, 0], [0, 1, 0], [-1, 1, 0], [-1, 0, 0], [-1, -1, 0], [0, -1, 0], [1, -1, 0], [1, 0, 0]],
    float,
)
CIRCLE_WEIGHTS = np.array([1, W, 1, W, 1, W, 1, W, 1])
CIRCLE_KNOTS = [0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1, 1, 1]


def test_rational_bspline_circle() -> None:
    for tol in (0.01, 0.001):
        pts, params = stroke_bspline_curve(
            CIRCLE_POLES * CIRCLE_WEIGHTS[:, None],
            3,
            CIRCLE_KNOTS,
            CIRCLE_WEIGHTS,
            options=StrokeOptions(tol, 0.0),
        )
        assert np.allclose(np.linalg.norm(pts, axis=1), 1.0, atol=1e-12)
        assert np.allclose(pts[0], pts[-1]) and params[0] == 0 and params[-1] == 1
        sag = 1 - np.linalg.norm(0.5 * (pts[1:] + pts[:-1]), axis=1)
        assert sag.max() <= tol
    # Unweighted poles give the same curve when said so.
    same, _ = stroke_bspline_curve(
        CIRCLE_POLES, 3, CIRCLE_KNOTS, CIRCLE_WEIGHTS, weighted_poles=False, options=TOL
    )
    assert np.allclose(np.linalg.norm(same, axis=1), 1.0)
    # Finer tolerance, more strokes.
    n1 = len(
        stroke_bspline_curve(
            CIRCLE_POLES * CIRCLE_WEIGHTS[:, None],
            3,
            CIRCLE_KNOTS,
            CIRCLE_WEIGHTS,
            options=StrokeOptions(0.01, 0),
        )[0]
    )
    n2 = len(
        stroke_bspline_curve(
            CIRCLE_POLES * CIRCLE_WEIGHTS[:, None],
            3,
            CIRCLE_KNOTS,
            CIRCLE_WEIGHTS,
            options=StrokeOptions(0.0025, 0),
        )[0]
    )
    assert n2 > 1.6 * n1


def test_de_boor_matches_the_basis_function_recursion() -> None:
    rng = np.random.default_rng(3)
    order, n = 4, 9
    knots = np.concatenate([[0.0] * order, np.sort(rng.uniform(0, 1, n - order)), [1.0] * order])
    ctrl = rng.normal(size=(n, 3))
    t = np.linspace(0, 1, 57)

    def basis(i: int, p: int, x: float) -> float:
        if p == 0:
            return (
                1.0
                if knots[i] <= x < knots[i + 1] or (x == 1.0 and knots[i] < x == knots[i + 1] and i == n - 1)
                else 0.0
            )
        left = (
            0.0
            if knots[i + p] == knots[i]
            else (x - knots[i]) / (knots[i + p] - knots[i]) * basis(i, p - 1, x)
        )
        right = (
            0.0
            if knots[i + p + 1] == knots[i + 1]
            else (knots[i + p + 1] - x) / (knots[i + p + 1] - knots[i + 1]) * basis(i + 1, p - 1, x)
        )
        return left + right

    truth = np.array(
        [[sum(basis(i, order - 1, x) * ctrl[i, d] for i in range(n)) for d in range(3)] for x in t[:-1]]
    )
    assert np.allclose(de_boor(knots, order, ctrl, t[:-1]), truth)
    assert np.allclose(de_boor(knots, order, ctrl, t[-1:]), ctrl[-1])


def test_closed_bspline_curves() -> None:
    square = np.array([[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], float)
    pts, _ = stroke_bspline_curve(square, 4, closed=True, options=TOL)
    assert np.allclose(pts[0], pts[-1])
    # The same closed circle written as legacy periodic knots (num_poles + 2 order - 1 of them).
    legacy = [-0.25, 0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1, 1, 1, 1.25]
    circle, _ = stroke_bspline_curve(
        CIRCLE_POLES * CIRCLE_WEIGHTS[:, None], 3, legacy, CIRCLE_WEIGHTS, closed=True, options=TOL
    )
    assert np.allclose(np.linalg.norm(circle, axis=1), 1.0)
    with pytest.raises(TessellationError):
        stroke_bspline_curve(square, 4, [0, 1, 2], options=TOL)
    curve = BSplineCurve(CIRCLE_POLES * CIRCLE_WEIGHTS[:, None], 3, CIRCLE_KNOTS, CIRCLE_WEIGHTS)
    disk = planar_region([[curve]], TOL)
    assert rel(disk.area(), math.pi) < 0.01


def test_bspline_surfaces() -> None:
    xs = np.array([0, 0.3, 1.5, 2.2, 3.0])
    ys = np.array([0, 0.5, 1.6, 2.0])
    grid = np.concatenate([np.stack(np.meshgrid(xs, ys), -1), np.zeros((4, 5, 1))], -1)
    patch = bspline_surface_mesh(grid, 3, 4, options=TOL)
    assert patch.area() == pytest.approx(6.0)
    assert np.allclose(patch.normals, [0, 0, 1]) and patch.two_sided
    # A quarter cylinder: rational quadratic in u, linear in v.
    r, h = 2.0, 3.0
    arc = np.array([[r, 0, 0], [r, r, 0], [0, r, 0]])
    weights = np.array([[1, W, 1], [1, W, 1]])
    poles = np.stack([arc, arc + np.array([0, 0, h])]) * weights[..., None]
    for options, bound in ((TOL, 0.01), (FINE, 0.001)):
        quarter = bspline_surface_mesh(
            poles, 3, 2, [0, 0, 0, 1, 1, 1], [0, 0, 1, 1], weights, options=options
        )
        assert rel(quarter.area(), math.pi / 2 * r * h) < bound
        assert np.allclose(np.linalg.norm(quarter.positions[:, :2], axis=1), r)
        assert_normals_follow_winding(quarter)


def test_bspline_surface_patches_as_native() -> None:
    """Counts per Bezier patch, as exportGraphics meshes one of the truth model's B-spline surfaces (5 x 5
    grid of poles 3 m across, cubic in u and quadratic in v: 2 x 3 patches; compat/make-geometry.mjs's
    bumpySurface(3, 0.6)): measured 105 points and 171 triangles at chord 0.01, 739 and 1368 at 0.001."""
    poles = [
        [[0.75 * i, 0.75 * j, 0.6 * math.sin(i * 1.1) * math.cos(j * 0.8)] for i in range(5)]
        for j in range(5)
    ]
    for options, points, triangles in ((TOL, 105, 171), (FINE, 739, 1368)):
        mesh = bspline_surface_mesh(poles, 4, 3, options=options)
        assert (mesh.n_vertices, mesh.n_triangles) == (points, triangles)
        assert_normals_follow_winding(mesh)
        # The surface's corners and edges are the poles' outer rows (clamped knots): they are vertices.
        corners = np.array([poles[0][0], poles[0][4], poles[4][0], poles[4][4]])
        assert (np.abs(mesh.positions[:, None] - corners[None]).sum(axis=2) < 1e-12).any(axis=0).all()
    # The middle patch of the first column (u in [0, 1/2], v in [1/3, 2/3]) needs 4 steps each way, its
    # neighbour below 5 in u: so its lower edge is cut in 5, and its interior is a lattice of 3 x 3
    # points one step in from its edges (the band between the edge and the lattice zipped).
    mesh = bspline_surface_mesh(poles, 4, 3, options=TOL)
    assert mesh.params is not None
    u, v = mesh.params[:, 0].astype(float), mesh.params[:, 1].astype(float)
    inside = (u > 1e-6) & (u < 0.5 - 1e-6) & (v > 1 / 3 + 1e-6) & (v < 2 / 3 - 1e-6)
    assert np.allclose(np.unique(u[inside].round(6)), [0.125, 0.25, 0.375])
    assert np.allclose(np.unique(v[inside].round(6)), 1 / 3 + np.array([1, 2, 3]) / 12)
    lower = (np.abs(v - 1 / 3) < 1e-6) & (u < 0.5 + 1e-6)
    assert np.allclose(np.unique(u[lower].round(6)), np.arange(6) / 10)


# -- polyfaces --------------------------------------------------------------------------------------

CUBE = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float
)
CUBE_FACES = [[1, 4, 3, 2], [5, 6, 7, 8], [1, 2, 6, 5], [3, 4, 8, 7], [1, 5, 8, 4], [2, 3, 7, 6]]


def test_polyface_quads_zero_terminated_and_blocked() -> None:
    index = []
    for f in CUBE_FACES:
        index += [f[0], -f[1], f[2], -f[3], 0]  # negative = hidden edge, ignored for meshing
    mesh = polyface_mesh(CUBE, index)
    assert mesh.n_triangles == 12 and mesh.area() == pytest.approx(6.0)
    assert_outward_solid(mesh)
    blocked = polyface_mesh(CUBE, [i for f in CUBE_FACES for i in f], num_per_face=4)
    assert blocked.signed_volume() == pytest.approx(1.0) and blocked.is_closed()
    padded = polyface_mesh(CUBE, [i for f in CUBE_FACES for i in (*f[:3], 0)], num_per_face=4)
    assert padded.n_triangles == 6
    smooth = polyface_mesh(CUBE, index, crease_angle=math.radians(30))
    assert smooth.n_vertices == 24  # the cube's corners stay sharp
    rounded = polyface_mesh(CUBE, index, crease_angle=math.radians(100))
    assert rounded.n_vertices == 8


def test_polyface_large_and_concave_faces() -> None:
    ell = np.array([[0, 0, 0], [2, 0, 0], [2, 1, 0], [1, 1, 0], [1, 2, 0], [0, 2, 0]], float)
    mesh = polyface_mesh(ell, [1, 2, 3, 4, 5, 6, 0], two_sided=True)
    assert mesh.n_triangles == 4 and mesh.area() == pytest.approx(3.0) and mesh.two_sided
    assert_normals_follow_winding(mesh)
    ring = np.stack(
        [
            np.cos(np.linspace(0, 2 * math.pi, 40, endpoint=False)),
            np.sin(np.linspace(0, 2 * math.pi, 40, endpoint=False)),
            np.zeros(40),
        ],
        1,
    )
    fan = polyface_mesh(ring, [*range(1, 41), 0])
    assert fan.n_triangles == 38 and rel(fan.area(), 20 * math.sin(2 * math.pi / 40)) < 1e-12


def test_polyface_normals_params_colors_and_errors() -> None:
    pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    normals = np.array([[0, 0, 2.0]])
    params = np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])
    colors = np.array([0x0000FF, 0x00FF00])
    mesh = polyface_mesh(
        pts,
        [1, 2, 3, 0, 1, 3, 4, 0],
        normals=normals,
        normal_index=[1, 1, 1, 0, 1, 1, 1, 0],
        params=params,
        param_index=[1, 2, 3, 0, 1, 3, 4, 0],
        colors=colors,
        color_index=[1, 1, 1, 0, 2, 2, 2, 0],
    )
    assert mesh.n_vertices == 6  # points 1 and 3 are on faces of both colours
    assert np.allclose(mesh.normals, [0, 0, 1])
    assert mesh.params is not None and np.allclose(mesh.params[:, 0], mesh.positions[:, 0])
    assert mesh.colors is not None and set(mesh.colors.tolist()) == {0x0000FF, 0x00FF00}
    with pytest.raises(TessellationError):
        polyface_mesh(pts, [1, 2, 9, 0])
    with pytest.raises(TessellationError):
        polyface_mesh(pts, [1, 2, 3, 0, 4], num_per_face=4)
    with pytest.raises(TessellationError):
        polyface_mesh(pts, [1, 2, 3, 0], normals=normals, normal_index=[1, 0, 1, 0])


def test_joined_polyfaces_are_each_polyface_alone() -> None:
    """``polyface_meshes`` (the mesher's batch) gives, polyface by polyface, what ``polyface_mesh`` gives."""
    ell = np.array([[0, 0, 0], [2, 0, 0], [2, 1, 0], [1, 1, 0], [1, 2, 0], [0, 2, 0]], float)
    zero_ended = [i for f in CUBE_FACES for i in (*f, 0)]
    cases: list[tuple[np.ndarray, list[int], int]] = [
        (CUBE, zero_ended, 0),
        (ell, [1, 2, 3, 4, 5, 6], 0),  # a concave face, no final 0
        (CUBE, [i for f in CUBE_FACES for i in f], 4),  # fixed blocks
        (CUBE, [i for f in CUBE_FACES for i in (*f[:3], 0)], 4),  # blocks padded with 0
        (ell + 5, [1, -2, 3, 0, 1, 3, 4, 5, 6, 0], 0),
    ]
    joined = polyface_meshes([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases])
    assert joined.entry is not None
    for k, (pts, index, npf) in enumerate(cases):
        alone = polyface_mesh(pts, index, num_per_face=npf)
        mine = np.flatnonzero(joined.entry == k)
        assert np.array_equal(joined.positions[mine], alone.positions)
        assert np.array_equal(joined.normals[mine], alone.normals)
        tris = joined.indices[np.isin(joined.indices[:, 0], mine)]
        assert np.array_equal(np.searchsorted(mine, tris), alone.indices)

    # With normals and params (shared vertices), each polyface's own index arrays.
    pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    params = np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])
    index = [1, 2, 3, 0, 1, 3, 4, 0]
    two = polyface_meshes(
        [pts, pts * 2],
        [index, index],
        [0, 0],
        normals=[np.array([[0, 0, 1.0]]), np.array([[0, 0, 3.0], [0, 1, 0]])],
        normal_index=[[1, 1, 1, 0, 1, 1, 1, 0], [2, 2, 2, 0, 1, 1, 1, 0]],
        params=[params, params],
        param_index=[None, None],
    )
    assert two.entry is not None and two.params is not None
    assert np.bincount(two.entry).tolist() == [4, 6]  # the second has two normals at points 1 and 3
    second = two.entry == 1
    assert np.allclose(two.params[second][:, 0] * 2, two.positions[second][:, 0])
    # An index past its own polyface's points fails (joined, it would silently name the next one's).
    with pytest.raises(TessellationError):
        polyface_meshes([pts, pts], [[1, 2, 5, 0], index], [0, 0])
    with pytest.raises(TessellationError):
        polyface_meshes(
            [pts, pts], [index, index], [0, 0], normals=[pts, pts], normal_index=[[1, 2, 3, 0], index]
        )


# -- meshes -----------------------------------------------------------------------------------------


def test_mirroring_transforms_keep_outward_normals() -> None:
    solids = [
        sphere([1, 2, 3], 1.5, options=TOL),
        cone([0, 0, 0], [0, 0, 2], 1.0, 0.4, options=TOL),
        torus_pipe([0, 0, 0], [1, 0, 0], [0, 1, 0], 2.0, 0.5, 2.0, True, options=TOL),
        linear_sweep([SQUARE, HOLE], [0, 0, 1], options=TOL),
    ]
    mirror = np.diag([-1.0, 1.0, 1.0, 1.0])
    skew = np.array([[2.0, 0.5, 0, 3], [0, 1, 0.3, -1], [0, 0, -0.5, 2], [0, 0, 0, 1]])  # det < 0, sheared
    for solid in solids:
        for matrix in (mirror, skew):
            moved = solid.transformed(matrix)
            assert moved.signed_volume() == pytest.approx(
                abs(np.linalg.det(matrix[:3, :3])) * solid.signed_volume()
            )
            assert_outward_solid(moved)


def test_concat_range_and_entries() -> None:
    a = box([0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], 1, 1, 1, 1)
    b = sphere([5, 0, 0], 1.0, options=TOL)
    both = Mesh.concat([a, b], entries=[10, 20])
    assert both.n_triangles == a.n_triangles + b.n_triangles
    assert both.entry is not None and set(both.entry.tolist()) == {10, 20}
    assert both.area() == pytest.approx(a.area() + b.area())
    assert np.allclose(both.range(), [[0, -1, -1], [6, 1, 1]])
    kept = Mesh.concat([both, both], entries="keep")
    assert kept.entry is not None and (kept.entry[: both.n_vertices] == both.entry).all()
    assert Mesh.concat([]).n_triangles == 0


def test_instances_of_a_part() -> None:
    part = cone([0, 0, 0], [0, 0, 1], 0.5, 0.5, options=TOL)
    yaw = np.array([[0, -1, 0, 10], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    scaled = np.diag([2.0, 2.0, 2.0, 1.0])
    mirrored = np.diag([1.0, -1.0, 1.0, 1.0])
    many = part.instanced(np.stack([yaw, scaled, mirrored]))
    assert many.n_triangles == 3 * part.n_triangles
    assert many.entry is not None and list(np.bincount(many.entry)) == [part.n_vertices] * 3
    assert many.signed_volume() == pytest.approx(part.signed_volume() * (1 + 8 + 1))
    for i, matrix in enumerate((yaw, scaled, mirrored)):
        one = many.subset(np.isin(many.indices[:, 0], np.flatnonzero(many.entry == i)))
        alone = part.transformed(matrix)
        assert np.allclose(one.positions, alone.positions) and np.allclose(
            one.normals, alone.normals, atol=1e-6
        )
        assert_outward_solid(one)
