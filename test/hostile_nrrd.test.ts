// Issue 17, findings 2 and 10 (NRRD): an ASCII NRRD is checked against the bytes it holds before its
// voxels are allocated; unknown fields are errors (as Teem's unu refuses them: a misspelt "space" must
// never read LPS directions as RAS); ASCII inf, -inf and nan, which unu writes, read as unu reads them.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeNrrd, readVolume } from '../ts/data/index.js';
import * as volume from '../ts/data/volume.js';
import { VoxvaeError } from '../ts/errors.js';

const UNU = ['unu', 'teem-unu'].find((b) => spawnSync(b, ['about'], { stdio: 'ignore' }).status === 0);
if (!UNU) console.log('hostile_nrrd: unu comparisons skipped: neither `unu` nor `teem-unu` runs (apt-get install teem-apps)');
const unuTest = UNU ? test : test.skip;
const tmp = mkdtempSync(path.join(tmpdir(), 'voxvae-hostile-nrrd-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));

test('finding 2: a 79-byte ASCII NRRD claiming 3.8 GB is EFORMAT before its voxels are allocated', async (t) => {
  const file = bytes('NRRD0004\ntype: float\ndimension: 3\nsizes: 1000 1000 950\nencoding: ascii\n\n1 2 3\n');
  t.true(file.length <= 79);
  const before = process.memoryUsage().arrayBuffers;
  const err = await t.throwsAsync(decodeNrrd(file, 'big.nrrd'), { instanceOf: VoxvaeError });
  // Measured at once (an allocation the reader made is still counted until a collection frees it).
  const grew = process.memoryUsage().arrayBuffers - before;
  t.is((err as VoxvaeError).code, 'EFORMAT');
  t.regex(err!.message, /declares 950000000 ascii values but the data has only \d+ bytes/);
  t.true(grew < 1 << 20, `array buffers grew by ${grew} bytes reading a ${file.length}-byte file`);
});

test('finding 2: a gzip NRRD declaring more than its bytes can inflate to is EFORMAT before inflating', async (t) => {
  const { gzipSync } = await import('node:zlib');
  const body = gzipSync(Buffer.alloc(64));
  const file = new Uint8Array(Buffer.concat([Buffer.from('NRRD0004\ntype: uchar\ndimension: 3\nsizes: 1500 1500 1500\nencoding: gzip\n\n', 'latin1'), body]));
  const err = await t.throwsAsync(decodeNrrd(file, 'bomb.nrrd'), { instanceOf: VoxvaeError });
  t.is((err as VoxvaeError).code, 'EFORMAT');
  t.regex(err!.message, /more than \d+ bytes of gzip data can inflate to/);
});

test('finding 2: an allocation that fails is ENOMEM, not an untyped RangeError', (t) => {
  const { allocateChecked } = volume as unknown as { allocateChecked: typeof import('../ts/data/volume.js')['allocate'] & ((d: string, n: number, f: string) => unknown) };
  t.is(typeof allocateChecked, 'function');
  const err = t.throws(() => (allocateChecked as (d: string, n: number, f: string) => unknown)('float64', 2 ** 40, 'x.nrrd'), { instanceOf: VoxvaeError });
  t.is((err as VoxvaeError).code, 'ENOMEM');
  t.regex(err!.message, /x\.nrrd: cannot allocate/);
});

const HEAD = 'NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 1 1\nencoding: ascii\n';
const misspelt: [string, string][] = [
  ['spcae', 'space dimension: 3\nspcae: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n'],
  ['space direction', 'space: left-posterior-superior\nspace direction: (2,0,0) (0,2,0) (0,0,2)\n'],
  ['space orgin', 'space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nspace orgin: (5,6,7)\n'],
];

for (const [name, fields] of misspelt) {
  test(`finding 10: an unknown NRRD field (${name}) is EFORMAT naming it, as unu refuses it`, async (t) => {
    const text = HEAD + fields + '\n3 4\n';
    const err = await t.throwsAsync(decodeNrrd(bytes(text), 'misspelt.nrrd'), { instanceOf: VoxvaeError });
    t.is((err as VoxvaeError).code, 'EFORMAT');
    t.true(err!.message.includes(`unknown field "${name}"`), err!.message);
    if (UNU) {
      const f = path.join(tmp, `${name.replace(/ /g, '_')}.nrrd`);
      writeFileSync(f, text, 'latin1');
      const r = spawnSync(UNU, ['save', '-f', 'nrrd', '-e', 'ascii', '-i', f, '-o', f + '.out'], { encoding: 'utf8' });
      t.not(r.status, 0, `unu accepted ${name}`);
      t.regex(r.stderr, /failed to parse .* as field identifier/);
    }
  });
}

test('finding 10: fields Teem knows, in any case and alternative spelling, still read', async (t) => {
  const text = 'NRRD0004\nType: uchar\ndimension: 3\nsizes: 2 1 1\nencoding: ascii\ncontent: x\nkinds: domain domain domain\nthicknesses: 1 1 1\nold min: 0\nlineskip: 0\ncenterings: cell cell cell\nx:=y\n\n3 4\n';
  const v = await decodeNrrd(bytes(text), 'known.nrrd');
  t.deepEqual(Array.from(v.data), [3, 4]);
});

unuTest('finding 10: ASCII inf, -inf and nan read as unu reads them (float); an integer type refuses them, as unu does', async (t) => {
  const text = 'NRRD0004\ntype: float\ndimension: 3\nsizes: 6 1 1\nencoding: ascii\n\n1.5 inf -inf nan -nan +inf\n';
  const f = path.join(tmp, 'special.nrrd');
  writeFileSync(f, text, 'latin1');
  const mine = Array.from((await readVolume(f)).data);
  // What unu decodes and writes back (as ascii): the reference.
  const out = f + '.unu.nrrd';
  const r = spawnSync(UNU!, ['save', '-f', 'nrrd', '-e', 'ascii', '-i', f, '-o', out], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const written = readFileSync(out, 'latin1');
  const unuValues = written.slice(written.indexOf('\n\n') + 2).trim().split(/\s+/);
  t.deepEqual(unuValues.slice(1, 4), ['inf', '-inf', 'nan']);
  const ref = unuValues.map((s) => (s === 'inf' ? Infinity : s === '-inf' ? -Infinity : /nan/.test(s) ? NaN : Number(s)));
  t.deepEqual(mine, ref);
  // unu's own output reads back the same.
  t.deepEqual(Array.from((await readVolume(out)).data), ref);
  const fi = path.join(tmp, 'special-int.nrrd');
  writeFileSync(fi, text.replace('type: float', 'type: short').replace('1.5 inf', '1 inf'), 'latin1');
  const err = await t.throwsAsync(readVolume(fi), { instanceOf: VoxvaeError });
  t.is((err as VoxvaeError).code, 'EFORMAT');
  t.regex(err!.message, /ascii value 1 "inf" is not an integer/);
  t.not(spawnSync(UNU!, ['save', '-f', 'nrrd', '-e', 'ascii', '-i', fi, '-o', fi + '.out']).status, 0, 'unu reads inf as a short');
});
