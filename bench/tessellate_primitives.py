#!/usr/bin/env python3
"""Primitive tessellation throughput on one core (``twinbase.bim.tessellate`` alone, no file): many
boxes, cylinders and spheres (the issue's mix), batched and one call per solid; a 1M-triangle polyface;
40,000 wall extrusions in one call; extrusions with a round hole and rotational sweeps one call each.

    .venv/bin/python bench/tessellate_primitives.py [--boxes 100000 --cylinders 20000 --spheres 20000]

Prints triangles, seconds and million triangles per second for each part (best of ``--repeat`` runs).
BLAS and OpenMP are held to one thread so the figures are per core.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from twinbase.bim.tessellate import (  # noqa: E402
    Arc,
    Mesh,
    StrokeOptions,
    box,
    boxes,
    cone,
    cones,
    extrude_polygons,
    linear_sweep,
    polyface_mesh,
    rotational_sweep,
    sphere,
    spheres,
)


def rotations(rng: np.random.Generator, k: int) -> np.ndarray:
    q = rng.normal(size=(k, 4))
    q /= np.linalg.norm(q, axis=1)[:, None]
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )


def best(repeat: int, fn: Callable[[], Mesh]) -> tuple[Mesh, float]:
    times = []
    mesh = Mesh.empty()
    for _ in range(repeat):
        t = time.perf_counter()
        mesh = fn()
        times.append(time.perf_counter() - t)
    return mesh, min(times)


def report(name: str, tris: int, seconds: float, count: int) -> None:
    print(
        f"{name:<34} {tris:>11,} tris {seconds:8.3f} s {tris / seconds / 1e6:7.2f} Mtri/s"
        f" {seconds / count * 1e6:9.1f} us/solid"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--boxes", type=int, default=100_000)
    parser.add_argument("--cylinders", type=int, default=20_000)
    parser.add_argument("--spheres", type=int, default=20_000)
    parser.add_argument(
        "--tol", type=float, default=0.01, help="chord tolerance (angle tolerance 15 degrees)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--per-call", type=int, default=2000, help="solids timed one call each")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    options = StrokeOptions(args.tol)
    print(f"chord tolerance {args.tol}, angle tolerance 15 deg, load average {os.getloadavg()[0]:.2f}")

    nb, nc, ns = args.boxes, args.cylinders, args.spheres
    rb = rotations(rng, nb)
    ob = rng.uniform(-1000, 1000, (nb, 3))
    sb = rng.uniform(0.1, 3.0, (nb, 3))
    rc = rotations(rng, nc)
    oc = rng.uniform(-1000, 1000, (nc, 3))
    hc = rng.uniform(0.5, 5.0, nc)
    radc = rng.uniform(0.05, 1.0, nc)
    rs = rotations(rng, ns)
    os_ = rng.uniform(-1000, 1000, (ns, 3))
    rads = rng.uniform(0.05, 1.0, ns)

    mb, tb = best(
        args.repeat,
        lambda: boxes(
            ob,
            ob + rb[:, :, 2] * sb[:, 2:3],
            rb[:, :, 0],
            rb[:, :, 1],
            sb[:, 0],
            sb[:, 1],
            sb[:, 0],
            sb[:, 1],
            options=options,
        ),
    )
    mc, tc = best(
        args.repeat,
        lambda: cones(
            oc, oc + rc[:, :, 2] * hc[:, None], rc[:, :, 0], rc[:, :, 1], radc, radc, True, options=options
        ),
    )
    ms, ts = best(args.repeat, lambda: spheres(os_, rs * rads[:, None, None], options=options))
    print("batched (one call per kind):")
    report(f"  {nb:,} boxes", mb.n_triangles, tb, nb)
    report(f"  {nc:,} cylinders", mc.n_triangles, tc, nc)
    report(f"  {ns:,} spheres", ms.n_triangles, ts, ns)
    total = mb.n_triangles + mc.n_triangles + ms.n_triangles
    report("  all three", total, tb + tc + ts, nb + nc + ns)
    t = time.perf_counter()
    merged = Mesh.concat([mb, mc, ms], entries="keep")
    print(f"  Mesh.concat of the three: {time.perf_counter() - t:.3f} s, {merged.n_vertices:,} vertices")
    del merged

    n = min(args.per_call, nb, nc, ns)
    print(f"one call per solid ({n:,} of each):")
    for name, make in (
        (
            "box",
            lambda i: box(
                ob[i],
                ob[i] + rb[i, :, 2] * sb[i, 2],
                rb[i, :, 0],
                rb[i, :, 1],
                sb[i, 0],
                sb[i, 1],
                sb[i, 0],
                sb[i, 1],
                options=options,
            ),
        ),
        (
            "cylinder",
            lambda i: cone(
                oc[i],
                oc[i] + rc[i, :, 2] * hc[i],
                radc[i],
                radc[i],
                rc[i, :, 0],
                rc[i, :, 1],
                options=options,
            ),
        ),
        ("sphere", lambda i: sphere(os_[i], rads[i], options=options)),
    ):
        t = time.perf_counter()
        tris = sum(make(i).n_triangles for i in range(n))
        report(f"  {name}", tris, time.perf_counter() - t, n)

    # A 1M-triangle polyface (a grid of quads, zero-terminated, no normals: flat facets computed).
    side = 708
    xs, ys = np.meshgrid(np.arange(side + 1, dtype=float), np.arange(side + 1, dtype=float))
    points = np.stack([xs.ravel(), ys.ravel(), np.sin(xs.ravel() / 9) * np.cos(ys.ravel() / 7)], 1)
    r, c = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    a = (r * (side + 1) + c).ravel() + 1
    quads = np.stack([a, a + 1, a + side + 2, a + side + 1, np.zeros_like(a)], 1).ravel()
    pf, tp = best(args.repeat, lambda: polyface_mesh(points, quads))
    report("polyface 708x708 quads, flat", pf.n_triangles, tp, 1)
    pf, tp = best(args.repeat, lambda: polyface_mesh(points, quads, crease_angle=math.radians(30)))
    report("polyface 708x708 quads, smoothed", pf.n_triangles, tp, 1)

    square = np.array([[0, 0, 0], [4, 0, 0], [4, 4, 0], [0, 4, 0]], float)
    hole = [Arc([2, 2, 0], [1, 0, 0], [0, 1, 0], 0.0, 2 * math.pi)]
    t = time.perf_counter()
    tris = sum(linear_sweep([square + i, hole], [0, 0, 3], options=options).n_triangles for i in range(n))
    report("extrusion, square with round hole", tris, time.perf_counter() - t, n)
    # Walls: 20,000 random rectangles and L shapes extruded in one call.
    k = 20_000
    corners = rng.uniform(-1000, 1000, (k, 1, 3))
    rects = corners + np.array([[0, 0, 0], [5, 0, 0], [5, 0.3, 0], [0, 0.3, 0]])
    ells = corners + np.array([[0, 0, 0], [3, 0, 0], [3, 1, 0], [1, 1, 0], [1, 3, 0], [0, 3, 0]])
    polys = [*rects, *ells]
    heights = np.zeros((2 * k, 3))
    heights[:, 2] = rng.uniform(2.5, 4.0, 2 * k)
    walls, tw = best(args.repeat, lambda: extrude_polygons(polys, heights, options=options))
    report(f"extrude_polygons, {2 * k:,} walls and Ls", walls.n_triangles, tw, 2 * k)

    rect = np.array([[1, 0, 0], [2, 0, 0], [2, 0, 1], [1, 0, 1]], float)
    t = time.perf_counter()
    tris = sum(
        rotational_sweep(
            [rect + np.array([0.0, 0.0, i])], [0, 0, 0], [0, 0, 1], 2 * math.pi, options=options
        ).n_triangles
        for i in range(n)
    )
    report("rotational sweep, washer", tris, time.perf_counter() - t, n)


if __name__ == "__main__":
    main()
