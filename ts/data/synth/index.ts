// The synthetic skull dataset: the built-in default that lets anyone run the whole method end to end.
// Default set = 100 complete skulls, each with a cranial-defect and a facial-defect twin (300 training
// volumes, as in the skullVAE experiments) and both implants, at 128×128×64, seed 1.
//
// Work is spread over a pool of worker threads (one skull per job); every skull draws from its own
// random stream (seed, index), so the bytes do not depend on the number of workers or their timing.

import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { VoxvaeError, invalid } from '../../errors.js';
import * as is from '../../is.js';
import { buildFolderAtomic, writeFileAtomic } from '../atomic.js';
import { type BinaryVolume, type Vec3, checkShape } from '../volume.js';
import { SYNTH_FORMATS, type SkullJobConfig, type SkullJobResult, type SynthFormat, maskVolume, runSkullJob, skullId, skullPaths } from './job.js';
import { DEFAULT_FOV, DEFAULT_FOV_CENTER, type SkullFactors, type SkullOptions, type SynthGrid, makeGrid } from './skull.js';

export * from './skull.js';
export { SYNTH_FORMATS, type SynthFormat, skullPaths } from './job.js';

export const DEFAULT_SYNTH_SHAPE: Vec3 = [128, 128, 64];

export interface SynthOptions extends SkullOptions {
  /** Number of complete skulls (default 100); each also yields a cranial and a facial defect version. */
  n?: number;
  /** Grid shape [D, H, W] (default 128×128×64; anything from 16³ up). */
  shape?: Vec3;
  /** Seed of the whole set (default 1). */
  seed?: number;
  /** Field of view in mm along x, y, z (default 200×250×236). */
  fov?: Vec3;
  /** Centre of the field of view, RAS mm (default [0, 5, -20]). */
  fovCenter?: Vec3;
  /** Worker threads (default: the number of cores, at most 8); 0 draws in this thread. */
  workers?: number;
  /** Called after each skull. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface SyntheticSkull {
  /** Zero-padded index, the pair id shared by the three volumes and the implants. */
  id: string;
  factors: SkullFactors;
  complete: BinaryVolume;
  cranial: { defective: BinaryVolume; implant: BinaryVolume | null };
  facial: { defective: BinaryVolume; implant: BinaryVolume | null };
}

export interface SyntheticDataset {
  grid: SynthGrid;
  seed: number;
  skulls: SyntheticSkull[];
}

interface Resolved {
  n: number;
  seed: number;
  workers: number;
  grid: SynthGrid;
  skull: SkullOptions;
}

function resolve(options: SynthOptions): Resolved {
  const n = is.integer('n', options.n ?? 100, 1, 100000);
  const seed = options.seed ?? 1;
  if (!Number.isSafeInteger(seed)) invalid('seed', 'must be an integer', seed);
  const shape = checkShape(options.shape ?? DEFAULT_SYNTH_SHAPE, 'shape');
  if (shape.some((s) => s < 16 || s > 1024)) invalid('shape', 'must be 16 to 1024 voxels along each axis', shape);
  const fov = options.fov ?? DEFAULT_FOV;
  if (!(fov.length === 3 && fov.every((f) => Number.isFinite(f) && f > 0))) invalid('fov', 'must be three positive numbers (mm)', fov);
  const workers = is.integer('workers', options.workers ?? Math.min(8, availableParallelism()), 0, 1024);
  const skull: SkullOptions = {};
  if (options.cranialDefect !== undefined) skull.cranialDefect = options.cranialDefect;
  if (options.facialDefect !== undefined) skull.facialDefect = options.facialDefect;
  if (options.mandibleProbability !== undefined) skull.mandibleProbability = options.mandibleProbability;
  return { n, seed, workers: Math.min(workers, n), grid: makeGrid(shape, fov, options.fovCenter ?? DEFAULT_FOV_CENTER), skull };
}

