// The model API: config validation, save/load, exact resume, the frozen-encoder stage, the
// decoder on its own, async behaviour, and bad input (typed errors; the process keeps working).
import test from 'ava';
import { mkdtemp, readFile, rm, writeFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monaiVarAutoEncoder, skullVaeDecoder, validateConfig } from '../ts/config.js';
import { VoxvaeError } from '../ts/errors.js';
import { Decoder, Encoder, Vae, cpuIsa, setCpuIsa, setThreads } from '../ts/vae.js';

const CFG = monaiVarAutoEncoder({ inputShape: [16, 16, 8], channels: [4, 8, 8], latentSize: 6 });
const SAMPLE = 16 * 16 * 8;

function blobs(n: number, seed: number): Float32Array {
  const x = new Float32Array(n * SAMPLE);
  for (let b = 0; b < n; b++) {
    const cx = 4 + ((seed * 7 + b * 3) % 8), cy = 4 + ((seed * 5 + b * 5) % 8), cz = 2 + ((seed + b) % 4), r = 3 + ((seed + b) % 3);
    for (let d = 0; d < 16; d++) for (let h = 0; h < 16; h++) for (let w = 0; w < 8; w++)
      x[b * SAMPLE + (d * 16 + h) * 8 + w] = (d - cx) ** 2 + (h - cy) ** 2 + 2 * (w - cz) ** 2 <= r * r ? 1 : 0;
  }
  return x;
}

/** n blobs as a training batch (its shape says how many: a bare Float32Array is one volume). */
function batch(n: number, seed: number): { input: Float32Array; shape: number[] } {
  return { input: blobs(n, seed), shape: [n, 1, 16, 16, 8] };
}

async function tmpdir(t: import('ava').ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-api-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const isVx = (code: string) => ({ instanceOf: VoxvaeError, code });

test('config validation names the field', (t) => {
  t.throws(() => validateConfig({ ...CFG, latentSize: 0 }), { ...isVx('EINVAL'), message: /config\.latentSize/ });
  t.throws(() => validateConfig({ ...CFG, inputShape: [15, 16, 8] }), { ...isVx('EINVAL'), message: /inputShape\[0\].*divisible/ });
  t.throws(() => validateConfig({ ...CFG, strides: [2, 2] }), { ...isVx('EINVAL'), message: /strides/ });
  t.throws(() => validateConfig({ ...CFG, norm: 'group' as never }), { ...isVx('EINVAL'), message: /config\.norm/ });
  t.throws(() => validateConfig({ ...CFG, kernelSize: 4 }), { ...isVx('EINVAL'), message: /kernelSize.*odd/ });
  t.throws(() => validateConfig({ ...CFG, lr: 1 } as never), { ...isVx('EINVAL'), message: /config\.lr is not a VaeConfig field/ });
});

test('MONAI preset at the paper size has MONAI parameter counts', async (t) => {
  const full = monaiVarAutoEncoder({ inputShape: [256, 256, 128] });
  const vae = await Vae.create(full);
  t.is(vae.numParams, 4228909);
  vae.dispose();
  const dec = new Decoder(skullVaeDecoder({ inputShape: [256, 256, 128] }));
  t.is(dec.network.numParams, 1987500);
  dec.dispose();
});

test('save, train 5 more, load, redo the last 5: same losses bit for bit (exact resume)', async (t) => {
  const dir = await tmpdir(t);
  const vae = await Vae.create(CFG, { seed: 7 });
  const batches = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => batch(2, i));
  const opts = { beta: 0.5, optimizer: { lr: 1e-3 } };
  for (let i = 0; i < 5; i++) await vae.trainStep(batches[i]!, opts);
  const ckpt = path.join(dir, 'mid.safetensors');
  await vae.save(ckpt);
  const after: number[] = [];
  for (let i = 5; i < 10; i++) after.push((await vae.trainStep(batches[i]!, opts)).loss);
  const resumed = await Vae.load(ckpt);
  t.is(resumed.step, 5);
  const redo: number[] = [];
  for (let i = 5; i < 10; i++) redo.push((await resumed.trainStep(batches[i]!, opts)).loss);
  t.deepEqual(redo, after);
  // Loss actually decreased: the model learns.
  t.true(after[4]! < (await Vae.create(CFG, { seed: 7 }).then((v) => v.trainStep(batches[9]!, opts))).loss);
  // Same seed → same numbers from scratch.
  const again = await Vae.create(CFG, { seed: 7 });
  const first = await vae.encode(batches[0]!.input, { batch: 2 });
  t.notDeepEqual(first.mu, (await again.encode(batches[0]!.input, { batch: 2 })).mu);
  vae.dispose();
  resumed.dispose();
  again.dispose();
});

