// safetensors files for Node: reading a file and writing one atomically, on top of the Node-free
// parser and serialiser in ./safetensors_core.ts (re-exported here unchanged, so that importers of this
// module see one API). Files are written atomically: a temporary file, fsync, then rename.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { VoxvaeError } from './errors.js';
import { parseSafetensors, type SafeTensors } from './safetensors_core.js';

export {
  parseSafetensors,
  serializeSafetensors,
  toFloat32,
  toNumbers,
  voxvaeMetadata,
  type DType,
  type SafeTensors,
  type TensorEntry,
  type TensorToWrite,
} from './safetensors_core.js';

export async function readSafetensors(file: string): Promise<SafeTensors> {
  let buf: Buffer;
  try {
    buf = await fs.readFile(file);
  } catch (e) {
    throw new VoxvaeError('EIO', `cannot read ${file}: ${(e as Error).message}`, { path: file, cause: e });
  }
  return parseSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), file);
}

/** Writes bytes to `file` atomically: a temporary file in the same folder, fsync, then rename. */
export async function writeFileAtomic(file: string, bytes: Uint8Array): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now().toString(36)}.tmp`);
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(tmp, 'w');
    await fh.writeFile(bytes);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fs.rename(tmp, file);
  } catch (e) {
    if (fh) await fh.close().catch(() => {});
    await fs.rm(tmp, { force: true }).catch(() => {});
    throw new VoxvaeError('EIO', `cannot write ${file}: ${(e as Error).message}`, { path: file, cause: e });
  }
}
