// Encoder, Decoder and Vae: the model API over the native engine. Inputs and outputs are
// Float32Arrays in NCDHW order; every length is checked here before native code sees it.
import { VoxvaeError, invalid } from './errors.js';
import { buildDecoder, buildEncoder, resnetV2Vae, validateConfig, type ResNetV2Options, type VaeConfig } from './config.js';
import { native, nativeCall, nativeSync, type NativeBinding, type NativeTensor, type Reduction } from './native.js';
import { selectBackend } from './backend.js';
import { Network, type OptimizerConfig } from './network.js';
import { readSafetensors, serializeSafetensors, toFloat32, voxvaeMetadata, writeFileAtomic, type TensorToWrite } from './safetensors.js';
import { completeSkull, completionFromCheckpoint, completionToCheckpoint, type CompleteOptions, type CompletionData, type CompletionModel, type CompletionResult } from './completion/index.js';

/** 'cpu' (default), 'cuda' (throws EUNSUPPORTED with the reason when unusable) or 'auto' (see ts/backend.ts). */
export type Backend = 'cpu' | 'cuda' | 'auto';
export type LatentMode = 'sample' | 'mean' | 'mean+std';
/** The deterministic latents inference uses. */
export type EvalLatent = 'mean' | 'mean+std';

/** The evaluation latent of a decoder trained on `trained`: μ + σ stays μ + σ; μ and samples μ + σ·ε give μ. */
export function evalLatentOf(trained: LatentMode): EvalLatent {
  return trained === 'mean+std' ? 'mean+std' : 'mean';
}
export type Mode = 'train' | 'eval';

export interface CreateOptions {
  backend?: Backend;
  /** Seeds parameter initialisation and the reparameterization noise. Default 0. */
  seed?: number;
  /** Threads the CPU kernels use (default: all cores). Process-wide. */
  threads?: number;
}

export interface ReconLoss {
  kind: 'dice' | 'bce' | 'mse' | 'l1';
  weight: number;
  reduction: Reduction;
  /** Dice smoothing (MONAI defaults 1e-5). */
  smoothNr?: number;
  smoothDr?: number;
}

export interface TrainStepOptions {
  /** KL weight (skullVAE stage 1: 100; ignored while the encoder is frozen). Default 1. */
  beta?: number;
  /** How z is formed from (mu, logvar). Default 'sample'. */
  latent?: LatentMode;
  /** Default: 80 × Dice (sum reduction), skullVAE's loss, for softmax outputs; else MSE (mean). */
  recon?: Partial<ReconLoss>;
  /** KL reduction over the batch (summed over latent dimensions always). Default 'sum' (skullVAE). */
  klReduction?: Reduction;
  optimizer?: Partial<OptimizerConfig>;
  /** Clip the gradient of all trained parameters to this global L2 norm (torch clip_grad_norm_). */
  maxGradNorm?: number;
}

export interface Batch {
  /** [N, inChannels, D, H, W] values. */
  input: Float32Array;
  /** Dice: class indices [N, D, H, W]; bce/mse/l1: [N, outChannels, D, H, W]. Default: the input. */
  target?: Float32Array;
}

export interface StepResult {
  /** weight·recon + β·KL (recon only while the encoder is frozen). */
  loss: number;
  /** The weighted reconstruction term. */
  recon: number;
  /** KL with the configured batch reduction, unweighted. */
  kl: number;
  /** Mean over the batch of each sample's KL (what β controllers usually measure). */
  klPerSample: number;
  beta: number;
  step: number;
}

const LATENT_CODE: Record<LatentMode, 0 | 1 | 2> = { sample: 0, mean: 1, 'mean+std': 2 };

function checkSeed(seed: unknown, field: string): number {
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) invalid(field, 'must be a non-negative safe integer', seed);
  return seed;
}

function batchOf(x: Float32Array, perSample: number, field: string): number {
  if (!(x instanceof Float32Array)) invalid(field, 'must be a Float32Array', x);
  if (x.length === 0 || x.length % perSample !== 0)
    throw new VoxvaeError('ESHAPE', `${field} has ${x.length} values, not a positive multiple of one sample's ${perSample}`, { path: field });
  return x.length / perSample;
}

/** Runs a native copy of user data; a NaN/Inf it refuses is reported naming `field`. */
function copyingFrom<T>(field: string, f: () => T): T {
  try {
    return nativeSync(f);
  } catch (e) {
    if (e instanceof VoxvaeError && e.code === 'ENOTFINITE')
      throw new VoxvaeError('ENOTFINITE', `${field} ${e.message.replace(/^input /, '')}: replace NaN/Inf values (e.g. threshold the volume) before passing it`, { path: field });
    throw e;
  }
}

/** Copies data into a native tensor; NaN/Inf is refused with an error naming `field`. */
function tensor(data: Float32Array, shape: number[], field = 'input', nb: NativeBinding = native()): NativeTensor {
  return copyingFrom(field, () => new nb.Tensor(data, shape, true));
}

/**
 * Native tensors that a model reuses from one training step to the next (batch input, target, the
 * reconstruction loss's gradient), so that steps over batches of one shape allocate no native memory:
 * the batch is copied into the existing buffer, and the loss writes its gradient into the same buffer
 * every step. A tensor is replaced when its shape changes (or the backend cannot refill one).
 */
