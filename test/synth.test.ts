// The synthetic skull dataset: invariants (defective ⊂ complete, implant = complete − defective
// exactly, class counts), determinism (same seed → same bytes, whatever the number of workers),
// recorded factors, the folder it writes, and that a cancelled write leaves nothing behind.

import test from 'ava';
import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CRANIAL_DEFECT_TYPES,
  FACIAL_DEFECT_TYPES,
  type SkullFactors,
  type SyntheticSkull,
  VolumeDataset,
  generateSkull,
  generateSkullDataset,
  makeGrid,
  readVolume,
  writeSkullDataset,
} from '../ts/data/index.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'voxvae-synth-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

function checkPair(t: ExecutionContext, complete: Uint8Array, defective: Uint8Array, implant: Uint8Array, what: string): number {
  let removed = 0, fg = 0, bad = 0;
  for (let p = 0; p < complete.length; p++) {
    const c = complete[p]!, d = defective[p]!, i = implant[p]!;
    if (c > 1 || d > 1 || i > 1 || d > c || i !== c - d) bad++;
    removed += i;
    fg += c;
  }
  t.is(bad, 0, `${what}: ${bad} voxels break defective ⊂ complete or implant = complete − defective`);
  t.true(removed > 0, `${what}: empty implant`);
  t.true(removed < fg / 2, `${what}: implant of ${removed} voxels is most of the skull (${fg})`);
  return removed;
}

function checkFactors(t: ExecutionContext, f: SkullFactors, s: SyntheticSkull): void {
  for (const k of ['size', 'vaultWidth', 'vaultLength', 'vaultHeight', 'aspectWidth', 'aspectHeight', 'thickness', 'faceDepth', 'faceWidth', 'asymmetry', 'warpAmplitude', 'foreground'] as const) {
    t.true(Number.isFinite(f[k]) && f[k] >= 0, `${k} = ${f[k]}`);
  }
  t.is(f.deformation.length, 19);
  t.is(typeof f.mandible, 'boolean');
  t.true(CRANIAL_DEFECT_TYPES.includes(f.cranialDefect.type as never));
  t.true(FACIAL_DEFECT_TYPES.includes(f.facialDefect.type as never));
  t.is(f.cranialDefect.kind, 'cranial');
  t.is(f.facialDefect.kind, 'facial');
  if (!f.mandible) t.not(f.facialDefect.type, 'mandibular');
  for (const d of [f.cranialDefect, f.facialDefect]) {
    t.is(d.center.length, 3);
    t.true(d.centerIndex.every((c, a) => c >= 0 && c < s.complete.shape[a]!));
    t.true(d.extent.every((e) => e > 0));
  }
  const count = (a: Uint8Array): number => a.reduce((x, y) => x + y, 0);
  t.is(f.cranialDefect.voxels, count(s.cranial.implant!.data));
  t.is(f.facialDefect.voxels, count(s.facial.implant!.data));
  t.true(Math.abs(f.foreground - count(s.complete.data) / s.complete.data.length) < 1e-12);
}

test('small set: invariants, counts, factors; the four cranial defect types in turn', async (t) => {
  const ds = await generateSkullDataset({ n: 4, shape: [48, 48, 32], seed: 7, workers: 0 });
  t.is(ds.skulls.length, 4);
  for (const s of ds.skulls) {
    t.deepEqual(s.complete.shape, [48, 48, 32]);
    checkPair(t, s.complete.data, s.cranial.defective.data, s.cranial.implant!.data, `${s.id} cranial`);
    checkPair(t, s.complete.data, s.facial.defective.data, s.facial.implant!.data, `${s.id} facial`);
    checkFactors(t, s.factors, s);
    t.is(s.factors.index, Number(s.id));
    t.is(s.factors.seed, 7);
  }
  t.deepEqual(ds.skulls.map((s) => s.factors.cranialDefect.type), [...CRANIAL_DEFECT_TYPES]);
  // No two skulls alike.
  t.notDeepEqual(ds.skulls[0]!.complete.data, ds.skulls[1]!.complete.data);
  const dsv = VolumeDataset.fromSynthetic(ds);
  t.deepEqual(dsv.countByLabel(), { complete: 4, cranial: 4, facial: 4 });
});

test('same seed → same bytes, with or without worker threads; another seed differs', async (t) => {
  const hash = (ds: Awaited<ReturnType<typeof generateSkullDataset>>): string => {
    const h = createHash('sha256');
    for (const s of ds.skulls) for (const v of [s.complete, s.cranial.defective, s.facial.defective, s.cranial.implant!, s.facial.implant!]) h.update(v.data);
    h.update(JSON.stringify(ds.skulls.map((s) => s.factors)));
    return h.digest('hex');
  };
  const opts = { n: 5, shape: [40, 40, 24] as [number, number, number], seed: 3 };
  const a = hash(await generateSkullDataset({ ...opts, workers: 0 }));
  const b = hash(await generateSkullDataset({ ...opts, workers: 2 }));
  const c = hash(await generateSkullDataset({ ...opts, workers: 2, seed: 4 }));
  t.is(a, b);
  t.not(a, c);
});

test('any resolution from 32³ to 256×256×128 gives closed, valid skulls', (t) => {
  for (const shape of [[32, 32, 32], [128, 128, 64], [256, 256, 128]] as [number, number, number][]) {
    const s = generateSkull(makeGrid(shape), 11, 0);
    const cr = checkPair(t, s.complete, s.cranialDefective, s.cranialImplant, `${shape} cranial`);
    checkPair(t, s.complete, s.facialDefective, s.facialImplant, `${shape} facial`);
    t.true(s.factors.foreground > 0.005 && s.factors.foreground < 0.2, `${shape}: foreground ${s.factors.foreground}`);
    t.true(cr > 0);
  }
});

