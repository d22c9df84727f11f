// Shared test helpers: closeness with an explicit tolerance, fixture loading.
import type { VaeConfig } from '../ts/config.js';
import type { ExecutionContext } from 'ava';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, toFloat32, type SafeTensors } from '../ts/safetensors.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const fixture = (...p: string[]): string => path.join(ROOT, 'test', 'fixtures', ...p);

/**
 * Elementwise relative error with a floor: |a - e| / (|e| + floor * max|e|). The floor (default 1 %
 * of the tensor's largest magnitude) keeps values that are nearly zero from dominating.
 */
export function relErr(actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 0.01): number {
  if (actual.length !== expected.length) return Infinity;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!) / (Math.abs(expected[i]!) + floor * scale + 1e-30);
    if (Number.isNaN(d)) return Infinity; // NaN anywhere is a failure, whatever follows
    if (d > worst) worst = d;
  }
  return worst;
}

export function assertClose(t: ExecutionContext, actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string, floor = 0.01): void {
  const e = relErr(actual, expected, floor);
  t.true(e <= tol, `${what}: max relative error ${e.toExponential(3)} > ${tol} (n=${expected.length})`);
}

const cache = new Map<string, Promise<SafeTensors>>();
export function loadFixture(name: string): Promise<SafeTensors> {
  if (!cache.has(name)) cache.set(name, readSafetensors(fixture('torch', name)));
  return cache.get(name)!;
}

export function f32(st: SafeTensors, name: string): Float32Array {
  const e = st.tensors.get(name);
  if (!e) throw new Error(`fixture tensor ${name} missing`);
  return toFloat32(e);
}

/** The output activation (softmax over channels or sigmoid) in place, in plain JavaScript: the reference the
 *  native activation (native/core output_activation_forward, what decode uses) is compared with. */
export function activate(y: Float32Array, n: number, c: Pick<VaeConfig, 'outputActivation' | 'outChannels'>): Float32Array {
  if (c.outputActivation === 'sigmoid') {
    for (let i = 0; i < y.length; i++) y[i] = 1 / (1 + Math.exp(-y[i]!));
  } else if (c.outputActivation === 'softmax') {
    const C = c.outChannels, S = y.length / (n * C);
    for (let b = 0; b < n; b++) {
      const base = b * C * S;
      for (let s = 0; s < S; s++) {
        let m = -Infinity;
        for (let k = 0; k < C; k++) m = Math.max(m, y[base + k * S + s]!);
        let sum = 0;
        for (let k = 0; k < C; k++) sum += Math.exp(y[base + k * S + s]! - m);
        for (let k = 0; k < C; k++) y[base + k * S + s] = Math.exp(y[base + k * S + s]! - m) / sum;
      }
    }
  }
  return y;
}
