// VaeConfig: the architecture of a 3D convolutional VAE, its validation (messages name the field) and
// the presets (MONAI's VarAutoEncoder as skullVAE uses it, skullVAE's stage-2 decoder, Rivera's
// ResNet-v2). Imports no builder: the networks a config describes are built in ts/model/build.ts.
import { invalid } from './errors.js';
import * as is from './is.js';

export type OutputActivation = 'softmax' | 'sigmoid' | 'none';
export type NormKind = 'batch' | 'instance' | 'none';
export type ActivationKind = 'prelu' | 'relu' | 'leaky_relu';
/** 'monai': ConvT → Norm → Act per block, the last block convolution only (MONAI VarAutoEncoder).
 *  'skullvae': ConvT → Norm → Act → ReLU on every block, the last one too (skullVAE's stage-2 decoder). */
export type DecoderBlock = 'monai' | 'skullvae';

/** 'monai': MONAI's VarAutoEncoder layout (channels/strides per level). 'resnet-v2': Rivera's
 *  pre-activation ResNet-v2 encoder/decoder (ts/model/build.ts), configured by `resnet`. */
export type Architecture = 'monai' | 'resnet-v2';

export interface ResNetV2Options {
  /** Filters of every stage's blocks (official: 128). */
  filters: number;
  /** Resampling stages (official: 6 for 256² → 4²); every side must be divisible by 2^stages. */
  stages: number;
  /** Identity blocks per encoder stage (official 2) and per decoder stage (official 1). */
  encoderIdentityBlocks: number;
  decoderIdentityBlocks: number;
  /** Channels of the 1×1 conv before the latent linear layers (official: latent_dim / 8 = 64). */
  bottleneckChannels: number;
}

export const RESNET_V2_DEFAULTS: ResNetV2Options = { filters: 128, stages: 6, encoderIdentityBlocks: 2, decoderIdentityBlocks: 1, bottleneckChannels: 64 };

export interface VaeConfig {
  /** Network family (default 'monai'). */
  architecture: Architecture;
  /** ResNet-v2 settings, used when architecture is 'resnet-v2'. */
  resnet: ResNetV2Options;
  /** Spatial input shape [D, H, W]; each must be divisible by the product of the strides. */
  inputShape: [number, number, number];
  inChannels: number;
  /** Decoder output channels: classes for softmax/Dice (2 for binary volumes), else the image channels. */
  outChannels: number;
  /** Applied by decode()/forward() when probabilities are asked for; training losses take logits. */
  outputActivation: OutputActivation;
  /** Encoder channels per level; the decoder mirrors them (MONAI: channels[-2::-1] + [outChannels]). */
  channels: number[];
  /** Stride per level (same length as channels). */
  strides: number[];
  /** Odd kernel size; padding (k-1)/2, transposed output_padding stride-1 (MONAI's rules). */
  kernelSize: number;
  latentSize: number;
  norm: NormKind;
  activation: ActivationKind;
  decoderBlock: DecoderBlock;
  /** leaky_relu slope (MONAI/PyTorch default 0.01). */
  leakySlope: number;
  /** PReLU with one slope per channel instead of one shared slope (MONAI: shared). */
  preluPerChannel: boolean;
  /** BatchNorm eps and momentum (PyTorch defaults 1e-5, 0.1). */
  normEps: number;
  normMomentum: number;
}

const DEFAULTS: Omit<VaeConfig, 'inputShape'> = {
  architecture: 'monai',
  resnet: RESNET_V2_DEFAULTS,
  inChannels: 1,
  outChannels: 2,
  outputActivation: 'softmax',
  channels: [32, 64, 64, 128, 128, 256],
  strides: [2, 2, 2, 2, 2, 2],
  kernelSize: 3,
  latentSize: 32,
  norm: 'batch',
  activation: 'prelu',
  decoderBlock: 'monai',
  leakySlope: 0.01,
  preluPerChannel: false,
  normEps: 1e-5,
  normMomentum: 0.1,
};

export type VaeConfigInput = Partial<VaeConfig> & { inputShape: [number, number, number] };

/**
 * MONAI `VarAutoEncoder(spatial_dims=3, in_shape=(1, D, H, W), out_channels=2,
 * channels=(32, 64, 64, 128, 128, 256), strides=(2,)*6, latent_size=32, num_res_units=0, norm=BATCH)`
 * as skullVAE trains it (PReLU, no dropout, no output sigmoid: softmax-Dice on logits).
 * Pass fewer levels for small volumes, e.g. { inputShape: [64, 64, 32], channels: [16, 32, 64, 128, 128], strides: [2,2,2,2,2] }.
 */
export function monaiVarAutoEncoder(opts: VaeConfigInput): VaeConfig {
  const channels = opts.channels ?? DEFAULTS.channels;
  return validateConfig({ ...DEFAULTS, strides: channels.map(() => 2), ...opts, decoderBlock: opts.decoderBlock ?? 'monai' });
}

/** skullVAE's stage-2 decoder (`myDecoder`): every transposed block ConvT → BN → PReLU → ReLU, the last one too. */
export function skullVaeDecoder(opts: VaeConfigInput): VaeConfig {
  const channels = opts.channels ?? DEFAULTS.channels;
  return validateConfig({ ...DEFAULTS, strides: channels.map(() => 2), ...opts, decoderBlock: 'skullvae' });
}

/** Rivera's ResNet-v2 encoder/decoder preset (How2TrainUrVAE, in 3D); `resnet` overrides the official sizes. */
export function resnetV2Vae(opts: VaeConfigInput & { resnet?: Partial<ResNetV2Options> }): VaeConfig {
  return validateConfig({ ...DEFAULTS, ...opts, architecture: 'resnet-v2', resnet: { ...RESNET_V2_DEFAULTS, ...(opts.resnet ?? {}) } });
}

