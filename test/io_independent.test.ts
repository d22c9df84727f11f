// Files written by voxvae, read by independent tools: NIfTI by nibabel (Debian python3-nibabel), NRRD
// by Teem's unu (Debian teem-apps; the binary is `unu` or `teem-unu`). Where a tool is missing these
// tests are skipped with a printed reason; test/io_fixtures.test.ts covers the other direction from
// committed files either way.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type DType, type Mat3, type Volume, DTYPES, affineOf, createVolume, toFileOrder, writeVolume } from '../ts/data/index.js';

const PYTHON = '/usr/bin/python3';
const hasNibabel = spawnSync(PYTHON, ['-c', 'import nibabel, numpy'], { stdio: 'ignore' }).status === 0;
const UNU = ['unu', 'teem-unu'].find((b) => spawnSync(b, ['about'], { stdio: 'ignore' }).status === 0);
if (!hasNibabel) console.log(`io_independent: nibabel checks skipped: "${PYTHON} -c 'import nibabel'" failed (apt-get install python3-nibabel)`);
if (!UNU) console.log('io_independent: unu checks skipped: neither `unu` nor `teem-unu` runs (apt-get install teem-apps)');
const nibTest = hasNibabel ? test : test.skip;
const unuTest = UNU ? test : test.skip;

