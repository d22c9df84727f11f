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
