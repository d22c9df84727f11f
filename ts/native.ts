// Loads the CPU addon and describes its surface. Every call into native code goes through
// `nativeCall`, which re-throws native failures as VoxvaeError from the caller's stack (sharp's
// pattern), so a user sees where they called voxvae, not where C++ failed.
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VoxvaeError, type ErrorCode } from './errors.js';
import type { LatentMode } from './types.js';

export interface NativeTensor {
  readonly shape: number[];
  readonly length: number;
  readonly disposed: boolean;
  toArray(): Float32Array;
  /** Copies the tensor into dst (exactly `length` values); with checkFinite, returns the index of the first
   *  NaN/±Inf (-1: none), found in the same pass over memory. */
  readInto(dst: Float32Array, checkFinite?: boolean): number;
  /** Copies `data` (exactly `length` values) into this tensor's buffer; NaN/Inf fail with ENOTFINITE
   *  unless checkFinite is false. Not while a call using the tensor runs. (CPU addon only.) */
  set?(data: Float32Array, checkFinite?: boolean): void;
  dispose(): void;
}

export interface ParamEntry {
  node: number;
  role: 'weight' | 'bias' | 'running_mean' | 'running_var';
  buffer: boolean;
  offset: number;
  count: number;
  shape: number[];
}

export interface NativeNet {
  readonly numParams: number;
  readonly numBuffers: number;
  readonly flops: number;
  readonly busy: boolean;
  paramTable(): ParamEntry[];
  nodes(): { op: string; shape: [number, number, number, number] }[];
  outputShapes(): [number, number, number, number][];
  initParams(seed: number): void;
  getParams(): Float32Array;
  setParams(p: Float32Array): void;
  getGrads(): Float32Array;
  /** Replaces the accumulated gradients (numParams values): the all-reduced average of data-parallel
   *  training (ts/dist). CPU addon only. */
  setGrads?(g: Float32Array): void;
  getBuffers(): Float32Array;
  setBuffers(b: Float32Array): void;
  getCounters(): Float64Array;
  setCounters(c: Float64Array): void;
  zeroGrad(): void;
  gradSumSq(): number;
  forward(x: NativeTensor, batch: number, train: boolean, dropoutSeed?: number, dropoutStep?: number): Promise<NativeTensor[]>;
  backward(grads: (NativeTensor | null)[], needInputGrad: boolean): Promise<NativeTensor | null>;
  dispose(): void;
}

/** Adam.step's options (vx::AdamOptions): one optimizer step; gradScale (default 1) multiplies the gradient
 *  first, in place (clipping by a norm computed over several networks). */
export interface AdamStepOptions {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay?: number;
  kind?: 'adam' | 'adamw';
  gradScale?: number;
}

export interface NativeAdam {
  readonly stepCount: number;
  step(options: AdamStepOptions): Promise<void>;
  getState(): { step: number; m: Float32Array; v: Float32Array };
  setState(step: number, m: Float32Array, v: Float32Array): void;
}

export type Reduction = 'mean' | 'sum';
/** A model's output activation, as the config spells it (ts/config.ts outputActivation). */
export type OutputActivation = 'softmax' | 'sigmoid' | 'none';

/** Where a loss writes its gradient: wantGrad (default true); gradOut (optional) a tensor of the input's
 *  size that receives it and is returned as `grad` (the CPU addon reuses it; a backend that does not
 *  returns a new tensor). */
export interface LossGradOptions {
  wantGrad?: boolean;
  gradOut?: NativeTensor | null;
}
/** diceLoss's options (vx::DiceOptions): MONAI's smoothing defaults 1e-5, weight 1. */
export interface DiceLossOptions extends LossGradOptions {
  smoothNr?: number;
  smoothDr?: number;
  reduction: Reduction;
  weight?: number;
}
export interface ElementLossOptions extends LossGradOptions {
  kind: 'bce' | 'mse' | 'l1';
  reduction: Reduction;
  weight?: number;
}