class StepTensors {
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

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function release(...ts: (NativeTensor | null | undefined)[]): void {
  for (const t of ts) t?.dispose();
}

function resolveRecon(dcfg: VaeConfig, r: Partial<ReconLoss> | undefined): ReconLoss {
  const defaultRecon: ReconLoss = dcfg.outputActivation === 'softmax' ? { kind: 'dice', weight: 80, reduction: 'sum' } : { kind: 'mse', weight: 1, reduction: 'mean' };
  const recon: ReconLoss = { ...defaultRecon, ...(r ?? {}) } as ReconLoss;
  if (!['dice', 'bce', 'mse', 'l1'].includes(recon.kind)) invalid('options.recon.kind', "must be 'dice', 'bce', 'mse' or 'l1'", recon.kind);
  if (!(recon.weight >= 0 && Number.isFinite(recon.weight))) invalid('options.recon.weight', 'must be a finite number >= 0', recon.weight);
  if (recon.reduction !== 'sum' && recon.reduction !== 'mean') invalid('options.recon.reduction', "must be 'sum' or 'mean'", recon.reduction);
  return recon;
}

function resolveOptimizer(o: Partial<OptimizerConfig> | undefined, prev: OptimizerConfig | null): OptimizerConfig {
  const kind = o?.kind ?? prev?.kind ?? 'adam';
  if (kind !== 'adam' && kind !== 'adamw') invalid('options.optimizer.kind', "must be 'adam' or 'adamw'", kind);
  const cfg: OptimizerConfig = {
    kind,
    lr: o?.lr ?? prev?.lr ?? 1e-4,
    betas: o?.betas ?? prev?.betas ?? [0.9, 0.999],
    eps: o?.eps ?? prev?.eps ?? 1e-8,
    weightDecay: o?.weightDecay ?? prev?.weightDecay ?? (kind === 'adamw' ? 0.01 : 0),
  };
  if (!(cfg.lr >= 0 && Number.isFinite(cfg.lr))) invalid('options.optimizer.lr', 'must be a finite number >= 0', cfg.lr);
  if (!Array.isArray(cfg.betas) || cfg.betas.length !== 2 || !cfg.betas.every((b) => b >= 0 && b < 1)) invalid('options.optimizer.betas', 'must be two numbers in [0, 1)', cfg.betas);
  if (!(cfg.eps >= 0)) invalid('options.optimizer.eps', 'must be >= 0', cfg.eps);
  if (!(cfg.weightDecay >= 0)) invalid('options.optimizer.weightDecay', 'must be >= 0', cfg.weightDecay);
  return cfg;
}

/** Checks (or defaults to the input) the reconstruction target for n samples. */
function resolveTarget(recon: ReconLoss, dcfg: VaeConfig, n: number, target: Float32Array | undefined, input: Float32Array | null, inChannels: number): Float32Array {
  const S = dcfg.inputShape[0] * dcfg.inputShape[1] * dcfg.inputShape[2];
  const targetLen = recon.kind === 'dice' ? n * S : n * dcfg.outChannels * S;
  if (!target) {
    if (!input) invalid('target', 'is required');
    if (recon.kind === 'dice' && inChannels !== 1) invalid('batch.target', 'is required for Dice when inChannels != 1');
    if (recon.kind !== 'dice' && dcfg.outChannels !== inChannels) invalid('batch.target', 'is required when outChannels != inChannels');
    target = input;
  }
  if (!(target instanceof Float32Array)) invalid('batch.target', 'must be a Float32Array', target);
  if (target.length !== targetLen) throw new VoxvaeError('ESHAPE', `batch.target has ${target.length} values, expected ${targetLen} for ${recon.kind}`, { path: 'batch.target' });
  return target;
}

/** The reconstruction loss and its gradient, written into gradOut where the backend supports it. */
function reconLoss(recon: ReconLoss, dcfg: VaeConfig, logits: NativeTensor, tgt: NativeTensor, n: number, nb: NativeBinding, gradOut: NativeTensor | null = null): Promise<{ loss: number; grad: NativeTensor | null }> {
  return nativeCall(() =>
    recon.kind === 'dice'
      ? nb.diceLoss(logits, tgt, { smoothNr: recon.smoothNr ?? 1e-5, smoothDr: recon.smoothDr ?? 1e-5, reduction: recon.reduction, weight: recon.weight, gradOut })
      : nb.elementLoss(logits, tgt, { kind: recon.kind as 'bce' | 'mse' | 'l1', reduction: recon.reduction, weight: recon.weight, gradOut }),
  );
}

/** Clips the joint gradient of `nets` to maxGradNorm (torch clip_grad_norm_) and takes one Adam/AdamW step on each. */
async function optimizerStep(nets: Network[], optim: OptimizerConfig, maxGradNorm: number | undefined): Promise<void> {
  let scale = 1;
  if (maxGradNorm !== undefined) {
    const total = Math.sqrt(nets.reduce((a, n) => a + n.net.gradSumSq(), 0));
    const coef = maxGradNorm / (total + 1e-6);
    if (coef < 1) scale = coef;
  }
  for (const net of nets) await nativeCall(() => net.optimizer().step({ ...optim, gradScale: scale }));
}

/** Encoder: x → (mu, logvar). MONAI parameter names encode.encode_i.*, mu.*, logvar.*. */
export class Encoder {
  readonly config: VaeConfig;
  readonly network: Network;
  /** A frozen encoder runs in eval mode during training and its weights never change. */
  frozen = false;

