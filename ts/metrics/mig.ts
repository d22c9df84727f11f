// Mutual Information Gap (Chen et al. 2018), with the estimator of their β-TCVAE code as copied into
// ControlVAE's metrics/Disentangle/MIG_metric.py (`estimate_entropies`, `compute_metric_shapes`):
//
// - one sample zᵢ ~ q(z | xᵢ) = N(μᵢ, diag σᵢ²) per data point (σ from logvar as exp(logvar/2), the
//   "added by shao" line); `samplesPerPoint` > 1 draws more, to cut Monte-Carlo noise when n is small;
// - H(z_j) ≈ −(1/S) Σₛ log[(1/N) Σₙ q(z_sj | xₙ)], logsumexp over all N points, with S = min(nSamples,
//   N·samplesPerPoint) samples chosen at random without replacement (nSamples = 10 000 as the code);
// - H(z_j | v_k) = Σ_v p(v) H(z_j | v_k = v), each term the same estimate restricted to the points
//   (and their samples) with that value; p(v) = N_v/N (the code's 1/|values| on dSprites' full grid);
// - I(z_j; v_k) = H(z_j) − H(z_j | v_k), clamped at 0; normalised by H(v_k) = −Σ p(v) log p(v)
//   ('entropy', default) or by log(#values) ('log-cardinality', the code's choice — identical on a
//   balanced grid);
// - MIG = mean over factors of (top1 − top2) of the normalised I(z_j; v_k) over latents j.
//
// Factors are given per sample (n × F). Integer-valued factors are treated as discrete; others are
// discretised into `bins` (default 20) equal-width bins over [min, max] as disentanglement_lib's
// `_histogram_discretize` (np.histogram edges, np.digitize on all but the last edge). Small n (≤ 300)
// is fine: every point is then a sample and the cost is n²·K log-densities per entropy estimate.

import { invalid } from '../errors.js';
import * as is from '../is.js';
import { toMatrix, type MatrixLike } from './matrix.js';
import { sigmaMatrix } from './latent.js';
import { Rng } from './random.js';

export interface MigInput {
  /** Posterior means, n × K (K ≥ 2). */
  mu: MatrixLike;
  /** Posterior standard deviations, n × K (or logvar). */
  sigma?: MatrixLike;
  logvar?: MatrixLike;
  /** Ground-truth factors per sample, n × F. */
  factors: MatrixLike;
}

export type FactorKind = 'auto' | 'discrete' | 'continuous';

export interface MigOptions {
  /** Per factor, or one for all; default 'auto' (integer-valued → discrete, else continuous). */
  factorKinds?: FactorKind | readonly FactorKind[];
  /** Bins for continuous factors; default 20. */
  bins?: number;
  /** Samples used per entropy estimate; default 10 000 (the official value). */
  nSamples?: number;
  /** z samples drawn per data point; default 1 (official). */
  samplesPerPoint?: number;
  /** Default 0. */
  seed?: number;
  /** Default 'entropy'. */
  normalization?: 'entropy' | 'log-cardinality';
}

export interface MigFactor {
  index: number;
  kind: 'discrete' | 'continuous';
  /** Number of distinct (non-empty) values after discretisation. */
  values: number;
  /** H(v_k) in nats. */
  entropy: number;
  /** What the mutual informations are divided by. */
  normalizer: number;
  /** I(z_j; v_k) in nats, clamped at 0, per latent j. */
  mutualInformation: number[];
  /** I(z_j; v_k) / normalizer. */
  normalized: number[];
  /** Latent with the largest and second-largest normalised MI. */
  best: number;
  second: number;
  /** (top1 − top2) / normalizer. */
  gap: number;
}

export interface MigResult {
  mig: number;
  factors: MigFactor[];
  /** H(z_j) in nats. */
  marginalEntropies: number[];
  /** H(z_j | v_k) in nats, [factor][latent]. */
  conditionalEntropies: number[][];
}

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

function positiveInt(v: unknown, field: string, fallback: number): number {
  return is.integer(field, v ?? fallback, 1, Number.MAX_SAFE_INTEGER);
}

