// voxvae/web: WebAssembly inference with trained voxvae models, for browsers (and Node, with the same
// API). Imports nothing from Node: the whole graph under here is ts/wasm, ts/config, ts/errors, ts/is,
// ts/types, ts/safetensors_core and ts/completion. Load a checkpoint with loadModel(), then decode(z,
// { output }), encode(x, { batch }), completeSkull(x, { defect }) (latent fitting, or the paper's
// z + γ·DEV) or complete(x, dev, γ).
// An explicit list: every name here is in README.md's API table (test/api_surface.test.ts).
export { VoxvaeError, type ErrorCode } from '../errors.js';
export { evalLatentOf, type EvalLatent, type LatentMode, type OutputKind } from '../types.js';
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
} from '../config.js';
export { parseSafetensors, type SafeTensors } from '../safetensors_core.js';
export {
  completeSkull,
  completeSkulls,
  extractImplant,
  COMPLETION_METHODS,
  type CompleteOptions,
  type CompletionData,
  type CompletionMethod,
  type CompletionModel,
  type CompletionResult,
  type FitSettings,
} from '../completion/index.js';
export {
  loadModel,
  WasmVae,
  type CheckpointSource,
  type LoadModelOptions,
  type ModelKind,
  type OutputOptions,
} from '../wasm/model.js';
export {
  loadRuntime,
  setWasmPath,
  getWasmPath,
  wasmFeatures,
  WasmRuntime,
  WASM_FILES,
  type RuntimeOptions,
  type WasmFeatures,
  type WasmVariant,
} from '../wasm/runtime.js';
