// Latent manipulation on constructed latents (deviation vectors, completion, traversal, neighbours),
// and the two-stage method: stage 2 leaves the encoder bit-identical; one checkpoint round-trips.
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monaiVarAutoEncoder } from '../ts/config.js';
import { VolumeDataset } from '../ts/data/dataset.js';
import { generateSkullDataset } from '../ts/data/synth/index.js';
import { centroids, completeLatents, deviationVectors, encodeDataset, interpolateLatents, latentCodes, nearestNeighbours, samplePrior, traverseLatent } from '../ts/latent/index.js';
import { trainTwoStage } from '../ts/train/two_stage.js';
import { Vae } from '../ts/vae.js';

test('deviation vectors: paired mean of (z_complete − z_c), centroid difference when unpaired', (t) => {
  // k = 2; pairs a, b. complete a = (1, 1), b = (3, 5); cranial a = (0, 1), b = (1, 1); facial a = (1, 0) only.
  const z = Float32Array.from([1, 1, 3, 5, 0, 1, 1, 1, 1, 0]);
  const labels = ['complete', 'complete', 'cranial', 'cranial', 'facial'];
  const pairs = ['a', 'b', 'a', 'b', 'x'];
  const c = centroids(z, 2, labels);
  t.deepEqual([...c.get('complete')!], [2, 3]);
  const dev = deviationVectors(z, 2, labels, pairs);
  t.deepEqual(dev.get('cranial')!.method, 'paired');
  t.deepEqual([...dev.get('cranial')!.vector], [1.5, 2]); // ((1-0 + 3-1)/2, (1-1 + 5-1)/2)
  t.is(dev.get('facial')!.method, 'centroid'); // 'x' has no complete twin
  t.deepEqual([...dev.get('facial')!.vector], [1, 3]);
  t.false(dev.has('complete'));

  // Completion z + γ·DEV, batched over rows and γ (γ-major).
  const zc = completeLatents(Float32Array.from([0, 1, 1, 1]), 2, dev.get('cranial')!.vector, [0, 0.5, 1]);
  t.deepEqual([...zc], [0, 1, 1, 1, 0.75, 2, 1.75, 2, 1.5, 3, 2.5, 3]);
  // paired completion with γ = 1 of a cranial latent lands on the class centroid plus the pair's residual
  t.deepEqual([...completeLatents(Float32Array.from([0, 1]), 2, Float32Array.from([1, 0]), -2)], [-2, 1]);
  t.throws(() => completeLatents(Float32Array.from([0, 1]), 2, Float32Array.from([1, 0, 0])), { message: /dev has 3/ });
});

test('interpolation, traversal, prior samples, nearest neighbours', (t) => {
  t.deepEqual([...interpolateLatents(Float32Array.from([0, 2]), Float32Array.from([4, 2]), [0, 0.5, 1])], [0, 2, 2, 2, 4, 2]);
  t.deepEqual([...traverseLatent(Float32Array.from([1, 1, 1]), 1, [-2, 0, 2], 0.5)], [1, 0, 1, 1, 1, 1, 1, 2, 1]);
  const p = samplePrior(2000, 3, 7);
  const mean = p.reduce((a, v) => a + v, 0) / p.length;
  t.true(Math.abs(mean) < 0.05);
  t.deepEqual([...samplePrior(2, 3, 7)], [...p.slice(0, 6)]);
  const nn = nearestNeighbours(Float32Array.from([0, 0, 5, 5, 1, 1]), 2, Float32Array.from([0.9, 0.9]), 2);
  t.deepEqual(nn.map((x) => x.index), [2, 0]);
});

test('two-stage: stage 2 leaves the encoder bit-identical; the aggregated VAE is one checkpoint', async (t) => {
  const shape: [number, number, number] = [16, 16, 16];
  const ds = VolumeDataset.fromSynthetic(await generateSkullDataset({ n: 2, shape, seed: 4, workers: 0, implants: false }));
  const cfg = monaiVarAutoEncoder({ inputShape: shape, channels: [4, 8, 8], latentSize: 4 });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-2stage-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  let encBefore: Map<string, unknown> | null = null;
  const r = await trainTwoStage(cfg, {
    train: ds,
    seed: 3,
    stage1: { epochs: 1, optimizer: { lr: 1e-3 } },
    stage2: { epochs: 2, latent: 'mean+std', optimizer: { lr: 1e-3 } },
    afterStage1: async (vae) => {
      encBefore = vae.encoder.network.stateDict();
    },
  });
  t.teardown(() => r.vae.dispose());
  const encAfter = r.vae.encoder.network.stateDict();
  for (const [k, v] of encBefore!) t.deepEqual(encAfter.get(k), v, k);
  t.true(r.vae.encoder.frozen);
  t.is(r.vae.decoder.config.decoderBlock, 'skullvae');
  t.is(r.stage2.steps.length, 2 * 2); // 6 volumes, batch 4 → 2 batches per epoch
  t.true(r.stage2.steps.every((s) => s.beta === 0 && s.loss === s.recon));
  t.true(r.stage2.steps.at(-1)!.loss < r.stage2.steps[0]!.loss);

  const file = path.join(dir, 'agg.safetensors');
  await r.vae.save(file);
  const back = await Vae.load(file);
  t.teardown(() => back.dispose());
  t.true(back.encoder.frozen);
  const x = (await ds.batches({ batchSize: 2, shuffle: false }).next()).value!.input;
  const a = await r.vae.forward(x, { mode: 'eval', latent: 'mean', batch: 2 }), b = await back.forward(x, { mode: 'eval', latent: 'mean', batch: 2 });
  t.deepEqual(b.recon, a.recon);

  const progress: [number, number][] = [];
  const enc = await encodeDataset(back, ds, { batchSize: 4, onProgress: (done, total) => progress.push([done, total]) });
  t.is(enc.n, 6);
  t.deepEqual(progress, [[4, 6], [6, 6]], 'encodeDataset reports its progress after every batch');
  t.deepEqual(enc.labels.slice().sort(), ['complete', 'complete', 'cranial', 'cranial', 'facial', 'facial']);
  const z = latentCodes(enc, 'mean+std');
  t.is(z[0], Math.fround(enc.mu[0]! + enc.sigma[0]!));
  const dev = deviationVectors(z, enc.k, enc.labels, enc.pairIds);
  t.is(dev.get('cranial')!.method, 'paired');
});
