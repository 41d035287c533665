// Generated iModels with every kind of geometry, made by the real iTwin.js backend: the ground truth that
// twinbase's Python tessellation is compared with (IModelDb.exportGraphics on the same file, see
// export-graphics.mjs), and the tessellation benchmark's input.
//
//   node compat/make-geometry.mjs <out.bim> <truth|geolocated|bench>
//   (BENCH_ELEMENTS scales the bench profile; the default is 100,000)
//
// Profiles:
//   truth  ~110 elements: boxes (and a frustum), spheres (full, partial latitudes, an ellipsoid), cones and
//          cylinders, torus pipes (full and partial sweeps), linear / rotational / ruled sweeps (one of a
//          region with a hole), planar regions (Loop, ParityRegion with a hole, UnionRegion), a B-spline
//          surface, polyfaces (normals and params, faces of 3, 4 and 5+ vertices, non-convex faces), wires
//          (line strings, arcs, B-spline curves, point strings, a path) that must never gain area, text,
//          geometry parts (a box, a polyface, a cylinder) instanced with different transforms and scales,
//          symbology changes inside streams (colour, transparency, fill, material, geometry class,
//          subcategory) and elements with several primitives. Four categories with different colours
//          (one transparent, one with a second subcategory) and a render material with colour and
//          transparency.
//   geolocated  the truth profile's elements (the same ids) in an iModel with an ECEF location (an
//          east-north-up frame at a fixed place 50 m above the ellipsoid), so that its 3D Tiles export carries a
//          root transform to ECEF and lands on the globe in CesiumJS (the truth model has none: its tiles
//          would sit at the Earth's centre).
//   bench  >= 100k elements and >= 5M triangles under exportGraphics at the bench tolerance (chordTol 0.01,
//          angleTol pi/12): a realistic mix of part instances (boxes, polyfaces, cylinders, an I-beam),
//          polyfaces, extrusions and curved solids, inserted with saveChanges every 10,000 elements.
//
// Every geometric element carries what it was made to be in jsonProperties.truth:
//   { kind, family: faceted|curved|wire|text|mixed, expect: {...} }
// (family says which area tolerance applies: 1% for faceted kinds, 3% for curved ones; wires never have
// area), and <out.bim>.manifest.json lists the same per element id with the categories, subcategories,
// material and parts made, their colours, and timings.
//
// The generator is deterministic (a seeded PRNG) so a profile makes the same geometry on every run.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import {
  DefinitionModel,
  IModelHost,
  PhysicalModel,
  RenderMaterialElement,
  SnapshotDb,
  SpatialCategory,
  SubCategory,
} from "@itwin/core-backend";
import { Logger, LogLevel } from "@itwin/core-bentley";
import {
  Cartographic,
  Code,
  BRepGeometryOperation,
  ColorDef,
  EcefLocation,
  ElementGeometry,
  FillDisplay,
  GeometryClass,
  GeometryParams,
  GeometryStreamBuilder,
  IModel,
  SubCategoryAppearance,
  TextString,
} from "@itwin/core-common";
import {
  Angle,
  AngleSweep,
  Arc3d,
  Box,
  BSplineCurve3d,
  BSplineSurface3d,
  Cone,
  IndexedPolyface,
  LinearSweep,
  LineSegment3d,
  LineString3d,
  Loop,
  Matrix3d,
  ParityRegion,
  Path,
  Point2d,
  Point3d,
  PointString3d,
  Range3d,
  Ray3d,
  RotationalSweep,
  RuledSweep,
  Sphere,
  TorusPipe,
  Transform,
  UnionRegion,
  Vector3d,
  YawPitchRollAngles,
} from "@itwin/core-geometry";
import { rng } from "./lib/random.mjs";

const require = createRequire(import.meta.url);

const outFile = process.argv[2] ? path.resolve(process.argv[2]) : "";
const profileName = process.argv[3] ?? "truth";
if (!outFile || !["truth", "geolocated", "bench"].includes(profileName)) {
  console.error("usage: node compat/make-geometry.mjs <out.bim> <truth|geolocated|bench>");
  process.exit(2);
}
if (fs.existsSync(outFile)) {
  console.error(`make-geometry: ${outFile} exists`);
  process.exit(2);
}

const started = Date.now();
const seconds = (t0 = started) => Number(((Date.now() - t0) / 1000).toFixed(2));


// ------------------------------------------------------------------------------------------- geometry

const P = (x, y, z = 0) => Point3d.create(x, y, z);
const V = (x, y, z = 0) => Vector3d.create(x, y, z);
const ypr = (y, p = 0, r = 0) => YawPitchRollAngles.createDegrees(y, p, r);

