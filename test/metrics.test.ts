// Metrics: Dice by hand, the exact EDT against brute force and scipy, HD/HD95/ASSD/bDSC against
// MedPy-convention fixtures (scripts/fixtures/make_metric_fixtures.py: scipy re-implementation of
// medpy.metric.binary and the AutoImplant organizers' bdc), Mardia and Gaussian KL against numpy/scipy,
// active units and KL on constructed data, and MIG on a constructed disentangled latent.

import test from 'ava';
import type { ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { VoxvaeError } from '../ts/errors.js';
import {
  activeUnits,
  boundaryDice,
  chiSquaredCdf,
  chiSquaredSf,
  dice,
  dicePerClass,
  distanceTransform,
  gaussianKl,
  hausdorffDistance,
  hausdorffDistance95,
  latentStatistics,
  mardiaTest,
  mutualInformationGap,
  normalCdf,
  normalSf,
  percentileLinear,
  Rng,
  surfaceDistanceMetrics,
  surfaceDistances,
  type MaskVolume,
  type Shape3,
  type Spacing3,
} from '../ts/metrics/index.js';

const FIXTURES = new URL('./fixtures/metrics/', import.meta.url);
function fixture<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as T;
}

/** numpy.packbits (MSB first) + base64 → 0/1 bytes. */
function unpack(b64: string, n: number): Uint8Array {
  const bytes = Buffer.from(b64, 'base64');
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (bytes[i >> 3]! >> (7 - (i & 7))) & 1;
  return out;
}

function vol(data: number[] | Uint8Array, shape: Shape3, spacing?: Spacing3): MaskVolume {
  const v: MaskVolume = { data: data instanceof Uint8Array ? data : Uint8Array.from(data), shape };
  if (spacing !== undefined) v.spacing = spacing;
  return v;
}

function close(t: ExecutionContext, actual: number, expected: number, what: string, rel = 1e-9): void {
  const ok = actual === expected || Math.abs(actual - expected) <= rel * Math.max(1e-300, Math.abs(expected));
  t.true(ok, `${what}: got ${actual}, expected ${expected}`);
}

function codeOf(fn: () => unknown): { code: string; path: string | undefined } {
  try {
    fn();
  } catch (e) {
    if (e instanceof VoxvaeError) return { code: e.code, path: e.path };
    throw e;
  }
  throw new Error('did not throw');
}

// ---------------------------------------------------------------------------------------------------
// Dice

test('dice by hand, probabilities, empty convention', (t) => {
  const shape: Shape3 = [1, 1, 4];
  // |A| = 3, |B| = 3, |A ∩ B| = 2 → 2·2/6
  close(t, dice(vol([1, 1, 1, 0], shape), vol([0, 1, 1, 1], shape)), 2 / 3, 'dice');
  // non-zero bytes count as 1
  close(t, dice(vol([7, 255, 1, 0], shape), vol([0, 1, 1, 1], shape)), 2 / 3, 'labels as mask');
  // probabilities thresholded at ≥ 0.5: [0.7, 0.5, 0.49, 0] → [1, 1, 0, 0]; vs [1, 0, 0, 0]: 2·1/(2+1)
  const p = { data: Float32Array.from([0.7, 0.5, 0.49, 0]), shape };
  close(t, dice(p, vol([1, 0, 0, 0], shape)), 2 / 3, 'probabilities');
  t.is(dice(vol([0, 0, 0, 0], shape), vol([0, 0, 0, 0], shape)), 1);
  t.is(dice(vol([0, 0, 0, 0], shape), vol([0, 0, 0, 0], shape), { empty: 0 }), 0);
  t.is(dice(vol([1, 0, 0, 0], shape), vol([0, 0, 0, 0], shape)), 0);
  t.deepEqual(codeOf(() => dice({ data: Float32Array.from([0.7, NaN, 0, 0]), shape }, vol([1, 0, 0, 0], shape))), { code: 'ENOTFINITE', path: 'a.data' });
  t.deepEqual(codeOf(() => dice(vol([1, 0, 0, 0], shape), vol([1, 0, 0], [1, 1, 3]))), { code: 'ESHAPE', path: 'b.shape' });
  t.deepEqual(codeOf(() => dice(vol([1, 0, 0], shape), vol([1, 0, 0, 0], shape))), { code: 'ESHAPE', path: 'a.data' });
  t.deepEqual(codeOf(() => dice(vol([1], [1, 1, 1]), vol([1], [1, 1, 1]), { empty: 2 })), { code: 'EINVAL', path: 'options.empty' });
});

