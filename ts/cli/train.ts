// `voxvae train`: trains a model on a folder of NIfTI/NRRD skulls (SkullBreak/SkullFix layouts or any
// folder) or a manifest, with one of the methods of the library (a β-VAE, the two-stage aggregated VAE,
// ControlVAE/DynamicVAE β control, Rivera's recipe). Everything checkable is checked before any work: the
// output folder is created and written to, every number is validated naming its flag, the data is
// opened, its shape checked against the strides and its size against the batch. Then the training runs
// with a progress bar per epoch, checkpoints every N epochs, and stops cleanly on Ctrl-C after writing a
// checkpoint that `--resume` continues from, bit for bit on the CPU.
//
// Writes <out>/model.safetensors, <out>/training.json (options, data, the model grid's geometry, the
// curves), <out>/train-options.json (what --resume reuses) and <out>/checkpoints/.
import { readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Command, Option } from 'commander';
import { monaiVarAutoEncoder, type VaeConfig } from '../config.js';
import { VolumeDataset } from '../data/dataset.js';
import type { ResampleMode } from '../data/resample.js';
import type { Vec3 } from '../data/volume.js';
import { VoxvaeError, invalid } from '../errors.js';
import { controllerBeta } from '../experiment/beta_tradeoff.js';
import * as is from '../is.js';
import { writeFileAtomic } from '../safetensors.js';
import { rank } from '../dist/index.js';
import { trainRivera } from '../train/rivera.js';
import { reconstructionDice, Trainer, type EpochInfo, type TrainerOptions, type TrainResult } from '../train/trainer.js';
import { SKULLVAE_STAGE2 } from '../train/two_stage.js';
import { BACKENDS, LATENT_MODES, type Backend, type LatentMode } from '../types.js';
import { Decoder, Vae, setThreads } from '../vae.js';
import { finiteNumber, integer, integers, nonNegativeNumber, oneOf, positiveInt, positiveNumber, shape3 } from './args.js';
import { EXIT, TrainingProgress, duration, interruptSignal, mustExist, prepareOutDir, progressStream } from './run.js';

export const TRAIN_METHODS = ['vae', 'aggregated', 'controlvae', 'dynamicvae', 'rivera'] as const;
export type TrainMethod = (typeof TRAIN_METHODS)[number];

export const METHOD_HELP: Record<TrainMethod, string> = {
  vae: 'a β-VAE, loss 80·Dice(sum) + β·KL(sum) (default β 1e-4, the sharp baseline)',
  aggregated: 'the two-stage aggregated VAE: stage 1 a β-VAE (default β 0.1), stage 2 a new decoder on the frozen encoder\'s latents (--stage2-latent, default mean)',
  controlvae: 'β set by the ControlVAE PI controller to hold the KL at --kl-target nats',
  dynamicvae: 'β set by the DynamicVAE incremental PI controller to hold the KL at --kl-target nats',
  rivera: "Rivera's recipe: population prior + variance penalty instead of the KL (batch ≥ 2)",
};

/** Every option of `voxvae train`, as flags give them (camelCase) and as a --config JSON file spells them. */
export interface TrainCliOptions {
  data?: string;
  out: string;
  config?: string;
  method: TrainMethod;
  shape?: Vec3;
  channels?: number[];
  latent: number;
  epochs: number;
  stage2Epochs?: number;
  stage2Latent: LatentMode;
  batch: number;
  beta?: number;
  klTarget: number;
  lr: number;
  validation: number;
  checkpointEvery: number;
  keep?: number;
  resume?: string | boolean;
  /** Replace a training already in --out (its checkpoints and model). */
  overwrite?: boolean;
  backend: Backend;
  threads?: number;
  seed: number;
  threshold: number;
  resample: ResampleMode;
  flip: boolean;
  json: boolean;
}

export const TRAIN_DEFAULTS: Omit<TrainCliOptions, 'out'> = {
  method: 'vae',
  latent: 32,
  epochs: 20,
  stage2Latent: 'mean',
  batch: 4,
  klTarget: 20,
  lr: 1e-3,
  validation: 0.2,
  checkpointEvery: 1,
  backend: 'cpu',
  seed: 1,
  threshold: 0.5,
  resample: 'nearest',
  flip: false,
  json: false,
};

