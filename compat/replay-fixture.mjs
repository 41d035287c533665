// Real changesets for twinbase's replay engine, made by the iTwin.js backend, with what iTwin.js itself holds
// after each one (a checkpointed copy of the pushing briefcase), so a replay can be compared row by row.
//
//   node compat/replay-fixture.mjs --baseline <file.bim> --out <dir> [--changesets N] [--elements M] [--no-snapshots]
//
// On top of `baseline` (not modified), with core-backend's in-process hub HubMock:
//   1. a PhysicalModel, a SpatialCategory and M Generic:PhysicalObject boxes (rotated, so the spatial index
//      bounds are not trivial);
//   2. a schema import: a class with 40 properties (more than the shared columns, so the DDL adds columns and
//      an overflow table) and a unique aspect class;
//   3. instances of the new classes, updates (move, relabel, geometry), deletes (an element with its aspect);
//   4..N. M more boxes each, some moved, some deleted.
// Prints JSON: {iModelId, iTwinId, changesets: [{id, parentId, index, changesType, pathname, snapshot}]}.
// Each snapshot is the briefcase as iTwin.js left it after pushing that changeset (WAL folded in).

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";

import { BriefcaseDb, BriefcaseManager, PhysicalModel, SpatialCategory } from "@itwin/core-backend";
import { Code, ColorDef, GeometryStreamBuilder, IModel, SubCategoryAppearance } from "@itwin/core-common";
import { Box, Point3d, Range3d, YawPitchRollAngles } from "@itwin/core-geometry";

import { startBackend } from "./lib/changesets.mjs";

const require = createRequire(import.meta.url);
const { HubMock } = require("@itwin/core-backend/lib/cjs/internal/HubMock");

const { values: args } = parseArgs({
  options: {
    baseline: { type: "string" },
    out: { type: "string" },
    changesets: { type: "string", default: "3" },
    elements: { type: "string", default: "5" },
    "no-snapshots": { type: "boolean", default: false },
  },
});
if (!args.baseline || !args.out) {
  console.error("usage: node replay-fixture.mjs --baseline <file.bim> --out <dir> [--changesets N] [--elements M]");
  process.exit(2);
}
const total = Math.max(3, Number(args.changesets));
const perChangeset = Math.max(2, Number(args.elements));
const out = path.resolve(args.out);
fs.mkdirSync(out, { recursive: true });
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-replay-fixture-"));

const PROPS = Array.from({ length: 40 }, (_, i) => `<ECProperty propertyName="p${i}" typeName="${i % 3 === 0 ? "string" : i % 3 === 1 ? "double" : "int"}"/>`);
const SCHEMA = `<?xml version="1.0" encoding="UTF-8"?>
<ECSchema schemaName="ReplayTest" alias="rt" version="01.00.00" xmlns="http://www.bentley.com/schemas/Bentley.ECXML.3.2">
  <ECSchemaReference name="BisCore" version="01.00.00" alias="bis"/>
  <ECEntityClass typeName="Widget">
    <BaseClass>bis:PhysicalElement</BaseClass>
    ${PROPS.join("\n    ")}
  </ECEntityClass>
  <ECEntityClass typeName="WidgetNote">
    <BaseClass>bis:ElementUniqueAspect</BaseClass>
    <ECProperty propertyName="note" typeName="string"/>
    <ECProperty propertyName="weight" typeName="double"/>
  </ECEntityClass>
</ECSchema>`;

function box(size) {
  const builder = new GeometryStreamBuilder();
  builder.appendGeometry(Box.createRange(Range3d.createXYZXYZ(0, 0, 0, size, size * 0.5, size * 0.25), true));
  return builder.geometryStream;
}

const snapshots = [];
async function push(db, description, index) {
  db.saveChanges();
  await db.pushChanges({ description, accessToken: "Bearer mock" });
  if (args["no-snapshots"]) return;
  db.performCheckpoint();
  const snapshot = path.join(out, `after-${index}.bim`);
  fs.copyFileSync(db.pathName, snapshot);
  snapshots[index] = snapshot;
}

