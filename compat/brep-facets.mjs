// The native library's facets for the Parasolid B-reps twinbase cannot mesh itself (B-reps stored without
// their BRepPolyface): the exportGraphics meshes of the elements and the exportPartGraphics meshes of the
// geometry parts whose GeometryStreams hold such B-reps. Driven by src/twinbase/bim/native_facets.py, only
// when its option is on (the native library runs under Bentley's right-to-run terms: see README).
//
//   node compat/brep-facets.mjs <file.bim> <request.json> <out dir>
//
// request.json: { elements: ["0x..", ...], parts: [{ id: "0x..", instancedBy: "0x.." | null }, ...],
//                 chordTol: metres, angleTol: radians, maxEdgeLength: metres (optional) }
//   elements     meshed with exportGraphics, part instances left out (partInstanceArray): the parts stay
//                instances, so an element gets only the meshes of its own geometry, in world coordinates.
//   parts        meshed once each with exportPartGraphics, in part coordinates. Its display props (category,
//                subcategory, class, material, transparency, line colour) are those exportGraphics lists for
//                the first instance of the part in `instancedBy` (the caller resolves the colours of the
//                pieces through that same instance); without one, or when that element does not instance
//                the part, neutral props (all "0") are used and `display` says so (null).
//
// Written to <out dir>:
//   meshes.bin   little-endian arrays, each starting at a multiple of 8 bytes: float64 xyz positions,
//                float32 xyz normals, float32 uv params, uint32 triangle indices (3 per triangle).
//   index.json   { generator: {versions, tolerances, timings},
//                  elements: [{ id, pieces: [piece...] }],       (only elements that gave triangles)
//                  parts: [{ id, instancedBy, display, status, pieces: [piece...] }] }
//   A piece is one onGraphics / onPartGraphics call (one per colour, material, texture, subcategory, class):
//   { color (ColorDef tbgr), materialId, textureId, subCategory (elements only), geometryClass, isTwoSided,
//     vertices, triangles, positions, normals, params, indices } where the last four are byte offsets
//   into meshes.bin. Lines are not asked for: the caller draws wires itself.
// The file is opened read-only (SnapshotDb.openFile); a WAL-mode file is copied (with its -wal) into a
// temporary folder first, since reading a WAL needs its -shm beside it and the original's folder may be
// read-only. Exit status 0 with the figures on stdout; a failure prints on stderr and exits 1 (2: usage).

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { IModelHost, SnapshotDb } from "@itwin/core-backend";
import { Logger, LogLevel } from "@itwin/core-bentley";

const require = createRequire(import.meta.url);
const started = process.hrtime.bigint();
const since = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;

const args = process.argv.slice(2);
if (args.length !== 3) {
  console.error("usage: node compat/brep-facets.mjs <file.bim> <request.json> <out dir>");
  process.exit(2);
}
const bimFile = path.resolve(args[0]);
const request = JSON.parse(fs.readFileSync(args[1], "utf8"));
const outDir = path.resolve(args[2]);
const elementIds = request.elements ?? [];
const partRequests = request.parts ?? [];
const chordTol = Number(request.chordTol ?? 0.001);
const angleTol = Number(request.angleTol ?? Math.PI / 12);
const maxEdgeLength = request.maxEdgeLength ? Number(request.maxEdgeLength) : undefined;
if (!(chordTol >= 0) || !(angleTol > 0)) {
  console.error(`brep-facets: bad tolerances chordTol=${request.chordTol} angleTol=${request.angleTol}`);
  process.exit(2);
}

/** Appends typed arrays to meshes.bin, 8-byte aligned, and answers their byte offsets. */
class BinWriter {
  constructor() {
    this.chunks = [];
    this.offset = 0;
  }

  add(typed) {
    const at = this.offset;
    this.chunks.push(Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength));
    this.offset += typed.byteLength;
    const pad = (8 - (this.offset % 8)) % 8;
    if (pad) {
      this.chunks.push(Buffer.alloc(pad));
      this.offset += pad;
    }
    return at;
  }

  write(file) {
    fs.writeFileSync(file, Buffer.concat(this.chunks));
  }
}

const bin = new BinWriter();

