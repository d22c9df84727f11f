// A worker thread for bench/wasm.ts's machine check: it loads the single-threaded WebAssembly decoder and,
// while the main thread asks for it, decodes in a loop, so that the main thread can time its own
// single-threaded decode with a second one running beside it. Two independent decodes at once are what
// two threads of the threaded build could at best achieve on this machine at that moment (a VM whose
// second vCPU is short of time shows it here first).
//
// Control words (Int32Array over the SharedArrayBuffer `flag`):
//   [0] 1 = run (decode in a loop), 0 = idle; [1] counts loop starts; [2] 1 = exit; [3] 1 = idle (not decoding).
import { parentPort } from 'node:worker_threads';
import { loadModel, loadRuntime } from '../ts/web/index.js';

interface Init {
  checkpoint: Uint8Array;
  z: Float32Array;
  flag: SharedArrayBuffer;
}

parentPort!.once('message', async (init: Init) => {
  const rt = await loadRuntime({ simd: true, threads: 1 });
  const m = await loadModel(init.checkpoint, { runtime: rt, name: 'neighbor' });
  const f = new Int32Array(init.flag);
  for (let i = 0; i < 3; i++) m.decodeSync(init.z, { output: 'logits' });
  Atomics.store(f, 3, 1);
  parentPort!.postMessage('ready');
  for (;;) {
    Atomics.wait(f, 0, 0);
    if (Atomics.load(f, 2)) break;
    Atomics.store(f, 3, 0);
    Atomics.add(f, 1, 1);
    Atomics.notify(f, 1);
    while (Atomics.load(f, 0) === 1) m.decodeSync(init.z, { output: 'logits' });
    Atomics.store(f, 3, 1);
    Atomics.notify(f, 3);
  }
  m.dispose();
  parentPort!.postMessage('exited');
});
