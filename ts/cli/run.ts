// What every long CLI command shares: the output folder created and written to before any work, one-line
// errors with an exit code, a progress display (a cli-progress bar per epoch on a terminal, plain lines
// otherwise, never silent for more than a few seconds), and Ctrl-C turned into an AbortSignal so that a
// training stops after its current step and writes a checkpoint.
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { VoxvaeError } from '../errors.js';

/** Exit codes of the voxvae command line. */
export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

/** The one-line message of an error the user can act on, or null for a bug (print the stack). */
export function userMessage(e: unknown): string | null {
  if (e instanceof VoxvaeError) return `${e.message} [${e.code}]`;
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (e instanceof Error && typeof code === 'string' && /^E[A-Z]+$/.test(code)) return `${e.message} [${code}]`;
  return null;
}

async function probe(dir: string, flag: string): Promise<void> {
  const file = path.join(dir, `.voxvae-write-test-${process.pid}`);
  try {
    await writeFile(file, 'ok');
    await rm(file, { force: true });
  } catch (e) {
    throw new VoxvaeError('EIO', `${flag} ${dir} is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): choose another folder`, { path: dir, cause: e });
  }
}

/** Refuses the virtual file systems (/proc, /sys, /dev) where a write can hang or mean something else. */
function refuseVirtual(p: string, flag: string): void {
  const abs = path.resolve(p);
  if (/^\/(proc|sys|dev)(\/|$)/.test(abs)) throw new VoxvaeError('EIO', `${flag} ${p} is on a virtual file system (${abs.split('/')[1]}): choose a folder on a disk`, { path: p });
}

/** Creates the output folder and writes a file into it, before any work: a folder that cannot take the
 *  results fails now, not after an hour of training. */
export async function prepareOutDir(dir: string, flag = '--out'): Promise<string> {
  refuseVirtual(dir, flag);
  const st = await stat(dir).catch(() => null);
  if (st && !st.isDirectory()) throw new VoxvaeError('EIO', `${flag} ${dir} is a file, not a folder`, { path: dir });
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new VoxvaeError('EIO', `${flag} ${dir} cannot be created (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): choose another folder`, { path: dir, cause: e });
  }
  await probe(dir, flag);
  return dir;
}

/** The folder of an output file is created and written to first. */
export async function prepareOutFile(file: string, flag = '--out'): Promise<string> {
  refuseVirtual(file, flag);
  const st = await stat(file).catch(() => null);
  if (st?.isDirectory()) throw new VoxvaeError('EIO', `${flag} ${file} is a folder: give a file name`, { path: file });
  await prepareOutDir(path.dirname(path.resolve(file)), flag);
  return file;
}

/** A file or folder the command reads must exist. */
export async function mustExist(p: string, flag: string, what: 'file' | 'folder' | 'any' = 'any'): Promise<void> {
  const st = await stat(p).catch(() => null);
  if (!st) throw new VoxvaeError('EIO', `${flag} ${p} does not exist`, { path: p });
  if (what === 'file' && !st.isFile()) throw new VoxvaeError('EIO', `${flag} ${p} is not a file`, { path: p });
  if (what === 'folder' && !st.isDirectory()) throw new VoxvaeError('EIO', `${flag} ${p} is not a folder`, { path: p });
}

/** Ctrl-C (SIGINT/SIGTERM) → an AbortSignal: the first asks the running training to stop after its step
 *  and write a checkpoint; a second one exits at once. `dispose` restores the default handlers. */
