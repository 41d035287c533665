// The geometry truth: what the real iTwin.js backend meshes for each element of a .bim, with
// IModelDb.exportGraphics, written so Python can load it with numpy and compare it element by element.
//
//   node compat/export-graphics.mjs <file.bim> <out dir> [chordTol [angleTol]] [--no-meshes] [--async] [--no-parts]
//
//   chordTol  metres (default 0.001); angleTol radians (default pi/12, exportGraphics' own default).
//   --no-meshes  count only (triangles, area, range per element): the benchmark's mode, so the timing is
//                exportGraphics and not the writing of gigabytes.
//   --async      use exportGraphicsAsync (the native thread pool, every core) instead of exportGraphics.
//   --no-parts   skip the second pass that keeps GeometryPart instancing (partInstanceArray +
//                exportPartGraphics).
//
// Every 3D geometric element (bis.GeometricElement3d) is exported. Written to <out dir>:
//   meshes.bin   little-endian arrays, each starting at a multiple of 8 bytes: float64 xyz positions,
//                float32 xyz normals, float32 uv params, uint32 triangle indices (3 per triangle), float64 xyz
//                line points and uint32 line segment indices (2 per segment).
//   index.json   { generator: {versions, tolerances, timings, peak RSS, totals},
//                  elements: [{ id, classFullName, category, userLabel, truth (jsonProperties.truth),
//                               triangles, area, range, pieces: [...], lines: [...], partsPass }],
//                  instances: [{ partId, elementId, transform (3x4 row-major), displayProps, displayKey }],
//                  parts: [{ partId, displayKey, displayProps, pieces, lines }] }
//                A piece is one onGraphics call (exportGraphics makes one per element, colour, material and
//                texture): { subCategory, color (ColorDef tbgr as exportGraphics gives it), materialId,
//                textureId, geometryClass, isTwoSided, vertices, triangles, area, range, positions, normals,
//                params, indices } where the last four are byte offsets into meshes.bin. A line piece is one
//                onLineGraphics call: { subCategory, color, geometryClass, points, segments, length,
//                pointsOffset, indicesOffset }.
// Areas and lengths are summed in JS here (float64), so the loader can check its own reading against them.
//
// Pass 1 (the truth): exportGraphics flattens GeometryParts into each instancing element's meshes, placed and
// scaled. Pass 2 (unless --no-parts): exportGraphics with partInstanceArray, which lists the part instances
// and leaves them out of onGraphics, then exportPartGraphics once per distinct (part, display props): the part
// meshes in part coordinates. partsPass on each element is what pass 2 still gave through onGraphics.

// What exportGraphics does (verified with core-backend 5.7.3 / native 5.7.13 on the truth profile; pinned in
// tests/test_geometry_truth.py):
// - Tolerances: chordTol and angleTol both bound the facets of curved geometry, the finer wins; angleTol is
//   capped at pi/4 (pi/2 gives 8 segments a circle, like pi/4); chordTol 0 means angle only. A unit sphere
//   at chordTol 1 mm is 72 x 36 facets (2 acos(1 - 0.001) = 5.1 degrees a step). Faceted kinds (boxes,
//   polyfaces, polygonal regions and sweeps) give the same triangles at every tolerance.
// - Discs (circular regions, cylinder and cone caps) are fans around their centre: n triangles for n
//   segments. Closed solids and B-reps are one-sided (isTwoSided false); polyfaces (even closed ones),
//   planar regions, B-spline surfaces and uncapped solids are two-sided.
// - Parts: flattened into each instancing element's meshes, placed and scaled, and tessellated after the
//   instance scale (a cylinder part at scale 3 has more facets than at scale 1). With partInstanceArray the
//   instances are listed instead (transform: 3x4 row-major world-from-part, placement and scale included)
//   and exportPartGraphics tessellates each part once in part coordinates, whatever the instance scales.
// - Colour: one onGraphics call per element, colour (tbgr, transparency in the high byte), material,
//   texture, subcategory, geometry class and two-sidedness. Transparency bytes are floor(255 t) (0.5 ->
//   127). A render material replaces the colour: its diffuse colour (floor(255 c) per channel) and its
//   transmit as the transparency, even over a transparent category. Fill (FillDisplay.Always) uses the fill
//   colour; an unfilled planar region (FillDisplay.Never) is meshed too, in the line colour.
//   Construction-class geometry is exported (geometryClass 1).
// - Wires (line strings, arcs, B-spline curves, paths) come only through onLineGraphics, never as
//   triangles; a point string comes out as a polyline through its points. Solids give no edge lines.
// - Text (TextString) gives nothing at all, with or without the font embedded in the file.
// - Parasolid B-reps (opcode 25, no stored facets) are faceted by the native Parasolid.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { ExportGraphics, IModelHost, SnapshotDb } from "@itwin/core-backend";
import { Logger, LogLevel } from "@itwin/core-bentley";