test('dice per class by hand', (t) => {
  const shape: Shape3 = [1, 2, 3];
  const a = { data: Uint8Array.from([0, 1, 1, 2, 2, 2]), shape };
  const b = { data: Uint8Array.from([0, 1, 2, 2, 0, 0]), shape };
  const r = dicePerClass(a, b);
  // class 1: A at 1, 2; B at 1 → 2·1/3;  class 2: A at 3, 4, 5; B at 2, 3 → 2·1/5
  t.deepEqual(r.map((x) => x.label), [1, 2]);
  close(t, r[0]!.dice, 2 / 3, 'class 1');
  close(t, r[1]!.dice, 2 / 5, 'class 2');
  const s = dicePerClass(a, b, [2, 3]);
  t.deepEqual(s.map((x) => [x.label, x.dice]), [[2, 0.4], [3, 1]]);
});

// ---------------------------------------------------------------------------------------------------
// Exact EDT

function bruteForce(features: Uint8Array, shape: Shape3, spacing: Spacing3): Float64Array {
  const [D, H, W] = shape;
  const pts: [number, number, number][] = [];
  for (let d = 0; d < D; d++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) if (features[(d * H + h) * W + w]) pts.push([d, h, w]);
  const out = new Float64Array(D * H * W);
  for (let d = 0; d < D; d++) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        let best = Infinity;
        for (const [pd, ph, pw] of pts) {
          const x = ((d - pd) * spacing[0]) ** 2 + ((h - ph) * spacing[1]) ** 2 + ((w - pw) * spacing[2]) ** 2;
          if (x < best) best = x;
        }
        out[(d * H + h) * W + w] = Math.sqrt(best);
      }
    }
  }
  return out;
}

test('EDT equals brute force (anisotropic, odd shapes, sparse and dense features)', (t) => {
  const rng = new Rng(5);
  const cases: [Shape3, Spacing3, number][] = [
    [[5, 6, 7], [1, 1, 1], 0.05],
    [[6, 5, 8], [2.5, 0.7, 1.3], 0.03],
    [[1, 1, 13], [1, 1, 0.4], 0.15],
    [[9, 1, 4], [0.3, 5, 2], 0.1],
    [[4, 7, 3], [1.1, 1.7, 0.9], 0.6],
    [[7, 7, 7], [1, 2, 3], 0.003],
  ];
  for (const [shape, spacing, density] of cases) {
    const n = shape[0] * shape[1] * shape[2];
    const f = new Uint8Array(n);
    for (let i = 0; i < n; i++) f[i] = rng.uniform() < density ? 1 : 0;
    f[rng.below(n)] = 1;
    const got = distanceTransform(f, shape, spacing);
    const want = bruteForce(f, shape, spacing);
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
    t.true(worst < 1e-9, `shape ${shape} spacing ${spacing}: max error ${worst}`);
  }
  t.true(distanceTransform(new Uint8Array(8), [2, 2, 2]).every((x) => x === Infinity), 'no feature → Infinity');
});

test('EDT equals scipy distance_transform_edt', (t) => {
  const fx = fixture<{ shape: Shape3; spacing: Spacing3; features: string; distances: number[] }>('edt.json');
  const n = fx.shape[0] * fx.shape[1] * fx.shape[2];
  const got = distanceTransform(unpack(fx.features, n), fx.shape, fx.spacing);
  fx.distances.forEach((d, i) => {
    if (Math.abs(got[i]! - d) > 1e-9) t.fail(`voxel ${i}: ${got[i]} vs scipy ${d}`);
  });
  t.pass();
});

// ---------------------------------------------------------------------------------------------------
// Surface distances, HD, HD95

