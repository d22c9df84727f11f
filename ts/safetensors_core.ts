// safetensors parsing and serialisation without any Node import, shared by the Node API (through
// ts/safetensors.ts, which adds file reading and atomic writing) and the browser entry (ts/web).
// Format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets}, __metadata__: {string: string}}, then the raw
// little-endian tensor bytes. There is no maintained npm implementation, and the format is small, so
// it is implemented here with strict validation: every offset, size and dtype is checked before any
// byte is read.
import { VoxvaeError } from './errors.js';

export type DType = 'F32' | 'F64' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';
const DTYPE_BYTES: Record<DType, number> = { F32: 4, F64: 8, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export interface TensorEntry {
  dtype: DType;
  shape: number[];
  /** The raw bytes (little-endian), a view into the file buffer. */
  bytes: Uint8Array;
}

export interface SafeTensors {
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

const MAX_HEADER = 100 * 1024 * 1024;

/** Parses a safetensors buffer; `file` names the source in errors. */
export function parseSafetensors(buf: Uint8Array, file = '<buffer>'): SafeTensors {
  const bad = (what: string): never => {
    throw new VoxvaeError('EFORMAT', `${file} is not a valid safetensors file: ${what}`, { path: file });
  };
  if (buf.byteLength < 8) bad(`only ${buf.byteLength} bytes (truncated?)`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const hlen = dv.getBigUint64(0, true);
  if (hlen > BigInt(MAX_HEADER)) bad(`header length ${hlen} is implausible`);
  const n = Number(hlen);
  if (8 + n > buf.byteLength) bad(`header of ${n} bytes runs past the end of the ${buf.byteLength}-byte file (truncated?)`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n)));
  } catch (e) {
    bad(`header is not JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) bad('header is not a JSON object');
  const dataStart = 8 + n;
  const dataLen = buf.byteLength - dataStart;
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof v !== 'object' || v === null) bad('__metadata__ is not an object');
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) if (typeof s !== 'string') bad(`__metadata__.${k} is not a string`);
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) bad(`entry ${name} is not an object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_BYTES)) bad(`tensor ${name} has unsupported dtype ${String(e.dtype)}`);
    const dtype = e.dtype as DType;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`tensor ${name} has an invalid shape`);
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`tensor ${name} has invalid data_offsets`);
    const [b, end] = off as [number, number];
    if (b > end || end > dataLen) bad(`tensor ${name} data [${b}, ${end}) lies outside the ${dataLen} data bytes (truncated?)`);
    const count = shape.reduce((a, d) => a * d, 1);
    if (count * DTYPE_BYTES[dtype] !== end - b) bad(`tensor ${name}: shape [${shape.join(', ')}] of ${dtype} needs ${count * DTYPE_BYTES[dtype]} bytes, data_offsets span ${end - b}`);
    spans.push([b, end, name]);
    tensors.set(name, { dtype, shape, bytes: buf.subarray(dataStart + b, dataStart + end) });
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    const prev = spans[i - 1]!, cur = spans[i]!;
    if (cur[0] < prev[1]) bad(`tensors ${prev[2]} and ${cur[2]} overlap`);
  }
  return { tensors, metadata };
}

/** Converts a tensor entry to Float32Array (F32, F64, F16, BF16, integer types). */
/**
 * The JSON object voxvae stores under the `voxvae` metadata key, or null for a checkpoint without one
 * (e.g. a plain PyTorch state_dict). Not JSON, not an object, or not format voxvae-checkpoint v1 →
 * ECHECKPOINT naming `file`. The caller checks the remaining fields (kind, configs).
 */
export function voxvaeMetadata<T extends object>(st: SafeTensors, file: string): T | null {
  if (st.metadata.voxvae === undefined) return null;
  let meta: unknown;
  try {
    meta = JSON.parse(st.metadata.voxvae);
  } catch {
    throw new VoxvaeError('ECHECKPOINT', `${file}: the voxvae metadata is not JSON`, { path: file });
  }
  const m = meta as { format?: unknown; version?: unknown } | null;
  if (typeof m !== 'object' || m === null || m.format !== 'voxvae-checkpoint' || m.version !== 1)
    throw new VoxvaeError('ECHECKPOINT', `${file}: unsupported checkpoint format ${String(m?.format)} v${String(m?.version)} (expected voxvae-checkpoint v1)`, { path: file });
  return meta as T;
}