test('the vault shell has no gaps: in every axial slice through it, the ring is closed', (t) => {
  // A 2-D flood fill (4-connected) of the background from the slice corner must not reach the vault's
  // centre line, at coarse and fine resolution. (In 3-D the cavity opens through the foramen magnum.)
  for (const shape of [[32, 32, 32], [64, 64, 48], [128, 128, 64]] as [number, number, number][]) {
    const grid = makeGrid(shape);
    const [D, H, W] = grid.shape;
    for (const index of [0, 1, 2, 3, 4, 5]) {
      const s = generateSkull(grid, 5, index);
      const vaultTop = s.factors.vaultHeight / 2;
      for (const z of [0, 0.3 * vaultTop, 0.6 * vaultTop]) {
        const k = Math.round((z - grid.origin[2]) / grid.spacing[2]);
        const seen = new Uint8Array(D * H);
        const stack = [0];
        seen[0] = 1;
        while (stack.length > 0) {
          const q = stack.pop()!;
          const i = Math.floor(q / H), j = q % H;
          for (const [a, b] of [[i + 1, j], [i - 1, j], [i, j + 1], [i, j - 1]] as const) {
            if (a < 0 || b < 0 || a >= D || b >= H) continue;
            const r = a * H + b;
            if (seen[r] || s.complete[r * W + k]) continue;
            seen[r] = 1;
            stack.push(r);
          }
        }
        const ci = Math.round(-grid.origin[0] / grid.spacing[0]), cj = Math.round(-grid.origin[1] / grid.spacing[1]);
        t.is(seen[ci * H + cj], 0, `${shape} skull ${index}: slice z = ${z.toFixed(1)} mm leaks`);
      }
    }
  }
});

function hashTree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(path.relative(dir, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(dir);
  return out;
}

test('writeSkullDataset: SkullBreak layout, factors.json, manifest.csv, readable files, same bytes twice', async (t) => {
  for (const format of ['nii.gz', 'nrrd'] as const) {
    const a = path.join(tmp, `a-${format}`), b = path.join(tmp, `b-${format}`);
    const progress: number[] = [];
    const res = await writeSkullDataset(a, { n: 3, shape: [40, 40, 24], seed: 9, format, workers: 2, onProgress: (d) => progress.push(d) });
    await writeSkullDataset(b, { n: 3, shape: [40, 40, 24], seed: 9, format, workers: 0 });
    t.is(res.volumes, 15);
    t.deepEqual(progress, [1, 2, 3]);
    const ha = hashTree(a), hb = hashTree(b);
    t.deepEqual([...ha.entries()].sort(), [...hb.entries()].sort());
    t.deepEqual(readdirSync(a).sort(), ['complete_skull', 'defective_skull', 'factors.json', 'implant', 'manifest.csv']);
    t.deepEqual(readdirSync(path.join(a, 'defective_skull', 'facial')).sort(), [`000.${format}`, `001.${format}`, `002.${format}`]);
    const meta = JSON.parse(readFileSync(res.factorsFile, 'utf8')) as { skulls: SkullFactors[]; seed: number; shape: number[] };
    t.is(meta.skulls.length, 3);
    t.is(meta.seed, 9);
    t.deepEqual(meta.shape, [40, 40, 24]);
    const manifest = readFileSync(res.manifestFile, 'utf8').trim().split('\n');
    t.is(manifest[0], 'path,class,pair,kind');
    t.is(manifest.length, 1 + 15);
    // The files hold what generateSkullDataset gives in memory, with the synthetic grid's geometry.
    const mem = await generateSkullDataset({ n: 1, shape: [40, 40, 24], seed: 9, workers: 0 });
    const m = mem.skulls[0]!;
    for (const [rel, want] of [
      ['complete_skull', m.complete],
      ['defective_skull/cranial', m.cranial.defective],
      ['defective_skull/facial', m.facial.defective],
      ['implant/cranial', m.cranial.implant!],
      ['implant/facial', m.facial.implant!],
    ] as const) {
      const vol = await readVolume(path.join(a, rel, `000.${format}`));
      t.true(Buffer.from(vol.data.buffer, vol.data.byteOffset, vol.data.byteLength).equals(want.data), `${rel}/000.${format}`);
      for (let i = 0; i < 3; i++) t.true(Math.abs(vol.spacing[i]! - mem.grid.spacing[i]!) < 1e-5);
    }
    // And the folder is recognised as it is.
    const ds = await VolumeDataset.fromFolder(a);
    t.is(ds.layout, 'skullbreak');
    t.deepEqual(ds.countByLabel(), { complete: 3, cranial: 3, facial: 3 });
  }
});

test('a cancelled or failed write leaves no folder and no staging folder behind', async (t) => {
  const out = path.join(tmp, 'cancelled');
  const ac = new AbortController();
  const err = await t.throwsAsync(writeSkullDataset(out, { n: 6, shape: [32, 32, 32], workers: 2, signal: ac.signal, onProgress: () => ac.abort() }));
  t.is((err as { code?: string }).code, 'EABORT');
  t.false(existsSync(out));
  t.deepEqual(readdirSync(tmp).filter((n) => n.includes('cancelled')), []);
  // An existing non-empty folder is refused, untouched.
  const full = path.join(tmp, 'occupied');
  mkdirSync(full);
  writeFileSync(path.join(full, 'keep.txt'), 'mine');
  const before = hashTree(full);
  const err2 = await t.throwsAsync(writeSkullDataset(full, { n: 1, shape: [32, 32, 32], workers: 0 }));
  t.regex(err2!.message, /already exists and is not empty/);
  t.deepEqual(hashTree(full), before);
});
