// Datasets of binary skull volumes for training: lazy loading through a byte-bounded cache (a dataset
// larger than memory streams from disk), seeded shuffling, batching into the engine's layout,
// prefetching of the next batch while the current one trains, optional flips/shifts, and a
// train/validation split by pair (a skull's defective twins never land on the other side).
//
// Engine layout (see Batch): input Float32Array [N, C=1, D, H, W] with values 0/1, target Float32Array
// [N, D·H·W] of class indices 0/1; C order with W fastest (the project's axis convention).

import * as path from 'node:path';
import { VoxvaeError, invalid } from '../errors.js';
import * as is from '../is.js';
import { ByteLru, type CacheStats } from './cache.js';
import { shardOf } from '../dist/shard.js';
import { readVolume, readVolumeHeader } from './io.js';
import { type DatasetItem, type Discovered, type ItemKind, type LayoutName, type ManifestEntry, ITEM_KINDS, discoverFiles, discoverFolder, discoverManifest } from './layout.js';
import { type ResampleMode, resample, threshold } from './resample.js';
import { Rng } from './synth/rng.js';
import type { SyntheticDataset } from './synth/index.js';
import { type BinaryVolume, type ReadOptions, type Vec3, type Volume, type VolumeHeader, checkShape } from './volume.js';

export type { DatasetItem, ItemKind, LayoutName, ManifestEntry } from './layout.js';

export interface DatasetOptions {
  /** Resample every volume to [D, H, W] (default: keep the file's shape; all must then agree to batch). */
  shape?: Vec3;
  /** Resampling mode (default 'nearest', what skullVAE's MONAI Resized used). */
  resample?: ResampleMode;
  /** Binarise: voxel = 1 where value > threshold (default 0.5; use e.g. 300 for CT in HU). */
  threshold?: number;
  /** Budget of the volume cache in bytes (default 512 MiB). */
  cacheBytes?: number;
  /** What to do with a file that cannot be read: 'fail' (default) stops the run, 'skip' reports and leaves it out. */
  onError?: 'fail' | 'skip';
  /** Called for each file skipped (onError 'skip'). */
  onSkip?: (item: DatasetItem, error: VoxvaeError) => void;
  /** Kinds of volume to keep (default: complete, defective, other — implants left out). */
  kinds?: readonly ItemKind[];
  /** Largest voxel payload a file may declare (bytes; default 4 GiB). */
  maxBytes?: number;
}

export interface AugmentOptions {
  /** Probability of flipping each axis [D, H, W] (default [0.5, 0, 0]: left–right only, the anatomical mirror). */
  flip?: Vec3;
  /** Largest shift in voxels along each axis, uniform in [−s, s], zero-filled (default 0). */
  shift?: number | Vec3;
}

export interface BatchOptions {
  batchSize: number;
  /** Shuffle (default true). */
  shuffle?: boolean;
  /** Seed of shuffling and augmentation (default 0). */
  seed?: number;
  /** Epoch number: each epoch has its own order from the same seed (default 0). */
  epoch?: number;
  /** Leave out a last, smaller batch (default false). */
  dropLast?: boolean;
  augment?: AugmentOptions | null;
  /** Batches loaded ahead while the current one is used (default 1). */
  prefetch?: number;
  /** 'self' (default): target = input, as in a VAE; 'complete': target = the pair's complete skull (shape completion). */
  target?: 'self' | 'complete';
  /** Files read at once while assembling a batch (default 4). */
  concurrency?: number;
  /** Data-parallel training: this rank's part of the epoch's order (ts/dist shardOf: disjoint, covering,
   *  padded by wrapping so every rank has the same number of batches). Default: the whole order. */
  shard?: { rank: number; worldSize: number };
}

export interface BatchItem {
  /** Index in the dataset. */
  index: number;
  item: DatasetItem;
  /** Index of item.label in dataset.labels(). */
  labelIndex: number;
  flipped: [boolean, boolean, boolean];
  shift: Vec3;
}

