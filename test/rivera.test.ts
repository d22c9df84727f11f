// Rivera's recipe: the latent terms through the addon, the 3D PatchGAN against a PyTorch fixture
// (scripts/fixtures/make_rivera_fixtures.py), the GAN step's update isolation, bit-for-bit repeatability,
// and the bad-input paths (batch of 1, a volume the discriminator does not fit).
import test from 'ava';
import { monaiVarAutoEncoder, resnetV2Vae } from '../ts/config.js';
import { patchGan3d, type DiscriminatorConfig } from '../ts/discriminator.js';
import { buildDiscriminator } from '../ts/model/build.js';
import { VoxvaeError } from '../ts/errors.js';
import { native } from '../ts/native.js';
import { Network } from '../ts/network.js';
import { Discriminator, discriminatorFor, discriminatorView, riveraTrainStep, type RiveraStepOptions } from '../ts/train/rivera.js';
import { Vae, setThreads } from '../ts/vae.js';
import { buildResNetV2Decoder, buildResNetV2Encoder } from '../ts/model/build.js';
import { assertClose, f32, loadFixture } from './helpers.js';

setThreads(1);
const CONFIG = monaiVarAutoEncoder({ inputShape: [16, 16, 16], channels: [4, 8], latentSize: 4 });
const S = 16 * 16 * 16;
const D_OPTS = { width: 1 / 32 }; // filters [4, 4, 4, 2, 2, 1]

/** n binary balls of varying radius. */
function blobs(n: number): Float32Array {
  const x = new Float32Array(n * S);
  for (let b = 0; b < n; b++)
    for (let i = 0; i < S; i++) {
      const d = Math.floor(i / 256) - 8, h = (Math.floor(i / 16) % 16) - 8, w = (i % 16) - 8;
      x[b * S + i] = d * d + h * h + w * w < (3 + 1.5 * b) ** 2 ? 1 : 0;
    }
  return x;
}

async function make(seed = 3): Promise<{ vae: Vae; disc: Discriminator }> {
  const vae = await Vae.create(CONFIG, { seed });
  return { vae, disc: discriminatorFor(vae, D_OPTS) };
}
/** x as a training batch: its shape says how many volumes it holds (a bare Float32Array is one). */
const batchOf = (x: Float32Array) => ({ input: x, shape: [x.length / S, 1, 16, 16, 16] });
const params = (n: Network): Float32Array => n.net.getParams();
const sameBits = (a: Float32Array, b: Float32Array): boolean => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

test('populationKl and variancePenalty match the closed form; gradients couple the samples', (t) => {
  const nb = native();
  const n = 3, l = 2;
  const mu = Float32Array.from([0.5, -1, 1.5, 0.25, -0.5, 2]), lv = Float32Array.from([-1, 0.5, 0, -0.25, 0.3, -2]);
  const mt = new nb.Tensor(mu, [n, l]), lt = new nb.Tensor(lv, [n, l]);
  for (const mode of ['means', 'mixture'] as const) {
    const r = nb.populationKl(mt, lt, { variance: mode, weight: 1 });
    let want = 0;
    const g = new Float64Array(n * l);
    for (let k = 0; k < l; k++) {
      let m = 0, v = 0, s = 0;
      for (let i = 0; i < n; i++) m += mu[i * l + k]! / n;
      for (let i = 0; i < n; i++) v += (mu[i * l + k]! - m) ** 2 / n;
      for (let i = 0; i < n; i++) s += Math.exp(lv[i * l + k]!) / n;
      if (mode === 'mixture') v += s;
      want += 0.5 * (m * m + v - Math.log(v) - 1);
      for (let i = 0; i < n; i++) g[i * l + k] = (m + (1 - 1 / v) * (mu[i * l + k]! - m)) / n;
    }
    t.true(Math.abs(r.loss - want) < 1e-6, `${mode}: ${r.loss} vs ${want}`);
    assertClose(t, r.dmu.toArray(), g, 1e-5, `${mode} dmu`);
    t.is(r.dlogvar.toArray().some((v) => v !== 0), mode === 'mixture');
  }
  const ind = nb.variancePenalty(lt, { reduction: 'mean', weight: 0.1 });
  const wantInd = (0.1 / n) * Array.from(lv).reduce((a, v) => a + Math.exp(v) - v - 1, 0);
  t.true(Math.abs(ind.loss - wantInd) < 1e-6);
  // A batch of one: a clear error for the code's variance, a finite value for the mixture's.
  const one = new nb.Tensor(mu.subarray(0, 2), [1, 2]), oneLv = new nb.Tensor(lv.subarray(0, 2), [1, 2]);
  const e = t.throws(() => nb.populationKl(one, null, { variance: 'means', weight: 1 }));
  t.regex(e!.message, /at least 2/);
  t.true(Number.isFinite(nb.populationKl(one, oneLv, { variance: 'mixture', weight: 1 }).loss));
});

