"""Reading what an iModel file holds with twinbase's pure-Python reader (``twinbase.bim.imodel``,
``twinbase.bim.geolocation``), compared with what the real iTwin.js backend reads from the same files.

The truth is ``compat/dump-elements.mjs`` (core-backend from ``compat/node_modules``): every element's
``toJSON()``, its ``placement.calculateRange()``, every model, every subcategory's appearance, every
class's rows through ECSQL ``SELECT * FROM ONLY`` (ECDb resolves shared and overflow columns itself), the
fonts, and the geolocation. One node run dumps all the files:

- every public iModel in ``../shared/data/bim/`` and the chain baselines and expected states;
- the "features" chain's last state (``tests/support/chains.py``, made by iTwin.js): a schema whose 40
  properties overflow ``bis_GeometricElement3d`` into ``bis_GeometricElement3d_Overflow``;
- a file made here by ``compat/make-symbology.mjs``: a texture, a render material, appearances with every
  key, rotated 3D and 2D placements, a part, an ECEF location given by x/y vectors.

Node.js and the compat packages are required: without them the test fails, it never skips.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import pytest

from support.chains import load_chain, make_chain
from test_compat_imodels import ensure_native_modules
from twinbase.bim.ecprops import NavigationValue
from twinbase.bim.geolocation import ecef_transform
from twinbase.bim.identity import BimFormatError
from twinbase.bim.imodel import (
    KIND_2D,
    KIND_3D,
    KIND_PART,
    CorruptIModelError,
    IModelFile,
    Placement2d,
    Placement3d,
    SubCategoryAppearance,
    UnreadableProfileError,
    id64,
    parse_id64,
    tbgr_to_rgba,
)
from twinbase.bim.replay import UnsupportedProfileError

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "compat"
DATA = ROOT.parent / "shared" / "data" / "bim"
CHAINS = DATA / "chains"
PUBLIC_FILES = sorted([*DATA.glob("*.bim"), *DATA.glob("*.ibim")])
CHAIN_FILES = sorted(
    [
        *CHAINS.glob("ReadOnlyTest_2018-03/[0-3]/ReadOnlyTest.bim"),
        CHAINS / "imodels-clients-test-imodel" / "baseline.bim",
        *CHAINS.glob("imodelhub-SeedFile/*.bim"),
    ]
)
ALL_FILES = PUBLIC_FILES + CHAIN_FILES
NODE_TIMEOUT = 300

# What ../shared/data/README.md says the files hold: elements, with 3D geometry, with 2D geometry,
# geometry parts, render materials, and models by class.
README_COUNTS = {
    "Properties_60InstancesWithUrl2.ibim": {"elements": 104, "3d": 62, "2d": 0},
    "Building_Blocks.bim": {"elements": 252, "3d": 173, "parts": 6},
    "imodelnative_test.bim": {"elements": 46, "3d": 4, "2d": 0},
    "imodelnative_bc.bim": {"elements": 50, "3d": 5, "2d": 0},
    "3dLinestyle.bim": {"parts": 6, "materials": 2, "BisCore:LineStyle": 9},
    "LargeNumericRenderMaterialTextureId.bim": {
        "parts": 3,
        "materials": 1,
        "2d": 18,
        "models:BisCore:DrawingModel": 3,
        "models:BisCore:SheetModel": 3,
    },
    "proj.ibim": {"3d": 3},
}


def _name(path: Path) -> str:
    return str(path.relative_to(DATA)) if path.is_relative_to(DATA) else path.name


# -- the iTwin.js truth ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def features_last(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_native_modules()
    chain = load_chain(make_chain("features"))
    return chain.expected(len(chain.changesets))


@pytest.fixture(scope="session")
def symbology_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where ``itwinjs`` has iTwin.js write the symbology test file (``compat/lib/symbology.mjs``)."""
    return tmp_path_factory.mktemp("symbology") / "symbology.bim"


@pytest.fixture(scope="session")
def itwinjs(features_last: Path, symbology_file: Path) -> dict[Path, dict[str, Any]]:
    """What iTwin.js reads from every file, by path: one node process makes the symbology file and dumps
    them all (a backend start costs seconds, a file a fraction of one)."""
    ensure_native_modules()
    args = ["node", str(COMPAT / "dump-elements.mjs"), "--make-symbology", str(symbology_file)]
    for path in [*ALL_FILES, features_last]:
        args += ["--file", str(path)]
    proc = subprocess.run(args, cwd=COMPAT, capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False)
    assert proc.returncode == 0, f"dump-elements.mjs failed:\n{proc.stderr}"
    dumped = json.loads(proc.stdout)["files"]
    return {path: dumped[str(path)] for path in [*ALL_FILES, features_last, symbology_file]}


