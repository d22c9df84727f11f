// `npm run bench`: voxvae's training step and decode timed with benny, side by side with PyTorch.
// Both are the public API as a user calls it, with default options: `vae.trainStep(batch)` and
// `vae.decode(z)` (which returns probabilities: the softmax is timed too). PyTorch's decode includes its
// softmax and its step the same loss (bench/torch_bench.py). Each case with a target (bench/models.ts:
// voxvae at least N× faster than PyTorch in the same run) gets PASS or FAIL, printed at the end and
// written to the report.
//
//   npm run bench                      all cases (tiny, quarter, half, full decode, per-layer tables)
//   npm run bench -- --quick           tiny and quarter only
//   npm run bench -- --only train-half,layers    cases whose name contains any of the words
//   npm run bench -- --targets         only the cases with a target (train-quarter, train-half,
//                                      decode-half, decode-full)
//   npm run bench -- --no-torch        voxvae only
//   npm run bench -- --write           also regenerate the measured part of bench/RESULTS.md (and
//                                      bench/results/results.json, that run's raw numbers)
//   npm run bench -- --threads 2       kernel threads for both engines (default: all cores)
//   npm run bench -- --strict          exit with status 1 when a target FAILs
//   npm run bench -- --list            print the case names
//   npm run bench -- --render bench/results/results.json [--write]   re-render a saved run's tables
//
// Each voxvae case runs in a forked child (bench/worker.ts) so that its peak RSS is its own; each
// PyTorch case runs bench/torch_bench.py with /usr/bin/python3, once with OMP_WAIT_POLICY unset and once
// with OMP_WAIT_POLICY=PASSIVE, and the faster run is reported. Everything runs one after another.
// The run's numbers go to bench/results/last-run.json and bench/results/last-run.md.
import { execFileSync, fork, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CASES, MODELS, caseFlops, convLayers, layerFlops, modelFlops, type CaseDef, type LayerDef } from './models.js';
import type { LayerTiming, Timing } from './layer.js';
import type { Job, LayersResult, ModelResult, WorkerMessage } from './worker.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');