  constructor(config: VaeConfig, seed = 0, binding?: NativeBinding) {
    this.config = validateConfig(config);
    this.network = new Network(buildEncoder(this.config), checkSeed(seed, 'seed'), binding);
  }

  get sampleSize(): number {
    const [d, h, w] = this.config.inputShape;
    return this.config.inChannels * d * h * w;
  }

  freeze(): this {
    this.frozen = true;
    return this;
  }
  unfreeze(): this {
    this.frozen = false;
    return this;
  }

  /** Encodes a batch [N, C, D, H, W]. Eval mode (running BN statistics) unless mode: 'train'. */
  async encode(x: Float32Array, opts: { mode?: Mode } = {}): Promise<{ mu: Float32Array; logvar: Float32Array }> {
    const n = batchOf(x, this.sampleSize, 'x');
    const xt = tensor(x, [n, this.config.inChannels, ...this.config.inputShape], 'x', this.network.binding);
    let outs: NativeTensor[] = [];
    try {
      outs = await nativeCall(() => this.network.net.forward(xt, n, opts.mode === 'train'));
      return { mu: outs[0]!.toArray(), logvar: outs[1]!.toArray() };
    } finally {
      release(xt, ...outs);
    }
  }

  dispose(): void {
    this.network.dispose();
  }
}

/** Decoder: z → logits. MONAI names decodeL.*, decode.decode_i.conv.*. */
export class Decoder {
  readonly config: VaeConfig;
  readonly network: Network;

  constructor(config: VaeConfig, seed = 0, binding?: NativeBinding) {
    this.config = validateConfig(config);
    this.network = new Network(buildDecoder(this.config), checkSeed(seed, 'seed') + 1, binding);
  }

  get outputSize(): number {
    const [d, h, w] = this.config.inputShape;
    return this.config.outChannels * d * h * w;
  }

  /** Decodes latents [N, latentSize] to [N, outChannels, D, H, W]: probabilities per the config's
   *  outputActivation, or raw logits with { logits: true }. Eval mode unless mode: 'train'. */
  async decode(z: Float32Array, opts: { mode?: Mode; logits?: boolean } = {}): Promise<Float32Array> {
    const n = batchOf(z, this.config.latentSize, 'z');
    const zt = tensor(z, [n, this.config.latentSize, 1, 1, 1], 'z', this.network.binding);
    let outs: NativeTensor[] = [];
    try {
      outs = await nativeCall(() => this.network.net.forward(zt, n, opts.mode === 'train'));
      if (!opts.logits) await nativeCall(() => this.network.binding.activate(outs[0]!, this.config.outputActivation));
      return outs[0]!.toArray();
    } finally {
      release(zt, ...outs);
    }
  }

  /**
   * The gradient of an objective of the decoded logits with respect to the latents: an eval-mode decode of
   * z [N, latentSize], then `objective(logits)` (logits [N, outChannels, D, H, W], NCDHW) returns its value
   * and its gradient with respect to the logits, and the decoder's backward pass turns that into the
   * gradient with respect to z (a vector-Jacobian product; what latent fitting needs). The weights, their
   * optimizer state and the BatchNorm statistics do not change.
   */
  async latentGradient<T>(z: Float32Array, objective: (logits: Float32Array) => { value: T; grad: Float32Array }): Promise<{ value: T; grad: Float32Array }> {
    const n = batchOf(z, this.config.latentSize, 'z');
    if (typeof objective !== 'function') invalid('objective', 'must be a function (logits) => { value, grad }', objective);
    if (this.busy) throw new VoxvaeError('EBUSY', 'latentGradient: another latentGradient on this decoder is still running; await it first');
    this.busy = true;
    const nb = this.network.binding;
    const live: (NativeTensor | null)[] = [];
    try {
      const zt = tensor(z, [n, this.config.latentSize, 1, 1, 1], 'z', nb);
      live.push(zt);
      const outs = await nativeCall(() => this.network.net.forward(zt, n, false));
      live.push(...outs);
      const { value, grad } = objective(outs[0]!.toArray());
      if (!(grad instanceof Float32Array) || grad.length !== n * this.outputSize)
        throw new VoxvaeError('ESHAPE', `latentGradient: the objective's gradient has ${(grad as Float32Array | undefined)?.length} values; the logits have ${n * this.outputSize}`, { path: 'objective' });
      const gt = tensor(grad, [n, this.config.outChannels, ...this.config.inputShape], 'the objective gradient', nb);
      live.push(gt);
      const dz = await nativeCall(() => this.network.net.backward([gt], true));
      live.push(dz);
      if (!dz) throw new VoxvaeError('EINTERNAL', 'latentGradient: the backward pass returned no input gradient');
      return { value, grad: dz.toArray() };
    } finally {
      release(...live);
      this.busy = false;
    }
  }

