// NRRD volumes (.nrrd with attached header, .nhdr with a detached data file): read and write.
//
// voxvae's own implementation: nrrd-js (the npm package) reads attached headers only and has no
// gzip-bomb guard, so it does not cover SkullBreak/SkullFix files written with detached headers.
// Read: NRRD0001–NRRD0005 headers, types uchar/short/int/float/double (all their spellings), encodings
// raw, gzip and ascii, either byte order, line/byte skip, space directions/origin in RAS, LAS or LPS
// (converted to voxvae's RAS), or spacings alone. Write: NRRD0004, raw or gzip, attached or detached,
// space left-posterior-superior (the convention of ITK, 3D Slicer and the AutoImplant data).

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { VoxvaeError, describe, invalid } from '../errors.js';
import * as is from '../is.js';
import { writeFileAtomic } from './atomic.js';
import { bytesOf, typedFromBytes } from './bytes.js';
import { GZIP_SLACK, gunzipBounded, gzip } from './gzip.js';
import {
  DEFAULT_MAX_BYTES,
  type DType,
  type Mat3,
  type ReadOptions,
  type Vec3,
  type Volume,
  type VolumeHeader,
  type VoxelArray,
  IDENTITY3,
  allocateChecked,
  typedAllocation,
  bytesPerVoxel,
  dtypeOf,
  fromFileOrder,
  toFileOrder,
  validateVolume,
  voxelCount,
} from './volume.js';

export type NrrdEncoding = 'raw' | 'gzip' | 'ascii';

export interface NrrdHeader extends VolumeHeader {
  format: 'nrrd';
  encoding: NrrdEncoding;
  littleEndian: boolean;
  /** Absolute path of the file holding the data (the header file itself when attached). */
  dataFile: string;
  detached: boolean;
  /** Offset of the data in dataFile (after the header and any line skip); byteSkip applies after decoding. */
  dataOffset: number;
  lineSkip: number;
  byteSkip: number;
  /** Bytes of voxel data the header declares. */
  dataBytes: number;
  /** The header's space field as written, or null. */
  space: string | null;
  /** key:=value pairs. */
  keyValues: Record<string, string>;
}

export interface NrrdReadOptions extends ReadOptions {
  /**
   * Folder a detached header's data file must lie in (default: the header's own folder). A data file
   * name that resolves outside it is refused, so a dataset cannot be made to read arbitrary files.
   */
  dataRoot?: string;
}

export interface NrrdWriteOptions {
  encoding?: 'raw' | 'gzip';
  /** Write a .nhdr header plus a separate data file (default: when the name ends in .nhdr). */
  detached?: boolean;
  /** zlib level 1–9 (default 6). */
  level?: number;
  /** key:=value pairs to store. */
  keyValues?: Record<string, string>;
}

const MAX_HEADER = 1 << 20;

// The field identifiers Teem's nrrd library knows (and their alternative spellings); like unu, any
// other field is an error, so a misspelt "space" or "space directions" is never silently ignored.
const KNOWN_FIELDS = new Set([
  'content', 'number', 'type', 'block size', 'blocksize', 'dimension', 'space', 'space dimension', 'sizes',
  'spacings', 'thicknesses', 'axis mins', 'axismins', 'axis maxs', 'axismaxs', 'space directions', 'centers',
  'centerings', 'kinds', 'labels', 'units', 'min', 'max', 'old min', 'oldmin', 'old max', 'oldmax', 'endian',
  'encoding', 'line skip', 'lineskip', 'byte skip', 'byteskip', 'sample units', 'sampleunits', 'space units',
  'space origin', 'measurement frame', 'data file', 'datafile',
]);
/** The largest inflation ratio deflate can reach (a stream cannot inflate to more than this × its bytes). */
export const DEFLATE_MAX_RATIO = 1032;

