// Bad input: truncated or garbled files, wrong magic, unsupported datatypes, headers whose sizes
// disagree with the data, gzip bombs, detached data files outside the dataset folder. Each must fail
// with a typed VoxvaeError that names the file and the problem.

import test from 'ava';
import type { ExecutionContext } from 'ava';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as zlib from 'node:zlib';
import { createVolume, encodeNifti, encodeNrrd, readNrrd, readVolume, readVolumeHeader, writeVolume } from '../ts/data/index.js';
import { VoxvaeError } from '../ts/errors.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'voxvae-bad-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

const vol = createVolume([6, 5, 4], new Int16Array(120).map((_, i) => i));

function put(name: string, bytes: Uint8Array | string): string {
  const file = path.join(tmp, name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, bytes);
  return file;
}

async function rejects(t: ExecutionContext, p: Promise<unknown>, code: string, file: string, pattern: RegExp): Promise<void> {
  const err = await t.throwsAsync(p);
  t.true(err instanceof VoxvaeError, `not a VoxvaeError: ${String(err)}`);
  t.is((err as VoxvaeError).code, code, err!.message);
  t.true(err!.message.includes(file), `message does not name ${file}: ${err!.message}`);
  t.regex(err!.message, pattern);
}

const nii = Buffer.from(encodeNifti(vol));

test('NIfTI: truncated data', async (t) => {
  const f = put('trunc.nii', nii.subarray(0, nii.length - 10));
  await rejects(t, readVolume(f), 'EFORMAT', f, /declares 240 bytes .* has only 230/);
});

test('NIfTI: truncated header', async (t) => {
  const f = put('short.nii', nii.subarray(0, 200));
  await rejects(t, readVolume(f), 'EFORMAT', f, /too short for a NIfTI-1 header/);
});

test('NIfTI: data longer than the header declares', async (t) => {
  const f = put('long.nii', Buffer.concat([nii, Buffer.alloc(64)]));
  await rejects(t, readVolume(f), 'EFORMAT', f, /64 bytes more than the header declares/);
});

test('NIfTI: garbled bytes', async (t) => {
  const f = put('garbled.nii', Buffer.from(Array.from({ length: 600 }, (_, i) => (i * 7919) % 256)));
  await rejects(t, readVolume(f), 'EFORMAT', f, /not a NIfTI-1 file/);
});

test('NIfTI: wrong magic', async (t) => {
  const b = Buffer.from(nii);
  b.write('xyz\0', 344, 'latin1');
  const f = put('magic.nii', b);
  await rejects(t, readVolume(f), 'EFORMAT', f, /wrong NIfTI-1 magic/);
});

test('NIfTI: unsupported datatype (uint16) and mismatched bitpix', async (t) => {
  const b = Buffer.from(nii);
  b.writeInt16LE(512, 70);
  const f = put('uint16.nii', b);
  await rejects(t, readVolume(f), 'EUNSUPPORTED', f, /datatype 512 \(uint16\) is not supported/);
  const c = Buffer.from(nii);
  c.writeInt16LE(32, 72);
  const g = put('bitpix.nii', c);
  await rejects(t, readVolume(g), 'EFORMAT', g, /bitpix is 32/);
});

test('NIfTI: 4-D image and a header declaring more than maxBytes', async (t) => {
  const b = Buffer.from(nii);
  b.writeInt16LE(4, 40);
  b.writeInt16LE(3, 48);
  const f = put('4d.nii', b);
  await rejects(t, readVolume(f), 'EUNSUPPORTED', f, /only 3-D volumes/);
  const huge = Buffer.from(nii);
  for (const off of [42, 44, 46]) huge.writeInt16LE(30000, off);
  const g = put('huge.nii', huge);
  await rejects(t, readVolume(g), 'EUNSUPPORTED', g, /more than the limit/);
});

test('NIfTI: truncated and corrupt gzip streams', async (t) => {
  const gz = Buffer.from(encodeNifti(vol, { gzip: true }));
  const f = put('trunc.nii.gz', gz.subarray(0, gz.length - 20));
  await rejects(t, readVolume(f), 'EFORMAT', f, /gzip stream ends early|declares/);
  const bad = Buffer.from(gz);
  for (let i = 30; i < 60; i++) bad[i] = 0xff;
  const g = put('corrupt.nii.gz', bad);
  await rejects(t, readVolume(g), 'EFORMAT', g, /gzip stream is corrupt|declares|not a NIfTI|magic/);
});

test('NIfTI: a gzip stream that inflates far beyond the declared size is refused', async (t) => {
  // A header for 6×5×4 int16 (240 bytes) followed by 64 MiB of zeros: ~64 KiB compressed.
  const body = Buffer.alloc(64 << 20);
  nii.copy(body, 0, 0, 352);
  const f = put('bomb.nii.gz', zlib.gzipSync(body, { level: 1 }));
  await rejects(t, readVolume(f), 'EFORMAT', f, /inflates to more than \d+ bytes, far beyond/);
});

const nrrdText = (fields: string): string => `NRRD0004\ntype: short\ndimension: 3\nsizes: 6 5 4\nendian: little\n${fields}`;

