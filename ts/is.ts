// is: the one validation module (after sharp's lib/is.js). Every option and config field of the public
// API is checked here, by one of these functions, so that a field is spelt and checked the same way
// wherever it appears and every refusal is an EINVAL (or ESHAPE) VoxvaeError naming the field:
//   const lr = is.number('options.optimizer.lr', o.lr, { min: 0 });
// The predicates (defined, plainObject, …) answer; the checks (integer, number, oneOf, …) return the
// value, typed, or throw. Node-free: voxvae/web uses it too.
import { VoxvaeError, invalid } from './errors.js';

export { invalid };

/** v is neither undefined nor null. */
export function defined<T>(v: T | undefined | null): v is T {
  return v !== undefined && v !== null;
}

/** v is an object that is not null, an array or a typed array (an options bag). */
export function plainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

/** An options bag: undefined gives {}; anything but a plain object is refused. */
export function options<T extends object>(field: string, v: T | undefined): Partial<T> {
  if (v === undefined) return {};
  if (!plainObject(v)) invalid(field, 'must be an object', v);
  return v;
}

/** Refuses keys of `obj` not in `known` (a misspelt option must not be ignored silently). */
export function knownKeys(field: string, obj: object, known: Iterable<string>, what = 'option'): void {
  const set = known instanceof Set ? (known as Set<string>) : new Set(known);
  for (const k of Object.keys(obj)) if (!set.has(k)) invalid(`${field}.${k}`, `is not a known ${what} (known: ${[...set].join(', ')})`);
}

/** An integer in [min, max] (default [1, 2^20]). */
export function integer(field: string, v: unknown, min = 1, max = 1 << 20): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) invalid(field, `must be an integer in [${min}, ${max}]`, v);
  return v;
}

/** A seed: a non-negative safe integer. */
export function seed(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) invalid(field, 'must be a non-negative safe integer', v);
  return v;
}

export interface NumberRange {
  /** Inclusive lower bound. */
  min?: number;
  /** Inclusive upper bound. */
  max?: number;
  /** Exclusive lower bound (e.g. 0 for "> 0"). */
  above?: number;
  /** Exclusive upper bound. */
  below?: number;
}

/** A finite number within the bounds given. */
export function number(field: string, v: unknown, r: NumberRange = {}): number {
  const ok = typeof v === 'number' && Number.isFinite(v) && (r.min === undefined || v >= r.min) && (r.max === undefined || v <= r.max) && (r.above === undefined || v > r.above) && (r.below === undefined || v < r.below);
  if (!ok) invalid(field, `must be a finite number${describeRange(r)}`, v);
  return v as number;
}

function describeRange(r: NumberRange): string {
  const parts: string[] = [];
  if (r.min !== undefined) parts.push(`>= ${r.min}`);
  if (r.above !== undefined) parts.push(`> ${r.above}`);
  if (r.max !== undefined) parts.push(`<= ${r.max}`);
  if (r.below !== undefined) parts.push(`< ${r.below}`);
  return parts.length ? ` ${parts.join(' and ')}` : '';
}

export function bool(field: string, v: unknown): boolean {
  if (typeof v !== 'boolean') invalid(field, 'must be a boolean', v);
  return v;
}

/** One of the listed strings. */
export function oneOf<T extends string>(field: string, v: unknown, choices: readonly T[]): T {
  if (typeof v !== 'string' || !choices.includes(v as T)) invalid(field, `must be one of ${choices.map((c) => `'${c}'`).join(', ')}`, v);
  return v as T;
}

/** A function. */
export function fn<T extends (...args: never[]) => unknown>(field: string, v: unknown, signature = ''): T {
  if (typeof v !== 'function') invalid(field, `must be a function${signature ? ` ${signature}` : ''}`, v);
  return v as T;
}

/** A spatial shape [D, H, W] of positive integers (each at most `max`). */
export function shape3(field: string, v: unknown, max = 4096): [number, number, number] {
  if (!Array.isArray(v) || v.length !== 3) invalid(field, 'must be [D, H, W]', v);
  return v.map((d, i) => integer(`${field}[${i}]`, d, 1, max)) as [number, number, number];
}

/** A list of `count` (or 1..maxLength) positive integers. */
export function integers(field: string, v: unknown, o: { count?: number; maxLength?: number; min?: number; max?: number } = {}): number[] {
  const what = o.count !== undefined ? `must list ${o.count} integers` : `must be a list of 1 to ${o.maxLength ?? 64} integers`;
  if (!Array.isArray(v) || (o.count !== undefined ? v.length !== o.count : v.length < 1 || v.length > (o.maxLength ?? 64))) invalid(field, what, v);
  return v.map((x, i) => integer(`${field}[${i}]`, x, o.min ?? 1, o.max ?? 1 << 20));
}

/** A Float32Array (values are not checked here: native code refuses NaN/Inf where it matters). */
export function float32Array(field: string, v: unknown): Float32Array {
  if (!(v instanceof Float32Array)) invalid(field, 'must be a Float32Array', v);
  return v;
}

/**
 * The number of samples in `x`, each `perSample` values. With `batch` given, x must hold exactly that many
 * samples; without it, x must hold exactly one sample unless `allowBatch` (then any positive multiple). A
 * volume of the wrong size is ESHAPE, never taken silently as a batch of several.
 */
export function samples(field: string, x: unknown, perSample: number, describeSample: string, batch?: number): number {
  const a = float32Array(field, x);
  if (batch !== undefined) {
    integer('options.batch', batch, 1, 1 << 24);
    if (a.length !== batch * perSample)
      throw new VoxvaeError('ESHAPE', `${field} has ${a.length} values; options.batch ${batch} × one sample (${describeSample} = ${perSample}) is ${batch * perSample}`, { path: field });
    return batch;
  }
  if (a.length === perSample) return 1;
  throw new VoxvaeError(
    'ESHAPE',
    `${field} has ${a.length} values; one sample (${describeSample}) has ${perSample}` +
      (a.length > 0 && a.length % perSample === 0 ? `: pass { batch: ${a.length / perSample} } if it is a batch of ${a.length / perSample}` : ': resample the volume to the model\'s shape'),
    { path: field },
  );
}