test('two runs from the same seed give identical losses', async (t) => {
  const run = async () => {
    const v = await Vae.create(CFG, { seed: 3 });
    const out: number[] = [];
    for (let i = 0; i < 3; i++) out.push((await v.trainStep(batch(2, i), { beta: 1, optimizer: { lr: 1e-3 } })).loss);
    v.dispose();
    return out;
  };
  t.deepEqual(await run(), await run());
});

test('two models trained at the same time give the same losses as one after the other', async (t) => {
  // Their native calls overlap on Node's worker threads; the kernels' shared state (thread pool, the
  // convolution engine's per-call buffers) must keep them independent and deterministic.
  const run = async (seed: number) => {
    const v = await Vae.create(CFG, { seed });
    const out: number[] = [];
    for (let i = 0; i < 3; i++) out.push((await v.trainStep(batch(2, i + seed), { beta: 1, optimizer: { lr: 1e-3 } })).loss);
    v.dispose();
    return out;
  };
  const alone = [await run(3), await run(4)];
  const together = await Promise.all([run(3), run(4)]);
  t.true(alone[0]!.every(Number.isFinite));
  t.notDeepEqual(alone[0], alone[1]);
  t.deepEqual(together, alone);
});

test('trainStep refills its native input, target and gradient buffers: batch sizes, targets and a refused batch change nothing else', async (t) => {
  const withTarget = { ...batch(2, 2), target: blobs(2, 5) };
  const run = async (nanStep: boolean) => {
    const v = await Vae.create(CFG, { seed: 4 });
    const out: number[] = [];
    const step = async (b: Float32Array | { input: Float32Array; target?: Float32Array; shape?: number[] }) => out.push((await v.trainStep(b, { beta: 1, optimizer: { lr: 1e-3 } })).loss);
    await step(batch(2, 0));
    await step(blobs(1, 1));  // another batch size: buffers replaced
    if (nanStep) {
      const bad = blobs(1, 6);
      bad[7] = Infinity;  // refused while being copied into the reused buffer
      await t.throwsAsync(v.trainStep(bad), { ...isVx('ENOTFINITE'), message: /^batch\.input holds a non-finite value \(Inf\) at index 7/ });
    }
    await step(blobs(1, 3));
    await step(withTarget);  // a target of its own
    await step(batch(2, 4));
    v.dispose();
    return out;
  };
  t.deepEqual(await run(true), await run(false));
});

test('frozen encoder + new skullVAE decoder: encoder weights stay bit-identical, decoder learns', async (t) => {
  const dir = await tmpdir(t);
  const vae = await Vae.create(CFG, { seed: 1 });
  for (let i = 0; i < 2; i++) await vae.trainStep(batch(2, i), { beta: 100, optimizer: { lr: 1e-3 } });
  const before = { p: vae.encoder.network.net.getParams(), b: vae.encoder.network.net.getBuffers() };
  vae.encoder.freeze();
  const dec = new Decoder(skullVaeDecoder({ inputShape: [16, 16, 8], channels: [4, 8, 8], latentSize: 6 }), { seed: 11 });
  const stage2 = Vae.fromParts(vae.encoder, dec, 1);
  const losses: number[] = [];
  for (let i = 0; i < 8; i++) {
    const r = await stage2.trainStep(batch(2, 0), { latent: 'mean+std', optimizer: { lr: 3e-3 } });
    t.is(r.beta, 0);
    t.is(r.loss, r.recon); // reconstruction only
    losses.push(r.loss);
  }
  t.deepEqual(vae.encoder.network.net.getParams(), before.p);
  t.deepEqual(vae.encoder.network.net.getBuffers(), before.b); // eval mode: running stats untouched
  t.true(losses[7]! < losses[0]!, `decoder loss went ${losses[0]} → ${losses[7]}`);
  // One checkpoint holds both parts, and the frozen flag.
  const p = path.join(dir, 'agg.safetensors');
  await stage2.save(p);
  const back = await Vae.load(p);
  t.true(back.encoder.frozen);
  t.is(back.decoder.config.decoderBlock, 'skullvae');
  const x = blobs(1, 4);
  t.deepEqual((await back.forward(x)).recon, (await stage2.forward(x)).recon);
  back.dispose();
  stage2.dispose();
});

