// The in-memory volume of voxvae and the geometry that travels with it.
//
// Axis convention (fixed project-wide, matches MONAI/PyTorch so skullVAE weights work):
//   shape = [D, H, W] = the file's index sizes [i, j, k] (NIfTI dim[1..3], NRRD sizes) in that order;
//   data is C order with W = k fastest, i.e. what np.ascontiguousarray(nib.load(f).get_fdata()) gives.
// Files store i fastest, so the readers and writers transpose (see toFileOrder / fromFileOrder).
// World coordinates are RAS+ millimetres (NIfTI's convention); NRRD files in LPS are converted on read
// and written back as LPS.

import { VoxvaeError, invalid } from '../errors.js';

export type DType = 'uint8' | 'int16' | 'int32' | 'float32' | 'float64';
export type VoxelArray = Uint8Array | Int16Array | Int32Array | Float32Array | Float64Array;
export type Vec3 = [number, number, number];
/** Row-major 3×3 matrix. */
export type Mat3 = [number, number, number, number, number, number, number, number, number];

export interface Volume<A extends VoxelArray = VoxelArray> {
  /** [D, H, W] = index sizes along i, j, k. */
  shape: Vec3;
  /** D*H*W voxels, C order: index (i*H + j)*W + k. */
  data: A;
  /** Millimetres between voxel centres along i, j, k. */
  spacing: Vec3;
  /** RAS+ position (mm) of the centre of voxel (0, 0, 0). */
  origin: Vec3;
  /** Row-major 3×3; column c is the RAS+ unit vector of index axis c (i, j, k). */
  direction: Mat3;
  /**
   * The NIfTI qform/sform codes the geometry came with (1 scanner, 2 aligned, 3 Talairach, 4 MNI-152,
   * 5 template): set by the NIfTI reader and written back by the NIfTI writer (absent: 1, scanner
   * anatomical; a code of 0 is read as the nibabel affine and written as 1).
   */
  spaceCodes?: { qform: number; sform: number };
}

export type BinaryVolume = Volume<Uint8Array>;

export const IDENTITY3: Mat3 = [1, 0, 0, 0, 1, 0, 0, 0, 1];

const CTORS = {
  uint8: Uint8Array,
  int16: Int16Array,
  int32: Int32Array,
  float32: Float32Array,
  float64: Float64Array,
} as const;

export const DTYPES: readonly DType[] = ['uint8', 'int16', 'int32', 'float32', 'float64'];

export function bytesPerVoxel(dtype: DType): number {
  return CTORS[dtype].BYTES_PER_ELEMENT;
}

export function dtypeOf(data: VoxelArray): DType {
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  return invalid('volume.data', 'must be a Uint8Array, Int16Array, Int32Array, Float32Array or Float64Array', data);
}

export function allocate(dtype: DType, length: number): VoxelArray {
  return new CTORS[dtype](length);
}

/** Runs `f`, reporting an allocation that fails inside it as ENOMEM naming `file`. */
export function typedAllocation<T>(file: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof RangeError && /allocation failed|Invalid typed array length|Array buffer/i.test(err.message))
      throw new VoxvaeError('ENOMEM', `${file}: out of memory decoding the volume (${err.message}); free memory or read a smaller volume`, { path: file, cause: err });
    throw err;
  }
}

/** allocate(), with a failed allocation reported as ENOMEM naming `file` (never an untyped RangeError). */
export function allocateChecked(dtype: DType, length: number, file: string): VoxelArray {
  try {
    return new CTORS[dtype](length);
  } catch (err) {
    if (err instanceof RangeError) throw new VoxvaeError('ENOMEM', `${file}: cannot allocate ${length} ${dtype} voxels (${err.message}); free memory or read a smaller volume`, { path: file, cause: err });
    throw err;
  }
}

