// Bounded gzip inflation. A reader first inflates just enough to see the header, works out how many
// bytes the header declares, then inflates the whole stream with that size as a hard cap, so a small
// file that inflates to gigabytes (a "gzip bomb") is refused before it exhausts memory.

import * as zlib from 'node:zlib';
import { promisify } from 'node:util';
import { VoxvaeError } from '../errors.js';

const gunzipAsync = promisify(zlib.gunzip) as (buf: Uint8Array, opts: zlib.ZlibOptions) => Promise<Buffer>;
const gzipAsync = promisify(zlib.gzip) as (buf: Uint8Array, opts: zlib.ZlibOptions) => Promise<Buffer>;

/** Bytes a gzip stream may inflate to beyond what the header declares (padding, trailing fields). */
export const GZIP_SLACK = 1 << 20;

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

function zlibError(err: unknown, file: string, limit: number): VoxvaeError {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) {
    return new VoxvaeError(
      'EFORMAT',
      `${file}: the gzip stream inflates to more than ${limit} bytes, far beyond the size its header declares; the file is corrupt or malicious`,
      { path: file, cause: err },
    );
  }
  const truncated = e?.code === 'Z_BUF_ERROR' || /unexpected end/i.test(e?.message ?? '');
  return new VoxvaeError(
    'EFORMAT',
    truncated
      ? `${file}: the gzip stream ends early (file truncated); re-copy or re-export the file`
      : `${file}: the gzip stream is corrupt (${e?.message ?? String(err)}); re-copy or re-export the file`,
    { path: file, cause: err },
  );
}

/**
 * Inflates at least the first `need` bytes of a gzip stream (fewer only if the whole stream is shorter),
 * reading no more compressed input than necessary.
 */
export function gunzipPrefix(bytes: Uint8Array, need: number, file: string): Buffer {
  let take = 1024;
  for (;;) {
    const part = bytes.subarray(0, Math.min(bytes.length, take));
    let out: Buffer;
    try {
      out = zlib.gunzipSync(part, { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: 256 << 20 });
    } catch (err) {
      throw zlibError(err, file, 256 << 20);
    }
    if (out.length >= need || part.length === bytes.length) return out;
    take *= 8;
  }
}

/** Inflates a whole gzip stream, refusing output beyond `limit` bytes. */
export function gunzipBoundedSync(bytes: Uint8Array, limit: number, file: string): Buffer {
  try {
    return zlib.gunzipSync(bytes, { maxOutputLength: Math.max(1, limit) });
  } catch (err) {
    throw zlibError(err, file, limit);
  }
}

/** As gunzipBoundedSync, but inflates on libuv's thread pool (does not block the event loop). */
export async function gunzipBounded(bytes: Uint8Array, limit: number, file: string): Promise<Buffer> {
  try {
    return await gunzipAsync(bytes, { maxOutputLength: Math.max(1, limit) });
  } catch (err) {
    throw zlibError(err, file, limit);
  }
}

export function gzipSync(bytes: Uint8Array, level = 6): Buffer {
  return zlib.gzipSync(bytes, { level });
}

export async function gzip(bytes: Uint8Array, level = 6): Promise<Buffer> {
  return gzipAsync(bytes, { level });
}
