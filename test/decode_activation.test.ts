// decode()'s probabilities come from the native output activation (native/core output_activation_forward,
// threaded): they equal the JavaScript reference `activate` applied to the logits (within float rounding).
import test from 'ava';
import { monaiVarAutoEncoder } from '../ts/config.js';
import { native } from '../ts/native.js';
import { Decoder } from '../ts/vae.js';
import { activate } from './helpers.js';

function latents(n: number, l: number, seed: number): Float32Array {
  const z = new Float32Array(n * l);
  for (let i = 0; i < z.length; i++) z[i] = Math.sin(seed * 7.1 + i * 1.3) * 2;
  return z;
}

for (const [act, outChannels] of [['softmax', 2], ['softmax', 3], ['sigmoid', 1], ['sigmoid', 2], ['none', 2]] as const) {
  test(`decode: native ${act} over ${outChannels} channel(s) equals the JS activation of the logits`, async (t) => {
    const cfg = monaiVarAutoEncoder({ inputShape: [16, 8, 8], channels: [4, 8], latentSize: 5, outChannels, outputActivation: act });
    const dec = new Decoder(cfg, { seed: 3 });
    t.teardown(() => dec.dispose());
    const z = latents(3, 5, outChannels);
    const logits = await dec.decode(z, { output: 'logits' });
    const probs = await dec.decode(z);
    const expect = activate(Float32Array.from(logits, (v) => v), 3, cfg);
    t.is(probs.length, expect.length);
    let worst = 0;
    for (let i = 0; i < probs.length; i++) worst = Math.max(worst, Math.abs(probs[i]! - expect[i]!));
    t.true(worst <= 1e-6, `max |native - js| = ${worst}`);
    if (act === 'none') t.deepEqual(probs, logits);
  });
}

test('activate: saturating logits, in place, and bad arguments', async (t) => {
  const nb = native();
  const x = new Float32Array([-90, -3, 0, 3, 90, 40, 1e-3, -1e-3]);
  for (const [act, shape] of [['softmax', [2, 2, 2]], ['sigmoid', [1, 1, 8]], ['softmax', [1, 4, 2]]] as const) {
    const tensor = new nb.Tensor(x, [...shape]);
    const out = await nb.activate(tensor, act);
    t.is(out, tensor);
    const cfg = { outputActivation: act, outChannels: shape[1] } as Parameters<typeof activate>[2];
    const expect = activate(Float32Array.from(x), shape[0], cfg);
    const got = tensor.toArray();
    for (let i = 0; i < x.length; i++) t.true(Math.abs(got[i]! - expect[i]!) <= 1e-6, `${act} ${i}: ${got[i]} vs ${expect[i]}`);
    tensor.dispose();
  }
  const tensor = new nb.Tensor(x, [8]);
  t.throws(() => nb.activate(tensor, 'relu' as never), { code: 'EINVAL', message: /activation must be/ });
  await t.throwsAsync(async () => nb.activate(tensor, 'softmax'), { code: 'ESHAPE' });
  tensor.dispose();
  t.throws(() => nb.activate(tensor, 'softmax'), { code: 'EDISPOSED' });
});

test('activateInto: the in-place activation written into an array, the tensor unchanged, the first non-finite value found', async (t) => {
  const nb = native();
  const n = 3, c = 2, spatial = 70000;  // several chunks of the parallel check
  const x = Float32Array.from({ length: n * c * spatial }, (_, i) => Math.sin(i * 0.37) * 30);
  for (const act of ['softmax', 'sigmoid', 'none'] as const) {
    const src = new nb.Tensor(x, [n, c, spatial]);
    const dst = new Float32Array(x.length);
    t.is(await nb.activateInto(src, act, dst), -1);
    t.deepEqual(src.toArray(), x, 'the tensor is unchanged');
    const inPlace = new nb.Tensor(x, [n, c, spatial]);
    await nb.activate(inPlace, act);
    t.deepEqual(dst, inPlace.toArray(), `${act}: the same bits as activate in place`);
    src.dispose();
    inPlace.dispose();
  }
  // Non-finite logits give non-finite outputs: the first one's index (not a later one's).
  for (const i of [5, 65536 * 2 + 3, x.length - 1]) {
    const bad = x.slice();
    bad[i] = NaN;
    bad[x.length - 1] = NaN;
    const ten = new nb.Tensor(bad, [n, c, spatial], false);
    const dst = new Float32Array(x.length);
    const first = await nb.activateInto(ten, 'none', dst);
    t.is(first, i);
    // softmax spreads a NaN logit to its voxel's other channel: the first of the two.
    const sm = await nb.activateInto(ten, 'softmax', dst);
    const vox = i % spatial, sample = Math.floor(i / (c * spatial));
    t.is(sm, Math.min(i, sample * c * spatial + vox));
    ten.dispose();
  }
  const ten = new nb.Tensor(x, [n, c, spatial]);
  t.throws(() => nb.activateInto(ten, 'softmax', new Float32Array(5)), { code: 'ESHAPE' });
  t.throws(() => nb.activateInto(ten, 'softmax', [] as never), { code: 'EINVAL' });
  t.throws(() => nb.activateInto(ten, 'relu' as never, new Float32Array(x.length)), { code: 'EINVAL' });
  ten.dispose();
  t.throws(() => nb.activateInto(ten, 'softmax', new Float32Array(x.length)), { code: 'EDISPOSED' });
});
