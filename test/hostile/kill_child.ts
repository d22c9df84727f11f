// Child process of test/hostile_kill.test.ts: trains with a checkpoint every epoch and prints each step's
// loss as a JSON line ({ step, loss }), until it is killed (or reaches its epochs).
import { monaiVarAutoEncoder } from '../../ts/config.js';
import { VolumeDataset } from '../../ts/data/dataset.js';
import { generateSkullDataset } from '../../ts/data/synth/index.js';
import { Trainer, type TrainerOptions } from '../../ts/train/trainer.js';
import { Vae } from '../../ts/vae.js';

export const SHAPE: [number, number, number] = [16, 16, 16];
export const CFG = monaiVarAutoEncoder({ inputShape: SHAPE, channels: [4, 8], latentSize: 4 });
export async function data(): Promise<VolumeDataset> {
  return VolumeDataset.fromSynthetic(await generateSkullDataset({ n: 3, shape: SHAPE, seed: 3, workers: 0, implants: false }));
}
export const opts = (extra: Partial<TrainerOptions> = {}): TrainerOptions => ({
  epochs: 200,
  batchSize: 2,
  seed: 5,
  beta: 0.5,
  optimizer: { kind: 'adamw', lr: 1e-3 },
  ...extra,
});

if (process.argv[2] === 'run') {
  const dir = process.argv[3]!;
  const ds = await data();
  const tr = new Trainer(await Vae.create(CFG, { seed: 2 }), ds, opts({ checkpoint: { dir, every: 1 }, onStep: (s) => void process.stdout.write(JSON.stringify({ step: s.step, loss: s.loss }) + '\n') }));
  await tr.run();
}