interface SurfaceCase {
  name: string;
  shape: Shape3;
  spacing: Spacing3;
  a: string;
  b: string;
  countA: number;
  countB: number;
  dice: number;
  hd: number;
  hd95: number;
  hd95MaxOfDirected: number;
  assd: number;
  surfaceCountA: number;
  surfaceCountB: number;
  aToB: number[];
}

test('HD, HD95, ASSD and directed distances match the MedPy convention (scipy fixtures)', (t) => {
  const { cases } = fixture<{ cases: SurfaceCase[] }>('surface.json');
  t.true(cases.length >= 4);
  t.true(cases.filter((c) => Math.abs(c.hd95 - c.hd95MaxOfDirected) > 1e-6).length >= 3, 'fixtures distinguish the union p95 from the max of directed p95s');
  for (const c of cases) {
    const n = c.shape[0] * c.shape[1] * c.shape[2];
    const a = vol(unpack(c.a, n), c.shape);
    const b = vol(unpack(c.b, n), c.shape);
    t.is((a.data as Uint8Array).reduce((s, x) => s + x, 0), c.countA, `${c.name}: decoding`);
    close(t, dice(a, b), c.dice, `${c.name}: dice`);
    const m = surfaceDistanceMetrics(a, b, { spacing: c.spacing });
    t.is(m.aToB.length, c.surfaceCountA, `${c.name}: surface voxels of a`);
    t.is(m.bToA.length, c.surfaceCountB, `${c.name}: surface voxels of b`);
    close(t, m.hd, c.hd, `${c.name}: hd`);
    close(t, m.hd95, c.hd95, `${c.name}: hd95`);
    close(t, m.assd, c.assd, `${c.name}: assd`);
    c.aToB.forEach((d, i) => {
      if (Math.abs(m.aToB[i]! - d) > 1e-9) t.fail(`${c.name}: aToB[${i}] ${m.aToB[i]} vs ${d}`);
    });
    // spacing taken from the volumes when not passed
    const withSpacing = { ...a, spacing: c.spacing };
    close(t, hausdorffDistance95(withSpacing, { ...b, spacing: c.spacing }), c.hd95, `${c.name}: hd95 via volume spacing`);
    close(t, hausdorffDistance(b, a, { spacing: c.spacing }), c.hd, `${c.name}: symmetric`);
  }
});

test('HD by hand; HD95 is the percentile of the union, not the max of two percentiles', (t) => {
  // one voxel each on a line, spacing 2 mm along W: |4 − 1|·2 = 6 mm
  const shape: Shape3 = [1, 1, 10];
  const a = vol([0, 1, 0, 0, 0, 0, 0, 0, 0, 0], shape);
  const b = vol([0, 0, 0, 0, 1, 0, 0, 0, 0, 0], shape);
  t.is(hausdorffDistance(a, b, { spacing: [1, 1, 2] }), 6);
  t.is(hausdorffDistance95(a, b, { spacing: [1, 1, 2] }), 6);
  // A line of voxels is all surface (erosion with border 0 leaves nothing of a 1-voxel-thick object).
  // a = w 0…3 and 13, b = w 0…3: sd(a→b) = [0, 0, 0, 0, 10], sd(b→a) = [0, 0, 0, 0].
  // MedPy hd95 = percentile 95 of the union [0 ×8, 10]: index 0.95·8 = 7.6 → 0 + 0.6·10 = 6
  // (numpy gives 5.9999999999999964 through its lerp). The max of the two directed 95th percentiles
  // would be 8 (index 3.8 of [0, 0, 0, 0, 10]); their mean 4.
  const line: Shape3 = [1, 1, 16];
  const la = new Uint8Array(16);
  const lb = new Uint8Array(16);
  for (const w of [0, 1, 2, 3, 13]) la[w] = 1;
  for (const w of [0, 1, 2, 3]) lb[w] = 1;
  const m = surfaceDistanceMetrics(vol(la, line), vol(lb, line));
  t.deepEqual(Array.from(m.aToB), [0, 0, 0, 0, 10]);
  t.deepEqual(Array.from(m.bToA), [0, 0, 0, 0]);
  t.is(m.hd95, 5.9999999999999964); // numpy.percentile([0]*8 + [10], 95), bit for bit
  t.is(m.hd, 10);
  close(t, m.assd, (10 / 5 + 0) / 2, 'assd');
  // numpy linear percentile by hand: [1, 2, 3, 4, 10] at 95 → index 3.8 → 4 + 0.8·6 = 8.8
  t.is(percentileLinear([10, 1, 3, 2, 4], 95), 8.799999999999999); // numpy: index 3.8 → 4 + 0.8·6
  close(t, percentileLinear([1, 2], 50), 1.5, 'median');
});

