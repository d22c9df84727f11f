// One training step, composed by every training method: Vae.trainStep (β-VAE; a frozen encoder is the
// two-stage method's stage 2), Decoder.trainStep (a decoder alone on given latents) and riveraTrainStep
// (population prior + variance penalty + PatchGAN). Top to bottom:
//
//   encoder forward (train mode; eval mode when frozen) → μ, log σ²   (skipped for a decoder alone: z given)
//   z = reparameterize(μ, log σ², latent, seed, step)
//   decoder forward(z) → logits;  recon loss and ∂/∂logits
//   KL(μ, log σ²) measured; β = options.beta, or options.beta(this step's KL) — before any backward
//   latent hook(μ, log σ², z) → extra loss, ∂/∂μ, ∂/∂log σ², ∂/∂z      (e.g. Rivera's latent terms)
//   logit hook(logits)        → extra loss, ∂/∂logits                 (e.g. Rivera's adversarial term)
//   non-finite loss → ENOTFINITE (nothing updated)
//   decoder backward(∂recon + ∂hook) → ∂z;  reparameterization backward + β·∂KL + ∂hook → encoder backward
//   clip the joint gradient (maxGradNorm), one Adam/AdamW step on each trained network.
//
// Data-parallel (a ProcessGroup joined, ts/dist): the KL a β function sees is the all-reduced batch mean
// over every rank's samples, the reported loss terms are the mean over ranks (a non-finite one on any rank
// fails the step on every rank), each rank draws its noise from seed + rank·2^32, and the gradients are
// averaged over ranks between backward and clipping: the decoder's all-reduce runs while the encoder's
// backward does (options.overlap of the group), the encoder's after it.
//
// β as a function: the β controllers (ts/train/beta.ts) compute β from the current minibatch's KL after
// the forward pass and before backward, as their authors' code does; the function receives the KL of
// this step (klPerSample: batch mean of Σ_j KL_j) and returns the β applied to it.
import { VoxvaeError, invalid } from '../errors.js';
import * as is from '../is.js';
import type { VaeConfig } from '../config.js';
import { nativeCall, nativeSync, type NativeBinding, type NativeTensor, type Reduction } from '../native.js';
import type { Network, OptimizerConfig } from '../network.js';
import { LATENT_MODES, type LatentMode } from '../types.js';
import { activeGroup, type ProcessGroup } from '../dist/index.js';

export interface ReconLoss {
  kind: 'dice' | 'bce' | 'mse' | 'l1';
  weight: number;
  reduction: Reduction;
  /** Dice smoothing (MONAI defaults 1e-5). */
  smoothNr?: number;
  smoothDr?: number;
}

/** The KL weight: a number, or a function of this step's measured KL (per sample, see StepResult.klPerSample)
 *  returning β — called once per step after the forward pass and before backward (β controllers). */
export type KlWeight = number | ((klPerSample: number) => number);

/** What a latent hook sees: native tensors of the model's backend, valid during the call. */
export interface LatentHookInput {
  n: number;
  latentSize: number;
  mu: NativeTensor;
  logvar: NativeTensor;
  z: NativeTensor;
  binding: NativeBinding;
  /** The step being taken (0-based: the model's step before this one). */
  step: number;
  /** Registers a tensor the hook created for disposal at the end of the step. */
  keep<T extends NativeTensor | null | undefined>(t: T): T;
}

/** A latent hook's extra term: its (weighted) loss and gradients, each [n, latentSize] on the same backend. */
export interface LatentHookResult {
  loss: number;
  dmu?: NativeTensor | null;
  dlogvar?: NativeTensor | null;
  dz?: NativeTensor | null;
}

export interface LogitHookInput {
  n: number;
  /** The decoder's logits [n, outChannels, D, H, W] (train mode). */
  logits: NativeTensor;
  /** The reconstruction target (class indices for Dice, else values). */
  target: Float32Array;
  binding: NativeBinding;
  step: number;
  keep<T extends NativeTensor | null | undefined>(t: T): T;
}

/** A logit hook's extra term: its (weighted) loss and its gradient w.r.t. the logits (NCDHW), or null. */
export interface LogitHookResult {
  loss: number;
  grad: Float32Array | null;
}

