// WasmVae: inference with a trained voxvae model in WebAssembly — decode(z), encode(x) and
// complete(x, dev, γ) — loaded from the same safetensors checkpoints as the native engine (a whole
// VAE, an aggregated VAE whose decoder is skullVAE's stage-2 decoder, or a decoder alone).
// Inputs and outputs are Float32Arrays in NCDHW order, like the native API; masks are Uint8Arrays.
import { VoxvaeError, invalid } from '../errors.js';
import type { VaeConfig } from '../config.js';
import { checkpointNetworks, loadNetworks, ownedBy, readTrainingState, resolveConfigs, weightNames, type ModelKind } from '../model/checkpoint.js';
import { parseSafetensors, type SafeTensors, type TensorEntry } from '../safetensors_core.js';
import { WasmNet } from './net.js';
import { completeSkull, type CompleteOptions, type CompletionData, type CompletionModel, type CompletionResult } from '../completion/index.js';
import { describeLocation, loadRuntime, OUTPUT_ACTIVATION_CODE, readResource, type RuntimeOptions, type WasmRuntime } from './runtime.js';

import { EVAL_LATENTS, LATENT_MODES, OUTPUT_KINDS, evalLatentOf, type EvalLatent, type LatentMode, type OutputKind } from '../types.js';
import * as is from '../is.js';

export type { OutputKind };
/** 'vae': encoder + MONAI/ResNet-v2 decoder; 'aggregated': encoder + skullVAE stage-2 decoder; 'decoder': decoder alone. */
export type { ModelKind } from '../model/checkpoint.js';

export type CheckpointSource = Uint8Array | ArrayBuffer | string | URL;

export interface LoadModelOptions extends RuntimeOptions {
  /** The architecture, for checkpoints without voxvae metadata (PyTorch state_dicts). */
  config?: VaeConfig;
  /** The decoder's architecture when it differs from config (aggregated VAE without metadata). */
  decoderConfig?: VaeConfig;
  /** Load only the decoder of a whole-VAE checkpoint (less memory; encode() is then unavailable). */
  decoderOnly?: boolean;
  /** A runtime from loadRuntime() to share; default: the cached one for wasmPath/simd. */
  runtime?: WasmRuntime;
  /** Names the checkpoint in errors when it is given as bytes. */
  name?: string;
}

export interface OutputOptions {
  output?: OutputKind;
  /**
   * Write the result here instead of into a new array, and return it: a Float32Array of N × outChannels
   * × D × H × W values (probabilities, logits), or a Uint8Array of N × D × H × W (mask). Reusing one
   * buffer across calls saves a fresh allocation per call, whose pages the system must zero on first
   * touch (a full-size decode's 67 MB of logits: about 40 ms of page faults on the 2-core dev VM).
   */
  into?: Float32Array | Uint8Array;
}

const LATENT_CODE: Record<LatentMode, number> = { sample: 0, mean: 1, 'mean+std': 2 };

/** Latent rows [N, latentSize] (any positive N), or with `volume` one volume (or options.batch volumes). */
function f32Input(x: unknown, field: string, perSample: number, volume?: { describe: string; batch: number | undefined }): number {
  if (!(x instanceof Float32Array)) invalid(field, 'must be a Float32Array', x);
  if (volume) is.samples(field, x, perSample, volume.describe, volume.batch);
  else if (x.length === 0 || x.length % perSample !== 0)
    throw new VoxvaeError('ESHAPE', `${field} has ${x.length} values, not a positive multiple of one row's ${perSample}`, { path: field });
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i]!)) throw new VoxvaeError('ENOTFINITE', `${field}[${i}] is ${x[i]}`, { path: field });
  return x.length / perSample;
}

function outputKind(opts: OutputOptions | undefined): OutputKind {
  const o = is.options('options', opts).output;
  return o === undefined ? 'probabilities' : is.oneOf('options.output', o, OUTPUT_KINDS);
}

/** The caller's output buffer, checked before any work: the type the output kind needs, the exact length. */
function outputInto(opts: OutputOptions | undefined, kind: OutputKind, length: number): Float32Array | Uint8Array | undefined {
  const into = opts?.into;
  if (into === undefined) return undefined;
  const want = kind === 'mask' ? Uint8Array : Float32Array;
  if (!(into instanceof want)) invalid('options.into', `must be a ${want.name} for output '${kind}'`, into);
  if (into.length !== length)
    throw new VoxvaeError('ESHAPE', `options.into has ${into.length} values; output '${kind}' of this call has ${length}`, { path: 'options.into' });
  return into;
}

