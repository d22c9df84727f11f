// NIfTI-1 single-file volumes (.nii, .nii.gz): read and write.
//
// Reading: nifti-reader-js parses the 348-byte header fields (either byte order). voxvae checks them,
// computes the affine itself the way nibabel does (sform if sform_code > 0, else qform, else pixdim),
// because nifti-reader-js picks qform over sform when qform_code > sform_code and then hides srow;
// it inflates .nii.gz with Node's zlib under a size cap (a gzip bomb is refused), and transposes the
// voxels from file order (i fastest) to voxvae's C order. nifti-reader-js has no writer, so writing is
// voxvae's own: little-endian, vox_offset 352, qform and sform both set (the codes the volume was read
// with, else 1, scanner anatomical).

import { promises as fsp } from 'node:fs';
import { NIFTI1 } from 'nifti-reader-js';
import { VoxvaeError, describe, invalid } from '../errors.js';
import { writeFileAtomic } from './atomic.js';
import { bytesOf, typedFromBytes } from './bytes.js';
import { GZIP_SLACK, gunzipBounded, gunzipBoundedSync, gunzipPrefix, gzip, gzipSync, isGzip } from './gzip.js';
import {
  DEFAULT_MAX_BYTES,
  type DType,
  type Mat3,
  type ReadOptions,
  type Vec3,
  type Volume,
  type VolumeHeader,
  type VoxelArray,
  affineOf,
  bytesPerVoxel,
  dtypeOf,
  fromFileOrder,
  geometryFromAffine,
  toFileOrder,
  validateVolume,
  voxelCount,
} from './volume.js';

const HEADER_SIZE = 348;
const VOX_OFFSET = 352;

const CODE_TO_DTYPE: Record<number, DType> = { 2: 'uint8', 4: 'int16', 8: 'int32', 16: 'float32', 64: 'float64' };
const DTYPE_TO_CODE: Record<DType, number> = { uint8: 2, int16: 4, int32: 8, float32: 16, float64: 64 };
const CODE_NAMES: Record<number, string> = {
  1: 'binary (1 bit)', 32: 'complex64', 128: 'RGB24', 256: 'int8', 512: 'uint16', 768: 'uint32',
  1024: 'int64', 1280: 'uint64', 1536: 'float128', 1792: 'complex128', 2048: 'complex256', 2304: 'RGBA32',
};

export interface NiftiHeader extends VolumeHeader {
  format: 'nifti';
  littleEndian: boolean;
  voxOffset: number;
  /** Bytes of voxel data the header declares. */
  dataBytes: number;
  /** Linear scaling to apply (nibabel's get_fdata semantics); null when none. */
  scale: { slope: number; inter: number } | null;
  qformCode: number;
  sformCode: number;
  description: string;
}

export interface NiftiWriteOptions {
  /** gzip the file (default: when the name ends in .gz). */
  gzip?: boolean;
  /** zlib level 1–9 (default 6). */
  level?: number;
  /** Up to 79 ASCII characters stored in descrip. */
  description?: string;
}

function fmt(file: string, problem: string, fix: string): VoxvaeError {
  return new VoxvaeError('EFORMAT', `${file}: ${problem}; ${fix}`, { path: file });
}

