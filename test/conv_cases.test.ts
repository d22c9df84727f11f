// The one table of convolution cases (test/conv_cases.json):
// - the C++ header the native and CUDA tests compile (test/native/conv_case_table.h) is generated from it
//   and must be in sync;
// - every row, as a conv3d and as a conv_transpose3d, runs through the WebAssembly modules (a one-node
//   network through native/wasm/exports.cpp's vx_net_* entry points, the ones voxvae/web runs models
//   with), on the SIMD, scalar and threaded builds: forward output and input gradient against a plain
//   double-precision reference (test/conv_cases.ts). Error measure and tolerance are the native tests'
//   (conv_cases.h, CHECK_SCALED): |wasm − reference| / (sum of |terms| behind the element) ≤ 1e-5.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { loadRuntime, type WasmRuntime } from '../ts/wasm/runtime.js';
import { CASES_HEADER, geometry, inSize, loadConvCases, maxScaledErr, outSize, referenceConv, renderHeader, weightSize, type ConvCase, type ConvGeometry } from './conv_cases.js';

const TOL = 1e-5;
const CASES = loadConvCases();

test('test/native/conv_case_table.h is generated from test/conv_cases.json (node --import tsx test/conv_cases.ts --write)', (t) => {
  t.is(readFileSync(CASES_HEADER, 'utf8'), renderHeader(CASES));
});

test('the conv case table: unique names, every row valid as a conv3d and as a conv_transpose3d', (t) => {
  t.is(new Set(CASES.map((c) => c.name)).size, CASES.length);
  for (const c of CASES)
    for (const transposed of [false, true]) {
      const g = geometry(c, transposed);
      t.true(g.out.every((d) => d >= 1), `${c.name} ${transposed ? 'conv_transpose3d' : 'conv3d'}: output ${g.out.join('×')}`);
      if (transposed) t.true(c.op.every((o, a) => o < c.s[a]!), `${c.name}: output_padding must be below the stride`);
    }
});

/** Deterministic values in [-1, 1) that are exact in float32 (xorshift), so both sides see the same inputs. */
function values(n: number, seed: number): Float64Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    v[i] = Math.fround((s / 4294967296) * 2 - 1);
  }
  return v;
}
const abs = (v: Float64Array): Float64Array => v.map(Math.abs);

function spec(c: ConvCase, g: ConvGeometry): string {
  const [d, h, w] = c.in;
  const node = g.transposed
    ? `conv_transpose3d in=0 cout=${c.cout} k=${c.k.join(',')} s=${c.s.join(',')} p=${c.p.join(',')} op=${c.op.join(',')} bias=1`
    : `conv3d in=0 cout=${c.cout} k=${c.k.join(',')} s=${c.s.join(',')} p=${c.p.join(',')} bias=1`;
  return `input c=${c.cin} d=${d} h=${h} w=${w}\n${node}\noutput 1`;
}

/** One conv as a one-node network in the module: eval forward of x, then the input gradient for dy. */
function runWasm(rt: WasmRuntime, c: ConvCase, g: ConvGeometry, x: Float64Array, w: Float64Array, b: Float64Array, dy: Float64Array): { y: Float32Array; dx: Float32Array } {
  const ex = rt.exports;
  const where = `wasm ${c.name}`;
  const text = rt.string(spec(c, g), where);
  let net = 0;
  try {
    net = rt.withAlloc(4, where, (out) => {
      rt.check(ex.vx_net_create(text.ptr, text.len, out), where);
      return rt.i32(out, 1)[0]! >>> 0;
    });
  } finally {
    rt.free(text.ptr);
  }
  try {
    // Parameters: the conv's weight (PyTorch layout), then its bias, as the parameter table places them.
    if (ex.vx_net_num_params(net) !== w.length + b.length) throw new Error(`${where}: ${ex.vx_net_num_params(net)} parameters, expected ${w.length} + ${b.length}`);
    const shape = rt.withAlloc(11 * 4, where, (out) => {
      rt.check(ex.vx_net_entry(net, 0, out), where);
      return Array.from(rt.i32(out, 11));
    });
    const wantShape = g.transposed ? [c.cin, c.cout, ...c.k] : [c.cout, c.cin, ...c.k];
    if (shape[1] !== 0 || shape[3] !== 0 || shape.slice(6, 6 + shape[5]!).join() !== wantShape.join())
      throw new Error(`${where}: weight entry ${shape.join()}, expected role 0 at offset 0 with shape ${wantShape.join()}`);
    const params = rt.f32(rt.ptr(ex.vx_net_params(net), where), w.length + b.length);
    params.set(w);
    params.set(b, w.length);
    rt.f32(rt.ptr(ex.vx_net_input(net, c.n), where), x.length).set(x);
    rt.check(ex.vx_net_forward(net, c.n), where);
    rt.checkWorkers(where);
    const y = rt.f32(rt.ptr(ex.vx_net_output(net, 0), where), outSize(g)).slice();
    const dx = rt.withAlloc((dy.length + x.length) * 4, where, (p) => {
      rt.f32(p, dy.length).set(dy);
      rt.check(ex.vx_net_backward_input(net, p, p + dy.length * 4), where);
      rt.checkWorkers(where);
      return rt.f32(p + dy.length * 4, x.length).slice();
    });
    return { y, dx };
  } finally {
    ex.vx_net_destroy(net);
  }
}

const BUILDS = [
  { name: 'simd', opts: { simd: true, threads: 1 } },
  { name: 'scalar', opts: { simd: false, threads: 1 } },
  { name: 'simd-mt (2 threads)', opts: { simd: true, threads: 2 } },
] as const;

for (const build of BUILDS) {
  test.serial(`WebAssembly ${build.name}: every conv case, conv3d and conv_transpose3d, forward and input gradient match the double reference`, async (t) => {
    const rt = await loadRuntime(build.opts);
    if (build.opts.threads > 1) t.is(rt.threads, 2, `threaded build: ${rt.threadsUnavailable}`);
    let worst = 0, checked = 0;
    for (const c of CASES)
      for (const transposed of [false, true]) {
        const g = geometry(c, transposed);
        const what = `${c.name} ${transposed ? 'conv_transpose3d' : 'conv3d'}`;
        const x = values(inSize(g), 11), w = values(weightSize(g), 12), b = values(c.cout, 13), dy = values(outSize(g), 14);
        const ref = referenceConv(g, x, w, b, dy);
        const scale = referenceConv(g, abs(x), abs(w), abs(b), abs(dy));
        const got = runWasm(rt, c, g, x, w, b, dy);
        const ey = maxScaledErr(got.y, ref.y, scale.y), edx = maxScaledErr(got.dx, ref.dx, scale.dx);
        t.true(ey <= TOL, `${build.name} ${what}: y max err / sum|terms| ${ey.toExponential(2)} > ${TOL}`);
        t.true(edx <= TOL, `${build.name} ${what}: dx max err / sum|terms| ${edx.toExponential(2)} > ${TOL}`);
        worst = Math.max(worst, ey, edx);
        checked++;
      }
    t.is(checked, 2 * CASES.length);
    t.log(`${build.name}: ${checked} convolutions (${CASES.length} rows × 2), worst error / sum|terms| ${worst.toExponential(2)}`);
  });
}
