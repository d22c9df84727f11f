// WebAssembly inference (voxvae/web) against the native CPU engine on random checkpoints of every
// benchmark preset (tiny, quarter, half, full) and of odd architectures, and against PyTorch on the
// MONAI fixture. One table of cases; each row says which builds run it.
//
// Error measures, both printed for every comparison:
// - normwise: max |wasm − native| / max |native| over the tensor — the relative error of the result as a
//   whole; the target, asserted, is 1e-5;
// - elementwise (test/helpers.ts relErr, the project's convention): max |wasm − native| / (|native| +
//   0.01 · max |native|). Near-cancelling elements of random networks carry float32 rounding noise of
//   either engine (the native kernels use FMA, WebAssembly SIMD has none), so against the default native
//   engine this one is asserted at 1e-4 and reported;
// - elementwise with no floor against the native engine switched to x86-64's baseline ISA
//   (setCpuIsa('sse2'): the same kernels without FMA, i.e. WebAssembly's arithmetic): asserted at 1e-5,
//   the issue's bound, on every element. In practice the outputs are identical bit for bit (the log
//   says so), since both run the same C++ with the same blocking and summation order. Skipped with a
//   message off x86-64.
// The agreement cases run serially: setCpuIsa is process-wide and must not change under a running call.
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MODELS, modelConfig, type ModelName } from '../bench/models.js';
import { monaiVarAutoEncoder, skullVaeDecoder, type VaeConfig } from '../ts/config.js';
import { readSafetensors, serializeSafetensors, toFloat32, type TensorToWrite } from '../ts/safetensors.js';
import { Decoder, Encoder, Vae, setCpuIsa, setThreads } from '../ts/vae.js';
import { loadModel, loadRuntime, type WasmRuntime, type WasmVae } from '../ts/web/index.js';
import { ROOT, activate, f32, loadFixture, relErr } from './helpers.js';

const TOL = 1e-5; // normwise
const TOL_ELEMENT = 1e-4;
const FLOOR = 0.01;

function normwise(a: ArrayLike<number>, e: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < e.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - e[i]!));
    m = Math.max(m, Math.abs(e[i]!));
  }
  return d / (m || 1);
}

let tmp = '';
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'voxvae-wasm-'));
  setThreads(2);
});
test.after.always(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Deterministic pseudo-random numbers (xorshift), so that failures reproduce. */
function rng(seed: number): () => number {
  let s = (seed * 2654435761) >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (2 * r() - 1) * scale);
}

/**
 * A checkpoint as Vae.save() writes it, with every tensor randomised (non-trivial BN statistics and
 * affine parameters, PReLU slopes, perturbed weights), so that eval-mode norms are really exercised.
 * Returns the file and the native VAE loaded back from it.
 */
async function randomCheckpoint(name: string, cfg: VaeConfig, dcfg: VaeConfig = cfg, seed = 1, keep?: (k: string) => boolean, metadata = true): Promise<{ file: string; native: Vae | null }> {
  const vae = Vae.fromParts(new Encoder(cfg, { seed }), new Decoder(dcfg, { seed }), seed);
  const raw = path.join(tmp, `${name}.raw.safetensors`);
  await vae.save(raw);
  vae.dispose();
  const st = await readSafetensors(raw);
  const r = rng(seed + 17);
  const out = new Map<string, TensorToWrite>();
  for (const [k, e] of st.tensors) {
    if (keep && !keep(k)) continue;
    if (e.dtype === 'I64') {
      out.set(k, { dtype: 'I64', shape: e.shape, data: [7] });
      continue;
    }
    const v = toFloat32(e);
    for (let i = 0; i < v.length; i++) {
      if (k.endsWith('running_var')) v[i] = 0.5 + 1.5 * r();
      else if (k.endsWith('running_mean')) v[i] = 0.4 * (2 * r() - 1);
      else if (/\.N\.weight$/.test(k)) v[i] = 0.6 + 0.8 * r();
      else if (/\.A\.weight$/.test(k)) v[i] = 0.5 * r();
      else v[i] = v[i]! * (0.8 + 0.4 * r()) + 0.02 * (2 * r() - 1);
    }
    out.set(k, { dtype: 'F32', shape: e.shape, data: v });
  }
  const file = path.join(tmp, `${name}.safetensors`);
  await writeFile(file, serializeSafetensors(out, metadata ? st.metadata : {}));
  // A partial checkpoint (keep) is no whole VAE: the caller builds its own reference.
  const native = keep ? null : await Vae.load(file, metadata ? {} : { config: cfg, decoderConfig: dcfg });
  return { file, native };
}

