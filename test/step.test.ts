// The one training step (ts/train/step.ts): β as a function of this step's KL (the Trainer's controllers
// see the current minibatch's KL, no lag), the latent and logit hooks, { seed, backend } for every part,
// and the backend option of the two-stage method.
import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { probeCuda } from '../ts/backend.js';
import { monaiVarAutoEncoder } from '../ts/config.js';
import { VolumeDataset } from '../ts/data/dataset.js';
import { generateSkullDataset } from '../ts/data/synth/index.js';
import { patchGan3d } from '../ts/discriminator.js';
import { VoxvaeError } from '../ts/errors.js';
import { createBetaSchedule, type BetaScheduleSpec } from '../ts/train/beta.js';
import { Discriminator } from '../ts/train/rivera.js';
import { Trainer } from '../ts/train/trainer.js';
import { trainStage2, trainTwoStage } from '../ts/train/two_stage.js';
import { Decoder, Encoder, Vae, setThreads, type StepHooks } from '../ts/vae.js';

setThreads(1);
const SHAPE: [number, number, number] = [16, 16, 16];
const CFG = monaiVarAutoEncoder({ inputShape: SHAPE, channels: [4, 8], latentSize: 4 });
const S = 16 * 16 * 16;

function blobs(n: number, shift = 0): Float32Array {
  const x = new Float32Array(n * S);
  for (let b = 0; b < n; b++)
    for (let i = 0; i < S; i++) {
      const d = Math.floor(i / 256) - 8, h = (Math.floor(i / 16) % 16) - 8, w = (i % 16) - 8;
      x[b * S + i] = d * d + h * h + w * w < (3 + 1.5 * b + shift) ** 2 ? 1 : 0;
    }
  return x;
}
const params = (v: Vae): Float32Array[] => [v.encoder.network.net.getParams(), v.decoder.network.net.getParams(), v.encoder.network.net.getBuffers(), v.decoder.network.net.getBuffers()];
const sameBits = (a: Float32Array, b: Float32Array): boolean => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const sameParams = (a: Vae, b: Vae): boolean => params(a).every((p, i) => sameBits(p, params(b)[i]!));
/** The trained weights (a step that throws after the forward pass has moved BatchNorm's running statistics, as before). */
const weights = (v: Vae): Float32Array[] => params(v).slice(0, 2);
/** A training batch of the volumes in x (they carry their shape). */
const B = (x: Float32Array) => ({ input: x, shape: [x.length / S, 1, ...SHAPE] });
const code = (e: unknown): string | undefined => (e instanceof VoxvaeError ? e.code : undefined);

test('β as a function of this step\'s KL gives the bits of the same β as a number, and sees the reported KL', async (t) => {
  const a = await Vae.create(CFG, { seed: 3 }), b = await Vae.create(CFG, { seed: 3 });
  t.teardown(() => (a.dispose(), b.dispose()));
  for (let s = 0; s < 3; s++) {
    const x = blobs(3, s);
    const seen: number[] = [];
    const ra = await a.trainStep(B(x), { beta: (kl) => (seen.push(kl), 2 + kl), optimizer: { lr: 1e-3 } });
    t.is(seen.length, 1);
    t.is(seen[0], ra.klPerSample, 'the function is given this step\'s klPerSample');
    const rb = await b.trainStep(B(x), { beta: 2 + seen[0]!, optimizer: { lr: 1e-3 } });
    t.deepEqual(ra, rb);
    t.true(sameParams(a, b), `step ${s}`);
  }
  // A frozen encoder: the function is still called (a schedule advances), β applied and reported is 0.
  a.encoder.freeze();
  let calls = 0;
  const r = await a.trainStep(B(blobs(2)), { beta: () => (calls++, 5) });
  t.is(calls, 1);
  t.is(r.beta, 0);
  t.true(Number.isFinite(r.kl));
  // A function returning NaN is the caller's bug: EINVAL, nothing updated.
  const before = weights(b);
  const e = await t.throwsAsync(b.trainStep(B(blobs(2)), { beta: () => NaN }));
  t.is(code(e), 'EINVAL');
  t.regex(e!.message, /options\.beta returned NaN/);
  t.true(weights(b).every((p, i) => sameBits(p, before[i]!)));
  t.is(b.step, 3);
  // Misspelt option names are refused, not ignored.
  t.is(code(await t.throwsAsync(b.trainStep(B(blobs(2)), { betas: 1 } as never))), 'EINVAL');
});

