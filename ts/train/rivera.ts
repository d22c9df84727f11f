// Rivera's recipe ("How to train your VAE", arXiv 2309.13160; official code How2TrainUrVAE,
// VAE_GAN.train_step) on voxvae's 3D VAEs: the per-sample KL is replaced by
//   L_ind = w_ind · mean_i Σ_k (σ²_ik − log σ²_ik − 1)                 (w_ind = 0.1: σ only, μ is free)
//   L_pop = w_pop · ½ Σ_k (μ̄_k² + v̄_k − log v̄_k − 1)                  (population of means → N(0, I))
// and an adversarial term from a 3D PatchGAN D (w_adv = 100):
//   L_G = L_rec + L_pop + L_ind + w_adv · BCE(1, D(x̂)),   L_D = w_adv · [BCE(1, D(x)) + BCE(0, D(x̂))],
// with generator (encoder + decoder) and D updated in the same step, each by its own Adam
// (lr 1e-4, β1 = 0.5 by default, as the official code). v̄ is the biased variance of the μ's
// ('means', the code's choice and the default) or that plus the mean σ² ('mixture', the moment-matched
// aggregate posterior). The step is composed like Vae.trainStep, top to bottom:
//   encoder → reparameterize → decoder → x̂ = act(logits)
//   D(x̂): BCE(0) and BCE(1) gradients; backward(BCE(1), input grad) → ∂L_G,adv/∂x̂; D grads reset;
//         backward(BCE(0)) → D's fake-half gradient (two backward passes over one forward)
//   D(x):  backward(BCE(1)) → D's real-half gradient (added)
//   decoder backward(recon grad + ∂x̂/∂logits · ∂L_G,adv/∂x̂) → dz → + L_pop/L_ind grads → encoder
//   Adam on encoder + decoder, Adam on D.
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
import { buildDiscriminator, patchGan3d, patchGridShape, validateDiscriminatorConfig, type DiscriminatorConfig, type DiscriminatorConfigInput } from '../discriminator.js';
import type { VolumeDataset } from '../data/dataset.js';
import { native, nativeCall, nativeSync, type NativeBinding, type NativeTensor, type Reduction } from '../native.js';
import { Network, type OptimizerConfig } from '../network.js';
import { Vae, type Batch, type LatentMode, type ReconLoss } from '../vae.js';

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
  /** `binding`: the engine to run on (default the CPU addon; discriminatorFor uses the VAE's). */
  constructor(config: DiscriminatorConfig, seed = 0, binding: NativeBinding = native()) {
    this.config = validateDiscriminatorConfig(config);
    this.seed = seed;
    this.network = new Network(buildDiscriminator(this.config), seed + 2, binding);
  }
  /** Patch logits [N, 1, D/8, H/8, W/8] (eval mode: running BN statistics, no dropout, unless mode 'train'). */
  async forward(x: Float32Array, opts: { mode?: 'train' | 'eval'; step?: number } = {}): Promise<Float32Array> {
    const [D, H, W] = this.config.inputShape;
    const per = this.config.inChannels * D * H * W;
    if (!(x instanceof Float32Array) || x.length === 0 || x.length % per !== 0)
      throw new VoxvaeError('ESHAPE', `x has ${x?.length} values, not a positive multiple of one sample's ${per}`, { path: 'x' });
    const n = x.length / per;
    const t = nativeSync(() => new this.network.binding.Tensor(x, [n, this.config.inChannels, D, H, W], true));
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
  return new Discriminator(patchGan3d({ ...opts, inputShape: dcfg.inputShape, inChannels: discriminatorChannels(dcfg) }), vae.seed, vae.encoder.network.binding);
}

const DEFAULT_OPT: OptimizerConfig = { kind: 'adam', lr: 1e-4, betas: [0.5, 0.999], eps: 1e-7, weightDecay: 0 };

