// Every op of the engine against single-op PyTorch fixtures (test/fixtures/torch/ops.safetensors):
// layer ops run as one-node networks through the addon, losses through the loss functions.
// Gradients are those of L = sum(y * r) for a random r, i.e. backward with dy = r.
import test from 'ava';
import { native, type NativeTensor } from '../ts/native.js';
import type { SafeTensors } from '../ts/safetensors.js';
import { assertClose, f32, loadFixture } from './helpers.js';

interface Case {
  name: string;
  op: string;
  attrs: Record<string, unknown>;
}

const shapeOf = (st: SafeTensors, name: string): number[] => st.tensors.get(name)!.shape;
const TOL = 1e-5;

function layerSpec(c: Case, xs: number[]): string {
  const [, ch, d, h, w] = xs.length === 5 ? xs : [xs[0], xs[1], 1, 1, 1];
  const a = c.attrs as Record<string, number[] & number & boolean>;
  const input = `input c=${ch} d=${d} h=${h} w=${w}`;
  const node = ((): string => {
    switch (c.op) {
      case 'conv3d': return `conv3d in=0 cout=${a.cout} k=${a.kernel.join(',')} s=${a.stride.join(',')} p=${a.padding.join(',')} bias=1`;
      case 'conv_transpose3d': return `conv_transpose3d in=0 cout=${a.cout} k=${a.kernel.join(',')} s=${a.stride.join(',')} p=${a.padding.join(',')} op=${a.output_padding.join(',')} bias=1`;
      case 'linear': return `linear in=0 out=${a.out} bias=1`;
      case 'batch_norm3d': return `batch_norm3d in=0 eps=${a.eps} momentum=0.1 affine=1`;
      case 'instance_norm3d': return `instance_norm3d in=0 eps=${a.eps} affine=${a.affine ? 1 : 0}`;
      case 'prelu': return `prelu in=0 n=${a.num_parameters}`;
      case 'leaky_relu': return `leaky_relu in=0 slope=${a.slope}`;
      default: return `${c.op} in=0`;
    }
  })();
  return `${input}\n${node}\noutput 1`;
}

const LOSS_OPS = new Set(['dice', 'bce_with_logits', 'mse', 'l1', 'kl_normal']);

test('single ops match PyTorch: forward, backward and parameter gradients', async (t) => {
  const st = await loadFixture('ops.safetensors');
  const cases = JSON.parse(st.metadata.cases!) as Case[];
  const nb = native();
  let checked = 0;
  for (const c of cases.filter((c) => !LOSS_OPS.has(c.op))) {
    const p = (s: string) => `${c.name}.${s}`;
    const xs = shapeOf(st, p('x'));
    const net = new nb.Net(layerSpec(c, xs));
    // Parameters in the engine's layout order: weight, then bias; buffers: running_mean, running_var.
    const params: number[] = [];
    for (const k of ['weight', 'bias']) if (st.tensors.has(p(k))) params.push(...f32(st, p(k)));
    t.is(net.numParams, params.length, `${c.name}: parameter count`);
    net.setParams(Float32Array.from(params));
    if (c.op === 'batch_norm3d') net.setBuffers(Float32Array.from([...f32(st, p('running_mean')), ...f32(st, p('running_var'))]));
    const train = c.op === 'batch_norm3d' ? c.attrs.training === true : true;
    const x = new nb.Tensor(f32(st, p('x')), xs);
    const [y] = await net.forward(x, xs[0]!, train);
    assertClose(t, y!.toArray(), f32(st, p('y')), TOL, `${c.name}: y`);
    const r = new nb.Tensor(f32(st, p('r')), shapeOf(st, p('r')));
    const dx = await net.backward([r], true);
    assertClose(t, dx!.toArray(), f32(st, p('dx')), TOL, `${c.name}: dx`);
    const g = net.getGrads();
    let off = 0;
    for (const k of ['weight', 'bias']) {
      if (!st.tensors.has(p(`d${k}`))) continue;
      const ref = f32(st, p(`d${k}`));
      assertClose(t, g.subarray(off, off + ref.length), ref, TOL, `${c.name}: d${k}`);
      off += ref.length;
    }
    if (c.op === 'batch_norm3d' && train) {
      const b = net.getBuffers();
      const C = f32(st, p('running_mean')).length;
      assertClose(t, b.subarray(0, C), f32(st, p('running_mean_after')), TOL, `${c.name}: running_mean`);
      assertClose(t, b.subarray(C), f32(st, p('running_var_after')), TOL, `${c.name}: running_var (unbiased update)`);
      t.deepEqual(Array.from(net.getCounters()), [1]);
    }
    for (const tt of [x, r, y, dx]) (tt as NativeTensor).dispose();
    net.dispose();
    checked++;
  }
  t.is(checked, 15);
});