const boxRange = (x, y, z, capped = true) => Box.createRange(Range3d.createXYZXYZ(0, 0, 0, x, y, z), capped);
/** A frustum: a box whose top (at height h) is a different rectangle than its base. */
const frustum = (bx, by, tx, ty, h) =>
  Box.createDgnBox(P(0, 0, 0), V(1, 0, 0), V(0, 1, 0), P((bx - tx) / 2, (by - ty) / 2, h), bx, by, tx, ty, true);
const cylinder = (h, r, capped = true) => Cone.createAxisPoints(P(0, 0, 0), P(0, 0, h), r, r, capped);
const cone = (h, r0, r1, capped = true) => Cone.createAxisPoints(P(0, 0, 0), P(0, 0, h), r0, r1, capped);
const rect = (x0, y0, x1, y1, z = 0) => Loop.createPolygon([P(x0, y0, z), P(x1, y0, z), P(x1, y1, z), P(x0, y1, z), P(x0, y0, z)]);
const circle = (cx, cy, r, z = 0) => Loop.create(Arc3d.createXY(P(cx, cy, z), r));
/** An L-shaped (non-convex) polygon. */
const ell = (a, b, t) => Loop.createPolygon([P(0, 0), P(a, 0), P(a, t), P(t, t), P(t, b), P(0, b), P(0, 0)]);
/** An I-beam profile (non-convex, 12 vertices), height h, flange width w, thickness t. */
function iProfile(h, w, t) {
  const hw = w / 2;
  const ht = t / 2;
  return Loop.createPolygon(
    [
      [-hw, 0],
      [hw, 0],
      [hw, t],
      [ht, t],
      [ht, h - t],
      [hw, h - t],
      [hw, h],
      [-hw, h],
      [-hw, h - t],
      [-ht, h - t],
      [-ht, t],
      [-hw, t],
      [-hw, 0],
    ].map(([x, y]) => P(x, y)),
  );
}

/** A polyface with normals and params whose faces have 3, 4, 5 and 6 vertices, two of them non-convex. */
function mixedPolyface() {
  const pf = IndexedPolyface.create(true, true);
  const face = (pts) => {
    // The face's plane normal (Newell) for every vertex of it: a flat-shaded face with its own normals.
    const n = V(0, 0, 0);
    for (let i = 0; i < pts.length; i++) {
      const a = pts[i];
      const b = pts[(i + 1) % pts.length];
      n.x += (a.y - b.y) * (a.z + b.z);
      n.y += (a.z - b.z) * (a.x + b.x);
      n.z += (a.x - b.x) * (a.y + b.y);
    }
    n.normalizeInPlace();
    const ni = pf.addNormal(n);
    for (const p of pts) {
      pf.addPointIndex(pf.addPoint(p));
      pf.addNormalIndex(ni);
      pf.addParamIndex(pf.addParamUV(p.x / 4, p.y / 4));
    }
    pf.terminateFacet();
  };
  face([P(0, 0), P(1, 0), P(0.5, 1)]); // triangle
  face([P(1.5, 0), P(2.5, 0), P(2.5, 1), P(1.5, 1)]); // quad
  face([P(3, 0), P(4, 0), P(4.3, 0.8), P(3.5, 1.4), P(2.7, 0.8)]); // convex pentagon
  face([P(0, 2), P(2, 2), P(2, 2.5), P(0.5, 2.5), P(0.5, 4), P(0, 4)]); // non-convex L hexagon
  face([P(2.5, 2, 0.2), P(4, 2, 0.2), P(4, 4, 0.2), P(3.25, 2.8, 0.2), P(2.5, 4, 0.2)]); // non-convex dart (raised)
  face([P(0, 0, 0), P(0, 0, 1), P(1, 0, 1), P(1, 0, 0)]); // a vertical quad
  return pf;
}

/** An n x m grid over a wavy surface, with smooth normals and params: the typical connector mesh. */
function gridPolyface(n, m, size, amp, phase = 0) {
  const pf = IndexedPolyface.create(true, true);
  const h = (x, y) => amp * Math.sin(phase + x * 1.3) * Math.cos(y * 0.9);
  const idx = [];
  for (let j = 0; j <= m; j++)
    for (let i = 0; i <= n; i++) {
      const x = (i * size) / n;
      const y = (j * size) / m;
      pf.addPointXYZ(x, y, h(x, y));
      const dx = amp * 1.3 * Math.cos(phase + x * 1.3) * Math.cos(y * 0.9);
      const dy = -amp * 0.9 * Math.sin(phase + x * 1.3) * Math.sin(y * 0.9);
      pf.addNormal(V(-dx, -dy, 1).normalize());
      pf.addParamUV(i / n, j / m);
      idx.push(idx.length);
    }
  const at = (i, j) => j * (n + 1) + i;
  for (let j = 0; j < m; j++)
    for (let i = 0; i < n; i++) {
      for (const k of [at(i, j), at(i + 1, j), at(i + 1, j + 1), at(i, j + 1)]) {
        pf.addPointIndex(k);
        pf.addNormalIndex(k);
        pf.addParamIndex(k);
      }
      pf.terminateFacet();
    }
  return pf;
}