const tmp = mkdtempSync(path.join(tmpdir(), 'voxvae-indep-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

function sample(dtype: DType, seed: number): Volume {
  const shape: [number, number, number] = [6, 5, 4];
  const Ctor = { uint8: Uint8Array, int16: Int16Array, int32: Int32Array, float32: Float32Array, float64: Float64Array }[dtype];
  const data = new Ctor(120);
  for (let p = 0; p < 120; p++) data[p] = dtype.startsWith('float') ? (p - 50) * 0.125 + seed : ((p * 13 + seed) % 250) - (dtype === 'uint8' ? 0 : 100);
  const c = Math.cos(0.4 + seed), s = Math.sin(0.4 + seed);
  const direction: Mat3 = [c, 0, -s, 0, 1, 0, s, 0, c];
  return createVolume(shape, data, { spacing: [0.75, 1.5, 2.25], origin: [10.5, -20.25, 5 + seed], direction });
}

interface NibResult {
  file: string;
  shape: number[];
  dtype: string;
  affine: number[][];
  data: number[];
}

nibTest('nibabel reads every datatype voxvae writes, .nii and .nii.gz, with the same voxels and affine', async (t) => {
  const dir = path.join(tmp, 'nib');
  mkdirSync(dir);
  const written: { file: string; vol: Volume; dtype: DType }[] = [];
  for (const [n, dtype] of DTYPES.entries()) {
    for (const ext of ['nii', 'nii.gz']) {
      const file = path.join(dir, `${dtype}.${ext}`);
      const vol = sample(dtype, n);
      await writeVolume(file, vol);
      written.push({ file, vol, dtype });
    }
  }
  const script = [
    'import json, sys, nibabel as nib, numpy as np',
    'out = []',
    'for f in sys.argv[1:]:',
    '    img = nib.load(f)',
    '    d = np.ascontiguousarray(np.asanyarray(img.dataobj))',
    "    out.append({'file': f, 'shape': list(d.shape), 'dtype': str(d.dtype), 'affine': img.affine.tolist(), 'data': d.astype(float).ravel().tolist()})",
    'print(json.dumps(out))',
  ].join('\n');
  const r = spawnSync(PYTHON, ['-c', script, ...written.map((w) => w.file)], { encoding: 'utf8', maxBuffer: 64 << 20 });
  t.is(r.status, 0, r.stderr);
  const results = JSON.parse(r.stdout) as NibResult[];
  for (const [i, w] of written.entries()) {
    const res = results[i]!;
    t.deepEqual(res.shape, w.vol.shape, w.file);
    t.is(res.dtype, w.dtype, w.file);
    t.deepEqual(res.data, Array.from(w.vol.data), `${w.file}: voxels`);
    const A = affineOf(w.vol);
    for (let r2 = 0; r2 < 4; r2++) for (let c = 0; c < 4; c++) t.true(Math.abs(res.affine[r2]![c]! - A[r2]![c]!) < 1e-5, `${w.file}: affine[${r2}][${c}] ${res.affine[r2]![c]} vs ${A[r2]![c]}`);
  }
});

nibTest('nibabel sees the qform and the sform voxvae writes agree', async (t) => {
  const file = path.join(tmp, 'forms.nii');
  await writeVolume(file, sample('float32', 2));
  const script = "import sys, nibabel as nib, numpy as np; h = nib.load(sys.argv[1]).header; print(int(h['qform_code']), int(h['sform_code']), float(np.abs(h.get_qform() - h.get_sform()).max()))";
  const r = spawnSync(PYTHON, ['-c', script, file], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const [q, s, diff] = r.stdout.trim().split(' ').map(Number);
  t.is(q, 1);
  t.is(s, 1);
  t.true(diff! < 1e-5, `qform and sform differ by ${diff}`);
});

/** Runs `unu save -e ascii` on `file` and parses what unu decoded: header fields and values (file order). */
function unuDecode(file: string, out: string): { fields: Map<string, string>; values: number[] } {
  const r = spawnSync(UNU!, ['save', '-f', 'nrrd', '-e', 'ascii', '-i', file, '-o', out], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`unu failed on ${file}: ${r.stderr}`);
  const text = readFileSync(out, 'latin1');
  const blank = text.indexOf('\n\n');
  const fields = new Map<string, string>();
  for (const line of text.slice(0, blank).split('\n').slice(1)) {
    const i = line.indexOf(': ');
    if (!line.startsWith('#') && i > 0) fields.set(line.slice(0, i), line.slice(i + 2));
  }
  return { fields, values: text.slice(blank + 2).trim().split(/\s+/).map(Number) };
}

function vectors(text: string): number[][] {
  return [...text.matchAll(/\(([^)]*)\)/g)].map((m) => m[1]!.split(',').map(Number));
}

unuTest('unu reads every datatype voxvae writes, raw and gzip, attached and detached, with the same voxels and geometry', async (t) => {
  const dir = path.join(tmp, 'unu');
  mkdirSync(dir);
  for (const [n, dtype] of DTYPES.entries()) {
    for (const encoding of ['raw', 'gzip'] as const) {
      for (const ext of ['nrrd', 'nhdr']) {
        const file = path.join(dir, `${dtype}-${encoding}.${ext}`);
        const vol = sample(dtype, n);
        await writeVolume(file, vol, { encoding });
        const { fields, values } = unuDecode(file, path.join(dir, `${dtype}-${encoding}-${ext}.ascii.nrrd`));
        t.is(fields.get('sizes'), vol.shape.join(' '), file);
        t.deepEqual(values, Array.from(toFileOrder(vol.data, vol.shape)), `${file}: voxels in file order`);
        t.is(fields.get('space'), 'left-posterior-superior', file);
        // unu's directions/origin are LPS; voxvae's geometry is RAS: x and y change sign.
        const A = affineOf(vol);
        const dirs = vectors(fields.get('space directions') ?? '');
        const origin = vectors(fields.get('space origin') ?? '')[0] ?? [];
        const flip = [-1, -1, 1];
        for (let c = 0; c < 3; c++) for (let r = 0; r < 3; r++) t.true(Math.abs(dirs[c]![r]! - flip[r]! * A[r]![c]!) < 1e-12, `${file}: direction ${c}`);
        for (let r = 0; r < 3; r++) t.true(Math.abs(origin[r]! - flip[r]! * A[r]![3]!) < 1e-12, `${file}: origin`);
      }
    }
  }
});
