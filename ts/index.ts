// voxvae: 3D convolutional VAEs for volumetric shapes — the public API.
export { VoxvaeError, type ErrorCode } from './errors.js';
export {
  monaiVarAutoEncoder,
  skullVaeDecoder,
  validateConfig,
  bottleneckShape,
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
  setCpuIsa,
  cpuIsa,
  type CpuIsa,
  type Backend,
  type Batch,
  type CreateOptions,
  type LatentMode,
  type EvalLatent,
  evalLatentOf,
  type Mode,
  type ReconLoss,
  type StepResult,
  type TrainStepOptions,
} from './vae.js';
export type { OptimizerConfig } from './network.js';
export { addonFile } from './native.js';
export { readSafetensors, parseSafetensors, serializeSafetensors, writeFileAtomic, type SafeTensors } from './safetensors.js';
export * from './train/beta.js';
export * as metrics from './metrics/index.js';
export { Trainer, reconstructionDice, type TrainerOptions, type TrainResult, type StepInfo, type EpochInfo, type RollbackInfo, type LrScheduleSpec } from './train/trainer.js';
export { trainTwoStage, trainStage2, stage2DecoderConfig, SKULLVAE_STAGE1, SKULLVAE_STAGE2, type TwoStageOptions, type TwoStageResult } from './train/two_stage.js';
export * as latent from './latent/index.js';
export { runBetaTradeoff, runPipeline, runAblation, METHODS as EXPERIMENT_METHODS, type BetaTradeoffOptions, type MethodRow, type MethodName, type Scale, type PipelineOptions, type PipelineResult } from './experiment/index.js';
export {
  completeSkull,
  completeSkulls,
  extractImplant,
  fitLatents,
  COMPLETION_METHODS,
  type CompleteOptions,
  type CompletionData,
  type CompletionMethod,
  type CompletionModel,
  type CompletionResult,
  type FitSettings,
} from './completion/index.js';
export { calibrateCompletion, type CalibrateOptions } from './completion/calibrate.js';
export { completeFile, type CompleteFileOptions } from './cli/complete.js';
// The data layer (docs/data.md): volumes, files, datasets, synthetic skulls.
export {
  readVolume,
  readVolumeHeader,
  writeVolume,
  resample,
  threshold,
  createVolume,
  VolumeDataset,
  generateSkullDataset,
  writeSkullDataset,
  datasetInfo,
  type Volume,
  type BinaryVolume,
  type DatasetOptions,
  type SyntheticDataset,
  type SyntheticSkull,
  type SkullFactors,
} from './data/index.js';
export { buildEncoder, buildDecoder, buildDiscriminator } from './model/build.js';
export { patchGan3d, validateDiscriminatorConfig, discriminatorFilters, patchGridShape, PATCHGAN_DEFAULTS, type DiscriminatorConfig, type DiscriminatorConfigInput } from './discriminator.js';
export { buildResNetV2Encoder, buildResNetV2Decoder, validateResNetV2, RESNET_V2_DEFAULTS, type ResNetV2Options } from './resnet.js';
export { createResNetV2Vae } from './vae.js';
export { resnetV2Vae, type Architecture } from './config.js';
export { Discriminator, discriminatorFor, discriminatorChannels, riveraTrainStep, trainRivera, type RiveraStepOptions, type RiveraStepResult, type RiveraTrainOptions, type RiveraEpoch, type PopulationVariance } from './train/rivera.js';
