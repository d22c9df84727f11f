// Shared by bench/worker.ts and bench/probe.ts: timing helpers, random inputs, and one conv layer timed
// alone as a one-layer native Net (built through `native().Net`, no extra native code).
import { native, type NativeNet, type NativeTensor } from '../ts/native.js';
import type { LayerDef } from './models.js';

export interface Timing {
  medianS: number;
  minS: number;
  meanS: number;
  samples: number;
  /** benny's relative margin of error, % (model cases only). */
  rme?: number;
  sampleResults: number[];
}

export interface LayerTiming {
  name: string;
  fwd: Timing;
  /** Backward with dx (absent for a layer whose input needs no gradient). */
  bwd?: Timing;
  /** Backward without dx: dw and db only. */
  bwd_w: Timing;
  /** Backward-data alone: per round (backward with dx) - (backward without dx). */
  dx?: Timing;
}

export function timingOf(ts: number[]): Timing {
  const s = [...ts].sort((a, c) => a - c);
  const mid = s.length >> 1;
  return {
    medianS: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2,
    minS: s[0]!,
    meanS: ts.reduce((a, v) => a + v, 0) / ts.length,
    samples: ts.length,
    sampleResults: ts,
  };
}

/** xorshift32 stream: reproducible and fast enough for 8M voxels. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

export function randomBinary(n: number, seed: number): Float32Array {
  const r = xorshift(seed), x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = r() & 1;
  return x;
}

/** Uniform in [-1, 1). */
export function randomUniform(n: number, seed: number): Float32Array {
  const r = xorshift(seed), x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = r() / 2147483648 - 1;
  return x;
}

/** The one-layer network spec of a model's conv layer (kernel 3, stride 2, MONAI padding, bias). */
export function layerSpec(l: LayerDef): string {
  const conv = l.kind === 'conv' ? `conv3d in=0 cout=${l.cout} k=3 s=2 p=1 bias=1` : `conv_transpose3d in=0 cout=${l.cout} k=3 s=2 p=1 op=1 bias=1`;
  return [`input c=${l.cin} d=${l.in[0]} h=${l.in[1]} w=${l.in[2]}`, conv, 'output 1'].join('\n');
}

/**
 * Times one conv layer alone at batch n: forward; backward without dx (dw, db); backward with dx (when the
 * layer needs it); `warmup` untimed rounds, then `reps` timed ones; the timings are per call.
 * Uses the kernels' current thread count (native().setNumThreads). forwardOnly: time the forward alone.
 */
export async function timeLayer(l: LayerDef, n: number, warmup: number, reps: number, forwardOnly = false): Promise<{ timing: LayerTiming; nativeFlops: number }> {
  const nb = native();
  const net: NativeNet = new nb.Net(layerSpec(l));
  const inVox = l.in[0] * l.in[1] * l.in[2], outVox = l.out[0] * l.out[1] * l.out[2];
  const x = new nb.Tensor(randomUniform(n * l.cin * inVox, 3), [n, l.cin, ...l.in]);
  const dy = new nb.Tensor(randomUniform(n * l.cout * outVox, 5), [n, l.cout, ...l.out]);
  try {
    net.initParams(1);
    const fwd = async (): Promise<number> => {
      const t0 = performance.now();
      const outs = await net.forward(x, n, true);
      const t = performance.now() - t0;
      for (const o of outs) o.dispose();
      return t / 1e3;
    };
    const bwd = (withDx: boolean) => async (): Promise<number> => {
      for (const o of await net.forward(x, n, true)) o.dispose();
      const t0 = performance.now();
      const g: NativeTensor | null = await net.backward([dy], withDx);
      const t = performance.now() - t0;
      g?.dispose();
      return t / 1e3;
    };
    // Interleaved: each round runs forward, backward without dx, backward with dx, so that dX (the
    // difference of the last two) is a median of paired differences, robust to drifting machine load.
    for (let i = 0; i < warmup; i++) {
      await fwd();
      if (!forwardOnly) await bwd(false)();
      if (!forwardOnly && l.needDx) await bwd(true)();
    }
    const tf: number[] = [], tw: number[] = [], tb: number[] = [];
    for (let i = 0; i < reps; i++) {
      tf.push(await fwd());
      if (forwardOnly) continue;
      tw.push(await bwd(false)());
      if (l.needDx) tb.push(await bwd(true)());
    }
    if (forwardOnly) return { timing: { name: l.name, fwd: timingOf(tf), bwd_w: timingOf([NaN]) }, nativeFlops: net.flops };
    const timing: LayerTiming = { name: l.name, fwd: timingOf(tf), bwd_w: timingOf(tw) };
    if (l.needDx) {
      timing.bwd = timingOf(tb);
      timing.dx = timingOf(tb.map((t, i) => t - tw[i]!));
    }
    return { timing, nativeFlops: net.flops };
  } finally {
    x.dispose();
    dy.dispose();
    net.dispose();
  }
}
