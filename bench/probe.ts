// Times chosen conv layers alone at several thread counts, to see what limits a layer:
//
//   node --import tsx bench/probe.ts --model half --layer dec5,enc1 --threads 1,2 [--batch 4] [--reps 3]
//
// Prints per layer and thread count: forward, backward-data (backward with dx minus without) and
// backward-weight times and GFLOP/s, and the speed-up over the first thread count.
// --loop N times the forward alone N times (a steady process for `perf record -p PID`).
import { native } from '../ts/native.js';
import { timeLayer } from './layer.js';
import { cliModel, cliOption as opt, convLayers, layerFlops, MODELS } from './models.js';

const model = cliModel();
const all = convLayers(MODELS[model]);
const names = opt('layer', all.map((l) => l.name).join(',')).split(',');
const threads = opt('threads', '1,2').split(',').map(Number);
const batch = Number(opt('batch', '4'));
const reps = Number(opt('reps', '3'));
const loop = Number(opt('loop', '0'));

const nb = native();
for (const name of names) {
  const l = all.find((x) => x.name === name);
  if (!l) throw new Error(`${model} has no layer ${name} (${all.map((x) => x.name).join(', ')})`);
  const f = layerFlops(l, batch);
  const base: Record<string, number> = {};
  for (const t of threads) {
    nb.setNumThreads(t);
    if (loop > 0) {
      console.log(`pid ${process.pid}: ${name} forward ${loop}x, ${t} thread(s)`);
      const { timing } = await timeLayer(l, batch, 1, loop, true);
      console.log(`  median ${(timing.fwd.medianS * 1e3).toFixed(1)} ms, ${(f.fwd / timing.fwd.medianS / 1e9).toFixed(1)} GFLOP/s`);
      continue;
    }
    const { timing } = await timeLayer(l, batch, 1, reps);
    const fwd = timing.fwd.medianS, dw = timing.bwd_w.medianS, dx = timing.dx?.medianS ?? NaN;
    const g = (flops: number, s: number): string => (Number.isFinite(s) && s > 0 ? (flops / s / 1e9).toFixed(1) : '-');
    const sp = (k: string, s: number): string => (t === threads[0] ? '' : ` (×${(base[k]! / s).toFixed(2)})`);
    if (t === threads[0]) Object.assign(base, { fwd, dw, dx });
    console.log(
      `${model} ${name} ${l.kind} ${l.cin}->${l.cout} in ${l.in.join('x')} batch ${batch}, ${t} thread(s): ` +
        `fwd ${(fwd * 1e3).toFixed(1)} ms ${g(f.fwd, fwd)} GF/s${sp('fwd', fwd)}; ` +
        `dX ${(dx * 1e3).toFixed(1)} ms ${g(f.dx, dx)} GF/s${sp('dx', dx)}; ` +
        `dW ${(dw * 1e3).toFixed(1)} ms ${g(f.dw, dw)} GF/s${sp('dw', dw)}`,
    );
  }
}
