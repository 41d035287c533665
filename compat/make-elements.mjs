// A large iModel made by the real iTwin.js backend, for bench/elements.py (reading speed of
// twinbase.bim.imodel): `count` elements spread over 10 physical models and 8 categories, with codes on
// some, user labels, parents on some, federation guids (the backend's own), rotated placements, geometry
// that is a geometry part instance (most), a box, or a line; every 10th a 2D drawing graphic; and
// instances (every 4th) of a small custom schema class whose 10 properties (int, double, string, bool,
// date, point, navigation) land in shared columns of bis_GeometricElement3d.
//
//   node compat/make-elements.mjs <out.bim> <count>
//
// Exit status 0 with the file written (then closed, rollback journal, like a checkpoint); any failure is
// printed on stderr and exits 1.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import {
  DocumentListModel,
  Drawing,
  DrawingCategory,
  GeometryPart,
  IModelHost,
  PhysicalModel,
  SnapshotDb,
  SpatialCategory,
} from "@itwin/core-backend";
import { Code, ColorDef, GeometryStreamBuilder, IModel, SubCategoryAppearance } from "@itwin/core-common";
import { Box, LineString3d, Point3d, Range3d, YawPitchRollAngles } from "@itwin/core-geometry";

import { startBackend } from "./lib/changesets.mjs";

const [out, countArg] = process.argv.slice(2);
const count = Number(countArg);
if (!out || !Number.isInteger(count) || count < 1) {
  console.error("usage: node compat/make-elements.mjs <out.bim> <count>");
  process.exit(2);
}

const SCHEMA = `<?xml version="1.0" encoding="UTF-8"?>
<ECSchema schemaName="BenchRead" alias="br" version="01.00.00" xmlns="http://www.bentley.com/schemas/Bentley.ECXML.3.2">
  <ECSchemaReference name="BisCore" version="01.00.00" alias="bis"/>
  <ECSchemaReference name="ECDbMap" version="02.00.00" alias="ecdbmap"/>
  <ECEntityClass typeName="Fitting">
    <BaseClass>bis:PhysicalElement</BaseClass>
    <ECProperty propertyName="Size" typeName="int"/>
    <ECProperty propertyName="Weight" typeName="double"/>
    <ECProperty propertyName="Material" typeName="string"/>
    <ECProperty propertyName="Inspected" typeName="boolean"/>
    <ECProperty propertyName="Installed" typeName="dateTime"/>
    <ECProperty propertyName="Anchor" typeName="point3d"/>
    <ECNavigationProperty propertyName="Supplier" relationshipName="FittingRefersToSupplier" direction="forward"/>
    <ECProperty propertyName="Note" typeName="string"/>
    <ECProperty propertyName="Pressure" typeName="double"/>
    <ECProperty propertyName="Rating" typeName="int"/>
  </ECEntityClass>
  <ECRelationshipClass typeName="FittingRefersToSupplier" strength="referencing" modifier="Sealed">
    <Source multiplicity="(0..*)" roleLabel="refers to" polymorphic="true"><Class class="Fitting"/></Source>
    <Target multiplicity="(0..1)" roleLabel="is referred to by" polymorphic="true"><Class class="bis:Element"/></Target>
  </ECRelationshipClass>
</ECSchema>`;

