"""IFC entities from meshes and element facts, with ifcopenshell's low-level calls (no HTTP, no database).

    writer = IfcWriter("IFC4", project_name="Blocks", map_conversion=None)
    map_ = writer.representation_map([Piece(0x00FF0000, positions, triangles)])   # a part, once
    writer.product(ProductFacts(...), placement, [Piece(...)], [(map_, world_from_part)])
    writer.write(path)

What one product is:

- an IFC entity chosen from its BIS class (``ifc.classes``), ``GlobalId`` the compressed federation guid
  (a fresh one when the element has none or its guid was used already), ``Tag`` the element id
  ("0x20000000001"), ``Name`` its label (else its code, else class and id), ``ObjectType`` its BIS class;
- an ``IfcLocalPlacement`` (the element's origin and yaw/pitch/roll) under the site's; its own triangles,
  given in world coordinates, are written in those local coordinates;
- a "Body" ``IfcShapeRepresentation``: per appearance piece one ``IfcTriangulatedFaceSet`` (IFC4,
  IFC4X3; IFC2X3 has none: an ``IfcShellBasedSurfaceModel`` of triangular ``IfcFace``s) styled by an
  ``IfcStyledItem`` whose ``IfcSurfaceStyle`` holds the colour and transparency (one style per colour,
  shared); geometry parts as ``IfcMappedItem``s of an ``IfcRepresentationMap`` shared by every
  instance that shows the part in the same colours. A product with both its own triangles and part
  instances gets its own triangles as a map of its own, so that its one representation is all
  ``MappedRepresentation``. An instance whose transform is not a rotation with a uniform positive scale
  (a mirror, a shear) is written as triangles instead;
- ``BIS_Element`` property set: ElementId, FederationGuid, Code, UserLabel, Category, Model, Class (and
  GeometryFallback when its body is a bounding box); ``BIS_Properties``: its other EC properties.

The structure: ``IfcProject`` -> ``IfcSite`` (with ``RefLatitude``/``RefLongitude`` and, IFC4+, an
``IfcMapConversion`` to an ``IfcProjectedCRS`` when the iModel is geolocated) containing every product;
every BIS model and every category an ``IfcGroup`` (``ObjectType`` "BIS Model" / "BIS Category") the
products are assigned to. Lengths are metres.

Entities are made with ``file.create`` and attributes set by index (cached per entity type): about
half the cost of ``file.create_entity`` with keywords, and much less than the ``ifcopenshell.api``
helpers. Triangles go as one nested list per face set (one ``tolist`` each); Python objects per
triangle exist only for IFC2X3.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import ifcopenshell
import ifcopenshell.guid
import ifcopenshell.ifcopenshell_wrapper as wrapper
import numpy as np
from numpy.typing import NDArray

from twinbase.ifc.classes import ifc_entity
from twinbase.ifc.georef import MapConversion, compound_angle

F64 = NDArray[np.float64]
Entity = Any  # an ifcopenshell entity instance (no type stubs)

#: Schemas this writer knows (ifcopenshell's names).
SCHEMAS = ("IFC2X3", "IFC4", "IFC4X3_ADD2")
#: Below this a vector is taken as zero when checking a part instance's transform.
_SIMILAR_TOLERANCE = 1e-9
#: Decimals of the coordinates written (metres: 0.01 mm, the representation context's precision).
DIGITS = 5
#: Bounding boxes thinner than this (metres) are given this thickness, centred (a flat element's box
#: would otherwise be degenerate faces).
MIN_BOX = 0.001


_I3 = np.eye(3)


class IfcWriterError(ValueError):
    """The writer was asked for something it cannot write (an unknown schema)."""


@dataclass(frozen=True)
class Piece:
    """Triangles of one colour: ``color_tbgr`` 0xTTBBGGRR (T the transparency byte, 0 opaque),
    ``positions`` (n, 3), ``indices`` (m, 3) zero-based."""

    color_tbgr: int
    positions: F64
    indices: NDArray[Any]


@dataclass
class ProductFacts:
    """What a product says of its element, besides geometry."""

    element_id: int
    bis_class: str
    federation_guid: str | None = None
    code: str | None = None
    label: str | None = None
    model_id: int = 0
    category_id: int = 0
    model_name: str = ""
    category_name: str = ""
    fallback: str | None = None  # why its body is a bounding box
    properties: Mapping[str, Any] = field(default_factory=dict)


class _Maker:
    """``file.create`` plus attributes set by index, the indices cached per entity type."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.schema = wrapper.schema_by_name(f.schema_identifier)
        self._indices: dict[str, dict[str, int]] = {}
        self.known = frozenset(d.name().lower() for d in self.schema.declarations())

    def indices(self, kind: str) -> dict[str, int]:
        found = self._indices.get(kind)
        if found is None:
            decl: Any = self.schema.declaration_by_name(kind)  # an entity (typed as any declaration)
            found = {a.name(): i for i, a in enumerate(decl.all_attributes())}
            self._indices[kind] = found
        return found

    def __call__(self, kind: str, /, **attrs: Any) -> Entity:
        e = self.f.create(kind, -1)
        idx = self.indices(kind)
        for name, value in attrs.items():
            if value is not None:
                e.set_attribute_value_py(idx[name], value)
        return e

    def value(self, kind: str, value: Any) -> Entity:
        """A typed value for a select attribute (``IfcLabel('x')``)."""
        e = self.f.create(kind, -1)
        e.set_attribute_value_py(0, value)
        return e


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class IfcWriter:
    """One IFC file being written (in memory, ifcopenshell's model) until ``write``."""

    def __init__(
        self,
        schema: str,
        *,
        project_name: str,
        map_conversion: MapConversion | None = None,
        application: str = "twinbase",
    ) -> None:
        if schema not in SCHEMAS:
            raise IfcWriterError(f"unknown IFC schema {schema!r}: one of {', '.join(SCHEMAS)}")
        self.schema = schema
        # IFC4X3_ADD2 is missing from the stub's literal list, not from ifcopenshell
        self.f = ifcopenshell.file(schema=cast(Any, schema))
        self.new = _Maker(self.f)
        self.ifc2x3 = schema == "IFC2X3"
        self.owner = self._owner_history(application)
        self._used_guids: set[str] = set()
        self.duplicate_guids = 0
        self.products = 0
        self.triangles = 0
        self.mapped_items = 0
        self._styles: dict[int, Entity] = {}
        self._groups: dict[tuple[str, int], tuple[Entity, list[Entity]]] = {}
        self._contained: list[Entity] = []
        n = self.new
        self.origin = n("IfcCartesianPoint", Coordinates=(0.0, 0.0, 0.0))
        self.z_axis = n("IfcDirection", DirectionRatios=(0.0, 0.0, 1.0))
        self.x_axis = n("IfcDirection", DirectionRatios=(1.0, 0.0, 0.0))
        self.identity = n("IfcAxis2Placement3D", Location=self.origin)
        context = n(
            "IfcGeometricRepresentationContext",
            ContextType="Model",
            CoordinateSpaceDimension=3,
            Precision=10.0**-DIGITS,
            WorldCoordinateSystem=self.identity,
        )
        self.body = n(
            "IfcGeometricRepresentationSubContext",
            ContextIdentifier="Body",
            ContextType="Model",
            ParentContext=context,
            TargetView="MODEL_VIEW",
        )
        units = [
            n("IfcSIUnit", UnitType="LENGTHUNIT", Name="METRE"),
            n("IfcSIUnit", UnitType="AREAUNIT", Name="SQUARE_METRE"),
            n("IfcSIUnit", UnitType="VOLUMEUNIT", Name="CUBIC_METRE"),
            n("IfcSIUnit", UnitType="PLANEANGLEUNIT", Name="RADIAN"),
        ]
        self.project = n(
            "IfcProject",
            GlobalId=self._fresh_guid(),
            OwnerHistory=self.owner,
            Name=project_name,
            RepresentationContexts=[context],
            UnitsInContext=n("IfcUnitAssignment", Units=units),
        )
        self.site_placement = n("IfcLocalPlacement", RelativePlacement=self.identity)
        site_attrs: dict[str, Any] = {}
        if map_conversion is not None:
            site_attrs = {
                "RefLatitude": compound_angle(map_conversion.latitude),
                "RefLongitude": compound_angle(map_conversion.longitude),
                "RefElevation": map_conversion.height,
            }
            if not self.ifc2x3:  # IfcMapConversion is IFC4 and later
                crs = n(
                    "IfcProjectedCRS",
                    Name=map_conversion.crs_name,
                    Description=map_conversion.crs_description,
                    GeodeticDatum="WGS84",
                    MapZone=map_conversion.map_zone,
                    MapUnit=units[0],
                )
                n(
                    "IfcMapConversion",
                    SourceCRS=context,
                    TargetCRS=crs,
                    Eastings=map_conversion.eastings,
                    Northings=map_conversion.northings,
                    OrthogonalHeight=map_conversion.orthogonal_height,
                    XAxisAbscissa=map_conversion.x_axis_abscissa,
                    XAxisOrdinate=map_conversion.x_axis_ordinate,
                    Scale=1.0,
                )
        self.site = n(
            "IfcSite",
            GlobalId=self._fresh_guid(),
            OwnerHistory=self.owner,
            Name=project_name,
            ObjectPlacement=self.site_placement,
            CompositionType="ELEMENT",
            **site_attrs,
        )
        n(
            "IfcRelAggregates",
            GlobalId=self._fresh_guid(),
            OwnerHistory=self.owner,
            RelatingObject=self.project,
            RelatedObjects=[self.site],
        )

    # -- identity ----------------------------------------------------------------------------------------

    def _owner_history(self, application: str) -> Entity:
        n = self.new
        org = n("IfcOrganization", Name="twinbase")
        person = n("IfcPerson", FamilyName="twinbase")
        user = n("IfcPersonAndOrganization", ThePerson=person, TheOrganization=org)
        app = n(
            "IfcApplication",
            ApplicationDeveloper=org,
            Version="1",
            ApplicationFullName=application,
            ApplicationIdentifier=application,
        )
        return n(
            "IfcOwnerHistory",
            OwningUser=user,
            OwningApplication=app,
            ChangeAction="ADDED",
            CreationDate=int(time.time()),
        )

    def _fresh_guid(self) -> str:
        guid: str = ifcopenshell.guid.new()
        self._used_guids.add(guid)
        return guid

    def global_id(self, federation_guid: str | None) -> str:
        """The compressed federation guid; a fresh one when there is none, it is malformed, or another
        product has it already (GlobalIds are unique in a file)."""
        if federation_guid:
            try:
                guid: str = ifcopenshell.guid.compress(federation_guid.replace("-", "").lower())
            except (ValueError, TypeError, IndexError):
                guid = ""
            if guid and guid not in self._used_guids:
                self._used_guids.add(guid)
                return guid
            self.duplicate_guids += 1
        return self._fresh_guid()

    # -- looks -------------------------------------------------------------------------------------------

    def _style(self, tbgr: int) -> Entity:
        found = self._styles.get(tbgr)
        if found is not None:
            return found
        n = self.new
        r, g, b = tbgr & 0xFF, (tbgr >> 8) & 0xFF, (tbgr >> 16) & 0xFF
        transparency = ((tbgr >> 24) & 0xFF) / 255.0
        colour = n("IfcColourRgb", Red=r / 255.0, Green=g / 255.0, Blue=b / 255.0)
        rendering = n(
            "IfcSurfaceStyleRendering",
            SurfaceColour=colour,
            Transparency=transparency,
            ReflectanceMethod="NOTDEFINED",
        )
        style = n(
            "IfcSurfaceStyle",
            Name=f"#{r:02x}{g:02x}{b:02x} {round(transparency * 100)}%",
            Side="BOTH",
            Styles=[rendering],
        )
        if self.ifc2x3:  # IFC2X3 styles an item through a style assignment
            style = n("IfcPresentationStyleAssignment", Styles=[style])
        self._styles[tbgr] = style
        return style

    # -- geometry ----------------------------------------------------------------------------------------

    def _surface(self, piece: Piece, positions: F64) -> Entity:
        """One styled surface item of ``positions`` (the piece's, in the coordinates it is written in)."""
        n = self.new
        tris = np.asarray(piece.indices, np.int64).reshape(-1, 3)
        self.triangles += len(tris)
        positions, tris = weld(positions, tris)
        if self.ifc2x3:
            points = [n("IfcCartesianPoint", Coordinates=p) for p in positions.tolist()]
            faces = [
                n(
                    "IfcFace",
                    Bounds=[
                        n(
                            "IfcFaceOuterBound",
                            Bound=n("IfcPolyLoop", Polygon=[points[a], points[b], points[c]]),
                            Orientation=True,
                        )
                    ],
                )
                for a, b, c in tris.tolist()
            ]
            item = n("IfcShellBasedSurfaceModel", SbsmBoundary=[n("IfcOpenShell", CfsFaces=faces)])
        else:
            item = n(
                "IfcTriangulatedFaceSet",
                Coordinates=n("IfcCartesianPointList3D", CoordList=positions.tolist()),
                CoordIndex=(tris + 1).tolist(),
            )
        n("IfcStyledItem", Item=item, Styles=[self._style(piece.color_tbgr)])
        return item

    @property
    def _surface_type(self) -> str:
        return "SurfaceModel" if self.ifc2x3 else "Tessellation"

    def _representation(self, kind: str, items: list[Entity]) -> Entity:
        return self.new(
            "IfcShapeRepresentation",
            ContextOfItems=self.body,
            RepresentationIdentifier="Body",
            RepresentationType=kind,
            Items=items,
        )

    def representation_map(self, pieces: Sequence[Piece]) -> Entity | None:
        """The pieces (in their own coordinates) as an ``IfcRepresentationMap`` for ``product``'s
        instances; None when they hold no triangle."""
        items = [self._surface(p, np.asarray(p.positions, np.float64)) for p in pieces if len(p.indices)]
        if not items:
            return None
        return self.new(
            "IfcRepresentationMap",
            MappingOrigin=self.identity,
            MappedRepresentation=self._representation(self._surface_type, items),
        )

    def _operator(self, matrix: F64) -> Entity | None:
        """``matrix`` (4x4, a rotation with a uniform positive scale and a translation) as an
        ``IfcCartesianTransformationOperator3D``; None when it is not such a matrix."""
        m = matrix[:3, :3]
        det = float(np.linalg.det(m))
        if det <= 0:
            return None
        scale = det ** (1.0 / 3.0)
        q = m / scale
        if float(np.abs(q.T @ q - _I3).max()) > 1e-7:
            return None
        n = self.new
        return n(
            "IfcCartesianTransformationOperator3D",
            Axis1=n("IfcDirection", DirectionRatios=tuple(q[:, 0].tolist())),
            Axis2=n("IfcDirection", DirectionRatios=tuple(q[:, 1].tolist())),
            LocalOrigin=n("IfcCartesianPoint", Coordinates=tuple(matrix[:3, 3].tolist())),
            Scale=None if abs(scale - 1.0) < 1e-12 else scale,
            Axis3=n("IfcDirection", DirectionRatios=tuple(q[:, 2].tolist())),
        )

    def _placement(self, placement: F64) -> Entity:
        n = self.new
        origin = tuple(placement[:3, 3].tolist())
        rotation = placement[:3, :3]
        if (rotation == _I3).all():
            axes: dict[str, Any] = {}
        else:
            axes = {
                "Axis": n("IfcDirection", DirectionRatios=tuple(rotation[:, 2].tolist())),
                "RefDirection": n("IfcDirection", DirectionRatios=tuple(rotation[:, 0].tolist())),
            }
        local = n("IfcAxis2Placement3D", Location=n("IfcCartesianPoint", Coordinates=origin), **axes)
        return n("IfcLocalPlacement", PlacementRelTo=self.site_placement, RelativePlacement=local)

    @staticmethod
    def box(low: Sequence[float], high: Sequence[float], color_tbgr: int) -> Piece:
        """A box from ``low`` to ``high`` as 12 triangles (outward), thin axes given ``MIN_BOX``."""
        lo = np.array(low, np.float64)
        hi = np.array(high, np.float64)
        thin = hi - lo < MIN_BOX
        middle = (lo + hi) / 2
        lo = np.where(thin, middle - MIN_BOX / 2, lo)
        hi = np.where(thin, middle + MIN_BOX / 2, hi)
        corners = np.array([[(hi if (i >> k) & 1 else lo)[k] for k in range(3)] for i in range(8)])
        quads = ((0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5))
        tris = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], np.int64)
        return Piece(color_tbgr, corners, tris)

    # -- products ----------------------------------------------------------------------------------------

    def product(
        self,
        facts: ProductFacts,
        placement: F64,
        pieces: Iterable[Piece] = (),
        instances: Iterable[tuple[Entity, F64]] = (),
        *,
        local_pieces: Iterable[Piece] = (),
    ) -> Entity:
        """Write one product. ``placement`` (4x4, rigid): world from the element's coordinates;
        ``pieces`` its own triangles in world coordinates, ``local_pieces`` in its coordinates (a
        bounding box); ``instances`` (a ``representation_map``, world from part 4x4)."""
        n = self.new
        rotation = placement[:3, :3]
        origin = placement[:3, 3]
        inverse = np.eye(4)  # a rigid placement: the inverse rotation is the transpose
        inverse[:3, :3] = rotation.T
        inverse[:3, 3] = -(rotation.T @ origin)
        surfaces: list[Entity] = []
        for p in pieces:
            if len(p.indices):
                # local = R^T (world - origin), as rows
                local = (np.asarray(p.positions, np.float64) - origin) @ rotation
                surfaces.append(self._surface(p, local))
        for p in local_pieces:
            if len(p.indices):
                surfaces.append(self._surface(p, np.asarray(p.positions, np.float64)))
        mapped: list[Entity] = []
        for source, world_from_part in instances:
            target = inverse @ world_from_part
            operator = self._operator(target)
            if operator is None:  # not a similarity: its triangles, placed
                shape = source.MappedRepresentation
                for item in shape.Items:
                    surfaces.extend(self._flattened(item, target))
                continue
            mapped.append(n("IfcMappedItem", MappingSource=source, MappingTarget=operator))
        self.mapped_items += len(mapped)
        representation = None
        if mapped and surfaces:
            own = n(
                "IfcRepresentationMap",
                MappingOrigin=self.identity,
                MappedRepresentation=self._representation(self._surface_type, surfaces),
            )
            identity = n("IfcCartesianTransformationOperator3D", LocalOrigin=self.origin)
            mapped.append(n("IfcMappedItem", MappingSource=own, MappingTarget=identity))
            representation = self._representation("MappedRepresentation", mapped)
        elif mapped:
            representation = self._representation("MappedRepresentation", mapped)
        elif surfaces:
            representation = self._representation(self._surface_type, surfaces)
        kind = ifc_entity(facts.bis_class, self.new.known)
        element_hex = f"0x{facts.element_id:x}"
        name = facts.label or facts.code or f"{facts.bis_class.rsplit(':', 1)[-1]} {element_hex}"
        product = n(
            kind,
            GlobalId=self.global_id(facts.federation_guid),
            OwnerHistory=self.owner,
            Name=name,
            ObjectType=facts.bis_class,
            ObjectPlacement=self._placement(placement),
            Representation=(
                n("IfcProductDefinitionShape", Representations=[representation]) if representation else None
            ),
            Tag=element_hex,
        )
        self.products += 1
        self._contained.append(product)
        element_props: dict[str, Any] = {
            "ElementId": ("IfcIdentifier", element_hex),
            "FederationGuid": ("IfcIdentifier", facts.federation_guid) if facts.federation_guid else None,
            "Code": ("IfcText", facts.code) if facts.code else None,
            "UserLabel": ("IfcText", facts.label) if facts.label else None,
            "Category": ("IfcText", facts.category_name),
            "Model": ("IfcText", facts.model_name),
            "Class": ("IfcIdentifier", facts.bis_class),
            "GeometryFallback": ("IfcLabel", facts.fallback) if facts.fallback else None,
        }
        self._pset(product, "BIS_Element", element_props)
        if facts.properties:
            self._pset(product, "BIS_Properties", {k: _typed(v) for k, v in facts.properties.items()})
        self._member("BIS Model", facts.model_id, facts.model_name, product)
        self._member("BIS Category", facts.category_id, facts.category_name, product)
        return product

    def _flattened(self, item: Entity, target: F64) -> Iterable[Entity]:
        """A map's surface ``item`` re-made with ``target`` applied (for instances that are no
        similarity). IFC2X3 surface models are read back face by face."""
        styles = [s.Styles[0] for s in item.StyledByItem] if item.StyledByItem else []
        tbgr = next((k for k, v in self._styles.items() if styles and v == styles[0]), 0x00BBBBBB)
        if self.ifc2x3:
            points: list[tuple[float, float, float]] = []
            for face in item.SbsmBoundary[0].CfsFaces:
                points.extend(p.Coordinates for p in face.Bounds[0].Bound.Polygon)
            positions = np.array(points, np.float64).reshape(-1, 3)
            indices = np.arange(len(positions)).reshape(-1, 3)
        else:
            positions = np.array(item.Coordinates.CoordList, np.float64)
            indices = np.array(item.CoordIndex, np.int64) - 1
        placed = positions @ target[:3, :3].T + target[:3, 3]
        yield self._surface(Piece(tbgr, placed, indices), placed)

    def _pset(self, product: Entity, name: str, values: Mapping[str, Any]) -> None:
        n = self.new
        props = [
            n("IfcPropertySingleValue", Name=key, NominalValue=self.new.value(*typed))
            for key, typed in values.items()
            if typed is not None
        ]
        if not props:
            return
        pset = n(
            "IfcPropertySet",
            GlobalId=self._fresh_guid(),
            OwnerHistory=self.owner,
            Name=name,
            HasProperties=props,
        )
        n(
            "IfcRelDefinesByProperties",
            GlobalId=self._fresh_guid(),
            OwnerHistory=self.owner,
            RelatedObjects=[product],
            RelatingPropertyDefinition=pset,
        )

    def _member(self, kind: str, key: int, name: str, product: Entity) -> None:
        found = self._groups.get((kind, key))
        if found is None:
            group = self.new(
                "IfcGroup",
                GlobalId=self._fresh_guid(),
                OwnerHistory=self.owner,
                Name=name or f"0x{key:x}",
                Description=f"{kind} 0x{key:x}",
                ObjectType=kind,
            )
            found = self._groups[(kind, key)] = (group, [])
        found[1].append(product)

    # -- the file ----------------------------------------------------------------------------------------

    def finish(self) -> None:
        """The relationships that list every product (containment, groups): once, at the end."""
        n = self.new
        if self._contained:
            n(
                "IfcRelContainedInSpatialStructure",
                GlobalId=self._fresh_guid(),
                OwnerHistory=self.owner,
                RelatedElements=self._contained,
                RelatingStructure=self.site,
            )
        for (kind, _), (group, members) in self._groups.items():
            n(
                "IfcRelAssignsToGroup",
                GlobalId=self._fresh_guid(),
                OwnerHistory=self.owner,
                Name=kind,
                RelatedObjects=members,
                RelatingGroup=group,
            )
        self._contained = []
        self._groups = {}

    def write(self, path: Path) -> None:
        self.finish()
        self.f.write(str(path))