  private busy = false;
  private optimizerConfig: OptimizerConfig | null = null;
  private steps = 0;

  /**
   * Trains the decoder alone on given latents: loss = weight·recon(decode(z), target), backward, Adam.
   * (A frozen encoder feeding a new decoder — the two-stage method — is Vae.trainStep with
   * vae.encoder.frozen; this is for latents that come from elsewhere.)
   */
  async trainStep(z: Float32Array, target: Float32Array, opts: Pick<TrainStepOptions, 'recon' | 'optimizer' | 'maxGradNorm'> = {}): Promise<{ loss: number; step: number }> {
    const n = batchOf(z, this.config.latentSize, 'z');
    const recon = resolveRecon(this.config, opts.recon);
    const optim = resolveOptimizer(opts.optimizer, this.optimizerConfig);
    const tgtData = resolveTarget(recon, this.config, n, target, null, this.config.inChannels);
    const [D, H, W] = this.config.inputShape;
    const live: (NativeTensor | null)[] = [];
    try {
      const nb = this.network.binding;
      const zt = tensor(z, [n, this.config.latentSize, 1, 1, 1], 'input', nb);
      const tgt = tensor(tgtData, recon.kind === 'dice' ? [n, D * H * W] : [n, this.config.outChannels, D, H, W], 'input', nb);
      live.push(zt, tgt);
      nativeSync(() => this.network.net.zeroGrad());
      const [logits] = await nativeCall(() => this.network.net.forward(zt, n, true, 0, this.steps));
      live.push(logits!);
      const rec = await reconLoss(recon, this.config, logits!, tgt, n, nb);
      live.push(rec.grad);
      if (!Number.isFinite(rec.loss)) throw new VoxvaeError('ENOTFINITE', `Decoder.trainStep: the loss is ${rec.loss}; lower the learning rate or check the input`);
      live.push(await nativeCall(() => this.network.net.backward([rec.grad], false)));
      await optimizerStep([this.network], optim, opts.maxGradNorm);
      this.optimizerConfig = optim;
      return { loss: rec.loss, step: ++this.steps };
    } finally {
      release(...live);
    }
  }

  dispose(): void {
    this.network.dispose();
  }
}

/** Applies the output activation (softmax over channels or sigmoid) in place. */
export function activate(y: Float32Array, n: number, c: VaeConfig): Float32Array {
  if (c.outputActivation === 'sigmoid') {
    for (let i = 0; i < y.length; i++) y[i] = 1 / (1 + Math.exp(-y[i]!));
  } else if (c.outputActivation === 'softmax') {
    const C = c.outChannels, S = y.length / (n * C);
    for (let b = 0; b < n; b++) {
      const base = b * C * S;
      for (let s = 0; s < S; s++) {
        let m = -Infinity;
        for (let k = 0; k < C; k++) m = Math.max(m, y[base + k * S + s]!);
        let sum = 0;
        for (let k = 0; k < C; k++) sum += Math.exp(y[base + k * S + s]! - m);
        for (let k = 0; k < C; k++) y[base + k * S + s] = Math.exp(y[base + k * S + s]! - m) / sum;
      }
    }
  }
  return y;
}

interface CheckpointMeta {
  format: 'voxvae-checkpoint';
  version: 1;
  kind: 'vae';
  config: VaeConfig;
  decoderConfig: VaeConfig;
  encoderFrozen: boolean;
  seed: number;
  step: number;
  optimizer: OptimizerConfig | null;
  adamSteps: { encoder: number | null; decoder: number | null };
  /** The latent the decoder was trained on (absent in checkpoints before it was recorded: 'sample'). */
  decoderLatent?: LatentMode;
  /** Completion data's metadata (its tensors are under __voxvae__.completion.*). */
  completion?: unknown;
}

const TRAINING_PREFIX = '__voxvae__.';

/** A variational autoencoder: encoder, reparameterization, decoder, and their training state. */
export class Vae {
  readonly encoder: Encoder;
  decoder: Decoder;
  readonly seed: number;
  /** Training steps taken: also the position of the reparameterization noise stream. */
  step = 0;
  /**
   * The latent the decoder was trained on: the `latent` of its last training step ('sample' for a new
   * model), saved in checkpoints. Inference follows it (see evalLatent): a decoder trained on μ + σ (skullVAE's
   * stage 2) must be fed μ + σ, never μ alone.
   */
  decoderLatent: LatentMode = 'sample';
  /**
   * What skull completion needs besides the weights (deviation vectors, defect maps, the complete skulls'
   * latent prior; see ts/completion/data.ts): set by calibrateCompletion(), saved and loaded with the
   * model. Training the encoder moves every latent, so a training step that updates it clears this.
   */
  completion: CompletionData | null = null;
  private defaultMode: Mode = 'eval';
  private optimizerConfig: OptimizerConfig | null = null;
  private running = false;
  private readonly stepTensors = new StepTensors();

  private constructor(encoder: Encoder, decoder: Decoder, seed: number) {
    this.encoder = encoder;
    this.decoder = decoder;
    this.seed = seed;
  }