test('the decoder trains on its own from given latents', async (t) => {
  const dec = new Decoder(CFG, { seed: 2 });
  const z = new Float32Array(2 * 6).map((_, i) => Math.sin(i));
  const target = blobs(2, 1);
  const first = await dec.trainStep(z, target, { optimizer: { lr: 3e-3 } });
  let last = first;
  for (let i = 0; i < 6; i++) last = await dec.trainStep(z, target, { optimizer: { lr: 3e-3 } });
  t.true(last.loss < first.loss);
  const p = await dec.decode(z);
  t.is(p.length, 2 * 2 * SAMPLE);
  for (let i = 0; i < SAMPLE; i += 97) t.true(Math.abs(p[i]! + p[i + SAMPLE]! - 1) < 1e-5); // softmax over 2 classes
  dec.dispose();
});

test('plain PyTorch state_dict loads with { config }; without it the error says what to pass', async (t) => {
  const dir = await tmpdir(t);
  const vae = await Vae.create(CFG, { seed: 5 });
  const p = path.join(dir, 'm.safetensors');
  await vae.save(p);
  const buf = new Uint8Array(await readFile(p));
  // Strip the voxvae metadata and training tensors: what PyTorch's save_file(state_dict) writes.
  const { parseSafetensors, serializeSafetensors, toFloat32, toNumbers } = await import('../ts/safetensors.js');
  const st = parseSafetensors(buf);
  const plain = new Map<string, { dtype: 'F32' | 'I64'; shape: number[]; data: Float32Array | number[] }>();
  for (const [k, v] of st.tensors) if (!k.startsWith('__')) plain.set(k, v.dtype === 'I64' ? { dtype: 'I64', shape: v.shape, data: toNumbers(v) } : { dtype: 'F32', shape: v.shape, data: toFloat32(v) });
  const pp = path.join(dir, 'plain.safetensors');
  await writeFile(pp, serializeSafetensors(plain));
  await t.throwsAsync(Vae.load(pp), { ...isVx('ECHECKPOINT'), message: /pass \{ config \}/ });
  // Metadata that is JSON but not a voxvae object (here `null`), or of another format: ECHECKPOINT.
  for (const bad of ['null', '7', '{"format":"other","version":1}']) {
    const pb = path.join(dir, 'bad.safetensors');
    await writeFile(pb, serializeSafetensors(plain, { voxvae: bad }));
    await t.throwsAsync(Vae.load(pb), { ...isVx('ECHECKPOINT'), message: /unsupported checkpoint format/ });
  }
  const loaded = await Vae.load(pp, { config: CFG });
  const x = blobs(1, 2);
  t.deepEqual((await loaded.encode(x)).mu, (await vae.encode(x)).mu);
  loaded.dispose();
  vae.dispose();
});

test('decode { output }: probabilities (default), logits, and a Uint8Array mask, as voxvae/web spells it', async (t) => {
  const dec = new Decoder(CFG, { seed: 5 });
  const z = Float32Array.from({ length: 3 * 6 }, (_, i) => Math.sin(0.9 * i));
  const logits = await dec.decode(z, { output: 'logits' });
  const probs = await dec.decode(z);
  const mask: Uint8Array = await dec.decode(z, { output: 'mask' });
  t.true(mask instanceof Uint8Array);
  const S = 16 * 16 * 8;
  t.is(mask.length, 3 * S);
  for (let b = 0; b < 3; b++)
    for (let s = 0; s < S; s++) {
      const l0 = logits[(b * 2) * S + s]!, l1 = logits[(b * 2 + 1) * S + s]!;
      t.true(Math.abs(probs[(b * 2 + 1) * S + s]! - 1 / (1 + Math.exp(l0 - l1))) < 1e-5);
      if (mask[b * S + s] !== (l1 > l0 ? 1 : 0)) return t.fail(`mask at ${b}, ${s}`);
    }
  dec.dispose();
});

