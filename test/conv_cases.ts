// The one table of convolution cases (test/conv_cases.json): its loader, the C++ header generated from it
// for the native and CUDA tests (test/native/conv_case_table.h), and a plain double-precision reference
// of both convolutions for the WebAssembly tests (test/conv_cases.test.ts).
//
//   node --import tsx test/conv_cases.ts --write    regenerate test/native/conv_case_table.h
//   node --import tsx test/conv_cases.ts --check    exit 1 if it is out of date
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CASES_JSON = path.join(ROOT, 'test', 'conv_cases.json');
export const CASES_HEADER = path.join(ROOT, 'test', 'native', 'conv_case_table.h');

type Triple = [number, number, number];

/** One row: read as a conv3d (op ignored) and as a conv_transpose3d of the same fields. */
export interface ConvCase {
  name: string;
  n: number;
  cin: number;
  cout: number;
  /** Input [D, H, W]. */
  in: Triple;
  /** Kernel, stride, padding, output padding (conv_transpose3d only), per axis [D, H, W]. */
  k: Triple;
  s: Triple;
  p: Triple;
  op: Triple;
  /** Cheap enough for finite differences. */
  small: boolean;
}

const isTriple = (v: unknown, min: number): v is Triple =>
  Array.isArray(v) && v.length === 3 && v.every((x) => Number.isInteger(x) && (x as number) >= min);

/** The rows of test/conv_cases.json, each checked for well-formed fields (throws naming the row). */
export function loadConvCases(file = CASES_JSON): ConvCase[] {
  const doc = JSON.parse(readFileSync(file, 'utf8')) as { cases?: unknown };
  if (!Array.isArray(doc.cases) || doc.cases.length === 0) throw new Error(`${file}: no "cases" array`);
  const names = new Set<string>();
  return doc.cases.map((r: Record<string, unknown>, i: number) => {
    const where = `${file}: case ${i} (${String(r.name)})`;
    if (typeof r.name !== 'string' || !/^[A-Za-z0-9_]+$/.test(r.name)) throw new Error(`${where}: name must be [A-Za-z0-9_]+`);
    if (names.has(r.name)) throw new Error(`${where}: duplicate name`);
    names.add(r.name);
    for (const f of ['n', 'cin', 'cout'] as const)
      if (!Number.isInteger(r[f]) || (r[f] as number) < 1) throw new Error(`${where}: ${f} must be an integer >= 1`);
    for (const [f, min] of [['in', 1], ['k', 1], ['s', 1], ['p', 0], ['op', 0]] as const)
      if (!isTriple(r[f], min)) throw new Error(`${where}: ${f} must be 3 integers >= ${min}`);
    if (typeof r.small !== 'boolean') throw new Error(`${where}: small must be true or false`);
    const known = new Set(['name', 'n', 'cin', 'cout', 'in', 'k', 's', 'p', 'op', 'small']);
    for (const key of Object.keys(r)) if (!known.has(key)) throw new Error(`${where}: unknown field ${key}`);
    return r as unknown as ConvCase;
  });
}

/** The C++ header for the native and CUDA tests: struct ConvCase and conv_cases(), one row per case. */
export function renderHeader(cases: ConvCase[]): string {
  const row = (c: ConvCase): string => {
    const nums = [c.n, c.cin, c.cout, ...c.in, ...c.k, ...c.s, ...c.p, ...c.op].map((v) => String(v).padStart(3)).join(',');
    return `    {${`"${c.name}",`.padEnd(28)}${nums}, ${c.small ? 'true' : 'false'}},`;
  };
  const labels = ['n', 'ci', 'co', 'id', 'ih', 'iw', 'kd', 'kh', 'kw', 'sd', 'sh', 'sw', 'pd', 'ph', 'pw', 'opd', 'oph', 'opw'];
  const COLUMNS = `    // ${'name'.padEnd(26)}${labels.map((l) => l.padStart(3)).join(' ')}  small`;
  return `// GENERATED from test/conv_cases.json by \`node --import tsx test/conv_cases.ts --write\`: edit the JSON, not
// this file (test/conv_cases.test.ts fails when the two differ). The one table of convolution cases, read
// by the native tests (conv_cases.h), the CUDA tests (test/cuda) and the WebAssembly tests (the JSON).
// Each row reads both as a conv3d (output_padding ignored) and as a conv_transpose3d of the same fields.
#pragma once
#include <vector>

namespace vxtest {

struct ConvCase {
  const char* name;
  int n, cin, cout;
  int id, ih, iw;
  int kd, kh, kw;
  int sd, sh, sw;
  int pd, ph, pw;
  int opd, oph, opw;  // conv_transpose3d only
  bool small;         // cheap enough for finite differences
};

// clang-format off
inline const std::vector<ConvCase>& conv_cases() {
  static const std::vector<ConvCase> cases = {
${COLUMNS}
${cases.map(row).join('\n')}
  };
  return cases;
}
// clang-format on

}  // namespace vxtest
`;
}

// ---- plain reference (double), the WebAssembly tests' expectation ------------------------------------------

export interface ConvGeometry {
  transposed: boolean;
  n: number;
  cin: number;
  cout: number;
  in: Triple;
  out: Triple;
  k: Triple;
  s: Triple;
  p: Triple;
}

