// Statistics of a VAE's latent codes over a data set: per-dimension mean/std of the posterior means
// μ, active units, the KL of a Gaussian fitted to the μ's against N(0, I), and Mardia's test of
// multivariate normality.
//
// Conventions:
// - Variances and covariances divide by n − ddof, ddof = 1 by default (numpy.cov's default; the
//   sample estimate). Mardia's statistics always use the 1/n (maximum-likelihood) covariance, as
//   Mardia (1970) defines them.
// - Active units (Burda et al. 2016): dimension j is active when Var_x(E[z_j | x]) = Var(μ_j) > 0.01
//   (strictly greater; threshold configurable).
// - Gaussian KL: fit N(m, Σ) to the μ's; KL(N(m, Σ) ‖ N(0, I)) = ½[tr Σ + mᵀm − k − ln det Σ];
//   the diagonal version keeps only diag Σ. A singular Σ gives +Infinity (the limit), not NaN.
//   When σ's are given, the "aggregate" versions moment-match q(z) = (1/n) Σᵢ N(μᵢ, diag σᵢ²):
//   covariance Σ + diag(mean σ²).
// - Mardia: S = (1/n) Σ (xᵢ − x̄)(xᵢ − x̄)ᵀ, mᵢⱼ = (xᵢ − x̄)ᵀ S⁻¹ (xⱼ − x̄);
//   b1 = (1/n²) Σᵢⱼ mᵢⱼ³, b2 = (1/n) Σᵢ mᵢᵢ²;
//   skewness statistic n·b1/6 ~ χ²(k(k+1)(k+2)/6), p = upper tail;
//   kurtosis statistic (b2 − k(k+2)) / √(8k(k+2)/n) ~ N(0, 1), p = two-sided.
//   No small-sample correction.

import { VoxvaeError, invalid } from '../errors.js';
import * as is from '../is.js';
import { checkSameMatrixShape, cholesky, columnMeans, covariance, forwardSubstitute, toMatrix, type Matrix, type MatrixLike } from './matrix.js';
import { chiSquaredSf, normalSf } from './special.js';

export interface LatentStatisticsOptions {
  /** Posterior standard deviations, n × k (give this or logvar, or neither). */
  sigma?: MatrixLike;
  /** Posterior log-variances, n × k. */
  logvar?: MatrixLike;
  /** Divisor n − ddof for variances and covariances; 0 or 1, default 1. */
  ddof?: number;
  /** Active-unit threshold on Var(μ_j); default 0.01. */
  activeThreshold?: number;
  /** Also run Mardia's test (needs n > k and a non-singular covariance); default false. */
  mardia?: boolean;
}

export interface MardiaResult {
  n: number;
  k: number;
  /** Mardia's b1,k. */
  skewness: number;
  /** Mardia's b2,k. */
  kurtosis: number;
  /** n·b1/6. */
  skewnessStatistic: number;
  /** k(k+1)(k+2)/6. */
  skewnessDf: number;
  skewnessPValue: number;
  /** (b2 − k(k+2)) / √(8k(k+2)/n). */
  kurtosisStatistic: number;
  /** Two-sided. */
  kurtosisPValue: number;
}

export interface LatentStatistics {
  n: number;
  k: number;
  mean: number[];
  variance: number[];
  std: number[];
  active: boolean[];
  activeUnits: number;
  /** KL(N(m, Σ) ‖ N(0, I)) of the Gaussian fitted to the μ's. */
  klFull: number;
  klDiagonal: number;
  /** Mean posterior σ per dimension (when σ's were given). */
  sigmaMean?: number[];
  /** As klFull/klDiagonal for the moment-matched aggregate posterior (when σ's were given). */
  aggregateKlFull?: number;
  aggregateKlDiagonal?: number;
  mardia?: MardiaResult;
}

function checkDdof(ddof: unknown): number {
  return is.integer('options.ddof', ddof ?? 1, 0, 1);
}

/** Standard deviations as a matrix from either sigma or logvar (σ = exp(logvar/2)). */
export function sigmaMatrix(options: { sigma?: MatrixLike; logvar?: MatrixLike }, mu: Matrix, prefix = 'options'): Matrix | undefined {
  if (options.sigma !== undefined && options.logvar !== undefined) invalid(`${prefix}.logvar`, `cannot be given together with ${prefix}.sigma`);
  if (options.sigma !== undefined) {
    const s = toMatrix(options.sigma, `${prefix}.sigma`);
    checkSameMatrixShape(mu, s, 'mu', `${prefix}.sigma`);
    for (let i = 0; i < s.data.length; i++) if (!(s.data[i]! > 0)) invalid(`${prefix}.sigma`, `must be > 0 everywhere (entry ${i})`, s.data[i]);
    return s;
  }
  if (options.logvar !== undefined) {
    const s = toMatrix(options.logvar, `${prefix}.logvar`);
    checkSameMatrixShape(mu, s, 'mu', `${prefix}.logvar`);
    for (let i = 0; i < s.data.length; i++) s.data[i] = Math.exp(s.data[i]! / 2);
    return s;
  }
  return undefined;
}