export function mutualInformationGap(input: MigInput, options: MigOptions = {}): MigResult {
  if (typeof input !== 'object' || input === null) invalid('input', 'must be { mu, sigma | logvar, factors }', input);
  is.options('options', options);
  const mu = toMatrix(input.mu, 'input.mu');
  const sigma = sigmaMatrix(input, mu, 'input');
  if (sigma === undefined) invalid('input.sigma', 'or input.logvar is required: MIG samples z ~ N(μ, σ²)');
  const fac = toMatrix(input.factors, 'input.factors');
  const { n, k: K } = mu;
  if (fac.n !== n) invalid('input.factors', `must have one row per sample (${n}), got ${fac.n} rows`);
  if (K < 2) invalid('input.mu', 'needs at least 2 latent dimensions for a gap between the top two', K);
  const bins = positiveInt(options.bins, 'options.bins', 20);
  const nSamples = positiveInt(options.nSamples, 'options.nSamples', 10000);
  const m = positiveInt(options.samplesPerPoint, 'options.samplesPerPoint', 1);
  const seed = is.seed('options.seed', options.seed ?? 0);
  const normalization = is.oneOf('options.normalization', options.normalization ?? 'entropy', ['entropy', 'log-cardinality'] as const);
  const F = fac.k;
  const kinds = resolveKinds(options.factorKinds, F);

  // Discretise the factors.
  const codes: Int32Array[] = [];
  const factorInfo: { kind: 'discrete' | 'continuous'; counts: number[] }[] = [];
  for (let f = 0; f < F; f++) {
    const col = new Float64Array(n);
    for (let i = 0; i < n; i++) col[i] = fac.data[i * F + f]!;
    const requested = kinds[f]!;
    const kind = requested === 'auto' ? (col.every(Number.isInteger) ? 'discrete' : 'continuous') : requested;
    const raw = kind === 'discrete' ? col : histogramCodes(col, bins);
    const { codes: c, counts } = compact(raw);
    codes.push(c);
    factorInfo.push({ kind, counts });
  }

  // Samples z, row (i·m + r), K columns; per-dimension parameter columns for the log densities.
  const rng = new Rng(seed);
  const z = new Float64Array(n * m * K);
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < m; r++) {
      for (let j = 0; j < K; j++) z[(i * m + r) * K + j] = mu.data[i * K + j]! + sigma.data[i * K + j]! * rng.normal();
    }
  }
  const colMu: Float64Array[] = [];
  const colInv: Float64Array[] = [];
  const colLogNorm: Float64Array[] = [];
  for (let j = 0; j < K; j++) {
    const a = new Float64Array(n);
    const b = new Float64Array(n);
    const c = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const s = sigma.data[i * K + j]!;
      a[i] = mu.data[i * K + j]!;
      b[i] = 1 / s;
      c[i] = -Math.log(s) - HALF_LOG_2PI;
    }
    colMu.push(a);
    colInv.push(b);
    colLogNorm.push(c);
  }

  const estimate = (points: Int32Array): Float64Array => {
    const P = points.length;
    const candidates = new Int32Array(P * m);
    for (let p = 0; p < P; p++) for (let r = 0; r < m; r++) candidates[p * m + r] = points[p]! * m + r;
    const chosen = candidates.length > nSamples ? rng.choose(candidates, nSamples) : candidates;
    const logP = Math.log(P);
    const h = new Float64Array(K);
    const tmp = new Float64Array(P);
    for (let j = 0; j < K; j++) {
      const pm = new Float64Array(P);
      const pi = new Float64Array(P);
      const pl = new Float64Array(P);
      for (let p = 0; p < P; p++) {
        const q = points[p]!;
        pm[p] = colMu[j]![q]!;
        pi[p] = colInv[j]![q]!;
        pl[p] = colLogNorm[j]![q]!;
      }
      let acc = 0;
      for (const s of chosen) {
        const zs = z[s * K + j]!;
        let max = -Infinity;
        for (let p = 0; p < P; p++) {
          const u = (zs - pm[p]!) * pi[p]!;
          const lq = pl[p]! - 0.5 * u * u;
          tmp[p] = lq;
          if (lq > max) max = lq;
        }
        let sum = 0;
        for (let p = 0; p < P; p++) sum += Math.exp(tmp[p]! - max);
        acc -= max + Math.log(sum) - logP;
      }
      h[j] = acc / chosen.length;
    }
    return h;
  };

  const all = new Int32Array(n);
  for (let i = 0; i < n; i++) all[i] = i;
  const marginal = estimate(all);

  const conditional: number[][] = [];
  const factors: MigFactor[] = [];
  for (let f = 0; f < F; f++) {
    const { kind, counts } = factorInfo[f]!;
    const c = codes[f]!;
    const cond = new Float64Array(K);
    const members: number[][] = counts.map(() => []);
    for (let i = 0; i < n; i++) members[c[i]!]!.push(i);
    let entropy = 0;
    members.forEach((pts) => {
      const weight = pts.length / n;
      entropy -= weight * Math.log(weight);
      const hv = estimate(Int32Array.from(pts));
      for (let j = 0; j < K; j++) cond[j]! += weight * hv[j]!;
    });
    const normalizer = normalization === 'entropy' ? entropy : Math.log(counts.length);
    if (!(normalizer > 0)) invalid(`input.factors[:, ${f}]`, 'takes a single value; its mutual information gap is undefined', counts.length);
    const mi = Array.from({ length: K }, (_, j) => Math.max(0, marginal[j]! - cond[j]!));
    const normalized = mi.map((x) => x / normalizer);
    const order = normalized.map((x, j) => [x, j] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    const [top1, best] = order[0]!;
    const [top2, second] = order[1]!;
    conditional.push(Array.from(cond));
    factors.push({ index: f, kind, values: counts.length, entropy, normalizer, mutualInformation: mi, normalized, best, second, gap: top1 - top2 });
  }
  const mig = factors.reduce((s, x) => s + x.gap, 0) / F;
  return { mig, factors, marginalEntropies: Array.from(marginal), conditionalEntropies: conditional };
}

