// Facets the real iTwin.js backend makes for geometry described in a JSON spec, for
// tests/test_bim_tessellate_itwinjs.py: each case becomes one element of a fresh standalone iModel and
// IModelDb.exportGraphics meshes it at each chord tolerance asked (angle tolerance left at its default,
// 15 degrees). Prints nothing; writes per case and tolerance: triangles, points, area, signed volume.
//
//   node compat/tessellate-truth.mjs spec.json out.json work-dir
//
// Spec: { "tolerances": [0.01, ...], "cases": [{ "name", "kind", ...parameters }] } with kinds
// sphere, cone, torus, box, linear, rotational, ruled, region, bsurface, polyface and path (a wire: its
// segments and length are reported); curves are
// { "points": [[x,y,z]...] } (a closed line string), { "segment": [a, b] },
// { "arc": [center, vector0, vector90, start, sweep] } or
// { "bspline": { "poles": [...], "knots": [...], "order": n, "weights"?: [...] } } (weighted poles); a loop is
// one curve or a list of curves end to end. A case with "mesh": true also gets its triangles themselves:
// "positions" (x, y, z flat) and "indices" (3 per triangle, into those positions).

import fs from "node:fs";
import path from "node:path";

import { IModelHost, PhysicalModel, SpatialCategory, StandaloneDb } from "@itwin/core-backend";
import { Code, GeometryStreamBuilder, IModel, SubCategoryAppearance } from "@itwin/core-common";
import {
  Angle, AngleSweep, Arc3d, Box, BSplineCurve3d, BSplineCurve3dH, BSplineSurface3d, BSplineSurface3dH, Cone,
  IndexedPolyface, LinearSweep, LineSegment3d, LineString3d, Loop, Matrix3d, ParityRegion, Path, Point3d, Point4d,
  Ray3d,
  RotationalSweep, RuledSweep, Sphere, TorusPipe, Transform, Vector3d,
} from "@itwin/core-geometry";

const [specPath, outPath, work] = process.argv.slice(2);
const spec = JSON.parse(fs.readFileSync(specPath, "utf8"));
const P = (a) => Point3d.create(a[0], a[1], a[2]);
const V = (a) => Vector3d.create(a[0], a[1], a[2]);

function curve(c) {
  if (c.segment) return LineSegment3d.create(P(c.segment[0]), P(c.segment[1]));
  if (c.points) return LineString3d.create(c.points.concat([c.points[0]]).map(P));
  if (c.arc) {
    const [center, v0, v90, start, sweep] = c.arc;
    return Arc3d.create(P(center), V(v0), V(v90), AngleSweep.createStartSweepRadians(start, sweep));
  }
  const b = c.bspline;
  if (b.weights) {
    const poles = b.poles.map((p, i) => Point4d.create(p[0], p[1], p[2], b.weights[i]));
    return BSplineCurve3dH.create(poles, b.knots, b.order);
  }
  return BSplineCurve3d.create(b.poles.map(P), b.knots, b.order);
}
const loop = (c) => (Array.isArray(c) ? Loop.create(...c.map(curve)) : Loop.create(curve(c)));
function region(loops) {
  return loops.length === 1 ? loop(loops[0]) : ParityRegion.create(...loops.map(loop));
}

function geometry(c) {
  switch (c.kind) {
    case "sphere": {
      const axes = Matrix3d.createRowValues(...c.axes.flat());
      return Sphere.createEllipsoid(Transform.createOriginAndMatrix(P(c.center), axes),
        AngleSweep.createStartSweepRadians(c.lat0, c.sweep), c.capped);
    }
    case "cone":
      return Cone.createBaseAndTarget(P(c.a), P(c.b), V(c.v0), V(c.v90), c.ra, c.rb, c.capped);
    case "torus":
      return TorusPipe.createDgnTorusPipe(P(c.center), V(c.vx), V(c.vy), c.major, c.minor, Angle.createRadians(c.sweep), c.capped);
    case "box":
      return Box.createDgnBox(P(c.origin), V(c.vx), V(c.vy), P(c.top), c.bx, c.by, c.tx, c.ty, c.capped);
    case "linear":
      return LinearSweep.create(region(c.loops), V(c.vector), c.capped);
    case "rotational":
      return RotationalSweep.create(region(c.loops), Ray3d.create(P(c.origin), V(c.axis)), Angle.createRadians(c.sweep), c.capped);
    case "ruled":
      return RuledSweep.create(c.sections.map(region), c.capped);
    case "region":
      return region(c.loops);
    case "path":
      return Path.create(...c.curves.map(curve));
    case "bsurface": {
      const poles = c.poles.flat().map(P);
      const [nv, nu] = [c.poles.length, c.poles[0].length];
      return c.weights
        ? BSplineSurface3dH.create(poles, c.weights.flat(), nu, c.orderU, c.knotsU, nv, c.orderV, c.knotsV)
        : BSplineSurface3d.create(poles, nu, c.orderU, c.knotsU, nv, c.orderV, c.knotsV);
    }
    case "polyface": {
      const pf = IndexedPolyface.create();
      for (const p of c.points) pf.addPoint(P(p));
      for (const i of c.index) {
        if (i === 0) pf.terminateFacet();
        else pf.addPointIndex(Math.abs(i) - 1, i > 0);
      }
      return pf;
    }
    default:
      throw new Error(`unknown kind ${c.kind}`);
  }
}

