// What test/distributed.test.ts and its rank processes (test/dist_worker.ts) share: the model, the per-rank
// batches and the options.
import { monaiVarAutoEncoder } from '../ts/config.js';
import { VolumeDataset } from '../ts/data/dataset.js';
import { generateSkullDataset } from '../ts/data/synth/index.js';
import type { TrainerOptions } from '../ts/train/trainer.js';
import type { Vae } from '../ts/vae.js';

export const SHAPE: [number, number, number] = [16, 16, 16];
export const CFG = monaiVarAutoEncoder({ inputShape: SHAPE, channels: [4, 8, 8], latentSize: 4 });
export const SEED = 7;
export const STEP_OPTS = { beta: 0.5, maxGradNorm: 0.05, optimizer: { lr: 1e-3 } } as const;

/** Rank r's batch of step t: 2 samples of seeded binary noise (every rank a different batch). */
export function batchOf(rank: number, step: number): { input: Float32Array; shape: number[] } {
  const [D, H, W] = SHAPE;
  const n = 2, len = n * D * H * W;
  const x = new Float32Array(len);
  let s = (rank * 7919 + step * 104729 + 1) >>> 0;
  for (let i = 0; i < len; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = s >>> 31;
  }
  return { input: x, shape: [n, 1, D, H, W] };
}

export const trainerOptions = (extra: Partial<TrainerOptions> = {}): TrainerOptions => ({
  epochs: 2,
  batchSize: 2,
  seed: 5,
  beta: { kind: 'dynamicvae', initialBeta: 1, setPoint: { start: 2, every: 3, ramp: 2, step: 0.5, max: 5 }, window: 3 },
  optimizer: { kind: 'adamw', lr: 1e-3 },
  ...extra,
});

export async function trainerData(): Promise<VolumeDataset> {
  return VolumeDataset.fromSynthetic(await generateSkullDataset({ n: 3, shape: SHAPE, seed: 3, workers: 0, implants: false }));
}

/** Encoder then decoder parameters, concatenated. */
export function weights(vae: Vae): Float32Array {
  const e = vae.encoder.network.net.getParams(), d = vae.decoder.network.net.getParams();
  const out = new Float32Array(e.length + d.length);
  out.set(e);
  out.set(d, e.length);
  return out;
}