// ---- arguments ----------------------------------------------------------------------------------------
interface Args {
  quick: boolean;
  targets: boolean;
  strict: boolean;
  only: string[];
  torch: boolean;
  write: boolean;
  list: boolean;
  render: string | null;
  threads: number;
  python: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, targets: false, strict: false, only: [], torch: true, write: false, list: false, render: null, threads: os.availableParallelism(), python: '/usr/bin/python3' };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]!;
    const next = (): string => {
      const n = argv[++i];
      if (n === undefined) throw new Error(`${v} needs a value`);
      return n;
    };
    if (v === '--quick') a.quick = true;
    else if (v === '--targets') a.targets = true;
    else if (v === '--strict') a.strict = true;
    else if (v === '--only') a.only.push(...next().split(',').filter(Boolean));
    else if (v.startsWith('--only=')) a.only.push(...v.slice(7).split(',').filter(Boolean));
    else if (v === '--no-torch') a.torch = false;
    else if (v === '--write') a.write = true;
    else if (v === '--list') a.list = true;
    else if (v === '--render') a.render = next();
    else if (v === '--threads') a.threads = Number(next());
    else if (v === '--python') a.python = next();
    else if (v === '--help' || v === '-h') {
      const src = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
      console.log(src.slice(0, src.findIndex((l) => !l.startsWith('//'))).map((l) => l.slice(3)).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument ${v} (try --help)`);
  }
  if (!Number.isInteger(a.threads) || a.threads < 1) throw new Error('--threads must be a positive integer');
  return a;
}

function selectCases(a: Args): CaseDef[] {
  return CASES.filter((c) => (!a.quick || c.quick) && (!a.targets || c.target !== undefined) && (a.only.length === 0 || a.only.some((w) => c.name.includes(w))));
}

// ---- machine --------------------------------------------------------------------------------------------
interface Machine {
  cpu: string;
  cores: number;
  avx512: boolean;
  avx2: boolean;
  memGiB: number;
  node: string;
  torch: string | null;
  threads: number;
  loadBefore: string;
  loadAfter?: string;
  /** git HEAD, native sources with uncommitted changes, and when the addon was built. */
  source: string;
}

function provenance(): string {
  const git = (...a: string[]): string => {
    try {
      return execFileSync('git', a, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trimEnd();
    } catch {
      return '';
    }
  };
  const head = git('rev-parse', '--short', 'HEAD').trim() || 'unknown';
  const dirty = git('status', '--porcelain', '--', 'native/core', 'native/napi')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.slice(3));
  let built = 'unknown';
  try {
    built = statSync(path.join(ROOT, 'build/Release/voxvae.node')).mtime.toISOString();
  } catch {
    /* a prebuild, or not built */
  }
  return `commit ${head}${dirty.length ? ` + uncommitted changes in ${dirty.join(', ')}` : ''}; addon build/Release/voxvae.node built ${built}`;
}

function uptime(): string {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return `load average: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`;
  }
}

function machine(threads: number): Machine {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^Model name:\s*(.+)$/m.exec(execFileSync('lscpu', { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } }));
    if (m) cpu = m[1]!.trim();
  } catch {
    /* lscpu missing: keep os.cpus() */
  }
  let flags = '';
  try {
    flags = /^flags\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
  } catch {
    /* not Linux */
  }
  const f = new Set(flags.split(/\s+/));
  return {
    cpu,
    cores: os.availableParallelism(),
    avx512: f.has('avx512f'),
    avx2: f.has('avx2') && f.has('fma'),
    memGiB: os.totalmem() / 2 ** 30,
    node: process.version,
    torch: null,
    threads,
    loadBefore: uptime(),
    source: provenance(),
  };
}

// ---- voxvae (forked worker) -----------------------------------------------------------------------------
function runWorker(c: CaseDef, threads: number): Promise<ModelResult | LayersResult> {
  const job: Job = { case: c, threads };
  return new Promise((resolve, reject) => {
    const child = fork(path.join(HERE, 'worker.ts'), [JSON.stringify(job)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let msg: WorkerMessage | undefined;
    child.on('message', (m) => (msg = m as WorkerMessage));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (msg?.ok) resolve(msg.result);
      else reject(new Error(`voxvae ${c.name} failed (exit ${code ?? signal}): ${msg && !msg.ok ? msg.error : 'no result'}`));
    });
  });
}

// ---- PyTorch (bench/torch_bench.py) -----------------------------------------------------------------------
type Policy = 'default' | 'PASSIVE';
interface TorchRun<T> {
  policy: Policy;
  result?: T;
  error?: string;
}

function torchAvailable(python: string): string | null {
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function torchRun<T>(python: string, mode: string, args: object, threads: number, policy: Policy): TorchRun<T> {
  const env = { ...process.env };
  delete env.OMP_WAIT_POLICY;
  if (policy === 'PASSIVE') env.OMP_WAIT_POLICY = 'PASSIVE';
  const r = spawnSync(python, [path.join(HERE, 'torch_bench.py'), mode, JSON.stringify(args), '--threads', String(threads)], {
    env,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: 900_000,
  });
  const line = r.stdout?.split('\n').find((l) => l.startsWith('@@JSON '));
  if (r.status !== 0 || !line) return { policy, error: `exit ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}` };
  return { policy, result: JSON.parse(line.slice(7)) as T };
}

/** Runs a PyTorch mode under both OMP wait policies; returns both runs and the best by `score` (lower wins). */
function torchBest<T>(python: string, mode: string, args: object, threads: number, label: string, score: (r: T) => number, show: (r: T) => string): { best?: T; bestPolicy?: Policy; runs: TorchRun<T>[] } {
  const runs: TorchRun<T>[] = [];
  for (const policy of ['default', 'PASSIVE'] as const) {
    const run = torchRun<T>(python, mode, args, threads, policy);
    runs.push(run);
    console.log(`  torch ${label} [OMP_WAIT_POLICY=${policy === 'default' ? 'unset' : policy}]: ${run.result ? show(run.result) : `failed: ${run.error}`}`);
  }
  let best: TorchRun<T> | undefined;
  for (const r of runs) if (r.result && (!best || score(r.result) < score(best.result!))) best = r;
  return { ...(best ? { best: best.result!, bestPolicy: best.policy } : {}), runs };
}

interface TorchTiming {
  median_s: number;
  min_s: number;
  times_s: number[];
}
interface TorchModel extends TorchTiming {
  peak_rss_kb: number | null;
  base_rss_kb: number;
  torch: string;
  threads: number;
}
interface TorchPeak extends TorchTiming {
  sgemm_gflops: number;
  sgemm_gflops_median: number;
  n: number;
}
interface TorchLayers {
  layers: { name: string; fwd: TorchTiming; bwd?: TorchTiming; bwd_w: TorchTiming; dx?: TorchTiming }[];
}

// ---- results ----------------------------------------------------------------------------------------------
interface ModelCaseResult {
  case: CaseDef;
  flops: number;
  voxvae?: ModelResult;
  voxvaeError?: string;
  torch?: TorchModel;
  torchPolicy?: Policy;
  torchRuns?: TorchRun<TorchModel>[];
}
interface LayersCaseResult {
  case: CaseDef;
  layers: LayerDef[];
  voxvae?: LayersResult;
  voxvaeError?: string;
  torch?: TorchLayers;
  torchPolicy?: Policy;
  torchRuns?: TorchRun<TorchLayers>[];
}

const fmtS = (s: number | undefined): string => (s === undefined || !Number.isFinite(s) ? '-' : s >= 1 ? s.toFixed(2) : s >= 0.1 ? s.toFixed(3) : s.toFixed(4));
const fmtMs = (s: number | undefined): string => (s === undefined || !Number.isFinite(s) ? '-' : (s * 1e3).toFixed(s < 0.01 ? 2 : 1));
const fmtG = (g: number | undefined): string => (g === undefined || !Number.isFinite(g) ? '-' : g.toFixed(g < 10 ? 2 : 1));
const fmtPct = (f: number | undefined): string => (f === undefined || !Number.isFinite(f) ? '-' : `${(f * 100).toFixed(f < 0.1 ? 1 : 0)}%`);
const fmtMB = (kb: number | null | undefined): string => (kb === null || kb === undefined ? '-' : (kb / 1024).toFixed(0));

function table(head: string[], rows: string[][], align?: ('l' | 'r')[]): string {
  const al = align ?? head.map((_, i) => (i === 0 ? 'l' : 'r'));
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const cell = (s: string, i: number): string => (al[i] === 'l' ? s.padEnd(w[i]!) : s.padStart(w[i]!));
  const line = (r: string[]): string => `| ${r.map((s, i) => cell(s, i)).join(' | ')} |`;
  return [line(head), `|${w.map((n, i) => (al[i] === 'l' ? ':' + '-'.repeat(n + 1) : '-'.repeat(n + 1) + ':')).join('|')}|`, ...rows.map(line)].join('\n');
}

function mainTable(results: ModelCaseResult[], torchOk: boolean, noTorch: string): string {
  const rows = results.map((r) => {
    const ours = r.voxvae?.timing.medianS;
    const theirs = r.torch?.median_s;
    const v = verdict(r);
    const m = MODELS[r.case.model];
    return [
      r.case.name,
      `${m.inputShape.join('×')}, ${m.channels.length} levels`,
      String(r.case.batch),
      fmtG(r.flops / 1e9),
      ours !== undefined ? `${fmtS(ours)} (n=${r.voxvae!.timing.samples}, ±${r.voxvae!.timing.rme?.toFixed(0)}%)` : r.voxvaeError ? 'failed' : '-',
      fmtG(ours !== undefined ? r.flops / ours / 1e9 : undefined),
      torchOk ? (theirs !== undefined ? `${fmtS(theirs)} (${r.torchPolicy === 'PASSIVE' ? 'P' : 'A'})` : 'failed') : noTorch,
      fmtG(theirs !== undefined ? r.flops / theirs / 1e9 : undefined),
      v.speedup !== undefined ? `${v.speedup.toFixed(2)}×` : '-',
      v.target !== undefined ? `≥ ${v.target}×` : '-',
      v.status,
    ];
  });
  return table(
    ['case', 'model', 'batch', 'GFLOP', 'voxvae s', 'voxvae GFLOP/s', 'PyTorch s', 'PyTorch GFLOP/s', 'speed-up (PyTorch s / voxvae s)', 'target', 'met'],
    rows,
    ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
  );
}

/** A case's speed-up over PyTorch in the same run and its target (from the current case table, so that a
 *  re-rendered older run is judged by today's targets): PASS, FAIL, 'not measured' or '-' (no target). */
function verdict(r: ModelCaseResult): { speedup?: number; target?: number; status: string } {
  const target = CASES.find((c) => c.name === r.case.name)?.target;
  const ours = r.voxvae?.timing.medianS, theirs = r.torch?.median_s;
  const speedup = ours !== undefined && theirs !== undefined && ours > 0 ? theirs / ours : undefined;
  const status = target === undefined ? '-' : speedup === undefined ? 'not measured' : speedup >= target ? 'PASS' : 'FAIL';
  return { ...(speedup !== undefined ? { speedup } : {}), ...(target !== undefined ? { target } : {}), status };
}

/** One line per case with a target: PASS/FAIL, the two times and the ratio. */
function verdictLines(results: ModelCaseResult[]): string[] {
  return results.flatMap((r) => {
    const v = verdict(r);
    if (v.target === undefined) return [];
    const m = MODELS[r.case.model];
    const what = r.case.task === 'train' ? `vae.trainStep(batch), batch ${r.case.batch}` : `vae.decode(z), batch ${r.case.batch}`;
    const times = `voxvae ${fmtS(r.voxvae?.timing.medianS)} s, PyTorch ${fmtS(r.torch?.median_s)} s`;
    return [`${v.status} ${r.case.name} (${m.inputShape.join('×')}; ${what}): ${times}; ${v.speedup !== undefined ? `${v.speedup.toFixed(2)}×` : 'no ratio'} faster, target ≥ ${v.target}×`];
  });
}

function memoryTable(results: ModelCaseResult[], torchOk: boolean, noTorch: string): string {
  const rows = results
    .filter((r) => r.voxvae || r.torch)
    .map((r) => {
      const o = r.voxvae?.memory, t = r.torch;
      const oAbove = o && o.peakRssKb !== null ? o.peakRssKb - o.baseRssKb : undefined;
      const tAbove = t && t.peak_rss_kb !== null ? t.peak_rss_kb - t.base_rss_kb : undefined;
      return [
        r.case.name,
        fmtMB(o?.peakRssKb),
        fmtMB(o?.baseRssKb),
        fmtMB(oAbove),
        torchOk ? fmtMB(t?.peak_rss_kb) : noTorch,
        fmtMB(t?.base_rss_kb),
        fmtMB(tAbove),
        oAbove !== undefined && tAbove !== undefined && tAbove > 0 ? `${(oAbove / tAbove).toFixed(2)}×` : '-',
      ];
    });
  return table(['case', 'voxvae peak MiB', 'voxvae base MiB', 'voxvae above base', 'PyTorch peak MiB', 'PyTorch base MiB', 'PyTorch above base', 'voxvae/PyTorch (above base)'], rows);
}

interface LayerPart {
  ms: number | undefined;
  gflops: number | undefined;
}
function layerParts(l: LayerDef, n: number, t: { fwd: Timing | TorchTiming; bwd?: Timing | TorchTiming; bwd_w: Timing | TorchTiming; dx?: Timing | TorchTiming } | undefined): { fwd: LayerPart; dx: LayerPart; dw: LayerPart; total: number | undefined } {
  const med = (x: Timing | TorchTiming | undefined): number | undefined => (x === undefined ? undefined : 'medianS' in x ? x.medianS : x.median_s);
  const f = layerFlops(l, n);
  const tf = med(t?.fwd), tw = med(t?.bwd_w), tb = med(t?.bwd);
  // backward-data time: the median of the paired (backward with dx) - (backward without dx).
  const tx = med(t?.dx);
  const part = (flops: number, s: number | undefined): LayerPart => ({ ms: s, gflops: s !== undefined && s > 0 && flops > 0 ? flops / s / 1e9 : undefined });
  const total = tf !== undefined && tw !== undefined ? tf + (l.needDx ? (tb ?? NaN) : tw) : undefined;
  return { fwd: part(f.fwd, tf), dx: part(f.dx, l.needDx ? tx : undefined), dw: part(f.dw, tw), total };
}

function layersTable(r: LayersCaseResult, engine: 'voxvae' | 'torch', peak: number | undefined, step: ModelCaseResult | undefined): string {
  const n = r.case.batch;
  const pct = (g: number | undefined): string => (peak && g !== undefined ? fmtPct(g / peak) : '-');
  const gf = (flops: number, s: number | undefined): number | undefined => (s !== undefined && s > 0 ? flops / s / 1e9 : undefined);
  let sumT = 0, sumF = 0, sumOther = 0;
  const rows = r.layers.map((l, i) => {
    const mine = engine === 'voxvae' ? r.voxvae?.layers[i] : r.torch?.layers[i];
    const p = layerParts(l, n, mine as LayerTiming | undefined);
    const other = layerParts(l, n, (engine === 'voxvae' ? r.torch?.layers[i] : r.voxvae?.layers[i]) as LayerTiming | undefined);
    const f = layerFlops(l, n);
    const all = f.fwd + f.dx + f.dw;
    if (p.total !== undefined) {
      sumT += p.total;
      sumF += all;
    }
    if (other.total !== undefined) sumOther += other.total;
    const row = [
      l.name,
      `${l.kind === 'conv' ? 'conv3d' : 'convT3d'} ${l.cin}→${l.cout}`,
      `${l.in.join('×')} → ${l.out.join('×')}`,
      fmtG(f.fwd / 1e9),
      fmtMs(p.fwd.ms), fmtG(p.fwd.gflops), pct(p.fwd.gflops),
      fmtMs(p.dx.ms), fmtG(p.dx.gflops), pct(p.dx.gflops),
      fmtMs(p.dw.ms), fmtG(p.dw.gflops), pct(p.dw.gflops),
      fmtMs(p.total), fmtG(gf(all, p.total)), pct(gf(all, p.total)),
    ];
    if (engine === 'voxvae') row.push(p.total !== undefined && other.total !== undefined ? `${(p.total / other.total).toFixed(2)}×` : '-');
    return row;
  });
  const blank = (k: number): string[] => Array.from({ length: k }, () => '');
  const sumRow = ['all convs', '', '', fmtG(r.layers.reduce((a, l) => a + l.flops * n, 0) / 1e9), ...blank(9), fmtMs(sumT), fmtG(gf(sumF, sumT)), pct(gf(sumF, sumT))];
  if (engine === 'voxvae') sumRow.push(sumT > 0 && sumOther > 0 ? `${(sumT / sumOther).toFixed(2)}×` : '-');
  rows.push(sumRow);
  const stepS = engine === 'voxvae' ? step?.voxvae?.timing.medianS : step?.torch?.median_s;
  if (stepS !== undefined && sumT > 0) {
    const restRow = ['rest of step', 'norms, act., loss, Adam', `step ${fmtMs(stepS)} ms`, ...blank(10), fmtMs(stepS - sumT), '', ''];
    if (engine === 'voxvae') restRow.push('');
    rows.push(restRow);
  }
  const head = ['layer', 'op', 'in → out (D×H×W)', 'GFLOP fwd', 'fwd ms', 'GFLOP/s', '% peak', 'dX ms', 'GFLOP/s', '% peak', 'dW ms', 'GFLOP/s', '% peak', 'fwd+bwd ms', 'GFLOP/s', '% peak'];
  if (engine === 'voxvae') head.push('voxvae/PyTorch');
  return table(head, rows, head.map((_, i) => (i <= 2 ? 'l' : 'r')));
}

// ---- report ---------------------------------------------------------------------------------------------
interface Report {
  machine: Machine;
  python: string;
  argv: string[];
  startedAt: string;
  finishedAt?: string;
  peak?: TorchPeak;
  peakPolicy?: Policy;
  peakRuns?: TorchRun<TorchPeak>[];
  models: ModelCaseResult[];
  layers: LayersCaseResult[];
}

function markdown(rep: Report, torchOk: boolean, noTorch: string): string {
  const m = rep.machine;
  const peak = rep.peak?.sgemm_gflops;
  const out: string[] = [];
  const cmd = `npm run bench${rep.argv.length ? ' -- ' + rep.argv.join(' ') : ''}`;
  out.push(`Measured ${rep.startedAt} → ${rep.finishedAt ?? '?'} with \`${cmd}\`.`, '');
  out.push(
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB.toFixed(0)} GiB, AVX2+FMA ${m.avx2 ? 'yes' : 'no'}, AVX-512 ${m.avx512 ? 'yes' : 'no'}`,
    `- Node ${m.node}; PyTorch ${m.torch ?? 'not installed / not run'} (${rep.python}); ${m.threads} threads for both engines (voxvae \`threads\`, \`torch.set_num_threads\`)`,
    `- voxvae: ${m.source}`,
    `- Load before: \`${m.loadBefore}\``,
    `- Load after: \`${m.loadAfter ?? '?'}\``,
    rep.peak
      ? `- SGEMM peak (PyTorch \`torch.mm\` 2048², ${m.threads} threads, best of ${rep.peak.times_s.length}, OMP_WAIT_POLICY ${rep.peakPolicy === 'PASSIVE' ? 'PASSIVE' : 'unset'}): **${rep.peak.sgemm_gflops.toFixed(1)} GFLOP/s** (median ${rep.peak.sgemm_gflops_median.toFixed(1)})`
      : '- SGEMM peak: not measured (needs PyTorch), so no "% peak" columns',
    '',
  );
  if (rep.models.length) {
    out.push('### Training step and decode', '');
    out.push(mainTable(rep.models, torchOk, noTorch), '');
    out.push(
      'Timed calls, default options as a user calls them: voxvae `vae.trainStep(batch)` (80·Dice(sum) + 1·KL(sum), Adam lr 1e-4) and `vae.decode(z)` (eval mode, returns probabilities: the softmax is timed); ' +
        'PyTorch the same step and the decoder forward + softmax under `torch.inference_mode()` (bench/torch_bench.py). ' +
        'voxvae s: benny median (n samples, ± relative margin of error); PyTorch s: median of its timed runs, the faster of OMP_WAIT_POLICY unset (A) and PASSIVE (P). ' +
        'speed-up = PyTorch s / voxvae s (> 1: voxvae faster). GFLOP/s = analytic conv + linear FLOPs / median time: a training step counts N·(3·(F_enc + F_dec) − F_conv0), a decode N·F_dec (see bench/models.ts). ' +
        'target: the speed-up voxvae must reach over PyTorch in the same run (bench/models.ts); met: PASS or FAIL.',
      '',
    );
    const lines = verdictLines(rep.models);
    if (lines.length) out.push('### Targets', '', ...lines.map((l) => `- ${l}`), '');
    out.push('### Peak resident memory', '');
    out.push(memoryTable(rep.models, torchOk, noTorch), '');
    out.push(
      'Each case runs in its own child process (voxvae: a forked Node worker; PyTorch: one python3 process per case). base = RSS after Node/tsx/the addon (or Python/torch) are loaded, just before the model is built; ' +
        'peak = VmHWM after all timed runs, counted from a reset (`echo 5 > /proc/self/clear_refs`) at that point. "above base" is what the model, its optimizer state, inputs and activations add.',
      '',
    );
  }
  for (const l of rep.layers) {
    const md = MODELS[l.case.model];
    const step = rep.models.find((r) => r.case.task === 'train' && r.case.model === l.case.model);
    out.push(`### Per-layer: ${l.case.model} (${md.inputShape.join('×')}, ${md.channels.length} levels), batch ${l.case.batch}, voxvae`, '');
    out.push(layersTable(l, 'voxvae', peak, step), '');
    if (l.torch) {
      out.push(`### Per-layer: ${l.case.model}, batch ${l.case.batch}, PyTorch (OMP_WAIT_POLICY ${l.torchPolicy === 'PASSIVE' ? 'PASSIVE' : 'unset'})`, '');
      out.push(layersTable(l, 'torch', peak, step), '');
    }
  }
  if (rep.layers.length)
    out.push(
      'Each conv layer alone (voxvae: a one-layer native Net through `native().Net`; PyTorch: one `nn.Conv3d`/`nn.ConvTranspose3d`), batch as in training, median of ' +
        `${rep.layers.map((l) => `${l.case.benny.minSamples} (${l.case.model})`).join(', ')} rounds after ${rep.layers[0]!.case.torch.warmup} warm-up round. fwd = forward; dW = backward without input gradient (weight + bias gradients); ` +
        'dX = the median over rounds of (backward with input gradient) − (backward without), each round running forward, dW, backward in turn. % peak = GFLOP/s ÷ the SGEMM peak above. "rest of the step" = training step median − the sum of the layers\' fwd + bwd.',
      '',
    );
  return out.join('\n');
}

