// Binary and label volumes as the metrics take them, and the helpers that validate, binarize and crop
// them. Layout: C order over [D, H, W] (W fastest), voxel spacing [sd, sh, sw] in millimetres.
//
// Binarization: Uint8Array voxels are "on" when non-zero (MedPy: "background where 0, object
// everywhere else"); Float32Array/Float64Array voxels (probabilities) are on when ≥ 0.5 (MONAI's
// AsDiscrete(threshold=0.5) rule); NaN is refused with ENOTFINITE.

import { VoxvaeError, invalid } from '../errors.js';

export type Shape3 = readonly [number, number, number];
export type Spacing3 = readonly [number, number, number];

export interface MaskVolume {
  /** 0/1 (any non-zero counts as 1) or probabilities thresholded at 0.5. */
  data: Uint8Array | Float32Array | Float64Array;
  shape: Shape3;
  spacing?: Spacing3;
}

export interface LabelVolume {
  /** Integer class labels; 0 is background by convention. */
  data: Uint8Array | Uint16Array | Int32Array;
  shape: Shape3;
  spacing?: Spacing3;
}

/** Half-open box [lo, hi) per axis. */
export interface Box {
  lo: [number, number, number];
  hi: [number, number, number];
}

export const PROBABILITY_THRESHOLD = 0.5;

export function checkShape(shape: unknown, field: string): Shape3 {
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every((s) => Number.isSafeInteger(s) && (s as number) >= 1)) {
    invalid(field, 'must be [D, H, W], three positive integers', shape);
  }
  return shape as unknown as Shape3;
}

export function checkSpacing(spacing: unknown, field: string): Spacing3 {
  if (!Array.isArray(spacing) || spacing.length !== 3 || !spacing.every((s) => typeof s === 'number' && Number.isFinite(s) && s > 0)) {
    invalid(field, 'must be [sd, sh, sw], three positive finite numbers (mm per voxel along D, H, W)', spacing);
  }
  return spacing as unknown as Spacing3;
}

export function checkVolume(v: unknown, field: string, kind: 'mask' | 'label' = 'mask'): MaskVolume | LabelVolume {
  if (typeof v !== 'object' || v === null) invalid(field, 'must be a volume { data, shape: [D, H, W], spacing? }', v);
  const vol = v as { data?: unknown; shape?: unknown; spacing?: unknown };
  const shape = checkShape(vol.shape, `${field}.shape`);
  const ok =
    kind === 'mask'
      ? vol.data instanceof Uint8Array || vol.data instanceof Float32Array || vol.data instanceof Float64Array
      : vol.data instanceof Uint8Array || vol.data instanceof Uint16Array || vol.data instanceof Int32Array;
  if (!ok) invalid(`${field}.data`, kind === 'mask' ? 'must be a Uint8Array, Float32Array or Float64Array' : 'must be a Uint8Array, Uint16Array or Int32Array of labels', vol.data);
  const n = shape[0] * shape[1] * shape[2];
  const data = vol.data as ArrayLike<number>;
  if (data.length !== n) {
    throw new VoxvaeError('ESHAPE', `${field}.data has ${data.length} voxels but ${field}.shape [${shape.join(', ')}] needs ${n}`, { path: `${field}.data` });
  }
  if (vol.spacing !== undefined) checkSpacing(vol.spacing, `${field}.spacing`);
  return v as MaskVolume | LabelVolume;
}

export function checkSameShape(a: { shape: Shape3 }, b: { shape: Shape3 }, fa: string, fb: string): void {
  if (a.shape[0] !== b.shape[0] || a.shape[1] !== b.shape[1] || a.shape[2] !== b.shape[2]) {
    throw new VoxvaeError('ESHAPE', `${fb}.shape [${b.shape.join(', ')}] differs from ${fa}.shape [${a.shape.join(', ')}]`, { path: `${fb}.shape` });
  }
}

/**
 * The spacing to use: the explicit option if given, else the volumes' own (which must agree), else
 * [1, 1, 1].
 */
export function resolveSpacing(option: unknown, vols: { spacing?: Spacing3 }[], names: string[]): Spacing3 {
  if (option !== undefined) return checkSpacing(option, 'options.spacing');
  let found: Spacing3 | undefined;
  let foundName = '';
  vols.forEach((v, i) => {
    if (v.spacing === undefined) return;
    if (found === undefined) {
      found = v.spacing;
      foundName = names[i]!;
    } else if (found[0] !== v.spacing[0] || found[1] !== v.spacing[1] || found[2] !== v.spacing[2]) {
      invalid(`${names[i]}.spacing`, `differs from ${foundName}.spacing [${found.join(', ')}]; pass options.spacing to choose`, v.spacing);
    }
  });
  return found ?? [1, 1, 1];
}

function notFinite(field: string, i: number): never {
  throw new VoxvaeError('ENOTFINITE', `${field}.data[${i}] is NaN; probabilities must be numbers in [0, 1]`, { path: `${field}.data` });
}

/** Number of on voxels and their bounding box (null when empty). Refuses NaN. */
export function maskBox(vol: MaskVolume, field: string): { count: number; box: Box | null } {
  const [D, H, W] = vol.shape;
  const data = vol.data;
  const lo: [number, number, number] = [D, H, W];
  const hi: [number, number, number] = [0, 0, 0];
  let count = 0;
  const isByte = data instanceof Uint8Array;
  let i = 0;
  for (let d = 0; d < D; d++) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++, i++) {
        const x = data[i]!;
        let on: boolean;
        if (isByte) on = x !== 0;
        else {
          if (x !== x) notFinite(field, i);
          on = x >= PROBABILITY_THRESHOLD;
        }
        if (!on) continue;
        count++;
        if (d < lo[0]) lo[0] = d;
        if (d >= hi[0]) hi[0] = d + 1;
        if (h < lo[1]) lo[1] = h;
        if (h >= hi[1]) hi[1] = h + 1;
        if (w < lo[2]) lo[2] = w;
        if (w >= hi[2]) hi[2] = w + 1;
      }
    }
  }
  return { count, box: count === 0 ? null : { lo, hi } };
}

export function unionBox(a: Box | null, b: Box | null): Box | null {
  if (a === null) return b;
  if (b === null) return a;
  return {
    lo: [Math.min(a.lo[0], b.lo[0]), Math.min(a.lo[1], b.lo[1]), Math.min(a.lo[2], b.lo[2])],
    hi: [Math.max(a.hi[0], b.hi[0]), Math.max(a.hi[1], b.hi[1]), Math.max(a.hi[2], b.hi[2])],
  };
}

export function boxShape(box: Box): Shape3 {
  return [box.hi[0] - box.lo[0], box.hi[1] - box.lo[1], box.hi[2] - box.lo[2]];
}

/** The 0/1 mask of `vol` inside `box`, C order over the box. */
export function cropMask(vol: MaskVolume, box: Box): Uint8Array {
  const [, H, W] = vol.shape;
  const [bd, bh, bw] = boxShape(box);
  const out = new Uint8Array(bd * bh * bw);
  const data = vol.data;
  const isByte = data instanceof Uint8Array;
  let o = 0;
  for (let d = box.lo[0]; d < box.hi[0]; d++) {
    for (let h = box.lo[1]; h < box.hi[1]; h++) {
      const row = (d * H + h) * W;
      for (let w = box.lo[2]; w < box.hi[2]; w++, o++) {
        const x = data[row + w]!;
        out[o] = isByte ? (x !== 0 ? 1 : 0) : x >= PROBABILITY_THRESHOLD ? 1 : 0;
      }
    }
  }
  return out;
}