/** A view of module memory copied out: into the caller's array (checked by outputInto), else a new one. */
function copyOut<T extends Float32Array | Uint8Array>(view: T, into: Float32Array | Uint8Array | undefined): T {
  if (!into) return view.slice() as T;
  (into as T).set(view);
  return into as T;
}

/** A trained VAE (or its decoder) running in WebAssembly. Create with loadModel(). */
export class WasmVae {
  readonly runtime: WasmRuntime;
  readonly kind: ModelKind;
  /** The encoder's config (null for a decoder alone). */
  readonly config: VaeConfig | null;
  readonly decoderConfig: VaeConfig;
  /** The checkpoint's seed (the default Philox seed of latent: 'sample'). */
  readonly seed: number;
  /** The latent the decoder was trained on (the checkpoint's decoderLatent; 'sample' when absent). */
  readonly decoderLatent: LatentMode;
  /** The checkpoint's completion data (deviation vectors, defect maps, latent prior), or null. */
  readonly completion: CompletionData | null;
  private readonly encoderNet: WasmNet | null;
  private readonly decoderNet: WasmNet;

  private constructor(rt: WasmRuntime, kind: ModelKind, config: VaeConfig | null, dcfg: VaeConfig, enc: WasmNet | null, dec: WasmNet, seed: number, decoderLatent: LatentMode, completion: CompletionData | null) {
    this.runtime = rt;
    this.completion = completion;
    this.decoderLatent = decoderLatent;
    this.kind = kind;
    this.config = config;
    this.decoderConfig = dcfg;
    this.encoderNet = enc;
    this.decoderNet = dec;
    this.seed = seed;
  }

  /** Builds the networks and copies the weights in; `file` names the checkpoint in errors. */
  static fromSafetensors(rt: WasmRuntime, st: SafeTensors, file: string, opts: LoadModelOptions = {}): WasmVae {
    const r = resolveConfigs(st, file, { config: opts.config, decoderConfig: opts.decoderConfig, part: 'decoder' });
    const nets = checkpointNetworks(st, file, r);
    const withEncoder = nets.hasEncoder && !opts.decoderOnly;
    const others = weightNames(st).filter((k) => !ownedBy(nets.decoder)(k));
    if (!r.config && !opts.decoderOnly && others.length)
      throw new VoxvaeError('ECHECKPOINT', `${file} holds more than the decoder (${others.slice(0, 3).join(', ')}${others.length > 3 ? ', ...' : ''}) but only a decoder config was given: pass { config } too, or { decoderOnly: true }`, { path: file });
    const state = readTrainingState(st, file, r);
    let enc: WasmNet | null = null;
    let dec: WasmNet | null = null;
    try {
      dec = new WasmNet(rt, nets.decoder);
      const loaders = [(t: ReadonlyMap<string, TensorEntry>, f: string) => dec!.load(t, f)];
      if (withEncoder) {
        enc = new WasmNet(rt, nets.encoder!);
        loaders.push((t, f) => enc!.load(t, f));
      }
      // decoderOnly: the encoder's tensors are skipped (all but the decoder's when no encoder config is known).
      const skip = !opts.decoderOnly ? undefined : nets.encoder ? ownedBy(nets.encoder) : (k: string) => !ownedBy(nets.decoder)(k);
      loadNetworks(st, file, loaders, skip);
    } catch (e) {
      enc?.dispose();
      dec?.dispose();
      throw e;
    }
    const kind: ModelKind = withEncoder ? nets.kind : 'decoder';
    return new WasmVae(rt, kind, withEncoder ? r.config : null, r.decoderConfig, enc, dec, state.seed, state.decoderLatent, state.completion);
  }

  get latentSize(): number {
    return this.decoderConfig.latentSize;
  }
  /** The deterministic latent inference uses: μ + σ for a decoder trained on μ + σ, else μ (as the native Vae). */
  get evalLatent(): EvalLatent {
    return evalLatentOf(this.decoderLatent);
  }
  /** Values per decoded sample: outChannels × D × H × W. */
  get outputSize(): number {
    const [d, h, w] = this.decoderConfig.inputShape;
    return this.decoderConfig.outChannels * d * h * w;
  }
  /** Values per encoder input sample: inChannels × D × H × W (0 without an encoder). */
  get inputSize(): number {
    if (!this.config || !this.encoderNet) return 0;
    const [d, h, w] = this.config.inputShape;
    return this.config.inChannels * d * h * w;
  }
  get hasEncoder(): boolean {
    return this.encoderNet !== null;
  }
  get disposed(): boolean {
    return this.decoderNet.disposed;
  }

