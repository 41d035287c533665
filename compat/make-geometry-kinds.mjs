// Makes a snapshot iModel holding one element per geometry kind, with the real iTwin.js backend, and
// writes what iTwin.js itself reports for each element's geometry, so twinbase's GeometryStream decoder
// (src/twinbase/bim/geometry) can be compared with it (tests/test_bim_geometry_stream.py).
//
//   node compat/make-geometry-kinds.mjs <output dir>
//
// Output: <dir>/geometry-kinds.bim and <dir>/geometry-kinds.json =
//   { elements: [{ id, label, table: "3d"|"2d"|"part", geom: <GeometryStreamProps JSON>, placement, bbox }],
//     ids: { material, texture, subcategory, category, drawingCategory } }
// where geom is `getElement({ id, wantGeometry: true, wantBRepData: true }).geom`: the JSON form the native
// library makes from the stored GeometryStream blob (the same blob twinbase decodes).

import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";

import {
  DefinitionModel,
  DocumentListModel,
  Drawing,
  DrawingCategory,
  IModelHost,
  PhysicalModel,
  RenderMaterialElement,
  SnapshotDb,
  SpatialCategory,
  SubCategory,
  Texture,
} from "@itwin/core-backend";
import { Logger, LogLevel } from "@itwin/core-bentley";
import {
  AreaPattern,
  BackgroundFill,
  BRepGeometryOperation,
  ElementGeometry,
  Code,
  ColorDef,
  FillDisplay,
  GeometryClass,
  GeometryParams,
  GeometryStreamBuilder,
  Gradient,
  IModel,
  ImageGraphic,
  ImageGraphicCorners,
  ImageSourceFormat,
  SubCategoryAppearance,
  TextString,
} from "@itwin/core-common";
import {
  AkimaCurve3d,
  Angle,
  AngleSweep,
  Arc3d,
  BentleyGeometryFlatBuffer,
  Box,
  BSplineCurve3d,
  BSplineCurve3dH,
  BSplineSurface3d,
  BSplineSurface3dH,
  Cone,
  IModelJson,
  IndexedPolyface,
  IntegratedSpiral3d,
  InterpolationCurve3d,
  LinearSweep,
  LineSegment3d,
  LineString3d,
  Loop,
  Matrix3d,
  ParityRegion,
  Path,
  Point2d,
  Point3d,
  Point4d,
  PointString3d,
  PolyfaceBuilder,
  Range3d,
  Ray3d,
  RotationalSweep,
  RuledSweep,
  Segment1d,
  Sphere,
  TorusPipe,
  Transform,
  UnionRegion,
  Vector3d,
  WeightStyle,
  YawPitchRollAngles,
} from "@itwin/core-geometry";

const require = createRequire(import.meta.url);
// Not exported by core-common's index: the generated ElementGraphics.fbs accessors and their FlatBuffers.
const { EGFBAccessors } = require("@itwin/core-common/lib/cjs/geometry/ElementGeometryFB");
const { flatbuffers } = require("flatbuffers");

const outDir = path.resolve(process.argv[2] ?? "");
if (!process.argv[2]) {
  console.error("usage: node compat/make-geometry-kinds.mjs <output dir>");
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });
const bim = path.join(outDir, "geometry-kinds.bim");
fs.rmSync(bim, { force: true });
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-geomkinds-"));

// A 2x2 RGBA PNG (for the Texture an Image primitive references).
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAYAAABytg0kAAAAFklEQVR4nGP4z8Dwn4GB4T8DAwMDAwAd8AP9nKkJ4wAAAABJRU5ErkJggg==",
  "base64",
);

Logger.initializeToConsole();
Logger.setLevelDefault(LogLevel.Error);

const square = (x0, y0, size, z = 0) =>
  Loop.create(LineString3d.create([x0, y0, z], [x0 + size, y0, z], [x0 + size, y0 + size, z], [x0, y0 + size, z], [x0, y0, z]));

