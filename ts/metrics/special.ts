// Special functions for the tests' p-values: log-gamma, the regularized incomplete gamma functions,
// and the χ² and standard-normal distribution functions built on them. Written here rather than
// taken from npm: the candidates are either large (jStat, mathjs) or unmaintained, and these are
// ~100 lines checked against scipy.stats in test/fixtures/metrics.
//
// lnΓ: Lanczos approximation (g = 7, 9 coefficients), relative error ~1e-15.
// P(a, x), Q(a, x): series for x < a + 1, Lentz continued fraction otherwise (Numerical Recipes §6.2),
// converged to 1e-15 relative.
// erfc(x) = Q(1/2, x²) for x ≥ 0, so the normal tails keep full relative precision far out.

import { invalid } from '../errors.js';

const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
  -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0. */
export function lnGamma(x: number): number {
  if (!(x > 0)) invalid('x', 'must be > 0', x);
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  const y = x - 1;
  let a = LANCZOS[0]!;
  const t = y + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i]! / (y + i);
  return 0.5 * Math.log(2 * Math.PI) + (y + 0.5) * Math.log(t) - t + Math.log(a);
}

const EPS = 1e-15;
const TINY = 1e-300;
const MAX_ITER = 1_000_000;

function checkGammaArgs(a: number, x: number): void {
  if (!(a > 0) || !Number.isFinite(a)) invalid('a', 'must be a finite number > 0', a);
  if (!(x >= 0)) invalid('x', 'must be ≥ 0', x);
}

/** exp(−x + a ln x − lnΓ(a)), the common prefactor. */
function prefactor(a: number, x: number): number {
  return Math.exp(-x + a * Math.log(x) - lnGamma(a));
}

function seriesP(a: number, x: number): number {
  let ap = a;
  let del = 1 / a;
  let sum = del;
  for (let n = 0; n < MAX_ITER; n++) {
    ap += 1;
    del *= x / ap;
    sum += del;
    if (Math.abs(del) < Math.abs(sum) * EPS) break;
  }
  return sum * prefactor(a, x);
}

function continuedFractionQ(a: number, x: number): number {
  let b = x + 1 - a;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < MAX_ITER; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < EPS) break;
  }
  return prefactor(a, x) * h;
}

/** Regularized lower incomplete gamma P(a, x) = γ(a, x)/Γ(a). */
export function gammaP(a: number, x: number): number {
  checkGammaArgs(a, x);
  if (x === 0) return 0;
  if (x === Infinity) return 1;
  return x < a + 1 ? seriesP(a, x) : 1 - continuedFractionQ(a, x);
}

/** Regularized upper incomplete gamma Q(a, x) = 1 − P(a, x), accurate in the upper tail. */
export function gammaQ(a: number, x: number): number {
  checkGammaArgs(a, x);
  if (x === 0) return 1;
  if (x === Infinity) return 0;
  return x < a + 1 ? 1 - seriesP(a, x) : continuedFractionQ(a, x);
}

function checkDf(df: number): void {
  if (!(df > 0) || !Number.isFinite(df)) invalid('df', 'must be a finite number > 0', df);
}

/** χ²(df) distribution function. */
export function chiSquaredCdf(x: number, df: number): number {
  checkDf(df);
  return x <= 0 ? 0 : gammaP(df / 2, x / 2);
}

/** χ²(df) survival function 1 − F(x) (the p-value of a χ² statistic). */
export function chiSquaredSf(x: number, df: number): number {
  checkDf(df);
  return x <= 0 ? 1 : gammaQ(df / 2, x / 2);
}

/** Complementary error function. */
export function erfc(x: number): number {
  if (Number.isNaN(x)) invalid('x', 'must be a number', x);
  return x >= 0 ? gammaQ(0.5, x * x) : 1 + gammaP(0.5, x * x);
}

/** Standard normal distribution function Φ(z). */
export function normalCdf(z: number): number {
  return 0.5 * erfc(-z / Math.SQRT2);
}

/** Standard normal survival function 1 − Φ(z). */
export function normalSf(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}
