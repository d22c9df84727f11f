// ts/data/atomic.ts for the browser bundle: the app writes no files (downloads are Blobs).
import { VoxvaeError } from '../../../ts/errors.js';

function noFiles(): never {
  throw new VoxvaeError('EUNSUPPORTED', 'the browser app writes no files by path; use the download buttons');
}
export const writeFileAtomic = noFiles;
export const buildFolderAtomic = noFiles;
