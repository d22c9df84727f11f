// Encoder, Decoder and Vae: the model API over the native engine. Inputs and outputs are
// Float32Arrays in NCDHW order; every length is checked here before native code sees it.
import { VoxvaeError, finiteValues, invalid, notFinite } from './errors.js';
import { resnetV2Vae, validateConfig, type ResNetV2Options, type VaeConfig } from './config.js';
import { buildDecoder, buildEncoder } from './model/build.js';
import { native, nativeCall, nativeSync, type NativeBinding, type NativeTensor } from './native.js';
import { selectBackend } from './backend.js';
import * as is from './is.js';
import { Network, type OptimizerConfig } from './network.js';
import { BACKENDS, EVAL_LATENTS, LATENT_MODES, MODES, OUTPUT_KINDS, evalLatentOf, type Backend, type EvalLatent, type LatentMode, type Mode, type OutputKind } from './types.js';
import { StepTensors, batchOf, release, tensor, trainStep, type Batch, type StepResult, type TrainStepOptions } from './train/step.js';
export { batchSamples } from './train/step.js';
import { readSafetensors, writeFileAtomic, type SafeTensors } from './safetensors.js';
import { checkpointNetworks, loadNetworks, readAdamState, readTrainingState, resolveConfigs, serializeCheckpoint, type CheckpointState, type ResolvedConfigs } from './model/checkpoint.js';
import { completeSkull, type CompleteOptions, type CompletionData, type CompletionModel, type CompletionResult } from './completion/index.js';

export type { Backend, EvalLatent, LatentMode, Mode, OutputKind } from './types.js';
export { evalLatentOf } from './types.js';
export type { Batch, KlWeight, ReconLoss, StepHooks, StepResult, TrainStepOptions } from './train/step.js';

/** What decode (and forward's recon) returns for an output kind: a mask is a Uint8Array. */
export type Decoded<O extends OutputKind> = O extends 'mask' ? Uint8Array : Float32Array;

/** Options of encode: one volume [inChannels, D, H, W] unless `batch` says how many x holds. */
export interface EncodeOptions {
  /** BatchNorm statistics: 'eval' (running; the default outside training) or 'train' (the batch's). */
  mode?: Mode;
  /** The number of volumes in x ([batch, inChannels, D, H, W]). Default 1: a volume of the wrong size is
   *  an ESHAPE error, never taken as a batch of several. */
  batch?: number;
}

/** Options of decode: latents z are rows [N, latentSize] (N = z.length / latentSize). */
export interface DecodeOptions<O extends OutputKind = OutputKind> {
  mode?: Mode;
  /** 'probabilities' (the config's outputActivation; default), 'logits' (raw) or 'mask' (Uint8Array
   *  [N, D, H, W]: the most probable class, or probability > 0.5 for one channel). */
  output?: O;
}

/** Options of forward: encode (one volume unless `batch`), form z, decode. */
export interface ForwardOptions<O extends OutputKind = OutputKind> extends EncodeOptions, DecodeOptions<O> {
  /** How z is formed: default evalLatent in eval mode, 'sample' in train mode. */
  latent?: LatentMode;
  /** The noise stream position of latent 'sample' (default: the current training step). */
  step?: number;
}

export interface CreateOptions {
  backend?: Backend;
  /** Seeds parameter initialisation and the reparameterization noise. Default 0. */
  seed?: number;
  /** Threads the CPU kernels use (default: all cores). Process-wide. */
  threads?: number;
}

/** How an Encoder, Decoder or Discriminator is built: the seed of its initialisation and the engine it runs on. */
export interface PartOptions {
  /** Default 0. */
  seed?: number;
  /** Default 'cpu' (see ts/backend.ts). */
  backend?: Backend;
}

/** The seed and the engine binding of a part's options (validated). */
export function partOptions(opts: PartOptions | undefined, field = 'options'): { seed: number; binding: NativeBinding } {
  const o = is.options(field, opts);
  is.knownKeys(field, o, ['seed', 'backend']);
  const seed = is.seed(`${field}.seed`, o.seed ?? 0);
  const backend = is.oneOf(`${field}.backend`, o.backend ?? 'cpu', BACKENDS);
  return { seed, binding: selectBackend(backend) };
}

/** Encoder: x → (mu, logvar). MONAI parameter names encode.encode_i.*, mu.*, logvar.*. */
export class Encoder {
  readonly config: VaeConfig;
  readonly network: Network;
  /** A frozen encoder runs in eval mode during training and its weights never change. */
  frozen = false;