function resolveOpt(o: Partial<OptimizerConfig> | undefined, field: string): OptimizerConfig {
  const c: OptimizerConfig = { ...DEFAULT_OPT, ...(o ?? {}) };
  if (c.kind !== 'adam' && c.kind !== 'adamw') invalid(`${field}.kind`, "must be 'adam' or 'adamw'", c.kind);
  if (!(c.lr >= 0 && Number.isFinite(c.lr))) invalid(`${field}.lr`, 'must be a finite number >= 0', c.lr);
  if (!Array.isArray(c.betas) || c.betas.length !== 2 || !c.betas.every((b) => b >= 0 && b < 1)) invalid(`${field}.betas`, 'must be two numbers in [0, 1)', c.betas);
  if (!(c.eps >= 0) || !(c.weightDecay >= 0)) invalid(field, 'eps and weightDecay must be >= 0', c);
  return c;
}

const weightOf = (v: number | undefined, def: number, field: string): number => {
  const w = v ?? def;
  if (!(typeof w === 'number' && w >= 0 && Number.isFinite(w))) invalid(field, 'must be a finite number >= 0', w);
  return w;
};

const LATENT: Record<LatentMode, 0 | 1 | 2> = { sample: 0, mean: 1, 'mean+std': 2 };

/**
 * Rivera's training step on a Vae (any encoder/decoder with μ, log σ² outputs) and an optional
 * discriminator (null: the recipe without the GAN). Advances vae.step like Vae.trainStep.
 */
