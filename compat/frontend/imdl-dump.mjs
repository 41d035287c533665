// What the REAL iTwin.js frontend reader makes of iMdl tiles: the test oracle for twinbase's Mesh Export IMODEL
// tiles (and for the native backend's golden tiles, compat/imdl-native.mjs).
//
//   node imdl-dump.mjs [--batch-model <id>] <file.imdl> [[--batch-model <id>] <file.imdl> ...]   (from compat/frontend)
//   node imdl-dump.mjs --versions        {"coreFrontend": "5.13.5", "coreCommon": "5.13.3"}
//
// Each file is decoded with the pinned @itwin/core-frontend (5.13.5 over core-common 5.13.3):
// lib/cjs/common/imdl/ParseImdlDocument.js parseImdlDocument({data, batchModelId, is3d: true,
// maxVertexTableSize: 2048, timeline: undefined}), the exact parse frontend-tiles' decoder runs, then
// convertFeatureTable (the RenderFeatureTable the frontend batches and picks with). --batch-model (default 0x1;
// it applies to the files after it) is the model id a single-model feature table (no header flag 16) gives every
// feature; frontend-tiles passes a transient id there, which hides the whole tile, so a Mesh Export tile must be
// multi-model.
//
// One JSON line per file, in argument order:
// {"file", "bytes",
//  "status": "ok" | a TileReadStatus name ("InvalidHeader", "NewerMajorVersion", "InvalidFeatureTable",
//            "InvalidTileData", ...) | "exception" (the parse threw; "error" holds the message) | "unreadable",
//  "statusCode": 0 | TileReadStatus number | null,
//  "header": null | {"valid", "major", "minor", "flags", "headerLength", "tileLength", "contentRange":
//            {"low": [x,y,z], "high": [x,y,z]}, "tolerance", "numElementsIncluded", "numElementsExcluded",
//            "emptySubRanges"}                          (core-common ImdlHeader; present even when the parse fails)
//  and, only when status is "ok":
//  "featureTable": {"multiModel", "numFeatures", "numSubCategories" (null when single-model)},
//  "features": [{"elementId", "modelId", "subCategoryId", "geometryClass"}] in feature-index order (hex ids as
//            iTwin.js gives them, from the converted table: model ids come from the multi-model table),
//  "rtcCenter": null | [x,y,z],
//  "jsonPrimitives": primitives listed in the document's meshes reached from its nodes,
//  "droppedPrimitives": jsonPrimitives minus those the reader kept (the reader drops a primitive silently when
//            its material, vertex table, surface type, ... is unusable),
//  "primitives": [{"type": "mesh"|"polyline"|"point"|"pattern", "surfaceType" (0 Unlit, 1 Lit, 2 Textured,
//            3 TexturedLit, 4 VolumeClassifier; null if not a mesh), "materialName" (the document's `material`
//            key of the JSON primitive the reader kept; null if unknown),
//            "vertexCount", "indexCount", "triangleCount", "numRgbaPerVertex", "width", "height",
//            "hasTranslucency", "uniformColor" (ColorDef TBGR int or null), "featureIndexType" (0 Empty,
//            1 Uniform, 2 NonUniform), "uniformFeatureId", "usesUnquantizedPositions", "meshopt" (the JSON
//            primitive has compressedSize / compressedIndexCount: the reader decoded it with its meshopt WASM),
//            "qparams": {"origin": [x,y,z], "scale": [x,y,z]}, "instanced" (instance count or null),
//            "viewIndependentOrigin" (bool), "hasEdges", "isPlanar",
//            "indicesInRange" (every index < vertexCount; for polylines indices and prevIndices),
//            "normalsUnit" (every decoded oct normal has length 1 within 1e-6; null when there are none),
//            "normalsFacing" (share of non-degenerate triangles whose right-handed face normal points the way of
//            the sum of their vertex normals; null when there are none),
//            "featureIndicesInRange" (every per-vertex / uniform / instance feature index < numFeatures),
//            "colorIndicesInRange" (every colour index lands inside the vertex table's data),
//            "problems": [strings]}],
//  "perFeature": {"<featureIndex>": {"triangles", "low": [x,y,z], "high": [x,y,z], "colors": [TBGR ints,
//            sorted, distinct]}}  from the mesh primitives only, decoded here in JS: positions dequantized with
//            the primitive's qparams (core-common Quantization), plus the document rtcCenter, per instance
//            transformCenter + transform when instanced; a triangle counts for the feature of its first vertex
//            (or of its instance); the colour is uniformColor or the colour-table entry, un-premultiplied
//            (exact for opaque colours); an Empty feature index type counts under "-1".
//  "binaryOffset", "binaryLength": where the glTF binary chunk starts in the file and its length,
//  "unalignedBufferViews": names of buffer views whose byteOffset is not a multiple of 4 (the reader makes
//            Float32/Uint32 views of some: instance transforms, normal pairs, pattern offsets),
//  "problems": [strings]: what the reader let through but a correct tile must not have: header tileLength not
//            the file size, buffer views beyond the binary (a truncated tile still parses "ok"), and every
//            primitive's problems prefixed "primitive <i>: ".}
// Positions are tile coordinates: a native tile-tree tile still needs its tree's location transform.
// Exit 0 whatever the files hold; 2 on bad usage; 1 when the reader itself cannot be loaded.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
// stdout carries only the JSON lines: whatever the iTwin.js libraries log goes to stderr.
console.log = console.info = console.warn = console.debug = (...args) => console.error(...args);