  /**
   * Decodes latents [N, latentSize] to [N, outChannels, D, H, W]: probabilities (the decoder config's
   * outputActivation; default), logits, or a mask [N, D, H, W] — the most probable class per voxel when
   * outChannels ≥ 2, else probability > 0.5 (value > 0.5 for outputActivation 'none').
   */
  decode(z: Float32Array, opts?: { output?: 'probabilities' | 'logits'; into?: Float32Array }): Promise<Float32Array>;
  decode(z: Float32Array, opts: { output: 'mask'; into?: Uint8Array }): Promise<Uint8Array>;
  decode(z: Float32Array, opts?: OutputOptions): Promise<Float32Array | Uint8Array>;
  async decode(z: Float32Array, opts?: OutputOptions): Promise<Float32Array | Uint8Array> {
    return this.decodeSync(z, opts);
  }

  /** decode() without the Promise (the work is synchronous either way). */
  decodeSync(z: Float32Array, opts?: { output?: 'probabilities' | 'logits'; into?: Float32Array }): Float32Array;
  decodeSync(z: Float32Array, opts: { output: 'mask'; into?: Uint8Array }): Uint8Array;
  decodeSync(z: Float32Array, opts?: OutputOptions): Float32Array | Uint8Array;
  decodeSync(z: Float32Array, opts?: OutputOptions): Float32Array | Uint8Array {
    const kind = outputKind(opts);
    this.alive('decode');
    const n = f32Input(z, 'z', this.latentSize);
    const into = outputInto(opts, kind, this.outputLength(n, kind));
    return this.runDecoder(n, (input) => input.set(z), kind, into, 'decode');
  }

  /** Encodes one volume [inChannels, D, H, W], or a batch [N, inChannels, D, H, W] with { batch: N }, (eval
   *  mode: running BN statistics) to mu and logvar [N, latentSize]. A volume of the wrong size is ESHAPE. */
  async encode(x: Float32Array, opts: { batch?: number } = {}): Promise<{ mu: Float32Array; logvar: Float32Array }> {
    return this.encodeSync(x, opts);
  }

  encodeSync(x: Float32Array, opts: { batch?: number } = {}): { mu: Float32Array; logvar: Float32Array } {
    is.knownKeys('options', is.options('options', opts), ['batch']);
    const enc = this.encoder('encode');
    const n = f32Input(x, 'x', this.inputSize, this.volume(opts.batch));
    return enc.forward(n, (input) => input.set(x), ([mu, logvar]) => ({ mu: mu!.slice(), logvar: logvar!.slice() }), 'encode');
  }

  /**
   * The gradient of an objective of the decoded logits with respect to z (eval mode), as the native
   * Decoder.latentGradient: `objective(logits)` returns { value, grad } with grad = ∂value/∂logits.
   */
  async latentGradient<T>(z: Float32Array, objective: (logits: Float32Array) => { value: T; grad: Float32Array }): Promise<{ value: T; grad: Float32Array }> {
    this.alive('latentGradient');
    const n = f32Input(z, 'z', this.latentSize);
    if (typeof objective !== 'function') invalid('objective', 'must be a function (logits) => { value, grad }', objective);
    return this.decoderNet.inputGradient(n, (input) => input.set(z), (y) => {
      const r = objective(y);
      for (let i = 0; i < r.grad.length; i++) if (!Number.isFinite(r.grad[i]!)) throw new VoxvaeError('ENOTFINITE', `latentGradient: the objective's gradient [${i}] is ${r.grad[i]}`, { path: 'objective' });
      return r;
    }, 'latentGradient');
  }