/** A closed polyface: a prism over a convex n-gon, faces of n, 4 and n vertices (no normals). */
function prismPolyface(n, r, h) {
  const pf = IndexedPolyface.create(false, false);
  for (let k = 0; k < n; k++) {
    const a = (2 * Math.PI * k) / n;
    pf.addPointXYZ(r * Math.cos(a), r * Math.sin(a), 0);
  }
  for (let k = 0; k < n; k++) {
    const a = (2 * Math.PI * k) / n;
    pf.addPointXYZ(r * Math.cos(a), r * Math.sin(a), h);
  }
  for (let k = n - 1; k >= 0; k--) pf.addPointIndex(k);
  pf.terminateFacet();
  for (let k = 0; k < n; k++) pf.addPointIndex(n + k);
  pf.terminateFacet();
  for (let k = 0; k < n; k++) {
    const k1 = (k + 1) % n;
    for (const i of [k, k1, n + k1, n + k]) pf.addPointIndex(i);
    pf.terminateFacet();
  }
  return pf;
}

function bumpySurface(size, amp) {
  const grid = [];
  for (let j = 0; j < 5; j++) {
    const row = [];
    for (let i = 0; i < 5; i++) row.push([(i * size) / 4, (j * size) / 4, amp * Math.sin(i * 1.1) * Math.cos(j * 0.8)]);
    grid.push(row);
  }
  return BSplineSurface3d.createGrid(grid, 4, undefined, 3, undefined);
}

function stream(...primitives) {
  const builder = new GeometryStreamBuilder();
  for (const p of primitives) {
    if (!p) throw new Error("make-geometry: a primitive could not be made");
    builder.appendGeometry(p);
  }
  return builder.geometryStream;
}

// -------------------------------------------------------------------------------------------- the file

const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-geometry-"));
Logger.initializeToConsole();
Logger.setLevelDefault(LogLevel.Error);
await IModelHost.startup({ cacheDir: path.join(work, "cache") });
// Offline machine: without this the first open waits ~15 s for the public GCS workspace.
IModelHost.appWorkspace.settings.addDictionary({ name: "make-geometry", priority: 200 }, { "itwin/core/gcs/disableWorkspaces": true });

const partial = `${outFile}.partial-${process.pid}`;
const db = SnapshotDb.createEmpty(partial, { rootSubject: { name: `twinbase geometry ${profileName}` } });
const manifest = { profile: profileName, categories: {}, subCategories: {}, materials: {}, parts: {}, elements: [] };
const timings = {};

const defModel = DefinitionModel.insert(db, IModel.rootSubjectId, "Geometry definitions");
const model = PhysicalModel.insert(db, IModel.rootSubjectId, "Geometry");

/** A spatial category whose default subcategory has `appearance`; recorded in the manifest. */
function category(name, appearance) {
  const id = SpatialCategory.insert(db, defModel, name, new SubCategoryAppearance(appearance));
  manifest.categories[name] = { id, defaultSubCategory: IModel.getDefaultSubCategoryId(id), ...appearance };
  return id;
}

function part(name, geom, bbox) {
  const id = db.elements.insertElement({
    classFullName: "BisCore:GeometryPart",
    model: defModel,
    code: Code.createEmpty(),
    userLabel: name,
    geom,
    bbox,
  });
  manifest.parts[name] = { id };
  return id;
}

/** Insert one geometric element; `truth` (kind, family, expect) goes to jsonProperties and the manifest. */
function element(cat, origin, angles, geom, truth, { keep = true } = {}) {
  const id = db.elements.insertElement({
    classFullName: "Generic:PhysicalObject",
    model,
    category: cat,
    code: Code.createEmpty(),
    userLabel: truth.kind,
    placement: { origin, angles: angles.toJSON() },
    ...(Array.isArray(geom) && geom[0]?.opcode !== undefined ? { elementGeometryBuilderParams: { entryArray: geom } } : { geom }),
    jsonProperties: { truth },
  });
  if (keep) manifest.elements.push({ id, category: cat, origin: origin.toJSON(), angles: angles.toJSON(), ...truth });
  return id;
}

// ------------------------------------------------------------------------------------- profile: truth

