// One entry point for every volume file format voxvae knows: chosen by the file name, or by the
// first bytes when the name says nothing.

import { promises as fsp } from 'node:fs';
import { VoxvaeError, describe, invalid } from '../errors.js';
import { isGzip } from './gzip.js';
import { type NiftiHeader, type NiftiWriteOptions, readNifti, readNiftiHeader, writeNifti } from './nifti.js';
import { type NrrdHeader, type NrrdReadOptions, type NrrdWriteOptions, readNrrd, readNrrdHeader, writeNrrd } from './nrrd.js';
import type { Volume } from './volume.js';

export type VolumeFormat = 'nii' | 'nii.gz' | 'nrrd' | 'nhdr';
export const VOLUME_FORMATS: readonly VolumeFormat[] = ['nii', 'nii.gz', 'nrrd', 'nhdr'];

/** The format a file name implies, or null. */
export function formatOfName(file: string): VolumeFormat | null {
  const f = file.toLowerCase();
  if (f.endsWith('.nii.gz')) return 'nii.gz';
  if (f.endsWith('.nii')) return 'nii';
  if (f.endsWith('.nrrd')) return 'nrrd';
  if (f.endsWith('.nhdr')) return 'nhdr';
  return null;
}

/** True for names readVolume handles (.nii, .nii.gz, .nrrd, .nhdr). */
export function isVolumeFile(file: string): boolean {
  return formatOfName(file) !== null;
}

async function sniff(file: string): Promise<'nifti' | 'nrrd'> {
  let head: Buffer;
  try {
    const fh = await fsp.open(file, 'r');
    try {
      head = Buffer.alloc(8);
      const { bytesRead } = await fh.read(head, 0, 8, 0);
      head = head.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new VoxvaeError('EIO', `cannot read ${file}: ${(err as Error).message}`, { path: file, cause: err });
  }
  if (head.toString('latin1', 0, 4) === 'NRRD') return 'nrrd';
  if (isGzip(head) || (head.length >= 4 && [348, 540].some((n) => head.readInt32LE(0) === n || head.readInt32BE(0) === n))) return 'nifti';
  throw new VoxvaeError('EFORMAT', `${file}: neither NIfTI nor NRRD (name has no .nii/.nii.gz/.nrrd/.nhdr extension and the first bytes are ${describe(head.toString('latin1'))})`, {
    path: file,
  });
}

async function familyOf(file: string): Promise<'nifti' | 'nrrd'> {
  const f = formatOfName(file);
  if (f === 'nii' || f === 'nii.gz') return 'nifti';
  if (f === 'nrrd' || f === 'nhdr') return 'nrrd';
  return sniff(file);
}

/** Reads a NIfTI-1 or NRRD volume. */
export async function readVolume(file: string, options: NrrdReadOptions = {}): Promise<Volume> {
  return (await familyOf(file)) === 'nifti' ? readNifti(file, options) : readNrrd(file, options);
}

/** Reads only the header of a NIfTI-1 or NRRD volume. */
export async function readVolumeHeader(file: string, options: NrrdReadOptions = {}): Promise<NiftiHeader | NrrdHeader> {
  return (await familyOf(file)) === 'nifti' ? readNiftiHeader(file, options) : readNrrdHeader(file, options);
}

export interface WriteVolumeOptions {
  /** Overrides the format the name implies. */
  format?: VolumeFormat;
  /** NRRD encoding (default gzip). */
  encoding?: NrrdWriteOptions['encoding'];
  /** zlib level 1–9 (default 6). */
  level?: number;
  /** NIfTI descrip. */
  description?: NiftiWriteOptions['description'];
}

/** Writes a volume atomically in the format its name (or options.format) says. */
export async function writeVolume(file: string, vol: Volume, options: WriteVolumeOptions = {}): Promise<void> {
  const format = options.format ?? formatOfName(file);
  const level = options.level;
  switch (format) {
    case 'nii':
    case 'nii.gz':
      return writeNifti(file, vol, {
        gzip: format === 'nii.gz',
        ...(level !== undefined ? { level } : {}),
        ...(options.description !== undefined ? { description: options.description } : {}),
      });
    case 'nrrd':
    case 'nhdr':
      return writeNrrd(file, vol, {
        detached: format === 'nhdr',
        ...(options.encoding !== undefined ? { encoding: options.encoding } : {}),
        ...(level !== undefined ? { level } : {}),
      });
    default:
      return invalid('file', 'must end in .nii, .nii.gz, .nrrd or .nhdr (or pass options.format)', file);
  }
}
