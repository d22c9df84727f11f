// Skull completion (ts/completion): the latent mode a decoder was trained with travels in the checkpoint
// and is what every consumer uses (native, WASM); the decoder's latent gradient against finite
// differences; latent fitting lowers its objective; implant extraction on constructed volumes; completion
// data round-trips; `voxvae complete` keeps the input's geometry (read back by nibabel) and refuses bad
// input with typed errors; a tiny end-to-end main job at 32³ whose model completes a held-out skull.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monaiVarAutoEncoder, type VaeConfig } from '../ts/config.js';
import { calibrateCompletion } from '../ts/completion/calibrate.js';
import { choleskyOf, completeSkulls, extractImplant, fitLatents, type CompletionData } from '../ts/completion/index.js';
import { completeFile } from '../ts/cli/complete.js';
import { VolumeDataset } from '../ts/data/dataset.js';
import { writeVolume } from '../ts/data/io.js';
import { createVolume, type Mat3 } from '../ts/data/volume.js';
import { generateSkullDataset } from '../ts/data/synth/index.js';
import { VoxvaeError } from '../ts/errors.js';
import { runPipeline } from '../ts/experiment/pipeline.js';
import { trainStage2 } from '../ts/train/two_stage.js';
import { Decoder, Encoder, Vae, setCpuIsa } from '../ts/vae.js';
import { loadModel } from '../ts/web/index.js';
import { ROOT } from './helpers.js';

const SHAPE: [number, number, number] = [16, 16, 16];
const CFG: VaeConfig = monaiVarAutoEncoder({ inputShape: SHAPE, channels: [4, 8, 8], latentSize: 4 });
const S = SHAPE[0] * SHAPE[1] * SHAPE[2];