function stream(geometry) {
  const builder = new GeometryStreamBuilder();
  builder.appendGeometry(geometry);
  return builder.geometryStream;
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-make-elements-"));
let status = 0;
try {
  await startBackend(work);
  fs.rmSync(out, { force: true });
  const db = SnapshotDb.createEmpty(out, { rootSubject: { name: `bench read ${count}` } });
  try {
    await db.importSchemaStrings([SCHEMA]);
    const dict = IModel.dictionaryId;
    const models = [];
    for (let m = 0; m < 10; m++) models.push(PhysicalModel.insert(db, IModel.rootSubjectId, `Model ${m}`));
    const categories = [];
    for (let c = 0; c < 8; c++) {
      categories.push(SpatialCategory.insert(db, dict, `Category ${c}`, new SubCategoryAppearance({ color: ColorDef.from(30 * c, 200 - 20 * c, 90).toJSON() })));
    }
    const parts = [];
    for (let p = 0; p < 6; p++) {
      const size = 0.5 + p * 0.25;
      parts.push(db.elements.insertElement({
        classFullName: GeometryPart.classFullName,
        model: dict,
        code: GeometryPart.createCode(db, dict, `part ${p}`),
        geom: stream(Box.createRange(Range3d.createXYZXYZ(-size, -size, -size, size, size, size), true)),
        bbox: Range3d.createXYZXYZ(-size, -size, -size, size, size, size),
      }));
    }
    const docs = DocumentListModel.insert(db, IModel.rootSubjectId, "Drawings");
    const drawing = Drawing.insert(db, docs, "Plan");
    const drawingCat = DrawingCategory.insert(db, dict, "Plan lines", new SubCategoryAppearance({ color: ColorDef.black.toJSON() }));
    const boxStream = stream(Box.createRange(Range3d.createXYZXYZ(0, 0, 0, 1, 2, 3), true));
    const lineStream = stream(LineString3d.create([0, 0, 0], [2, 1, 0], [3, 3, 1]));
    const partStreams = parts.map((part) => {
      const builder = new GeometryStreamBuilder();
      builder.appendGeometryPart3d(part);
      return builder.geometryStream;
    });
    const lineStream2d = stream(LineString3d.create([0, 0], [4, 0], [4, 2]));
    let lastParent;
    for (let i = 0; i < count; i++) {
      if (i % 10 === 9) {
        db.elements.insertElement({
          classFullName: "BisCore:DrawingGraphic",
          model: drawing,
          category: drawingCat,
          code: Code.createEmpty(),
          userLabel: `line ${i}`,
          placement: { origin: { x: (i % 500) * 5, y: Math.floor(i / 500) * 5 }, angle: i % 360 },
          geom: lineStream2d,
        });
        continue;
      }
      const fitting = i % 4 === 0;
      const props = {
        classFullName: fitting ? "BenchRead:Fitting" : "Generic:PhysicalObject",
        model: models[i % models.length],
        category: categories[i % categories.length],
        code: Code.createEmpty(),
        userLabel: `element ${i}`,
        placement: {
          origin: Point3d.create((i % 300) * 4, Math.floor(i / 300) * 4, (i % 7) * 0.5),
          angles: YawPitchRollAngles.createDegrees((i * 37) % 360, (i % 3) * 10, (i % 5) * 5).toJSON(),
        },
        geom: i % 7 === 0 ? boxStream : i % 11 === 0 ? lineStream : partStreams[i % partStreams.length],
      };
      if (i % 13 === 0 && lastParent !== undefined) {
        // a child lives in its parent's model
        props.parent = { id: lastParent.id, relClassName: "BisCore:PhysicalElementAssemblesElements" };
        props.model = lastParent.model;
      }
      if (fitting) {
        Object.assign(props, {
          size: i % 50,
          weight: i * 0.125,
          material: `steel ${i % 9}`,
          inspected: i % 3 === 0,
          installed: new Date(Date.UTC(2024, i % 12, 1 + (i % 28))).toISOString(),
          anchor: { x: i, y: -i, z: 0.5 },
          supplier: { id: categories[0], relClassName: "BenchRead:FittingRefersToSupplier" },
          note: i % 5 === 0 ? `note ${i}` : undefined,
          pressure: 1.5 + (i % 10),
          rating: i % 4,
        });
      }
      const id = db.elements.insertElement(props);
      if (i % 13 === 1) lastParent = { id, model: props.model };
      if (i % 20_000 === 19_999) db.saveChanges();
    }
    db.updateProjectExtents(Range3d.createXYZXYZ(-10, -10, -10, 1300, Math.ceil(count / 300) * 4 + 10, 20));
    db.saveChanges();
  } finally {
    db.close();
  }
} catch (err) {
  console.error(`make-elements failed: ${err?.stack ?? err}`);
  status = 1;
} finally {
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(status);