export function interruptSignal(log: (l: string) => void): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) {
      log(`voxvae: ${sig} again: exiting without waiting`);
      process.exit(EXIT.interrupted);
    }
    log(`voxvae: ${sig}: stopping after this step and writing a checkpoint (press Ctrl-C again to exit at once)`);
    ac.abort(new VoxvaeError('EABORT', `interrupted by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

export const duration = (s: number): string => {
  if (!Number.isFinite(s)) return '?';
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  if (s >= 90) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${s.toFixed(s < 10 ? 1 : 0)} s`;
};

const fmt = (v: number | undefined, d: number): string => (v === undefined || !Number.isFinite(v) ? '—' : Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(d));

export interface StepFields {
  loss: number;
  beta?: number;
}

/**
 * Progress of a training: on a terminal a cli-progress bar per epoch (batches, loss, β, the last
 * validation Dice, ETA of the whole run); elsewhere one line per epoch and, within a long epoch, a line
 * every `heartbeat` seconds, so that a log never stays silent for long.
 */
export class TrainingProgress {
  private bar: cliProgress.SingleBar | null = null;
  private lastLine = 0;
  private t0 = performance.now();
  private epochsDone = 0;
  private valDice = NaN;
  private batchesInEpoch = 0;
  private label = '';
  constructor(
    private readonly o: { stream: NodeJS.WriteStream | null; log: (l: string) => void; totalEpochs: number; batchesPerEpoch: number; heartbeat?: number },
  ) {}

  get tty(): boolean {
    return !!this.o.stream;
  }

  /** A new phase (e.g. 'stage 2') with its own epoch count. */
  phase(label: string, totalEpochs: number, batchesPerEpoch: number, startEpoch = 0): void {
    this.stopBar();
    this.label = label;
    this.o.totalEpochs = totalEpochs;
    this.o.batchesPerEpoch = batchesPerEpoch;
    this.epochsDone = startEpoch;
    this.epochsRun = 0;
    this.t0 = performance.now();
    this.valDice = NaN;
  }

  /** Time left: the epochs run so far (and the fraction of this one) give the time of one epoch. */
  private eta(fraction: number): string {
    const el = (performance.now() - this.t0) / 1000;
    const run = this.epochsRun + fraction;
    return run > 0 ? duration((el / run) * (this.o.totalEpochs - this.epochsDone - fraction)) : '?';
  }

  private epochsRun = 0;

  step(epoch: number, batch: number, s: StepFields): void {
    this.batchesInEpoch = batch + 1;
    const total = this.o.batchesPerEpoch;
    const payload = { loss: fmt(s.loss, 2), beta: fmt(s.beta, 4), dice: fmt(this.valDice, 3), eta: this.eta(this.batchesInEpoch / total), ep: `${epoch + 1}/${this.o.totalEpochs}`, label: this.label ? `${this.label} ` : '' };
    if (this.o.stream) {
      if (!this.bar) {
        this.bar = new cliProgress.SingleBar(
          { format: '{label}epoch {ep} [{bar}] {value}/{total} | loss {loss} | β {beta} | val Dice {dice} | ETA {eta}', stream: this.o.stream, hideCursor: true, clearOnComplete: false, barsize: 20 },
          cliProgress.Presets.shades_classic,
        );
        this.bar.start(total, 0, payload);
      }
      this.bar.update(this.batchesInEpoch, payload);
      return;
    }
    const now = performance.now();
    if (now - this.lastLine > (this.o.heartbeat ?? 5) * 1000) {
      this.lastLine = now;
      this.o.log(`  ${payload.label}epoch ${payload.ep}: batch ${this.batchesInEpoch}/${total}, loss/vol ${payload.loss}, β ${payload.beta} (ETA ${payload.eta})`);
    }
  }

  epoch(e: { epoch: number; loss: number; beta?: number; kl?: number; validation?: Record<string, number>; seconds: number }): void {
    this.stopBar();
    this.epochsDone = e.epoch;
    this.epochsRun++;
    this.valDice = e.validation?.['dice'] ?? NaN;
    this.lastLine = performance.now();
    const left = this.o.totalEpochs - e.epoch;
    const per = (performance.now() - this.t0) / 1000 / this.epochsRun;
    this.o.log(
      `${this.label ? `${this.label}: ` : ''}epoch ${e.epoch}/${this.o.totalEpochs}  loss/vol ${fmt(e.loss, 2)}` +
        (e.kl !== undefined ? `  KL/vol ${fmt(e.kl, 2)}` : '') +
        (e.beta !== undefined ? `  β ${fmt(e.beta, 4)}` : '') +
        (Number.isFinite(this.valDice) ? `  validation Dice ${this.valDice.toFixed(3)}` : '') +
        `  ${duration(e.seconds)}${left > 0 ? `, ~${duration(per * left)} left` : ''}`,
    );
  }

  stopBar(): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = null;
    }
  }
}

/** Where progress bars go: stderr when it is a terminal, else nowhere (plain lines are logged instead). */
export function progressStream(): NodeJS.WriteStream | null {
  return process.stderr.isTTY ? process.stderr : null;
}