const require = createRequire(import.meta.url);

const args = process.argv.slice(2);
const flags = new Set(args.filter((a) => a.startsWith("--")));
const positional = args.filter((a) => !a.startsWith("--"));
for (const f of flags)
  if (!["--no-meshes", "--async", "--no-parts"].includes(f)) {
    console.error(`export-graphics: unknown option ${f}`);
    process.exit(2);
  }
if (positional.length < 2) {
  console.error("usage: node compat/export-graphics.mjs <file.bim> <out dir> [chordTol [angleTol]] [--no-meshes] [--async] [--no-parts]");
  process.exit(2);
}
const bimFile = path.resolve(positional[0]);
const outDir = path.resolve(positional[1]);
const chordTol = positional[2] !== undefined ? Number(positional[2]) : 0.001;
const angleTol = positional[3] !== undefined ? Number(positional[3]) : Math.PI / 12;
if (!(chordTol >= 0) || !(angleTol > 0)) {
  console.error(`export-graphics: bad tolerances chordTol=${positional[2]} angleTol=${positional[3]}`);
  process.exit(2);
}
const writeMeshes = !flags.has("--no-meshes");
const useAsync = flags.has("--async");
const withParts = !flags.has("--no-parts");

const started = process.hrtime.bigint();
const since = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;

// ------------------------------------------------------------------------------------------ writing

/** Appends typed arrays to meshes.bin, 8-byte aligned, and answers their byte offsets. */
class BinWriter {
  constructor(file) {
    this.fd = fs.openSync(file, "w");
    this.offset = 0;
    this.pending = [];
    this.pendingBytes = 0;
  }

  add(typed) {
    const at = this.offset;
    const bytes = Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
    this.pending.push(bytes);
    this.offset += bytes.length;
    const pad = (8 - (this.offset % 8)) % 8;
    if (pad) {
      this.pending.push(Buffer.alloc(pad));
      this.offset += pad;
    }
    this.pendingBytes += bytes.length + pad;
    if (this.pendingBytes > 1 << 24) this.flush();
    return at;
  }

  flush() {
    if (this.pending.length) fs.writeSync(this.fd, Buffer.concat(this.pending));
    this.pending = [];
    this.pendingBytes = 0;
  }

  close() {
    this.flush();
    fs.closeSync(this.fd);
  }
}

/** Triangle area sum (float64) and the range of the points of a mesh (xyz xyz ..., indices 3 per triangle). */
function meshArea(points, indices) {
  let area = 0;
  for (let t = 0; t < indices.length; t += 3) {
    const a = 3 * indices[t];
    const b = 3 * indices[t + 1];
    const c = 3 * indices[t + 2];
    const ux = points[b] - points[a];
    const uy = points[b + 1] - points[a + 1];
    const uz = points[b + 2] - points[a + 2];
    const vx = points[c] - points[a];
    const vy = points[c + 1] - points[a + 1];
    const vz = points[c + 2] - points[a + 2];
    const cx = uy * vz - uz * vy;
    const cy = uz * vx - ux * vz;
    const cz = ux * vy - uy * vx;
    area += 0.5 * Math.sqrt(cx * cx + cy * cy + cz * cz);
  }
  return area;
}

function pointsRange(points) {
  const lo = [Infinity, Infinity, Infinity];
  const hi = [-Infinity, -Infinity, -Infinity];
  for (let i = 0; i < points.length; i += 3)
    for (let k = 0; k < 3; k++) {
      const v = points[i + k];
      if (v < lo[k]) lo[k] = v;
      if (v > hi[k]) hi[k] = v;
    }
  return [lo, hi];
}

function unionRange(into, r) {
  if (!r || r[0][0] === Infinity) return into;
  if (!into) return [r[0].slice(), r[1].slice()];
  for (let k = 0; k < 3; k++) {
    into[0][k] = Math.min(into[0][k], r[0][k]);
    into[1][k] = Math.max(into[1][k], r[1][k]);
  }
  return into;
}

function linesLength(points, indices) {
  let length = 0;
  for (let s = 0; s < indices.length; s += 2) {
    const a = 3 * indices[s];
    const b = 3 * indices[s + 1];
    length += Math.hypot(points[b] - points[a], points[b + 1] - points[a + 1], points[b + 2] - points[a + 2]);
  }
  return length;
}

