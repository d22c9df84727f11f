// Datasets: SkullBreak/SkullFix layouts as they are, manifests, streaming a dataset larger than the
// cache, prefetching, seeded shuffling, the engine's batch layout, augmentation, split by pair, and
// a bad file skipped or failing the run.

import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  type BinaryVolume,
  type Vec3,
  VolumeDataset,
  createVolume,
  datasetInfo,
  generateSkullDataset,
  readVolume,
  threshold,
  writeSkullDataset,
  writeVolume,
} from '../ts/data/index.js';
import { VoxvaeError } from '../ts/errors.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'voxvae-ds-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

const SYN = path.join(tmp, 'synth');
const SHAPE: Vec3 = [32, 32, 32];
const ready = writeSkullDataset(SYN, { n: 6, shape: SHAPE, seed: 2, format: 'nrrd', workers: 0 });

/** A distinct small binary volume per id (a box whose corner depends on n). */
function boxVolume(n: number, shape: Vec3 = [12, 10, 8]): BinaryVolume {
  const data = new Uint8Array(shape[0] * shape[1] * shape[2]);
  for (let i = 1 + (n % 3); i < 6 + (n % 4); i++) for (let j = 2; j < 7; j++) for (let k = 1; k < 4 + (n % 3); k++) data[(i * shape[1] + j) * shape[2] + k] = 1;
  return createVolume(shape, data);
}

test('the synthetic folder is read as a SkullBreak layout, implants left out unless asked for', async (t) => {
  await ready;
  const ds = await VolumeDataset.fromFolder(SYN);
  t.is(ds.layout, 'skullbreak');
  t.is(ds.length, 18);
  t.deepEqual(ds.countByLabel(), { complete: 6, cranial: 6, facial: 6 });
  t.deepEqual(ds.labels(), ['complete', 'cranial', 'facial']);
  const all = await VolumeDataset.fromFolder(SYN, { kinds: ['complete', 'defective', 'implant', 'other'] });
  t.is(all.length, 30);
  const pairs = new Set(all.items.map((i) => i.pairId));
  t.deepEqual([...pairs].sort(), ['000', '001', '002', '003', '004', '005']);
  const info = await datasetInfo(SYN);
  t.is(info.files, 30);
  t.is(info.pairs, 6);
  t.deepEqual(info.byClass['cranial'], { defective: 6, implant: 6 });
  t.deepEqual(info.shapes, [{ shape: SHAPE, count: 30 }]);
  t.true(info.foreground!.mean > 0 && info.foreground!.max < 0.3);
  t.deepEqual(info.errors, []);
});

test('the SkullFix layout (flat defective_skull/ and implant/) in subset folders', async (t) => {
  const root = path.join(tmp, 'skullfix');
  for (const subset of ['training_set', 'test_set']) {
    for (const d of ['complete_skull', 'defective_skull', 'implant']) mkdirSync(path.join(root, subset, d), { recursive: true });
    for (let n = 0; n < 3; n++) {
      const id = String(n).padStart(3, '0');
      await writeVolume(path.join(root, subset, 'complete_skull', `${id}.nrrd`), boxVolume(n));
      await writeVolume(path.join(root, subset, 'defective_skull', `${id}.nrrd`), boxVolume(n + 1));
      await writeVolume(path.join(root, subset, 'implant', `${id}.nrrd`), boxVolume(n + 2));
    }
  }
  const ds = await VolumeDataset.fromFolder(root, { kinds: ['complete', 'defective', 'implant'] });
  t.is(ds.layout, 'skullfix');
  t.is(ds.length, 18);
  t.deepEqual(ds.countByLabel(), { complete: 6, defective: 12 });
  // "test_set/000" and "training_set/000" are different skulls.
  t.is(new Set(ds.items.map((i) => `${i.subset}/${i.pairId}`)).size, 6);
  t.deepEqual([...new Set(ds.items.map((i) => i.subset))].sort(), ['test_set', 'training_set']);
});

