// Several hosts, one deployment (issue #17): the official clients and the real iTwin.js backend driven
// through two twinbase servers (host A, host B) over one database, one blob store, one Redis and one
// keys folder, alternately: what one host writes, the other reads at once.
//
//   TWINBASE_URL=<host A> TWINBASE_URL_B=<host B> TWINBASE_TOKEN=<jwt> TWINBASE_BASELINE=<.bim> \
//   MULTI_HOST_RESULT=<file.json> node compat/multi-host.mjs
//
// - @itwin/itwins-client 1.6.1: list on B (B caches the list), create on A, B reads it and lists it; B renames
//   it, A (which had it cached) reads the new name.
// - @itwin/imodels-client-authoring 6.0.2 on B: create from a baseline file (the job runs on a worker);
//   @itwin/imodels-client-management 6.2.2 on A reads the iModel and its baseline.
// - @itwin/core-backend 5.7.3 with imodels-access-backend through compat/lib/twinbase-imodels-access.cjs: one
//   IModelHost whose hub access is a router over an adapter per host, so each step names the host it goes
//   through. Briefcase X comes from A, Y from B; X locks and pushes through B, Y sees X's locks through A
//   (conflict) and pulls through A; Y pushes through A, X pulls through B. A named version made on B: its
//   checkpoint, staged through A, opens read-only.
// At the end the iModel's ids and tip go to MULTI_HOST_RESULT for the Python side (mesh export, jobs).

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { BriefcaseDb, BriefcaseManager, IModelHost, PhysicalModel, SnapshotDb, SpatialCategory } from "@itwin/core-backend";
import { Logger, LogLevel } from "@itwin/core-bentley";
import { Code, ColorDef, GeometryStreamBuilder, IModel, SubCategoryAppearance } from "@itwin/core-common";
import { Box, Point3d, Range3d } from "@itwin/core-geometry";
import authoring from "@itwin/imodels-client-authoring";
import { IModelsClient as ManagementClient, IModelState, LockLevel, toArray } from "@itwin/imodels-client-management";
import { ITwinClass, ITwinsAccessClient, ITwinSubClass } from "@itwin/itwins-client";

import { BASE, GUID, TAG, TOKEN, assert, authorization, env, finish, step } from "./lib/harness.mjs";

const require = createRequire(import.meta.url);
const { createTwinbaseHubAccess } = require("./lib/twinbase-imodels-access.cjs");
const { createDefaultClientStorage } = require("@itwin/imodels-access-backend/lib/cjs/DefaultClientStorage");
const { BaselineFileState, IModelsClient: AuthoringClient } = authoring;

const HOSTS = { A: BASE, B: env("TWINBASE_URL_B").replace(/\/+$/, "") };
assert.notEqual(HOSTS.A, HOSTS.B, "two hosts");
const SOURCE = path.resolve(env("TWINBASE_BASELINE"));
const RESULT = env("MULTI_HOST_RESULT");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-multihost-"));

const itwins = { A: new ITwinsAccessClient(`${HOSTS.A}/itwins`), B: new ITwinsAccessClient(`${HOSTS.B}/itwins`) };
const management = {
  A: new ManagementClient({ api: { baseUrl: `${HOSTS.A}/imodels` } }),
  B: new ManagementClient({ api: { baseUrl: `${HOSTS.B}/imodels` } }),
};
const authoringOn = (host) =>
  new AuthoringClient({ api: { baseUrl: `${HOSTS[host]}/imodels` }, cloudStorage: createDefaultClientStorage() });
const authoringClient = { A: authoringOn("A"), B: authoringOn("B") };
const auth = { authorization: authorization(TOKEN) };

// --------------------------------------------------------------------------------- the backend

Logger.initializeToConsole();
Logger.setLevelDefault(LogLevel.None);