function truthProfile() {
  const red = category("Red", { color: ColorDef.from(220, 30, 30).toJSON() });
  const green = category("Green", { color: ColorDef.from(30, 160, 60).toJSON() });
  const glass = category("Glass", { color: ColorDef.from(40, 90, 230).toJSON(), transp: 0.5 });
  const orange = category("Orange", { color: ColorDef.from(250, 150, 20).toJSON() });
  const detailAppearance = { color: ColorDef.from(200, 0, 200).toJSON(), transp: 0.25 };
  const detail = SubCategory.insert(db, orange, "Detail", new SubCategoryAppearance(detailAppearance));
  manifest.subCategories.Detail = { id: detail, category: orange, ...detailAppearance };
  const material = RenderMaterialElement.insert(db, defModel, "Truth paint", {
    paletteName: "Truth",
    color: [0.1, 0.7, 0.4],
    transmit: 0.3,
    diffuse: 0.8,
  });
  manifest.materials["Truth paint"] = { id: material, color: [0.1, 0.7, 0.4], transmit: 0.3 };

  const pb = new GeometryStreamBuilder();
  pb.appendGeometry(boxRange(1, 0.5, 0.25));
  const boxPart = part("box part", pb.geometryStream, Range3d.createXYZXYZ(0, 0, 0, 1, 0.5, 0.25));
  const meshPart = part("polyface part", stream(mixedPolyface()), Range3d.createXYZXYZ(0, 0, 0, 4.3, 4, 1));
  const cylPart = part("cylinder part", stream(cylinder(1, 0.25)), Range3d.createXYZXYZ(-0.25, -0.25, 0, 0.25, 0.25, 1));
  manifest.parts["box part"].area = 2 * (1 * 0.5 + 1 * 0.25 + 0.5 * 0.25);

  const cats = [red, green, glass, orange];
  let slot = 0;
  /** Lay the elements out on a grid 12 m apart, cycling the categories and varying the rotation. */
  const at = () => {
    const k = slot++;
    return { origin: P((k % 10) * 12, Math.floor(k / 10) * 12, (k % 3) * 0.5), angles: ypr((k * 37) % 360, (k % 4) * 15, (k % 5) * 10), cat: cats[k % cats.length] };
  };
  const add = (kind, family, geom, expect = {}, opts = {}) => {
    const a = at();
    return element(opts.cat ?? a.cat, opts.origin ?? a.origin, opts.angles ?? a.angles, geom, { kind, family, expect }, opts);
  };

  for (let v = 0; v < 3; v++) {
    const s = 1 + v * 0.75;
    // Boxes: plain, frustum (different top), uncapped.
    add("box", "faceted", stream(boxRange(2 * s, s, 0.5 * s)), { area: 2 * (2 * s * s + 2 * s * 0.5 * s + s * 0.5 * s) });
    add("box-frustum", "faceted", stream(frustum(2 * s, 1.5 * s, s, 0.5 * s, s)));
    // Spheres: full, partial latitudes capped and uncapped, an ellipsoid.
    add("sphere", "curved", stream(Sphere.createCenterRadius(P(0, 0, 0), s)), { area: 4 * Math.PI * s * s });
    add("sphere-partial-capped", "curved", stream(Sphere.createCenterRadius(P(0, 0, 0), s, AngleSweep.createStartEndDegrees(-30, 60), true)));
    add("sphere-partial", "curved", stream(Sphere.createCenterRadius(P(0, 0, 0), s, AngleSweep.createStartEndDegrees(0, 90), false)), {
      area: 2 * Math.PI * s * s,
    });
    add("ellipsoid", "curved", stream(Sphere.createFromAxesAndScales(P(0, 0, 0), undefined, 2 * s, s, 0.6 * s)));
    // Cones and cylinders.
    add("cone", "curved", stream(cone(2 * s, s, 0.4 * s)));
    add("cone-pointed", "curved", stream(cone(2 * s, s, 0)));
    add("cylinder", "curved", stream(cylinder(3 * s, 0.5 * s)), { area: 2 * Math.PI * 0.5 * s * 3 * s + 2 * Math.PI * 0.25 * s * s });
    add("cylinder-uncapped", "curved", stream(cylinder(3 * s, 0.5 * s, false)), { area: 2 * Math.PI * 0.5 * s * 3 * s });
    // Torus pipes: full and partial sweeps.
    add("torus", "curved", stream(TorusPipe.createInFrame(Transform.createIdentity(), 2 * s, 0.4 * s, Angle.createDegrees(360), false)), {
      area: 4 * Math.PI * Math.PI * 2 * s * 0.4 * s,
    });
    add("torus-partial", "curved", stream(TorusPipe.createInFrame(Transform.createIdentity(), 2 * s, 0.4 * s, Angle.createDegrees(120 + 60 * v), true)));
    // Sweeps: linear of a region with a hole (square and round holes), rotational, ruled.
    add("linear-sweep-hole", "faceted", stream(LinearSweep.create(ParityRegion.create(rect(0, 0, 3 * s, 2 * s), rect(s, 0.5 * s, 2 * s, 1.5 * s)), V(0, 0, s), true)));
    add("linear-sweep-round-hole", "curved", stream(LinearSweep.create(ParityRegion.create(rect(0, 0, 3 * s, 2 * s), circle(1.5 * s, s, 0.5 * s)), V(0.3 * s, 0, s), true)));
    add("linear-sweep-ell", "faceted", stream(LinearSweep.create(ell(2 * s, 1.5 * s, 0.4 * s), V(0, 0, 2 * s), true)));
    add("rotational-sweep", "curved", stream(RotationalSweep.create(rect(s, 0, 1.5 * s, s), Ray3d.createXYZUVW(0, 0, 0, 0, 1, 0), Angle.createDegrees(360), false)));
    add("rotational-sweep-partial", "curved", stream(RotationalSweep.create(rect(s, 0, 1.5 * s, s), Ray3d.createXYZUVW(0, 0, 0, 0, 1, 0), Angle.createDegrees(90 + 45 * v), true)));
    add("ruled-sweep", "faceted", stream(RuledSweep.create([rect(0, 0, 2 * s, 2 * s, 0), rect(0.5 * s, 0.5 * s, 1.5 * s, 1.5 * s, 2 * s)], true)));
    add("ruled-sweep-circles", "curved", stream(RuledSweep.create([circle(0, 0, s, 0), circle(0.3 * s, 0, 0.5 * s, 1.5 * s)], true)));
    // Planar regions.
    add("region-loop", "faceted", stream(rect(0, 0, 3 * s, 2 * s)), { area: 6 * s * s });
    add("region-loop-nonconvex", "faceted", stream(ell(3 * s, 2 * s, 0.5 * s)), { area: 3 * s * 0.5 * s + (2 * s - 0.5 * s) * 0.5 * s });
    add("region-circle", "curved", stream(circle(0, 0, s)), { area: Math.PI * s * s });
    add("region-parity", "faceted", stream(ParityRegion.create(rect(0, 0, 3 * s, 2 * s), rect(s, 0.5 * s, 2 * s, 1.5 * s))), { area: 5 * s * s });
    add("region-parity-round", "curved", stream(ParityRegion.create(rect(0, 0, 3 * s, 2 * s), circle(1.5 * s, s, 0.5 * s))), {
      area: 6 * s * s - Math.PI * 0.25 * s * s,
    });
    add("region-union", "faceted", stream(UnionRegion.create(rect(0, 0, s, s), rect(2 * s, 0, 3 * s, 2 * s))), { area: 3 * s * s });
    // B-spline surface.
    add("bspline-surface", "curved", stream(bumpySurface(3 * s, 0.6 * s)));
    // Polyfaces.
    add("polyface-mixed", "faceted", stream(mixedPolyface()));
    add("polyface-grid", "faceted", stream(gridPolyface(6 + 2 * v, 5, 3 * s, 0.4 * s, v)));
    add("polyface-prism", "faceted", stream(prismPolyface(5 + v, s, 2 * s)));
    // Wires: never any area.
    add("wire-linestring", "wire", stream(LineString3d.create(P(0, 0), P(2 * s, 0), P(2 * s, s, s), P(0, 2 * s, 0.5))));
    add("wire-arc", "wire", stream(Arc3d.createXY(P(0, 0), s, AngleSweep.createStartEndDegrees(0, 200))));
    add("wire-bspline", "wire", stream(BSplineCurve3d.createUniformKnots([P(0, 0), P(s, 2 * s), P(2 * s, -s, s), P(3 * s, s), P(4 * s, 0)], 4)));
    add("wire-pointstring", "wire", stream(PointString3d.create(P(0, 0), P(s, 0), P(s, s, s))));
    add("wire-path", "wire", stream(Path.create(LineSegment3d.create(P(0, 0), P(2 * s, 0)), Arc3d.createCircularStartMiddleEnd(P(2 * s, 0), P(2.7 * s, 0.7 * s), P(2 * s, 1.4 * s)))));
    // Text.
    add("text", "text", textStream(`Truth ${v}`, 0.5 * s));
    // Several primitives in one element.
    add("multi-solid", "curved", stream(boxRange(s, s, s), Sphere.createCenterRadius(P(2.5 * s, 0, 0), 0.6 * s), cone(s, 0.5 * s, 0.2 * s)));
    add("multi-solid-and-wire", "mixed", stream(boxRange(s, s, s), LineString3d.create(P(0, 0, 2 * s), P(3 * s, 0, 2 * s))));
  }

  // Parts: the box, the polyface and the cylinder, instanced with different origins, rotations and scales.
  const instance = (partId, origin, angles, scale) => {
    const b = new GeometryStreamBuilder();
    b.appendGeometryPart3d(partId, origin, angles, scale);
    return b.geometryStream;
  };
  const scales = [1, 2, 0.5, 3];
  for (const [i, scale] of scales.entries()) {
    add("part-box", "faceted", instance(boxPart, P(0.5, 0, 0), ypr(30 * i, 10 * i, 0), scale), { part: "box part", scale, area: manifest.parts["box part"].area * scale * scale });
    add("part-polyface", "faceted", instance(meshPart, P(0, 0, 0), ypr(0, 0, 45 * i), scale), { part: "polyface part", scale });
    add("part-cylinder", "curved", instance(cylPart, P(0, 0, 0.2), ypr(15 * i, 90, 0), scale), { part: "cylinder part", scale });
  }
  for (let v = 0; v < 2; v++) {
    // One element, several instances of two parts and a primitive of its own (twice, placed differently).
    const b = new GeometryStreamBuilder();
    b.appendGeometryPart3d(boxPart, P(0, 0, 0), ypr(0), 1);
    b.appendGeometryPart3d(boxPart, P(3, 0, 0), ypr(90), 2);
    b.appendGeometryPart3d(meshPart, P(0, 4, 0), ypr(0, 0, 0), 0.75);
    b.appendGeometry(boxRange(0.5, 0.5, 0.5));
    add("part-multi", "faceted", b.geometryStream, { parts: ["box part", "box part", "polyface part"], scales: [1, 2, 0.75] });
  }

  // Symbology inside the stream: colour, transparency, fill, material, geometry class, subcategory.
  /** steps: [params change or null, geometry]; a change is { subCategory?, ...GeometryParams fields }. */
  const symb = (cat, kind, family, steps, expect) => {
    const b = new GeometryStreamBuilder();
    for (const [change, geom] of steps) {
      if (change) {
        const { subCategory, ...fields } = change;
        b.appendGeometryParamsChange(Object.assign(new GeometryParams(cat, subCategory), fields));
      }
      b.appendGeometry(geom);
    }
    return add(kind, family, b.geometryStream, expect, { cat });
  };
  const yellow = ColorDef.from(240, 230, 20);
  const cyan = ColorDef.from(20, 220, 230);
  for (let v = 0; v < 2; v++) {
    const s = 1 + v;
    symb(red, "symb-color", "faceted", [[null, boxRange(s, s, s)], [{ lineColor: yellow }, boxRange(s, s, s).cloneTransformed(Transform.createTranslationXYZ(2 * s, 0, 0))]], {
      colors: [ColorDef.from(220, 30, 30).tbgr, yellow.tbgr],
    });
    symb(green, "symb-transparency", "curved", [[null, boxRange(s, s, s)], [{ elmTransparency: 0.6 }, Sphere.createCenterRadius(P(3 * s, 0, 0), s)]], {
      transparencies: [0, 0.6],
    });
    symb(
      orange,
      "symb-fill",
      "faceted",
      [
        [{ fillDisplay: FillDisplay.Always, fillColor: cyan, lineColor: yellow }, rect(0, 0, 2 * s, s)],
        [{ fillDisplay: FillDisplay.Never }, rect(0, 2 * s, 2 * s, 3 * s)],
      ],
      { fillColor: cyan.tbgr, lineColor: yellow.tbgr },
    );
    symb(red, "symb-material", "faceted", [[{ materialId: material }, boxRange(2 * s, s, s)]], { material: "Truth paint" });
    symb(green, "symb-construction", "faceted", [[null, boxRange(s, s, s)], [{ geometryClass: GeometryClass.Construction }, boxRange(s, s, 3 * s).cloneTransformed(Transform.createTranslationXYZ(2 * s, 0, 0))]], {
      geometryClasses: [GeometryClass.Primary, GeometryClass.Construction],
    });
    symb(orange, "symb-subcategory", "curved", [[null, boxRange(s, s, s)], [{ subCategory: detail }, cylinder(2 * s, 0.5 * s).cloneTransformed(Transform.createTranslationXYZ(3 * s, 0, 0))]], {
      subCategories: ["Orange", "Detail"],
    });
    symb(glass, "symb-material-transparent-category", "curved", [[{ materialId: material }, Sphere.createCenterRadius(P(0, 0, 0), s)]], { material: "Truth paint" });
  }
  // Parasolid B-reps (opcode 25, no facets stored): a plate with a round hole, a box united with a sphere,
  // a box with rounded edges. exportGraphics facets them with Parasolid; twinbase can only fall back.
  for (let v = 0; v < 2; v++) {
    const s = 1 + v;
    add("brep-subtract", "brep", brep(BRepGeometryOperation.Subtract, boxRange(3 * s, 2 * s, 0.5 * s), [Cone.createAxisPoints(P(1.5 * s, s, -s), P(1.5 * s, s, 2 * s), 0.5 * s, 0.5 * s, true)]));
    add("brep-unite", "brep", brep(BRepGeometryOperation.Unite, boxRange(2 * s, 2 * s, 2 * s), [Sphere.createCenterRadius(P(2 * s, 2 * s, 2 * s), s, undefined, true)]));
    add("brep-round", "brep", brep(BRepGeometryOperation.Round, boxRange(2 * s, 1.5 * s, s), [], { radius: 0.2 * s }));
  }
  db.updateProjectExtents(Range3d.createXYZXYZ(-20, -20, -20, 140, 140, 40));
}

