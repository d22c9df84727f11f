// Resampling to a target shape, thresholding to binary, crop and pad. Every function returns a new
// volume whose geometry (spacing, origin) still maps voxels to the same world positions.
//
// resample() reproduces torch.nn.functional.interpolate as MONAI's Resized uses it (what skullVAE
// trained on): 'nearest' is PyTorch's legacy nearest (src = floor(dst · in/out) in float32, so labels
// come out voxel-for-voxel identical), 'trilinear' is align_corners=False.

import { invalid } from '../errors.js';
import * as is from '../is.js';
import {
  type BinaryVolume,
  type Vec3,
  type Volume,
  type VoxelArray,
  checkShape,
  dtypeOf,
  validateVolume,
  voxelCount,
  worldOf,
} from './volume.js';

export type ResampleMode = 'nearest' | 'trilinear';

function geometryAt<A extends VoxelArray>(vol: Volume, shape: Vec3, data: A, start: Vec3, spacing: Vec3 = vol.spacing): Volume<A> {
  return { shape, data, spacing: [...spacing], origin: worldOf(vol, start[0], start[1], start[2]), direction: [...vol.direction] };
}

/** PyTorch's nearest source index for each output index along one axis. */
export function nearestIndices(inSize: number, outSize: number): Int32Array {
  const idx = new Int32Array(outSize);
  if (outSize === inSize) {
    for (let o = 0; o < outSize; o++) idx[o] = o;
  } else if (outSize === 2 * inSize) {
    for (let o = 0; o < outSize; o++) idx[o] = o >> 1;
  } else {
    const scale = Math.fround(inSize / outSize);
    for (let o = 0; o < outSize; o++) idx[o] = Math.min(Math.floor(Math.fround(o * scale)), inSize - 1);
  }
  return idx;
}

function linearWeights(inSize: number, outSize: number): { i0: Int32Array; i1: Int32Array; w1: Float64Array } {
  const i0 = new Int32Array(outSize), i1 = new Int32Array(outSize), w1 = new Float64Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const src = Math.max(0, scale * (o + 0.5) - 0.5);
    const a = Math.min(Math.floor(src), inSize - 1);
    i0[o] = a;
    i1[o] = a < inSize - 1 ? a + 1 : a;
    w1[o] = a < inSize - 1 ? src - a : 0;
  }
  return { i0, i1, w1 };
}

/**
 * Resamples to `shape` = [D, H, W]. 'nearest' keeps the data type (use it for labels and binary
 * skulls); 'trilinear' gives float32 (float64 for float64 input).
 */
export function resample(vol: Volume, shape: Vec3, mode: ResampleMode = 'nearest'): Volume {
  validateVolume(vol);
  const out = checkShape(shape, 'shape');
  const [D, H, W] = vol.shape;
  const [oD, oH, oW] = out;
  const scale: Vec3 = [D / oD, H / oH, W / oW];
  const spacing: Vec3 = [vol.spacing[0] * scale[0], vol.spacing[1] * scale[1], vol.spacing[2] * scale[2]];
  // Output voxel centres sit at input index (o + 0.5)·scale − 0.5 (half-pixel convention).
  const start: Vec3 = [(scale[0] - 1) / 2, (scale[1] - 1) / 2, (scale[2] - 1) / 2];
  const src = vol.data;
  if (mode === 'nearest') {
    const di = nearestIndices(D, oD), hi = nearestIndices(H, oH), wi = nearestIndices(W, oW);
    const data = new (src.constructor as new (n: number) => VoxelArray)(voxelCount(out));
    let p = 0;
    for (let a = 0; a < oD; a++) {
      const baseA = di[a]! * H;
      for (let b = 0; b < oH; b++) {
        const base = (baseA + hi[b]!) * W;
        for (let c = 0; c < oW; c++) data[p++] = src[base + wi[c]!]!;
      }
    }
    return geometryAt(vol, out, data, start, spacing);
  }
  if (mode !== 'trilinear') return invalid('mode', 'must be "nearest" or "trilinear"', mode);
  const dw = linearWeights(D, oD), hw = linearWeights(H, oH), ww = linearWeights(W, oW);
  const data = dtypeOf(src) === 'float64' ? new Float64Array(voxelCount(out)) : new Float32Array(voxelCount(out));
  let p = 0;
  for (let a = 0; a < oD; a++) {
    const a0 = dw.i0[a]! * H, a1 = dw.i1[a]! * H, ta = dw.w1[a]!;
    for (let b = 0; b < oH; b++) {
      const b0 = hw.i0[b]!, b1 = hw.i1[b]!, tb = hw.w1[b]!;
      const r00 = (a0 + b0) * W, r01 = (a0 + b1) * W, r10 = (a1 + b0) * W, r11 = (a1 + b1) * W;
      for (let c = 0; c < oW; c++) {
        const c0 = ww.i0[c]!, c1 = ww.i1[c]!, tc = ww.w1[c]!;
        const v00 = src[r00 + c0]! + (src[r00 + c1]! - src[r00 + c0]!) * tc;
        const v01 = src[r01 + c0]! + (src[r01 + c1]! - src[r01 + c0]!) * tc;
        const v10 = src[r10 + c0]! + (src[r10 + c1]! - src[r10 + c0]!) * tc;
        const v11 = src[r11 + c0]! + (src[r11 + c1]! - src[r11 + c0]!) * tc;
        const v0 = v00 + (v01 - v00) * tb;
        const v1 = v10 + (v11 - v10) * tb;
        data[p++] = v0 + (v1 - v0) * ta;
      }
    }
  }
  return geometryAt(vol, out, data, start, spacing);
}

