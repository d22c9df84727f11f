// Procedural skull-like binary volumes: the built-in dataset that lets anyone run voxvae end to end
// without the (unshareable) CT-derived SkullFix/SkullBreak data.
//
// A skull is drawn in a canonical frame (millimetres, RAS: x right, y anterior, z superior, the vault's
// centre at 0), then placed in the grid through a global scale and a smooth random warp:
//   world w  →  canonical c = (w + u(w)) / size,  with u a sum of long-wavelength sines per axis pair.
// Because each warp component depends on one world axis only, u is read from six lookup tables and
// no voxel costs more than a few additions before its shape tests. Every shape is evaluated only
// inside its bounding box, and each voxel remembers which part it belongs to (vault, base, face, …),
// so defects can be cut from the right parts afterwards.
//
// Parts: the cranial vault is a deformed ellipsoidal shell (outer surface ρ = f(n), a random cubic in
// the direction n; thickness t(n)); the skull base is a plate with a foramen magnum; the face is an
// ellipsoidal "mask" shell with two orbits and a nasal aperture cut out, zygomatic bodies and arches
// (capsules), a maxillary alveolar arch with a palate, and optionally a mandible (horseshoe + rami).
// Cranial defects are cones from the vault centre with an irregular rim (SkullBreak's bilateral,
// frontoorbital, parietotemporal and random); facial defects are irregular blobs at a facial landmark.

import type { Vec3 } from '../volume.js';
import { Rng } from './rng.js';

export type CranialDefectType = 'bilateral' | 'frontoorbital' | 'parietotemporal' | 'random';
export type FacialDefectType = 'orbital' | 'nasal' | 'maxillary' | 'zygomatic' | 'mandibular';
export const CRANIAL_DEFECT_TYPES: readonly CranialDefectType[] = ['bilateral', 'frontoorbital', 'parietotemporal', 'random'];
export const FACIAL_DEFECT_TYPES: readonly FacialDefectType[] = ['orbital', 'nasal', 'maxillary', 'zygomatic', 'mandibular'];

/** Part labels written while drawing (0 = background). */
export const PART = { vault: 1, base: 2, face: 3, zygoma: 4, maxilla: 5, mandible: 6 } as const;

/** A synthetic grid: RAS axes (identity direction), voxel centres at origin + index·spacing. */
export interface SynthGrid {
  shape: Vec3;
  spacing: Vec3;
  origin: Vec3;
}

/** Field of view (mm) and its centre: room for the largest skull (size 1.12) with its mandible. */
export const DEFAULT_FOV: Vec3 = [200, 250, 236];
export const DEFAULT_FOV_CENTER: Vec3 = [0, 5, -20];

export function makeGrid(shape: Vec3, fov: Vec3 = DEFAULT_FOV, center: Vec3 = DEFAULT_FOV_CENTER): SynthGrid {
  const spacing: Vec3 = [fov[0] / shape[0], fov[1] / shape[1], fov[2] / shape[2]];
  const origin: Vec3 = [0, 1, 2].map((a) => center[a]! - ((shape[a]! - 1) / 2) * spacing[a]!) as Vec3;
  return { shape: [...shape], spacing, origin };
}

export interface DefectFactors {
  kind: 'cranial' | 'facial';
  type: CranialDefectType | FacialDefectType;
  side: 'left' | 'right' | 'midline';
  /** Centroid of the removed voxels, RAS mm. */
  center: Vec3;
  /** Centroid of the removed voxels, voxel index [i, j, k] (fractional). */
  centerIndex: Vec3;
  /** Size of the removed region's bounding box along x, y, z (mm). */
  extent: Vec3;
  /** Number of removed voxels (= implant voxels). */
  voxels: number;
  /** Sampled shape parameters: for cranial, the cone axis (unit, canonical frame) and half-widths (tan of half-angles) and rim roughness; for facial, the centre (canonical mm), radii (mm) and roughness. */
  params: Record<string, number | number[]>;
}

/** Ground-truth factors of one synthetic skull, for disentanglement measures. */
export interface SkullFactors {
  index: number;
  seed: number;
  /** Global scale (1 = the average skull). */
  size: number;
  /** Vault outer extents (mm) before deformation: 2 × semi-axes × size. */
  vaultWidth: number;
  vaultLength: number;
  vaultHeight: number;
  /** vaultWidth / vaultLength. */
  aspectWidth: number;
  /** vaultHeight / vaultLength. */
  aspectHeight: number;
  /** Mean vault thickness (mm) as sampled (drawn at least ~1.2 voxels thick so shells stay closed). */
  thickness: number;
  /** How far the face protrudes forward (mm, before scaling). */
  faceDepth: number;
  /** Relative face width (1 = average). */
  faceWidth: number;
  mandible: boolean;
  /** Amplitude of the left–right asymmetric terms of the vault shape. */
  asymmetry: number;
  /** Largest displacement of the smooth warp (mm). */
  warpAmplitude: number;
  /** Coefficients of the cubic vault deformation (19 monomials of n: x y z xx yy zz xy xz yz xxx yyy zzz xxy xxz xyy yyz xzz yzz xyz). */
  deformation: number[];
  /** Fraction of grid voxels in the complete skull. */
  foreground: number;
  cranialDefect: DefectFactors;
  facialDefect: DefectFactors;
}

