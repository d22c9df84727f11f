// A summary of a dataset on disk (what `voxvae dataset info` prints): counts per class and kind, shapes,
// spacing, voxel types, foreground fraction, and every file that could not be read.

import { VoxvaeError } from '../errors.js';
import { stat } from 'node:fs/promises';
import { VolumeDataset } from './dataset.js';
import { isVolumeFile } from './io.js';
import { ITEM_KINDS, type ItemKind, type LayoutName } from './layout.js';
import type { Vec3 } from './volume.js';

export interface DatasetInfo {
  root: string;
  layout: LayoutName;
  files: number;
  pairs: number;
  /** Files per class label, split by kind: {label: {complete: n, defective: n, implant: n, other: n}}. */
  byClass: Record<string, Partial<Record<ItemKind, number>>>;
  byKind: Record<ItemKind, number>;
  shapes: { shape: Vec3; count: number }[];
  spacings: { spacing: Vec3; count: number }[];
  dtypes: Record<string, number>;
  formats: Record<string, number>;
  /** Fraction of voxels above the threshold, over the files read (null when not measured). */
  foreground: { mean: number; min: number; max: number; threshold: number } | null;
  errors: { path: string; code: string; message: string }[];
}

export interface InfoOptions {
  /** Read every file to measure the foreground (default true; false reads headers only). */
  foreground?: boolean;
  /** Foreground = value > threshold (default 0.5). */
  threshold?: number;
  maxBytes?: number;
  onProgress?: (done: number, total: number) => void;
}

function round(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}

export async function datasetInfo(target: string, options: InfoOptions = {}): Promise<DatasetInfo> {
  const dsOptions = { kinds: ITEM_KINDS, ...(options.maxBytes !== undefined ? { maxBytes: options.maxBytes } : {}) };
  // A single volume file is a dataset of one (not a manifest).
  const single = isVolumeFile(target) && !(await stat(target).catch(() => null))?.isDirectory();
  const ds = single ? VolumeDataset.fromFiles([target], dsOptions) : await VolumeDataset.open(target, dsOptions);
  const threshold = options.threshold ?? 0.5;
  const measure = options.foreground ?? true;
  const byClass: DatasetInfo['byClass'] = {};
  const byKind: Record<ItemKind, number> = { complete: 0, defective: 0, implant: 0, other: 0 };
  const shapes = new Map<string, { shape: Vec3; count: number }>();
  const spacings = new Map<string, { spacing: Vec3; count: number }>();
  const dtypes: Record<string, number> = {};
  const formats: Record<string, number> = {};
  const errors: DatasetInfo['errors'] = [];
  const pairs = new Set<string>();
  let fgSum = 0, fgMin = Infinity, fgMax = -Infinity, fgN = 0;
  for (let i = 0; i < ds.length; i++) {
    const item = ds.items[i]!;
    const cls = (byClass[item.label] ??= {});
    cls[item.kind] = (cls[item.kind] ?? 0) + 1;
    byKind[item.kind]++;
    pairs.add(`${item.subset}/${item.pairId}`);
    try {
      const h = await ds.header(i);
      const key = h.shape.join('×');
      shapes.set(key, { shape: h.shape, count: (shapes.get(key)?.count ?? 0) + 1 });
      const sp = h.spacing.map(round) as Vec3;
      const skey = sp.join(',');
      spacings.set(skey, { spacing: sp, count: (spacings.get(skey)?.count ?? 0) + 1 });
      dtypes[h.dtype] = (dtypes[h.dtype] ?? 0) + 1;
      const fmt = h.format === 'nifti' ? (h.compressed ? 'nii.gz' : 'nii') : h.format === 'nrrd' ? `nrrd${h.compressed ? ' (gzip)' : ''}` : h.format;
      formats[fmt] = (formats[fmt] ?? 0) + 1;
      if (measure) {
        const v = await ds.readRaw(i);
        let n = 0;
        const d = v.data;
        for (let p = 0; p < d.length; p++) if (d[p]! > threshold) n++;
        const f = n / d.length;
        fgSum += f;
        fgN++;
        fgMin = Math.min(fgMin, f);
        fgMax = Math.max(fgMax, f);
      }
    } catch (err) {
      const e = err instanceof VoxvaeError ? err : new VoxvaeError('EIO', String((err as Error)?.message ?? err), { path: item.path });
      errors.push({ path: item.path, code: e.code, message: e.message });
    }
    options.onProgress?.(i + 1, ds.length);
  }
  return {
    root: single ? target : ds.root,
    layout: ds.layout,
    files: ds.length,
    pairs: pairs.size,
    byClass,
    byKind,
    shapes: [...shapes.values()].sort((a, b) => b.count - a.count),
    spacings: [...spacings.values()].sort((a, b) => b.count - a.count),
    dtypes,
    formats,
    foreground: measure && fgN > 0 ? { mean: fgSum / fgN, min: fgMin, max: fgMax, threshold } : null,
    errors,
  };
}