  /** Encodes x (one volume, or { batch: N }) and forms the evaluation latent (evalLatent, or `latent`): [N, latentSize]. */
  async encodeLatent(x: Float32Array, opts: { latent?: EvalLatent; batch?: number } = {}): Promise<{ z: Float32Array; mu: Float32Array; logvar: Float32Array }> {
    is.knownKeys('options', is.options('options', opts), ['latent', 'batch']);
    const latent = opts.latent === undefined ? this.evalLatent : is.oneOf('options.latent', opts.latent, EVAL_LATENTS);
    const { mu, logvar } = this.encodeSync(x, opts.batch !== undefined ? { batch: opts.batch } : {});
    if (latent === 'mean') return { z: mu.slice(), mu, logvar };
    const n = mu.length / this.latentSize, L = this.latentSize, rt = this.runtime;
    const z = rt.withAlloc(3 * n * L * 4, 'encodeLatent', (p) => {
      rt.f32(p + n * L * 4, n * L).set(mu);
      rt.f32(p + 2 * n * L * 4, n * L).set(logvar);
      rt.check(rt.exports.vx_reparameterize(p, 0, p + n * L * 4, p + 2 * n * L * 4, n, L, LATENT_CODE[latent], this.seed, 0), 'encodeLatent');
      return rt.f32(p, n * L).slice();
    });
    return { z, mu, logvar };
  }

  /**
   * Shape completion with the aggregated VAE's deviation vector: z = latent(x) + γ·dev, decoded. x is one
   * defective shape [inChannels, D, H, W], or a batch [N, inChannels, D, H, W] with { batch: N }; dev is one vector [latentSize] (or one per sample,
   * [N, latentSize]); γ scales it (0 reconstructs). latent defaults to the model's evalLatent (the
   * latent its decoder was trained on).
   */
  complete(x: Float32Array, dev: Float32Array, gamma: number, opts?: { latent?: LatentMode; seed?: number; step?: number; batch?: number; output?: 'probabilities' | 'logits'; into?: Float32Array }): Promise<Float32Array>;
  complete(x: Float32Array, dev: Float32Array, gamma: number, opts: { latent?: LatentMode; seed?: number; step?: number; batch?: number; output: 'mask'; into?: Uint8Array }): Promise<Uint8Array>;
  complete(x: Float32Array, dev: Float32Array, gamma: number, opts?: { latent?: LatentMode; seed?: number; step?: number; batch?: number } & OutputOptions): Promise<Float32Array | Uint8Array>;
  async complete(x: Float32Array, dev: Float32Array, gamma: number, opts: { latent?: LatentMode; seed?: number; step?: number; batch?: number } & OutputOptions = {}): Promise<Float32Array | Uint8Array> {
    const kind = outputKind(opts);
    const L = this.latentSize;
    const enc = this.encoder('complete');
    is.number('gamma', gamma);
    const latent = opts.latent ?? this.evalLatent;
    is.oneOf('options.latent', latent, LATENT_MODES);
    const seed = is.seed('options.seed', opts.seed ?? this.seed), step = is.seed('options.step', opts.step ?? 0);
    const n = f32Input(x, 'x', this.inputSize, this.volume(opts.batch));
    if (!(dev instanceof Float32Array)) invalid('dev', 'must be a Float32Array', dev);
    if (dev.length !== L && dev.length !== n * L)
      throw new VoxvaeError('ESHAPE', `dev has ${dev.length} values; expected the latent size ${L}${n > 1 ? ` or ${n} × ${L}` : ''}`, { path: 'dev' });
    for (let i = 0; i < dev.length; i++) if (!Number.isFinite(dev[i]!)) throw new VoxvaeError('ENOTFINITE', `dev[${i}] is ${dev[i]}`, { path: 'dev' });
    const into = outputInto(opts, kind, this.outputLength(n, kind));
    const rt = this.runtime;
    const z = rt.withAlloc(3 * n * L * 4, 'complete', (p) =>
      enc.forward(n, (input) => input.set(x), ([mu, logvar]) => {
        rt.f32(p + n * L * 4, n * L).set(mu!);
        rt.f32(p + 2 * n * L * 4, n * L).set(logvar!);
        rt.check(rt.exports.vx_reparameterize(p, 0, p + n * L * 4, p + 2 * n * L * 4, n, L, LATENT_CODE[latent], seed, step), 'complete');
        const zz = rt.f32(p, n * L).slice();
        for (let i = 0; i < zz.length; i++) zz[i] = zz[i]! + gamma * dev[dev.length === L ? i % L : i]!;
        return zz;
      }, 'complete'),
    );
    return this.runDecoder(n, (input) => input.set(z), kind, into, 'complete');
  }