/** A TextString in font 1, which the file does not embed (so the generated file depends on no system font). */
function textStream(text, height) {
  const b = new GeometryStreamBuilder();
  b.appendTextString(new TextString({ text, font: 1, height, origin: P(0, 0, 0), rotation: ypr(0) }));
  return b.geometryStream;
}

/** A Parasolid B-rep made by the native library's modeller (createBRepGeometry): the entries of an element. */
function brep(operation, target, tools, parameters) {
  const entry = (g) => {
    const b = new ElementGeometry.Builder();
    if (!b.appendGeometryQuery(g)) throw new Error("make-geometry: a B-rep input could not be encoded");
    return b.entries[0];
  };
  let result;
  const status = db.createBRepGeometry({
    operation,
    entryArray: [entry(target), ...tools.map(entry)],
    parameters,
    onResult: (info) => {
      result = info.entryArray;
    },
  });
  if (status !== 0 || !result?.length) throw new Error(`make-geometry: createBRepGeometry(${operation}) failed with status ${status}`);
  return result;
}

// ------------------------------------------------------------------------------------- profile: bench

function benchProfile(count) {
  const random = rng(20240613);
  const cats = [];
  for (let c = 0; c < 8; c++)
    cats.push(category(`Bench ${c}`, { color: ColorDef.from((37 * c) % 256, 255 - 25 * c, (90 + 60 * c) % 256).toJSON(), transp: c === 7 ? 0.4 : 0 }));
  // Parts: what connectors instance by the thousand (bolts, beams, fittings, furniture).
  const parts = [
    part("b-box", stream(boxRange(0.4, 0.3, 0.2)), Range3d.createXYZXYZ(0, 0, 0, 0.4, 0.3, 0.2)),
    part("b-cyl", stream(cylinder(1, 0.1)), Range3d.createXYZXYZ(-0.1, -0.1, 0, 0.1, 0.1, 1)),
    part("b-ibeam", stream(LinearSweep.create(iProfile(0.3, 0.15, 0.02), V(0, 0, 3), true)), Range3d.createXYZXYZ(-0.075, 0, 0, 0.075, 0.3, 3)),
    part("b-grid", stream(gridPolyface(8, 8, 1, 0.1)), Range3d.createXYZXYZ(0, 0, -0.1, 1, 1, 0.1)),
    part("b-fitting", stream(TorusPipe.createInFrame(Transform.createIdentity(), 0.3, 0.08, Angle.createDegrees(90), true)), Range3d.createXYZXYZ(-0.4, -0.4, -0.1, 0.4, 0.4, 0.1)),
    part("b-ball", stream(Sphere.createCenterRadius(P(0, 0, 0), 0.15)), Range3d.createXYZXYZ(-0.15, -0.15, -0.15, 0.15, 0.15, 0.15)),
  ];
  const partWeights = [35, 25, 20, 15, 3, 2];
  const pickPart = () => {
    let r = random() * 100;
    for (const [k, w] of partWeights.entries()) {
      r -= w;
      if (r < 0) return parts[k];
    }
    return parts[0];
  };
  const kinds = [
    // [name, weight, make(size) -> geometry stream]
    ["parts", 30, (s) => {
      // 1 or 2 part instances, mostly of the simple parts
      const b = new GeometryStreamBuilder();
      const n = 1 + Math.floor(random() * 2);
      for (let k = 0; k < n; k++) b.appendGeometryPart3d(pickPart(), P(k * 0.8, 0, 0), ypr(random() * 360, 0, 0), 0.5 + s / 2);
      return b.geometryStream;
    }],
    ["polyface-grid", 15, (s) => stream(gridPolyface(5 + Math.floor(random() * 6), 4 + Math.floor(random() * 4), s, 0.2 * s, random() * 6))],
    ["polyface-prism", 5, (s) => stream(prismPolyface(6 + Math.floor(random() * 10), 0.4 * s, s))],
    ["extrusion-hole", 10, (s) => stream(LinearSweep.create(ParityRegion.create(rect(0, 0, s, 0.6 * s), circle(0.5 * s, 0.3 * s, 0.15 * s)), V(0, 0, 0.3 * s), true))],
    ["extrusion-ibeam", 10, (s) => stream(LinearSweep.create(iProfile(0.4 * s, 0.2 * s, 0.03 * s), V(0, 0, 3 * s), true))],
    ["box", 10, (s) => stream(boxRange(s, 0.7 * s, 0.4 * s))],
    ["cylinder", 8, (s) => stream(cylinder(s, 0.2 * s))],
    ["sphere", 2, (s) => stream(Sphere.createCenterRadius(P(0, 0, 0), 0.4 * s))],
    ["cone", 4, (s) => stream(cone(s, 0.3 * s, 0.1 * s))],
    ["torus", 2, (s) => stream(TorusPipe.createInFrame(Transform.createIdentity(), 0.5 * s, 0.1 * s, Angle.createDegrees(180), true))],
    ["rotational-sweep", 2, (s) => stream(RotationalSweep.create(rect(0.2 * s, 0, 0.4 * s, 0.3 * s), Ray3d.createXYZUVW(0, 0, 0, 0, 1, 0), Angle.createDegrees(360), false))],
    ["bspline-surface", 2, (s) => stream(bumpySurface(s, 0.2 * s))],
  ];
  const total = kinds.reduce((a, [, w]) => a + w, 0);
  const pick = () => {
    let r = random() * total;
    for (const kind of kinds) {
      r -= kind[1];
      if (r < 0) return kind;
    }
    return kinds[0];
  };
  const side = Math.ceil(Math.sqrt(count));
  let t0 = Date.now();
  for (let i = 0; i < count; i++) {
    const s = 0.5 + random() * 1.5;
    const [kind, , make] = pick();
    element(cats[i % cats.length], P((i % side) * 3, Math.floor(i / side) * 3, random() * 2), ypr(random() * 360, 0, 0), make(s), { kind, family: "bench", expect: {} }, { keep: false });
    if ((i + 1) % 10000 === 0) {
      db.saveChanges();
      console.log(`make-geometry bench: ${i + 1} elements, ${seconds(t0)} s for the last 10,000`);
      t0 = Date.now();
    }
  }
  db.updateProjectExtents(Range3d.createXYZXYZ(-5, -5, -5, side * 3 + 5, side * 3 + 5, 10));
}

