// The two-stage aggregated VAE of Li et al. (skullVAE, METHODS §1.3–1.5):
//   stage 1: a β-VAE with a large β (100), loss 80·Dice_sum + β·KL_sum, Adam 1e-4, batch 4;
//   stage 2: the stage-1 encoder frozen (eval mode: running BatchNorm statistics, no gradient, no
//            update) and a new skullVAE decoder (ConvT → BN → PReLU → ReLU blocks) trained with the
//            reconstruction loss alone on latents from that encoder.
// The result is one Vae — stage-1 encoder, reparameterization, stage-2 decoder — saved and loaded as
// one checkpoint (Vae.save records the decoder's config and that the encoder is frozen).
//
// The latent fed to stage 2 (`stage2.latent`):
//   'sample'   (default) z = μ + σ·ε, fresh ε every step — what the paper describes;
//   'mean'     z = μ;
//   'mean+std' z = μ + σ, deterministic — what skullVAE's code actually trained on: it put MONAI's
//              encoder in eval() and MONAI's reparameterize returns μ + σ in eval mode (MONAI issue
//              #8413). Use it to reproduce the published numbers.
import { skullVaeDecoder, type VaeConfig } from '../config.js';
import type { VolumeDataset } from '../data/dataset.js';
import { invalid } from '../errors.js';
import * as is from '../is.js';
import { BACKENDS, type Backend, type LatentMode } from '../types.js';
import { Decoder, Vae } from '../vae.js';
import { Trainer, type TrainResult, type TrainerOptions } from './trainer.js';
import { rank } from '../dist/index.js';

/** skullVAE's stage-1 settings (METHODS §1.3). Epochs are the caller's: 200 in the paper. */
export const SKULLVAE_STAGE1: Readonly<Pick<TrainerOptions, 'batchSize' | 'beta' | 'optimizer' | 'recon' | 'latent'>> = {
  batchSize: 4,
  beta: 100,
  optimizer: { kind: 'adam', lr: 1e-4 },
  recon: { kind: 'dice', weight: 80, reduction: 'sum' },
  latent: 'sample',
};

/** skullVAE's stage-2 settings (`VAEDecoderRetrain.py`). */
export const SKULLVAE_STAGE2: Readonly<Pick<TrainerOptions, 'batchSize' | 'optimizer' | 'recon' | 'latent'>> = {
  batchSize: 4,
  optimizer: { kind: 'adam', lr: 1e-4 },
  recon: { kind: 'dice', weight: 80, reduction: 'sum' },
  latent: 'sample',
};

export interface TwoStageOptions {
  train: VolumeDataset;
  validation?: VolumeDataset;
  seed?: number;
  /** The engine both stages run on: 'cpu' (default), 'cuda' (EUNSUPPORTED with the reason when unusable) or 'auto'. */
  backend?: Backend;
  /** Stage-1 trainer options over SKULLVAE_STAGE1; `epochs` required. */
  stage1: Partial<TrainerOptions> & { epochs: number };
  /** Stage-2 trainer options over SKULLVAE_STAGE2; `epochs` required; `latent` picks the z fed to the decoder. */
  stage2: Partial<TrainerOptions> & { epochs: number; latent?: LatentMode };
  /** The stage-2 decoder's architecture (default: skullVaeDecoder with the encoder's shape, channels, latent size). */
  decoderConfig?: VaeConfig;
  /** Save the stage-1 VAE here before its decoder is replaced. */
  stage1Checkpoint?: string;
  /** Called before stage 2 starts, with the stage-1 VAE (e.g. to evaluate it). */
  afterStage1?: (vae: Vae) => Promise<void>;
}

export interface TwoStageResult {
  /** The aggregated VAE: frozen stage-1 encoder + stage-2 decoder. */
  vae: Vae;
  stage1: TrainResult;
  stage2: TrainResult;
}