/** Validates ResNet-v2 options for a config's shape (every side divisible by 2^stages). */
export function validateResNetV2(c: Pick<VaeConfig, 'inputShape'>, o: Partial<ResNetV2Options>, field = 'resnet', checkShape = true): ResNetV2Options {
  if (!is.plainObject(o)) invalid(field, 'must be an object', o);
  for (const k of Object.keys(o)) if (!(k in RESNET_V2_DEFAULTS)) invalid(`${field}.${k}`, 'is not a ResNet-v2 option');
  const r = { ...RESNET_V2_DEFAULTS, ...o };
  for (const [k, max] of [['filters', 8192], ['stages', 12], ['bottleneckChannels', 8192]] as const) is.integer(`${field}.${k}`, r[k], 1, max);
  for (const k of ['encoderIdentityBlocks', 'decoderIdentityBlocks'] as const) is.integer(`${field}.${k}`, r[k], 0, 16);
  const f = 2 ** r.stages;
  if (checkShape) c.inputShape.forEach((d, a) => {
    if (d % f !== 0) invalid(`config.inputShape[${a}]`, `must be a multiple of 2^stages = ${f} for the ResNet-v2 preset (e.g. ${Math.max(f, Math.round(d / f) * f)}), or use fewer stages`, d);
  });
  return r;
}

const posInt = (field: string, v: unknown, max = 1 << 20): number => is.integer(field, v, 1, max);
const oneOf = is.oneOf;

/** Validates a full config (every field present) and returns a normalised copy. */
export function validateConfig(c: unknown, field = 'config'): VaeConfig {
  if (!is.plainObject(c)) invalid(field, 'must be an object', c);
  const o = { ...DEFAULTS, ...(c as Partial<VaeConfig>) } as Record<string, unknown>;
  const known = new Set(['inputShape', ...Object.keys(DEFAULTS)]);
  for (const k of Object.keys(c as object)) if (!known.has(k)) invalid(`${field}.${k}`, 'is not a VaeConfig field');
  const shape = o.inputShape;
  if (!Array.isArray(shape) || shape.length !== 3) invalid(`${field}.inputShape`, 'must be [D, H, W]', shape);
  const inputShape = shape.map((d, i) => posInt(`${field}.inputShape[${i}]`, d, 4096)) as [number, number, number];
  const channels = o.channels;
  if (!Array.isArray(channels) || channels.length < 1 || channels.length > 12) invalid(`${field}.channels`, 'must be a list of 1 to 12 channel counts', channels);
  channels.forEach((ch, i) => posInt(`${field}.channels[${i}]`, ch, 8192));
  const strides = o.strides;
  if (!Array.isArray(strides) || strides.length !== channels.length) invalid(`${field}.strides`, `must list one stride per level (${channels.length})`, strides);
  strides.forEach((s, i) => posInt(`${field}.strides[${i}]`, s, 8));
  const kernelSize = posInt(`${field}.kernelSize`, o.kernelSize, 15);
  if (kernelSize % 2 === 0) invalid(`${field}.kernelSize`, 'must be odd (MONAI same_padding)', kernelSize);
  const architecture = oneOf(`${field}.architecture`, o.architecture, ['monai', 'resnet-v2'] as const);
  const cfg: VaeConfig = {
    architecture,
    resnet: validateResNetV2({ inputShape }, (o.resnet ?? {}) as Partial<ResNetV2Options>, `${field}.resnet`, architecture === 'resnet-v2'),
    inputShape,
    inChannels: posInt(`${field}.inChannels`, o.inChannels, 4096),
    outChannels: posInt(`${field}.outChannels`, o.outChannels, 4096),
    outputActivation: oneOf(`${field}.outputActivation`, o.outputActivation, ['softmax', 'sigmoid', 'none'] as const),
    channels: [...(channels as number[])],
    strides: [...(strides as number[])],
    kernelSize,
    latentSize: posInt(`${field}.latentSize`, o.latentSize, 65536),
    norm: oneOf(`${field}.norm`, o.norm, ['batch', 'instance', 'none'] as const),
    activation: oneOf(`${field}.activation`, o.activation, ['prelu', 'relu', 'leaky_relu'] as const),
    decoderBlock: oneOf(`${field}.decoderBlock`, o.decoderBlock, ['monai', 'skullvae'] as const),
    leakySlope: is.number(`${field}.leakySlope`, o.leakySlope),
    preluPerChannel: is.bool(`${field}.preluPerChannel`, o.preluPerChannel),
    normEps: is.number(`${field}.normEps`, o.normEps, { above: 0 }),
    normMomentum: is.number(`${field}.normMomentum`, o.normMomentum, { min: 0, max: 1 }),
  };
  if (architecture === 'resnet-v2') return cfg; // channels/strides describe the MONAI layout only
  const bottleneck = bottleneckShape(cfg);
  for (let a = 0; a < 3; a++) {
    const total = cfg.strides.reduce((p, s) => p * s, 1);
    if (inputShape[a]! % total !== 0)
      invalid(`${field}.inputShape[${a}]`, `must be divisible by the product of the strides (${total}) so that the decoder reproduces the input size`, inputShape[a]);
  }
  if (bottleneck.some((d) => d < 1)) invalid(`${field}.strides`, 'reduce the input below one voxel');
  return cfg;
}

/** Spatial shape after the encoder's convolutions. */
export function bottleneckShape(c: VaeConfig): [number, number, number] {
  const p = (c.kernelSize - 1) / 2;
  return c.inputShape.map((d) => c.strides.reduce((x, s) => Math.floor((x + 2 * p - c.kernelSize) / s) + 1, d)) as [number, number, number];
}
