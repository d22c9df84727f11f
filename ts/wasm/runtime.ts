// The WebAssembly runtime: finds, fetches and instantiates native/wasm's standalone .wasm (SIMD,
// scalar, or SIMD with threads), provides its few imports, starts its worker threads, and wraps the C
// ABI of native/wasm/exports.cpp with status checks. Shared by the browser entry (ts/web) and Node:
// nothing here imports a Node module; in Node, file: locations are read through a dynamic import of
// node:fs that browsers never reach.
import { VoxvaeError, type ErrorCode } from '../errors.js';
import * as is from '../is.js';
import { hardwareThreads, startWorkers, type WorkerPool } from './threads.js';

// ---- minimal WebAssembly typings (tsconfig's lib has no DOM; the public API exposes none of these) ----
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmModuleImport {
  module: string;
  name: string;
  kind: string;
}
interface WasmModule {}
interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
interface WasmNamespace {
  validate(bytes: Uint8Array): boolean;
  compile(bytes: Uint8Array): Promise<WasmModule>;
  instantiate(module: WasmModule, imports: Record<string, Record<string, unknown>>): Promise<WasmInstance>;
  Module: { imports(m: WasmModule): WasmModuleImport[] };
  Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
}
function wasmApi(): WasmNamespace | undefined {
  return (globalThis as { WebAssembly?: WasmNamespace }).WebAssembly;
}

/** The exports of native/wasm/exports.cpp (pointers are wasm32 addresses, read with `>>> 0`). */
export interface VxExports {
  /** Exported by the single-threaded builds; the threaded one imports its (shared) memory. */
  memory?: WasmMemory;
  _initialize?: () => void;
  stackRestore?: (sp: number) => void;
  vx_heap_bytes(): number;
  // Threaded build only (native/wasm/parallel_wasm.cpp and wasm-ld's TLS support).
  __wasm_init_tls?: (block: number) => void;
  __tls_size?: { value: number };
  __tls_align?: { value: number };
  vx_main_tls_block?: () => number;
  vx_main_tls_capacity?: () => number;
  vx_workers_registered?: () => number;
  vx_workers_quit?: () => void;
  vx_workers_failed?: () => number;
  vx_set_can_block?: (yes: number) => void;
  vx_workers_reset_failed?: () => void;
  /** The pool's self-test (test/wasm.test.ts): chunks taken back by the caller, or -(1 + bad region). */
  vx_test_parallel?: (regions: number, jitter: number, seed: number) => number;
  vx_abi_version(): number;
  vx_simd(): number;
  vx_last_error(): number;
  vx_clear_error(): void;
  vx_alloc(bytes: number): number;
  vx_free(ptr: number): void;
  vx_num_threads(): number;
  vx_set_num_threads(n: number): number;
  vx_net_create(spec: number, len: number, out: number): number;
  vx_net_destroy(net: number): void;
  vx_net_num_nodes(net: number): number;
  vx_net_node_op(net: number, i: number): number;
  vx_net_node_shape(net: number, i: number, out: number): number;
  vx_net_num_params(net: number): number;
  vx_net_params(net: number): number;
  vx_net_num_buffers(net: number): number;
  vx_net_buffers(net: number): number;
  vx_net_num_entries(net: number): number;
  vx_net_entry(net: number, i: number, out: number): number;
  vx_net_num_outputs(net: number): number;
  vx_net_output_shape(net: number, k: number, out: number): number;
  vx_net_forward_bytes(net: number, batch: number): number;
  vx_net_input(net: number, batch: number): number;
  vx_net_forward(net: number, batch: number): number;
  vx_net_output(net: number, k: number): number;
  vx_net_backward_input(net: number, dout: number, dx: number): number;
  vx_reparameterize(z: number, eps: number, mu: number, logvar: number, n: number, l: number, mode: number, seed: number, step: number): number;
  /** In place when y === x; activation: OUTPUT_ACTIVATION_CODE[...]. */
  vx_activate(y: number, x: number, activation: number, n: number, c: number, spatial: number): number;
  vx_argmax(mask: number, x: number, n: number, c: number, spatial: number, threshold: number): number;
}

