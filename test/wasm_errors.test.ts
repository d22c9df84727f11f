// Bad input to WebAssembly inference: every case is a typed VoxvaeError whose message says what was
// wrong and where (file, URL, argument), and the runtime keeps working afterwards. One table per kind
// of input: checkpoints, .wasm files, shapes, latents.
import test from 'ava';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monaiVarAutoEncoder, type VaeConfig } from '../ts/config.js';
import { serializeSafetensors, type TensorToWrite } from '../ts/safetensors.js';
import { Decoder, Vae } from '../ts/vae.js';
import { loadModel, loadRuntime, type WasmVae } from '../ts/web/index.js';
import { ROOT } from './helpers.js';

const CFG = monaiVarAutoEncoder({ inputShape: [16, 16, 8], channels: [4, 8, 8], latentSize: 6 });
const Z = Float32Array.from({ length: 6 }, (_, i) => Math.cos(i));

let tmp = '';
let good = '';
let goodBytes: Uint8Array = new Uint8Array();
let model: WasmVae;
let reference: Float32Array;

test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'voxvae-wasm-err-'));
  const vae = await Vae.create(CFG, { seed: 2 });
  good = path.join(tmp, 'good.safetensors');
  await vae.save(good);
  vae.dispose();
  goodBytes = await readFile(good);
  model = await loadModel(good, { threads: 1 });
  reference = await model.decode(Z, { output: 'logits' });
});

