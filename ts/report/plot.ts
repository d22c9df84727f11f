// Minimal SVG figures (line charts, scatter with arrows, image grids) rendered to PNG with
// @resvg/resvg-js: a Rust SVG renderer whose prebuilt N-API binary ships inside its per-platform npm
// package (no download or build step, so it installs offline with --ignore-scripts), and which uses
// the system fonts for text. SVG keeps the figure code small and readable; the PNG is what reports link.
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

export interface Series {
  name: string;
  x: number[];
  y: number[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#e377c2', '#7f7f7f', '#bcbd22', '#000000', '#aec7e8', '#98df8a', '#ff9896', '#c5b0d5'];
export const color = (i: number): string => COLORS[i % COLORS.length]!;
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const fmt = (v: number): string => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(0) : String(+v.toPrecision(3)));

/** A line chart; logY plots log10 of positive values. */
/** Width of a label in px at `size` (DejaVu Sans averages about 0.62 em a character); for layout only. */
export const textWidth = (s: string, size = 11): number => s.length * size * 0.62;

export function lineChart(title: string, series: Series[], opts: { xLabel?: string; yLabel?: string; logY?: boolean; width?: number; height?: number } = {}): string {
  // The legend sits right of the plot, as wide as its longest name needs (the figure grows, never cuts it).
  const legendW = 45 + Math.max(0, ...series.map((s) => textWidth(s.name)));
  const L = 70, R = Math.max(60, legendW + 10), T = 36, B = 46;
  const W = (opts.width ?? 640) + Math.max(0, R - 150), H = Math.max(opts.height ?? 400, T + 30 + series.length * 18);
  const tr = (v: number): number => (opts.logY ? Math.log10(Math.max(v, 1e-12)) : v);
  const xs = series.flatMap((s) => s.x), ys = series.flatMap((s) => s.y.map(tr)).filter(Number.isFinite);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (!(x1 > x0)) x1 = x0 + 1;
  if (!(y1 > y0)) (y0 -= 0.5), (y1 += 0.5);
  const px = (x: number): number => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y: number): number => H - B - ((tr(y) - y0) / (y1 - y0)) * (H - T - B);
  const parts: string[] = [`<rect width="${W}" height="${H}" fill="white"/>`, `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-family="DejaVu Sans">${esc(title)}</text>`];
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4, yy = H - B - ((H - T - B) * i) / 4;
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`, `<text x="${L - 6}" y="${yy + 4}" text-anchor="end" font-size="11" font-family="DejaVu Sans">${fmt(opts.logY ? 10 ** yv : yv)}</text>`);
  }
  // x ticks: whole numbers when every x is one (epochs, steps), else five even ticks.
  const integral = xs.every((x) => Number.isInteger(x));
  const step = integral ? Math.max(1, Math.ceil((x1 - x0) / 4)) : (x1 - x0) / 4;
  for (let xv = x0; xv <= x1 + 1e-9; xv += step) parts.push(`<text x="${px(xv)}" y="${H - B + 16}" text-anchor="middle" font-size="11" font-family="DejaVu Sans">${fmt(xv)}</text>`);
  parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#333"/>`);
  if (opts.xLabel) parts.push(`<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle" font-size="12" font-family="DejaVu Sans">${esc(opts.xLabel)}</text>`);
  if (opts.yLabel) parts.push(`<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle" font-size="12" font-family="DejaVu Sans">${esc(opts.yLabel)}${opts.logY ? ' (log)' : ''}</text>`);
  series.forEach((s, i) => {
    const pts = s.x.map((x, j) => [px(x), py(s.y[j]!)] as const).filter(([, y]) => Number.isFinite(y));
    parts.push(`<polyline fill="none" stroke="${color(i)}" stroke-width="1.6" points="${pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' ')}"/>`);
    parts.push(`<line x1="${W - R + 10}" x2="${W - R + 30}" y1="${T + 12 + i * 18}" y2="${T + 12 + i * 18}" stroke="${color(i)}" stroke-width="3"/>`, `<text x="${W - R + 35}" y="${T + 16 + i * 18}" font-size="11" font-family="DejaVu Sans">${esc(s.name)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${parts.join('')}</svg>`;
}

export interface ScatterGroup {
  name: string;
  points: [number, number][];
}

/** A scatter of groups with optional centroid markers and arrows (from → to). */
export function scatterChart(title: string, groups: ScatterGroup[], opts: { centroids?: { name: string; at: [number, number] }[]; arrows?: { from: [number, number]; to: [number, number]; label: string }[]; width?: number; height?: number } = {}): string {
  const legendW = 20 + Math.max(90, ...groups.map((g) => textWidth(g.name)));
  const W = Math.max(opts.width ?? 520, 400 + legendW), H = opts.height ?? 460, M = 40, T = 36;
  const all = [...groups.flatMap((g) => g.points), ...(opts.centroids ?? []).map((c) => c.at)];
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x: number): number => M + ((x - x0) / (x1 - x0 || 1)) * (W - 2 * M - legendW);
  const sy = (y: number): number => H - M - ((y - y0) / (y1 - y0 || 1)) * (H - M - T - 10);
  const parts = [`<rect width="${W}" height="${H}" fill="white"/>`, `<defs><marker id="ah" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#000"/></marker></defs>`, `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-family="DejaVu Sans">${esc(title)}</text>`];
  groups.forEach((g, i) => {
    for (const [x, y] of g.points) parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="${color(i)}" fill-opacity="0.65"/>`);
    parts.push(`<circle cx="${W - legendW}" cy="${T + 12 + i * 18}" r="5" fill="${color(i)}"/>`, `<text x="${W - legendW + 10}" y="${T + 16 + i * 18}" font-size="11" font-family="DejaVu Sans">${esc(g.name)}</text>`);
  });
  for (const c of opts.centroids ?? []) {
    const gi = groups.findIndex((g) => g.name === c.name);
    parts.push(`<rect x="${sx(c.at[0]) - 6}" y="${sy(c.at[1]) - 6}" width="12" height="12" fill="${color(gi)}" stroke="#000" stroke-width="1.5"/>`);
  }
  // Arrow labels beside their arrow's midpoint, moved down until they overlap no label placed before.
  const placed: { x: number; y: number; w: number }[] = [];
  for (const a of opts.arrows ?? []) {
    parts.push(`<line x1="${sx(a.from[0])}" y1="${sy(a.from[1])}" x2="${sx(a.to[0])}" y2="${sy(a.to[1])}" stroke="#000" stroke-width="2" marker-end="url(#ah)"/>`);
    const w = textWidth(a.label);
    let x = Math.min((sx(a.from[0]) + sx(a.to[0])) / 2 + 4, W - legendW - 10 - w), y = (sy(a.from[1]) + sy(a.to[1])) / 2 - 4;
    x = Math.max(2, x);
    while (placed.some((p) => Math.abs(p.y - y) < 14 && x < p.x + p.w + 4 && p.x < x + w + 4)) y += 14;
    placed.push({ x, y, w });
    parts.push(`<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-size="11" font-family="DejaVu Sans" paint-order="stroke" stroke="white" stroke-width="3">${esc(a.label)}</text>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${parts.join('')}</svg>`;
}

/** A grid of grey-scale images (values 0..1, row-major h × w), with row and column labels. */
export function imageGrid(title: string, cells: { image: Float32Array | Uint8Array; h: number; w: number }[][], rowLabels: string[], colLabels: string[], pixel = 3): string {
  const ch = Math.max(...cells.flat().map((c) => c.h)) * pixel, cw = Math.max(...cells.flat().map((c) => c.w)) * pixel;
  const L = 150, T = 50, gap = 6, bar = 70;
  const W = L + colLabels.length * (cw + gap) + bar, H = Math.max(T + rowLabels.length * (ch + gap), T + 140);
  const parts = [`<rect width="${W}" height="${H}" fill="white"/>`, `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-family="DejaVu Sans">${esc(title)}</text>`];
  colLabels.forEach((c, j) => parts.push(`<text x="${L + j * (cw + gap) + cw / 2}" y="${T - 8}" text-anchor="middle" font-size="11" font-family="DejaVu Sans">${esc(c)}</text>`));
  cells.forEach((row, i) => {
    parts.push(`<text x="${L - 8}" y="${T + i * (ch + gap) + ch / 2}" text-anchor="end" font-size="11" font-family="DejaVu Sans">${esc(rowLabels[i] ?? '')}</text>`);
    row.forEach((c, j) => {
      const ox = L + j * (cw + gap), oy = T + i * (ch + gap);
      parts.push(`<rect x="${ox}" y="${oy}" width="${c.w * pixel}" height="${c.h * pixel}" fill="black"/>`);
      for (let y = 0; y < c.h; y++)
        for (let x = 0; x < c.w; x++) {
          const v = c.image[y * c.w + x]!;
          if (v > 0.02) {
            const g = Math.round(255 * Math.min(1, v));
            parts.push(`<rect x="${ox + x * pixel}" y="${oy + y * pixel}" width="${pixel}" height="${pixel}" fill="rgb(${g},${g},${g})"/>`);
          }
        }
    });
  });
  // Colour bar: the grey scale of the cells (0 = black, 1 = white; values ≤ 0.02 are drawn black).
  const bx = W - bar + 14, by = T, bh = Math.min(120, H - T - 10);
  parts.push(`<defs><linearGradient id="cbar" x1="0" y1="1" x2="0" y2="0"><stop offset="0" stop-color="black"/><stop offset="1" stop-color="white"/></linearGradient></defs>`, `<rect x="${bx}" y="${by}" width="14" height="${bh}" fill="url(#cbar)" stroke="#333"/>`);
  for (const [v, yy] of [[1, by], [0.5, by + bh / 2], [0, by + bh]] as const) parts.push(`<text x="${bx + 18}" y="${yy + 4}" font-size="10" font-family="DejaVu Sans">${v}</text>`);
  parts.push(`<text x="${bx + 7}" y="${by + bh + 16}" text-anchor="middle" font-size="10" font-family="DejaVu Sans">value</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${parts.join('')}</svg>`;
}

/** Renders SVG to a PNG file (and writes the SVG beside it when keepSvg). */
export async function writePng(file: string, svg: string, keepSvg = false): Promise<void> {
  const require = createRequire(import.meta.url);
  const { Resvg } = require('@resvg/resvg-js') as typeof import('@resvg/resvg-js');
  const png = new Resvg(svg, { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
  await writeFile(file, png);
  if (keepSvg) await writeFile(file.replace(/\.png$/, '.svg'), svg);
}

/** One image of an overlay grid: w × h pixels (row-major, row 0 at the top), each drawn pw × ph px; the
 *  layers are painted in order, a layer's value > 0 paints its colour. */
export interface OverlayCell {
  w: number;
  h: number;
  pw: number;
  ph: number;
  layers: { mask: Uint8Array; color: string }[];
}

/** A grid of coloured overlays (e.g. slices with the implant over the input), with labels and a legend. */
export function overlayGrid(title: string, rows: { label: string; cells: OverlayCell[] }[], colLabels: string[], legend: { color: string; label: string }[]): string {
  const gap = 8, L = 130, T = 52;
  const colW = colLabels.map((_, j) => Math.max(...rows.map((r) => r.cells[j] ? r.cells[j]!.w * r.cells[j]!.pw : 0)));
  const rowH = rows.map((r) => Math.max(...r.cells.map((c) => c.h * c.ph)));
  // Legend entries flow left to right and wrap, so the legend always fits the figure's width.
  const W = Math.max(L + colW.reduce((a, b) => a + b + gap, 0), 420);
  const entryW = legend.map((l) => 34 + textWidth(l.label, 12));
  const legendPos: [number, number][] = [];
  let lx = 20, lrow = 0;
  for (const w of entryW) {
    if (lx > 20 && lx + w > W - 10) (lx = 20), lrow++;
    legendPos.push([lx, lrow]);
    lx += w;
  }
  const legendH = 28 + lrow * 22;
  const H = T + rowH.reduce((a, b) => a + b + gap, 0) + legendH;
  const parts = [`<rect width="${W}" height="${H}" fill="white"/>`, `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-family="DejaVu Sans">${esc(title)}</text>`];
  let x0 = L;
  colLabels.forEach((c, j) => {
    parts.push(`<text x="${x0 + colW[j]! / 2}" y="${T - 8}" text-anchor="middle" font-size="11" font-family="DejaVu Sans">${esc(c)}</text>`);
    x0 += colW[j]! + gap;
  });
  let y0 = T;
  rows.forEach((row, i) => {
    parts.push(`<text x="${L - 8}" y="${y0 + rowH[i]! / 2}" text-anchor="end" font-size="11" font-family="DejaVu Sans">${esc(row.label)}</text>`);
    let cx = L;
    row.cells.forEach((c, j) => {
      parts.push(`<rect x="${cx}" y="${y0}" width="${c.w * c.pw}" height="${c.h * c.ph}" fill="black"/>`);
      for (let y = 0; y < c.h; y++)
        for (let x = 0; x < c.w; x++) {
          let fill: string | null = null;
          for (const l of c.layers) if (l.mask[y * c.w + x]) fill = l.color;
          if (fill) parts.push(`<rect x="${cx + x * c.pw}" y="${y0 + y * c.ph}" width="${c.pw}" height="${c.ph}" fill="${fill}"/>`);
        }
      cx += colW[j]! + gap;
    });
    y0 += rowH[i]! + gap;
  });
  legend.forEach((l, i) => {
    const [lx, r] = legendPos[i]!, ly = H - legendH + 14 + r * 22;
    parts.push(`<rect x="${lx}" y="${ly - 7}" width="14" height="14" fill="${l.color}" stroke="#333"/>`, `<text x="${lx + 20}" y="${ly + 5}" font-size="12" font-family="DejaVu Sans">${esc(l.label)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${parts.join('')}</svg>`;
}