/**
 * One batch in the engine's layout. `input` is [N, 1, D, H, W] and `target` [N, D·H·W], both float32 0/1,
 * C order (W fastest); `shape` = [N, 1, D, H, W]. N can be smaller than batchSize for the last batch or
 * when files were skipped. With target 'self' (a VAE reconstructs its input) `target` is the very same
 * Float32Array as `input` (C = 1, so the layouts coincide): treat both as read-only.
 */
export interface Batch {
  input: Float32Array;
  target: Float32Array;
  shape: [number, number, number, number, number];
  items: BatchItem[];
}

export interface SkippedFile {
  item: DatasetItem;
  error: VoxvaeError;
}

type Loader = (item: DatasetItem) => Promise<Volume>;

interface Shared {
  cache: ByteLru<string, BinaryVolume>;
  bad: Map<string, VoxvaeError>;
  skipped: SkippedFile[];
}

function asVoxvaeError(err: unknown, item: DatasetItem): VoxvaeError {
  if (err instanceof VoxvaeError) return err;
  return new VoxvaeError('EIO', `${item.path}: ${(err as Error)?.message ?? String(err)}`, { path: item.path, cause: err });
}

function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

export class VolumeDataset {
  /** The volumes, in a stable order (as discovered, sorted by name). */
  readonly items: readonly DatasetItem[];
  readonly root: string;
  readonly layout: LayoutName;
  readonly options: Readonly<DatasetOptions>;
  private readonly shared: Shared;
  private readonly loader: Loader;
  private labelList: string[] | null = null;

  private constructor(d: Discovered, options: DatasetOptions, loader: Loader | null, shared?: Shared) {
    validateOptions(options);
    const kinds = options.kinds ?? ['complete', 'defective', 'other'];
    this.items = Object.freeze(d.items.filter((it) => kinds.includes(it.kind)));
    this.root = d.root;
    this.layout = d.layout;
    this.options = Object.freeze({ ...options });
    this.shared = shared ?? {
      cache: new ByteLru<string, BinaryVolume>(options.cacheBytes ?? 512 * 1024 ** 2, (v) => v.data.byteLength),
      bad: new Map(),
      skipped: [],
    };
    const readOpts: ReadOptions = options.maxBytes !== undefined ? { maxBytes: options.maxBytes } : {};
    this.loader = loader ?? ((item) => readVolume(item.path, { ...readOpts, dataRoot: this.dataRootOf(item) }));
  }

  /** A folder: SkullBreak/SkullFix layout if recognised, else every .nii/.nii.gz/.nrrd/.nhdr below it. */
  static async fromFolder(dir: string, options: DatasetOptions = {}): Promise<VolumeDataset> {
    return new VolumeDataset(await discoverFolder(dir), options, null);
  }

  /** A manifest file (CSV with columns path,class,pair,kind or JSON). */
  static async fromManifest(file: string, options: DatasetOptions = {}): Promise<VolumeDataset> {
    return new VolumeDataset(await discoverManifest(file), options, null);
  }

  /** A list of files or manifest entries. */
  static fromFiles(files: readonly (string | ManifestEntry)[], options: DatasetOptions = {}): VolumeDataset {
    return new VolumeDataset(discoverFiles(files), options, null);
  }

  /** A folder or a manifest, whichever `target` is. */
  static async open(target: string, options: DatasetOptions = {}): Promise<VolumeDataset> {
    const { stat } = await import('node:fs/promises');
    const st = await stat(target).catch((err: unknown) => {
      throw new VoxvaeError('EIO', `cannot open ${target}: ${(err as Error).message}`, { path: target, cause: err });
    });
    return st.isDirectory() ? VolumeDataset.fromFolder(target, options) : VolumeDataset.fromManifest(target, options);
  }

