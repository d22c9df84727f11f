// Rivera's recipe ("How to train your VAE", arXiv 2309.13160; official code How2TrainUrVAE,
// VAE_GAN.train_step) on voxvae's 3D VAEs: the per-sample KL is replaced by
//   L_ind = w_ind · mean_i Σ_k (σ²_ik − log σ²_ik − 1)                 (w_ind = 0.1: σ only, μ is free)
//   L_pop = w_pop · ½ Σ_k (μ̄_k² + v̄_k − log v̄_k − 1)                  (population of means → N(0, I))
// and an adversarial term from a 3D PatchGAN D (w_adv = 100):
//   L_G = L_rec + L_pop + L_ind + w_adv · BCE(1, D(x̂)),   L_D = w_adv · [BCE(1, D(x)) + BCE(0, D(x̂))],
// with generator (encoder + decoder) and D updated in the same step, each by its own Adam
// (lr 1e-4, β1 = 0.5 by default, as the official code). v̄ is the biased variance of the μ's
// ('means', the code's choice and the default) or that plus the mean σ² ('mixture', the moment-matched
// aggregate posterior). The step is the one training step (ts/train/step.ts, as Vae.trainStep) without
// a KL term, with L_pop + L_ind as its latent hook and the adversarial term as its logit hook:
//   encoder → reparameterize → decoder → x̂ = act(logits)
//   latent hook: L_pop, L_ind and their gradients w.r.t. μ, log σ²
//   logit hook, D(x̂): BCE(0) and BCE(1) gradients; backward(BCE(1), input grad) → ∂L_G,adv/∂x̂; D grads
//         reset; backward(BCE(0)) → D's fake-half gradient (two backward passes over one forward)
//     D(x):  backward(BCE(1)) → D's real-half gradient (added); returns ∂x̂/∂logits · ∂L_G,adv/∂x̂
//   decoder backward(recon grad + the logit hook's) → dz → + L_pop/L_ind grads → encoder
//   Adam on encoder + decoder (the step), then Adam on D.
// D is evaluated on x̂ before x (the official code: x then x̂); only BatchNorm's running statistics see
// the other order. D's dropout masks are keyed by (seed + 2, 2·step) for x̂ and (seed + 2, 2·step + 1)
// for x, so a seeded run repeats bit for bit.
//
// What D sees. For a softmax decoder (Dice on class logits) D sees the probabilities of the
// non-background classes (for binary skulls: one channel, P(bone)), and real volumes as the one-hot of
// those classes (the binary volume itself): both live in [0, 1] with the same meaning, so D compares
// shapes, and its gradient reaches the logits through the softmax. Soft probabilities are not exactly
// binary; D penalising that is the sharpening the adversarial term is for. A sigmoid decoder: D sees
// σ(logits) vs the target; no output activation ('none', e.g. L1 on intensities as in the paper):
// D sees the logits themselves vs the target.
import { VoxvaeError, invalid } from '../errors.js';
import type { VaeConfig } from '../config.js';
import { buildDiscriminator } from '../model/build.js';
import { patchGan3d, patchGridShape, validateDiscriminatorConfig, type DiscriminatorConfig, type DiscriminatorConfigInput } from '../discriminator.js';
import type { VolumeDataset } from '../data/dataset.js';
import * as is from '../is.js';
import { nativeCall, nativeSync, type NativeBinding, type NativeTensor, type Reduction } from '../native.js';
import { Network, type OptimizerConfig } from '../network.js';
import { MODES, type LatentMode } from '../types.js';
import { Vae, batchSamples, partOptions, type PartOptions } from '../vae.js';
import { batchOf, resolveOptimizer, resolveRecon, tensor, type Batch, type LatentHookInput, type LogitHookInput, type ReconLoss } from './step.js';

export type PopulationVariance = 'means' | 'mixture';