/** The C ABI version this loader speaks (kAbiVersion in native/wasm/exports.cpp). */
export const ABI_VERSION = 2;
/** The C ABI's codes of the output activations (vx::OutputActivation in native/core/activation.h). */
export const OUTPUT_ACTIVATION_CODE: Record<'none' | 'sigmoid' | 'softmax', number> = { none: 0, sigmoid: 1, softmax: 2 };
/** WebAssembly memory is 32-bit: 4 GiB at most. */
export const MAX_WASM_BYTES = 2 ** 32;

const STATUS_CODES: ErrorCode[] = ['EINVAL', 'EINVAL', 'ESHAPE', 'ENOMEM', 'ENOTFINITE', 'EUNSUPPORTED', 'EBUSY', 'EINTERNAL'];

// ---- feature probes ---------------------------------------------------------------------------------------
// Tiny modules that validate only where the feature exists (the same probes wasm-feature-detect uses).
// SIMD: a function returning v128 (i8x16.splat / i32x4 ops).
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);
// Threads: a shared memory and an atomic load.
const THREADS_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 4, 1, 3, 1, 1, 10, 11, 1, 9, 0, 65, 0, 254, 16, 2, 0, 26, 11]);

/** What this JavaScript engine offers the WebAssembly builds. */
export interface WasmFeatures {
  /** WebAssembly is available at all. */
  wasm: boolean;
  /** Fixed-width SIMD (voxvae_simd.wasm). */
  simd: boolean;
  /** Shared memory and atomics usable for threads: in browsers only on cross-origin isolated pages. */
  threads: boolean;
}

let featureCache: WasmFeatures | null = null;

/** Probes SIMD and thread support once (cheap: two tiny modules are validated). */
export function wasmFeatures(): WasmFeatures {
  if (featureCache) return featureCache;
  const W = wasmApi();
  if (!W) return (featureCache = { wasm: false, simd: false, threads: false });
  const validate = (b: Uint8Array): boolean => {
    try {
      return W.validate(b);
    } catch {
      return false;
    }
  };
  const g = globalThis as { SharedArrayBuffer?: unknown; crossOriginIsolated?: boolean; process?: { versions?: { node?: string } } };
  let threads = typeof g.SharedArrayBuffer === 'function' && validate(THREADS_PROBE);
  // Browsers expose SharedArrayBuffer to cross-origin isolated pages only (COOP + COEP headers).
  if (threads && g.crossOriginIsolated === false) threads = false;
  if (threads) {
    try {
      new W.Memory({ initial: 1, maximum: 1, shared: true });
    } catch {
      threads = false;
    }
  }
  return (featureCache = { wasm: true, simd: validate(SIMD_PROBE), threads });
}

// ---- where the .wasm files are ------------------------------------------------------------------------------
export type WasmVariant = 'simd' | 'scalar' | 'simd-mt';
export const WASM_FILES: Record<WasmVariant, string> = { simd: 'voxvae_simd.wasm', scalar: 'voxvae.wasm', 'simd-mt': 'voxvae_simd_mt.wasm' };

/** The files next to the package (native/wasm/dist); literal URLs so that bundlers can find and copy them. */
function defaultLocation(variant: WasmVariant): URL {
  switch (variant) {
    case 'simd':
      return new URL('../../native/wasm/dist/voxvae_simd.wasm', import.meta.url);
    case 'scalar':
      return new URL('../../native/wasm/dist/voxvae.wasm', import.meta.url);
    case 'simd-mt':
      return new URL('../../native/wasm/dist/voxvae_simd_mt.wasm', import.meta.url);
  }
}

