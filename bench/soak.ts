// Soak (issue 17): memory stays flat over many training steps, native decodes and WebAssembly decodes,
// including calls that fail (refused batches, non-finite latents, aliased outputs) — a benchmark to run on
// demand, not a timed test:
//
//   npm run bench:soak -- [--steps 2000] [--decodes 10000] [--wasm 5000] [--shape 16]
//
// Each phase samples RSS, the V8 heap, external array buffers (and the WASM runtime's linear memory and
// heap) every 5 % of its calls, after a warm-up fifth, and compares the last sample with the first after
// warm-up. A phase whose RSS grows by more than 32 MiB (or whose WASM heap grows at all) fails: exit status 1.
import { monaiVarAutoEncoder } from '../ts/config.js';
import { VoxvaeError } from '../ts/errors.js';
import { Vae } from '../ts/vae.js';
import { loadModel, loadRuntime } from '../ts/web/index.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} needs a positive integer`);
  return v;
}

const STEPS = arg('steps', 2000), DECODES = arg('decodes', 10000), WASM = arg('wasm', 5000), S = arg('shape', 16);
const RSS_LIMIT = 32 << 20;
const MiB = (b: number): string => (b / 2 ** 20).toFixed(1);

interface Sample {
  i: number;
  rss: number;
  heap: number;
  external: number;
  wasmMemory?: number;
  wasmHeap?: number;
}

function sample(i: number, extra: Partial<Sample> = {}): Sample {
  const m = process.memoryUsage();
  return { i, rss: m.rss, heap: m.heapUsed, external: m.arrayBuffers, ...extra };
}

async function phase(name: string, n: number, call: (i: number) => Promise<void>, extra: () => Partial<Sample> = () => ({})): Promise<boolean> {
  const samples: Sample[] = [];
  const every = Math.max(1, Math.floor(n / 20));
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await call(i);
    if ((i + 1) % every === 0 && i + 1 >= n / 5) {
      (globalThis as { gc?: () => void }).gc?.();
      samples.push(sample(i + 1, extra()));
    }
  }
  const first = samples[0]!, last = samples[samples.length - 1]!;
  const grew = last.rss - first.rss;
  const wasmHeapGrew = (last.wasmHeap ?? 0) - (first.wasmHeap ?? 0);
  const ok = grew <= RSS_LIMIT && wasmHeapGrew <= 0;
  console.log(`${name}: ${n} calls in ${((performance.now() - t0) / 1000).toFixed(1)} s; after warm-up (call ${first.i} → ${last.i}): RSS ${MiB(first.rss)} → ${MiB(last.rss)} MiB (${grew >= 0 ? '+' : ''}${MiB(grew)}), heap ${MiB(first.heap)} → ${MiB(last.heap)} MiB, array buffers ${MiB(first.external)} → ${MiB(last.external)} MiB${first.wasmMemory !== undefined ? `, WASM memory ${MiB(first.wasmMemory)} → ${MiB(last.wasmMemory!)} MiB, WASM heap ${first.wasmHeap} → ${last.wasmHeap} bytes` : ''} — ${ok ? 'flat' : 'GROWING'}`);
  console.log(`  samples (call: RSS MiB): ${samples.map((s) => `${s.i}: ${MiB(s.rss)}`).join(', ')}`);
  return ok;
}

const expectTyped = async (p: Promise<unknown>): Promise<void> => {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof VoxvaeError)) throw e;
  }
};

const cfg = monaiVarAutoEncoder({ inputShape: [S, S, S], channels: [8, 16, 16], latentSize: 8, norm: 'batch' });
const vae = await Vae.create(cfg, { seed: 1 });
const V = S ** 3;
const x = Float32Array.from({ length: 2 * V }, (_, i) => ((i * 2654435761) >>> 0) % 5 < 2 ? 1 : 0);
console.log(`soak: ${S}³ MONAI VAE (channels 8, 16, 16; latent 8), ${STEPS} steps, ${DECODES} native decodes, ${WASM} WASM decodes; node ${process.version}${(globalThis as { gc?: unknown }).gc ? ', with --expose-gc' : ''}`);
let ok = await phase('training steps (every 10th refused: a non-finite loss from a hook)', STEPS, async (i) => {
  if (i % 10 === 9) await expectTyped(vae.trainStep({ input: x, shape: [2, 1, S, S, S] }, { hooks: { logits: () => ({ loss: NaN, grad: null }) } }));
  else await vae.trainStep({ input: x, shape: [2, 1, S, S, S] }, { optimizer: { lr: 1e-4 } });
});
const z = Float32Array.from({ length: 8 }, (_, i) => (i - 4) / 4);
const huge = new Float32Array(8).fill(3e38);
ok = (await phase('native decodes (every 10th: a huge latent, ENOTFINITE)', DECODES, async (i) => {
  if (i % 10 === 9) await expectTyped(vae.decode(huge));
  else await vae.decode(z);
})) && ok;
const file = `/tmp/voxvae-soak-${process.pid}.safetensors`;
await vae.save(file);
vae.dispose();
const rt = await loadRuntime({ threads: 1 });
const model = await loadModel(file, { runtime: rt });
const into = new Float32Array(model.outputSize);
ok = (await phase('WASM decodes (every 10th refused: an aliased output)', WASM, async (i) => {
  if (i % 10 === 9) await expectTyped(model.decode(z, { into: new Float32Array(rt.memory.buffer, 0, model.outputSize) }));
  else await model.decode(z, { into });
}, () => ({ wasmMemory: rt.memoryBytes, wasmHeap: rt.heapBytes }))) && ok;
model.dispose();
(await import('node:fs')).rmSync(file, { force: true });
console.log(ok ? 'soak: memory flat in every phase' : 'soak: memory grew (see above)');
process.exitCode = ok ? 0 : 1;