/** One onGraphics / onPartGraphics call as a piece of the index (its arrays go to meshes.bin). */
function meshPiece(info, bin) {
  const mesh = info.mesh;
  const piece = {
    subCategory: info.subCategory,
    color: info.color,
    materialId: info.materialId,
    textureId: info.textureId,
    geometryClass: info.geometryClass,
    isTwoSided: mesh.isTwoSided,
    vertices: mesh.points.length / 3,
    triangles: mesh.indices.length / 3,
    area: meshArea(mesh.points, mesh.indices),
    range: pointsRange(mesh.points),
  };
  if (bin) {
    piece.positions = bin.add(mesh.points);
    piece.normals = bin.add(mesh.normals);
    piece.params = bin.add(mesh.params);
    // Int32Array from the native side, never negative: written as the same bits, read as uint32.
    piece.indices = bin.add(mesh.indices);
  }
  return piece;
}

function linePiece(info, bin) {
  const lines = info.lines;
  const piece = {
    subCategory: info.subCategory,
    color: info.color,
    geometryClass: info.geometryClass,
    points: lines.points.length / 3,
    segments: lines.indices.length / 2,
    length: linesLength(lines.points, lines.indices),
    range: pointsRange(lines.points),
  };
  if (bin) {
    piece.pointsOffset = bin.add(lines.points);
    piece.indicesOffset = bin.add(lines.indices);
  }
  return piece;
}

// -------------------------------------------------------------------------------------------- export

Logger.initializeToConsole();
Logger.setLevelDefault(LogLevel.Error);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-export-"));
await IModelHost.startup({ cacheDir: path.join(work, "cache") });
// Offline machine: without this the first open waits ~15 s for the public GCS workspace.
IModelHost.appWorkspace.settings.addDictionary({ name: "export-graphics", priority: 200 }, { "itwin/core/gcs/disableWorkspaces": true });

fs.mkdirSync(outDir, { recursive: true });
const generator = {
  file: path.basename(bimFile),
  coreBackend: JSON.parse(fs.readFileSync(require.resolve("@itwin/core-backend/package.json"), "utf8")).version,
  native: JSON.parse(fs.readFileSync(require.resolve("@bentley/imodeljs-native/package.json"), "utf8")).version,
  chordTol,
  angleTol,
  meshes: writeMeshes,
  async: useAsync,
  cpus: os.cpus().length,
};

