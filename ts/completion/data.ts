// What shape completion needs besides the weights, stored in the checkpoint beside them: the latent the
// vectors were computed in, the deviation vector DEV_c of each defect class (skullVAE: mean over pairs of
// z_complete − z_c), the Gaussian of the complete skulls' latents (the prior latent fitting uses), each
// class's defect map (how often a training defect of that class covered each voxel: where bone may be
// missing), the complete training skulls' latents (nearest-neighbour completion, latent exploration) and
// the fitting defaults. One module reads and writes it for the native Vae, voxvae/web and the CLI.
// No Node imports: the browser build uses it.
import { VoxvaeError } from '../errors.js';
import { toFloat32, type SafeTensors, type TensorEntry, type TensorToWrite } from '../safetensors_core.js';

export type EvalLatentMode = 'mean' | 'mean+std';

/** Latent fitting's settings (see ts/completion/fit.ts). */
export interface FitSettings {
  /** Adam steps on z. */
  steps: number;
  /** Adam learning rate on z. */
  lr: number;
  /** Weight of the prior term ½(z − m)ᵀ Σ⁻¹(z − m) against the data term (mean BCE per input bone voxel). */
  priorWeight: number;
  /** Weight of input-bone voxels (must be covered) relative to empty voxels outside the defect map. */
  boneWeight: number;
  /** Factor on the weight of every voxel within 2 voxels of the class's defect map: the fit matches the
   *  defect's surroundings first (its rim decides the implant), the rest of the skull second. */
  focus: number;
}

export interface CompletionData {
  /** The latent every vector here was computed with (the model's evalLatent when calibrated). */
  latent: EvalLatentMode;
  /** Foreground probability above which a voxel is bone. */
  threshold: number;
  /** Defect classes, e.g. ['cranial', 'facial']. */
  classes: string[];
  /** DEV_c per class, latentSize values each. */
  dev: Record<string, Float32Array>;
  /** Pairs each DEV was averaged over. */
  pairs: Record<string, number>;
  /** Per class, the fraction of that class's training defects covering each voxel, ×255 (Uint8, D×H×W). */
  defectMap: Record<string, Uint8Array>;
  /** Gaussian of the complete training skulls' latents: mean (k) and covariance (k × k, row-major). */
  prior: { mean: Float32Array; cov: Float32Array; n: number };
  /** Latents of the complete training skulls (n × k), in training order. */
  completeLatents: Float32Array;
  fit: FitSettings;
  /** What the data was computed from (free text for reports, e.g. '300 synthetic skulls, seed 1'). */
  source: string;
}

/** Metadata part (JSON, in the checkpoint's voxvae metadata under `completion`). */
interface CompletionMeta {
  version: 1;
  latent: EvalLatentMode;
  threshold: number;
  classes: string[];
  pairs: Record<string, number>;
  fit: FitSettings;
  source: string;
  priorCount: number;
}

export const COMPLETION_PREFIX = '__voxvae__.completion.';

/** The command that adds completion data to a model, for error messages. */
export const CALIBRATE_HINT = 'run `voxvae calibrate --model MODEL --data DIR` (or calibrateCompletion() in the API) on training skulls with paired defects';

/** Tuned on validation skulls (seed 9001), never on the main job's test skulls (seed 1001). */
export const DEFAULT_FIT: FitSettings = { steps: 80, lr: 0.1, priorWeight: 0.02, boneWeight: 3, focus: 4 };

const CLASS_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** The tensors and the metadata object that store `d` in a checkpoint. */
export function completionToCheckpoint(d: CompletionData): { tensors: Map<string, TensorToWrite>; meta: CompletionMeta } {
  const t = new Map<string, TensorToWrite>();
  const k = d.prior.mean.length;
  for (const c of d.classes) {
    t.set(`${COMPLETION_PREFIX}dev.${c}`, { dtype: 'F32', shape: [k], data: d.dev[c]! });
    const m = d.defectMap[c]!;
    t.set(`${COMPLETION_PREFIX}defect_map.${c}`, { dtype: 'U8', shape: [m.length], data: m });
  }
  t.set(`${COMPLETION_PREFIX}prior.mean`, { dtype: 'F32', shape: [k], data: d.prior.mean });
  t.set(`${COMPLETION_PREFIX}prior.cov`, { dtype: 'F32', shape: [k, k], data: d.prior.cov });
  t.set(`${COMPLETION_PREFIX}complete_latents`, { dtype: 'F32', shape: [d.completeLatents.length / k, k], data: d.completeLatents });
  return {
    tensors: t,
    meta: { version: 1, latent: d.latent, threshold: d.threshold, classes: [...d.classes], pairs: { ...d.pairs }, fit: { ...d.fit }, source: d.source, priorCount: d.prior.n },
  };
}