  /**
   * The in-memory synthetic set (generateSkullDataset): complete skulls labelled 'complete', defective
   * ones 'cranial'/'facial' (kind 'defective'), implants (kind 'implant', left out unless asked for).
   */
  static fromSynthetic(ds: SyntheticDataset, options: DatasetOptions = {}): VolumeDataset {
    const volumes = new Map<string, BinaryVolume>();
    const items: DatasetItem[] = [];
    const add = (vol: BinaryVolume | null, label: string, kind: ItemKind, id: string, name: string): void => {
      if (!vol) return;
      const p = `synthetic:${name}/${id}`;
      volumes.set(p, vol);
      items.push({ path: p, label, kind, pairId: id, subset: '' });
    };
    // Sorted as skullVAE's file listing was: cranial, facial, complete (then implants).
    for (const s of ds.skulls) add(s.cranial.defective, 'cranial', 'defective', s.id, 'defective_skull/cranial');
    for (const s of ds.skulls) add(s.facial.defective, 'facial', 'defective', s.id, 'defective_skull/facial');
    for (const s of ds.skulls) add(s.complete, 'complete', 'complete', s.id, 'complete_skull');
    for (const s of ds.skulls) add(s.cranial.implant, 'cranial', 'implant', s.id, 'implant/cranial');
    for (const s of ds.skulls) add(s.facial.implant, 'facial', 'implant', s.id, 'implant/facial');
    const loader: Loader = async (item) => volumes.get(item.path)!;
    return new VolumeDataset({ root: '', layout: 'memory', items }, options, loader);
  }

  get length(): number {
    return this.items.length;
  }

  /** Files left out so far (onError 'skip'), with the reason. */
  get skipped(): readonly SkippedFile[] {
    return this.shared.skipped;
  }

  /** The distinct labels, sorted; BatchItem.labelIndex indexes this list. */
  labels(): string[] {
    this.labelList ??= [...new Set(this.items.map((i) => i.label))].sort();
    return this.labelList;
  }

