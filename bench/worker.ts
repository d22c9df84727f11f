// One voxvae benchmark case, run in a child process that bench/index.ts forks (so that each case's peak
// resident memory is its own). Reads the job from argv[2] (JSON), reports through the IPC channel.
//
//   train   Vae.trainStep on a batch of random binary volumes (forward, backward, Adam), timed by benny
//   decode  Vae.decode(z, { logits: true }) in eval mode, timed by benny
//   layers  each conv layer of the model alone, as a one-layer native Net: forward, backward (dx + dw),
//           backward without dx (dw only); median of a few runs (plain performance.now timing)
import { readFileSync, writeFileSync } from 'node:fs';
import b from 'benny';
import { native, type NativeNet, type NativeTensor } from '../ts/native.js';
import { Vae } from '../ts/vae.js';
import { convLayers, MODELS, modelConfig, type CaseDef, type LayerDef } from './models.js';

export interface Job {
  case: CaseDef;
  threads: number;
}

export interface Timing {
  medianS: number;
  minS: number;
  meanS: number;
  samples: number;
  /** benny's relative margin of error, % (model cases only). */
  rme?: number;
  sampleResults: number[];
}

export interface Memory {
  /** RSS when the model is about to be built (Node, tsx and the addon loaded). */
  baseRssKb: number;
  /** VmHWM after the timed runs, counted from the reset just before the model was built. */
  peakRssKb: number | null;
}

export interface ModelResult {
  kind: 'model';
  timing: Timing;
  memory: Memory;
  /** Forward FLOPs per sample as the native Nets count them. */
  nativeFlops: { encoder: number; decoder: number };
  /** How often the timed function ran in all (benny's detection calls, calibration and samples). */
  calls: number;
}

export interface LayerTiming {
  name: string;
  fwd: Timing;
  /** Backward with dx (absent for a layer whose input needs no gradient). */
  bwd?: Timing;
  /** Backward without dx: dw and db only. */
  bwd_w: Timing;
}

export interface LayersResult {
  kind: 'layers';
  layers: LayerTiming[];
  /** One-layer Nets' flops, to check the analytic count. */
  nativeFlops: number[];
}

export type WorkerMessage = { ok: true; result: ModelResult | LayersResult } | { ok: false; error: string };

