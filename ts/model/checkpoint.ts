// The one checkpoint module (Node-free: voxvae/web uses it). A checkpoint is a safetensors file holding
// the networks' tensors by PyTorch name, optionally training state under `__voxvae__.` (Adam moments
// `__voxvae__.adam.{encoder,decoder}.{m,v}`, completion data `__voxvae__.completion.*`, ts/completion/
// data.ts) and, under the `voxvae` metadata key, a JSON object (CheckpointMeta) with the configs and the
// training state. Here: the metadata type and its validation (every field), config resolution (metadata
// vs explicit options), which networks a checkpoint holds (decided from the graphs the configs build,
// never from name prefixes), loading tensors into networks with the missing/extra checks (through
// ts/model/naming.ts), optimizer state, and serialisation — used by Vae.save/Vae.load, voxvae/web's
// loadModel, exportOnnx and the Trainer's in-memory snapshots.
// A plain PyTorch state_dict (no metadata) loads when the caller passes { config }.
import { VoxvaeError } from '../errors.js';
import { validateConfig, type VaeConfig } from '../config.js';
import { LATENT_MODES, type LatentMode } from '../types.js';
import type { OptimizerConfig } from '../network.js';
import { serializeSafetensors, toFloat32, voxvaeMetadata, type SafeTensors, type TensorEntry, type TensorToWrite } from '../safetensors_core.js';
import { completionFromCheckpoint, completionToCheckpoint, type CompletionData } from '../completion/data.js';
import { buildDecoder, buildEncoder } from './build.js';
import type { Graph } from './graph.js';
import { checkNoExtraTensors } from './naming.js';

export const CHECKPOINT_FORMAT = 'voxvae-checkpoint';
export const CHECKPOINT_VERSION = 1;
/** Tensors under this prefix are training state, not network weights. */
export const TRAINING_PREFIX = '__voxvae__.';

/** 'vae': encoder + decoder (whole or aggregated); 'decoder': a decoder alone. */
export type CheckpointKind = 'vae' | 'decoder';
export const CHECKPOINT_KINDS: readonly CheckpointKind[] = ['vae', 'decoder'];
export type NetworkPart = 'encoder' | 'decoder';
/** What a checkpoint's networks make: encoder + MONAI/ResNet-v2 decoder, encoder + skullVAE stage-2 decoder, or a decoder alone. */
export type ModelKind = 'vae' | 'aggregated' | 'decoder';

/** The `voxvae` metadata object as Vae.save writes it. */
export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  version: typeof CHECKPOINT_VERSION;
  kind: CheckpointKind;
  config: VaeConfig;
  decoderConfig: VaeConfig;
  encoderFrozen: boolean;
  seed: number;
  step: number;
  optimizer: OptimizerConfig | null;
  adamSteps: { encoder: number | null; decoder: number | null };
  /** The latent the decoder was trained on (absent in checkpoints before it was recorded: 'sample'). */
  decoderLatent?: LatentMode;
  /** Completion data's metadata (its tensors are under __voxvae__.completion.*). */
  completion?: unknown;
}

/** The metadata after validation: every field present (absent optional ones at their defaults). */
export interface CheckedMeta {
  kind: CheckpointKind;
  config: unknown;
  decoderConfig: unknown;
  encoderFrozen: boolean;
  seed: number;
  step: number;
  optimizer: OptimizerConfig | null;
  adamSteps: { encoder: number | null; decoder: number | null };
  decoderLatent: LatentMode;
  completion: unknown;
}

function bad(file: string, what: string): never {
  throw new VoxvaeError('ECHECKPOINT', `${file}: ${what}`, { path: file });
}

const count = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function checkOptimizer(o: unknown, file: string): OptimizerConfig | null {
  if (o === undefined || o === null) return null;
  const x = o as Partial<OptimizerConfig>;
  if (typeof o !== 'object' || (x.kind !== 'adam' && x.kind !== 'adamw')) bad(file, `optimizer must be null or { kind: 'adam' | 'adamw', ... }, not ${JSON.stringify(o)}`);
  if (!finite(x.lr) || !finite(x.eps) || !finite(x.weightDecay) || !Array.isArray(x.betas) || x.betas.length !== 2 || !x.betas.every(finite))
    bad(file, `optimizer needs finite lr, betas [b1, b2], eps and weightDecay, not ${JSON.stringify(o)}`);
  return { kind: x.kind, lr: x.lr, betas: [x.betas[0]!, x.betas[1]!], eps: x.eps, weightDecay: x.weightDecay };
}

