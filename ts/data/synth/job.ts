// One unit of synthetic-dataset work (one skull and its defect versions), shared by the worker threads
// and the in-thread fallback so both produce the same bytes.

import * as zlib from 'node:zlib';
import { encodeNifti } from '../nifti.js';
import { nrrdHeaderText } from '../nrrd.js';
import { bytesOf } from '../bytes.js';
import { type BinaryVolume, IDENTITY3, toFileOrder } from '../volume.js';
import { CRANIAL_DEFECT_TYPES, type SkullFactors, type SkullOptions, type SynthGrid, generateSkull } from './skull.js';

export type SynthFormat = 'nii.gz' | 'nii' | 'nrrd' | 'nhdr';
export const SYNTH_FORMATS: readonly SynthFormat[] = ['nii.gz', 'nii', 'nrrd', 'nhdr'];

export interface SkullJobConfig {
  grid: SynthGrid;
  seed: number;
  skull: SkullOptions;
  /** Cycle the cranial defect type through the four SkullBreak types by index (unless skull.cranialDefect is set). */
  cycleCranial: boolean;
  /** Keep implant masks in the result (in-memory mode). */
  implants: boolean;
  /** When set, return encoded files instead of masks. */
  encode: { format: SynthFormat; level: number; digits: number } | null;
}

export interface SkullJobResult {
  index: number;
  factors: SkullFactors;
  masks: { complete: Uint8Array; cranialDefective: Uint8Array; facialDefective: Uint8Array; cranialImplant: Uint8Array | null; facialImplant: Uint8Array | null } | null;
  /** Paths relative to the dataset folder, with their bytes. */
  files: { rel: string; bytes: Uint8Array }[] | null;
  transfer: ArrayBuffer[];
}

export function skullId(index: number, digits: number): string {
  return String(index).padStart(digits, '0');
}

/** Where each volume of skull `id` goes: the SkullBreak layout, with cranial/facial as defect classes. */
export function skullPaths(id: string, ext: string): Record<'complete' | 'cranialDefective' | 'facialDefective' | 'cranialImplant' | 'facialImplant', string> {
  return {
    complete: `complete_skull/${id}.${ext}`,
    cranialDefective: `defective_skull/cranial/${id}.${ext}`,
    facialDefective: `defective_skull/facial/${id}.${ext}`,
    cranialImplant: `implant/cranial/${id}.${ext}`,
    facialImplant: `implant/facial/${id}.${ext}`,
  };
}

export function maskVolume(grid: SynthGrid, data: Uint8Array): BinaryVolume {
  return { shape: [...grid.shape], data, spacing: [...grid.spacing], origin: [...grid.origin], direction: [...IDENTITY3] };
}

function encode(vol: BinaryVolume, rel: string, format: SynthFormat, level: number): { rel: string; bytes: Uint8Array }[] {
  if (format === 'nii' || format === 'nii.gz') return [{ rel, bytes: encodeNifti(vol, { gzip: format === 'nii.gz', level, description: 'voxvae synthetic skull' }) }];
  const body = zlib.gzipSync(bytesOf(toFileOrder(vol.data, vol.shape), true), { level });
  if (format === 'nrrd') return [{ rel, bytes: Buffer.concat([Buffer.from(nrrdHeaderText(vol, { encoding: 'gzip' }), 'latin1'), body]) }];
  const dataName = rel.replace(/^.*\//, '').replace(/\.nhdr$/, '.raw.gz');
  return [
    { rel: rel.replace(/\.nhdr$/, '.raw.gz'), bytes: body },
    { rel, bytes: Buffer.from(nrrdHeaderText(vol, { encoding: 'gzip', dataFile: dataName }), 'latin1') },
  ];
}

export async function runSkullJob(config: SkullJobConfig, index: number): Promise<SkullJobResult> {
  const opts: SkullOptions = { ...config.skull };
  if (opts.cranialDefect === undefined && config.cycleCranial) opts.cranialDefect = CRANIAL_DEFECT_TYPES[index % CRANIAL_DEFECT_TYPES.length]!;
  const s = generateSkull(config.grid, config.seed, index, opts);
  if (config.encode) {
    const { format, level, digits } = config.encode;
    const paths = skullPaths(skullId(index, digits), format);
    const files = (['complete', 'cranialDefective', 'facialDefective', 'cranialImplant', 'facialImplant'] as const)
      .flatMap((key) => encode(maskVolume(config.grid, s[key]), paths[key], format, level))
      .map((f) => ({ rel: f.rel, bytes: owned(f.bytes) }));
    return { index, factors: s.factors, masks: null, files, transfer: files.map((f) => f.bytes.buffer as ArrayBuffer) };
  }
  const masks = {
    complete: s.complete,
    cranialDefective: s.cranialDefective,
    facialDefective: s.facialDefective,
    cranialImplant: config.implants ? s.cranialImplant : null,
    facialImplant: config.implants ? s.facialImplant : null,
  };
  const transfer = Object.values(masks).filter((m): m is Uint8Array => m !== null).map((m) => m.buffer as ArrayBuffer);
  return { index, factors: s.factors, masks, files: null, transfer };
}

// Small Buffers share Node's pool, which must not be transferred: give each file its own ArrayBuffer.
function owned(b: Uint8Array): Uint8Array {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : new Uint8Array(b);
}
