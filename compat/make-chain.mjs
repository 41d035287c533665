// Real changeset chains made by the real iTwin.js backend, for twinbase's replay tests and benchmark.
//
//   node compat/make-chain.mjs <output dir> <profile> [version0.bim]
//   (or CHAIN_OUT, CHAIN_PROFILE, CHAIN_VERSION0 in the environment)
//
// Profiles:
//   features  ~7 small changesets that cover what a replay must handle: models, categories, a geometry part,
//             boxes, spheres, cones, meshes, a 2D drawing, project extents, updates of placement, geometry,
//             label and jsonProperties, deletes, a subcategory appearance change, a code spec, a link-table
//             relationship, an ECSchema import (a class with 40 properties, so they overflow the shared
//             columns, and two aspect classes), instances with aspects, a schema upgrade, and later updates
//             and deletes of all of them.
//   bench     a version0 with 10,000 geometric elements, then 100 changesets of ~50 inserts, ~100 updates and
//             ~20 deletes each, two of them schema changesets (BENCH_CHANGESETS / BENCH_ELEMENTS scale it).
//   bench-small  the same with 2,000 elements and 20 changesets (bench/replay.py --quick).
//
// How: core-backend's in-process hub (HubMock) is started in a scratch folder, the iModel is created from
// version0 (given, e.g. twinbase's seed gunzipped; else SnapshotDb.createEmpty: the hub prepares either as a
// baseline, exactly as createNewIModel does), a briefcase is downloaded and opened, and each changeset is
// made with saveChanges + pushChanges. Written to <output dir>:
//   baseline.bim                the hub's checkpoint-0 (version0 as prepared by the hub)
//   changesets/<index>_<id>.cs  the hub's changeset files
//   chain.json                  [{index, id, parentId, changesType, description, size, uncompressedSize}]
//   expected/<index>.bim        the pushing briefcase right after that push, closed (WAL folded) and
//                               copied; every index for "features", a few for "bench" (EXPECTED_EVERY=1
//                               writes all)
//   generator.json              backend versions, profile, iModel id, timings
// The output folder must not exist yet or be empty; the caller renames it into place when complete.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

import {
  BriefcaseDb,
  BriefcaseManager,
  DefinitionModel,
  DocumentListModel,
  Drawing,
  DrawingCategory,
  IModelHost,
  PhysicalModel,
  SnapshotDb,
  SpatialCategory,
  SubCategory,
} from "@itwin/core-backend";
import { Logger, LogLevel } from "@itwin/core-bentley";
import {
  Code,
  CodeScopeSpec,
  ColorDef,
  GeometryStreamBuilder,
  IModel,
  SubCategoryAppearance,
} from "@itwin/core-common";
import {
  Angle,
  Arc3d,
  Box,
  Cone,
  LineString3d,
  Loop,
  Point3d,
  PolyfaceBuilder,
  Range3d,
  Sphere,
  Vector3d,
  YawPitchRollAngles,
} from "@itwin/core-geometry";
import { rng } from "./lib/random.mjs";

const require = createRequire(import.meta.url);
const { HubMock } = require("@itwin/core-backend/lib/cjs/internal/HubMock");
const here = path.dirname(fileURLToPath(import.meta.url));

const outDir = path.resolve(process.argv[2] ?? process.env.CHAIN_OUT ?? "");
const profileName = process.argv[3] ?? process.env.CHAIN_PROFILE ?? "features";
const version0Arg = process.argv[4] ?? process.env.CHAIN_VERSION0;
if (!process.argv[2] && !process.env.CHAIN_OUT) {
  console.error("usage: node compat/make-chain.mjs <output dir> <features|bench> [version0.bim]");
  process.exit(2);
}
if (fs.existsSync(outDir) && fs.readdirSync(outDir).length > 0) {
  console.error(`make-chain: ${outDir} is not empty`);
  process.exit(2);
}