export interface NativeBinding {
  Tensor: new (data: Float32Array | null, shape: number[], checkFinite?: boolean) => NativeTensor;
  Net: new (spec: string) => NativeNet;
  Adam: new (net: NativeNet) => NativeAdam;
  /** MONAI's DiceLoss of logits [n, c, ...spatial] (softmax over c) against labels [n, spatial]. */
  diceLoss(logits: NativeTensor, labels: NativeTensor, options: DiceLossOptions): Promise<{ loss: number; grad: NativeTensor | null }>;
  elementLoss(x: NativeTensor, target: NativeTensor, options: ElementLossOptions): Promise<{ loss: number; grad: NativeTensor | null }>;
  /** The model's output activation of t [n, c, ...] in place (softmax over dimension 1), threaded
   *  (native/core output_activation_forward); resolves to t. */
  activate(t: NativeTensor, activation: OutputActivation): Promise<NativeTensor>;
  /** The output activation of t (unchanged) written into dst (t.length values), then dst checked: resolves
   *  to the index of the first NaN/±Inf (-1: none). A decode's result in one pass. */
  activateInto(t: NativeTensor, activation: OutputActivation, dst: Float32Array): Promise<number>;
  /** The gradient through the output activation from its output y [n, c, ...] and dy (same size): a new
   *  tensor dx (native/core output_activation_backward, threaded). */
  activateBackward(y: NativeTensor, dy: NativeTensor, activation: OutputActivation): Promise<NativeTensor>;
  /** mu, logvar: [n, l, ...] (n the first dimension). dmu/dlogvar (optional): gradients added to. */
  klNormal(mu: NativeTensor, logvar: NativeTensor, options: { reduction: Reduction; weight?: number; dmu?: NativeTensor | null; dlogvar?: NativeTensor | null }):
    { loss: number; perSample: Float32Array; dmu: NativeTensor; dlogvar: NativeTensor };
  /** mu, logvar: [n, l, ...]; z and eps come back as [n, l]. */
  reparameterize(mu: NativeTensor, logvar: NativeTensor, options: { latent: LatentMode; seed: number; step: number }): { z: NativeTensor; eps: NativeTensor };
  /** dz, eps, logvar: [n, l, ...]; dmu/dlogvar (optional): gradients added to. */
  reparameterizeBackward(dz: NativeTensor, eps: NativeTensor, logvar: NativeTensor, options?: { dmu?: NativeTensor | null; dlogvar?: NativeTensor | null }):
    { dmu: NativeTensor; dlogvar: NativeTensor };
  philoxNormal(seed: number, step: number, offset: number, count: number): Float32Array;
  philoxUniform(seed: number, step: number, offset: number, count: number): Float32Array;
  /** Rivera's population prior KL(N(mean of μ, diag v) ‖ N(0, I)); grads = given + its own (native/core/population_prior.h).
   *  mu, logvar: [n, l, ...]. */
  populationKl(mu: NativeTensor, logvar: NativeTensor | null, options: { variance: 'means' | 'mixture'; weight?: number; dmu?: NativeTensor | null; dlogvar?: NativeTensor | null }):
    { loss: number; mean: Float32Array; variance: Float32Array; dmu: NativeTensor; dlogvar: NativeTensor };
  /** Rivera's per-sample variance penalty weight·R_i Σ_k (σ² − log σ² − 1); dlogvar = given + its own. */
  variancePenalty(logvar: NativeTensor, options: { reduction: Reduction; weight?: number; dlogvar?: NativeTensor | null }):
    { loss: number; perSample: Float32Array; dlogvar: NativeTensor };
  setNumThreads(n: number): number;
  numThreads(): number;
  /** The ISA the CPU kernels run ('avx512f', 'avx2', 'sse2', 'portable'); with a name, selects it first. */
  cpuIsa(isa?: string): string;
  readonly backend: 'cpu' | 'cuda';
  readonly abiVersion: number;
  /** CUDA addon only: NCCL, loaded at run time (docs/distributed.md). 0 when libnccl.so.2 does not load. */
  ncclVersion?(): number;
  ncclUniqueId?(): Uint8Array;
  ncclConnect?(options: { rank: number; worldSize: number; id: Uint8Array; timeoutMs?: number }): Promise<NativeNcclComm>;
}

/** A CUDA addon's NCCL communicator: gradients all-reduced on the device, on the net's stream. */
export interface NativeNcclComm {
  allReduceGrads(net: NativeNet, op: 'mean' | 'sum'): Promise<void>;
  close(): void;
}

/** The addons' JS ABI (native/napi/exports.h kAddonAbi, both addons). 2: options objects (diceLoss,
 *  elementLoss, klNormal, reparameterize, reparameterizeBackward, populationKl, variancePenalty,
 *  Adam.step) and activate. 3: Tensor.readInto, activateInto. */