def weld(positions: F64, triangles: NDArray[np.int64]) -> tuple[F64, NDArray[np.int64]]:
    """Positions rounded to ``DIGITS`` decimals (the context's precision; ifcopenshell writes a short
    number several times faster than a full double) and the vertices that then coincide made one (the
    mesher splits vertices by normal; IFC faces carry none): fewer, shorter numbers to write."""
    rounded = np.round(positions, DIGITS) + 0.0  # + 0.0: no "-0." in the file
    if len(rounded) < 2:
        return rounded, triangles
    unique, inverse = np.unique(rounded, axis=0, return_inverse=True)
    return unique, inverse.reshape(-1)[triangles]


def _typed(value: Any) -> tuple[str, Any] | None:
    """An EC property value as an IFC value type and its value (None: not written)."""
    if value is None or isinstance(value, bytes | bytearray | memoryview):
        return None
    if isinstance(value, bool):
        return "IfcBoolean", value
    if isinstance(value, int):
        # IfcInteger is 64-bit in ifcopenshell, but ids beyond 2^53 read badly elsewhere: large as text
        return ("IfcInteger", value) if abs(value) < 2**31 else ("IfcText", str(value))
    if isinstance(value, float):
        return ("IfcReal", value) if np.isfinite(value) else ("IfcText", repr(value))
    if isinstance(value, str):
        return ("IfcText", value) if value else None
    hexid = getattr(value, "id", None)
    if isinstance(hexid, int):  # a navigation value: the id it points to
        return "IfcIdentifier", f"0x{hexid:x}"
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return "IfcText", _text(isoformat())
    return "IfcText", _text(value)
