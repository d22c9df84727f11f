// The checkpoint table: presets (MONAI VAE, aggregated VAE = MONAI encoder + skullVAE decoder, ResNet-v2
// VAE, a decoder alone, a PatchGAN discriminator's state_dict) × loaders (native Vae.load, voxvae/web's
// loadModel in WebAssembly, exportOnnx, the Trainer's resume and in-memory restore). Each cell loads and
// gives the same decode (native bit for bit, WebAssembly within 1e-5 relative, ONNX: every initializer
// holds the checkpoint's exact tensor, and a plain reference evaluator of the exported model gives the
// native decode/encode within 1e-5 relative), or is refused with a typed error saying why. Tiny shapes
// (16³, a few channels). Also: the metadata validation of ts/model/checkpoint.ts (missing/null/bad fields are tolerated or ECHECKPOINT, never a TypeError).
import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monaiVarAutoEncoder, resnetV2Vae, skullVaeDecoder, type VaeConfig } from '../ts/config.js';
import { patchGan3d } from '../ts/discriminator.js';
import { VoxvaeError } from '../ts/errors.js';
import { exportOnnx } from '../ts/export/onnx.js';
import { buildDecoder, buildDiscriminator, buildEncoder } from '../ts/model/build.js';
import { adamTensorName, ownedBy, readCheckpointMeta, resolveConfigs } from '../ts/model/checkpoint.js';
import { Network } from '../ts/network.js';
import { parseSafetensors, serializeSafetensors, toFloat32, toNumbers, type TensorToWrite } from '../ts/safetensors.js';
import { VolumeDataset } from '../ts/data/dataset.js';
import { generateSkullDataset } from '../ts/data/synth/index.js';
import { Trainer } from '../ts/train/trainer.js';
import { Decoder, Encoder, Vae } from '../ts/vae.js';
import { loadModel, loadRuntime, type WasmRuntime } from '../ts/web/index.js';
import { relErr } from './helpers.js';
import { parseOnnx, runOnnx } from './onnx_ref.js';

const SHAPE: [number, number, number] = [16, 16, 16];
const S = 16 ** 3;
const LATENT = 6;
const MONAI = monaiVarAutoEncoder({ inputShape: SHAPE, channels: [4, 8], latentSize: LATENT });
const SKULL = skullVaeDecoder({ inputShape: SHAPE, channels: [4, 8], latentSize: LATENT });
const RESNET = resnetV2Vae({ inputShape: SHAPE, latentSize: LATENT, resnet: { filters: 4, stages: 2, bottleneckChannels: 2, encoderIdentityBlocks: 1, decoderIdentityBlocks: 1 } });
const PATCHGAN = patchGan3d({ inputShape: SHAPE, width: 1 / 32 });

const Z = Float32Array.from({ length: 2 * LATENT }, (_, i) => Math.sin(i * 1.7) * 1.3);
const X = Float32Array.from({ length: 2 * S }, (_, i) => ((i * 2654435761) >>> 0) % 7 < 3 ? 1 : 0);

/** A checkpoint file and the native outputs it must reproduce: decode(Z) and encode(X) (null: none). */
interface Made {
  file: string;
  decode: Float32Array | null;
  mu?: Float32Array;
  logvar?: Float32Array;
  config: VaeConfig | null;
  decoderConfig: VaeConfig | null;
}
interface Preset {
  name: string;
  make(dir: string): Promise<Made>;
  /** Loaders that must refuse it, with the error code and message. */
  refused: Partial<Record<Loader, { code: string; message: RegExp }>>;
}
type Loader = 'native' | 'wasm' | 'onnx' | 'trainer';

/** A model trained one step (Adam state, BatchNorm statistics and counters not at their initial values), saved. */
async function trained(vae: Vae, file: string): Promise<Made> {
  try {
    await vae.trainStep({ input: X, shape: [2, 1, ...SHAPE] }, { optimizer: { lr: 1e-2 } });
    await vae.save(file);
    const { mu, logvar } = await vae.encode(X, { batch: 2 });
    return { file, decode: await vae.decode(Z), mu, logvar, config: vae.config, decoderConfig: vae.decoder.config };
  } finally {
    vae.dispose();
  }
}

