// Finding the volumes of a dataset: SkullBreak/SkullFix folder layouts as they are distributed, any
// folder of volume files, a manifest (CSV or JSON), or a plain list of files.
//
// SkullBreak:  complete_skull/ID.nrrd, defective_skull/<type>/ID.nrrd, implant/<type>/ID.nrrd
// SkullFix:    complete_skull/ID.nrrd, defective_skull/ID.nrrd,        implant/ID.nrrd
// Either may sit one level down (training/, training_set/, test/, …): each such subset is read, and its
// name prefixes the pair ids so that "training/000" and "test/000" stay different skulls.
// voxvae's synthetic set uses the SkullBreak layout with the defect classes cranial/ and facial/.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { VoxvaeError, describe, invalid } from '../errors.js';
import { isVolumeFile } from './io.js';

export type ItemKind = 'complete' | 'defective' | 'implant' | 'other';
export const ITEM_KINDS: readonly ItemKind[] = ['complete', 'defective', 'implant', 'other'];

export interface DatasetItem {
  /** Absolute path of the volume file. */
  path: string;
  /** Class: 'complete', a defect class (SkullBreak type, 'cranial', 'facial', or 'defective' for SkullFix), or a folder/manifest label. */
  label: string;
  kind: ItemKind;
  /** The skull this volume belongs to: a complete skull, its defective versions and implants share it. */
  pairId: string;
  /** Subset folder (e.g. 'training') when the layout sits one level down; '' otherwise. */
  subset: string;
}

export type LayoutName = 'skullbreak' | 'skullfix' | 'folder' | 'manifest' | 'files' | 'memory';

export interface Discovered {
  root: string;
  layout: LayoutName;
  items: DatasetItem[];
}

const SKULL_DIRS = ['complete_skull', 'defective_skull', 'implant'];

/** File name without its volume extension (.nii.gz, .nii, .nrrd, .nhdr). */
export function stemOf(file: string): string {
  return path.basename(file).replace(/\.(nii\.gz|nii|nrrd|nhdr)$/i, '');
}

async function listDir(dir: string): Promise<import('node:fs').Dirent[]> {
  try {
    return (await fsp.readdir(dir, { withFileTypes: true })).filter((e) => !e.name.startsWith('.')).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (err) {
    throw new VoxvaeError('EIO', `cannot read folder ${dir}: ${(err as Error).message}`, { path: dir, cause: err });
  }
}

async function volumesIn(dir: string): Promise<string[]> {
  return (await listDir(dir)).filter((e) => (e.isFile() || e.isSymbolicLink()) && isVolumeFile(e.name)).map((e) => path.join(dir, e.name));
}

async function isSkullLayout(dir: string): Promise<boolean> {
  const names = new Set((await listDir(dir)).filter((e) => e.isDirectory()).map((e) => e.name));
  return SKULL_DIRS.some((d) => names.has(d));
}

async function readSkullLayout(dir: string, subset: string): Promise<{ items: DatasetItem[]; typed: boolean }> {
  const items: DatasetItem[] = [];
  const pair = (f: string): string => (subset ? `${subset}/${stemOf(f)}` : stemOf(f));
  const entries = new Map((await listDir(dir)).filter((e) => e.isDirectory()).map((e) => [e.name, path.join(dir, e.name)]));
  let typed = false;
  const complete = entries.get('complete_skull');
  if (complete) for (const f of await volumesIn(complete)) items.push({ path: f, label: 'complete', kind: 'complete', pairId: pair(f), subset });
  for (const [folder, kind] of [['defective_skull', 'defective'], ['implant', 'implant']] as const) {
    const d = entries.get(folder);
    if (!d) continue;
    for (const f of await volumesIn(d)) items.push({ path: f, label: 'defective', kind, pairId: pair(f), subset });
    for (const sub of (await listDir(d)).filter((e) => e.isDirectory())) {
      typed = true;
      for (const f of await volumesIn(path.join(d, sub.name))) items.push({ path: f, label: sub.name, kind, pairId: pair(f), subset });
    }
  }
  return { items, typed };
}

async function walk(dir: string, depth: number, out: string[]): Promise<void> {
  if (depth > 8) return;
  for (const e of await listDir(dir)) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await walk(p, depth + 1, out);
    else if ((e.isFile() || e.isSymbolicLink()) && isVolumeFile(e.name)) out.push(p);
  }
}

/**
 * The volumes under `dir`: a SkullBreak/SkullFix layout (at the top or in subset folders one level down),
 * else every volume file below it, labelled by the folder it is in ('.' at the top).
 */