function statusKb(field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Resets VmHWM to the current RSS (Linux `echo 5 > /proc/self/clear_refs`). */
function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

function timingOf(ts: number[]): Timing {
  const s = [...ts].sort((a, c) => a - c);
  const mid = s.length >> 1;
  return {
    medianS: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2,
    minS: s[0]!,
    meanS: ts.reduce((a, v) => a + v, 0) / ts.length,
    samples: ts.length,
    sampleResults: ts,
  };
}

/** xorshift32 stream: reproducible and fast enough for 8M voxels. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

function randomBinary(n: number, seed: number): Float32Array {
  const r = xorshift(seed), x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = r() & 1;
  return x;
}

/** Uniform in [-1, 1). */
function randomUniform(n: number, seed: number): Float32Array {
  const r = xorshift(seed), x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = r() / 2147483648 - 1;
  return x;
}

async function runModel(c: CaseDef, threads: number): Promise<ModelResult> {
  const m = MODELS[c.model];
  const cfg = modelConfig(m);
  native();
  const baseRssKb = statusKb('VmRSS') ?? 0;
  const resetOk = resetPeakRss();
  const vae = await Vae.create(cfg, { seed: 0, threads });
  const S = cfg.inputShape[0] * cfg.inputShape[1] * cfg.inputShape[2];
  let op: () => Promise<unknown>;
  if (c.task === 'train') {
    vae.train();
    const input = randomBinary(c.batch * cfg.inChannels * S, 12345);
    op = () => vae.trainStep({ input }, { beta: 1, optimizer: { lr: 1e-4 } });
  } else {
    vae.eval();
    const z = randomUniform(c.batch * cfg.latentSize, 777);
    op = () => vae.decode(z, { mode: 'eval', logits: true });
  }
  // benny calls the case function while detecting its type (twice in benny 3.7: once without awaiting),
  // then benchmark.js calls it for calibration and samples. Chaining every call after the previous one
  // keeps runs from overlapping (trainStep refuses concurrent calls); the detection calls act as warm-up.
  let chain: Promise<unknown> = Promise.resolve();
  let calls = 0;
  const run = (): Promise<unknown> => {
    calls++;
    chain = chain.then(op);
    return chain;
  };
  const summary = await b.suite(
    `voxvae ${c.name}`,
    b.add(c.name, () => run(), { minSamples: c.benny.minSamples, maxTime: c.benny.maxTime }),
    b.cycle((r) => {
      const d = r.details;
      console.log(`  ${r.name}: median ${(d.median * 1e3).toFixed(1)} ms, mean ${(d.mean * 1e3).toFixed(1)} ms ±${d.relativeMarginOfError.toFixed(1)}% (${r.samples} samples)`);
      return '';
    }),
    b.complete(() => undefined),
  );
  await chain;
  const r = summary.results[0]!;
  const d = r.details;
  const result: ModelResult = {
    kind: 'model',
    timing: { medianS: d.median, minS: d.min, meanS: d.mean, samples: r.samples, rme: d.relativeMarginOfError, sampleResults: d.sampleResults },
    memory: { baseRssKb, peakRssKb: resetOk ? statusKb('VmHWM') : null },
    nativeFlops: { encoder: vae.encoder.network.net.flops, decoder: vae.decoder.network.net.flops },
    calls,
  };
  vae.dispose();
  return result;
}

function layerSpec(l: LayerDef): string {
  const conv = l.kind === 'conv' ? `conv3d in=0 cout=${l.cout} k=3 s=2 p=1 bias=1` : `conv_transpose3d in=0 cout=${l.cout} k=3 s=2 p=1 op=1 bias=1`;
  return [`input c=${l.cin} d=${l.in[0]} h=${l.in[1]} w=${l.in[2]}`, conv, 'output 1'].join('\n');
}

async function runLayers(c: CaseDef, threads: number): Promise<LayersResult> {
  const nb = native();
  nb.setNumThreads(threads);
  const n = c.batch;
  const reps = c.benny.minSamples;
  const layers: LayerTiming[] = [];
  const nativeFlops: number[] = [];
  for (const l of convLayers(MODELS[c.model])) {
    const net: NativeNet = new nb.Net(layerSpec(l));
    net.initParams(1);
    nativeFlops.push(net.flops);
    const inVox = l.in[0] * l.in[1] * l.in[2], outVox = l.out[0] * l.out[1] * l.out[2];
    const x = new nb.Tensor(randomUniform(n * l.cin * inVox, 3), [n, l.cin, ...l.in]);
    const dy = new nb.Tensor(randomUniform(n * l.cout * outVox, 5), [n, l.cout, ...l.out]);
    const fwd = async (): Promise<number> => {
      const t0 = performance.now();
      const outs = await net.forward(x, n, true);
      const t = performance.now() - t0;
      for (const o of outs) o.dispose();
      return t / 1e3;
    };
    const bwd = (dx: boolean) => async (): Promise<number> => {
      for (const o of await net.forward(x, n, true)) o.dispose();
      const t0 = performance.now();
      const g: NativeTensor | null = await net.backward([dy], dx);
      const t = performance.now() - t0;
      g?.dispose();
      return t / 1e3;
    };
    const measure = async (f: () => Promise<number>): Promise<Timing> => {
      for (let i = 0; i < c.torch.warmup; i++) await f();
      const ts: number[] = [];
      for (let i = 0; i < reps; i++) ts.push(await f());
      return timingOf(ts);
    };
    const row: LayerTiming = { name: l.name, fwd: await measure(fwd), bwd_w: await measure(bwd(false)) };
    if (l.needDx) row.bwd = await measure(bwd(true));
    layers.push(row);
    const ms = (t?: Timing): string => (t ? (t.medianS * 1e3).toFixed(1) : '-');
    console.log(`  ${c.name} ${l.name} ${l.kind} ${l.cin}->${l.cout} in ${l.in.join('x')}: fwd ${ms(row.fwd)} ms, bwd ${ms(row.bwd)} ms, bwd (dw only) ${ms(row.bwd_w)} ms`);
    x.dispose();
    dy.dispose();
    net.dispose();
  }
  return { kind: 'layers', layers, nativeFlops };
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? '{}') as Job;
  const send = (msg: WorkerMessage): Promise<void> =>
    new Promise((resolve) => {
      if (process.send) process.send(msg, () => resolve());
      else {
        console.log(JSON.stringify(msg));
        resolve();
      }
    });
  try {
    const c = job.case;
    const result = c.task === 'layers' ? await runLayers(c, job.threads) : await runModel(c, job.threads);
    await send({ ok: true, result });
  } catch (e) {
    await send({ ok: false, error: (e as Error).stack ?? String(e) });
    process.exitCode = 1;
  }
  process.disconnect?.();
}

await main();