test('manifests: CSV (quoted fields) and JSON, paths relative to the manifest', async (t) => {
  const root = path.join(tmp, 'manifest');
  mkdirSync(path.join(root, 'vols'), { recursive: true });
  for (let n = 0; n < 4; n++) await writeVolume(path.join(root, 'vols', `v${n}.nii.gz`), boxVolume(n));
  writeFileSync(path.join(root, 'list.csv'), 'path,class,pair\nvols/v0.nii.gz,complete,a\nvols/v1.nii.gz,"cranial, large",a\n"vols/v2.nii.gz",complete,b\nvols/v3.nii.gz,facial,b\n');
  const csv = await VolumeDataset.fromManifest(path.join(root, 'list.csv'));
  t.is(csv.layout, 'manifest');
  t.deepEqual(csv.items.map((i) => [i.label, i.kind, i.pairId]), [
    ['complete', 'complete', 'a'],
    ['cranial, large', 'defective', 'a'],
    ['complete', 'complete', 'b'],
    ['facial', 'defective', 'b'],
  ]);
  writeFileSync(path.join(root, 'list.json'), JSON.stringify([{ path: 'vols/v0.nii.gz', class: 'complete' }, 'vols/v3.nii.gz']));
  const json = await VolumeDataset.open(path.join(root, 'list.json'));
  t.deepEqual(json.items.map((i) => [i.label, i.kind, i.pairId]), [
    ['complete', 'complete', 'v0'],
    ['volume', 'other', 'v3'],
  ]);
  t.deepEqual(Array.from((await json.get(1)).data), Array.from(boxVolume(3).data));
  writeFileSync(path.join(root, 'bad.csv'), 'file,label\nx,y\n');
  const err = await t.throwsAsync(VolumeDataset.fromManifest(path.join(root, 'bad.csv')));
  t.is((err as VoxvaeError).code, 'EFORMAT');
  t.regex(err!.message, /bad\.csv: a CSV manifest needs a header row with a "path" column/);
  const files = VolumeDataset.fromFiles([path.join(root, 'vols', 'v1.nii.gz'), { path: path.join(root, 'vols', 'v2.nii.gz'), class: 'complete' }]);
  t.is(files.length, 2);
});

test('a dataset larger than the cache streams from disk: the cache stays within its budget', async (t) => {
  await ready;
  const volBytes = SHAPE[0] * SHAPE[1] * SHAPE[2];
  const ds = await VolumeDataset.fromFolder(SYN, { cacheBytes: 4 * volBytes });
  const direct = await Promise.all(ds.items.map((it) => readVolume(it.path)));
  let seen = 0;
  for (const epoch of [0, 1]) {
    for await (const b of ds.batches({ batchSize: 4, epoch, seed: 1, prefetch: 1 })) {
      const n = b.shape[0];
      for (let m = 0; m < n; m++) {
        const want = direct[b.items[m]!.index]!.data;
        const got = b.input.subarray(m * volBytes, (m + 1) * volBytes);
        let diff = 0;
        for (let p = 0; p < volBytes; p++) if (got[p] !== want[p]) diff++;
        t.is(diff, 0, `batch voxel data of ${b.items[m]!.item.path}`);
      }
      seen += n;
      const st = ds.cacheStats();
      t.true(st.bytes <= st.maxBytes);
    }
  }
  const st = ds.cacheStats();
  t.is(seen, 36);
  t.true(st.peakBytes <= 4 * volBytes, `peak ${st.peakBytes}`);
  t.true(st.misses > ds.length, `misses ${st.misses}: volumes were read again after eviction`);
  t.true(st.evictions > 0);
});

