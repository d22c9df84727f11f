// node:fs for the browser bundle: the app decodes files it already holds in memory (decodeNifti,
// decodeNrrd), so the file-reading paths of ts/data are never taken; if one is, it fails with EUNSUPPORTED.
import { VoxvaeError } from '../../../ts/errors.js';

function noFiles(): never {
  throw new VoxvaeError('EUNSUPPORTED', 'the browser app cannot read files by path (a detached NRRD header needs its data file: save it as one .nrrd or .nii.gz)');
}
export const promises = { readFile: noFiles, open: noFiles, realpath: noFiles, stat: noFiles, writeFile: noFiles, rename: noFiles, mkdir: noFiles, rm: noFiles };
export default { promises };
