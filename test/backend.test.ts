// Backend selection without assuming a GPU: 'cpu' always works, 'cuda' either works or fails with
// EUNSUPPORTED naming what is missing, 'auto' always yields a working backend.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
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

// The CUDA addon that `npm run check:cuda` builds (CI runs it before the tests) is a real build of
// voxvae_cuda.node: on a machine without a GPU it must load, say why CUDA cannot run, refuse every
// entry point with EUNSUPPORTED and leave the process working. Run in a child process, since the probe's
// answer is cached per process.
const CHECK_ADDON = path.resolve('build/cuda-check/voxvae_cuda.node');
test('the CUDA addon loads without a usable GPU, says why, and auto falls back to the CPU', async (t) => {
  if (!existsSync(CHECK_ADDON)) {
    t.log(`${CHECK_ADDON} is not built (npm run check:cuda builds it): nothing to check`);
    t.pass();
    return;
  }
  const script = `
    import { createRequire } from 'node:module';
    import { probeCuda, selectBackend } from './ts/backend.ts';
    import { monaiVarAutoEncoder } from './ts/config.ts';
    import { Vae } from './ts/vae.ts';
    const out = {};
    const raw = createRequire(import.meta.url)(process.env.VOXVAE_CUDA_ADDON);
    out.probe = raw.probe();
    for (const [name, f] of [['Net', () => new raw.Net('input c=1 d=4 h=4 w=4\\nconv3d in=0 cout=2 k=3 s=1 p=1 bias=1\\noutput 1\\n')],
                             ['Tensor', () => new raw.Tensor(new Float32Array(4), [4])]]) {
      try { f(); out[name] = 'no error'; } catch (e) { out[name] = e.code + ': ' + e.message; }
    }
    out.reason = probeCuda().reason;
    try { selectBackend('cuda'); out.cuda = 'selected'; } catch (e) { out.cuda = e.code + ': ' + e.message; }
    const vae = await Vae.create(monaiVarAutoEncoder({ inputShape: [8, 8, 8], channels: [4, 8], latentSize: 4 }), { backend: 'auto' });
    out.autoLoss = (await vae.trainStep(new Float32Array(512).fill(1))).loss;
    vae.dispose();
    console.log(JSON.stringify(out));
  `;
  const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, VOXVAE_CUDA_ADDON: CHECK_ADDON },
  });
  const r = JSON.parse(stdout.trim().split('\n').pop()!);
  if (r.probe.ok) {
    t.log(`a usable GPU is present (${r.probe.device}): the no-GPU path is not what runs here`);
    t.is(r.cuda, 'selected');
    return;
  }
  t.log(`probe: ${r.probe.reason}`);
  t.regex(r.probe.reason, /driver|device|compute capability|kernel image|libcudnn/);
  t.is(r.probe.runtimeVersion > 0, true);
  for (const k of ['Net', 'Tensor']) t.regex(r[k], /^EUNSUPPORTED: CUDA backend unavailable: /, k);
  t.is(r.reason, r.probe.reason);
  t.true(r.cuda.startsWith("EUNSUPPORTED: backend 'cuda' is not available: " + r.probe.reason), r.cuda);
  t.true(Number.isFinite(r.autoLoss));
  t.regex(stderr, /voxvae: backend 'auto' uses the CPU \(CUDA unavailable: /);
});