/** The stage-2 decoder config matching an encoder: skullVAE blocks, same shape/channels/latent. */
export function stage2DecoderConfig(encoder: VaeConfig): VaeConfig {
  const { decoderBlock: _ignored, ...rest } = encoder;
  return skullVaeDecoder({ ...rest });
}

export interface Stage2Options {
  train: VolumeDataset;
  validation?: VolumeDataset;
  seed?: number;
  decoderConfig?: VaeConfig;
  /** The engine of the new decoder: default, and the only one accepted, the model's (vae.backend); 'auto'
   *  resolves to it. A VAE on the CPU cannot train a CUDA decoder (or the reverse): load it on that backend. */
  backend?: Backend;
  trainer: Partial<TrainerOptions> & { epochs: number };
}

const STAGE2_KEYS = ['train', 'validation', 'seed', 'decoderConfig', 'backend', 'trainer'];
const TWO_STAGE_KEYS = ['train', 'validation', 'seed', 'backend', 'stage1', 'stage2', 'decoderConfig', 'stage1Checkpoint', 'afterStage1'];

/** Stage 2 alone: freezes `vae`'s encoder, attaches a new decoder (on the model's backend) and trains it. The old decoder is disposed. */
export async function trainStage2(vae: Vae, opts: Stage2Options): Promise<TrainResult> {
  const o = is.options('options', opts);
  is.knownKeys('options', o, STAGE2_KEYS);
  const seed = is.seed('options.seed', o.seed ?? vae.seed);
  const backend = is.oneOf('options.backend', o.backend ?? vae.backend, BACKENDS);
  if (backend !== 'auto' && backend !== vae.backend)
    invalid('options.backend', `must be the model's backend ('${vae.backend}'): the stage-2 decoder is trained on the stage-1 encoder's latents; load or create the model with { backend: '${backend}' } instead`, backend);
  is.options('options.trainer', o.trainer);
  const decoder = new Decoder(o.decoderConfig ?? stage2DecoderConfig(vae.config), { seed: seed + 1000, backend: vae.backend });
  vae.encoder.freeze();
  const old = vae.decoder;
  try {
    vae.attachDecoder(decoder);
  } catch (e) {
    decoder.dispose();
    throw e;
  }
  old.dispose();
  const t = new Trainer(vae, o.train!, { ...SKULLVAE_STAGE2, ...(o.validation ? { validation: o.validation } : {}), seed: o.seed ?? 0, ...o.trainer! });
  return t.run();
}

/** Trains both stages on `backend` (default 'cpu') and returns the aggregated VAE. */
export async function trainTwoStage(config: VaeConfig, o: TwoStageOptions): Promise<TwoStageResult> {
  is.options('options', o);
  is.knownKeys('options', o, TWO_STAGE_KEYS);
  const seed = is.seed('options.seed', o.seed ?? 0);
  const backend = is.oneOf('options.backend', o.backend ?? 'cpu', BACKENDS);
  is.options('options.stage1', o.stage1);
  is.options('options.stage2', o.stage2);
  if (o.afterStage1 !== undefined) is.fn('options.afterStage1', o.afterStage1, '(vae) => Promise<void>');
  const vae = await Vae.create(config, { seed, backend });
  try {
    const t1 = new Trainer(vae, o.train, { ...SKULLVAE_STAGE1, ...(o.validation ? { validation: o.validation } : {}), seed, ...o.stage1 });
    const stage1 = await t1.run();
    if (o.stage1Checkpoint && rank() === 0) await vae.save(o.stage1Checkpoint); // data-parallel: rank 0 writes
    await o.afterStage1?.(vae);
    const stage2 = await trainStage2(vae, { train: o.train, ...(o.validation ? { validation: o.validation } : {}), seed, ...(o.decoderConfig ? { decoderConfig: o.decoderConfig } : {}), trainer: o.stage2 });
    return { vae, stage1, stage2 };
  } catch (e) {
    vae.dispose();
    throw e;
  }
}
