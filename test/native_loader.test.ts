// The addon loader: ordered candidates (local build, then the platform's prebuild) and one error that
// lists every failed attempt with the fix.
import test from 'ava';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { VoxvaeError } from '../ts/errors.js';
import { ADDON_ABI, addonCandidates, addonFile, loadAddonFrom, native } from '../ts/native.js';

test('candidates: the local build first, then the prebuilds for this platform and libc', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'voxvae-loader-'));
  try {
    const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'voxvae.glibc.node'), '');
    await writeFile(path.join(dir, 'voxvae.musl.node'), '');
    await writeFile(path.join(dir, 'voxvae.abi115.node'), ''); // Node-ABI-specific: not an N-API build
    await writeFile(path.join(dir, 'README'), '');
    const c = addonCandidates(root).map((f) => path.relative(root, f));
    t.is(c[0], path.join('build', 'Release', 'voxvae.node'));
    t.deepEqual(c.slice(1), [path.join('prebuilds', `${process.platform}-${process.arch}`, 'voxvae.glibc.node')]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('no loadable candidate: one ENATIVE error naming each attempt and the fix', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'voxvae-loader-'));
  try {
    const bad = path.join(root, 'garbage.node');
    await writeFile(bad, 'not a shared object');
    const err = t.throws(() => loadAddonFrom([path.join(root, 'missing.node'), bad], root), { instanceOf: VoxvaeError });
    t.is(err!.code, 'ENATIVE');
    t.regex(err!.message, /tried missing\.node: not found/);
    t.regex(err!.message, /tried garbage\.node: .+/);
    t.regex(err!.message, /npm rebuild voxvae/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('the loaded addon is the first candidate that loads', (t) => {
  const b = native();
  t.is(b.abiVersion, ADDON_ABI);
  const first = addonCandidates().find((f) => {
    try {
      return loadAddonFrom([f]).binding === b;
    } catch {
      return false;
    }
  });
  t.is(addonFile(), first);
});