/** A typed array of `dtype` viewing `bytes` (copied first when the offset is not aligned). */
export function viewAs(dtype: DType, bytes: Uint8Array, length: number): VoxelArray {
  const size = bytesPerVoxel(dtype);
  let b = bytes;
  if (b.byteOffset % size !== 0) b = new Uint8Array(b.subarray(0, length * size));
  return new CTORS[dtype](b.buffer as ArrayBuffer, b.byteOffset, length);
}

export function voxelCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function checkShape(shape: unknown, field = 'shape'): Vec3 {
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every((s) => Number.isInteger(s) && s >= 1)) {
    return invalid(field, 'must be three positive integers [D, H, W]', shape);
  }
  return [shape[0], shape[1], shape[2]];
}

/** Builds a volume with default geometry (1 mm isotropic, origin 0, identity direction) unless given. */
export function createVolume<A extends VoxelArray>(
  shape: Vec3,
  data: A,
  geometry: Partial<Pick<Volume, 'spacing' | 'origin' | 'direction'>> = {},
): Volume<A> {
  const vol: Volume<A> = {
    shape: checkShape(shape),
    data,
    spacing: geometry.spacing ? [...geometry.spacing] : [1, 1, 1],
    origin: geometry.origin ? [...geometry.origin] : [0, 0, 0],
    direction: geometry.direction ? [...geometry.direction] : [...IDENTITY3],
  };
  validateVolume(vol);
  return vol;
}

export function validateVolume(vol: Volume, field = 'volume'): void {
  checkShape(vol.shape, `${field}.shape`);
  dtypeOf(vol.data);
  const n = voxelCount(vol.shape);
  if (vol.data.length !== n) {
    throw new VoxvaeError('ESHAPE', `${field}.data has ${vol.data.length} voxels but shape ${vol.shape.join('×')} needs ${n}`);
  }
  if (!(vol.spacing.length === 3 && vol.spacing.every((s) => Number.isFinite(s) && s > 0))) {
    invalid(`${field}.spacing`, 'must be three finite positive numbers', vol.spacing);
  }
  if (!(vol.origin.length === 3 && vol.origin.every(Number.isFinite))) {
    invalid(`${field}.origin`, 'must be three finite numbers', vol.origin);
  }
  if (!(vol.direction.length === 9 && vol.direction.every(Number.isFinite)) || Math.abs(det3(vol.direction)) < 1e-6) {
    invalid(`${field}.direction`, 'must be an invertible 3×3 matrix (9 finite numbers, row-major)', vol.direction);
  }
}

export function det3(m: Mat3): number {
  return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
}

/** 4×4 row-major voxel-index → RAS mm affine (what nibabel's img.affine holds). */
export function affineOf(vol: Pick<Volume, 'spacing' | 'origin' | 'direction'>): number[][] {
  const { spacing: s, origin: o, direction: d } = vol;
  return [
    [d[0] * s[0], d[1] * s[1], d[2] * s[2], o[0]],
    [d[3] * s[0], d[4] * s[1], d[5] * s[2], o[1]],
    [d[6] * s[0], d[7] * s[1], d[8] * s[2], o[2]],
    [0, 0, 0, 1],
  ];
}

/** Splits a 3×4 (or 4×4) affine into spacing (column norms), unit direction columns and origin. */
export function geometryFromAffine(a: readonly (readonly number[])[]): Pick<Volume, 'spacing' | 'origin' | 'direction'> {
  const spacing: Vec3 = [0, 0, 0];
  const direction: Mat3 = [...IDENTITY3];
  for (let c = 0; c < 3; c++) {
    const x = a[0]?.[c] ?? 0, y = a[1]?.[c] ?? 0, z = a[2]?.[c] ?? 0;
    const n = Math.hypot(x, y, z);
    spacing[c] = n;
    if (n > 0) {
      direction[c] = x / n;
      direction[3 + c] = y / n;
      direction[6 + c] = z / n;
    }
  }
  return { spacing, origin: [a[0]?.[3] ?? 0, a[1]?.[3] ?? 0, a[2]?.[3] ?? 0], direction };
}

