// The whole MONAI-preset VAE and skullVAE's stage-2 decoder against PyTorch fixtures
// (scripts/fixtures/make_torch_fixtures.py, described in test/fixtures/torch/README.md).
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monaiVarAutoEncoder, skullVaeDecoder } from '../ts/config.js';
import { native } from '../ts/native.js';
import { Decoder, Vae } from '../ts/vae.js';
import type { Network } from '../ts/network.js';
import { serializeSafetensors, writeFileAtomic, type TensorEntry, type TensorToWrite, toFloat32 } from '../ts/safetensors.js';
import { assertClose, f32, loadFixture } from './helpers.js';

const CONFIG = monaiVarAutoEncoder({ inputShape: [16, 16, 8], channels: [4, 8, 8], strides: [2, 2, 2], latentSize: 6 });
const SEED = 1234; // the fixtures' Philox seed for eps.step{k}
const BETA = 0.5;

/** The fixture's `prefix.*` tensors as a plain state_dict. */
async function stateDict(file: string, prefix: string): Promise<Map<string, TensorEntry>> {
  const st = await loadFixture(file);
  const out = new Map<string, TensorEntry>();
  for (const [k, v] of st.tensors) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), v);
  return out;
}

/** Writes the init.* state_dict to a file, as `safetensors.torch.save_file(model.state_dict())` would. */
async function plainCheckpoint(dir: string, file: string, prefix: string): Promise<string> {
  const sd = await stateDict(file, prefix);
  const tensors = new Map<string, TensorToWrite>();
  for (const [k, v] of sd) tensors.set(k, v.dtype === 'I64' ? { dtype: 'I64', shape: v.shape, data: [Number(toFloat32(v)[0])] } : { dtype: 'F32', shape: v.shape, data: toFloat32(v) });
  const p = path.join(dir, 'plain.safetensors');
  await writeFileAtomic(p, serializeSafetensors(tensors));
  return p;
}

async function withTmp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function loadInitVae(dir: string): Promise<Vae> {
  const p = await plainCheckpoint(dir, 'monai_vae_tiny.safetensors', 'init.');
  const vae = await Vae.load(p, { config: CONFIG });
  return Vae.fromParts(vae.encoder, vae.decoder, SEED);
}

/**
 * A convolution bias followed by train-mode batch norm has a zero gradient in exact arithmetic (the
 * norm subtracts the batch mean): both engines return rounding noise there, ~1e-9. Those tensors are
 * compared with an absolute tolerance on the scale of all gradients, and their Adam trajectories
 * (driven by sign(noise)) are not compared at all.
 */
const biasBeforeBatchNorm = (k: string, decoderIsSkull = false): boolean =>
  /^encode\.encode_\d+\.conv\.bias$/.test(k) || (/^decode\.decode_(\d+)\.conv\.conv\.bias$/.test(k) && (decoderIsSkull || !k.startsWith(`decode.decode_${CONFIG.channels.length - 1}.`)));

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

function compareGrads(t: import('ava').ExecutionContext, grads: Map<string, Float32Array>, st: import('../ts/safetensors.js').SafeTensors, skull = false): void {
  let scale = 0;
  for (const k of grads.keys()) scale = Math.max(scale, maxAbs(f32(st, `grad.${k}`)));
  for (const [k, g] of grads) {
    const ref = f32(st, `grad.${k}`);
    if (biasBeforeBatchNorm(k, skull)) {
      const diff = maxAbs(Array.from(g, (v, i) => v - ref[i]!));
      t.true(diff <= 1e-5 * scale, `grad.${k} (zero in exact arithmetic): max abs diff ${diff} vs gradient scale ${scale}`);
    } else {
      assertClose(t, g, ref, 1e-4, `grad.${k}`);
    }
  }
}

function gradsByName(net: Network): Map<string, Float32Array> {
  const g = net.net.getGrads();
  const out = new Map<string, Float32Array>();
  for (const t of net.tensors) if (t.entry && !t.entry.buffer) out.set(t.name, g.slice(t.entry.offset, t.entry.offset + t.entry.count));
  return out;
}

test('Philox normal stream matches the NumPy implementation (eps.step0..2)', async (t) => {
  const st = await loadFixture('monai_vae_tiny.safetensors');
  for (let k = 0; k < 3; k++) t.deepEqual(Array.from(native().philoxNormal(SEED, k, 0, 12)), Array.from(f32(st, `eps.step${k}`)));
});

test('MONAI VAE: train-mode forward, loss and every parameter gradient match PyTorch', async (t) => {
  const st = await loadFixture('monai_vae_tiny.safetensors');
  await withTmp(async (dir) => {
    const vae = await loadInitVae(dir);
    const x = f32(st, 'x');
    const fwd = await vae.forward(x, { mode: 'train', latent: 'sample', output: 'logits', step: 0, batch: 2 });
    assertClose(t, fwd.mu, f32(st, 'out.mu'), 1e-4, 'mu');
    assertClose(t, fwd.logvar, f32(st, 'out.logvar'), 1e-4, 'logvar');
    assertClose(t, fwd.z, f32(st, 'out.z'), 1e-4, 'z');
    assertClose(t, fwd.recon, f32(st, 'out.recon'), 1e-4, 'recon logits');

    // A training step with lr = 0 leaves the weights and exposes the gradients of the step-0 loss.
    const vae2 = await loadInitVae(dir);
    const r = await vae2.trainStep({ input: x, target: f32(st, 'labels'), shape: [2, 1, 16, 16, 8] }, { beta: BETA, optimizer: { lr: 0 } });
    assertClose(t, [r.loss], f32(st, 'loss.total'), 1e-5, 'loss.total');
    assertClose(t, [r.recon], f32(st, 'loss.dice'), 1e-5, 'loss.dice');
    assertClose(t, [r.kl], f32(st, 'loss.kl'), 1e-5, 'loss.kl');
    const grads = new Map([...gradsByName(vae2.encoder.network), ...gradsByName(vae2.decoder.network)]);
    const keys = JSON.parse(st.metadata.parameter_keys!) as string[];
    t.is(grads.size, keys.length);
    for (const k of keys) t.truthy(grads.get(k), `gradient for ${k}`);
    compareGrads(t, grads, st);
    vae.dispose();
    vae2.dispose();
  });
});