test('surface extraction uses the 6-neighbourhood with a zero border', (t) => {
  // a full 3×3×3 cube: only the centre survives erosion → 26 surface voxels
  const cube = vol(new Uint8Array(27).fill(1), [3, 3, 3]);
  t.is(surfaceDistances(cube, cube).length, 26);
  // 5×5×5 cube inside 7×7×7: 125 − 27 interior = 98 surface voxels, all at distance 0 to themselves
  const big = new Uint8Array(343);
  for (let d = 1; d < 6; d++) for (let h = 1; h < 6; h++) for (let w = 1; w < 6; w++) big[(d * 7 + h) * 7 + w] = 1;
  const s = surfaceDistances(vol(big, [7, 7, 7]), vol(big, [7, 7, 7]));
  t.is(s.length, 98);
  t.true(s.every((x) => x === 0));
});

test('empty masks: 0 for both empty, Infinity for one, or EINVAL on request; never NaN', (t) => {
  const shape: Shape3 = [2, 2, 2];
  const e = vol(new Uint8Array(8), shape);
  const one = vol([1, 0, 0, 0, 0, 0, 0, 0], shape);
  t.is(hausdorffDistance(e, e), 0);
  t.is(hausdorffDistance95(e, e), 0);
  t.is(hausdorffDistance(one, e), Infinity);
  t.is(hausdorffDistance95(e, one), Infinity);
  t.is(surfaceDistanceMetrics(one, e).assd, Infinity);
  t.deepEqual(Array.from(surfaceDistances(one, e)), [Infinity]);
  t.deepEqual(codeOf(() => hausdorffDistance(one, e, { onEmpty: 'throw' })), { code: 'EINVAL', path: 'b' });
  t.deepEqual(codeOf(() => hausdorffDistance(one, one, { onEmpty: 'raise' as 'throw' })), { code: 'EINVAL', path: 'options.onEmpty' });
  t.deepEqual(codeOf(() => hausdorffDistance({ ...one, spacing: [1, 1, 1] }, { ...one, spacing: [1, 1, 2] })), { code: 'EINVAL', path: 'b.spacing' });
  t.deepEqual(codeOf(() => hausdorffDistance(one, one, { spacing: [1, 0, 1] })), { code: 'EINVAL', path: 'options.spacing' });
});

// ---------------------------------------------------------------------------------------------------
// Boundary Dice

interface BdscCase {
  name: string;
  shape: Shape3;
  spacing: Spacing3;
  distance: number;
  a: string;
  b: string;
  skull: string;
  bdsc: number;
  dice: number;
}

test('bDSC matches the organizers’ bdc (scipy fixture)', (t) => {
  const { cases } = fixture<{ cases: BdscCase[] }>('bdsc.json');
  for (const c of cases) {
    const n = c.shape[0] * c.shape[1] * c.shape[2];
    const a = vol(unpack(c.a, n), c.shape);
    const b = vol(unpack(c.b, n), c.shape);
    const skull = vol(unpack(c.skull, n), c.shape);
    close(t, boundaryDice(a, b, skull, { spacing: c.spacing, distance: c.distance }), c.bdsc, c.name);
    close(t, dice(a, b), c.dice, `${c.name}: dice`);
  }
  // default distance is 10 mm
  const c = cases.find((x) => x.distance === 10)!;
  const n = c.shape[0] * c.shape[1] * c.shape[2];
  close(t, boundaryDice(vol(unpack(c.a, n), c.shape, c.spacing), vol(unpack(c.b, n), c.shape, c.spacing), vol(unpack(c.skull, n), c.shape, c.spacing)), c.bdsc, 'default distance');
});