export function latentStatistics(mu: MatrixLike, options: LatentStatisticsOptions = {}): LatentStatistics {
  is.options('options', options);
  const m = toMatrix(mu, 'mu');
  const ddof = checkDdof(options.ddof);
  const threshold = is.number('options.activeThreshold', options.activeThreshold ?? 0.01, { min: 0 });
  if (m.n - ddof < 1) invalid('mu', `needs at least ${ddof + 1} rows for ddof ${ddof}`, m.n);
  const { k } = m;
  const mean = columnMeans(m);
  const cov = covariance(m, mean, ddof);
  const variance = Array.from({ length: k }, (_, j) => cov[j * k + j]!);
  const active = variance.map((v) => v > threshold);
  const out: LatentStatistics = {
    n: m.n,
    k,
    mean: Array.from(mean),
    variance,
    std: variance.map(Math.sqrt),
    active,
    activeUnits: active.filter(Boolean).length,
    klFull: gaussianKlFull(mean, cov, k),
    klDiagonal: gaussianKlDiagonal(mean, cov, k),
  };
  const sigma = sigmaMatrix(options, m);
  if (sigma !== undefined) {
    const meanSigma = columnMeans(sigma);
    const agg = cov.slice();
    for (let i = 0; i < m.n; i++) for (let j = 0; j < k; j++) agg[j * k + j]! += sigma.data[i * k + j]! ** 2 / m.n;
    out.sigmaMean = Array.from(meanSigma);
    out.aggregateKlFull = gaussianKlFull(mean, agg, k);
    out.aggregateKlDiagonal = gaussianKlDiagonal(mean, agg, k);
  }
  if (options.mardia === true) out.mardia = mardiaFromMatrix(m, 'mu');
  return out;
}

/** Number of dimensions with Var(μ_j) > threshold (default 0.01), and which. */
export function activeUnits(mu: MatrixLike, options: { threshold?: number; ddof?: number } = {}): { count: number; active: boolean[]; variance: number[] } {
  const s = latentStatistics(mu, { ddof: options.ddof ?? 1, activeThreshold: options.threshold ?? 0.01 });
  return { count: s.activeUnits, active: s.active, variance: s.variance };
}

/** KL(N(m, Σ) ‖ N(0, I)) of a Gaussian fitted to the rows of `x`; 'full' (default) or 'diagonal' covariance. */
export function gaussianKl(x: MatrixLike, options: { covariance?: 'full' | 'diagonal'; ddof?: number } = {}): number {
  const m = toMatrix(x, 'x');
  const ddof = checkDdof(options.ddof);
  const which = options.covariance ?? 'full';
  is.oneOf('options.covariance', which, ['full', 'diagonal'] as const);
  if (m.n - ddof < 1) invalid('x', `needs at least ${ddof + 1} rows for ddof ${ddof}`, m.n);
  const mean = columnMeans(m);
  const cov = covariance(m, mean, ddof);
  return which === 'full' ? gaussianKlFull(mean, cov, m.k) : gaussianKlDiagonal(mean, cov, m.k);
}

function gaussianKlFull(mean: Float64Array, cov: Float64Array, k: number): number {
  const l = cholesky(cov, k);
  if (l === null) return Infinity;
  let tr = 0;
  let mm = 0;
  let logdet = 0;
  for (let j = 0; j < k; j++) {
    tr += cov[j * k + j]!;
    mm += mean[j]! * mean[j]!;
    logdet += 2 * Math.log(l[j * k + j]!);
  }
  return 0.5 * (tr + mm - k - logdet);
}

function gaussianKlDiagonal(mean: Float64Array, cov: Float64Array, k: number): number {
  let kl = 0;
  for (let j = 0; j < k; j++) {
    const v = cov[j * k + j]!;
    if (!(v > 0)) return Infinity;
    kl += v + mean[j]! * mean[j]! - 1 - Math.log(v);
  }
  return 0.5 * kl;
}

/** Mardia's multivariate skewness and kurtosis tests on the rows of `x` (n × k, n > k). */
export function mardiaTest(x: MatrixLike): MardiaResult {
  return mardiaFromMatrix(toMatrix(x, 'x'), 'x');
}

function mardiaFromMatrix(m: Matrix, field: string): MardiaResult {
  const { data, n, k } = m;
  if (n <= k) invalid(field, `needs more rows than columns for Mardia's test (${n} × ${k})`);
  const mean = columnMeans(m);
  const s = covariance(m, mean, 0);
  const l = cholesky(s, k);
  if (l === null) throw new VoxvaeError('EINVAL', `${field}: the sample covariance is singular (a constant or linearly dependent dimension?); Mardia's test needs it invertible`, { path: field });
  // yᵢ = L⁻¹(xᵢ − x̄), so mᵢⱼ = yᵢ·yⱼ
  const y = new Float64Array(n * k);
  const r = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) r[j] = data[i * k + j]! - mean[j]!;
    forwardSubstitute(l, k, r);
    y.set(r, i * k);
  }
  let b1 = 0;
  let b2 = 0;
  for (let i = 0; i < n; i++) {
    let mii = 0;
    for (let p = 0; p < k; p++) mii += y[i * k + p]! ** 2;
    b2 += mii * mii;
    b1 += mii ** 3;
    for (let j = i + 1; j < n; j++) {
      let mij = 0;
      for (let p = 0; p < k; p++) mij += y[i * k + p]! * y[j * k + p]!;
      b1 += 2 * mij ** 3;
    }
  }
  b1 /= n * n;
  b2 /= n;
  const df = (k * (k + 1) * (k + 2)) / 6;
  const skewStat = (n * b1) / 6;
  const kurtStat = (b2 - k * (k + 2)) / Math.sqrt((8 * k * (k + 2)) / n);
  return {
    n,
    k,
    skewness: b1,
    kurtosis: b2,
    skewnessStatistic: skewStat,
    skewnessDf: df,
    skewnessPValue: chiSquaredSf(skewStat, df),
    kurtosisStatistic: kurtStat,
    kurtosisPValue: Math.min(1, 2 * normalSf(Math.abs(kurtStat))),
  };
}
