// Figures of the experiments' reports: completion overlays (three orthogonal slices through the defect,
// the predicted implant coloured over the input against the true implant) and decoded prior samples.
// Volumes are D × H × W with D = x (left→right), H = y (posterior→anterior), W = z (inferior→superior):
// the synthetic skulls' RAS grid. Slices are drawn with z up and each voxel in its spacing's proportions.
import { overlayGrid, type OverlayCell } from '../report/plot.js';

type Shape3 = readonly [number, number, number];

export const OVERLAY_COLORS = { input: '#8c8c8c', hit: '#2ca02c', extra: '#ff7f0e', missed: '#1f77b4', sample: '#d9d9d9' };

/** Centroid (voxel indices) of a mask; the grid centre when empty. */
export function centroid(m: Uint8Array, shape: Shape3): [number, number, number] {
  const [D, H, W] = shape;
  let n = 0, a = 0, b = 0, c = 0;
  for (let d = 0; d < D; d++)
    for (let h = 0; h < H; h++)
      for (let w = 0; w < W; w++)
        if (m[(d * H + h) * W + w]) (n++, (a += d), (b += h), (c += w));
  return n ? [Math.round(a / n), Math.round(b / n), Math.round(c / n)] : [D >> 1, H >> 1, W >> 1];
}

/** A 2-D slice of a volume: axis 0 fixes d (sagittal: y →, z ↑), 1 fixes h (coronal: x →, z ↑), 2 fixes w (axial: x →, y ↑). */
function slice(vol: Uint8Array, shape: Shape3, axis: 0 | 1 | 2, at: number): { img: Uint8Array; w: number; h: number } {
  const [D, H, W] = shape;
  const idx = (d: number, h: number, w: number): number => (d * H + h) * W + w;
  if (axis === 0) {
    const img = new Uint8Array(H * W);
    for (let z = 0; z < W; z++) for (let y = 0; y < H; y++) img[(W - 1 - z) * H + y] = vol[idx(at, y, z)]!;
    return { img, w: H, h: W };
  }
  if (axis === 1) {
    const img = new Uint8Array(D * W);
    for (let z = 0; z < W; z++) for (let x = 0; x < D; x++) img[(W - 1 - z) * D + x] = vol[idx(x, at, z)]!;
    return { img, w: D, h: W };
  }
  const img = new Uint8Array(D * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < D; x++) img[(H - 1 - y) * D + x] = vol[idx(x, y, at)]!;
  return { img, w: D, h: H };
}

/** Pixels per voxel along a slice's two axes, keeping the spacing's proportions (about 3 px for the finest). */
function pixelSize(spacing: Shape3, axis: 0 | 1 | 2, base: number): { pw: number; ph: number } {
  const [sx, sy, sz] = spacing;
  const min = Math.min(sx, sy, sz);
  const px = (s: number): number => Math.max(1, Math.round((base * s) / min));
  if (axis === 0) return { pw: px(sy), ph: px(sz) };
  if (axis === 1) return { pw: px(sx), ph: px(sz) };
  return { pw: px(sx), ph: px(sy) };
}

export interface CompletionCase {
  label: string;
  input: Uint8Array;
  truth: Uint8Array;
  predicted: Uint8Array;
}

/** Completion overlay figure: one row per case, axial / coronal / sagittal slices through the true defect's centre. */
export function completionFigure(title: string, cases: readonly CompletionCase[], shape: Shape3, spacing: Shape3, base = 3): string {
  const axes: (0 | 1 | 2)[] = [2, 1, 0];
  const rows = cases.map((c) => {
    const at = centroid(c.truth.some((v) => v) ? c.truth : c.predicted, shape);
    const hit = c.truth.map((t, i) => (t && c.predicted[i] ? 1 : 0));
    const extra = c.predicted.map((p, i) => (p && !c.truth[i] ? 1 : 0));
    const missed = c.truth.map((t, i) => (t && !c.predicted[i] ? 1 : 0));
    const cells: OverlayCell[] = axes.map((ax) => {
      const s = (v: Uint8Array) => slice(v, shape, ax, at[ax]);
      const inp = s(c.input);
      return {
        w: inp.w,
        h: inp.h,
        ...pixelSize(spacing, ax, base),
        layers: [
          { mask: inp.img, color: OVERLAY_COLORS.input },
          { mask: s(missed).img, color: OVERLAY_COLORS.missed },
          { mask: s(extra).img, color: OVERLAY_COLORS.extra },
          { mask: s(hit).img, color: OVERLAY_COLORS.hit },
        ],
      };
    });
    return { label: c.label, cells };
  });
  return overlayGrid(title, rows, ['axial (through the defect)', 'coronal', 'sagittal'], [
    { color: OVERLAY_COLORS.input, label: 'defective input' },
    { color: OVERLAY_COLORS.hit, label: 'implant, correct' },
    { color: OVERLAY_COLORS.extra, label: 'implant, extra' },
    { color: OVERLAY_COLORS.missed, label: 'implant, missed' },
  ]);
}

/** Decoded samples: mid-sagittal and mid-axial slices, one row per sample. */
export function samplesFigure(title: string, samples: readonly Uint8Array[], shape: Shape3, spacing: Shape3, base = 3): string {
  const [D, , W] = shape;
  const rows = samples.map((m, i) => ({
    label: `sample ${i + 1}`,
    cells: ([[0, D >> 1], [2, Math.round(W * 0.6)]] as [0 | 2, number][]).map(([ax, at]) => {
      const s = slice(m, shape, ax, at);
      return { w: s.w, h: s.h, ...pixelSize(spacing, ax, base), layers: [{ mask: s.img, color: OVERLAY_COLORS.sample }] };
    }),
  }));
  return overlayGrid(title, rows, ['mid-sagittal', 'axial (upper skull)'], [{ color: OVERLAY_COLORS.sample, label: 'decoded bone (probability > 0.5)' }]);
}
