// Where a training step's time goes: replays Vae.trainStep's sequence of native calls (the default
// skullVAE loss, Adam) stage by stage and times each stage, with the minor page faults it takes.
//
//   node --import tsx bench/probe-step.ts --model half [--batch 4] [--steps 2] [--threads 2]
//
// Stages: copying the batch into its (reused) tensor, encoder forward, decoder forward, Dice loss (+
// gradient, into a reused tensor), decoder backward (with dz), encoder backward, Adam (both nets), and
// "API": a whole vae.trainStep for comparison.
import { readFileSync } from 'node:fs';
import { native, type NativeTensor } from '../ts/native.js';
import { Vae } from '../ts/vae.js';
import { randomBinary } from './layer.js';
import { MODELS, cliModel, cliOption as opt, modelConfig } from './models.js';

const model = cliModel();
const n = Number(opt('batch', '4'));
const steps = Number(opt('steps', '2'));
const threads = Number(opt('threads', '2'));

/** Minor page faults of this process so far (/proc/self/stat field 10). */
function minflt(): number {
  try {
    const s = readFileSync('/proc/self/stat', 'utf8');
    return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[7]);
  } catch {
    return NaN;
  }
}

const nb = native();
const cfg = modelConfig(MODELS[model]);
const vae = await Vae.create(cfg, { threads });
const L = cfg.latentSize;
const S = cfg.inputShape[0] * cfg.inputShape[1] * cfg.inputShape[2];
const input = randomBinary(n * S, 12345);
const enc = vae.encoder.network, dec = vae.decoder.network;
vae.train();

const t0 = performance.now();
await vae.trainStep({ input, shape: [n, 1, ...cfg.inputShape] });
console.log(`${model} batch ${n}, ${threads} threads: warm-up vae.trainStep ${(performance.now() - t0).toFixed(0)} ms`);

// As in vae.trainStep: the batch lives in tensors reused across steps (the target is the input), and
// the Dice gradient is written into one reused tensor.
const x = new nb.Tensor(null, [n, 1, ...cfg.inputShape]);
const diceGrad = new nb.Tensor(null, [n, cfg.outChannels, ...cfg.inputShape]);
const totals = new Map<string, { ms: number; faults: number }>();
for (let s = 0; s < steps; s++) {
  const live: (NativeTensor | null)[] = [];
  const keep = <T extends NativeTensor | null>(t: T): T => (live.push(t), t);
  const stage = async <T>(name: string, f: () => Promise<T> | T): Promise<T> => {
    const f0 = minflt(), a = performance.now();
    const r = await f();
    const e = totals.get(name) ?? { ms: 0, faults: 0 };
    e.ms += performance.now() - a;
    e.faults += minflt() - f0;
    totals.set(name, e);
    return r;
  };
  await stage('copy batch in', () => x.set!(input, true));
  await stage('zero grads', () => {
    enc.net.zeroGrad();
    dec.net.zeroGrad();
  });
  const [mu, logvar] = (await stage('encoder forward', () => enc.net.forward(x, n, true))).map(keep) as [NativeTensor, NativeTensor];
  const r = nb.reparameterize(mu, logvar, { latent: 'sample', seed: 0, step: s });
  keep(r.z);
  keep(r.eps);
  const [logits] = (await stage('decoder forward', () => dec.net.forward(r.z, n, true, 0, s))).map(keep) as [NativeTensor];
  const rec = await stage('Dice loss + grad', () => nb.diceLoss(logits, x, { smoothNr: 1e-5, smoothDr: 1e-5, reduction: 'sum', weight: 80, gradOut: diceGrad }));
  const kl = nb.klNormal(mu, logvar, { reduction: 'sum', weight: 1 });
  keep(kl.dmu);
  keep(kl.dlogvar);
  const dz = keep(await stage('decoder backward', () => dec.net.backward([rec.grad], true)));
  const g = nb.reparameterizeBackward(dz!, r.eps, logvar, { dmu: kl.dmu, dlogvar: kl.dlogvar });
  keep(g.dmu);
  keep(g.dlogvar);
  await stage('encoder backward', () => enc.net.backward([g.dmu, g.dlogvar], false));
  await stage('Adam', async () => {
    await dec.optimizer().step({ lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8 });
    await enc.optimizer().step({ lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8 });
  });
  for (const t of live) t?.dispose();
  await stage('whole vae.trainStep (API)', () => vae.trainStep({ input, shape: [n, 1, ...cfg.inputShape] }));
}
let sum = 0;
for (const [name, e] of totals) {
  if (!name.startsWith('whole')) sum += e.ms / steps;
  console.log(`  ${name.padEnd(26)} ${(e.ms / steps).toFixed(1).padStart(8)} ms  ${Math.round(e.faults / steps).toString().padStart(8)} minor faults`);
}
console.log(`  ${'sum of stages'.padEnd(26)} ${sum.toFixed(1).padStart(8)} ms   (mean of ${steps} steps)`);
x.dispose();
diceGrad.dispose();
vae.dispose();