export interface RiveraStepOptions {
  /** Reconstruction loss. Default as Vae.trainStep: 80·Dice (sum) for softmax decoders, else MSE (mean).
   *  The paper's: { kind: 'l1', weight: 5000, reduction: 'mean' } (5000 × mean absolute error). */
  recon?: Partial<ReconLoss>;
  /** w_ind of the per-sample variance term. Default 0.1 (official code). */
  individualWeight?: number;
  /** Batch reduction of L_ind. Default 'mean' (official code). */
  individualReduction?: Reduction;
  /** w_pop of the population term. Default 1 (official code). */
  populationWeight?: number;
  /** 'means' (default, official code) or 'mixture' (+ mean σ²; also defined for a batch of 1). */
  populationVariance?: PopulationVariance;
  /** w_adv of both adversarial losses. Default 100 (official code). Ignored without a discriminator. */
  adversarialWeight?: number;
  latent?: LatentMode;
  /** Generator (encoder + decoder) optimizer. Default Adam lr 1e-4, betas [0.5, 0.999]. */
  optimizer?: Partial<OptimizerConfig>;
  /** Discriminator optimizer. Default Adam lr 1e-4, betas [0.5, 0.999]. */
  discriminatorOptimizer?: Partial<OptimizerConfig>;
}

export interface RiveraStepResult {
  /** L_G = recon + population + individual + adversarial (all weighted). */
  loss: number;
  recon: number;
  population: number;
  individual: number;
  /** w_adv · BCE(1, D(x̂)); 0 without a discriminator. */
  adversarial: number;
  /** L_D = w_adv · [BCE(1, D(x)) + BCE(0, D(x̂))]; NaN without a discriminator. */
  discriminator: number;
  /** Mean σ(D) over patches on real and on reconstructed volumes (NaN without D). */
  dReal: number;
  dFake: number;
  step: number;
}

/** Rivera's 3D PatchGAN as a trainable network with PyTorch names layers.{i}.conv/bn. */
export class Discriminator {
  readonly config: DiscriminatorConfig;
  readonly network: Network;
  readonly seed: number;
  /** `seed` (default 0; the network is initialised from seed + 2, its dropout keyed by seed + 2) and
   *  `backend` (default 'cpu'; discriminatorFor uses the VAE's). */
  constructor(config: DiscriminatorConfig, opts: PartOptions = {}) {
    const { seed, binding } = partOptions(opts);
    this.config = validateDiscriminatorConfig(config);
    this.seed = seed;
    this.network = new Network(buildDiscriminator(this.config), seed + 2, binding);
  }
  /** The engine this discriminator runs on. */
  get backend(): 'cpu' | 'cuda' {
    return this.network.binding.backend;
  }
  /** Patch logits [N, 1, D/8, H/8, W/8] (eval mode: running BN statistics, no dropout, unless mode 'train'). */
  async forward(x: Float32Array, opts: { mode?: 'train' | 'eval'; step?: number } = {}): Promise<Float32Array> {
    const [D, H, W] = this.config.inputShape;
    const n = batchOf(x, this.config.inChannels * D * H * W, 'x');
    if (opts.mode !== undefined) is.oneOf('options.mode', opts.mode, MODES);
    if (opts.step !== undefined) is.integer('options.step', opts.step, 0, Number.MAX_SAFE_INTEGER);
    const t = tensor(x, [n, this.config.inChannels, D, H, W], 'x', this.network.binding);
    let outs: NativeTensor[] = [];
    try {
      outs = await nativeCall(() => this.network.net.forward(t, n, opts.mode === 'train', this.seed + 2, opts.step ?? 0));
      return outs[0]!.toArray();
    } finally {
      t.dispose();
      for (const o of outs) o.dispose();
    }
  }
  get gridShape(): [number, number, number, number] {
    return patchGridShape(this.config);
  }
  dispose(): void {
    this.network.dispose();
  }
}

