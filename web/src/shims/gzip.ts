// ts/data/gzip.ts for the browser bundle: bounded gzip inflation with the browser's DecompressionStream.
// As in Node, output beyond `limit` bytes (what the header declares, plus slack) is refused: a gzip bomb
// stops at the cap instead of filling memory. The browser has no synchronous inflate, so the synchronous
// entry points refuse; the app inflates .nii.gz itself (web/src/volumes.ts) before decodeNifti.
import { VoxvaeError } from '../../../ts/errors.js';

export const GZIP_SLACK = 1 << 20;

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Inflates a gzip stream, stopping once `limit` bytes came out (then: EFORMAT, unless `prefixOnly`, which
 * returns what it has). A truncated or corrupt stream is EFORMAT with the fix.
 */
export async function inflate(bytes: Uint8Array, limit: number, file: string, prefixOnly = false): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = new Blob([bytes as BlobPart]).stream().pipeThrough(new DecompressionStream('gzip')).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      total += value.length;
      if (total > limit) {
        if (prefixOnly) break;
        throw new VoxvaeError('EFORMAT', `${file}: the gzip stream inflates to more than ${limit} bytes, far beyond the size its header declares; the file is corrupt or malicious`, { path: file });
      }
    }
  } catch (err) {
    if (err instanceof VoxvaeError) throw err;
    const msg = (err as Error)?.message ?? String(err);
    throw new VoxvaeError('EFORMAT', `${file}: the gzip stream is corrupt or truncated (${msg}); re-copy or re-export the file`, { path: file, cause: err });
  } finally {
    reader.cancel().catch(() => undefined);
  }
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

export async function gunzipBounded(bytes: Uint8Array, limit: number, file: string): Promise<Uint8Array> {
  return inflate(bytes, Math.max(1, limit), file);
}

function syncUnavailable(): never {
  throw new VoxvaeError('EUNSUPPORTED', 'synchronous gzip is not available in the browser; inflate with gunzipBounded first');
}
export const gunzipPrefix = syncUnavailable;
export const gunzipBoundedSync = syncUnavailable;
export const gzipSync = syncUnavailable;

export async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const buf = await new Response(new Blob([bytes as BlobPart]).stream().pipeThrough(new CompressionStream('gzip'))).arrayBuffer();
  return new Uint8Array(buf);
}
