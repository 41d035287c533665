"""How finely curves and curved surfaces are cut: the tolerances and the segment counts they give.

The counts follow the iTwin.js *native* library (imodel-native GeomLibs, ``IFacetOptions``), because
that is what ``IModelDb.exportGraphics`` and the backend tile generator run; matching its counts makes
our facets the same as theirs, so areas and ranges agree closely, not only within the curved-surface
error. ``exportGraphics`` builds its options as ``IFacetOptions::CreateForSurfaces(chordTol, angleTol,
maxEdgeLength)`` with ``chordTol = 0`` (off), ``angleTol = pi/12`` (15 degrees; a caller's value is
capped at pi/4) and ``maxEdgeLength = 0`` (off) unless the caller sets them.

Full ellipse of radius ``r`` (``DEllipse3d::GetStrokeCount`` then ``IFacetOptions::FullEllipseStrokeCount``):

1. ``step = pi/2``; if ``0 < angle_tolerance < pi/2``: ``step = angle_tolerance``.
2. if ``chord_tolerance > 0`` and ``r > chord_tolerance``:
   ``step = min(step, 2 acos(1 - chord_tolerance/r))`` (the angle whose chord sags by the tolerance).
3. ``n = int(0.99999 + 2 pi / step)``, clamped to ``[4, max_per_full_ellipse]`` (600).
4. if ``max_edge_length > 0`` and ``2 pi r > n * max_edge_length``:
   ``n = int(2 pi r / max_edge_length + 0.99999)`` (still at most 600).
5. rounded to quadrant symmetry: ``n <= 4 -> 4``; ``n == 5 -> 6``; otherwise ``4 * ceil(n / 4)``.

Partial arc of sweep ``a`` (``IFacetOptions::EllipseStrokeCount``): with ``N`` the full-ellipse count and
``f = |a| / 2 pi``: ``N`` when ``f > 0.999``; ``(N + 1) // 2`` when ``|f - 0.5| <= 0.001``; else
``ceil(f N)``.
The radius used for an ellipse is its larger semi-axis.

These are the counts for the edges of facetted surfaces (solids, sweeps, regions). A curve drawn as a
line (``exportGraphics``' line output) gets one segment fewer: ``CurvePrimitiveArc::_AddStrokes`` takes
the count as a number of points. Both verified segment for segment against ``exportGraphics``
(``tests/test_bim_tessellate_itwinjs.py``).

Straight distances (box edges, extrusion lengths, line segments) get one segment, or
``int(length / max_edge_length + 0.99999)`` (at most 100) when a maximum edge length is set.

The TypeScript core-geometry ``StrokeOptions.applyTolerancesToArc`` (used by frontend decorations, not by
``exportGraphics``) differs: it starts from one stroke, applies the angle (default pi/4), edge length and
chord steps with ``Geometry.stepCount`` (``floor((total + 0.999999 step) / step)``, capped at 101) and
does not round to multiples of four. ``core_geometry_arc_segments`` gives that count for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import TessellationError

#: iTwin.js native default and exportGraphics default: 15 degrees.
DEFAULT_ANGLE_TOLERANCE = math.pi / 12


@dataclass(frozen=True, slots=True)
class StrokeOptions:
    """Tolerances for stroking curves and faceting surfaces.

    ``chord_tolerance``: largest distance between a curve and its chord (model units); 0 = not used.
    ``angle_tolerance``: largest turn between successive chords, radians; 0 = not used (then the count
    only follows the chord tolerance, with at least 4 segments per full circle).
    ``max_edge_length``: longest facet edge; ``None`` or 0 = not used.
    """

    chord_tolerance: float = 0.0
    angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE
    max_edge_length: float | None = None
    max_per_full_ellipse: int = 600

    def __post_init__(self) -> None:
        for name in ("chord_tolerance", "angle_tolerance"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise TessellationError(f"StrokeOptions.{name} must be a finite number >= 0, not {value!r}")
        if self.max_edge_length is not None and (
            not math.isfinite(self.max_edge_length) or self.max_edge_length < 0
        ):
            raise TessellationError(
                f"StrokeOptions.max_edge_length must be >= 0, not {self.max_edge_length!r}"
            )
        if self.max_per_full_ellipse < 4:
            raise TessellationError("StrokeOptions.max_per_full_ellipse must be at least 4")

    @property
    def edge_length(self) -> float:
        """The maximum edge length, 0 when not used."""
        return self.max_edge_length or 0.0


def _update_count(count: int, numerator: float, denominator: float, max_count: int) -> int:
    # IFacetOptions' UpdateToleranceCount: grow the count so numerator/count <= denominator.
    numerator = abs(numerator)
    if denominator > 0.0 and numerator > count * denominator:
        count = int(numerator / denominator + 0.99999)
    return min(count, max_count)


def full_ellipse_segments(radius: float, options: StrokeOptions) -> int:
    """Segments for a full circle or ellipse whose larger semi-axis is ``radius``."""
    radius = abs(float(radius))
    target = math.pi / 2
    if 0.0 < options.angle_tolerance < target:
        target = options.angle_tolerance
    chord = options.chord_tolerance
    if chord > 0.0 and radius > chord:
        target = min(target, 2.0 * math.acos(1.0 - chord / radius))
    n = int(0.99999 + 2.0 * math.pi / target)
    n = min(max(n, 4), options.max_per_full_ellipse)
    if options.edge_length > 0.0:
        n = _update_count(n, 2.0 * math.pi * radius, options.edge_length, options.max_per_full_ellipse)
    if n <= 4:
        return 4
    if n < 6:
        return 6
    return 4 * ((n + 3) // 4)


def arc_segments(radius: float, sweep: float, options: StrokeOptions) -> int:
    """Segments for an arc of ``radius`` (larger semi-axis) and ``sweep`` radians, as iTwin.js native."""
    full = full_ellipse_segments(radius, options)
    fraction = abs(float(sweep)) / (2.0 * math.pi)
    if fraction > 0.999:
        return full
    if abs(fraction - 0.5) <= 0.001:
        return (full + 1) // 2
    return max(1, math.ceil(fraction * full))


def full_ellipse_segments_array(radii: NDArray[np.float64], options: StrokeOptions) -> NDArray[np.int64]:
    """``full_ellipse_segments`` for many radii at once (the batch solids use it)."""
    r = np.abs(np.asarray(radii, dtype=np.float64))
    if r.size <= 4:
        # A few values: plain Python is several times cheaper than a dozen array operations.
        return np.array([full_ellipse_segments(float(x), options) for x in r.reshape(-1)], np.int64).reshape(
            r.shape
        )
    target = np.full(r.shape, math.pi / 2)
    if 0.0 < options.angle_tolerance < math.pi / 2:
        target[:] = options.angle_tolerance
    chord = options.chord_tolerance
    if chord > 0.0:
        big = r > chord
        with np.errstate(divide="ignore", invalid="ignore"):
            chord_angle = 2.0 * np.arccos(1.0 - chord / np.where(big, r, 1.0))
        target = np.where(big, np.minimum(target, chord_angle), target)
    n = (0.99999 + 2.0 * math.pi / target).astype(np.int64)
    n = np.clip(n, 4, options.max_per_full_ellipse)
    edge = options.edge_length
    if edge > 0.0:
        length = 2.0 * math.pi * r
        grow = length > n * edge
        n = np.where(grow, (length / edge + 0.99999).astype(np.int64), n)
        n = np.minimum(n, options.max_per_full_ellipse)
    rounded = 4 * ((n + 3) // 4)
    return np.where(n <= 4, 4, np.where(n < 6, 6, rounded)).astype(np.int64)


def arc_segments_array(
    radii: NDArray[np.float64], sweeps: NDArray[np.float64], options: StrokeOptions
) -> NDArray[np.int64]:
    """``arc_segments`` for many arcs at once."""
    r = np.asarray(radii, dtype=np.float64)
    a = np.asarray(sweeps, dtype=np.float64)
    if r.size <= 4 and r.shape == a.shape:
        pairs = zip(r.reshape(-1), a.reshape(-1), strict=True)
        return np.array([arc_segments(float(x), float(y), options) for x, y in pairs], np.int64).reshape(
            r.shape
        )
    full = full_ellipse_segments_array(radii, options)
    fraction = np.abs(np.asarray(sweeps, dtype=np.float64)) / (2.0 * math.pi)
    partial = np.maximum(1, np.ceil(fraction * full)).astype(np.int64)
    half = (full + 1) // 2
    return np.where(fraction > 0.999, full, np.where(np.abs(fraction - 0.5) <= 0.001, half, partial))


def distance_segments(length: float, options: StrokeOptions, max_count: int = 100) -> int:
    """Segments for a straight length: 1, or more when ``max_edge_length`` is set (at most ``max_count``)."""
    return _update_count(1, float(length), options.edge_length, max_count)


def core_geometry_arc_segments(radius: float, sweep: float, options: StrokeOptions) -> int:
    """The TypeScript core-geometry count (``StrokeOptions.applyTolerancesToArc``), for comparison only.

    ``angle_tolerance == 0`` means its default of pi/4 here, as in core-geometry.
    """

    def step_count(step: float, total: float, min_count: int, max_count: int = 101) -> int:
        total = abs(total)
        if step <= 0 or step >= total:
            return min_count
        n = math.floor((total + 0.999999 * step) / step)
        return min(max(n, min_count), max_count)

    sweep = abs(float(sweep))
    n = 1
    angle_step = options.angle_tolerance if options.angle_tolerance > 0 else math.pi / 4
    if n * angle_step < sweep:
        n = step_count(angle_step, sweep, n)
    edge = options.edge_length
    if edge > 0 and n * edge < sweep * radius:
        n = step_count(edge, sweep * radius, n)
    chord = options.chord_tolerance
    if chord > 0 and chord < radius:
        n = step_count(2.0 * math.acos(1.0 - chord / radius), sweep, n)
    return n