  /** Count of items per label. */
  countByLabel(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const it of this.items) out[it.label] = (out[it.label] ?? 0) + 1;
    return out;
  }

  cacheStats(): CacheStats {
    return this.shared.cache.stats();
  }

  private dataRootOf(item: DatasetItem): string {
    if (this.layout !== 'files' && this.root !== '' && isInside(this.root, item.path)) return this.root;
    return path.dirname(item.path);
  }

  private process(vol: Volume): BinaryVolume {
    let v = vol;
    const shape = this.options.shape;
    if (shape && (v.shape[0] !== shape[0] || v.shape[1] !== shape[1] || v.shape[2] !== shape[2])) {
      v = resample(v, shape, this.options.resample ?? 'nearest');
    }
    return threshold(v, this.options.threshold ?? 0.5);
  }

  /** Volume `index`, binarised (and resampled when options.shape), through the cache. */
  async get(index: number): Promise<BinaryVolume> {
    const item = this.items[index];
    if (!item) return invalid('index', `must be an integer from 0 to ${this.items.length - 1}`, index);
    return this.shared.cache.getOrLoad(item.path, async () => {
      let raw: Volume;
      try {
        raw = await this.loader(item);
      } catch (err) {
        throw asVoxvaeError(err, item);
      }
      return this.process(raw);
    });
  }

  /** Volume `index` as stored (no resampling, thresholding or caching). */
  async readRaw(index: number): Promise<Volume> {
    const item = this.items[index];
    if (!item) return invalid('index', `must be an integer from 0 to ${this.items.length - 1}`, index);
    try {
      return await this.loader(item);
    } catch (err) {
      throw asVoxvaeError(err, item);
    }
  }

  /** The header of volume `index`, without loading voxels. */
  async header(index: number): Promise<VolumeHeader> {
    const item = this.items[index];
    if (!item) return invalid('index', `must be an integer from 0 to ${this.items.length - 1}`, index);
    if (this.layout === 'memory') {
      const v = await this.loader(item);
      return { format: 'memory', file: item.path, shape: [...v.shape], dtype: 'uint8', spacing: [...v.spacing], origin: [...v.origin], direction: [...v.direction], compressed: false };
    }
    return readVolumeHeader(item.path, { ...(this.options.maxBytes !== undefined ? { maxBytes: this.options.maxBytes } : {}), dataRoot: this.dataRootOf(item) });
  }

  /** A dataset of some of these items, sharing the cache, options and skip list. */
  subset(indices: readonly number[]): VolumeDataset {
    const items = indices.map((i) => {
      const it = this.items[i];
      if (!it) return invalid('indices', `must be integers from 0 to ${this.items.length - 1}`, i);
      return it;
    });
    return new VolumeDataset({ root: this.root, layout: this.layout, items }, { ...this.options, kinds: ITEM_KINDS }, this.loader, this.shared);
  }

  /**
   * Train/validation split by pair: whole skulls (pairId) are assigned, so a skull's complete, defective
   * and implant volumes are always on the same side. `validation` is a fraction (0..1) or a count of pairs.
   */
  split(options: { validation: number; seed?: number }): { train: VolumeDataset; validation: VolumeDataset } {
    const v = options.validation;
    const groups = new Map<string, number[]>();
    this.items.forEach((it, i) => {
      const key = it.subset ? `${it.subset}/${it.pairId}` : it.pairId;
      const g = groups.get(key);
      if (g) g.push(i);
      else groups.set(key, [i]);
    });
    const keys = [...groups.keys()].sort();
    let nVal: number;
    if (Number.isInteger(v) && v >= 1) nVal = v;
    else if (v >= 0 && v < 1) nVal = Math.round(v * keys.length);
    else return invalid('validation', 'must be a fraction in [0, 1) or a whole number of pairs', v);
    if (v > 0 && v < 1 && keys.length >= 2) nVal = Math.min(keys.length - 1, Math.max(1, nVal));
    if (nVal > keys.length) invalid('validation', `asks for more pairs than the ${keys.length} there are`, v);
    new Rng(options.seed ?? 0, 0x5b1).shuffle(keys);
    const valKeys = new Set(keys.slice(0, nVal));
    const train: number[] = [], val: number[] = [];
    for (const [k, idx] of groups) (valKeys.has(k) ? val : train).push(...idx);
    train.sort((a, b) => a - b);
    val.sort((a, b) => a - b);
    return { train: this.subset(train), validation: this.subset(val) };
  }

  /** Index of the complete skull of the same pair (for target 'complete'). */
  private completeIndex(): Map<string, number> {
    const m = new Map<string, number>();
    this.items.forEach((it, i) => {
      if (it.kind === 'complete') m.set(`${it.subset}\u0000${it.pairId}`, i);
    });
    return m;
  }

  /** The dataset order of one epoch (seeded shuffle), without skipped files. */
  order(options: { shuffle?: boolean; seed?: number; epoch?: number } = {}): number[] {
    const idx: number[] = [];
    this.items.forEach((it, i) => {
      if (!this.shared.bad.has(it.path)) idx.push(i);
    });
    if (options.shuffle ?? true) new Rng(options.seed ?? 0, 0x10000 + (options.epoch ?? 0)).shuffle(idx);
    return idx;
  }

  private async load(index: number): Promise<BinaryVolume | null> {
    const item = this.items[index]!;
    const known = this.shared.bad.get(item.path);
    if (known) {
      if (this.options.onError === 'skip') return null;
      throw known;
    }
    try {
      return await this.get(index);
    } catch (err) {
      const e = asVoxvaeError(err, item);
      if (this.options.onError !== 'skip') throw e;
      if (!this.shared.bad.has(item.path)) {
        this.shared.bad.set(item.path, e);
        this.shared.skipped.push({ item, error: e });
        this.options.onSkip?.(item, e);
      }
      return null;
    }
  }

  /**
   * Batches of one epoch in the engine's layout. The next `prefetch` batches are read while the
   * current one is in use. Files that fail are skipped or fail the run (options.onError).
   */
  async *batches(options: BatchOptions): AsyncGenerator<Batch, void, undefined> {
    const bs = is.integer('batchSize', options.batchSize);
    const prefetch = is.integer('prefetch', options.prefetch ?? 1, 0);
    const concurrency = is.integer('concurrency', options.concurrency ?? 4);
    const target = is.oneOf('target', options.target ?? 'self', ['self', 'complete'] as const);
    const aug = resolveAugment(options.augment ?? null);
    const seed = options.seed ?? 0, epoch = options.epoch ?? 0;
    let order = this.order({ shuffle: options.shuffle ?? true, seed, epoch });
    if (options.shard !== undefined) {
      const sh = is.options('shard', options.shard);
      const ws = is.integer('shard.worldSize', sh.worldSize, 1);
      order = shardOf(order, is.integer('shard.rank', sh.rank, 0, ws - 1), ws);
    }
    const groups: number[][] = [];
    for (let s = 0; s < order.length; s += bs) {
      const g = order.slice(s, s + bs);
      if (g.length < bs && options.dropLast) break;
      groups.push(g);
    }
    const completes = target === 'complete' ? this.completeIndex() : null;
    const labels = this.labels();
    const assemble = async (group: number[]): Promise<Batch | null> => {
      const vols: (BinaryVolume | null)[] = new Array(group.length).fill(null);
      const targets: (BinaryVolume | null)[] = new Array(group.length).fill(null);
      let next = 0;
      const work = async (): Promise<void> => {
        while (next < group.length) {
          const slot = next++;
          const idx = group[slot]!;
          const vol = await this.load(idx);
          if (!vol) continue;
          if (completes) {
            const it = this.items[idx]!;
            const ci = completes.get(`${it.subset}\u0000${it.pairId}`);
            if (ci === undefined) {
              throw new VoxvaeError('EINVAL', `${it.path}: target "complete" needs the complete skull of pair ${it.pairId}, which the dataset does not have`, { path: it.path });
            }
            const t = ci === idx ? vol : await this.load(ci);
            if (!t) continue;
            targets[slot] = t;
          }
          vols[slot] = vol;
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, group.length) }, work));
      const kept = group.map((idx, slot) => ({ idx, vol: vols[slot]!, tgt: targets[slot] ?? vols[slot]! })).filter((x) => x.vol !== null);
      if (kept.length === 0) return null;
      const shape = kept[0]!.vol.shape;
      for (const k of kept) {
        for (const v of [k.vol, k.tgt]) {
          if (v.shape[0] !== shape[0] || v.shape[1] !== shape[1] || v.shape[2] !== shape[2]) {
            throw new VoxvaeError('ESHAPE', `${this.items[k.idx]!.path} is ${v.shape.join('×')} but ${this.items[kept[0]!.idx]!.path} is ${shape.join('×')}; pass options.shape to resample every volume to one shape`, {
              path: this.items[k.idx]!.path,
            });
          }
        }
      }
      const nvox = shape[0] * shape[1] * shape[2];
      const input = new Float32Array(kept.length * nvox);
      const tgt = target === 'self' ? input : new Float32Array(kept.length * nvox);
      const items: BatchItem[] = kept.map((k, n) => {
        const rng = new Rng(seed, (epoch * 0x9e3779b1 + k.idx * 7919) | 0);
        const a = sampleAugment(aug, rng, shape);
        writeAugmented(k.vol, input, n * nvox, a);
        if (tgt !== input) writeAugmented(k.tgt, tgt, n * nvox, a);
        const item = this.items[k.idx]!;
        return { index: k.idx, item, labelIndex: labels.indexOf(item.label), flipped: a.flip, shift: a.shift };
      });
      return { input, target: tgt, shape: [kept.length, 1, shape[0], shape[1], shape[2]], items };
    };

    const queue: Promise<Batch | null>[] = [];
    let started = 0;
    const startNext = (): void => {
      if (started >= groups.length) return;
      const p = assemble(groups[started++]!);
      p.catch(() => undefined); // awaited in order below; this only stops an "unhandled" report when the consumer stops early
      queue.push(p);
    };
    startNext();
    while (queue.length > 0) {
      const current = queue.shift()!;
      // Keep `prefetch` batches loading behind the one about to be handed out.
      while (queue.length < prefetch && started < groups.length) startNext();
      const batch = await current;
      if (batch) yield batch;
      if (queue.length === 0) startNext();
    }
  }
}