/** Channels D sees for a decoder config (see the file comment). */
export function discriminatorChannels(dcfg: VaeConfig): number {
  return dcfg.outputActivation === 'softmax' ? Math.max(1, dcfg.outChannels - 1) : dcfg.outChannels;
}

/** A discriminator that fits a VAE's volumes and decoder output (throws, naming the size needed, if it does not). */
export function discriminatorFor(vae: Vae, opts: Partial<Omit<DiscriminatorConfigInput, 'inputShape' | 'inChannels'>> = {}): Discriminator {
  const dcfg = vae.decoder.config;
  return new Discriminator(patchGan3d({ ...opts, inputShape: dcfg.inputShape, inChannels: discriminatorChannels(dcfg) }), { seed: vae.seed, backend: vae.backend });
}

const DEFAULT_OPT: OptimizerConfig = { kind: 'adam', lr: 1e-4, betas: [0.5, 0.999], eps: 1e-7, weightDecay: 0 };

/** Options over Rivera's defaults (Adam lr 1e-4, β1 0.5, eps 1e-7), validated as every optimizer is. */
const resolveOpt = (o: Partial<OptimizerConfig> | undefined, field: string): OptimizerConfig => resolveOptimizer(o, DEFAULT_OPT, field);

const weightOf = (v: number | undefined, def: number, field: string): number => is.number(field, v ?? def, { min: 0 });

const RIVERA_OPTIONS = ['recon', 'individualWeight', 'individualReduction', 'populationWeight', 'populationVariance', 'adversarialWeight', 'latent', 'optimizer', 'discriminatorOptimizer'];

/**
 * Rivera's training step on a Vae (any encoder/decoder with μ, log σ² outputs) and an optional
 * discriminator (null: the recipe without the GAN): the one training step (ts/train/step.ts) with no KL
 * term, the population and variance terms as its latent hook and the adversarial term (D's forward and
 * backward passes) as its logit hook; then D's Adam step. Advances vae.step like Vae.trainStep.
 */
