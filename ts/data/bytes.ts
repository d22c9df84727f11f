// Byte-level helpers shared by the file readers and writers: endianness and typed views.

import { endianness } from 'node:os';
import { type DType, type VoxelArray, bytesPerVoxel, viewAs } from './volume.js';

export const MACHINE_LITTLE_ENDIAN = endianness() === 'LE';

function swapInPlace(b: Buffer, size: number): void {
  if (size === 2) b.swap16();
  else if (size === 4) b.swap32();
  else if (size === 8) b.swap64();
}

/** The first `length` voxels of `bytes` as a typed array, byte-swapped when the file's order differs. */
export function typedFromBytes(dtype: DType, bytes: Uint8Array, length: number, littleEndian: boolean): VoxelArray {
  const size = bytesPerVoxel(dtype);
  if (size > 1 && littleEndian !== MACHINE_LITTLE_ENDIAN) {
    const copy = Buffer.from(bytes.subarray(0, length * size));
    swapInPlace(copy, size);
    return viewAs(dtype, copy, length);
  }
  return viewAs(dtype, bytes, length);
}

/** The bytes of `arr` in the requested byte order (a view when no swap is needed). */
export function bytesOf(arr: VoxelArray, littleEndian: boolean): Uint8Array {
  const view = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  if (arr.BYTES_PER_ELEMENT === 1 || littleEndian === MACHINE_LITTLE_ENDIAN) return view;
  const copy = Buffer.from(view);
  swapInPlace(copy, arr.BYTES_PER_ELEMENT);
  return copy;
}