/**
 * The checkpoint's voxvae metadata, validated field by field (ECHECKPOINT naming the field), or null for
 * a checkpoint without one (a plain state_dict). Optional fields of older checkpoints get their defaults:
 * seed 0, step 0, encoderFrozen false, optimizer null, adamSteps null (no optimizer state), decoderLatent
 * 'sample'. Configs are validated when resolved (resolveConfigs).
 */
export function readCheckpointMeta(st: SafeTensors, file: string): CheckedMeta | null {
  const m = voxvaeMetadata<Partial<Record<keyof CheckpointMeta, unknown>>>(st, file);
  if (!m) return null;
  if (!CHECKPOINT_KINDS.includes(m.kind as CheckpointKind))
    throw new VoxvaeError('ECHECKPOINT', `${file} is a voxvae checkpoint of kind '${String(m.kind)}'; voxvae loads 'vae' checkpoints (whole or aggregated) and decoders`, { path: file });
  const kind = m.kind as CheckpointKind;
  if (m.config === undefined && m.decoderConfig === undefined) bad(file, 'the voxvae metadata has no config');
  if (kind === 'vae' && m.config === undefined) bad(file, "a 'vae' checkpoint's metadata has no config (the encoder's architecture)");
  const seed = m.seed ?? 0, step = m.step ?? 0, encoderFrozen = m.encoderFrozen ?? false, decoderLatent = m.decoderLatent ?? 'sample';
  if (!count(seed)) bad(file, `seed must be a non-negative integer, not ${JSON.stringify(seed)}`);
  if (!count(step)) bad(file, `step must be a non-negative integer, not ${JSON.stringify(step)}`);
  if (typeof encoderFrozen !== 'boolean') bad(file, `encoderFrozen must be a boolean, not ${JSON.stringify(encoderFrozen)}`);
  if (!LATENT_MODES.includes(decoderLatent as LatentMode)) bad(file, `decoderLatent must be 'sample', 'mean' or 'mean+std', not ${JSON.stringify(decoderLatent)}`);
  const adamSteps = { encoder: null as number | null, decoder: null as number | null };
  if (m.adamSteps !== undefined && m.adamSteps !== null) {
    const a = m.adamSteps as Record<string, unknown>;
    if (typeof a !== 'object') bad(file, `adamSteps must be { encoder, decoder } (step counts or null), not ${JSON.stringify(a)}`);
    for (const part of ['encoder', 'decoder'] as const) {
      const v = a[part] ?? null;
      if (v !== null && !count(v)) bad(file, `adamSteps.${part} must be a non-negative integer or null, not ${JSON.stringify(v)}`);
      adamSteps[part] = v as number | null;
    }
  }
  return {
    kind,
    config: m.config ?? m.decoderConfig,
    decoderConfig: m.decoderConfig ?? m.config,
    encoderFrozen,
    seed,
    step,
    optimizer: checkOptimizer(m.optimizer, file),
    adamSteps,
    decoderLatent: decoderLatent as LatentMode,
    completion: m.completion,
  };
}

export interface ConfigOptions {
  /** The architecture: required for a checkpoint without voxvae metadata; overrides the metadata's. */
  config?: VaeConfig;
  /** The decoder's architecture when it differs from config (aggregated VAE without metadata). */
  decoderConfig?: VaeConfig;
  /** Which network the caller builds: both ('vae', default), or one. */
  part?: 'vae' | NetworkPart;
}

export interface ResolvedConfigs {
  meta: CheckedMeta | null;
  /** The encoder's config (null when only a decoder config is known). */
  config: VaeConfig | null;
  decoderConfig: VaeConfig;
}

/**
 * The configs to build: explicit options first, then the metadata. With an explicit config and no
 * decoderConfig the decoder follows the config, keeping the checkpoint's decoder block (an aggregated
 * VAE's skullVAE decoder); without an explicit config, the metadata's configs. A checkpoint without
 * metadata and no config is ECHECKPOINT; an encoder is not required unless `part` asks for it.
 */
