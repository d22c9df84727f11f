// Trainer: exact resume with a KL controller (same losses and β bit for bit), cancellation,
// checkpoints, validation and the NaN/Inf guard.
import test from 'ava';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monaiVarAutoEncoder } from '../ts/config.js';
import { VolumeDataset } from '../ts/data/dataset.js';
import { generateSkullDataset } from '../ts/data/synth/index.js';
import { Trainer, type TrainerOptions } from '../ts/train/trainer.js';
import { Vae } from '../ts/vae.js';

const SHAPE: [number, number, number] = [16, 16, 16];
const CFG = monaiVarAutoEncoder({ inputShape: SHAPE, channels: [4, 8, 8], latentSize: 4 });

async function data(): Promise<VolumeDataset> {
  return VolumeDataset.fromSynthetic(await generateSkullDataset({ n: 3, shape: SHAPE, seed: 3, workers: 0, implants: false }));
}

const opts = (extra: Partial<TrainerOptions> = {}): TrainerOptions => ({
  epochs: 3,
  batchSize: 4,
  seed: 5,
  beta: { kind: 'dynamicvae', initialBeta: 1, setPoint: { start: 2, every: 3, ramp: 2, step: 0.5, max: 5 }, window: 3 },
  optimizer: { kind: 'adamw', lr: 1e-3 },
  lrSchedule: { kind: 'cosine', totalSteps: 9, warmupSteps: 2 },
  ...extra,
});

test('resume from a mid-run checkpoint and from a cancellation gives the same losses and β bit for bit', async (t) => {
  const ds = await data();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-trainer-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  const full = new Trainer(await Vae.create(CFG, { seed: 2 }), ds, opts({ checkpoint: { dir, every: 1 }, validation: ds.subset([0, 1]) }));
  const ref = await full.run();
  full.vae.dispose();
  t.is(ref.epochs.length, 3);
  t.is(ref.steps.length, 9); // 9 volumes / batch 4 → 3 batches per epoch
  t.true(ref.epochs.every((e) => Number.isFinite(e.validation['dice']!)));
  t.deepEqual((await readdir(dir)).sort(), ['epoch-0001', 'epoch-0002', 'epoch-0003']);
  // β varies (the controller is live) and the lr follows the cosine schedule
  t.true(new Set(ref.steps.map((s) => s.beta)).size > 3);
  t.is(ref.steps[0]!.lr, 1e-3 * 0.5);

  // Resume from the epoch-1 checkpoint.
  const res = await Trainer.resume(path.join(dir, 'epoch-0001'), ds, opts());
  const r2 = await res.run();
  res.vae.dispose();
  t.deepEqual(r2.steps.map((s) => [s.loss, s.beta, s.kl]), ref.steps.map((s) => [s.loss, s.beta, s.kl]));

  // Cancel mid-epoch (after the 5th step), then resume from `last`.
  const dir2 = path.join(dir, 'cancel');
  const ac = new AbortController();
  const first = new Trainer(await Vae.create(CFG, { seed: 2 }), ds, opts({ signal: ac.signal, checkpoint: { dir: dir2, every: 10 }, onStep: (s) => { if (s.step === 5) ac.abort(); } }));
  const part = await first.run();
  first.vae.dispose();
  t.true(part.cancelled);
  t.is(part.steps.length, 5);
  const rest = await Trainer.resume(path.join(dir2, 'last'), ds, opts());
  const r3 = await rest.run();
  rest.vae.dispose();
  t.deepEqual(r3.steps.map((s) => [s.loss, s.beta]), ref.steps.map((s) => [s.loss, s.beta]));
});

test('the NaN/Inf guard rolls back, lowers the learning rate and reports it', async (t) => {
  const ds = await data();
  const rollbacks: number[] = [];
  const tr = new Trainer(await Vae.create(CFG, { seed: 2 }), ds, {
    epochs: 1,
    batchSize: 3,
    beta: 1,
    optimizer: { lr: 1e30 },
    nanGuard: { lrFactor: 1e-33, maxRollbacks: 3 },
    onRollback: (r) => rollbacks.push(r.lrScale),
  });
  const r = await tr.run();
  tr.vae.dispose();
  t.true(r.rollbacks.length >= 1, 'a rollback happened');
  t.deepEqual(rollbacks, r.rollbacks.map((x) => x.lrScale));
  t.true(r.steps.every((s) => Number.isFinite(s.loss)));
  t.is(r.epoch, 1);
});

test('the guard gives up with a clear error, and options are validated', async (t) => {
  const ds = await data();
  const vae = await Vae.create(CFG, { seed: 2 });
  t.teardown(() => vae.dispose());
  const tr = new Trainer(vae, ds, { epochs: 1, batchSize: 3, optimizer: { lr: 1e30 }, nanGuard: { lrFactor: 1, maxRollbacks: 1 } });
  await t.throwsAsync(tr.run(), { message: /diverged/ });
  t.throws(() => new Trainer(vae, ds, { epochs: 1, batchSize: 0 }), { message: /batchSize/ });
});