const TOKEN = "Bearer mock";
const started = Date.now();
const seconds = () => Number(((Date.now() - started) / 1000).toFixed(2));

// ------------------------------------------------------------------------------------------- geometry


function stream(...primitives) {
  const builder = new GeometryStreamBuilder();
  for (const p of primitives) builder.appendGeometry(p);
  return builder.geometryStream;
}

const box = (x, y, z) => Box.createRange(Range3d.createXYZXYZ(0, 0, 0, x, y, z), true);
const sphere = (r) => Sphere.createCenterRadius(Point3d.create(r, r, r), r);
const cone = (h, r0, r1) => Cone.createAxisPoints(Point3d.create(0, 0, 0), Point3d.create(0, 0, h), r0, r1, true);

/** An n x n grid mesh over a wavy surface, with normals and params (a realistic polyface). */
function mesh(n, size, phase = 0) {
  const builder = PolyfaceBuilder.create();
  builder.options.needNormals = true;
  builder.options.needParams = true;
  const p = (i, j) =>
    Point3d.create((i * size) / n, (j * size) / n, 0.3 * size * Math.sin(phase + i / 3) * Math.cos(j / 4));
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) builder.addQuadFacet([p(i, j), p(i + 1, j), p(i + 1, j + 1), p(i, j + 1)]);
  return builder.claimPolyface();
}

/** A geometry stream of kind k (0..3), sized by s: box, sphere, cone or a small mesh. */
function shape(k, s) {
  switch (k % 4) {
    case 0:
      return stream(box(s, s * 0.6, s * 0.4));
    case 1:
      return stream(sphere(s / 2));
    case 2:
      return stream(cone(s, s / 2, s / 5));
    default:
      return stream(mesh(4, s, s));
  }
}

// ---------------------------------------------------------------------------------------------- schema

/** ChainTest: Widget (a PhysicalElement with 40 properties of mixed types: more than bis_GeometricElement3d's
 * shared columns, so some overflow), WidgetNote (a unique aspect), WidgetTag (a multi-aspect); version
 * 01.00.01 adds two Widget properties and a Gadget class (a schema upgrade on existing tables). */
function chainTestSchema(minor) {
  const types = ["string", "double", "int", "long", "boolean", "dateTime", "point3d", "point2d"];
  const props = [];
  for (let i = 0; i < 40; i++) props.push(`<ECProperty propertyName="P${i}" typeName="${types[i % types.length]}"/>`);
  if (minor >= 1) {
    props.push(`<ECProperty propertyName="Revision" typeName="int"/>`);
    props.push(`<ECProperty propertyName="Remark" typeName="string"/>`);
  }
  const gadget =
    minor >= 1
      ? `<ECEntityClass typeName="Gadget">
    <BaseClass>bis:PhysicalElement</BaseClass>
    <ECProperty propertyName="Power" typeName="double"/>
    <ECProperty propertyName="Maker" typeName="string"/>
  </ECEntityClass>`
      : "";
  return `<?xml version="1.0" encoding="UTF-8"?>
<ECSchema schemaName="ChainTest" alias="ct" version="01.00.${String(minor).padStart(2, "0")}" xmlns="http://www.bentley.com/schemas/Bentley.ECXML.3.2">
  <ECSchemaReference name="BisCore" version="01.00.00" alias="bis"/>
  <ECEntityClass typeName="Widget">
    <BaseClass>bis:PhysicalElement</BaseClass>
    ${props.join("\n    ")}
  </ECEntityClass>
  <ECEntityClass typeName="WidgetNote">
    <BaseClass>bis:ElementUniqueAspect</BaseClass>
    <ECProperty propertyName="Note" typeName="string"/>
    <ECProperty propertyName="Score" typeName="double"/>
  </ECEntityClass>
  <ECEntityClass typeName="WidgetTag">
    <BaseClass>bis:ElementMultiAspect</BaseClass>
    <ECProperty propertyName="Tag" typeName="string"/>
    <ECProperty propertyName="Weight" typeName="int"/>
  </ECEntityClass>
  ${gadget}
</ECSchema>`;
}