/** Extra gradients a training method adds to the step (see the file comment). */
export interface StepHooks {
  /** Not called while the encoder is frozen (nothing would receive its gradient). */
  latent?: (t: LatentHookInput) => LatentHookResult | Promise<LatentHookResult>;
  logits?: (t: LogitHookInput) => LogitHookResult | Promise<LogitHookResult>;
}

export interface TrainStepOptions {
  /** KL weight, a number or a function of this step's KL (skullVAE stage 1: 100; ignored while the encoder
   *  is frozen). null: no KL term (a latent hook supplies the prior; kl is reported as NaN). Default 1. */
  beta?: KlWeight | null;
  /** How z is formed from (mu, logvar). Default 'sample'. */
  latent?: LatentMode;
  /** Default: 80 × Dice (sum reduction), skullVAE's loss, for softmax outputs; else MSE (mean). */
  recon?: Partial<ReconLoss>;
  /** KL reduction over the batch (summed over latent dimensions always). Default 'sum' (skullVAE). */
  klReduction?: Reduction;
  optimizer?: Partial<OptimizerConfig>;
  /** Clip the gradient of all trained parameters to this global L2 norm (torch clip_grad_norm_). */
  maxGradNorm?: number;
  /** Extra latent and logit gradients (training methods beyond the β-VAE). */
  hooks?: StepHooks;
}

const STEP_OPTIONS = ['beta', 'latent', 'recon', 'klReduction', 'optimizer', 'maxGradNorm', 'hooks'];

export interface Batch {
  /** [N, inChannels, D, H, W] values. */
  input: Float32Array;
  /** Dice: class indices [N, D, H, W]; bce/mse/l1: [N, outChannels, D, H, W]. Default: the input. */
  target?: Float32Array;
  /** The input's shape [N, inChannels, D, H, W] (a VolumeDataset batch carries it). Without it the input
   *  is one sample: a volume of another size is an ESHAPE error, never taken as a batch of several. */
  shape?: readonly number[];
}

/**
 * The number of samples in a training batch: batch.shape's N (its other dimensions must be the model's
 * [inChannels, D, H, W]), or 1 without a shape. A Float32Array alone is one sample.
 */
export function batchSamples(batch: Batch, config: VaeConfig, field = 'batch'): number {
  const [D, H, W] = config.inputShape;
  const sample = [config.inChannels, D, H, W];
  const perSample = config.inChannels * D * H * W;
  const describe = `[${sample.join(', ')}]`;
  if (batch.shape === undefined) {
    is.float32Array(`${field}.input`, batch.input);
    if (batch.input.length === perSample) return 1;
    throw new VoxvaeError(
      'ESHAPE',
      `${field}.input has ${batch.input.length} values; one sample ${describe} has ${perSample}` +
        (batch.input.length > 0 && batch.input.length % perSample === 0
          ? `: give ${field}.shape [${batch.input.length / perSample}, ${sample.join(', ')}] if it is a batch of ${batch.input.length / perSample}`
          : ": resample the volumes to the model's shape"),
      { path: `${field}.input` },
    );
  }
  const shape = batch.shape;
  if (!Array.isArray(shape) || shape.length !== 5) invalid(`${field}.shape`, 'must be [N, inChannels, D, H, W]', shape);
  const n = is.integer(`${field}.shape[0]`, shape[0], 1, 1 << 24);
  if (shape.slice(1).some((d, i) => d !== sample[i]))
    throw new VoxvaeError('ESHAPE', `${field}.shape is [${shape.join(', ')}]; this model takes [N, ${sample.join(', ')}]: resample the volumes to the model's shape`, { path: `${field}.shape` });
  is.float32Array(`${field}.input`, batch.input);
  if (batch.input.length !== n * perSample)
    throw new VoxvaeError('ESHAPE', `${field}.input has ${batch.input.length} values; ${field}.shape [${shape.join(', ')}] has ${n * perSample}`, { path: `${field}.input` });
  return n;
}

export interface StepResult {
  /** weight·recon + β·KL + the hooks' terms (recon and the logit hook's term only while the encoder is frozen). */
  loss: number;
  /** The weighted reconstruction term. */
  recon: number;
  /** KL with the configured batch reduction, unweighted (NaN without a KL term). */
  kl: number;
  /** Mean over the batch of each sample's KL (what β controllers measure; NaN without a KL term). */
  klPerSample: number;
  /** The β applied (0 while the encoder is frozen or without a KL term). */
  beta: number;
  step: number;
}


