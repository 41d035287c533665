// A small iModel made by the real iTwin.js backend with what the public test files lack, for
// tests/test_bim_elements.py: a texture, a render material using it (colour, transparency, pattern map),
// subcategory appearances with every key (fill, transpFill, weight, style, material, priority, the flags, a
// colour with transparency, a zero fill), rotated 3D boxes (yaw, pitch and roll), a rotated 2D drawing
// graphic, a geometry part instanced by an element, codes, labels, parents, and an ECEF location given by
// x/y vectors (a non-rigid one, so the vectors, not the angles, make the transform).
//
// makeSymbology(out) needs IModelHost started (lib/changesets.mjs startBackend); compat/make-symbology.mjs
// runs it alone, compat/dump-elements.mjs --make-symbology makes it before dumping it.

import fs from "node:fs";

import {
  DocumentListModel,
  Drawing,
  DrawingCategory,
  GeometryPart,
  PhysicalModel,
  RenderMaterialElement,
  SnapshotDb,
  SpatialCategory,
  SubCategory,
  Texture,
} from "@itwin/core-backend";
import {
  Code,
  ColorDef,
  EcefLocation,
  GeometryStreamBuilder,
  ImageSourceFormat,
  IModel,
  SubCategoryAppearance,
} from "@itwin/core-common";
import { Box, Loop, LineString3d, Point3d, Range3d, YawPitchRollAngles } from "@itwin/core-geometry";

// A 2x1 RGBA PNG (red, half-transparent blue), written by hand so the bytes are known.
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAYAAAD0In+KAAAAEUlEQVR4nGP4z8DwHwyYGBkAJBQE/3ErYj8AAAAASUVORK5CYII=",
  "base64",
);

function box(x, y, z) {
  const builder = new GeometryStreamBuilder();
  builder.appendGeometry(Box.createRange(Range3d.createXYZXYZ(0, 0, 0, x, y, z), true));
  return builder.geometryStream;
}

/** Write the symbology iModel to `out` (replaced if present). */
export function makeSymbology(out) {
  fs.rmSync(out, { force: true });
  const db = SnapshotDb.createEmpty(out, { rootSubject: { name: "symbology" } });
  try {
    const dict = IModel.dictionaryId;
    const texture = Texture.insertTexture(db, dict, "checker", ImageSourceFormat.Png, PNG, "a 2x1 texture");
    const material = RenderMaterialElement.insert(db, dict, "painted", {
      paletteName: "test palette",
      description: "a painted material",
      color: [0.2, 0.4, 0.6],
      transmit: 0.3,
      diffuse: 0.7,
      specular: 0.1,
      patternMap: { TextureId: texture, pattern_scale: [2, 2] },
    });
    const full = SpatialCategory.insert(db, dict, "Full appearance", new SubCategoryAppearance({
      color: ColorDef.from(10, 20, 30, 40).toJSON(),
      fill: ColorDef.blue.toJSON(),
      transp: 0.25,
      transpFill: 0.5,
      weight: 3,
      priority: 7,
      style: "0x7",
      material,
      invisible: true,
      dontPlot: true,
      dontSnap: true,
      dontLocate: true,
    }));
    const zeroFill = SubCategory.insert(db, full, "Zero fill", { color: ColorDef.red.toJSON(), fill: 0, transp: 0.5, transpFill: 0 });
    const plain = SpatialCategory.insert(db, dict, "Plain", new SubCategoryAppearance());
    const model = PhysicalModel.insert(db, IModel.rootSubjectId, "Boxes");

    const partBuilder = new GeometryStreamBuilder();
    partBuilder.appendGeometry(Box.createRange(Range3d.createXYZXYZ(-1, -1, -1, 1, 1, 1), true));
    const part = db.elements.insertElement({
      classFullName: GeometryPart.classFullName,
      model: dict,
      code: GeometryPart.createCode(db, dict, "unit box"),
      geom: partBuilder.geometryStream,
      bbox: Range3d.createXYZXYZ(-1, -1, -1, 1, 1, 1),
    });
    const instancing = new GeometryStreamBuilder();
    instancing.appendGeometryPart3d(part, Point3d.create(5, 0, 0), YawPitchRollAngles.createDegrees(90, 0, 0), 2);

    const parent = db.elements.insertElement({
      classFullName: "Generic:PhysicalObject",
      model,
      category: full,
      code: Code.createEmpty(),
      userLabel: "parent box",
      placement: { origin: Point3d.create(1, 2, 3), angles: YawPitchRollAngles.createDegrees(30, 20, 10).toJSON() },
      geom: box(1, 2, 3),
    });
    db.elements.insertElement({
      classFullName: "Generic:PhysicalObject",
      model,
      category: plain,
      code: Code.createEmpty(),
      userLabel: "child box",
      parent: { id: parent, relClassName: "BisCore:PhysicalElementAssemblesElements" },
      federationGuid: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
      placement: { origin: Point3d.create(-4, 0.5, 100), angles: YawPitchRollAngles.createDegrees(-45, 89, 180).toJSON() },
      geom: box(0.5, 0.5, 10),
    });
    db.elements.insertElement({
      classFullName: "Generic:PhysicalObject",
      model,
      category: plain,
      code: Code.createEmpty(),
      userLabel: "instances the part",
      placement: { origin: Point3d.create(0, 0, 0), angles: {} },
      geom: instancing.geometryStream,
    });
    db.elements.insertElement({
      classFullName: "Generic:PhysicalObject",
      model,
      category: plain,
      code: Code.createEmpty(),
      userLabel: "flat",
      placement: { origin: Point3d.create(10, 10, 0), angles: YawPitchRollAngles.createDegrees(0, 0, 0).toJSON() },
      geom: (() => {
        const flat = new GeometryStreamBuilder();
        flat.appendGeometry(LineString3d.create([0, 0, 0], [3, 0, 0]));
        return flat.geometryStream;
      })(),
    });

    const docs = DocumentListModel.insert(db, IModel.rootSubjectId, "Documents");
    const drawing = Drawing.insert(db, docs, "A drawing");
    const drawingCat = DrawingCategory.insert(db, dict, "2D", new SubCategoryAppearance({ color: ColorDef.green.toJSON(), priority: -3 }));
    const g2d = new GeometryStreamBuilder();
    g2d.appendGeometry(Loop.create(LineString3d.create([0, 0], [4, 0], [4, 2], [0, 2], [0, 0])));
    db.elements.insertElement({
      classFullName: "BisCore:DrawingGraphic",
      model: drawing,
      category: drawingCat,
      code: Code.createEmpty(),
      userLabel: "rotated outline",
      placement: { origin: { x: 7, y: -3 }, angle: 30 },
      geom: g2d.geometryStream,
    });

    db.updateProjectExtents(Range3d.createXYZXYZ(-20, -20, -5, 40, 40, 120));
    db.updateEcefLocation(new EcefLocation({
      origin: [4027893.5, 307045.25, 4919474.75],
      orientation: { yaw: 10, pitch: 20, roll: 30 },
      xVector: [0.5, 0.8, 0.1],
      yVector: [-0.7, 0.4, 0.3],
    }));
    db.saveChanges();
  } finally {
    db.close();
  }
}