// One adapter per host over one checkpoint cache; the router hands every hub call core-backend makes to the
// adapter of the host chosen for the current step (IModelHost takes one hub access for the process).
const checkpoints = path.join(work, "checkpoints");
const adapters = Object.fromEntries(
  Object.entries(HOSTS).map(([name, baseUrl]) => [
    name,
    createTwinbaseHubAccess({ baseUrl, getAccessToken: async () => TOKEN, cacheDir: checkpoints }),
  ]),
);
const calls = { A: 0, B: 0 }; // hub calls per host, to show each step really went where it says
let current = "A";
const hubAccess = new Proxy(
  {},
  {
    get(_target, key) {
      const adapter = adapters[current];
      const value = adapter[key];
      if (typeof value !== "function") return value;
      const host = current;
      return (...args) => {
        calls[host] += 1;
        return value.apply(adapter, args);
      };
    },
  },
);

/** Run `fn` with every hub call of core-backend going to `host`; answers fn's result. */
async function via(host, fn) {
  const before = calls[host];
  current = host;
  const out = await fn();
  assert.ok(calls[host] > before, `no hub call went through host ${host}`);
  return out;
}

await IModelHost.startup({ hubAccess, cacheDir: path.join(work, "cache") });
IModelHost.appWorkspace.settings.addDictionary(
  { name: "multi-host", priority: 200 },
  { "itwin/core/gcs/disableWorkspaces": true },
);

const open = [];
finish.cleanup = async () => {
  for (const db of open) if (db.isOpen) db.close();
  if (IModelHost.isValid) await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
};

const s = {};

function box(size) {
  const builder = new GeometryStreamBuilder();
  builder.appendGeometry(Box.createRange(Range3d.createXYZXYZ(0, 0, 0, size, size, size), true));
  return builder.geometryStream;
}

function physicalObject(db, userLabel, origin, size) {
  return db.elements.insertElement({
    classFullName: "Generic:PhysicalObject",
    model: s.modelId,
    category: s.categoryId,
    code: Code.createEmpty(),
    userLabel,
    placement: { origin, angles: {} },
    geom: box(size),
  });
}

async function download(name) {
  const props = await BriefcaseManager.downloadBriefcase({
    iTwinId: s.iTwinId,
    iModelId: s.iModelId,
    accessToken: TOKEN,
    fileName: path.join(work, `${name}.bim`),
  });
  const db = await BriefcaseDb.open({ fileName: props.fileName });
  open.push(db);
  return db;
}

/** The locks of a briefcase as each host lists them (management client): {objectId: level}. */
async function locksOn(host, briefcaseId) {
  const pages = await toArray(
    management[host].locks.getList({ ...auth, iModelId: s.iModelId, urlParams: { briefcaseId } }),
  );
  const out = {};
  for (const lock of pages)
    for (const group of lock.lockedObjects) for (const id of group.objectIds) out[id] = group.lockLevel;
  return out;
}

function ok(resp, status, what) {
  assert.equal(resp.status, status, `${what}: ${resp.status} ${JSON.stringify(resp.error ?? resp.data)}`);
}

// ------------------------------------------------------------------------------------------- steps

await step("itwins-client: B lists (and caches), A creates, B gets and lists the new iTwin", async () => {
  const before = await itwins.B.queryAsync(TOKEN, undefined, { search: TAG });
  ok(before, 200, "B queryAsync");
  assert.deepEqual(before.data, [], "nothing of this run yet");
  const created = await itwins.A.createiTwin(TOKEN, {
    class: ITwinClass.Endeavor,
    subClass: ITwinSubClass.Project,
    displayName: `Multi-host ${TAG}`,
    number: `${TAG}-MH`,
  });
  ok(created, 201, "A createiTwin");
  s.iTwinId = created.data.id;
  assert.match(s.iTwinId, GUID);
  const got = await itwins.B.getAsync(TOKEN, s.iTwinId, "representation");
  ok(got, 200, "B getAsync");
  assert.equal(got.data.id, s.iTwinId);
  assert.equal(got.data.displayName, `Multi-host ${TAG}`);
  assert.equal(got.data.number, `${TAG}-MH`);
  assert.equal(got.data.createdDateTime, created.data.createdDateTime);
  // B answered this list from its read cache a moment ago: A's write must have cleared it.
  const after = await itwins.B.queryAsync(TOKEN, undefined, { search: TAG });
  ok(after, 200, "B queryAsync again");
  assert.deepEqual(after.data.map((t) => t.id), [s.iTwinId], "B lists the iTwin A created");
  return s.iTwinId;
});