await IModelHost.startup({ cacheDir: path.join(work, "cache") });
try {
  IModelHost.appWorkspace.settings.addDictionary({ name: "truth", priority: 200 }, { "itwin/core/gcs/disableWorkspaces": true });
  const file = path.join(work, "truth.bim");
  fs.rmSync(file, { force: true });
  const db = StandaloneDb.createEmpty(file, { rootSubject: { name: "tessellation truth" } });
  const model = PhysicalModel.insert(db, IModel.rootSubjectId, "shapes");
  const category = SpatialCategory.insert(db, IModel.dictionaryId, "shapes", new SubCategoryAppearance());
  const nameOf = {};
  const keepMesh = new Set(spec.cases.filter((c) => c.mesh).map((c) => c.name));
  for (const c of spec.cases) {
    const g = geometry(c);
    if (g === undefined) throw new Error(`case ${c.name}: iTwin.js made no geometry from it`);
    const builder = new GeometryStreamBuilder();
    if (!builder.appendGeometry(g)) throw new Error(`case ${c.name}: not appendable`);
    const id = db.elements.insertElement({
      classFullName: "Generic:PhysicalObject", model, category, code: Code.createEmpty(),
      placement: { origin: [0, 0, 0], angles: {} }, geom: builder.geometryStream,
    });
    nameOf[id] = c.name;
  }
  db.saveChanges();
  const out = {};
  for (const chordTol of spec.tolerances) {
    db.exportGraphics({
      elementIdArray: Object.keys(nameOf), chordTol,
      onGraphics: (info) => {
        const { points: p, indices: ix } = info.mesh;
        let area = 0;
        let volume = 0;
        for (let i = 0; i < ix.length; i += 3) {
          const a = ix[i] * 3, b = ix[i + 1] * 3, c = ix[i + 2] * 3;
          const ux = p[b] - p[a], uy = p[b + 1] - p[a + 1], uz = p[b + 2] - p[a + 2];
          const vx = p[c] - p[a], vy = p[c + 1] - p[a + 1], vz = p[c + 2] - p[a + 2];
          area += 0.5 * Math.hypot(uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx);
          volume += (p[a] * (p[b + 1] * p[c + 2] - p[b + 2] * p[c + 1])
            - p[a + 1] * (p[b] * p[c + 2] - p[b + 2] * p[c])
            + p[a + 2] * (p[b] * p[c + 1] - p[b + 1] * p[c])) / 6;
        }
        const key = `${nameOf[info.elementId]}@${chordTol}`;
        const prev = out[key] ?? { triangles: 0, points: 0, area: 0, volume: 0 };
        out[key] = { triangles: prev.triangles + ix.length / 3, points: prev.points + p.length / 3,
          area: prev.area + area, volume: prev.volume + volume };
        if (keepMesh.has(nameOf[info.elementId])) {
          const base = prev.points;
          out[key].positions = (prev.positions ?? []).concat(Array.from(p));
          out[key].indices = (prev.indices ?? []).concat(Array.from(ix, (i) => i + base));
        }
      },
      onLineGraphics: (info) => {
        const { points: p, indices: ix } = info.lines;
        let length = 0;
        for (let i = 0; i < ix.length; i += 2) {
          const a = ix[i] * 3, b = ix[i + 1] * 3;
          length += Math.hypot(p[b] - p[a], p[b + 1] - p[a + 1], p[b + 2] - p[a + 2]);
        }
        const key = `${nameOf[info.elementId]}@${chordTol}`;
        const prev = out[key] ?? { segments: 0, points: 0, length: 0 };
        out[key] = { segments: prev.segments + ix.length / 2, points: prev.points + p.length / 3, length: prev.length + length };
      },
    });
  }
  db.close();
  fs.writeFileSync(outPath, JSON.stringify(out));
} finally {
  await IModelHost.shutdown();
}