const PRESETS: Preset[] = [
  { name: 'MONAI VAE', make: async (dir) => trained(await Vae.create(MONAI, { seed: 1 }), path.join(dir, 'monai.safetensors')), refused: {} },
  {
    name: 'aggregated VAE (MONAI encoder + skullVAE decoder)',
    make: async (dir) => trained(Vae.fromParts(new Encoder(MONAI, { seed: 2 }), new Decoder(SKULL, { seed: 2 }), 2), path.join(dir, 'aggregated.safetensors')),
    refused: {},
  },
  { name: 'ResNet-v2 VAE', make: async (dir) => trained(await Vae.create(RESNET, { seed: 3 }), path.join(dir, 'resnet.safetensors')), refused: {} },
  {
    name: 'decoder alone',
    make: async (dir) => {
      const dec = new Decoder(MONAI, { seed: 4 });
      try {
        const file = path.join(dir, 'decoder.safetensors');
        await writeFile(file, serializeSafetensors(dec.network.stateDict(), { voxvae: JSON.stringify({ format: 'voxvae-checkpoint', version: 1, kind: 'decoder', config: MONAI, decoderConfig: MONAI }) }));
        return { file, decode: await dec.decode(Z), config: null, decoderConfig: MONAI };
      } finally {
        dec.dispose();
      }
    },
    refused: {
      native: { code: 'ECHECKPOINT', message: /holds a decoder alone/ },
      trainer: { code: 'ECHECKPOINT', message: /holds a decoder alone/ },
    },
  },
  {
    name: 'PatchGAN discriminator (state_dict)',
    make: async (dir) => {
      const net = new Network(buildDiscriminator(PATCHGAN), 5);
      try {
        const file = path.join(dir, 'patchgan.safetensors');
        await writeFile(file, serializeSafetensors(net.stateDict()));
        return { file, decode: null, config: null, decoderConfig: null };
      } finally {
        net.dispose();
      }
    },
    // Given a VAE config (what a caller might try), every loader says it holds no such networks.
    refused: {
      native: { code: 'ECHECKPOINT', message: /holds no decoder tensors .*it has layers\./ },
      wasm: { code: 'ECHECKPOINT', message: /holds no decoder tensors .*it has layers\./ },
      onnx: { code: 'ECHECKPOINT', message: /holds no decoder tensors/ },
      trainer: { code: 'ECHECKPOINT', message: /holds no decoder tensors/ },
    },
  },
];

