// The fuzz harness of issue 17: a seeded mutator over the inputs voxvae parses — NIfTI, NRRD, native
// checkpoints (Vae.load) and WebAssembly checkpoints (voxvae/web loadModel). Each input runs in a child
// process (one reused child per target, replaced after a crash, a hang or a memory overrun) with a
// per-input timeout, a V8 heap cap and an RSS cap watched from the parent. It reports crashes, hangs,
// untyped errors (anything but a VoxvaeError), memory overruns, and the peak allocation of each input
// against what the input's own bytes can fill (its length; 1032× for gzip, deflate's limit).
//
//   npm run fuzz -- [--target nifti|nrrd|native|wasm|all] [--count N] [--seed S] [--timeout ms]
//                   [--rss-cap MiB] [--save DIR] [--corpus-only]
//
// Every run first replays the committed corpus (test/fuzz/corpus/<target>/*: the inputs that once
// failed, issue 17's ten findings among them), then `count` mutants per target. Failing inputs are
// written to --save (default test/fuzz/failures/, not committed) for triage. Exit status 1 on any finding.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type Target = 'nifti' | 'nrrd' | 'native' | 'wasm';
export const TARGETS: readonly Target[] = ['nifti', 'nrrd', 'native', 'wasm'];
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CORPUS = path.join(ROOT, 'test', 'fuzz', 'corpus');
const DEFLATE_MAX_RATIO = 1032;
/** An input may make the loader grow its memory by this many times what its bytes can fill, plus SLACK. */
export const ALLOWED_FACTOR = 16;
const SLACK = 64 << 20;

export interface Finding {
  target: Target;
  kind: 'crash' | 'hang' | 'untyped' | 'memory' | 'allocation';
  input: string;
  detail: string;
}

export interface TargetReport {
  target: Target;
  inputs: number;
  corpus: number;
  ok: number;
  typed: Record<string, number>;
  findings: Finding[];
  /** The largest peak growth (bytes) over the bytes the input can fill, and for which input. */
  worstRatio: { ratio: number; growth: number; bytes: number; input: string };
  seconds: number;
}

export interface FuzzOptions {
  targets?: readonly Target[];
  count?: number;
  seed?: number;
  timeoutMs?: number;
  rssCapMiB?: number;
  save?: string | null;
  corpusOnly?: boolean;
  log?: (line: string) => void;
}

// ---- the seeded mutator --------------------------------------------------------------------------------------

/** mulberry32: small, seeded, good enough to pick mutations. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING_NUMBERS = ['0', '-1', '1', '2', '3', '7', '255', '256', '348', '352', '540', '1024', '32767', '32768', '65535', '65536', '1000000', '2147483647', '2147483648', '4294967296', '1e9', '1e30', '3e38', '-3e38', '1e308', 'NaN', 'nan', 'inf', '-inf', '0.5', '-0', '9007199254740993', 'null', '""', '[]', '{}'];
const INTERESTING_BYTES = [0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x20, 0x3a];
const INTERESTING_I32 = [0, 1, -1, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, -0x80000000, 348, 352, 540];

/** One mutant of `base`: 1–4 byte-level or text-level mutations, chosen by `r`. */
export function mutate(base: Uint8Array, r: () => number): Uint8Array {
  let b: Uint8Array = new Uint8Array(base);
  const n = 1 + Math.floor(r() * 4);
  const pick = (k: number): number => Math.floor(r() * k);
  // Mutations favour the start of the file, where the headers are.
  const pos = (len: number): number => (r() < 0.7 ? pick(Math.min(len, 1024)) : pick(len));
  for (let m = 0; m < n && b.length > 0; m++) {
    switch (pick(10)) {
      case 0: { // flip a bit
        const p = pos(b.length);
        b[p]! ^= 1 << pick(8);
        break;
      }
      case 1: // an interesting byte
        b[pos(b.length)] = INTERESTING_BYTES[pick(INTERESTING_BYTES.length)]!;
        break;
      case 2: { // an interesting 16/32-bit integer, either byte order
        const p = pos(Math.max(1, b.length - 4));
        const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
        const v = INTERESTING_I32[pick(INTERESTING_I32.length)]!;
        if (p + 4 <= b.length) {
          if (r() < 0.5) dv.setInt32(p, v, r() < 0.5);
          else dv.setInt16(p, v << 16 >> 16, r() < 0.5);
        }
        break;
      }
      case 3: // truncate
        b = b.subarray(0, pick(b.length + 1));
        break;
      case 4: { // append random bytes
        const extra = new Uint8Array(1 + pick(64)).map(() => pick(256));
        b = concat(b, extra);
        break;
      }
      case 5: { // delete a chunk
        const p = pos(b.length), len = 1 + pick(16);
        b = concat(b.subarray(0, p), b.subarray(Math.min(b.length, p + len)));
        break;
      }
      case 6: { // duplicate a chunk
        const p = pos(b.length), len = 1 + pick(64);
        b = concat(concat(b.subarray(0, p), b.subarray(p, p + len)), b.subarray(p));
        break;
      }
      default: // text: replace a number (or a JSON value) in the header text with an interesting one
        b = mutateText(b, r);
    }
  }
  return b;
}