const TYPE_NAMES: Record<string, DType> = {};
for (const n of ['uchar', 'unsigned char', 'uint8', 'uint8_t']) TYPE_NAMES[n] = 'uint8';
for (const n of ['short', 'short int', 'signed short', 'signed short int', 'int16', 'int16_t']) TYPE_NAMES[n] = 'int16';
for (const n of ['int', 'signed int', 'int32', 'int32_t']) TYPE_NAMES[n] = 'int32';
TYPE_NAMES['float'] = 'float32';
TYPE_NAMES['double'] = 'float64';
const UNSUPPORTED_TYPES = new Set([
  'signed char', 'int8', 'int8_t', 'ushort', 'unsigned short', 'unsigned short int', 'uint16', 'uint16_t',
  'uint', 'unsigned int', 'uint32', 'uint32_t', 'longlong', 'long long', 'long long int', 'signed long long',
  'signed long long int', 'int64', 'int64_t', 'ulonglong', 'unsigned long long', 'unsigned long long int',
  'uint64', 'uint64_t', 'block',
]);
const WRITE_TYPE: Record<DType, string> = { uint8: 'uchar', int16: 'short', int32: 'int', float32: 'float', float64: 'double' };

// Sign flips that take each space's coordinates to RAS.
const SPACE_TO_RAS: Record<string, Vec3> = {
  'right-anterior-superior': [1, 1, 1],
  ras: [1, 1, 1],
  'left-anterior-superior': [-1, 1, 1],
  las: [-1, 1, 1],
  'left-posterior-superior': [-1, -1, 1],
  lps: [-1, -1, 1],
  'scanner-xyz': [1, 1, 1],
  '3d-right-handed': [1, 1, 1],
  '3d-left-handed': [1, 1, 1],
};

function fmt(file: string, problem: string, fix = 'the file is corrupt or was not written as NRRD'): VoxvaeError {
  return new VoxvaeError('EFORMAT', `${file}: ${problem}; ${fix}`, { path: file });
}

function unsupported(file: string, what: string): VoxvaeError {
  return new VoxvaeError('EUNSUPPORTED', `${file}: ${what}`, { path: file });
}

/** Splits the header text off the start of `bytes`; `end` is the offset just past the blank line (or the whole buffer). */
function headerLines(bytes: Uint8Array, file: string): { lines: string[]; end: number; blank: boolean } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lines: string[] = [];
  let pos = 0;
  for (;;) {
    if (pos >= buf.length) return { lines, end: buf.length, blank: false };
    if (pos > MAX_HEADER) throw fmt(file, `no end of header within ${MAX_HEADER} bytes`);
    let nl = buf.indexOf(0x0a, pos);
    const last = nl < 0;
    if (last) nl = buf.length;
    let line = buf.toString('latin1', pos, nl);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    pos = nl + 1;
    if (line === '' && !last) return { lines, end: pos, blank: true };
    if (line !== '') lines.push(line);
    if (last) return { lines, end: buf.length, blank: false };
  }
}

function parseVector(text: string, file: string, field: string): Vec3 {
  const m = /^\(\s*([^)]*)\)$/.exec(text.trim());
  const parts = m ? m[1]!.split(',').map((s) => Number(s.trim())) : [];
  if (parts.length !== 3 || !parts.every(Number.isFinite)) throw fmt(file, `${field} ${describe(text)} is not a 3-vector "(x,y,z)"`);
  return [parts[0]!, parts[1]!, parts[2]!];
}

function intField(value: string, file: string, field: string, min: number): number {
  const n = Number(value.trim());
  if (!Number.isInteger(n) || n < min) throw fmt(file, `${field} ${describe(value)} must be an integer of at least ${min}`);
  return n;
}

function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Parses an NRRD header held at the start of `bytes` (the whole .nhdr, or the start of a .nrrd).
 * `file` is the header's path: a detached data file is resolved relative to its folder.
 */