let db;
try {
  db = SnapshotDb.openFile(bimFile);
  const tOpen = process.hrtime.bigint();
  const elements = [];
  const byId = new Map();
  db.withPreparedStatement(
    // (count-only mode: no class names or jsonProperties, which cost seconds on 100k elements)
    writeMeshes
      ? "SELECT e.ECInstanceId, ec_classname(e.ECClassId, 's:c') AS className, e.Category.Id AS categoryId, e.UserLabel, e.JsonProperties FROM bis.GeometricElement3d e ORDER BY e.ECInstanceId"
      : "SELECT e.ECInstanceId, e.UserLabel FROM bis.GeometricElement3d e ORDER BY e.ECInstanceId",
    (stmt) => {
      while (stmt.step() === 100 /* DbResult.BE_SQLITE_ROW */) {
        const row = stmt.getRow();
        let truth = null;
        if (row.jsonProperties) truth = JSON.parse(row.jsonProperties).truth ?? null;
        const e = { id: row.id, classFullName: row.className ?? null, category: row.categoryId ?? null, userLabel: row.userLabel ?? null, truth, triangles: 0, area: 0, range: null, pieces: [], lines: [] };
        elements.push(e);
        byId.set(e.id, e);
      }
    },
  );
  generator.queryElementsSeconds = since(tOpen);
  const ids = elements.map((e) => e.id);
  const bin = writeMeshes ? new BinWriter(path.join(outDir, "meshes.bin")) : undefined;

  // Pass 1: the flattened truth.
  let triangles = 0;
  let segments = 0;
  const stray = new Set();
  const onGraphics = (info) => {
    const e = byId.get(info.elementId);
    if (!e) {
      stray.add(info.elementId);
      return;
    }
    const n = info.mesh.indices.length / 3;
    triangles += n;
    if (bin) {
      const piece = meshPiece(info, bin);
      e.pieces.push(piece);
      e.area += piece.area;
      e.range = unionRange(e.range, piece.range);
    } else {
      // The benchmark's count-only mode: the same sums, no index of pieces.
      e.area += meshArea(info.mesh.points, info.mesh.indices);
      e.range = unionRange(e.range, pointsRange(info.mesh.points));
    }
    e.triangles += n;
  };
  const onLineGraphics = (info) => {
    const e = byId.get(info.elementId);
    if (!e) {
      stray.add(info.elementId);
      return;
    }
    segments += info.lines.indices.length / 2;
    if (bin) e.lines.push(linePiece(info, bin));
  };
  const options = { elementIdArray: ids, onGraphics, onLineGraphics, chordTol, angleTol };
  const t1 = process.hrtime.bigint();
  const cpu1 = process.cpuUsage();
  if (useAsync) await db.exportGraphicsAsync(options);
  else {
    const status = db.exportGraphics(options);
    if (status !== 0) throw new Error(`exportGraphics returned status ${status}`);
  }
  generator.exportSeconds = since(t1);
  const cpu = process.cpuUsage(cpu1);
  generator.exportCpuSeconds = (cpu.user + cpu.system) / 1e6;
  generator.elements = elements.length;
  generator.triangles = triangles;
  generator.lineSegments = segments;
  generator.meshedElements = elements.filter((e) => e.triangles > 0).length;
  if (stray.size) throw new Error(`exportGraphics answered for elements it was not asked for: ${[...stray].slice(0, 5)}`);

  // Pass 2: instancing kept.
  const instances = [];
  const parts = [];
  if (withParts) {
    const partInstanceArray = [];
    for (const e of elements) e.partsPass = { triangles: 0, area: 0 };
    const t2 = process.hrtime.bigint();
    const pass2 = {
      elementIdArray: ids,
      chordTol,
      angleTol,
      partInstanceArray,
      onGraphics: (info) => {
        const e = byId.get(info.elementId);
        e.partsPass.triangles += info.mesh.indices.length / 3;
        e.partsPass.area += meshArea(info.mesh.points, info.mesh.indices);
      },
    };
    if (useAsync) await db.exportGraphicsAsync(pass2);
    else db.exportGraphics(pass2);
    generator.partsPassSeconds = since(t2);
    const keys = new Map();
    for (const inst of partInstanceArray) {
      const d = inst.displayProps;
      const key = `${inst.partId}|${d.categoryId}|${d.subCategoryId}|${d.geometryClass}|${d.materialId}|${d.elmTransparency}|${d.lineColor}`;
      if (!keys.has(key)) keys.set(key, { partId: inst.partId, displayKey: key, displayProps: d, pieces: [], lines: [], triangles: 0, area: 0 });
      instances.push({ partId: inst.partId, elementId: inst.partInstanceId, transform: inst.transform ? Array.from(inst.transform) : null, displayProps: d, displayKey: key });
    }
    const t3 = process.hrtime.bigint();
    for (const p of keys.values()) {
      const status = db.exportPartGraphics({
        elementId: p.partId,
        displayProps: p.displayProps,
        chordTol,
        angleTol,
        onPartGraphics: (info) => {
          const piece = meshPiece(info, bin);
          p.pieces.push(piece);
          p.triangles += piece.triangles;
          p.area += piece.area;
        },
        onPartLineGraphics: (info) => p.lines.push(linePiece(info, bin)),
      });
      if (status !== 0) throw new Error(`exportPartGraphics(${p.partId}) returned status ${status}`);
      parts.push(p);
    }
    generator.partGraphicsSeconds = since(t3);
    generator.partInstances = instances.length;
    generator.distinctPartDisplays = parts.length;
    generator.instancedTriangles = parts.length ? instances.reduce((a, i) => a + keys.get(i.displayKey).triangles, 0) : 0;
  }

  const t4 = process.hrtime.bigint();
  if (bin) bin.close();
  const usage = process.resourceUsage();
  generator.maxRssKb = usage.maxRSS;
  // CPU seconds of the whole process (all threads): a steadier figure than wall time on a shared machine.
  generator.cpuUserSeconds = usage.userCPUTime / 1e6;
  generator.cpuSystemSeconds = usage.systemCPUTime / 1e6;
  generator.totalSeconds = since(started);
  if (writeMeshes) {
    fs.writeFileSync(path.join(outDir, "index.json"), JSON.stringify({ generator, elements, instances, parts }));
  } else {
    // Count-only: columns rather than objects, so 100k elements stay a small file.
    const column = (f) => elements.map(f);
    fs.writeFileSync(
      path.join(outDir, "index.json"),
      JSON.stringify({
        generator,
        columns: {
          id: column((e) => e.id),
          userLabel: column((e) => e.userLabel),
          triangles: column((e) => e.triangles),
          area: column((e) => e.area),
          rangeLow: column((e) => e.range?.[0] ?? null),
          rangeHigh: column((e) => e.range?.[1] ?? null),
        },
        instances: instances.length,
        parts: parts.map((p) => ({ partId: p.partId, displayKey: p.displayKey, triangles: p.triangles, area: p.area })),
      }),
    );
  }
  generator.writeSeconds = since(t4);
  console.log(JSON.stringify(generator));
} finally {
  if (db?.isOpen) db.close();
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