const FILE_KEYS = ['data', 'method', 'shape', 'channels', 'latent', 'epochs', 'stage2Epochs', 'stage2Latent', 'batch', 'beta', 'klTarget', 'lr', 'validation', 'checkpointEvery', 'keep', 'backend', 'threads', 'seed', 'threshold', 'resample', 'flip'] as const;

const flagOf = (k: string): string => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** Checks every option as the API checks it, naming the flag (and the config file a value came from). */
export function checkTrainOptions(o: TrainCliOptions, from: Record<string, string> = {}): TrainCliOptions {
  const f = (k: keyof TrainCliOptions): string => (from[k] ? `${flagOf(k)} (from ${from[k]})` : flagOf(k));
  is.oneOf(f('method'), o.method, TRAIN_METHODS);
  if (o.shape !== undefined) is.integers(f('shape'), o.shape, { count: 3, min: 1, max: 4096 });
  if (o.channels !== undefined) is.integers(f('channels'), o.channels, { maxLength: 12, min: 1, max: 8192 });
  is.integer(f('latent'), o.latent, 1, 65536);
  is.integer(f('epochs'), o.epochs, 1, 1e6);
  if (o.stage2Epochs !== undefined) is.integer(f('stage2Epochs'), o.stage2Epochs, 1, 1e6);
  is.oneOf(f('stage2Latent'), o.stage2Latent, LATENT_MODES);
  is.integer(f('batch'), o.batch, o.method === 'rivera' ? 2 : 1, 4096);
  if (o.beta !== undefined) is.number(f('beta'), o.beta, { min: 0 });
  is.number(f('klTarget'), o.klTarget, { above: 0 });
  is.number(f('lr'), o.lr, { above: 0, max: 10 });
  if (!(typeof o.validation === 'number' && ((o.validation >= 0 && o.validation < 1) || (Number.isInteger(o.validation) && o.validation >= 1))))
    invalid(f('validation'), 'must be a fraction in [0, 1) of the subjects or a whole number of subjects', o.validation);
  is.integer(f('checkpointEvery'), o.checkpointEvery, 1, 1e6);
  if (o.keep !== undefined) is.integer(f('keep'), o.keep, 1, 1e6);
  is.oneOf(f('backend'), o.backend, BACKENDS);
  if (o.threads !== undefined) is.integer(f('threads'), o.threads, 1, 1024);
  is.seed(f('seed'), o.seed);
  is.number(f('threshold'), o.threshold);
  is.oneOf(f('resample'), o.resample, ['nearest', 'trilinear'] as const);
  is.bool(f('flip'), o.flip);
  return o;
}

/** Reads a --config JSON file: an object whose keys are the flags in camelCase (e.g. "stage2Epochs"). */
export async function readTrainConfig(file: string): Promise<Partial<TrainCliOptions>> {
  await mustExist(file, '--config', 'file');
  let v: unknown;
  try {
    v = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new VoxvaeError('EFORMAT', `--config ${file} is not JSON (${(e as Error).message})`, { path: file });
  }
  if (!is.plainObject(v)) invalid(`--config ${file}`, 'must hold a JSON object of options, e.g. {"method": "aggregated", "epochs": 50}', v);
  is.knownKeys(`--config ${file}:`, v, FILE_KEYS, 'train option');
  return v as Partial<TrainCliOptions>;
}

/** The default encoder: at least 4 stride-2 levels, more (up to 6) while every side stays divisible. A
 *  shape that 2^4 = 16 does not divide then fails checkGrid, with the rule and a shape that works. */
export function defaultChannels(shape: Vec3): number[] {
  let levels = 0;
  while (levels < 6 && shape.every((d) => d % 2 ** (levels + 1) === 0)) levels++;
  return [16, 32, 32, 64, 64, 128].slice(0, Math.max(4, levels));
}

/** The stride rule, checked before the model is built, with a shape that satisfies it. */
export function checkGrid(shape: Vec3, channels: number[], what: string): void {
  const f = 2 ** channels.length;
  const bad = shape.findIndex((d) => d % f !== 0);
  if (bad < 0) return;
  const fix = shape.map((d) => Math.max(f, Math.round(d / f) * f)).join(',');
  throw new VoxvaeError('EINVAL', `${what} ${shape.join('×')}: every side must be divisible by 2^levels = ${f} (one stride-2 level per --channels entry, ${channels.length} here); e.g. --shape ${fix}, or fewer --channels`, { path: '--shape' });
}