let tmp = '';
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'voxvae-completion-'));
});
test.after.always(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** A small dataset of synthetic skulls with paired defects, and a VAE trained two steps on it then given a
 *  stage-2 decoder trained with `latent`. */
async function tinyAggregated(latent: 'sample' | 'mean' | 'mean+std', seed = 3): Promise<{ vae: Vae; ds: VolumeDataset }> {
  const ds = VolumeDataset.fromSynthetic(await generateSkullDataset({ n: 4, shape: SHAPE, seed, workers: 0, implants: false }));
  const vae = await Vae.create(CFG, { seed });
  for await (const b of ds.batches({ batchSize: 4, seed, prefetch: 0 })) await vae.trainStep(b, { beta: 1, optimizer: { lr: 1e-3 } });
  await trainStage2(vae, { train: ds, seed, decoderConfig: CFG, trainer: { epochs: 1, batchSize: 4, latent, optimizer: { lr: 1e-3 } } });
  return { vae, ds };
}

const volumes = async (ds: VolumeDataset, n: number): Promise<Float32Array> => {
  const x = new Float32Array(n * S);
  for (let i = 0; i < n; i++) x.set(Float32Array.from((await ds.get(i)).data), i * S);
  return x;
};

test('latent mode: a decoder trained on μ + σ is fed μ + σ everywhere, after save/load and in WASM', async (t) => {
  const { vae, ds } = await tinyAggregated('mean+std');
  try {
    t.is(vae.decoderLatent, 'mean+std');
    t.is(vae.evalLatent, 'mean+std');
    const x = await volumes(ds, 3);
    const { mu, logvar, z } = await vae.encodeLatent(x, { batch: 3 });
    for (let i = 0; i < z.length; i++) t.true(Math.abs(z[i]! - (mu[i]! + Math.exp(0.5 * logvar[i]!))) <= 1e-5 * (1 + Math.abs(z[i]!)));
    // forward() in eval mode decodes that z by default.
    const f = await vae.forward(x, { mode: 'eval', output: 'logits', batch: 3 });
    t.deepEqual([...f.z], [...z]);
    t.deepEqual([...f.recon], [...(await vae.decode(z, { output: 'logits' }))]);
    const file = path.join(tmp, 'meanstd.safetensors');
    await calibrateCompletion(vae, ds);
    await vae.save(file);
    const back = await Vae.load(file);
    try {
      t.is(back.decoderLatent, 'mean+std');
      t.deepEqual([...(await back.encodeLatent(x, { batch: 3 })).z], [...z]);
      t.is(back.completion!.latent, 'mean+std');
      // The deviation vectors were computed on μ + σ: completing through the model gives z(x) + γ·DEV with z = μ + σ.
      const [r] = await completeSkulls(back.completionModel(), [x.subarray(S, 2 * S)], ['cranial'], { method: 'dev', gamma: 0.5 });
      const dev = back.completion!.dev['cranial']!;
      r!.z.forEach((v, j) => t.true(Math.abs(v - (z[4 + j]! + 0.5 * dev[j]!)) < 1e-5));
    } finally {
      back.dispose();
    }
    const w = await loadModel(new Uint8Array(await readFile(file)), { name: 'meanstd' });
    try {
      t.is(w.decoderLatent, 'mean+std');
      t.is(w.evalLatent, 'mean+std');
      const wz = (await w.encodeLatent(x, { batch: 3 })).z;
      for (let i = 0; i < z.length; i++) t.true(Math.abs(wz[i]! - z[i]!) <= 1e-5 * (1 + Math.abs(z[i]!)), `WASM z[${i}] ${wz[i]} vs native ${z[i]}`);
      t.is(w.completion!.latent, 'mean+std');
      t.deepEqual([...w.completion!.dev['cranial']!], [...vae.completion!.dev['cranial']!]);
    } finally {
      w.dispose();
    }
  } finally {
    vae.dispose();
  }
});

test('latent mode: a decoder trained on samples is evaluated on μ (documented), and that is saved too', async (t) => {
  const { vae, ds } = await tinyAggregated('sample');
  try {
    t.is(vae.decoderLatent, 'sample');
    t.is(vae.evalLatent, 'mean');
    const x = await volumes(ds, 2);
    const { mu, z } = await vae.encodeLatent(x, { batch: 2 });
    t.deepEqual([...z], [...mu]);
    const file = path.join(tmp, 'sample.safetensors');
    await vae.save(file);
    const back = await Vae.load(file);
    t.is(back.decoderLatent, 'sample');
    back.dispose();
    // Training the encoder again moves every latent: completion data computed before is dropped.
    await calibrateCompletion(vae, ds);
    vae.encoder.unfreeze();
    await vae.trainStep({ input: x, shape: [2, 1, ...vae.config.inputShape] }, { beta: 1 });
    t.is(vae.completion, null);
  } finally {
    vae.dispose();
  }
});

test('the decoder latent gradient matches finite differences of the objective, native and WASM', async (t) => {
  const small = monaiVarAutoEncoder({ inputShape: [8, 8, 8], channels: [3, 4], latentSize: 3 });
  const dec = new Decoder(small, { seed: 5 });
  try {
    const n = 2, C = 2, Sd = 512;
    const r = Float32Array.from({ length: n * C * Sd }, (_, i) => Math.sin(i * 0.37) * 0.5);
    const value = (logits: Float32Array): number => {
      let s = 0;
      for (let i = 0; i < logits.length; i++) s += logits[i]! * r[i]!;
      return s;
    };
    const z = Float32Array.from([0.3, -0.7, 1.1, -0.2, 0.5, 0.9]);
    const g = await dec.latentGradient(z, (l) => ({ value: value(l), grad: r }));
    const h = 2e-3;
    let worst = 0, scale = 0;
    for (let i = 0; i < z.length; i++) {
      const zp = new Float32Array(z), zm = new Float32Array(z);
      zp[i]! += h;
      zm[i]! -= h;
      const fd = (value(await dec.decode(zp, { output: 'logits' })) - value(await dec.decode(zm, { output: 'logits' }))) / (2 * h);
      worst = Math.max(worst, Math.abs(fd - g.grad[i]!));
      scale = Math.max(scale, Math.abs(g.grad[i]!));
    }
    t.true(scale > 0);
    t.true(worst <= 2e-2 * scale, `worst |fd − grad| ${worst} against scale ${scale}`);
    // The weights and BN statistics are untouched: decoding again gives the same logits.
    const before = await dec.decode(z, { output: 'logits' });
    await dec.latentGradient(z, (l) => ({ value: 0, grad: new Float32Array(l.length) }));
    t.deepEqual([...(await dec.decode(z, { output: 'logits' }))], [...before]);
    // WASM computes the same gradient (same kernels; 1e-5 relative to the largest entry).
    const file = path.join(tmp, 'decoder.safetensors');
    const vae = Vae.fromParts(new Encoder(small, { seed: 1 }), dec);
    await vae.save(file);
    const w = await loadModel(new Uint8Array(await readFile(file)), { name: 'decoder' });
    try {
      const wg = await w.latentGradient(z, (l) => ({ value: value(l), grad: r }));
      t.true(Math.abs(wg.value - g.value) <= 1e-5 * Math.abs(g.value) + 1e-6);
      for (let i = 0; i < z.length; i++) t.true(Math.abs(wg.grad[i]! - g.grad[i]!) <= 1e-5 * scale, `WASM grad[${i}] ${wg.grad[i]} vs native ${g.grad[i]}`);
      await t.throwsAsync(() => w.latentGradient(z, () => ({ value: 0, grad: new Float32Array(3) })), { instanceOf: VoxvaeError, code: 'ESHAPE' });
    } finally {
      w.dispose();
    }
    await t.throwsAsync(() => dec.latentGradient(z, () => ({ value: 0, grad: new Float32Array(3) })), { instanceOf: VoxvaeError, code: 'ESHAPE' });
  } finally {
    dec.dispose();
  }
});

test.serial('voxvae/web completes a skull exactly as the native engine on the WebAssembly ISA (fit and dev)', async (t) => {
  const { vae, ds } = await tinyAggregated('mean', 11);
  try {
    await calibrateCompletion(vae, ds);
    const file = path.join(tmp, 'web.safetensors');
    await vae.save(file);
    const w = await loadModel(new Uint8Array(await readFile(file)), { name: 'web' });
    setCpuIsa('sse2'); // native/core's baseline kernels: what the WebAssembly SIMD build computes, bit for bit
    try {
      const x = (await ds.get(2)).data;
      for (const method of ['dev', 'fit'] as const) {
        const a = await vae.completeSkull(x, { defect: 'facial', method, fit: { steps: 4 } });
        const b = await w.completeSkull(x, { defect: 'facial', method, fit: { steps: 4 } });
        t.deepEqual([...b.z], [...a.z], method);
        t.deepEqual([...b.implant], [...a.implant], method);
        t.deepEqual([...b.completed], [...a.completed], method);
        if (method === 'fit') t.deepEqual(b.objective, a.objective);
      }
    } finally {
      setCpuIsa('auto');
      w.dispose();
    }
  } finally {
    vae.dispose();
  }
});

test('latent fitting lowers its objective and recovers a decoded target', async (t) => {
  const dec = new Decoder(monaiVarAutoEncoder({ inputShape: SHAPE, channels: [4, 8], latentSize: 3 }), { seed: 9 });
  try {
    const model = {
      latentSize: 3, voxels: S, outChannels: 2,
      latentGradient: dec.latentGradient.bind(dec),
      decodeLogits: (z: Float32Array) => dec.decode(z, { output: 'logits' }),
    };
    // The target: the decoder's own mask at z*; start 1.5 prior standard deviations away.
    const zStar = Float32Array.from([8, -5, 3]);
    const logits = await dec.decode(zStar, { output: 'logits' });
    const target = new Uint8Array(S);
    for (let s = 0; s < S; s++) target[s] = logits[S + s]! > logits[s]! ? 1 : 0;
    t.true(target.some((v) => v) && target.some((v) => !v));
    const cov = Float32Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const z0 = Float32Array.from([-6, 4, 9]);
    const r = await fitLatents(model, [{ input: target, emptyWeight: null }], z0, { mean: new Float32Array(3), chol: choleskyOf(cov, 3) }, { steps: 60, lr: 0.5, priorWeight: 0, boneWeight: 1, focus: 1 });
    const h = r.history[0]!;
    t.is(h.length, 61);
    t.true(r.best[0]! < h[0]! * 0.8, `objective ${h[0]} → best ${r.best[0]}`);
    // The fitted latent decodes to a mask closer to the target than the start did.
    const maskDice = async (z: Float32Array): Promise<number> => {
      const l = await dec.decode(z, { output: 'logits' });
      let inter = 0, a = 0;
      for (let s = 0; s < S; s++) {
        const m = l[S + s]! > l[s]! ? 1 : 0;
        a += m;
        inter += m & target[s]!;
      }
      return (2 * inter) / (a + target.reduce((x, y) => x + y, 0));
    };
    const before = await maskDice(z0), after = await maskDice(r.z);
    t.true(after > before + 0.1, `mask Dice to the target ${before} → ${after}`);
  } finally {
    dec.dispose();
  }
});

test('implant extraction: the hole of a shell, without the surface noise of a decoded skull', (t) => {
  // A closed box shell of 1-voxel walls in a 20³ grid; the defect is a 6×6 patch of its top wall.
  const shape: [number, number, number] = [20, 20, 20];
  const N = 8000, idx = (d: number, h: number, w: number) => (d * 20 + h) * 20 + w;
  const complete = new Uint8Array(N), defective = new Uint8Array(N), truth = new Uint8Array(N);
  for (let d = 4; d <= 15; d++)
    for (let h = 4; h <= 15; h++)
      for (let w = 4; w <= 15; w++) {
        if (d === 4 || d === 15 || h === 4 || h === 15 || w === 4 || w === 15) complete[idx(d, h, w)] = 1;
      }
  complete.forEach((v, i) => (defective[i] = v));
  for (let d = 7; d <= 12; d++) for (let h = 7; h <= 12; h++) (defective[idx(d, h, 15)] = 0), (truth[idx(d, h, 15)] = 1);
  // The "decoded" skull: the complete shell, a voxel thicker on one side wall (surface noise), plus a
  // stray speck far away.
  const decoded = new Uint8Array(complete);
  for (let h = 4; h <= 15; h++) for (let w = 4; w <= 15; w++) decoded[idx(5, h, w)] = 1;
  decoded[idx(1, 1, 1)] = 1;
  t.true([...extractImplant(decoded, defective, shape, { clean: false })].filter((v) => v).length > 100);
  t.deepEqual([...extractImplant(decoded, defective, shape)], [...truth]);
  // A region excludes everything outside it.
  t.is([...extractImplant(decoded, defective, shape, { region: new Uint8Array(N) })].filter((v) => v).length, 0);
});

test('completion data round-trips through save/load; bad classes, missing data and bad shapes are typed errors', async (t) => {
  const { vae, ds } = await tinyAggregated('mean', 5);
  try {
    await t.throwsAsync(() => vae.completeSkull(new Uint8Array(S), { defect: 'cranial' }), { instanceOf: VoxvaeError, code: 'ECHECKPOINT', message: /voxvae calibrate/ });
    const data: CompletionData = await calibrateCompletion(vae, ds);
    t.deepEqual(data.classes, ['cranial', 'facial']);
    t.is(data.pairs['cranial'], 4);
    t.is(data.completeLatents.length, 4 * 4);
    const file = path.join(tmp, 'calibrated.safetensors');
    await vae.save(file);
    const back = await Vae.load(file);
    try {
      const c = back.completion!;
      t.deepEqual(c.classes, data.classes);
      t.deepEqual([...c.dev['facial']!], [...data.dev['facial']!]);
      t.deepEqual([...c.defectMap['cranial']!], [...data.defectMap['cranial']!]);
      t.deepEqual([...c.prior.cov], [...data.prior.cov]);
      t.deepEqual(c.fit, data.fit);
      const x = (await ds.get(1)).data;
      const a = await vae.completeSkull(x, { defect: 'cranial', fit: { steps: 5 } });
      const b = await back.completeSkull(x, { defect: 'cranial', fit: { steps: 5 } });
      t.deepEqual([...a.completed], [...b.completed]);
      t.deepEqual([...a.z], [...b.z]);
      t.is(a.objective!.length, 6);
      for (let s = 0; s < S; s++) if (x[s]) t.is(a.completed[s], 1); // the input's bone is always kept
      await t.throwsAsync(() => back.completeSkull(x, { defect: 'parietal' }), { instanceOf: VoxvaeError, code: 'EINVAL', message: /cranial', 'facial/ });
      await t.throwsAsync(() => back.completeSkull(new Uint8Array(10), { defect: 'cranial' }), { instanceOf: VoxvaeError, code: 'ESHAPE' });
    } finally {
      back.dispose();
    }
  } finally {
    vae.dispose();
  }
});

const PYTHON = '/usr/bin/python3';
const hasNibabel = spawnSync(PYTHON, ['-c', 'import nibabel, numpy'], { stdio: 'ignore' }).status === 0;
if (!hasNibabel) console.log(`completion: the nibabel check is skipped: "${PYTHON} -c 'import nibabel'" failed (apt-get install python3-nibabel)`);

(hasNibabel ? test : test.skip)('voxvae complete keeps the input geometry (nibabel) and resamples an input of another shape', async (t) => {
  const { vae, ds } = await tinyAggregated('mean', 7);
  const model = path.join(tmp, 'cli-model.safetensors');
  try {
    await calibrateCompletion(vae, ds);
    await vae.save(model);
  } finally {
    vae.dispose();
  }
  const c = Math.cos(0.3), s = Math.sin(0.3);
  const direction: Mat3 = [c, -s, 0, s, c, 0, 0, 0, 1];
  const skull = (await ds.get(1)).data;
  for (const [name, shape] of [['same.nii.gz', SHAPE], ['bigger.nii', [24, 20, 18]]] as const) {
    const data = new Uint8Array(shape[0] * shape[1] * shape[2]);
    // Nearest-neighbour copy of the 16³ skull onto this grid.
    for (let d = 0; d < shape[0]; d++)
      for (let h = 0; h < shape[1]; h++)
        for (let w = 0; w < shape[2]; w++)
          data[(d * shape[1] + h) * shape[2] + w] = skull[(Math.floor((d * 16) / shape[0]) * 16 + Math.floor((h * 16) / shape[1])) * 16 + Math.floor((w * 16) / shape[2])]!;
    const input = path.join(tmp, name), out = path.join(tmp, `completed-${name}`), implant = path.join(tmp, `implant-${name}`);
    await writeVolume(input, createVolume([...shape] as [number, number, number], data, { spacing: [1.2, 0.9, 2.5], origin: [-30.5, 12.25, 7], direction }));
    const r = await completeFile({ model, input, defect: 'cranial', out, implant, steps: 3, log: () => {} });
    t.is(r.resampled, name !== 'same.nii.gz');
    const py = spawnSync(PYTHON, ['-c', `
import json, sys, nibabel as nib, numpy as np
a, b, c = (nib.load(f) for f in sys.argv[1:4])
x, y, z = (np.asarray(v.dataobj) for v in (a, b, c))
print(json.dumps({"shape": [list(v.shape) for v in (a, b, c)], "affine_in": a.affine.tolist(), "affine_out": [b.affine.tolist(), c.affine.tolist()],
  "input_kept": bool(np.all(y[x > 0.5] == 1)), "implant_outside": bool(np.all(x[z > 0.5] == 0)), "union": bool(np.all((y > 0.5) == ((x > 0.5) | (z > 0.5))))}))
`, input, out, implant], { encoding: 'utf8' });
    t.is(py.status, 0, py.stderr);
    const j = JSON.parse(py.stdout) as { shape: number[][]; affine_in: number[][]; affine_out: number[][][]; input_kept: boolean; implant_outside: boolean; union: boolean };
    t.deepEqual(j.shape, [[...shape], [...shape], [...shape]]);
    for (const a of j.affine_out) a.forEach((row, i) => row.forEach((v, k) => t.true(Math.abs(v - j.affine_in[i]![k]!) < 1e-5)));
    t.true(j.input_kept && j.implant_outside && j.union);
  }
  // Refusals: an unknown defect class (EINVAL), another shape with --no-resample (ESHAPE), a model
  // without completion data (ECHECKPOINT naming the command that adds it).
  const bigger = path.join(tmp, 'bigger.nii');
  await t.throwsAsync(() => completeFile({ model, input: bigger, defect: 'nasal', out: path.join(tmp, 'x.nii') }), { instanceOf: VoxvaeError, code: 'EINVAL', message: /--defect must be one of 'cranial', 'facial'/ });
  await t.throwsAsync(() => completeFile({ model, input: bigger, defect: 'cranial', out: path.join(tmp, 'x.nii'), resample: false }), { instanceOf: VoxvaeError, code: 'ESHAPE', message: /resample/ });
  const bare = path.join(tmp, 'bare.safetensors');
  const v2 = await Vae.create(CFG, { seed: 1 });
  await v2.save(bare);
  v2.dispose();
  await t.throwsAsync(() => completeFile({ model: bare, input: bigger, defect: 'cranial', out: path.join(tmp, 'x.nii') }), { instanceOf: VoxvaeError, code: 'ECHECKPOINT', message: /voxvae calibrate/ });
  // The command line says the same with exit code 2 and no stack trace.
  const cli = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'ts/cli/main.ts'), 'complete', '--model', bare, '--input', bigger, '--defect', 'cranial', '--out', path.join(tmp, 'y.nii')], { encoding: 'utf8', cwd: ROOT });
  t.is(cli.status, 2);
  t.regex(cli.stderr, /no completion data.*voxvae calibrate.*\[ECHECKPOINT\]/s);
  t.notRegex(cli.stderr, /at .*\.ts:\d+/);
});

