// From a completed skull to an implant. The raw difference completed ∧ ¬input holds the defect's filling
// and, all over the skull, the voxels where the decoded surface lies a voxel off the input's (a model
// that reconstructs skulls with Dice 0.8 leaves hundreds of those, several times the implant). The
// implant is what remains after three steps (AutoImplant pipelines post-process likewise):
//   1. only where a defect of this class can be: the class's defect map (> 0);
//   2. opening by reconstruction against the input: drop voxels 26-adjacent to input bone (a surface one
//      voxel off), then grow the remaining core back by one 26-neighbour step within the candidates, so
//      the implant's rim, which touches the input, is kept;
//   3. the largest 26-connected component (one defect per case).
// Volumes are D × H × W, C order (W fastest), 0/1 Uint8Arrays. No Node imports.

export type Shape3 = readonly [number, number, number];

/** Calls fn(j) for every in-grid 26-neighbour j of voxel i. */
function forNeighbours(i: number, shape: Shape3, fn: (j: number) => boolean | void): void {
  const [D, H, W] = shape;
  const w = i % W, h = ((i - w) / W) % H, d = (i - w - h * W) / (H * W);
  for (let a = -1; a <= 1; a++) {
    const dd = d + a;
    if (dd < 0 || dd >= D) continue;
    for (let b = -1; b <= 1; b++) {
      const hh = h + b;
      if (hh < 0 || hh >= H) continue;
      for (let c = -1; c <= 1; c++) {
        const ww = w + c;
        if (ww < 0 || ww >= W || (a === 0 && b === 0 && c === 0)) continue;
        if (fn((dd * H + hh) * W + ww) === true) return;
      }
    }
  }
}

/** Voxels of m plus their 26-neighbours: the 3×3×3 cube dilation, done as three 1-D passes (W, H, D). */
export function dilate26(m: Uint8Array, shape: Shape3): Uint8Array {
  const [D, H, W] = shape;
  const a = new Uint8Array(m.length), b = new Uint8Array(m.length);
  // Along W.
  for (let r = 0; r < D * H; r++) {
    const o = r * W;
    for (let w = 0; w < W; w++) a[o + w] = m[o + w]! | (w > 0 ? m[o + w - 1]! : 0) | (w + 1 < W ? m[o + w + 1]! : 0);
  }
  // Along H.
  for (let d = 0; d < D; d++)
    for (let h = 0; h < H; h++) {
      const o = (d * H + h) * W, up = h > 0 ? o - W : -1, down = h + 1 < H ? o + W : -1;
      for (let w = 0; w < W; w++) b[o + w] = a[o + w]! | (up >= 0 ? a[up + w]! : 0) | (down >= 0 ? a[down + w]! : 0);
    }
  // Along D.
  const HW = H * W;
  for (let d = 0; d < D; d++) {
    const o = d * HW;
    for (let s = 0; s < HW; s++) a[o + s] = b[o + s]! | (d > 0 ? b[o - HW + s]! : 0) | (d + 1 < D ? b[o + HW + s]! : 0);
  }
  for (let i = 0; i < m.length; i++) a[i] = a[i] ? 1 : 0;
  return a;
}

/** The largest 26-connected component of m (the first found on ties); empty for an empty m. */
export function largestComponent(m: Uint8Array, shape: Shape3): Uint8Array {
  const label = new Int32Array(m.length);
  const stack: number[] = [];
  let next = 0, best = 0, bestSize = 0;
  for (let i = 0; i < m.length; i++) {
    if (!m[i] || label[i]) continue;
    next++;
    let size = 0;
    label[i] = next;
    stack.push(i);
    while (stack.length) {
      const j = stack.pop()!;
      size++;
      forNeighbours(j, shape, (q) => {
        if (m[q] && !label[q]) {
          label[q] = next;
          stack.push(q);
        }
      });
    }
    if (size > bestSize) (best = next), (bestSize = size);
  }
  const out = new Uint8Array(m.length);
  if (best !== 0) for (let i = 0; i < m.length; i++) out[i] = label[i] === best ? 1 : 0;
  return out;
}

export interface ImplantOptions {
  /** Where a defect of the class can be (a defect map: > 0 counts); null: anywhere. */
  region?: Uint8Array | null;
  /** Steps 2 and 3 (default true); false gives the raw difference (within the region). */
  clean?: boolean;
}

/** The implant of a completed skull for a defective input (see the file comment). */
export function extractImplant(completed: Uint8Array, input: Uint8Array, shape: Shape3, opts: ImplantOptions = {}): Uint8Array {
  const S = completed.length;
  const region = opts.region ?? null;
  const cand = new Uint8Array(S);
  for (let s = 0; s < S; s++) cand[s] = completed[s] && !input[s] && (!region || region[s]) ? 1 : 0;
  if (opts.clean === false) return cand;
  const nearInput = dilate26(input, shape);
  const core = new Uint8Array(S);
  for (let s = 0; s < S; s++) core[s] = cand[s] && !nearInput[s] ? 1 : 0;
  const grown = dilate26(core, shape);
  for (let s = 0; s < S; s++) grown[s] = grown[s] && cand[s] ? 1 : 0;
  return largestComponent(grown, shape);
}