  /** This model as skull completion sees it (ts/completion), as the native Vae.completionModel(). */
  completionModel(): CompletionModel {
    const [D, H, W] = this.decoderConfig.inputShape;
    return {
      latentSize: this.latentSize,
      voxels: D * H * W,
      outChannels: this.decoderConfig.outChannels,
      shape: [D, H, W],
      completion: this.completion,
      evalLatent: this.evalLatent,
      encodeLatent: async (x, batch) => (await this.encodeLatent(x, { batch })).z,
      decodeLogits: (z) => this.decode(z, { output: 'logits' }),
      latentGradient: (z, objective) => this.latentGradient(z, objective),
    };
  }

  /** Completes a defective skull (D × H × W, 0/1) as the native Vae.completeSkull: latent fitting by
   *  default, or z + γ·DEV (method 'dev'). Needs a checkpoint with completion data. */
  completeSkull(input: Uint8Array | Float32Array, opts: CompleteOptions): Promise<CompletionResult> {
    return completeSkull(this.completionModel(), input, opts);
  }

  /** Frees the module memory this model holds. The runtime itself stays loaded for other models. */
  dispose(): void {
    this.encoderNet?.dispose();
    this.decoderNet.dispose();
  }

  private alive(where: string): void {
    if (this.decoderNet.disposed) throw new VoxvaeError('EDISPOSED', `${where}: the model was disposed`);
  }

  private encoder(where: string): WasmNet {
    this.alive(where);
    if (!this.encoderNet)
      throw new VoxvaeError('EUNSUPPORTED', `${where}: this model has no encoder (${this.kind === 'decoder' ? 'the checkpoint holds a decoder alone' : 'loaded with decoderOnly'})`);
    return this.encoderNet;
  }

  /** How an encoder input is checked: one volume of the encoder's shape unless `batch` says how many. */
  private volume(batch: number | undefined): { describe: string; batch: number | undefined } {
    const c = this.config!;
    return { describe: `${c.inChannels} × ${c.inputShape.join(' × ')}`, batch };
  }

  /** Values of an output of `kind` for n samples. */
  private outputLength(n: number, kind: OutputKind): number {
    return kind === 'mask' ? (n * this.outputSize) / this.decoderConfig.outChannels : n * this.outputSize;
  }

  private runDecoder(n: number, fill: (input: Float32Array) => void, kind: OutputKind, into: Float32Array | Uint8Array | undefined, where: string): Float32Array | Uint8Array {
    const c = this.decoderConfig;
    const rt = this.runtime;
    const C = c.outChannels;
    const S = this.outputSize / C;
    return this.decoderNet.forward(n, fill, ([y]) => {
      const ptr = y!.byteOffset;
      if (kind === 'mask') {
        // Scores keep their order under softmax and sigmoid, so the mask is taken from the logits.
        const threshold = c.outputActivation === 'sigmoid' ? 0 : c.outputActivation === 'none' ? 0.5 : -Infinity;
        return rt.withAlloc(n * S, where, (m) => {
          rt.check(rt.exports.vx_argmax(m, ptr, n, C, S, threshold), where);
          return copyOut(rt.u8(m, n * S), into);
        });
      }
      if (kind === 'probabilities') rt.check(rt.exports.vx_activate(ptr, ptr, OUTPUT_ACTIVATION_CODE[c.outputActivation], n, C, S), where);
      return copyOut(rt.f32(ptr, n * C * S), into);
    }, where);
  }
}

/**
 * Loads a checkpoint for WebAssembly inference: bytes, or a URL/path (fetched in browsers, read from disk
 * in Node). Whole VAEs, aggregated VAEs and decoders alone are recognised by their tensor names and the
 * voxvae metadata; checkpoints without metadata need { config }.
 */
export async function loadModel(source: CheckpointSource, opts: LoadModelOptions = {}): Promise<WasmVae> {
  if (typeof opts !== 'object' || opts === null) invalid('options', 'must be an object', opts);
  let bytes: Uint8Array;
  let file: string;
  if (source instanceof Uint8Array) {
    bytes = source;
    file = opts.name ?? '<checkpoint bytes>';
  } else if (source instanceof ArrayBuffer) {
    bytes = new Uint8Array(source);
    file = opts.name ?? '<checkpoint bytes>';
  } else if (typeof source === 'string' || source instanceof URL) {
    file = opts.name ?? describeLocation(source);
    bytes = await readResource(source, 'the checkpoint', 'check the path or URL');
  } else {
    invalid('source', 'must be a Uint8Array, an ArrayBuffer, a path or a URL', source);
  }
  const st = parseSafetensors(bytes, file);
  const rt = opts.runtime ?? (await loadRuntime(opts));
  return WasmVae.fromSafetensors(rt, st, file, opts);
}
