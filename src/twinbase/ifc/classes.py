"""Which IFC entity a BIS class becomes.

The mapping goes by the BIS class's name without its schema (``ArchitecturalPhysical:Wall`` -> ``Wall``),
case-insensitive, so the building domain schemas (ArchitecturalPhysical, StructuralPhysical,
BuildingPhysical, and connector schemas that use the same names) map alike:

==============================================  ==========================================
BIS class name                                  IFC entity (IFC2X3 where it differs)
==============================================  ==========================================
Wall, WallStandardCase, WallPart                IfcWall
CurtainWall                                     IfcCurtainWall
Slab, Floor, Deck, FloorSlab, RoofSlab          IfcSlab
Roof                                            IfcRoof
Beam, Girder, Joist, Purlin                     IfcBeam
Column                                          IfcColumn
Door                                            IfcDoor
Window                                          IfcWindow
Stair, StairFlight                              IfcStair
Ramp                                            IfcRamp
Railing, Handrail                               IfcRailing
Plate                                           IfcPlate
Member, Brace, Truss                            IfcMember
Footing, SpreadFooting, StripFooting            IfcFooting
Pile                                            IfcPile
Covering, Ceiling                               IfcCovering
Furniture                                       IfcFurniture (IfcFurnishingElement)
Pipe, PipeSegment                               IfcPipeSegment (IfcFlowSegment)
Duct, DuctSegment                               IfcDuctSegment (IfcFlowSegment)
anything else                                   IfcBuildingElementProxy
==============================================  ==========================================

The BIS class itself is always kept: the product's ``ObjectType`` and the ``BIS_Element`` property set.
"""

from __future__ import annotations

PROXY = "IfcBuildingElementProxy"

_BY_NAME: dict[str, tuple[str, ...]] = {
    # name -> IFC entities, the first the schema knows wins
    "wall": ("IfcWall",),
    "wallstandardcase": ("IfcWall",),
    "wallpart": ("IfcWall",),
    "curtainwall": ("IfcCurtainWall",),
    "slab": ("IfcSlab",),
    "floor": ("IfcSlab",),
    "deck": ("IfcSlab",),
    "floorslab": ("IfcSlab",),
    "roofslab": ("IfcSlab",),
    "roof": ("IfcRoof",),
    "beam": ("IfcBeam",),
    "girder": ("IfcBeam",),
    "joist": ("IfcBeam",),
    "purlin": ("IfcBeam",),
    "column": ("IfcColumn",),
    "door": ("IfcDoor",),
    "window": ("IfcWindow",),
    "stair": ("IfcStair",),
    "stairflight": ("IfcStair",),
    "ramp": ("IfcRamp",),
    "railing": ("IfcRailing",),
    "handrail": ("IfcRailing",),
    "plate": ("IfcPlate",),
    "member": ("IfcMember",),
    "brace": ("IfcMember",),
    "truss": ("IfcMember",),
    "footing": ("IfcFooting",),
    "spreadfooting": ("IfcFooting",),
    "stripfooting": ("IfcFooting",),
    "pile": ("IfcPile",),
    "covering": ("IfcCovering",),
    "ceiling": ("IfcCovering",),
    "furniture": ("IfcFurniture", "IfcFurnishingElement"),
    "pipe": ("IfcPipeSegment", "IfcFlowSegment"),
    "pipesegment": ("IfcPipeSegment", "IfcFlowSegment"),
    "duct": ("IfcDuctSegment", "IfcFlowSegment"),
    "ductsegment": ("IfcDuctSegment", "IfcFlowSegment"),
}


def ifc_entity(bis_class: str, known: frozenset[str]) -> str:
    """The IFC entity of ``bis_class`` ("Schema:Class") among the entity names ``known`` (lower case)
    of the target schema."""
    name = bis_class.rsplit(":", 1)[-1].rsplit(".", 1)[-1].lower()
    for candidate in _BY_NAME.get(name, ()):
        if candidate.lower() in known:
            return candidate
    return PROXY