const RECON_KINDS = ['dice', 'bce', 'mse', 'l1'] as const;
const REDUCTIONS = ['sum', 'mean'] as const;

/** The number of samples of `perSample` values in x (a positive multiple: training batches). */
export function batchOf(x: Float32Array, perSample: number, field: string): number {
  is.float32Array(field, x);
  if (x.length === 0 || x.length % perSample !== 0)
    throw new VoxvaeError('ESHAPE', `${field} has ${x.length} values, not a positive multiple of one sample's ${perSample}`, { path: field });
  return x.length / perSample;
}

/** Runs a native copy of user data; a NaN/Inf it refuses is reported naming `field`. */
export function copyingFrom<T>(field: string, f: () => T): T {
  try {
    return nativeSync(f);
  } catch (e) {
    if (e instanceof VoxvaeError && e.code === 'ENOTFINITE')
      throw new VoxvaeError('ENOTFINITE', `${field} ${e.message.replace(/^input /, '')}: replace NaN/Inf values (e.g. threshold the volume) before passing it`, { path: field });
    throw e;
  }
}

/** Copies data into a native tensor of `nb`; NaN/Inf is refused with an error naming `field`. */
export function tensor(data: Float32Array, shape: number[], field: string, nb: NativeBinding): NativeTensor {
  return copyingFrom(field, () => new nb.Tensor(data, shape, true));
}