// Serial: the ISA is process-wide and must not change under a running call (serial tests run before
// the concurrent ones).
test.serial('setCpuIsa switches every CPU kernel; results agree across ISAs and an unavailable ISA changes nothing', async (t) => {
  const auto = cpuIsa();
  t.true(['avx512f', 'avx2', 'sse2', 'portable'].includes(auto), auto);
  const dec = new Decoder(CFG, { seed: 3 });
  const z = Float32Array.from({ length: 2 * 6 }, (_, i) => Math.cos(0.7 * i));
  try {
    const y = await dec.decode(z, { output: 'logits' });
    const isas = ['sse2', 'avx2', 'avx512f'] as const;
    for (const isa of isas) {
      const before = cpuIsa();
      let now: string;
      try {
        now = setCpuIsa(isa);
      } catch (e) {
        t.true(e instanceof VoxvaeError && e.code === 'EUNSUPPORTED', String(e));
        t.regex((e as Error).message, new RegExp(`'${isa}' is not available.*current one is '${before}'`));
        t.is(cpuIsa(), before, 'a refused ISA leaves the current one');
        continue;
      }
      t.is(now, isa);
      t.is(cpuIsa(), isa);
      const yi = await dec.decode(z, { output: 'logits' });
      let d = 0, m = 0;
      for (let i = 0; i < y.length; i++) (d = Math.max(d, Math.abs(yi[i]! - y[i]!))), (m = Math.max(m, Math.abs(y[i]!)));
      t.true(d <= 1e-5 * m, `${isa}: max |difference| ${d} vs max |y| ${m}`);
      t.deepEqual(await dec.decode(z, { output: 'logits' }), yi, `${isa}: repeatable`);
    }
    t.throws(() => setCpuIsa('neon' as never), isVx('EINVAL'));
    // Kernels read the ISA and the thread count while they run: neither changes under a running call.
    const isaNow = cpuIsa();
    const pending = dec.decode(z, { output: 'logits' });
    t.throws(() => setCpuIsa('auto'), { code: 'EBUSY', message: /setCpuIsa: 1 native call\(s\) still running; await them first/ });
    t.throws(() => setThreads(1), { code: 'EBUSY', message: /setThreads: 1 native call/ });
    await pending;
    t.is(cpuIsa(), isaNow);
    t.is(setThreads(0) > 0, true);
  } finally {
    t.is(setCpuIsa('auto'), auto);
    dec.dispose();
  }
});

