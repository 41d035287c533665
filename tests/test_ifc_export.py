"""The IFC writer of issue #15 (``twinbase.export.ifc.write_ifc``) on real iModels: the shared ones and
the generated one with every geometry kind. Each file written opens in ifcopenshell, validates with
``ifcopenshell.validate`` (0 errors), has one product per 3D geometric element carrying the element id
and federation guid, and ifcopenshell's geometry iterator finds, per element, the bounds (1 mm) and
surface area (1%) of twinbase's meshes."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.guid
import numpy as np
import pytest

from support.geometry_truth import make_geometry
from support.ifc_check import expected_geometry, geometric_elements, geometry_by_product, validation_errors
from twinbase.bim.geolocation import read_geolocation
from twinbase.bim.imodel import IModelFile
from twinbase.bim.tessellate import StrokeOptions
from twinbase.export.config import TilerConfig
from twinbase.export.ifc import IFC_VERSIONS, IfcExportError, write_ifc
from twinbase.ifc.georef import geodetic, transverse_mercator, utm_zone

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bim"
SHARED = sorted(p for p in DATA.glob("*") if p.suffix in (".bim", ".ibim"))
# Coarser than the export's default (1 mm chord) keeps the big shared meshes quick; the same options
# go to the writer and to the expected meshes.
CHORD = 0.01
ANGLE = math.radians(15)
OPTIONS = StrokeOptions(CHORD, ANGLE)


def _write(bim: Path, out: Path, version: str = "IFC4 RV 1.2", **kw: Any) -> dict[str, Any]:
    return write_ifc(bim, out, ifc_version=version, chord_tolerance=CHORD, angle_tolerance=ANGLE, **kw)


def _check(bim: Path, out: Path, stats: dict[str, Any], model_ids: set[int] | None = None) -> Any:
    """Every rule of the issue on one written file; answers the opened file."""
    f = ifcopenshell.open(str(out))
    assert validation_errors(f) == []
    elements = geometric_elements(bim, model_ids)
    products = {p.Tag: p for p in f.by_type("IfcElement") if p.Tag and p.Tag.startswith("0x")}
    assert sorted(products) == sorted(elements), "one product per 3D geometric element"
    assert stats["products"] == len(elements)
    for tag, guid in elements.items():
        product = products[tag]
        if guid is not None:
            assert product.GlobalId == ifcopenshell.guid.compress(guid.replace("-", ""))
        psets = {
            rel.RelatingPropertyDefinition.Name: {
                p.Name: p.NominalValue.wrappedValue for p in rel.RelatingPropertyDefinition.HasProperties
            }
            for rel in product.IsDefinedBy
        }
        assert psets["BIS_Element"]["ElementId"] == tag
        if guid is not None:
            assert psets["BIS_Element"]["FederationGuid"] == guid
    assert len({p.GlobalId for p in f.by_type("IfcRoot")}) == len(f.by_type("IfcRoot"))
    # The geometry, as ifcopenshell tessellates it, against twinbase's meshes (or the fallback box).
    expected = expected_geometry(bim, OPTIONS, model_ids)
    found = geometry_by_product(f)
    by_tag = {f.by_id(pid).Tag: figures for pid, figures in found.items()}
    assert sorted(by_tag) == sorted(expected)
    for tag, want in expected.items():
        got = by_tag[tag]
        assert np.abs(got.low - want.low).max() <= 1e-3, (tag, got.low, want.low)
        assert np.abs(got.high - want.high).max() <= 1e-3, (tag, got.high, want.high)
        assert abs(got.area - want.area) <= max(0.01 * want.area, 1e-6), (tag, got.area, want.area)
    return f


@pytest.fixture(scope="module")
def generated() -> Path:
    return make_geometry("truth")


def test_generated_imodel_with_every_geometry_kind(generated: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.ifc"
    stats = _write(generated, out)
    assert stats["elementsWithErrors"] == 0
    assert stats["mappedItems"] > 0 and stats["representationMaps"] > 0
    f = _check(generated, out, stats)
    # parts are shared: fewer maps than mapped items, every map used through IfcMappedItem
    assert len(f.by_type("IfcRepresentationMap")) < len(f.by_type("IfcMappedItem"))
    assert f.by_type("IfcTriangulatedFaceSet") and f.by_type("IfcSurfaceStyle")
    # colours and transparency: every face set styled
    for item in f.by_type("IfcTriangulatedFaceSet"):
        assert item.StyledByItem and item.StyledByItem[0].Styles[0].is_a("IfcSurfaceStyle")
    assert any(r.Transparency for r in f.by_type("IfcSurfaceStyleRendering"))
    # models and categories as groups, every product in the site
    kinds = {g.ObjectType for g in f.by_type("IfcGroup")}
    assert kinds == {"BIS Model", "BIS Category"}
    (contained,) = f.by_type("IfcRelContainedInSpatialStructure")
    assert len(contained.RelatedElements) == stats["products"]


@pytest.mark.parametrize("path", SHARED, ids=[p.name for p in SHARED])
def test_shared_imodels(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.ifc"
    stats = _write(path, out)
    _check(path, out, stats)
    assert sum(stats["fallbacks"].values()) + stats["noBody"] <= stats["products"]
    if path.name == "Building_Blocks.bim":
        assert stats["mappedItems"] == 173 and stats["representationMaps"] == 6


@pytest.mark.parametrize("version", sorted(IFC_VERSIONS))
def test_every_ifc_version_writes_a_valid_file(version: str, tmp_path: Path) -> None:
    for name in ("Building_Blocks.bim", "LargeNumericRenderMaterialTextureId.bim", "booster_structs.bim"):
        out = tmp_path / f"{name}.ifc"
        stats = _write(DATA / name, out, version)
        f = _check(DATA / name, out, stats)
        assert f.schema_identifier == IFC_VERSIONS[version]
        assert stats["skipped2d"] == (18 if name.startswith("LargeNumeric") else 0)


def test_model_ids_restrict_the_products(tmp_path: Path) -> None:
    bim = DATA / "LargeNumericRenderMaterialTextureId.bim"
    with IModelFile.open(bim) as imodel:
        physical = {e.model_id for e in imodel.elements(geometric_only=True) if e.kind == 3}
    (model,) = physical
    out = tmp_path / "one.ifc"
    stats = _write(bim, out, model_ids={model})
    _check(bim, out, stats, {model})
    assert stats["products"] == 6
    other = tmp_path / "none.ifc"
    stats = _write(bim, other, model_ids={123456})
    f = ifcopenshell.open(str(other))
    assert stats["products"] == 0 and not f.by_type("IfcElement")
    assert validation_errors(f) == []


def test_geolocated_imodel_has_a_map_conversion(tmp_path: Path) -> None:
    bim = DATA / "booster_structs.bim"
    out = tmp_path / "geo.ifc"
    stats = _write(bim, out)
    f = ifcopenshell.open(str(out))
    (conversion,) = f.by_type("IfcMapConversion")
    crs = conversion.TargetCRS
    assert crs.is_a("IfcProjectedCRS") and crs.Name == stats["crs"] and crs.Name.startswith("EPSG:326")
    assert 160_000 < conversion.Eastings < 840_000 and 0 < conversion.Northings < 9_400_000
    assert math.isclose(math.hypot(conversion.XAxisAbscissa, conversion.XAxisOrdinate), 1.0, rel_tol=1e-9)
    with IModelFile.open(bim) as imodel:
        location = read_geolocation(imodel).ecef_location
    assert location is not None and location.cartographic_origin is not None
    # the site's reference point is the model origin: the ECEF origin, near the cartographic origin
    (site,) = f.by_type("IfcSite")
    lat = sum(v / 60**i for i, v in enumerate(site.RefLatitude[:3])) + site.RefLatitude[3] / 3.6e9
    assert abs(lat - math.degrees(location.cartographic_origin.latitude)) < 0.05
    # IFC2X3 has no map conversion: the site's latitude and longitude only
    stats = _write(bim, tmp_path / "geo2x3.ifc", "IFC2x3")
    f2 = ifcopenshell.open(str(tmp_path / "geo2x3.ifc"))
    assert f2.by_type("IfcSite")[0].RefLatitude == site.RefLatitude
    # a model without a location has neither
    stats = _write(DATA / "proj.ibim", tmp_path / "plain.ifc")
    assert not stats["georeferenced"]
    assert not ifcopenshell.open(str(tmp_path / "plain.ifc")).by_type("IfcMapConversion")


def test_utm_projection_figures() -> None:
    # on the central meridian: easting 500 km; northing k0 times the meridian arc (1 degree: 110574.389 m)
    east, north = transverse_mercator(0.0, 3.0, 31)
    assert abs(east - 500_000.0) < 1e-6 and abs(north) < 1e-6
    east, north = transverse_mercator(1.0, 3.0, 31)
    assert abs(east - 500_000.0) < 1e-6 and abs(north - 0.9996 * 110_574.389) < 0.05
    # symmetric about the central meridian, and the southern false northing
    e1, n1 = transverse_mercator(45.0, 4.0, 31)
    e2, n2 = transverse_mercator(45.0, 2.0, 31)
    assert abs((e1 - 500_000) + (e2 - 500_000)) < 1e-6 and abs(n1 - n2) < 1e-6
    south = transverse_mercator(-45.0, 3.0, 31)[1]
    assert south == pytest.approx(10_000_000 - transverse_mercator(45.0, 3.0, 31)[1])
    assert utm_zone(48.85, 2.29) == 31 and utm_zone(-33.9, 151.2) == 56
    # ECEF -> geodetic: a point 100 m above (lat 45, lon 10)
    lat, lon, h = math.radians(45.0), math.radians(10.0), 100.0
    a, e2 = 6378137.0, (1 / 298.257223563) * (2 - 1 / 298.257223563)
    n = a / math.sqrt(1 - e2 * math.sin(lat) ** 2)
    xyz = (
        (n + h) * math.cos(lat) * math.cos(lon),
        (n + h) * math.cos(lat) * math.sin(lon),
        (n * (1 - e2) + h) * math.sin(lat),
    )
    got = geodetic(xyz)
    assert got[0] == pytest.approx(45.0, abs=1e-9) and got[1] == pytest.approx(10.0, abs=1e-9)
    assert got[2] == pytest.approx(100.0, abs=1e-4)


@pytest.mark.parametrize("kind", ["not-sqlite", "truncated", "missing"])
def test_a_file_that_is_no_imodel_raises_and_leaves_no_output(kind: str, tmp_path: Path) -> None:
    bim = tmp_path / "bad.bim"
    if kind == "not-sqlite":
        bim.write_bytes(b"this is not an iModel\n" * 100)
    elif kind == "truncated":
        shutil.copyfile(DATA / "Building_Blocks.bim", bim)
        with bim.open("r+b") as handle:
            handle.truncate(200_000)
    out = tmp_path / "out" / "model.ifc"
    out.parent.mkdir()
    with pytest.raises(IfcExportError) as caught:
        _write(bim, out)
    assert str(caught.value)
    assert list(out.parent.iterdir()) == []


def test_unknown_version_raises(tmp_path: Path) -> None:
    with pytest.raises(IfcExportError, match="ifcVersion"):
        write_ifc(DATA / "proj.ibim", tmp_path / "x.ifc", ifc_version="IFC5")
    assert not (tmp_path / "x.ifc").exists()


def test_default_tolerances_are_the_mesh_exports(tmp_path: Path) -> None:
    stats = write_ifc(DATA / "proj.ibim", tmp_path / "p.ifc", ifc_version="IFC4.3")
    assert stats["schema"] == "IFC4X3_ADD2" and stats["products"] == 3
    assert TilerConfig().chord_tolerance == 0.001
