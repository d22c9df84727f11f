// Latent fitting: per-case shape completion by optimising the latent. For a defective skull x (binary,
// D×H×W) find z whose decoded skull covers x's bone and stays empty where x is empty — except where bone
// may be missing (the defect class's map: empty voxels there cost little or nothing) — while a prior term
// keeps z where complete skulls' latents lie:
//
//   E(z) = (1/|x|) Σ_v w_v · BCE(p_v(z), x_v)  +  λ · ½ (z − m)ᵀ Σ⁻¹ (z − m)
//   w_v = boneWeight where x_v = 1;  1 − map_c(v) where x_v = 0
//
// p_v(z) is the decoder's foreground probability (softmax of 2 classes, or a sigmoid), m and Σ the mean and
// covariance of the complete training skulls' latents, |x| the number of bone voxels of x. The gradient
// with respect to z is the decoder's vector-Jacobian product (Decoder.latentGradient natively,
// WasmVae.latentGradient in WebAssembly). The search runs in whitened coordinates z = m + L·u (Σ = LLᵀ,
// Cholesky), where the prior term is λ·½|u|² and every direction has the complete skulls' own scale: a
// step of Adam on u moves z by about lr standard deviations of that population, whatever the latent
// space's scale (a decoder trained on μ of a large-β encoder reacts to differences of 1e-2 in z). Adam on
// u from the start point; the best z seen is kept.
// Cases are fitted as one batch (the decoder runs them together). No Node imports.
import { VoxvaeError } from '../errors.js';
import * as is from '../is.js';
import type { FitSettings } from './data.js';

/** What latent fitting needs of a model: native Vae and WasmVae both provide it (see completionModel). */
export interface LatentModel {
  readonly latentSize: number;
  /** D × H × W of the decoder's output. */
  readonly voxels: number;
  /** 2 (softmax: channel 1 is bone) or 1 (sigmoid). */
  readonly outChannels: number;
  latentGradient<T>(z: Float32Array, objective: (logits: Float32Array) => { value: T; grad: Float32Array }): Promise<{ value: T; grad: Float32Array }>;
  /** Logits [N, outChannels, D, H, W] of z (eval mode). */
  decodeLogits(z: Float32Array): Promise<Float32Array>;
}

export interface FitCase {
  /** The defective input, 0/1 per voxel. */
  input: Uint8Array;
  /** Weight of each empty voxel (1 − defect map); null: 1 everywhere. */
  emptyWeight: Float32Array | null;
  /** A factor on every voxel's weight (e.g. more around the defect); null: 1. */
  focus?: Float32Array | null;
}

export interface FitResult {
  /** The fitted latents, n × k (the best of each case's path). */
  z: Float32Array;
  /** Each case's objective per step (before the step's update). */
  history: number[][];
  /** Each case's best objective. */
  best: number[];
}

/** The Cholesky factor L of (Σ + εI), ε = 1e-6 · mean diagonal (at least 1e-9): lower-triangular, row-major, float64. */
export function choleskyOf(cov: ArrayLike<number>, k: number): Float64Array {
  if (cov.length !== k * k) throw new VoxvaeError('ESHAPE', `covariance has ${cov.length} values, expected ${k * k}`);
  let tr = 0;
  for (let i = 0; i < k; i++) tr += cov[i * k + i]!;
  const eps = Math.max(1e-9, (1e-6 * tr) / k);
  const L = new Float64Array(k * k);
  for (let i = 0; i < k; i++)
    for (let j = 0; j <= i; j++) {
      let s = cov[i * k + j]! + (i === j ? eps : 0);
      for (let p = 0; p < j; p++) s -= L[i * k + p]! * L[j * k + p]!;
      if (i === j) {
        if (!(s > 0)) throw new VoxvaeError('ENOTFINITE', 'the prior covariance is not positive definite (recompute the completion data)');
        L[i * k + i] = Math.sqrt(s);
      } else L[i * k + j] = s / L[j * k + j]!;
    }
  return L;
}

const softplus = (a: number): number => (a > 0 ? a + Math.log1p(Math.exp(-a)) : Math.log1p(Math.exp(a)));

/** Foreground logit (log-odds of bone) of voxel s of sample b: l1 − l0 for 2 classes, l for a sigmoid. */
function fgLogit(logits: Float32Array, b: number, C: number, S: number, s: number): number {
  return C === 2 ? logits[(b * 2 + 1) * S + s]! - logits[b * 2 * S + s]! : logits[b * S + s]!;
}

/**
 * Fits the latents of n cases at once. `z0` (n × k) is the start; `prior` the complete skulls' mean and
 * the Cholesky factor of their covariance (choleskyOf). onStep(step, objectives) is called after every
 * step (progress, cancellation by throwing).
 */