test('bad input gives typed errors and the process keeps working', async (t) => {
  const dir = await tmpdir(t);
  const vae = await Vae.create(CFG, { seed: 9 });
  // Wrong lengths and types.
  await t.throwsAsync(vae.encode(new Float32Array(SAMPLE + 1)), { ...isVx('ESHAPE'), message: /x has 2049 values/ });
  await t.throwsAsync(vae.decode(new Float32Array(5)), isVx('ESHAPE'));
  await t.throwsAsync(vae.encode([1, 2, 3] as never), isVx('EINVAL'));
  // A volume of another size is ESHAPE, never a silent batch: a 32×32×16 volume holds 8 × this model's 16×16×8.
  const big = new Float32Array(8 * SAMPLE);
  await t.throwsAsync(vae.encode(big), { ...isVx('ESHAPE'), message: /x has 16384 values; one sample \(1 × 16 × 16 × 8\) has 2048: pass \{ batch: 8 \}/ });
  await t.throwsAsync(vae.forward(big), isVx('ESHAPE'));
  await t.throwsAsync(vae.encodeLatent(big), isVx('ESHAPE'));
  await t.throwsAsync(vae.trainStep(big), { ...isVx('ESHAPE'), message: /give batch\.shape \[8, 1, 16, 16, 8\]/ });
  await t.throwsAsync(vae.trainStep({ input: big, shape: [1, 1, 32, 32, 16] }), { ...isVx('ESHAPE'), message: /batch\.shape is \[1, 1, 32, 32, 16\]; this model takes \[N, 1, 16, 16, 8\]/ });
  await t.throwsAsync(vae.trainStep({ input: big, shape: [2, 1, 16, 16, 8] }), { ...isVx('ESHAPE'), message: /batch\.shape \[2, 1, 16, 16, 8\] has 4096/ });
  t.is((await vae.encode(big, { batch: 8 })).mu.length, 8 * CFG.latentSize);
  await t.throwsAsync(vae.encode(big, { batch: 4 }), isVx('ESHAPE'));
  await t.throwsAsync(vae.decode(new Float32Array(CFG.latentSize), { logits: true } as never), { ...isVx('EINVAL'), message: /options\.logits is not a known option/ });
  await t.throwsAsync(vae.decode(new Float32Array(CFG.latentSize), { output: 'raw' as never }), { ...isVx('EINVAL'), message: /options\.output/ });
  await t.throwsAsync(vae.trainStep({ ...batch(2, 0), target: new Float32Array(3) }), { ...isVx('ESHAPE'), message: /batch\.target/ });
  await t.throwsAsync(vae.trainStep(batch(1, 0), { beta: -1 }), { ...isVx('EINVAL'), message: /options\.beta/ });
  await t.throwsAsync(vae.trainStep(batch(1, 0), { recon: { kind: 'huber' as never } }), isVx('EINVAL'));
  // NaN in the input is refused before any kernel runs, and the error keeps the caller's stack.
  const bad = blobs(1, 0);
  bad[100] = NaN;
  const err = await t.throwsAsync(vae.encode(bad), { ...isVx('ENOTFINITE'), message: /^x holds a non-finite value \(NaN\) at index 100/ });
  t.regex(err?.stack ?? '', /vae_api\.test/);
  // One value per channel cannot be batch-normalised in training mode (PyTorch raises too).
  const small = await Vae.create(monaiVarAutoEncoder({ inputShape: [8, 8, 8], channels: [4, 8, 8], latentSize: 6 }));
  await t.throwsAsync(small.trainStep({ input: new Float32Array(512).fill(1) }), { ...isVx('EINVAL'), message: /more than 1 value per channel|1 value/i });
  t.true(Number.isFinite((await small.trainStep({ input: new Float32Array(1024).fill(1), shape: [2, 1, 8, 8, 8] })).loss));
  small.dispose();
  // Checkpoints: another architecture, truncated, not safetensors, missing.
  const p = path.join(dir, 'ok.safetensors');
  await vae.save(p);
  const other = monaiVarAutoEncoder({ inputShape: [16, 16, 8], channels: [4, 8, 16], latentSize: 6 });
  await t.throwsAsync(Vae.load(p, { config: other }), { ...isVx('ECHECKPOINT'), message: /another architecture/ });
  const otherLatent = monaiVarAutoEncoder({ inputShape: [16, 16, 8], channels: [4, 8, 8], latentSize: 7 });
  await t.throwsAsync(Vae.load(p, { config: otherLatent }), isVx('ECHECKPOINT'));
  const bytes = await readFile(p);
  await writeFile(path.join(dir, 'trunc.safetensors'), bytes.subarray(0, bytes.length - 100));
  await t.throwsAsync(Vae.load(path.join(dir, 'trunc.safetensors')), { ...isVx('EFORMAT'), message: /trunc\.safetensors.*truncated/ });
  await writeFile(path.join(dir, 'junk.safetensors'), 'this is not a checkpoint at all');
  await t.throwsAsync(Vae.load(path.join(dir, 'junk.safetensors')), isVx('EFORMAT'));
  await writeFile(path.join(dir, 'tiny'), 'abc');
  await t.throwsAsync(Vae.load(path.join(dir, 'tiny')), isVx('EFORMAT'));
  await t.throwsAsync(Vae.load(path.join(dir, 'missing.safetensors')), isVx('EIO'));
  // Saving into a missing folder fails cleanly and leaves no temporary file.
  await t.throwsAsync(vae.save(path.join(dir, 'no', 'such', 'dir.safetensors')), isVx('EIO'));
  t.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), []);
  // Still working.
  const r = await vae.trainStep(batch(2, 3), { beta: 1 });
  t.true(Number.isFinite(r.loss));
  // Disposed objects refuse politely.
  const enc = new Encoder(CFG);
  enc.dispose();
  await t.throwsAsync(enc.encode(blobs(1, 0)), isVx('EDISPOSED'));
  vae.dispose();
});

test('concurrent calls on one model are refused with EBUSY, not raced', async (t) => {
  const vae = await Vae.create(CFG, { seed: 2 });
  const a = vae.trainStep(batch(2, 0));
  await t.throwsAsync(vae.trainStep(batch(2, 1)), isVx('EBUSY'));
  await t.throwsAsync(vae.encode(blobs(1, 1)), isVx('EBUSY'));
  await a;
  t.true(Number.isFinite((await vae.trainStep(batch(2, 1))).loss));
  vae.dispose();
});

test('heavy calls run off the event loop', async (t) => {
  const vae = await Vae.create(monaiVarAutoEncoder({ inputShape: [32, 32, 32], channels: [16, 32, 64, 128], latentSize: 32 }), { seed: 1 });
  const x = new Float32Array(4 * 32 * 32 * 32).map((_, i) => (i % 7 < 3 ? 1 : 0));
  let ticks = 0;
  let worst = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
    ticks++;
  }, 2);
  const t0 = performance.now();
  await vae.trainStep({ input: x, shape: [4, 1, 32, 32, 32] });
  const took = performance.now() - t0;
  clearInterval(timer);
  t.log(`train step ${took.toFixed(0)} ms, ${ticks} timer ticks, longest gap ${worst.toFixed(1)} ms`);
  t.true(ticks >= Math.min(5, took / 20), 'the event loop kept turning during the step');
  vae.dispose();
});
