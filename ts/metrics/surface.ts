// Surface distances, Hausdorff distance (HD), HD95 and ASSD with voxel spacing, following MedPy's
// `medpy.metric.binary` (as copied into the AutoImplant organizers' evaluation_metrics.py):
//
//   surface(M)        = M XOR binary_erosion(M, generate_binary_structure(3, 1))   (6-neighbourhood,
//                       border_value 0: a voxel on the volume edge is a surface voxel)
//   sd(A → B)         = for each surface voxel of A (C order), the Euclidean distance in mm to the
//                       nearest surface voxel of B (distance_transform_edt(~surface(B), sampling))
//   hd(A, B)          = max(max sd(A → B), max sd(B → A))
//   hd95(A, B)        = numpy.percentile(hstack(sd(A → B), sd(B → A)), 95): the 95th percentile, linear
//                       interpolation, of the UNION of both directed sets (not the max of two
//                       directed 95th percentiles)
//   assd(A, B)        = (mean sd(A → B) + mean sd(B → A)) / 2
//
// Empty masks: MedPy raises. Here, with onEmpty 'infinity' (default), both empty → 0 (identical) and
// exactly one empty → Infinity, never NaN; with onEmpty 'throw', EINVAL naming the empty mask.
//
// Work is confined to the bounding box of A ∪ B, which is exact: every surface voxel lies inside it,
// and erosion with border value 0 sees zeros outside the box just as outside the volume.

import { VoxvaeError, invalid } from '../errors.js';
import * as is from '../is.js';
import { squaredDistanceTransform } from './edt.js';
import { boxShape, checkSameShape, checkVolume, cropMask, maskBox, resolveSpacing, unionBox, type MaskVolume, type Shape3, type Spacing3 } from './volume.js';

export interface SurfaceOptions {
  /** mm per voxel [sd, sh, sw]; defaults to the volumes' spacing, else [1, 1, 1]. */
  spacing?: Spacing3;
  /** What to do when a mask is empty; default 'infinity' (see the file header). */
  onEmpty?: 'infinity' | 'throw';
}

export interface SurfaceMetrics {
  hd: number;
  hd95: number;
  assd: number;
  /** sd(A → B), one entry per surface voxel of A in C order. */
  aToB: Float64Array;
  /** sd(B → A). */
  bToA: Float64Array;
}

/** surface(M) = M AND NOT erode6(M), with zeros beyond the array's edges. */
export function surfaceMask(mask: Uint8Array, shape: Shape3): Uint8Array {
  const [D, H, W] = shape;
  const HW = H * W;
  const out = new Uint8Array(mask.length);
  let i = 0;
  for (let d = 0; d < D; d++) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++, i++) {
        if (mask[i] === 0) continue;
        const interior =
          d > 0 && d < D - 1 && h > 0 && h < H - 1 && w > 0 && w < W - 1 &&
          mask[i - 1] !== 0 && mask[i + 1] !== 0 && mask[i - W] !== 0 && mask[i + W] !== 0 && mask[i - HW] !== 0 && mask[i + HW] !== 0;
        if (!interior) out[i] = 1;
      }
    }
  }
  return out;
}

/** MedPy's __surface_distances(a, b): distances from the surface voxels of `a` to the surface of `b`. */
export function surfaceDistances(a: MaskVolume, b: MaskVolume, options?: SurfaceOptions): Float64Array {
  return computeSurface(a, b, options, false).aToB;
}

export function surfaceDistanceMetrics(a: MaskVolume, b: MaskVolume, options?: SurfaceOptions): SurfaceMetrics {
  return computeSurface(a, b, options, true);
}

/** Symmetric Hausdorff distance in mm (MedPy `hd`, connectivity 1). */
export function hausdorffDistance(a: MaskVolume, b: MaskVolume, options?: SurfaceOptions): number {
  return computeSurface(a, b, options, true).hd;
}