export async function fitLatents(
  model: LatentModel,
  cases: readonly FitCase[],
  z0: Float32Array,
  prior: { mean: Float32Array; chol: Float64Array },
  settings: FitSettings,
  onStep?: (step: number, objectives: number[]) => void | Promise<void>,
): Promise<FitResult> {
  const k = model.latentSize, S = model.voxels, C = model.outChannels, n = cases.length;
  if (C !== 1 && C !== 2) throw new VoxvaeError('EUNSUPPORTED', `latent fitting needs a decoder with 2 softmax classes or 1 sigmoid output, not ${C} channels`);
  if (n === 0) return { z: new Float32Array(0), history: [], best: [] };
  if (z0.length !== n * k) throw new VoxvaeError('ESHAPE', `z0 has ${z0.length} values, expected ${n} × ${k}`);
  if (prior.mean.length !== k || prior.chol.length !== k * k) throw new VoxvaeError('ESHAPE', `the prior has the wrong size for latent size ${k}`);
  const { steps, lr, priorWeight, boneWeight } = settings;
  is.number('focus', settings.focus, { min: 1 });
  is.integer('steps', steps, 0);
  is.number('lr', lr, { above: 0 });
  is.number('priorWeight', priorWeight, { min: 0 });
  is.number('boneWeight', boneWeight, { above: 0 });
  const bone = cases.map((c, i) => {
    if (!(c.input instanceof Uint8Array) || c.input.length !== S) throw new VoxvaeError('ESHAPE', `case ${i}: the input has ${c.input?.length} voxels, the model ${S}`);
    if (c.emptyWeight && c.emptyWeight.length !== S) throw new VoxvaeError('ESHAPE', `case ${i}: the empty-voxel weights have ${c.emptyWeight.length} values, the model ${S}`);
    let b = 0;
    for (let s = 0; s < S; s++) b += c.input[s] ? 1 : 0;
    return Math.max(1, b);
  });

  const L = prior.chol;
  // u = L⁻¹ (z0 − m): forward substitution per case.
  const u = new Float64Array(n * k);
  for (let b = 0; b < n; b++)
    for (let i = 0; i < k; i++) {
      let s = z0[b * k + i]! - prior.mean[i]!;
      for (let p = 0; p < i; p++) s -= L[i * k + p]! * u[b * k + p]!;
      u[b * k + i] = s / L[i * k + i]!;
    }
  const z = new Float32Array(n * k);
  const toZ = (): void => {
    for (let b = 0; b < n; b++)
      for (let i = 0; i < k; i++) {
        let s = prior.mean[i]!;
        for (let p = 0; p <= i; p++) s += L[i * k + p]! * u[b * k + p]!;
        z[b * k + i] = s;
      }
  };
  toZ();
  const m = new Float64Array(n * k), v = new Float64Array(n * k);
  const bestZ = new Float32Array(z), best = new Array<number>(n).fill(Infinity);
  const history: number[][] = cases.map(() => []);
  const b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const priorValue = (): number[] => {
    const out: number[] = [];
    for (let b = 0; b < n; b++) {
      let e = 0;
      for (let i = 0; i < k; i++) e += u[b * k + i]! * u[b * k + i]!;
      out.push(0.5 * priorWeight * e);
    }
    return out;
  };
  const objective = (logits: Float32Array): { value: number[]; grad: Float32Array } => {
    const grad = new Float32Array(n * C * S);
    const value: number[] = [];
    for (let b = 0; b < n; b++) {
      const x = cases[b]!.input, we = cases[b]!.emptyWeight, fo = cases[b]!.focus ?? null, inv = 1 / bone[b]!;
      let e = 0;
      for (let s = 0; s < S; s++) {
        const d = fgLogit(logits, b, C, S, s);
        const on = x[s] !== 0;
        const w = (on ? boneWeight : we ? we[s]! : 1) * inv * (fo ? fo[s]! : 1);
        if (w === 0) continue;
        e += w * (on ? softplus(-d) : softplus(d));
        const g = w * (1 / (1 + Math.exp(-d)) - (on ? 1 : 0));
        if (C === 2) {
          grad[(b * 2 + 1) * S + s] = g;
          grad[b * 2 * S + s] = -g;
        } else grad[b * S + s] = g;
      }
      value.push(e);
    }
    return { value, grad };
  };

  for (let t = 0; t <= steps; t++) {
    const pv = priorValue();
    const { value: data, grad } = await model.latentGradient(z, objective);
    const total = data.map((d, b) => d + pv[b]!);
    for (let b = 0; b < n; b++) {
      history[b]!.push(total[b]!);
      if (total[b]! < best[b]!) {
        best[b] = total[b]!;
        bestZ.set(z.subarray(b * k, (b + 1) * k), b * k);
      }
    }
    if (t === steps) break;
    // ∂E/∂u = Lᵀ ∂E_data/∂z + λu.
    for (let b = 0; b < n; b++)
      for (let p = 0; p < k; p++) {
        let g = priorWeight * u[b * k + p]!;
        for (let i = p; i < k; i++) g += L[i * k + p]! * grad[b * k + i]!;
        const j = b * k + p;
        m[j] = b1 * m[j]! + (1 - b1) * g;
        v[j] = b2 * v[j]! + (1 - b2) * g * g;
        const mh = m[j]! / (1 - b1 ** (t + 1)), vh = v[j]! / (1 - b2 ** (t + 1));
        u[j] = u[j]! - (lr * mh) / (Math.sqrt(vh) + eps);
      }
    toZ();
    await onStep?.(t + 1, total);
  }
  return { z: bestZ, history, best };
}