let wasmPathSetting: string | URL | undefined;

/**
 * Sets where the .wasm files are looked for (bundlers move them): a folder (URL or path ending in '/')
 * that holds voxvae_simd.wasm and voxvae.wasm, or `undefined` for the package's own copy. A per-call
 * `wasmPath` option takes precedence.
 */
export function setWasmPath(location: string | URL | undefined): void {
  if (location !== undefined && typeof location !== 'string' && !(location instanceof URL))
    throw new VoxvaeError('EINVAL', 'setWasmPath: location must be a string, a URL or undefined', { path: 'wasmPath' });
  wasmPathSetting = location;
}

export function getWasmPath(): string | URL | undefined {
  return wasmPathSetting;
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string' && typeof (globalThis as { window?: unknown }).window === 'undefined';
}

/** Resolves a folder or file location plus the variant's file name to what will be fetched or read. */
export function resolveWasmLocation(location: string | URL | undefined, variant: WasmVariant): string | URL {
  if (location === undefined) return defaultLocation(variant);
  const file = WASM_FILES[variant];
  const s = location instanceof URL ? location.href : location;
  if (s.endsWith('.wasm')) return location;
  const dir = s.endsWith('/') ? s : s + '/';
  if (location instanceof URL) return new URL(file, dir);
  return dir + file;
}

export function describeLocation(loc: string | URL): string {
  return loc instanceof URL ? (loc.protocol === 'file:' ? decodeURIComponent(loc.pathname) : loc.href) : loc;
}

// A variable specifier keeps bundlers from trying to resolve node:fs for the browser.
const NODE_FS = 'node:fs/promises';

/**
 * Reads a resource: in Node, file: URLs and plain paths from the file system; otherwise (browsers, and
 * http(s)/data/blob URLs in Node) with fetch. `what` names the resource and `hint` says what to do, in
 * the EIO error that names the location tried.
 */
export async function readResource(loc: string | URL, what: string, hint: string): Promise<Uint8Array> {
  const where = describeLocation(loc);
  const fileUrl = loc instanceof URL ? loc.protocol === 'file:' : /^file:/i.test(loc);
  const hasScheme = loc instanceof URL || /^[a-z][a-z0-9+.-]*:\/\//i.test(loc) || /^(data|blob):/i.test(loc);
  if (isNode() && (fileUrl || !hasScheme)) {
    try {
      const fs = (await import(/* webpackIgnore: true */ /* @vite-ignore */ NODE_FS)) as { readFile(p: string | URL): Promise<Uint8Array> };
      const b = await fs.readFile(typeof loc === 'string' && fileUrl ? new URL(loc) : loc);
      return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    } catch (e) {
      throw new VoxvaeError('EIO', `cannot read ${what} ${where}: ${(e as Error).message}; ${hint}`, { path: where, cause: e });
    }
  }
  let res: Response;
  try {
    res = await fetch(loc);
  } catch (e) {
    throw new VoxvaeError('EIO', `cannot fetch ${what} ${where}: ${(e as Error).message}; ${hint}`, { path: where, cause: e });
  }
  if (!res.ok) throw new VoxvaeError('EIO', `cannot fetch ${what} ${where}: HTTP ${res.status} ${res.statusText}; ${hint}`, { path: where });
  return new Uint8Array(await res.arrayBuffer());
}

const WASM_HINT = 'set the location of the .wasm files with setWasmPath() or the wasmPath option (bundlers move them), or rebuild them with `npm run build:wasm`';