let frontendVersion, commonVersion, parseImdlDocument, convertFeatureTable, cc, ByteStream;
try {
  // core-frontend's CommonJS modules import each other in cycles: load the package entry first, so
  // ParseImdlDocument.js finds its imports (tile/internal) fully initialised.
  require("@itwin/core-frontend");
  ({ parseImdlDocument, convertFeatureTable } = require("@itwin/core-frontend/lib/cjs/common/imdl/ParseImdlDocument.js"));
  cc = require("@itwin/core-common");
  ({ ByteStream } = require("@itwin/core-bentley"));
  frontendVersion = require("@itwin/core-frontend/package.json").version;
  commonVersion = require("@itwin/core-common/package.json").version;
} catch (err) {
  console.error(`imdl-dump: cannot load the iTwin.js frontend from ${path.dirname(new URL(import.meta.url).pathname)}/node_modules: ${err?.message ?? err}`);
  process.exit(1);
}
const { ColorDef, ImdlHeader, ModelFeature, OctEncodedNormal, QParams3d, Quantization, TileReadStatus } = cc;

const argv = process.argv.slice(2);
let batchModelId = "0x1";
const files = []; // [path, batchModelId]
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--batch-model") batchModelId = argv[++i];
  else if (argv[i] === "--versions") {
    process.stdout.write(`${JSON.stringify({ coreFrontend: frontendVersion, coreCommon: commonVersion })}\n`);
    process.exit(0);
  } else files.push([argv[i], batchModelId]);
}
if (!files.length || !batchModelId) {
  console.error("usage: node imdl-dump.mjs [--batch-model <id>] <file.imdl> [[--batch-model <id>] <file.imdl> ...]   |   node imdl-dump.mjs --versions");
  process.exit(2);
}

const SurfaceType = { Unlit: 0, Lit: 1, Textured: 2, TexturedLit: 3, VolumeClassifier: 4 };
const FeatureIndexType = { Empty: 0, Uniform: 1, NonUniform: 2 };
const xyz = (p) => [p.x, p.y, p.z];

function readHeader(data) {
  try {
    const h = new ImdlHeader(ByteStream.fromUint8Array(data));
    return {
      valid: h.isValid,
      major: h.versionMajor,
      minor: h.versionMinor,
      flags: h.flags,
      headerLength: h.headerLength,
      tileLength: h.tileLength,
      contentRange: { low: xyz(h.contentRange.low), high: xyz(h.contentRange.high) },
      tolerance: h.tolerance,
      numElementsIncluded: h.numElementsIncluded,
      numElementsExcluded: h.numElementsExcluded,
      emptySubRanges: h.emptySubRanges,
    };
  } catch {
    return null;
  }
}

/** The 24-bit little-endian indices of an index buffer. */
function indicesOf(bytes) {
  const n = Math.floor(bytes.length / 3);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = bytes[3 * i] | (bytes[3 * i + 1] << 8) | (bytes[3 * i + 2] << 16);
  return out;
}

/** Premultiplied RGBA of a colour-table entry back to ColorDef TBGR (transparency = 255 - alpha). */
function tbgrOfRgba(r, g, b, a) {
  if (a === 0) return 0xff000000 >>> 0;
  const un = (c) => Math.min(255, Math.round((c * 255) / a));
  return (un(r) | (un(g) << 8) | (un(b) << 16) | ((255 - a) << 24)) >>> 0;
}

