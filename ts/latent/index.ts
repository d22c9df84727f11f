// Latent-space manipulation (skullVAE's `AggreegateVAE.py`, METHODS §1.3 item 2): encode a dataset
// to μ and σ, class centroids, deviation vectors DEV_c = mean over pairs of (z_complete − z_c) (or
// the difference of centroids when unpaired), shape completion z + γ·DEV, interpolation, traversal
// along one dimension in units of σ, sampling from the prior, nearest neighbours.
// Latents are row-major n × k Float32Arrays (the layout Vae.encode/decode use).
import { VoxvaeError, invalid } from '../errors.js';
import * as is from '../is.js';
import type { VolumeDataset } from '../data/dataset.js';
import { Rng } from '../data/synth/rng.js';
import type { Vae } from '../vae.js';
import type { EvalLatent, LatentMode } from '../types.js';

export interface EncodedDataset {
  /** n × k evaluation latents: what the model's decoder is fed (vae.evalLatent: μ, or μ + σ). */
  z: Float32Array;
  /** Which latent z holds. */
  latent: EvalLatent;
  /** n × k posterior means. */
  mu: Float32Array;
  /** n × k posterior standard deviations. */
  sigma: Float32Array;
  n: number;
  k: number;
  labels: string[];
  pairIds: string[];
  /** Dataset indices, in row order. */
  indices: number[];
}

/** Encodes every volume of a dataset (eval mode) in dataset order; z is the model's evaluation latent. */
export async function encodeDataset(vae: Vae, ds: VolumeDataset, opts: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {}): Promise<EncodedDataset> {
  const k = vae.config.latentSize;
  const latent = vae.evalLatent;
  const mus: Float32Array[] = [], sigmas: Float32Array[] = [], zs: Float32Array[] = [];
  const labels: string[] = [], pairIds: string[] = [], indices: number[] = [];
  for await (const b of ds.batches({ batchSize: opts.batchSize ?? 4, shuffle: false, prefetch: 0 })) {
    const { mu, logvar, z } = await vae.encodeLatent(b.input, { latent, batch: b.items.length });
    zs.push(z);
    const s = new Float32Array(logvar.length);
    for (let i = 0; i < s.length; i++) s[i] = Math.exp(0.5 * logvar[i]!);
    mus.push(mu);
    sigmas.push(s);
    for (const it of b.items) {
      labels.push(it.item.label);
      pairIds.push(it.item.pairId);
      indices.push(it.index);
    }
    opts.onProgress?.(labels.length, ds.length);
  }
  const n = labels.length;
  const cat = (parts: Float32Array[]): Float32Array => {
    const out = new Float32Array(n * k);
    let o = 0;
    for (const p of parts) (out.set(p, o), (o += p.length));
    return out;
  };
  return { z: cat(zs), latent, mu: cat(mus), sigma: cat(sigmas), n, k, labels, pairIds, indices };
}

/** Latents from an encoded dataset: μ, a sample μ + σ·ε, or μ + σ (what skullVAE's eval-mode code used).
 *  (The model's own evaluation latent is already in `e.z`.) */
export function latentCodes(e: EncodedDataset, mode: LatentMode = 'mean', seed = 0): Float32Array {
  const z = new Float32Array(e.mu);
  if (mode === 'mean') return z;
  const rng = new Rng(seed, 0x1a7);
  for (let i = 0; i < z.length; i++) z[i] = z[i]! + e.sigma[i]! * (mode === 'mean+std' ? 1 : rng.normal());
  return z;
}

function rowsOf(z: Float32Array, k: number, field: string): number {
  is.float32Array(field, z);
  if (!Number.isInteger(k) || k < 1 || z.length % k !== 0) throw new VoxvaeError('ESHAPE', `${field} has ${z.length} values, not a multiple of the latent size ${k}`, { path: field });
  return z.length / k;
}

/** Mean latent per label. */
export function centroids(z: Float32Array, k: number, labels: readonly string[]): Map<string, Float32Array> {
  const n = rowsOf(z, k, 'z');
  if (labels.length !== n) invalid('labels', `must have one label per row (${n})`, labels.length);
  const sums = new Map<string, { v: Float64Array; c: number }>();
  for (let i = 0; i < n; i++) {
    const s = sums.get(labels[i]!) ?? { v: new Float64Array(k), c: 0 };
    for (let j = 0; j < k; j++) s.v[j]! += z[i * k + j]!;
    s.c++;
    sums.set(labels[i]!, s);
  }
  const out = new Map<string, Float32Array>();
  for (const [l, s] of [...sums].sort(([a], [b]) => (a < b ? -1 : 1))) out.set(l, Float32Array.from(s.v, (x) => x / s.c));
  return out;
}

export interface DeviationVector {
  label: string;
  /** DEV_c, length k: moves a class-c latent towards the reference class. */
  vector: Float32Array;
  /** 'paired': mean of z_ref − z_c over pairs sharing a pairId; 'centroid': difference of class means. */
  method: 'paired' | 'centroid';
  pairs: number;
}

/**
 * DEV_c for every label c other than `reference` (default 'complete'). Paired when every class-c row
 * has a reference row with the same pairId (skullVAE's case), else the difference of centroids.
 * With complete pairing both give the same vector; pairing only matters when classes are unbalanced.
 */