function concat(a: Uint8Array, c: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + c.length);
  out.set(a);
  out.set(c, a.length);
  return out;
}

function mutateText(b: Uint8Array, r: () => number): Uint8Array {
  const limit = Math.min(b.length, 64 * 1024);
  const text = Buffer.from(b.buffer, b.byteOffset, limit).toString('latin1');
  const tokens = [...text.matchAll(/-?\d+(\.\d+)?(e[+-]?\d+)?|"[a-zA-Z_ ]{1,24}"|[a-z]{3,}(?: [a-z]+)?(?=:)/g)];
  if (!tokens.length) return b;
  const t = tokens[Math.floor(r() * tokens.length)]!;
  let rep: string;
  if (t[0].startsWith('"')) rep = r() < 0.5 ? '"x"' : INTERESTING_NUMBERS[Math.floor(r() * INTERESTING_NUMBERS.length)]!;
  else if (/^[a-z]/.test(t[0])) rep = r() < 0.5 ? t[0].slice(0, -1) : t[0] + 'e'; // a misspelt field name
  else rep = INTERESTING_NUMBERS[Math.floor(r() * INTERESTING_NUMBERS.length)]!;
  const before = Buffer.from(text.slice(0, t.index), 'latin1'), after = b.subarray(t.index! + t[0].length);
  let out = concat(concat(before, Buffer.from(rep, 'latin1')), after);
  // A safetensors header carries its own length: keep it consistent most of the time, so the mutation
  // reaches the JSON and the checkpoint checks behind it.
  if (b.length >= 8 && r() < 0.8) {
    const dv = new DataView(b.buffer, b.byteOffset, 8);
    const hlen = Number(dv.getBigUint64(0, true));
    if (hlen > 0 && 8 + hlen <= b.length && t.index! >= 8 && t.index! < 8 + hlen) {
      out = new Uint8Array(out);
      new DataView(out.buffer).setBigUint64(0, BigInt(hlen + rep.length - t[0].length), true);
    }
  }
  return out;
}

// ---- seeds: valid inputs of every target ----------------------------------------------------------------------

async function seeds(target: Target): Promise<Uint8Array[]> {
  if (target === 'nifti' || target === 'nrrd') {
    const { createVolume, encodeNifti, encodeNrrd } = await import('../ts/data/index.js');
    const shape: [number, number, number] = [5, 4, 3];
    const vols = [
      createVolume(shape, Uint8Array.from({ length: 60 }, (_, i) => i % 3 === 0 ? 1 : 0), { spacing: [0.5, 1, 2], origin: [1, 2, 3] }),
      createVolume(shape, Int16Array.from({ length: 60 }, (_, i) => i * 7 - 100)),
      createVolume(shape, Float32Array.from({ length: 60 }, (_, i) => i / 8 - 2), { direction: [0, 1, 0, -1, 0, 0, 0, 0, 1] }),
    ];
    if (target === 'nifti') return vols.flatMap((v) => [encodeNifti(v), encodeNifti(v, { gzip: true })]);
    const out: Uint8Array[] = [];
    for (const v of vols) for (const encoding of ['raw', 'gzip'] as const) out.push(await encodeNrrd(v, { encoding }));
    out.push(Buffer.from('NRRD0004\ntype: float\ndimension: 3\nsizes: 3 2 1\nspace: left-posterior-superior\nspace directions: (1,0,0) (0,2,0) (0,0,3)\nspace origin: (1,2,3)\nencoding: ascii\n\n1 2.5 -3 inf nan 0\n', 'latin1'));
    return out;
  }
  const { monaiVarAutoEncoder, skullVaeDecoder } = await import('../ts/config.js');
  const { Vae } = await import('../ts/vae.js');
  const tmp = path.join(os.tmpdir(), `voxvae-fuzz-seed-${process.pid}`);
  mkdirSync(tmp, { recursive: true });
  const out: Uint8Array[] = [];
  const cfgs = [
    monaiVarAutoEncoder({ inputShape: [8, 8, 8], channels: [2, 4], latentSize: 3, norm: 'batch' }),
    skullVaeDecoder({ inputShape: [8, 8, 8], channels: [2, 4], latentSize: 3 }),
  ];
  for (const [i, c] of cfgs.entries()) {
    const vae = await Vae.create(c, { seed: i });
    if (i === 0) await vae.trainStep({ input: new Float32Array(512).map((_, k) => k % 2), shape: [1, 1, 8, 8, 8] }, { optimizer: { lr: 1e-3 } });
    const f = path.join(tmp, `${i}.safetensors`);
    await vae.save(f);
    vae.dispose();
    out.push(new Uint8Array(readFileSync(f)));
  }
  return out;
}