  /** `seed` (default 0) seeds the initialisation; `backend` (default 'cpu') is the engine it runs on. */
  constructor(config: VaeConfig, opts: PartOptions = {}) {
    const { seed, binding } = partOptions(opts);
    this.config = validateConfig(config);
    this.network = new Network(buildEncoder(this.config), seed, binding);
  }

  /** The engine this encoder runs on. */
  get backend(): 'cpu' | 'cuda' {
    return this.network.binding.backend;
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

  /** Encodes one volume [C, D, H, W], or a batch [N, C, D, H, W] with { batch: N }, to mu and logvar
   *  [N, latentSize]. Eval mode (running BN statistics) unless mode: 'train'. */
  async encode(x: Float32Array, opts: EncodeOptions = {}): Promise<{ mu: Float32Array; logvar: Float32Array }> {
    is.knownKeys('options', is.options('options', opts), ENCODE_KEYS);
    const [d, h, w] = this.config.inputShape;
    const train = trainMode(opts.mode);
    const n = is.samples('x', x, this.sampleSize, `${this.config.inChannels} × ${d} × ${h} × ${w}`, opts.batch);
    this.network.checkFree('encode');
    const xt = tensor(x, [n, this.config.inChannels, ...this.config.inputShape], 'x', this.network.binding);
    let outs: NativeTensor[] = [];
    try {
      outs = await nativeCall(() => this.network.net.forward(xt, n, train));
      return { mu: finiteValues(outs[0]!, 'encode', 'means (mu)'), logvar: finiteValues(outs[1]!, 'encode', 'log-variances') };
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

  /** `seed` (default 0; the network is initialised from seed + 1) and `backend` (default 'cpu'). */
  constructor(config: VaeConfig, opts: PartOptions = {}) {
    const { seed, binding } = partOptions(opts);
    this.config = validateConfig(config);
    this.network = new Network(buildDecoder(this.config), seed + 1, binding);
  }

  /** The engine this decoder runs on. */
  get backend(): 'cpu' | 'cuda' {
    return this.network.binding.backend;
  }

  get outputSize(): number {
    const [d, h, w] = this.config.inputShape;
    return this.config.outChannels * d * h * w;
  }

  /** Decodes latents [N, latentSize] to [N, outChannels, D, H, W]: probabilities per the config's
   *  outputActivation (default), raw logits with { output: 'logits' }, or a Uint8Array mask [N, D, H, W]
   *  with { output: 'mask' }. Eval mode unless mode: 'train'. */
  async decode<O extends OutputKind = 'probabilities'>(z: Float32Array, opts: DecodeOptions<O> = {}): Promise<Decoded<O>> {
    is.knownKeys('options', is.options('options', opts), DECODE_KEYS);
    const output = outputKind(opts.output);
    const train = trainMode(opts.mode);
    const n = batchOf(z, this.config.latentSize, 'z');
    this.network.checkFree('decode');
    const zt = tensor(z, [n, this.config.latentSize, 1, 1, 1], 'z', this.network.binding);
    let outs: NativeTensor[] = [];
    try {
      outs = await nativeCall(() => this.network.net.forward(zt, n, train));
      const y = output === 'probabilities' ? await this.activated(outs[0]!) : finiteValues(outs[0]!, 'decode', 'logits');
      return (output === 'mask' ? maskOf(y, n, this.config) : y) as Decoded<O>;
    } finally {
      release(zt, ...outs);
    }
  }

  /** The output activation of the network's output t, into a new array (ENOTFINITE on NaN/±Inf). */
  private async activated(t: NativeTensor): Promise<Float32Array> {
    const y = new Float32Array(t.length);
    const bad = await nativeCall(() => this.network.binding.activateInto(t, this.config.outputActivation, y));
    if (bad >= 0) notFinite(y, bad, 'decode', 'logits');
    return y;
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
    this.network.checkFree('latentGradient');
    this.busy = true;
    const nb = this.network.binding;
    const live: (NativeTensor | null)[] = [];
    try {
      const zt = tensor(z, [n, this.config.latentSize, 1, 1, 1], 'z', nb);
      live.push(zt);
      const outs = await nativeCall(() => this.network.net.forward(zt, n, false));
      live.push(...outs);
      const logits = finiteValues(outs[0]!, 'latentGradient', 'logits');
      const { value, grad } = objective(logits);
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
   * Trains the decoder alone on given latents: loss = weight·recon(decode(z), target), backward, Adam
   * (the one training step of ts/train/step.ts without an encoder; its dropout stream is (0, step)).
   * (A frozen encoder feeding a new decoder — the two-stage method — is Vae.trainStep with
   * vae.encoder.frozen; this is for latents that come from elsewhere.)
   */
  async trainStep(z: Float32Array, target: Float32Array, opts: Pick<TrainStepOptions, 'recon' | 'optimizer' | 'maxGradNorm'> = {}): Promise<{ loss: number; step: number }> {
    if (this.busy) throw new VoxvaeError('EBUSY', 'Decoder.trainStep: another call on this decoder is still running; await it first');
    this.busy = true;
    try {
      const o = is.options('options', opts);
      is.knownKeys('options', o, ['recon', 'optimizer', 'maxGradNorm']);
      const r = await trainStep({ encoder: null, decoder: this, seed: 0, step: this.steps, tensors: null, optimizer: this.optimizerConfig }, { input: z, target }, o, 'Decoder.trainStep');
      this.optimizerConfig = r.optimizer;
      return { loss: r.loss, step: ++this.steps };
    } finally {
      this.busy = false;
    }
  }

  dispose(): void {
    this.network.dispose();
  }
}

const ENCODE_KEYS = ['mode', 'batch'];
const DECODE_KEYS = ['mode', 'output'];
const FORWARD_KEYS = ['mode', 'batch', 'output', 'latent', 'step'];

/** options.mode: 'eval' (default) or 'train'; true for 'train'. */
function trainMode(m: unknown): boolean {
  return m !== undefined && is.oneOf('options.mode', m, MODES) === 'train';
}

function outputKind(o: unknown): OutputKind {
  return o === undefined ? 'probabilities' : is.oneOf('options.output', o, OUTPUT_KINDS);
}

/** The mask [N, D, H, W] of logits [N, C, D, H, W]: the most probable class (the first on ties) for C ≥ 2;
 *  for one channel, probability > 0.5 (logit > 0 under sigmoid; value > 0.5 for outputActivation 'none').
 *  The activations keep the scores' order, so the mask is taken from the logits (as voxvae/web does). */
export function maskOf(y: Float32Array, n: number, c: VaeConfig): Uint8Array {
  const C = c.outChannels, S = y.length / (n * C);
  const m = new Uint8Array(n * S);
  for (let b = 0; b < n; b++) {
    const yb = b * C * S, mb = b * S;
    if (C === 1) {
      const threshold = c.outputActivation === 'sigmoid' ? 0 : c.outputActivation === 'none' ? 0.5 : -Infinity;
      for (let s = 0; s < S; s++) m[mb + s] = y[yb + s]! > threshold ? 1 : 0;
      continue;
    }
    for (let k = 1; k < C; k++)
      for (let s = 0; s < S; s++) if (y[yb + k * S + s]! > y[yb + m[mb + s]! * S + s]!) m[mb + s] = k;
  }
  return m;
}

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
    const o = is.options('options', opts);
    const seed = is.seed('options.seed', o.seed ?? 0);
    const backend = is.oneOf('options.backend', o.backend ?? 'cpu', BACKENDS);
    if (o.threads !== undefined) setThreads(o.threads);
    const cfg = validateConfig(config);
    // One engine for both parts ('auto' resolves once).
    const engine = selectBackend(backend).backend;
    const encoder = new Encoder(cfg, { seed, backend: engine });
    try {
      return new Vae(encoder, new Decoder(cfg, { seed, backend: engine }), seed);
    } catch (e) {
      encoder.dispose();
      throw e;
    }
  }

  /** An existing encoder with a new decoder (the two-stage method's stage 2). The decoder config must
   *  agree with the encoder on latent size and volume shape. */
  static fromParts(encoder: Encoder, decoder: Decoder, seed = 0): Vae {
    if (decoder.config.latentSize !== encoder.config.latentSize) invalid('decoder.config.latentSize', `must equal the encoder's ${encoder.config.latentSize}`, decoder.config.latentSize);
    if (decoder.config.inputShape.some((d, i) => d !== encoder.config.inputShape[i])) invalid('decoder.config.inputShape', `must equal the encoder's [${encoder.config.inputShape.join(', ')}]`, decoder.config.inputShape);
    if (decoder.network.binding !== encoder.network.binding) invalid('decoder', `must use the encoder's backend (${encoder.network.binding.backend})`, decoder.network.binding.backend);
    return new Vae(encoder, decoder, is.seed('seed', seed));
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

  /** Encodes x (one volume, or { batch: N }; eval mode) and forms the evaluation latent z [N, latentSize]
   *  (evalLatent, or `latent`). */
  async encodeLatent(x: Float32Array, opts: { latent?: EvalLatent; batch?: number } = {}): Promise<{ z: Float32Array; mu: Float32Array; logvar: Float32Array }> {
    is.knownKeys('options', is.options('options', opts), ['latent', 'batch']);
    const latent = opts.latent === undefined ? this.evalLatent : is.oneOf('options.latent', opts.latent, EVAL_LATENTS);
    const { mu, logvar } = await this.encode(x, { mode: 'eval', ...(opts.batch !== undefined ? { batch: opts.batch } : {}) });
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

  /** Encodes one volume [inChannels, D, H, W] (or { batch: N } volumes) to mu and logvar [N, latentSize]. */
  encode(x: Float32Array, opts: EncodeOptions = {}): Promise<{ mu: Float32Array; logvar: Float32Array }> {
    is.options('options', opts);
    return this.encoder.encode(x, { ...opts, mode: opts.mode ?? this.defaultMode });
  }

  /** Decodes latents [N, latentSize]: probabilities (default), { output: 'logits' } or { output: 'mask' }. */
  decode<O extends OutputKind = 'probabilities'>(z: Float32Array, opts: DecodeOptions<O> = {}): Promise<Decoded<O>> {
    is.options('options', opts);
    return this.decoder.decode(z, { ...opts, mode: opts.mode ?? this.defaultMode });
  }

  /** Encode (one volume unless { batch: N }), form z, decode. latent defaults to evalLatent in eval mode
   *  and 'sample' in train mode; sampling uses the noise stream at `step` (default: the current training
   *  step). recon is what decode returns for `output`. */
  async forward<O extends OutputKind = 'probabilities'>(x: Float32Array, opts: ForwardOptions<O> = {}): Promise<{ recon: Decoded<O>; mu: Float32Array; logvar: Float32Array; z: Float32Array }> {
    is.knownKeys('options', is.options('options', opts), FORWARD_KEYS);
    const mode = opts.mode ?? this.defaultMode;
    const latent = opts.latent === undefined ? (mode === 'train' ? 'sample' : this.evalLatent) : is.oneOf('options.latent', opts.latent, LATENT_MODES);
    const { mu, logvar } = await this.encode(x, { mode, ...(opts.batch !== undefined ? { batch: opts.batch } : {}) });
    const z = this.latentFrom(mu, logvar, latent, opts.step === undefined ? this.step : is.seed('options.step', opts.step));
    const recon = await this.decode<O>(z, { mode, ...(opts.output !== undefined ? { output: opts.output } : {}) });
    return { recon, mu, logvar, z };
  }

  /** The engine this model runs on. */
  get backend(): 'cpu' | 'cuda' {
    return this.encoder.backend;
  }

  /**
   * One optimisation step on a batch (ts/train/step.ts): forward in train mode, loss = weight·recon + β·KL
   * (+ the hooks' terms), backward, gradient clipping, Adam/AdamW. `beta` is a number or a function of this
   * step's measured KL (a β controller: called after the forward pass, before backward). A frozen encoder
   * runs in eval mode, gets no gradient and no update, and the loss is the reconstruction term alone (the
   * two-stage method's stage 2).
   */
  async trainStep(batch: Batch | Float32Array, opts: TrainStepOptions = {}): Promise<StepResult> {
    if (this.running) throw new VoxvaeError('EBUSY', 'trainStep: a previous call on this model is still running; await it first');
    this.running = true;
    try {
      const b = batch instanceof Float32Array ? { input: batch } : is.options('batch', batch) as Batch;
      const r = await trainStep(
        { encoder: this.encoder, decoder: this.decoder, seed: this.seed, step: this.step, tensors: this.stepTensors, optimizer: this.optimizerConfig },
        b,
        opts,
        'trainStep',
      );
      this.optimizerConfig = r.optimizer;
      this.decoderLatent = r.latent;
      if (r.trainedEncoder) this.completion = null;
      this.step++;
      return { loss: r.loss, recon: r.recon, kl: r.kl, klPerSample: r.klPerSample, beta: r.beta, step: this.step };
    } finally {
      this.running = false;
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
      encodeLatent: async (x, batch) => (await vae.encodeLatent(x, { batch })).z,
      decodeLogits: (z) => vae.decode(z, { mode: 'eval', output: 'logits' }),
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
    await writeFileAtomic(file, serializeCheckpoint(this.checkpointState()));
  }

  /** @internal Everything a checkpoint holds (ts/model/checkpoint.ts): save() writes it, the Trainer keeps it in memory. */
  checkpointState(): CheckpointState {
    return {
      config: this.config,
      decoderConfig: this.decoder.config,
      encoderFrozen: this.encoder.frozen,
      seed: this.seed,
      step: this.step,
      optimizer: this.optimizerConfig,
      decoderLatent: this.decoderLatent,
      encoder: this.encoder.network.stateDict(),
      decoder: this.decoder.network.stateDict(),
      adam: { encoder: this.encoder.network.adam?.getState() ?? null, decoder: this.decoder.network.adam?.getState() ?? null },
      completion: this.completion,
    };
  }

  /**
   * @internal Copies a checkpoint's weights and training state into this model, whose networks were built
   * from the same configs (Vae.load, the Trainer's rollback). Missing or extra tensors are ECHECKPOINT.
   */
  restoreCheckpoint(st: SafeTensors, file: string, r: ResolvedConfigs): void {
    loadNetworks(st, file, [(t, f) => this.encoder.network.loadStateDict(t, f), (t, f) => this.decoder.network.loadStateDict(t, f)]);
    const s = readTrainingState(st, file, r);
    this.decoderLatent = s.decoderLatent;
    this.completion = s.completion;
    this.step = s.step;
    this.encoder.frozen = s.encoderFrozen;
    this.optimizerConfig = s.optimizer;
    if (!r.meta) return;
    for (const [part, net] of [['encoder', this.encoder.network], ['decoder', this.decoder.network]] as const) {
      const a = readAdamState(st, r.meta, file, part, net.numParams);
      if (a) nativeSync(() => net.optimizer().setState(a.step, a.m, a.v));
    }
  }

  /**
   * Loads a checkpoint written by save(), or a plain PyTorch state_dict saved with
   * `safetensors.torch.save_file(model.state_dict(), path)` when `config` is given (MONAI names).
   * Configs: an explicit config wins over the checkpoint's (the decoder follows it, keeping the
   * checkpoint's decoder block); see resolveConfigs in ts/model/checkpoint.ts.
   */
  static async load(file: string, opts: { config?: VaeConfig; decoderConfig?: VaeConfig; threads?: number; backend?: Backend } = {}): Promise<Vae> {
    const st = await readSafetensors(file);
    const r = resolveConfigs(st, file, { config: opts.config, decoderConfig: opts.decoderConfig });
    const nets = checkpointNetworks(st, file, r);
    if (!nets.hasEncoder)
      throw new VoxvaeError('ECHECKPOINT', `${file} holds a decoder alone (no tensors of the encoder the config describes): load it with voxvae/web's loadModel, or into a Decoder`, { path: file });
    if (opts.threads !== undefined) setThreads(opts.threads);
    const seed = r.meta?.seed ?? 0;
    const backend = selectBackend(opts.backend ?? 'cpu').backend;
    const vae = Vae.fromParts(new Encoder(r.config!, { seed, backend }), new Decoder(r.decoderConfig, { seed, backend }), seed);
    try {
      vae.restoreCheckpoint(st, file, r);
    } catch (e) {
      vae.dispose();
      throw e;
    }
    return vae;
  }

  /** Frees the native networks. While a call on this model runs (a training step, an encode or a
   *  decode), EBUSY and nothing is freed: await the call first. */
  dispose(): void {
    if (this.running) throw new VoxvaeError('EBUSY', 'dispose: a trainStep on this model is still running; await it first (nothing was freed)');
    for (const n of [this.encoder.network, this.decoder.network]) if (n.inUse) n.checkFree('dispose (nothing was freed)');
    this.stepTensors.dispose();
    this.encoder.dispose();
    this.decoder.dispose();
  }
}

/** Sets the number of CPU threads the kernels use (process-wide); 0 restores the default. */
export function setThreads(n: number): number {
  is.integer('threads', n, 0, 256);
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
