// A/B of two builds of the threaded WebAssembly module (voxvae_simd_mt.wasm) on one model, interleaved in
// one process so that both see the same machine: each round times a 1-thread decode (voxvae_simd.wasm),
// then a 2-thread decode with A and one with B (alternating which goes first). For work on the thread
// pool or the kernels, where a change of a few per cent is below a shared VM's noise between runs.
//
//   node --import tsx bench/wasm-ab.ts --a OLD.wasm [--b native/wasm/dist/voxvae_simd_mt.wasm]
//        [--model quarter] [--rounds 40] [--gap MS]
//
// --gap: before each timed decode, sleep MS milliseconds (both vCPUs idle), or with a negative value spin
// on this thread for -MS ms (the workers' vCPU idle): how a build copes with threads that wake from idle.
// Prints the medians and the median over rounds of A / B.
// e.g. A = the committed build: git show HEAD:native/wasm/dist/voxvae_simd_mt.wasm > /tmp/a.wasm
import { readFile } from 'node:fs/promises';
import { cliModel, cliOption as opt } from './models.js';
import { decoderCheckpoint } from './decoder-checkpoint.js';
import { loadModel, loadRuntime } from '../ts/web/index.js';

const name = cliModel();
const rounds = Number(opt('rounds', '40'));
const gap = Number(opt('gap', '0'));
const fileA = opt('a', '');
const fileB = opt('b', 'native/wasm/dist/voxvae_simd_mt.wasm');
if (!fileA) throw new Error('--a OLD.wasm is required (a build of voxvae_simd_mt.wasm to compare with --b)');
const { dec, checkpoint, z } = decoderCheckpoint(name);
const m1 = await loadModel(checkpoint, { runtime: await loadRuntime({ simd: true, threads: 1 }), name });
const rA = await loadRuntime({ threads: 2, wasmBinary: await readFile(fileA) });
const rB = await loadRuntime({ threads: 2, wasmBinary: await readFile(fileB) });
if (rA.threads !== 2 || rB.threads !== 2) throw new Error(`a threaded build did not start: ${rA.threadsUnavailable ?? rB.threadsUnavailable}`);
const mA = await loadModel(checkpoint, { runtime: rA, name });
const mB = await loadModel(checkpoint, { runtime: rB, name });
const out = new Float32Array(m1.outputSize);
const decode = (m: typeof m1) => m.decodeSync(z, { output: 'logits', into: out });
for (let i = 0; i < 10; i++) for (const m of [m1, mA, mB]) decode(m);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const pause = (): void => {
  if (gap > 0) Atomics.wait(sleeper, 0, 0, gap);
  else if (gap < 0) for (const end = performance.now() - gap; performance.now() < end; );
};
const timed = (m: typeof m1): number => {
  pause();
  const s = performance.now();
  decode(m);
  return performance.now() - s;
};
const one: number[] = [], a: number[] = [], b: number[] = [];
for (let i = 0; i < rounds; i++) {
  one.push(timed(m1));
  if (i % 2) {
    a.push(timed(mA));
    b.push(timed(mB));
  } else {
    b.push(timed(mB));
    a.push(timed(mA));
  }
}
const med = (v: number[]) => [...v].sort((p, q) => p - q)[v.length >> 1]!;
const x = (v: number[]) => `${med(v).toFixed(2)} ms (${(med(one) / med(v)).toFixed(2)}× 1t)`;
console.log(`${name}, ${rounds} rounds, gap ${gap} ms: 1t ${med(one).toFixed(2)} ms; A 2t ${x(a)}; B 2t ${x(b)}; median over rounds of A / B ${med(a.map((v, i) => v / b[i]!)).toFixed(3)}`);
for (const m of [m1, mA, mB]) m.dispose();
rA.dispose();
rB.dispose();
dec.dispose();
