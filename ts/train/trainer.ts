// Trainer: epochs over a VolumeDataset with seeded shuffling, Adam/AdamW with a learning-rate
// schedule, a β schedule or KL controller, validation per epoch, callbacks, cancellation, periodic
// checkpoints with exact resume, and a NaN/Inf guard that rolls back and lowers the learning rate.
//
// β protocol (ts/train/beta.ts). Each step gives the schedule the KL of its own minibatch, as the
// authors' loops do: the training step (ts/train/step.ts) runs the forward pass, measures the KL, calls
//   β(t) = schedule.next(KL(t))
// and only then backward with β(t)·KL(t). The KL the controllers see is `klPerSample` = the batch mean of
// Σ_j KL_j, as ControlVAE's and DynamicVAE's code measure it; the loss itself uses the KL summed over the
// batch (skullVAE, klReduction 'sum'). (Before the step took β as a function, β(t) was computed from
// KL(t−1), a one-iteration lag; there is none now.) For capacity annealing `next` returns γ·sign(KL − C),
// the gradient weight; the reported objective uses klTerm.
//
// Checkpoints are folders: `model.safetensors` (Vae.save: weights, Adam moments, step/noise position)
// and `trainer.json` (epoch, batch position in the epoch, β-schedule state, the last step's KL (kept for
// the format; nothing reads it now), the learning-rate scale and the history). Resuming replays the same
// data order (VolumeDataset.order is a function of seed and epoch), so a resumed run gives the same losses
// bit for bit on the CPU.
//
// Data-parallel (a ProcessGroup joined, ts/dist; docs/distributed.md): run() first gives every rank rank 0's
// weights; each rank reads its shard of every epoch (shardOf: the same seeded order, every worldSize-th
// item) in batches of batchSize (the global batch is worldSize × batchSize); the step averages gradients
// and the KL over ranks, so every rank holds the same weights and β-schedule state. Only rank 0 validates,
// calls onStep/onEpoch and writes checkpoints; a checkpoint records the world size, and resuming it with
// another one is refused (the shards and positions would differ).
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { VoxvaeError } from '../errors.js';
import type { AugmentOptions, VolumeDataset } from '../data/dataset.js';
import * as is from '../is.js';
import { LATENT_MODES, type Backend } from '../types.js';
import { parseSafetensors, writeFileAtomic } from '../safetensors.js';
import { resolveConfigs, serializeCheckpoint } from '../model/checkpoint.js';
import { Vae, type LatentMode, type ReconLoss, type StepResult } from '../vae.js';
import { dice } from '../metrics/overlap.js';
import { activeGroup } from '../dist/index.js';
import { betaScheduleFromState, createBetaSchedule, type BetaSchedule, type BetaScheduleSpec, type BetaScheduleState } from './beta.js';

/** Learning-rate schedules, as a factor of the base lr at optimisation step t (0-based). */
export type LrScheduleSpec =
  | { kind: 'constant' }
  /** lr · gamma^floor(epoch / everyEpochs) (torch StepLR over epochs). */
  | { kind: 'step'; everyEpochs: number; gamma: number }
  /** Linear warm-up over warmupSteps, then cosine decay to minFactor·lr at totalSteps. */
  | { kind: 'cosine'; totalSteps: number; warmupSteps?: number; minFactor?: number };

export interface TrainerOptions {
  epochs: number;
  batchSize: number;
  /** Seed of the data order (and augmentation). Default 0. */
  seed?: number;
  shuffle?: boolean;
  dropLast?: boolean;
  augment?: AugmentOptions | null;
  /** A number is a constant β. Default { kind: 'constant', beta: 1 }. Ignored while the encoder is frozen. */
  beta?: number | BetaScheduleSpec;
  latent?: LatentMode;
  recon?: Partial<ReconLoss>;
  optimizer?: { kind?: 'adam' | 'adamw'; lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number };
  lrSchedule?: LrScheduleSpec;
  maxGradNorm?: number;
  /** Validated after every epoch: mean reconstruction Dice (eval mode, z = μ) and anything `validate` returns. */
  validation?: VolumeDataset;
  validate?: (vae: Vae, epoch: number) => Promise<Record<string, number>>;
  onStep?: (s: StepInfo) => void | Promise<void>;
  onEpoch?: (e: EpochInfo) => void | Promise<void>;
  /** Called when the NaN/Inf guard rolls back. */
  onRollback?: (r: RollbackInfo) => void;
  signal?: AbortSignal;
  /** Write dir/epoch-NNNN/ every `every` epochs (and dir/last/ on cancellation). */
  checkpoint?: { dir: string; every: number; keepLast?: number };
  /** NaN/Inf guard: on a non-finite loss restore the last good state, multiply the lr by `lrFactor`
   *  (default 0.5) and retry; give up after `maxRollbacks` (default 5). */
  nanGuard?: { lrFactor?: number; maxRollbacks?: number } | false;
}