export function release(...ts: (NativeTensor | null | undefined)[]): void {
  for (const t of ts) t?.dispose();
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Native tensors that a model reuses from one training step to the next (batch input, target, the
 * reconstruction loss's gradient), so that steps over batches of one shape allocate no native memory:
 * the batch is copied into the existing buffer, and the loss writes its gradient into the same buffer
 * every step. A tensor is replaced when its shape changes (or the backend cannot refill one).
 */
export class StepTensors {
  private readonly tensors = new Map<string, NativeTensor>();

  /** The tensor `key` holding a copy of data (NaN/Inf refused, naming `field`). */
  fill(nb: NativeBinding, key: string, data: Float32Array, shape: number[], field: string): NativeTensor {
    const t = this.tensors.get(key);
    if (t && t.set && !t.disposed && sameShape(t.shape, shape)) {
      copyingFrom(field, () => t.set!(data, true));
      return t;
    }
    this.drop(key);
    const fresh = tensor(data, shape, field, nb);
    this.tensors.set(key, fresh);
    return fresh;
  }

  /** The tensor `key` of `shape`, contents unspecified (an output buffer). */
  output(nb: NativeBinding, key: string, shape: number[]): NativeTensor {
    const t = this.tensors.get(key);
    if (t && !t.disposed && sameShape(t.shape, shape)) return t;
    this.drop(key);
    const fresh = nativeSync(() => new nb.Tensor(null, shape));
    this.tensors.set(key, fresh);
    return fresh;
  }

  /** Whether t is one of these (and so must not be disposed with a step's temporaries). */
  has(t: NativeTensor | null | undefined): boolean {
    for (const v of this.tensors.values()) if (v === t) return true;
    return false;
  }

  private drop(key: string): void {
    this.tensors.get(key)?.dispose();
    this.tensors.delete(key);
  }

  dispose(): void {
    for (const t of this.tensors.values()) t.dispose();
    this.tensors.clear();
  }
}

/** The reconstruction loss with every default filled in (by the decoder's output activation). */
export function resolveRecon(dcfg: VaeConfig, r: Partial<ReconLoss> | undefined): ReconLoss {
  const defaultRecon: ReconLoss = dcfg.outputActivation === 'softmax' ? { kind: 'dice', weight: 80, reduction: 'sum' } : { kind: 'mse', weight: 1, reduction: 'mean' };
  const recon: ReconLoss = { ...defaultRecon, ...is.options('options.recon', r) } as ReconLoss;
  is.oneOf('options.recon.kind', recon.kind, RECON_KINDS);
  is.number('options.recon.weight', recon.weight, { min: 0 });
  is.oneOf('options.recon.reduction', recon.reduction, REDUCTIONS);
  if (recon.smoothNr !== undefined) is.number('options.recon.smoothNr', recon.smoothNr, { min: 0 });
  if (recon.smoothDr !== undefined) is.number('options.recon.smoothDr', recon.smoothDr, { min: 0 });
  return recon;
}

/** An optimizer config: the options given, else the previous step's, else Adam lr 1e-4 (AdamW: weight decay 0.01). */
export function resolveOptimizer(o: Partial<OptimizerConfig> | undefined, prev: OptimizerConfig | null, field = 'options.optimizer'): OptimizerConfig {
  const given = is.options(field, o);
  const kind = is.oneOf(`${field}.kind`, given.kind ?? prev?.kind ?? 'adam', ['adam', 'adamw'] as const);
  const cfg: OptimizerConfig = {
    kind,
    lr: given.lr ?? prev?.lr ?? 1e-4,
    betas: given.betas ?? prev?.betas ?? [0.9, 0.999],
    eps: given.eps ?? prev?.eps ?? 1e-8,
    weightDecay: given.weightDecay ?? prev?.weightDecay ?? (kind === 'adamw' ? 0.01 : 0),
  };
  is.number(`${field}.lr`, cfg.lr, { min: 0 });
  if (!Array.isArray(cfg.betas) || cfg.betas.length !== 2) invalid(`${field}.betas`, 'must be two numbers in [0, 1)', cfg.betas);
  cfg.betas.forEach((b, i) => is.number(`${field}.betas[${i}]`, b, { min: 0, below: 1 }));
  is.number(`${field}.eps`, cfg.eps, { min: 0 });
  is.number(`${field}.weightDecay`, cfg.weightDecay, { min: 0 });
  return cfg;
}

/** Checks (or defaults to the input) the reconstruction target for n samples. */
export function resolveTarget(recon: ReconLoss, dcfg: VaeConfig, n: number, target: Float32Array | undefined, input: Float32Array | null, inChannels: number): Float32Array {
  const S = dcfg.inputShape[0] * dcfg.inputShape[1] * dcfg.inputShape[2];
  const targetLen = recon.kind === 'dice' ? n * S : n * dcfg.outChannels * S;
  if (!target) {
    if (!input) invalid('target', 'is required');
    if (recon.kind === 'dice' && inChannels !== 1) invalid('batch.target', 'is required for Dice when inChannels != 1');
    if (recon.kind !== 'dice' && dcfg.outChannels !== inChannels) invalid('batch.target', 'is required when outChannels != inChannels');
    target = input;
  }
  is.float32Array('batch.target', target);
  if (target.length !== targetLen) throw new VoxvaeError('ESHAPE', `batch.target has ${target.length} values, expected ${targetLen} for ${recon.kind}`, { path: 'batch.target' });
  return target;
}

/** The reconstruction loss and its gradient, written into gradOut where the backend supports it. */
function reconLoss(recon: ReconLoss, dcfg: VaeConfig, logits: NativeTensor, tgt: NativeTensor, n: number, nb: NativeBinding, gradOut: NativeTensor | null): Promise<{ loss: number; grad: NativeTensor | null }> {
  const S = dcfg.inputShape[0] * dcfg.inputShape[1] * dcfg.inputShape[2];
  return nativeCall(() =>
    recon.kind === 'dice'
      ? nb.diceLoss(logits, tgt, { smoothNr: recon.smoothNr ?? 1e-5, smoothDr: recon.smoothDr ?? 1e-5, reduction: recon.reduction, weight: recon.weight, gradOut })
      : nb.elementLoss(logits, tgt, { kind: recon.kind as 'bce' | 'mse' | 'l1', reduction: recon.reduction, weight: recon.weight, gradOut }),
  );
}

/** Clips the joint gradient of `nets` to maxGradNorm (torch clip_grad_norm_) and takes one Adam/AdamW step on each. */
export async function optimizerStep(nets: Network[], optim: OptimizerConfig, maxGradNorm: number | undefined): Promise<void> {
  let scale = 1;
  if (maxGradNorm !== undefined) {
    const total = Math.sqrt(nets.reduce((a, n) => a + n.net.gradSumSq(), 0));
    const coef = maxGradNorm / (total + 1e-6);
    if (coef < 1) scale = coef;
  }
  for (const net of nets) await nativeCall(() => net.optimizer().step({ ...optim, gradScale: scale }));
}

/** The parts of a model a step trains. */
export interface StepModel {
  /** null: a decoder alone, trained on the latents given as the batch input. */
  encoder: { readonly network: Network; readonly config: VaeConfig; readonly frozen: boolean } | null;
  decoder: { readonly network: Network; readonly config: VaeConfig };
  /** Seed of the reparameterization noise and the decoder's dropout. */
  seed: number;
  /** The step being taken: the position in the noise stream. */
  step: number;
  /** Reused native buffers (null: fresh tensors every step). */
  tensors: StepTensors | null;
  /** The previous step's optimizer config (the defaults of options.optimizer), or null. */
  optimizer: OptimizerConfig | null;
}

/** What a step measured, and the options it resolved (the caller keeps them for the next step). */
export interface StepOutcome {
  loss: number;
  recon: number;
  kl: number;
  klPerSample: number;
  beta: number;
  /** The hooks' losses (0 without them). */
  latentTerm: number;
  logitTerm: number;
  optimizer: OptimizerConfig;
  latent: LatentMode;
  /** Whether the encoder was trained (not frozen, present). */
  trainedEncoder: boolean;
}

function checkBeta(v: unknown, field: string): number {
  return is.number(field, v, { min: 0 });
}

/**
 * One training step of `model` on a batch: volumes (with an encoder) or latents [N, latentSize] (a
 * decoder alone) and the reconstruction target. Options are validated before any native work; when it
 * throws, no weight or optimizer state has changed (a throw after the forward pass leaves BatchNorm's
 * running statistics moved, as a PyTorch forward would). `name` prefixes the ENOTFINITE message.
 */
export async function trainStep(model: StepModel, batch: Batch, opts: TrainStepOptions, name: string): Promise<StepOutcome> {
  const o = is.options('options', opts);
  is.knownKeys('options', o, STEP_OPTIONS);
  const dcfg = model.decoder.config;
  const enc = model.encoder;
  const [D, H, W] = dcfg.inputShape;
  const S = D * H * W;
  const L = dcfg.latentSize;
  const inChannels = enc ? enc.config.inChannels : dcfg.inChannels;
  const n = enc ? batchSamples(batch, enc.config) : batchOf(batch.input, L, 'z');
  const beta = o.beta === undefined ? 1 : o.beta;
  if (typeof beta === 'function') is.fn('options.beta', beta, '(klPerSample) => β');
  else if (beta !== null) checkBeta(beta, 'options.beta');
  const latent = is.oneOf('options.latent', o.latent ?? 'sample', LATENT_MODES);
  const recon = resolveRecon(dcfg, o.recon);
  const klReduction = is.oneOf('options.klReduction', o.klReduction ?? 'sum', REDUCTIONS);
  const optim = resolveOptimizer(o.optimizer, model.optimizer);
  const maxGradNorm = o.maxGradNorm === undefined ? undefined : is.number('options.maxGradNorm', o.maxGradNorm, { above: 0 });
  const hooks = is.options('options.hooks', o.hooks);
  if (hooks.latent !== undefined) is.fn('options.hooks.latent', hooks.latent, '(input) => { loss, dmu?, dlogvar?, dz? }');
  if (hooks.logits !== undefined) is.fn('options.hooks.logits', hooks.logits, '(input) => { loss, grad }');
  // Targets: class indices for Dice, same-shaped values for the elementwise losses.
  const target = enc ? resolveTarget(recon, dcfg, n, batch.target, batch.input, inChannels) : resolveTarget(recon, dcfg, n, batch.target, null, inChannels);

  const dec = model.decoder.network;
  const nb = dec.binding;
  const trainEncoder = enc !== null && !enc.frozen;
  const live: (NativeTensor | null | undefined)[] = [];
  const keep = <T extends NativeTensor | null | undefined>(t: T): T => (live.push(t), t);
  const st = model.tensors;
  const fill = (key: string, data: Float32Array, shape: number[], field: string): NativeTensor => (st ? st.fill(nb, key, data, shape, field) : keep(tensor(data, shape, field, nb)));
  const step = model.step;
  const dist = activeGroup();
  // Each rank draws other noise (its samples are other samples); rank 0 draws a single process's.
  const noiseSeed = dist ? model.seed + dist.rank * 2 ** 32 : model.seed;
  try {
    const x = enc ? fill('input', batch.input, [n, inChannels, D, H, W], 'batch.input') : fill('input', batch.input, [n, L, 1, 1, 1], 'z');
    // The default target is the input itself: one copy serves both (the losses check lengths only).
    const tgt = target === batch.input ? x : fill('target', target, recon.kind === 'dice' ? [n, S] : [n, dcfg.outChannels, D, H, W], 'batch.target');
    nativeSync(() => {
      if (trainEncoder) enc.network.net.zeroGrad();
      dec.net.zeroGrad();
    });

    // Forward: encoder and reparameterization (or the latents given), decoder.
    let mu: NativeTensor | null = null, logvar: NativeTensor | null = null, eps: NativeTensor | null = null, z: NativeTensor = x;
    if (enc) {
      [mu, logvar] = (await nativeCall(() => enc.network.net.forward(x, n, trainEncoder))).map(keep) as [NativeTensor, NativeTensor];
      const r = nativeSync(() => nb.reparameterize(mu!, logvar!, { latent, seed: noiseSeed, step }));
      z = keep(r.z);
      eps = keep(r.eps);
    }
    const [logits] = (await nativeCall(() => dec.net.forward(z, n, true, noiseSeed, step))).map(keep) as [NativeTensor];

    // Losses and their gradients; β from this step's KL before any backward.
    // The CPU addon writes the gradient into a reused tensor; other backends return a new one.
    const gradOut = st && nb.backend === 'cpu' ? st.output(nb, 'reconGrad', logits.shape) : null;
    const rec = await reconLoss(recon, dcfg, logits, tgt, n, nb, gradOut);
    if (!st?.has(rec.grad)) keep(rec.grad);
    let klValue = NaN, klPerSample = NaN, betaApplied = 0;
    let klGrad: { dmu: NativeTensor; dlogvar: NativeTensor } | null = null;
    if (enc && beta !== null) {
      let b: number, measured: { loss: number; perSample: Float32Array } | null = null;
      if (typeof beta === 'number') b = beta;
      else {
        const m = nativeSync(() => nb.klNormal(mu!, logvar!, { reduction: klReduction, weight: 1 }));
        keep(m.dmu);
        keep(m.dlogvar);
        measured = m;
        let kps = measured.perSample.reduce((a, v) => a + v, 0) / n;
        if (dist) kps = await globalMean(dist, kps, n);
        if (!Number.isFinite(kps)) throw new VoxvaeError('ENOTFINITE', `${name}: the KL is ${kps} (recon ${rec.loss}); lower the learning rate or check the input`);
        b = beta(kps);
        if (typeof b !== 'number' || !(b >= 0) || !Number.isFinite(b)) invalid('options.beta', `returned ${b} for KL ${kps}: must return a finite number >= 0`, b);
      }
      const kl = nativeSync(() => nb.klNormal(mu!, logvar!, { reduction: klReduction, weight: trainEncoder ? b : 0 }));
      keep(kl.dmu);
      keep(kl.dlogvar);
      if (b > 0 && trainEncoder) klValue = kl.loss / b;
      else if (measured) klValue = measured.loss;
      else {
        const k1 = nativeSync(() => nb.klNormal(mu!, logvar!, { reduction: klReduction, weight: 1 }));
        release(k1.dmu, k1.dlogvar);
        klValue = k1.loss;
      }
      klPerSample = kl.perSample.reduce((a, v) => a + v, 0) / n;
      betaApplied = trainEncoder ? b : 0;
      klGrad = { dmu: kl.dmu, dlogvar: kl.dlogvar };
    }
    let lat: LatentHookResult | null = null;
    if (trainEncoder && hooks.latent) {
      lat = await hooks.latent({ n, latentSize: L, mu: mu!, logvar: logvar!, z, binding: nb, step, keep });
      for (const k of ['dmu', 'dlogvar', 'dz'] as const) if (lat[k] && !live.includes(lat[k])) keep(lat[k]);
    }
    let lg: LogitHookResult | null = null;
    if (hooks.logits) lg = await hooks.logits({ n, logits, target, binding: nb, step, keep });
    let loss = rec.loss + (trainEncoder && beta !== null ? betaApplied * klValue : 0) + (lat ? lat.loss : 0) + (lg ? lg.loss : 0);
    // The reported terms: the mean over ranks (klPerSample: over every rank's samples).
    let report = { recon: rec.loss, kl: klValue, klPerSample, latentTerm: lat?.loss ?? 0, logitTerm: lg?.loss ?? 0 };
    if (dist) {
      const v = new Float32Array([loss, rec.loss, klValue, klPerSample * n, n, report.latentTerm, report.logitTerm]);
      await dist.allReduce(v, 'sum', 'float64');
      const w = dist.worldSize;
      loss = v[0]! / w;
      report = { recon: v[1]! / w, kl: v[2]! / w, klPerSample: v[3]! / v[4]!, latentTerm: v[5]! / w, logitTerm: v[6]! / w };
    }
    if (!Number.isFinite(loss))
      throw new VoxvaeError('ENOTFINITE', `${name}: the loss is ${loss} (recon ${rec.loss}${enc ? `, KL ${klValue}` : ''}${lat ? `, latent term ${lat.loss}` : ''}${lg ? `, logit term ${lg.loss}` : ''}); lower the learning rate or check the input`);

    // Backward: decoder, reparameterization, encoder.
    let dlogits = rec.grad!;
    if (lg?.grad) {
      if (!(lg.grad instanceof Float32Array) || lg.grad.length !== logits.length)
        throw new VoxvaeError('ESHAPE', `${name}: the logit hook's gradient has ${(lg.grad as Float32Array | undefined)?.length} values; the logits have ${logits.length}`, { path: 'options.hooks.logits' });
      const gr = rec.grad!.toArray();
      const ga = lg.grad;
      for (let i = 0; i < gr.length; i++) gr[i]! += ga[i]!;
      dlogits = keep(nativeSync(() => new nb.Tensor(gr, logits.shape, true)));
    }
    let dz = keep(await nativeCall(() => dec.net.backward([dlogits], trainEncoder)));
    // Data-parallel: the decoder's gradient is complete; its all-reduce overlaps the encoder's backward.
    let decReduced = dist && dist.overlap ? dist.startGradients(dec.net, nb) : null;
    if (trainEncoder && dz) {
      if (lat?.dz) dz = keep(sum(nb, dz, lat.dz));
      const dmu = klGrad && lat?.dmu ? keep(sum(nb, klGrad.dmu, lat.dmu)) : klGrad?.dmu ?? lat?.dmu ?? null;
      const dlogvar = klGrad && lat?.dlogvar ? keep(sum(nb, klGrad.dlogvar, lat.dlogvar)) : klGrad?.dlogvar ?? lat?.dlogvar ?? null;
      const g = nativeSync(() => nb.reparameterizeBackward(dz!, eps!, logvar!, { dmu, dlogvar }));
      keep(g.dmu);
      keep(g.dlogvar);
      await nativeCall(() => enc.network.net.backward([g.dmu, g.dlogvar], false));
    }
    if (dist) {
      decReduced ??= dist.startGradients(dec.net, nb);
      await decReduced();
      if (trainEncoder) await dist.startGradients(enc.network.net, nb)();
    }
    await optimizerStep(trainEncoder ? [dec, enc.network] : [dec], optim, maxGradNorm);
    return { loss, ...report, beta: betaApplied, optimizer: optim, latent, trainedEncoder: trainEncoder };
  } finally {
    release(...new Set(live));
  }
}

/** a + b elementwise, as a new tensor of a's shape (extra gradients from several terms). */
function sum(nb: NativeBinding, a: NativeTensor, b: NativeTensor): NativeTensor {
  const x = a.toArray(), y = b.toArray();
  if (x.length !== y.length) throw new VoxvaeError('ESHAPE', `a hook's gradient has ${y.length} values, expected ${x.length}`, { path: 'options.hooks' });
  for (let i = 0; i < x.length; i++) x[i]! += y[i]!;
  return nativeSync(() => new nb.Tensor(x, a.shape));
}

/** The mean of a per-sample quantity over every rank's samples: Σ_r value_r·n_r / Σ_r n_r (NaN anywhere: NaN everywhere). */
async function globalMean(dist: ProcessGroup, value: number, n: number): Promise<number> {
  const v = new Float32Array([value * n, n]);
  await dist.allReduce(v, 'sum', 'float64');
  return v[0]! / v[1]!;
}