test('bDSC by hand and its empty convention', (t) => {
  // line of 8 voxels, 1 mm; skull at w = 0; band distance 3 keeps w ≤ 3
  const shape: Shape3 = [1, 1, 8];
  const skull = vol([1, 0, 0, 0, 0, 0, 0, 0], shape);
  const a = vol([0, 1, 1, 1, 1, 1, 0, 0], shape); // in band: w 1, 2, 3
  const b = vol([0, 0, 1, 1, 1, 1, 1, 1], shape); // in band: w 2, 3
  close(t, boundaryDice(a, b, skull, { distance: 3 }), (2 * 2) / (3 + 2), 'band');
  // no implant voxel within 0.5 mm of the skull → empty vs empty
  t.is(boundaryDice(a, b, skull, { distance: 0.5 }), 1);
  t.is(boundaryDice(a, b, skull, { distance: 0.5, empty: 0 }), 0);
  t.is(boundaryDice(a, b, vol(new Uint8Array(8), shape)), 1);
  t.deepEqual(codeOf(() => boundaryDice(a, b, skull, { distance: -1 })), { code: 'EINVAL', path: 'options.distance' });
  t.deepEqual(codeOf(() => boundaryDice(a, b, vol([1, 0], [1, 1, 2]))), { code: 'ESHAPE', path: 'defectiveSkull.shape' });
});

// ---------------------------------------------------------------------------------------------------
// Latent statistics

interface LatentFixture {
  cases: {
    name: string;
    x: number[][];
    mardia: Record<string, number>;
    klFull: number;
    klDiagonal: number;
  }[];
  chi2: { x: number; df: number; cdf: number; sf: number }[];
  normal: { z: number; cdf: number; sf: number }[];
}

test('χ² and normal distribution functions match scipy.stats', (t) => {
  const fx = fixture<LatentFixture>('latent.json');
  for (const p of fx.chi2) {
    close(t, chiSquaredCdf(p.x, p.df), p.cdf, `chi2.cdf(${p.x}, ${p.df})`, 1e-10);
    close(t, chiSquaredSf(p.x, p.df), p.sf, `chi2.sf(${p.x}, ${p.df})`, 1e-9);
  }
  for (const p of fx.normal) {
    close(t, normalCdf(p.z), p.cdf, `norm.cdf(${p.z})`, 1e-11);
    close(t, normalSf(p.z), p.sf, `norm.sf(${p.z})`, 1e-11);
  }
});

test('Mardia’s test and Gaussian KL match numpy/scipy', (t) => {
  const fx = fixture<LatentFixture>('latent.json');
  for (const c of fx.cases) {
    const r = mardiaTest(c.x) as unknown as Record<string, number>;
    for (const key of ['skewness', 'kurtosis', 'skewnessStatistic', 'skewnessDf', 'skewnessPValue', 'kurtosisStatistic', 'kurtosisPValue']) {
      close(t, r[key]!, c.mardia[key]!, `${c.name}: ${key}`, 1e-9);
    }
    close(t, gaussianKl(c.x), c.klFull, `${c.name}: KL full`);
    close(t, gaussianKl(c.x, { covariance: 'diagonal' }), c.klDiagonal, `${c.name}: KL diagonal`);
    const flat = { data: Float64Array.from(c.x.flat()), shape: [c.x.length, c.x[0]!.length] as const };
    const s = latentStatistics(flat, { mardia: true });
    close(t, s.klFull, c.klFull, `${c.name}: latentStatistics KL`);
    close(t, s.mardia!.skewnessPValue, c.mardia['skewnessPValue']!, `${c.name}: latentStatistics Mardia`);
  }
  t.deepEqual(codeOf(() => mardiaTest([[1, 2], [2, 4], [3, 6], [4, 8]])), { code: 'EINVAL', path: 'x' });
});

