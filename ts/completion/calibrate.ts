// calibrateCompletion: computes a model's completion data (ts/completion/data.ts) from training skulls
// with paired defects — a dataset whose items are labelled 'complete' and one label per defect class
// (e.g. 'cranial', 'facial') and share a pairId with their complete skull (the synthetic skulls,
// SkullBreak and SkullFix layouts). Everything is computed with the model's evaluation latent.
import { VoxvaeError } from '../errors.js';
import * as is from '../is.js';
import type { VolumeDataset } from '../data/dataset.js';
import { centroids, deviationVectors, encodeDataset, type EncodedDataset } from '../latent/index.js';
import type { Vae } from '../vae.js';
import { DEFAULT_FIT, type CompletionData, type FitSettings } from './data.js';

export interface CalibrateOptions {
  /** The reference class (default 'complete'). */
  reference?: string;
  /** Latent fitting defaults to store (over DEFAULT_FIT). */
  fit?: Partial<FitSettings>;
  /** Foreground threshold (default 0.5). */
  threshold?: number;
  /** Voxels a defect map is dilated by (default 1): misaligned defects still count as possible. */
  dilate?: number;
  /** Described in reports (default: the dataset size). */
  source?: string;
  /** An encoding of the dataset made already (encodeDataset(vae, dataset)). */
  encoded?: EncodedDataset;
  batchSize?: number;
}

/** 6-neighbourhood dilation of a 0/1 or fraction map by r voxels (max filter). */
function dilate(map: Float32Array, shape: readonly [number, number, number], r: number): Float32Array {
  const [D, H, W] = shape;
  let cur = map;
  for (let it = 0; it < r; it++) {
    const out = new Float32Array(cur);
    for (let d = 0; d < D; d++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++) {
          const i = (d * H + h) * W + w;
          let m = cur[i]!;
          if (d > 0) m = Math.max(m, cur[i - H * W]!);
          if (d < D - 1) m = Math.max(m, cur[i + H * W]!);
          if (h > 0) m = Math.max(m, cur[i - W]!);
          if (h < H - 1) m = Math.max(m, cur[i + W]!);
          if (w > 0) m = Math.max(m, cur[i - 1]!);
          if (w < W - 1) m = Math.max(m, cur[i + 1]!);
          out[i] = m;
        }
    cur = out;
  }
  return cur;
}

/** Computes completion data for `vae` from `dataset`, stores it in vae.completion and returns it. */
export async function calibrateCompletion(vae: Vae, dataset: VolumeDataset, opts: CalibrateOptions = {}): Promise<CompletionData> {
  is.options('options', opts);
  const ref = opts.reference ?? 'complete';
  const threshold = is.number('options.threshold', opts.threshold ?? 0.5, { above: 0, below: 1 });
  const r = is.integer('options.dilate', opts.dilate ?? 1, 0, 64);
  const enc = opts.encoded ?? (await encodeDataset(vae, dataset, { batchSize: opts.batchSize ?? 4 }));
  if (enc.latent !== vae.evalLatent) throw new VoxvaeError('EINVAL', `options.encoded holds '${enc.latent}' latents; this model's evalLatent is '${vae.evalLatent}'`, { path: 'options.encoded' });
  const { k, n } = enc;
  const classes = [...new Set(enc.labels)].filter((l) => l !== ref).sort();
  const refRows = enc.labels.map((l, i) => (l === ref ? i : -1)).filter((i) => i >= 0);
  if (refRows.length < 2) throw new VoxvaeError('EINVAL', `calibration needs at least 2 '${ref}' skulls; the dataset has ${refRows.length}`);
  if (classes.length === 0) throw new VoxvaeError('EINVAL', `calibration needs defective skulls labelled with their defect class (e.g. 'cranial', 'facial') beside the '${ref}' ones; the dataset has only '${ref}'`);
  const devs = deviationVectors(enc.z, k, enc.labels, enc.pairIds, { reference: ref });
  const dev: Record<string, Float32Array> = {}, pairs: Record<string, number> = {};
  for (const c of classes) {
    const d = devs.get(c)!;
    if (d.method !== 'paired') throw new VoxvaeError('EINVAL', `every '${c}' skull needs its '${ref}' twin (the same pairId) to compute its defect map and deviation vector`);
    dev[c] = d.vector;
    pairs[c] = d.pairs;
  }

  // The Gaussian of the complete skulls' latents (unbiased covariance).
  const mean = centroids(enc.z, k, enc.labels).get(ref)!;
  const cov = new Float32Array(k * k);
  for (let a = 0; a < k; a++)
    for (let b = 0; b < k; b++) {
      let s = 0;
      for (const i of refRows) s += (enc.z[i * k + a]! - mean[a]!) * (enc.z[i * k + b]! - mean[b]!);
      cov[a * k + b] = s / (refRows.length - 1);
    }
  const completeLatents = new Float32Array(refRows.length * k);
  refRows.forEach((i, r2) => completeLatents.set(enc.z.subarray(i * k, (i + 1) * k), r2 * k));

  // Defect maps: per class, the fraction of pairs whose implant (complete ∧ ¬defective) covers each voxel.
  const shape = vae.decoder.config.inputShape;
  const S = shape[0] * shape[1] * shape[2];
  const refByPair = new Map<string, number>();
  refRows.forEach((i) => refByPair.set(enc.pairIds[i]!, enc.indices[i]!));
  const defectMap: Record<string, Uint8Array> = {};
  for (const c of classes) {
    const acc = new Float32Array(S);
    let count = 0;
    for (let i = 0; i < n; i++) {
      if (enc.labels[i] !== c) continue;
      const full = (await dataset.get(refByPair.get(enc.pairIds[i]!)!)).data;
      const def = (await dataset.get(enc.indices[i]!)).data;
      if (full.length !== S || def.length !== S) throw new VoxvaeError('ESHAPE', `the dataset's volumes have ${def.length} voxels, the model ${S}`);
      for (let s = 0; s < S; s++) if (full[s] && !def[s]) acc[s]! += 1;
      count++;
    }
    for (let s = 0; s < S; s++) acc[s] = acc[s]! / count;
    const wide = dilate(acc, shape, r);
    defectMap[c] = Uint8Array.from(wide, (f) => (f > 0 ? Math.max(1, Math.min(255, Math.round(f * 255))) : 0));
  }
  const data: CompletionData = {
    latent: vae.evalLatent,
    threshold,
    classes,
    dev,
    pairs,
    defectMap,
    prior: { mean, cov, n: refRows.length },
    completeLatents,
    fit: { ...DEFAULT_FIT, ...(opts.fit ?? {}) },
    source: opts.source ?? `${n} volumes (${refRows.length} ${ref})`,
  };
  vae.completion = data;
  return data;
}
