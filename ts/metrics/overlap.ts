// Dice similarity (DSC) for binary masks and per class for label volumes.
//
// DSC = 2|A ∩ B| / (|A| + |B|). When both are empty the ratio is 0/0: by default the result is 1
// (two empty segmentations agree), as MedPy's current `dc`; the AutoImplant organizers' copy of `dc`
// (MWod/AutoImplant_2021 evaluation_metrics.py) returns 0 instead — pass { empty: 0 } to match it.

import { VoxvaeError, invalid } from '../errors.js';
import * as is from '../is.js';
import { PROBABILITY_THRESHOLD, checkSameShape, checkVolume, type LabelVolume, type MaskVolume } from './volume.js';

export interface DiceOptions {
  /** Value returned when both masks are empty; default 1. */
  empty?: number;
}

export interface OverlapCounts {
  intersection: number;
  sizeA: number;
  sizeB: number;
}

export function checkEmptyOption(options: DiceOptions | undefined): number {
  return is.number('options.empty', options?.empty ?? 1, { min: 0, max: 1 });
}

export function diceFromCounts(c: OverlapCounts, empty: number): number {
  const denom = c.sizeA + c.sizeB;
  return denom === 0 ? empty : (2 * c.intersection) / denom;
}

/** |A ∩ B|, |A|, |B| over two binary volumes of the same shape. */
export function overlapCounts(a: MaskVolume, b: MaskVolume): OverlapCounts {
  checkVolume(a, 'a');
  checkVolume(b, 'b');
  checkSameShape(a, b, 'a', 'b');
  const n = a.data.length;
  const onA = onTest(a, 'a');
  const onB = onTest(b, 'b');
  let intersection = 0;
  let sizeA = 0;
  let sizeB = 0;
  for (let i = 0; i < n; i++) {
    const x = onA(i);
    const y = onB(i);
    sizeA += x;
    sizeB += y;
    intersection += x & y;
  }
  return { intersection, sizeA, sizeB };
}

/** Dice of two binary masks (empty vs empty → options.empty, default 1). */
export function dice(a: MaskVolume, b: MaskVolume, options?: DiceOptions): number {
  const empty = checkEmptyOption(options);
  return diceFromCounts(overlapCounts(a, b), empty);
}

export interface ClassDice extends OverlapCounts {
  label: number;
  dice: number;
}

/**
 * Dice per class label. `labels` defaults to every non-zero label present in either volume, in
 * increasing order; a requested label absent from both scores options.empty.
 */
export function dicePerClass(a: LabelVolume, b: LabelVolume, labels?: readonly number[], options?: DiceOptions): ClassDice[] {
  checkVolume(a, 'a', 'label');
  checkVolume(b, 'b', 'label');
  checkSameShape(a, b, 'a', 'b');
  const empty = checkEmptyOption(options);
  let wanted: number[];
  if (labels === undefined) {
    const present = new Set<number>();
    for (const x of a.data) present.add(x);
    for (const x of b.data) present.add(x);
    present.delete(0);
    wanted = [...present].sort((x, y) => x - y);
  } else {
    if (!Array.isArray(labels)) invalid('labels', 'must be an array of integer labels', labels);
    labels.forEach((l, i) => {
      if (!Number.isSafeInteger(l)) invalid(`labels[${i}]`, 'must be an integer', l);
    });
    wanted = [...labels];
  }
  const index = new Map<number, number>();
  wanted.forEach((l, i) => index.set(l, i));
  const inter = new Float64Array(wanted.length);
  const sa = new Float64Array(wanted.length);
  const sb = new Float64Array(wanted.length);
  const n = a.data.length;
  for (let i = 0; i < n; i++) {
    const x = a.data[i]!;
    const y = b.data[i]!;
    const ix = index.get(x);
    if (ix !== undefined) sa[ix]!++;
    const iy = index.get(y);
    if (iy !== undefined) {
      sb[iy]!++;
      if (x === y) inter[iy]!++;
    }
  }
  return wanted.map((label, i) => {
    const c = { intersection: inter[i]!, sizeA: sa[i]!, sizeB: sb[i]! };
    return { label, ...c, dice: diceFromCounts(c, empty) };
  });
}

function onTest(v: MaskVolume, field: string): (i: number) => number {
  const data = v.data;
  if (data instanceof Uint8Array) return (i) => (data[i] !== 0 ? 1 : 0);
  return (i) => {
    const x = data[i]!;
    if (x !== x) throw new VoxvaeError('ENOTFINITE', `${field}.data[${i}] is NaN; probabilities must be numbers in [0, 1]`, { path: `${field}.data` });
    return x >= PROBABILITY_THRESHOLD ? 1 : 0;
  };
}