export function toFloat32(e: TensorEntry): Float32Array {
  const n = e.shape.reduce((a, d) => a * d, 1);
  const dv = new DataView(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    switch (e.dtype) {
      case 'F32': out[i] = dv.getFloat32(i * 4, true); break;
      case 'F64': out[i] = dv.getFloat64(i * 8, true); break;
      case 'F16': out[i] = halfToFloat(dv.getUint16(i * 2, true)); break;
      case 'BF16': out[i] = bf16ToFloat(dv.getUint16(i * 2, true)); break;
      case 'I64': out[i] = Number(dv.getBigInt64(i * 8, true)); break;
      case 'I32': out[i] = dv.getInt32(i * 4, true); break;
      case 'I16': out[i] = dv.getInt16(i * 2, true); break;
      case 'I8': out[i] = dv.getInt8(i); break;
      case 'U8': case 'BOOL': out[i] = dv.getUint8(i); break;
    }
  }
  return out;
}

/**
 * A model tensor read from checkpoint `file` (named `key` there) as float32, after checking that it has
 * exactly `shape`, a float dtype and finite values: ECHECKPOINT naming the tensor and what is wrong
 * otherwise. Shared by the native and WebAssembly loaders.
 */
export function checkpointTensor(e: TensorEntry, shape: readonly number[], key: string, file: string): Float32Array {
  if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i]))
    throw new VoxvaeError('ECHECKPOINT', `${file}: ${key} has shape [${e.shape.join(', ')}], this model needs [${shape.join(', ')}] — the checkpoint is for another architecture (check the config's channels, latentSize and inputShape)`, { path: file });
  if (!['F32', 'F64', 'F16', 'BF16'].includes(e.dtype))
    throw new VoxvaeError('ECHECKPOINT', `${file}: ${key} has dtype ${e.dtype}, expected a float type`, { path: file });
  const f = toFloat32(e);
  for (let i = 0; i < f.length; i++) if (!Number.isFinite(f[i]!)) throw new VoxvaeError('ECHECKPOINT', `${file}: ${key} holds a non-finite value at index ${i}`, { path: file });
  return f;
}

/** Reads an integer tensor (e.g. num_batches_tracked) as numbers. */
export function toNumbers(e: TensorEntry): number[] {
  if (e.dtype === 'I64') {
    const dv = new DataView(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength);
    return Array.from({ length: e.bytes.byteLength / 8 }, (_, i) => Number(dv.getBigInt64(i * 8, true)));
  }
  return Array.from(toFloat32(e));
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}
function bf16ToFloat(h: number): number {
  const b = new DataView(new ArrayBuffer(4));
  b.setUint32(0, h << 16, true);
  return b.getFloat32(0, true);
}

export interface TensorToWrite {
  dtype: 'F32' | 'I64' | 'U8';
  shape: number[];
  data: Float32Array | Uint8Array | number[];
}

/** Serialises tensors (in the given order) and string metadata to a safetensors buffer. */
export function serializeSafetensors(tensors: Map<string, TensorToWrite>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((a, d) => a * d, 1);
    if (t.data.length !== count) throw new VoxvaeError('ESHAPE', `tensor ${name}: ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    const bytes = count * (t.dtype === 'F32' ? 4 : t.dtype === 'U8' ? 1 : 8);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (new TextEncoder().encode(json).byteLength % 8)) % 8;
  json += ' '.repeat(pad);
  const hbytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hbytes.byteLength + offset);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(hbytes.byteLength), true);
  out.set(hbytes, 8);
  let p = 8 + hbytes.byteLength;
  for (const t of tensors.values()) {
    if (t.dtype === 'F32') {
      const f = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
      out.set(new Uint8Array(f.buffer, f.byteOffset, f.byteLength), p);
      p += f.byteLength;
    } else if (t.dtype === 'U8') {
      for (const v of t.data) {
        if (!(Number.isInteger(v) && v >= 0 && v <= 255)) throw new VoxvaeError('EINVAL', `tensor: U8 value ${v} is not an integer in [0, 255]`);
        out[p++] = v;
      }
    } else {
      for (const v of t.data) {
        dv.setBigInt64(p, BigInt(Math.round(v)), true);
        p += 8;
      }
    }
  }
  return out;
}