const BEGIN = '<!-- bench:begin (generated by `npm run bench -- --write`; edit outside these markers) -->';
const END = '<!-- bench:end -->';

function writeResultsMd(md: string): void {
  const file = path.join(HERE, 'RESULTS.md');
  let text = existsSync(file) ? readFileSync(file, 'utf8') : `# voxvae benchmark results\n\n${BEGIN}\n${END}\n`;
  const a = text.indexOf('<!-- bench:begin'), b = text.indexOf(END);
  if (a < 0 || b < 0) text = `${text.trimEnd()}\n\n${BEGIN}\n${md}\n${END}\n`;
  else text = `${text.slice(0, a)}${BEGIN}\n${md}\n${text.slice(b)}`;
  writeFileSync(file, text);
  console.log(`wrote ${path.relative(ROOT, file)}`);
}

// ---- main -----------------------------------------------------------------------------------------------
async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const args = parseArgs(argv);
  const cases = selectCases(args);
  if (args.list) {
    for (const c of CASES) console.log(`${c.name}${c.quick ? ' (quick)' : ''}`);
    return;
  }
  if (args.render) {
    const saved = JSON.parse(readFileSync(args.render, 'utf8')) as Report;
    const md = markdown(saved, saved.machine.torch !== null, 'PyTorch not installed');
    console.log(md);
    if (args.write) writeResultsMd(md);
    return;
  }
  if (!cases.length) throw new Error(`no case matches ${args.only.join(', ')} (try --list)`);
  const mach = machine(args.threads);
  const torchVersion = args.torch ? torchAvailable(args.python) : null;
  mach.torch = torchVersion;
  const torchOk = torchVersion !== null;
  console.log(`voxvae bench: ${mach.cpu}, ${mach.cores} cores, AVX-512 ${mach.avx512 ? 'yes' : 'no'}, Node ${mach.node}, ${args.threads} threads`);
  console.log(`PyTorch: ${torchOk ? torchVersion : args.torch ? 'PyTorch not installed' : 'skipped (--no-torch)'}`);
  console.log(`load before: ${mach.loadBefore}`);
  console.log(`cases: ${cases.map((c) => c.name).join(', ')}\n`);
  if (args.threads !== 2 && cases.some((c) => c.target !== undefined))
    console.warn(`note: the targets are set for 2 cores (--threads 2); this run uses ${args.threads} threads\n`);

  const rep: Report = { machine: mach, python: args.python, argv, startedAt: new Date().toISOString(), models: [], layers: [] };
  if (torchOk) {
    const p = torchBest<TorchPeak>(args.python, 'peak', { n: 2048, warmup: 3, reps: 15 }, args.threads, 'sgemm 2048²', (r) => -r.sgemm_gflops, (r) => `${r.sgemm_gflops.toFixed(1)} GFLOP/s (best), ${r.sgemm_gflops_median.toFixed(1)} (median)`);
    if (p.best) {
      rep.peak = p.best;
      rep.peakPolicy = p.bestPolicy;
    }
    rep.peakRuns = p.runs;
  }

  for (const c of cases) {
    console.log(`— ${c.name}`);
    if (c.task === 'layers') {
      const layers = convLayers(MODELS[c.model]);
      const r: LayersCaseResult = { case: c, layers };
      try {
        r.voxvae = (await runWorker(c, args.threads)) as LayersResult;
        r.voxvae.nativeFlops.forEach((f, i) => {
          if (Math.abs(f - layers[i]!.flops) > 1e-6 * f) console.warn(`  warning: ${layers[i]!.name}: native flops ${f} != analytic ${layers[i]!.flops}`);
        });
      } catch (e) {
        r.voxvaeError = (e as Error).message;
        console.error(`  ${r.voxvaeError}`);
      }
      if (torchOk) {
        const tl = layers.map((l) => ({ name: l.name, kind: l.kind, cin: l.cin, cout: l.cout, in: l.in, needDx: l.needDx }));
        const sum = (x: TorchLayers): number => x.layers.reduce((a, l) => a + l.fwd.median_s + (l.bwd ?? l.bwd_w).median_s, 0);
        const t = torchBest<TorchLayers>(args.python, 'layers', { batch: c.batch, warmup: c.torch.warmup, reps: c.torch.reps, layers: tl }, args.threads, c.name, sum, (x) => `all layers fwd+bwd ${fmtS(sum(x))} s`);
        if (t.best) {
          r.torch = t.best;
          r.torchPolicy = t.bestPolicy;
        }
        r.torchRuns = t.runs;
      }
      rep.layers.push(r);
      continue;
    }
    const m = MODELS[c.model];
    const r: ModelCaseResult = { case: c, flops: caseFlops(c) };
    try {
      r.voxvae = (await runWorker(c, args.threads)) as ModelResult;
      const f = modelFlops(m);
      const nf = r.voxvae.nativeFlops;
      if (Math.abs(nf.encoder - f.encoder) > 1e-6 * f.encoder || Math.abs(nf.decoder - f.decoder) > 1e-6 * f.decoder)
        console.warn(`  warning: native flops (${nf.encoder}, ${nf.decoder}) != analytic (${f.encoder}, ${f.decoder})`);
    } catch (e) {
      r.voxvaeError = (e as Error).message;
      console.error(`  ${r.voxvaeError}`);
    }
    if (torchOk) {
      const t = torchBest<TorchModel>(
        args.python,
        'model',
        { task: c.task, inputShape: m.inputShape, channels: m.channels, latent: m.latentSize, batch: c.batch, warmup: c.torch.warmup, reps: c.torch.reps },
        args.threads,
        c.name,
        (x) => x.median_s,
        (x) => `median ${fmtS(x.median_s)} s (min ${fmtS(x.min_s)}, n=${x.times_s.length}), peak RSS ${fmtMB(x.peak_rss_kb)} MiB`,
      );
      if (t.best) {
        r.torch = t.best;
        r.torchPolicy = t.bestPolicy;
      }
      r.torchRuns = t.runs;
    }
    rep.models.push(r);
  }
  mach.loadAfter = uptime();
  rep.finishedAt = new Date().toISOString();

  const md = markdown(rep, torchOk, args.torch ? 'PyTorch not installed' : 'skipped (--no-torch)');
  console.log(`\n${md}`);
  const dir = path.join(HERE, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'last-run.json'), JSON.stringify(rep, null, 1));
  writeFileSync(path.join(dir, 'last-run.md'), md + '\n');
  console.log(`\nwrote bench/results/last-run.json and bench/results/last-run.md`);
  const verdicts = verdictLines(rep.models);
  if (verdicts.length) console.log(`\ntargets (speed-up over PyTorch in this run, ${args.threads} threads):\n${verdicts.join('\n')}`);
  if (args.strict && verdicts.some((l) => !l.startsWith('PASS'))) {
    console.error('bench: a target is not met (--strict)');
    process.exitCode = 1;
  }
  if (args.write) {
    writeResultsMd(md);
    writeFileSync(path.join(dir, 'results.json'), JSON.stringify(rep, null, 1));
    console.log('wrote bench/results/results.json (the run behind bench/RESULTS.md)');
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error && /^(no case matches|unknown argument|--)/.test(e.message) ? `bench: ${e.message}` : (e as Error).stack ?? String(e));
  process.exitCode = 1;
});
