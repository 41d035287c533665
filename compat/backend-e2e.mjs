// The real iTwin.js backend (@itwin/core-backend 5.7.3 and its native library) with twinbase as its iModels
// hub, through compat/lib/twinbase-imodels-access.cjs: create an iModel from a local .bim, two briefcases,
// locks, inserts, updates and deletes pushed from one briefcase and pulled into the other, a lock conflict
// between them, a late briefcase that catches up from a checkpoint, and an empty iModel made by twinbase
// from its seed used the same way.
//
//   TWINBASE_URL=http://127.0.0.1:8110 TWINBASE_TOKEN=<jwt> node compat/backend-e2e.mjs
//
// COMPAT_KEEP_GOING=1 runs on after a failure; COMPAT_WORK_DIR keeps the briefcases in that folder.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import {
  BriefcaseDb,
  BriefcaseManager,
  IModelHost,
  PhysicalModel,
  SnapshotDb,
  SpatialCategory,
} from "@itwin/core-backend";
import { Logger, LogLevel } from "@itwin/core-bentley";
import {
  Code,
  ColorDef,
  GeometryStreamBuilder,
  IModel,
  QueryBinder,
  QueryRowFormat,
  SubCategoryAppearance,
} from "@itwin/core-common";
import { Box, Point3d, Range3d } from "@itwin/core-geometry";
import { BackendIModelsAccess } from "@itwin/imodels-access-backend";

import { assert, BASE, GUID, TAG, TOKEN, env, finish, http, newITwin, step } from "./lib/harness.mjs";

const require = createRequire(import.meta.url);
const { createTwinbaseHubAccess } = require("./lib/twinbase-imodels-access.cjs");

const work = process.env.COMPAT_WORK_DIR
  ? path.resolve(process.env.COMPAT_WORK_DIR)
  : fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-e2e-"));
fs.mkdirSync(work, { recursive: true });
env("TWINBASE_TOKEN");

// ------------------------------------------------------------------------------------------ setup

Logger.initializeToConsole();
Logger.setLevelDefault(LogLevel.None);
if (process.env.COMPAT_LOG) Logger.setLevel("BackendIModelsAccess", LogLevel.Info);

// TWINBASE_HUB=plain: Bentley's own BackendIModelsAccess, unmodified, pointed at twinbase's /imodels. It reads
// checkpoints only as CloudSqlite containers from https://<storage>.blob.core.windows.net, so the site must
// resolve that name to twinbase and the native library must trust its certificate (CLOUDSQLITE_CAINFO):
// tests/test_checkpoint_cloudsqlite.py runs it so in a network namespace of its own. Otherwise: the adapter.
const PLAIN = process.env.TWINBASE_HUB === "plain";
const hubAccess = PLAIN
  ? new BackendIModelsAccess({ api: { baseUrl: `${BASE}/imodels` } }) // its default Azure and Google storage
  : createTwinbaseHubAccess({
      baseUrl: BASE,
      getAccessToken: async () => TOKEN,
      cacheDir: path.join(work, "checkpoints"),
    });
await IModelHost.startup({
  hubAccess,
  cacheDir: path.join(work, "cache"),
  // Calls core-backend makes without a token (pullChanges(), pushChanges() with none) ask IModelHost.
  authorizationClient: { getAccessToken: async () => TOKEN },
});
// Offline machine: no waiting for the public GCS workspace on the first open.
IModelHost.appWorkspace.settings.addDictionary(
  { name: "twinbase-e2e", priority: 200 },
  { "itwin/core/gcs/disableWorkspaces": true },
);

const open = []; // briefcases to close at the end
finish.cleanup = async () => {
  for (const db of open) if (db.isOpen) db.close();
  await IModelHost.shutdown();
  if (!process.env.COMPAT_WORK_DIR) fs.rmSync(work, { recursive: true, force: true });
};

const state = {};

function box(size) {
  const builder = new GeometryStreamBuilder();
  builder.appendGeometry(Box.createRange(Range3d.createXYZXYZ(0, 0, 0, size, size, size), true));
  return builder.geometryStream;
}

function physicalObject(db, userLabel, origin, size = 1) {
  return db.elements.insertElement({
    classFullName: "Generic:PhysicalObject",
    model: state.modelId,
    category: state.categoryId,
    code: Code.createEmpty(),
    userLabel,
    placement: { origin, angles: {} },
    geom: box(size),
  });
}