export async function riveraTrainStep(vae: Vae, disc: Discriminator | null, batch: Batch | Float32Array, opts: RiveraStepOptions = {}): Promise<RiveraStepResult> {
  const b: Batch = batch instanceof Float32Array ? { input: batch } : batch;
  const cfg = vae.config, dcfg = vae.decoder.config;
  if (vae.encoder.frozen) invalid('vae.encoder', 'is frozen: Rivera\'s recipe trains the encoder (unfreeze it)');
  const L = cfg.latentSize, [D, H, W] = cfg.inputShape, S = D * H * W;
  if (!(b.input instanceof Float32Array) || b.input.length === 0 || b.input.length % (cfg.inChannels * S) !== 0)
    throw new VoxvaeError('ESHAPE', `batch.input has ${b.input?.length} values, not a positive multiple of one sample's ${cfg.inChannels * S}`, { path: 'batch.input' });
  const n = b.input.length / (cfg.inChannels * S);
  const wInd = weightOf(opts.individualWeight, 0.1, 'options.individualWeight');
  const wPop = weightOf(opts.populationWeight, 1, 'options.populationWeight');
  const wAdv = weightOf(opts.adversarialWeight, 100, 'options.adversarialWeight');
  const indRed = opts.individualReduction ?? 'mean';
  if (indRed !== 'mean' && indRed !== 'sum') invalid('options.individualReduction', "must be 'mean' or 'sum'", indRed);
  const popVar = opts.populationVariance ?? 'means';
  if (popVar !== 'means' && popVar !== 'mixture') invalid('options.populationVariance', "must be 'means' or 'mixture'", popVar);
  if (popVar === 'means' && wPop > 0 && n < 2)
    throw new VoxvaeError('EINVAL', `Rivera's population term needs a batch of at least 2 volumes (got 1): the variance of one mean is 0 and log 0 = −∞. Use batchSize >= 2 (with dropLast), or populationVariance: 'mixture', which is defined for one volume`, { path: 'batch.input' });
  const latent = opts.latent ?? 'sample';
  if (!(latent in LATENT)) invalid('options.latent', "must be 'sample', 'mean' or 'mean+std'", latent);
  const recon: ReconLoss = { ...(dcfg.outputActivation === 'softmax' ? { kind: 'dice', weight: 80, reduction: 'sum' } : { kind: 'mse', weight: 1, reduction: 'mean' }), ...(opts.recon ?? {}) } as ReconLoss;
  if (!['dice', 'bce', 'mse', 'l1'].includes(recon.kind)) invalid('options.recon.kind', "must be 'dice', 'bce', 'mse' or 'l1'", recon.kind);
  if (recon.kind === 'dice' && dcfg.outputActivation !== 'softmax') invalid('options.recon.kind', "'dice' needs a softmax decoder", recon.kind);
  const gOpt = resolveOpt(opts.optimizer, 'options.optimizer'), dOpt = resolveOpt(opts.discriminatorOptimizer, 'options.discriminatorOptimizer');
  const C = dcfg.outChannels;
  const dc = discriminatorChannels(dcfg);
  if (disc) {
    if (disc.config.inChannels !== dc) invalid('discriminator.config.inChannels', `must be ${dc} for this decoder (what D sees: see ts/train/rivera.ts)`, disc.config.inChannels);
    if (disc.config.inputShape.some((d, i) => d !== cfg.inputShape[i])) invalid('discriminator.config.inputShape', `must equal the VAE's [${cfg.inputShape.join(', ')}]`, disc.config.inputShape);
  }
  const targetLen = recon.kind === 'dice' ? n * S : n * C * S;
  let target = b.target;
  if (!target) {
    if ((recon.kind === 'dice' && cfg.inChannels !== 1) || (recon.kind !== 'dice' && C !== cfg.inChannels)) invalid('batch.target', 'is required for this configuration');
    target = b.input;
  }
  if (!(target instanceof Float32Array) || target.length !== targetLen) throw new VoxvaeError('ESHAPE', `batch.target has ${target?.length} values, expected ${targetLen} for ${recon.kind}`, { path: 'batch.target' });

  // Everything runs on the VAE's engine (CPU or CUDA); the discriminator must live on the same one.
  const nb = vae.encoder.network.binding;
  if (disc && disc.network.binding !== nb) invalid('discriminator', "must be created on the VAE's backend (use discriminatorFor(vae))");
  const enc = vae.encoder.network, dec = vae.decoder.network;
  const live: (NativeTensor | null | undefined)[] = [];
  const keep = <T extends NativeTensor | null | undefined>(t: T): T => (live.push(t), t);
  const mk = (data: Float32Array, shape: number[], field: string): NativeTensor => keep(nativeSync(() => new nb.Tensor(data, shape, true)) as NativeTensor) ?? invalid(field, 'could not be copied');
  const step = vae.step;
  try {
    const x = mk(b.input, [n, cfg.inChannels, D, H, W], 'batch.input');
    const tgt = mk(target, recon.kind === 'dice' ? [n, S] : [n, C, D, H, W], 'batch.target');
    nativeSync(() => {
      enc.net.zeroGrad();
      dec.net.zeroGrad();
    });
    const [mu, logvar] = (await nativeCall(() => enc.net.forward(x, n, true))).map(keep) as [NativeTensor, NativeTensor];
    const r = nativeSync(() => nb.reparameterize(mu, logvar, { latent, seed: vae.seed, step }));
    keep(r.z);
    keep(r.eps);
    const [logits] = (await nativeCall(() => dec.net.forward(r.z, n, true, vae.seed, step))).map(keep) as [NativeTensor];
    const rec = await nativeCall(() =>
      recon.kind === 'dice'
        ? nb.diceLoss(logits, tgt, { smoothNr: recon.smoothNr ?? 1e-5, smoothDr: recon.smoothDr ?? 1e-5, reduction: recon.reduction, weight: recon.weight })
        : nb.elementLoss(logits, tgt, { kind: recon.kind as 'bce' | 'mse' | 'l1', reduction: recon.reduction, weight: recon.weight }),
    );
    keep(rec.grad);
    // Latent terms: gradients into (dmu, dlogvar), then the reparameterization adds the decoder's.
    const pop = wPop > 0 ? nativeSync(() => nb.populationKl(mu, popVar === 'mixture' ? logvar : null, { variance: popVar, weight: wPop })) : null;
    keep(pop?.dmu);
    keep(pop?.dlogvar);
    const ind = nativeSync(() => nb.variancePenalty(logvar, { reduction: indRed, weight: wInd, dlogvar: pop?.dlogvar ?? null }));
    keep(ind.dlogvar);

    let adversarial = 0, lossD = NaN, dReal = NaN, dFake = NaN;
    let dlogits: NativeTensor = rec.grad!;
    if (disc) {
      const dnet = disc.network.net;
      const grid = patchGridShape(disc.config);
      const G = grid[1] * grid[2] * grid[3];
      const lg = logits.toArray();
      const { xhat, back } = discriminatorView(lg, n, dcfg);
      const realView = realVolumes(target, n, dcfg, recon.kind === 'dice');
      const xh = mk(xhat, [n, dc, D, H, W], 'x̂');
      const xr = mk(realView, [n, dc, D, H, W], 'x');
      const ones = mk(new Float32Array(n * G).fill(1), [n, 1, ...grid.slice(1)], 'ones');
      const zeros = mk(new Float32Array(n * G), [n, 1, ...grid.slice(1)], 'zeros');
      nativeSync(() => dnet.zeroGrad());
      const [lf] = (await nativeCall(() => dnet.forward(xh, n, true, disc.seed + 2, 2 * step))).map(keep) as [NativeTensor];
      const gAdv = await nativeCall(() => nb.elementLoss(lf, ones, { kind: 'bce', reduction: 'mean', weight: wAdv }));
      keep(gAdv.grad);
      const dFakeLoss = await nativeCall(() => nb.elementLoss(lf, zeros, { kind: 'bce', reduction: 'mean', weight: wAdv }));
      keep(dFakeLoss.grad);
      dFake = meanSigmoid(lf.toArray());
      const dxh = keep(await nativeCall(() => dnet.backward([gAdv.grad], true)));
      nativeSync(() => dnet.zeroGrad()); // the generator's pass must not train D
      keep(await nativeCall(() => dnet.backward([dFakeLoss.grad], false)));
      const [lr] = (await nativeCall(() => dnet.forward(xr, n, true, disc.seed + 2, 2 * step + 1))).map(keep) as [NativeTensor];
      const dRealLoss = await nativeCall(() => nb.elementLoss(lr, ones, { kind: 'bce', reduction: 'mean', weight: wAdv }));
      keep(dRealLoss.grad);
      dReal = meanSigmoid(lr.toArray());
      keep(await nativeCall(() => dnet.backward([dRealLoss.grad], false)));
      adversarial = gAdv.loss;
      lossD = dRealLoss.loss + dFakeLoss.loss;
      // ∂L_G,adv/∂logits through the output activation, added to the reconstruction gradient.
      const ga = back(dxh!.toArray());
      const gr = rec.grad!.toArray();
      for (let i = 0; i < gr.length; i++) gr[i]! += ga[i]!;
      dlogits = mk(gr, logits.shape, 'dlogits');
    }
    const loss = rec.loss + (pop?.loss ?? 0) + ind.loss + adversarial;
    if (!Number.isFinite(loss) || (disc && !Number.isFinite(lossD)))
      throw new VoxvaeError('ENOTFINITE', `riveraTrainStep: the loss is ${loss} (recon ${rec.loss}, population ${pop?.loss}, individual ${ind.loss}, adversarial ${adversarial}, D ${lossD}); lower the learning rate or check the input`);
    const dz = keep(await nativeCall(() => dec.net.backward([dlogits], true)));
    const g = nativeSync(() => nb.reparameterizeBackward(dz!, r.eps, logvar, { dmu: pop?.dmu ?? null, dlogvar: ind.dlogvar }));
    keep(g.dmu);
    keep(g.dlogvar);
    await nativeCall(() => enc.net.backward([g.dmu, g.dlogvar], false));
    for (const net of [dec, enc]) await nativeCall(() => net.optimizer().step(gOpt));
    if (disc) await nativeCall(() => disc.network.optimizer().step(dOpt));
    vae.step++;
    return { loss, recon: rec.loss, population: pop?.loss ?? 0, individual: ind.loss, adversarial, discriminator: lossD, dReal, dFake, step: vae.step };
  } finally {
    for (const t of live) t?.dispose();
  }
}