export async function discoverFolder(dir: string): Promise<Discovered> {
  const root = path.resolve(dir);
  const st = await fsp.stat(root).catch((err: unknown) => {
    throw new VoxvaeError('EIO', `cannot open dataset folder ${root}: ${(err as Error).message}`, { path: root, cause: err });
  });
  if (!st.isDirectory()) invalid('dir', 'must be a folder', root);
  if (await isSkullLayout(root)) {
    const { items, typed } = await readSkullLayout(root, '');
    return { root, layout: typed ? 'skullbreak' : 'skullfix', items };
  }
  const subsets = [];
  for (const e of (await listDir(root)).filter((x) => x.isDirectory())) {
    if (await isSkullLayout(path.join(root, e.name))) subsets.push(e.name);
  }
  if (subsets.length > 0) {
    const items: DatasetItem[] = [];
    let anyTyped = false;
    for (const s of subsets) {
      const r = await readSkullLayout(path.join(root, s), s);
      items.push(...r.items);
      anyTyped ||= r.typed;
    }
    return { root, layout: anyTyped ? 'skullbreak' : 'skullfix', items };
  }
  const files: string[] = [];
  await walk(root, 0, files);
  const items = files.map((f): DatasetItem => {
    const rel = path.relative(root, path.dirname(f));
    return { path: f, label: rel === '' ? '.' : rel.split(path.sep).join('/'), kind: 'other', pairId: path.relative(root, f).split(path.sep).join('/').replace(/\.(nii\.gz|nii|nrrd|nhdr)$/i, ''), subset: '' };
  });
  return { root, layout: 'folder', items };
}

export interface ManifestEntry {
  path: string;
  /** Class label (default: 'volume'). */
  class?: string;
  /** Pair id (default: the file name without extension). */
  pair?: string;
  /** Default: 'complete' when class is 'complete', 'defective' for any other class given, else 'other'. */
  kind?: ItemKind;
}

function entryToItem(e: ManifestEntry, base: string, where: string): DatasetItem {
  if (typeof e.path !== 'string' || e.path === '') invalid(`${where}.path`, 'must be a non-empty string', e.path);
  const kind = e.kind ?? (e.class === undefined ? 'other' : e.class === 'complete' ? 'complete' : 'defective');
  if (!ITEM_KINDS.includes(kind)) invalid(`${where}.kind`, `must be one of ${ITEM_KINDS.join(', ')}`, e.kind);
  const p = path.resolve(base, e.path);
  return { path: p, label: e.class ?? 'volume', kind, pairId: e.pair ?? stemOf(p), subset: '' };
}

/** Parses CSV (RFC 4180 quoting) into rows of fields. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += ch;
    } else if (ch === '"' && field === '') quoted = true;
    else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      field = '';
      if (row.some((f) => f !== '')) rows.push(row);
      row = [];
    } else field += ch;
  }
  row.push(field);
  if (row.some((f) => f !== '')) rows.push(row);
  return rows;
}

/**
 * A manifest: CSV with a header row naming the columns path (required), class, pair, kind; or JSON, an
 * array of {path, class, pair, kind} (or {items: [...]}). Relative paths are relative to the manifest.
 */
export async function discoverManifest(file: string): Promise<Discovered> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = await fsp.readFile(abs, 'utf8');
  } catch (err) {
    throw new VoxvaeError('EIO', `cannot read manifest ${abs}: ${(err as Error).message}`, { path: abs, cause: err });
  }
  const base = path.dirname(abs);
  const bad = (what: string): VoxvaeError => new VoxvaeError('EFORMAT', `${abs}: ${what}`, { path: abs });
  let entries: ManifestEntry[];
  if (/\.json$/i.test(abs) || /^\s*[[{]/.test(text)) {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new VoxvaeError('EFORMAT', `${abs}: not valid JSON (${(err as Error).message})`, { path: abs, cause: err });
    }
    const list = Array.isArray(json) ? json : (json as { items?: unknown }).items;
    if (!Array.isArray(list)) throw bad('a JSON manifest must be an array of {path, class, pair, kind} or {"items": [...]}');
    entries = list.map((e, i) => {
      if (typeof e === 'string') return { path: e };
      if (typeof e !== 'object' || e === null) throw bad(`entry ${i} is ${describe(e)}, not an object`);
      return e as ManifestEntry;
    });
  } else {
    const rows = parseCsv(text);
    const header = rows[0]?.map((h) => h.trim().toLowerCase());
    if (!header || !header.includes('path')) throw bad('a CSV manifest needs a header row with a "path" column (and optionally class, pair, kind)');
    const col = (name: string): number => header.indexOf(name);
    const [pi, ci, ri, ki] = [col('path'), col('class'), col('pair'), col('kind')];
    entries = rows.slice(1).map((r, n) => {
      const e: ManifestEntry = { path: (r[pi] ?? '').trim() };
      if (e.path === '') throw bad(`row ${n + 2} has an empty path`);
      if (ci >= 0 && (r[ci] ?? '').trim() !== '') e.class = r[ci]!.trim();
      if (ri >= 0 && (r[ri] ?? '').trim() !== '') e.pair = r[ri]!.trim();
      if (ki >= 0 && (r[ki] ?? '').trim() !== '') e.kind = r[ki]!.trim() as ItemKind;
      return e;
    });
  }
  return { root: base, layout: 'manifest', items: entries.map((e, i) => entryToItem(e, base, `${path.basename(abs)}[${i}]`)) };
}

/** Items for a list of files (or manifest entries); relative paths are relative to the working folder. */
export function discoverFiles(list: readonly (string | ManifestEntry)[]): Discovered {
  const items = list.map((e, i) => entryToItem(typeof e === 'string' ? { path: e } : e, process.cwd(), `files[${i}]`));
  return { root: process.cwd(), layout: 'files', items };
}