/** RAS position of the centre of voxel (i, j, k). */
export function worldOf(vol: Pick<Volume, 'spacing' | 'origin' | 'direction'>, i: number, j: number, k: number): Vec3 {
  const { spacing: s, origin: o, direction: d } = vol;
  const u = i * s[0], v = j * s[1], w = k * s[2];
  return [o[0] + d[0] * u + d[1] * v + d[2] * w, o[1] + d[3] * u + d[4] * v + d[5] * w, o[2] + d[6] * u + d[7] * v + d[8] * w];
}

const TILE = 32;

/**
 * File order (i fastest: i + D*(j + H*k)) → C order ((i*H + j)*W + k), tiled for cache use.
 * `out` may be given to avoid an allocation; it must not alias `src`.
 */
export function fromFileOrder<A extends VoxelArray>(src: A, shape: Vec3, out?: A): A {
  const [D, H, W] = shape;
  const dst = out ?? (new (src.constructor as new (n: number) => A)(src.length));
  for (let j = 0; j < H; j++) {
    for (let k0 = 0; k0 < W; k0 += TILE) {
      const k1 = Math.min(W, k0 + TILE);
      for (let i0 = 0; i0 < D; i0 += TILE) {
        const i1 = Math.min(D, i0 + TILE);
        for (let k = k0; k < k1; k++) {
          const sBase = D * (j + H * k);
          for (let i = i0; i < i1; i++) dst[(i * H + j) * W + k] = src[sBase + i]!;
        }
      }
    }
  }
  return dst;
}

/** C order → file order (i fastest); the inverse of fromFileOrder. */
export function toFileOrder<A extends VoxelArray>(src: A, shape: Vec3, out?: A): A {
  const [D, H, W] = shape;
  const dst = out ?? (new (src.constructor as new (n: number) => A)(src.length));
  for (let j = 0; j < H; j++) {
    for (let k0 = 0; k0 < W; k0 += TILE) {
      const k1 = Math.min(W, k0 + TILE);
      for (let i0 = 0; i0 < D; i0 += TILE) {
        const i1 = Math.min(D, i0 + TILE);
        for (let k = k0; k < k1; k++) {
          const dBase = D * (j + H * k);
          for (let i = i0; i < i1; i++) dst[dBase + i] = src[(i * H + j) * W + k]!;
        }
      }
    }
  }
  return dst;
}

/** Fraction of voxels that are non-zero. */
export function foregroundFraction(vol: Pick<Volume, 'data'>): number {
  const d = vol.data;
  let n = 0;
  for (let i = 0; i < d.length; i++) if (d[i] !== 0) n++;
  return d.length === 0 ? 0 : n / d.length;
}

/** A deep copy (data and geometry). */
export function cloneVolume<A extends VoxelArray>(vol: Volume<A>): Volume<A> {
  return {
    shape: [...vol.shape],
    data: vol.data.slice() as A,
    spacing: [...vol.spacing],
    origin: [...vol.origin],
    direction: [...vol.direction],
  };
}

/** What a file's header says about its volume, read without loading the voxels. */
export interface VolumeHeader extends Pick<Volume, 'shape' | 'spacing' | 'origin' | 'direction'> {
  /** 'memory' for volumes of an in-memory dataset (VolumeDataset.fromSynthetic). */
  format: 'nifti' | 'nrrd' | 'memory';
  /** The file the header was read from (for a detached NRRD header, the .nhdr). */
  file: string;
  /** The voxel type stored in the file (after scaling, the volume may be float32/float64). */
  dtype: DType;
  compressed: boolean;
}

/** Options shared by every reader. */
export interface ReadOptions {
  /**
   * Largest voxel payload (bytes, after decompression) a header may declare; larger files are refused
   * before anything is allocated. Default 4 GiB.
   */
  maxBytes?: number;
}

export const DEFAULT_MAX_BYTES = 4 * 1024 ** 3;
