// The N-API functions take options objects spelled as the TS options and the C++ structs
// (native/napi/options.h): enums as strings, shapes from the tensors, and a bad field named in the error.
import test from 'ava';
import { native } from '../ts/native.js';

test('options objects: enums as strings, shapes from the tensors, bad fields named', async (t) => {
  const nb = native();
  const logits = new nb.Tensor(Float32Array.from([1, -1, 0.5, 2, -1, 1, 0, -2]), [1, 2, 2, 2, 1]);
  const labels = new nb.Tensor(Float32Array.from([0, 1, 1, 0]), [1, 4]);
  const sum = await nb.diceLoss(logits, labels, { reduction: 'sum', weight: 2 });
  const mean = await nb.diceLoss(logits, labels, { reduction: 'mean', weight: 2, wantGrad: false });
  t.is(mean.grad, null);
  t.true(Math.abs(sum.loss / 2 - mean.loss) < 1e-12, 'sum over the 2 classes = 2 x mean');
  t.throws(() => nb.diceLoss(logits, labels, { reduction: 'avg' as never }), { code: 'EINVAL', message: /diceLoss options\.reduction must be one of 'mean', 'sum', got 'avg'/ });
  t.throws(() => nb.diceLoss(logits, labels, { reduction: 'sum', smoothNr: 'x' as never }), { code: 'EINVAL', message: /diceLoss options\.smoothNr must be a number/ });
  t.throws(() => nb.diceLoss(logits, labels, 'sum' as never), { code: 'EINVAL', message: /diceLoss options must be an options object/ });
  t.throws(() => nb.elementLoss(logits, logits, { kind: 'huber' as never, reduction: 'mean' }), { code: 'EINVAL', message: /elementLoss options\.kind/ });

  const mu = new nb.Tensor(Float32Array.from([0.5, -1, 1.5, 0.25]), [2, 2, 1, 1, 1]);
  const lv = new nb.Tensor(Float32Array.from([-1, 0.5, 0, -0.25]), [2, 2]);
  const m = nb.reparameterize(mu, lv, { latent: 'mean', seed: 1, step: 0 });
  t.deepEqual(m.z.shape, [2, 2]);
  t.deepEqual(Array.from(m.z.toArray()), [0.5, -1, 1.5, 0.25]);
  const s = nb.reparameterize(mu, lv, { latent: 'mean+std', seed: 1, step: 0 });
  t.true(Math.abs(s.z.toArray()[0]! - (0.5 + Math.exp(-0.5))) < 1e-6);
  t.throws(() => nb.reparameterize(mu, lv, { latent: 1 as never, seed: 1, step: 0 }), { code: 'EINVAL', message: /reparameterize options\.latent must be one of 'sample', 'mean', 'mean\+std'/ });
  const kl = nb.klNormal(mu, lv, { reduction: 'sum' });
  t.is(kl.perSample.length, 2);
  const back = nb.reparameterizeBackward(m.z, m.eps, lv, { dmu: kl.dmu });
  const z = m.z.toArray(), given = kl.dmu.toArray();
  t.deepEqual(Array.from(back.dmu.toArray()), Array.from(given, (g, i) => Math.fround(g + z[i]!)), 'dmu = given + dz');
});

test('Adam.step takes { lr, betas, eps, weightDecay, kind, gradScale }', async (t) => {
  const nb = native();
  const net = new nb.Net('input c=2 d=1 h=1 w=1\nflatten in=0\nlinear in=1 out=1 bias=1\noutput 2\n');
  const x = new nb.Tensor(Float32Array.from([1, 2]), [1, 2, 1, 1, 1]);
  const [y] = await net.forward(x, 1, true);
  await net.backward([new nb.Tensor(Float32Array.from([1]), [1, 1, 1, 1, 1])], false);
  const grads = net.getGrads();
  const adam = new nb.Adam(net);
  await adam.step({ lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, kind: 'adamw', weightDecay: 0.01, gradScale: 0.5 });
  t.is(adam.stepCount, 1);
  t.deepEqual(Array.from(net.getGrads()), Array.from(grads, (g) => Math.fround(g * 0.5)), 'the scaled gradient is left behind');
  t.throws(() => adam.step({ lr: 0.1, betas: [0.9] as never, eps: 1e-8 }), { code: 'EINVAL', message: /Adam\.step options\.betas must be two numbers/ });
  t.throws(() => adam.step({ lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, kind: 'sgd' as never }), { code: 'EINVAL', message: /Adam\.step options\.kind must be one of 'adam', 'adamw'/ });
  y!.dispose();
  net.dispose();
});

test('Tensor.readInto copies exactly and finds the first non-finite value in the same pass', (t) => {
  const nb = native();
  const n = 3 * 4096 + 17;  // chunks of 4096 and a tail
  const src = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 1e3);
  const ten = new nb.Tensor(src, [n]);
  const dst = new Float32Array(n);
  t.is(ten.readInto(dst, true), -1);
  t.deepEqual(dst, src);
  for (const [i, v] of [[0, NaN], [4095, Infinity], [4096 * 2 + 5, -Infinity], [n - 1, NaN]] as const) {
    const bad = src.slice();
    bad[i] = v;
    bad[n - 1] = i === n - 1 ? v : NaN;  // a later non-finite value never hides the first
    const tb = new nb.Tensor(bad, [n], false);
    t.is(tb.readInto(dst, true), i, `first non-finite at ${i}`);
    t.is(tb.readInto(dst), -1, 'no check: -1');
    t.deepEqual(dst, bad, 'copied whatever it holds');
    tb.dispose();
  }
  t.throws(() => ten.readInto(new Float32Array(n - 1)), { code: 'ESHAPE' });
  t.throws(() => ten.readInto(new Float64Array(n) as never), { code: 'EINVAL' });
  ten.dispose();
  t.throws(() => ten.readInto(dst), { code: 'EDISPOSED' });
});