  /** Builds a VAE from a config with PyTorch's default initialisation, seeded. */
  static async create(config: VaeConfig, opts: CreateOptions = {}): Promise<Vae> {
    const seed = checkSeed(opts.seed ?? 0, 'options.seed');
    if (opts.backend !== undefined && !['cpu', 'cuda', 'auto'].includes(opts.backend)) invalid('options.backend', "must be 'cpu', 'cuda' or 'auto'", opts.backend);
    if (opts.threads !== undefined) setThreads(opts.threads);
    const cfg = validateConfig(config);
    const nb = selectBackend(opts.backend ?? 'cpu');
    return new Vae(new Encoder(cfg, seed, nb), new Decoder(cfg, seed, nb), seed);
  }

  /** An existing encoder with a new decoder (the two-stage method's stage 2). The decoder config must
   *  agree with the encoder on latent size and volume shape. */
  static fromParts(encoder: Encoder, decoder: Decoder, seed = 0): Vae {
    if (decoder.config.latentSize !== encoder.config.latentSize) invalid('decoder.config.latentSize', `must equal the encoder's ${encoder.config.latentSize}`, decoder.config.latentSize);
    if (decoder.config.inputShape.some((d, i) => d !== encoder.config.inputShape[i])) invalid('decoder.config.inputShape', `must equal the encoder's [${encoder.config.inputShape.join(', ')}]`, decoder.config.inputShape);
    if (decoder.network.binding !== encoder.network.binding) invalid('decoder', `must use the encoder's backend (${encoder.network.binding.backend})`, decoder.network.binding.backend);
    return new Vae(encoder, decoder, checkSeed(seed, 'seed'));
  }

  get config(): VaeConfig {
    return this.encoder.config;
  }

  /** The deterministic latent every evaluation uses (reconstruction, deviation vectors, completion):
   *  μ + σ for a decoder trained on μ + σ; μ for one trained on μ, and for one trained on samples
   *  μ + σ·ε (μ is the samples' mean). */
  get evalLatent(): EvalLatent {
    return evalLatentOf(this.decoderLatent);
  }

  /** Encodes x (eval mode) and forms the evaluation latent z (evalLatent, or `latent`). */
  async encodeLatent(x: Float32Array, opts: { latent?: EvalLatent } = {}): Promise<{ z: Float32Array; mu: Float32Array; logvar: Float32Array }> {
    const latent = opts.latent ?? this.evalLatent;
    if (latent !== 'mean' && latent !== 'mean+std') invalid('options.latent', "must be 'mean' or 'mean+std'", latent);
    const { mu, logvar } = await this.encode(x, { mode: 'eval' });
    return { z: this.latentFrom(mu, logvar, latent), mu, logvar };
  }

  /** z from (μ, log σ²) by the native reparameterization (the same float operations as training). */
  latentFrom(mu: Float32Array, logvar: Float32Array, latent: LatentMode, step = this.step): Float32Array {
    if (latent === 'mean') return new Float32Array(mu);
    const L = this.config.latentSize;
    const n = batchOf(mu, L, 'mu');
    if (logvar.length !== mu.length) throw new VoxvaeError('ESHAPE', `logvar has ${logvar.length} values, mu ${mu.length}`, { path: 'logvar' });
    const nb = this.encoder.network.binding;
    const mt = tensor(mu, [n, L], 'mu', nb), lt = tensor(logvar, [n, L], 'logvar', nb);
    let r: { z: NativeTensor; eps: NativeTensor } | null = null;
    try {
      r = nativeSync(() => nb.reparameterize(mt, lt, { latent, seed: this.seed, step }));
      return r.z.toArray();
    } finally {
      release(mt, lt, r?.z, r?.eps);
    }
  }

  /** Replaces the decoder (e.g. a fresh skullVaeDecoder for stage 2); its optimizer state starts anew. */
  attachDecoder(decoder: Decoder): void {
    if (decoder.config.latentSize !== this.config.latentSize) invalid('decoder.config.latentSize', `must equal the encoder's ${this.config.latentSize}`, decoder.config.latentSize);
    if (decoder.network.binding !== this.encoder.network.binding) invalid('decoder', `must use the encoder's backend (${this.encoder.network.binding.backend})`, decoder.network.binding.backend);
    this.decoder = decoder;
  }

  train(): this {
    this.defaultMode = 'train';
    return this;
  }
  eval(): this {
    this.defaultMode = 'eval';
    return this;
  }
  get mode(): Mode {
    return this.defaultMode;
  }

  encode(x: Float32Array, opts: { mode?: Mode } = {}): Promise<{ mu: Float32Array; logvar: Float32Array }> {
    return this.encoder.encode(x, { mode: opts.mode ?? this.defaultMode });
  }

  decode(z: Float32Array, opts: { mode?: Mode; logits?: boolean } = {}): Promise<Float32Array> {
    return this.decoder.decode(z, { mode: opts.mode ?? this.defaultMode, ...(opts.logits !== undefined ? { logits: opts.logits } : {}) });
  }

