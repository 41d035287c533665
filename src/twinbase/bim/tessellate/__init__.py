"""Tessellation of iModel geometry into flat numpy arrays (issue #13, part 2).

Inputs are plain parameters (numpy arrays, floats and the small curve holders in ``curves``), so
this package does not depend on the GeometryStream decoder; the glue maps decoded geometry to these
functions. Outputs are ``Mesh`` (triangles) and ``Polyline`` (wires: lines never become triangles).

Stroke counts follow the iTwin.js native library (see ``options``), which is what
``IModelDb.exportGraphics`` runs: for boxes, spheres and ellipsoids, cones, torus pipes, linear,
rotational and ruled sweeps of lines, arcs and B-splines, regions, polyfaces, B-spline surfaces and
wires, our facets are the ones it makes (same triangle counts, areas and volumes to rounding;
``tests/test_bim_tessellate_itwinjs.py``). On multi-span B-spline surfaces the vertices are the native
ones but a few squares of four are cut on the other diagonal (areas within 1e-4; see ``bspline``).

Not covered here: trimmed B-spline surface boundaries (the whole patch is meshed); text glyphs (text is
its range box outline); Parasolid B-reps (the glue uses the facets stored with them, or their range).
"""

from .bspline import bspline_surface_mesh, de_boor, stroke_bspline_curve
from .curves import (
    Arc,
    BSplineCurve,
    Chain,
    CurvePrimitive,
    LineSegment,
    LineString,
    arc_points,
    curve_polyline,
    point_string,
    stroke_curve,
    text_box_outline,
    text_range,
)
from .errors import TessellationError
from .mesh import Mesh, Polyline
from .options import (
    StrokeOptions,
    arc_segments,
    core_geometry_arc_segments,
    distance_segments,
    full_ellipse_segments,
)
from .polyface import polyface_mesh, polyface_meshes
from .regions import planar_region, triangulate_polygons, union_region
from .solids import box, boxes, cone, cones, sphere, spheres, torus_pipe, torus_pipes
from .sweeps import (
    extrude_polygons,
    extrude_regions,
    linear_sweep,
    region_chains,
    rotational_sweep,
    ruled_sweep,
)

__all__ = [
    "Arc",
    "BSplineCurve",
    "Chain",
    "CurvePrimitive",
    "LineSegment",
    "LineString",
    "Mesh",
    "Polyline",
    "StrokeOptions",
    "TessellationError",
    "arc_points",
    "arc_segments",
    "box",
    "boxes",
    "bspline_surface_mesh",
    "cone",
    "cones",
    "core_geometry_arc_segments",
    "curve_polyline",
    "de_boor",
    "distance_segments",
    "extrude_polygons",
    "extrude_regions",
    "full_ellipse_segments",
    "linear_sweep",
    "planar_region",
    "point_string",
    "polyface_mesh",
    "polyface_meshes",
    "region_chains",
    "rotational_sweep",
    "ruled_sweep",
    "sphere",
    "spheres",
    "stroke_bspline_curve",
    "stroke_curve",
    "text_box_outline",
    "text_range",
    "torus_pipe",
    "torus_pipes",
    "triangulate_polygons",
    "union_region",
]