test('active units and Gaussian KL on constructed data', (t) => {
  // columns: ±1 (Var = 4/3 with ddof 1), constant, ±0.05 around 0.05 (Var = 4·0.0025/3 = 0.0033), ±0.15 (Var 0.03)
  const mu = [
    [-1, 0.5, 0, 0],
    [1, 0.5, 0.1, 0.3],
    [-1, 0.5, 0, 0],
    [1, 0.5, 0.1, 0.3],
  ];
  const au = activeUnits(mu);
  t.deepEqual(au.active, [true, false, false, true]);
  t.is(au.count, 2);
  close(t, au.variance[0]!, 4 / 3, 'Var col 0');
  close(t, au.variance[3]!, 0.03, 'Var col 3');
  // rows ±a on each axis, a = √1.5: mean 0, covariance I (ddof 1: 2a²/3 = 1) → KL 0
  const a = Math.sqrt(1.5);
  const iso = [[a, 0], [-a, 0], [0, a], [0, -a]];
  close(t, 1 + gaussianKl(iso), 1, 'KL of N(0, I)', 1e-14);
  // ×2 and shift col 0 by +1: Σ = 4I, m = (1, 0): ½(8 + 1 − 2 − ln 16) = 3.5 − 2 ln 2
  const shifted = iso.map(([x, y]) => [2 * x! + 1, 2 * y!]);
  close(t, gaussianKl(shifted), 3.5 - 2 * Math.LN2, 'KL full');
  close(t, gaussianKl(shifted, { covariance: 'diagonal' }), 3.5 - 2 * Math.LN2, 'KL diagonal');
  // a constant column: singular Σ → +∞, not NaN
  const s = latentStatistics(mu);
  t.is(s.klFull, Infinity);
  t.is(s.klDiagonal, Infinity);
  // aggregate posterior: σ = 1 everywhere adds 1 to each variance: Σ = 5I → ½(10 + 1 − 2 − 2 ln 5)
  const agg = latentStatistics(shifted, { sigma: shifted.map(() => [1, 1]) });
  close(t, agg.aggregateKlFull!, 0.5 * (11 - 2 - 2 * Math.log(5)), 'aggregate KL');
  t.deepEqual(agg.sigmaMean, [1, 1]);
  const lv = latentStatistics(shifted, { logvar: shifted.map(() => [0, 0]) });
  t.is(lv.aggregateKlFull, agg.aggregateKlFull);
  t.deepEqual(codeOf(() => latentStatistics([[1, 2], [3]])), { code: 'ESHAPE', path: 'mu[1]' });
  t.deepEqual(codeOf(() => latentStatistics([[1, NaN], [3, 4]])), { code: 'ENOTFINITE', path: 'mu[0][1]' });
  t.deepEqual(codeOf(() => latentStatistics(mu, { ddof: 2 })), { code: 'EINVAL', path: 'options.ddof' });
  t.deepEqual(codeOf(() => latentStatistics(mu, { sigma: mu, logvar: mu })), { code: 'EINVAL', path: 'options.logvar' });
});

// ---------------------------------------------------------------------------------------------------
// MIG

function migData(n: number, shuffleLatent0: boolean, seed: number): { mu: number[][]; sigma: number[][]; factors: number[][] } {
  const rng = new Rng(seed);
  const mu: number[][] = [];
  const sigma: number[][] = [];
  const factors: number[][] = [];
  for (let i = 0; i < n; i++) {
    const v0 = i % 6; // 6 balanced values
    const v1 = rng.below(4);
    factors.push([v0, v1]);
    // latent 0 copies factor 0, latent 1 copies factor 1, latents 2–3 are noise
    mu.push([v0, v1, rng.normal(), rng.normal()]);
    sigma.push([0.05, 0.05, 0.5, 0.5]);
  }
  if (shuffleLatent0) {
    for (let i = n - 1; i > 0; i--) {
      const j = rng.below(i + 1);
      const tmp = mu[i]![0]!;
      mu[i]![0] = mu[j]![0]!;
      mu[j]![0] = tmp;
    }
  }
  return { mu, sigma, factors };
}