export const ADDON_ABI = 3;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let binding: NativeBinding | undefined;
let bindingFile: string | undefined;

/** The file the CPU addon was loaded from (loading it first if needed). */
export function addonFile(): string {
  native();
  return bindingFile!;
}

/** The files the CPU addon is loaded from, in order: a local build (build/Release, made by `npm install`
 *  from source or `npm run build:native`; first, so that a developer's rebuild is never shadowed by a
 *  stale prebuild), then the N-API prebuild for this platform and CPU that the npm package ships
 *  (prebuilds/<platform>-<arch>/voxvae[.glibc|.musl].node, made by `npm run prebuild`, named by
 *  prebuildify with node-gyp-build's tags). */
export function addonCandidates(root = ROOT): string[] {
  const out = [path.join(root, 'build', 'Release', 'voxvae.node')];
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.node')).sort();
  } catch {
    files = [];
  }
  const libc = process.platform === 'linux' ? (isMusl() ? 'musl' : 'glibc') : '';
  const fits = (f: string): boolean => {
    const tags = f.split('.').slice(1, -1);
    if (tags.some((t) => /^abi\d+$/.test(t)) && !tags.includes('napi')) return false; // a Node-ABI-specific build
    if (libc && tags.some((t) => t === 'glibc' || t === 'musl') && !tags.includes(libc)) return false;
    return true;
  };
  for (const f of files.filter(fits)) out.push(path.join(dir, f));
  if (!files.some(fits)) out.push(path.join(dir, `voxvae.${libc || 'napi'}.node`));
  return out;
}

function isMusl(): boolean {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return !report?.header?.glibcVersionRuntime;
}

/** Loads the first of `files` that loads as this package's addon. When none does, one ENATIVE error
 *  lists every attempt and the fix (sharp's pattern). */
export function loadAddonFrom(files: string[], root = ROOT): { binding: NativeBinding; file: string } {
  const require = createRequire(import.meta.url);
  const attempts: string[] = [];
  for (const file of files) {
    const name = path.relative(root, file);
    if (!existsSync(file)) {
      attempts.push(`${name}: not found`);
      continue;
    }
    try {
      const b = require(file) as NativeBinding;
      if (b?.abiVersion !== ADDON_ABI) {
        attempts.push(`${name}: addon ABI ${b?.abiVersion}, this package needs ${ADDON_ABI} (a build of another version)`);
        continue;
      }
      return { binding: b, file };
    } catch (e) {
      attempts.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new VoxvaeError(
    'ENATIVE',
    `voxvae's native CPU addon could not be loaded for ${process.platform}-${process.arch} (Node ${process.version}).\n` +
      attempts.map((a) => `  tried ${a}`).join('\n') +
      `\nFix: the npm package ships prebuilds for linux-x64 and linux-arm64 (glibc >= 2.32); elsewhere, or when they fail to load, ` +
      `build from source with \`npm rebuild voxvae\` (needs a C++17 compiler, make and Python for node-gyp). ` +
      `In a clone of the repository: \`npm run build:native\`.`,
  );
}

/** The CPU addon, loaded on first use from the first of addonCandidates() that loads. */
export function native(): NativeBinding {
  if (binding) return binding;
  const got = loadAddonFrom(addonCandidates());
  binding = got.binding;
  bindingFile = got.file;
  return binding;
}

function rethrow(e: unknown, site: Error): never {
  if (e instanceof VoxvaeError) throw e;
  const err = e as { code?: string; message?: string };
  const code = (typeof err?.code === 'string' ? err.code : 'EINTERNAL') as ErrorCode;
  const out = new VoxvaeError(code, err?.message ?? String(e), { cause: e });
  out.stack = `VoxvaeError: ${out.message}\n${(site.stack ?? '').split('\n').slice(1).join('\n')}`;
  throw out;
}

/** Runs a synchronous native call, converting its errors. */
export function nativeSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    rethrow(e, new Error());
  }
}

/** Awaits an asynchronous native call; the error keeps the stack of the caller of nativeCall. */
export async function nativeCall<T>(fn: () => Promise<T>): Promise<T> {
  const site = new Error();
  try {
    return await fn();
  } catch (e) {
    rethrow(e, site);
  }
}