export function resolveConfigs(st: SafeTensors, file: string, opts: ConfigOptions = {}): ResolvedConfigs {
  const meta = readCheckpointMeta(st, file);
  const part = opts.part ?? 'vae';
  const cfgSource = opts.config ?? (meta?.kind === 'decoder' ? undefined : meta?.config);
  const metaDecoder = meta?.decoderConfig as Partial<VaeConfig> | undefined;
  let dcfgSource: unknown;
  let dcfgField: string;
  if (opts.decoderConfig) [dcfgSource, dcfgField] = [opts.decoderConfig, 'options.decoderConfig'];
  else if (opts.config) [dcfgSource, dcfgField] = [{ ...opts.config, decoderBlock: metaDecoder?.decoderBlock ?? opts.config.decoderBlock }, 'options.config'];
  else [dcfgSource, dcfgField] = [metaDecoder, `${file}: decoderConfig`];
  if (!dcfgSource && !cfgSource)
    throw new VoxvaeError('ECHECKPOINT', `${file} has no voxvae metadata: pass { config } describing the architecture (e.g. monaiVarAutoEncoder({...}))`, { path: file });
  if (part !== 'decoder' && !cfgSource)
    throw new VoxvaeError('ECHECKPOINT', `${file} holds ${meta?.kind === 'decoder' ? 'a decoder alone' : 'no encoder config'}: ${part === 'encoder' ? 'there is no encoder to use' : 'load it as a decoder (voxvae/web loadModel, or Decoder), or pass { config } for the encoder'}`, { path: file });
  const config = cfgSource ? validateConfig(cfgSource, opts.config ? 'options.config' : `${file}: config`) : null;
  const decoderConfig = validateConfig(dcfgSource ?? config, dcfgSource ? dcfgField : 'config');
  if (config && decoderConfig.latentSize !== config.latentSize)
    throw new VoxvaeError('EINVAL', `decoderConfig.latentSize must equal the encoder's ${config.latentSize} (got ${decoderConfig.latentSize})`, { path: 'decoderConfig.latentSize' });
  return { meta, config, decoderConfig };
}

/** The networks a checkpoint holds, decided from the graphs its configs build. */
export interface CheckpointNetworks {
  encoder: Graph | null;
  decoder: Graph;
  /** The checkpoint has tensors of the encoder graph. */
  hasEncoder: boolean;
  kind: ModelKind;
}

/** Parameter prefix of a tensor name ("decode.decode_0.conv.conv.weight" → "decode.decode_0.conv.conv"). */
function owner(name: string): string {
  const i = name.lastIndexOf('.');
  return i < 0 ? name : name.slice(0, i);
}

/** The weight names of the checkpoint (training state aside). */
export function weightNames(st: SafeTensors): string[] {
  return [...st.tensors.keys()].filter((k) => !k.startsWith(TRAINING_PREFIX));
}

/**
 * Which networks the checkpoint holds: the decoder (required: ECHECKPOINT when none of its tensors is
 * there) and the encoder when its config is known and its tensors are there (ResNet-v2 and MONAI alike).
 */
export function checkpointNetworks(st: SafeTensors, file: string, r: ResolvedConfigs): CheckpointNetworks {
  const names = weightNames(st);
  const decoder = buildDecoder(r.decoderConfig);
  const encoder = r.config ? buildEncoder(r.config) : null;
  const dec = ownedBy(decoder);
  if (!names.some(dec)) {
    const want = [...new Set(decoder.nodes.map((n) => n.name).filter((n) => n !== null))].slice(0, 2).map((n) => `${n}.*`).join(', ');
    throw new VoxvaeError('ECHECKPOINT', `${file} holds no decoder tensors (${want}): it is not a checkpoint of this ${r.decoderConfig.architecture === 'resnet-v2' ? 'ResNet-v2' : 'voxvae/MONAI'} VAE${names.length ? ` (it has ${names.slice(0, 4).join(', ')}${names.length > 4 ? ', ...' : ''})` : ' (it has no tensors)'}`, { path: file });
  }
  const hasEncoder = encoder !== null && names.some(ownedBy(encoder));
  const kind: ModelKind = !hasEncoder ? 'decoder' : r.decoderConfig.decoderBlock === 'skullvae' ? 'aggregated' : 'vae';
  return { encoder, decoder, hasEncoder, kind };
}

/** A network that takes tensors by name (native Network.loadStateDict, WasmNet.load). */
export interface NamedLoader {
  (tensors: ReadonlyMap<string, TensorEntry>, file: string): Set<string>;
}

/**
 * Loads every network's tensors, then refuses tensors none of them used (training state, and the
 * names `ignore` accepts, aside).
 */