/** The checkpoint to resume: 'last' (an interrupted epoch) or the highest epoch-NNNN, whichever is further. */
export async function latestCheckpoint(dir: string): Promise<{ dir: string; epoch: number; batch: number } | null> {
  const names = await readdir(dir).catch(() => [] as string[]);
  let best: { dir: string; epoch: number; batch: number } | null = null;
  for (const n of names) {
    if (n !== 'last' && !/^epoch-\d+$/.test(n)) continue;
    const st = await readFile(path.join(dir, n, 'trainer.json'), 'utf8').then((t) => JSON.parse(t) as { epoch: number; batch: number }, () => null);
    if (!st || typeof st.epoch !== 'number') continue;
    const c = { dir: path.join(dir, n), epoch: st.epoch, batch: st.batch ?? 0 };
    if (!best || c.epoch > best.epoch || (c.epoch === best.epoch && c.batch > best.batch)) best = c;
  }
  return best;
}

export interface TrainIo {
  log: (line: string) => void;
  /** Where the progress bar goes (a terminal), or null for plain lines. */
  progress: NodeJS.WriteStream | null;
  /** Cancels the training (default: Ctrl-C). */
  signal?: AbortSignal;
}

export interface TrainOutcome {
  modelFile: string | null;
  cancelled: boolean;
  checkpoint: string | null;
  epochs: { stage: string; epochs: EpochInfo[] }[];
  validationDice: number;
  seconds: number;
}

/** Geometry of the model's grid in the data's physical space (what encode/decode/sample write). */
export interface GridGeometry {
  shape: Vec3;
  spacing: Vec3;
  origin: Vec3;
  direction: number[];
}

async function resolveOptions(cli: Partial<TrainCliOptions> & { out: string }, explicit: Set<string>): Promise<{ o: TrainCliOptions; from: Record<string, string> }> {
  const from: Record<string, string> = {};
  let base: Partial<TrainCliOptions> = {};
  if (cli.resume) {
    const file = path.join(cli.out, 'train-options.json');
    const saved = await readFile(file, 'utf8').then((t) => JSON.parse(t) as Partial<TrainCliOptions>, () => null);
    if (!saved) throw new VoxvaeError('ECHECKPOINT', `--resume: ${file} is missing: --out must be the folder of the training to resume`, { path: file });
    base = saved;
    for (const k of Object.keys(saved)) from[k] = file;
  }
  if (cli.config) {
    const c = await readTrainConfig(cli.config);
    base = { ...base, ...c };
    for (const k of Object.keys(c)) from[k] = cli.config;
  }
  const flags: Partial<TrainCliOptions> = {};
  for (const k of explicit) (flags as Record<string, unknown>)[k] = (cli as Record<string, unknown>)[k];
  for (const k of explicit) delete from[k];
  const o = { ...TRAIN_DEFAULTS, ...base, ...flags, out: cli.out, resume: cli.resume ?? false, overwrite: cli.overwrite ?? false, json: cli.json ?? false, config: cli.config } as TrainCliOptions;
  return { o: checkTrainOptions(o, from), from };
}