test('voxvae calibrate adds completion data to a model (synthetic skulls) and refuses a wrong call', async (t) => {
  const model = path.join(tmp, 'uncalibrated.safetensors'), out = path.join(tmp, 'calibrated-cli.safetensors');
  const v = await Vae.create(CFG, { seed: 2 });
  await v.save(model);
  v.dispose();
  const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'ts/cli/main.ts'), 'calibrate', ...args], { encoding: 'utf8', cwd: ROOT });
  const ok = run('--model', model, '--synthetic', '3', '--seed', '4', '--out', out);
  t.is(ok.status, 0, ok.stderr);
  t.regex(ok.stdout, /completion data for cranial, facial from 3 synthetic skulls/);
  const back = await Vae.load(out);
  t.deepEqual(back.completion?.classes, ['cranial', 'facial']);
  t.is(back.completion?.prior.n, 3);
  back.dispose();
  const both = run('--model', model, '--synthetic', '3', '--data', tmp, '--out', out);
  t.is(both.status, 2);
  t.regex(both.stderr, /exactly one of --data and --synthetic/);
});

test('end to end at 32³: the main job writes a completion-ready model that completes a held-out skull', async (t) => {
  const out = path.join(tmp, 'pipeline');
  const lines: string[] = [];
  const r = await runPipeline({ out, scale: 'test', seed: 2, log: (l) => lines.push(l) });
  t.true(r.models.length === 2);
  t.regex(lines.join('\n'), /Reconstruction \(held-out skulls\)/);
  const report = await readFile(r.reportFile, 'utf8');
  t.regex(report.split('\n').slice(0, 6).join('\n'), /aggregated VAE reached Dice/);
  t.regex(report, /\| latent fitting \|/);
  const vae = await Vae.load(r.modelFile);
  try {
    t.truthy(vae.completion);
    t.is(vae.decoderLatent, 'mean');
    const held = await generateSkullDataset({ n: 1, shape: [32, 32, 32], seed: 2 + 10000, workers: 0 });
    const c = await vae.completeSkull(held.skulls[0]!.cranial.defective.data, { defect: 'cranial', fit: { steps: 3 } });
    t.is(c.completed.length, 32 ** 3);
  } finally {
    vae.dispose();
  }
});