test('prefetching: the next batch is being read while the current one is in use', async (t) => {
  await ready;
  for (const prefetch of [0, 1, 2]) {
    const ds = await VolumeDataset.fromFolder(SYN, { cacheBytes: 0 });
    const it = ds.batches({ batchSize: 3, prefetch, shuffle: false });
    const first = await it.next();
    t.false(first.done);
    // Loads are registered when they start: the batch in hand plus `prefetch` batches ahead.
    t.is(ds.cacheStats().misses, 3 * (1 + prefetch), `prefetch ${prefetch}`);
    await it.return(undefined);
  }
});

test('batches: the engine layout, labels, seeded shuffling per epoch, dropLast', async (t) => {
  await ready;
  const ds = await VolumeDataset.fromFolder(SYN);
  const order = async (seed: number, epoch: number): Promise<number[]> => {
    const out: number[] = [];
    for await (const b of ds.batches({ batchSize: 5, seed, epoch })) {
      t.deepEqual(b.shape, [b.items.length, 1, 32, 32, 32]);
      t.is(b.input.length, b.items.length * 32 * 32 * 32);
      t.is(b.target.length, b.input.length);
      for (const it of b.items) t.is(ds.labels()[it.labelIndex], it.item.label);
      out.push(...b.items.map((i) => i.index));
    }
    return out;
  };
  const a = await order(1, 0), b = await order(1, 0), c = await order(1, 1), d = await order(2, 0);
  t.deepEqual(a, b);
  t.notDeepEqual(a, c);
  t.notDeepEqual(a, d);
  t.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 18 }, (_, i) => i));
  const sizes: number[] = [];
  for await (const x of ds.batches({ batchSize: 5, dropLast: true })) sizes.push(x.shape[0]);
  t.deepEqual(sizes, [5, 5, 5]);
  const plain: number[] = [];
  for await (const x of ds.batches({ batchSize: 7, shuffle: false })) plain.push(...x.items.map((i) => i.index));
  t.deepEqual(plain, Array.from({ length: 18 }, (_, i) => i));
});

test('split by pair: no skull on both sides, deterministic, fraction or count', async (t) => {
  await ready;
  const ds = await VolumeDataset.fromFolder(SYN, { kinds: ['complete', 'defective', 'implant'] });
  const { train, validation } = ds.split({ validation: 0.34, seed: 5 });
  const tp = new Set(train.items.map((i) => i.pairId)), vp = new Set(validation.items.map((i) => i.pairId));
  t.is(vp.size, 2);
  t.is(tp.size, 4);
  for (const p of vp) t.false(tp.has(p), `pair ${p} on both sides`);
  t.is(train.length + validation.length, ds.length);
  t.is(validation.length, 10); // 2 pairs × (complete, cranial, facial, 2 implants)
  const again = ds.split({ validation: 0.34, seed: 5 });
  t.deepEqual(again.validation.items.map((i) => i.path), validation.items.map((i) => i.path));
  t.is(ds.split({ validation: 1, seed: 1 }).validation.length, 5);
  t.throws(() => ds.split({ validation: 7 }), { message: /more pairs than the 6/ });
});

test('augmentation flips and shifts input and target alike; target "complete" is the pair\'s complete skull', async (t) => {
  const mem = await generateSkullDataset({ n: 2, shape: [24, 20, 16], seed: 4, workers: 0 });
  const ds = VolumeDataset.fromSynthetic(mem);
  const nvox = 24 * 20 * 16;
  let flips = 0;
  for await (const b of ds.batches({ batchSize: 6, target: 'complete', augment: { flip: [1, 0, 0], shift: [0, 2, 0] }, seed: 3 })) {
    for (const [m, it] of b.items.entries()) {
      const src = (await ds.get(it.index)).data;
      const complete = mem.skulls.find((s) => s.id === it.item.pairId)!.complete.data;
      t.true(it.flipped[0]);
      flips++;
      const dj = it.shift[1];
      t.true(Math.abs(dj) <= 2 && it.shift[0] === 0 && it.shift[2] === 0);
      let bad = 0;
      for (let i = 0; i < 24; i++) for (let j = 0; j < 20; j++) for (let k = 0; k < 16; k++) {
        const sj = j - dj;
        const o = m * nvox + (i * 20 + j) * 16 + k;
        const si = (23 - i) * 20 + sj;
        const wantIn = sj < 0 || sj >= 20 ? 0 : src[si * 16 + k]!;
        const wantT = sj < 0 || sj >= 20 ? 0 : complete[si * 16 + k]!;
        if (b.input[o] !== wantIn || b.target[o] !== wantT) bad++;
      }
      t.is(bad, 0);
    }
    t.not(b.target, b.input);
  }
  t.is(flips, 6);
  // Without augmentation and with target "self", target is the input itself.
  for await (const b of ds.batches({ batchSize: 2 })) t.is(b.target, b.input);
});