/** The whole command: checks, then trains. `explicit` lists the options given on the command line. */
export async function runTrain(cli: Partial<TrainCliOptions> & { out: string }, io: TrainIo, explicit: Set<string> = new Set(Object.keys(cli))): Promise<TrainOutcome> {
  const t0 = performance.now();
  const { o } = await resolveOptions(cli, explicit);
  const log = io.log;
  // ---- checks before any work ----
  await prepareOutDir(o.out);
  if (!o.data) throw new VoxvaeError('EINVAL', '--data is required: a dataset folder (SkullBreak/SkullFix layout or any folder of .nii/.nii.gz/.nrrd/.nhdr) or a manifest .csv/.json', { path: '--data' });
  await mustExist(o.data, '--data');
  if (o.resume && o.method === 'rivera') throw new VoxvaeError('EUNSUPPORTED', "--resume: --method rivera keeps no trainer checkpoints; start it again", { path: '--resume' });
  if (o.shape) checkGrid(o.shape, o.channels ?? defaultChannels(o.shape), '--shape');
  const previous = await readdir(path.join(o.out, 'checkpoints')).catch(() => [] as string[]);
  if (!o.resume && previous.length && !o.overwrite)
    throw new VoxvaeError('EIO', `--out ${o.out} holds a training already (checkpoints/): continue it with --resume, replace it with --overwrite, or choose another --out`, { path: o.out });
  if (o.threads !== undefined) setThreads(o.threads);

  // ---- the data ----
  const probe = await VolumeDataset.open(o.data, { onError: 'fail' });
  if (probe.length === 0) throw new VoxvaeError('EINVAL', `--data ${o.data} holds no volumes (.nii, .nii.gz, .nrrd, .nhdr; implants are left out)`, { path: o.data });
  const shapes = new Map<string, { shape: Vec3; n: number }>();
  const first = await probe.header(0);
  let beat = performance.now();
  for (let i = 0; i < probe.length; i++) {
    if (performance.now() - beat > 5000) {
      beat = performance.now();
      log(`  reading headers: ${i}/${probe.length}`);
    }
    const h = await probe.header(i);
    const k = h.shape.join('×');
    shapes.set(k, { shape: h.shape as Vec3, n: (shapes.get(k)?.n ?? 0) + 1 });
  }
  let grid = o.shape;
  if (!grid) {
    if (shapes.size > 1)
      throw new VoxvaeError('ESHAPE', `--data ${o.data} has volumes of ${shapes.size} shapes (${[...shapes.values()].slice(0, 4).map((s) => `${s.shape.join('×')} ×${s.n}`).join(', ')}): pass --shape D,H,W and every volume is resampled to it`, { path: '--shape' });
    grid = [...shapes.values()][0]!.shape;
    checkGrid(grid, o.channels ?? defaultChannels(grid), "the data's shape (no --shape given) is");
  }
  const channels = o.channels ?? defaultChannels(grid);
  checkGrid(grid, channels, '--shape');
  const resampled = [...shapes.values()].some((s) => s.shape.some((d, i) => d !== grid![i]));
  const all = await VolumeDataset.open(o.data, { ...(resampled ? { shape: grid, resample: o.resample } : {}), threshold: o.threshold });
  let split: { train: VolumeDataset; validation: VolumeDataset | null } = { train: all, validation: null };
  if (o.validation > 0) {
    try {
      split = all.split({ validation: o.validation, seed: o.seed });
    } catch (e) {
      if (e instanceof VoxvaeError && e.code === 'EINVAL') throw new VoxvaeError('EINVAL', `--${e.message}`, { path: '--validation' });
      throw e;
    }
    if (split.validation!.length === 0) {
      log(`note: --validation ${o.validation} holds out no subject of ${all.length} volumes: training without a validation Dice`);
      split.validation = null;
    }
  }
  const { train, validation } = split;
  if (train.length < o.batch)
    throw new VoxvaeError('EINVAL', `--data ${o.data}: ${train.length} training volume${train.length === 1 ? '' : 's'} (after holding out ${validation?.length ?? 0} for validation) is fewer than one batch (--batch ${o.batch}): lower --batch or --validation, or add data`, { path: '--batch' });
  const geometry: GridGeometry = {
    shape: grid,
    spacing: first.spacing.map((s, i) => (s * first.shape[i]!) / grid![i]!) as Vec3,
    origin: (first.origin ?? [0, 0, 0]) as Vec3,
    direction: [...(first.direction ?? [1, 0, 0, 0, 1, 0, 0, 0, 1])],
  };
  const config: VaeConfig = monaiVarAutoEncoder({ inputShape: grid, channels, latentSize: o.latent });
  const beta = o.beta ?? (o.method === 'aggregated' ? 0.1 : 1e-4);
  log(
    `data: ${all.length} volumes from ${o.data} (layout ${all.layout}, ${[...shapes.values()].map((s) => `${s.shape.join('×')} ×${s.n}`).join(', ')}${resampled ? `, resampled (${o.resample}) to ${grid.join('×')}` : ''}); ` +
      `train ${train.length}, validation ${validation?.length ?? 0} (split by subject, seed ${o.seed})`,
  );
  log(`model: MONAI VarAutoEncoder ${grid.join('×')}, channels [${channels.join(', ')}], latent ${o.latent}; method ${o.method} (${METHOD_HELP[o.method]}); Adam lr ${o.lr}, batch ${o.batch}, ${o.epochs} epochs${o.method === 'aggregated' ? ` + ${o.stage2Epochs ?? o.epochs} stage-2 epochs` : ''}; backend ${o.backend}`);
  const lead = rank() === 0; // data-parallel (voxvae launch): rank 0 writes the files, as the Trainer does
  if (!o.resume && previous.length && lead) {
    // --overwrite: every check has passed; the old training goes only now.
    await rm(path.join(o.out, 'checkpoints'), { recursive: true, force: true });
    await rm(path.join(o.out, 'model.safetensors'), { force: true });
  }
  const { resume: _r, overwrite: _w, json: _j, config: _c, ...saved } = o;
  if (lead) await writeFileAtomic(path.join(o.out, 'train-options.json'), new TextEncoder().encode(JSON.stringify({ ...saved, shape: grid, channels }, null, 2)));

  // ---- training ----
  const own = io.signal ? null : interruptSignal((l) => process.stderr.write(l + '\n'));
  const signal = io.signal ?? own!.signal;
  const batchesPerEpoch = Math.ceil(train.length / o.batch);
  const progress = new TrainingProgress({ stream: io.progress, log, totalEpochs: o.epochs, batchesPerEpoch });
  const ckRoot = path.join(o.out, 'checkpoints');
  const curves: TrainOutcome['epochs'] = [];
  const common = (label: string, epochs: number): Partial<TrainerOptions> => ({
    batchSize: o.batch,
    seed: o.seed,
    optimizer: { kind: 'adam', lr: o.lr },
    ...(validation ? { validation } : {}),
    ...(o.flip ? { augment: { flip: [0.5, 0, 0] } } : {}),
    signal,
    // The loss is summed over the batch; the last batch of an epoch may be smaller.
    onStep: (s) => progress.step(s.epoch, s.batch, { loss: s.loss / Math.max(1, Math.min(o.batch, train.length - s.batch * o.batch)), beta: s.beta }),
    onEpoch: (e) => progress.epoch({ ...e, kl: e.klPerSample }),
    onRollback: (r) => log(`${label}: non-finite loss at epoch ${r.epoch + 1} batch ${r.batch + 1}: rolled back, learning rate now ×${r.lrScale}`),
    epochs,
  });
  const run = async (label: string, dir: string, epochs: number, opts: Partial<TrainerOptions>, fresh: () => Promise<Vae>): Promise<{ vae: Vae; r: TrainResult }> => {
    const ckpt = { dir, every: o.checkpointEvery, ...(o.keep ? { keepLast: o.keep } : {}) };
    const options = { ...common(label, epochs), ...opts, checkpoint: ckpt } as TrainerOptions;
    const last = o.resume ? await latestCheckpoint(dir) : null;
    let t: Trainer;
    if (last) {
      t = await Trainer.resume(last.dir, train, options, { backend: o.backend });
      log(`${label}: resuming from ${last.dir} (epoch ${last.epoch}${last.batch ? `, batch ${last.batch}` : ''})`);
    } else t = new Trainer(await fresh(), train, options);
    progress.phase(label, epochs, batchesPerEpoch, t.epoch);
    try {
      const r = await t.run();
      progress.stopBar();
      return { vae: t.vae, r };
    } catch (e) {
      progress.stopBar();
      t.vae.dispose();
      throw e;
    }
  };
  let vae: Vae | null = null;
  let cancelled = false, checkpoint: string | null = null;
  try {
    if (o.method === 'rivera') {
      vae = await Vae.create(config, { seed: o.seed, backend: o.backend });
      progress.phase('rivera', o.epochs, batchesPerEpoch);
      let te = performance.now();
      let batchInEpoch = 0, stepEpoch = 0;
      const r = await trainRivera(vae, null, train, {
        epochs: o.epochs, batchSize: o.batch, seed: o.seed, optimizer: { lr: o.lr, betas: [0.5, 0.999] }, signal,
        onStep: (s) => {
          if (s.epoch !== stepEpoch) (stepEpoch = s.epoch), (batchInEpoch = 0);
          progress.step(s.epoch, batchInEpoch++, { loss: s.loss });
        },
        onEpoch: async (e) => {
          const dice = validation ? await reconstructionDice(vae!, validation, o.batch) : NaN;
          const info: EpochInfo = { epoch: e.epoch, loss: e.loss, recon: e.recon, kl: e.population + e.individual, klPerSample: NaN, beta: NaN, lr: o.lr, steps: 0, seconds: (performance.now() - te) / 1000, validation: validation ? { dice } : {} };
          curves[0] ??= { stage: 'rivera', epochs: [] };
          curves[0].epochs.push(info);
          progress.epoch(info);
          te = performance.now();
        },
      });
      progress.stopBar();
      cancelled = signal.aborted && r.epochs.length < o.epochs;
      if (cancelled) {
        checkpoint = path.join(o.out, 'interrupted.safetensors');
        if (lead) await vae.save(checkpoint);
      }
    } else {
      const stage1Beta = o.method === 'controlvae' || o.method === 'dynamicvae' ? controllerBeta(o.method, o.klTarget) : beta;
      const stage1Dir = o.method === 'aggregated' ? path.join(ckRoot, 'stage1') : ckRoot;
      const label1 = o.method === 'aggregated' ? 'stage 1' : o.method;
      const s1 = await run(label1, stage1Dir, o.epochs, { beta: stage1Beta }, () => Vae.create(config, { seed: o.seed, backend: o.backend }));
      vae = s1.vae;
      curves.push({ stage: label1, epochs: s1.r.epochs });
      cancelled = s1.r.cancelled;
      if (cancelled) checkpoint = path.join(stage1Dir, 'last');
      if (!cancelled && o.method === 'aggregated') {
        const epochs2 = o.stage2Epochs ?? o.epochs;
        const stage2Dir = path.join(ckRoot, 'stage2');
        const s1vae = vae;
        vae = null;
        const s2 = await run('stage 2', stage2Dir, epochs2, { ...SKULLVAE_STAGE2, ...common('stage 2', epochs2), latent: o.stage2Latent, optimizer: { kind: 'adam', lr: o.lr } }, async () => {
          // The stage-1 encoder frozen, a new decoder (MONAI blocks, the pipeline's working recipe) on its latents.
          const decoder = new Decoder(config, { seed: o.seed + 1000, backend: s1vae.backend });
          s1vae.encoder.freeze();
          const old = s1vae.decoder;
          s1vae.attachDecoder(decoder);
          old.dispose();
          return s1vae;
        });
        if (s2.vae !== s1vae) s1vae.dispose();
        vae = s2.vae;
        curves.push({ stage: 'stage 2', epochs: s2.r.epochs });
        cancelled = s2.r.cancelled;
        if (cancelled) checkpoint = path.join(stage2Dir, 'last');
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const lastDice = curves.at(-1)?.epochs.at(-1)?.validation['dice'] ?? NaN;
    if (cancelled) {
      log(`interrupted: checkpoint written to ${checkpoint}${o.method === 'rivera' ? '' : `; continue with \`voxvae train --out ${o.out} --resume\``} (${duration(seconds)})`);
      return { modelFile: null, cancelled, checkpoint, epochs: curves, validationDice: lastDice, seconds };
    }
    const modelFile = path.join(o.out, 'model.safetensors');
    if (!lead) return { modelFile, cancelled: false, checkpoint: null, epochs: curves, validationDice: lastDice, seconds };
    await vae!.save(modelFile);
    const record = { format: 'voxvae.training', version: 1, method: o.method, options: saved, data: { source: path.resolve(o.data), layout: all.layout, volumes: all.length, train: train.length, validation: validation?.length ?? 0, shapes: [...shapes.values()], resampled }, geometry, config, parameters: vae!.numParams, curves, seconds };
    await writeFileAtomic(path.join(o.out, 'training.json'), new TextEncoder().encode(JSON.stringify(record, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)));
    log(`wrote ${modelFile} and ${path.join(o.out, 'training.json')}: validation Dice ${Number.isFinite(lastDice) ? lastDice.toFixed(3) : '—'} after ${duration(seconds)}`);
    return { modelFile, cancelled: false, checkpoint: null, epochs: curves, validationDice: lastDice, seconds };
  } finally {
    progress.stopBar();
    vae?.dispose();
    own?.dispose();
  }
}

const num = positiveNumber;
const int = positiveInt;

/** `--validation`: a fraction of the subjects in [0, 1) or a whole number of them. */
const validationArg = (v: string): number => {
  const x = Number(v);
  if (!(Number.isFinite(x) && ((x >= 0 && x < 1) || (Number.isInteger(x) && x >= 1)))) {
    return integer('--validation (a fraction in [0, 1) or a whole number of subjects)', 0, 1 << 20)(v);
  }
  return x;
};

export function registerTrainCommand(program: Command): void {
  program
    .command('train')
    .description(
      'train a model on your data: a folder of NIfTI/NRRD skulls (SkullBreak or SkullFix layout, or any folder) or a manifest; writes model.safetensors, training.json and checkpoints. ' +
        'Measured on 2 shared CPU cores: 20 epochs of 100 volumes take about 20 s at 32×32×16 and about 1.5 min at 64×64×32 (--method aggregated adds the stage-2 epochs). Ctrl-C stops after the current step and writes a checkpoint; --resume continues.',
    )
    .option('--data <dir|manifest>', 'dataset folder or manifest (.csv with path,class,pair[,kind], or .json)')
    .option('--out <dir>', 'output folder (created and tested for writing before anything else)', 'runs/train')
    .option('--config <file.json>', 'options from a JSON object keyed by the flags in camelCase, e.g. {"method":"aggregated","epochs":50,"shape":[64,64,32]}; flags win')
    .addOption(new Option('--method <m>', TRAIN_METHODS.map((m) => `'${m}': ${METHOD_HELP[m]}`).join('; ')).argParser(oneOf('--method', TRAIN_METHODS)))
    .option('--shape <D,H,W>', "the model's grid; volumes are resampled to it. Every side must be divisible by 2^levels (levels = the number of --channels; by default 4, or up to 6 while every side stays divisible: so a multiple of 16). Default: the data's shape", shape3)
    .option('--channels <list>', 'encoder channels per level, e.g. 16,32,64,64 (default 16,32,32,64,64,128 cut to the levels the shape allows)', (v: string) => integers('--channels', v, 12))
    .option('--latent <n>', 'latent size (default 32)', int('--latent'))
    .option('--epochs <n>', 'epochs (stage 1 for aggregated; default 20)', int('--epochs'))
    .option('--stage2-epochs <n>', 'stage-2 epochs of the aggregated VAE (default: --epochs)', int('--stage2-epochs'))
    .option('--stage2-latent <z>', "z fed to the stage-2 decoder: 'mean' (default), 'sample', 'mean+std'", oneOf('--stage2-latent', LATENT_MODES))
    .option('--batch <n>', 'batch size (default 4)', int('--batch'))
    .option('--beta <b>', 'KL weight β ≥ 0 (default 1e-4 for vae, 0.1 for aggregated stage 1)', nonNegativeNumber('--beta'))
    .option('--kl-target <nats>', 'KL set point of controlvae/dynamicvae (default 20)', num('--kl-target'))
    .option('--lr <lr>', 'Adam learning rate > 0 (default 1e-3)', num('--lr'))
    .option('--validation <f>', 'held-out subjects for the validation Dice: a fraction in [0, 1) or a count (default 0.2; split by subject)', validationArg)
    .option('--checkpoint-every <n>', 'write a checkpoint every n epochs (default 1)', int('--checkpoint-every'))
    .option('--keep <n>', 'keep only the last n epoch checkpoints', int('--keep'))
    .option('--resume', 'continue the training in --out from its last checkpoint (options saved there; flags given now win, e.g. more --epochs)')
    .option('--overwrite', 'replace a training already in --out (without it, an --out with checkpoints is refused)')
    .addOption(new Option('--backend <b>', "'cpu' (default), 'cuda' (fails with the reason when unusable) or 'auto'").argParser(oneOf('--backend', BACKENDS)))
    .option('--threads <n>', 'CPU threads (default: all cores)', int('--threads'))
    .option('--seed <n>', 'seed of the weights, the data order and the split (default 1)', integer('--seed', 0, Number.MAX_SAFE_INTEGER))
    .option('--threshold <v>', 'bone = voxel value above this (default 0.5; e.g. 300 for CT in HU)', finiteNumber('--threshold'))
    .addOption(new Option('--resample <mode>', "resampling to the grid: 'nearest' (default) or 'trilinear'").argParser(oneOf('--resample', ['nearest', 'trilinear'] as const)))
    .option('--flip', 'augment with left–right flips (p = 0.5)')
    .option('--json', 'print the outcome as JSON on stdout (progress stays on stderr)')
    .action(async (o: Partial<TrainCliOptions> & { out: string }, cmd: Command) => {
      const explicit = new Set(Object.keys(o).filter((k) => cmd.getOptionValueSource(k) === 'cli'));
      const json = !!o.json;
      const log = json ? (l: string) => process.stderr.write(l + '\n') : (l: string) => console.log(l);
      const r = await runTrain(o, { log, progress: progressStream() }, explicit);
      if (json) process.stdout.write(JSON.stringify(r, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
      if (r.cancelled) process.exitCode = EXIT.interrupted;
    });
}