// ---- the runtime ----------------------------------------------------------------------------------------------
export interface RuntimeOptions {
  /** Folder (URL or path ending in '/') holding the .wasm files, or one .wasm file. Default: setWasmPath's, else the package's. */
  wasmPath?: string | URL;
  /** The module's bytes, when the caller has them (no fetch then). Their build must match `simd` and `threads`. */
  wasmBinary?: Uint8Array | ArrayBuffer;
  /** 'auto' (default): the SIMD build where the engine supports SIMD, else the scalar one. */
  simd?: boolean | 'auto';
  /**
   * Threads for the kernels. 'auto' (default): the logical cores (at most 8) where shared memory works —
   * Node, and cross-origin isolated pages — else 1. More than 1 needs SIMD and shared memory; where the
   * threaded build cannot start, the runtime falls back to one thread and says why in
   * `runtime.threadsUnavailable`.
   */
  threads?: number | 'auto';
}

/** The threaded build's memory: 16 MiB to start (INITIAL_MEMORY in build.sh), growable to 4 GiB. */
const MT_INITIAL_PAGES = 256;
const MT_MAX_PAGES = 65536;

/** One instantiated module: its memory and exports, plus checked helpers for the model code. */
export class WasmRuntime {
  readonly exports: VxExports;
  readonly memory: WasmMemory;
  /** Whether the SIMD build is running. */
  readonly simd: boolean;
  /** Threads the kernels use (1 + started workers). */
  readonly threads: number;
  /** Why fewer threads than asked for run (null when none were refused). */
  threadsUnavailable: string | null = null;
  /** Where the module came from (a path or URL), for messages. */
  readonly source: string;
  private readonly decoder = new TextDecoder();
  private pool: WorkerPool | null;

  constructor(exports: VxExports, memory: WasmMemory, simd: boolean, source: string, pool: WorkerPool | null = null) {
    this.exports = exports;
    this.memory = memory;
    this.simd = simd;
    this.source = source;
    this.pool = pool;
    this.threads = 1 + (pool?.size ?? 0);
  }

  /** Bytes of linear memory (it only grows). */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** Bytes currently allocated by the module's malloc. */
  get heapBytes(): number {
    return this.exports.vx_heap_bytes();
  }

  /** Views are made on demand: growing the memory detaches (or, shared, outgrows) earlier ones. */
  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr >>> 0, length);
  }
  u8(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr >>> 0, length);
  }
  i32(ptr: number, length: number): Int32Array {
    return new Int32Array(this.memory.buffer, ptr >>> 0, length);
  }

  lastError(): string {
    const p = this.exports.vx_last_error() >>> 0;
    const mem = new Uint8Array(this.memory.buffer);
    let end = p;
    while (end < mem.length && mem[end] !== 0 && end - p < 4096) end++;
    // slice(): TextDecoder refuses views of shared memory.
    return this.decoder.decode(mem.slice(p, end));
  }

  /** Throws a VoxvaeError for a non-zero status, with the module's message, prefixed by `where`. */
  check(status: number, where: string): void {
    if (status === 0) return;
    const code = STATUS_CODES[status] ?? 'EINTERNAL';
    throw new VoxvaeError(code, `${where}: ${this.lastError() || `status ${status}`}`);
  }

  /** A pointer returned by the module, or the module's error when it is null. */
  ptr(p: number, where: string, code: ErrorCode = 'ENOMEM'): number {
    const q = p >>> 0;
    if (q === 0) throw new VoxvaeError(code, `${where}: ${this.lastError() || 'null pointer'}`);
    return q;
  }

  alloc(bytes: number, where: string): number {
    if (!Number.isInteger(bytes) || bytes < 0 || bytes >= MAX_WASM_BYTES)
      throw new VoxvaeError('ENOMEM', `${where}: ${bytes} bytes do not fit in WebAssembly's 4 GiB memory`);
    return this.ptr(this.exports.vx_alloc(bytes), where);
  }

  free(ptr: number): void {
    if (ptr) this.exports.vx_free(ptr);
  }

  /** Runs fn with `bytes` of scratch memory, freed afterwards whatever happens. */
  withAlloc<T>(bytes: number, where: string, fn: (ptr: number) => T): T {
    const p = this.alloc(bytes, where);
    try {
      return fn(p);
    } finally {
      this.free(p);
    }
  }

  /** Copies a string (UTF-8, no terminator needed) into module memory; the caller frees. */
  string(s: string, where: string): { ptr: number; len: number } {
    const bytes = new TextEncoder().encode(s);
    const ptr = this.alloc(bytes.length, where);
    this.u8(ptr, bytes.length).set(bytes);
    return { ptr, len: bytes.length };
  }

  /**
   * After a forward pass on the threaded build: if a worker trapped meanwhile, its share of the work is
   * missing, so the pass is refused; the runtime goes on with the threads that are left.
   */
  checkWorkers(where: string): void {
    if (!this.exports.vx_workers_failed?.()) return;
    this.exports.vx_workers_reset_failed!();
    this.threadsUnavailable = 'a worker thread failed; the remaining threads carry on';
    throw new VoxvaeError('EINTERNAL', `${where}: a WebAssembly worker thread failed during the computation, so its result was discarded; please report this (the runtime continues with ${this.exports.vx_num_threads()} thread(s))`);
  }

  /** Stops the worker threads (models on this runtime then run on one thread). Idempotent. */
  dispose(): void {
    if (!this.pool) return;
    this.pool.terminate();
    this.pool = null;
    this.exports.vx_set_num_threads(1);
  }
}