test('the latent hook composes: the KL gradient given through the hook gives the bits of beta', async (t) => {
  const a = await Vae.create(CFG, { seed: 5 }), b = await Vae.create(CFG, { seed: 5 });
  t.teardown(() => (a.dispose(), b.dispose()));
  const hooks: StepHooks = {
    latent: ({ mu, logvar, binding, keep }) => {
      const k = binding.klNormal(mu, logvar, { reduction: 'sum', weight: 3 });
      keep(k.dmu);
      keep(k.dlogvar);
      return { loss: k.loss, dmu: k.dmu, dlogvar: k.dlogvar };
    },
  };
  for (let s = 0; s < 2; s++) {
    const ra = await a.trainStep(B(blobs(2, s)), { beta: null, hooks });
    const rb = await b.trainStep(B(blobs(2, s)), { beta: 3 });
    t.true(Number.isNaN(ra.kl) && ra.beta === 0);
    t.true(Math.abs(ra.loss - rb.loss) <= 1e-9 * Math.abs(rb.loss), `${ra.loss} vs ${rb.loss}`);
    t.true(sameParams(a, b), `step ${s}`);
  }
});

test('the logit hook: a zero gradient changes nothing, a non-zero one reaches the decoder; a wrong size is ESHAPE', async (t) => {
  const ref = await Vae.create(CFG, { seed: 7 }), zero = await Vae.create(CFG, { seed: 7 }), push = await Vae.create(CFG, { seed: 7 });
  t.teardown(() => (ref.dispose(), zero.dispose(), push.dispose()));
  const x = blobs(2);
  const rr = await ref.trainStep(B(x), { beta: 1 });
  let seen = 0;
  const rz = await zero.trainStep(B(x), { beta: 1, hooks: { logits: ({ logits, target }) => ((seen = logits.length), t.is(target, x), { loss: 0, grad: new Float32Array(logits.length) }) } });
  t.is(seen, 2 * 2 * S);
  t.deepEqual(rz, rr);
  t.true(sameParams(ref, zero));
  const rp = await push.trainStep(B(x), { beta: 1, hooks: { logits: ({ logits }) => ({ loss: 1.5, grad: new Float32Array(logits.length).fill(0.01) }) } });
  t.is(rp.loss, rr.loss + 1.5);
  t.false(sameBits(push.decoder.network.net.getParams(), ref.decoder.network.net.getParams()));
  const e = await t.throwsAsync(push.trainStep(B(x), { hooks: { logits: () => ({ loss: 0, grad: new Float32Array(3) }) } }));
  t.is(code(e), 'ESHAPE');
  t.is(push.step, 1);
  // A non-finite hook loss is ENOTFINITE, nothing updated.
  const before = weights(push);
  t.is(code(await t.throwsAsync(push.trainStep(B(x), { hooks: { logits: () => ({ loss: Infinity, grad: null }) } }))), 'ENOTFINITE');
  t.true(weights(push).every((p, i) => sameBits(p, before[i]!)));
});

test('Decoder.trainStep refuses a concurrent call with EBUSY', async (t) => {
  const dec = new Decoder(CFG, { seed: 1 });
  t.teardown(() => dec.dispose());
  const z = new Float32Array(8).fill(0.5), target = blobs(2);
  const first = dec.trainStep(z, target);
  t.is(code(await t.throwsAsync(dec.trainStep(z, target))), 'EBUSY');
  t.is((await first).step, 1);
});

async function data(): Promise<VolumeDataset> {
  return VolumeDataset.fromSynthetic(await generateSkullDataset({ n: 3, shape: SHAPE, seed: 3, workers: 0, implants: false }));
}

test('Trainer: the β applied at step t is the schedule\'s output for step t\'s KL (no lag); resume is exact, also from a trainer.json without lastKl', async (t) => {
  const ds = await data();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-step-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spec: BetaScheduleSpec = { kind: 'controlvae', preset: 'paper', setPoint: 0.5, kp: 0.5, ki: 0.05, betaMin: 0, betaMax: 4 };
  const opts = { epochs: 2, batchSize: 4, seed: 5, beta: spec, optimizer: { lr: 1e-3 } } as const;
  const full = new Trainer(await Vae.create(CFG, { seed: 2 }), ds, { ...opts, checkpoint: { dir, every: 1 } });
  const ref = await full.run();
  full.vae.dispose();
  t.is(ref.steps.length, 6);
  // Replay the controller on the reported KLs: step t's β is next(KL(t)), bit for bit.
  const replay = createBetaSchedule(spec);
  for (const s of ref.steps) {
    t.is(s.klSeen, s.klPerSample);
    t.is(s.beta, replay.next(s.klPerSample));
  }
  t.true(new Set(ref.steps.map((s) => s.beta)).size > 2, 'the controller is live');
  // The first β is not the lagged protocol's next(0).
  t.not(ref.steps[0]!.beta, createBetaSchedule(spec).next(0));

  // Resume from epoch 1, with trainer.json as written and with lastKl removed (the field is not read).
  for (const dropLastKl of [false, true]) {
    const ck = path.join(dir, 'epoch-0001');
    if (dropLastKl) {
      const st = JSON.parse(await readFile(path.join(ck, 'trainer.json'), 'utf8')) as Record<string, unknown>;
      t.true('lastKl' in st);
      delete st['lastKl'];
      await writeFile(path.join(ck, 'trainer.json'), JSON.stringify(st));
    }
    const res = await Trainer.resume(ck, ds, opts);
    const r2 = await res.run();
    res.vae.dispose();
    t.deepEqual(r2.steps.map((s) => [s.loss, s.beta, s.kl]), ref.steps.map((s) => [s.loss, s.beta, s.kl]), `lastKl dropped: ${dropLastKl}`);
  }
});

