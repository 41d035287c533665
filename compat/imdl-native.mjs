// Golden iMdl tiles from the real iTwin.js backend: the ROOT tile of the native per-model tile tree of every
// spatial model of a .bim, written as files so tests can compare twinbase's Mesh Export IMODEL tiles with them
// (decode both with compat/frontend/imdl-dump.mjs).
//
//   node compat/imdl-native.mjs <model.bim> <out dir>
//
// For every bis.SpatialModel (physical, spatial-location, ... models; in id order) it asks the native library
// for the tile tree iModelTileTreeIdToString(modelId, {type: BatchType.Primary, edges: false},
// defaultTileOptions) (IModelDb.tiles.requestTileTreeProps) and its root tile's content
// (IModelDb.tiles.requestTileContent(treeId, rootTile.contentId)), and writes <out dir>/<modelId>.imdl.
//
// What the native tiles are (core-backend 5.7.3 / native 5.7.13): one tree per model, tile coordinates are
// tree-local (`location` maps them to iModel coordinates), the feature table is single-model (no header flag
// 16: a reader must pass the model id as batchModelId), the header says version 1.4 whatever the tree's
// formatVersion. A root tile can be a coarse LOD or even empty with flag 4 (Incomplete): its content then lives
// in child tiles, which this script does not fetch.
//
// Printed on stdout, one JSON line:
//   {"bim": <path>, "coreBackend": "5.7.3", "native": "5.7.13", "models": [
//     {"modelId", "className", "treeId", "location" (TransformProps as the tree gives it: 3x4 row-major
//      nested arrays), "rootContentId", "rootTile" (TileProps: contentId, range, contentRange, maximumSize,
//      isLeaf, ...), "contentRange" (the tree's), "formatVersion", "isLeaf" (rootTile.isLeaf === true),
//      "header": {"major", "minor", "flags"} (read from the tile bytes), "bytes", "elapsedSeconds",
//      "file" (absolute path of the .imdl)}
//     or, when the native library fails for a model, {"modelId", "className", "treeId", "error"} ]}
// Exit 0 when every model was answered (errors included); 2 on bad usage; 1 on anything else.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { IModelHost, SnapshotDb } from "@itwin/core-backend";
import { Logger, LogLevel } from "@itwin/core-bentley";
import { BatchType, defaultTileOptions, iModelTileTreeIdToString } from "@itwin/core-common";

const require = createRequire(import.meta.url);
// stdout carries only the JSON line: whatever the iTwin.js libraries log goes to stderr.
console.log = console.info = console.warn = console.debug = (...a) => console.error(...a);

const args = process.argv.slice(2);
if (args.length !== 2) {
  console.error("usage: node compat/imdl-native.mjs <model.bim> <out dir>");
  process.exit(2);
}
const bimFile = path.resolve(args[0]);
const outDir = path.resolve(args[1]);
if (!fs.existsSync(bimFile)) {
  console.error(`imdl-native: no such file ${bimFile}`);
  process.exit(2);
}

const versionOf = (pkg) => JSON.parse(fs.readFileSync(require.resolve(`${pkg}/package.json`), "utf8")).version;

/** The few header fields needed to tell what the root tile is (the dump script decodes the rest). */
function headerOf(bytes) {
  if (bytes.length < 16) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  return { major: version >>> 16, minor: version & 0xffff, flags: view.getUint32(12, true) };
}

Logger.initializeToConsole();
Logger.setLevelDefault(LogLevel.Error);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-imdl-native-"));
let db;
try {
  await IModelHost.startup({ cacheDir: path.join(work, "cache") });
  // Offline machine: without this the first open waits ~15 s for the public GCS workspace.
  IModelHost.appWorkspace.settings.addDictionary({ name: "imdl-native", priority: 200 }, { "itwin/core/gcs/disableWorkspaces": true });

  // A copy: the shared data files are in WAL mode, and the native tile cache may write beside the file.
  const copy = path.join(work, path.basename(bimFile));
  fs.copyFileSync(bimFile, copy);
  db = SnapshotDb.openFile(copy);
  fs.mkdirSync(outDir, { recursive: true });

  const models = [];
  db.withPreparedStatement(
    "SELECT ECInstanceId, ec_classname(ECClassId, 's:c') FROM bis.SpatialModel ORDER BY ECInstanceId",
    (stmt) => {
      while (stmt.step() === 100 /* DbResult.BE_SQLITE_ROW */) models.push({ modelId: stmt.getValue(0).getId(), className: stmt.getValue(1).getString() });
    },
  );

  const out = [];
  for (const { modelId, className } of models) {
    const treeId = iModelTileTreeIdToString(modelId, { type: BatchType.Primary, edges: false }, defaultTileOptions);
    try {
      const props = await db.tiles.requestTileTreeProps(treeId);
      const content = await db.tiles.requestTileContent(treeId, props.rootTile.contentId);
      const bytes = content.content;
      const file = path.join(outDir, `${modelId}.imdl`);
      fs.writeFileSync(file, bytes);
      out.push({
        modelId,
        className,
        treeId,
        location: props.location,
        rootContentId: props.rootTile.contentId,
        rootTile: props.rootTile,
        contentRange: props.contentRange ?? null,
        formatVersion: props.formatVersion ?? null,
        isLeaf: props.rootTile.isLeaf === true,
        header: headerOf(bytes),
        bytes: bytes.length,
        elapsedSeconds: content.elapsedSeconds,
        file,
      });
    } catch (err) {
      out.push({ modelId, className, treeId, error: String(err?.message ?? err) });
    }
  }
  process.stdout.write(
    `${JSON.stringify({ bim: bimFile, coreBackend: versionOf("@itwin/core-backend"), native: versionOf("@bentley/imodeljs-native"), models: out })}\n`,
  );
} catch (err) {
  console.error(`imdl-native: ${err?.stack ?? err}`);
  process.exitCode = 1;
} finally {
  db?.close();
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
