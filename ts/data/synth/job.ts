// One unit of synthetic-dataset work (one skull and its defect versions), shared by the worker threads
// and the in-thread fallback so both produce the same bytes.

import * as zlib from 'node:zlib';
import { niftiHeaderBytes } from '../nifti.js';
import { nrrdHeaderText } from '../nrrd.js';
import { type BinaryVolume, type Vec3, IDENTITY3 } from '../volume.js';
import { CRANIAL_DEFECT_TYPES, type SkullFactors, type SkullOptions, type SkullVolumes, type SynthGrid, generateSkull } from './skull.js';

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

/** File bytes of one mask whose voxels are already in file order (i fastest). */
function encodeFileOrder(grid: SynthGrid, fileOrder: Uint8Array, rel: string, format: SynthFormat, level: number): { rel: string; bytes: Uint8Array }[] {
  const vol = maskVolume(grid, fileOrder); // geometry for the header; data only checked for length
  if (format === 'nii' || format === 'nii.gz') {
    const whole = Buffer.concat([niftiHeaderBytes(vol, { description: 'voxvae synthetic skull' }), fileOrder]);
    return [{ rel, bytes: format === 'nii.gz' ? zlib.gzipSync(whole, { level }) : whole }];
  }
  const body = zlib.gzipSync(fileOrder, { level });
  if (format === 'nrrd') return [{ rel, bytes: Buffer.concat([Buffer.from(nrrdHeaderText(vol, { encoding: 'gzip' }), 'latin1'), body]) }];
  const dataName = rel.replace(/^.*\//, '').replace(/\.nhdr$/, '.raw.gz');
  return [
    { rel: rel.replace(/\.nhdr$/, '.raw.gz'), bytes: body },
    { rel, bytes: Buffer.from(nrrdHeaderText(vol, { encoding: 'gzip', dataFile: dataName }), 'latin1') },
  ];
}

/**
 * The five masks in file order (i fastest), written from the voxel lists: a skull is a few per cent of
 * the grid, so this is much cheaper than transposing five full volumes.
 */
function fileOrderMasks(s: SkullVolumes, shape: Vec3): Record<'complete' | 'cranialDefective' | 'facialDefective' | 'cranialImplant' | 'facialImplant', Uint8Array> {
  const [D, H, W] = shape;
  const n = D * H * W;
  const fo = (p: number): number => {
    const k = p % W, r = (p - k) / W, j = r % H, i = (r - j) / H;
    return i + D * (j + H * k);
  };
  const complete = new Uint8Array(n);
  const list = s.indices.complete;
  for (let q = 0; q < list.length; q++) complete[fo(list[q]!)] = 1;
  const split = (implant: Int32Array): [Uint8Array, Uint8Array] => {
    const def = complete.slice();
    const imp = new Uint8Array(n);
    for (let m = 0; m < implant.length; m++) {
      const f = fo(implant[m]!);
      imp[f] = 1;
      def[f] = 0;
    }
    return [def, imp];
  };
  const [cranialDefective, cranialImplant] = split(s.indices.cranialImplant);
  const [facialDefective, facialImplant] = split(s.indices.facialImplant);
  return { complete, cranialDefective, facialDefective, cranialImplant, facialImplant };
}

export async function runSkullJob(config: SkullJobConfig, index: number): Promise<SkullJobResult> {
  const opts: SkullOptions = { ...config.skull };
  if (opts.cranialDefect === undefined && config.cycleCranial) opts.cranialDefect = CRANIAL_DEFECT_TYPES[index % CRANIAL_DEFECT_TYPES.length]!;
  const s = generateSkull(config.grid, config.seed, index, opts);
  if (config.encode) {
    const { format, level, digits } = config.encode;
    const paths = skullPaths(skullId(index, digits), format);
    const masks = fileOrderMasks(s, config.grid.shape);
    const files = (['complete', 'cranialDefective', 'facialDefective', 'cranialImplant', 'facialImplant'] as const)
      .flatMap((key) => encodeFileOrder(config.grid, masks[key], paths[key], format, level))
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
