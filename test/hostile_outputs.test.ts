// Issue 17, findings 5 and 9: voxvae/web refuses output (and input) arrays that view the module's own
// memory (EINVAL; the runtime keeps working), and finite but huge latents that make the decoder overflow
// are ENOTFINITE, native and WASM — never NaN probabilities returned silently.
import test from 'ava';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monaiVarAutoEncoder } from '../ts/config.js';
import { VoxvaeError } from '../ts/errors.js';
import { Vae } from '../ts/vae.js';
import { loadModel, loadRuntime, type WasmRuntime } from '../ts/web/index.js';

const SHAPE: [number, number, number] = [8, 8, 8];
const CFG = monaiVarAutoEncoder({ inputShape: SHAPE, channels: [4, 8], latentSize: 4, norm: 'batch' });
let tmp = '';
let file = '';
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'voxvae-hostile-out-'));
  const vae = await Vae.create(CFG, { seed: 9 });
  file = path.join(tmp, 'm.safetensors');
  await vae.save(file);
  vae.dispose();
});
test.after.always(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

for (const threads of [1, 2]) {
  test(`finding 5: decode/complete with into (or z) inside the module's memory is EINVAL, and the runtime keeps working (threads ${threads})`, async (t) => {
    let rt: WasmRuntime;
    try {
      rt = await loadRuntime({ threads });
    } catch (e) {
      if (threads > 1 && (e as VoxvaeError).code === 'EUNSUPPORTED') return t.pass('no threaded build here');
      throw e;
    }
    const model = await loadModel(new Uint8Array(await readFile(file)), { runtime: rt });
    const z = Float32Array.from({ length: 4 }, (_, i) => i * 0.25 - 0.5);
    const ref = await model.decode(z);
    const before = Buffer.from(new Uint8Array(rt.memory.buffer).slice());
    for (const offset of [0, 1 << 16]) {
      const into = new Float32Array(rt.memory.buffer, offset, ref.length);
      const err = await t.throwsAsync(model.decode(z, { into }), { instanceOf: VoxvaeError });
      t.is((err as VoxvaeError).code, 'EINVAL', err!.message);
      t.regex(err!.message, /options\.into must not be a view of the WebAssembly module's own memory/);
      const zin = new Float32Array(rt.memory.buffer, offset, 4);
      t.is(((await t.throwsAsync(model.decode(zin), { instanceOf: VoxvaeError })) as VoxvaeError).code, 'EINVAL');
      const mask = new Uint8Array(rt.memory.buffer, offset, 8 ** 3);
      t.is(((await t.throwsAsync(model.decode(z, { output: 'mask', into: mask }), { instanceOf: VoxvaeError })) as VoxvaeError).code, 'EINVAL');
    }
    t.true(Buffer.from(new Uint8Array(rt.memory.buffer).subarray(0, before.length)).equals(before), 'the refused calls wrote into module memory');
    t.deepEqual(await model.decode(z), ref);
    const mine = new Float32Array(ref.length);
    t.is(await model.decode(z, { into: mine }), mine);
    t.deepEqual(mine, ref);
    model.dispose();
  });
}

test('finding 9: finite but huge latents are ENOTFINITE from decode, native and WASM (never NaN probabilities)', async (t) => {
  const vae = await Vae.load(file);
  const rt = await loadRuntime({ threads: 1 });
  const model = await loadModel(new Uint8Array(await readFile(file)), { runtime: rt });
  const z = new Float32Array(4).fill(3e38);
  for (const output of ['probabilities', 'logits', 'mask'] as const) {
    const e1 = await t.throwsAsync(vae.decode(z, { output }), { instanceOf: VoxvaeError });
    t.is((e1 as VoxvaeError).code, 'ENOTFINITE', `native ${output}: ${e1?.message}`);
    const e2 = await t.throwsAsync(model.decode(z, { output }), { instanceOf: VoxvaeError });
    t.is((e2 as VoxvaeError).code, 'ENOTFINITE', `wasm ${output}: ${e2?.message}`);
  }
  // Ordinary latents still decode to finite probabilities in [0, 1], and agree.
  const ok = Float32Array.from([0.1, -0.2, 0.3, 0.05]);
  const a = await vae.decode(ok), b = await model.decode(ok);
  t.true(a.every((v) => v >= 0 && v <= 1) && b.every((v) => v >= 0 && v <= 1));
  // Huge inputs to the encoder: an overflowing μ or log σ² is ENOTFINITE too.
  const x = new Float32Array(8 ** 3).fill(3e38);
  for (const enc of [() => vae.encode(x), () => model.encode(x)]) {
    try {
      const r = await enc();
      t.true(r.mu.every(Number.isFinite) && r.logvar.every(Number.isFinite), 'encode returned non-finite values');
    } catch (e) {
      t.is((e as VoxvaeError).code, 'ENOTFINITE', (e as Error).message);
    }
  }
  vae.dispose();
  model.dispose();
});