test('PatchGAN forward/backward match PyTorch (train-mode BN, dropout 0)', async (t) => {
  const st = await loadFixture('patchgan_tiny.safetensors');
  const cfg = JSON.parse(st.metadata['config']!) as DiscriminatorConfig;
  const net = new Network(buildDiscriminator(patchGan3d(cfg)), 0);
  try {
    const init = new Map([...st.tensors].filter(([k]) => k.startsWith('init.')).map(([k, v]) => [k.slice(5), v]));
    net.loadStateDict(init, 'patchgan_tiny.safetensors');
    const nb = native();
    const x = new nb.Tensor(f32(st, 'x'), [2, 1, 16, 16, 8]);
    const [y] = await net.net.forward(x, 2, true);
    t.deepEqual(y!.shape, [2, 1, 2, 2, 1]);
    assertClose(t, y!.toArray(), f32(st, 'logits'), 1e-4, 'logits');
    const dy = new nb.Tensor(f32(st, 'dlogits'), [2, 1, 2, 2, 1]);
    const dx = await net.net.backward([dy], true);
    assertClose(t, dx!.toArray(), f32(st, 'grad.x'), 1e-3, 'grad.x');
    const grads = net.net.getGrads();
    let scale = 0;
    for (const tn of net.tensors) if (tn.entry && !tn.entry.buffer) for (const v of f32(st, `grad.${tn.name}`)) scale = Math.max(scale, Math.abs(v));
    for (const tn of net.tensors) {
      if (!tn.entry || tn.entry.buffer) continue;
      const got = grads.subarray(tn.entry.offset, tn.entry.offset + tn.entry.count), want = f32(st, `grad.${tn.name}`);
      if (/conv\.bias$/.test(tn.name)) {
        // A bias before train-mode BN has a zero gradient in exact arithmetic: both sides are rounding noise.
        t.true(got.every((v, i) => Math.abs(v - want[i]!) < 1e-5 * scale), `${tn.name} ~ 0`);
      } else assertClose(t, got, want, 2e-3, `grad.${tn.name}`);
    }
    const sd = net.stateDict();
    for (const [k] of st.tensors) if (k.startsWith('after.')) assertClose(t, sd.get(k.slice(6))!.data as Float32Array, f32(st, k), 1e-4, k);
    const [ye] = await net.net.forward(x, 2, false);
    assertClose(t, ye!.toArray(), f32(st, 'eval_logits'), 1e-4, 'eval logits');
  } finally {
    net.dispose();
  }
});

test('two backward passes over one D forward give the same parameter gradients as one', async (t) => {
  // riveraTrainStep relies on it: backward(BCE(1)) for ∂/∂x̂, reset, backward(BCE(0)) for D.
  const nb = native();
  const disc = new Discriminator(patchGan3d({ inputShape: [16, 16, 16], width: 1 / 32 }), { seed: 5 });
  try {
    const x = new nb.Tensor(blobs(2), [2, 1, 16, 16, 16]);
    const g0 = new nb.Tensor(Float32Array.from({ length: 16 }, (_, i) => Math.sin(i)), [2, 1, 2, 2, 2]);
    const g1 = new nb.Tensor(Float32Array.from({ length: 16 }, (_, i) => Math.cos(3 * i)), [2, 1, 2, 2, 2]);
    const net = disc.network.net;
    const counters = net.getCounters(), buffers = net.getBuffers();
    net.zeroGrad();
    await net.forward(x, 2, true, 9, 4);
    await net.backward([g0], false);
    const once = net.getGrads();
    net.setBuffers(buffers);
    net.setCounters(counters);
    net.zeroGrad();
    await net.forward(x, 2, true, 9, 4);
    await net.backward([g1], true);
    net.zeroGrad();
    await net.backward([g0], false);
    t.true(sameBits(net.getGrads(), once));
  } finally {
    disc.dispose();
  }
});