export async function riveraTrainStep(vae: Vae, disc: Discriminator | null, batch: Batch | Float32Array, opts: RiveraStepOptions = {}): Promise<RiveraStepResult> {
  const b: Batch = batch instanceof Float32Array ? { input: batch } : batch;
  const o = is.options('options', opts);
  is.knownKeys('options', o, RIVERA_OPTIONS);
  const cfg = vae.config, dcfg = vae.decoder.config;
  if (vae.encoder.frozen) invalid('vae.encoder', 'is frozen: Rivera\'s recipe trains the encoder (unfreeze it)');
  const L = cfg.latentSize, [D, H, W] = cfg.inputShape, S = D * H * W;
  const n = batchSamples(b, cfg);
  const wInd = weightOf(o.individualWeight, 0.1, 'options.individualWeight');
  const wPop = weightOf(o.populationWeight, 1, 'options.populationWeight');
  const wAdv = weightOf(o.adversarialWeight, 100, 'options.adversarialWeight');
  const indRed = is.oneOf('options.individualReduction', o.individualReduction ?? 'mean', ['mean', 'sum'] as const);
  const popVar = is.oneOf('options.populationVariance', o.populationVariance ?? 'means', ['means', 'mixture'] as const);
  if (popVar === 'means' && wPop > 0 && n < 2)
    throw new VoxvaeError('EINVAL', `Rivera's population term needs a batch of at least 2 volumes (got 1): the variance of one mean is 0 and log 0 = −∞. Use batchSize >= 2 (with dropLast), or populationVariance: 'mixture', which is defined for one volume`, { path: 'batch.input' });
  const recon = resolveRecon(dcfg, o.recon);
  if (recon.kind === 'dice' && dcfg.outputActivation !== 'softmax') invalid('options.recon.kind', "'dice' needs a softmax decoder", recon.kind);
  const gOpt = resolveOpt(o.optimizer, 'options.optimizer'), dOpt = resolveOpt(o.discriminatorOptimizer, 'options.discriminatorOptimizer');
  const dc = discriminatorChannels(dcfg);
  if (disc) {
    if (disc.config.inChannels !== dc) invalid('discriminator.config.inChannels', `must be ${dc} for this decoder (what D sees: see ts/train/rivera.ts)`, disc.config.inChannels);
    if (disc.config.inputShape.some((d, i) => d !== cfg.inputShape[i])) invalid('discriminator.config.inputShape', `must equal the VAE's [${cfg.inputShape.join(', ')}]`, disc.config.inputShape);
    // Everything runs on the VAE's engine (CPU or CUDA); the discriminator must live on the same one.
    if (disc.network.binding !== vae.encoder.network.binding) invalid('discriminator', "must be created on the VAE's backend (use discriminatorFor(vae))");
  }

  // Latent terms: gradients into (dmu, dlogvar); the step adds the decoder's through the reparameterization.
  let pop: { loss: number } | null = null, ind = { loss: 0 };
  const latentHook = ({ n, latentSize, mu, logvar, binding: nb, keep }: LatentHookInput) => {
    const p = wPop > 0 ? nativeSync(() => nb.populationKl(mu, popVar === 'mixture' ? logvar : null, { variance: popVar, weight: wPop })) : null;
    keep(p?.dmu);
    keep(p?.dlogvar);
    const v = nativeSync(() => nb.variancePenalty(logvar, { reduction: indRed, weight: wInd, dlogvar: p?.dlogvar ?? null }));
    keep(v.dlogvar);
    pop = p;
    ind = v;
    return { loss: (p?.loss ?? 0) + v.loss, dmu: p?.dmu ?? null, dlogvar: v.dlogvar };
  };

  // The adversarial term: D on x̂ (BCE(1) for the generator, BCE(0) for D) and on x (BCE(1) for D).
  let adversarial = 0, lossD = NaN, dReal = NaN, dFake = NaN;
  const logitHook = async ({ n, logits, target, binding: nb, step, keep }: LogitHookInput) => {
    const d = disc!;
    const mk = (data: Float32Array, shape: number[]): NativeTensor => keep(nativeSync(() => new nb.Tensor(data, shape, true)));
    const dnet = d.network.net;
    const grid = patchGridShape(d.config);
    const G = grid[1] * grid[2] * grid[3];
    const { xhat, back } = await discriminatorView(nb, logits, n, dcfg, keep);
    const realView = realVolumes(target, n, dcfg, recon.kind === 'dice');
    const xh = mk(xhat, [n, dc, D, H, W]);
    const xr = mk(realView, [n, dc, D, H, W]);
    const ones = mk(new Float32Array(n * G).fill(1), [n, 1, ...grid.slice(1)]);
    const zeros = mk(new Float32Array(n * G), [n, 1, ...grid.slice(1)]);
    nativeSync(() => dnet.zeroGrad());
    const [lf] = (await nativeCall(() => dnet.forward(xh, n, true, d.seed + 2, 2 * step))).map(keep) as [NativeTensor];
    const gAdv = await nativeCall(() => nb.elementLoss(lf, ones, { kind: 'bce', reduction: 'mean', weight: wAdv }));
    keep(gAdv.grad);
    const dFakeLoss = await nativeCall(() => nb.elementLoss(lf, zeros, { kind: 'bce', reduction: 'mean', weight: wAdv }));
    keep(dFakeLoss.grad);
    dFake = meanSigmoid(lf.toArray());
    const dxh = keep(await nativeCall(() => dnet.backward([gAdv.grad], true)));
    nativeSync(() => dnet.zeroGrad()); // the generator's pass must not train D
    keep(await nativeCall(() => dnet.backward([dFakeLoss.grad], false)));
    const [lr] = (await nativeCall(() => dnet.forward(xr, n, true, d.seed + 2, 2 * step + 1))).map(keep) as [NativeTensor];
    const dRealLoss = await nativeCall(() => nb.elementLoss(lr, ones, { kind: 'bce', reduction: 'mean', weight: wAdv }));
    keep(dRealLoss.grad);
    dReal = meanSigmoid(lr.toArray());
    keep(await nativeCall(() => dnet.backward([dRealLoss.grad], false)));
    adversarial = gAdv.loss;
    lossD = dRealLoss.loss + dFakeLoss.loss;
    if (!Number.isFinite(lossD))
      throw new VoxvaeError('ENOTFINITE', `riveraTrainStep: the discriminator's loss is ${lossD} (real ${dRealLoss.loss}, fake ${dFakeLoss.loss}); lower the learning rate or check the input`);
    // ∂L_G,adv/∂logits through the output activation; the step adds it to the reconstruction gradient.
    return { loss: adversarial, grad: await back(dxh!.toArray()) };
  };

  const r = await vae.trainStep(b, {
    beta: null,
    ...(o.latent !== undefined ? { latent: o.latent as LatentMode } : {}),
    recon,
    optimizer: gOpt,
    hooks: { latent: latentHook, ...(disc ? { logits: logitHook } : {}) },
  });
  if (disc) await nativeCall(() => disc.network.optimizer().step(dOpt));
  const population = (pop as { loss: number } | null)?.loss ?? 0;
  const loss = r.recon + population + ind.loss + adversarial;
  return { loss, recon: r.recon, population, individual: ind.loss, adversarial, discriminator: lossD, dReal, dFake, step: r.step };
}