interface Case {
  name: string;
  cfg: VaeConfig;
  dcfg?: VaeConfig;
  batch: number;
  /** Builds to run: 'simd' | 'scalar' | 'mt' (threaded, 2 threads). */
  builds: ('simd' | 'scalar' | 'mt')[];
  encode: boolean;
}

const preset = (m: ModelName): VaeConfig => modelConfig(MODELS[m]);

const CASES: Case[] = [
  { name: 'tiny', cfg: preset('tiny'), batch: 2, builds: ['simd', 'scalar', 'mt'], encode: true },
  { name: 'quarter', cfg: preset('quarter'), batch: 1, builds: ['simd', 'mt'], encode: true },
  { name: 'half', cfg: preset('half'), batch: 1, builds: ['simd'], encode: true },
  { name: 'full', cfg: preset('full'), batch: 1, builds: ['simd'], encode: false },
  {
    // Odd sizes, kernel 5, instance norm, leaky ReLU, sigmoid output, two input channels.
    name: 'odd-instance-sigmoid',
    cfg: monaiVarAutoEncoder({ inputShape: [24, 8, 40], inChannels: 2, outChannels: 1, outputActivation: 'sigmoid', channels: [3, 5, 7], kernelSize: 5, latentSize: 5, norm: 'instance', activation: 'leaky_relu', leakySlope: 0.2 }),
    batch: 3,
    builds: ['simd', 'scalar', 'mt'],
    encode: true,
  },
  {
    // Stride 3, no norm, ReLU, three classes without output activation.
    name: 'odd-stride3-relu',
    cfg: monaiVarAutoEncoder({ inputShape: [27, 9, 18], outChannels: 3, outputActivation: 'none', channels: [4, 6], strides: [3, 3], latentSize: 4, norm: 'none', activation: 'relu' }),
    batch: 2,
    builds: ['simd', 'scalar'],
    encode: true,
  },
  {
    // Per-channel PReLU, a stride-1 level, softmax over 3 classes.
    name: 'odd-prelu-channels',
    cfg: monaiVarAutoEncoder({ inputShape: [16, 48, 8], outChannels: 3, channels: [4, 8, 8, 4], strides: [2, 2, 2, 1], latentSize: 7, preluPerChannel: true }),
    batch: 2,
    builds: ['simd', 'scalar'],
    encode: true,
  },
  {
    // The aggregated VAE: MONAI encoder, skullVAE's stage-2 decoder.
    name: 'aggregated',
    cfg: monaiVarAutoEncoder({ inputShape: [32, 32, 16], channels: [8, 16, 16, 32], latentSize: 12 }),
    dcfg: skullVaeDecoder({ inputShape: [32, 32, 16], channels: [8, 16, 16, 32], latentSize: 12 }),
    batch: 2,
    builds: ['simd', 'scalar', 'mt'],
    encode: true,
  },
];

/** Whether this CPU can run the native kernels without FMA (x86-64's baseline), i.e. as WebAssembly does. */
const BASELINE_ISA = (() => {
  try {
    setCpuIsa('sse2');
    return true;
  } catch {
    return false;
  } finally {
    setCpuIsa('auto');
  }
})();

/**
 * actual against the default native engine (expected) and, where given, against the native engine on
 * the baseline ISA (sameArith): see the header for the three measures.
 */
function check(t: ExecutionContext, what: string, actual: Float32Array, expected: Float32Array, sameArith?: Float32Array): void {
  const n = normwise(actual, expected), e = relErr(actual, expected, FLOOR);
  let line = `${what}: normwise ${n.toExponential(2)}, elementwise ${e.toExponential(2)}`;
  if (sameArith) {
    const x = relErr(actual, sameArith, 0);
    let same = 0;
    for (let i = 0; i < actual.length; i++) if (actual[i] === sameArith[i]) same++;
    line += `; vs native sse2: elementwise (no floor) ${x.toExponential(2)}, ${same === actual.length ? 'identical' : `${same}/${actual.length} identical`}`;
    t.true(x <= TOL, `${what}: elementwise error against the native engine on the same arithmetic (sse2) ${x.toExponential(2)} > ${TOL}`);
  }
  t.log(line);
  t.true(n <= TOL, `${what}: normwise error ${n.toExponential(2)} > ${TOL}`);
  t.true(e <= TOL_ELEMENT, `${what}: elementwise error ${e.toExponential(2)} > ${TOL_ELEMENT}`);
}