try {
  const t0 = Date.now();
  if (profileName === "truth") truthProfile();
  else if (profileName === "geolocated") {
    truthProfile();
    // Bentley's campus in Exton, PA, 50 m up so that no element dips under CesiumJS's globe.
    const origin = Cartographic.fromDegrees({ longitude: -75.6207, latitude: 40.0285, height: 50 });
    db.updateEcefLocation(EcefLocation.createFromCartographicOrigin(origin));
    manifest.ecefLocation = db.ecefLocation.toJSON();
  } else benchProfile(Number(process.env.BENCH_ELEMENTS ?? 100000));
  db.saveChanges();
  timings.insertSeconds = seconds(t0);
  const pkg = (name) => JSON.parse(fs.readFileSync(require.resolve(`${name}/package.json`), "utf8")).version;
  manifest.generator = { coreBackend: pkg("@itwin/core-backend"), native: pkg("@bentley/imodeljs-native") };
  manifest.elementCount = db.withPreparedStatement("SELECT count(*) FROM bis.GeometricElement3d", (stmt) => (stmt.step(), stmt.getValue(0).getInteger()));
  db.close();
  fs.renameSync(partial, outFile);
  timings.totalSeconds = seconds();
  timings.cpuSeconds = (process.cpuUsage().user + process.cpuUsage().system) / 1e6;
  timings.maxRssKb = process.resourceUsage().maxRSS;
  manifest.timings = timings;
  manifest.fileSize = fs.statSync(outFile).size;
  fs.writeFileSync(`${outFile}.manifest.json`, `${JSON.stringify(manifest, null, 1)}\n`);
  console.log(`make-geometry ${profileName}: ${manifest.elementCount} geometric elements in ${timings.totalSeconds} s -> ${outFile}`);
} finally {
  if (db.isOpen) db.close();
  fs.rmSync(partial, { force: true });
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