function validateOptions(o: DatasetOptions): void {
  if (o.shape !== undefined) checkShape(o.shape, 'options.shape');
  if (o.resample !== undefined) is.oneOf('options.resample', o.resample, ['nearest', 'trilinear'] as const);
  if (o.threshold !== undefined) is.number('options.threshold', o.threshold);
  if (o.cacheBytes !== undefined) is.number('options.cacheBytes', o.cacheBytes, { min: 0 });
  if (o.onError !== undefined) is.oneOf('options.onError', o.onError, ['fail', 'skip'] as const);
  if (o.kinds !== undefined) {
    if (!Array.isArray(o.kinds)) invalid('options.kinds', `must list kinds among ${ITEM_KINDS.join(', ')}`, o.kinds);
    o.kinds.forEach((k, i) => is.oneOf(`options.kinds[${i}]`, k, ITEM_KINDS));
  }
}

interface ResolvedAugment {
  flip: Vec3;
  shift: Vec3;
}

interface Sampled {
  flip: [boolean, boolean, boolean];
  shift: Vec3;
}

function resolveAugment(a: AugmentOptions | null): ResolvedAugment | null {
  if (!a) return null;
  const flip = a.flip ?? [0.5, 0, 0];
  if (!(flip.length === 3 && flip.every((p) => p >= 0 && p <= 1))) invalid('augment.flip', 'must be three probabilities in [0, 1]', flip);
  const s = a.shift ?? 0;
  const shift: Vec3 = typeof s === 'number' ? [s, s, s] : [...s];
  if (!shift.every((x) => Number.isInteger(x) && x >= 0)) invalid('augment.shift', 'must be a non-negative integer or three of them (voxels)', s);
  return { flip: [...flip], shift };
}