export interface StepInfo extends StepResult {
  epoch: number;
  batch: number;
  lr: number;
  /** The KL the β schedule saw: this step's, per sample (= klPerSample). */
  klSeen: number;
  /** recon + klTerm (differs from loss only for capacity annealing). */
  objective: number;
}

export interface EpochInfo {
  epoch: number;
  loss: number;
  recon: number;
  kl: number;
  klPerSample: number;
  beta: number;
  lr: number;
  steps: number;
  seconds: number;
  validation: Record<string, number>;
}

export interface RollbackInfo {
  epoch: number;
  batch: number;
  step: number;
  error: string;
  /** The learning-rate factor from now on. */
  lrScale: number;
}

export interface TrainResult {
  epochs: EpochInfo[];
  steps: StepInfo[];
  rollbacks: RollbackInfo[];
  cancelled: boolean;
  /** Epochs completed (resume starts at the next). */
  epoch: number;
}

interface TrainerState {
  format: 'voxvae.trainer';
  version: 1;
  epoch: number;
  batch: number;
  lastKl: number;
  lrScale: number;
  schedule: BetaScheduleState;
  /** Ranks that trained it (absent: 1). */
  worldSize?: number;
  history: { epochs: EpochInfo[]; steps: StepInfo[]; rollbacks: RollbackInfo[] };
}

/** How long the ranks wait at an epoch's end for rank 0's validation, callbacks and checkpoint: 24 h. */
const EPOCH_END_TIMEOUT_MS = 24 * 3600 * 1000;

function lrFactor(s: LrScheduleSpec, step: number, epoch: number): number {
  switch (s.kind) {
    case 'constant':
      return 1;
    case 'step':
      return Math.pow(s.gamma, Math.floor(epoch / s.everyEpochs));
    case 'cosine': {
      const w = s.warmupSteps ?? 0, min = s.minFactor ?? 0;
      if (step < w) return (step + 1) / w;
      const p = Math.min(1, (step - w) / Math.max(1, s.totalSteps - w));
      return min + (1 - min) * 0.5 * (1 + Math.cos(Math.PI * p));
    }
  }
}

const TRAINER_OPTIONS = ['epochs', 'batchSize', 'seed', 'shuffle', 'dropLast', 'augment', 'beta', 'latent', 'recon', 'optimizer', 'lrSchedule', 'maxGradNorm', 'validation', 'validate', 'onStep', 'onEpoch', 'onRollback', 'signal', 'checkpoint', 'nanGuard'];