const FACTOR_KINDS: readonly FactorKind[] = ['auto', 'discrete', 'continuous'];

function resolveKinds(kinds: unknown, F: number): FactorKind[] {
  if (kinds === undefined) return new Array<FactorKind>(F).fill('auto');
  if (typeof kinds === 'string') return new Array<FactorKind>(F).fill(is.oneOf('options.factorKinds', kinds, FACTOR_KINDS));
  if (!Array.isArray(kinds) || kinds.length !== F) invalid('options.factorKinds', `must be one kind or an array of ${F} kinds (one per factor column)`, kinds);
  return kinds.map((x, i) => is.oneOf(`options.factorKinds[${i}]`, x, FACTOR_KINDS));
}

/** Bin index of each value: np.digitize(x, np.histogram(x, bins)[1][:-1]) − 1. */
function histogramCodes(x: Float64Array, bins: number): Float64Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of x) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === hi) {
    lo -= 0.5;
    hi += 0.5;
  }
  const step = (hi - lo) / bins;
  const edges = new Float64Array(bins);
  for (let i = 0; i < bins; i++) edges[i] = i * step + lo;
  const out = new Float64Array(x.length);
  x.forEach((v, i) => {
    // number of left edges ≤ v, minus one
    let a = 0;
    let b = bins;
    while (a < b) {
      const mid = (a + b) >> 1;
      if (edges[mid]! <= v) a = mid + 1;
      else b = mid;
    }
    out[i] = a - 1;
  });
  return out;
}

/** Maps values to 0…c−1 in increasing order; counts per code. */
function compact(values: Float64Array): { codes: Int32Array; counts: number[] } {
  const distinct = [...new Set(values)].sort((a, b) => a - b);
  const index = new Map<number, number>();
  distinct.forEach((v, i) => index.set(v, i));
  const codes = new Int32Array(values.length);
  const counts = new Array<number>(distinct.length).fill(0);
  values.forEach((v, i) => {
    const c = index.get(v)!;
    codes[i] = c;
    counts[c]!++;
  });
  return { codes, counts };
}