try {
  await IModelHost.startup({ cacheDir: path.join(work, "cache") });
  // No network here: without this the first open waits ~15 s for the public GCS workspace.
  IModelHost.appWorkspace.settings.addDictionary(
    { name: "twinbase-geometry-kinds", priority: 200 },
    { "itwin/core/gcs/disableWorkspaces": true },
  );
  const db = SnapshotDb.createEmpty(bim, { rootSubject: { name: "geometry kinds" } });
  const model = PhysicalModel.insert(db, IModel.rootSubjectId, "Kinds");
  const defs = DefinitionModel.insert(db, IModel.rootSubjectId, "Kinds definitions");
  const category = SpatialCategory.insert(db, defs, "Kinds", new SubCategoryAppearance({ color: ColorDef.red.toJSON() }));
  const subcategory = SubCategory.insert(db, category, "Blue edges", new SubCategoryAppearance({ color: ColorDef.blue.toJSON(), transp: 0.25 }));
  const texture = Texture.insertTexture(db, defs, "checker", ImageSourceFormat.Png, PNG, "2x2");
  const material = RenderMaterialElement.insert(db, defs, "Green", {
    paletteName: "kinds",
    color: [0, 1, 0],
    transmit: 0.5,
  });

  const elements = [];
  const tsBgfb = [];
  const ids = { category, subcategory, texture, material };
  const add = (table, label, id) => elements.push({ table, label, id });

  const insert3d = (label, geom, placement = { origin: [0, 0, 0], angles: {} }) => {
    const id = db.elements.insertElement({
      classFullName: "Generic:PhysicalObject",
      model,
      category,
      code: Code.createEmpty(),
      userLabel: label,
      placement,
      geom,
    });
    add("3d", label, id);
    return id;
  };
  // The binary path: ElementGeometry entries (BGFB made by core-geometry) stored as given. The JSON path
  // (GeometryStreamBuilder) silently drops point strings and Akima curves: the element has no geometry.
  const binary = (label, geometry) => {
    const id = db.elements.insertElement({
      classFullName: "Generic:PhysicalObject",
      model,
      category,
      code: Code.createEmpty(),
      userLabel: label,
      placement: { origin: [0, 0, 0], angles: {} },
      elementGeometryBuilderParams: { entryArray: [ElementGeometryEntry(geometry)] },
    });
    add("3d", label, id);
    return id;
  };
  const pointPrimitive = (label, points) => {
    const fbb = new flatbuffers.Builder();
    EGFBAccessors.PointPrimitive.startCoordsVector(fbb, points.length);
    for (const [x, y, z] of [...points].reverse()) EGFBAccessors.DPoint3d.createDPoint3d(fbb, x, y, z);
    const coords = fbb.endVector();
    fbb.finish(EGFBAccessors.PointPrimitive.createPointPrimitive(fbb, coords, EGFBAccessors.BoundaryType.None));
    const id = db.elements.insertElement({
      classFullName: "Generic:PhysicalObject",
      model,
      category,
      code: Code.createEmpty(),
      userLabel: label,
      placement: { origin: [0, 0, 0], angles: {} },
      elementGeometryBuilderParams: { entryArray: [{ opcode: 5, data: fbb.asUint8Array() }] },
    });
    add("3d", label, id);
  };
  const one = (label, geometry, placement) => {
    const builder = new GeometryStreamBuilder();
    if (!builder.appendGeometry(geometry)) throw new Error(`appendGeometry refused ${label}`);
    const id = insert3d(label, builder.geometryStream, placement);
    // The same geometry as core-geometry's own BGFB writer encodes it, with its own JSON: what a stream
    // written through ElementGeometry (elementGeometryBuilderParams) would carry.
    const bytes = BentleyGeometryFlatBuffer.geometryToBytes(geometry, true);
    if (bytes) tsBgfb.push({ label, data: Buffer.from(bytes).toString("base64"), json: IModelJson.Writer.toIModelJson(geometry) });
    return id;
  };

  // ---------------------------------------------------------------------------------------- solids
  one("box", Box.createDgnBox(Point3d.create(1, 2, 3), Vector3d.unitX(), Vector3d.unitY(), Point3d.create(1, 2, 7), 2, 3, 2, 3, true));
  one(
    "tapered box uncapped",
    Box.createDgnBox(Point3d.create(0, 0, 0), Vector3d.create(1, 1, 0).normalize(), Vector3d.create(-1, 1, 0).normalize(), Point3d.create(0.5, 0.25, 2), 4, 3, 2, 1, false),
  );
  one("sphere", Sphere.createCenterRadius(Point3d.create(5, 0, 0), 1.5));
  one(
    "sphere band",
    Sphere.createEllipsoid(
      Transform.createOriginAndMatrix(Point3d.create(-2, 1, 0.5), Matrix3d.createScale(2, 2, 2)),
      AngleSweep.createStartEndDegrees(-30, 60),
      true,
    ),
  );
  one(
    "ellipsoid",
    Sphere.createEllipsoid(
      Transform.createOriginAndMatrix(Point3d.create(0, 0, 0), Matrix3d.createScale(3, 2, 1)),
      AngleSweep.createStartEndDegrees(-90, 90),
      false,
    ),
  );
  one("cone", Cone.createBaseAndTarget(Point3d.create(0, 0, 0), Point3d.create(0, 0, 4), Vector3d.unitX(), Vector3d.unitY(), 2, 0.5, true));
  one("cylinder uncapped", Cone.createAxisPoints(Point3d.create(1, 1, 0), Point3d.create(4, 5, 6), 0.75, 0.75, false));
  one(
    "torus pipe",
    TorusPipe.createDgnTorusPipe(Point3d.create(0, 0, 1), Vector3d.unitX(), Vector3d.unitY(), 5, 0.5, Angle.createDegrees(270), true),
  );
  const profile = Loop.create(
    LineSegment3d.createXYXY(0, 0, 2, 0),
    Arc3d.createCircularStartMiddleEnd(Point3d.create(2, 0), Point3d.create(3, 1), Point3d.create(2, 2)),
    LineString3d.create([2, 2, 0], [0, 2, 0], [0, 0, 0]),
  );
  one("linear sweep", LinearSweep.create(profile, Vector3d.create(0, 0, 3), true));
  one(
    "rotational sweep",
    RotationalSweep.create(square(2, 0, 1), Ray3d.createXYZUVW(0, 0, 0, 0, 1, 0), Angle.createDegrees(120), true),
  );
  one("ruled sweep", RuledSweep.create([square(0, 0, 2, 0), square(0.5, 0.5, 1, 2), square(0, 0, 2, 4)], false));

  // ---------------------------------------------------------------------------------------- regions, curves
  one("parity region", ParityRegion.create(square(0, 0, 10), square(2, 2, 3)));
  one("union region", UnionRegion.create(square(0, 0, 2), square(1, 1, 2)));
  one("loop with arc", Loop.create(Arc3d.createXY(Point3d.create(1, 1, 0), 2)));
  one("path", Path.create(LineSegment3d.createXYZXYZ(0, 0, 0, 1, 0, 0), Arc3d.createXYZXYZXYZ(1, 1, 0, 0, -1, 0, 1, 0, 0, AngleSweep.createStartEndDegrees(0, 90))));
  one("arc", Arc3d.create(Point3d.create(1, 2, 3), Vector3d.create(2, 0, 0), Vector3d.create(0, 1, 1), AngleSweep.createStartEndDegrees(10, 250)));
  one("line string", LineString3d.create([0, 0, 0], [1, 2, 3], [4, 0, -1], [6, 6, 6]));
  one("line segment", LineSegment3d.createXYZXYZ(-1, -2, -3, 4, 5, 6));
  // Neither path takes a PointString3d (the JSON one drops it, the native builder refuses its BGFB form):
  // native writes points as a PointPrimitive operation with boundary None, so write exactly that.
  pointPrimitive("point string", [[0, 0, 0], [1, 0, 0], [1, 1, 1]]);
  one("bspline curve", BSplineCurve3d.createUniformKnots([Point3d.create(0, 0, 0), Point3d.create(1, 2, 0), Point3d.create(3, 2, 1), Point3d.create(4, 0, 0), Point3d.create(6, 1, 2)], 4));
  one(
    "rational bspline curve",
    BSplineCurve3dH.createUniformKnots([Point4d.create(0, 0, 0, 1), Point4d.create(1, 1, 0, 0.5), Point4d.create(2, 0, 0, 1), Point4d.create(6, 2, 0, 2)], 3),
  );
  one(
    "interpolation curve",
    InterpolationCurve3d.create({ fitPoints: [[0, 0, 0], [1, 1, 0], [2, 0, 1], [3, 1, 1], [4, 0, 0]], order: 4 }),
  );
  // iTwin.js reports no JSON for an Akima curve (the element's geom holds only its header): keep the input.
  const akimaPoints = [[0, 0, 0], [1, 1, 0], [2, 0, 0], [3, 1, 0], [4, 0, 0], [5, 2, 0]];
  binary("akima curve", AkimaCurve3d.create({ fitPoints: akimaPoints }));
  elements[elements.length - 1].input = { akimaCurve: { fitPoints: akimaPoints } };
  one(
    "spiral",
    IntegratedSpiral3d.createRadiusRadiusBearingBearing(
      Segment1d.create(0, 100),
      AngleSweep.createStartEndDegrees(0, 10),
      Segment1d.create(0, 1),
      Transform.createIdentity(),
      "clothoid",
    ),
  );

  // ---------------------------------------------------------------------------------------- surfaces and meshes
  const poles = [];
  for (let j = 0; j < 4; j++) {
    const row = [];
    for (let i = 0; i < 5; i++) row.push([i, j, Math.sin(i) * Math.cos(j)]);
    poles.push(row);
  }
  one("bspline surface", BSplineSurface3d.createGrid(poles, 3, undefined, 4, undefined));
  const wgrid = poles.map((row, j) => row.map(([x, y, z], i) => [x, y, z, 1 + 0.25 * ((i + j) % 2)]));
  one("rational bspline surface", BSplineSurface3dH.createGrid(wgrid, WeightStyle.WeightsSeparateFromCoordinates, 3, undefined, 2, undefined));

  const mesh = IndexedPolyface.create(true, true, true);
  const corners = [[0, 0, 0], [2, 0, 0], [2, 2, 0], [0, 2, 0], [1, 1, 1.5]];
  for (const [x, y, z] of corners) mesh.addPointXYZ(x, y, z);
  for (const [u, v] of [[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]]) mesh.addParamUV(u, v);
  mesh.addNormalXYZ(0, 0, -1);
  mesh.addNormalXYZ(0, -0.6, 0.8);
  mesh.addNormalXYZ(0.6, 0, 0.8);
  mesh.addColor(ColorDef.red.tbgr);
  mesh.addColor(ColorDef.from(0, 128, 255).tbgr);
  // the base as one quad (with a hidden edge), then four triangles
  const facet = (points, normal, color, hidden = -1) => {
    points.forEach((p, k) => {
      mesh.addPointIndex(p, k !== hidden);
      mesh.addParamIndex(p);
      mesh.addNormalIndex(normal);
      mesh.addColorIndex(color);
    });
    mesh.terminateFacet();
  };
  facet([0, 3, 2, 1], 0, 0, 2);
  facet([0, 1, 4], 1, 1);
  facet([1, 2, 4], 2, 1);
  facet([2, 3, 4], 1, 0);
  facet([3, 0, 4], 2, 0);
  mesh.twoSided = true;
  one("polyface", mesh);

  // A big mesh: its blob spans many 32 KiB Snappy chunks.
  const grid = PolyfaceBuilder.create();
  grid.options.needNormals = true;
  grid.options.needParams = true;
  const n = 150;
  const wave = (i, j) => Point3d.create(i / 10, j / 10, Math.sin(i / 7) * Math.cos(j / 9));
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) grid.addQuadFacet([wave(i, j), wave(i + 1, j), wave(i + 1, j + 1), wave(i, j + 1)]);
  one("big mesh", grid.claimPolyface());

  // ---------------------------------------------------------------------------------------- text
  const text = new GeometryStreamBuilder();
  text.appendTextString(
    new TextString({ text: "Twinbase", font: 1, height: 0.5, widthFactor: 0.8, bold: true, origin: [1, 2, 0], rotation: { yaw: 30 } }),
  );
  insert3d("text", text.geometryStream);

  // ---------------------------------------------------------------------------------------- parts and symbology
  const part = (label, ...geometry) => {
    const builder = new GeometryStreamBuilder();
    for (const g of geometry) builder.appendGeometry(g);
    const id = db.elements.insertElement({ classFullName: "BisCore:GeometryPart", model: defs, code: Code.createEmpty(), geom: builder.geometryStream });
    add("part", label, id);
    return id;
  };
  const cube = part("cube part", Box.createRange(Range3d.createXYZXYZ(0, 0, 0, 1, 1, 1), true));
  const post = part("post part", Cone.createAxisPoints(Point3d.create(0, 0, 0), Point3d.create(0, 0, 3), 0.2, 0.2, true), Sphere.createCenterRadius(Point3d.create(0, 0, 3), 0.3));
  const instances = new GeometryStreamBuilder();
  instances.appendGeometryPart3d(cube);
  instances.appendGeometryPart3d(cube, Point3d.create(3, 0, 0), YawPitchRollAngles.createDegrees(90, 0, 0), 2);
  instances.appendGeometryPart3d(post, Point3d.create(0, 5, 0), YawPitchRollAngles.createDegrees(10, 20, 30), 0.5);
  instances.appendGeometryPart3d(post, Point3d.create(-4, 0, 1));
  insert3d("part instances", instances.geometryStream, { origin: [10, 10, 0], angles: { yaw: 45 } });

  const styled = new GeometryStreamBuilder();
  styled.appendGeometryRanges(); // a SubGraphicRange before each primitive (never before a part)
  styled.appendGeometry(Box.createRange(Range3d.createXYZXYZ(0, 0, 0, 1, 1, 1), true));
  const colored = new GeometryParams(category, subcategory);
  colored.lineColor = ColorDef.from(10, 200, 30);
  colored.elmTransparency = 0.4;
  colored.weight = 3;
  colored.geometryClass = GeometryClass.Construction;
  styled.appendGeometryParamsChange(colored);
  styled.appendGeometry(Sphere.createCenterRadius(Point3d.create(3, 0, 0), 1));
  const withMaterial = new GeometryParams(category);
  withMaterial.materialId = material;
  withMaterial.fillDisplay = FillDisplay.Always;
  withMaterial.fillColor = ColorDef.from(255, 255, 0);
  withMaterial.fillTransparency = 0.3;
  styled.appendGeometryParamsChange(withMaterial);
  styled.appendGeometry(square(5, 0, 2));
  const gradient = new GeometryParams(category);
  gradient.fillDisplay = FillDisplay.ByView;
  gradient.gradient = Gradient.Symb.fromJSON({
    mode: Gradient.Mode.Linear,
    angle: { degrees: 30 },
    keys: [{ value: 0, color: ColorDef.red.tbgr }, { value: 1, color: ColorDef.blue.tbgr }],
  });
  styled.appendGeometryParamsChange(gradient);
  styled.appendGeometry(square(8, 0, 2));
  const hatched = new GeometryParams(category);
  hatched.pattern = AreaPattern.Params.fromJSON({ space1: 0.25, angle1: { degrees: 45 }, color: ColorDef.green.tbgr });
  styled.appendGeometryParamsChange(hatched);
  styled.appendGeometry(square(11, 0, 2));
  const image = new ImageGraphic(
    ImageGraphicCorners.from4Points([Point3d.create(0, 5, 0), Point3d.create(2, 5, 0), Point3d.create(2, 7, 0), Point3d.create(0, 7, 0)]),
    texture,
    true,
  );
  styled.appendImage(image);
  styled.appendGeometryPart3d(cube, Point3d.create(0, 10, 0));
  insert3d("symbology changes", styled.geometryStream);

  // ---------------------------------------------------------------------------------------- a Parasolid B-rep
  let brepEntries;
  const status = db.createBRepGeometry({
    operation: BRepGeometryOperation.Unite,
    entryArray: [
      ElementGeometryEntry(Box.createRange(Range3d.createXYZXYZ(0, 0, 0, 2, 2, 2), true)),
      ElementGeometryEntry(Box.createRange(Range3d.createXYZXYZ(1, 1, 1, 3, 3, 3), true)),
    ],
    onResult: (info) => {
      brepEntries = info.entryArray;
    },
  });
  if (status !== 0 || !brepEntries) throw new Error(`createBRepGeometry failed (${status})`);
  const brepId = db.elements.insertElement({
    classFullName: "Generic:PhysicalObject",
    model,
    category,
    code: Code.createEmpty(),
    userLabel: "brep",
    placement: { origin: [0, 0, 0], angles: {} },
    elementGeometryBuilderParams: { entryArray: brepEntries },
  });
  add("3d", "brep", brepId);

  // ---------------------------------------------------------------------------------------- 2D
  const docs = DocumentListModel.insert(db, IModel.rootSubjectId, "Kinds documents");
  const drawing = Drawing.insert(db, docs, "Kinds drawing");
  const drawingCategory = DrawingCategory.insert(db, defs, "Kinds 2D", new SubCategoryAppearance({ color: ColorDef.black.toJSON() }));
  ids.drawingCategory = drawingCategory;
  const insert2d = (label, ...geometry) => {
    const builder = new GeometryStreamBuilder();
    for (const g of geometry) {
      if (g instanceof TextString) builder.appendTextString(g);
      else if (g instanceof GeometryParams) builder.appendGeometryParamsChange(g);
      else if (!builder.appendGeometry(g)) throw new Error(`appendGeometry refused ${label}`);
    }
    const id = db.elements.insertElement({
      classFullName: "BisCore:DrawingGraphic",
      model: drawing,
      category: drawingCategory,
      code: Code.createEmpty(),
      userLabel: label,
      placement: { origin: { x: 1, y: 1 }, angle: 15 },
      geom: builder.geometryStream,
    });
    add("2d", label, id);
  };
  const blanking = new GeometryParams(drawingCategory);
  blanking.elmPriority = 5;
  blanking.fillDisplay = FillDisplay.Blanking;
  blanking.backgroundFill = BackgroundFill.Outline;
  insert2d("2d shapes", blanking, square(0, 0, 4), Arc3d.createXY(Point3d.create(2, 1), 0.75), LineString3d.create([0, 0], [1, 3], [2, 0]));
  insert2d("2d arc", Arc3d.createXYZXYZXYZ(0, 0, 0, 1, 0, 0, 0, 2, 0, AngleSweep.createStartEndDegrees(0, 180)));
  insert2d("2d text", new TextString({ text: "plan", font: 1, height: 2, origin: Point2d.create(1, 1) }));

  db.saveChanges();
  for (const element of elements) {
    const props = db.elements.getElementProps({ id: element.id, wantGeometry: true, wantBRepData: true });
    element.geom = props.geom;
    element.placement = props.placement;
    element.bbox = props.bbox;
  }
  db.close();
  // A BGFB VectorOfVariantGeometry (no element stores one; core-geometry writes it for an array).
  const group = BentleyGeometryFlatBuffer.geometryToBytes(
    [Sphere.createCenterRadius(Point3d.create(1, 2, 3), 4), LineString3d.create([0, 0, 0], [1, 1, 1])],
    true,
  );
  const bgfb = { group: Buffer.from(group).toString("base64"), kinds: tsBgfb };
  fs.writeFileSync(path.join(outDir, "geometry-kinds.json"), JSON.stringify({ elements, ids, bgfb }, null, 1));
  console.log(`${bim}: ${elements.length} elements`);
} finally {
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}

/** An ElementGeometryDataEntry (binary opcode entry) for a geometry, as createBRepGeometry takes them. */
function ElementGeometryEntry(geometry) {
  const entry = ElementGeometry.fromGeometryQuery(geometry);
  if (!entry) throw new Error("ElementGeometry.fromGeometryQuery failed");
  return entry;
}