function checkOptions(opts: TrainerOptions): void {
  const o = is.options('options', opts);
  is.knownKeys('options', o, TRAINER_OPTIONS);
  is.integer('options.epochs', o.epochs, 0);
  is.integer('options.batchSize', o.batchSize, 1);
  if (o.seed !== undefined) is.seed('options.seed', o.seed);
  if (o.shuffle !== undefined) is.bool('options.shuffle', o.shuffle);
  if (o.dropLast !== undefined) is.bool('options.dropLast', o.dropLast);
  if (o.latent !== undefined) is.oneOf('options.latent', o.latent, LATENT_MODES);
  if (o.optimizer !== undefined) {
    const opt = is.options('options.optimizer', o.optimizer);
    if (opt.lr !== undefined) is.number('options.optimizer.lr', opt.lr, { min: 0 });
  }
  if (o.maxGradNorm !== undefined) is.number('options.maxGradNorm', o.maxGradNorm, { above: 0 });
  for (const f of ['validate', 'onStep', 'onEpoch', 'onRollback'] as const) if (o[f] !== undefined) is.fn(`options.${f}`, o[f]);
  if (o.checkpoint !== undefined) {
    const c = is.options('options.checkpoint', o.checkpoint);
    if (typeof c.dir !== 'string' || !c.dir) is.invalid('options.checkpoint.dir', 'must be a folder path', c.dir);
    is.integer('options.checkpoint.every', c.every, 1);
    if (c.keepLast !== undefined) is.integer('options.checkpoint.keepLast', c.keepLast, 1);
  }
  if (o.nanGuard !== undefined && o.nanGuard !== false) {
    const g = is.options('options.nanGuard', o.nanGuard);
    if (g.lrFactor !== undefined) is.number('options.nanGuard.lrFactor', g.lrFactor, { above: 0, max: 1 });
    if (g.maxRollbacks !== undefined) is.integer('options.nanGuard.maxRollbacks', g.maxRollbacks, 0);
  }
  if (o.lrSchedule === undefined) return;
  const s = is.options('options.lrSchedule', o.lrSchedule) as LrScheduleSpec;
  is.oneOf('options.lrSchedule.kind', s.kind, ['constant', 'step', 'cosine'] as const);
  if (s.kind === 'step') {
    is.integer('options.lrSchedule.everyEpochs', s.everyEpochs, 1);
    is.number('options.lrSchedule.gamma', s.gamma, { above: 0 });
  }
  if (s.kind === 'cosine') {
    is.integer('options.lrSchedule.totalSteps', s.totalSteps, 1);
    if (s.warmupSteps !== undefined) is.integer('options.lrSchedule.warmupSteps', s.warmupSteps, 0);
    if (s.minFactor !== undefined) is.number('options.lrSchedule.minFactor', s.minFactor, { min: 0, max: 1 });
  }
}

/** An in-memory checkpoint (ts/model/checkpoint.ts, the bytes Vae.save writes) of everything a training step changes in the model. */
interface Snapshot {
  bytes: Uint8Array;
}

function snapshot(vae: Vae): Snapshot {
  return { bytes: serializeCheckpoint(vae.checkpointState()) };
}

function restore(vae: Vae, s: Snapshot): void {
  const file = '<snapshot>';
  const st = parseSafetensors(s.bytes, file);
  vae.restoreCheckpoint(st, file, resolveConfigs(st, file));
}

/** Mean reconstruction Dice (foreground = class 1 > 0.5, eval mode, z = the model's evalLatent) over a dataset. */
export async function reconstructionDice(vae: Vae, ds: VolumeDataset, batchSize = 4): Promise<number> {
  const [D, H, W] = vae.config.inputShape;
  const S = D * H * W;
  let sum = 0, n = 0;
  for await (const b of ds.batches({ batchSize, shuffle: false, prefetch: 0 })) {
    const { recon } = await vae.forward(b.input, { mode: 'eval', latent: vae.evalLatent, batch: b.items.length });
    const C = vae.decoder.config.outChannels;
    for (let k = 0; k < b.items.length; k++) {
      const fg = new Uint8Array(S), gt = new Uint8Array(S);
      const ch = C === 1 ? 0 : 1;
      for (let j = 0; j < S; j++) {
        fg[j] = recon[(k * C + ch) * S + j]! > 0.5 ? 1 : 0;
        gt[j] = b.target[k * S + j]! > 0.5 ? 1 : 0;
      }
      sum += dice({ data: fg, shape: [D, H, W] }, { data: gt, shape: [D, H, W] });
      n++;
    }
  }
  return n ? sum / n : NaN;
}

export class Trainer {
  readonly vae: Vae;
  readonly data: VolumeDataset;
  readonly options: TrainerOptions;
  schedule: BetaSchedule;
  /** Epochs completed. */
  epoch = 0;
  /** Batches done in the current epoch (non-zero only after a cancellation). */
  batch = 0;
  private lastKl = 0;
  private lrScale = 1;
  private history: TrainerState['history'] = { epochs: [], steps: [], rollbacks: [] };