test.after.always(async () => {
  model?.dispose();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** The shared model still decodes exactly as before. */
async function stillWorks(t: { true(v: boolean, m?: string): void }): Promise<void> {
  const y = await model.decode(Z, { output: 'logits' });
  t.true(y.every((v, i) => v === reference[i]), 'the runtime no longer decodes correctly after the error');
}

function withMeta(tensors: Map<string, TensorToWrite>, meta: Record<string, unknown> | null): Uint8Array {
  return serializeSafetensors(tensors, meta ? { voxvae: JSON.stringify(meta) } : {});
}

// ---- checkpoints ------------------------------------------------------------------------------------------
const CHECKPOINTS: { name: string; bytes: () => Promise<Uint8Array | string>; opts?: object; code: string; message: RegExp }[] = [
  {
    name: 'a file that is not safetensors',
    bytes: async () => new TextEncoder().encode('{"not": "a checkpoint"}'),
    code: 'EFORMAT',
    message: /bad\.bin is not a valid safetensors file/,
  },
  {
    name: 'a truncated checkpoint',
    bytes: async () => goodBytes.subarray(0, goodBytes.length - 100),
    code: 'EFORMAT',
    message: /bad\.bin is not a valid safetensors file: .*truncated/,
  },
  {
    name: 'a voxvae checkpoint of another kind',
    bytes: async () => withMeta(new Map([['disc.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) }]]), { format: 'voxvae-checkpoint', version: 1, kind: 'discriminator' }),
    code: 'ECHECKPOINT',
    message: /bad\.bin is a voxvae checkpoint of kind 'discriminator'/,
  },
  {
    name: 'an unknown checkpoint format version',
    bytes: async () => withMeta(new Map(), { format: 'voxvae-checkpoint', version: 9, kind: 'vae' }),
    code: 'ECHECKPOINT',
    message: /unsupported checkpoint format voxvae-checkpoint v9/,
  },
  {
    name: 'a state_dict of something else (no decoder tensors)',
    bytes: async () => withMeta(new Map([['backbone.conv1.weight', { dtype: 'F32', shape: [3], data: new Float32Array(3) }]]), null),
    opts: { config: CFG },
    code: 'ECHECKPOINT',
    message: /holds no decoder tensors .*it has backbone\.conv1\.weight/,
  },
  {
    name: 'a checkpoint for another architecture',
    bytes: async () => readFile(good),
    opts: { config: monaiVarAutoEncoder({ inputShape: [16, 16, 8], channels: [4, 8, 16], latentSize: 6 }) },
    code: 'ECHECKPOINT',
    message: /has shape \[.*\], this model needs \[.*\] — the checkpoint is for another architecture/,
  },
  {
    name: 'a plain state_dict without a config',
    bytes: async () => withMeta(new Map([['decodeL.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) }]]), null),
    code: 'ECHECKPOINT',
    message: /has no voxvae metadata: pass \{ config \}/,
  },
  {
    name: 'a missing checkpoint file',
    bytes: async () => path.join(tmp, 'does-not-exist.safetensors'),
    code: 'EIO',
    message: /cannot read the checkpoint .*does-not-exist\.safetensors/,
  },
];

for (const c of CHECKPOINTS) {
  test(`checkpoint: ${c.name}`, async (t) => {
    const b = await c.bytes();
    const err = await t.throwsAsync(loadModel(typeof b === 'string' ? b : b, { threads: 1, name: typeof b === 'string' ? undefined : 'bad.bin', ...(c.opts ?? {}) } as never));
    t.is((err as { code?: string }).code, c.code);
    t.regex(err!.message, c.message);
    await stillWorks(t);
  });
}

test('checkpoint: a non-finite weight is named with its index', async (t) => {
  const tensors = new Map<string, TensorToWrite>();
  const dec = new Decoder(CFG, { seed: 0 });
  for (const [k, v] of dec.network.stateDict()) tensors.set(k, v);
  dec.dispose();
  const w = tensors.get('decodeL.weight')!;
  const data = Float32Array.from(w.data as Float32Array);
  data[5] = NaN;
  tensors.set('decodeL.weight', { ...w, data });
  const err = await t.throwsAsync(loadModel(serializeSafetensors(tensors), { config: CFG, name: 'nan.safetensors', threads: 1 }), { code: 'ECHECKPOINT' });
  t.regex(err!.message, /nan\.safetensors: decodeL\.weight holds a non-finite value at index 5/);
  await stillWorks(t);
});

// ---- .wasm files ----------------------------------------------------------------------------------------------
test('wasm: a folder without the .wasm files gives EIO naming the path tried and the fix', async (t) => {
  const dir = path.join(tmp, 'empty-wasm-dir') + '/';
  await mkdir(dir, { recursive: true });
  const err = await t.throwsAsync(loadRuntime({ wasmPath: dir, simd: true, threads: 1 }), { code: 'EIO' });
  t.true(err!.message.includes(`${dir}voxvae_simd.wasm`), err!.message);
  t.regex(err!.message, /setWasmPath\(\)|npm run build:wasm/);
  t.is((err as { path?: string }).path, `${dir}voxvae_simd.wasm`);
});

const CORRUPT: { name: string; bytes: () => Promise<Uint8Array>; message: RegExp }[] = [
  { name: 'an HTML page saved as .wasm', bytes: async () => new TextEncoder().encode('<!doctype html><title>404</title>'), message: /is not a WebAssembly module \(\d+ bytes, starting "<!doctype html>/ },
  {
    name: 'a truncated module',
    bytes: async () => (await readFile(path.join(ROOT, 'native/wasm/dist/voxvae_simd.wasm'))).subarray(0, 50_000),
    message: /is corrupt or uses features this engine lacks/,
  },
  // A valid module that is not ours: no exports at all.
  { name: 'another WebAssembly module', bytes: async () => new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]), message: /is not a voxvae module: it lacks the export|neither exports nor imports a memory/ },
];

for (const c of CORRUPT) {
  test(`wasm: ${c.name} gives EFORMAT naming the file, and a good copy loads afterwards`, async (t) => {
    const dir = path.join(tmp, `wasm-${c.name.replace(/\W+/g, '-')}`) + '/';
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'voxvae_simd.wasm'), await c.bytes());
    const err = await t.throwsAsync(loadRuntime({ wasmPath: dir, simd: true, threads: 1 }), { code: 'EFORMAT' });
    t.true(err!.message.startsWith(`${dir}voxvae_simd.wasm`), err!.message);
    t.regex(err!.message, c.message);
    // The failed load is not cached: fix the file and the same location loads.
    await copyFile(path.join(ROOT, 'native/wasm/dist/voxvae_simd.wasm'), path.join(dir, 'voxvae_simd.wasm'));
    const rt = await loadRuntime({ wasmPath: dir, simd: true, threads: 1 });
    const m = await loadModel(goodBytes, { runtime: rt });
    t.true((await m.decode(Z, { output: 'logits' })).every((v, i) => v === reference[i]));
    m.dispose();
  });
}

test('wasm: bad runtime options are refused by name', async (t) => {
  await t.throwsAsync(loadRuntime({ threads: 0 }), { code: 'EINVAL', message: /options\.threads/ });
  await t.throwsAsync(loadRuntime({ simd: 'yes' as never }), { code: 'EINVAL', message: /options\.simd/ });
  await t.throwsAsync(loadRuntime({ wasmBinary: 'bytes' as never }), { code: 'EINVAL', message: /options\.wasmBinary/ });
});

// ---- shapes beyond 32-bit memory ------------------------------------------------------------------------------
async function decoderBytes(cfg: VaeConfig): Promise<Uint8Array> {
  const dec = new Decoder(cfg, { seed: 0 });
  const bytes = serializeSafetensors(dec.network.stateDict(), { voxvae: JSON.stringify({ format: 'voxvae-checkpoint', version: 1, kind: 'decoder', config: cfg, decoderConfig: cfg }) });
  dec.dispose();
  return bytes;
}

test('shape: a volume whose activations exceed 4 GiB is refused before any allocation; the runtime stays usable', async (t) => {
  // 1024 × 1024 × 512 with 2 output classes: the logits alone are 4 GiB.
  const big = monaiVarAutoEncoder({ inputShape: [1024, 1024, 512], channels: [4, 4, 4, 4, 4, 4], latentSize: 6 });
  const m = await loadModel(await decoderBytes(big), { name: 'big.safetensors', threads: 1, runtime: model.runtime });
  t.is(m.kind, 'decoder');
  const before = m.runtime.memoryBytes;
  const err = await t.throwsAsync(m.decode(Z), { code: 'ENOMEM' });
  t.regex(err!.message, /decode: batch 1 needs \d+\.\d\d GiB of activations; WebAssembly memory is limited to 4 GiB/);
  t.is(m.runtime.memoryBytes, before, 'the memory grew for a request that was refused');
  m.dispose();
  await stillWorks(t);
});

test('shape: a batch too large for 32-bit memory is refused the same way', async (t) => {
  const z = new Float32Array(6 * 200_000);
  const err = await t.throwsAsync(model.decode(z), { code: 'ENOMEM' });
  t.regex(err!.message, /batch 200000 needs .* GiB .* limited to 4 GiB/);
  await stillWorks(t);
});

// ---- latents and other arguments ------------------------------------------------------------------------------
const ARGS: { name: string; run: () => Promise<unknown>; code: string; message: RegExp }[] = [
  { name: 'a latent of the wrong length', run: () => model.decode(new Float32Array(7)), code: 'ESHAPE', message: /z has 7 values, not a positive multiple of one row's 6/ },
  { name: 'an empty latent', run: () => model.decode(new Float32Array(0)), code: 'ESHAPE', message: /z has 0 values/ },
  { name: 'a Float64Array latent', run: () => model.decode(new Float64Array(6) as never), code: 'EINVAL', message: /z must be a Float32Array \(got Float64Array\(6\)\)/ },
  { name: 'a NaN in the latent', run: () => model.decode(Float32Array.of(0, 0, NaN, 0, 0, 0)), code: 'ENOTFINITE', message: /z\[2\] is NaN/ },
  { name: 'an unknown output kind', run: () => model.decode(Z, { output: 'png' as never }), code: 'EINVAL', message: /options\.output must be one of 'probabilities', 'logits', 'mask'/ },
  { name: 'an output buffer of the wrong type', run: () => model.decode(Z, { output: 'logits', into: new Uint8Array(2 * 2048) as never }), code: 'EINVAL', message: /options\.into must be a Float32Array for output 'logits' \(got Uint8Array\(4096\)\)/ },
  { name: 'a Float32Array for a mask', run: () => model.decode(Z, { output: 'mask', into: new Float32Array(2048) as never }), code: 'EINVAL', message: /options\.into must be a Uint8Array for output 'mask'/ },
  { name: 'an output buffer of the wrong length', run: () => model.decode(Z, { output: 'logits', into: new Float32Array(100) }), code: 'ESHAPE', message: /options\.into has 100 values; output 'logits' of this call has \d+/ },
  { name: 'a completion buffer of the wrong length', run: () => model.complete(new Float32Array(2048), new Float32Array(6), 1, { output: 'mask', into: new Uint8Array(5) }), code: 'ESHAPE', message: /options\.into has 5 values; output 'mask' of this call has 2048/ },
  { name: 'an input volume of the wrong size', run: () => model.encode(new Float32Array(100)), code: 'ESHAPE', message: /x has 100 values; one sample \(1 × 16 × 16 × 8\) has 2048: resample the volume to the model's shape/ },
  { name: 'a deviation vector of the wrong length', run: () => model.complete(new Float32Array(2048), new Float32Array(5), 1), code: 'ESHAPE', message: /dev has 5 values; expected the latent size 6/ },
  { name: 'a non-finite gamma', run: () => model.complete(new Float32Array(2048), new Float32Array(6), Infinity), code: 'EINVAL', message: /gamma must be a finite number/ },
  { name: 'an unknown latent mode', run: () => model.complete(new Float32Array(2048), new Float32Array(6), 1, { latent: 'mode' as never }), code: 'EINVAL', message: /options\.latent/ },
];

for (const c of ARGS) {
  test(`argument: ${c.name}`, async (t) => {
    const err = await t.throwsAsync(c.run());
    t.is((err as { code?: string }).code, c.code, err?.message);
    t.regex(err!.message, c.message);
    await stillWorks(t);
  });
}

test('a disposed model refuses calls with EDISPOSED; dispose is idempotent', async (t) => {
  const m = await loadModel(goodBytes, { threads: 1 });
  m.dispose();
  m.dispose();
  await t.throwsAsync(m.decode(Z), { code: 'EDISPOSED' });
  await t.throwsAsync(m.encode(new Float32Array(2048)), { code: 'EDISPOSED' });
  await stillWorks(t);
});