test('volumes of different shapes: refused unless a target shape is given, then resampled (nearest) and binarised', async (t) => {
  const root = path.join(tmp, 'mixed');
  mkdirSync(root);
  const big = createVolume([24, 20, 16], new Float32Array(24 * 20 * 16).map((_, p) => (p % 7) * 100));
  await writeVolume(path.join(root, 'a.nii'), big);
  await writeVolume(path.join(root, 'b.nii'), boxVolume(1));
  const loose = await VolumeDataset.fromFolder(root);
  const err = await t.throwsAsync(async () => {
    for await (const _ of loose.batches({ batchSize: 2 })) void _;
  });
  t.is((err as VoxvaeError).code, 'ESHAPE');
  t.regex(err!.message, /pass options.shape/);
  const ds = await VolumeDataset.fromFolder(root, { shape: [12, 10, 8], threshold: 250 });
  const v = await ds.get(0);
  t.deepEqual(v.shape, [12, 10, 8]);
  t.is(v.data.constructor, Uint8Array);
  // Nearest from 24×20×16 to 12×10×8 takes every other voxel; value > 250 ⇔ (p % 7) ≥ 3.
  const want = threshold(big, 250).data;
  let bad = 0;
  for (let i = 0; i < 12; i++) for (let j = 0; j < 10; j++) for (let k = 0; k < 8; k++) if (v.data[(i * 10 + j) * 8 + k] !== want[(2 * i * 20 + 2 * j) * 16 + 2 * k]) bad++;
  t.is(bad, 0);
  for await (const b of ds.batches({ batchSize: 2 })) t.deepEqual(b.shape, [2, 1, 12, 10, 8]);
});

test('one bad file: fails the run naming it (default), or is reported, skipped and left out of later epochs', async (t) => {
  const root = path.join(tmp, 'onebad');
  mkdirSync(path.join(root, 'complete_skull'), { recursive: true });
  for (let n = 0; n < 5; n++) await writeVolume(path.join(root, 'complete_skull', `00${n}.nii.gz`), boxVolume(n));
  const badFile = path.join(root, 'complete_skull', '002.nii.gz');
  writeFileSync(badFile, Buffer.from('not a volume at all, just text'));
  const strict = await VolumeDataset.fromFolder(root);
  const err = await t.throwsAsync(async () => {
    for await (const _ of strict.batches({ batchSize: 2, shuffle: false })) void _;
  });
  t.true(err instanceof VoxvaeError);
  t.true(err!.message.includes(badFile), err!.message);

  const reported: string[] = [];
  const lenient = await VolumeDataset.fromFolder(root, { onError: 'skip', onSkip: (item, e) => reported.push(`${item.path}: ${e.code}`) });
  for (const epoch of [0, 1]) {
    const got: number[] = [];
    for await (const b of lenient.batches({ batchSize: 2, shuffle: false, epoch })) got.push(...b.items.map((i) => i.index));
    t.deepEqual(got, [0, 1, 3, 4]);
  }
  t.deepEqual(reported, [`${badFile}: EFORMAT`]);
  t.is(lenient.skipped.length, 1);
  const info = await datasetInfo(root);
  t.is(info.errors.length, 1);
  t.is(info.errors[0]!.path, badFile);
});
