// A small iModel of Parasolid B-reps (no stored facets) mixed with other geometry and colours, for the tests
// of twinbase's native B-rep facets option (tests/test_bim_native_facets.py): how the native meshes of a
// whole stream are mapped back to colours when a stream holds more than the B-rep.
//
//   node compat/make-brep-parts.mjs <out.bim>
//
// Made with the real backend (createBRepGeometry for the B-reps):
//   part "brep+red-box"   a plate with a hole (B-rep) in the instance's colour, then a box in red;
//   element "part-a"      one instance of it in category Blue;
//   element "part-b"      one instance of it in category Green, rotated (the B-rep takes green there);
//   element "own-brep"    in Blue: a box united with a sphere (B-rep), a red box, and an instance of the part
//                         (the element's own stream holds a B-rep and a part instance).
// Each element's userLabel says which it is; <out.bim>.manifest.json lists the ids.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { DefinitionModel, IModelHost, PhysicalModel, SnapshotDb, SpatialCategory } from "@itwin/core-backend";
import { Logger, LogLevel } from "@itwin/core-bentley";
import { BRepGeometryOperation, Code, ColorDef, ElementGeometry, GeometryParams, IModel, SubCategoryAppearance } from "@itwin/core-common";
import { Box, Cone, Point3d, Range3d, Sphere, Transform, YawPitchRollAngles } from "@itwin/core-geometry";

const outFile = process.argv[2] ? path.resolve(process.argv[2]) : "";
if (!outFile || fs.existsSync(outFile)) {
  console.error("usage: node compat/make-brep-parts.mjs <out.bim> (a file that does not exist yet)");
  process.exit(2);
}

const P = (x, y, z = 0) => Point3d.create(x, y, z);
const boxRange = (x0, y0, z0, x1, y1, z1) => Box.createRange(Range3d.createXYZXYZ(x0, y0, z0, x1, y1, z1), true);

Logger.initializeToConsole();
Logger.setLevelDefault(LogLevel.Error);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-brep-parts-"));
await IModelHost.startup({ cacheDir: path.join(work, "cache") });
// Offline machine: without this the first open waits ~15 s for the public GCS workspace.
IModelHost.appWorkspace.settings.addDictionary({ name: "make-brep-parts", priority: 200 }, { "itwin/core/gcs/disableWorkspaces": true });

const db = SnapshotDb.createEmpty(outFile, { rootSubject: { name: "twinbase B-rep parts" } });
try {
  const defModel = DefinitionModel.insert(db, IModel.rootSubjectId, "Definitions");
  const model = PhysicalModel.insert(db, IModel.rootSubjectId, "B-reps");
  const blue = SpatialCategory.insert(db, defModel, "Blue", new SubCategoryAppearance({ color: ColorDef.from(40, 90, 230).toJSON() }));
  const green = SpatialCategory.insert(db, defModel, "Green", new SubCategoryAppearance({ color: ColorDef.from(30, 160, 60).toJSON() }));
  const red = ColorDef.from(220, 30, 30);

  /** The entries of a B-rep made by the native modeller. */
  const brep = (operation, target, tools) => {
    const entry = (g) => {
      const b = new ElementGeometry.Builder();
      if (!b.appendGeometryQuery(g)) throw new Error("make-brep-parts: a B-rep input could not be encoded");
      return b.entries[0];
    };
    let result;
    const status = db.createBRepGeometry({
      operation,
      entryArray: [entry(target), ...tools.map(entry)],
      onResult: (info) => {
        result = info.entryArray;
      },
    });
    if (status !== 0 || !result?.length) throw new Error(`make-brep-parts: createBRepGeometry failed with status ${status}`);
    return result;
  };
  const redParams = (category) => {
    const params = new GeometryParams(category);
    params.lineColor = red;
    return params;
  };

  // The part: its stream names no subcategory (a part must not), so the B-rep takes the instance's colour.
  const pb = new ElementGeometry.Builder();
  pb.entries.push(...brep(BRepGeometryOperation.Subtract, boxRange(0, 0, 0, 3, 2, 0.5), [Cone.createAxisPoints(P(1.5, 1, -1), P(1.5, 1, 2), 0.5, 0.5, true)]));
  pb.appendGeometryParamsChange(redParams(blue));
  pb.appendGeometryQuery(boxRange(3.5, 0, 0, 4.5, 1, 1));
  const partId = db.elements.insertElement({
    classFullName: "BisCore:GeometryPart",
    model: defModel,
    code: Code.createEmpty(),
    userLabel: "brep+red-box",
    elementGeometryBuilderParams: { entryArray: pb.entries },
    bbox: { low: [0, 0, 0], high: [4.5, 2, 1] },
  });

  const element = (label, category, origin, angles, entries) =>
    db.elements.insertElement({
      classFullName: "Generic:PhysicalObject",
      model,
      category,
      code: Code.createEmpty(),
      userLabel: label,
      placement: { origin, angles: angles.toJSON() },
      elementGeometryBuilderParams: { entryArray: entries },
    });
  const instance = (origin, angles) => {
    const b = new ElementGeometry.Builder();
    b.appendGeometryPart3d(partId, origin, angles);
    return b.entries;
  };

  const ids = { part: partId };
  ids["part-a"] = element("part-a", blue, P(0, 0, 0), YawPitchRollAngles.createDegrees(0, 0, 0), instance(P(0, 0, 0)));
  ids["part-b"] = element("part-b", green, P(10, 0, 0), YawPitchRollAngles.createDegrees(30, 20, 10), instance(P(1, 0, 0), YawPitchRollAngles.createDegrees(90, 0, 0)));
  const own = new ElementGeometry.Builder();
  own.entries.push(...brep(BRepGeometryOperation.Unite, boxRange(0, 0, 0, 2, 2, 2), [Sphere.createCenterRadius(P(2, 2, 2), 1, undefined, true)]));
  own.appendGeometryParamsChange(redParams(blue));
  own.appendGeometryQuery(boxRange(4, 0, 0, 5, 1, 1));
  own.entries.push(...instance(P(0, 5, 0)));
  ids["own-brep"] = element("own-brep", blue, P(0, 20, 0), YawPitchRollAngles.createDegrees(15, 0, 0), own.entries);

  db.updateProjectExtents(Range3d.createXYZXYZ(-20, -20, -20, 40, 40, 20));
  db.saveChanges();
  fs.writeFileSync(`${outFile}.manifest.json`, JSON.stringify(ids));
  console.log(JSON.stringify(ids));
} finally {
  db.close();
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