let tmp = '';
let rt: WasmRuntime;
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'voxvae-checkpoint-'));
  rt = await loadRuntime({ threads: 1 });
});
test.after.always(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// ---- ONNX: the exported model, run by a plain reference evaluator (test/onnx_ref.ts) -----------------------------
function checkOnnx(t: ExecutionContext, onnx: Uint8Array, file: string, part: 'encoder' | 'decoder', cfg: VaeConfig, expected: Float32Array[]): void {
  const st = parseSafetensors(new Uint8Array(readFileSync(file)));
  const model = parseOnnx(onnx);
  const g = part === 'decoder' ? buildDecoder(cfg) : buildEncoder(cfg);
  // Every weight of the network is an initializer holding exactly the checkpoint's float32 values.
  const owns = ownedBy(g);
  let n = 0;
  for (const [k, e] of st.tensors) {
    if (k.startsWith('__') || k.endsWith('.num_batches_tracked') || !owns(k)) continue;
    const init = model.initializers.get(k);
    t.truthy(init, `${part} initializer ${k}`);
    t.deepEqual(new Float32Array(init!.raw.buffer), toFloat32(e), k);
    n++;
  }
  t.true(n > 0);
  // And it computes what the native engine computes.
  const [D, H, W] = cfg.inputShape;
  const got = part === 'decoder' ? runOnnx(model, Z, [2, cfg.latentSize]) : runOnnx(model, X, [2, cfg.inChannels, D, H, W]);
  t.is(got.length, expected.length);
  got.forEach((y, i) => {
    const err = relErr(y, expected[i]!);
    t.log(`ONNX ${part} output ${i}: relative error ${err.toExponential(2)} vs native`);
    t.true(err < 1e-5, `${part} output ${i}: ONNX (reference evaluator) vs native relative error ${err}`);
  });
}

async function refusal(t: ExecutionContext, p: Preset, loader: Loader, run: () => Promise<unknown>): Promise<boolean> {
  const want = p.refused[loader];
  if (!want) return false;
  const err = await t.throwsAsync(run, { instanceOf: VoxvaeError }, `${p.name} × ${loader}`);
  t.is((err as VoxvaeError).code as string, want.code, `${p.name} × ${loader}: ${err?.message}`);
  t.regex(err!.message, want.message, `${p.name} × ${loader}`);
  return true;
}

for (const p of PRESETS) {
  test(`${p.name}: native Vae.load, voxvae/web loadModel, exportOnnx, Trainer resume/restore`, async (t) => {
    const made = await p.make(tmp);
    const asked = made.decoderConfig ? {} : { config: MONAI };

    // native
    if (!(await refusal(t, p, 'native', () => Vae.load(made.file, asked)))) {
      const vae = await Vae.load(made.file);
      try {
        t.deepEqual(await vae.decode(Z), made.decode, `${p.name}: native decode`);
      } finally {
        vae.dispose();
      }
    }

    // WebAssembly
    if (!(await refusal(t, p, 'wasm', () => loadModel(made.file, { runtime: rt, ...asked })))) {
      const m = await loadModel(made.file, { runtime: rt });
      try {
        const y = await m.decode(Z);
        const err = relErr(y as Float32Array, made.decode!, 0);
        t.true(err < 1e-5, `${p.name}: WASM vs native relative error ${err}`);
        t.is(m.kind, made.config === null ? 'decoder' : made.decoderConfig!.decoderBlock === 'skullvae' ? 'aggregated' : 'vae');
      } finally {
        m.dispose();
      }
    }

    // ONNX
    const bytes = new Uint8Array(readFileSync(made.file));
    if (!(await refusal(t, p, 'onnx', async () => exportOnnx(bytes, { name: made.file, ...asked })))) {
      checkOnnx(t, exportOnnx(bytes, { name: made.file, probabilities: true }), made.file, 'decoder', made.decoderConfig!, [made.decode!]);
      if (made.config) checkOnnx(t, exportOnnx(bytes, { name: made.file, part: 'encoder' }), made.file, 'encoder', made.config, [made.mu!, made.logvar!]);
      else t.throws(() => exportOnnx(bytes, { name: made.file, part: 'encoder' }), { instanceOf: VoxvaeError, message: /decoder alone/ });
    }

    // Trainer: resume from a checkpoint folder, and the in-memory snapshot/restore of a rollback.
    const data = VolumeDataset.fromSynthetic(await generateSkullDataset({ n: 2, shape: SHAPE, seed: 3, workers: 0, implants: false }));
    const opts = { epochs: 1, batchSize: 2, optimizer: { lr: 1e-3 } };
    if (!(await refusal(t, p, 'trainer', async () => Trainer.resume(await trainerFolder(made.file, asked), data, opts)))) {
      const tr = await Trainer.resume(await trainerFolder(made.file, {}), data, opts);
      const reloaded = await Vae.load(made.file);
      try {
        t.deepEqual(await tr.vae.decode(Z), made.decode, `${p.name}: resumed decode`);
        t.is(tr.vae.step, reloaded.step);
        // The rollback path: the Vae's checkpoint bytes, a training step, then those bytes restored.
        const before = tr.vae.checkpointState();
        const { serializeCheckpoint } = await import('../ts/model/checkpoint.js');
        const snap = serializeCheckpoint(before);
        await tr.vae.trainStep({ input: X, shape: [2, 1, ...SHAPE] }, { optimizer: { lr: 1e-1 } });
        t.notDeepEqual(await tr.vae.decode(Z), made.decode);
        const st = parseSafetensors(snap, '<snapshot>');
        tr.vae.restoreCheckpoint(st, '<snapshot>', resolveConfigs(st, '<snapshot>'));
        t.deepEqual(await tr.vae.decode(Z), made.decode, `${p.name}: restored decode`);
        t.is(tr.vae.step, reloaded.step);
        t.deepEqual(tr.vae.encoder.network.adam!.getState(), reloaded.encoder.network.adam!.getState());
      } finally {
        tr.vae.dispose();
        reloaded.dispose();
      }
    }
  });
}

/** A Trainer checkpoint folder around a model file (model.safetensors + a fresh trainer.json). */
async function trainerFolder(file: string, asked: { config?: VaeConfig }): Promise<string> {
  const dir = await mkdtemp(path.join(tmp, 'trainer-'));
  const vae = await Vae.load(file, asked); // refusals surface here, as in Trainer.resume
  try {
    const data = VolumeDataset.fromSynthetic(await generateSkullDataset({ n: 2, shape: SHAPE, seed: 3, workers: 0, implants: false }));
    await new Trainer(vae, data, { epochs: 1, batchSize: 2 }).save(dir);
  } finally {
    vae.dispose();
  }
  return dir;
}

// ---- metadata validation -----------------------------------------------------------------------------------------
async function monaiBytes(): Promise<{ tensors: Map<string, TensorToWrite>; meta: Record<string, unknown> }> {
  const vae = await Vae.create(MONAI, { seed: 7 });
  try {
    await vae.trainStep({ input: X, shape: [2, 1, ...SHAPE] }, { optimizer: { lr: 1e-2 } });
    const st = parseSafetensors(await (async () => {
      const f = path.join(tmp, `meta-${Math.random().toString(36).slice(2)}.safetensors`);
      await vae.save(f);
      return new Uint8Array(readFileSync(f));
    })());
    const tensors = new Map<string, TensorToWrite>();
    for (const [k, e] of st.tensors) tensors.set(k, e.dtype === 'I64' ? { dtype: 'I64', shape: e.shape, data: toNumbers(e) } : { dtype: 'F32', shape: e.shape, data: toFloat32(e) });
    return { tensors, meta: JSON.parse(st.metadata.voxvae!) as Record<string, unknown> };
  } finally {
    vae.dispose();
  }
}

test('metadata: absent or null optional fields are tolerated, bad ones are ECHECKPOINT naming the field', async (t) => {
  const { tensors, meta } = await monaiBytes();
  const write = async (m: Record<string, unknown>, drop: string[] = []): Promise<string> => {
    const f = path.join(tmp, `m-${Math.random().toString(36).slice(2)}.safetensors`);
    const tt = new Map([...tensors].filter(([k]) => !drop.includes(k)));
    await writeFile(f, serializeSafetensors(tt, { voxvae: JSON.stringify(m) }));
    return f;
  };
  // Tolerated: no adamSteps, adamSteps null (no optimizer state: the Adam tensors are then extra training state).
  for (const m of [{ ...meta, adamSteps: undefined }, { ...meta, adamSteps: null }]) {
    const vae = await Vae.load(await write(m));
    t.is(vae.encoder.network.adam, null);
    t.is(vae.step, 1);
    vae.dispose();
  }
  const old = await Vae.load(await write({ ...meta, seed: undefined, step: undefined, encoderFrozen: undefined, optimizer: undefined, decoderLatent: undefined }));
  t.deepEqual([old.seed, old.step, old.encoder.frozen, old.decoderLatent], [0, 0, false, 'sample']);
  t.truthy(old.encoder.network.adam);
  old.dispose();
  const bad: [Record<string, unknown>, RegExp, string[]?][] = [
    [{ ...meta, adamSteps: 'x' }, /adamSteps must be/],
    [{ ...meta, adamSteps: { encoder: -1, decoder: null } }, /adamSteps\.encoder must be a non-negative integer or null/],
    [{ ...meta, seed: -1 }, /seed must be a non-negative integer/],
    [{ ...meta, step: 1.5 }, /step must be a non-negative integer/],
    [{ ...meta, encoderFrozen: 'no' }, /encoderFrozen must be a boolean/],
    [{ ...meta, decoderLatent: 'mu' }, /decoderLatent must be 'sample', 'mean' or 'mean\+std'/],
    [{ ...meta, optimizer: { kind: 'sgd' } }, /optimizer must be null or/],
    [{ ...meta, optimizer: { kind: 'adam', lr: 'big' } }, /optimizer needs finite lr/],
    [{ ...meta, kind: 'discriminator' }, /is a voxvae checkpoint of kind 'discriminator'/],
    [{ ...meta, config: undefined, decoderConfig: undefined }, /has no config/],
    [meta, /optimizer state for the encoder is missing/, [adamTensorName('encoder', 'm')]],
  ];
  for (const [m, re, drop] of bad) {
    const f = await write(m, drop);
    const err = await t.throwsAsync(Vae.load(f), { instanceOf: VoxvaeError }, re.source);
    t.is((err as VoxvaeError).code, 'ECHECKPOINT', err?.message);
    t.regex(err!.message, re);
    if (!drop) t.throws(() => readCheckpointMeta(parseSafetensors(new Uint8Array(readFileSync(f))), f), { instanceOf: VoxvaeError, code: 'ECHECKPOINT' } as never);
  }
});

test('one optimizer-state naming: Vae.save writes __voxvae__.adam.<part>.{m,v}, the Trainer snapshot is the same bytes', async (t) => {
  const vae = await Vae.create(MONAI, { seed: 8 });
  try {
    await vae.trainStep({ input: X, shape: [2, 1, ...SHAPE] }, { optimizer: { lr: 1e-2 } });
    const f = path.join(tmp, 'naming.safetensors');
    await vae.save(f);
    const st = parseSafetensors(new Uint8Array(readFileSync(f)));
    t.truthy(st.tensors.get('__voxvae__.adam.encoder.m'));
    t.truthy(st.tensors.get('__voxvae__.adam.decoder.v'));
    t.false([...st.tensors.keys()].some((k) => k.startsWith('__adam.')));
    const { serializeCheckpoint } = await import('../ts/model/checkpoint.js');
    t.deepEqual(serializeCheckpoint(vae.checkpointState()), new Uint8Array(readFileSync(f)));
  } finally {
    vae.dispose();
  }
});

test('the checkpoint module and the ONNX exporter are Node-free (they bundle for browsers)', async (t) => {
  const esbuild = await import('esbuild');
  const { ROOT } = await import('./helpers.js');
  for (const entry of ['ts/model/checkpoint.ts', 'ts/export/onnx.ts']) {
    const out = await esbuild.build({ entryPoints: [path.join(ROOT, entry)], bundle: true, format: 'esm', platform: 'browser', write: false, metafile: true, logLevel: 'silent' });
    const inputs = Object.keys(out.metafile.inputs);
    t.deepEqual(inputs.filter((p) => !p.startsWith('ts/') || /ts\/(vae|native|backend|network|safetensors)\.ts$/.test(p)), [], entry);
  }
});

test('voxvae/web without an encoder config: a whole VAE needs { config } or { decoderOnly: true }', async (t) => {
  const made = await PRESETS[0]!.make(tmp);
  const st = parseSafetensors(new Uint8Array(readFileSync(made.file)));
  const plain = new Map<string, TensorToWrite>();
  for (const [k, e] of st.tensors) if (!k.startsWith('__')) plain.set(k, e.dtype === 'I64' ? { dtype: 'I64', shape: e.shape, data: toNumbers(e) } : { dtype: 'F32', shape: e.shape, data: toFloat32(e) });
  const bytes = serializeSafetensors(plain);
  await t.throwsAsync(loadModel(bytes, { runtime: rt, decoderConfig: MONAI, name: 'plain.safetensors' }), { code: 'ECHECKPOINT', message: /plain\.safetensors holds more than the decoder .*pass \{ config \} too, or \{ decoderOnly: true \}/ });
  const m = await loadModel(bytes, { runtime: rt, decoderConfig: MONAI, decoderOnly: true });
  try {
    t.is(m.kind, 'decoder');
    t.true(relErr((await m.decode(Z)) as Float32Array, made.decode!, 0) < 1e-5);
  } finally {
    m.dispose();
  }
});
