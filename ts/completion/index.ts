// Skull completion with a trained model and its completion data (ts/completion/data.ts):
//   'fit'  per-case latent fitting (ts/completion/fit.ts), started from z(x) + DEV_c — the default;
//   'dev'  the paper's z(x) + γ·DEV_c (skullVAE), decoded as it is.
// z(x) is the model's evaluation latent of the defective input (μ, or μ + σ for a decoder trained on
// μ + σ). The completed skull is the decoded foreground; the implant is what it adds to the input.
// The same code serves the native Vae and voxvae/web's WasmVae through CompletionModel. No Node imports.
import { VoxvaeError, invalid } from '../errors.js';
import * as is from '../is.js';
import { CALIBRATE_HINT, classList, type CompletionData, type FitSettings } from './data.js';
import { choleskyOf, fitLatents, type FitCase, type LatentModel } from './fit.js';
import { dilate26, extractImplant } from './implant.js';

export * from './data.js';
export { choleskyOf, fitLatents, type FitCase, type FitResult, type LatentModel } from './fit.js';
export { extractImplant, largestComponent, dilate26, type ImplantOptions } from './implant.js';

export type CompletionMethod = 'fit' | 'dev';
export const COMPLETION_METHODS: readonly CompletionMethod[] = ['fit', 'dev'];

/** What completion needs of a model (Vae.completionModel(), WasmVae.completionModel()). */
export interface CompletionModel extends LatentModel {
  readonly shape: readonly [number, number, number];
  readonly completion: CompletionData | null;
  /** The evaluation latents [batch, latentSize] of `batch` inputs [batch, 1, D, H, W]. */
  encodeLatent(x: Float32Array, batch: number): Promise<Float32Array>;
  /** The model's evaluation latent ('mean' or 'mean+std'). */
  readonly evalLatent: 'mean' | 'mean+std';
}

export interface CompleteOptions {
  /** The defect class: one of the model's completion classes (e.g. 'cranial', 'facial'). */
  defect: string;
  /** Default 'fit'. */
  method?: CompletionMethod;
  /** Scale of DEV: the whole method for 'dev', the start point z(x) + γ·DEV for 'fit'. Default 1. */
  gamma?: number;
  /** Latent fitting settings over the model's stored defaults. */
  fit?: Partial<FitSettings>;
  /** Fitting progress: step, total steps. */
  onProgress?: (step: number, total: number) => void | Promise<void>;
  /** Clean the implant (ts/completion/implant.ts; default true); false keeps the raw decoded ∧ ¬input
   *  within the class's defect map. */
  clean?: boolean;
}

export interface CompletionResult {
  /** The completed skull: the input with the implant added, 0/1 per voxel (D × H × W). */
  completed: Uint8Array;
  /** The predicted implant: the decoded skull's bone that the input lacks, cleaned (see implant.ts). */
  implant: Uint8Array;
  /** The decoded skull itself (foreground above the threshold). */
  decoded: Uint8Array;
  /** The latent that was decoded. */
  z: Float32Array;
  method: CompletionMethod;
  defect: string;
  /** Latent fitting's objective per step ('fit' only). */
  objective?: number[];
}

/** The model's completion data, or ECHECKPOINT naming the command that adds it. */
export function requireCompletion(model: { completion: CompletionData | null }, where: string): CompletionData {
  if (!model.completion) throw new VoxvaeError('ECHECKPOINT', `${where}: this model has no completion data (deviation vectors, defect maps, latent prior); ${CALIBRATE_HINT}`);
  return model.completion;
}

/** Binary volume from 0/1 values (Uint8Array kept; Float32Array thresholded at 0.5). */
function asMask(x: Uint8Array | Float32Array, S: number, field: string): Uint8Array {
  if (!(x instanceof Uint8Array) && !(x instanceof Float32Array)) invalid(field, 'must be a Uint8Array or Float32Array of D × H × W values', x);
  if (x.length !== S) throw new VoxvaeError('ESHAPE', `${field} has ${x.length} voxels; the model's grid has ${S} (resample the volume to the model's shape first)`, { path: field });
  if (x instanceof Uint8Array) return x;
  const m = new Uint8Array(S);
  for (let i = 0; i < S; i++) {
    if (!Number.isFinite(x[i]!)) throw new VoxvaeError('ENOTFINITE', `${field}[${i}] is ${x[i]}`, { path: field });
    m[i] = x[i]! > 0.5 ? 1 : 0;
  }
  return m;
}