export function decodeNrrdHeader(bytes: Uint8Array, file: string, options: NrrdReadOptions = {}): NrrdHeader {
  const magic = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(8, bytes.length)).toString('latin1');
  if (!/^NRRD000[1-5]$/.test(magic)) {
    throw fmt(file, `wrong magic ${describe(magic)} (expected "NRRD0001".."NRRD0005")`, 'the file is not NRRD or is corrupt');
  }
  const { lines, end, blank } = headerLines(bytes, file);
  const fields = new Map<string, string>();
  const keyValues: Record<string, string> = {};
  for (const [n, line] of lines.slice(1).entries()) {
    if (line.startsWith('#')) continue;
    const kv = line.indexOf(':=');
    const fv = line.indexOf(': ');
    if (kv >= 0 && (fv < 0 || kv < fv)) {
      keyValues[line.slice(0, kv)] = line.slice(kv + 2);
    } else if (fv > 0) {
      const name = line.slice(0, fv).trim().toLowerCase();
      if (!KNOWN_FIELDS.has(name))
        throw fmt(file, `unknown field ${describe(line.slice(0, fv).trim())} on header line ${n + 2} (Teem's unu refuses it too)`, 'correct its spelling (e.g. "space", "space directions", "space origin"), or store custom data as a "key:=value" pair');
      if (fields.has(name)) throw fmt(file, `field "${name}" appears twice`);
      fields.set(name, line.slice(fv + 2).trim());
    } else {
      throw fmt(file, `header line ${n + 2} ${describe(line)} is neither a field, a key:=value pair nor a comment`);
    }
  }
  const get = (...names: string[]): string | undefined => {
    for (const n of names) if (fields.has(n)) return fields.get(n);
    return undefined;
  };
  const need = (name: string): string => {
    const v = get(name);
    if (v === undefined) throw fmt(file, `the required field "${name}" is missing`);
    return v;
  };

  const typeName = need('type').toLowerCase();
  const dtype = TYPE_NAMES[typeName];
  if (!dtype) {
    if (UNSUPPORTED_TYPES.has(typeName)) {
      throw unsupported(file, `type "${typeName}" is not supported; voxvae reads uchar, short, int, float and double — convert it (unu convert -t short)`);
    }
    throw fmt(file, `unknown type ${describe(typeName)}`);
  }
  const dimension = intField(need('dimension'), file, 'dimension', 1);
  if (dimension > 3) throw unsupported(file, `dimension ${dimension}: only 3-D volumes are supported; slice it first (unu slice)`);
  const sizes = need('sizes').split(/\s+/).map((s) => Number(s));
  if (sizes.length !== dimension || !sizes.every((s) => Number.isInteger(s) && s >= 1)) {
    throw fmt(file, `sizes ${describe(get('sizes'))} must be ${dimension} positive integers`);
  }
  const shape: Vec3 = [sizes[0] ?? 1, sizes[1] ?? 1, sizes[2] ?? 1];

  const encName = need('encoding').toLowerCase();
  let encoding: NrrdEncoding;
  if (encName === 'raw') encoding = 'raw';
  else if (encName === 'gzip' || encName === 'gz') encoding = 'gzip';
  else if (encName === 'ascii' || encName === 'text' || encName === 'txt') encoding = 'ascii';
  else if (['bzip2', 'bz2', 'hex', 'zrl'].includes(encName)) {
    throw unsupported(file, `encoding "${encName}" is not supported; voxvae reads raw, gzip and ascii (unu save -e gzip)`);
  } else throw fmt(file, `unknown encoding ${describe(encName)}`);

  const size = bytesPerVoxel(dtype);
  const endian = get('endian')?.toLowerCase();
  if (endian !== undefined && endian !== 'little' && endian !== 'big') throw fmt(file, `endian ${describe(endian)} must be "little" or "big"`);
  if (endian === undefined && size > 1 && encoding !== 'ascii') throw fmt(file, `the field "endian" is required for ${typeName} data`);
  const littleEndian = endian !== 'big';

  const dataBytes = voxelCount(shape) * size;
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  if (dataBytes > maxBytes) {
    throw unsupported(file, `the header declares ${dataBytes} bytes of voxels (${shape.join('×')} ${dtype}), more than the limit of ${maxBytes}; raise maxBytes if the file is genuine`);
  }

  // Geometry.
  const spaceName = get('space');
  let flips: Vec3 = [1, 1, 1];
  if (spaceName !== undefined) {
    const f = SPACE_TO_RAS[spaceName.toLowerCase()];
    if (!f) throw unsupported(file, `space "${spaceName}" is not a 3-D anatomical space voxvae knows (RAS, LAS, LPS, scanner-xyz)`);
    flips = f;
  }
  const spaceDim = get('space dimension');
  if (spaceDim !== undefined && spaceDim.trim() !== '3') throw unsupported(file, `space dimension ${spaceDim}: only 3-D spaces are supported`);
  const spacing: Vec3 = [1, 1, 1];
  const direction: Mat3 = [...IDENTITY3];
  let origin: Vec3 = [0, 0, 0];
  const dirs = get('space directions');
  if (dirs !== undefined) {
    const tokens = dirs.match(/\([^)]*\)|none/g) ?? [];
    if (tokens.length !== dimension) throw fmt(file, `space directions has ${tokens.length} entries for ${dimension} axes`);
    for (const [c, tok] of tokens.entries()) {
      if (tok === 'none') throw unsupported(file, `axis ${c} has no space direction; only volumes with three spatial axes are supported`);
      const v = parseVector(tok, file, 'a space direction');
      const n = Math.hypot(v[0], v[1], v[2]);
      if (!(n > 0)) throw fmt(file, `space direction ${c} is the zero vector`);
      spacing[c] = n;
      for (let r = 0; r < 3; r++) direction[r * 3 + c] = (flips[r]! * v[r]!) / n;
    }
  } else {
    const sp = get('spacings');
    if (sp !== undefined) {
      const vals = sp.split(/\s+/).map(Number);
      for (let c = 0; c < dimension; c++) {
        const v = Math.abs(vals[c] ?? NaN);
        if (Number.isFinite(v) && v > 0) spacing[c] = v;
      }
    }
  }
  const orig = get('space origin');
  if (orig !== undefined) {
    const o = parseVector(orig, file, 'space origin');
    origin = [flips[0] * o[0], flips[1] * o[1], flips[2] * o[2]];
  }

  // Where the data is.
  const lineSkip = intField(get('line skip', 'lineskip') ?? '0', file, 'line skip', 0);
  const byteSkipText = get('byte skip', 'byteskip') ?? '0';
  const byteSkip = byteSkipText.trim() === '-1' ? -1 : intField(byteSkipText, file, 'byte skip', 0);
  if (byteSkip === -1 && encoding !== 'raw') throw fmt(file, `"byte skip: -1" is only allowed with raw encoding`);
  const dataName = get('data file', 'datafile');
  let dataFile = path.resolve(file);
  let detached = false;
  if (dataName !== undefined) {
    if (dataName === 'LIST' || dataName.startsWith('LIST ') || /\s/.test(dataName)) {
      throw unsupported(file, `a multi-file data file (${describe(dataName)}); join the pieces into one file first (unu join)`);
    }
    const root = path.resolve(options.dataRoot ?? path.dirname(path.resolve(file)));
    dataFile = path.resolve(path.dirname(path.resolve(file)), dataName);
    if (!isInside(root, dataFile)) {
      throw new VoxvaeError('EFORMAT', `${file}: the data file ${describe(dataName)} points outside ${root}; refusing to read it (move the data next to its header)`, {
        path: file,
      });
    }
    detached = true;
  } else if (!blank) {
    throw fmt(file, 'the header has no blank line ending it and no "data file" field, so there is no data', 'the file is truncated or not NRRD');
  }
  return {
    format: 'nrrd',
    file,
    shape,
    dtype,
    spacing,
    origin,
    direction,
    compressed: encoding === 'gzip',
    encoding,
    littleEndian,
    dataFile,
    detached,
    dataOffset: detached ? 0 : end,
    lineSkip,
    byteSkip,
    dataBytes,
    space: spaceName ?? null,
    keyValues,
  };
}