for (const [file, kind] of [['monai_vae_tiny.safetensors', 'adam'], ['monai_vae_tiny_adamw.safetensors', 'adamw']] as const) {
  test(`MONAI VAE: 3 ${kind} steps match PyTorch (losses, weights, BN running statistics)`, async (t) => {
    const a = await loadFixture('monai_vae_tiny.safetensors');
    const st = await loadFixture(file);
    await withTmp(async (dir) => {
      const vae = await loadInitVae(dir);
      const batch = { input: f32(a, 'x'), target: f32(a, 'labels'), shape: [2, 1, 16, 16, 8] };
      for (let k = 0; k < 3; k++) {
        const r = await vae.trainStep(batch, { beta: BETA, optimizer: kind === 'adam' ? { kind, lr: 1e-3 } : { kind, lr: 1e-3, weightDecay: 0.01 } });
        assertClose(t, [r.loss], f32(st, `loss.step${k}`), 1e-5, `loss.step${k}`);
      }
      const ours = new Map([...vae.encoder.network.stateDict(), ...vae.decoder.network.stateDict()]);
      const keys = JSON.parse(a.metadata.state_dict_keys!) as string[];
      for (const k of keys) {
        const mine = ours.get(k);
        t.truthy(mine, k);
        // The running mean of such a norm includes that noise-driven bias, so it is skipped too; its
        // running_var, its output and everything downstream do not depend on the bias.
        if (!mine || biasBeforeBatchNorm(k) || (k.endsWith('.running_mean') && biasBeforeBatchNorm(k.replace(/adn\.N\.running_mean$/, 'conv.bias').replace(/conv\.conv\.bias$/, 'conv.conv.bias')))) continue;
        const ref = f32(st, `step3.${k}`);
        // Adam moves every weight by about lr on its first steps whatever the gradient's size, so
        // compare weights with an absolute tolerance far below lr (1e-3) as well as relatively.
        const ok = Array.from(mine.data).every((v, i) => Math.abs(v - ref[i]!) <= 2e-6 + 1e-4 * Math.abs(ref[i]!));
        t.true(ok, `step3.${k}: ${Array.from(mine.data).slice(0, 4)} vs ${Array.from(ref).slice(0, 4)}`);
      }
      vae.dispose();
    });
  });
}

test('MONAI VAE: eval-mode encode and decode match PyTorch (init and trained BN statistics)', async (t) => {
  const st = await loadFixture('monai_vae_tiny.safetensors');
  await withTmp(async (dir) => {
    for (const [prefix, out] of [['init.', 'eval'], ['step3.', 'eval3']] as const) {
      const p = await plainCheckpoint(dir, 'monai_vae_tiny.safetensors', prefix);
      const vae = await Vae.load(p, { config: CONFIG });
      const { mu, logvar } = await vae.encode(f32(st, 'x'), { batch: 2 });
      assertClose(t, mu, f32(st, `${out}.mu`), 1e-4, `${out}.mu`);
      assertClose(t, logvar, f32(st, `${out}.logvar`), 1e-4, `${out}.logvar`);
      assertClose(t, await vae.decode(mu, { output: 'logits' }), f32(st, `${out}.recon_mean`), 1e-4, `${out}.recon_mean`);
      const ms = await vae.forward(f32(st, 'x'), { latent: 'mean+std', output: 'logits', batch: 2 });
      assertClose(t, ms.recon, f32(st, `${out}.recon_meanstd`), 1e-4, `${out}.recon_meanstd`);
      vae.dispose();
    }
  });
});

test("skullVAE stage-2 decoder: forward, Dice loss and gradients match PyTorch", async (t) => {
  const st = await loadFixture('skull_decoder_tiny.safetensors');
  const cfg = skullVaeDecoder({ inputShape: [16, 16, 8], channels: [4, 8, 8], strides: [2, 2, 2], latentSize: 6 });
  const dec = new Decoder(cfg, { seed: 0 });
  dec.network.loadStateDict(await stateDict('skull_decoder_tiny.safetensors', 'init.'), 'skull_decoder_tiny', '');
  const nb = native();
  const z = new nb.Tensor(f32(st, 'z'), [2, 6, 1, 1, 1]);
  const labels = new nb.Tensor(f32(st, 'labels'), [2, 16 * 16 * 8]);
  dec.network.net.zeroGrad();
  const [y] = await dec.network.net.forward(z, 2, true);
  assertClose(t, y!.toArray(), f32(st, 'out.recon'), 1e-4, 'out.recon');
  const { loss, grad } = await nb.diceLoss(y!, labels, { smoothNr: 1e-5, smoothDr: 1e-5, reduction: 'sum', weight: 80 });
  assertClose(t, [loss], f32(st, 'loss.dice'), 1e-5, 'loss.dice');
  await dec.network.net.backward([grad], false);
  const grads = gradsByName(dec.network);
  compareGrads(t, grads, st, true);
  const sd = dec.network.stateDict();
  for (const k of sd.keys()) if (/running_|num_batches/.test(k)) assertClose(t, Array.from(sd.get(k)!.data), f32(st, `after.${k}`), 1e-5, `after.${k}`);
  dec.dispose();
});