await step("itwins-client: A reads (and caches), B renames, A reads the new name", async () => {
  const cached = await itwins.A.getAsync(TOKEN, s.iTwinId);
  ok(cached, 200, "A getAsync");
  assert.equal(cached.data.displayName, `Multi-host ${TAG}`);
  const renamed = await itwins.B.updateiTwin(TOKEN, s.iTwinId, { displayName: `Multi-host ${TAG} renamed` });
  ok(renamed, 200, "B updateiTwin");
  const got = await itwins.A.getAsync(TOKEN, s.iTwinId);
  ok(got, 200, "A getAsync again");
  assert.equal(got.data.displayName, `Multi-host ${TAG} renamed`, "A still answers its cached iTwin");
});

await step("authoring client on B: createFromBaseline (upload, complete, the worker initializes it)", async () => {
  const copy = path.join(work, "baseline.bim");
  fs.copyFileSync(SOURCE, copy); // the shared file stays untouched (WAL mode)
  s.baselineSize = fs.statSync(copy).size;
  const iModel = await authoringClient.B.iModels.createFromBaseline({
    ...auth,
    iModelProperties: { iTwinId: s.iTwinId, name: `Multi-host ${TAG}`, description: "made on B", filePath: copy },
    timeOutInMs: 60_000,
  });
  assert.match(iModel.id, GUID);
  assert.equal(iModel.state, IModelState.Initialized);
  s.iModelId = iModel.id;
  return `${s.iModelId} (${s.baselineSize} bytes)`;
});

await step("on A: the iModel (management client), its baseline (authoring client), the iTwin's list", async () => {
  const got = await management.A.iModels.getSingle({ ...auth, iModelId: s.iModelId });
  assert.equal(got.id, s.iModelId);
  assert.equal(got.iTwinId, s.iTwinId);
  assert.equal(got.name, `Multi-host ${TAG}`);
  assert.equal(got.description, "made on B");
  assert.equal(got.state, IModelState.Initialized);
  const baseline = await authoringClient.A.baselineFiles.getSingle({ ...auth, iModelId: s.iModelId });
  assert.equal(baseline.state, BaselineFileState.Initialized);
  assert.equal(baseline.fileSize, s.baselineSize);
  const listed = await toArray(management.A.iModels.getMinimalList({ ...auth, urlParams: { iTwinId: s.iTwinId } }));
  assert.deepEqual(listed.map((m) => m.id), [s.iModelId]);
});

await step("backend: briefcase X downloaded through A, briefcase Y through B (checkpoint 0)", async () => {
  s.x = await via("A", () => download("X"));
  s.y = await via("B", () => download("Y"));
  for (const db of [s.x, s.y]) {
    assert.equal(db.iModelId, s.iModelId);
    assert.equal(db.iTwinId, s.iTwinId);
    assert.equal(db.changeset.index, 0);
  }
  assert.notEqual(s.x.briefcaseId, s.y.briefcaseId, "one briefcase id sequence for both hosts");
  for (const host of ["A", "B"]) {
    const ids = (await toArray(management[host].briefcases.getMinimalList({ ...auth, iModelId: s.iModelId }))).map(
      (b) => Number(b.id),
    );
    assert.deepEqual(ids.sort(), [s.x.briefcaseId, s.y.briefcaseId].sort(), `briefcases listed on ${host}`);
  }
  return `X ${s.x.briefcaseId}, Y ${s.y.briefcaseId}`;
});