export function deviationVectors(z: Float32Array, k: number, labels: readonly string[], pairIds?: readonly string[], opts: { reference?: string } = {}): Map<string, DeviationVector> {
  const n = rowsOf(z, k, 'z');
  const ref = opts.reference ?? 'complete';
  const cents = centroids(z, k, labels);
  if (!cents.has(ref)) invalid('labels', `have no '${ref}' rows to take deviations towards`, [...cents.keys()]);
  const refRow = new Map<string, number>();
  if (pairIds) {
    if (pairIds.length !== n) invalid('pairIds', `must have one id per row (${n})`, pairIds.length);
    for (let i = 0; i < n; i++) if (labels[i] === ref) refRow.set(pairIds[i]!, i);
  }
  const out = new Map<string, DeviationVector>();
  for (const label of cents.keys()) {
    if (label === ref) continue;
    const rows = [...Array(n).keys()].filter((i) => labels[i] === label);
    const paired = pairIds !== undefined && rows.every((i) => refRow.has(pairIds[i]!));
    const v = new Float64Array(k);
    if (paired) {
      for (const i of rows) {
        const r = refRow.get(pairIds[i]!)!;
        for (let j = 0; j < k; j++) v[j]! += z[r * k + j]! - z[i * k + j]!;
      }
      out.set(label, { label, vector: Float32Array.from(v, (x) => x / rows.length), method: 'paired', pairs: rows.length });
    } else {
      const a = cents.get(ref)!, b = cents.get(label)!;
      out.set(label, { label, vector: Float32Array.from(a, (x, j) => x - b[j]!), method: 'centroid', pairs: 0 });
    }
  }
  return out;
}

/**
 * Shape completion in latent space: z + γ·DEV for every row of z, and for every γ when γ is a list
 * (the result is then [γ][row] flattened: γ-major). DEV is one vector or one per row (n × k).
 */
export function completeLatents(z: Float32Array, k: number, dev: Float32Array, gamma: number | readonly number[] = 1): Float32Array {
  const n = rowsOf(z, k, 'z');
  if (dev.length !== k && dev.length !== n * k) throw new VoxvaeError('ESHAPE', `dev has ${dev.length} values; expected ${k} or ${n * k}`, { path: 'dev' });
  const gs = typeof gamma === 'number' ? [gamma] : [...gamma];
  gs.forEach((g, i) => is.number(typeof gamma === 'number' ? 'gamma' : `gamma[${i}]`, g));
  const out = new Float32Array(gs.length * n * k);
  gs.forEach((g, gi) => {
    for (let i = 0; i < n; i++)
      for (let j = 0; j < k; j++) out[(gi * n + i) * k + j] = z[i * k + j]! + g * dev[dev.length === k ? j : i * k + j]!;
  });
  return out;
}

/** Linear interpolation between two latents at the given fractions (default 0, 0.25, …, 1). */
export function interpolateLatents(a: Float32Array, b: Float32Array, ts: readonly number[] = [0, 0.25, 0.5, 0.75, 1]): Float32Array {
  if (a.length !== b.length) throw new VoxvaeError('ESHAPE', `a and b differ in length (${a.length} vs ${b.length})`, { path: 'b' });
  const k = a.length, out = new Float32Array(ts.length * k);
  ts.forEach((t, r) => {
    for (let j = 0; j < k; j++) out[r * k + j] = (1 - t) * a[j]! + t * b[j]!;
  });
  return out;
}

/** Encodes two volumes (z = the model's evaluation latent), interpolates and decodes: [steps, outChannels, D, H, W] probabilities. */
export async function interpolateVolumes(vae: Vae, xa: Float32Array, xb: Float32Array, ts?: readonly number[]): Promise<{ z: Float32Array; volumes: Float32Array }> {
  const { z: ma } = await vae.encodeLatent(xa);
  const { z: mb } = await vae.encodeLatent(xb);
  const z = interpolateLatents(ma, mb, ts);
  return { z, volumes: await vae.decode(z, { mode: 'eval' }) };
}

/** Copies of z with dimension `dim` moved by s·scale for each s (units of σ; scale = that σ). */
export function traverseLatent(z: Float32Array, dim: number, steps: readonly number[], scale = 1): Float32Array {
  const k = z.length;
  is.integer('dim', dim, 0, k - 1);
  const out = new Float32Array(steps.length * k);
  steps.forEach((s, r) => {
    out.set(z, r * k);
    out[r * k + dim] = z[dim]! + s * scale;
  });
  return out;
}

/** Standard deviation of each latent dimension over rows (the σ unit of traversals). */
export function latentStd(z: Float32Array, k: number): Float32Array {
  const n = rowsOf(z, k, 'z');
  const out = new Float32Array(k);
  for (let j = 0; j < k; j++) {
    let m = 0, s = 0;
    for (let i = 0; i < n; i++) m += z[i * k + j]!;
    m /= n;
    for (let i = 0; i < n; i++) s += (z[i * k + j]! - m) ** 2;
    out[j] = Math.sqrt(s / Math.max(1, n - 1));
  }
  return out;
}

/** n draws from the prior N(0, I), seeded. */
export function samplePrior(n: number, k: number, seed = 0): Float32Array {
  is.integer('n', n, 0, 1 << 24);
  is.integer('k', k, 1);
  const rng = new Rng(seed, 0x9a1);
  return Float32Array.from({ length: n * k }, () => rng.normal());
}

/** The `count` rows of z nearest (Euclidean) to `query`, nearest first. */
export function nearestNeighbours(z: Float32Array, k: number, query: Float32Array, count = 5): { index: number; distance: number }[] {
  const n = rowsOf(z, k, 'z');
  if (query.length !== k) throw new VoxvaeError('ESHAPE', `query has ${query.length} values, expected ${k}`, { path: 'query' });
  const d = Array.from({ length: n }, (_, i) => {
    let s = 0;
    for (let j = 0; j < k; j++) s += (z[i * k + j]! - query[j]!) ** 2;
    return { index: i, distance: Math.sqrt(s) };
  });
  return d.sort((a, b) => a.distance - b.distance || a.index - b.index).slice(0, count);
}