/** The labels of the Generic:PhysicalObject elements in the test model, by id (through ECSQL). */
async function objects(db) {
  const out = {};
  const reader = db.createQueryReader(
    "SELECT ECInstanceId, UserLabel FROM Generic.PhysicalObject WHERE Model.Id=? ORDER BY ECInstanceId",
    QueryBinder.from([state.modelId]),
    { rowFormat: QueryRowFormat.UseECSqlPropertyIndexes },
  );
  for await (const row of reader) out[row[0]] = row[1];
  return out;
}

async function openBriefcase(name) {
  const props = await BriefcaseManager.downloadBriefcase({
    iTwinId: state.iTwinId,
    iModelId: state.iModelId,
    accessToken: TOKEN,
    fileName: path.join(work, `${name}.bim`),
  });
  const db = await BriefcaseDb.open({ fileName: props.fileName });
  open.push(db);
  return db;
}

/** A checkpoint answer once twinbase has made it (``successful``). */
async function waitCheckpoint(url) {
  let checkpoint;
  for (let i = 0; i < 480; i++) {
    const got = await http("GET", url);
    assert.equal(got.status, 200, got.text);
    checkpoint = got.json.checkpoint;
    if (checkpoint.state !== "scheduled") break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  assert.equal(checkpoint.state, "successful", JSON.stringify(checkpoint));
  return checkpoint;
}

// ------------------------------------------------------------------------------------------- steps

await step("a local .bim to start from (SnapshotDb with a category)", async () => {
  state.version0 = path.join(work, "version0.bim");
  const snapshot = SnapshotDb.createEmpty(state.version0, { rootSubject: { name: `e2e ${TAG}` } });
  state.baselineCategory = SpatialCategory.insert(
    snapshot,
    IModel.dictionaryId,
    "Baseline category",
    new SubCategoryAppearance({ color: ColorDef.blue.toJSON() }),
  );
  snapshot.saveChanges();
  snapshot.close();
  return `${fs.statSync(state.version0).size} bytes`;
});

await step("createNewIModel with version0 (baseline upload, complete, poll)", async () => {
  state.iTwinId = await newITwin(TOKEN, "backend e2e");
  // What iTwin.js's own createNewIModel does: prepare the file, upload it as the baseline, wait.
  state.iModelId = await hubAccess.createNewIModel({
    iTwinId: state.iTwinId,
    iModelName: `e2e ${TAG}`,
    description: "made by compat/backend-e2e.mjs",
    version0: state.version0,
    accessToken: TOKEN,
  });
  assert.match(state.iModelId, GUID);
  const got = await http("GET", `/imodels/${state.iModelId}`);
  assert.equal(got.status, 200, got.text);
  assert.equal(got.json.iModel.state, "initialized");
  assert.equal(got.json.iModel.name, `e2e ${TAG}`);
  const found = await hubAccess.queryIModelByName({ iTwinId: state.iTwinId, iModelName: `e2e ${TAG}`, accessToken: TOKEN });
  assert.equal(found, state.iModelId, "queryIModelByName");
  return state.iModelId;
});

await step("briefcase A: downloadBriefcase (checkpoint 0 from twinbase) + BriefcaseDb.open", async () => {
  state.a = await openBriefcase("A");
  assert.equal(state.a.iModelId, state.iModelId);
  assert.equal(state.a.iTwinId, state.iTwinId);
  assert.equal(state.a.changeset.index, 0);
  assert.equal(state.a.changeset.id, "");
  assert.ok(state.a.briefcaseId >= 2, `briefcase id ${state.a.briefcaseId}`);
  assert.ok(state.a.elements.tryGetElement(state.baselineCategory), "the baseline's category is in the briefcase");
  return `briefcase ${state.a.briefcaseId}`;
});

await step("briefcase B: a second briefcase of the same iModel", async () => {
  state.b = await openBriefcase("B");
  assert.notEqual(state.b.briefcaseId, state.a.briefcaseId);
  const mine = await hubAccess.getMyBriefcaseIds({ iModelId: state.iModelId, accessToken: TOKEN });
  assert.deepEqual([...mine].sort(), [state.a.briefcaseId, state.b.briefcaseId].sort(), "getMyBriefcaseIds");
  return `briefcase ${state.b.briefcaseId}`;
});

await step("A: acquire locks, insert a PhysicalModel, a SpatialCategory and three objects, push", async () => {
  const a = state.a;
  await a.locks.acquireLocks({ shared: [IModel.repositoryModelId, IModel.dictionaryId] });
  state.modelId = PhysicalModel.insert(a, IModel.rootSubjectId, `Model ${TAG}`);
  state.categoryId = SpatialCategory.insert(
    a,
    IModel.dictionaryId,
    `Category ${TAG}`,
    new SubCategoryAppearance({ color: ColorDef.green.toJSON() }),
  );
  state.ids = [
    physicalObject(a, "first", Point3d.create(0, 0, 0)),
    physicalObject(a, "second", Point3d.create(5, 0, 0), 2),
    physicalObject(a, "third", Point3d.create(0, 5, 0), 3),
  ];
  a.saveChanges("three objects");
  await a.pushChanges({ description: "three objects", accessToken: TOKEN });
  assert.equal(a.changeset.index, 1, `A is at ${JSON.stringify(a.changeset)}`);
  assert.match(a.changeset.id, /^[0-9a-f]{40}$/);
  const locks = await hubAccess.queryAllLocks({ iModelId: state.iModelId, briefcaseId: a.briefcaseId, accessToken: TOKEN });
  assert.deepEqual(locks, [], "push releases every lock");
  state.versions = [{ changeset: { id: "", index: 0 }, objects: {} }];
  state.versions.push({ changeset: { ...a.changeset }, objects: await objects(a) });
  return `changeset ${a.changeset.index} ${a.changeset.id.slice(0, 8)}`;
});

await step("B: pullChanges sees the model, the category and the three objects", async () => {
  const b = state.b;
  await b.pullChanges({ accessToken: TOKEN });
  assert.deepEqual(b.changeset, state.a.changeset);
  assert.ok(b.models.tryGetModel(state.modelId), "model pulled");
  assert.ok(b.elements.tryGetElement(state.categoryId), "category pulled");
  const labels = await objects(b);
  assert.deepEqual(Object.values(labels).sort(), ["first", "second", "third"]);
  const second = b.elements.getElement({ id: state.ids[1], wantGeometry: true });
  assert.equal(second.placement.origin.x, 5);
  assert.equal(second.geom?.length > 0, true, "geometry came along");
});

await step("B: lock, update one object, delete another, push", async () => {
  const b = state.b;
  await b.locks.acquireLocks({ exclusive: [state.ids[0], state.ids[2]] });
  const first = b.elements.getElement(state.ids[0]);
  first.userLabel = "first (moved by B)";
  first.placement.origin = Point3d.create(10, 10, 0);
  b.elements.updateElement(first.toJSON());
  b.elements.deleteElement(state.ids[2]);
  b.saveChanges("update and delete");
  await b.pushChanges({ description: "update and delete", accessToken: TOKEN });
  assert.equal(b.changeset.index, 2);
  state.versions.push({ changeset: { ...b.changeset }, objects: await objects(b) });
  return `changeset 2 ${b.changeset.id.slice(0, 8)}`;
});

await step("A: pullChanges sees the update and the delete", async () => {
  const a = state.a;
  await a.pullChanges(); // no token: the adapter's getAccessToken supplies it
  assert.deepEqual(a.changeset, state.b.changeset);
  assert.deepEqual(await objects(a), { [state.ids[0]]: "first (moved by B)", [state.ids[1]]: "second" });
  assert.equal(a.elements.getElement(state.ids[0]).placement.origin.x, 10);
  assert.equal(a.elements.tryGetElement(state.ids[2]), undefined);
});

await step("lock conflict: B asks for an exclusive lock A holds", async () => {
  const a = state.a;
  const b = state.b;
  await a.locks.acquireLocks({ exclusive: state.ids[1] });
  assert.ok(a.locks.holdsExclusiveLock(state.ids[1]));
  let error;
  try {
    await b.locks.acquireLocks({ exclusive: state.ids[1] });
  } catch (err) {
    error = err;
  }
  assert.ok(error, "B got A's exclusive lock");
  const key = error.iTwinErrorId?.key ?? error.code ?? error.errorNumber;
  assert.ok(
    ["LockOwnedByAnotherBriefcase", "ConflictWithAnotherUser"].includes(key),
    `conflict error: ${key} ${error.message}`,
  );
  if (error.conflictingLocks) {
    const conflict = error.conflictingLocks.find((l) => l.objectId === state.ids[1]);
    assert.ok(conflict, `conflictingLocks: ${JSON.stringify(error.conflictingLocks)}`);
    assert.deepEqual(conflict.briefcaseIds, [a.briefcaseId]);
  }
  assert.ok(!b.locks.holdsExclusiveLock(state.ids[1]));
  // An element nobody else holds is granted to B at once.
  await b.locks.acquireLocks({ exclusive: state.ids[0] });
  assert.ok(b.locks.holdsExclusiveLock(state.ids[0]));
  await b.locks.releaseAllLocks();
  await a.locks.releaseAllLocks();
  const left = await hubAccess.queryAllLocks({ iModelId: state.iModelId, accessToken: TOKEN });
  assert.deepEqual(left, [], `locks left: ${JSON.stringify(left)}`);
  return key;
});

await step("A: insert after the conflict, push; B pulls it (third changeset)", async () => {
  const a = state.a;
  await a.locks.acquireLocks({ shared: state.modelId });
  state.ids.push(physicalObject(a, "fourth", Point3d.create(-5, 0, 0)));
  a.saveChanges("fourth");
  await a.pushChanges({ description: "fourth" }); // no token here either
  state.versions.push({ changeset: { ...a.changeset }, objects: await objects(a) });
  await state.b.pullChanges({ accessToken: TOKEN });
  assert.equal(state.b.changeset.index, 3);
  assert.deepEqual(Object.values(await objects(state.b)).sort(), ["first (moved by B)", "fourth", "second"]);
});

await step("a third briefcase downloaded now starts from a checkpoint and catches up to changeset 3", async () => {
  const c = await openBriefcase("C");
  assert.equal(c.changeset.index, 3);
  assert.deepEqual(c.changeset, state.a.changeset);
  assert.deepEqual(await objects(c), await objects(state.a));
  c.close();
  await BriefcaseManager.deleteBriefcaseFiles(path.join(work, "C.bim"), TOKEN);
  if (PLAIN) return "from a CloudSqlite container";
  const staged = fs.readdirSync(path.join(hubAccess.checkpointCacheDir, state.iModelId)).sort();
  return `staged checkpoints: ${staged.join(", ")}`;
});

await step("downloadBriefcase at every version: a checkpoint at or before it, then its changesets", async () => {
  const seen = [];
  for (const version of state.versions) {
    const { changeset } = version;
    const asOf = changeset.index === 0 ? { first: true } : { afterChangeSetId: changeset.id };
    const name = `V${changeset.index}`;
    const props = await BriefcaseManager.downloadBriefcase({
      iTwinId: state.iTwinId,
      iModelId: state.iModelId,
      accessToken: TOKEN,
      asOf,
      briefcaseId: 0, // a pull-only briefcase: none to acquire and release
      fileName: path.join(work, `${name}.bim`),
    });
    const db = await BriefcaseDb.open({ fileName: props.fileName, readonly: true });
    try {
      assert.deepEqual(db.changeset, changeset, `${name}: its changeset`);
      if (changeset.index > 0) assert.deepEqual(await objects(db), version.objects, `${name}: objects`);
    } finally {
      db.close();
    }
    await BriefcaseManager.deleteBriefcaseFiles(props.fileName, TOKEN);
    seen.push(`${changeset.index}`);
  }
  return `versions ${seen.join(", ")}`;
});

await step("read-only checkpoints at every version: twinbase's exact checkpoints open with SnapshotDb.openCheckpoint", async () => {
  const seen = [];
  // Newest first: each exact checkpoint is made by twinbase on request (replay from the nearest one).
  for (const version of [...state.versions].reverse()) {
    const { changeset } = version;
    if (PLAIN) {
      // Attaching reads the exact checkpoint: ask twinbase for it (made on request) and wait until it is.
      const made = await waitCheckpoint(`/imodels/${state.iModelId}/changesets/${changeset.index}/checkpoint`);
      assert.ok(made.directoryAccessInfo, "the checkpoint is in the iModel's CloudSqlite container");
    } else {
      const staged = await hubAccess.prefetchExactCheckpoint({ iModelId: state.iModelId, changeset, accessToken: TOKEN });
      assert.equal(staged.index, changeset.index);
    }
    const db = await SnapshotDb.openCheckpoint({ iTwinId: state.iTwinId, iModelId: state.iModelId, changeset });
    try {
      assert.deepEqual(db.changeset, changeset, "the checkpoint's own changeset");
      assert.equal(db.iModelId, state.iModelId);
      assert.equal(db.iTwinId, state.iTwinId);
      assert.equal(db.isReadonly, true);
      if (changeset.index > 0) assert.deepEqual(await objects(db), version.objects, `objects at ${changeset.index}`);
      else assert.equal(db.models.tryGetModel(state.modelId), undefined, "no model in the baseline");
    } finally {
      db.close();
    }
    seen.push(`${changeset.index}:${Object.keys(version.objects).length} objects`);
  }
  // By named version too: creating one schedules its checkpoint at once.
  const nv = await http("POST", `/imodels/${state.iModelId}/namedversions`, {
    body: { name: `v2 ${TAG}`, changesetId: state.versions[2].changeset.id },
  });
  assert.equal(nv.status, 201, nv.text);
  const checkpoint = await waitCheckpoint(`/imodels/${state.iModelId}/namedversions/${nv.json.namedVersion.id}/checkpoint`);
  assert.equal(checkpoint.changesetIndex, 2);
  assert.equal(checkpoint.changesetId, state.versions[2].changeset.id);
  // SnapshotDb.openCheckpoint at the named version's changeset.
  const changeset = { id: checkpoint.changesetId, index: checkpoint.changesetIndex };
  if (!PLAIN) await hubAccess.prefetchExactCheckpoint({ iModelId: state.iModelId, changeset, accessToken: TOKEN });
  const db = await SnapshotDb.openCheckpoint({ iTwinId: state.iTwinId, iModelId: state.iModelId, changeset });
  try {
    assert.equal(db.changeset.index, 2);
    assert.deepEqual(await objects(db), state.versions[2].objects, "objects at the named version");
  } finally {
    db.close();
  }
  return seen.join(", ");
});

await step("an empty iModel made by twinbase from its seed: briefcase, insert, push, pull into a second one", async () => {
  const created = await http("POST", "/imodels", { body: { iTwinId: state.iTwinId, name: `empty ${TAG}` } });
  assert.equal(created.status, 201, created.text);
  assert.equal(created.json.iModel.state, "initialized");
  const iModelId = created.json.iModel.id;
  const download = async (name) => {
    const props = await BriefcaseManager.downloadBriefcase({
      iTwinId: state.iTwinId,
      iModelId,
      accessToken: TOKEN,
      fileName: path.join(work, `${name}.bim`),
    });
    return BriefcaseDb.open({ fileName: props.fileName });
  };
  const e1 = await download("E1");
  const e2 = await download("E2");
  try {
    assert.equal(e1.iModelId, iModelId);
    assert.equal(e1.changeset.index, 0);
    await e1.locks.acquireLocks({ shared: [IModel.repositoryModelId, IModel.dictionaryId] });
    const modelId = PhysicalModel.insert(e1, IModel.rootSubjectId, "seeded model");
    e1.saveChanges();
    await e1.pushChanges({ description: "a model in the empty iModel", accessToken: TOKEN });
    await e2.pullChanges({ accessToken: TOKEN });
    assert.equal(e2.changeset.index, 1);
    assert.ok(e2.models.tryGetModel(modelId), "the model reached the second briefcase");
  } finally {
    for (const [name, db] of [["E1", e1], ["E2", e2]]) {
      db.close();
      await BriefcaseManager.deleteBriefcaseFiles(path.join(work, `${name}.bim`), TOKEN);
    }
  }
  await hubAccess.deleteIModel({ iTwinId: state.iTwinId, iModelId, accessToken: TOKEN });
});

await step("close and release the briefcases, delete the iModel", async () => {
  for (const [name, db] of [["A", state.a], ["B", state.b]]) {
    db.close();
    await BriefcaseManager.deleteBriefcaseFiles(path.join(work, `${name}.bim`), TOKEN);
  }
  const mine = await hubAccess.getMyBriefcaseIds({ iModelId: state.iModelId, accessToken: TOKEN });
  assert.deepEqual(mine, [], "every briefcase released");
  await hubAccess.deleteIModel({ iTwinId: state.iTwinId, iModelId: state.iModelId, accessToken: TOKEN });
  const gone = await http("GET", `/imodels/${state.iModelId}`);
  assert.equal(gone.status, 404, gone.text);
  assert.equal(gone.json.error.code, "iModelNotFound");
});

await finish();