const EXPORTS_NEEDED: (keyof VxExports)[] = [
  'vx_abi_version', 'vx_last_error', 'vx_alloc', 'vx_free', 'vx_heap_bytes', 'vx_net_create', 'vx_net_destroy', 'vx_net_forward', 'vx_net_input', 'vx_net_output',
  'vx_net_backward_input', 'vx_activate',
];
const EXPORTS_NEEDED_MT: (keyof VxExports)[] = [
  'stackRestore', '__wasm_init_tls', '__tls_size', '__tls_align', 'vx_main_tls_block', 'vx_main_tls_capacity', 'vx_workers_registered', 'vx_workers_quit',
];

/**
 * Instantiates a module from its bytes; `where` names it in errors. A module that imports its memory
 * is the threaded build: it gets a shared memory and, with threads > 1, threads - 1 workers.
 */
export async function instantiateRuntime(bytes: Uint8Array, where: string, simd: boolean, threads = 1): Promise<WasmRuntime> {
  const W = wasmApi();
  if (!W) throw new VoxvaeError('EUNSUPPORTED', 'this JavaScript engine has no WebAssembly');
  let module: WasmModule;
  try {
    module = await W.compile(bytes);
  } catch (e) {
    const magic = bytes.length >= 4 && bytes[0] === 0 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d;
    const what = magic ? `is corrupt or uses features this engine lacks (${(e as Error).message})` : `is not a WebAssembly module (${bytes.length} bytes${bytes.length ? ', starting ' + JSON.stringify(new TextDecoder().decode(bytes.subarray(0, 16))) : ''})`;
    throw new VoxvaeError('EFORMAT', `${where} ${what}; rebuild it with \`npm run build:wasm\` or point wasmPath at an intact copy`, { path: where, cause: e });
  }
  let memory: WasmMemory | null = null;
  const known: Record<string, Record<string, unknown>> = {
    env: { emscripten_notify_memory_growth: () => {} },
    wasi_snapshot_preview1: {
      proc_exit: (code: number) => {
        throw new VoxvaeError('EINTERNAL', `${where}: the module aborted (exit ${code}); load a new runtime`);
      },
      environ_sizes_get: (countPtr: number, sizePtr: number) => {
        if (!memory) return 52;
        const dv = new DataView(memory.buffer);
        dv.setUint32(countPtr >>> 0, 0, true);
        dv.setUint32(sizePtr >>> 0, 0, true);
        return 0;
      },
      environ_get: () => 0,
    },
  };
  // Anything else the module imports (a different emscripten) gets a stub that fails loudly if called.
  const imports: Record<string, Record<string, unknown>> = {};
  let threaded = false;
  for (const imp of W.Module.imports(module)) {
    const mod = (imports[imp.module] ??= {});
    const fn = known[imp.module]?.[imp.name];
    if (imp.module === 'env' && imp.name === 'memory' && imp.kind === 'memory') {
      threaded = true;
      try {
        memory = new W.Memory({ initial: MT_INITIAL_PAGES, maximum: MT_MAX_PAGES, shared: true });
      } catch (e) {
        throw new VoxvaeError('EUNSUPPORTED', `${where} is the threaded build and needs shared WebAssembly memory, which this engine refuses (${(e as Error).message}); in browsers the page must be cross-origin isolated`, { path: where, cause: e });
      }
      mod[imp.name] = memory;
    } else if (fn) mod[imp.name] = fn;
    else if (imp.kind === 'function')
      mod[imp.name] = () => {
        throw new VoxvaeError('EINTERNAL', `${where}: called the unsupported import ${imp.module}.${imp.name}`);
      };
    else throw new VoxvaeError('EFORMAT', `${where} imports ${imp.kind} ${imp.module}.${imp.name}, which this loader does not provide (a build for another loader?)`, { path: where });
  }
  let instance: WasmInstance;
  try {
    instance = await W.instantiate(module, imports);
  } catch (e) {
    throw new VoxvaeError('EFORMAT', `${where} cannot be instantiated: ${(e as Error).message}`, { path: where, cause: e });
  }
  const ex = instance.exports as unknown as VxExports;
  for (const k of [...EXPORTS_NEEDED, ...(threaded ? EXPORTS_NEEDED_MT : [])])
    if (!(k in (instance.exports as object))) throw new VoxvaeError('EFORMAT', `${where} is not a voxvae module: it lacks the export ${k}`, { path: where });
  if (!threaded) {
    if (!ex.memory) throw new VoxvaeError('EFORMAT', `${where} is not a voxvae module: it neither exports nor imports a memory`, { path: where });
    memory = ex.memory;
  } else {
    // The first instance's thread-local block must be in place before any C++ runs (static constructors included).
    const tlsSize = ex.__tls_size!.value;
    if (tlsSize > ex.vx_main_tls_capacity!()) throw new VoxvaeError('EINTERNAL', `${where}: thread-local data (${tlsSize} bytes) exceeds the main block`);
    ex.__wasm_init_tls!(ex.vx_main_tls_block!());
  }
  ex._initialize?.();
  const abi = ex.vx_abi_version();
  if (abi !== ABI_VERSION) throw new VoxvaeError('EFORMAT', `${where} speaks C ABI version ${abi}, this loader version ${ABI_VERSION}: the .wasm and the JavaScript come from different voxvae versions`, { path: where });
  let pool: WorkerPool | null = null;
  if (threaded && threads > 1) {
    const rtForAlloc = new WasmRuntime(ex, memory!, simd, where);
    pool = await startWorkers(
      {
        module,
        memory,
        alloc: (b, w) => rtForAlloc.alloc(b, w),
        free: (p) => rtForAlloc.free(p),
        tlsSize: ex.__tls_size!.value,
        tlsAlign: Math.max(16, ex.__tls_align!.value),
        registered: () => ex.vx_workers_registered!(),
        quit: () => ex.vx_workers_quit!(),
      },
      threads - 1,
    );
  }
  const rt = new WasmRuntime(ex, memory!, simd && ex.vx_simd() === 1, where, pool);
  ex.vx_set_num_threads(rt.threads);
  // The calling thread may sleep while workers finish, except on a browser's main thread (a window has
  // a document; workers and Node have none), where memory.atomic.wait throws.
  ex.vx_set_can_block?.(typeof (globalThis as { document?: unknown }).document === 'undefined' ? 1 : 0);
  return rt;
}