test('NRRD: wrong magic, missing fields, unknown and unsupported types and encodings', async (t) => {
  let f = put('magic.nrrd', 'NRRX0004\ntype: short\n\n');
  await rejects(t, readVolume(f), 'EFORMAT', f, /wrong magic/);
  f = put('nofield.nrrd', 'NRRD0004\ntype: short\ndimension: 3\nencoding: raw\n\n');
  await rejects(t, readVolume(f), 'EFORMAT', f, /required field "sizes" is missing/);
  f = put('ushort.nrrd', 'NRRD0004\ntype: ushort\ndimension: 3\nsizes: 2 2 2\nendian: little\nencoding: raw\n\n' + '\0'.repeat(16));
  await rejects(t, readVolume(f), 'EUNSUPPORTED', f, /type "ushort" is not supported/);
  f = put('weird.nrrd', 'NRRD0004\ntype: quaternion\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\n');
  await rejects(t, readVolume(f), 'EFORMAT', f, /unknown type/);
  f = put('bz2.nrrd', nrrdText('encoding: bzip2\n\n'));
  await rejects(t, readVolume(f), 'EUNSUPPORTED', f, /encoding "bzip2" is not supported/);
  f = put('noendian.nrrd', 'NRRD0004\ntype: short\ndimension: 3\nsizes: 6 5 4\nencoding: raw\n\n');
  await rejects(t, readVolume(f), 'EFORMAT', f, /"endian" is required/);
  f = put('4d.nrrd', 'NRRD0004\ntype: uchar\ndimension: 4\nsizes: 2 2 2 2\nencoding: raw\n\n');
  await rejects(t, readVolume(f), 'EUNSUPPORTED', f, /dimension 4/);
  f = put('noblank.nrrd', nrrdText('encoding: raw'));
  await rejects(t, readVolume(f), 'EFORMAT', f, /no blank line/);
});

test('NRRD: sizes that disagree with the data (raw too short, raw too long, gzip short)', async (t) => {
  const good = Buffer.from(await encodeNrrd(vol, { encoding: 'raw' }));
  let f = put('short.nrrd', good.subarray(0, good.length - 2));
  await rejects(t, readVolume(f), 'EFORMAT', f, /declares 240 bytes .* has 238/);
  f = put('long.nrrd', Buffer.concat([good, Buffer.alloc(8)]));
  await rejects(t, readVolume(f), 'EFORMAT', f, /has 248/);
  f = put('gzshort.nrrd', Buffer.concat([Buffer.from(nrrdText('encoding: gzip\n\n')), zlib.gzipSync(Buffer.alloc(100))]));
  await rejects(t, readVolume(f), 'EFORMAT', f, /inflated data has 100/);
  f = put('ascii.nrrd', nrrdText('encoding: ascii\n\n1 2 3\n'));
  await rejects(t, readVolume(f), 'EFORMAT', f, /declares 120 ascii values but the data has only 6 bytes/);
});

test('NRRD: a gzip bomb is refused', async (t) => {
  const f = put('bomb.nrrd', Buffer.concat([Buffer.from(nrrdText('encoding: gzip\n\n')), zlib.gzipSync(Buffer.alloc(64 << 20), { level: 1 })]));
  await rejects(t, readVolume(f), 'EFORMAT', f, /inflates to more than/);
});

test('NRRD: detached data file names that point outside the dataset folder are refused', async (t) => {
  put('secret.raw', Buffer.alloc(240));
  const header = (name: string): string => nrrdText(`encoding: raw\ndata file: ${name}\n`);
  let f = put('ds/up.nhdr', header('../secret.raw'));
  await rejects(t, readVolume(f), 'EFORMAT', f, /points outside/);
  f = put('ds/abs.nhdr', header(path.join(tmp, 'secret.raw')));
  await rejects(t, readVolume(f), 'EFORMAT', f, /points outside/);
  // Inside a sub-folder of the header is fine; with a dataset root, anything under the root is.
  put('ds/sub/ok.raw', Buffer.alloc(240));
  t.deepEqual((await readVolume(put('ds/sub-ok.nhdr', header('sub/ok.raw')))).shape, [6, 5, 4]);
  f = put('ds/sub/up-but-inside-root.nhdr', header('../sub/ok.raw'));
  t.deepEqual((await readNrrd(f, { dataRoot: path.join(tmp, 'ds') })).shape, [6, 5, 4]);
  // A symbolic link that leads outside.
  symlinkSync(path.join(tmp, 'secret.raw'), path.join(tmp, 'ds', 'link.raw'));
  f = put('ds/link.nhdr', header('link.raw'));
  await rejects(t, readVolume(f), 'EFORMAT', f, /is a link to .* outside/);
  // Multi-file lists are not supported.
  f = put('ds/list.nhdr', header('LIST'));
  await rejects(t, readVolume(f), 'EUNSUPPORTED', f, /multi-file/);
  // A missing data file is an I/O error naming the header.
  f = put('ds/missing.nhdr', header('nothere.raw'));
  await rejects(t, readVolume(f), 'EIO', f, /cannot open its data file/);
});

test('headers only: errors name the file as well', async (t) => {
  const f = put('hdr-garbage.nrrd', 'hello world');
  await rejects(t, readVolumeHeader(f), 'EFORMAT', f, /wrong magic/);
  const g = put('unknown.dat', 'hello world');
  await rejects(t, readVolume(g), 'EFORMAT', g, /neither NIfTI nor NRRD/);
  const h = path.join(tmp, 'does-not-exist.nii');
  await rejects(t, readVolume(h), 'EIO', h, /cannot read/);
});

test('writing refuses an unknown extension without touching the disk', async (t) => {
  const err = await t.throwsAsync(writeVolume(path.join(tmp, 'x.png'), vol));
  t.is((err as VoxvaeError).code, 'EINVAL');
  t.throws(() => readFileSync(path.join(tmp, 'x.png')));
});