// ---- the child: runs inputs, reports outcome and peak memory growth ------------------------------------------------

/** A size field of /proc/self/status in bytes (0 where there is no /proc: then array buffers alone are measured). */
function procStatus(field: string): number {
  let text: string;
  try {
    text = readFileSync('/proc/self/status', 'utf8');
  } catch {
    return 0;
  }
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

async function child(target: Target): Promise<void> {
  const { VoxvaeError } = await import('../ts/errors.js');
  let run: (bytes: Uint8Array) => Promise<void>;
  const shm = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const file = path.join(shm, `voxvae-fuzz-${process.pid}.safetensors`);
  if (target === 'nifti') {
    const { decodeNifti } = await import('../ts/data/nifti.js');
    run = async (b) => void decodeNifti(b, 'fuzz.nii');
  } else if (target === 'nrrd') {
    const { decodeNrrd } = await import('../ts/data/nrrd.js');
    run = async (b) => void (await decodeNrrd(b, 'fuzz.nrrd'));
  } else if (target === 'native') {
    const { Vae } = await import('../ts/vae.js');
    run = async (b) => {
      writeFileSync(file, b);
      (await Vae.load(file)).dispose();
    };
  } else {
    const { loadModel, loadRuntime } = await import('../ts/web/index.js');
    let runtime = await loadRuntime({ threads: 1 });
    run = async (b) => {
      try {
        (await loadModel(b, { runtime })).dispose();
      } catch (e) {
        // An aborted module is unusable: the harness counts the error (EINTERNAL is a finding) and goes on with a new one.
        if ((e as { code?: string }).code === 'EINTERNAL') runtime = await loadRuntime({ threads: 1 });
        throw e;
      }
    };
  }
  const canClear = (() => {
    try {
      writeFileSync('/proc/self/clear_refs', '5');
      return true;
    } catch {
      return false;
    }
  })();
  process.on('message', async (msg: { id: number; bytes: string }) => {
    const bytes = new Uint8Array(Buffer.from(msg.bytes, 'base64'));
    const ab0 = process.memoryUsage().arrayBuffers;
    if (canClear) writeFileSync('/proc/self/clear_refs', '5');
    const rss0 = procStatus('VmRSS');
    let outcome: string, detail = '';
    try {
      await run(bytes);
      outcome = 'ok';
    } catch (e) {
      if (e instanceof VoxvaeError) outcome = e.code === 'EINTERNAL' ? 'untyped' : e.code;
      else outcome = 'untyped';
      if (outcome === 'untyped') detail = `${(e as Error)?.name}: ${(e as Error)?.message}`.slice(0, 400);
    }
    const growth = Math.max(0, (canClear ? procStatus('VmHWM') : procStatus('VmRSS')) - rss0, process.memoryUsage().arrayBuffers - ab0);
    process.send!({ id: msg.id, outcome, detail, growth });
  });
  process.send!({ ready: true });
}

// ---- the parent ---------------------------------------------------------------------------------------------

interface Reply {
  id: number;
  outcome: string;
  detail: string;
  growth: number;
}

class Runner {
  private proc: ChildProcess | null = null;
  private ready: Promise<void> | null = null;
  private pending: { id: number; resolve: (r: Reply | { outcome: 'crash' | 'hang' | 'memory'; detail: string }) => void } | null = null;
  private nextId = 0;
  private watch: NodeJS.Timeout | null = null;

  constructor(private readonly target: Target, private readonly timeoutMs: number, private readonly rssCap: number) {}

  private start(): Promise<void> {
    const proc = fork(fileURLToPath(import.meta.url), ['--child', this.target], {
      execArgv: ['--import', 'tsx', '--max-old-space-size=1024'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.proc = proc;
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    this.ready = new Promise((resolve, reject) => {
      proc.once('message', () => resolve());
      proc.once('exit', (code, sig) => reject(new Error(`the ${this.target} fuzz child exited while starting (${code ?? sig}): ${stderr}`)));
    });
    proc.on('message', (m: Reply) => {
      if (this.pending && m.id === this.pending.id) {
        const p = this.pending;
        this.pending = null;
        p.resolve(m);
      }
    });
    proc.on('exit', (code, sig) => {
      if (this.proc === proc) this.proc = null;
      if (this.pending) {
        const p = this.pending;
        this.pending = null;
        p.resolve({ outcome: 'crash', detail: `child exited (${code ?? sig}): ${stderr.slice(-400)}` });
      }
    });
    this.watch = setInterval(() => {
      if (!proc.pid || !this.pending) return;
      try {
        const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
        if (m && Number(m[1]) * 1024 > this.rssCap) this.fail('memory', `RSS ${(Number(m[1]) / 1024).toFixed(0)} MiB over the cap of ${(this.rssCap / 2 ** 20).toFixed(0)} MiB`);
      } catch {
        /* exited */
      }
    }, 50);
    return this.ready;
  }

  private fail(outcome: 'hang' | 'memory', detail: string): void {
    const p = this.pending;
    this.pending = null;
    const proc = this.proc;
    this.proc = null;
    if (this.watch) clearInterval(this.watch);
    proc?.kill('SIGKILL');
    p?.resolve({ outcome, detail });
  }

  async run(bytes: Uint8Array): Promise<Reply | { outcome: 'crash' | 'hang' | 'memory'; detail: string }> {
    if (!this.proc) await this.start();
    else await this.ready;
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending = { id, resolve };
      const timer = setTimeout(() => {
        if (this.pending?.id === id) this.fail('hang', `no answer within ${this.timeoutMs} ms`);
      }, this.timeoutMs);
      const done = resolve;
      this.pending.resolve = (r) => {
        clearTimeout(timer);
        done(r);
      };
      this.proc!.send({ id, bytes: Buffer.from(bytes).toString('base64') });
    });
  }

  close(): void {
    if (this.watch) clearInterval(this.watch);
    this.proc?.kill('SIGKILL');
    this.proc = null;
  }
}

/** Bytes an input can fill: its length, or deflate's limit for a gzip stream. */
function fillable(b: Uint8Array): number {
  return b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b ? b.length * DEFLATE_MAX_RATIO : b.length;
}

export function corpusFiles(target: Target): string[] {
  const dir = path.join(CORPUS, target);
  return existsSync(dir) ? readdirSync(dir).sort().map((n) => path.join(dir, n)) : [];
}

export async function fuzz(opts: FuzzOptions = {}): Promise<TargetReport[]> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const reports: TargetReport[] = [];
  for (const target of opts.targets ?? TARGETS) {
    const t0 = performance.now();
    const report: TargetReport = { target, inputs: 0, corpus: 0, ok: 0, typed: {}, findings: [], worstRatio: { ratio: 0, growth: 0, bytes: 0, input: '' }, seconds: 0 };
    const runner = new Runner(target, opts.timeoutMs ?? 10_000, (opts.rssCapMiB ?? 1536) << 20);
    const r = rng((opts.seed ?? 1) * 1000003 + TARGETS.indexOf(target));
    const bases = await seeds(target);
    const corpus = corpusFiles(target).map((f) => ({ name: path.relative(ROOT, f), bytes: new Uint8Array(readFileSync(f)) }));
    const count = opts.corpusOnly ? 0 : opts.count ?? 1000;
    const record = (name: string, bytes: Uint8Array, kind: Finding['kind'], detail: string): void => {
      report.findings.push({ target, kind, input: name, detail });
      log(`fuzz ${target}: ${kind} on ${name}: ${detail}`);
      if (opts.save !== null) {
        const dir = opts.save ?? path.join(ROOT, 'test', 'fuzz', 'failures', target);
        mkdirSync(dir, { recursive: true });
        writeFileSync(path.join(dir, `${kind}-${path.basename(name)}.bin`), bytes);
      }
    };
    try {
      for (let i = 0; i < corpus.length + count; i++) {
        const fromCorpus = i < corpus.length;
        let name: string, bytes: Uint8Array;
        if (fromCorpus) ({ name, bytes } = corpus[i]!);
        else {
          // Mutate a seed, or (a third of the time) a corpus input: the shapes that once failed are good parents.
          const parents = corpus.length && r() < 0.33 ? corpus.map((c) => c.bytes) : bases;
          bytes = mutate(parents[Math.floor(r() * parents.length)]!, r);
          name = `seed${opts.seed ?? 1}-${target}-${i - corpus.length}`;
        }
        const res = await runner.run(bytes);
        report.inputs++;
        if (fromCorpus) report.corpus++;
        if (res.outcome === 'crash' || res.outcome === 'hang' || res.outcome === 'memory' || res.outcome === 'untyped') {
          record(name, bytes, res.outcome === 'crash' ? 'crash' : res.outcome === 'hang' ? 'hang' : res.outcome === 'memory' ? 'memory' : 'untyped', res.detail);
          continue;
        }
        const reply = res as Reply;
        if (reply.outcome === 'ok') report.ok++;
        else report.typed[reply.outcome] = (report.typed[reply.outcome] ?? 0) + 1;
        const can = fillable(bytes);
        const ratio = reply.growth / Math.max(1, can);
        if (reply.growth > SLACK && ratio > report.worstRatio.ratio) report.worstRatio = { ratio, growth: reply.growth, bytes: bytes.length, input: name };
        if (reply.growth > ALLOWED_FACTOR * can + SLACK)
          record(name, bytes, 'allocation', `memory grew by ${(reply.growth / 2 ** 20).toFixed(1)} MiB for a ${bytes.length}-byte input (allowed ${ALLOWED_FACTOR}× what it can fill + ${SLACK >> 20} MiB)`);
        if ((i + 1) % 1000 === 0) log(`fuzz ${target}: ${i + 1 - Math.min(i + 1, corpus.length)} mutants, ${report.findings.length} findings, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      }
    } finally {
      runner.close();
    }
    report.seconds = (performance.now() - t0) / 1000;
    log(`fuzz ${target}: ${report.inputs} inputs (${report.corpus} from the corpus) in ${report.seconds.toFixed(1)} s: ${report.ok} loaded, typed errors ${JSON.stringify(report.typed)}, ${report.findings.length} findings; largest growth beyond ${SLACK >> 20} MiB: ${report.worstRatio.growth ? `${(report.worstRatio.growth / 2 ** 20).toFixed(1)} MiB for ${report.worstRatio.bytes} bytes (${report.worstRatio.input})` : 'none'}`);
    reports.push(report);
  }
  return reports;
}

function parseArgs(argv: string[]): FuzzOptions {
  const o: FuzzOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!, v = argv[i + 1];
    const num = (): number => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${a} needs a non-negative number, not ${v}`);
      i++;
      return n;
    };
    if (a === '--target') {
      if (v !== 'all' && !TARGETS.includes(v as Target)) throw new Error(`--target must be one of ${TARGETS.join(', ')} or all`);
      o.targets = v === 'all' ? TARGETS : [v as Target];
      i++;
    } else if (a === '--count') o.count = num();
    else if (a === '--seed') o.seed = num();
    else if (a === '--timeout') o.timeoutMs = num();
    else if (a === '--rss-cap') o.rssCapMiB = num();
    else if (a === '--save') {
      o.save = v!;
      i++;
    } else if (a === '--corpus-only') o.corpusOnly = true;
    else throw new Error(`unknown option ${a} (see the comment at the top of scripts/fuzz.ts)`);
  }
  return o;
}

const self = fileURLToPath(import.meta.url);
if (process.argv[1] && path.resolve(process.argv[1]) === self) {
  if (process.argv[2] === '--child') await child(process.argv[3] as Target);
  else {
    const reports = await fuzz(parseArgs(process.argv.slice(2)));
    const findings = reports.flatMap((r) => r.findings);
    console.log(`fuzz: ${reports.map((r) => `${r.target} ${r.inputs}`).join(', ')} inputs; ${findings.length} findings`);
    process.exitCode = findings.length ? 1 : 0;
  }
}
