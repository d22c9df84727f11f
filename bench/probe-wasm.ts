// Times one decode per engine variant at batch 1, to see how the WASM builds scale with threads:
//   node --import tsx bench/probe-wasm.ts --model half [--reps 20]
// Rows: native 1t/2t, wasm SIMD 1t (single-threaded build), wasm mt build on 1 and 2 threads.
import { performance } from 'node:perf_hooks';
import { cliModel, cliOption as opt } from './models.js';
import { decoderCheckpoint } from './decoder-checkpoint.js';
import { setThreads } from '../ts/vae.js';
import { loadModel, loadRuntime } from '../ts/web/index.js';

const name = cliModel();
const reps = Number(opt('reps', '20'));
const { dec, checkpoint: ckpt, z } = decoderCheckpoint(name);
async function median(op: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 2; ++i) await op();
  const t: number[] = [];
  for (let i = 0; i < reps; ++i) {
    const t0 = performance.now();
    await op();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[t.length >> 1]!;
}
const out: string[] = [];
for (const th of [1, 2]) {
  setThreads(th);
  out.push(`native ${th}t ${(await median(() => dec.decode(z, { output: 'logits' }))).toFixed(2)} ms`);
}
const w1 = await loadRuntime({ simd: true, threads: 1 });
const m1 = await loadModel(ckpt, { runtime: w1, name });
out.push(`wasm simd 1t ${(await median(() => m1.decode(z, { output: 'logits' }))).toFixed(2)} ms`);
for (const th of [1, 2]) {
  const w = await loadRuntime({ threads: th });
  const m = await loadModel(ckpt, { runtime: w, name });
  out.push(`wasm mt-build ${w.threads}t ${(await median(() => m.decode(z, { output: 'logits' }))).toFixed(2)} ms`);
  m.dispose();
  w.dispose();
}
m1.dispose();
dec.dispose();
console.log(`${name}:\n  ${out.join('\n  ')}`);