const runtimes = new Map<string, Promise<WasmRuntime>>();
function runtime(build: 'simd' | 'scalar' | 'mt'): Promise<WasmRuntime> {
  if (!runtimes.has(build)) runtimes.set(build, loadRuntime(build === 'mt' ? { threads: 2 } : { simd: build === 'simd', threads: 1 }));
  return runtimes.get(build)!;
}

interface Refs {
  logits: Float32Array;
  probs: Float32Array;
  enc: { mu: Float32Array; logvar: Float32Array } | null;
  comp: Float32Array | null;
}

for (const c of CASES) {
  // Serial (see the header); the big presets also need a few hundred MB and all cores.
  test.serial(`${c.name}: decode${c.encode ? ', encode and complete' : ''} match the native engine (${c.builds.join(', ')})`, async (t) => {
    const dcfg = c.dcfg ?? c.cfg;
    const { file, native: n } = await randomCheckpoint(c.name, c.cfg, dcfg, c.name.length);
    const native = n!;
    try {
      const z = randomArray(c.batch * dcfg.latentSize, 3, 1.5);
      const [D, H, W] = c.cfg.inputShape;
      const x = c.encode ? randomArray(c.batch * c.cfg.inChannels * D * H * W, 5).map((v) => (v > 0.2 ? 1 : 0)) : null;
      const dev = randomArray(dcfg.latentSize, 9, 0.7);
      const references = async (): Promise<Refs> => {
        const logits = await native.decode(z, { output: 'logits' });
        const enc = x ? await native.encode(x, { batch: c.batch }) : null;
        const comp = enc ? await native.decode(enc.mu.map((m, i) => m + 1.5 * dev[i % dcfg.latentSize]!)) : null;
        return { logits, probs: activate(logits.slice(), c.batch, dcfg), enc, comp };
      };
      const ref = await references();
      let same: Refs | undefined;
      if (BASELINE_ISA) {
        setCpuIsa('sse2');
        try {
          same = await references();
        } finally {
          setCpuIsa('auto');
        }
      } else {
        t.log('not x86-64: no native run on WebAssembly\'s arithmetic (sse2); that comparison is skipped');
      }
      const logitsRef = ref.logits, probsRef = ref.probs, encRef = ref.enc, compRef = ref.comp;
      for (const build of c.builds) {
        const rt = await runtime(build);
        t.is(rt.threads, build === 'mt' ? 2 : 1, `${build}: ${rt.threadsUnavailable}`);
        const m = await loadModel(file, { runtime: rt });
        try {
          t.is(m.kind, c.dcfg ? 'aggregated' : 'vae');
          const logits = await m.decode(z, { output: 'logits' });
          check(t, `${c.name} ${build} logits`, logits, logitsRef, same?.logits);
          const probs = await m.decode(z);
          check(t, `${c.name} ${build} probabilities`, probs, probsRef, same?.probs);
          // The mask is the most probable class (or p > 0.5): compare where the reference is not a near tie.
          const mask = await m.decode(z, { output: 'mask' });
          const C = dcfg.outChannels, S = probsRef.length / (c.batch * C);
          t.is(mask.length, c.batch * S);
          let wrong = 0;
          for (let b = 0; b < c.batch; b++)
            for (let s = 0; s < S; s++) {
              const p = (k: number) => probsRef[(b * C + k) * S + s]!;
              let best = 0;
              for (let k = 1; k < C; k++) if (p(k) > p(best)) best = k;
              const want = C === 1 ? (p(0) > 0.5 ? 1 : 0) : best;
              const margin = C === 1 ? Math.abs(p(0) - 0.5) : Math.min(...Array.from({ length: C }, (_, k) => (k === best ? Infinity : p(best) - p(k))));
              if (margin > 1e-4 && mask[b * S + s] !== want) wrong++;
            }
          t.is(wrong, 0, `${build} mask: ${wrong} voxels differ`);
          if (x && encRef && compRef) {
            const { mu, logvar } = await m.encode(x, { batch: c.batch });
            check(t, `${c.name} ${build} mu`, mu, encRef.mu, same?.enc?.mu);
            check(t, `${c.name} ${build} logvar`, logvar, encRef.logvar, same?.enc?.logvar);
            const comp = await m.complete(x, dev, 1.5, { batch: c.batch });
            check(t, `${c.name} ${build} complete`, comp, compRef, same?.comp ?? undefined);
          }
        } finally {
          m.dispose();
        }
      }
    } finally {
      native.dispose();
    }
  });
}