/** 95th percentile of the union of both directed surface-distance sets (MedPy `hd95`). */
export function hausdorffDistance95(a: MaskVolume, b: MaskVolume, options?: SurfaceOptions): number {
  return computeSurface(a, b, options, true).hd95;
}

/** numpy.percentile(x, q) with the default 'linear' method (sorts a copy). */
export function percentileLinear(x: ArrayLike<number>, q: number): number {
  if (!(q >= 0 && q <= 100)) invalid('q', 'must be a percentile in [0, 100]', q);
  const n = x.length;
  if (n === 0) invalid('x', 'must not be empty');
  const s = Float64Array.from(x).sort();
  const virtual = (n - 1) * (q / 100);
  const lo = Math.floor(virtual);
  const hi = Math.min(lo + 1, n - 1);
  const gamma = virtual - lo;
  const a = s[lo]!;
  const b = s[hi]!;
  const diff = b - a;
  // numpy's _lerp: a + d·t, replaced by b − d·(1 − t) where t ≥ 0.5
  return gamma >= 0.5 ? b - diff * (1 - gamma) : a + diff * gamma;
}

function computeSurface(a: MaskVolume, b: MaskVolume, options: SurfaceOptions | undefined, both: boolean): SurfaceMetrics {
  checkVolume(a, 'a');
  checkVolume(b, 'b');
  checkSameShape(a, b, 'a', 'b');
  is.options('options', options);
  const onEmpty = is.oneOf('options.onEmpty', options?.onEmpty ?? 'infinity', ['infinity', 'throw'] as const);
  const spacing = resolveSpacing(options?.spacing, [a, b], ['a', 'b']);
  const ba = maskBox(a, 'a');
  const bb = maskBox(b, 'b');
  if (onEmpty === 'throw') {
    if (ba.count === 0) throw new VoxvaeError('EINVAL', 'a does not contain any object (all voxels are background)', { path: 'a' });
    if (bb.count === 0) throw new VoxvaeError('EINVAL', 'b does not contain any object (all voxels are background)', { path: 'b' });
  }
  const box = unionBox(ba.box, bb.box);
  if (box === null) {
    return { hd: 0, hd95: 0, assd: 0, aToB: new Float64Array(0), bToA: new Float64Array(0) };
  }
  const shape = boxShape(box);
  const sa = surfaceMask(cropMask(a, box), shape);
  const sb = surfaceMask(cropMask(b, box), shape);
  const aToB = directed(sa, sb, shape, spacing);
  const bToA = both ? directed(sb, sa, shape, spacing) : new Float64Array(0);
  if (!both) return { hd: NaN, hd95: NaN, assd: NaN, aToB, bToA };
  if (aToB.length === 0 || bToA.length === 0) {
    return { hd: Infinity, hd95: Infinity, assd: Infinity, aToB, bToA };
  }
  let hd = 0;
  let sumA = 0;
  let sumB = 0;
  for (const d of aToB) {
    if (d > hd) hd = d;
    sumA += d;
  }
  for (const d of bToA) {
    if (d > hd) hd = d;
    sumB += d;
  }
  const all = new Float64Array(aToB.length + bToA.length);
  all.set(aToB, 0);
  all.set(bToA, aToB.length);
  return { hd, hd95: percentileLinear(all, 95), assd: (sumA / aToB.length + sumB / bToA.length) / 2, aToB, bToA };
}

/** Distances from each voxel of `from` (C order) to the nearest voxel of `to`; Infinity if `to` is empty. */
function directed(from: Uint8Array, to: Uint8Array, shape: Shape3, spacing: Spacing3): Float64Array {
  let n = 0;
  for (let i = 0; i < from.length; i++) n += from[i]!;
  const out = new Float64Array(n);
  if (n === 0) return out;
  const dt = squaredDistanceTransform(to, shape, spacing);
  let o = 0;
  for (let i = 0; i < from.length; i++) if (from[i] !== 0) out[o++] = Math.sqrt(dt[i]!);
  return out;
}
