// Issue 17, findings 3 and 6: a training step is atomic. A step that fails — a non-finite loss or
// gradient, a β function that throws, EBUSY — leaves the parameters, the optimizer state and the
// BatchNorm running statistics (and counters) bit for bit as they were; save() refuses a model holding
// non-finite values (ENOTFINITE); dispose() during a running step is EBUSY and frees nothing.
import test from 'ava';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monaiVarAutoEncoder } from '../ts/config.js';
import { VoxvaeError } from '../ts/errors.js';
import { Vae } from '../ts/vae.js';

const SHAPE: [number, number, number] = [8, 8, 8];
const CFG = monaiVarAutoEncoder({ inputShape: SHAPE, channels: [4, 8], latentSize: 4, norm: 'batch' });
const X = Float32Array.from({ length: 2 * 8 ** 3 }, (_, i) => ((i * 2654435761) >>> 0) % 7 < 3 ? 1 : 0);
const batch = { input: X, shape: [2, 1, ...SHAPE] as [number, number, number, number, number] };
let tmp = '';
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'voxvae-hostile-step-'));
});
test.after.always(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Everything a step may change, as bytes: weights, BN statistics and counters, Adam state, the step. */
function state(vae: Vae): string {
  const s = vae.checkpointState();
  const parts: string[] = [String(s.step), s.optimizer ? JSON.stringify(s.optimizer) : 'no optimizer'];
  for (const m of [s.encoder, s.decoder]) for (const [k, t] of m) parts.push(k + ':' + Buffer.from(Float64Array.from(t.data as ArrayLike<number>).buffer).toString('base64'));
  for (const a of [s.adam.encoder, s.adam.decoder]) parts.push(a ? `${a.step}:${Buffer.from(a.m.buffer).toString('base64')}:${Buffer.from(a.v.buffer).toString('base64')}` : 'no adam');
  return parts.join('\n');
}

async function trained(): Promise<Vae> {
  const vae = await Vae.create(CFG, { seed: 5 });
  await vae.trainStep(batch, { optimizer: { lr: 1e-3 } });
  return vae;
}

const failures: [string, Parameters<Vae['trainStep']>[1], string][] = [
  ['a non-finite loss (a logit hook returning NaN)', { hooks: { logits: () => ({ loss: NaN, grad: null }) } }, 'ENOTFINITE'],
  ['a non-finite gradient with a finite loss', { hooks: { logits: ({ logits }) => ({ loss: 0, grad: new Float32Array(logits.length).fill(NaN) }) } }, 'ENOTFINITE'],
  ['a β function that throws after the forward pass', { beta: () => { throw new VoxvaeError('EABORT', 'stop'); } }, 'EABORT'],
];

for (const [what, opts, code] of failures) {
  test(`finding 3: a step failing with ${what} changes nothing`, async (t) => {
    const vae = await trained();
    const before = state(vae);
    const err = await t.throwsAsync(vae.trainStep(batch, opts), { instanceOf: VoxvaeError });
    t.is((err as VoxvaeError).code, code, err!.message);
    t.is(state(vae), before, 'parameters, BatchNorm statistics or optimizer state changed');
    // The model still saves, loads and trains.
    const f = path.join(tmp, `after-${code}-${Math.random().toString(36).slice(2)}.safetensors`);
    await vae.save(f);
    (await Vae.load(f)).dispose();
    await vae.trainStep(batch);
    vae.dispose();
  });
}

test('finding 3: the first step failing leaves no optimizer state behind (a checkpoint says none)', async (t) => {
  const vae = await Vae.create(CFG, { seed: 5 });
  const before = state(vae);
  await t.throwsAsync(vae.trainStep(batch, { hooks: { logits: ({ logits }) => ({ loss: 0, grad: new Float32Array(logits.length).fill(Infinity) }) } }), { code: 'ENOTFINITE' } as never);
  t.is(vae.encoder.network.adam, null);
  t.is(vae.decoder.network.adam, null);
  t.is(state(vae), before);
  vae.dispose();
});

test('finding 3: save() refuses non-finite values (ENOTFINITE) and writes nothing', async (t) => {
  const vae = await trained();
  const sd = vae.decoder.network.stateDict();
  const name = [...sd.keys()].find((k) => k.endsWith('running_var'))!;
  const bufs = vae.decoder.network.net.getBuffers();
  bufs[0] = NaN;
  vae.decoder.network.net.setBuffers(bufs);
  const dir = path.join(tmp, 'nan');
  await import('node:fs/promises').then((fs) => fs.mkdir(dir));
  const err = await t.throwsAsync(vae.save(path.join(dir, 'm.safetensors')), { instanceOf: VoxvaeError });
  t.is((err as VoxvaeError).code, 'ENOTFINITE');
  t.regex(err!.message, /running_mean|running_var/);
  t.truthy(name);
  t.deepEqual(await readdir(dir), []);
  vae.dispose();
});

test('finding 3 (control): a step refused with EBUSY because a decode already runs changes nothing, the encoder\'s eval outputs included', async (t) => {
  const vae = await trained();
  const before = state(vae);
  const { mu: mu0 } = await vae.encode(X.subarray(0, 8 ** 3));
  const z = new Float32Array(4 * 64);
  const decoding = vae.decode(z);
  const err = await t.throwsAsync(vae.trainStep(batch), { instanceOf: VoxvaeError });
  t.is((err as VoxvaeError).code, 'EBUSY');
  await decoding;
  t.is(state(vae), before);
  const { mu: mu1 } = await vae.encode(X.subarray(0, 8 ** 3));
  t.deepEqual(mu1, mu0);
  vae.dispose();
});

test('finding 3: a decode or encode while a step runs is EBUSY and the step completes unchanged', async (t) => {
  const a = await trained(), b = await trained();
  const stepping = a.trainStep(batch);
  const err = await t.throwsAsync(a.decode(new Float32Array(4)), { instanceOf: VoxvaeError });
  t.is((err as VoxvaeError).code, 'EBUSY');
  await stepping;
  await b.trainStep(batch);
  t.is(state(a), state(b), 'the refused decode changed the step');
  a.dispose();
  b.dispose();
});

test('finding 6: dispose() during a running trainStep is EBUSY and frees nothing; the step completes', async (t) => {
  const a = await trained(), b = await trained();
  const stepping = a.trainStep(batch);
  const err = t.throws(() => a.dispose(), { instanceOf: VoxvaeError });
  t.is((err as VoxvaeError).code, 'EBUSY');
  const r = await stepping;
  t.is(r.step, 2);
  await b.trainStep(batch);
  t.is(state(a), state(b));
  await a.trainStep(batch);
  a.dispose();
  b.dispose();
});
