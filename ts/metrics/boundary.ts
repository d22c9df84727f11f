// Boundary Dice (bDSC) of the AutoImplant 2021 challenge: Dice between two implants counted only on
// voxels within `distance` mm of the defective skull. The organizers' `bdc(implant_1, implant_2,
// defective_skull, voxelspacing, distance=10)` (MWod/AutoImplant_2021 evaluation_metrics.py):
//
//   dt = distance_transform_edt(~(defective_skull > 0), sampling=voxelspacing)  # mm to the nearest skull voxel
//   implant_k[dt > distance] = 0                                               # keep dt ≤ distance (skull voxels: dt = 0)
//   return dc(implant_1, implant_2)
//
// Empty vs empty (no implant voxel of either within the band) scores options.empty, default 1; the
// organizers' `dc` returns 0 there (pass { empty: 0 }). An empty defective skull leaves no voxel in
// the band, hence the same empty score.
//
// Work is confined to the implants' joint bounding box grown by ⌈distance / spacing⌉ voxels per axis,
// which decides `dt ≤ distance` exactly: a skull voxel outside the grown box is farther than
// `distance` along one axis alone.

import * as is from '../is.js';
import { squaredDistanceTransform } from './edt.js';
import { checkEmptyOption, diceFromCounts, type DiceOptions } from './overlap.js';
import { boxShape, checkSameShape, checkVolume, cropMask, maskBox, resolveSpacing, unionBox, type Box, type MaskVolume, type Spacing3 } from './volume.js';

export interface BoundaryDiceOptions extends DiceOptions {
  /** mm per voxel; defaults to the volumes' spacing, else [1, 1, 1]. */
  spacing?: Spacing3;
  /** Band half-width in mm; default 10 (the challenge's setting). */
  distance?: number;
}

export function boundaryDice(a: MaskVolume, b: MaskVolume, defectiveSkull: MaskVolume, options?: BoundaryDiceOptions): number {
  checkVolume(a, 'a');
  checkVolume(b, 'b');
  checkVolume(defectiveSkull, 'defectiveSkull');
  checkSameShape(a, b, 'a', 'b');
  checkSameShape(a, defectiveSkull, 'a', 'defectiveSkull');
  const empty = checkEmptyOption(options);
  const distance = is.number('options.distance', options?.distance ?? 10, { min: 0 });
  const spacing = resolveSpacing(options?.spacing, [a, b, defectiveSkull], ['a', 'b', 'defectiveSkull']);

  const joint = unionBox(maskBox(a, 'a').box, maskBox(b, 'b').box);
  maskBox(defectiveSkull, 'defectiveSkull'); // refuses NaN like the other inputs
  if (joint === null) return empty;
  const [D, H, W] = a.shape;
  const dims = [D, H, W];
  const box: Box = { lo: [0, 0, 0], hi: [0, 0, 0] };
  for (let ax = 0; ax < 3; ax++) {
    const m = Math.ceil(distance / spacing[ax]!);
    box.lo[ax] = Math.max(0, joint.lo[ax]! - m);
    box.hi[ax] = Math.min(dims[ax]!, joint.hi[ax]! + m);
  }
  const shape = boxShape(box);
  const skull = cropMask(defectiveSkull, box);
  const ca = cropMask(a, box);
  const cb = cropMask(b, box);
  const dt2 = squaredDistanceTransform(skull, shape, spacing);
  // dt > distance ⇔ dt² > distance² is not safe in floating point at ties; compare the root as scipy does.
  let intersection = 0;
  let sizeA = 0;
  let sizeB = 0;
  for (let i = 0; i < ca.length; i++) {
    const x = ca[i]!;
    const y = cb[i]!;
    if ((x | y) === 0) continue;
    if (Math.sqrt(dt2[i]!) > distance) continue;
    sizeA += x;
    sizeB += y;
    intersection += x & y;
  }
  return diceFromCounts({ intersection, sizeA, sizeB }, empty);
}
