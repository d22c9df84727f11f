// Rivera's PatchGAN discriminator in 3D (How2TrainUrVAE `discriminator.py`, 2D Keras): six 3×3×3
// convolutions with strides (2, 2, 2, 1, 1, 1) and filters (128, 128, 128, 64, 64, 1), BatchNorm after
// every convolution (the last one too), LeakyReLU after all but the last, Dropout after every layer.
// The output is a grid of patch logits [1, D/8, H/8, W/8] (one per receptive field), not one number.
// The config, its validation and shapes; the network itself is built by buildDiscriminator in
// ts/model/build.ts (PyTorch-style names layers.{i}.conv / layers.{i}.bn).
import { VoxvaeError, invalid } from './errors.js';
import * as is from './is.js';

export interface DiscriminatorConfig {
  /** Spatial shape [D, H, W] of the volumes it judges; each must be a multiple of the product of the strides (8). */
  inputShape: [number, number, number];
  /** Channels of what it sees (1: the foreground probability of a 2-class softmax decoder, or a binary volume). */
  inChannels: number;
  /** Filters per layer before `width` scaling; the last must be 1 (one logit per patch). Official: [128, 128, 128, 64, 64, 1]. */
  filters: number[];
  /** Stride per layer (same length). Official: [2, 2, 2, 1, 1, 1]. */
  strides: number[];
  /** Scales every filter count but the last (rounded, at least 1): e.g. 1/16 for 32³ test volumes. Default 1. */
  width: number;
  kernelSize: number;
  /** Dropout rate after every layer (official 0.25); keyed by the training step like the reparameterization. */
  dropout: number;
  /** LeakyReLU slope: Keras' default 0.3 (the official code does not set it). */
  leakySlope: number;
  /** BatchNorm eps / momentum: Keras' defaults (eps 1e-3, momentum 0.99 = PyTorch momentum 0.01). */
  normEps: number;
  normMomentum: number;
}

export const PATCHGAN_DEFAULTS: Omit<DiscriminatorConfig, 'inputShape' | 'inChannels'> = {
  filters: [128, 128, 128, 64, 64, 1],
  strides: [2, 2, 2, 1, 1, 1],
  width: 1,
  kernelSize: 3,
  dropout: 0.25,
  leakySlope: 0.3,
  normEps: 1e-3,
  normMomentum: 0.01,
};

export type DiscriminatorConfigInput = Partial<DiscriminatorConfig> & { inputShape: [number, number, number] };

/** Rivera's PatchGAN with the official defaults (inChannels 1), validated against the volume size. */
export function patchGan3d(opts: DiscriminatorConfigInput): DiscriminatorConfig {
  return validateDiscriminatorConfig({ inChannels: 1, ...PATCHGAN_DEFAULTS, ...opts });
}

const posInt = (field: string, v: unknown, max: number): number => is.integer(field, v, 1, max);

/** Validates a discriminator config; a volume the strides do not divide fails with the sizes that would fit. */
export function validateDiscriminatorConfig(c: DiscriminatorConfig, field = 'discriminator'): DiscriminatorConfig {
  if (!is.plainObject(c)) invalid(field, 'must be an object', c);
  const known = new Set(['inputShape', 'inChannels', ...Object.keys(PATCHGAN_DEFAULTS)]);
  for (const k of Object.keys(c)) if (!known.has(k)) invalid(`${field}.${k}`, 'is not a DiscriminatorConfig field');
  if (!Array.isArray(c.inputShape) || c.inputShape.length !== 3) invalid(`${field}.inputShape`, 'must be [D, H, W]', c.inputShape);
  c.inputShape.forEach((d, i) => posInt(`${field}.inputShape[${i}]`, d, 4096));
  posInt(`${field}.inChannels`, c.inChannels, 4096);
  if (!Array.isArray(c.filters) || c.filters.length < 1 || c.filters.length > 16) invalid(`${field}.filters`, 'must list 1 to 16 filter counts', c.filters);
  c.filters.forEach((f, i) => posInt(`${field}.filters[${i}]`, f, 8192));
  if (c.filters[c.filters.length - 1] !== 1) invalid(`${field}.filters`, 'must end with 1 (one logit per patch)', c.filters);
  if (!Array.isArray(c.strides) || c.strides.length !== c.filters.length) invalid(`${field}.strides`, `must list one stride per layer (${c.filters.length})`, c.strides);
  c.strides.forEach((s, i) => posInt(`${field}.strides[${i}]`, s, 4));
  is.number(`${field}.width`, c.width, { above: 0, max: 16 });
  posInt(`${field}.kernelSize`, c.kernelSize, 15);
  if (c.kernelSize % 2 === 0) invalid(`${field}.kernelSize`, 'must be odd', c.kernelSize);
  is.number(`${field}.dropout`, c.dropout, { min: 0, below: 1 });
  is.number(`${field}.leakySlope`, c.leakySlope);
  is.number(`${field}.normEps`, c.normEps, { above: 0 });
  is.number(`${field}.normMomentum`, c.normMomentum, { min: 0, max: 1 });
  const total = c.strides.reduce((a, s) => a * s, 1);
  const axes = ['D', 'H', 'W'];
  c.inputShape.forEach((d, a) => {
    if (d % total !== 0 || d < total) {
      const lo = Math.max(total, Math.floor(d / total) * total), hi = Math.max(total, Math.ceil(d / total) * total);
      throw new VoxvaeError('ESHAPE',
        `${field}: the volume's ${axes[a]} = ${d} does not fit the discriminator: its strides (${c.strides.join(', ')}) need every side to be a multiple of ${total} (at least ${total}); ` +
        `use ${lo === hi ? lo : `${lo} or ${hi}`} (resample or pad the volumes), or fewer stride-2 layers`, { path: `${field}.inputShape[${a}]` });
    }
  });
  return { ...c, inputShape: [...c.inputShape] as [number, number, number], filters: [...c.filters], strides: [...c.strides] };
}

/** Filter counts after width scaling (the last stays 1). */
export function discriminatorFilters(c: DiscriminatorConfig): number[] {
  return c.filters.map((f, i) => (i === c.filters.length - 1 ? f : Math.max(1, Math.round(f * c.width))));
}

/** Per-sample shape of the patch-logit grid [1, D/s, H/s, W/s]. */
export function patchGridShape(c: DiscriminatorConfig): [number, number, number, number] {
  const total = c.strides.reduce((a, s) => a * s, 1);
  return [1, c.inputShape[0] / total, c.inputShape[1] / total, c.inputShape[2] / total];
}
