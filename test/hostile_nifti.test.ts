// Issue 17, finding 10 (NIfTI), against nibabel: a file with qform_code = sform_code = 0 gets nibabel's
// affine; NIfTI-2 is EUNSUPPORTED whatever the file is called; qform/sform codes survive a read and a
// write; a .nii.gz declaring more than its bytes can inflate to is refused before inflating.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { affineOf, createVolume, decodeNifti, encodeNifti, readVolume, writeVolume } from '../ts/data/index.js';
import { VoxvaeError } from '../ts/errors.js';

const PYTHON = '/usr/bin/python3';
const hasNibabel = spawnSync(PYTHON, ['-c', 'import nibabel, numpy'], { stdio: 'ignore' }).status === 0;
if (!hasNibabel) console.log(`hostile_nifti: nibabel comparisons skipped ("${PYTHON} -c 'import nibabel'" failed: apt-get install python3-nibabel)`);
const nibTest = hasNibabel ? test : test.skip;
const tmp = mkdtempSync(path.join(tmpdir(), 'voxvae-hostile-nifti-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

function py(script: string, ...args: string[]): string {
  const r = spawnSync(PYTHON, ['-c', script, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

nibTest('finding 10: a NIfTI with qform_code = sform_code = 0 gets the affine nibabel gives it', async (t) => {
  for (const [name, pixdim] of [['positive', '[2, 3, 4]'], ['negative-x', '[-1.5, 0.5, 2]']] as const) {
    const f = path.join(tmp, `noform-${name}.nii`);
    const nib = JSON.parse(py(`
import sys, json, numpy as np, nibabel as nib
img = nib.Nifti1Image(np.arange(4*5*6, dtype=np.uint8).reshape(4, 5, 6), None)
img.header['pixdim'][1:4] = ${pixdim}
img.header['qform_code'] = 0; img.header['sform_code'] = 0
nib.save(img, sys.argv[1])
back = nib.load(sys.argv[1])
assert back.header['qform_code'] == 0 and back.header['sform_code'] == 0
print(json.dumps(back.affine.tolist()))`, f)) as number[][];
    const A = affineOf(await readVolume(f));
    for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) t.true(Math.abs(A[r]![c]! - nib[r]![c]!) < 1e-9, `${name}: affine[${r}][${c}] ${A[r]![c]} vs nibabel ${nib[r]![c]}`);
  }
});

nibTest('finding 10: NIfTI-2 is EUNSUPPORTED whether it is called .nii, .nii.gz or anything else', async (t) => {
  const base = path.join(tmp, 'two');
  py(`
import sys, numpy as np, nibabel as nib
img = nib.Nifti2Image(np.ones((3, 4, 5), dtype=np.uint8), np.eye(4))
for ext in ['.nii', '.nii.gz', '.bin']:
    nib.save(img, sys.argv[1] + ext) if ext != '.bin' else open(sys.argv[1] + ext, 'wb').write(img.to_bytes())`, base);
  for (const ext of ['.nii', '.nii.gz', '.bin']) {
    const err = await t.throwsAsync(readVolume(base + ext), { instanceOf: VoxvaeError });
    t.is((err as VoxvaeError).code, 'EUNSUPPORTED', `${ext}: ${err!.message}`);
    t.regex(err!.message, /NIfTI-2/);
  }
});

nibTest('finding 10: qform and sform codes 2 and 4 survive a read and a write (nibabel reads them back)', async (t) => {
  const src = path.join(tmp, 'codes.nii'), out = path.join(tmp, 'codes-out.nii.gz');
  py(`
import sys, numpy as np, nibabel as nib
aff = np.array([[0, -1.5, 0, 10], [2, 0, 0, -4], [0, 0, 0.5, 7], [0, 0, 0, 1]], float)
img = nib.Nifti1Image(np.zeros((3, 4, 5), dtype=np.int16), None)
img.set_qform(aff, code=2); img.set_sform(aff, code=4)
nib.save(img, sys.argv[1])`, src);
  const vol = await readVolume(src);
  t.deepEqual(vol.spaceCodes, { qform: 2, sform: 4 });
  await writeVolume(out, vol);
  t.is(py(`import sys, nibabel as nib; h = nib.load(sys.argv[1]).header; print(int(h['qform_code']), int(h['sform_code']))`, out).trim(), '2 4');
  t.deepEqual((await readVolume(out)).spaceCodes, { qform: 2, sform: 4 });
  // A volume made in memory is written as scanner anatomical (1), as before.
  const plain = decodeNifti(encodeNifti(createVolume([2, 2, 2], new Uint8Array(8))));
  t.deepEqual(plain.spaceCodes, { qform: 1, sform: 1 });
});

test('a .nii.gz declaring more voxels than its bytes can inflate to is EFORMAT before inflating', async (t) => {
  const head = Buffer.from(encodeNifti(createVolume([2, 2, 2], new Uint8Array(8))).subarray(0, 352));
  head.writeInt16LE(2000, 42);
  head.writeInt16LE(2000, 44);
  head.writeInt16LE(500, 46);
  const f = path.join(tmp, 'bomb.nii.gz');
  writeFileSync(f, gzipSync(head));
  const err = await t.throwsAsync(readVolume(f), { instanceOf: VoxvaeError });
  t.is((err as VoxvaeError).code, 'EFORMAT');
  t.regex(err!.message, /more than \d+ bytes of gzip data can inflate to/);
});
