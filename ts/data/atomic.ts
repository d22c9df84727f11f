// Atomic file and folder writes: a reader (or a crash) sees the old state or the complete new one,
// never a half-written file. Files go to a temporary name in the same folder, are fsynced, then renamed.
// Whole datasets are built in a hidden staging folder beside the target and renamed into place.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { VoxvaeError } from '../errors.js';

function tempName(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

function ioError(action: string, file: string, err: unknown): VoxvaeError {
  if (err instanceof VoxvaeError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new VoxvaeError('EIO', `cannot ${action} ${file}: ${msg}`, { path: file, cause: err });
}

async function fsyncDir(dir: string): Promise<void> {
  // Makes the rename durable; not possible on every platform (Windows), where it is skipped.
  try {
    const fh = await fsp.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* best effort */
  }
}

/** Writes `chunks` (concatenated) to `file` atomically. */
export async function writeFileAtomic(file: string, chunks: Uint8Array | readonly Uint8Array[]): Promise<void> {
  const parts = chunks instanceof Uint8Array ? [chunks] : chunks;
  const tmp = tempName(file);
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(tmp, 'wx', 0o644);
    for (const p of parts) {
      let off = 0;
      while (off < p.length) {
        const { bytesWritten } = await fh.write(p, off, p.length - off);
        off += bytesWritten;
      }
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fsp.rename(tmp, file);
  } catch (err) {
    if (fh) await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw ioError('write', file, err);
  }
  await fsyncDir(path.dirname(file));
}

/** True when `dir` does not exist or is an empty folder. */
export async function isEmptyOrMissing(dir: string): Promise<boolean> {
  try {
    const entries = await fsp.readdir(dir);
    return entries.length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw ioError('read folder', dir, err);
  }
}

/**
 * Builds a folder atomically: `build` fills a hidden staging folder beside `dir`; on success the staging
 * folder replaces `dir` (which must be missing or empty unless `overwrite`), on failure it is removed.
 */
export async function buildFolderAtomic<T>(
  dir: string,
  build: (staging: string) => Promise<T>,
  options: { overwrite?: boolean } = {},
): Promise<T> {
  const target = path.resolve(dir);
  if (!options.overwrite && !(await isEmptyOrMissing(target))) {
    throw new VoxvaeError('EIO', `${target} already exists and is not empty; choose another folder or overwrite it explicitly`, {
      path: target,
    });
  }
  const parent = path.dirname(target);
  try {
    await fsp.mkdir(parent, { recursive: true });
  } catch (err) {
    throw ioError('create folder', parent, err);
  }
  const staging = path.join(parent, `.${path.basename(target)}.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await fsp.mkdir(staging);
  } catch (err) {
    throw ioError('create folder', staging, err);
  }
  let result: T;
  try {
    result = await build(staging);
  } catch (err) {
    await fsp.rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  // Swap into place: move any old folder aside first so the target is never half old, half new.
  const trash = `${staging}.old`;
  let movedOld = false;
  try {
    try {
      await fsp.rename(target, trash);
      movedOld = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await fsp.rename(staging, target);
  } catch (err) {
    if (movedOld) await fsp.rename(trash, target).catch(() => undefined);
    await fsp.rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw ioError('move into place', target, err);
  }
  if (movedOld) await fsp.rm(trash, { recursive: true, force: true }).catch(() => undefined);
  await fsyncDir(parent);
  return result;
}
