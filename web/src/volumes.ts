// Volumes in the browser app: what a dropped or picked file is (checkpoint, NIfTI, NRRD, or neither),
// decoding NIfTI-1 (.nii, .nii.gz) and NRRD (.nrrd, attached header) with ts/data's own codecs, turning a
// volume into the model's 0/1 grid (resampled when it differs) and back, and NIfTI downloads.
import { VoxvaeError } from '../../ts/errors.js';
import { decodeNifti, decodeNiftiHeader, encodeNifti } from '../../ts/data/nifti.js';
import { decodeNrrd } from '../../ts/data/nrrd.js';
import { resample } from '../../ts/data/resample.js';
import { toFileOrder, type Vec3, type Volume } from '../../ts/data/volume.js';
import { GZIP_SLACK, gzip, inflate, isGzip } from './shims/gzip.js';

/** Largest voxel payload a dropped volume may declare (a skull mask at 512³ uint8 is 128 MiB). */
export const MAX_VOLUME_BYTES = 512 * 1024 ** 2;

export type FileKind = 'checkpoint' | 'nifti' | 'nifti.gz' | 'nrrd' | 'unknown';

/** What the bytes are, from their content (the name only breaks ties). */
export function sniff(bytes: Uint8Array): FileKind {
  if (isGzip(bytes)) return 'nifti.gz';
  if (bytes.length >= 4 && String.fromCharCode(...bytes.subarray(0, 4)) === 'NRRD') return 'nrrd';
  if (bytes.length >= 348) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, 348);
    if (dv.getInt32(0, true) === 348 || dv.getInt32(0, false) === 348) return 'nifti';
  }
  // safetensors: an 8-byte little-endian header length, then a JSON object.
  if (bytes.length >= 10) {
    const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
    if (n > 1n && n < BigInt(bytes.length) && bytes[8] === 0x7b) return 'checkpoint';
  }
  return 'unknown';
}

function startText(bytes: Uint8Array): string {
  const s = Array.from(bytes.subarray(0, 12), (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
  return s ? `it starts with "${s}"` : 'it is empty';
}

/** Decodes a NIfTI-1 or NRRD file held in memory; anything else is EFORMAT saying what is accepted. */
export async function decodeVolume(bytes: Uint8Array, name: string): Promise<Volume> {
  const kind = sniff(bytes);
  const opts = { maxBytes: MAX_VOLUME_BYTES };
  if (kind === 'nrrd') return decodeNrrd(bytes, name, opts);
  if (kind === 'nifti') return decodeNifti(bytes, name, opts);
  if (kind === 'nifti.gz') {
    // The header first (inflating only its 352 bytes), then the whole stream capped at what it declares.
    const prefix = await inflate(bytes, 352, name, true);
    if (prefix.length >= 4 && String.fromCharCode(...prefix.subarray(0, 4)) === 'NRRD')
      throw new VoxvaeError('EUNSUPPORTED', `${name}: a gzipped NRRD file; save it as .nrrd with "encoding: gzip" inside, or as .nii.gz`, { path: name });
    const head = decodeNiftiHeader(prefix, name, { ...opts, compressed: true });
    const raw = await inflate(bytes, head.voxOffset + head.dataBytes + GZIP_SLACK, name);
    return decodeNifti(raw, name, opts);
  }
  if (kind === 'checkpoint')
    throw new VoxvaeError('EFORMAT', `${name} is a model checkpoint (.safetensors), not a skull volume: load it with "Load checkpoint"`, { path: name });
  throw new VoxvaeError('EFORMAT', `${name} is not a volume the app reads (${startText(bytes)}): give a NIfTI-1 (.nii, .nii.gz) or NRRD (.nrrd) binary skull mask`, { path: name });
}

export interface ModelInput {
  /** The 0/1 skull on the model's grid (C order, D × H × W). */
  mask: Uint8Array;
  /** The same, with the geometry it has on the model's grid (for display). */
  grid: Volume<Uint8Array>;
  /** The input's own 0/1 mask and geometry (downloads are written on it). */
  original: Volume<Uint8Array>;
  /** Set when the input was resampled: what was done, for the page. */
  resampled: string | null;
}

/** A 0/1 skull mask on the model's grid from a decoded volume; refuses intensity images and empty masks. */
export function toModelGrid(vol: Volume, shape: Vec3, name: string): ModelInput {
  const d = vol.data;
  let min = Infinity, max = -Infinity, fg = 0;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (!Number.isFinite(v)) throw new VoxvaeError('ENOTFINITE', `${name}: voxel ${i} is ${v}; a skull mask holds 0 and 1 only`, { path: name });
    if (v < min) min = v;
    if (v > max) max = v;
    if (v > 0.5) fg++;
  }
  if (min < 0 || max > 1)
    throw new VoxvaeError('EFORMAT', `${name}: voxel values run from ${+min.toPrecision(4)} to ${+max.toPrecision(4)}, so this is an intensity image (CT?), not a 0/1 skull mask; threshold it at bone first (e.g. HU ≥ 300 in 3D Slicer's Segment Editor) and save the mask as NIfTI`, { path: name });
  if (fg === 0) throw new VoxvaeError('EFORMAT', `${name}: no voxel is above 0.5, so there is no skull in it; give a 0/1 skull mask`, { path: name });
  const mask = new Uint8Array(d.length);
  for (let i = 0; i < d.length; i++) mask[i] = d[i]! > 0.5 ? 1 : 0;
  const original: Volume<Uint8Array> = { shape: [...vol.shape], data: mask, spacing: [...vol.spacing], origin: [...vol.origin], direction: [...vol.direction] };
  const same = vol.shape[0] === shape[0] && vol.shape[1] === shape[1] && vol.shape[2] === shape[2];
  if (same) return { mask, grid: original, original, resampled: null };
  const grid = resample(original, shape, 'nearest') as Volume<Uint8Array>;
  const ratio = (a: Vec3) => `${(a[0] / a[2]).toFixed(2)} : ${(a[1] / a[2]).toFixed(2)} : 1`;
  const note =
    `resampled from ${vol.shape.join('×')} to the model's ${shape.join('×')} grid (nearest neighbour); the downloads are written back on the input's ${vol.shape.join('×')} grid. ` +
    `The model was trained on whole skulls filling its grid: crop or pad the volume to the skull first if its aspect (${ratio(vol.shape)}) differs much from ${ratio(shape)}.`;
  return { mask: grid.data, grid, original, resampled: note };
}

/** A model-grid mask on the input's own grid (nearest neighbour), with the input's geometry. */
export function toInputGrid(mask: Uint8Array, input: ModelInput): Uint8Array {
  if (!input.resampled) return mask;
  const g = input.grid;
  return resample({ ...g, data: mask }, input.original.shape, 'nearest').data as Uint8Array;
}

/** NIfTI-1 bytes (uncompressed) of a volume, for Niivue. */
export function niftiBytes(vol: Volume, description = 'voxvae app'): Uint8Array {
  return encodeNifti(vol, { description });
}

/** A .nii.gz Blob of a volume (the browser's CompressionStream). */
export async function niftiGzBlob(vol: Volume, description: string): Promise<Blob> {
  return new Blob([(await gzip(encodeNifti(vol, { description }))) as BlobPart], { type: 'application/gzip' });
}

/** The voxels of a C-order volume in NIfTI file order (i fastest), as Niivue holds them. */
export function fileOrder(mask: Uint8Array, shape: Vec3): Uint8Array {
  return toFileOrder(mask, shape);
}
