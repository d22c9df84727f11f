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