await step("backend: X acquires locks through B; both hosts list them; Y's conflicting lock through A is refused", async () => {
  await via("B", () => s.x.locks.acquireLocks({ shared: [IModel.repositoryModelId, IModel.dictionaryId] }));
  const expected = { [IModel.repositoryModelId]: LockLevel.Shared, [IModel.dictionaryId]: LockLevel.Shared };
  assert.deepEqual(await locksOn("A", s.x.briefcaseId), expected, "X's locks as A lists them");
  assert.deepEqual(await locksOn("B", s.x.briefcaseId), expected, "X's locks as B lists them");
  let error;
  try {
    await via("A", () => s.y.locks.acquireLocks({ exclusive: IModel.dictionaryId }));
  } catch (err) {
    error = err;
  }
  assert.ok(error, "Y got an exclusive lock on the dictionary X holds shared");
  const key = error.iTwinErrorId?.key ?? error.code ?? error.errorNumber;
  assert.ok(["LockOwnedByAnotherBriefcase", "ConflictWithAnotherUser"].includes(key), `conflict: ${key} ${error.message}`);
  assert.ok(!s.y.locks.holdsExclusiveLock(IModel.dictionaryId));
  assert.deepEqual(await locksOn("B", s.y.briefcaseId), {}, "Y holds nothing");
  return key;
});

await step("backend: X inserts a model, a category and three boxes and pushes through B", async () => {
  const x = s.x;
  s.modelId = PhysicalModel.insert(x, IModel.rootSubjectId, `Model ${TAG}`);
  s.categoryId = SpatialCategory.insert(x, IModel.dictionaryId, `Category ${TAG}`,
    new SubCategoryAppearance({ color: ColorDef.green.toJSON() }));
  s.ids = [
    physicalObject(x, "first", Point3d.create(0, 0, 0), 1),
    physicalObject(x, "second", Point3d.create(5, 0, 0), 2),
    physicalObject(x, "third", Point3d.create(0, 5, 0), 3),
  ];
  x.saveChanges("three boxes");
  await via("B", () => x.pushChanges({ description: "three boxes from X through B", accessToken: TOKEN }));
  assert.equal(x.changeset.index, 1);
  assert.match(x.changeset.id, /^[0-9a-f]{40}$/);
  s.changeset1 = x.changeset.id;
  // The push released X's locks (through B): neither host lists any.
  assert.deepEqual(await locksOn("A", x.briefcaseId), {});
  assert.deepEqual(await locksOn("B", x.briefcaseId), {});
  return `changeset 1 ${x.changeset.id.slice(0, 8)}`;
});

await step("management client on A lists B's changeset; backend: Y pulls it through A", async () => {
  const listed = await toArray(management.A.changesets.getRepresentationList({ ...auth, iModelId: s.iModelId }));
  assert.deepEqual(listed.map((c) => [c.index, c.id]), [[1, s.x.changeset.id]]);
  assert.equal(listed[0].briefcaseId, s.x.briefcaseId);
  assert.equal(listed[0].description, "three boxes from X through B");
  await via("A", () => s.y.pullChanges({ accessToken: TOKEN }));
  assert.deepEqual(s.y.changeset, s.x.changeset);
  assert.ok(s.y.models.tryGetModel(s.modelId), "the model reached Y");
  const labels = s.ids.map((id) => s.y.elements.tryGetElement(id)?.userLabel);
  assert.deepEqual(labels, ["first", "second", "third"]);
});

await step("backend: Y locks, updates and deletes through A and pushes; X pulls through B", async () => {
  const y = s.y;
  await via("A", () => y.locks.acquireLocks({ exclusive: [s.ids[0], s.ids[2]] }));
  const onA = await locksOn("A", y.briefcaseId);
  assert.equal(onA[s.ids[0]], LockLevel.Exclusive, `Y's locks as A lists them: ${JSON.stringify(onA)}`);
  assert.equal(onA[s.ids[2]], LockLevel.Exclusive, `Y's locks as A lists them: ${JSON.stringify(onA)}`);
  assert.deepEqual(await locksOn("B", y.briefcaseId), onA, "B lists the same locks of Y");
  const first = y.elements.getElement(s.ids[0]);
  first.userLabel = "first (moved by Y)";
  first.placement.origin = Point3d.create(10, 10, 0);
  y.elements.updateElement(first.toJSON());
  y.elements.deleteElement(s.ids[2]);
  y.saveChanges("update and delete");
  await via("A", () => y.pushChanges({ description: "update and delete from Y through A", accessToken: TOKEN }));
  assert.equal(y.changeset.index, 2);
  await via("B", () => s.x.pullChanges({ accessToken: TOKEN }));
  assert.deepEqual(s.x.changeset, y.changeset);
  assert.equal(s.x.elements.getElement(s.ids[0]).userLabel, "first (moved by Y)");
  assert.equal(s.x.elements.getElement(s.ids[0]).placement.origin.x, 10);
  assert.equal(s.x.elements.tryGetElement(s.ids[2]), undefined);
  for (const host of ["A", "B"]) {
    const iModel = await management[host].iModels.getSingle({ ...auth, iModelId: s.iModelId });
    assert.equal(iModel.id, s.iModelId);
    const listed = await toArray(management[host].changesets.getMinimalList({ ...auth, iModelId: s.iModelId }));
    assert.deepEqual(listed.map((c) => [c.index, c.id]), [[1, s.changeset1], [2, y.changeset.id]], `changesets on ${host}`);
    assert.deepEqual(await locksOn(host, y.briefcaseId), {}, `Y's locks on ${host} after its push`);
  }
  return `changeset 2 ${y.changeset.id.slice(0, 8)}`;
});