  constructor(vae: Vae, data: VolumeDataset, options: TrainerOptions) {
    checkOptions(options);
    this.vae = vae;
    this.data = data;
    this.options = options;
    const b = options.beta ?? 1;
    this.schedule = createBetaSchedule(typeof b === 'number' ? { kind: 'constant', beta: b } : b, 'options.beta');
  }

  /** Restores a trainer from a checkpoint folder written by `save`/the checkpoint option: the model
   *  (weights, Adam, step), the β-schedule state and the position in the data order; `load.backend`
   *  picks the engine the model is loaded on (default 'cpu'). */
  static async resume(dir: string, data: VolumeDataset, options: TrainerOptions, load: { backend?: Backend } = {}): Promise<Trainer> {
    const vae = await Vae.load(path.join(dir, 'model.safetensors'), load.backend ? { backend: load.backend } : {});
    let st: TrainerState;
    try {
      st = JSON.parse(await readFile(path.join(dir, 'trainer.json'), 'utf8')) as TrainerState;
    } catch (e) {
      vae.dispose();
      throw new VoxvaeError('ECHECKPOINT', `${dir}: trainer.json is missing or not JSON (${(e as Error).message})`, { path: dir });
    }
    if (st.format !== 'voxvae.trainer' || st.version !== 1) {
      vae.dispose();
      throw new VoxvaeError('ECHECKPOINT', `${dir}: not a voxvae trainer checkpoint`, { path: dir });
    }
    const ws = activeGroup()?.worldSize ?? 1;
    if ((st.worldSize ?? 1) !== ws) {
      vae.dispose();
      throw new VoxvaeError('ECHECKPOINT', `${dir} was written by a run of ${st.worldSize ?? 1} rank(s); this one has ${ws}: resume with the same world size (voxvae launch --nproc ${st.worldSize ?? 1}), since the data shards and the batch position depend on it`, { path: dir });
    }
    const t = new Trainer(vae, data, options);
    t.schedule = betaScheduleFromState(st.schedule);
    t.epoch = st.epoch;
    t.batch = st.batch;
    t.lastKl = st.lastKl ?? 0;
    t.lrScale = st.lrScale;
    t.history = st.history;
    return t;
  }