function skipLines(bytes: Uint8Array, from: number, n: number, file: string): number {
  let pos = from;
  for (let i = 0; i < n; i++) {
    const nl = bytes.indexOf(0x0a, pos);
    if (nl < 0) throw fmt(file, `line skip ${n} runs past the end of the data`, 'the file is truncated or its header is wrong');
    pos = nl + 1;
  }
  return pos;
}

/** An ASCII value as Teem writes and reads it: a decimal number, or (floating-point types) inf, -inf, nan. */
function asciiValue(token: string, dtype: DType, file: string, i: number): number {
  let v = Number(token);
  if (Number.isNaN(v)) {
    const m = /^([+-]?)(inf|infinity|nan)$/i.exec(token);
    if (!m) throw fmt(file, `ascii value ${i} ${describe(token)} is not a number`);
    v = m[2]!.toLowerCase() === 'nan' ? NaN : m[1] === '-' ? -Infinity : Infinity;
  } else if (token.length > 2 && /^[+-]?0[xob]/i.test(token)) {
    throw fmt(file, `ascii value ${i} ${describe(token)} is not a decimal number`);
  }
  if (dtype !== 'float32' && dtype !== 'float64' && !Number.isInteger(v))
    throw fmt(file, `ascii value ${i} ${describe(token)} is not an integer, but the type is ${dtype} (unu refuses it too)`);
  return v;
}

