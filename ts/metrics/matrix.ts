// Sample matrices (n rows × k columns) as the latent metrics take them, and the small dense linear
// algebra they need (Cholesky, triangular solve).

import { VoxvaeError, invalid } from '../errors.js';

/** n × k: an array of rows, or a flat row-major array with its shape. */
export type MatrixLike = readonly (readonly number[])[] | { data: Float32Array | Float64Array | readonly number[]; shape: readonly [number, number] };

export interface Matrix {
  /** Row-major n × k, float64. */
  data: Float64Array;
  n: number;
  k: number;
}

/** Copies to float64 row-major, checking the shape and that every entry is finite. */
export function toMatrix(m: unknown, field: string): Matrix {
  if (Array.isArray(m)) {
    const n = m.length;
    if (n === 0) invalid(field, 'must have at least one row');
    const first = m[0] as unknown;
    if (!Array.isArray(first) || first.length === 0) invalid(`${field}[0]`, 'must be a non-empty array of numbers', first);
    const k = first.length;
    const data = new Float64Array(n * k);
    for (let i = 0; i < n; i++) {
      const row = m[i] as unknown;
      if (!Array.isArray(row) || row.length !== k) {
        throw new VoxvaeError('ESHAPE', `${field}[${i}] has ${Array.isArray(row) ? row.length : 'no'} entries but ${field}[0] has ${k}`, { path: `${field}[${i}]` });
      }
      for (let j = 0; j < k; j++) data[i * k + j] = finite(row[j], `${field}[${i}][${j}]`);
    }
    return { data, n, k };
  }
  if (typeof m === 'object' && m !== null && 'data' in m && 'shape' in m) {
    const { data: src, shape } = m as { data: unknown; shape: unknown };
    if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((s) => Number.isSafeInteger(s) && (s as number) >= 1)) {
      invalid(`${field}.shape`, 'must be [n, k], two positive integers', shape);
    }
    const [n, k] = shape as [number, number];
    if (!(src instanceof Float32Array || src instanceof Float64Array || Array.isArray(src))) invalid(`${field}.data`, 'must be a Float32Array, Float64Array or number[]', src);
    const arr = src as ArrayLike<unknown>;
    if (arr.length !== n * k) throw new VoxvaeError('ESHAPE', `${field}.data has ${arr.length} entries but ${field}.shape [${n}, ${k}] needs ${n * k}`, { path: `${field}.data` });
    const data = new Float64Array(n * k);
    for (let i = 0; i < n * k; i++) data[i] = finite(arr[i], `${field}.data[${i}]`);
    return { data, n, k };
  }
  return invalid(field, 'must be an n × k matrix: number[][] or { data: Float32Array, shape: [n, k] }', m);
}

function finite(x: unknown, field: string): number {
  if (typeof x !== 'number') invalid(field, 'must be a number', x);
  if (!Number.isFinite(x)) throw new VoxvaeError('ENOTFINITE', `${field} is ${x}; every entry must be finite`, { path: field });
  return x;
}

export function checkSameMatrixShape(a: Matrix, b: Matrix, fa: string, fb: string): void {
  if (a.n !== b.n || a.k !== b.k) throw new VoxvaeError('ESHAPE', `${fb} is ${b.n} × ${b.k} but ${fa} is ${a.n} × ${a.k}`, { path: fb });
}

/** Column means. */
export function columnMeans(m: Matrix): Float64Array {
  const { data, n, k } = m;
  const mean = new Float64Array(k);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) mean[j]! += data[i * k + j]!;
  for (let j = 0; j < k; j++) mean[j]! /= n;
  return mean;
}

/** k × k covariance Σ (xᵢ − x̄)(xᵢ − x̄)ᵀ / (n − ddof), row-major. */
export function covariance(m: Matrix, mean: Float64Array, ddof: number): Float64Array {
  const { data, n, k } = m;
  const c = new Float64Array(k * k);
  const r = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) r[j] = data[i * k + j]! - mean[j]!;
    for (let a = 0; a < k; a++) {
      const ra = r[a]!;
      for (let b = a; b < k; b++) c[a * k + b]! += ra * r[b]!;
    }
  }
  const denom = n - ddof;
  for (let a = 0; a < k; a++) {
    for (let b = a; b < k; b++) {
      const v = c[a * k + b]! / denom;
      c[a * k + b] = v;
      c[b * k + a] = v;
    }
  }
  return c;
}

/** Lower Cholesky factor L (LLᵀ = A) of a k × k symmetric matrix; null when not positive definite. */
export function cholesky(a: Float64Array, k: number): Float64Array | null {
  const l = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * k + j]!;
      for (let p = 0; p < j; p++) s -= l[i * k + p]! * l[j * k + p]!;
      if (i === j) {
        if (!(s > 0)) return null;
        l[i * k + i] = Math.sqrt(s);
      } else {
        l[i * k + j] = s / l[j * k + j]!;
      }
    }
  }
  return l;
}

/** Solves L y = b in place (L lower triangular, k × k). */
export function forwardSubstitute(l: Float64Array, k: number, b: Float64Array): void {
  for (let i = 0; i < k; i++) {
    let s = b[i]!;
    for (let p = 0; p < i; p++) s -= l[i * k + p]! * b[p]!;
    b[i] = s / l[i * k + i]!;
  }
}