/** The foreground mask of decoded logits for sample b (probability > threshold). */
export function maskFromLogits(logits: Float32Array, b: number, C: number, S: number, threshold: number): Uint8Array {
  const t = Math.log(threshold / (1 - threshold));
  const m = new Uint8Array(S);
  for (let s = 0; s < S; s++) {
    const d = C === 2 ? logits[(b * 2 + 1) * S + s]! - logits[b * 2 * S + s]! : logits[b * S + s]!;
    m[s] = d > t ? 1 : 0;
  }
  return m;
}

/** Weights of empty voxels for latent fitting: 0 where a training defect of the class was seen (map > 0), else 1. */
export function emptyWeights(map: Uint8Array): Float32Array {
  const w = new Float32Array(map.length);
  for (let i = 0; i < map.length; i++) w[i] = map[i]! > 0 ? 0 : 1;
  return w;
}

/**
 * Completes a batch of defective skulls (each D × H × W, 0/1) of the given classes. All cases are encoded
 * and decoded together; with method 'fit' they are fitted as one batch.
 */
export async function completeSkulls(model: CompletionModel, inputs: readonly (Uint8Array | Float32Array)[], defects: readonly string[], opts: Omit<CompleteOptions, 'defect'> = {}): Promise<CompletionResult[]> {
  const data = requireCompletion(model, 'complete');
  is.options('options', opts);
  const method = is.oneOf('options.method', opts.method ?? 'fit', COMPLETION_METHODS);
  const gamma = is.number('options.gamma', opts.gamma ?? 1);
  if (inputs.length !== defects.length) throw new VoxvaeError('ESHAPE', `${inputs.length} inputs but ${defects.length} defect classes`);
  for (const d of defects) if (!data.classes.includes(d)) invalid('options.defect', `must be one of this model's defect classes (${classList(data)})`, d);
  if (data.latent !== model.evalLatent)
    throw new VoxvaeError('ECHECKPOINT', `the completion data was computed with latent '${data.latent}' but the model's decoder takes '${model.evalLatent}'; ${CALIBRATE_HINT}`);
  const S = model.voxels, k = model.latentSize, n = inputs.length;
  if (n === 0) return [];
  const masks = inputs.map((x, i) => asMask(x, S, n > 1 ? `inputs[${i}]` : 'input'));
  const x = new Float32Array(n * S);
  masks.forEach((m, i) => {
    for (let s = 0; s < S; s++) x[i * S + s] = m[s]!;
  });
  const z0 = await model.encodeLatent(x, n);
  for (let b = 0; b < n; b++) {
    const dev = data.dev[defects[b]!]!;
    for (let j = 0; j < k; j++) z0[b * k + j] = z0[b * k + j]! + gamma * dev[j]!;
  }
  let z = z0;
  let history: number[][] | null = null;
  if (method === 'fit') {
    const settings: FitSettings = { ...data.fit, ...(opts.fit ?? {}) };
    const weights = new Map<string, Float32Array>(), focus = new Map<string, Float32Array | null>();
    const f = settings.focus;
    const cases: FitCase[] = masks.map((m, b) => {
      const d = defects[b]!;
      if (!weights.has(d)) {
        weights.set(d, emptyWeights(data.defectMap[d]!));
        if (f === 1) focus.set(d, null);
        else {
          const near = dilate26(dilate26(Uint8Array.from(data.defectMap[d]!, (v) => (v > 0 ? 1 : 0)), model.shape), model.shape);
          focus.set(d, Float32Array.from(near, (v) => (v ? f : 1)));
        }
      }
      return { input: m, emptyWeight: weights.get(d)!, focus: focus.get(d)! };
    });
    const r = await fitLatents(model, cases, z0, { mean: data.prior.mean, chol: choleskyOf(data.prior.cov, k) }, settings, opts.onProgress ? (t) => opts.onProgress!(t, settings.steps) : undefined);
    z = r.z;
    history = r.history;
  }
  const logits = await model.decodeLogits(z);
  return masks.map((m, b) => {
    const decoded = maskFromLogits(logits, b, model.outChannels, S, data.threshold);
    const implant = extractImplant(decoded, m, model.shape, { region: data.defectMap[defects[b]!]!, clean: opts.clean !== false });
    const completed = new Uint8Array(S);
    for (let s = 0; s < S; s++) completed[s] = m[s] || implant[s] ? 1 : 0;
    return { completed, implant, decoded, z: z.slice(b * k, (b + 1) * k), method, defect: defects[b]!, ...(history ? { objective: history[b]! } : {}) };
  });
}

/** Completes one defective skull (D × H × W, 0/1). */
export async function completeSkull(model: CompletionModel, input: Uint8Array | Float32Array, opts: CompleteOptions): Promise<CompletionResult> {
  if (!is.plainObject(opts)) invalid('options', 'must be an object with a defect class', opts);
  const [r] = await completeSkulls(model, [input], [opts.defect], opts);
  return r!;
}