/**
 * Where the reader's shaders find each attribute of a vertex (core-frontend VertexTableBuilder): quantized
 * tables hold u16 xyz at 0, the colour index at 6 (untextured), the 24-bit feature index at 8, the oct normal at
 * 12 (Lit) or 6 (TexturedLit); unquantized ones interleave float32 x, y, z and the feature index byte by byte in
 * 0..15, then the colour index at 16 (untextured) and the normal at 18 (Lit) or 20 (TexturedLit).
 */
function layoutOf(vt, surfaceType) {
  const textured = surfaceType === SurfaceType.Textured || surfaceType === SurfaceType.TexturedLit;
  if (vt.usesUnquantizedPositions)
    return {
      colorAt: textured ? null : 16,
      normalAt: surfaceType === SurfaceType.Lit ? 18 : surfaceType === SurfaceType.TexturedLit ? 20 : null,
    };
  return {
    colorAt: textured ? null : 6,
    normalAt: surfaceType === SurfaceType.Lit ? 12 : surfaceType === SurfaceType.TexturedLit ? 6 : null,
  };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Positions (tile coordinates, rtcCenter added), feature indices, colours and normals of a vertex table. */
function decodeVertices(vt, surfaceType, rtc, problems) {
  const n = vt.numVertices;
  const stride = vt.numRgbaPerVertex * 4;
  const d = vt.data;
  const { colorAt, normalAt } = layoutOf(vt, surfaceType);
  const pos = new Float64Array(3 * n);
  const feature = new Int32Array(n);
  const color = new Float64Array(n);
  const normals = normalAt === null ? null : new Float64Array(3 * n);
  if (n * stride > d.length) {
    problems.push(`vertex table holds ${d.length} bytes, ${n} vertices need ${n * stride}`);
    return null;
  }
  const q = QParams3d.fromJSON(vt.qparams);
  const tableStart = n * stride;
  let colorIndicesInRange = true;
  for (let i = 0; i < n; i++) {
    const o = i * stride;
    if (vt.usesUnquantizedPositions) {
      for (let k = 0; k < 3; k++) {
        u32[0] = (d[o + k] | (d[o + 4 + k] << 8) | (d[o + 8 + k] << 16) | (d[o + 12 + k] << 24)) >>> 0;
        pos[3 * i + k] = f32[0] + rtc[k];
      }
      feature[i] = (d[o + 3] | (d[o + 7] << 8) | (d[o + 11] << 16) | (d[o + 15] << 24)) >>> 0;
    } else {
      pos[3 * i] = Quantization.unquantize(d[o] | (d[o + 1] << 8), q.origin.x, q.scale.x) + rtc[0];
      pos[3 * i + 1] = Quantization.unquantize(d[o + 2] | (d[o + 3] << 8), q.origin.y, q.scale.y) + rtc[1];
      pos[3 * i + 2] = Quantization.unquantize(d[o + 4] | (d[o + 5] << 8), q.origin.z, q.scale.z) + rtc[2];
      feature[i] = d[o + 8] | (d[o + 9] << 8) | (d[o + 10] << 16);
    }
    if (vt.featureIndexType === FeatureIndexType.Uniform) feature[i] = vt.uniformFeatureID ?? 0;
    else if (vt.featureIndexType === FeatureIndexType.Empty) feature[i] = -1;

    if (undefined !== vt.uniformColor) color[i] = vt.uniformColor >>> 0;
    else if (colorAt === null) color[i] = NaN;
    else {
      const c = tableStart + 4 * (d[o + colorAt] | (d[o + colorAt + 1] << 8));
      if (c + 4 > d.length) {
        colorIndicesInRange = false;
        color[i] = NaN;
      } else color[i] = tbgrOfRgba(d[c], d[c + 1], d[c + 2], d[c + 3]);
    }
    if (normals) {
      const v = OctEncodedNormal.decodeValue(d[o + normalAt] | (d[o + normalAt + 1] << 8));
      normals[3 * i] = v.x;
      normals[3 * i + 1] = v.y;
      normals[3 * i + 2] = v.z;
    }
  }
  if (!colorIndicesInRange) problems.push("colour index beyond the colour table");
  return { pos, feature, color, normals, colorIndicesInRange };
}

function instancesOf(modifier) {
  if (modifier?.type !== "instances") return null;
  const c = modifier.transformCenter;
  return {
    count: modifier.count,
    center: [c.x, c.y, c.z],
    transforms: modifier.transforms,
    featureIds: modifier.featureIds ? indicesOf(modifier.featureIds) : null,
  };
}

function addTriangle(perFeature, fi, pts, colors) {
  const key = String(fi);
  let e = perFeature.get(key);
  if (!e) perFeature.set(key, (e = { triangles: 0, low: [Infinity, Infinity, Infinity], high: [-Infinity, -Infinity, -Infinity], colors: new Set() }));
  e.triangles++;
  for (const p of pts)
    for (let k = 0; k < 3; k++) {
      if (p[k] < e.low[k]) e.low[k] = p[k];
      if (p[k] > e.high[k]) e.high[k] = p[k];
    }
  for (const c of colors) if (!Number.isNaN(c)) e.colors.add(c);
}

/** Accumulates a mesh primitive into perFeature; answers its checks. */
function walkMesh(prim, rtc, numFeatures, perFeature, out) {
  const vt = prim.params.vertices;
  const problems = out.problems;
  const idx = indicesOf(prim.params.surface.indices);
  const n = vt.numVertices;
  out.indicesInRange = idx.every((i) => i < n);
  if (!out.indicesInRange) problems.push("index >= vertexCount");
  if (idx.length % 3) problems.push(`${idx.length} indices, not a multiple of 3`);
  const v = decodeVertices(vt, prim.params.surface.type, rtc, problems);
  if (!v) return;
  out.colorIndicesInRange = v.colorIndicesInRange;

  const instances = instancesOf(prim.modifier);
  let featuresOk = true;
  if (instances?.featureIds) featuresOk = instances.featureIds.every((f) => f < numFeatures);
  else if (vt.featureIndexType !== FeatureIndexType.Empty) featuresOk = v.feature.every((f) => f < numFeatures);
  out.featureIndicesInRange = featuresOk;
  if (!featuresOk) problems.push("feature index >= numFeatures");

  if (v.normals) {
    let unit = true;
    for (let i = 0; i < n; i++) {
      const l = Math.hypot(v.normals[3 * i], v.normals[3 * i + 1], v.normals[3 * i + 2]);
      if (!(Math.abs(l - 1) <= 1e-6)) unit = false;
    }
    out.normalsUnit = unit;
    let facing = 0;
    let counted = 0;
    for (let t = 0; t + 2 < idx.length; t += 3) {
      const [a, b, c] = [idx[t], idx[t + 1], idx[t + 2]];
      if (a >= n || b >= n || c >= n) continue;
      const p = (i, k) => v.pos[3 * i + k];
      const u = [p(b, 0) - p(a, 0), p(b, 1) - p(a, 1), p(b, 2) - p(a, 2)];
      const w = [p(c, 0) - p(a, 0), p(c, 1) - p(a, 1), p(c, 2) - p(a, 2)];
      const fn = [u[1] * w[2] - u[2] * w[1], u[2] * w[0] - u[0] * w[2], u[0] * w[1] - u[1] * w[0]];
      if (Math.hypot(...fn) === 0) continue;
      let dot = 0;
      for (const i of [a, b, c]) for (let k = 0; k < 3; k++) dot += fn[k] * v.normals[3 * i + k];
      counted++;
      if (dot > 0) facing++;
    }
    out.normalsFacing = counted ? facing / counted : null;
  }

  const point = (i) => [v.pos[3 * i], v.pos[3 * i + 1], v.pos[3 * i + 2]];
  const copies = instances ? instances.count : 1;
  for (let k = 0; k < copies; k++) {
    let place = point;
    let instanceFeature = null;
    if (instances) {
      // 3 rows of 4 floats: instance-to-tile, translation relative to transformCenter.
      const m = instances.transforms.subarray(12 * k, 12 * k + 12);
      const ctr = instances.center;
      place = (i) => {
        const [x, y, z] = point(i);
        return [0, 1, 2].map((r) => ctr[r] + m[4 * r] * x + m[4 * r + 1] * y + m[4 * r + 2] * z + m[4 * r + 3]);
      };
      if (instances.featureIds) instanceFeature = instances.featureIds[k];
    }
    for (let t = 0; t + 2 < idx.length; t += 3) {
      const [a, b, c] = [idx[t], idx[t + 1], idx[t + 2]];
      if (a >= n || b >= n || c >= n) continue;
      addTriangle(perFeature, instanceFeature ?? v.feature[a], [place(a), place(b), place(c)], [v.color[a], v.color[b], v.color[c]]);
    }
  }
}

/** The JSON primitives the reader looked at: the meshes its nodes name, in its order (Parser.parseNodes). */
function jsonPrimitivesOf(json) {
  const list = [];
  for (const meshKey of Object.values(json.nodes ?? {}))
    for (const p of json.meshes?.[meshKey]?.primitives ?? []) list.push(p);
  return list;
}

const jsonTypeOf = { mesh: 0, polyline: 1, point: 2 };

/**
 * The JSON primitive behind each parsed one. The reader keeps primitives in document order and only drops some
 * (no splitting without a timeline or model groups), so the parsed list is a subsequence of the JSON one: walk
 * both, matching a plain vertex table by its buffer view (the parsed data is a view of the binary) and a
 * meshopt-compressed one (decoded into a new array) by type and table size.
 */
function matchJsonPrimitives(parsed, jsonList, doc) {
  const offsetOf = (p) => {
    const view = p?.vertices ? doc.json.bufferViews?.[p.vertices.bufferView] : undefined;
    return view ? Number(view.byteOffset ?? 0) : undefined;
  };
  const out = [];
  let j = 0;
  for (const prim of parsed) {
    let found = null;
    for (let k = j; k < jsonList.length; k++) {
      const p = jsonList[k];
      if (prim.type === "pattern" ? p?.type !== "areaPattern" : p?.type !== jsonTypeOf[prim.type]) continue;
      if (prim.type !== "pattern") {
        const vt = prim.params.vertices;
        const shared = vt.data.buffer === doc.binaryData.buffer;
        if (shared && offsetOf(p) !== vt.data.byteOffset - doc.binaryData.byteOffset) continue;
        if (!shared && (p.vertices?.count !== vt.numVertices || p.vertices?.width !== vt.width || p.vertices?.height !== vt.height)) continue;
      }
      found = p;
      j = k + 1;
      break;
    }
    out.push(found);
  }
  return out;
}

function* primitivesOf(nodes) {
  for (const node of nodes) {
    if (node.nodes) yield* primitivesOf(node.nodes);
    else yield* node.primitives;
  }
}

async function dumpOne(file, batchModelId) {
  const result = { file, bytes: null, status: "unreadable", statusCode: null, header: null };
  let data;
  try {
    data = new Uint8Array(fs.readFileSync(file));
  } catch (err) {
    result.error = String(err?.message ?? err);
    return result;
  }
  result.bytes = data.length;
  result.header = readHeader(data);
  let doc;
  try {
    doc = await parseImdlDocument({ data, batchModelId, is3d: true, maxVertexTableSize: 2048, timeline: undefined });
  } catch (err) {
    result.status = "exception";
    result.error = String(err?.stack ?? err);
    return result;
  }
  if (typeof doc === "number") {
    result.status = TileReadStatus[doc] ?? String(doc);
    result.statusCode = doc;
    return result;
  }
  try {
    const table = convertFeatureTable(doc.featureTable, batchModelId);
    const features = [];
    const f = ModelFeature.create();
    for (let i = 0; i < table.numFeatures; i++) {
      table.getFeature(i, f);
      features.push({ elementId: f.elementId, modelId: f.modelId, subCategoryId: f.subCategoryId, geometryClass: f.geometryClass });
    }
    const rtc = doc.rtcCenter ? xyz(doc.rtcCenter) : [0, 0, 0];
    const jsonList = jsonPrimitivesOf(doc.json);
    const jsonCount = jsonList.length;
    const parsed = [...primitivesOf(doc.nodes)];
    const jsonOf = matchJsonPrimitives(parsed, jsonList, doc);
    const perFeature = new Map();
    const primitives = [];
    for (const [pi, prim] of parsed.entries()) {
      if (prim.type === "pattern") {
        primitives.push({ type: "pattern", problems: [] });
        continue;
      }
      const vt = prim.params.vertices;
      const jsonPrim = jsonOf[pi];
      const indexBytes = prim.type === "mesh" ? prim.params.surface.indices : prim.type === "point" ? prim.params.indices : prim.params.polyline.indices;
      const out = {
        type: prim.type,
        surfaceType: prim.type === "mesh" ? prim.params.surface.type : null,
        materialName: jsonPrim?.material ?? null,
        vertexCount: vt.numVertices,
        indexCount: Math.floor(indexBytes.length / 3),
        triangleCount: prim.type === "mesh" ? Math.floor(indexBytes.length / 9) : 0,
        numRgbaPerVertex: vt.numRgbaPerVertex,
        width: vt.width,
        height: vt.height,
        hasTranslucency: vt.hasTranslucency,
        uniformColor: undefined !== vt.uniformColor ? ColorDef.fromJSON(vt.uniformColor).tbgr : null,
        featureIndexType: vt.featureIndexType,
        uniformFeatureId: vt.uniformFeatureID ?? null,
        usesUnquantizedPositions: vt.usesUnquantizedPositions === true,
        meshopt: (jsonPrim?.vertices?.compressedSize ?? 0) > 0 || (jsonPrim?.surface?.compressedIndexCount ?? 0) > 0,
        qparams: { origin: xyz(vt.qparams.origin), scale: xyz(vt.qparams.scale) },
        instanced: prim.modifier?.type === "instances" ? prim.modifier.count : null,
        viewIndependentOrigin: prim.modifier?.type === "viewIndependentOrigin",
        hasEdges: prim.type === "mesh" && undefined !== prim.params.edges,
        isPlanar: prim.params.isPlanar ?? null,
        indicesInRange: null,
        normalsUnit: null,
        normalsFacing: null,
        featureIndicesInRange: null,
        colorIndicesInRange: null,
        problems: [],
      };
      if (vt.width * vt.height * 4 > vt.data.length)
        out.problems.push(`vertex table ${vt.width}x${vt.height} texels but ${vt.data.length} bytes`);
      if (prim.type === "mesh") walkMesh(prim, rtc, table.numFeatures, perFeature, out);
      else {
        const n = vt.numVertices;
        let ok = indicesOf(indexBytes).every((i) => i < n);
        if (prim.type === "polyline") ok = ok && indicesOf(prim.params.polyline.prevIndices).every((i) => i < n);
        out.indicesInRange = ok;
        if (!ok) out.problems.push("index >= vertexCount");
      }
      primitives.push(out);
    }
    const perFeatureOut = {};
    for (const key of [...perFeature.keys()].sort((a, b) => Number(a) - Number(b))) {
      const e = perFeature.get(key);
      perFeatureOut[key] = { triangles: e.triangles, low: e.low, high: e.high, colors: [...e.colors].sort((a, b) => a - b) };
    }
    // The reader takes buffer views as subarrays without bounds checks: a truncated tile still parses "ok".
    const problems = [];
    if (result.header && result.header.tileLength !== data.length) problems.push(`header tileLength ${result.header.tileLength}, file ${data.length} bytes`);
    const unalignedBufferViews = [];
    for (const [name, view] of Object.entries(doc.json.bufferViews ?? {})) {
      const offset = Number(view?.byteOffset ?? 0);
      const length = Number(view?.byteLength ?? 0);
      if (offset + length > doc.binaryData.length) problems.push(`bufferView ${name} [${offset}, ${offset + length}) beyond the ${doc.binaryData.length}-byte binary`);
      if (offset % 4) unalignedBufferViews.push(name);
    }
    for (const [i, p] of primitives.entries()) for (const text of p.problems ?? []) problems.push(`primitive ${i}: ${text}`);
    Object.assign(result, {
      status: "ok",
      statusCode: 0,
      featureTable: {
        multiModel: doc.featureTable.multiModel,
        numFeatures: doc.featureTable.numFeatures,
        numSubCategories: doc.featureTable.multiModel ? doc.featureTable.numSubCategories : null,
      },
      features,
      rtcCenter: doc.rtcCenter ? rtc : null,
      jsonPrimitives: jsonCount,
      droppedPrimitives: jsonCount - primitives.length,
      primitives,
      perFeature: perFeatureOut,
      binaryOffset: doc.binaryData.byteOffset,
      binaryLength: doc.binaryData.length,
      unalignedBufferViews,
      problems,
    });
  } catch (err) {
    // The reader accepted the tile but its content broke this dump (or convertFeatureTable): report, don't die.
    result.status = "exception";
    result.statusCode = null;
    result.error = String(err?.stack ?? err);
  }
  return result;
}

for (const [file, batchModelId] of files) process.stdout.write(`${JSON.stringify(await dumpOne(file, batchModelId))}\n`);