function meanSigmoid(a: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += 1 / (1 + Math.exp(-a[i]!));
  return s / a.length;
}

/**
 * What D sees of the decoder's logits [n, C, D, H, W] and the way back: the output activation applied
 * natively (the one implementation decode uses), channels 1..C−1 of a softmax (C = 1: the single channel),
 * and `back(g)` = the gradient with respect to the logits of Σ g·x̂ (the background channel D does not see
 * gets no gradient of its own), through the native activation backward. Tensors it makes are `keep`-ed.
 */
export async function discriminatorView(nb: NativeBinding, logits: NativeTensor, n: number, dcfg: VaeConfig, keep: <T extends NativeTensor | null | undefined>(t: T) => T = (t) => t): Promise<{ xhat: Float32Array; back: (g: Float32Array) => Promise<Float32Array> }> {
  const C = dcfg.outChannels, S = logits.length / (n * C);
  const act = dcfg.outputActivation;
  const shape = [n, C, ...dcfg.inputShape];
  const y = keep(nativeSync(() => new nb.Tensor(logits.toArray(), shape, false)));
  await nativeCall(() => nb.activate(y, act));
  const p = y.toArray();
  const first = act === 'softmax' && C > 1 ? 1 : 0, dc = C - first;
  const xhat = first === 0 ? p : new Float32Array(n * dc * S);
  if (first) for (let b = 0; b < n; b++) xhat.set(p.subarray((b * C + first) * S, (b + 1) * C * S), b * dc * S);
  const back = async (g: Float32Array): Promise<Float32Array> => {
    let full = g;
    if (first) {
      full = new Float32Array(n * C * S);
      for (let b = 0; b < n; b++) full.set(g.subarray(b * dc * S, (b + 1) * dc * S), (b * C + first) * S);
    }
    const dy = keep(nativeSync(() => new nb.Tensor(full, shape, false)));
    const dx = (await nativeCall(() => nb.activateBackward(y, dy, act))) as NativeTensor;
    keep(dx);
    return dx.toArray();
  };
  return { xhat, back };
}

