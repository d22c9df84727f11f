// Reading what other tools wrote: NIfTI files from nibabel and NRRD files from Teem's unu, committed
// under test/fixtures/io/ with expected.json (made by scripts/fixtures/make_io_fixtures.py), so these
// checks run even where nibabel and unu are not installed.

import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { affineOf, readVolume, readVolumeHeader } from '../ts/data/index.js';

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'io');

interface Expected {
  file: string;
  shape: [number, number, number];
  affine: number[][];
  data: number[];
  dtype: string;
  scaled?: boolean;
}
const expected = JSON.parse(readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as { nifti: Expected[]; nrrd: Expected[] };

for (const e of [...expected.nifti, ...expected.nrrd]) {
  test(`reads ${e.file} (${e.dtype})`, async (t) => {
    const file = path.join(DIR, e.file);
    const vol = await readVolume(file);
    t.deepEqual(vol.shape, e.shape);
    t.is(vol.data.length, e.data.length);
    let worst = 0;
    for (let i = 0; i < e.data.length; i++) worst = Math.max(worst, Math.abs(vol.data[i]! - e.data[i]!));
    t.true(worst <= 1e-6, `largest voxel difference ${worst}`);
    const A = affineOf(vol);
    for (let r = 0; r < 4; r++) {
      for (let c = 0; c < 4; c++) {
        t.true(Math.abs(A[r]![c]! - e.affine[r]![c]!) < 1e-5, `affine[${r}][${c}] = ${A[r]![c]} but the tool says ${e.affine[r]![c]}`);
      }
    }
    const h = await readVolumeHeader(file);
    t.deepEqual(h.shape, e.shape);
    t.is(h.dtype, e.dtype);
    if (!e.scaled) t.is(vol.data.constructor.name, { uint8: 'Uint8Array', int16: 'Int16Array', int32: 'Int32Array', float32: 'Float32Array', float64: 'Float64Array' }[e.dtype]);
  });
}