export function loadNetworks(st: SafeTensors, file: string, loaders: NamedLoader[], ignore: (name: string) => boolean = () => false): void {
  const used = new Set<string>();
  for (const load of loaders) for (const k of load(st.tensors, file)) used.add(k);
  checkNoExtraTensors(weightNames(st), used, file, ignore);
}

/** A tensor-name test for a graph's tensors (e.g. an encoder to ignore). */
export function ownedBy(g: Graph): (name: string) => boolean {
  const prefixes = new Set(g.nodes.map((n) => n.name).filter((n): n is string => n !== null));
  return (k) => prefixes.has(owner(k));
}

export interface AdamState {
  step: number;
  m: Float32Array;
  v: Float32Array;
}

/** The one naming of optimizer state in a checkpoint. */
export function adamTensorName(part: NetworkPart, moment: 'm' | 'v'): string {
  return `${TRAINING_PREFIX}adam.${part}.${moment}`;
}

/** The Adam state of one network, sized for `numParams` (null when the checkpoint has none). */
export function readAdamState(st: SafeTensors, meta: CheckedMeta, file: string, part: NetworkPart, numParams: number): AdamState | null {
  const step = meta.adamSteps[part];
  if (step === null) return null;
  const m = st.tensors.get(adamTensorName(part, 'm')), v = st.tensors.get(adamTensorName(part, 'v'));
  if (!m || !v) bad(file, `optimizer state for the ${part} is missing`);
  const mf = toFloat32(m), vf = toFloat32(v);
  if (mf.length !== numParams || vf.length !== numParams) bad(file, `optimizer state for the ${part} has the wrong size`);
  return { step, m: mf, v: vf };
}

/** Everything Vae.save writes. */
export interface CheckpointState extends Pick<CheckpointMeta, 'config' | 'decoderConfig' | 'encoderFrozen' | 'seed' | 'step' | 'optimizer'> {
  decoderLatent: LatentMode;
  /** Networks' state_dicts by PyTorch name. */
  encoder: Map<string, TensorToWrite>;
  decoder: Map<string, TensorToWrite>;
  adam: { encoder: AdamState | null; decoder: AdamState | null };
  completion: CompletionData | null;
}

/** A checkpoint's bytes (the safetensors file Vae.save writes; the Trainer keeps them in memory). */
export function serializeCheckpoint(s: CheckpointState): Uint8Array {
  const tensors = new Map<string, TensorToWrite>();
  for (const [k, v] of s.encoder) tensors.set(k, v);
  for (const [k, v] of s.decoder) tensors.set(k, v);
  for (const part of ['encoder', 'decoder'] as const) {
    const a = s.adam[part];
    if (!a) continue;
    tensors.set(adamTensorName(part, 'm'), { dtype: 'F32', shape: [a.m.length], data: a.m });
    tensors.set(adamTensorName(part, 'v'), { dtype: 'F32', shape: [a.v.length], data: a.v });
  }
  const meta: CheckpointMeta = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    kind: 'vae',
    config: s.config,
    decoderConfig: s.decoderConfig,
    encoderFrozen: s.encoderFrozen,
    seed: s.seed,
    step: s.step,
    optimizer: s.optimizer,
    adamSteps: { encoder: s.adam.encoder?.step ?? null, decoder: s.adam.decoder?.step ?? null },
    decoderLatent: s.decoderLatent,
  };
  if (s.completion) {
    const c = completionToCheckpoint(s.completion);
    for (const [k, v] of c.tensors) tensors.set(k, v);
    meta.completion = c.meta;
  }
  return serializeSafetensors(tensors, { voxvae: JSON.stringify(meta), format: 'pt' });
}

/** Training state read back (defaults for a checkpoint without metadata). */
export interface TrainingState {
  seed: number;
  step: number;
  encoderFrozen: boolean;
  optimizer: OptimizerConfig | null;
  decoderLatent: LatentMode;
  completion: CompletionData | null;
}

/** The training state and completion data of a checkpoint, checked against the decoder's sizes. */
export function readTrainingState(st: SafeTensors, file: string, r: ResolvedConfigs): TrainingState {
  const m = r.meta;
  const [D, H, W] = r.decoderConfig.inputShape;
  return {
    seed: m?.seed ?? 0,
    step: m?.step ?? 0,
    encoderFrozen: m?.encoderFrozen ?? false,
    optimizer: m?.optimizer ?? null,
    decoderLatent: m?.decoderLatent ?? 'sample',
    completion: completionFromCheckpoint(st, m?.completion, file, r.decoderConfig.latentSize, D * H * W),
  };
}