  /** Encode, form z, decode. latent defaults to evalLatent in eval mode and 'sample' in train mode;
   *  sampling uses the noise stream at `step` (default: the current training step). */
  async forward(x: Float32Array, opts: { latent?: LatentMode; mode?: Mode; logits?: boolean; step?: number } = {}): Promise<{ recon: Float32Array; mu: Float32Array; logvar: Float32Array; z: Float32Array }> {
    const mode = opts.mode ?? this.defaultMode;
    const latent = opts.latent ?? (mode === 'train' ? 'sample' : this.evalLatent);
    if (!(latent in LATENT_CODE)) invalid('options.latent', "must be 'sample', 'mean' or 'mean+std'", latent);
    const { mu, logvar } = await this.encode(x, { mode });
    const z = this.latentFrom(mu, logvar, latent, opts.step ?? this.step);
    const recon = await this.decode(z, { mode, ...(opts.logits !== undefined ? { logits: opts.logits } : {}) });
    return { recon, mu, logvar, z };
  }

  /**
   * One optimisation step on a batch: forward in train mode, loss = weight·recon + β·KL, backward,
   * gradient clipping, Adam/AdamW. A frozen encoder runs in eval mode, gets no gradient and no update,
   * and the loss is the reconstruction term alone (the two-stage method's stage 2).
   */
  async trainStep(batch: Batch | Float32Array, opts: TrainStepOptions = {}): Promise<StepResult> {
    if (this.running) throw new VoxvaeError('EBUSY', 'trainStep: a previous call on this model is still running; await it first');
    this.running = true;
    try {
      return await this.trainStepInner(batch instanceof Float32Array ? { input: batch } : batch, opts);
    } finally {
      this.running = false;
    }
  }

  private async trainStepInner(batch: Batch, opts: TrainStepOptions): Promise<StepResult> {
    const cfg = this.config;
    const dcfg = this.decoder.config;
    const L = cfg.latentSize;
    const [D, H, W] = cfg.inputShape;
    const S = D * H * W;
    const n = batchOf(batch.input, cfg.inChannels * S, 'batch.input');
    const beta = opts.beta ?? 1;
    if (!(typeof beta === 'number' && beta >= 0 && Number.isFinite(beta))) invalid('options.beta', 'must be a finite number >= 0', beta);
    const latent = opts.latent ?? 'sample';
    if (!(latent in LATENT_CODE)) invalid('options.latent', "must be 'sample', 'mean' or 'mean+std'", latent);
    const recon = resolveRecon(dcfg, opts.recon);
    const klReduction = opts.klReduction ?? 'sum';
    if (klReduction !== 'sum' && klReduction !== 'mean') invalid('options.klReduction', "must be 'sum' or 'mean'", klReduction);
    const optim = resolveOptimizer(opts.optimizer, this.optimizerConfig);
    if (opts.maxGradNorm !== undefined && !(opts.maxGradNorm > 0)) invalid('options.maxGradNorm', 'must be > 0', opts.maxGradNorm);

    // Targets: class indices for Dice, same-shaped values for the elementwise losses.
    const target = resolveTarget(recon, dcfg, n, batch.target, batch.input, cfg.inChannels);

    const enc = this.encoder.network, dec = this.decoder.network;
    const nb = enc.binding;
    const trainEncoder = !this.encoder.frozen;
    const live: (NativeTensor | null | undefined)[] = [];
    const keep = <T extends NativeTensor | null | undefined>(t: T): T => (live.push(t), t);
    const st = this.stepTensors;
    try {
      const x = st.fill(nb, 'input', batch.input, [n, cfg.inChannels, D, H, W], 'batch.input');
      // The default target is the input itself: one copy serves both (the losses check lengths only).
      const tgt = target === batch.input ? x : st.fill(nb, 'target', target, recon.kind === 'dice' ? [n, S] : [n, dcfg.outChannels, D, H, W], 'batch.target');
      nativeSync(() => {
        if (trainEncoder) enc.net.zeroGrad();
        dec.net.zeroGrad();
      });
      const [mu, logvar] = (await nativeCall(() => enc.net.forward(x, n, trainEncoder))).map(keep) as [NativeTensor, NativeTensor];
      const r = nativeSync(() => nb.reparameterize(mu, logvar, { latent, seed: this.seed, step: this.step }));
      keep(r.z);
      keep(r.eps);
      const [logits] = (await nativeCall(() => dec.net.forward(r.z, n, true, this.seed, this.step))).map(keep) as [NativeTensor];
      // The CPU addon writes the gradient into a reused tensor; other backends return a new one.
      const gradOut = nb.backend === 'cpu' ? st.output(nb, 'reconGrad', logits.shape) : null;
      const rec = await reconLoss(recon, dcfg, logits, tgt, n, nb, gradOut);
      if (!st.has(rec.grad)) keep(rec.grad);
      const kl = nativeSync(() => nb.klNormal(mu, logvar, { reduction: klReduction, weight: trainEncoder ? beta : 0 }));
      keep(kl.dmu);
      keep(kl.dlogvar);
      const klValue = beta > 0 && trainEncoder ? kl.loss / beta : nativeSync(() => nb.klNormal(mu, logvar, { reduction: klReduction, weight: 1 })).loss;
      const klPerSample = kl.perSample.reduce((a, v) => a + v, 0) / n;
      const loss = rec.loss + (trainEncoder ? beta * klValue : 0);
      if (!Number.isFinite(loss)) throw new VoxvaeError('ENOTFINITE', `trainStep: the loss is ${loss} (recon ${rec.loss}, KL ${klValue}); lower the learning rate or check the input`);
      const dz = keep(await nativeCall(() => dec.net.backward([rec.grad], trainEncoder)));
      if (trainEncoder && dz) {
        const g = nativeSync(() => nb.reparameterizeBackward(dz, r.eps, logvar, { dmu: kl.dmu, dlogvar: kl.dlogvar }));
        keep(g.dmu);
        keep(g.dlogvar);
        await nativeCall(() => enc.net.backward([g.dmu, g.dlogvar], false));
      }
      await optimizerStep(trainEncoder ? [dec, enc] : [dec], optim, opts.maxGradNorm);
      this.optimizerConfig = optim;
      this.decoderLatent = latent;
      if (trainEncoder) this.completion = null;
      this.step++;
      return { loss, recon: rec.loss, kl: klValue, klPerSample, beta: trainEncoder ? beta : 0, step: this.step };
    } finally {
      release(...live);
    }
  }

