// One voxvae benchmark case, run in a child process that bench/index.ts forks (so that each case's peak
// resident memory is its own). Reads the job from argv[2] (JSON), reports through the IPC channel.
//
//   train   vae.trainStep(batch) with default options on a batch of random binary volumes (forward,
//           backward, Adam; the default loss 80·Dice(sum) + 1·KL(sum), Adam lr 1e-4), timed by benny
//   decode  vae.decode(z) with no options (eval mode; returns probabilities: the softmax is part of the
//           call), timed by benny
// Both are the public API exactly as a user calls it: no { logits: true } or other side doors.
//   layers  each conv layer of the model alone, as a one-layer native Net: forward, backward (dx + dw),
//           backward without dx (dw only); median of a few runs (plain performance.now timing)
import { readFileSync, writeFileSync } from 'node:fs';
import b from 'benny';
import { native } from '../ts/native.js';
import { Vae } from '../ts/vae.js';
import { randomBinary, randomUniform, timeLayer, type LayerTiming, type Timing } from './layer.js';
import { convLayers, MODELS, modelConfig, type CaseDef } from './models.js';

export type { LayerTiming, Timing };

export interface Job {
  case: CaseDef;
  threads: number;
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
    const batch = { input: randomBinary(c.batch * cfg.inChannels * S, 12345), shape: [c.batch, cfg.inChannels, ...cfg.inputShape] as [number, number, number, number, number] };
    op = () => vae.trainStep(batch);
  } else {
    const z = randomUniform(c.batch * cfg.latentSize, 777);
    op = () => vae.decode(z);
    // What the default call returns, checked once before timing: probabilities (softmax over the classes
    // sums to 1 at every voxel), not logits.
    const y = await vae.decode(z);
    const C = cfg.outChannels, V = y.length / (c.batch * C);
    for (let v = 0; v < V; v += 997) {
      let sum = 0;
      for (let k = 0; k < C; k++) sum += y[k * V + v]!;
      if (!(Math.abs(sum - 1) < 1e-4)) throw new Error(`vae.decode(z) did not return probabilities: the classes sum to ${sum} at voxel ${v}`);
    }
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

async function runLayers(c: CaseDef, threads: number): Promise<LayersResult> {
  native().setNumThreads(threads);
  const layers: LayerTiming[] = [];
  const nativeFlops: number[] = [];
  const ms = (t?: Timing): string => (t ? (t.medianS * 1e3).toFixed(1) : '-');
  for (const l of convLayers(MODELS[c.model])) {
    const { timing, nativeFlops: f } = await timeLayer(l, c.batch, c.torch.warmup, c.benny.minSamples);
    layers.push(timing);
    nativeFlops.push(f);
    console.log(`  ${c.name} ${l.name} ${l.kind} ${l.cin}->${l.cout} in ${l.in.join('x')}: fwd ${ms(timing.fwd)} ms, bwd ${ms(timing.bwd)} ms, bwd (dw only) ${ms(timing.bwd_w)} ms`);
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