@pytest.fixture
def imodel(request: pytest.FixtureRequest) -> Iterator[IModelFile]:
    with IModelFile.open(request.param) as opened:
        yield opened


# -- comparison helpers ----------------------------------------------------------------------------------


def _ecsql(value: Any) -> Any:
    """A twinbase property value in the form ECSQL rows give it (ids hex, binary base64...)."""
    if isinstance(value, NavigationValue):
        out = {"Id": id64(value.id)}
        if value.rel_class_id is not None:
            out["RelECClassId"] = id64(value.rel_class_id)
        return out
    if isinstance(value, dt.datetime):
        text = value.replace(tzinfo=None).isoformat(timespec="milliseconds")
        return text + "Z" if value.tzinfo is not None else text
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return dict(zip("XYZ", value, strict=False))
    if isinstance(value, dict):
        return {k: _ecsql(v) for k, v in value.items() if v is not None}
    return value


def _same(mine: Any, theirs: Any, where: str) -> None:
    if isinstance(theirs, str) and theirs.startswith("0x") and isinstance(mine, int):
        assert id64(mine) == theirs, where
    elif isinstance(theirs, dict) and isinstance(mine, dict):
        assert set(mine) == set(theirs), f"{where}: {sorted(mine)} != {sorted(theirs)}"
        for key in theirs:
            _same(mine[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, float) or isinstance(mine, float):
        assert isinstance(mine, int | float) and not isinstance(mine, bool), where
        assert mine == theirs, f"{where}: {mine!r} != {theirs!r}"
    else:
        assert mine == theirs, f"{where}: {mine!r} != {theirs!r}"


def _close(a: Any, b: Any, tol: float = 1e-9) -> bool:
    return all(math.isclose(float(x), float(y), rel_tol=tol, abs_tol=tol) for x, y in zip(a, b, strict=True))


def _angle(angles: dict[str, Any], key: str) -> float:
    value = angles.get(key, 0.0)
    return float(value["degrees"]) if isinstance(value, dict) else float(value)


# -- every file opens and lists its elements as iTwin.js does --------------------------------------------


@pytest.mark.parametrize("path", ALL_FILES, ids=_name)
def test_every_file_opens_with_its_profile(path: Path) -> None:
    """All the public files and chain states have readable profiles (BeSQLite 3.1, ECDb 4.0, DgnDb 2.0),
    including the 2018 ones; none needs the unreadable-profile error."""
    with IModelFile.open(path) as imodel:
        assert imodel.profiles["be_Db"][:2] == (3, 1)
        assert imodel.profiles["ec_Db"][:2] == (4, 0)
        assert imodel.profiles["dgn_Db"][:2] == (2, 0)
        assert imodel.count_elements() == sum(1 for _ in imodel.elements())


@pytest.mark.parametrize("name", sorted(README_COUNTS))
def test_counts_the_data_readme_gives(name: str) -> None:
    want = README_COUNTS[name]
    with IModelFile.open(DATA / name) as imodel:
        elements = list(imodel.elements())
        got: dict[str, int] = {
            "elements": len(elements),
            "3d": sum(1 for e in elements if e.kind == KIND_3D and e.has_geometry),
            "2d": sum(1 for e in elements if e.kind == KIND_2D and e.has_geometry),
            "parts": sum(1 for _ in imodel.geometry_parts()),
            "materials": len(imodel.render_materials()),
        }
        for key in want:
            if key.startswith("models:"):
                got[key] = sum(1 for m in imodel.models() if m.class_full_name == key[7:])
            elif ":" in key:
                got[key] = sum(1 for e in elements if e.class_full_name == key)
        assert {k: got[k] for k in want} == want
        if name == "Properties_60InstancesWithUrl2.ibim":
            assert len(imodel.schemas()) == 18
        # geometric_only is exactly the 3D and 2D geometric elements (with or without a stream)
        geometric = [e.id for e in elements if e.kind in (KIND_3D, KIND_2D)]
        assert [e.id for e in imodel.elements(geometric_only=True)] == geometric


def test_chain_states_grow_by_one_brep_element_each() -> None:
    """ReadOnlyTest: 1 3D geometric element at the baseline, one more after each changeset; 21 2D ones
    (16 with geometry, 5 text annotations among them), 5 sheet models; the other chains hold no geometry."""
    for version, expected in enumerate((1, 2, 3, 4)):
        with IModelFile.open(CHAINS / "ReadOnlyTest_2018-03" / str(version) / "ReadOnlyTest.bim") as imodel:
            elements = list(imodel.elements(geometric_only=True))
            assert sum(1 for e in elements if e.is_3d and e.has_geometry) == expected
            assert sum(1 for e in elements if e.is_2d and e.has_geometry) == 16
            assert sum(1 for e in elements if e.is_2d) == 21
            assert sum(1 for e in elements if e.class_full_name == "BisCore:TextAnnotation2d") == 5
            assert sum(1 for m in imodel.models() if m.class_full_name == "BisCore:SheetModel") == 5
    for path in (
        CHAINS / "imodels-clients-test-imodel" / "baseline.bim",
        *CHAINS.glob("imodelhub-SeedFile/*.bim"),
    ):
        with IModelFile.open(path) as imodel:
            assert list(imodel.elements(geometric_only=True)) == []


def _all_dumped(itwinjs: dict[Path, dict[str, Any]]) -> Iterator[tuple[Path, dict[str, Any]]]:
    yield from itwinjs.items()


def test_elements_as_itwinjs_reads_them(itwinjs: dict[Path, dict[str, Any]]) -> None:
    """Ids, class, model, category, code, label, parent, federation guid, placement (3D, 2D, part box)
    and range of every element of every file, as iTwin.js ``toJSON()`` and ``calculateRange()``."""
    checked = 0
    for path, dump in _all_dumped(itwinjs):
        with IModelFile.open(path) as imodel:
            mine = {e.id_hex: e for e in imodel.elements()}
        assert sorted(mine) == sorted(e["id"] for e in dump["elements"]), path
        for theirs in dump["elements"]:
            where = f"{_name(path)} {theirs['id']}"
            if "error" in theirs:
                # iTwin.js cannot load it (the 2017 seed's view definition); twinbase still lists it.
                assert _name(path).startswith("chains/imodelhub-SeedFile"), theirs
                continue
            e = mine[theirs["id"]]
            assert e.class_full_name == theirs["classFullName"], where
            assert id64(e.model_id) == theirs["model"], where
            code = theirs["code"]
            assert (id64(e.code_spec_id), id64(e.code_scope_id), e.code[2]) == (
                code["spec"],
                code["scope"],
                code.get("value", ""),
            ), where
            assert e.user_label == theirs.get("userLabel"), where
            assert e.federation_guid == theirs.get("federationGuid"), where
            parent = theirs.get("parent")
            assert (None if e.parent_id is None else id64(e.parent_id)) == (parent and parent["id"]), where
            if "category" in theirs:
                assert e.category_id is not None and id64(e.category_id) == theirs["category"], where
            _check_placement(e.placement, theirs, where)
            if theirs["id"] in dump["ranges"]:
                want = dump["ranges"][theirs["id"]]
                got = e.range
                if want is None:
                    assert got is None, where
                else:
                    assert got is not None, where
                    assert _close(got[0], want["low"]) and _close(got[1], want["high"]), (
                        f"{where}: {got} != {want}"
                    )
            checked += 1
    assert checked > 1000


def _check_placement(placement: Placement3d | Placement2d | None, theirs: dict[str, Any], where: str) -> None:
    if theirs["classFullName"] == "BisCore:GeometryPart":
        assert isinstance(placement, Placement3d) and placement.bbox is not None, where
        assert _close(placement.bbox[0], theirs["bbox"]["low"]) and _close(
            placement.bbox[1], theirs["bbox"]["high"]
        )
        return
    if "placement" not in theirs:
        assert placement is None, where
        return
    want = theirs["placement"]
    bbox = want.get("bbox")
    if isinstance(placement, Placement2d):
        assert _close(placement.origin, want["origin"]), where
        angle = want.get("angle", 0.0)
        assert _close([placement.rotation], [angle["degrees"] if isinstance(angle, dict) else angle]), where
        assert placement.bbox is not None and _close(
            [*placement.bbox[0], *placement.bbox[1]], [*bbox[0], *bbox[1]]
        ), where
        return
    if placement is None:
        # no origin stored: iTwin.js shows a zero origin and a null box
        assert want["origin"] == [0, 0, 0] and bbox["low"][0] > 1e100, where
        return
    assert isinstance(placement, Placement3d), where
    assert _close(placement.origin, want["origin"]), where
    angles = want.get("angles", {})
    assert _close(
        (placement.yaw, placement.pitch, placement.roll),
        (_angle(angles, "yaw"), _angle(angles, "pitch"), _angle(angles, "roll")),
    ), where
    assert placement.bbox is not None, where
    assert _close(placement.bbox[0], bbox["low"]) and _close(placement.bbox[1], bbox["high"]), where


def test_properties_as_ecsql_reads_them(itwinjs: dict[Path, dict[str, Any]], features_last: Path) -> None:
    """Every property of every instance of every element, aspect and model class in every file (shared
    ``js``/``ps`` columns, the overflow table's ``os`` columns, structs in overflow columns, points,
    navigation properties with virtual RelECClassId, dates, GUIDs, arrays) equals ECSQL's value.
    GeometryStream is left out: ECSQL gives it decompressed, twinbase as stored (only its presence is
    compared)."""
    values = 0
    overflow_values = 0
    for path, dump in _all_dumped(itwinjs):
        with IModelFile.open(path) as imodel:
            overflow_columns = _overflow_properties(imodel)
            for class_name, rows in dump["rows"].items():
                mine = dict(imodel.class_properties(class_name))
                assert sorted(mine) == sorted(parse_id64(r["ECInstanceId"]) for r in rows), class_name
                for row in rows:
                    props = mine[parse_id64(row["ECInstanceId"])]
                    where = f"{_name(path)} {class_name} {row['ECInstanceId']}"
                    for key, theirs in row.items():
                        if key in ("ECInstanceId", "ECClassId"):
                            continue
                        assert key in props, f"{where}: no {key}"
                        if key == "GeometryStream":
                            assert props[key] is not None, where
                            continue
                        _same(_ecsql(props[key]), theirs, f"{where} {key}")
                        values += 1
                        if (class_name, key) in overflow_columns:
                            overflow_values += 1
                    for key, value in props.items():
                        if _ecsql(value) not in (None, {}):
                            assert key in row, f"{where}: {key}={value!r}, ECSQL has none"
    assert values > 10_000
    assert overflow_values > 40  # booster's DrivewayPathEdge structs and ChainTest:Widget P31..P39


def _overflow_properties(imodel: IModelFile) -> set[tuple[str, str]]:
    """(class, root property) pairs mapped to an overflow table (the mapping, read with SQLite)."""
    out = set()
    for cid, access in imodel.db.execute(
        "SELECT pm.ClassId, pp.AccessString FROM ec_PropertyMap pm"
        " JOIN ec_PropertyPath pp ON pp.Id=pm.PropertyPathId JOIN ec_Column col ON col.Id=pm.ColumnId"
        " JOIN ec_Table t ON t.Id=col.TableId WHERE t.Type=3"
    ):
        out.add((imodel.class_name(cid), access.split(".")[0]))
    return out


def test_overflow_and_struct_properties_are_where_ecdb_put_them(features_last: Path) -> None:
    """The features chain's Widget has 40 properties: P0..P30 in shared columns of
    bis_GeometricElement3d, the rest in its overflow table; booster's struct members are in overflow
    columns too. The reader finds them through the mapping, and reads one element per query or all of
    a class in one."""
    with IModelFile.open(features_last) as imodel:
        widgets = dict(imodel.class_properties("ChainTest:Widget"))
        assert widgets
        for eid, props in widgets.items():
            assert {f"P{i}" for i in range(40)} <= set(props)
            assert imodel.properties(eid) == props
        assert dict(imodel.properties_of(widgets)) == widgets
        mapped = _overflow_properties(imodel)
        assert {("ChainTest:Widget", f"P{i}") for i in range(31, 40)} <= mapped
    with IModelFile.open(DATA / "booster_structs.bim") as imodel:
        edges = dict(imodel.class_properties("Booster:DrivewayPathEdge"))
        parking = [p["ParkingLeft"] for p in edges.values() if p["ParkingLeft"] is not None]
        assert parking and all(set(p) >= {"ParkingWidth", "ParkingDepth", "IgnoreProblems"} for p in parking)
        assert ("Booster:DrivewayPathEdge", "ParkingLeft") in _overflow_properties(imodel)
        vertex = next(iter(dict(imodel.class_properties("Booster:DrivewayPathVertex")).values()))
        assert isinstance(vertex["Location"], tuple) and len(vertex["Location"]) == 3


def test_models_as_itwinjs_reads_them(itwinjs: dict[Path, dict[str, Any]]) -> None:
    for path, dump in _all_dumped(itwinjs):
        with IModelFile.open(path) as imodel:
            mine = {m.id_hex: m for m in imodel.models()}
        assert sorted(mine) == sorted(m["id"] for m in dump["models"]), path
        for theirs in dump["models"]:
            m = mine[theirs["id"]]
            where = f"{_name(path)} model {theirs['id']}"
            assert m.class_full_name == theirs["classFullName"], where
            assert id64(m.modeled_element_id) == theirs["modeledElement"]["id"], where
            assert id64(m.parent_model_id) == theirs["parentModel"], where
            assert m.is_private == theirs["isPrivate"] and m.is_template == theirs["isTemplate"], where
            assert m.name == theirs["name"], where
            assert m.json_properties == theirs.get("jsonProperties", {}), where
            assert m.is_2d == (m.class_full_name in ("BisCore:DrawingModel", "BisCore:SheetModel")), where
            if m.class_full_name == "BisCore:PhysicalModel":
                assert m.is_3d and m.is_spatial, where


def test_subcategory_appearances_as_itwinjs_reads_them(itwinjs: dict[Path, dict[str, Any]]) -> None:
    """Every subcategory's appearance as iTwin.js ``SubCategoryAppearance`` (including its quirk: a stored
    fill of 0 means "no fill colour", the line colour is used); default subcategories as iTwin.js takes
    them."""
    seen = 0
    for path, dump in _all_dumped(itwinjs):
        with IModelFile.open(path) as imodel:
            subs = {id64(s.id): s for s in imodel.subcategories()}
            categories = imodel.categories()
        assert sorted(subs) == sorted(dump["appearances"]), path
        for sid, theirs in dump["appearances"].items():
            a = subs[sid].appearance
            where = f"{_name(path)} subcategory {sid}"
            assert a.color == theirs["color"], where
            assert a.fill_color == theirs.get("fill", theirs["color"]), where
            assert a.transparency == theirs.get("transp", 0), where
            assert a.fill_transparency == theirs.get("transpFill", theirs.get("transp", 0)), where
            assert a.weight == theirs.get("weight", 0) and a.priority == theirs.get("priority", 0), where
            for mine, key in (
                (a.invisible, "invisible"),
                (a.dont_plot, "dontPlot"),
                (a.dont_snap, "dontSnap"),
                (a.dont_locate, "dontLocate"),
            ):
                assert mine == theirs.get(key, False), f"{where} {key}"
            assert (None if a.style_id is None else id64(a.style_id)) == theirs.get("style"), where
            assert (None if a.material_id is None else id64(a.material_id)) == theirs.get("material"), where
            seen += 1
        elements = {e["id"]: e for e in dump["elements"]}
        for category in categories:
            # IModel.getDefaultSubCategoryId: the category's id + 1, a SubCategory whose parent it is
            assert category.default_subcategory_id == category.id + 1, category
            sub = elements[id64(category.id + 1)]
            assert sub["classFullName"] == "BisCore:SubCategory" and sub["parent"]["id"] == id64(category.id)
            assert category.is_spatial == (
                elements[id64(category.id)]["classFullName"] == "BisCore:SpatialCategory"
            )
    assert seen > 100


def test_symbology_file_appearances_materials_textures(
    itwinjs: dict[Path, dict[str, Any]], symbology_file: Path
) -> None:
    dump = itwinjs[symbology_file]
    elements = {e["id"]: e for e in dump["elements"]}
    with IModelFile.open(symbology_file) as imodel:
        categories = {c.name: c for c in imodel.categories()}
        full = categories["Full appearance"]
        assert full.is_spatial and not categories["2D"].is_spatial
        default = next(s for s in full.subcategories if s.is_default).appearance
        # ColorDef.from(10, 20, 30, 40): TBGR 0x281e140a; alpha 255 - 40
        assert default.color == 0x281E140A and tbgr_to_rgba(default.color) == (10, 20, 30, 215)
        assert default.fill_color == 0xFF0000  # ColorDef.blue
        assert (default.transparency, default.fill_transparency, default.weight, default.priority) == (
            0.25,
            0.5,
            3,
            7,
        )
        assert default.invisible and default.dont_plot and default.dont_snap and default.dont_locate
        assert default.style_id == 7 and default.rgba == (10, 20, 30, 191)
        zero_fill = next(s for s in full.subcategories if s.name == "Zero fill").appearance
        assert zero_fill.fill_color == zero_fill.color == 0xFF and zero_fill.fill_transparency == 0.5
        assert categories["2D"].subcategories[0].appearance.priority == -3

        (material,) = imodel.render_materials()
        assert default.material_id == material.id
        (texture,) = imodel.textures()
        theirs = elements[id64(material.id)]
        render = theirs["jsonProperties"]["materialAssets"]["renderMaterial"]
        assert material.name == "painted" and material.palette_name == theirs["paletteName"] == "test palette"
        assert material.description == "a painted material"
        assert material.color == tuple(render["color"]) == (0.2, 0.4, 0.6)
        assert material.color_tbgr == 51 | (102 << 8) | (153 << 16)
        assert material.transparency == render["transmit"] == 0.3
        assert material.diffuse == 0.7 and material.specular == 0.1
        assert material.texture_maps == {"Pattern": texture.id}
        assert id64(texture.id) == render["Map"]["Pattern"]["TextureId"]
        tex = elements[id64(texture.id)]
        assert (texture.name, texture.format, texture.description) == (
            "checker",
            tex["format"],
            tex["description"],
        )
        assert texture.data == base64.b64decode(tex["data"].split(";", 1)[1])
        assert texture.data.startswith(b"\x89PNG") and (texture.width, texture.height) == (0, 0)

        (part,) = list(imodel.geometry_parts())
        assert part.bbox == ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
        assert part.geometry_stream and part.geometry_stream[:2] != b"\0\0"
        drawn = imodel.element(next(e.id for e in imodel.elements() if e.user_label == "rotated outline"))
        assert drawn is not None and drawn.geometry_stream is not None and drawn.kind == KIND_2D
        assert drawn.range is not None and drawn.range[0][2] == -1.0 and drawn.range[1][2] == 1.0
        child = next(e for e in imodel.elements() if e.user_label == "child box")
        assert child.federation_guid == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        assert child.geometry_stream is None and imodel.element(child.id, with_geometry=False) == child


def test_render_material_texture_ids_are_exact_64_bit_ids(itwinjs: dict[Path, dict[str, Any]]) -> None:
    """LargeNumericRenderMaterialTextureId.bim stores texture ids as JSON numbers beyond 2^53; they are
    read exactly, the ids iTwin.js shows as hex."""
    path = DATA / "LargeNumericRenderMaterialTextureId.bim"
    with IModelFile.open(path) as imodel:
        (material,) = imodel.render_materials()
    theirs = next(e for e in itwinjs[path]["elements"] if e["id"] == id64(material.id))
    maps = theirs["jsonProperties"]["materialAssets"]["renderMaterial"]["Map"]
    assert {k: id64(v) for k, v in material.texture_maps.items()} == {
        k: v["TextureId"] for k, v in maps.items()
    }
    assert material.texture_maps["Bump"] == 2**64 - 1
    assert material.color is None and material.transparency is None


def test_fonts_as_itwinjs_lists_them(itwinjs: dict[Path, dict[str, Any]]) -> None:
    for path, dump in _all_dumped(itwinjs):
        with IModelFile.open(path) as imodel:
            mine = sorted((f.id, f.type, f.name) for f in imodel.fonts())
        assert mine == sorted((f["id"], f["type"], f["name"]) for f in dump["fonts"]), path


def test_geolocation_as_itwinjs_reads_it(itwinjs: dict[Path, dict[str, Any]], symbology_file: Path) -> None:
    """Project extents (with iTwin.js' 1 m minimum: mirukuru's stored z extent is 1 mm), global origin and
    the ECEF transform (from angles, or from x/y vectors) of every file; the GCS of mirukuru is the binary
    type-66 blob and is reported as such, undecoded (iTwin.js reports none without its GCS workspace)."""
    geolocated = []
    for path, dump in _all_dumped(itwinjs):
        theirs = dump["geolocation"]
        with IModelFile.open(path) as imodel:
            geo = imodel.geolocation()
        where = _name(path)
        assert _close(geo.project_extents[0], theirs["projectExtents"]["low"]), where
        assert _close(geo.project_extents[1], theirs["projectExtents"]["high"]), where
        assert _close(geo.global_origin, theirs["globalOrigin"]), where
        assert geo.is_geolocated == theirs["isGeoLocated"], where
        if geo.ecef_location is not None:
            geolocated.append(path)
            ecef = theirs["ecefLocation"]
            matrix = ecef_transform(geo.ecef_location)
            assert np.allclose(matrix[:3], np.array(ecef["transform"]), rtol=0, atol=1e-9), where
            assert np.array_equal(matrix[3], [0, 0, 0, 1])
            assert _close(geo.ecef_location.origin, ecef["origin"]), where
            carto = ecef.get("cartographicOrigin")
            if carto is None:
                assert geo.ecef_location.cartographic_origin is None, where
            else:
                c = geo.ecef_location.cartographic_origin
                assert c is not None and _close(
                    (c.longitude, c.latitude, c.height),
                    (carto["longitude"], carto["latitude"], carto["height"]),
                ), where
        assert theirs.get("geographicCoordinateSystem") is None, where
    assert {p.name for p in geolocated} == {"mirukuru.ibim", "booster_structs.bim", "symbology.bim"}
    with IModelFile.open(DATA / "mirukuru.ibim") as imodel:
        geo = imodel.geolocation()
    assert geo.stored_extents is not None and geo.stored_extents[1][2] == 0.0005
    with IModelFile.open(DATA / "LargeNumericRenderMaterialTextureId.bim") as imodel:
        unset = imodel.geolocation()  # no Extents stored: the native default, as iTwin.js reports it
    assert unset.stored_extents is None and unset.project_extents == ((-50, -50, -10), (50, 50, 30))
    assert geo.gcs is not None and geo.gcs.kind == "type66" and not geo.gcs.decoded and geo.gcs.json is None
    assert geo.gcs.raw is not None and len(geo.gcs.raw) == 1498 and b"UTM84-53N" in geo.gcs.raw
    with IModelFile.open(DATA / "booster_structs.bim") as imodel:
        booster = imodel.geolocation()
    assert booster.gcs is None and booster.ecef_location is not None
    # a point of the iModel goes where the transform says: the project centre lands near the ECEF origin
    centre = ecef_transform(booster.ecef_location) @ np.array([0.0, 0.0, 0.0, 1.0])
    assert np.allclose(centre[:3], booster.ecef_location.origin)
    assert 6.3e6 < float(np.linalg.norm(centre[:3])) < 6.4e6  # on the Earth's surface


# -- classes, filters, bulk placements --------------------------------------------------------------------


def test_class_names_and_is_a() -> None:
    with IModelFile.open(DATA / "LargeNumericRenderMaterialTextureId.bim") as imodel:
        geo3 = imodel.class_id("BisCore:GeometricElement3d")
        assert (
            imodel.class_id("bis.GeometricElement3d") == geo3 == imodel.class_id("biscore:geometricelement3d")
        )
        assert imodel.class_name(geo3) == "BisCore:GeometricElement3d"
        physical = imodel.class_id("Generic:PhysicalObject")
        assert imodel.is_a(physical, "BisCore:GeometricElement3d") and imodel.is_a(
            physical, "BisCore:Element"
        )
        assert not imodel.is_a(physical, "BisCore:GeometricElement2d") and not imodel.is_a(
            physical, "No:Such"
        )
        assert imodel.is_a(imodel.class_id("BisCore:DrawingGraphic"), "BisCore:GeometricElement2d")
        assert imodel.is_a(imodel.class_id("BisCore:GeometryPart"), "BisCore:DefinitionElement")
        with pytest.raises(KeyError):
            imodel.class_id("BisCore:NoSuchClass")

        by_class = [e.class_full_name for e in imodel.elements(classes=["BisCore:GeometricElement2d"])]
        assert by_class == ["BisCore:DrawingGraphic"] * 18
        spatial = [m.id for m in imodel.models() if m.is_spatial]
        in_models = list(imodel.elements(model_ids=spatial))
        assert in_models and all(e.model_id in spatial for e in in_models)
        assert {e.class_full_name for e in in_models} == {"Generic:PhysicalObject", "Generic:SpatialLocation"}
        parts = list(imodel.elements(classes=["BisCore:GeometryPart"]))
        assert len(parts) == 3 and all(e.kind == KIND_PART and e.has_geometry for e in parts)
        # batches: the same elements whatever the batch size
        assert list(imodel.elements(batch_size=7)) == list(imodel.elements())
        # id range: a closed range in id order, across batches, with the other filters; open ends
        everything = list(imodel.elements())
        ids = [e.id for e in everything]
        lo, hi = ids[5], ids[-6]
        ranged = list(imodel.elements(id_min=lo, id_max=hi, batch_size=7))
        assert ranged == [e for e in everything if lo <= e.id <= hi]
        assert list(imodel.elements(id_min=lo)) == everything[5:]
        assert list(imodel.elements(id_max=hi)) == everything[:-5]
        geo = [e.id for e in imodel.elements(geometric_only=True)]
        assert [e.id for e in imodel.elements(geometric_only=True, id_min=geo[1], id_max=geo[2])] == geo[1:3]
        assert list(imodel.elements(id_min=hi, id_max=lo)) == []


def test_placement_arrays_match_the_iterator() -> None:
    with IModelFile.open(DATA / "Building_Blocks.bim") as imodel:
        arrays = imodel.placements()
        elements = {e.id: e for e in imodel.elements(geometric_only=True)}
    assert len(arrays) == 173
    low, high = arrays.ranges()
    for n, eid in enumerate(arrays.ids.tolist()):
        rng = elements[eid].range
        assert rng is not None
        assert np.allclose(low[n], rng[0], atol=1e-9) and np.allclose(high[n], rng[1], atol=1e-9)
        assert np.allclose(arrays.rotations()[n], np.array(elements[eid].placement.rotation()))  # type: ignore[union-attr]


def test_appearance_json_rules() -> None:
    assert SubCategoryAppearance.from_json(None) == SubCategoryAppearance()
    a = SubCategoryAppearance.from_json(
        {"color": -1, "fill": "#102030", "weight": 2.7, "style": "0x0", "material": 5}
    )
    assert a.color == 0xFFFFFFFF and a.fill_color == 0x302010 and a.weight == 2
    assert a.style_id is None and a.material_id == 5 and a.fill_transparency == 0.0


# -- bad input -------------------------------------------------------------------------------------------


def test_not_sqlite_not_an_imodel_truncated_missing(tmp_path: Path) -> None:
    text = tmp_path / "text.bim"
    text.write_text("this is not a database\n" * 10)
    with pytest.raises(BimFormatError, match="not a SQLite database"):
        IModelFile.open(text)
    plain = tmp_path / "plain.db"
    with sqlite3.connect(plain) as conn:
        conn.execute("CREATE TABLE t(x)")
    with pytest.raises(BimFormatError, match="without the BeDb application id"):
        IModelFile.open(plain)
    truncated = tmp_path / "truncated.bim"
    data = (DATA / "Building_Blocks.bim").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptIModelError, match="truncated"):
        IModelFile.open(truncated)
    with pytest.raises(BimFormatError, match="no such iModel file"):
        IModelFile.open(tmp_path / "missing.bim")
    empty = tmp_path / "empty.bim"
    empty.write_bytes(b"")
    with pytest.raises(BimFormatError, match="not a SQLite database"):
        IModelFile.open(empty)


