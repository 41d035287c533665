"""Where an iModel is on Earth (bim-format.md §2.5): project extents, global origin, ECEF location, GCS.

All of it lives in ``be_Prop`` (namespace ``dgn_Db``):

- ``Extents``: ``{"low": [x, y, z], "high": [x, y, z]}``, the project extents as stored;
- ``Units``: ``{"globalOrigin": [...], "initialProjectCenter": [...], "ecefLocation": {"origin": [X, Y, Z],
  "orientation": {"yaw", "pitch", "roll"} (degrees), "cartographicOrigin": {"longitude", "latitude",
  "height"} (radians, metres), "xVector"/"yVector" (optional)}}``;
- ``DgnGCS``: the geographic coordinate system as the legacy binary "type 66" structure (CS-MAP /
  MicroStation), often zlib-compressed. It is **not decoded** here: ``Gcs.decoded`` is False and
  ``Gcs.raw`` holds the bytes. A GCS stored as JSON text would be parsed into ``Gcs.json``.

``read_geolocation(imodel)`` reads them; everything else is pure. What iTwin.js reports, reproduced
(imodel-native ``DgnGeoLocation::Load``, ``EcefLocation::FromJson``; checked against core-backend):

- ``project_extents``: the stored extents, or when there are none (or they are empty) the native default
  (-50, -50, -10)..(50, 50, 30); then iTwin.js ``IModel.projectExtents`` grows every axis to at least 1 m
  about its centre. ``stored_extents`` is the value in the file, as stored.
- ``ecef_location`` exists only when the JSON has both ``origin`` and ``orientation`` (a null orientation
  means no rotation); a ``transform`` member, if any, is ignored, as natively: ``ecef_transform`` builds
  the 4x4 matrix from iModel spatial coordinates to ECEF from the x/y vectors when both are given, else
  from yaw/pitch/roll, as ``EcefLocation.getTransform`` does. A 3D Tiles root ``transform`` is that
  matrix column-major (``matrix.T.flatten()``).
- Not reproduced: when no ECEF location is stored but a GCS is, the native library computes one from the
  GCS and the project extents' centre; that needs the GCS decoded (CS-MAP), so ``ecef_location`` stays
  None and ``gcs`` says a GCS exists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from twinbase.bim.identity import BimFormatError

if TYPE_CHECKING:
    from twinbase.bim.imodel import IModelFile

Point3 = tuple[float, float, float]
NAMESPACE = "dgn_Db"
PROJECT_EXTENTS_MIN = (
    1.0  # IModel.projectExtents: "Don't allow any axis of the project extents to be less than 1 meter."
)
# DgnGeoLocation's default extents, used when none are stored (iTwin.js reports exactly these then).
DEFAULT_PROJECT_EXTENTS: tuple[Point3, Point3] = ((-50.0, -50.0, -10.0), (50.0, 50.0, 30.0))


@dataclass(frozen=True)
class Cartographic:
    longitude: float  # radians
    latitude: float  # radians
    height: float  # metres above the ellipsoid


@dataclass(frozen=True)
class EcefLocation:
    origin: Point3
    yaw: float  # degrees
    pitch: float
    roll: float
    cartographic_origin: Cartographic | None = None
    x_vector: Point3 | None = None
    y_vector: Point3 | None = None


@dataclass(frozen=True)
class Gcs:
    """The stored geographic coordinate system. ``kind`` is "type66" (binary, not decoded) or "json"."""

    kind: str
    decoded: bool
    json: dict[str, Any] | None
    raw: bytes | None


@dataclass(frozen=True)
class Geolocation:
    project_extents: tuple[Point3, Point3]  # as iTwin.js reports it (the default if none stored; axes >= 1 m)
    stored_extents: tuple[Point3, Point3] | None  # as the file holds it (None if absent)
    global_origin: Point3
    initial_project_center: Point3 | None
    ecef_location: EcefLocation | None
    gcs: Gcs | None

    @property
    def is_geolocated(self) -> bool:
        """As iTwin.js ``IModel.isGeoLocated``: an ECEF location is known."""
        return self.ecef_location is not None


def _point(value: Any, what: str) -> Point3:
    if isinstance(value, dict):
        value = [value.get("x", 0.0), value.get("y", 0.0), value.get("z", 0.0)]
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) < 2:
        raise BimFormatError(f"{what} is not a point: {value!r}")
    try:
        coords = [float(v) for v in value[:3]]
    except (TypeError, ValueError) as exc:
        raise BimFormatError(f"{what} is not a point: {value!r}") from exc
    while len(coords) < 3:
        coords.append(0.0)
    return coords[0], coords[1], coords[2]


def _angle(value: Any) -> float:
    # YawPitchRollAngles.fromJSON: a number is degrees; {"degrees": d} or {"radians": r} also occur.
    if isinstance(value, dict):
        if "degrees" in value:
            return float(value["degrees"])
        if "radians" in value:
            return math.degrees(float(value["radians"]))
        return 0.0
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def ensure_min_lengths(low: Point3, high: Point3, minimum: float) -> tuple[Point3, Point3]:
    """iTwin.js ``Range3d.ensureMinLengths``: every axis shorter than ``minimum`` grows to it, centred."""
    lo, hi = list(low), list(high)
    for axis in range(3):
        grow = (minimum - (hi[axis] - lo[axis])) / 2.0
        if grow > 0:
            lo[axis] -= grow
            hi[axis] += grow
    return (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])


def parse_extents(text: str | None) -> tuple[Point3, Point3] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BimFormatError(f"be_Prop dgn_Db/Extents is not JSON: {exc}") from exc
    if not isinstance(value, dict) or "low" not in value or "high" not in value:
        raise BimFormatError(f"be_Prop dgn_Db/Extents is not a range: {text[:80]}")
    return _point(value["low"], "Extents.low"), _point(value["high"], "Extents.high")


def parse_ecef_location(value: Any) -> EcefLocation | None:
    # EcefLocation::FromJson: valid only with both members; a null orientation is no rotation.
    if not isinstance(value, dict) or "origin" not in value or "orientation" not in value:
        return None
    origin = _point(value["origin"], "ecefLocation.origin")
    orientation = value.get("orientation") or {}
    carto = value.get("cartographicOrigin")
    cartographic = None
    if isinstance(carto, dict):
        cartographic = Cartographic(
            float(carto.get("longitude", 0.0)),
            float(carto.get("latitude", 0.0)),
            float(carto.get("height", 0.0)),
        )
    x_vector = y_vector = None
    if value.get("xVector") is not None and value.get("yVector") is not None:
        x_vector = _point(value["xVector"], "ecefLocation.xVector")
        y_vector = _point(value["yVector"], "ecefLocation.yVector")
    return EcefLocation(
        origin=origin,
        yaw=_angle(orientation.get("yaw")) if isinstance(orientation, dict) else 0.0,
        pitch=_angle(orientation.get("pitch")) if isinstance(orientation, dict) else 0.0,
        roll=_angle(orientation.get("roll")) if isinstance(orientation, dict) else 0.0,
        cartographic_origin=cartographic,
        x_vector=x_vector,
        y_vector=y_vector,
    )


def parse_gcs(value: str | bytes | None) -> Gcs | None:
    if value is None or len(value) == 0:
        return None
    text: str | None = value if isinstance(value, str) else None
    if isinstance(value, bytes) and value[:1] == b"{":
        try:
            text = value.decode()
        except UnicodeDecodeError:
            text = None
    if text is not None:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return Gcs(kind="json", decoded=True, json=parsed, raw=None)
    raw = value if isinstance(value, bytes) else value.encode()
    return Gcs(kind="type66", decoded=False, json=None, raw=raw)


def ypr_rotation(yaw: float, pitch: float, roll: float) -> npt.NDArray[np.float64]:
    """iTwin.js ``YawPitchRollAngles.toMatrix3d`` (degrees)."""
    cz, sz = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cy, sy = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cx, sx = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    return np.array(
        [
            [cz * cy, -(sz * cx + cz * sy * sx), sz * sx - cz * sy * cx],
            [sz * cy, cz * cx - sz * sy * sx, -(cz * sx + sz * sy * cx)],
            [sy, cy * sx, cy * cx],
        ]
    )


def ecef_transform(location: EcefLocation) -> npt.NDArray[np.float64]:
    """4x4 matrix taking iModel spatial coordinates to ECEF (row-major; ``@`` a column [x, y, z, 1])."""
    out = np.eye(4)
    matrix = None
    if location.x_vector is not None and location.y_vector is not None:
        x = np.array(location.x_vector)
        y = np.array(location.y_vector)
        z = np.cross(x, y)
        norm = float(np.linalg.norm(z))
        if norm > 1e-300:
            matrix = np.column_stack([x, y, z / norm])
    if matrix is None:
        matrix = ypr_rotation(location.yaw, location.pitch, location.roll)
    out[:3, :3] = matrix
    out[:3, 3] = location.origin
    return out


def geolocation_from_props(extents: str | None, units: str | None, gcs: str | bytes | None) -> Geolocation:
    """The geolocation from the three ``be_Prop`` values (pure)."""
    stored = parse_extents(extents)
    unit_props: dict[str, Any] = {}
    if units:
        try:
            parsed = json.loads(units)
        except ValueError as exc:
            raise BimFormatError(f"be_Prop dgn_Db/Units is not JSON: {exc}") from exc
        if isinstance(parsed, dict):
            unit_props = parsed
    global_origin = (
        _point(unit_props["globalOrigin"], "globalOrigin")
        if unit_props.get("globalOrigin") is not None
        else (0.0, 0.0, 0.0)
    )
    center = unit_props.get("initialProjectCenter")
    usable = stored is not None and all(lo <= hi for lo, hi in zip(stored[0], stored[1], strict=True))
    reported = ensure_min_lengths(
        *(stored if usable and stored else DEFAULT_PROJECT_EXTENTS), PROJECT_EXTENTS_MIN
    )
    return Geolocation(
        project_extents=reported,
        stored_extents=stored,
        global_origin=global_origin,
        initial_project_center=_point(center, "initialProjectCenter") if center is not None else None,
        ecef_location=parse_ecef_location(unit_props.get("ecefLocation")),
        gcs=parse_gcs(gcs),
    )


def read_geolocation(imodel: IModelFile) -> Geolocation:
    def text(name: str) -> str | None:
        value = imodel.file_property(NAMESPACE, name)
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return value

    return geolocation_from_props(text("Extents"), text("Units"), imodel.file_property(NAMESPACE, "DgnGCS"))