function piece(info, withSubCategory) {
  const mesh = info.mesh;
  const p = {
    color: info.color,
    materialId: info.materialId ?? null,
    textureId: info.textureId ?? null,
    geometryClass: info.geometryClass,
    isTwoSided: mesh.isTwoSided,
    vertices: mesh.points.length / 3,
    triangles: mesh.indices.length / 3,
    // (each callback gets arrays of its own, kept until written: export-graphics.mjs relies on it too)
    positions: bin.add(mesh.points),
    normals: bin.add(mesh.normals),
    params: bin.add(mesh.params),
    // Int32Array from the native side, never negative: written as the same bits, read as uint32.
    indices: bin.add(mesh.indices),
  };
  if (withSubCategory) p.subCategory = info.subCategory;
  return p;
}

/** SQLite's header says the file is in WAL mode (bytes 18 and 19 are 2). */
function isWal(file) {
  const fd = fs.openSync(file, "r");
  try {
    const head = Buffer.alloc(20);
    fs.readSync(fd, head, 0, 20, 0);
    return head[18] === 2 || head[19] === 2;
  } finally {
    fs.closeSync(fd);
  }
}

Logger.initializeToConsole();
Logger.setLevelDefault(LogLevel.Error);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-brep-facets-"));
let db;
try {
  await IModelHost.startup({ cacheDir: path.join(work, "cache") });
  // Offline machine: without this the first open waits ~15 s for the public GCS workspace.
  IModelHost.appWorkspace.settings.addDictionary({ name: "brep-facets", priority: 200 }, { "itwin/core/gcs/disableWorkspaces": true });
  const generator = {
    file: path.basename(bimFile),
    coreBackend: JSON.parse(fs.readFileSync(require.resolve("@itwin/core-backend/package.json"), "utf8")).version,
    native: JSON.parse(fs.readFileSync(require.resolve("@bentley/imodeljs-native/package.json"), "utf8")).version,
    chordTol,
    angleTol,
    maxEdgeLength: maxEdgeLength ?? null,
    startupSeconds: since(started),
  };

  let openPath = bimFile;
  if (isWal(bimFile)) {
    openPath = path.join(work, "copy.bim");
    fs.copyFileSync(bimFile, openPath);
    if (fs.existsSync(`${bimFile}-wal`)) fs.copyFileSync(`${bimFile}-wal`, `${openPath}-wal`);
    generator.copied = true;
  }
  db = SnapshotDb.openFile(openPath);

  // One exportGraphics over the requested elements and the elements that name the parts' display props.
  const t1 = process.hrtime.bigint();
  const wanted = new Set(elementIds);
  const byId = new Map();
  const partInstanceArray = [];
  const instancing = partRequests.map((p) => p.instancedBy).filter((id) => id);
  const ids = [...new Set([...elementIds, ...instancing])];
  if (ids.length) {
    const status = db.exportGraphics({
      elementIdArray: ids,
      partInstanceArray,
      chordTol,
      angleTol,
      maxEdgeLength,
      onGraphics: (info) => {
        if (!wanted.has(info.elementId)) return;
        if (!byId.has(info.elementId)) byId.set(info.elementId, { id: info.elementId, pieces: [] });
        byId.get(info.elementId).pieces.push(piece(info, true));
      },
    });
    if (status !== 0) throw new Error(`exportGraphics returned status ${status}`);
  }
  generator.exportSeconds = since(t1);

  const t2 = process.hrtime.bigint();
  const neutral = { categoryId: "0", subCategoryId: "0", geometryClass: 0, materialId: "0", elmTransparency: 0, lineColor: 0 };
  const parts = [];
  for (const req of partRequests) {
    const inst = req.instancedBy ? partInstanceArray.find((i) => i.partId === req.id && i.partInstanceId === req.instancedBy) : undefined;
    const part = { id: req.id, instancedBy: req.instancedBy ?? null, display: inst ? inst.displayProps : null, status: 0, pieces: [] };
    part.status = db.exportPartGraphics({
      elementId: req.id,
      displayProps: inst ? inst.displayProps : neutral,
      chordTol,
      angleTol,
      maxEdgeLength,
      onPartGraphics: (info) => part.pieces.push(piece(info, false)),
    });
    parts.push(part);
  }
  generator.partSeconds = since(t2);

  fs.mkdirSync(outDir, { recursive: true });
  bin.write(path.join(outDir, "meshes.bin"));
  generator.elements = byId.size;
  generator.parts = parts.length;
  generator.totalSeconds = since(started);
  fs.writeFileSync(path.join(outDir, "index.json"), JSON.stringify({ generator, elements: [...byId.values()], parts }));
  console.log(JSON.stringify(generator));
} finally {
  if (db?.isOpen) db.close();
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
