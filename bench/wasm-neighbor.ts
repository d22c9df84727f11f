// A worker thread for bench/wasm.ts's machine check. It loads the single-threaded WebAssembly decoder and,
// each time the main thread asks, runs one decode that starts together with one on the main thread. Two
// independent single-thread decodes at once are what two threads of the threaded build could at best
// achieve on this machine at that moment: a VM whose second vCPU is short of time slows one of them.
//
// Control words (Int32Array over `flag`): [0] bumped by the main thread for each decode it asks for;
// [1] bumped here when that decode starts; [2] bumped here when it is done; [3] 1 = exit. The decode's
// time (ms) goes to Float64Array(`times`)[0]; NaN if it failed.
import { parentPort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { loadModel, loadRuntime } from '../ts/web/index.js';

interface Init {
  checkpoint: Uint8Array;
  z: Float32Array;
  flag: SharedArrayBuffer;
  times: SharedArrayBuffer;
}

parentPort!.once('message', async (init: Init) => {
  const rt = await loadRuntime({ simd: true, threads: 1 });
  const m = await loadModel(init.checkpoint, { runtime: rt, name: 'neighbor' });
  const f = new Int32Array(init.flag);
  const times = new Float64Array(init.times);
  const out = new Float32Array(m.outputSize);  // into a reused array, like the main thread's 1-thread decode
  for (let i = 0; i < 3; i++) m.decodeSync(init.z, { into: out });
  parentPort!.postMessage('ready');
  for (let asked = 0; ; ) {
    Atomics.wait(f, 0, asked);
    if (Atomics.load(f, 3)) break;
    asked = Atomics.load(f, 0);
    Atomics.add(f, 1, 1);
    Atomics.notify(f, 1);
    const t0 = performance.now();
    try {
      m.decodeSync(init.z, { into: out });
      times[0] = performance.now() - t0;
    } catch {
      times[0] = NaN;  // the main thread, blocked in Atomics.wait, learns of it from the time
    }
    Atomics.add(f, 2, 1);
    Atomics.notify(f, 2);
  }
  m.dispose();
});