/**
 * Reads completion data from a checkpoint's tensors and its metadata's `completion` object (null when the
 * checkpoint has none). Every size is checked against the model: latentSize k and voxels per volume.
 */
export function completionFromCheckpoint(st: SafeTensors, metaCompletion: unknown, file: string, k: number, voxels: number): CompletionData | null {
  if (metaCompletion === undefined || metaCompletion === null) return null;
  const bad = (what: string): never => {
    throw new VoxvaeError('ECHECKPOINT', `${file}: completion data ${what}; recompute it: ${CALIBRATE_HINT}`, { path: file });
  };
  const m = metaCompletion as Partial<CompletionMeta>;
  if (typeof m !== 'object' || m.version !== 1) bad('has an unknown version');
  if (m.latent !== 'mean' && m.latent !== 'mean+std') bad(`has latent ${JSON.stringify(m.latent)}, not 'mean' or 'mean+std'`);
  if (typeof m.threshold !== 'number' || !(m.threshold > 0 && m.threshold < 1)) bad('has no threshold in (0, 1)');
  if (!Array.isArray(m.classes) || m.classes.length === 0 || !m.classes.every((c) => typeof c === 'string' && CLASS_NAME.test(c)) || new Set(m.classes).size !== m.classes.length)
    bad('has no list of defect class names');
  const fit = m.fit as Partial<FitSettings> | undefined;
  if (!fit || !(Number.isInteger(fit.steps) && fit.steps! >= 0 && fit.steps! <= 100000) || !(fit.lr! > 0 && Number.isFinite(fit.lr)) || !(fit.priorWeight! >= 0 && Number.isFinite(fit.priorWeight)) || !(fit.boneWeight! > 0 && Number.isFinite(fit.boneWeight)) || !(fit.focus! >= 1 && Number.isFinite(fit.focus)))
    bad('has invalid fitting settings');
  const get = (name: string, count: number, dtype: TensorEntry['dtype'] | 'float'): TensorEntry => {
    const e = st.tensors.get(COMPLETION_PREFIX + name);
    if (!e) bad(`lacks the tensor ${COMPLETION_PREFIX + name}`);
    const n = e!.shape.reduce((a, d) => a * d, 1);
    if (n !== count) bad(`tensor ${name} has ${n} values, expected ${count}`);
    if (dtype === 'float' ? !['F32', 'F64', 'F16', 'BF16'].includes(e!.dtype) : e!.dtype !== dtype) bad(`tensor ${name} has dtype ${e!.dtype}`);
    return e!;
  };
  const finite = (name: string, a: Float32Array): Float32Array => {
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) bad(`tensor ${name} holds a non-finite value`);
    return a;
  };
  const dev: Record<string, Float32Array> = {}, defectMap: Record<string, Uint8Array> = {}, pairs: Record<string, number> = {};
  for (const c of m.classes!) {
    dev[c] = finite(`dev.${c}`, toFloat32(get(`dev.${c}`, k, 'float')));
    defectMap[c] = new Uint8Array(get(`defect_map.${c}`, voxels, 'U8').bytes);
    pairs[c] = typeof m.pairs?.[c] === 'number' ? m.pairs[c]! : 0;
  }
  const complete = st.tensors.get(`${COMPLETION_PREFIX}complete_latents`);
  if (!complete || complete.shape.length !== 2 || complete.shape[1] !== k || complete.shape[0]! < 1) bad(`lacks complete_latents of shape [n, ${k}]`);
  return {
    latent: m.latent!,
    threshold: m.threshold!,
    classes: [...m.classes!],
    dev,
    pairs,
    defectMap,
    prior: {
      mean: finite('prior.mean', toFloat32(get('prior.mean', k, 'float'))),
      cov: finite('prior.cov', toFloat32(get('prior.cov', k * k, 'float'))),
      n: typeof m.priorCount === 'number' ? m.priorCount : 0,
    },
    completeLatents: finite('complete_latents', toFloat32(get('complete_latents', complete!.shape[0]! * k, 'float'))),
    fit: { steps: fit!.steps!, lr: fit!.lr!, priorWeight: fit!.priorWeight!, boneWeight: fit!.boneWeight!, focus: fit!.focus! },
    source: typeof m.source === 'string' ? m.source : '',
  };
}

/** The defect classes a model can complete, as a message fragment. */
export function classList(d: CompletionData): string {
  return d.classes.map((c) => `'${c}'`).join(', ');
}
