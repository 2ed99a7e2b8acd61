/**
 * 3D convex hull of integer points (incremental algorithm, Clarkson & Shor 1989 / de Berg et al.,
 * "Computational Geometry", ch. 11), with exact orientation tests: the mesh vertices of a binary mask have
 * half-voxel coordinates, so in doubled voxel-index units they are small integers and every determinant below is
 * exact in double precision (|coordinate| < 2^16 keeps the products far below 2^53).
 *
 * Points on the hull's surface but not at a corner (coplanar) are dropped; faces are triangles, so coplanar
 * facets come out split, which changes neither the hull's volume nor its area.
 *
 * Pure: no I/O.
 */

export interface Hull {
  /** Indices into the input points, three per triangle, oriented outward. */
  triangles: Uint32Array;
  /** Indices of the points that are hull vertices. */
  vertices: number[];
}

/**
 * Convex hull of points given xyz-interleaved as integers. Returns null when all points are coplanar
 * (no 3D hull). Deterministic.
 */
export function convexHull(points: Int32Array): Hull | null {
  const n = points.length / 3;
  // Only the extreme point of each x-row can be a hull vertex: keep the min-x and max-x point per (y, z).
  const rows = new Map<string, [number, number]>();
  for (let p = 0; p < n; p++) {
    const key = `${points[3 * p + 1]},${points[3 * p + 2]}`;
    const r = rows.get(key);
    if (!r) rows.set(key, [p, p]);
    else {
      if (points[3 * p] < points[3 * r[0]]) r[0] = p;
      if (points[3 * p] > points[3 * r[1]]) r[1] = p;
    }
  }
  const cand = [...new Set([...rows.values()].flat())];
  const X = (p: number) => points[3 * p],
    Y = (p: number) => points[3 * p + 1],
    Z = (p: number) => points[3 * p + 2];
  /** > 0 when d is on the positive (outer) side of the plane (a, b, c) oriented counter-clockwise seen from outside. */
  const orient = (a: number, b: number, c: number, d: number) => {
    const ax = X(a) - X(d),
      ay = Y(a) - Y(d),
      az = Z(a) - Z(d);
    const bx = X(b) - X(d),
      by = Y(b) - Y(d),
      bz = Z(b) - Z(d);
    const cx = X(c) - X(d),
      cy = Y(c) - Y(d),
      cz = Z(c) - Z(d);
    return -(ax * (by * cz - bz * cy) - ay * (bx * cz - bz * cx) + az * (bx * cy - by * cx));
  };
  // Initial tetrahedron from four affinely independent points.
  const a = cand[0];
  let b = -1,
    c = -1,
    d = -1;
  for (const p of cand)
    if (X(p) !== X(a) || Y(p) !== Y(a) || Z(p) !== Z(a)) {
      b = p;
      break;
    }
  if (b < 0) return null;
  const cross = (p: number) => {
    const ux = X(b) - X(a),
      uy = Y(b) - Y(a),
      uz = Z(b) - Z(a);
    const vx = X(p) - X(a),
      vy = Y(p) - Y(a),
      vz = Z(p) - Z(a);
    return [uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx];
  };
  for (const p of cand) {
    const q = cross(p);
    if (q[0] || q[1] || q[2]) {
      c = p;
      break;
    }
  }
  if (c < 0) return null;
  for (const p of cand)
    if (orient(a, b, c, p) !== 0) {
      d = p;
      break;
    }
  if (d < 0) return null;

  type Face = { v: [number, number, number]; alive: boolean };
  const faces: Face[] = [];
  const addFace = (p: number, q: number, r: number) => {
    faces.push({ v: [p, q, r], alive: true });
  };
  // Orient the tetrahedron so that d is inside (on the negative side of every face).
  if (orient(a, b, c, d) > 0) addFace(a, c, b);
  else addFace(a, b, c);
  const f0 = faces[0].v;
  addFace(f0[0], f0[2], d);
  addFace(f0[2], f0[1], d);
  addFace(f0[1], f0[0], d);

  // Deterministic shuffle of the remaining candidates (keeps the expected cost low on grid-ordered input).
  const rest = cand.filter((p) => p !== a && p !== b && p !== c && p !== d);
  let seed = 0x9e3779b9;
  for (let i = rest.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const j = seed % (i + 1);
    [rest[i], rest[j]] = [rest[j], rest[i]];
  }
  for (const p of rest) {
    const visible: Face[] = [];
    for (const f of faces) if (f.alive && orient(f.v[0], f.v[1], f.v[2], p) > 0) visible.push(f);
    if (visible.length === 0) continue;
    // Horizon: directed edges of visible faces whose reverse is not an edge of another visible face.
    const edges = new Set<string>();
    for (const f of visible) for (let t = 0; t < 3; t++) edges.add(`${f.v[t]},${f.v[(t + 1) % 3]}`);
    for (const f of visible) f.alive = false;
    for (const f of visible)
      for (let t = 0; t < 3; t++) {
        const u = f.v[t],
          w = f.v[(t + 1) % 3];
        if (!edges.has(`${w},${u}`)) addFace(u, w, p);
      }
    // Compact now and then so the scan above stays proportional to the live hull.
    if (faces.length > 64 && faces.length > 4 * faces.filter((f) => f.alive).length) {
      const live = faces.filter((f) => f.alive);
      faces.length = 0;
      faces.push(...live);
    }
  }
  const live = faces.filter((f) => f.alive);
  const triangles = new Uint32Array(live.length * 3);
  live.forEach((f, i) => triangles.set(f.v, 3 * i));
  return { triangles, vertices: [...new Set(triangles)] };
}