try {
  await startBackend(work);
  HubMock.startup("replay-fixture", work);
  try {
    const iTwinId = HubMock.iTwinId;
    const iModelId = await HubMock.createNewIModel({ iTwinId, iModelName: "replay-fixture", version0: args.baseline, noLocks: true });
    const props = await BriefcaseManager.downloadBriefcase({ iTwinId, iModelId, accessToken: "Bearer mock", fileName: path.join(work, "briefcase.bim") });
    const db = await BriefcaseDb.open({ fileName: props.fileName });
    try {
      const modelId = PhysicalModel.insert(db, IModel.rootSubjectId, "replay model");
      const categoryId = SpatialCategory.insert(db, IModel.dictionaryId, "replay category", new SubCategoryAppearance({ color: ColorDef.blue.toJSON() }));
      let serial = 0;
      const insert = (classFullName = "Generic:PhysicalObject", extra = {}) => {
        serial += 1;
        return db.elements.insertElement({
          classFullName,
          model: modelId,
          category: categoryId,
          code: Code.createEmpty(),
          userLabel: `element ${serial}`,
          placement: {
            origin: Point3d.create(serial * 3.7, (serial % 7) * 1.3, (serial % 3) * 0.9),
            angles: YawPitchRollAngles.createDegrees((serial * 17) % 360, (serial * 5) % 90, (serial * 11) % 45),
          },
          geom: box(1 + (serial % 5) * 0.37),
          ...extra,
        });
      };
      const boxes = [];
      for (let i = 0; i < perChangeset; i++) boxes.push(insert());
      await push(db, "a model, a category, boxes", 1);

      db.importSchemaStrings([SCHEMA]);
      await push(db, "schema ReplayTest", 2);

      const widgets = [];
      for (let i = 0; i < perChangeset; i++) {
        const extra = {};
        for (let p = 0; p < 40; p++) extra[`p${p}`] = p % 3 === 0 ? `text ${i}.${p}` : p % 3 === 1 ? i + p / 7 : i * p;
        widgets.push(insert("ReplayTest:Widget", extra));
      }
      for (const id of widgets.slice(0, 2)) {
        db.elements.insertAspect({ classFullName: "ReplayTest:WidgetNote", element: { id, relClassName: "BisCore:ElementOwnsUniqueAspect" }, note: `note of ${id}`, weight: 2.5 });
      }
      const moved = db.elements.getElement(boxes[0]);
      moved.userLabel = "moved";
      moved.placement.origin = Point3d.create(-5, 12.25, 3);
      moved.placement.angles = YawPitchRollAngles.createDegrees(30, 0, 0);
      db.elements.updateElement(moved.toJSON());
      db.elements.deleteElement(boxes[1]);
      db.elements.deleteElement(widgets[0]); // with its aspect
      await push(db, "widgets, an aspect, a move and deletes", 3);

      for (let index = 4; index <= total; index++) {
        const fresh = [];
        for (let i = 0; i < perChangeset; i++) fresh.push(insert());
        const old = db.elements.getElement(fresh[0]);
        old.placement.origin = Point3d.create(old.placement.origin.x, old.placement.origin.y + 1, 0);
        db.elements.updateElement(old.toJSON());
        db.elements.deleteElement(fresh[1]);
        await push(db, `boxes ${index}`, index);
      }
    } finally {
      db.close();
    }
    const list = await HubMock.downloadChangesets({ iModelId, range: { first: 1 }, targetDir: path.join(out, "changesets") });
    const result = {
      iModelId,
      iTwinId,
      changesets: list.map((cs) => ({
        id: cs.id,
        parentId: cs.parentId,
        index: cs.index,
        changesType: cs.changesType,
        pathname: cs.pathname,
        snapshot: snapshots[cs.index] ?? null,
      })),
    };
    console.log(JSON.stringify(result));
  } finally {
    HubMock.shutdown();
  }
} finally {
  const { IModelHost } = await import("@itwin/core-backend");
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