test('discriminatorView: the output activation D sees (softmax foreground, sigmoid) and its native backward match finite differences', async (t) => {
  const nb = native();
  const g = Float32Array.from([0.2, -1.5, 0.8]);
  for (const [act, C] of [['softmax', 2], ['sigmoid', 1]] as const) {
    const n = 1, Sx = 3;
    const cfg = { ...CONFIG, outChannels: C, outputActivation: act, inputShape: [1, 1, 3] as [number, number, number] };
    const tensorOf = (l: Float32Array) => new nb.Tensor(l, [n, C, 1, 1, 3], false);
    const logits = Float32Array.from([0.3, -1, 2, -0.5, 0.7, 1].slice(0, C * Sx));
    const { xhat, back } = await discriminatorView(nb, tensorOf(logits), n, cfg);
    t.is(xhat.length, n * Sx);
    const analytic = await back(g);
    t.is(analytic.length, logits.length);
    const f = async (l: Float32Array): Promise<number> => (await discriminatorView(nb, tensorOf(l), n, cfg)).xhat.reduce((a, v, i) => a + v * g[i]!, 0);
    for (let i = 0; i < logits.length; i++) {
      const h = 1e-2, p = Float32Array.from(logits), m = Float32Array.from(logits);
      p[i]! += h;
      m[i]! -= h;
      t.true(Math.abs(((await f(p)) - (await f(m))) / (2 * h) - analytic[i]!) < 1e-3, `${act} logit ${i}`);
    }
  }
});

test('a GAN step leaves D unchanged at D lr 0 and the generator unchanged at G lr 0', async (t) => {
  const x = blobs(3);
  for (const frozen of ['D', 'G'] as const) {
    const { vae, disc } = await make();
    try {
      const before = { enc: params(vae.encoder.network), dec: params(vae.decoder.network), d: params(disc.network) };
      const opts: RiveraStepOptions = frozen === 'D' ? { discriminatorOptimizer: { lr: 0 } } : { optimizer: { lr: 0 } };
      const r = await riveraTrainStep(vae, disc, batchOf(x), opts);
      t.true(Number.isFinite(r.loss) && Number.isFinite(r.discriminator) && r.adversarial > 0, JSON.stringify(r));
      const after = { enc: params(vae.encoder.network), dec: params(vae.decoder.network), d: params(disc.network) };
      t.is(sameBits(after.d, before.d), frozen === 'D', `${frozen}: D`);
      t.is(sameBits(after.enc, before.enc), frozen === 'G', `${frozen}: encoder`);
      t.is(sameBits(after.dec, before.dec), frozen === 'G', `${frozen}: decoder`);
    } finally {
      vae.dispose();
      disc.dispose();
    }
  }
});

test('the adversarial gradient reaches the decoder: w_adv changes the update of the decoder', async (t) => {
  const x = blobs(2);
  const dec: Float32Array[] = [];
  for (const wAdv of [0, 100]) {
    const { vae, disc } = await make();
    try {
      await riveraTrainStep(vae, disc, batchOf(x), { adversarialWeight: wAdv, optimizer: { lr: 1e-3 } });
      dec.push(params(vae.decoder.network));
    } finally {
      vae.dispose();
      disc.dispose();
    }
  }
  t.false(sameBits(dec[0]!, dec[1]!));
});

test('a short seeded Rivera run repeats bit for bit (with and without D)', async (t) => {
  const x = blobs(3);
  for (const withD of [true, false]) {
    const runs: { losses: number[]; p: Float32Array[] }[] = [];
    for (let rep = 0; rep < 2; rep++) {
      const { vae, disc } = await make(11);
      try {
        const losses: number[] = [];
        for (let s = 0; s < 3; s++) {
          const r = await riveraTrainStep(vae, withD ? disc : null, batchOf(x), { optimizer: { lr: 1e-3 }, discriminatorOptimizer: { lr: 1e-3 } });
          losses.push(r.loss, r.discriminator, r.population, r.individual);
        }
        runs.push({ losses, p: [params(vae.encoder.network), params(vae.decoder.network), params(disc.network)] });
      } finally {
        vae.dispose();
        disc.dispose();
      }
    }
    t.deepEqual(runs[0]!.losses, runs[1]!.losses);
    runs[0]!.p.forEach((p, i) => t.true(sameBits(p, runs[1]!.p[i]!), `${withD ? 'GAN' : 'no D'}: net ${i}`));
    t.true(runs[0]!.losses.every((v) => Number.isFinite(v) || (!withD && Number.isNaN(v))));
  }
});