function parseAscii(bytes: Uint8Array, dtype: DType, n: number, file: string): VoxelArray {
  // Each value takes at least one character and one separator: a header declaring more values than the
  // bytes can hold is refused before anything is allocated, and so is one the tokens do not fill.
  if (n > Math.ceil(bytes.length / 2))
    throw fmt(file, `the header declares ${n} ascii values but the data has only ${bytes.length} bytes (at most ${Math.ceil(bytes.length / 2)} values)`, 'the file is truncated or its header is wrong');
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
  const re = /[^\s,]+/g;
  let have = 0;
  while (have < n && re.exec(text)) have++;
  if (have < n) throw fmt(file, `ascii data has ${have} values, the header declares ${n}`, 'the file is truncated or its header is wrong');
  const out = allocateChecked(dtype, n, file);
  re.lastIndex = 0;
  for (let i = 0; i < n; i++) out[i] = asciiValue(re.exec(text)![0], dtype, file, i);
  return out;
}

async function decodeData(header: NrrdHeader, container: Uint8Array): Promise<Volume> {
  const where = header.detached ? header.dataFile : header.file;
  try {
    return await decodeParsed(header, container);
  } catch (err) {
    return typedAllocation(where, () => {
      throw err;
    });
  }
}

async function decodeParsed(header: NrrdHeader, container: Uint8Array): Promise<Volume> {
  const { dataFile, dtype, shape, dataBytes, byteSkip } = header;
  const where = header.detached ? dataFile : header.file;
  const n = voxelCount(shape);
  const start = skipLines(container, header.dataOffset, header.lineSkip, where);
  let fileOrder: VoxelArray;
  const mismatch = (have: number): VoxvaeError =>
    fmt(
      where,
      `the header${header.detached ? ` (${header.file})` : ''} declares ${dataBytes} bytes of voxels (${shape.join('×')} ${dtype}) but the ${header.encoding === 'gzip' ? 'inflated ' : ''}data has ${have}`,
      'the file is truncated or its header sizes are wrong',
    );
  if (header.encoding === 'ascii') {
    fileOrder = parseAscii(container.subarray(start), dtype, n, where);
  } else {
    let payload: Uint8Array;
    if (header.encoding === 'gzip') {
      const compressed = container.length - start;
      if (byteSkip + dataBytes > compressed * DEFLATE_MAX_RATIO + GZIP_SLACK)
        throw fmt(where, `the header declares ${dataBytes} bytes of voxels (${shape.join('×')} ${dtype}), more than ${compressed} bytes of gzip data can inflate to`, 'the file is truncated or its header sizes are wrong');
      payload = await gunzipBounded(container.subarray(start), byteSkip + dataBytes + GZIP_SLACK, where);
      payload = payload.subarray(Math.min(byteSkip, payload.length));
    } else if (byteSkip === -1) {
      payload = container.subarray(Math.max(start, container.length - dataBytes));
    } else {
      payload = container.subarray(Math.min(container.length, start + byteSkip));
    }
    if (payload.length !== dataBytes) throw mismatch(payload.length);
    fileOrder = typedFromBytes(dtype, payload, n, header.littleEndian);
  }
  const { spacing, origin, direction } = header;
  return { shape: [...shape], data: fromFileOrder(fileOrder, shape), spacing: [...spacing], origin: [...origin], direction: [...direction] };
}

