// voxvae: 3D convolutional VAEs for volumetric shapes — the public API.
export { VoxvaeError, type ErrorCode } from './errors.js';
export {
  monaiVarAutoEncoder,
  skullVaeDecoder,
  validateConfig,
  bottleneckShape,
  buildEncoder,
  buildDecoder,
  type VaeConfig,
  type VaeConfigInput,
  type OutputActivation,
  type NormKind,
  type ActivationKind,
  type DecoderBlock,
} from './config.js';
export {
  Vae,
  Encoder,
  Decoder,
  activate,
  setThreads,
  type Backend,
  type Batch,
  type CreateOptions,
  type LatentMode,
  type Mode,
  type ReconLoss,
  type StepResult,
  type TrainStepOptions,
} from './vae.js';
export type { OptimizerConfig } from './network.js';
export { readSafetensors, parseSafetensors, serializeSafetensors, writeFileAtomic, type SafeTensors } from './safetensors.js';
export * from './train/beta.js';
export * as metrics from './metrics/index.js';
