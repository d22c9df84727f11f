// Public API of voxvae's data layer: volumes, NIfTI/NRRD files, resampling, the synthetic skull
// dataset, and datasets that stream from disk into the engine's batch layout.

export {
  type BinaryVolume,
  type DType,
  type Mat3,
  type ReadOptions,
  type Vec3,
  type Volume,
  type VolumeHeader,
  type VoxelArray,
  DTYPES,
  IDENTITY3,
  affineOf,
  cloneVolume,
  createVolume,
  dtypeOf,
  foregroundFraction,
  fromFileOrder,
  geometryFromAffine,
  toFileOrder,
  validateVolume,
  worldOf,
} from './volume.js';
export { type NiftiHeader, type NiftiWriteOptions, decodeNifti, encodeNifti, readNifti, readNiftiHeader, writeNifti } from './nifti.js';
export {
  type NrrdEncoding,
  type NrrdHeader,
  type NrrdReadOptions,
  type NrrdWriteOptions,
  decodeNrrd,
  encodeNrrd,
  readNrrd,
  readNrrdHeader,
  writeNrrd,
} from './nrrd.js';
export { type VolumeFormat, type WriteVolumeOptions, VOLUME_FORMATS, formatOfName, isVolumeFile, readVolume, readVolumeHeader, writeVolume } from './io.js';
export { type ResampleMode, crop, cropOrPad, pad, resample, threshold } from './resample.js';
export { writeFileAtomic, buildFolderAtomic } from './atomic.js';
export { type CacheStats } from './cache.js';
export {
  type AugmentOptions,
  type Batch,
  type BatchItem,
  type BatchOptions,
  type DatasetItem,
  type DatasetOptions,
  type ItemKind,
  type LayoutName,
  type ManifestEntry,
  type SkippedFile,
  VolumeDataset,
} from './dataset.js';
export { type DatasetInfo, type InfoOptions, datasetInfo } from './info.js';
export {
  type CranialDefectType,
  type DefectFactors,
  type FacialDefectType,
  type SkullFactors,
  type SkullOptions,
  type SkullVolumes,
  type SynthFormat,
  type SynthGrid,
  type SynthOptions,
  type SyntheticDataset,
  type SyntheticSkull,
  type WriteSynthOptions,
  type WrittenSyntheticDataset,
  CRANIAL_DEFECT_TYPES,
  DEFAULT_FOV,
  DEFAULT_SYNTH_SHAPE,
  FACIAL_DEFECT_TYPES,
  SYNTH_FORMATS,
  generateSkull,
  generateSkullDataset,
  makeGrid,
  writeSkullDataset,
} from './synth/index.js';
export { Rng } from './synth/rng.js';