test('a decoder alone (plain state_dict, no metadata) loads with its config and decodes like the native decoder', async (t) => {
  const cfg = monaiVarAutoEncoder({ inputShape: [16, 16, 8], channels: [4, 8, 8], latentSize: 6 });
  const { file } = await randomCheckpoint('decoder-only', cfg, cfg, 4, (k) => k.startsWith('decode'), false);
  await t.throwsAsync(loadModel(file, { threads: 1 }), { code: 'ECHECKPOINT', message: /no voxvae metadata: pass \{ config \}/ });
  const m = await loadModel(file, { config: cfg, threads: 1 });
  t.is(m.kind, 'decoder');
  t.false(m.hasEncoder);
  await t.throwsAsync(m.encode(new Float32Array(16 * 16 * 8)), { code: 'EUNSUPPORTED', message: /no encoder/ });
  // The native reference: a Decoder with the same tensors.
  const st = await readSafetensors(file);
  const dec = new Decoder(cfg, { seed: 0 });
  dec.network.loadStateDict(st.tensors, file);
  const z = randomArray(3 * 6, 11);
  check(t, 'decoder alone', await m.decode(z, { output: 'logits' }), await dec.decode(z, { output: 'logits' }));
  dec.dispose();
  m.dispose();
});

test('options.into: decode and complete write into the caller\'s buffer and return it, with the values of a fresh result', async (t) => {
  const cfg = monaiVarAutoEncoder({ inputShape: [16, 16, 8], channels: [4, 8, 8], latentSize: 6 });
  const { file, native } = await randomCheckpoint('into', cfg);
  native!.dispose();
  const z = randomArray(2 * 6, 21);
  const x = randomArray(2 * 16 * 16 * 8, 22);
  const dev = randomArray(6, 23);
  for (const threads of [1, 2] as const) {
    const m = await loadModel(file, { threads });
    try {
      const S = m.outputSize / cfg.outChannels;
      for (const output of ['logits', 'probabilities'] as const) {
        const fresh = await m.decode(z, { output });
        const into = new Float32Array(fresh.length).fill(NaN);
        const got = m.decodeSync(z, { output, into });
        t.is(got, into, `${threads}t ${output}: returns the caller's buffer`);
        t.deepEqual(into, fresh, `${threads}t ${output}`);
        // A buffer used again is overwritten whole (no value of the last call is left).
        const comp = await m.complete(x, dev, 0.7, { output, batch: 2 });
        t.is(await m.complete(x, dev, 0.7, { output, into, batch: 2 }), into);
        t.deepEqual(into, comp, `${threads}t complete ${output}`);
      }
      const fresh = await m.decode(z, { output: 'mask' });
      t.is(fresh.length, 2 * S);
      const into = new Uint8Array(2 * S).fill(255);
      t.is(await m.decode(z, { output: 'mask', into }), into);
      t.deepEqual(into, fresh, `${threads}t mask`);
      // A view into a larger buffer works: the values land in the view, nothing around it changes.
      const big = new Float32Array(m.outputSize * 2 + 8).fill(-1);
      const view = big.subarray(4, 4 + m.outputSize * 2);
      m.decodeSync(z, { output: 'logits', into: view });
      t.deepEqual(view, await m.decode(z, { output: 'logits' }));
      t.deepEqual([...big.subarray(0, 4), ...big.subarray(big.length - 4)], [-1, -1, -1, -1, -1, -1, -1, -1]);
    } finally {
      m.dispose();
    }
  }
});

