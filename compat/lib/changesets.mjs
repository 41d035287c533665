// Real changeset files made by the iTwin.js backend on top of a given baseline (e.g. twinbase's own checkpoint
// 0), with core-backend's in-process hub HubMock: a briefcase of the baseline is edited and pushed three
// times, then HubMock hands out the changeset files with their ids, indexes and parent ids. Since they start
// from the very file twinbase serves, twinbase (and any briefcase of that iModel) can apply them.
//
// Needs IModelHost started (startBackend below does it, without the 15 s GCS workspace stall) and no other
// hub access hook in the process while it runs (HubMock replaces both for its duration).

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

import { BriefcaseDb, BriefcaseManager, IModelDb, IModelHost, PhysicalModel, SpatialCategory } from "@itwin/core-backend";
import { OpenMode } from "@itwin/core-bentley";
import { Code, ColorDef, GeometryStreamBuilder, IModel, SubCategoryAppearance } from "@itwin/core-common";
import { Box, Point3d, Range3d } from "@itwin/core-geometry";

const require = createRequire(import.meta.url);
const { HubMock } = require("@itwin/core-backend/lib/cjs/internal/HubMock");

/** IModelHost.startup with its caches in `dir`, and the public GCS workspace (unreachable here) turned off. */
export async function startBackend(dir, options = {}) {
  await IModelHost.startup({ cacheDir: path.join(dir, "cache"), ...options });
  IModelHost.appWorkspace.settings.addDictionary(
    { name: "twinbase-compat", priority: 200 },
    { "itwin/core/gcs/disableWorkspaces": true },
  );
}

/** What the native library reads as a .bim file's identity (a copy is opened, the file stays as it was). */
export function identityOf(file) {
  const copy = `${file}.identity-${process.pid}.bim`;
  fs.copyFileSync(file, copy);
  const db = IModelDb.openDgnDb({ path: copy }, OpenMode.Readonly);
  try {
    return {
      iModelId: db.getIModelId(),
      iTwinId: db.getITwinId(),
      briefcaseId: db.getBriefcaseId(),
      changeset: db.getCurrentChangeset(),
    };
  } finally {
    db.closeFile();
    for (const f of [copy, `${copy}-wal`, `${copy}-shm`]) fs.rmSync(f, { force: true });
  }
}

function box(size) {
  const builder = new GeometryStreamBuilder();
  builder.appendGeometry(Box.createRange(Range3d.createXYZXYZ(0, 0, 0, size, size, size), true));
  return builder.geometryStream;
}

/**
 * Three changesets on top of `baseline` (a .bim path; not modified):
 *   1. a PhysicalModel, a SpatialCategory and three Generic:PhysicalObject boxes;
 *   2. one box moved and relabelled, one deleted;
 *   3. two more boxes.
 * @returns {Promise<Array<{id: string, parentId: string, index: number, description: string,
 *   changesType: number, pathname: string, fileSize: number}>>} in push order, files in `workDir/changesets`
 */
export async function makeChangesets({ baseline, workDir, name = "twinbase-compat" }) {
  const targetDir = path.join(workDir, "changesets");
  fs.mkdirSync(targetDir, { recursive: true });
  HubMock.startup(name, workDir);
  try {
    const iTwinId = HubMock.iTwinId;
    const iModelId = await HubMock.createNewIModel({ iTwinId, iModelName: name, version0: baseline, noLocks: true });
    const props = await BriefcaseManager.downloadBriefcase({
      iTwinId,
      iModelId,
      accessToken: "Bearer mock",
      fileName: path.join(workDir, `${name}-briefcase.bim`),
    });
    const db = await BriefcaseDb.open({ fileName: props.fileName });
    try {
      const modelId = PhysicalModel.insert(db, IModel.rootSubjectId, `${name} model`);
      const categoryId = SpatialCategory.insert(
        db,
        IModel.dictionaryId,
        `${name} category`,
        new SubCategoryAppearance({ color: ColorDef.red.toJSON() }),
      );
      const insert = (label, x, size = 1) =>
        db.elements.insertElement({
          classFullName: "Generic:PhysicalObject",
          model: modelId,
          category: categoryId,
          code: Code.createEmpty(),
          userLabel: label,
          placement: { origin: Point3d.create(x, 0, 0), angles: {} },
          geom: box(size),
        });
      const ids = [insert("one", 0), insert("two", 3, 2), insert("three", 8, 3)];
      db.saveChanges();
      await db.pushChanges({ description: "a model, a category, three boxes", accessToken: "Bearer mock" });

      const one = db.elements.getElement(ids[0]);
      one.userLabel = "one (moved)";
      one.placement.origin = Point3d.create(0, 10, 0);
      db.elements.updateElement(one.toJSON());
      db.elements.deleteElement(ids[2]);
      db.saveChanges();
      await db.pushChanges({ description: "move one box, delete another", accessToken: "Bearer mock" });

      insert("four", 20);
      insert("five", 25, 2);
      db.saveChanges();
      await db.pushChanges({ description: "two more boxes", accessToken: "Bearer mock" });
    } finally {
      db.close();
    }
    const list = await HubMock.downloadChangesets({ iModelId, range: { first: 1 }, targetDir });
    return list.map((cs) => ({
      id: cs.id,
      parentId: cs.parentId,
      index: cs.index,
      description: cs.description,
      changesType: cs.changesType,
      pathname: cs.pathname,
      fileSize: fs.statSync(cs.pathname).size,
    }));
  } finally {
    HubMock.shutdown();
  }
}
