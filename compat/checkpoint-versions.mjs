// Successive checkpoints of one iModel, made by the real iTwin.js backend, and the native library's own
// CloudSqlite upload of them: the input and the peer of bench/checkpoint_containers.py (issue #18).
//
//   node compat/checkpoint-versions.mjs make <out dir> <target MiB> <versions> <area|recent|scattered>
//   CHECKPOINT_UPLOAD='{...}' node compat/checkpoint-versions.mjs upload
//
// make: a SnapshotDb filled with geometric elements (wavy meshes with normals and params, boxes, cylinders,
//   spheres; 8 models, 6 categories, laid on a grid) in batches of 2,000 until the file is at least
//   <target MiB>, then <versions> rounds of edits, each a small part of the model as a real changeset is:
//   ~300 updates (a third new geometry, a third moved, a third new label and jsonProperties), ~100
//   inserts and ~50 deletes. "area": the round's edits fall in one work area (a random square of the grid
//   holding ~2% of the elements, at least 450 cells; ids there run in short contiguous stretches, as an area's elements were
//   made together); "recent": on the most recently created ~2% (at least 450) of the elements, the newest
//   rows of every table (the best case for locality); "scattered": anywhere in the model. After each round's saveChanges the WAL is folded
//   into the file (performCheckpoint) and the file copied to <out dir>/version-<k>.bim, as a checkpoint
//   is: the committed file, never vacuumed.
//   <out dir>/versions.json: backend versions, parameters, element counts, per-round edits, sizes, timings.
//   Deterministic: a seeded PRNG, so the same parameters make the same model and edits.
//
// upload: CLOUDSQLITE_ROUNDTRIP's way (compat/cloudsqlite-roundtrip.mjs), but every file into ONE container
//   in turn, each timed on its own, as a checkpoint service would store an iModel's checkpoints:
//   {"baseUri", "accessToken" (a container SAS), "container" (must exist), "work", "checksumBlockNames",
//    "files": [{"dbName", "file"}]}
//   initializeContainer (4 MiB blocks; checksumBlockNames gives 24-byte ids starting with the block's MD5,
//   so an upload reuses blocks already in the manifest), connect to a cache in `work`, then per file
//   CloudSqlite.withWriteLock + CloudSqlite.uploadDb. Last stdout line: {"uploads": [{dbName, seconds,
//   lockedSeconds}], "databases", "peakRssMB", "startupSeconds"} (or {"error"}, exit 1).

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { CloudSqlite, IModelHost, PhysicalModel, SnapshotDb, SpatialCategory } from "@itwin/core-backend";
import { Logger, LogLevel } from "@itwin/core-bentley";
import { Code, ColorDef, GeometryStreamBuilder, IModel, SubCategoryAppearance } from "@itwin/core-common";
import { Box, Cone, Point3d, PolyfaceBuilder, Range3d, Sphere, YawPitchRollAngles } from "@itwin/core-geometry";
import { rng } from "./lib/random.mjs";

const require = createRequire(import.meta.url);
const started = Date.now();
const seconds = (t0 = started) => Number(((Date.now() - t0) / 1000).toFixed(3));


async function startHost(work) {
  Logger.initializeToConsole();
  Logger.setLevelDefault(LogLevel.Error);
  await IModelHost.startup({ cacheDir: path.join(work, "host-cache") });
  // Offline machine: without this the first open waits ~15 s for the public GCS workspace.
  IModelHost.appWorkspace.settings.addDictionary({ name: "checkpoint-versions", priority: 200 }, { "itwin/core/gcs/disableWorkspaces": true });
}

// ----------------------------------------------------------------------------------------------- make

function stream(primitive) {
  const builder = new GeometryStreamBuilder();
  builder.appendGeometry(primitive);
  return builder.geometryStream;
}

/** An n x n grid mesh over a wavy surface with normals and params: most of the file's bytes, as in real
 * models where meshes (reality, scanned or converted geometry) dominate. */
function mesh(n, size, phase) {
  const builder = PolyfaceBuilder.create();
  builder.options.needNormals = true;
  builder.options.needParams = true;
  const p = (i, j) =>
    Point3d.create((i * size) / n, (j * size) / n, 0.25 * size * Math.sin(phase + i / 2) * Math.cos(phase + j / 3));
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) builder.addQuadFacet([p(i, j), p(i + 1, j), p(i + 1, j + 1), p(i, j + 1)]);
  return builder.claimPolyface();
}

function shape(random) {
  const s = 0.5 + random() * 2.5;
  const k = random();
  if (k < 0.6) return stream(mesh(6 + Math.floor(random() * 7), s, random() * 6)); // 6..12 quads a side
  if (k < 0.75) return stream(Box.createRange(Range3d.createXYZXYZ(0, 0, 0, s, s * 0.6, s * 0.4), true));
  if (k < 0.9) return stream(Cone.createAxisPoints(Point3d.create(0, 0, 0), Point3d.create(0, 0, s), s / 3, s / 3, true));
  return stream(Sphere.createCenterRadius(Point3d.create(s / 2, s / 2, s / 2), s / 2));
}