export interface SkullVolumes {
  complete: Uint8Array;
  cranialDefective: Uint8Array;
  cranialImplant: Uint8Array;
  facialDefective: Uint8Array;
  facialImplant: Uint8Array;
  factors: SkullFactors;
  /** The same masks as voxel lists (C-order indices, ascending): the complete skull and each implant. */
  indices: { complete: Int32Array; cranialImplant: Int32Array; facialImplant: Int32Array };
}

export interface SkullOptions {
  /** Force the cranial defect type (default: random). */
  cranialDefect?: CranialDefectType;
  /** Force the facial defect type (default: random among those the skull allows). */
  facialDefect?: FacialDefectType;
  /** Probability of a mandible (default 0.7). */
  mandibleProbability?: number;
}

// ---------------------------------------------------------------------------------------------
// Shape parameters (canonical frame, mm).

interface Ellipsoid {
  c: Vec3;
  r: Vec3;
}
interface Capsule {
  a: Vec3;
  b: Vec3;
  r: number;
}
interface Horseshoe {
  yc: number;
  zc: number;
  rx: number;
  ry: number;
  r: number;
  yMin: number;
}

interface Shape {
  size: number;
  A: number;
  B: number;
  C: number;
  poly: Float64Array; // 19 vault deformation coefficients
  fMin: number;
  fMax: number;
  thick: number; // mean vault thickness as sampled
  vaultMin: Vec3; // least vault thickness along a normal parallel to x, y, z (1.2 voxels)
  tpoly: Float64Array; // 9: thickness variation (deg 1–2)
  zb0: number;
  zSlope: number;
  baseThick: number;
  foramen: { y: number; rx: number; ry: number };
  face: { c: Vec3; outer: Vec3; inner: Vec3; yMin: number; zMin: number };
  holes: Ellipsoid[];
  zygBodies: Ellipsoid[];
  arches: Capsule[];
  maxilla: Horseshoe;
  palate: { z0: number; z1: number; rx: number; ry: number; yc: number; yMin: number };
  mandible: { body: Horseshoe; rami: Capsule[]; chin: Ellipsoid } | null;
  landmarks: Record<FacialDefectType, Vec3[]>;
}

function evalPoly(c: Float64Array, x: number, y: number, z: number): number {
  return (
    c[0]! * x + c[1]! * y + c[2]! * z +
    c[3]! * x * x + c[4]! * y * y + c[5]! * z * z + c[6]! * x * y + c[7]! * x * z + c[8]! * y * z +
    c[9]! * x * x * x + c[10]! * y * y * y + c[11]! * z * z * z + c[12]! * x * x * y + c[13]! * x * x * z +
    c[14]! * x * y * y + c[15]! * y * y * z + c[16]! * x * z * z + c[17]! * y * z * z + c[18]! * x * y * z
  );
}

function evalPoly2(c: Float64Array, x: number, y: number, z: number): number {
  return c[0]! * x + c[1]! * y + c[2]! * z + c[3]! * x * x + c[4]! * y * y + c[5]! * z * z + c[6]! * x * y + c[7]! * x * z + c[8]! * y * z;
}

// Monomials odd in x (the left–right axis) make the skull asymmetric; they get a small amplitude.
const ODD_IN_X = [0, 6, 7, 9, 14, 16, 18];

