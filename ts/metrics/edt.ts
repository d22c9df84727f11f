// Exact Euclidean distance transform on a 3D grid with anisotropic spacing: Felzenszwalb &
// Huttenlocher's separable lower envelope of parabolas ("Distance Transforms of Sampled Functions",
// Theory of Computing 8, 2012), one 1D pass per axis (W, then H, then D), in float64.
//
// Convention: distance from each voxel to the nearest *feature* voxel (features[i] !== 0), 0 on the
// features, Infinity everywhere when there is no feature. scipy's distance_transform_edt(x) measures
// from each non-zero voxel to the nearest zero, i.e. it is this transform with features = (x == 0).

import type { Shape3, Spacing3 } from './volume.js';

/** Squared distances (mm²) to the nearest feature voxel; Float64Array in C order over `shape`. */
export function squaredDistanceTransform(features: Uint8Array, shape: Shape3, spacing: Spacing3 = [1, 1, 1]): Float64Array {
  const [D, H, W] = shape;
  const out = new Float64Array(D * H * W);
  for (let i = 0; i < out.length; i++) out[i] = features[i] !== 0 ? 0 : Infinity;
  const nMax = Math.max(D, H, W);
  const f = new Float64Array(nMax);
  const g = new Float64Array(nMax);
  const v = new Int32Array(nMax);
  const z = new Float64Array(nMax + 1);
  // axis W: lines of length W, stride 1
  if (W > 1) {
    const s2 = spacing[2] * spacing[2];
    for (let line = 0; line < D * H; line++) pass(out, line * W, 1, W, s2, f, g, v, z);
  }
  if (H > 1) {
    const s2 = spacing[1] * spacing[1];
    for (let d = 0; d < D; d++) for (let w = 0; w < W; w++) pass(out, d * H * W + w, W, H, s2, f, g, v, z);
  }
  if (D > 1) {
    const s2 = spacing[0] * spacing[0];
    for (let hw = 0; hw < H * W; hw++) pass(out, hw, H * W, D, s2, f, g, v, z);
  }
  return out;
}

/** Distances (mm) to the nearest feature voxel. */
export function distanceTransform(features: Uint8Array, shape: Shape3, spacing: Spacing3 = [1, 1, 1]): Float64Array {
  const out = squaredDistanceTransform(features, shape, spacing);
  for (let i = 0; i < out.length; i++) out[i] = Math.sqrt(out[i]!);
  return out;
}

/**
 * One 1D transform in place: out[p] = min_q s2·(p − q)² + f(q) over the sites q with finite f.
 * Sites with f = Infinity take no part in the envelope, so no ∞ − ∞ appears.
 */
function pass(
  buf: Float64Array,
  offset: number,
  stride: number,
  n: number,
  s2: number,
  f: Float64Array,
  g: Float64Array,
  v: Int32Array,
  z: Float64Array,
): void {
  let finite = 0;
  for (let q = 0; q < n; q++) {
    const x = buf[offset + q * stride]!;
    f[q] = x;
    if (x !== Infinity) finite++;
  }
  if (finite === 0 || finite === n && allZero(f, n)) return;
  let k = -1;
  for (let q = 0; q < n; q++) {
    const fq = f[q]!;
    if (fq === Infinity) continue;
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -Infinity;
      z[1] = Infinity;
      continue;
    }
    let s: number;
    for (;;) {
      const r = v[k]!;
      s = (fq + s2 * q * q - (f[r]! + s2 * r * r)) / (2 * s2 * (q - r));
      if (s <= z[k]!) k--;
      else break;
    }
    k++;
    v[k] = q;
    z[k] = s;
    z[k + 1] = Infinity;
  }
  k = 0;
  for (let p = 0; p < n; p++) {
    while (z[k + 1]! < p) k++;
    const r = v[k]!;
    const d = p - r;
    g[p] = s2 * d * d + f[r]!;
  }
  for (let p = 0; p < n; p++) buf[offset + p * stride] = g[p]!;
}

function allZero(f: Float64Array, n: number): boolean {
  for (let q = 0; q < n; q++) if (f[q] !== 0) return false;
  return true;
}
