// Principal directions of the complete training skulls' latents (stored in the checkpoint's completion
// data): the mean, the top eigenvectors of the covariance (cyclic Jacobi on the k × k matrix; k is the
// latent size, 32 for the shipped model) and their standard deviations, for the app's latent sliders.

export interface PrincipalAxes {
  mean: Float32Array;
  /** Unit eigenvectors, largest variance first. */
  vectors: Float32Array[];
  /** Standard deviation along each. */
  sd: number[];
  /** Fraction of the total variance along each. */
  explained: number[];
}

/** Eigen-decomposition of a symmetric matrix (row-major n × n): eigenvalues and column eigenvectors. */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const A = a.slice();
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += A[p * n + q]! ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (A[q * n + q]! - A[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p]!, akq = A[k * n + q]!;
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k]!, aqk = A[q * n + k]!;
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p]!, vkq = V[k * n + q]!;
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = A[i * n + i]!;
  return { values, vectors: V };
}

/** The top `count` principal axes of `rows` (n × k, row-major). */
export function principalAxes(rows: Float32Array, k: number, count: number): PrincipalAxes {
  const n = rows.length / k;
  if (!(n >= 2) || !Number.isInteger(n)) throw new Error(`need at least two latents of ${k} values, got ${rows.length} values`);
  const mean = new Float64Array(k);
  for (let r = 0; r < n; r++) for (let j = 0; j < k; j++) mean[j] = mean[j]! + rows[r * k + j]! / n;
  const cov = new Float64Array(k * k);
  for (let r = 0; r < n; r++)
    for (let i = 0; i < k; i++) {
      const di = rows[r * k + i]! - mean[i]!;
      for (let j = i; j < k; j++) cov[i * k + j] = cov[i * k + j]! + (di * (rows[r * k + j]! - mean[j]!)) / (n - 1);
    }
  for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) cov[i * k + j] = cov[j * k + i]!;
  const { values, vectors } = symmetricEigen(cov, k);
  const order = Array.from(values.keys()).sort((a, b) => values[b]! - values[a]!);
  const total = values.reduce((a, v) => a + Math.max(0, v), 0) || 1;
  const top = order.slice(0, Math.min(count, k));
  return {
    mean: Float32Array.from(mean),
    vectors: top.map((c) => Float32Array.from({ length: k }, (_, r) => vectors[r * k + c]!)),
    sd: top.map((c) => Math.sqrt(Math.max(0, values[c]!))),
    explained: top.map((c) => Math.max(0, values[c]!) / total),
  };
}