/** Values for Widget.P0..P39, varied by `seed`. */
function widgetProps(seed) {
  const out = {};
  for (let i = 0; i < 40; i++) {
    switch (i % 8) {
      case 0:
        out[`p${i}`] = `w${seed}-${i}`;
        break;
      case 1:
        out[`p${i}`] = seed * 1.5 + i / 7;
        break;
      case 2:
        out[`p${i}`] = seed * 10 + i;
        break;
      case 3:
        out[`p${i}`] = 2 ** 40 + seed * 1000 + i;
        break;
      case 4:
        out[`p${i}`] = (seed + i) % 2 === 0;
        break;
      case 5:
        out[`p${i}`] = new Date(Date.UTC(2024, seed % 12, 1 + (i % 28))).toISOString();
        break;
      case 6:
        out[`p${i}`] = { x: seed, y: i, z: seed + i / 10 };
        break;
      default:
        out[`p${i}`] = { x: seed / 3, y: i * 2 };
        break;
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------ the chain

class Chain {
  constructor(iModelId, briefcaseFile) {
    this.iModelId = iModelId;
    this.briefcaseFile = briefcaseFile;
    this.db = undefined;
    this.pushes = [];
    this.expected = new Set();
  }

  async open() {
    this.db = await BriefcaseDb.open({ fileName: this.briefcaseFile });
    return this.db;
  }

  /** saveChanges + pushChanges; with `expected`, the briefcase is closed (which folds its WAL into the
   * file) and copied to expected/<index>.bim, then reopened. */
  async push(description, { expected = true } = {}) {
    const db = this.db;
    db.saveChanges(description);
    const t0 = Date.now();
    await db.pushChanges({ description, accessToken: TOKEN });
    const index = db.changeset.index;
    this.pushes.push({ index, description, pushMs: Date.now() - t0 });
    if (expected) {
      db.close();
      for (const suffix of ["-wal", "-shm", "-journal"])
        if (fs.existsSync(this.briefcaseFile + suffix) && fs.statSync(this.briefcaseFile + suffix).size > 0)
          throw new Error(`make-chain: ${this.briefcaseFile}${suffix} is not empty after close`);
      fs.mkdirSync(path.join(outDir, "expected"), { recursive: true });
      fs.copyFileSync(this.briefcaseFile, path.join(outDir, "expected", `${index}.bim`));
      this.expected.add(index);
      await this.open();
    }
    return index;
  }
}

// -------------------------------------------------------------------------------------- profile: features

async function features(chain) {
  let db = chain.db;
  const s = {};

  // 1. models, categories, a part, 3D elements of every kind, a 2D drawing, extents.
  s.model = PhysicalModel.insert(db, IModel.rootSubjectId, "Features model");
  s.defModel = DefinitionModel.insert(db, IModel.rootSubjectId, "Features definitions");
  s.cat = SpatialCategory.insert(db, s.defModel, "Features category", new SubCategoryAppearance({ color: ColorDef.red.toJSON() }));
  s.cat2 = SpatialCategory.insert(db, IModel.dictionaryId, "Second category", new SubCategoryAppearance({ color: ColorDef.blue.toJSON(), weight: 2 }));
  s.subcat = SubCategory.insert(db, s.cat, "Edges", new SubCategoryAppearance({ color: ColorDef.green.toJSON(), style: "0" }));
  const partBuilder = new GeometryStreamBuilder();
  partBuilder.appendGeometry(box(0.5, 0.5, 0.5));
  s.part = db.elements.insertElement({
    classFullName: "BisCore:GeometryPart",
    model: s.defModel,
    code: Code.createEmpty(),
    geom: partBuilder.geometryStream,
    bbox: Range3d.createXYZXYZ(0, 0, 0, 0.5, 0.5, 0.5),
  });
  const element = (label, origin, geom, extra = {}) =>
    db.elements.insertElement({
      classFullName: "Generic:PhysicalObject",
      model: s.model,
      category: s.cat,
      code: Code.createEmpty(),
      userLabel: label,
      placement: { origin, angles: {} },
      geom,
      ...extra,
    });
  s.box = element("box", Point3d.create(0, 0, 0), stream(box(2, 3, 1)));
  s.sphere = element("sphere", Point3d.create(5, 0, 0), stream(sphere(1.5)));
  s.cone = element("cone", Point3d.create(10, 0, 0), stream(cone(3, 1, 0.2)), {
    placement: { origin: Point3d.create(10, 0, 0), angles: YawPitchRollAngles.createDegrees(30, 0, 10).toJSON() },
  });
  s.mesh = element("mesh", Point3d.create(0, 10, 0), stream(mesh(12, 6)));
  const withPart = new GeometryStreamBuilder();
  withPart.appendGeometryPart3d(s.part, Point3d.create(0, 0, 0));
  withPart.appendGeometryPart3d(s.part, Point3d.create(1, 0, 0));
  withPart.appendSubCategoryChange(s.subcat);
  withPart.appendGeometry(LineString3d.create([0, 0, 0], [1, 1, 0], [2, 0, 1]));
  s.parts = element("part instances", Point3d.create(15, 0, 0), withPart.geometryStream);
  s.second = db.elements.insertElement({
    classFullName: "Generic:PhysicalObject",
    model: s.model,
    category: s.cat2,
    code: Code.createEmpty(),
    userLabel: "in the second category",
    placement: { origin: Point3d.create(0, -5, 0), angles: {} },
    geom: stream(box(1, 1, 4)),
    jsonProperties: { features: { step: 1, tags: ["a", "b"] } },
  });
  s.docs = DocumentListModel.insert(db, IModel.rootSubjectId, "Features documents");
  s.drawing = Drawing.insert(db, s.docs, "Features drawing");
  s.drawingCat = DrawingCategory.insert(db, s.defModel, "Features 2D", new SubCategoryAppearance({ color: ColorDef.black.toJSON() }));
  const g2d = new GeometryStreamBuilder();
  g2d.appendGeometry(Loop.create(LineString3d.create([0, 0], [4, 0], [4, 2], [0, 2], [0, 0])));
  g2d.appendGeometry(Arc3d.createXY(Point3d.create(2, 1), 0.75));
  s.graphic = db.elements.insertElement({
    classFullName: "BisCore:DrawingGraphic",
    model: s.drawing,
    category: s.drawingCat,
    code: Code.createEmpty(),
    userLabel: "2D outline",
    placement: { origin: { x: 1, y: 1 }, angle: 15 },
    geom: g2d.geometryStream,
  });
  db.updateProjectExtents(Range3d.createXYZXYZ(-10, -10, -10, 40, 40, 20));
  await chain.push("models, categories, a part, boxes, sphere, cone, mesh, a drawing");
  db = chain.db;

  // 2. updates of placement, geometry, label and jsonProperties; a delete; a subcategory appearance; an insert.
  const moved = db.elements.getElement(s.box);
  moved.placement.origin = Point3d.create(1, 2, 3);
  moved.placement.angles = YawPitchRollAngles.createDegrees(45, 0, 0);
  moved.userLabel = "box (moved)";
  db.elements.updateElement(moved.toJSON());
  const reshaped = db.elements.getElement({ id: s.sphere, wantGeometry: true });
  reshaped.geom = stream(sphere(2.5), box(1, 1, 1));
  db.elements.updateElement(reshaped.toJSON());
  const relabelled = db.elements.getElement(s.mesh);
  relabelled.userLabel = "mesh (relabelled)";
  relabelled.jsonProperties = { ...relabelled.jsonProperties, features: { note: "updated in 2", n: 2 } };
  db.elements.updateElement(relabelled.toJSON());
  const json = db.elements.getElement(s.second);
  json.jsonProperties.features.step = 2;
  json.jsonProperties.features.tags.push("c");
  db.elements.updateElement(json.toJSON());
  db.elements.deleteElement(s.cone);
  const sub = db.elements.getElement(s.subcat);
  sub.appearance = new SubCategoryAppearance({ color: ColorDef.from(200, 100, 0).toJSON(), weight: 3, transp: 0.25 });
  db.elements.updateElement(sub.toJSON());
  const defaultSub = db.elements.getElement(IModel.getDefaultSubCategoryId(s.cat2));
  defaultSub.appearance = new SubCategoryAppearance({ color: ColorDef.white.toJSON(), invisible: true });
  db.elements.updateElement(defaultSub.toJSON());
  s.late = element("late box", Point3d.create(20, 20, 0), stream(box(1, 2, 3)));
  await chain.push("move, reshape, relabel, json, delete, subcategory appearance, insert");
  db = chain.db;

  // 3. schema import (DDL in the changeset: shared columns, an overflow table, aspect tables).
  await db.importSchemaStrings([chainTestSchema(0)]);
  await chain.push("ChainTest 1.0.0: Widget (40 properties), WidgetNote, WidgetTag");
  db = chain.db;

  // 4. instances of the new classes with aspects, a code spec and coded elements, a link-table relationship.
  s.codeSpec = db.codeSpecs.insert("ChainTest:Widget", CodeScopeSpec.Type.Model);
  s.widgets = [];
  for (let i = 0; i < 4; i++) {
    s.widgets.push(
      db.elements.insertElement({
        classFullName: "ChainTest:Widget",
        model: s.model,
        category: s.cat,
        code: new Code({ spec: s.codeSpec, scope: s.model, value: `W-${i}` }),
        userLabel: `widget ${i}`,
        placement: { origin: Point3d.create(i * 3, 30, 0), angles: {} },
        geom: shape(i, 1 + i / 2),
        ...widgetProps(i),
      }),
    );
  }
  s.notes = s.widgets.slice(0, 3).map((w, i) =>
    db.elements.insertAspect({ classFullName: "ChainTest:WidgetNote", element: { id: w }, note: `note ${i}`, score: i * 1.25 }),
  );
  for (const [i, w] of s.widgets.entries())
    for (let k = 0; k <= i % 3; k++)
      db.elements.insertAspect({ classFullName: "ChainTest:WidgetTag", element: { id: w }, tag: `tag ${i}.${k}`, weight: k });
  s.group = db.relationships.insertInstance({ classFullName: "BisCore:ElementGroupsMembers", sourceId: s.widgets[0], targetId: s.box, memberPriority: 3 });
  s.big = element("big mesh", Point3d.create(-20, 0, 0), stream(mesh(60, 20, 1)));
  await chain.push("widgets with aspects, codes, a relationship, a big mesh");
  db = chain.db;

  // 5. updates and deletes of the new instances and their aspects.
  const w0 = db.elements.getElement(s.widgets[0]);
  Object.assign(w0, { p0: "w0 changed", p17: 12345, p35: true, p38: { x: 9, y: 8, z: 7 } });
  w0.userLabel = "widget 0 (changed)";
  db.elements.updateElement(w0.toJSON());
  const w2 = db.elements.getElement({ id: s.widgets[2], wantGeometry: true });
  w2.placement.origin = Point3d.create(6, 33, 1);
  w2.geom = shape(3, 2);
  db.elements.updateElement(w2.toJSON());
  const note1 = db.elements.getAspect(s.notes[1]);
  note1.note = "note 1 (changed)";
  note1.score = -1;
  db.elements.updateAspect(note1.toJSON());
  const tags = db.elements.getAspects(s.widgets[3], "ChainTest:WidgetTag");
  db.elements.deleteAspect(tags[0].id);
  db.elements.deleteElement(s.widgets[1]); // its note and tags go with it
  db.relationships.deleteInstance(db.relationships.getInstanceProps("BisCore:ElementGroupsMembers", s.group));
  await chain.push("widget and aspect updates, aspect and widget deletes, relationship delete");
  db = chain.db;

  // 6. schema upgrade: new Widget properties and a new class on tables that already hold rows.
  await db.importSchemaStrings([chainTestSchema(1)]);
  await chain.push("ChainTest 1.0.1: Widget.Revision, Widget.Remark, Gadget");
  db = chain.db;

  // 7. the upgraded schema in use; 2D and 3D deletes; the big mesh replaced.
  const w3 = db.elements.getElement(s.widgets[3]);
  Object.assign(w3, { revision: 2, remark: "after the upgrade", p1: 0.5 });
  db.elements.updateElement(w3.toJSON());
  s.gadget = db.elements.insertElement({
    classFullName: "ChainTest:Gadget",
    model: s.model,
    category: s.cat2,
    code: Code.createEmpty(),
    userLabel: "gadget",
    placement: { origin: Point3d.create(0, 40, 0), angles: {} },
    geom: stream(sphere(0.8)),
    power: 42.5,
    maker: "chain",
  });
  db.elements.deleteElement(s.graphic);
  db.elements.deleteElement(s.parts);
  const big = db.elements.getElement({ id: s.big, wantGeometry: true });
  big.geom = stream(mesh(30, 10, 2));
  db.elements.updateElement(big.toJSON());
  await chain.push("upgraded widget, a gadget, 2D and part deletes, mesh replaced");
}

// ----------------------------------------------------------------------------------------- profile: bench

/** Fill a fresh SnapshotDb (made from version0 or empty) with `count` geometric elements: the bench baseline. */
function benchVersion0(file, version0, count) {
  let snapshot;
  if (version0) {
    const source = SnapshotDb.openFile(version0);
    try {
      snapshot = SnapshotDb.createFrom(source, file);
    } finally {
      source.close();
    }
  } else {
    snapshot = SnapshotDb.createEmpty(file, { rootSubject: { name: "bench" } });
  }
  const random = rng(7);
  const models = [];
  const categories = [];
  for (let m = 0; m < 8; m++) models.push(PhysicalModel.insert(snapshot, IModel.rootSubjectId, `Bench model ${m}`));
  for (let c = 0; c < 6; c++) {
    categories.push(
      SpatialCategory.insert(snapshot, IModel.dictionaryId, `Bench category ${c}`, new SubCategoryAppearance({ color: ColorDef.from(40 * c, 255 - 40 * c, 90).toJSON() })),
    );
  }
  for (let i = 0; i < count; i++) {
    snapshot.elements.insertElement({
      classFullName: "Generic:PhysicalObject",
      model: models[i % models.length],
      category: categories[i % categories.length],
      code: Code.createEmpty(),
      userLabel: `element ${i}`,
      placement: {
        origin: Point3d.create((i % 100) * 4, Math.floor(i / 100) * 4, random() * 3),
        angles: YawPitchRollAngles.createDegrees(random() * 360, 0, 0).toJSON(),
      },
      geom: shape(i, 0.5 + random() * 2),
      jsonProperties: i % 5 === 0 ? { bench: { batch: 0, n: i } } : undefined,
    });
  }
  snapshot.updateProjectExtents(Range3d.createXYZXYZ(-10, -10, -10, 410, Math.ceil(count / 100) * 4 + 10, 20));
  snapshot.saveChanges();
  snapshot.close();
  return { models, categories };
}

const BENCH_SIZES = { bench: { elements: 10000, changesets: 100 }, "bench-small": { elements: 2000, changesets: 20 } };

async function bench(chain, layout) {
  const total = Number(process.env.BENCH_CHANGESETS ?? BENCH_SIZES[profileName].changesets);
  const every = Number(process.env.EXPECTED_EVERY ?? 0);
  const schemaAt = new Set([Math.max(1, Math.round(total * 0.3)), Math.max(2, Math.round(total * 0.7))]);
  const random = rng(11);
  const pick = (arr) => arr[Math.floor(random() * arr.length)];
  let db = chain.db;

  // Every live element id, to pick updates and deletes from: Generic:PhysicalObject (and later Widgets).
  const live = [];
  for (const row of db.withPreparedStatement("SELECT ECInstanceId FROM Generic.PhysicalObject", (stmt) => [...stmt]))
    live.push(row.id);
  const widgets = [];
  let schemaMinor = -1;
  let serial = 0;

  for (let n = 1; n <= total; n++) {
    let description;
    if (schemaAt.has(n)) {
      schemaMinor += 1;
      await db.importSchemaStrings([chainTestSchema(schemaMinor)]);
      description = `schema ChainTest 1.0.${schemaMinor}`;
    } else {
      const inserts = 40 + Math.floor(random() * 21);
      const updates = 80 + Math.floor(random() * 41);
      const deletes = 15 + Math.floor(random() * 11);
      for (let i = 0; i < inserts; i++) {
        serial += 1;
        const asWidget = schemaMinor >= 0 && i % 5 === 0;
        const id = db.elements.insertElement({
          classFullName: asWidget ? "ChainTest:Widget" : "Generic:PhysicalObject",
          model: pick(layout.models),
          category: pick(layout.categories),
          code: Code.createEmpty(),
          userLabel: `cs${n} new ${i}`,
          placement: { origin: Point3d.create(random() * 400, random() * 400, random() * 5), angles: {} },
          geom: shape(serial, 0.5 + random() * 2),
          ...(asWidget ? widgetProps(serial) : {}),
        });
        if (asWidget) {
          widgets.push(id);
          db.elements.insertAspect({ classFullName: "ChainTest:WidgetTag", element: { id }, tag: `t${serial}`, weight: n });
        } else {
          live.push(id);
        }
      }
      for (let i = 0; i < updates; i++) {
        const id = pick(live);
        const kind = i % 4;
        const el = db.elements.getElement({ id, wantGeometry: kind === 2 });
        if (kind === 0) {
          el.placement.origin = Point3d.create(el.placement.origin.x + 1, el.placement.origin.y, el.placement.origin.z + 0.5);
        } else if (kind === 1) {
          el.userLabel = `cs${n} label ${i}`;
        } else if (kind === 2) {
          el.geom = shape(serial + i, 0.5 + random() * 2);
        } else {
          el.jsonProperties = { ...el.jsonProperties, bench: { cs: n, i } };
          el.placement.angles = YawPitchRollAngles.createDegrees(random() * 360, 0, 0);
        }
        db.elements.updateElement(el.toJSON());
      }
      if (widgets.length > 0) {
        for (let i = 0; i < 5; i++) {
          const w = db.elements.getElement(pick(widgets));
          w.p0 = `cs${n} widget ${i}`;
          w.p9 = n * 1.5;
          db.elements.updateElement(w.toJSON());
        }
      }
      for (let i = 0; i < deletes && live.length > 0; i++) {
        const at = Math.floor(random() * live.length);
        db.elements.deleteElement(live[at]);
        live[at] = live[live.length - 1];
        live.pop();
      }
      description = `cs${n}: ${inserts} inserts, ${updates} updates, ${deletes} deletes`;
    }
    const wantExpected = n === total || n === 1 || schemaAt.has(n) || (every > 0 && n % every === 0);
    await chain.push(description, { expected: wantExpected });
    db = chain.db;
  }
}

// ------------------------------------------------------------------------------------------------- run

const profiles = { features, bench, "bench-small": bench };
if (!profiles[profileName]) {
  console.error(`make-chain: unknown profile ${profileName} (features, bench, bench-small)`);
  process.exit(2);
}

fs.mkdirSync(outDir, { recursive: true });
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-chain-"));
Logger.initializeToConsole();
Logger.setLevelDefault(LogLevel.Error);
await IModelHost.startup({ cacheDir: path.join(work, "cache") });
// Offline machine: without this the first open waits ~15 s for the public GCS workspace.
IModelHost.appWorkspace.settings.addDictionary({ name: "make-chain", priority: 200 }, { "itwin/core/gcs/disableWorkspaces": true });

const timings = {};
let chain;
try {
  let version0 = version0Arg ? path.resolve(version0Arg) : undefined;
  let layout;
  if (profileName.startsWith("bench")) {
    const t0 = Date.now();
    const file = path.join(work, "bench-version0.bim");
    layout = benchVersion0(file, version0, Number(process.env.BENCH_ELEMENTS ?? BENCH_SIZES[profileName].elements));
    version0 = file;
    timings.version0Seconds = (Date.now() - t0) / 1000;
  } else if (!version0) {
    // HubMock would make its own, but the brief is explicit: an empty snapshot prepared as a baseline.
    version0 = path.join(work, "version0.bim");
    SnapshotDb.createEmpty(version0, { rootSubject: { name: "chain" } }).close();
  }

  HubMock.startup("make-chain", work);
  try {
    const iTwinId = HubMock.iTwinId;
    const iModelId = await HubMock.createNewIModel({ iTwinId, iModelName: `chain ${profileName}`, version0, noLocks: true });
    const hub = HubMock.findLocalHub(iModelId);
    fs.copyFileSync(path.join(hub.checkpointDir, "checkpoint-0"), path.join(outDir, "baseline.bim"));
    const props = await BriefcaseManager.downloadBriefcase({
      iTwinId,
      iModelId,
      accessToken: TOKEN,
      fileName: path.join(work, "briefcase.bim"),
    });
    chain = new Chain(iModelId, props.fileName);
    await chain.open();
    const t1 = Date.now();
    await profiles[profileName](chain, layout);
    timings.changesetsSeconds = (Date.now() - t1) / 1000;
    chain.db.close();
    chain.db = undefined;

    const csDir = path.join(outDir, "changesets");
    fs.mkdirSync(csDir, { recursive: true });
    const list = await HubMock.downloadChangesets({ iModelId, range: { first: 1 }, targetDir: path.join(work, "download") });
    const entries = [];
    for (const cs of list) {
      const name = `${cs.index}_${cs.id}.cs`;
      fs.renameSync(cs.pathname, path.join(csDir, name));
      entries.push({
        index: cs.index,
        id: cs.id,
        parentId: cs.parentId,
        changesType: cs.changesType,
        description: cs.description,
        file: `changesets/${name}`,
        size: cs.size,
        uncompressedSize: cs.uncompressedSize,
        expected: chain.expected.has(cs.index) ? `expected/${cs.index}.bim` : null,
      });
    }
    fs.writeFileSync(path.join(outDir, "chain.json"), `${JSON.stringify(entries, null, 1)}\n`);
    const pkg = (name) => JSON.parse(fs.readFileSync(require.resolve(`${name}/package.json`), "utf8")).version;
    timings.totalSeconds = seconds();
    fs.writeFileSync(
      path.join(outDir, "generator.json"),
      `${JSON.stringify(
        {
          script: path.relative(path.join(here, ".."), fileURLToPath(import.meta.url)),
          profile: profileName,
          version0: version0Arg ? path.basename(version0Arg) : null,
          iModelId,
          iTwinId,
          coreBackend: pkg("@itwin/core-backend"),
          native: pkg("@bentley/imodeljs-native"),
          changesets: entries.length,
          expected: [...chain.expected].sort((a, b) => a - b),
          timings,
          pushes: chain.pushes,
        },
        null,
        1,
      )}\n`,
    );
    console.log(`make-chain ${profileName}: ${entries.length} changesets in ${timings.totalSeconds} s -> ${outDir}`);
  } finally {
    if (chain?.db?.isOpen) chain.db.close();
    HubMock.shutdown();
  }
} finally {
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