test('decoderOnly loads the decoder of a whole VAE and ignores its encoder', async (t) => {
  const cfg = monaiVarAutoEncoder({ inputShape: [16, 16, 8], channels: [4, 8, 8], latentSize: 6 });
  const { file, native: n } = await randomCheckpoint('decoder-only-of-vae', cfg);
  const native = n!;
  const m = await loadModel(file, { decoderOnly: true, threads: 1 });
  t.is(m.kind, 'decoder');
  const z = randomArray(6, 2);
  check(t, 'decoderOnly', await m.decode(z, { output: 'logits' }), await native.decode(z, { output: 'logits' }));
  m.dispose();
  native.dispose();
});

test('MONAI VarAutoEncoder fixture: eval-mode encode and decode in WebAssembly match PyTorch', async (t) => {
  // A PyTorch state_dict (trained BN statistics: step3.*) saved without voxvae metadata, as
  // safetensors.torch.save_file(model.state_dict()) writes it.
  const st = await loadFixture('monai_vae_tiny.safetensors');
  const cfg = monaiVarAutoEncoder({ inputShape: [16, 16, 8], channels: [4, 8, 8], strides: [2, 2, 2], latentSize: 6 });
  const tensors = new Map<string, TensorToWrite>();
  for (const [k, v] of st.tensors)
    if (k.startsWith('step3.')) tensors.set(k.slice(6), v.dtype === 'I64' ? { dtype: 'I64', shape: v.shape, data: [3] } : { dtype: 'F32', shape: v.shape, data: toFloat32(v) });
  const m = await loadModel(serializeSafetensors(tensors), { config: cfg, name: 'monai_vae_tiny step3', threads: 1 });
  const { mu, logvar } = await m.encode(f32(st, 'x'), { batch: 2 });
  t.true(relErr(mu, f32(st, 'eval3.mu')) <= 1e-4);
  t.true(relErr(logvar, f32(st, 'eval3.logvar')) <= 1e-4);
  t.true(relErr(await m.decode(mu, { output: 'logits' }), f32(st, 'eval3.recon_mean')) <= 1e-4);
  // MONAI's eval-mode forward decodes mu + σ: complete() with γ = 0 and latent 'mean+std' is exactly that.
  const recon = await m.complete(f32(st, 'x'), new Float32Array(6), 0, { latent: 'mean+std', output: 'logits', batch: 2 });
  t.true(relErr(recon, f32(st, 'eval3.recon_meanstd')) <= 1e-4);
  // A volume of another size is ESHAPE, never a silent batch (as the native Vae); latents stay rows [N, latentSize].
  const big = new Float32Array(8 * 16 * 16 * 8);
  await t.throwsAsync(m.encode(big), { code: 'ESHAPE', message: /x has 16384 values; one sample \(1 × 16 × 16 × 8\) has 2048: pass \{ batch: 8 \}/ });
  await t.throwsAsync(m.encodeLatent(big), { code: 'ESHAPE' });
  await t.throwsAsync(m.complete(big, new Float32Array(6), 0), { code: 'ESHAPE' });
  await t.throwsAsync(m.encode(f32(st, 'x'), { batch: 3 }), { code: 'ESHAPE' });
  t.is((await m.decode(new Float32Array(3 * 6))).length, 3 * m.outputSize);
  m.dispose();
});

test('the threaded build gives the same bits as itself on one thread, and its workers start and stop', async (t) => {
  const cfg = preset('tiny');
  const { file, native } = await randomCheckpoint('mt-bits', cfg);
  native!.dispose();
  const rt = await loadRuntime({ threads: 2 });
  t.is(rt.threads, 2);
  const m = await loadModel(file, { runtime: rt });
  const z = randomArray(2 * cfg.latentSize, 8);
  const two = await m.decode(z, { output: 'logits' });
  rt.exports.vx_set_num_threads(1);
  const one = await m.decode(z, { output: 'logits' });
  rt.exports.vx_set_num_threads(2);
  t.true(two.every((v, i) => v === one[i]), 'thread count changed the result');
  for (let i = 0; i < 50; i++) {
    const again = await m.decode(z, { output: 'logits' });
    if (!again.every((v, k) => v === two[k])) return t.fail(`decode ${i} differs`);
  }
  m.dispose();
  t.pass();
});