test('bad input: a batch of 1 with the population term, a volume the discriminator does not fit', async (t) => {
  const { vae, disc } = await make();
  try {
    const e = await t.throwsAsync(riveraTrainStep(vae, disc, blobs(1)), { instanceOf: VoxvaeError });
    t.is(e!.code, 'EINVAL');
    t.regex(e!.message, /at least 2/);
    t.is(vae.step, 0);
    const r = await riveraTrainStep(vae, disc, blobs(1), { populationVariance: 'mixture' });
    t.true(Number.isFinite(r.loss) && Number.isFinite(r.population));
  } finally {
    vae.dispose();
    disc.dispose();
  }
  const e2 = t.throws(() => patchGan3d({ inputShape: [16, 20, 16] }), { instanceOf: VoxvaeError });
  t.is(e2!.code, 'ESHAPE');
  t.regex(e2!.message, /H = 20 .*multiple of 8.*use 16 or 24/);
  const e3 = t.throws(() => patchGan3d({ inputShape: [16, 16, 4] }), { instanceOf: VoxvaeError });
  t.regex(e3!.message, /W = 4 .*use 8/);
});

test('ResNet-v2 preset: block structure, shapes, names, and it trains with Rivera + PatchGAN', async (t) => {
  const resnet = { filters: 4, stages: 2, bottleneckChannels: 2 };
  const enc = buildResNetV2Encoder(CONFIG, resnet), dec = buildResNetV2Decoder(CONFIG, resnet);
  // Encoder: per stage 2 identity adds + 1 resampling add; decoder: 1 + 1.
  t.is(enc.spec.split('\n').filter((l) => l.startsWith('add ')).length, 2 * 3);
  t.is(dec.spec.split('\n').filter((l) => l.startsWith('add ')).length, 2 * 2);
  t.true(enc.nodeNames.includes('encoder.stages.1.down.shortcut.conv') && dec.nodeNames.includes('decoder.stages.0.up.conv2'));
  const vae = await Vae.create(resnetV2Vae({ ...CONFIG, resnet }), { seed: 4 });
  const disc = discriminatorFor(vae, D_OPTS);
  try {
    t.true(vae.encoder.network.tensors.some((x) => x.name === 'encoder.stages.0.id1.bn3.running_var'));
    const x = blobs(2);
    const { recon, mu } = await vae.forward(x, { mode: 'eval', batch: 2 });
    t.is(recon.length, 2 * 2 * S);
    t.is(mu.length, 2 * CONFIG.latentSize);
    const losses: number[] = [];
    for (let s = 0; s < 4; s++) losses.push((await riveraTrainStep(vae, disc, batchOf(x), { optimizer: { lr: 3e-3 }, adversarialWeight: 1 })).recon);
    t.true(losses.every(Number.isFinite));
    t.true(losses[3]! < losses[0]!, `recon ${losses.join(', ')}`);
  } finally {
    vae.dispose();
    disc.dispose();
  }
  t.throws(() => buildResNetV2Encoder(CONFIG, { stages: 5 }), { message: /multiple of 2\^stages = 32/ });
});

test('ResNet-v2 models save and load like any Vae (the architecture is part of the config)', async (t) => {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const os = await import('node:os');
  const path = await import('node:path');
  const { resnetV2Vae } = await import('../ts/config.js');
  const { Vae } = await import('../ts/vae.js');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-resnet-'));
  try {
    const cfg = resnetV2Vae({ inputShape: CONFIG.inputShape, latentSize: CONFIG.latentSize, resnet: { filters: 4, stages: 2, bottleneckChannels: 2 } });
    const vae = await Vae.create(cfg, { seed: 3 });
    await vae.trainStep(batchOf(blobs(2)), { beta: 1, optimizer: { lr: 1e-3 } });
    const p = path.join(dir, 'resnet.safetensors');
    await vae.save(p);
    const back = await Vae.load(p);
    t.is(back.config.architecture, 'resnet-v2');
    t.true(back.encoder.network.tensors.some((x) => x.name === 'encoder.stages.1.down.shortcut.conv.weight'));
    const x = blobs(1);
    t.deepEqual((await back.forward(x)).recon, (await vae.forward(x)).recon);
    t.throws(() => resnetV2Vae({ inputShape: [12, 16, 16], resnet: { stages: 3 } }), { message: /inputShape\[0\].*multiple of 2\^stages = 8/ });
    back.dispose();
    vae.dispose();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
