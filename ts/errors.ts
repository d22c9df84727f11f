// Typed errors of voxvae. Every error thrown by the library is a VoxvaeError with a stable `code`
// (the same codes native/core's Status maps to, plus the TS-only ones below) and a message that says
// what was wrong and what to do about it.

export type ErrorCode =
  | 'EINVAL' // an argument or configuration field is invalid
  | 'ESHAPE' // array lengths or shapes disagree
  | 'ENOMEM' // an allocation failed
  | 'ENOTFINITE' // NaN or Inf where a finite value is required
  | 'EUNSUPPORTED' // a valid request this build cannot do
  | 'EBUSY' // the object is in use by a call still running
  | 'EINTERNAL' // a bug in voxvae: please report it
  | 'EDISPOSED' // the object was disposed
  | 'EFORMAT' // a file is not in the expected format, or is corrupt/truncated
  | 'EIO' // a file could not be read or written
  | 'ECHECKPOINT' // a checkpoint does not match the model or is incomplete
  | 'ENATIVE' // the native addon could not be loaded
  | 'EDEVICE' // the GPU failed or was lost (the CPU backend still works)
  | 'EABORT' // the operation was cancelled
  | 'EDIST'; // data-parallel training: a rank died, hung or disagrees, or the rendezvous failed (ts/dist)

export class VoxvaeError extends Error {
  readonly code: ErrorCode;
  /** The file or field the error concerns, when there is one. */
  readonly path: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { path?: string; cause?: unknown }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'VoxvaeError';
    this.code = code;
    this.path = options?.path;
  }
}

/** Throws EINVAL naming the field, e.g. invalid('config.latentSize', 'must be a positive integer', v). */
export function invalid(field: string, what: string, value?: unknown): never {
  const shown = value === undefined ? '' : ` (got ${describe(value)})`;
  throw new VoxvaeError('EINVAL', `${field} ${what}${shown}`, { path: field });
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value);
  if (Array.isArray(value)) return `[${value.slice(0, 8).map(describe).join(', ')}${value.length > 8 ? ', ...' : ''}]`;
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as unknown as ArrayLike<unknown>).length})`;
  if (value === null) return 'null';
  if (typeof value === 'object') return value.constructor?.name ?? 'object';
  return String(value);
}

/**
 * ENOTFINITE when a computed output holds NaN or ±Inf although the inputs were finite (e.g. a latent so
 * large that the decoder's logits overflow): never returns such values silently.
 */
export function finiteOutput(values: ArrayLike<number>, where: string, what: string): void {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) notFinite(values, i, where, what);
}

/** finiteOutput for a native output: its values, copied and checked in one native pass. */
export function finiteValues(t: { readonly length: number; readInto(dst: Float32Array, checkFinite?: boolean): number }, where: string, what: string): Float32Array {
  const values = new Float32Array(t.length);
  const i = t.readInto(values, true);
  if (i >= 0) notFinite(values, i, where, what);
  return values;
}

/** The ENOTFINITE of finiteOutput for values[i]. */
export function notFinite(values: ArrayLike<number>, i: number, where: string, what: string): never {
  throw new VoxvaeError('ENOTFINITE', `${where}: the ${what} hold ${values[i]} at index ${i} although the input is finite — the input is far outside the range the model was trained on (e.g. a latent of huge magnitude); check it`);
}