const runtimeCache = new Map<string, Promise<WasmRuntime>>();

async function resolveThreads(opt: number | 'auto' | undefined, feats: WasmFeatures, simd: boolean): Promise<{ threads: number; refused: string | null }> {
  if (opt !== undefined && opt !== 'auto' && !(Number.isInteger(opt) && opt >= 1 && opt <= 64)) is.invalid('options.threads', "must be 'auto' or an integer in [1, 64]", opt);
  const want = opt === undefined || opt === 'auto' ? Math.min(8, await hardwareThreads()) : opt;
  if (want <= 1) return { threads: 1, refused: null };
  if (!feats.threads) return { threads: 1, refused: 'shared WebAssembly memory is unavailable (in browsers the page must be cross-origin isolated: COOP same-origin and COEP require-corp)' };
  if (!simd) return { threads: 1, refused: 'the threaded build needs WebAssembly SIMD' };
  return { threads: want, refused: null };
}

/**
 * Loads (once per location, variant and thread count) the WebAssembly runtime. The SIMD build is chosen
 * where the engine validates SIMD, unless `simd` says otherwise; the threaded SIMD build where more
 * than one thread is asked for (or 'auto' finds several cores) and shared memory works.
 */
export async function loadRuntime(opts: RuntimeOptions = {}): Promise<WasmRuntime> {
  const feats = wasmFeatures();
  if (!feats.wasm) throw new VoxvaeError('EUNSUPPORTED', 'this JavaScript engine has no WebAssembly');
  if (opts.simd !== undefined && opts.simd !== 'auto' && typeof opts.simd !== 'boolean') throw new VoxvaeError('EINVAL', "options.simd must be true, false or 'auto'", { path: 'options.simd' });
  const wantSimd = opts.simd === undefined || opts.simd === 'auto' ? feats.simd : opts.simd;
  if (wantSimd && !feats.simd) throw new VoxvaeError('EUNSUPPORTED', 'options.simd is true but this engine has no WebAssembly SIMD; leave it at "auto" to use the scalar build');
  const { threads, refused } = await resolveThreads(opts.threads, feats, wantSimd);
  if (opts.wasmBinary !== undefined) {
    const b = opts.wasmBinary instanceof Uint8Array ? opts.wasmBinary : opts.wasmBinary instanceof ArrayBuffer ? new Uint8Array(opts.wasmBinary) : null;
    if (!b) throw new VoxvaeError('EINVAL', 'options.wasmBinary must be a Uint8Array or an ArrayBuffer', { path: 'options.wasmBinary' });
    return instantiateRuntime(b, '<wasmBinary>', wantSimd, threads);
  }
  const location = opts.wasmPath ?? wasmPathSetting;
  const load = async (variant: WasmVariant, n: number): Promise<WasmRuntime> => {
    const loc = resolveWasmLocation(location, variant);
    const key = `${variant}|${n}|${loc instanceof URL ? loc.href : loc}`;
    let p = runtimeCache.get(key);
    if (!p) {
      const where = describeLocation(loc);
      p = readResource(loc, 'the WebAssembly module', WASM_HINT).then((bytes) => instantiateRuntime(bytes, where, variant !== 'scalar', n));
      runtimeCache.set(key, p);
      // A failed load is not cached: the user may fix the path or the file and try again.
      p.catch(() => runtimeCache.delete(key));
    }
    return p;
  };
  if (threads > 1) {
    try {
      return await load('simd-mt', threads);
    } catch (e) {
      // Fall back to one thread (the threaded file may be missing, or workers refused); say why.
      const rt = await load('simd', 1);
      rt.threadsUnavailable = `the threaded build could not start: ${(e as Error).message}`;
      return rt;
    }
  }
  const rt = await load(wantSimd ? 'simd' : 'scalar', 1);
  if (refused && rt.threadsUnavailable === null) rt.threadsUnavailable = refused;
  return rt;
}