test('MIG: a latent copying a factor scores near 1; a shuffled copy near 0', (t) => {
  const clean = mutualInformationGap(migData(240, false, 1), { seed: 3 });
  const f0 = clean.factors[0]!;
  t.is(f0.best, 0);
  t.is(f0.values, 6);
  close(t, f0.entropy, Math.log(6), 'H(v0) of a balanced factor');
  t.true(f0.normalized[0]! > 0.95, `I(z0; v0)/H(v0) = ${f0.normalized[0]}`);
  t.true(f0.gap > 0.85, `gap ${f0.gap}`);
  t.is(clean.factors[1]!.best, 1);
  t.true(clean.mig > 0.85, `MIG ${clean.mig}`);

  const shuffled = mutualInformationGap(migData(240, true, 1), { seed: 3 });
  t.true(shuffled.factors[0]!.gap < 0.2, `shuffled gap ${shuffled.factors[0]!.gap}`);
  t.true(f0.gap > shuffled.factors[0]!.gap + 0.6);

  // seeded: same seed → same numbers; the logvar route equals the sigma route
  const d = migData(120, false, 2);
  const r1 = mutualInformationGap(d, { seed: 9, samplesPerPoint: 3 });
  const r2 = mutualInformationGap(d, { seed: 9, samplesPerPoint: 3 });
  t.deepEqual(r1, r2);
  const lv = mutualInformationGap({ mu: d.mu, logvar: d.sigma.map((r) => r.map((s) => 2 * Math.log(s))), factors: d.factors }, { seed: 9, samplesPerPoint: 3 });
  close(t, lv.mig, r1.mig, 'logvar vs sigma', 1e-12);
  // log-cardinality normalisation equals the entropy one on a balanced factor
  const lc = mutualInformationGap(migData(240, false, 1), { seed: 3, normalization: 'log-cardinality' });
  close(t, lc.factors[0]!.gap, f0.gap, 'balanced factor', 1e-12);
});

test('MIG: continuous factors are binned (20 equal-width bins); subsampling to nSamples', (t) => {
  const rng = new Rng(4);
  const n = 200;
  const mu: number[][] = [];
  const factors: number[][] = [];
  for (let i = 0; i < n; i++) {
    const v = rng.uniform();
    factors.push([v]);
    mu.push([v, rng.normal(), rng.normal()]);
  }
  const sigma = mu.map(() => [0.002, 0.5, 0.5]);
  const r = mutualInformationGap({ mu, sigma, factors }, { nSamples: 150 });
  const f = r.factors[0]!;
  t.is(f.kind, 'continuous');
  t.true(f.values <= 20 && f.values >= 15, `bins used: ${f.values}`);
  t.is(f.best, 0);
  t.true(f.gap > 0.7, `gap ${f.gap}`);
  const five = mutualInformationGap({ mu, sigma, factors }, { bins: 5 });
  t.is(five.factors[0]!.values, 5);
});

test('MIG input validation', (t) => {
  const d = migData(30, false, 1);
  t.deepEqual(codeOf(() => mutualInformationGap({ mu: d.mu, factors: d.factors })), { code: 'EINVAL', path: 'input.sigma' });
  t.deepEqual(codeOf(() => mutualInformationGap({ mu: d.mu.map((r) => [r[0]!]), sigma: d.sigma.map((r) => [r[0]!]), factors: d.factors })), { code: 'EINVAL', path: 'input.mu' });
  t.deepEqual(codeOf(() => mutualInformationGap({ ...d, factors: d.factors.map((r) => [r[0]!, 7]) })), { code: 'EINVAL', path: 'input.factors[:, 1]' });
  t.deepEqual(codeOf(() => mutualInformationGap({ ...d, factors: d.factors.slice(1) })), { code: 'EINVAL', path: 'input.factors' });
  t.deepEqual(codeOf(() => mutualInformationGap(d, { bins: 0 })), { code: 'EINVAL', path: 'options.bins' });
  t.deepEqual(codeOf(() => mutualInformationGap(d, { factorKinds: ['discrete'] })), { code: 'EINVAL', path: 'options.factorKinds' });
  t.deepEqual(codeOf(() => mutualInformationGap({ ...d, sigma: d.sigma.map((r) => [0, ...r.slice(1)]) })), { code: 'EINVAL', path: 'input.sigma' });
});