const COLUMNS = 200; // grid columns: element n sits at cell n (row-major), its origin 5 m apart
const SPACING = 5;

function fileBytes(file) {
  const wal = `${file}-wal`;
  return fs.statSync(file).size + (fs.existsSync(wal) ? fs.statSync(wal).size : 0);
}

async function make(outDir, targetMiB, versions, pattern) {
  if (!(targetMiB > 0) || !(versions > 0) || !["area", "recent", "scattered"].includes(pattern)) {
    console.error("usage: node compat/checkpoint-versions.mjs make <out dir> <target MiB> <versions> <area|recent|scattered>");
    process.exit(2);
  }
  if (fs.existsSync(outDir) && fs.readdirSync(outDir).length > 0) throw new Error(`${outDir} is not empty`);
  fs.mkdirSync(outDir, { recursive: true });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-versions-"));
  await startHost(work);
  const timings = {};
  const file = path.join(work, "live.bim");
  const db = SnapshotDb.createEmpty(file, { rootSubject: { name: "checkpoint versions" } });
  const rounds = [];
  let inserted = 0;
  try {
    const random = rng(18);
    const models = [];
    const categories = [];
    for (let m = 0; m < 8; m++) models.push(PhysicalModel.insert(db, IModel.rootSubjectId, `Versions model ${m}`));
    for (let c = 0; c < 6; c++) {
      const appearance = new SubCategoryAppearance({ color: ColorDef.from(40 * c, 255 - 40 * c, 90).toJSON() });
      categories.push(SpatialCategory.insert(db, IModel.dictionaryId, `Versions category ${c}`, appearance));
    }
    // cell -> live element id (cells of deleted elements are empty; inserts take new cells at the end or
    // free cells in the work area)
    const cells = new Map();
    const insertAt = (cell, round) => {
      const id = db.elements.insertElement({
        classFullName: "Generic:PhysicalObject",
        model: models[cell % models.length],
        category: categories[Math.floor(cell / COLUMNS) % categories.length],
        code: Code.createEmpty(),
        userLabel: `element ${cell}`,
        placement: {
          origin: Point3d.create((cell % COLUMNS) * SPACING, Math.floor(cell / COLUMNS) * SPACING, random() * 3),
          angles: YawPitchRollAngles.createDegrees(random() * 360, 0, 0).toJSON(),
        },
        geom: shape(random),
        jsonProperties: { versions: { round, cell } },
      });
      cells.set(cell, id);
      inserted++;
      return id;
    };

    const t0 = Date.now();
    let nextCell = 0;
    for (;;) {
      for (let i = 0; i < 2000; i++) insertAt(nextCell++, 0);
      db.saveChanges("baseline batch");
      if (fileBytes(file) >= targetMiB * 2 ** 20) break;
    }
    const rows = Math.ceil(nextCell / COLUMNS);
    db.updateProjectExtents(Range3d.createXYZXYZ(-10, -10, -10, COLUMNS * SPACING + 10, rows * SPACING + 10, 20));
    db.saveChanges("baseline");
    timings.baselineSeconds = seconds(t0);
    const baseline = { elements: cells.size, bytes: fileBytes(file) };

    const t1 = Date.now();
    for (let round = 1; round <= versions; round++) {
      const tr = Date.now();
      // The round's candidates: a square of the grid holding ~2% of the cells, or every cell.
      let candidates;
      let area = null;
      if (pattern === "area") {
        // at least room for the round's 350 updates and deletes
        const side = Math.max(Math.ceil(Math.sqrt(450)), Math.round(Math.sqrt(0.02 * nextCell)));
        const col0 = Math.floor(random() * Math.max(1, COLUMNS - side));
        const row0 = Math.floor(random() * Math.max(1, rows - side));
        area = { col0, row0, side };
        candidates = [];
        for (let r = row0; r < Math.min(rows, row0 + side); r++)
          for (let c = col0; c < col0 + side; c++) candidates.push(r * COLUMNS + c);
      } else if (pattern === "recent") {
        // The most recently created elements (a Map keeps insertion order, and a redrawn cell is
        // re-inserted at its end): the newest rows of every table, the best case for locality.
        const keys = [...cells.keys()];
        candidates = keys.slice(-Math.max(450, Math.round(0.02 * keys.length)));
      } else {
        candidates = [...cells.keys()];
      }
      const live = () => candidates.filter((cell) => cells.has(cell));
      const pickLive = (n) => {
        const pool = live();
        const out = [];
        for (let i = 0; i < n && pool.length > 0; i++) out.push(pool.splice(Math.floor(random() * pool.length), 1)[0]);
        return out;
      };
      const counts = { updates: 0, inserts: 0, deletes: 0 };
      for (const [i, cell] of pickLive(300).entries()) {
        const element = db.elements.getElement(cells.get(cell));
        if (i % 3 === 0) {
          element.geom = shape(random);
        } else if (i % 3 === 1) {
          element.placement.origin.z += 0.5 + random();
          element.placement.angles = YawPitchRollAngles.createDegrees(random() * 360, 0, 0);
        } else {
          element.userLabel = `element ${cell} (round ${round})`;
          element.jsonProperties = { versions: { round, cell, note: `edited in round ${round}` } };
        }
        db.elements.updateElement(element.toJSON());
        counts.updates++;
      }
      for (const cell of pickLive(50)) {
        db.elements.deleteElement(cells.get(cell));
        cells.delete(cell);
        counts.deletes++;
      }
      // Inserts: into the candidates' empty cells first (what was deleted is redrawn), the rest in new
      // cells at the end of the grid. Either way the elements get new ids (rows at the end of the tables).
      const empty = candidates.filter((cell) => !cells.has(cell));
      for (let i = 0; i < 100; i++) {
        const cell = empty.length > 0 ? empty.pop() : nextCell++;
        insertAt(cell, round);
        counts.inserts++;
      }
      // saveChanges, then fold the WAL into the file: the copy is then the committed state, whole.
      db.saveChanges(`round ${round}`);
      db.performCheckpoint();
      const wal = `${file}-wal`;
      if (fs.existsSync(wal) && fs.statSync(wal).size > 0) throw new Error(`${wal} is not empty after the checkpoint`);
      const target = path.join(outDir, `version-${String(round).padStart(2, "0")}.bim`);
      fs.copyFileSync(file, target);
      rounds.push({ round, file: path.basename(target), bytes: fs.statSync(target).size, elements: cells.size, area, ...counts, seconds: seconds(tr) });
    }
    timings.roundsSeconds = seconds(t1);
    const backend = require("@itwin/core-backend/package.json");
    const native = require("@bentley/imodeljs-native/package.json");
    const summary = {
      coreBackend: backend.version,
      native: native.version,
      params: { targetMiB, versions, pattern, columns: COLUMNS },
      baseline,
      inserted,
      rounds,
      timings: { ...timings, totalSeconds: seconds() },
    };
    fs.writeFileSync(path.join(outDir, "versions.json"), JSON.stringify(summary, null, 1));
    return summary;
  } finally {
    db.close();
    await IModelHost.shutdown();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

// --------------------------------------------------------------------------------------------- upload

async function upload() {
  const raw = process.env.CHECKPOINT_UPLOAD;
  if (!raw) throw new Error("CHECKPOINT_UPLOAD (JSON spec) is not set");
  const spec = JSON.parse(raw);
  fs.mkdirSync(spec.work, { recursive: true });
  const t0 = Date.now();
  await startHost(spec.work);
  const container = CloudSqlite.createCloudContainer({
    storageType: "azure",
    baseUri: spec.baseUri,
    containerId: spec.container,
    accessToken: spec.accessToken,
    writeable: true,
    tokenRefreshSeconds: 0, // the SAS is fixed for the run: no refresh timer
  });
  container.initializeContainer({ blockSize: 4 * 1024 * 1024, checksumBlockNames: Boolean(spec.checksumBlockNames) });
  const cache = CloudSqlite.CloudCaches.getCache({ cacheName: `versions-${spec.container}`, cacheDir: path.join(spec.work, "cache") });
  container.connect(cache);
  const startupSeconds = seconds(t0);
  const uploads = [];
  try {
    for (const { dbName, file } of spec.files) {
      const locked = performance.now();
      let uploadSeconds = 0;
      await CloudSqlite.withWriteLock({ user: "twinbase-bench", container }, async () => {
        const t = performance.now();
        await CloudSqlite.uploadDb(container, { dbName, localFileName: file });
        uploadSeconds = (performance.now() - t) / 1000;
      });
      uploads.push({ dbName, seconds: uploadSeconds, lockedSeconds: (performance.now() - locked) / 1000 });
    }
    container.checkForChanges();
    return { uploads, databases: container.queryDatabases(), startupSeconds, peakRssMB: process.resourceUsage().maxRSS / 1024 };
  } finally {
    container.disconnect({ detach: true });
    await IModelHost.shutdown();
  }
}

// ------------------------------------------------------------------------------------------------ run

const command = process.argv[2];
try {
  let answer;
  if (command === "make") {
    answer = await make(path.resolve(process.argv[3] ?? ""), Number(process.argv[4]), Number(process.argv[5]), process.argv[6]);
  } else if (command === "upload") {
    answer = await upload();
  } else {
    console.error("usage: node compat/checkpoint-versions.mjs make <out dir> <target MiB> <versions> <area|recent|scattered> | upload");
    process.exit(2);
  }
  console.log(JSON.stringify(answer));
} catch (err) {
  console.log(JSON.stringify({ error: `${err.stack ?? err}`, errorNumber: err.errorNumber ?? null }));
  process.exitCode = 1;
}