/** Binary volume: 1 where the value is greater than `level` (default 0.5), else 0. */
export function threshold(vol: Volume, level = 0.5): BinaryVolume {
  is.number('level', level);
  const src = vol.data;
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! > level ? 1 : 0;
  return { shape: [...vol.shape], data: out, spacing: [...vol.spacing], origin: [...vol.origin], direction: [...vol.direction] };
}

/** The sub-volume of `size` voxels starting at index `start`; it must lie inside the volume. */
export function crop(vol: Volume, start: Vec3, size: Vec3): Volume {
  validateVolume(vol);
  checkShape(size, 'size');
  for (let a = 0; a < 3; a++) {
    if (!Number.isInteger(start[a]) || start[a]! < 0 || start[a]! + size[a]! > vol.shape[a]!) {
      invalid('start', `with size ${size.join('×')} must lie inside the volume ${vol.shape.join('×')}`, start);
    }
  }
  const [, H, W] = vol.shape;
  const data = new (vol.data.constructor as new (n: number) => VoxelArray)(voxelCount(size));
  let p = 0;
  for (let i = 0; i < size[0]; i++) {
    for (let j = 0; j < size[1]; j++) {
      const base = ((start[0] + i) * H + start[1] + j) * W + start[2];
      data.set(vol.data.subarray(base, base + size[2]), p);
      p += size[2];
    }
  }
  return geometryAt(vol, [...size], data, start);
}

/** Adds `before[a]` and `after[a]` voxels of `value` on each side of axis a. */
export function pad(vol: Volume, before: Vec3, after: Vec3, value = 0): Volume {
  validateVolume(vol);
  for (const [name, v] of [['before', before], ['after', after]] as const) {
    if (!(v.length === 3 && v.every((x) => Number.isInteger(x) && x >= 0))) invalid(name, 'must be three non-negative integers', v);
  }
  const [D, H, W] = vol.shape;
  const shape: Vec3 = [D + before[0] + after[0], H + before[1] + after[1], W + before[2] + after[2]];
  const data = new (vol.data.constructor as new (n: number) => VoxelArray)(voxelCount(shape));
  if (value !== 0) data.fill(value);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < H; j++) {
      const src = (i * H + j) * W;
      const dst = ((i + before[0]) * shape[1] + j + before[1]) * shape[2] + before[2];
      data.set(vol.data.subarray(src, src + W), dst);
    }
  }
  return geometryAt(vol, shape, data, [-before[0], -before[1], -before[2]]);
}

/**
 * Centre crop and/or pad to `shape`, as MONAI's ResizeWithPadOrCrop (symmetric padding, extra voxel
 * after; crop start = ⌊in/2⌋ − ⌊out/2⌋).
 */
export function cropOrPad(vol: Volume, shape: Vec3, value = 0): Volume {
  const out = checkShape(shape, 'shape');
  const before: Vec3 = [0, 0, 0], after: Vec3 = [0, 0, 0], start: Vec3 = [0, 0, 0];
  const mid: Vec3 = [...vol.shape];
  for (let a = 0; a < 3; a++) {
    const n = vol.shape[a]!, m = out[a]!;
    if (m > n) {
      before[a] = Math.floor((m - n) / 2);
      after[a] = m - n - before[a]!;
    } else if (m < n) {
      start[a] = Math.floor(n / 2) - Math.floor(m / 2);
      mid[a] = m;
    }
  }
  let v = vol;
  if (mid.some((m, a) => m !== vol.shape[a])) v = crop(v, start, mid);
  if (before.some((b) => b > 0) || after.some((b) => b > 0)) v = pad(v, before, after, value);
  return v;
}
