// GPU tests of the CUDA backend (npm run test:gpu): whole training steps on CUDA against the CPU from
// the same weights and batch, out-of-memory recovery, shape errors. Without build/cuda/voxvae_cuda.node
// or a usable device every test is registered as skipped with the reason — never as a pass.
import test from 'ava';
import { probeCuda, selectBackend, type CudaBinding } from '../ts/backend.js';
import { monaiVarAutoEncoder } from '../ts/config.js';
import { Vae } from '../ts/vae.js';

const cuda = probeCuda();
const gpuTest = cuda.binding ? test.serial : test.skip;
const why = cuda.binding ? '' : ` [skipped: no GPU — ${cuda.reason}]`;
const CFG = monaiVarAutoEncoder({ inputShape: [16, 16, 16], channels: [4, 8, 8], latentSize: 6 });

/** n volumes as a training batch (its shape says how many: a bare Float32Array is one volume). */
function batch(n: number): { input: Float32Array; shape: number[] } {
  const x = new Float32Array(n * 16 * 16 * 16);
  for (let i = 0; i < x.length; i++) x[i] = (i * 2654435761) % 97 < 40 ? 1 : 0;
  return { input: x, shape: [n, 1, 16, 16, 16] };
}
function maxRel(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 1e-6;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}


for (const tf32 of [false, true]) {
  gpuTest(`three training steps on CUDA match the CPU (${tf32 ? 'TF32' : 'fp32'})${why}`, async (t) => {
    const b = cuda.binding as CudaBinding;
    b.setOptions({ tf32 });
    const cpu = await Vae.create(CFG, { seed: 3, backend: 'cpu' });
    const gpu = await Vae.create(CFG, { seed: 3, backend: 'cuda' });
    const tol = tf32 ? 1e-3 : 1e-5;
    try {
      t.true(maxRel(gpu.encoder.network.net.getParams(), cpu.encoder.network.net.getParams()) === 0, 'same initial weights');
      for (let s = 0; s < 3; s++) {
        const x = batch(2);
        const rc = await cpu.trainStep(x, { beta: 1 });
        const rg = await gpu.trainStep(x, { beta: 1 });
        t.log(`step ${s + 1}: loss cpu ${rc.loss} cuda ${rg.loss}`);
        t.true(Math.abs(rg.loss - rc.loss) / Math.abs(rc.loss) <= tol * 10, `loss step ${s + 1}`);
      }
      const rel = maxRel(gpu.decoder.network.net.getParams(), cpu.decoder.network.net.getParams());
      t.log(`decoder params after 3 steps: max rel ${rel.toExponential(3)}`);
      t.true(rel <= tol * 10);
    } finally {
      cpu.dispose();
      gpu.dispose();
      b.setOptions({ tf32: true });
    }
  });
}

// Each model has its own CUDA stream: two models trained at the same time (their calls interleave and
// overlap on the GPU) give the same losses, bit for bit in deterministic mode, as trained one after the
// other.
gpuTest(`two models trained concurrently on their own streams match training them one after the other${why}`, async (t) => {
  const b = cuda.binding as CudaBinding;
  b.setOptions({ deterministic: true });
  const run = async (concurrent: boolean): Promise<number[][]> => {
    const a = await Vae.create(CFG, { seed: 5, backend: 'cuda' });
    const c = await Vae.create(CFG, { seed: 6, backend: 'cuda' });
    const la: number[] = [], lc: number[] = [];
    try {
      for (let s = 0; s < 3; s++) {
        if (concurrent) {
          const [ra, rc] = await Promise.all([a.trainStep(batch(2), { beta: 1 }), c.trainStep(batch(2), { beta: 1 })]);
          la.push(ra.loss), lc.push(rc.loss);
        } else {
          la.push((await a.trainStep(batch(2), { beta: 1 })).loss);
          lc.push((await c.trainStep(batch(2), { beta: 1 })).loss);
        }
      }
    } finally {
      a.dispose();
      c.dispose();
    }
    return [la, lc];
  };
  try {
    const seq = await run(false), par = await run(true);
    t.log(`losses one after the other ${JSON.stringify(seq)}, concurrently ${JSON.stringify(par)}`);
    t.deepEqual(par, seq);
    t.notDeepEqual(seq[0], seq[1]);
  } finally {
    b.setOptions({ deterministic: false });
  }
});

gpuTest(`profile mode times every node of a training step, and reset clears the totals${why}`, async (t) => {
  const b = cuda.binding as CudaBinding;
  const vae = await Vae.create(CFG, { seed: 4, backend: 'cuda' });
  type Prof = { profile(reset?: boolean): { node: number; op: string; fwdMs: number; bwdMs: number; fwdCalls: number; bwdCalls: number }[] };
  const dec = vae.decoder.network.net as unknown as Prof;
  try {
    await vae.trainStep(batch(2), { beta: 1 });
    t.deepEqual(dec.profile(), [], 'nothing is recorded while profiling is off');
    t.true(b.setOptions({ profile: true }).profile);
    await vae.trainStep(batch(2), { beta: 1 });
    await vae.trainStep(batch(2), { beta: 1 });
    const rows = dec.profile(true);
    const nodes = vae.decoder.network.net.nodes().length - 1;  // every node but the input runs
    t.is(rows.length, nodes);
    for (const r of rows) {
      t.is(r.fwdCalls, 2, `node ${r.node} (${r.op})`);
      t.true(r.fwdMs >= 0 && r.bwdMs >= 0);
    }
    t.true(rows.some((r) => r.op === 'conv_transpose3d' && r.fwdMs > 0 && r.bwdMs > 0 && r.bwdCalls === 2));
    t.deepEqual(dec.profile(), [], 'profile(true) cleared the totals');
  } finally {
    b.setOptions({ profile: false });
    vae.dispose();
  }
});

gpuTest(`out of GPU memory is ENOMEM, memory is released, a smaller batch works${why}`, async (t) => {
  const b = cuda.binding as CudaBinding;
  const huge = 1 << 40; // 4 TiB of floats: never fits
  const err = t.throws(() => new b.Tensor(null, [huge / 1024, 1024]));
  t.is((err as { code?: string }).code, 'ENOMEM');
  const vae = await Vae.create(CFG, { seed: 1, backend: 'cuda' });
  const r = await vae.trainStep(batch(1));
  t.true(Number.isFinite(r.loss));
  vae.dispose();
  t.log(JSON.stringify(b.memoryStats()));
});

gpuTest(`wrong shapes are rejected before any kernel runs${why}`, async (t) => {
  const vae = await Vae.create(CFG, { backend: 'cuda' });
  await t.throwsAsync(() => vae.trainStep(new Float32Array(17)), { code: 'ESHAPE' });
  vae.dispose();
});

gpuTest(`the same seed draws the same reparameterization noise on CUDA and CPU${why}`, (t) => {
  const b = cuda.binding as CudaBinding;
  const cpu = selectBackend('cpu');
  const mu = new Float32Array(64).fill(0.5), lv = new Float32Array(64).fill(-1);
  const eg = b.reparameterize(new b.Tensor(mu, [8, 8]), new b.Tensor(lv, [8, 8]), { latent: 'sample', seed: 42, step: 7 }).eps.toArray();
  const ec = cpu.reparameterize(new cpu.Tensor(mu, [8, 8]), new cpu.Tensor(lv, [8, 8]), { latent: 'sample', seed: 42, step: 7 }).eps.toArray();
  t.true(maxRel(eg, ec) <= 1e-6);
});