/** Real volumes in D's view: one-hot of classes 1..C−1 from Dice labels, else the target's channels 1..C−1 (softmax) or all. */
export function realVolumes(target: Float32Array, n: number, dcfg: VaeConfig, labels: boolean): Float32Array {
  const C = dcfg.outChannels, dc = discriminatorChannels(dcfg);
  const S = labels ? target.length / n : target.length / (n * C);
  if (!labels && dcfg.outputActivation !== 'softmax') return target;
  const out = new Float32Array(n * dc * S);
  const first = C > 1 && dcfg.outputActivation === 'softmax' ? 1 : 0;
  for (let b = 0; b < n; b++)
    for (let k = 0; k < dc; k++)
      for (let s = 0; s < S; s++)
        out[(b * dc + k) * S + s] = labels ? (target[b * S + s] === k + first ? 1 : 0) : target[(b * C + k + first) * S + s]!;
  return out;
}

export interface RiveraTrainOptions extends RiveraStepOptions {
  epochs: number;
  batchSize: number;
  seed?: number;
  onStep?: (r: RiveraStepResult & { epoch: number }) => void;
  /** After every epoch (e.g. validation). */
  onEpoch?: (e: RiveraEpoch) => void | Promise<void>;
  /** Stops after the current step (the result then holds the epochs completed). */
  signal?: AbortSignal;
}

export interface RiveraEpoch {
  epoch: number;
  loss: number;
  recon: number;
  population: number;
  individual: number;
  adversarial: number;
  discriminator: number;
}

/**
 * Epochs of riveraTrainStep over a dataset in the Trainer's seeded order. With the 'means' population
 * variance a trailing batch of one volume is dropped (its variance is undefined); otherwise kept.
 */
export async function trainRivera(vae: Vae, disc: Discriminator | null, data: VolumeDataset, o: RiveraTrainOptions): Promise<{ epochs: RiveraEpoch[]; steps: RiveraStepResult[] }> {
  is.options('options', o);
  is.integer('options.epochs', o.epochs, 1);
  is.integer('options.batchSize', o.batchSize, 1);
  if (o.seed !== undefined) is.seed('options.seed', o.seed);
  if (o.onStep !== undefined) is.fn('options.onStep', o.onStep);
  if (o.onEpoch !== undefined) is.fn('options.onEpoch', o.onEpoch);
  const means = (o.populationVariance ?? 'means') === 'means' && (o.populationWeight ?? 1) > 0;
  if (means && o.batchSize < 2) invalid('options.batchSize', "must be >= 2 for the population term with populationVariance 'means' (or use 'mixture')", o.batchSize);
  const { epochs: _e, batchSize: _b, seed: _s, onStep: _os, onEpoch: _oe, signal, ...stepOptions } = o;
  const epochs: RiveraEpoch[] = [], steps: RiveraStepResult[] = [];
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const acc = { loss: 0, recon: 0, population: 0, individual: 0, adversarial: 0, discriminator: 0, n: 0 };
    for await (const b of data.batches({ batchSize: o.batchSize, seed: o.seed ?? 0, epoch, shuffle: true, dropLast: false })) {
      const n = b.items.length;
      if (means && n < 2) continue;
      if (signal?.aborted) return { epochs, steps };
      const r = await riveraTrainStep(vae, disc, { input: b.input, target: b.target, shape: b.shape }, stepOptions);
      steps.push(r);
      o.onStep?.({ ...r, epoch });
      acc.loss += r.loss * n; acc.recon += r.recon * n; acc.population += r.population * n; acc.individual += r.individual * n; acc.adversarial += r.adversarial * n; acc.discriminator += (disc ? r.discriminator : 0) * n; acc.n += n;
    }
    const k = Math.max(1, acc.n);
    epochs.push({ epoch: epoch + 1, loss: acc.loss / k, recon: acc.recon / k, population: acc.population / k, individual: acc.individual / k, adversarial: acc.adversarial / k, discriminator: disc ? acc.discriminator / k : NaN });
    await o.onEpoch?.(epochs[epochs.length - 1]!);
  }
  return { epochs, steps };
}