  /** This model as skull completion sees it (ts/completion): encode, decode, the latent gradient. */
  completionModel(): CompletionModel {
    const vae = this;
    const [D, H, W] = this.decoder.config.inputShape;
    return {
      latentSize: this.config.latentSize,
      voxels: D * H * W,
      outChannels: this.decoder.config.outChannels,
      shape: [D, H, W],
      get completion() {
        return vae.completion;
      },
      get evalLatent() {
        return vae.evalLatent;
      },
      encodeLatent: async (x) => (await vae.encodeLatent(x)).z,
      decodeLogits: (z) => vae.decode(z, { mode: 'eval', logits: true }),
      latentGradient: (z, objective) => vae.decoder.latentGradient(z, objective),
    };
  }

  /** Completes a defective skull (D × H × W, 0/1): per-case latent fitting by default, or the paper's
   *  z + γ·DEV (method 'dev'). Needs completion data (calibrateCompletion). See ts/completion. */
  completeSkull(input: Uint8Array | Float32Array, opts: CompleteOptions): Promise<CompletionResult> {
    return completeSkull(this.completionModel(), input, opts);
  }

  /** Number of trainable parameters (encoder + decoder). */
  get numParams(): number {
    return this.encoder.network.numParams + this.decoder.network.numParams;
  }

  /** Saves weights (PyTorch names), config and training state to a safetensors file, atomically. */
  async save(file: string): Promise<void> {
    const tensors = new Map<string, TensorToWrite>();
    for (const [k, v] of this.encoder.network.stateDict()) tensors.set(k, v);
    for (const [k, v] of this.decoder.network.stateDict()) tensors.set(k, v);
    const adamEnc = this.encoder.network.adam?.getState() ?? null;
    const adamDec = this.decoder.network.adam?.getState() ?? null;
    for (const [part, st] of [['encoder', adamEnc], ['decoder', adamDec]] as const) {
      if (!st) continue;
      tensors.set(`${TRAINING_PREFIX}adam.${part}.m`, { dtype: 'F32', shape: [st.m.length], data: st.m });
      tensors.set(`${TRAINING_PREFIX}adam.${part}.v`, { dtype: 'F32', shape: [st.v.length], data: st.v });
    }
    const meta: CheckpointMeta = {
      format: 'voxvae-checkpoint',
      version: 1,
      kind: 'vae',
      config: this.config,
      decoderConfig: this.decoder.config,
      encoderFrozen: this.encoder.frozen,
      seed: this.seed,
      step: this.step,
      optimizer: this.optimizerConfig,
      adamSteps: { encoder: adamEnc?.step ?? null, decoder: adamDec?.step ?? null },
      decoderLatent: this.decoderLatent,
    };
    if (this.completion) {
      const c = completionToCheckpoint(this.completion);
      for (const [k, v] of c.tensors) tensors.set(k, v);
      meta.completion = c.meta;
    }
    await writeFileAtomic(file, serializeSafetensors(tensors, { voxvae: JSON.stringify(meta), format: 'pt' }));
  }