function meanSigmoid(a: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += 1 / (1 + Math.exp(-a[i]!));
  return s / a.length;
}

/** x̂ as D sees it, and the map from ∂/∂x̂ back to ∂/∂logits. logits [n, C, S]. */
export function discriminatorView(logits: Float32Array, n: number, dcfg: VaeConfig): { xhat: Float32Array; back: (g: Float32Array) => Float32Array } {
  const C = dcfg.outChannels, S = logits.length / (n * C);
  if (dcfg.outputActivation === 'none') return { xhat: Float32Array.from(logits), back: (g) => g };
  if (dcfg.outputActivation === 'sigmoid') {
    const p = logits.map((v) => 1 / (1 + Math.exp(-v)));
    return { xhat: p, back: (g) => g.map((v, i) => v * p[i]! * (1 - p[i]!)) };
  }
  // Softmax: p over channels; D sees channels 1..C−1 (C = 1: the single channel).
  const p = new Float32Array(logits.length);
  for (let b = 0; b < n; b++)
    for (let s = 0; s < S; s++) {
      const base = b * C * S + s;
      let m = -Infinity, sum = 0;
      for (let k = 0; k < C; k++) m = Math.max(m, logits[base + k * S]!);
      for (let k = 0; k < C; k++) sum += Math.exp(logits[base + k * S]! - m);
      for (let k = 0; k < C; k++) p[base + k * S] = Math.exp(logits[base + k * S]! - m) / sum;
    }
  const first = C > 1 ? 1 : 0, dc = C - first;
  const xhat = new Float32Array(n * dc * S);
  for (let b = 0; b < n; b++) xhat.set(p.subarray((b * C + first) * S, (b + 1) * C * S), b * dc * S);
  const back = (g: Float32Array): Float32Array => {
    const out = new Float32Array(logits.length);
    for (let b = 0; b < n; b++)
      for (let s = 0; s < S; s++) {
        const base = b * C * S + s;
        // dl_j = p_j (g_j − Σ_c g_c p_c), with g_0 = 0 for the background channel D does not see.
        let dot = 0;
        for (let k = first; k < C; k++) dot += g[(b * dc + k - first) * S + s]! * p[base + k * S]!;
        for (let k = 0; k < C; k++) {
          const gk = k >= first ? g[(b * dc + k - first) * S + s]! : 0;
          out[base + k * S] = p[base + k * S]! * (gk - dot);
        }
      }
    return out;
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
  if (!Number.isInteger(o.epochs) || o.epochs < 1) invalid('options.epochs', 'must be a positive integer', o.epochs);
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) invalid('options.batchSize', 'must be a positive integer', o.batchSize);
  const means = (o.populationVariance ?? 'means') === 'means' && (o.populationWeight ?? 1) > 0;
  if (means && o.batchSize < 2) invalid('options.batchSize', "must be >= 2 for the population term with populationVariance 'means' (or use 'mixture')", o.batchSize);
  const epochs: RiveraEpoch[] = [], steps: RiveraStepResult[] = [];
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const acc = { loss: 0, recon: 0, population: 0, individual: 0, adversarial: 0, discriminator: 0, n: 0 };
    for await (const b of data.batches({ batchSize: o.batchSize, seed: o.seed ?? 0, epoch, shuffle: true, dropLast: false })) {
      const n = b.items.length;
      if (means && n < 2) continue;
      const r = await riveraTrainStep(vae, disc, { input: b.input, target: b.target }, o);
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