function startWorker(config: SkullJobConfig): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./worker.js', import.meta.url), { workerData: config });
  // Running from source under tsx (tests, development): Node does not pass tsx's loader hooks on to
  // worker threads, so the worker first registers them, then imports the .ts worker.
  const tsx = import.meta.resolve('tsx/esm/api');
  const worker = new URL('./worker.ts', import.meta.url).href;
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(worker)}); })`;
  return new Worker(boot, { eval: true, workerData: config });
}

/**
 * Runs `runSkullJob` for indices 0..n-1 on `workers` threads (or in this thread), handing each result to
 * `consume` (awaited, at most 2 per worker pending, so memory stays bounded while files are written).
 */
async function runJobs(config: SkullJobConfig, n: number, workers: number, consume: (r: SkullJobResult) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const aborted = (): VoxvaeError => new VoxvaeError('EABORT', 'synthetic dataset generation was cancelled');
  if (workers === 0) {
    for (let i = 0; i < n; i++) {
      if (signal?.aborted) throw aborted();
      await consume(await runSkullJob(config, i));
    }
    return;
  }
  const pool: Worker[] = [];
  let next = 0;
  let pending = 0;
  let finished = 0;
  const maxPending = 2 * workers;
  const waiting: Worker[] = [];
  let consumeChain = Promise.resolve();
  return new Promise<void>((resolveAll, rejectAll) => {
    let failed = false;
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      for (const w of pool) void w.terminate();
      // Let a write in progress finish first, so the caller can clean up a folder nobody writes to.
      void consumeChain.finally(() => rejectAll(err));
    };
    const onAbort = (): void => fail(aborted());
    signal?.addEventListener('abort', onAbort, { once: true });
    const dispatch = (w: Worker): void => {
      if (failed) return;
      if (next >= n) {
        w.postMessage(null);
        return;
      }
      if (pending >= maxPending) {
        waiting.push(w);
        return;
      }
      w.postMessage({ index: next++ });
    };
    for (let t = 0; t < workers; t++) {
      let w: Worker;
      try {
        w = startWorker(config);
      } catch (err) {
        fail(new VoxvaeError('EINTERNAL', `cannot start a synthesis worker thread (${(err as Error).message}); pass workers: 0 to draw in this thread`, { cause: err }));
        return;
      }
      pool.push(w);
      w.on('message', (msg: { ok: true; result: SkullJobResult } | { ok: false; index: number; message: string; code?: string }) => {
        if (!msg.ok) {
          fail(new VoxvaeError((msg.code as never) ?? 'EINTERNAL', `synthetic skull ${msg.index}: ${msg.message}`));
          return;
        }
        pending++;
        const result = msg.result;
        consumeChain = consumeChain.then(async () => {
          if (failed) return;
          await consume(result);
          pending--;
          finished++;
          const w2 = waiting.shift();
          if (w2) dispatch(w2);
          if (finished === n) {
            signal?.removeEventListener('abort', onAbort);
            for (const x of pool) x.postMessage(null);
            resolveAll();
          }
        }).catch(fail);
        dispatch(w);
      });
      w.on('error', (err) => fail(new VoxvaeError('EINTERNAL', `a synthesis worker failed: ${err.message}`, { cause: err })));
      w.on('exit', (code) => {
        if (code !== 0 && finished < n) fail(new VoxvaeError('EINTERNAL', `a synthesis worker exited with code ${code}`));
      });
      dispatch(w);
    }
  });
}

/**
 * Generates the synthetic dataset in memory: `n` skulls, each complete, with a cranial defect and with a
 * facial defect, plus both implants (implant = complete − defective, exactly).
 * Memory: 5 × D·H·W bytes per skull (≈ 500 MiB for the default 100 skulls at 128×128×64); pass
 * `implants: false` to drop the implants, or use writeSkullDataset and stream from disk.
 */
export async function generateSkullDataset(options: SynthOptions & { implants?: boolean } = {}): Promise<SyntheticDataset> {
  const r = resolve(options);
  const digits = Math.max(3, String(r.n - 1).length);
  const config: SkullJobConfig = { grid: r.grid, seed: r.seed, skull: r.skull, cycleCranial: true, implants: options.implants ?? true, encode: null };
  const skulls: SyntheticSkull[] = new Array(r.n);
  let done = 0;
  await runJobs(config, r.n, r.workers, async (res) => {
    const m = res.masks!;
    const vol = (d: Uint8Array | null): BinaryVolume | null => (d ? maskVolume(r.grid, d) : null);
    skulls[res.index] = {
      id: skullId(res.index, digits),
      factors: res.factors,
      complete: maskVolume(r.grid, m.complete),
      cranial: { defective: maskVolume(r.grid, m.cranialDefective), implant: vol(m.cranialImplant) },
      facial: { defective: maskVolume(r.grid, m.facialDefective), implant: vol(m.facialImplant) },
    };
    options.onProgress?.(++done, r.n);
  }, options.signal);
  return { grid: r.grid, seed: r.seed, skulls };
}

export interface WriteSynthOptions extends SynthOptions {
  /** File format (default nii.gz). */
  format?: SynthFormat;
  /** gzip level 1–9 (default 1: a 128×128×64 mask shrinks to ~22 KB, 3× faster than level 6, which halves that). */
  level?: number;
  /** Replace a non-empty folder (default false: refuse). */
  overwrite?: boolean;
}

export interface WrittenSyntheticDataset {
  dir: string;
  /** Volume files written (5 per skull). */
  volumes: number;
  factorsFile: string;
  manifestFile: string;
}

/**
 * Writes the synthetic dataset to `dir` in the SkullBreak layout (complete_skull/ID, defective_skull/
 * {cranial,facial}/ID, implant/{cranial,facial}/ID), plus factors.json (ground truth per skull) and
 * manifest.csv (path,class,pair,kind). The folder appears whole or not at all.
 */
export async function writeSkullDataset(dir: string, options: WriteSynthOptions = {}): Promise<WrittenSyntheticDataset> {
  const r = resolve(options);
  const format = is.oneOf('format', options.format ?? 'nii.gz', SYNTH_FORMATS);
  const level = is.integer('level', options.level ?? 1, 1, 9);
  const digits = Math.max(3, String(r.n - 1).length);
  const config: SkullJobConfig = { grid: r.grid, seed: r.seed, skull: r.skull, cycleCranial: true, implants: true, encode: { format, level, digits } };
  const target = path.resolve(dir);
  return buildFolderAtomic(
    target,
    async (staging) => {
      for (const sub of ['complete_skull', 'defective_skull/cranial', 'defective_skull/facial', 'implant/cranial', 'implant/facial']) {
        await fsp.mkdir(path.join(staging, sub), { recursive: true });
      }
      const factors: SkullFactors[] = new Array(r.n);
      let done = 0;
      await runJobs(config, r.n, r.workers, async (res) => {
        // Plain writes: the staging folder as a whole is what is atomic.
        await Promise.all(res.files!.map((f) => fsp.writeFile(path.join(staging, f.rel), f.bytes)));
        factors[res.index] = res.factors;
        options.onProgress?.(++done, r.n);
      }, options.signal);
      const rows = ['path,class,pair,kind'];
      for (let i = 0; i < r.n; i++) {
        const id = skullId(i, digits);
        const p = skullPaths(id, format);
        rows.push(`${p.complete},complete,${id},complete`);
        rows.push(`${p.cranialDefective},cranial,${id},defective`);
        rows.push(`${p.facialDefective},facial,${id},defective`);
        rows.push(`${p.cranialImplant},cranial,${id},implant`);
        rows.push(`${p.facialImplant},facial,${id},implant`);
      }
      const meta = {
        generator: 'voxvae synthetic skulls',
        version: 1,
        seed: r.seed,
        n: r.n,
        shape: r.grid.shape,
        spacing: r.grid.spacing,
        origin: r.grid.origin,
        fov: options.fov ?? DEFAULT_FOV,
        format,
        skulls: factors,
      };
      await writeFileAtomic(path.join(staging, 'factors.json'), Buffer.from(JSON.stringify(meta, null, 1) + '\n'));
      await writeFileAtomic(path.join(staging, 'manifest.csv'), Buffer.from(rows.join('\n') + '\n'));
      return { dir: target, volumes: 5 * r.n, factorsFile: path.join(target, 'factors.json'), manifestFile: path.join(target, 'manifest.csv') };
    },
    { overwrite: options.overwrite ?? false },
  );
}
