// Issue 17, finding 7: a network whose parameters cannot fit in WebAssembly's 4 GiB memory is ENOMEM
// before the module is asked to build it — no abort (EINTERNAL), no leaked heap, no grown memory — and
// the runtime keeps working.
import test from 'ava';
import { monaiVarAutoEncoder } from '../ts/config.js';
import { VoxvaeError } from '../ts/errors.js';
import { buildDecoder, buildEncoder } from '../ts/model/build.js';
import { WasmNet } from '../ts/wasm/net.js';
import { loadRuntime } from '../ts/web/index.js';

test('finding 7: a > 4 GiB parameter config is ENOMEM, leaks nothing and does not grow memory; the runtime still works', async (t) => {
  const rt = await loadRuntime({ threads: 1 });
  const huge = monaiVarAutoEncoder({ inputShape: [128, 128, 128], channels: [16, 32], strides: [2, 2], latentSize: 2048 });
  const small = monaiVarAutoEncoder({ inputShape: [8, 8, 8], channels: [4, 8], latentSize: 4 });
  const warm = new WasmNet(rt, buildDecoder(small));
  warm.dispose();
  const mem0 = rt.memoryBytes, heap0 = rt.heapBytes;
  for (let i = 0; i < 20; i++) {
    for (const g of [buildDecoder(huge), buildEncoder(huge)]) {
      const err = t.throws(() => new WasmNet(rt, g), { instanceOf: VoxvaeError });
      t.is((err as VoxvaeError).code, 'ENOMEM', err!.message);
      t.regex(err!.message, /more than WebAssembly's 4 GiB memory/);
    }
  }
  t.is(rt.memoryBytes, mem0, 'linear memory grew');
  t.is(rt.heapBytes, heap0, 'heap leaked');
  const net = new WasmNet(rt, buildDecoder(small));
  t.false(net.disposed);
  net.dispose();
});
