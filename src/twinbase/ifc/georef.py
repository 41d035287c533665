"""An iModel's ECEF location as IFC georeferencing: a WGS 84 / UTM map conversion (pure math, no CS-MAP).

IFC4 georeferences a model with ``IfcMapConversion`` (model coordinates -> a projected CRS: the map
easting, northing and height of the model origin, and the direction of the model x axis on the map)
and ``IfcProjectedCRS``. An iModel stores where it is as an ECEF transform (``ecefLocation``); its
binary GCS (``DgnGCS``) is not decoded by twinbase (``bim.geolocation``). So the map conversion is
worked out from the ECEF transform alone, into the WGS 84 UTM zone of the model origin (EPSG 326zz
north, 327zz south): the origin and a point 100 m along the model x axis are taken to latitude and
longitude (WGS 84) and projected (transverse Mercator, Krüger's series: sub-millimetre within a zone);
their difference on the map gives the x axis direction (meridian convergence included). The height is
the ellipsoidal height (no geoid model here): documented, not hidden, in the CRS description.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# WGS 84
_A = 6378137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_K0 = 0.9996


@dataclass(frozen=True)
class MapConversion:
    """What ``IfcMapConversion`` + ``IfcProjectedCRS`` say; ``latitude``/``longitude`` (degrees) and
    ``height`` of the model origin also go to ``IfcSite`` (RefLatitude, RefLongitude, RefElevation)."""

    crs_name: str  # "EPSG:32632"
    crs_description: str
    map_zone: str  # "32N"
    eastings: float
    northings: float
    orthogonal_height: float
    x_axis_abscissa: float
    x_axis_ordinate: float
    latitude: float
    longitude: float
    height: float


def geodetic(xyz: npt.ArrayLike) -> tuple[float, float, float]:
    """ECEF (metres) -> latitude, longitude (degrees), ellipsoidal height (metres), WGS 84 (Bowring's
    iteration, converged to well under a millimetre in a few steps)."""
    x, y, z = (float(v) for v in np.asarray(xyz, np.float64))
    lon = math.atan2(y, x)
    p = math.hypot(x, y)
    if p < 1e-9:  # a pole
        return (90.0 if z >= 0 else -90.0), math.degrees(lon), abs(z) - _A * math.sqrt(1 - _E2)
    lat = math.atan2(z, p * (1 - _E2))
    height = 0.0
    for _ in range(8):
        n = _A / math.sqrt(1 - _E2 * math.sin(lat) ** 2)
        height = p / math.cos(lat) - n
        lat = math.atan2(z, p * (1 - _E2 * n / (n + height)))
    return math.degrees(lat), math.degrees(lon), height


def utm_zone(latitude: float, longitude: float) -> int:
    """The UTM zone number of a point (the standard 6 degree zones; the Norway/Svalbard exceptions are
    not applied: any zone is a valid CRS, only slightly less exact at its edge)."""
    return max(1, min(60, math.floor((longitude + 180.0) / 6.0) + 1))


def transverse_mercator(latitude: float, longitude: float, zone: int) -> tuple[float, float]:
    """Easting, northing (metres) of a WGS 84 point in UTM ``zone`` (north or south by the latitude):
    Krüger's series to the third order in n."""
    n = _F / (2 - _F)
    big_a = _A / (1 + n) * (1 + n * n / 4 + n**4 / 64)
    alpha = (n / 2 - 2 * n * n / 3 + 5 * n**3 / 16, 13 * n * n / 48 - 3 * n**3 / 5, 61 * n**3 / 240)
    phi = math.radians(latitude)
    lam = math.radians(longitude - (zone * 6 - 183))
    e = math.sqrt(_E2)
    t = math.sinh(math.atanh(math.sin(phi)) - e * math.atanh(e * math.sin(phi)))
    xi = math.atan2(t, math.cos(lam))
    eta = math.atanh(math.sin(lam) / math.sqrt(1 + t * t))
    east = eta + sum(a * math.cos(2 * j * xi) * math.sinh(2 * j * eta) for j, a in enumerate(alpha, 1))
    north = xi + sum(a * math.sin(2 * j * xi) * math.cosh(2 * j * eta) for j, a in enumerate(alpha, 1))
    easting = 500000.0 + _K0 * big_a * east
    northing = _K0 * big_a * north + (10000000.0 if latitude < 0 else 0.0)
    return easting, northing


def map_conversion(ecef_from_model: npt.NDArray[np.float64]) -> MapConversion:
    """The map conversion of a model whose coordinates go to ECEF by the 4x4 ``ecef_from_model``."""
    origin = ecef_from_model[:3, 3]
    along = ecef_from_model[:3, :3] @ np.array([100.0, 0.0, 0.0]) + origin
    lat, lon, height = geodetic(origin)
    zone = utm_zone(lat, lon)
    east, north = transverse_mercator(lat, lon, zone)
    lat2, lon2, _ = geodetic(along)
    east2, north2 = transverse_mercator(lat2, lon2, zone)
    dx, dy = east2 - east, north2 - north
    length = math.hypot(dx, dy) or 1.0
    south = lat < 0
    return MapConversion(
        crs_name=f"EPSG:{32700 + zone if south else 32600 + zone}",
        crs_description=(
            f"WGS 84 / UTM zone {zone}{'S' if south else 'N'}, worked out from the iModel's ECEF location;"
            " heights are ellipsoidal (WGS 84)"
        ),
        map_zone=f"{zone}{'S' if south else 'N'}",
        eastings=east,
        northings=north,
        orthogonal_height=height,
        x_axis_abscissa=dx / length,
        x_axis_ordinate=dy / length,
        latitude=lat,
        longitude=lon,
        height=height,
    )


def compound_angle(degrees: float) -> tuple[int, int, int, int]:
    """Degrees as IFC's ``IfcCompoundPlaneAngleMeasure`` (degrees, minutes, seconds, millionths of a
    second; every part carries the sign)."""
    sign = -1 if degrees < 0 else 1
    micro = round(abs(degrees) * 3600 * 1_000_000)
    d, rest = divmod(micro, 3600 * 1_000_000)
    m, rest = divmod(rest, 60 * 1_000_000)
    s, u = divmod(rest, 1_000_000)
    return sign * d, sign * m, sign * s, sign * u