  /**
   * Writes a checkpoint folder atomically: a hidden temporary folder (`.NAME.tmp-PID-RANDOM`, never taken
   * for a checkpoint: see latestCheckpoint) renamed into place; an existing folder of that name is moved
   * aside first and removed after, so a kill at any moment leaves the old or the new checkpoint whole.
   * Temporaries a killed process left are removed (removeStaleTemporaries).
   */
  async save(dir: string): Promise<void> {
    const parent = path.dirname(path.resolve(dir)), name = path.basename(dir);
    await mkdir(parent, { recursive: true });
    await removeStaleTemporaries(parent);
    const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
    const tmp = path.join(parent, `.${name}${TMP_MARK}${tag}`);
    const old = path.join(parent, `.${name}${OLD_MARK}${tag}`);
    await mkdir(tmp);
    try {
      await this.vae.save(path.join(tmp, 'model.safetensors'));
      const st: TrainerState = { format: 'voxvae.trainer', version: 1, epoch: this.epoch, batch: this.batch, lastKl: this.lastKl, lrScale: this.lrScale, schedule: this.schedule.state(), worldSize: activeGroup()?.worldSize ?? 1, history: this.history };
      await writeFileAtomic(path.join(tmp, 'trainer.json'), new TextEncoder().encode(JSON.stringify(st)));
      const existed = await rename(dir, old).then(() => true, (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return false;
        throw e;
      });
      await rename(tmp, dir);
      if (existed) await rm(old, { recursive: true, force: true });
    } catch (e) {
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * The newest complete checkpoint folder under `dir` (the highest epoch and step its trainer.json
   * records, among epoch-NNNN and last), or null when there is none. Temporary folders of a save that was
   * killed are never taken (and are removed).
   */
  static async latestCheckpoint(dir: string): Promise<string | null> {
    await removeStaleTemporaries(dir);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new VoxvaeError('EIO', `cannot list ${dir}: ${(e as Error).message}`, { path: dir, cause: e });
    }
    let best: { dir: string; key: [number, number] } | null = null;
    for (const n of names) {
      if (!/^(epoch-\d+|last)$/.test(n)) continue;
      const d = path.join(dir, n);
      let st: TrainerState;
      try {
        st = JSON.parse(await readFile(path.join(d, 'trainer.json'), 'utf8')) as TrainerState;
        await stat(path.join(d, 'model.safetensors'));
      } catch {
        continue;
      }
      if (st.format !== 'voxvae.trainer' || !Number.isInteger(st.epoch)) continue;
      const key: [number, number] = [st.epoch, st.history?.steps?.length ?? 0];
      if (!best || key[0] > best.key[0] || (key[0] === best.key[0] && key[1] > best.key[1])) best = { dir: d, key };
    }
    return best?.dir ?? null;
  }

  private baseLr(): number {
    return this.options.optimizer?.lr ?? 1e-4;
  }

  /** Trains until options.epochs epochs are complete (counting those before a resume), or cancelled. */
  async run(): Promise<TrainResult> {
    const o = this.options;
    const guard = o.nanGuard === false ? null : { lrFactor: o.nanGuard?.lrFactor ?? 0.5, maxRollbacks: o.nanGuard?.maxRollbacks ?? 5 };
    let cancelled = false;
    const group = activeGroup();
    const lead = !group || group.rank === 0;
    if (o.checkpoint && lead) await removeStaleTemporaries(o.checkpoint.dir);
    if (group) await group.syncNetworks(this.vae.encoder.frozen ? [this.vae.decoder.network.net] : [this.vae.encoder.network.net, this.vae.decoder.network.net]);
    const shard = group ? { shard: { rank: group.rank, worldSize: group.worldSize } } : {};
    while (this.epoch < o.epochs) {
      const epoch = this.epoch;
      const t0 = performance.now();
      // Last good state: the start of this epoch (or of the resumed position).
      let good = { snap: snapshot(this.vae), schedule: this.schedule.state(), lastKl: this.lastKl, batch: this.batch, steps: this.history.steps.length };
      const acc = { loss: 0, recon: 0, kl: 0, klPerSample: 0, n: 0, steps: 0, beta: 0, lr: 0 };
      let restart = false;
      let i = 0;
      const startBatch = this.batch;
      for await (const b of this.data.batches({ batchSize: o.batchSize, seed: o.seed ?? 0, epoch, shuffle: o.shuffle ?? true, dropLast: o.dropLast ?? false, augment: o.augment ?? null, ...shard })) {
        if (i++ < startBatch) continue; // replay the order up to the resumed position
        if (o.signal?.aborted) {
          cancelled = true;
          break;
        }
        // The schedule counts this trainer's own steps (history survives resume and rollback), not the
        // model's: stage 2 of the two-stage method starts a new decoder on a model that has trained.
        const lr = this.baseLr() * lrFactor(o.lrSchedule ?? { kind: 'constant' }, this.history.steps.length, epoch) * this.lrScale;
        // β from this step's KL, computed inside the step after the forward pass and before backward.
        let klSeen = NaN;
        const beta = (kl: number): number => {
          klSeen = kl;
          return this.schedule.next(kl);
        };
        let r: StepResult;
        try {
          r = await this.vae.trainStep({ input: b.input, target: b.target, shape: b.shape }, {
            beta,
            ...(o.latent ? { latent: o.latent } : {}),
            ...(o.recon ? { recon: o.recon } : {}),
            optimizer: { ...o.optimizer, lr },
            ...(o.maxGradNorm !== undefined ? { maxGradNorm: o.maxGradNorm } : {}),
          });
          if (!Number.isFinite(r.loss) || !Number.isFinite(r.klPerSample)) throw new VoxvaeError('ENOTFINITE', `loss ${r.loss}, KL ${r.klPerSample}`);
        } catch (e) {
          if (!(e instanceof VoxvaeError && e.code === 'ENOTFINITE') || !guard) throw e;
          if (this.history.rollbacks.length >= guard.maxRollbacks)
            throw new VoxvaeError('ENOTFINITE', `training diverged ${this.history.rollbacks.length + 1} times (last: ${e.message}); lower the learning rate (now ×${this.lrScale}) or clip gradients (maxGradNorm)`);
          restore(this.vae, good.snap);
          this.schedule = betaScheduleFromState(good.schedule);
          this.lastKl = good.lastKl;
          this.batch = good.batch;
          this.history.steps.length = good.steps;
          this.lrScale *= guard.lrFactor;
          const info: RollbackInfo = { epoch, batch: i - 1, step: this.vae.step, error: e.message, lrScale: this.lrScale };
          this.history.rollbacks.push(info);
          o.onRollback?.(info);
          restart = true;
          break;
        }
        this.lastKl = r.klPerSample;
        this.batch = i;
        const n = b.items.length;
        const info: StepInfo = { ...r, epoch, batch: i - 1, lr, klSeen, objective: r.recon + (this.vae.encoder.frozen ? 0 : this.schedule.klTerm(r.kl)) };
        this.history.steps.push(info);
        acc.loss += r.loss; acc.recon += r.recon; acc.kl += r.kl; acc.klPerSample += r.klPerSample * n; acc.n += n; acc.steps++; acc.beta = r.beta; acc.lr = lr;
        if (lead) await o.onStep?.(info);
      }
      if (restart) continue;
      if (cancelled) {
        if (o.checkpoint && lead) await this.save(path.join(o.checkpoint.dir, 'last'));
        break;
      }
      this.epoch++;
      this.batch = 0;
      const validation: Record<string, number> = {};
      if (o.validation && lead) validation['dice'] = await reconstructionDice(this.vae, o.validation, o.batchSize);
      if (o.validate && lead) Object.assign(validation, await o.validate(this.vae, this.epoch));
      const n = Math.max(1, acc.n);
      const e: EpochInfo = { epoch: this.epoch, loss: acc.loss / n, recon: acc.recon / n, kl: acc.kl / n, klPerSample: acc.klPerSample / n, beta: acc.beta, lr: acc.lr, steps: acc.steps, seconds: (performance.now() - t0) / 1000, validation };
      this.history.epochs.push(e);
      good = { snap: snapshot(this.vae), schedule: this.schedule.state(), lastKl: this.lastKl, batch: 0, steps: this.history.steps.length };
      void good;
      if (lead) await o.onEpoch?.(e);
      if (o.checkpoint && lead && this.epoch % o.checkpoint.every === 0) {
        await this.save(path.join(o.checkpoint.dir, `epoch-${String(this.epoch).padStart(4, '0')}`));
        const keep = o.checkpoint.keepLast;
        if (keep !== undefined && this.epoch - keep * o.checkpoint.every > 0)
          await rm(path.join(o.checkpoint.dir, `epoch-${String(this.epoch - keep * o.checkpoint.every).padStart(4, '0')}`), { recursive: true, force: true });
      }
      // The other ranks wait here for rank 0's validation, callbacks and checkpoint, however long they take
      // (a collective's timeout would count them as a hang; a rank that dies is still noticed at once).
      if (group) await group.barrier(EPOCH_END_TIMEOUT_MS);
    }
    return { epochs: this.history.epochs, steps: this.history.steps, rollbacks: this.history.rollbacks, cancelled, epoch: this.epoch };
  }
}

const TMP_MARK = '.tmp-';
const OLD_MARK = '.old-';

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary folders a Trainer.save left in `dir` when its process was killed (hidden
 * `.NAME.tmp-PID-…` and `.NAME.old-PID-…`, and `NAME.tmp-PID` of earlier versions) — those of processes
 * still running are left alone. An `.old-` folder whose checkpoint never got its replacement is put back.
 */
export async function removeStaleTemporaries(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names) {
    const m = /^\.(.+)\.(tmp|old)-(\d+)-[0-9a-f]+$/.exec(n) ?? /^(.+)\.(tmp)-(\d+)$/.exec(n);
    if (!m || processAlive(Number(m[3]))) continue;
    const p = path.join(dir, n);
    if (m[2] === 'old') {
      const target = path.join(dir, m[1]!);
      const restored = await stat(target).then(() => false, () => rename(p, target).then(() => true, () => false));
      if (restored) continue;
    }
    await rm(p, { recursive: true, force: true });
    removed.push(n);
  }
  return removed;
}