// Completing X's push through B made the checkpoint at changeset 1 (the completion applies the changeset to its
// parent: that is how twinbase proves it applies) and stored it in the blob store; A hands it out.
await step("named version on B at changeset 1; its checkpoint (made by B at X's push) opens read-only through A", async () => {
  const version = await management.B.namedVersions.create({
    ...auth,
    iModelId: s.iModelId,
    namedVersionProperties: { name: `v1 ${TAG}`, changesetId: s.changeset1 },
  });
  assert.equal(version.changesetIndex, 1);
  const seen = await management.A.namedVersions.getSingle({ ...auth, iModelId: s.iModelId, namedVersionId: version.id });
  assert.deepEqual([seen.name, seen.changesetId], [`v1 ${TAG}`, s.changeset1]);
  const changeset = { id: s.changeset1, index: 1 };
  // Through A's answer and its link to the blob store (the call would wait while it is "scheduled").
  const staged = await adapters.A.prefetchExactCheckpoint({ iModelId: s.iModelId, changeset, accessToken: TOKEN }, { timeoutMs: 45_000 });
  assert.equal(staged.index, 1);
  // The staged file itself (core-backend makes no hub call for a fully named changeset).
  const db = await SnapshotDb.openCheckpoint({ iTwinId: s.iTwinId, iModelId: s.iModelId, changeset });
  try {
    assert.deepEqual(db.changeset, changeset, "the checkpoint's own changeset");
    assert.equal(db.isReadonly, true);
    const labels = s.ids.map((id) => db.elements.tryGetElement(id)?.userLabel);
    assert.deepEqual(labels, ["first", "second", "third"], "the checkpoint is at changeset 1, before Y's push");
  } finally {
    db.close();
  }
  const cp = await management.B.checkpoints.getSingle({ ...auth, iModelId: s.iModelId, namedVersionId: version.id });
  assert.equal(cp.state, "successful");
  assert.equal(cp.changesetIndex, 1);
});

await step("close X and Y and release their briefcases (X through A, Y through B)", async () => {
  s.tip = { ...s.x.changeset };
  s.briefcases = [s.x.briefcaseId, s.y.briefcaseId];
  for (const [name, db, host] of [["X", s.x, "A"], ["Y", s.y, "B"]]) {
    db.close();
    await via(host, () => BriefcaseManager.deleteBriefcaseFiles(path.join(work, `${name}.bim`), TOKEN));
  }
  for (const host of ["A", "B"]) {
    const left = await toArray(management[host].briefcases.getMinimalList({ ...auth, iModelId: s.iModelId }));
    assert.deepEqual(left, [], `briefcases left on ${host}`);
  }
  fs.writeFileSync(
    RESULT,
    JSON.stringify({
      iTwinId: s.iTwinId,
      iModelId: s.iModelId,
      tip: s.tip,
      elements: { first: s.ids[0], second: s.ids[1], deleted: s.ids[2] },
      modelId: s.modelId,
      briefcases: s.briefcases,
      hubCalls: calls,
    }),
  );
  return `hub calls: A ${calls.A}, B ${calls.B}`;
});

await finish();
