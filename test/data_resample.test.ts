// Resampling (PyTorch/MONAI semantics worked out by hand), thresholding, crop and pad, each keeping
// voxels at the same world positions.

import test from 'ava';
import { createVolume, crop, cropOrPad, pad, resample, threshold, worldOf } from '../ts/data/index.js';
import { nearestIndices } from '../ts/data/resample.js';

test('nearest indices follow torch interpolate(mode="nearest"): src = floor(dst · fround(in/out))', (t) => {
  t.deepEqual(Array.from(nearestIndices(5, 3)), [0, 1, 3]); // scale 1.6666666: 0, 1.67, 3.33
  t.deepEqual(Array.from(nearestIndices(3, 5)), [0, 0, 1, 1, 2]); // scale 0.6: 0, .6, 1.2, 1.8, 2.4
  t.deepEqual(Array.from(nearestIndices(4, 8)), [0, 0, 1, 1, 2, 2, 3, 3]); // exact doubling
  t.deepEqual(Array.from(nearestIndices(512, 256)).slice(0, 4), [0, 2, 4, 6]);
  // 3 → 7 in float32: scale = fround(3/7) = 0.42857143; 6·scale = 2.5714 → 2; never past in−1.
  t.deepEqual(Array.from(nearestIndices(3, 7)), [0, 0, 0, 1, 1, 2, 2]);
});

test('nearest resampling keeps labels and the data type', (t) => {
  const v = createVolume([2, 1, 1], new Uint8Array([0, 7]));
  const r = resample(v, [4, 1, 1], 'nearest');
  t.is(r.data.constructor, Uint8Array);
  t.deepEqual(Array.from(r.data), [0, 0, 7, 7]);
  t.deepEqual(r.spacing, [0.5, 1, 1]);
  // Output voxel centres at input index (o + 0.5)·scale − 0.5: the first at −0.25.
  t.deepEqual(r.origin, [-0.25, 0, 0]);
});

test('trilinear resampling is align_corners=False with clamping at the border', (t) => {
  const v = createVolume([2, 1, 1], new Float32Array([0, 10]));
  const r = resample(v, [4, 1, 1], 'trilinear');
  // src = 0.5(o + 0.5) − 0.5 → −0.25 (clamped to 0), 0.25, 0.75, 1.25 (past the end: last value)
  t.deepEqual(Array.from(r.data), [0, 2.5, 7.5, 10]);
  const w = createVolume([1, 2, 2], new Uint8Array([0, 4, 8, 12]));
  const r2 = resample(w, [1, 1, 1], 'trilinear');
  t.deepEqual(Array.from(r2.data), [6]); // the centre of a 2×2 block averages it
  t.is(r2.data.constructor, Float32Array);
});

test('resampling preserves the world extent of a rotated volume', (t) => {
  const c = Math.cos(0.5), s = Math.sin(0.5);
  const v = createVolume([8, 6, 4], new Uint8Array(192), { spacing: [1, 2, 3], origin: [5, 6, 7], direction: [c, -s, 0, s, c, 0, 0, 0, 1] });
  const r = resample(v, [4, 3, 2]);
  // The outer corner (index −0.5 along each axis) maps to the same world point before and after.
  const a = worldOf(v, -0.5, -0.5, -0.5), b = worldOf(r, -0.5, -0.5, -0.5);
  for (let i = 0; i < 3; i++) t.true(Math.abs(a[i]! - b[i]!) < 1e-12);
  t.deepEqual(r.spacing, [2, 4, 6]);
});

test('threshold gives 0/1 uint8 (value > level)', (t) => {
  const v = createVolume([1, 1, 5], new Float32Array([-1, 0.5, 0.50001, 300, 255]));
  t.deepEqual(Array.from(threshold(v).data), [0, 0, 1, 1, 1]);
  t.deepEqual(Array.from(threshold(v, 299).data), [0, 0, 0, 1, 0]);
});

test('crop and pad move the origin so voxels keep their world position', (t) => {
  const data = new Int16Array(4 * 3 * 2).map((_, i) => i);
  const v = createVolume([4, 3, 2], data, { spacing: [1, 2, 3], origin: [10, 20, 30] });
  const c = crop(v, [1, 1, 0], [2, 2, 2]);
  t.deepEqual(c.shape, [2, 2, 2]);
  t.is(c.data[0], data[(1 * 3 + 1) * 2 + 0]);
  t.deepEqual(c.origin, worldOf(v, 1, 1, 0));
  const p = pad(v, [1, 0, 2], [0, 1, 0], -5);
  t.deepEqual(p.shape, [5, 4, 4]);
  t.is(p.data[0], -5);
  t.is(p.data[(1 * 4 + 0) * 4 + 2], data[0]);
  t.deepEqual(worldOf(p, 1, 0, 2), worldOf(v, 0, 0, 0));
  t.throws(() => crop(v, [3, 0, 0], [2, 1, 1]), { message: /must lie inside/ });
});

test('cropOrPad centres like MONAI ResizeWithPadOrCrop', (t) => {
  const v = createVolume([6, 3, 1], new Uint8Array(18).map((_, i) => i));
  const r = cropOrPad(v, [3, 6, 2]);
  t.deepEqual(r.shape, [3, 6, 2]);
  // D: 6 → 3, start ⌊6/2⌋ − ⌊3/2⌋ = 2; H: 3 → 6, pad 1 before, 2 after; W: 1 → 2, pad 0 before, 1 after.
  t.is(r.data[(0 * 6 + 1) * 2 + 0], v.data[(2 * 3 + 0) * 1]);
  t.is(r.data[(0 * 6 + 0) * 2 + 0], 0);
  t.deepEqual(worldOf(r, 0, 1, 0), worldOf(v, 2, 0, 0));
});