async function readFileChecked(file: string, what = 'read'): Promise<Buffer> {
  try {
    return await fsp.readFile(file);
  } catch (err) {
    throw new VoxvaeError('EIO', `cannot ${what} ${file}: ${(err as Error).message}`, { path: file, cause: err });
  }
}

async function checkRealInside(header: NrrdHeader, options: NrrdReadOptions): Promise<void> {
  // The name was checked lexically; a symbolic link could still lead outside the folder.
  const root = path.resolve(options.dataRoot ?? path.dirname(path.resolve(header.file)));
  let real: string, realRoot: string;
  try {
    [real, realRoot] = await Promise.all([fsp.realpath(header.dataFile), fsp.realpath(root)]);
  } catch (err) {
    throw new VoxvaeError('EIO', `${header.file}: cannot open its data file ${header.dataFile}: ${(err as Error).message}`, {
      path: header.file,
      cause: err,
    });
  }
  if (!isInside(realRoot, real)) {
    throw new VoxvaeError('EFORMAT', `${header.file}: the data file ${header.dataFile} is a link to ${real}, outside ${realRoot}; refusing to read it`, {
      path: header.file,
    });
  }
}

/** Reads a .nrrd (attached) or .nhdr (detached) file. */
export async function readNrrd(file: string, options: NrrdReadOptions = {}): Promise<Volume> {
  const bytes = await readFileChecked(file);
  const header = decodeNrrdHeader(bytes, file, options);
  if (!header.detached) return decodeData(header, bytes);
  await checkRealInside(header, options);
  const data = await readFileChecked(header.dataFile, `read the data file of ${file}:`);
  return decodeData(header, data);
}

/** Decodes an attached-header NRRD held in memory. */
export async function decodeNrrd(bytes: Uint8Array, file = '<buffer>', options: ReadOptions = {}): Promise<Volume> {
  const header = decodeNrrdHeader(bytes, file, options);
  if (header.detached) throw unsupported(file, 'a detached header cannot be decoded from memory; use readNrrd with the file path');
  return decodeData(header, bytes);
}