def test_a_damaged_page_is_a_typed_error(tmp_path: Path) -> None:
    """bis_Element's root page overwritten: the file opens (the schema is intact), listing the elements
    raises CorruptIModelError, not a bare SQLite error."""
    copy = tmp_path / "damaged.bim"
    shutil.copyfile(DATA / "Building_Blocks.bim", copy)
    with sqlite3.connect(copy) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='bis_Element'").fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    with open(copy, "r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xa5" * page_size)
    with IModelFile.open(copy) as imodel, pytest.raises(CorruptIModelError, match="damaged"):
        list(imodel.elements())


@pytest.mark.parametrize(
    ("namespace", "version", "word"),
    [("ec_Db", (3, 2, 0, 0), "older"), ("dgn_Db", (2, 1, 0, 0), "newer"), ("be_Db", None, "no BeSQLite")],
)
def test_an_unknown_profile_is_refused_clearly(
    tmp_path: Path, namespace: str, version: tuple[int, ...] | None, word: str
) -> None:
    copy = tmp_path / "profile.bim"
    shutil.copyfile(DATA / "proj.ibim", copy)
    with sqlite3.connect(copy) as conn:
        if version is None:
            conn.execute("DELETE FROM be_Prop WHERE Namespace=? AND Name='SchemaVersion'", (namespace,))
        else:
            value = json.dumps(dict(zip(("major", "minor", "sub1", "sub2"), version, strict=True)))
            conn.execute(
                "UPDATE be_Prop SET StrData=? WHERE Namespace=? AND Name='SchemaVersion'", (value, namespace)
            )
    with pytest.raises(UnreadableProfileError, match=word) as caught:
        IModelFile.open(copy)
    assert isinstance(caught.value, UnsupportedProfileError) and isinstance(caught.value, BimFormatError)


def test_a_wal_with_data_is_read_not_ignored(tmp_path: Path) -> None:
    """A file whose -wal holds changes (a briefcase still open elsewhere) is opened without ``immutable``,
    so what the WAL holds is read; without a WAL, ``immutable`` needs no lock or -shm."""
    copy = tmp_path / "wal.bim"
    shutil.copyfile(DATA / "proj.ibim", copy)
    writer = apsw.Connection(str(copy))
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        (first,) = writer.execute("SELECT min(ElementId) FROM bis_GeometricElement3d").fetchone()
        writer.execute("UPDATE bis_Element SET UserLabel='from the WAL' WHERE Id=?", (first,))
        assert Path(f"{copy}-wal").stat().st_size > 0
        with IModelFile.open(copy) as imodel:
            element = imodel.element(first)
            assert element is not None and element.user_label == "from the WAL"
    finally:
        writer.close()
    assert not Path(f"{copy}-wal").exists()
    with IModelFile.open(copy) as imodel:
        element = imodel.element(first)
        assert element is not None and element.user_label == "from the WAL"