function sampleAugment(a: ResolvedAugment | null, rng: Rng, shape: Vec3): Sampled {
  if (!a) return { flip: [false, false, false], shift: [0, 0, 0] };
  const flip: [boolean, boolean, boolean] = [rng.next() < a.flip[0], rng.next() < a.flip[1], rng.next() < a.flip[2]];
  const shift: Vec3 = [0, 1, 2].map((ax) => {
    const m = Math.min(a.shift[ax]!, shape[ax]! - 1);
    return m > 0 ? rng.int(-m, m) : 0;
  }) as Vec3;
  return { flip, shift };
}

/** Copies `vol` (0/1) into `out` at `offset` as float32, flipped then shifted (zero fill). */
function writeAugmented(vol: BinaryVolume, out: Float32Array, offset: number, a: Sampled): void {
  const [D, H, W] = vol.shape;
  const src = vol.data;
  if (!a.flip[0] && !a.flip[1] && !a.flip[2] && a.shift[0] === 0 && a.shift[1] === 0 && a.shift[2] === 0) {
    for (let p = 0; p < src.length; p++) out[offset + p] = src[p]!;
    return;
  }
  // Output index o along an axis reads source index map[o] (−1: outside → 0).
  const axisMap = (n: number, flip: boolean, shift: number): Int32Array => {
    const m = new Int32Array(n);
    for (let o = 0; o < n; o++) {
      const s = o - shift;
      m[o] = s < 0 || s >= n ? -1 : flip ? n - 1 - s : s;
    }
    return m;
  };
  const mi = axisMap(D, a.flip[0], a.shift[0]), mj = axisMap(H, a.flip[1], a.shift[1]), mk = axisMap(W, a.flip[2], a.shift[2]);
  let p = offset;
  for (let i = 0; i < D; i++) {
    const si = mi[i]!;
    for (let j = 0; j < H; j++) {
      const sj = mj[j]!;
      if (si < 0 || sj < 0) {
        out.fill(0, p, p + W);
        p += W;
        continue;
      }
      const row = (si * H + sj) * W;
      for (let k = 0; k < W; k++) {
        const sk = mk[k]!;
        out[p++] = sk < 0 ? 0 : src[row + sk]!;
      }
    }
  }
}