test('Trainer options are validated', async (t) => {
  const ds = await data();
  const vae = await Vae.create(CFG, { seed: 2 });
  t.teardown(() => vae.dispose());
  for (const bad of [{ batchSize: 0 }, { latent: 'median' }, { maxGradNorm: 0 }, { lrSchedule: { kind: 'cosine', totalSteps: 0 } }, { checkpoint: { dir: '', every: 1 } }, { epoch: 3 }]) {
    const e = t.throws(() => new Trainer(vae, ds, { epochs: 1, batchSize: 2, ...bad } as never));
    t.is(code(e), 'EINVAL', JSON.stringify(bad));
  }
});

test('Encoder, Decoder and Discriminator take { seed, backend }: validated, passed through', (t) => {
  const cuda = probeCuda();
  for (const make of [(o: object) => new Encoder(CFG, o), (o: object) => new Decoder(CFG, o), (o: object) => new Discriminator(patchGan3d({ inputShape: SHAPE, width: 1 / 32 }), o)]) {
    const cpu = make({ seed: 4, backend: 'cpu' });
    t.is(cpu.backend, 'cpu');
    cpu.dispose();
    t.is(code(t.throws(() => make({ backend: 'tpu' }))), 'EINVAL');
    t.is(code(t.throws(() => make({ seed: -1 }))), 'EINVAL');
    t.is(code(t.throws(() => make({ sead: 1 }))), 'EINVAL');
    t.is(code(t.throws(() => make(3 as never))), 'EINVAL', 'the positional seed is gone: { seed }');
    if (!cuda.binding) {
      const e = t.throws(() => make({ backend: 'cuda' }));
      t.is(code(e), 'EUNSUPPORTED');
      t.true(e!.message.includes(cuda.reason), e!.message);
    } else {
      const g = make({ backend: 'cuda' });
      t.is(g.backend, 'cuda');
      g.dispose();
    }
  }
  // The same seed gives the same initialisation.
  const a = new Decoder(CFG, { seed: 9 }), b = new Decoder(CFG, { seed: 9 });
  t.true(sameBits(a.network.net.getParams(), b.network.net.getParams()));
  a.dispose();
  b.dispose();
});

test('trainTwoStage and trainStage2 take a backend; the stage-2 decoder is made on the model\'s backend', async (t) => {
  const ds = await data();
  const cuda = probeCuda();
  if (!cuda.binding) {
    const e = await t.throwsAsync(trainTwoStage(CFG, { train: ds, backend: 'cuda', stage1: { epochs: 1 }, stage2: { epochs: 1 } }));
    t.is(code(e), 'EUNSUPPORTED');
    t.true(e!.message.includes(cuda.reason), e!.message);
  }
  t.is(code(await t.throwsAsync(trainTwoStage(CFG, { train: ds, backend: 'gpu' as never, stage1: { epochs: 1 }, stage2: { epochs: 1 } }))), 'EINVAL');
  const r = await trainTwoStage(CFG, { train: ds, backend: 'cpu', seed: 1, stage1: { epochs: 1, batchSize: 5 }, stage2: { epochs: 1, batchSize: 5 } });
  t.teardown(() => r.vae.dispose());
  t.is(r.vae.backend, 'cpu');
  t.is(r.vae.decoder.backend, 'cpu');
  t.true(r.vae.encoder.frozen);
  t.is(r.stage2.steps.length, 2);
  // A model on the CPU cannot get a CUDA stage-2 decoder: EINVAL naming the model's backend, model untouched.
  const dec = r.vae.decoder;
  const e = await t.throwsAsync(trainStage2(r.vae, { train: ds, backend: 'cuda', trainer: { epochs: 1 } }));
  t.is(code(e), 'EINVAL');
  t.regex(e!.message, /model's backend \('cpu'\)/);
  t.is(r.vae.decoder, dec);
});