test('losses match PyTorch/MONAI: value and gradient', async (t) => {
  const st = await loadFixture('ops.safetensors');
  const cases = JSON.parse(st.metadata.cases!) as Case[];
  const nb = native();
  for (const c of cases.filter((c) => LOSS_OPS.has(c.op))) {
    const p = (s: string) => `${c.name}.${s}`;
    const red = c.attrs.reduction as 'sum' | 'mean';
    if (c.op === 'dice') {
      const shape = shapeOf(st, p('logits'));
      const [n] = shape as [number];
      const S = shape.slice(2).reduce((a, b) => a * b, 1);
      const logits = new nb.Tensor(f32(st, p('logits')), shape), labels = new nb.Tensor(f32(st, p('labels')), [n, S]);
      const { loss, grad } = await nb.diceLoss(logits, labels, { smoothNr: 1e-5, smoothDr: 1e-5, reduction: red, weight: 1 });
      assertClose(t, [loss], f32(st, p('loss')), TOL, `${c.name}: loss`);
      assertClose(t, grad!.toArray(), f32(st, p('dlogits')), TOL, `${c.name}: dlogits`);
      // Into a caller's tensor (what trainStep reuses every step): that tensor, the same bits.
      const out = new nb.Tensor(new Float32Array(logits.length).fill(7), shape);
      const again = await nb.diceLoss(logits, labels, { smoothNr: 1e-5, smoothDr: 1e-5, reduction: red, weight: 1, gradOut: out });
      t.is(again.grad, out);
      t.deepEqual(out.toArray(), grad!.toArray());
      t.is(again.loss, loss);
      t.throws(() => nb.diceLoss(logits, labels, { smoothNr: 1e-5, smoothDr: 1e-5, reduction: red, weight: 1, gradOut: logits }), { code: 'EINVAL', message: /gradOut/ });
      t.throws(() => out.set!(new Float32Array(3)), { code: 'ESHAPE' });
      out.set!(f32(st, p('logits')));  // refilled in place
      t.deepEqual(out.toArray(), logits.toArray());
    } else if (c.op === 'kl_normal') {
      const shape = shapeOf(st, p('mu')) as [number, number];
      const mu = new nb.Tensor(f32(st, p('mu')), shape), lv = new nb.Tensor(f32(st, p('logvar')), shape);
      const r = nb.klNormal(mu, lv, { reduction: red, weight: 1 });
      assertClose(t, [r.loss], f32(st, p('loss')), TOL, `${c.name}: loss`);
      assertClose(t, r.perSample, f32(st, p('per_sample')), TOL, `${c.name}: per-sample KL`);
      assertClose(t, r.dmu.toArray(), f32(st, p('dmu')), TOL, `${c.name}: dmu`);
      assertClose(t, r.dlogvar.toArray(), f32(st, p('dlogvar')), TOL, `${c.name}: dlogvar`);
    } else {
      const kind = c.op === 'bce_with_logits' ? 'bce' : (c.op as 'mse' | 'l1');
      const shape = shapeOf(st, p('x'));
      const x = new nb.Tensor(f32(st, p('x')), shape), tt = new nb.Tensor(f32(st, p('t')), shape);
      const { loss, grad } = await nb.elementLoss(x, tt, { kind, reduction: red, weight: 1 });
      assertClose(t, [loss], f32(st, p('loss')), TOL, `${c.name}: loss`);
      assertClose(t, grad!.toArray(), f32(st, p('dx')), TOL, `${c.name}: dx`);
      const out = new nb.Tensor(null, shape);
      const again = await nb.elementLoss(x, tt, { kind, reduction: red, weight: 1, gradOut: out });
      t.is(again.grad, out);
      t.deepEqual(out.toArray(), grad!.toArray());
    }
  }
});