/** The row as a conv3d or a conv_transpose3d, with its output size (PyTorch's formulas). */
export function geometry(c: ConvCase, transposed: boolean): ConvGeometry {
  const out = [0, 1, 2].map((a) =>
    transposed
      ? (c.in[a]! - 1) * c.s[a]! - 2 * c.p[a]! + c.k[a]! + c.op[a]!
      : Math.floor((c.in[a]! + 2 * c.p[a]! - c.k[a]!) / c.s[a]!) + 1,
  ) as Triple;
  return { transposed, n: c.n, cin: c.cin, cout: c.cout, in: c.in, out, k: c.k, s: c.s, p: c.p };
}

export const inSize = (g: ConvGeometry): number => g.n * g.cin * g.in[0] * g.in[1] * g.in[2];
export const outSize = (g: ConvGeometry): number => g.n * g.cout * g.out[0] * g.out[1] * g.out[2];
/** PyTorch's layouts: conv3d [cout, cin, k], conv_transpose3d [cin, cout, k]. */
export const weightSize = (g: ConvGeometry): number => g.cin * g.cout * g.k[0] * g.k[1] * g.k[2];

/**
 * Forward y = conv(x, w) + b and the input gradient dx = (d/dx <y, dy>) in double, by one loop over every
 * (sample, input channel, output channel, tap) that pairs an input voxel with an output voxel. The
 * caller passes |x|, |w|, |b|, |dy| to get the sum of |terms| behind each element (the error scale).
 */
export function referenceConv(g: ConvGeometry, x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number>, dy: ArrayLike<number>): { y: Float64Array; dx: Float64Array } {
  const [ID, IH, IW] = g.in, [OD, OH, OW] = g.out, [KD, KH, KW] = g.k, [SD, SH, SW] = g.s, [PD, PH, PW] = g.p;
  const IS = ID * IH * IW, OS = OD * OH * OW, K = KD * KH * KW;
  const y = new Float64Array(outSize(g)), dx = new Float64Array(inSize(g));
  for (let n = 0; n < g.n; n++)
    for (let co = 0; co < g.cout; co++) y.fill(b[co]!, (n * g.cout + co) * OS, (n * g.cout + co + 1) * OS);
  // conv3d: input i = o * s - p + k; conv_transpose3d: output o = i * s - p + k. Either way, loop over the
  // "small side" positions (conv3d: outputs, convT: inputs) and taps.
  const [AD, AH, AW] = g.transposed ? g.in : g.out;
  const [BD, BH, BW] = g.transposed ? g.out : g.in;
  for (let n = 0; n < g.n; n++)
    for (let ci = 0; ci < g.cin; ci++)
      for (let co = 0; co < g.cout; co++) {
        const wBase = (g.transposed ? ci * g.cout + co : co * g.cin + ci) * K;
        const xBase = (n * g.cin + ci) * IS, yBase = (n * g.cout + co) * OS;
        for (let ad = 0; ad < AD; ad++)
          for (let ah = 0; ah < AH; ah++)
            for (let aw = 0; aw < AW; aw++)
              for (let kd = 0; kd < KD; kd++) {
                const bd = ad * SD - PD + kd;
                if (bd < 0 || bd >= BD) continue;
                for (let kh = 0; kh < KH; kh++) {
                  const bh = ah * SH - PH + kh;
                  if (bh < 0 || bh >= BH) continue;
                  for (let kw = 0; kw < KW; kw++) {
                    const bw = aw * SW - PW + kw;
                    if (bw < 0 || bw >= BW) continue;
                    const a = (ad * AH + ah) * AW + aw, bb = (bd * BH + bh) * BW + bw;
                    const xi = xBase + (g.transposed ? a : bb), yi = yBase + (g.transposed ? bb : a);
                    const wv = w[wBase + (kd * KH + kh) * KW + kw]!;
                    y[yi]! += wv * x[xi]!;
                    dx[xi]! += wv * dy[yi]!;
                  }
                }
              }
      }
  return { y, dx };
}

/**
 * Max over elements of |actual − expected| / scale (scale: the sum of |terms| behind the element, from
 * referenceConv on absolute values), as the native tests' max_scaled_err: an element whose terms are all
 * zero must match exactly, and a NaN anywhere is a failure.
 */
export function maxScaledErr(actual: ArrayLike<number>, expected: ArrayLike<number>, scale: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    const r = d === 0 ? 0 : scale[i]! > 0 ? d / scale[i]! : Infinity;
    if (Number.isNaN(r)) return NaN;
    if (r > worst) worst = r;
  }
  return worst;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const want = renderHeader(loadConvCases());
  let have = '';
  try {
    have = readFileSync(CASES_HEADER, 'utf8');
  } catch {
    /* not written yet */
  }
  if (process.argv.includes('--write')) {
    if (have !== want) writeFileSync(CASES_HEADER, want);
    console.log(`${path.relative(ROOT, CASES_HEADER)}: ${have === want ? 'up to date' : 'written'}`);
  } else if (process.argv.includes('--check')) {
    if (have !== want) {
      console.error(`${path.relative(ROOT, CASES_HEADER)} is out of date: run node --import tsx test/conv_cases.ts --write`);
      process.exit(1);
    }
    console.log(`${path.relative(ROOT, CASES_HEADER)}: up to date`);
  } else {
    console.log('usage: node --import tsx test/conv_cases.ts --write | --check');
  }
}