test('the threaded pool runs every chunk exactly once, also when workers claim late and the caller takes chunks back', async (t) => {
  const rt = await loadRuntime({ threads: 2 });
  t.is(rt.threads, 2);
  const selfTest = rt.exports.vx_test_parallel!;
  // Plain: workers spin between regions and claim their chunks at once.
  const plain = selfTest(3000, 0, 12345);
  t.true(plain >= 0, `region ${-plain - 1} ran an item other than once`);
  // Jittered: each worker pauses 0-200 us after it wakes, so the caller takes many chunks back and workers
  // wake for regions that are long finished.
  const jittered = selfTest(3000, 1, 777);
  t.true(jittered >= 0, `jittered: region ${-jittered - 1} ran an item other than once`);
  t.true(jittered > 100, `the caller took back only ${jittered} chunks: the take-back path was not exercised`);
  t.log(`chunks taken back by the caller: ${plain} plain, ${jittered} jittered (of 3000 regions each)`);
  // Decodes still match after the self-test.
  const cfg = preset('tiny');
  const { file, native } = await randomCheckpoint('mt-after-selftest', cfg);
  native!.dispose();
  const m = await loadModel(file, { runtime: rt });
  const z = randomArray(cfg.latentSize, 3);
  const two = await m.decode(z, { output: 'logits' });
  rt.exports.vx_set_num_threads(1);
  const one = await m.decode(z, { output: 'logits' });
  rt.exports.vx_set_num_threads(2);
  t.true(two.every((v, i) => v === one[i]));
  m.dispose();
});

test('1,000 decodes in a row do not grow the module heap, and dispose frees everything', async (t) => {
  // A runtime of its own (bytes are never cached), so that no other test allocates meanwhile.
  const rt = await loadRuntime({ wasmBinary: await readFile(path.join(ROOT, 'native/wasm/dist/voxvae_simd.wasm')), simd: true, threads: 1 });
  const cfg = monaiVarAutoEncoder({ inputShape: [16, 16, 8], channels: [4, 8, 8], latentSize: 6 });
  const { file, native } = await randomCheckpoint('leak', cfg);
  native!.dispose();
  const z = randomArray(2 * 6, 1);
  const x = randomArray(2 * 16 * 16 * 8, 2);
  const exercise = async (m: WasmVae): Promise<void> => {
    await m.decode(z);
    await m.decode(z, { output: 'mask' });
    await m.encode(x, { batch: 2 });
    await m.complete(x, z.subarray(0, 6), 1, { batch: 2 });
  };
  // The kernels' per-thread scratch grows to the largest request and stays for the module's life: a
  // first model sizes it.
  const warm = await loadModel(file, { runtime: rt });
  await exercise(warm);
  warm.dispose();
  const base = rt.heapBytes;
  const m = await loadModel(file, { runtime: rt });
  await exercise(m);
  const heap = rt.heapBytes, memory = rt.memoryBytes;
  const into = new Float32Array(2 * m.outputSize);
  for (let i = 0; i < 1000; i++) {
    if (i % 4 === 3) m.decodeSync(z, { output: 'logits', into });
    else await m.decode(z, { output: (['probabilities', 'logits', 'mask'] as const)[i % 4] });
    if (i % 100 === 0) await m.complete(x, z.subarray(0, 6), 1, { batch: 2 });
  }
  t.is(rt.heapBytes, heap, 'heap grew over 1,000 decodes');
  t.is(rt.memoryBytes, memory, 'memory grew over 1,000 decodes');
  m.dispose();
  t.is(rt.heapBytes, base, 'dispose left allocations behind');
});

test('the browser entry (ts/web) bundles for the browser with no Node module in its graph', async (t) => {
  const esbuild = await import('esbuild');
  const out = await esbuild
    .build({ entryPoints: [path.join(ROOT, 'ts/web/index.ts')], bundle: true, format: 'esm', platform: 'browser', write: false, metafile: true, logLevel: 'silent' })
    .catch((e: { errors?: { text: string; location?: { file: string } | null }[] }) => {
      throw new Error(`ts/web does not bundle for browsers: ${(e.errors ?? []).map((x) => `${x.location?.file ?? '?'}: ${x.text}`).join('; ')}`);
    });
  const inputs = Object.keys(out.metafile.inputs);
  t.deepEqual(inputs.filter((p) => !p.startsWith('ts/') || p.startsWith('node:')), []);
  t.false(inputs.some((p) => /ts\/(vae|native|backend|network|safetensors)\.ts$/.test(p)), inputs.join(', '));
  t.log(`${inputs.length} modules, ${(out.outputFiles[0]!.contents.length / 1024).toFixed(0)} KiB unminified`);
});