function sampleShape(rng: Rng, spacing: Vec3, opts: SkullOptions): { shape: Shape; factors: Omit<SkullFactors, 'index' | 'seed' | 'foreground' | 'warpAmplitude' | 'cranialDefect' | 'facialDefect'> } {
  const size = rng.clippedNormal(1, 0.05, 0.88, 1.12);
  // Walls thinner than a voxel would leak. Drawn in the canonical frame (world / size), every wall is at
  // least 1.2 voxels thick (with the vault, along its normal; see drawVault), plus room for the warp.
  const minThick = (1.2 * Math.max(...spacing)) / size;
  const vaultMin = spacing.map((sp) => (1.2 * sp) / size) as Vec3;
  const A = 70 * rng.clippedNormal(1, 0.045, 0.88, 1.12);
  const B = 90 * rng.clippedNormal(1, 0.04, 0.9, 1.1);
  const C = 72 * rng.clippedNormal(1, 0.05, 0.88, 1.12);
  const asym = rng.uniform(0.1, 0.35);
  const poly = new Float64Array(19);
  const amp = [0.025, 0.025, 0.02, 0.035, 0.03, 0.03, 0.02, 0.02, 0.03, 0.02, 0.02, 0.015, 0.025, 0.02, 0.02, 0.02, 0.02, 0.02, 0.015];
  for (let m = 0; m < 19; m++) poly[m] = rng.normal(0, amp[m]!) * (ODD_IN_X.includes(m) ? asym : 1);
  poly[12] = poly[12]! - 0.09; // x²y < 0: the vault is wider at the back (parietal) than at the front
  poly[10] = poly[10]! - 0.03; // y³ < 0: a flatter forehead, a rounder occiput
  let fMin = Infinity, fMax = -Infinity;
  for (let a = 0; a <= 24; a++) {
    const th = (Math.PI * a) / 24;
    for (let b = 0; b < 48; b++) {
      const ph = (2 * Math.PI * b) / 48;
      const f = 1 + evalPoly(poly, Math.sin(th) * Math.cos(ph), Math.sin(th) * Math.sin(ph), Math.cos(th));
      fMin = Math.min(fMin, f);
      fMax = Math.max(fMax, f);
    }
  }
  fMin -= 0.03;
  fMax += 0.03;
  const thickness = rng.uniform(4.5, 8);
  const thick = thickness;
  const tpoly = new Float64Array(9);
  for (let m = 0; m < 9; m++) tpoly[m] = rng.normal(0, 0.12);
  const zb0 = -0.42 * C;
  const zSlope = 0.2;
  const zb = (y: number): number => zb0 + zSlope * y;

  const faceDepth = rng.uniform(0, 22);
  const faceWidth = rng.clippedNormal(1, 0.05, 0.88, 1.12);
  const Af = 0.8 * A * faceWidth, Bf = 0.85 * B + faceDepth, Cf = 0.72 * C;
  const yf = 0.15 * B, zf = -0.65 * C;
  const tf = Math.max(0.75 * thickness, minThick);
  const face = {
    c: [0, yf, zf] as Vec3,
    outer: [Af, Bf, Cf] as Vec3,
    inner: [Af - tf, Bf - tf, Cf - tf] as Vec3,
    yMin: yf + 0.15 * Bf,
    zMin: zf - 0.85 * Cf,
  };
  const orbit = { x: 0.43 * Af * rng.uniform(0.95, 1.05), y: yf + 0.8 * Bf, z: zf + 0.36 * Cf, r: [17, 30, 15.5].map((v) => v * rng.uniform(0.9, 1.1)) as Vec3 };
  const holes: Ellipsoid[] = [
    { c: [orbit.x, orbit.y, orbit.z], r: orbit.r },
    { c: [-orbit.x, orbit.y, orbit.z], r: orbit.r },
    { c: [0, yf + 0.92 * Bf, zf - 0.08 * Cf], r: [10 * rng.uniform(0.85, 1.15), 28, 16 * rng.uniform(0.85, 1.15)] },
  ];
  const zygFront = (sx: number): Vec3 => [sx * 0.85 * Af, yf + 0.55 * Bf, zf + 0.2 * Cf];
  const archY = -0.05 * B, archZ = zb(archY) - 4;
  const archX = 0.95 * A * Math.sqrt(Math.max(0, 1 - (archZ / C) ** 2));
  const archR = Math.max(4.5 * rng.uniform(0.85, 1.15), minThick / 2);
  const zygBodies: Ellipsoid[] = [1, -1].map((sx) => ({ c: zygFront(sx), r: [9, 11, 12] as Vec3 }));
  const arches: Capsule[] = [1, -1].map((sx) => ({ a: zygFront(sx), b: [sx * archX, archY, archZ] as Vec3, r: archR }));
  const maxR = Math.max(6, minThick / 2);
  const maxilla: Horseshoe = { yc: yf + 0.35 * Bf, zc: zf - 0.72 * Cf, rx: 0.5 * Af, ry: 0.42 * Bf, r: maxR, yMin: yf + 0.35 * Bf - 3 };
  const palate = {
    z0: maxilla.zc + 1.5,
    z1: maxilla.zc + 1.5 + Math.max(4, minThick),
    rx: 0.92 * maxilla.rx,
    ry: 0.92 * maxilla.ry,
    yc: maxilla.yc,
    yMin: maxilla.yc - 0.6 * maxilla.ry,
  };
  const hasMandible = rng.bool(opts.mandibleProbability ?? 0.7);
  let mandible: Shape['mandible'] = null;
  if (hasMandible) {
    const body: Horseshoe = {
      yc: yf + 0.2 * Bf,
      zc: zf - 1.2 * Cf,
      rx: 0.7 * Af * rng.uniform(0.93, 1.07),
      ry: 0.75 * Bf,
      r: Math.max(6 * rng.uniform(0.85, 1.15), minThick / 2),
      yMin: yf + 0.2 * Bf,
    };
    const condY = -0.05 * B;
    const rami: Capsule[] = [1, -1].map((sx) => ({
      a: [sx * body.rx, body.yc, body.zc] as Vec3,
      b: [sx * 0.8 * A, condY, zb(condY) - 8] as Vec3,
      r: Math.max(5, minThick / 2),
    }));
    const chin: Ellipsoid = { c: [0, body.yc + body.ry - 2, body.zc - 3], r: [12, 8, 10] };
    mandible = { body, rami, chin };
  }
  const landmarks: Record<FacialDefectType, Vec3[]> = {
    orbital: [1, -1].map((sx) => [sx * orbit.x * 1.15, orbit.y + 8, orbit.z - 6] as Vec3),
    nasal: [[0, yf + 0.93 * Bf, zf - 0.05 * Cf]],
    maxillary: [1, -1].map((sx) => [sx * 0.32 * Af, yf + 0.78 * Bf, zf - 0.55 * Cf] as Vec3),
    zygomatic: [1, -1].map((sx) => zygFront(sx)),
    mandibular: mandible ? [[0, mandible.body.yc + mandible.body.ry, mandible.body.zc], ...[1, -1].map((sx) => [sx * mandible!.body.rx * 0.8, mandible!.body.yc + mandible!.body.ry * 0.55, mandible!.body.zc] as Vec3)] : [],
  };
  return {
    shape: {
      size, A, B, C, poly, fMin, fMax, thick, vaultMin, tpoly, zb0, zSlope, baseThick: Math.max(0.8 * thickness, minThick),
      foramen: { y: -0.3 * B, rx: 14, ry: 17 },
      face, holes, zygBodies, arches, maxilla, palate, mandible, landmarks,
    },
    factors: {
      size,
      vaultWidth: 2 * A * size,
      vaultLength: 2 * B * size,
      vaultHeight: 2 * C * size,
      aspectWidth: A / B,
      aspectHeight: C / B,
      thickness: thickness * size,
      faceDepth,
      faceWidth,
      mandible: hasMandible,
      asymmetry: asym,
      deformation: Array.from(poly),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Rasterisation context: per-axis lookup tables of canonical coordinates.

interface Ctx {
  D: number;
  H: number;
  W: number;
  part: Uint8Array;
  // canonical c = base + per-axis terms; see header comment.
  XS: Float64Array; UXJ: Float64Array; UXK: Float64Array;
  YS: Float64Array; UYI: Float64Array; UYK: Float64Array;
  ZS: Float64Array; UZI: Float64Array; UZJ: Float64Array;
  grid: SynthGrid;
  size: number;
  warp: number; // max |u| (mm, world)
}

function warpTable(rng: Rng, coords: Float64Array, amp: number, size: number): Float64Array {
  const a1 = rng.uniform(0.3, 0.7) * amp, a2 = (amp - a1) * rng.uniform(0.3, 1);
  const l1 = rng.uniform(110, 240), l2 = rng.uniform(60, 120);
  const p1 = rng.uniform(0, 2 * Math.PI), p2 = rng.uniform(0, 2 * Math.PI);
  const out = new Float64Array(coords.length);
  for (let i = 0; i < coords.length; i++) {
    const t = coords[i]!;
    out[i] = (a1 * Math.sin((2 * Math.PI * t) / l1 + p1) + a2 * Math.sin((2 * Math.PI * t) / l2 + p2)) / size;
  }
  return out;
}

function makeCtx(grid: SynthGrid, size: number, rng: Rng, warpAmp: number, part: Uint8Array): Ctx {
  const [D, H, W] = grid.shape;
  const axis = (a: number): Float64Array => {
    const n = grid.shape[a]!;
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = grid.origin[a]! + i * grid.spacing[a]!;
    return out;
  };
  const X = axis(0), Y = axis(1), Z = axis(2);
  const scaled = (v: Float64Array): Float64Array => v.map((x) => x / size);
  // Each displacement is split over the two other axes, so |u| per axis ≤ warpAmp.
  const half = warpAmp / 2;
  return {
    D, H, W, part, grid, size, warp: warpAmp,
    XS: scaled(X), UXJ: warpTable(rng, Y, half, size), UXK: warpTable(rng, Z, half, size),
    YS: scaled(Y), UYI: warpTable(rng, X, half, size), UYK: warpTable(rng, Z, half, size),
    ZS: scaled(Z), UZI: warpTable(rng, X, half, size), UZJ: warpTable(rng, Y, half, size),
  };
}

/** Voxel index range [lo, hi) along `axis` that can map into canonical [cLo, cHi]. */
function span(g: Ctx, axis: number, cLo: number, cHi: number): [number, number] {
  const o = g.grid.origin[axis]!, sp = g.grid.spacing[axis]!, n = g.grid.shape[axis]!;
  const wLo = cLo * g.size - g.warp - sp, wHi = cHi * g.size + g.warp + sp;
  return [Math.max(0, Math.ceil((wLo - o) / sp)), Math.min(n, Math.floor((wHi - o) / sp) + 1)];
}

type Test = (cx: number, cy: number, cz: number) => boolean;

/** Calls `test` on every voxel of the canonical box [lo, hi] whose part is 0 and labels it when true. */
function fill(g: Ctx, lo: Vec3, hi: Vec3, label: number, test: Test): void {
  const [i0, i1] = span(g, 0, lo[0], hi[0]);
  const [j0, j1] = span(g, 1, lo[1], hi[1]);
  const [k0, k1] = span(g, 2, lo[2], hi[2]);
  const { H, W, part, XS, UXJ, UXK, YS, UYI, UYK, ZS, UZI, UZJ } = g;
  for (let i = i0; i < i1; i++) {
    for (let j = j0; j < j1; j++) {
      const bx = XS[i]! + UXJ[j]!, by = YS[j]! + UYI[i]!, bz = UZI[i]! + UZJ[j]!;
      const row = (i * H + j) * W;
      for (let k = k0; k < k1; k++) {
        const p = row + k;
        if (part[p] !== 0) continue;
        if (test(bx + UXK[k]!, by + UYK[k]!, bz + ZS[k]!)) part[p] = label;
      }
    }
  }
}

function drawVault(g: Ctx, s: Shape): void {
  const { A, B, C, poly, tpoly, fMin, fMax, thick, zb0, zSlope, baseThick, foramen } = s;
  const [vx, vy, vz] = s.vaultMin;
  const fMax2 = fMax * fMax;
  const tBand = Math.max(1.6 * thick, 2.5 * Math.max(vx, vy, vz));
  const rhoMin = Math.max(0, fMin - tBand / Math.min(A, B, C));
  const rhoMin2 = rhoMin * rhoMin;
  const tLo = 0.6 * thick, tHi = 1.6 * thick;
  const [i0, i1] = span(g, 0, -A * fMax, A * fMax);
  const [j0, j1] = span(g, 1, -B * fMax, B * fMax);
  const [k0, k1] = span(g, 2, zb0 - zSlope * B * fMax - baseThick, C * fMax);
  const { H, W, part, XS, UXJ, UXK, YS, UYI, UYK, ZS, UZI, UZJ } = g;
  const iA = 1 / A, iB = 1 / B, iC = 1 / C;
  const frx2 = 1 / (foramen.rx * foramen.rx), fry2 = 1 / (foramen.ry * foramen.ry);
  for (let i = i0; i < i1; i++) {
    for (let j = j0; j < j1; j++) {
      const bx = XS[i]! + UXJ[j]!, by = YS[j]! + UYI[i]!, bz = UZI[i]! + UZJ[j]!;
      const row = (i * H + j) * W;
      for (let k = k0; k < k1; k++) {
        const cx = bx + UXK[k]!, cy = by + UYK[k]!, cz = bz + ZS[k]!;
        const zb = zb0 + zSlope * cy;
        if (cz < zb - baseThick) continue;
        const qx = cx * iA, qy = cy * iB, qz = cz * iC;
        const rho2 = qx * qx + qy * qy + qz * qz;
        if (rho2 > fMax2) continue;
        const inPlate = cz <= zb;
        if (!inPlate && rho2 < rhoMin2) continue;
        const rho = Math.sqrt(rho2);
        if (rho === 0) continue;
        const inv = 1 / rho;
        const nx = qx * inv, ny = qy * inv, nz = qz * inv;
        const f = 1 + evalPoly(poly, nx, ny, nz);
        if (rho > f) continue;
        const p = row + k;
        if (inPlate) {
          const dy = cy - foramen.y;
          if (cx * cx * frx2 + dy * dy * fry2 >= 1 && part[p] === 0) part[p] = PART.base;
          continue;
        }
        const len = Math.sqrt(cx * cx + cy * cy + cz * cz);
        const L = len * inv;
        const radial = (f - rho) * L;
        if (radial > tBand) continue;
        let t = thick * (1 + evalPoly2(tpoly, nx, ny, nz));
        t = t < tLo ? tLo : t > tHi ? tHi : t;
        // A band thinner than Σ|m_a|·voxel_a along the normal m can be crossed between voxel centres.
        let mx = qx * iA, my = qy * iB, mz = qz * iC;
        const ml = 1 / Math.sqrt(mx * mx + my * my + mz * mz);
        mx *= ml;
        my *= ml;
        mz *= ml;
        const cos = Math.max(0.5, (cx * mx + cy * my + cz * mz) / len);
        const tMin = (Math.abs(mx) * vx + Math.abs(my) * vy + Math.abs(mz) * vz) / cos;
        if (radial <= (t > tMin ? t : tMin)) part[p] = PART.vault;
      }
    }
  }
}

function inEllipsoid(e: Ellipsoid, x: number, y: number, z: number): boolean {
  const dx = (x - e.c[0]) / e.r[0], dy = (y - e.c[1]) / e.r[1], dz = (z - e.c[2]) / e.r[2];
  return dx * dx + dy * dy + dz * dz < 1;
}

function capsuleTest(c: Capsule): Test {
  const dx = c.b[0] - c.a[0], dy = c.b[1] - c.a[1], dz = c.b[2] - c.a[2];
  const len2 = dx * dx + dy * dy + dz * dz;
  const r2 = c.r * c.r;
  return (x, y, z) => {
    const px = x - c.a[0], py = y - c.a[1], pz = z - c.a[2];
    let t = (px * dx + py * dy + pz * dz) / len2;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    const ex = px - t * dx, ey = py - t * dy, ez = pz - t * dz;
    return ex * ex + ey * ey + ez * ez < r2;
  };
}

function capsuleBox(c: Capsule): [Vec3, Vec3] {
  return [
    [Math.min(c.a[0], c.b[0]) - c.r, Math.min(c.a[1], c.b[1]) - c.r, Math.min(c.a[2], c.b[2]) - c.r],
    [Math.max(c.a[0], c.b[0]) + c.r, Math.max(c.a[1], c.b[1]) + c.r, Math.max(c.a[2], c.b[2]) + c.r],
  ];
}

function horseshoeTest(h: Horseshoe): Test {
  const rm = (h.rx + h.ry) / 2, r2 = h.r * h.r;
  return (x, y, z) => {
    if (y < h.yMin) return false;
    const u = x / h.rx, v = (y - h.yc) / h.ry;
    const d = (Math.sqrt(u * u + v * v) - 1) * rm, dz = z - h.zc;
    return d * d + dz * dz < r2;
  };
}

function horseshoeBox(h: Horseshoe): [Vec3, Vec3] {
  return [
    [-h.rx - h.r, h.yMin, h.zc - h.r],
    [h.rx + h.r, h.yc + h.ry + h.r, h.zc + h.r],
  ];
}

function drawFace(g: Ctx, s: Shape): void {
  const { face, holes } = s;
  const [ox, oy, oz] = face.outer, [ix, iy, iz] = face.inner;
  const [fx, fy, fz] = face.c;
  const { zb0, zSlope } = s;
  const topPad = 0.5 * s.thick;
  fill(g, [-ox, face.yMin, face.zMin], [ox, fy + oy, zb0 + zSlope * (fy + oy) + topPad], PART.face, (x, y, z) => {
    if (y < face.yMin || z < face.zMin || z > zb0 + zSlope * y + topPad) return false;
    const dx = x - fx, dy = y - fy, dz = z - fz;
    const a = dx / ox, b = dy / oy, c = dz / oz;
    if (a * a + b * b + c * c >= 1) return false;
    const a2 = dx / ix, b2 = dy / iy, c2 = dz / iz;
    if (a2 * a2 + b2 * b2 + c2 * c2 < 1) return false;
    for (const h of holes) if (inEllipsoid(h, x, y, z)) return false;
    return true;
  });
  for (const e of s.zygBodies) {
    fill(g, [e.c[0] - e.r[0], e.c[1] - e.r[1], e.c[2] - e.r[2]], [e.c[0] + e.r[0], e.c[1] + e.r[1], e.c[2] + e.r[2]], PART.zygoma, (x, y, z) =>
      inEllipsoid(e, x, y, z) && !holes.some((h) => inEllipsoid(h, x, y, z)),
    );
  }
  for (const c of s.arches) {
    const [lo, hi] = capsuleBox(c);
    fill(g, lo, hi, PART.zygoma, capsuleTest(c));
  }
  const [mlo, mhi] = horseshoeBox(s.maxilla);
  fill(g, mlo, mhi, PART.maxilla, horseshoeTest(s.maxilla));
  const pl = s.palate;
  fill(g, [-pl.rx, pl.yMin, pl.z0], [pl.rx, pl.yc + pl.ry, pl.z1], PART.maxilla, (x, y, z) => {
    if (z < pl.z0 || z > pl.z1 || y < pl.yMin) return false;
    const u = x / pl.rx, v = (y - pl.yc) / pl.ry;
    return u * u + v * v < 1;
  });
  if (s.mandible) {
    const m = s.mandible;
    const [lo, hi] = horseshoeBox(m.body);
    fill(g, lo, hi, PART.mandible, horseshoeTest(m.body));
    for (const c of m.rami) {
      const [rlo, rhi] = capsuleBox(c);
      fill(g, rlo, rhi, PART.mandible, capsuleTest(c));
    }
    const e = m.chin;
    fill(g, [e.c[0] - e.r[0], e.c[1] - e.r[1], e.c[2] - e.r[2]], [e.c[0] + e.r[0], e.c[1] + e.r[1], e.c[2] + e.r[2]], PART.mandible, (x, y, z) =>
      inEllipsoid(e, x, y, z),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Defects: a region test in canonical coordinates, applied to voxels of the allowed parts.

type Region = { test: Test; params: Record<string, number | number[]>; side: DefectFactors['side'] };

function normalize(v: Vec3): Vec3 {
  const n = Math.hypot(v[0], v[1], v[2]);
  return [v[0] / n, v[1] / n, v[2] / n];
}

function cross(a: Vec3, b: Vec3): Vec3 {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

function rim(rng: Rng, rough: number): { amp: number[]; phase: number[]; max: number } {
  const amp: number[] = [], phase: number[] = [];
  for (let k = 2; k <= 5; k++) {
    amp.push(rng.uniform(0, rough) / (k - 1));
    phase.push(rng.uniform(0, 2 * Math.PI));
  }
  return { amp, phase, max: amp.reduce((a, b) => a + b, 0) };
}

function cranialRegion(rng: Rng, s: Shape, type: CranialDefectType, grow: number): Region {
  let axis: Vec3, su: number, sv: number, rough: number;
  let side: DefectFactors['side'] = 'midline';
  const lr = rng.bool() ? 1 : -1;
  switch (type) {
    case 'bilateral':
      axis = [rng.normal(0, 0.05), rng.uniform(0.35, 0.65), 0.85];
      su = rng.uniform(0.7, 0.95); // across the midline, over both hemispheres
      sv = rng.uniform(0.3, 0.45);
      rough = 0.12;
      break;
    case 'frontoorbital':
      axis = [lr * rng.uniform(0.2, 0.4), 0.9, rng.uniform(-0.12, 0.05)];
      su = rng.uniform(0.3, 0.45);
      sv = rng.uniform(0.28, 0.4);
      rough = 0.15;
      side = lr > 0 ? 'right' : 'left';
      break;
    case 'parietotemporal':
      axis = [lr * 0.9, rng.uniform(-0.35, 0.15), rng.uniform(0.15, 0.45)];
      su = rng.uniform(0.4, 0.6);
      sv = rng.uniform(0.35, 0.55);
      rough = 0.15;
      side = lr > 0 ? 'right' : 'left';
      break;
    default: {
      const th = rng.uniform(0, 2 * Math.PI);
      const el = rng.uniform(0.15, 1.2);
      axis = [Math.cos(el) * Math.cos(th), Math.cos(el) * Math.sin(th), Math.sin(el)];
      su = rng.uniform(0.2, 0.5);
      sv = rng.uniform(0.2, 0.5);
      rough = 0.3;
      side = Math.abs(axis[0]) < 0.15 ? 'midline' : axis[0] > 0 ? 'right' : 'left';
    }
  }
  su *= grow;
  sv *= grow;
  const d = normalize(axis);
  const up: Vec3 = Math.abs(d[2]) > 0.95 ? [0, 1, 0] : [0, 0, 1];
  const e1 = normalize(cross(up, d));
  const e2 = cross(d, e1);
  const r = rim(rng, rough);
  const lo = Math.max(0, 1 - r.max), hi = 1 + r.max;
  const lo2 = lo * lo, hi2 = hi * hi;
  const { A, B, C } = s;
  const test: Test = (x, y, z) => {
    const mx = x / A, my = y / B, mz = z / C;
    const cd = mx * d[0] + my * d[1] + mz * d[2];
    if (cd <= 0) return false;
    const u = (mx * e1[0] + my * e1[1] + mz * e1[2]) / (cd * su);
    const v = (mx * e2[0] + my * e2[1] + mz * e2[2]) / (cd * sv);
    const q2 = u * u + v * v;
    if (q2 >= hi2) return false;
    if (q2 < lo2) return true;
    const phi = Math.atan2(v, u);
    let rb = 1;
    for (let k = 0; k < 4; k++) rb += r.amp[k]! * Math.cos((k + 2) * phi + r.phase[k]!);
    return q2 < rb * rb;
  };
  return { test, side, params: { axis: [...d], halfWidthU: su, halfWidthV: sv, roughness: rough } };
}

function facialRegion(rng: Rng, s: Shape, type: FacialDefectType, grow: number): Region {
  const sites = s.landmarks[type];
  const site = rng.pick(sites);
  const c: Vec3 = [site[0] + rng.normal(0, 3), site[1] + rng.normal(0, 3), site[2] + rng.normal(0, 3)];
  const radii: Vec3 = [rng.uniform(11, 22) * grow, rng.uniform(11, 22) * grow, rng.uniform(11, 22) * grow];
  const shapePoly = new Float64Array(9);
  for (let m = 0; m < 9; m++) shapePoly[m] = rng.normal(0, 0.12);
  const test: Test = (x, y, z) => {
    const dx = (x - c[0]) / radii[0], dy = (y - c[1]) / radii[1], dz = (z - c[2]) / radii[2];
    const q2 = dx * dx + dy * dy + dz * dz;
    if (q2 >= 2.25) return false;
    if (q2 < 0.36) return true;
    const q = Math.sqrt(q2);
    const rb = 1 + evalPoly2(shapePoly, dx / q, dy / q, dz / q);
    return q < rb;
  };
  const side: DefectFactors['side'] = Math.abs(c[0]) < 8 ? 'midline' : c[0] > 0 ? 'right' : 'left';
  return { test, side, params: { center: [...c], radii: [...radii], roughness: 0.12 } };
}

/** The skull's voxels as a list: linear index, [i, j, k], canonical coordinates and part. */
interface Voxels {
  count: number;
  index: Int32Array;
  ijk: Int32Array; // 3 per voxel
  c: Float64Array; // 3 per voxel, canonical mm
  part: Uint8Array;
}

function listVoxels(g: Ctx): Voxels {
  const { D, H, W, part, XS, UXJ, UXK, YS, UYI, UYK, ZS, UZI, UZJ } = g;
  // One pass; the lists start at 1/8 of the grid (skulls fill 2–8 %) and grow if ever needed.
  let cap = Math.max(1024, part.length >> 3);
  let index = new Int32Array(cap), ijk = new Int32Array(3 * cap), c = new Float64Array(3 * cap), lab = new Uint8Array(cap);
  let q = 0;
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < H; j++) {
      const row = (i * H + j) * W;
      const bx = XS[i]! + UXJ[j]!, by = YS[j]! + UYI[i]!, bz = UZI[i]! + UZJ[j]!;
      for (let k = 0; k < W; k++) {
        const l = part[row + k]!;
        if (l === 0) continue;
        if (q === cap) {
          cap *= 2;
          const grow = <T extends Int32Array | Float64Array | Uint8Array>(a: T, n: number): T => {
            const b = new (a.constructor as new (n: number) => T)(n);
            b.set(a);
            return b;
          };
          index = grow(index, cap);
          ijk = grow(ijk, 3 * cap);
          c = grow(c, 3 * cap);
          lab = grow(lab, cap);
        }
        index[q] = row + k;
        ijk[3 * q] = i;
        ijk[3 * q + 1] = j;
        ijk[3 * q + 2] = k;
        c[3 * q] = bx + UXK[k]!;
        c[3 * q + 1] = by + UYK[k]!;
        c[3 * q + 2] = bz + ZS[k]!;
        lab[q] = l;
        q++;
      }
    }
  }
  return { count: q, index: index.slice(0, q), ijk, c, part: lab };
}

/** Applies `region` to the voxels of the allowed parts; returns the removed voxels (list positions) and statistics. */
function cut(v: Voxels, allowed: readonly number[], region: Region): { members: Int32Array; count: number; sum: Vec3; lo: Vec3; hi: Vec3 } {
  const ok = new Uint8Array(8);
  for (const a of allowed) ok[a] = 1;
  const members = new Int32Array(v.count);
  let count = 0;
  const sum: Vec3 = [0, 0, 0];
  const lo: Vec3 = [Infinity, Infinity, Infinity], hi: Vec3 = [-Infinity, -Infinity, -Infinity];
  const { c, ijk, part } = v;
  for (let q = 0; q < v.count; q++) {
    if (ok[part[q]!] !== 1) continue;
    if (!region.test(c[3 * q]!, c[3 * q + 1]!, c[3 * q + 2]!)) continue;
    members[count++] = q;
    for (let a = 0; a < 3; a++) {
      const x = ijk[3 * q + a]!;
      sum[a] = sum[a]! + x;
      if (x < lo[a]!) lo[a] = x;
      if (x > hi[a]!) hi[a] = x;
    }
  }
  return { members: members.subarray(0, count), count, sum, lo, hi };
}

function makeDefect(
  g: Ctx,
  vox: Voxels,
  kind: 'cranial' | 'facial',
  type: CranialDefectType | FacialDefectType,
  allowed: readonly number[],
  minVoxels: number,
  region: (grow: number) => Region,
): { implant: Uint8Array; indices: Int32Array; factors: DefectFactors } {
  let best: { r: ReturnType<typeof cut>; reg: Region } | null = null;
  for (let attempt = 0; attempt < 12; attempt++) {
    const reg = region(attempt < 4 ? 1 : 1.12 ** (attempt - 3));
    const r = cut(vox, allowed, reg);
    if (!best || r.count > best.r.count) best = { r, reg };
    if (r.count >= minVoxels) break;
  }
  const { r, reg } = best!;
  const n = Math.max(1, r.count);
  const centerIndex: Vec3 = [r.sum[0] / n, r.sum[1] / n, r.sum[2] / n];
  const { origin, spacing } = g.grid;
  const center = centerIndex.map((c, a) => origin[a]! + c * spacing[a]!) as Vec3;
  const extent = [0, 1, 2].map((a) => (r.count > 0 ? (r.hi[a]! - r.lo[a]! + 1) * spacing[a]! : 0)) as Vec3;
  const implant = new Uint8Array(g.part.length);
  const indices = new Int32Array(r.count);
  for (let m = 0; m < r.count; m++) {
    const p = vox.index[r.members[m]!]!;
    implant[p] = 1;
    indices[m] = p;
  }
  return { implant, indices, factors: { kind, type, side: reg.side, center, centerIndex, extent, voxels: r.count, params: reg.params } };
}

let scratch: Uint8Array | null = null;

/**
 * Draws skull number `index` of the set seeded by `seed` on `grid`: the complete skull, its cranial- and
 * facial-defect versions, both implants, and the ground-truth factors. Deterministic in (seed, index, grid, options).
 */
export function generateSkull(grid: SynthGrid, seed: number, index: number, options: SkullOptions = {}): SkullVolumes {
  const rng = new Rng(seed, index);
  const n = grid.shape[0] * grid.shape[1] * grid.shape[2];
  const { shape, factors } = sampleShape(rng, grid.spacing, options);
  const warpAmp = rng.uniform(1.5, 4.5);
  // The part labels are scratch, reused from skull to skull (a fresh 1 MiB+ array each time costs
  // page faults and garbage collection, not just a memset).
  if (scratch === null || scratch.length !== n) scratch = new Uint8Array(n);
  else scratch.fill(0);
  const part = scratch;
  const g = makeCtx(grid, shape.size, rng, warpAmp, part);
  drawVault(g, shape);
  drawFace(g, shape);

  const vox = listVoxels(g);
  const fg = vox.count;
  const complete = new Uint8Array(n);
  for (let q = 0; q < fg; q++) complete[vox.index[q]!] = 1;
  const cType = options.cranialDefect ?? rng.pick(CRANIAL_DEFECT_TYPES);
  const cranialParts = cType === 'frontoorbital' ? [PART.vault, PART.face, PART.zygoma] : [PART.vault];
  const cranial = makeDefect(g, vox, 'cranial', cType, cranialParts, Math.max(4, Math.round(0.01 * fg)), (grow) => cranialRegion(rng, shape, cType, grow));
  const facialTypes = FACIAL_DEFECT_TYPES.filter((t) => shape.landmarks[t].length > 0);
  let fType = options.facialDefect ?? rng.pick(facialTypes);
  if (!facialTypes.includes(fType)) fType = 'maxillary'; // asked for a mandibular defect on a skull without mandible
  const facialParts = [PART.face, PART.zygoma, PART.maxilla, PART.mandible];
  const facial = makeDefect(g, vox, 'facial', fType, facialParts, Math.max(2, Math.round(0.003 * fg)), (grow) => facialRegion(rng, shape, fType, grow));

  const ci = cranial.implant, fi = facial.implant;
  const cranialDefective = new Uint8Array(n);
  const facialDefective = new Uint8Array(n);
  for (let q = 0; q < fg; q++) {
    const p = vox.index[q]!;
    cranialDefective[p] = 1 - ci[p]!;
    facialDefective[p] = 1 - fi[p]!;
  }
  return {
    complete,
    cranialDefective,
    cranialImplant: ci,
    facialDefective,
    facialImplant: fi,
    indices: { complete: vox.index, cranialImplant: cranial.indices, facialImplant: facial.indices },
    factors: {
      index,
      seed,
      ...factors,
      warpAmplitude: warpAmp,
      foreground: fg / n,
      cranialDefect: cranial.factors,
      facialDefect: facial.factors,
    },
  };
}