  /**
   * Loads a checkpoint written by save(), or a plain PyTorch state_dict saved with
   * `safetensors.torch.save_file(model.state_dict(), path)` when `config` is given (MONAI names).
   */
  static async load(file: string, opts: { config?: VaeConfig; decoderConfig?: VaeConfig; threads?: number; backend?: Backend } = {}): Promise<Vae> {
    const st = await readSafetensors(file);
    const meta = voxvaeMetadata<CheckpointMeta>(st, file);
    const config = opts.config ?? meta?.config;
    if (!config) throw new VoxvaeError('ECHECKPOINT', `${file} has no voxvae metadata: pass { config } describing the architecture (e.g. monaiVarAutoEncoder({...}))`, { path: file });
    if (opts.threads !== undefined) setThreads(opts.threads);
    const cfg = validateConfig(config, opts.config ? 'options.config' : `${file}: config`);
    // With an explicit config and no decoderConfig, the decoder follows the config (keeping the
    // checkpoint's decoder block style, e.g. an aggregated VAE's skullVAE decoder).
    const dcfg = validateConfig(
      opts.decoderConfig ?? (opts.config ? { ...cfg, decoderBlock: meta?.decoderConfig?.decoderBlock ?? cfg.decoderBlock } : meta?.decoderConfig ?? cfg),
      'decoderConfig',
    );
    const seed = meta?.seed ?? 0;
    const nb = selectBackend(opts.backend ?? 'cpu');
    const vae = Vae.fromParts(new Encoder(cfg, seed, nb), new Decoder(dcfg, seed, nb), seed);
    try {
      const used = vae.encoder.network.loadStateDict(st.tensors, file);
      for (const k of vae.decoder.network.loadStateDict(st.tensors, file)) used.add(k);
      const extra = [...st.tensors.keys()].filter((k) => !used.has(k) && !k.startsWith(TRAINING_PREFIX));
      if (extra.length)
        throw new VoxvaeError('ECHECKPOINT', `${file}: ${extra.length} tensor(s) this model does not have: ${extra.slice(0, 6).join(', ')}${extra.length > 6 ? ', ...' : ''} — the checkpoint is for another architecture`, { path: file });
      if (meta) {
        if (meta.decoderLatent !== undefined && !['sample', 'mean', 'mean+std'].includes(meta.decoderLatent))
          throw new VoxvaeError('ECHECKPOINT', `${file}: decoderLatent must be 'sample', 'mean' or 'mean+std', not ${JSON.stringify(meta.decoderLatent)}`, { path: file });
        vae.decoderLatent = meta.decoderLatent ?? 'sample';
        const [D, H, W] = dcfg.inputShape;
        vae.completion = completionFromCheckpoint(st, meta.completion, file, cfg.latentSize, D * H * W);
        vae.step = meta.step;
        vae.encoder.frozen = meta.encoderFrozen;
        vae.optimizerConfig = meta.optimizer;
        for (const [part, net] of [['encoder', vae.encoder.network], ['decoder', vae.decoder.network]] as const) {
          const steps = meta.adamSteps[part];
          if (steps === null) continue;
          const m = st.tensors.get(`${TRAINING_PREFIX}adam.${part}.m`), v = st.tensors.get(`${TRAINING_PREFIX}adam.${part}.v`);
          if (!m || !v) throw new VoxvaeError('ECHECKPOINT', `${file}: optimizer state for the ${part} is missing`, { path: file });
          const mf = toFloat32(m), vf = toFloat32(v);
          if (mf.length !== net.numParams || vf.length !== net.numParams) throw new VoxvaeError('ECHECKPOINT', `${file}: optimizer state for the ${part} has the wrong size`, { path: file });
          nativeSync(() => net.optimizer().setState(steps, mf, vf));
        }
      }
    } catch (e) {
      vae.dispose();
      throw e;
    }
    return vae;
  }

  dispose(): void {
    this.stepTensors.dispose();
    this.encoder.dispose();
    this.decoder.dispose();
  }
}

/** Sets the number of CPU threads the kernels use (process-wide); 0 restores the default. */
export function setThreads(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 256) invalid('threads', 'must be an integer in [0, 256]', n);
  return nativeSync(() => native().setNumThreads(n));
}

/** The instruction sets setCpuIsa accepts ('auto': the best this CPU has). */
export type CpuIsa = 'auto' | 'avx512f' | 'avx2' | 'sse2';

/**
 * Selects the instruction set of the CPU kernels (process-wide) and returns the one now running. The
 * automatic choice is the fastest the CPU has; a fixed one makes results repeat bit for bit across
 * machines that have it, and 'sse2' (x86-64's baseline: no fused multiply-add) computes what the
 * WebAssembly SIMD build computes. Throws EUNSUPPORTED where the CPU lacks the ISA, changing nothing.
 * Not to be called while a native call is running.
 */
export function setCpuIsa(isa: CpuIsa): string {
  if (!['auto', 'avx512f', 'avx2', 'sse2'].includes(isa)) invalid('isa', "must be 'auto', 'avx512f', 'avx2' or 'sse2'", isa);
  return nativeSync(() => native().cpuIsa(isa));
}

/** The instruction set the CPU kernels run now ('avx512f', 'avx2', 'sse2'; 'portable' off x86-64). */
export function cpuIsa(): string {
  return nativeSync(() => native().cpuIsa());
}

/**
 * A Vae whose encoder and decoder are the ResNet-v2 preset: `Vae.create(resnetV2Vae({ ...config, resnet }))`.
 * The config's shapes, latent size, output activation and BN settings apply; its MONAI `channels` and
 * `strides` are not used. Saves and loads like any Vae (the architecture is part of the config).
 */
export function createResNetV2Vae(config: VaeConfig, opts: CreateOptions & { resnet?: Partial<ResNetV2Options> } = {}): Promise<Vae> {
  const { resnet, ...create } = opts;
  return Vae.create(resnetV2Vae({ ...config, resnet: { ...config.resnet, ...(resnet ?? {}) } }), create);
}
