// Write → read round trips of every datatype in every format and encoding voxvae writes, keeping
// voxels bit for bit and spacing, origin and orientation (to float32 precision in NIfTI, exactly in NRRD).

import test from 'ava';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  type DType,
  type Mat3,
  type Volume,
  type VolumeFormat,
  DTYPES,
  createVolume,
  decodeNifti,
  decodeNrrd,
  encodeNifti,
  encodeNrrd,
  readVolume,
  readVolumeHeader,
  writeVolume,
} from '../ts/data/index.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'voxvae-io-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

const RANGE: Record<DType, [number, number]> = {
  uint8: [0, 255],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  float32: [-3.4e38, 3.4e38],
  float64: [-1.7e308, 1.7e308],
};

function sample(dtype: DType): Volume {
  const shape: [number, number, number] = [7, 5, 3];
  const n = 7 * 5 * 3;
  const Ctor = { uint8: Uint8Array, int16: Int16Array, int32: Int32Array, float32: Float32Array, float64: Float64Array }[dtype];
  const data = new Ctor(n);
  const [lo, hi] = RANGE[dtype];
  for (let p = 0; p < n; p++) data[p] = dtype.startsWith('float') ? (p - 40) * 0.37 : (p * 37) % 200;
  data[0] = lo;
  data[n - 1] = hi;
  if (dtype.startsWith('float')) data[1] = -0;
  // A rotation about z by 0.3 rad with the z axis flipped (left-handed index axes).
  const c = Math.cos(0.3), s = Math.sin(0.3);
  const direction: Mat3 = [c, -s, 0, s, c, 0, 0, 0, -1];
  return createVolume(shape, data, { spacing: [0.5, 1.25, 3], origin: [-12.5, 33.25, 7], direction });
}

function sameGeometry(t: import('ava').ExecutionContext, a: Volume, b: Volume, tol: number): void {
  t.deepEqual(a.shape, b.shape);
  for (let i = 0; i < 3; i++) {
    t.true(Math.abs(a.spacing[i]! - b.spacing[i]!) <= tol * Math.abs(b.spacing[i]!), `spacing ${a.spacing} vs ${b.spacing}`);
    t.true(Math.abs(a.origin[i]! - b.origin[i]!) <= tol * Math.max(1, Math.abs(b.origin[i]!)), `origin ${a.origin} vs ${b.origin}`);
  }
  for (let i = 0; i < 9; i++) t.true(Math.abs(a.direction[i]! - b.direction[i]!) <= tol * 10, `direction ${a.direction} vs ${b.direction}`);
}

const FILES: { format: VolumeFormat; name: string; encoding?: 'raw' | 'gzip'; tol: number }[] = [
  { format: 'nii', name: 'v.nii', tol: 1e-6 },
  { format: 'nii.gz', name: 'v.nii.gz', tol: 1e-6 },
  { format: 'nrrd', name: 'v.nrrd', encoding: 'raw', tol: 1e-15 },
  { format: 'nrrd', name: 'v.nrrd', encoding: 'gzip', tol: 1e-15 },
  { format: 'nhdr', name: 'v.nhdr', encoding: 'raw', tol: 1e-15 },
  { format: 'nhdr', name: 'v.nhdr', encoding: 'gzip', tol: 1e-15 },
];

for (const dtype of DTYPES) {
  for (const f of FILES) {
    test(`${dtype} round trip through ${f.format}${f.encoding ? ` (${f.encoding})` : ''}`, async (t) => {
      const vol = sample(dtype);
      const dir = path.join(tmp, `${dtype}-${f.format}-${f.encoding ?? ''}`);
      const { mkdirSync } = await import('node:fs');
      mkdirSync(dir);
      const file = path.join(dir, f.name);
      await writeVolume(file, vol, f.encoding ? { encoding: f.encoding } : {});
      const back = await readVolume(file);
      t.is(back.data.constructor, vol.data.constructor);
      t.deepEqual(Buffer.from(back.data.buffer, back.data.byteOffset, back.data.byteLength), Buffer.from(vol.data.buffer, vol.data.byteOffset, vol.data.byteLength));
      sameGeometry(t, back, vol, f.tol);
      const h = await readVolumeHeader(file);
      t.is(h.dtype, dtype);
      t.is(h.compressed, f.format === 'nii.gz' || f.encoding === 'gzip');
      // Nothing else left in the folder: no temporary files; a detached header has exactly one data file.
      const names = readdirSync(dir).sort();
      if (f.format === 'nhdr') t.deepEqual(names, [f.encoding === 'gzip' ? 'v.raw.gz' : 'v.raw', 'v.nhdr'].sort());
      else t.deepEqual(names, [f.name]);
    });
  }
  test(`${dtype} encode/decode in memory (NIfTI and NRRD)`, async (t) => {
    const vol = sample(dtype);
    for (const gzip of [false, true]) {
      const back = decodeNifti(encodeNifti(vol, { gzip }));
      t.deepEqual(Array.from(back.data), Array.from(vol.data));
      sameGeometry(t, back, vol, 1e-6);
    }
    for (const encoding of ['raw', 'gzip'] as const) {
      const back = await decodeNrrd(await encodeNrrd(vol, { encoding }));
      t.deepEqual(Array.from(back.data), Array.from(vol.data));
      sameGeometry(t, back, vol, 1e-15);
    }
  });
}

test('the voxel at [i, j, k] is data[(i*H + j)*W + k] and files store i fastest', async (t) => {
  const shape: [number, number, number] = [4, 3, 2];
  const data = new Int16Array(24);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 2; k++) data[(i * 3 + j) * 2 + k] = i + 10 * j + 100 * k;
  const vol = createVolume(shape, data);
  const nii = Buffer.from(encodeNifti(vol));
  const fileOrder = Array.from({ length: 24 }, (_, p) => nii.readInt16LE(352 + 2 * p));
  // File order: i + 4*(j + 3*k).
  t.deepEqual(fileOrder.slice(0, 5), [0, 1, 2, 3, 10]);
  t.is(fileOrder[12], 100);
});

test('a volume whose data length disagrees with its shape is refused before anything is written', async (t) => {
  const dir = path.join(tmp, 'refused');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir);
  const bad = { shape: [4, 4, 4] as [number, number, number], data: new Uint8Array(10), spacing: [1, 1, 1] as [number, number, number], origin: [0, 0, 0] as [number, number, number], direction: [1, 0, 0, 0, 1, 0, 0, 0, 1] as Mat3 };
  for (const name of ['a.nii.gz', 'a.nrrd', 'a.nhdr']) {
    const err = await t.throwsAsync(writeVolume(path.join(dir, name), bad));
    t.is((err as { code?: string }).code, 'ESHAPE');
  }
  t.deepEqual(readdirSync(dir), []);
});

test('a write into a missing folder fails with EIO and leaves no temporary file', async (t) => {
  const vol = sample('uint8');
  const err = await t.throwsAsync(writeVolume(path.join(tmp, 'missing', 'x.nii'), vol));
  t.is((err as { code?: string }).code, 'EIO');
  t.regex(err!.message, /missing/);
});