/** Parses and checks a NIfTI-1 header from the first (uncompressed) bytes of a file. */
export function decodeNiftiHeader(bytes: Uint8Array, file = '<buffer>', options: ReadOptions & { compressed?: boolean } = {}): NiftiHeader {
  if (bytes.length < HEADER_SIZE) {
    throw fmt(file, `only ${bytes.length} bytes, too short for a NIfTI-1 header (348 bytes)`, 'the file is truncated or not NIfTI');
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  const sizeLE = dv.getInt32(0, true);
  const sizeBE = dv.getInt32(0, false);
  if (sizeLE === 540 || sizeBE === 540) {
    throw new VoxvaeError('EUNSUPPORTED', `${file}: NIfTI-2 files are not supported; save it as NIfTI-1 (nibabel: nib.Nifti1Image)`, {
      path: file,
    });
  }
  if (sizeLE !== HEADER_SIZE && sizeBE !== HEADER_SIZE) {
    throw fmt(file, `not a NIfTI-1 file (sizeof_hdr is ${sizeLE}, expected 348)`, 'check the file type');
  }
  const magic = String.fromCharCode(bytes[344]!, bytes[345]!, bytes[346]!, bytes[347]!);
  if (magic === 'ni1\0') {
    throw new VoxvaeError('EUNSUPPORTED', `${file}: a .hdr/.img pair header; convert it to a single .nii file`, { path: file });
  }
  if (magic !== 'n+1\0') {
    throw fmt(file, `wrong NIfTI-1 magic ${describe(magic.replace(/\0/g, '\\0'))} (expected "n+1")`, 'the file is corrupt or not NIfTI-1');
  }
  const h = new NIFTI1();
  try {
    h.readHeader(new Uint8Array(bytes.subarray(0, HEADER_SIZE)).buffer);
  } catch (err) {
    throw new VoxvaeError('EFORMAT', `${file}: unreadable NIfTI-1 header (${(err as Error).message})`, { path: file, cause: err });
  }
  const le = h.littleEndian;

  const ndim = h.dims[0] ?? 0;
  if (!(ndim >= 1 && ndim <= 7)) throw fmt(file, `dim[0] is ${ndim}, must be 1..7`, 'the header is corrupt');
  const dims: number[] = [];
  for (let d = 1; d <= ndim; d++) {
    const n = h.dims[d] ?? 0;
    if (!(n >= 1)) throw fmt(file, `dim[${d}] is ${n}, must be at least 1`, 'the header is corrupt');
    dims.push(n);
  }
  for (let d = 3; d < dims.length; d++) {
    if (dims[d] !== 1) {
      throw new VoxvaeError('EUNSUPPORTED', `${file}: a ${ndim}-D image (dim[${d + 1}] = ${dims[d]}); only 3-D volumes are supported, split it first`, {
        path: file,
      });
    }
  }
  const shape: Vec3 = [dims[0] ?? 1, dims[1] ?? 1, dims[2] ?? 1];

  const code = h.datatypeCode;
  const dtype = CODE_TO_DTYPE[code];
  if (!dtype) {
    throw new VoxvaeError(
      'EUNSUPPORTED',
      `${file}: datatype ${code}${CODE_NAMES[code] ? ` (${CODE_NAMES[code]})` : ''} is not supported; voxvae reads uint8, int16, int32, float32 and float64 — convert the file (e.g. nibabel set_data_dtype)`,
      { path: file },
    );
  }
  if (h.numBitsPerVoxel !== bytesPerVoxel(dtype) * 8) {
    throw fmt(file, `bitpix is ${h.numBitsPerVoxel} but datatype ${dtype} has ${bytesPerVoxel(dtype) * 8} bits`, 'the header is corrupt');
  }
  const voxOffset = h.vox_offset;
  if (!(Number.isInteger(voxOffset) && voxOffset >= VOX_OFFSET)) {
    throw fmt(file, `vox_offset is ${voxOffset}, must be an integer of at least 352 in a .nii file`, 'the header is corrupt');
  }
  const dataBytes = voxelCount(shape) * bytesPerVoxel(dtype);
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  if (dataBytes > maxBytes) {
    throw new VoxvaeError('EUNSUPPORTED', `${file}: the header declares ${dataBytes} bytes of voxels (${shape.join('×')} ${dtype}), more than the limit of ${maxBytes}; raise maxBytes if the file is genuine`, {
      path: file,
    });
  }

  const slope = h.scl_slope, inter = h.scl_inter;
  const scale = Number.isFinite(slope) && slope !== 0 && (slope !== 1 || (Number.isFinite(inter) && inter !== 0))
    ? { slope, inter: Number.isFinite(inter) ? inter : 0 }
    : null;

  const geometry = geometryFromAffine(niftiAffine(h, dv, le, shape));
  if (!geometry.spacing.every((s) => Number.isFinite(s) && s > 0) || !geometry.origin.every(Number.isFinite)) {
    throw fmt(file, `the voxel-to-world transform is degenerate (spacing ${geometry.spacing.join(', ')})`, 'fix the qform/sform or pixdim');
  }
  return {
    format: 'nifti',
    file,
    shape,
    dtype,
    ...geometry,
    compressed: options.compressed ?? false,
    littleEndian: le,
    voxOffset,
    dataBytes,
    scale,
    qformCode: h.qform_code,
    sformCode: h.sform_code,
    description: h.description,
  };
}

// nibabel's get_best_affine order: sform, then qform, then the base affine from pixdim and the shape.
function niftiAffine(h: NIFTI1, dv: DataView, le: boolean, shape: Vec3): number[][] {
  if (h.sform_code > 0) {
    const rows: number[][] = [];
    for (let r = 0; r < 3; r++) {
      const row: number[] = [];
      for (let c = 0; c < 4; c++) row.push(dv.getFloat32(280 + (r * 4 + c) * 4, le));
      rows.push(row);
    }
    return rows;
  }
  const px = (i: number): number => {
    const v = Math.abs(h.pixDims[i] ?? 1);
    return Number.isFinite(v) && v > 0 ? v : 1;
  };
  if (h.qform_code > 0) {
    const b = h.quatern_b, c = h.quatern_c, d = h.quatern_d;
    const a = Math.sqrt(Math.max(0, 1 - (b * b + c * c + d * d)));
    const qfac = (h.pixDims[0] ?? 1) < 0 ? -1 : 1;
    const R = [
      [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
      [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
      [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c],
    ];
    const z = [px(1), px(2), px(3) * qfac];
    const off = [h.qoffset_x, h.qoffset_y, h.qoffset_z];
    return R.map((row, r) => [row[0]! * z[0]!, row[1]! * z[1]!, row[2]! * z[2]!, off[r]!]);
  }
  // No form: nibabel's base affine (Analyze's convention): the x axis flipped, the volume's centre at
  // the origin; |pixdim| (nibabel takes the absolute value on load), 1 where it is zero or not finite.
  const z = [-px(1), px(2), px(3)];
  return [0, 1, 2].map((r) => {
    const row = [0, 0, 0, -((shape[r]! - 1) / 2) * z[r]!];
    row[r] = z[r]!;
    return row;
  });
}

function decodeBody(header: NiftiHeader, raw: Uint8Array): Volume {
  const { file, shape, dtype, voxOffset, dataBytes } = header;
  const end = voxOffset + dataBytes;
  if (raw.length < end) {
    throw fmt(
      file,
      `the header declares ${dataBytes} bytes of voxels (${shape.join('×')} ${dtype}) from offset ${voxOffset}, but the ${header.compressed ? 'inflated ' : ''}data has only ${Math.max(0, raw.length - voxOffset)}`,
      'the file is truncated or its header is wrong',
    );
  }
  if (raw.length > end) {
    throw fmt(
      file,
      `the ${header.compressed ? 'inflated ' : ''}data holds ${raw.length - end} bytes more than the header declares (${shape.join('×')} ${dtype} from offset ${voxOffset})`,
      'the header sizes or datatype are wrong, or the file is corrupt',
    );
  }
  const n = voxelCount(shape);
  const fileOrder = typedFromBytes(dtype, raw.subarray(voxOffset, end), n, header.littleEndian);
  let data: VoxelArray = fromFileOrder(fileOrder, shape);
  if (header.scale) {
    const { slope, inter } = header.scale;
    const out = dtype === 'float64' || dtype === 'int32' ? new Float64Array(n) : new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = data[i]! * slope + inter;
    data = out;
  }
  const { spacing, origin, direction } = header;
  const code = (c: number): number => (Number.isInteger(c) && c >= 1 && c <= 5 ? c : 1);
  return { shape: [...shape], data, spacing: [...spacing], origin: [...origin], direction: [...direction], spaceCodes: { qform: code(header.qformCode), sform: code(header.sformCode) } };
}

/** The largest inflation ratio deflate can reach: a header declaring more than that is refused before inflating. */
const DEFLATE_MAX_RATIO = 1032;

function checkInflatable(head: NiftiHeader, compressed: number): void {
  if (head.voxOffset + head.dataBytes > compressed * DEFLATE_MAX_RATIO + GZIP_SLACK)
    throw fmt(head.file, `the header declares ${head.dataBytes} bytes of voxels (${head.shape.join('×')} ${head.dtype}), more than ${compressed} bytes of gzip data can inflate to`, 'the file is truncated or its header is wrong');
}

/** Decodes a whole .nii or .nii.gz file held in memory. */
export function decodeNifti(bytes: Uint8Array, file = '<buffer>', options: ReadOptions = {}): Volume {
  if (isGzip(bytes)) {
    const head = decodeNiftiHeader(gunzipPrefix(bytes, VOX_OFFSET, file), file, { ...options, compressed: true });
    checkInflatable(head, bytes.length);
    const raw = gunzipBoundedSync(bytes, head.voxOffset + head.dataBytes + GZIP_SLACK, file);
    return decodeBody(head, raw);
  }
  return decodeBody(decodeNiftiHeader(bytes, file, options), bytes);
}

async function readAll(file: string): Promise<Buffer> {
  try {
    return await fsp.readFile(file);
  } catch (err) {
    throw new VoxvaeError('EIO', `cannot read ${file}: ${(err as Error).message}`, { path: file, cause: err });
  }
}

/** Reads a .nii or .nii.gz file (compression is detected from the bytes, not the name). */
export async function readNifti(file: string, options: ReadOptions = {}): Promise<Volume> {
  const bytes = await readAll(file);
  if (isGzip(bytes)) {
    const head = decodeNiftiHeader(gunzipPrefix(bytes, VOX_OFFSET, file), file, { ...options, compressed: true });
    checkInflatable(head, bytes.length);
    const raw = await gunzipBounded(bytes, head.voxOffset + head.dataBytes + GZIP_SLACK, file);
    return decodeBody(head, raw);
  }
  return decodeBody(decodeNiftiHeader(bytes, file, options), bytes);
}

/** Reads only the header of a .nii or .nii.gz file. */
export async function readNiftiHeader(file: string, options: ReadOptions = {}): Promise<NiftiHeader> {
  let fh: fsp.FileHandle | undefined;
  let prefix: Buffer;
  try {
    fh = await fsp.open(file, 'r');
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    prefix = buf.subarray(0, bytesRead);
  } catch (err) {
    throw new VoxvaeError('EIO', `cannot read ${file}: ${(err as Error).message}`, { path: file, cause: err });
  } finally {
    await fh?.close().catch(() => undefined);
  }
  if (isGzip(prefix)) {
    return decodeNiftiHeader(gunzipPrefix(prefix, VOX_OFFSET, file), file, { ...options, compressed: true });
  }
  return decodeNiftiHeader(prefix, file, options);
}

// Rotation part of the qform: the quaternion of the (orthonormalised) direction, per the NIfTI-1
// standard's algorithm; a left-handed direction is stored as qfac = -1 with the third column negated.
function quaternionOf(direction: Mat3): { b: number; c: number; d: number; qfac: number } {
  const col = (c: number): Vec3 => [direction[c]!, direction[3 + c]!, direction[6 + c]!];
  const norm = (v: Vec3): Vec3 => {
    const n = Math.hypot(v[0], v[1], v[2]) || 1;
    return [v[0] / n, v[1] / n, v[2] / n];
  };
  const dot = (u: Vec3, v: Vec3): number => u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
  const e0 = norm(col(0));
  let e1 = col(1);
  e1 = norm([e1[0] - dot(e1, e0) * e0[0], e1[1] - dot(e1, e0) * e0[1], e1[2] - dot(e1, e0) * e0[2]]);
  const cross: Vec3 = [e0[1] * e1[2] - e0[2] * e1[1], e0[2] * e1[0] - e0[0] * e1[2], e0[0] * e1[1] - e0[1] * e1[0]];
  const qfac = dot(cross, col(2)) < 0 ? -1 : 1;
  const e2: Vec3 = cross; // the proper rotation's third column
  const r11 = e0[0], r21 = e0[1], r31 = e0[2];
  const r12 = e1[0], r22 = e1[1], r32 = e1[2];
  const r13 = e2[0], r23 = e2[1], r33 = e2[2];
  let a = r11 + r22 + r33 + 1, b: number, c: number, d: number;
  if (a > 0.5) {
    a = 0.5 * Math.sqrt(a);
    b = (0.25 * (r32 - r23)) / a;
    c = (0.25 * (r13 - r31)) / a;
    d = (0.25 * (r21 - r12)) / a;
  } else {
    const xd = 1 + r11 - (r22 + r33), yd = 1 + r22 - (r11 + r33), zd = 1 + r33 - (r11 + r22);
    if (xd > 1) {
      b = 0.5 * Math.sqrt(xd);
      c = (0.25 * (r12 + r21)) / b;
      d = (0.25 * (r13 + r31)) / b;
      a = (0.25 * (r32 - r23)) / b;
    } else if (yd > 1) {
      c = 0.5 * Math.sqrt(yd);
      b = (0.25 * (r12 + r21)) / c;
      d = (0.25 * (r23 + r32)) / c;
      a = (0.25 * (r13 - r31)) / c;
    } else {
      d = 0.5 * Math.sqrt(zd);
      b = (0.25 * (r13 + r31)) / d;
      c = (0.25 * (r23 + r32)) / d;
      a = (0.25 * (r21 - r12)) / d;
    }
    if (a < 0) {
      b = -b;
      c = -c;
      d = -d;
    }
  }
  return { b, c, d, qfac };
}

/** Encodes a volume as a NIfTI-1 file (.nii bytes, gzipped when options.gzip). */
export function encodeNifti(vol: Volume, options: NiftiWriteOptions = {}): Uint8Array {
  const { header, body } = encodeParts(vol, options);
  const whole = Buffer.concat([header, body]);
  return options.gzip ? gzipSync(whole, options.level) : whole;
}

function encodeParts(vol: Volume, options: NiftiWriteOptions): { header: Buffer; body: Uint8Array } {
  return { header: niftiHeaderBytes(vol, options), body: bytesOf(toFileOrder(vol.data, vol.shape), true) };
}

/**
 * The 352 bytes before the voxels of a .nii file for `vol` (its data is only checked for type and
 * length, so callers that already hold the voxels in file order can pass those).
 */
export function niftiHeaderBytes(vol: Volume, options: Pick<NiftiWriteOptions, 'description'> = {}): Buffer {
  validateVolume(vol);
  const dtype = dtypeOf(vol.data);
  const le = true;
  const h = Buffer.alloc(VOX_OFFSET);
  const dv = new DataView(h.buffer, h.byteOffset, h.length);
  dv.setInt32(0, HEADER_SIZE, le);
  h[38] = 'r'.charCodeAt(0);
  const dims = [3, vol.shape[0], vol.shape[1], vol.shape[2], 1, 1, 1, 1];
  for (const [i, d] of dims.entries()) {
    if (d > 32767) throw new VoxvaeError('EUNSUPPORTED', `shape ${vol.shape.join('×')} does not fit NIfTI-1 (at most 32767 per axis)`);
    dv.setInt16(40 + 2 * i, d, le);
  }
  dv.setInt16(70, DTYPE_TO_CODE[dtype], le);
  dv.setInt16(72, bytesPerVoxel(dtype) * 8, le);
  const q = quaternionOf(vol.direction);
  const pix = [q.qfac, vol.spacing[0], vol.spacing[1], vol.spacing[2], 1, 1, 1, 1];
  for (const [i, p] of pix.entries()) dv.setFloat32(76 + 4 * i, p, le);
  dv.setFloat32(108, VOX_OFFSET, le);
  dv.setFloat32(112, 1, le); // scl_slope
  dv.setFloat32(116, 0, le); // scl_inter
  h[123] = 2; // xyzt_units: mm
  const descrip = (options.description ?? 'voxvae').replace(/[^\x20-\x7e]/g, '?').slice(0, 79);
  h.write(descrip, 148, 'latin1');
  // qform_code and sform_code: the volume's own (kept from the file it was read from), else 1 (scanner anatomical).
  const codes = vol.spaceCodes ?? { qform: 1, sform: 1 };
  for (const k of ['qform', 'sform'] as const)
    if (!(Number.isInteger(codes[k]) && codes[k] >= 1 && codes[k] <= 5)) invalid(`vol.spaceCodes.${k}`, 'must be a NIfTI xform code 1..5 (1 scanner, 2 aligned, 3 Talairach, 4 MNI-152, 5 template)', codes[k]);
  dv.setInt16(252, codes.qform, le);
  dv.setInt16(254, codes.sform, le);
  dv.setFloat32(256, q.b, le);
  dv.setFloat32(260, q.c, le);
  dv.setFloat32(264, q.d, le);
  dv.setFloat32(268, vol.origin[0], le);
  dv.setFloat32(272, vol.origin[1], le);
  dv.setFloat32(276, vol.origin[2], le);
  const A = affineOf(vol);
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) dv.setFloat32(280 + (r * 4 + c) * 4, A[r]![c]!, le);
  h.write('n+1\0', 344, 'latin1');
  // bytes 348..351: extension flag, all zero (no extensions)
  return h;
}

/** Writes a volume to `file` atomically; gzipped when the name ends in .gz (or options.gzip). */
export async function writeNifti(file: string, vol: Volume, options: NiftiWriteOptions = {}): Promise<void> {
  const compress = options.gzip ?? file.toLowerCase().endsWith('.gz');
  const { header, body } = encodeParts(vol, options);
  if (compress) {
    await writeFileAtomic(file, await gzip(Buffer.concat([header, body]), options.level));
  } else {
    await writeFileAtomic(file, [header, body]);
  }
}
