// Backend selection without assuming a GPU: 'cpu' always works, 'cuda' either works or fails with
// EUNSUPPORTED naming what is missing, 'auto' always yields a working backend.
import test from 'ava';
import { probeCuda, selectBackend } from '../ts/backend.js';
import { monaiVarAutoEncoder } from '../ts/config.js';
import { Vae } from '../ts/vae.js';

const CFG = monaiVarAutoEncoder({ inputShape: [8, 8, 8], channels: [4, 8], latentSize: 4 });

test('cpu is the default and auto always gives a working backend', async (t) => {
  t.is(selectBackend().backend, 'cpu');
  const vae = await Vae.create(CFG, { backend: 'auto' });
  const r = await vae.trainStep(new Float32Array(512).fill(1));
  t.true(Number.isFinite(r.loss));
  vae.dispose();
});

test("'cuda' works or says why it cannot", async (t) => {
  const p = probeCuda();
  if (p.binding) {
    t.is(selectBackend('cuda').backend, 'cuda');
    return;
  }
  t.true(p.reason.length > 0);
  await t.throwsAsync(() => Vae.create(CFG, { backend: 'cuda' }), { code: 'EUNSUPPORTED', message: /not available/ });
});

test('an unknown backend is refused', async (t) => {
  await t.throwsAsync(() => Vae.create(CFG, { backend: 'tpu' as never }), { code: 'EINVAL' });
});