/** Reads only the header of a .nrrd or .nhdr file. */
export async function readNrrdHeader(file: string, options: NrrdReadOptions = {}): Promise<NrrdHeader> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(file, 'r');
    // Most headers are well under 64 KiB; a longer one (many key/value pairs) is read up to the limit.
    for (const size of [64 * 1024, MAX_HEADER + 2]) {
      const buf = Buffer.alloc(size);
      const { bytesRead } = await fh.read(buf, 0, size, 0);
      const prefix = buf.subarray(0, bytesRead);
      if (bytesRead < size || prefix.indexOf('\n\n') >= 0 || prefix.indexOf('\n\r\n') >= 0 || size > MAX_HEADER) {
        return decodeNrrdHeader(prefix, file, options);
      }
    }
    throw new VoxvaeError('EINTERNAL', `${file}: header read loop ended`);
  } catch (err) {
    if (err instanceof VoxvaeError) throw err;
    throw new VoxvaeError('EIO', `cannot read ${file}: ${(err as Error).message}`, { path: file, cause: err });
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

function vec(v: readonly number[]): string {
  return `(${v.map((x) => String(x === 0 ? 0 : x)).join(',')})`;
}

/** The header text (ending with the blank line when attached) for `vol`. */
export function nrrdHeaderText(vol: Volume, options: { encoding: 'raw' | 'gzip'; dataFile?: string; keyValues?: Record<string, string> }): string {
  validateVolume(vol);
  const dtype = dtypeOf(vol.data);
  const lps: Vec3 = [-1, -1, 1];
  const dirs = [0, 1, 2].map((c) => vec([0, 1, 2].map((r) => lps[r]! * vol.direction[r * 3 + c]! * vol.spacing[c]!)));
  const lines = [
    'NRRD0004',
    '# Complete NRRD file format specification at:',
    '# http://teem.sourceforge.net/nrrd/format.html',
    `type: ${WRITE_TYPE[dtype]}`,
    'dimension: 3',
    'space: left-posterior-superior',
    `sizes: ${vol.shape.join(' ')}`,
    `space directions: ${dirs.join(' ')}`,
    'kinds: domain domain domain',
  ];
  if (bytesPerVoxel(dtype) > 1) lines.push('endian: little');
  lines.push(`encoding: ${options.encoding}`);
  lines.push(`space origin: ${vec([lps[0] * vol.origin[0], lps[1] * vol.origin[1], lps[2] * vol.origin[2]])}`);
  if (options.dataFile !== undefined) lines.push(`data file: ${options.dataFile}`);
  for (const [k, v] of Object.entries(options.keyValues ?? {})) {
    if (/[\n\r]/.test(k + v) || k.includes(':=') || k === '') invalid(`keyValues[${describe(k)}]`, 'must be one line without ":=" in the key', v);
    lines.push(`${k}:=${v}`);
  }
  return lines.join('\n') + '\n' + (options.dataFile === undefined ? '\n' : '');
}

/** Encodes a volume as an attached-header NRRD file. */
export async function encodeNrrd(vol: Volume, options: Omit<NrrdWriteOptions, 'detached'> = {}): Promise<Uint8Array> {
  const encoding = options.encoding ?? 'gzip';
  const header = Buffer.from(nrrdHeaderText(vol, { encoding, keyValues: options.keyValues ?? {} }), 'latin1');
  const body = await encodeBody(vol, encoding, options.level);
  return Buffer.concat([header, body]);
}

async function encodeBody(vol: Volume, encoding: 'raw' | 'gzip', level?: number): Promise<Uint8Array> {
  const raw = bytesOf(toFileOrder(vol.data, vol.shape), true);
  return encoding === 'gzip' ? gzip(raw, level) : raw;
}

/**
 * Writes `vol` atomically. Attached (.nrrd) by default; detached when the name ends in .nhdr or
 * options.detached: the data goes to NAME.raw or NAME.raw.gz beside the header, written first, so a
 * reader never finds a header whose data is missing.
 */
export async function writeNrrd(file: string, vol: Volume, options: NrrdWriteOptions = {}): Promise<void> {
  const encoding = is.oneOf('options.encoding', options.encoding ?? 'gzip', ['raw', 'gzip'] as const);
  const detached = options.detached ?? file.toLowerCase().endsWith('.nhdr');
  const body = await encodeBody(vol, encoding, options.level);
  if (!detached) {
    const header = Buffer.from(nrrdHeaderText(vol, { encoding, keyValues: options.keyValues ?? {} }), 'latin1');
    await writeFileAtomic(file, [header, body]);
    return;
  }
  const stem = path.basename(file).replace(/\.(nhdr|nrrd)$/i, '');
  const dataName = `${stem}.raw${encoding === 'gzip' ? '.gz' : ''}`;
  const dataPath = path.join(path.dirname(file), dataName);
  const header = Buffer.from(nrrdHeaderText(vol, { encoding, dataFile: dataName, keyValues: options.keyValues ?? {} }), 'latin1');
  const existed = await fsp.access(dataPath).then(() => true, () => false);
  await writeFileAtomic(dataPath, body);
  try {
    await writeFileAtomic(file, header);
  } catch (err) {
    if (!existed) await fsp.rm(dataPath, { force: true }).catch(() => undefined);
    throw err;
  }
}
