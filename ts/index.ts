// voxvae: 3D convolutional VAEs for volumetric shapes — the public API. An explicit list: every name
// here is in README.md's API table (test/api_surface.test.ts checks both ways). Plumbing (spec
// builders, resolved-spec types, file helpers) stays in its module, importable by tests, not by users.

// Errors and the shared vocabulary.
export { VoxvaeError, type ErrorCode } from './errors.js';
export { evalLatentOf, type Backend, type EvalLatent, type LatentMode, type Mode, type OutputKind } from './types.js';

// Model configs: presets named after the architecture they describe.
export {
  monaiVarAutoEncoder,
  skullVaeDecoder,
  resnetV2Vae,
  validateConfig,
  bottleneckShape,
  type VaeConfig,
  type VaeConfigInput,
  type Architecture,
  type OutputActivation,
  type NormKind,
  type ActivationKind,
  type DecoderBlock,
} from './config.js';
export { type ResNetV2Options } from './config.js';
export { patchGan3d, validateDiscriminatorConfig, type DiscriminatorConfig, type DiscriminatorConfigInput } from './discriminator.js';

// Models over the native engine.
export {
  Vae,
  Encoder,
  Decoder,
  setThreads,
  setCpuIsa,
  cpuIsa,
  type CpuIsa,
  type CreateOptions,
  type EncodeOptions,
  type DecodeOptions,
  type ForwardOptions,
  type Batch,
  type ReconLoss,
  type StepResult,
  type TrainStepOptions,
} from './vae.js';
export type { OptimizerConfig } from './network.js';
export { Discriminator, discriminatorFor } from './train/rivera.js';
export { addonFile } from './native.js';

// Checkpoint files.
export { readSafetensors, parseSafetensors, serializeSafetensors, type SafeTensors } from './safetensors.js';

// Training.
export { Trainer, reconstructionDice, type TrainerOptions, type TrainResult, type StepInfo, type EpochInfo, type RollbackInfo, type LrScheduleSpec } from './train/trainer.js';
export { trainTwoStage, trainStage2, stage2DecoderConfig, SKULLVAE_STAGE1, SKULLVAE_STAGE2, type TwoStageOptions, type TwoStageResult } from './train/two_stage.js';
export { initDistributed, ProcessGroup, distAvailable, type DistributedOptions } from './dist/index.js';
export { riveraTrainStep, trainRivera, type RiveraStepOptions, type RiveraStepResult, type RiveraTrainOptions, type RiveraEpoch, type PopulationVariance } from './train/rivera.js';
export {
  createBetaSchedule,
  betaScheduleFromState,
  ConstantBeta,
  WarmupBeta,
  CyclicalBeta,
  CapacityAnnealing,
  ControlVaeController,
  DynamicVaeController,
  type BetaSchedule,
  type BetaScheduleSpec,
  type BetaScheduleKind,
  type BetaScheduleState,
  type BetaInfo,
  type ConstantSpec,
  type WarmupSpec,
  type CyclicalSpec,
  type CapacitySpec,
  type ControlVaeSpec,
  type DynamicVaeSpec,
} from './train/beta.js';

// Latent space, metrics, completion.
export * as latent from './latent/index.js';
export * as metrics from './metrics/index.js';
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

// Experiments (what `npm start` and `voxvae experiment` run).
export { runBetaTradeoff, runPipeline, runAblation, METHODS as EXPERIMENT_METHODS, type BetaTradeoffOptions, type MethodRow, type MethodName, type Scale, type PipelineOptions, type PipelineResult } from './experiment/index.js';

// The data layer (docs/data.md): volumes, files, datasets, synthetic skulls.
export {
  readVolume,
  readVolumeHeader,
  writeVolume,
  readNifti,
  writeNifti,
  readNrrd,
  writeNrrd,
  createVolume,
  affineOf,
  resample,
  threshold,
  crop,
  pad,
  cropOrPad,
  VolumeDataset,
  generateSkullDataset,
  writeSkullDataset,
  datasetInfo,
  type Volume,
  type BinaryVolume,
  type VolumeHeader,
  type Mat3,
  type Batch as DatasetBatch,
  type BatchItem,
  type BatchOptions,
  type AugmentOptions,
  type DatasetOptions,
  type DatasetInfo,
  type SynthOptions,
  type SyntheticDataset,
  type SyntheticSkull,
  type SkullFactors,
} from './data/index.js';
