// Worker threads for the multi-threaded WebAssembly build (voxvae_simd_mt.wasm): each worker
// instantiates the same compiled module over the same shared WebAssembly.Memory, takes its own stack
// and thread-local block, and parks in vx_worker_main (native/wasm/parallel_wasm.cpp), which runs the
// chunks of parallel loops that the calling thread publishes. Browsers get classic Web Workers from a
// Blob URL; Node gets worker_threads (imported dynamically, so that browser bundles never see it).
import { VoxvaeError } from '../errors.js';

/** What a worker needs; posted once. module and memory are structured-cloneable. */
interface WorkerInit {
  module: unknown;
  memory: unknown;
  id: number;
  stackTop: number;
  tls: number;
}

// The worker's whole program. It must run as a classic browser worker and as a Node eval worker.
const WORKER_SOURCE = `
'use strict';
const nodePort = typeof self === 'undefined' ? require('node:worker_threads').parentPort : null;
const post = (m) => (nodePort ? nodePort.postMessage(m) : self.postMessage(m));
const start = (d) => {
  let inst = null;
  try {
    const stub = (name) => () => { throw new Error('voxvae worker: unsupported import ' + name); };
    const imports = {};
    for (const imp of WebAssembly.Module.imports(d.module)) {
      const mod = (imports[imp.module] = imports[imp.module] || {});
      if (imp.module === 'env' && imp.name === 'memory') mod.memory = d.memory;
      else if (imp.name === 'emscripten_notify_memory_growth') mod[imp.name] = () => {};
      else mod[imp.name] = stub(imp.module + '.' + imp.name);
    }
    inst = new WebAssembly.Instance(d.module, imports);
    inst.exports.stackRestore(d.stackTop);
    inst.exports.__wasm_init_tls(d.tls);
    post({ ready: d.id });
    inst.exports.vx_worker_main(d.id);
    post({ exited: d.id });
  } catch (e) {
    // The instance trapped: release the publisher (it is spinning on this worker's job) and leave.
    try { if (inst) inst.exports.vx_worker_abandon(d.id); } catch (_) {}
    post({ error: String((e && e.message) || e) });
  }
};
if (nodePort) nodePort.once('message', start);
else self.onmessage = (e) => { self.onmessage = null; start(e.data); };
`;

interface AnyWorker {
  post(m: WorkerInit): void;
  onMessage(fn: (m: { ready?: number; error?: string; exited?: number }) => void): void;
  onError(fn: (e: unknown) => void): void;
  terminate(): void;
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string' && typeof (globalThis as { window?: unknown }).window === 'undefined';
}

const NODE_WORKER_THREADS = 'node:worker_threads';
const NODE_OS = 'node:os';

/** Logical cores: navigator.hardwareConcurrency, or os.availableParallelism() in Node 20. */
export async function hardwareThreads(): Promise<number> {
  const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  if (typeof n === 'number' && n >= 1) return n;
  if (isNode()) {
    try {
      const os = (await import(/* webpackIgnore: true */ /* @vite-ignore */ NODE_OS)) as { availableParallelism?: () => number; cpus(): unknown[] };
      return os.availableParallelism?.() ?? os.cpus().length;
    } catch {
      return 1;
    }
  }
  return 1;
}

async function spawn(): Promise<AnyWorker> {
  if (isNode()) {
    type NodeWorker = { postMessage(m: unknown): void; on(ev: string, fn: (x: never) => void): void; terminate(): Promise<number>; unref(): void };
    const wt = (await import(/* webpackIgnore: true */ /* @vite-ignore */ NODE_WORKER_THREADS)) as { Worker: new (src: string, o: { eval: boolean }) => NodeWorker };
    const w = new wt.Worker(WORKER_SOURCE, { eval: true });
    let onMessage: (m: never) => void = () => {};
    let onError: (e: never) => void = () => {};
    w.on('message', (m: never) => onMessage(m));
    w.on('error', (e: never) => onError(e));
    // Parked workers must not keep the process alive. (After the listeners: adding a 'message' listener
    // refs the worker's port again.)
    w.unref();
    return {
      post: (m) => w.postMessage(m),
      onMessage: (fn) => {
        onMessage = fn as (m: never) => void;
      },
      onError: (fn) => {
        onError = fn as (e: never) => void;
      },
      terminate: () => void w.terminate(),
    };
  }
  type BrowserWorker = { postMessage(m: unknown): void; onmessage: ((e: { data: unknown }) => void) | null; onerror: ((e: unknown) => void) | null; terminate(): void };
  const g = globalThis as unknown as {
    Worker?: new (url: string) => BrowserWorker;
    Blob: new (parts: string[], o: { type: string }) => unknown;
    URL: { createObjectURL(b: unknown): string; revokeObjectURL(u: string): void };
  };
  if (typeof g.Worker !== 'function') throw new VoxvaeError('EUNSUPPORTED', 'this environment has no Worker');
  const url = g.URL.createObjectURL(new g.Blob([WORKER_SOURCE], { type: 'text/javascript' }));
  try {
    const w = new g.Worker(url);
    return {
      post: (m) => w.postMessage(m),
      onMessage: (fn) => {
        w.onmessage = (e) => fn(e.data as { ready?: number; error?: string });
      },
      onError: (fn) => {
        w.onerror = fn;
      },
      terminate: () => w.terminate(),
    };
  } finally {
    // The worker has fetched its script by the time it runs; revoking later would leak the URL.
    setTimeout(() => g.URL.revokeObjectURL(url), 10_000);
  }
}

/** The pieces of the main instance the pool needs. */
export interface PoolHost {
  module: unknown;
  memory: unknown;
  alloc(bytes: number, where: string): number;
  free(ptr: number): void;
  tlsSize: number;
  tlsAlign: number;
  registered(): number;
  quit(): void;
}

export interface WorkerPool {
  readonly size: number;
  terminate(): void;
}

const STACK_BYTES = 1 << 20;

// Node terminates worker threads at exit, but one parked in memory.atomic.wait is not interrupted and
// the process would never end: wake and release every live pool from an 'exit' listener.
const livePools = new Set<() => void>();
let exitHookInstalled = false;
function releaseAtExit(quit: () => void): void {
  livePools.add(quit);
  if (exitHookInstalled || !isNode()) return;
  exitHookInstalled = true;
  (globalThis as unknown as { process: { on(ev: 'exit', fn: () => void): void } }).process.on('exit', () => {
    for (const q of livePools) q();
    livePools.clear();
  });
}

/**
 * Starts `count` workers over the host's module and memory and waits until all are parked (or fails
 * within timeoutMs, terminating whatever started). Each gets a 1 MiB stack and a TLS block from the
 * module's allocator.
 */
export async function startWorkers(host: PoolHost, count: number, timeoutMs = 20_000): Promise<WorkerPool> {
  const workers: AnyWorker[] = [];
  const blocks: number[] = [];
  const cleanup = (): void => {
    host.quit();
    for (const w of workers) w.terminate();
    // Blocks stay allocated: a terminated worker might still have been running on its stack.
  };
  try {
    const ready = [];
    for (let id = 1; id <= count; id++) {
      const stack = host.alloc(STACK_BYTES, 'wasm threads: worker stack');
      blocks.push(stack);
      const tlsRaw = host.alloc(Math.max(host.tlsSize, 1) + host.tlsAlign, 'wasm threads: worker TLS');
      blocks.push(tlsRaw);
      const tls = Math.ceil(tlsRaw / host.tlsAlign) * host.tlsAlign;
      const w = await spawn();
      workers.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          w.onMessage((m) => {
            if (m.ready !== undefined) resolve();
            else if (m.error !== undefined) reject(new VoxvaeError('EUNSUPPORTED', `wasm threads: worker ${id} failed: ${m.error}`));
          });
          w.onError((e) => reject(new VoxvaeError('EUNSUPPORTED', `wasm threads: worker ${id} failed: ${(e as Error)?.message ?? String(e)}`)));
        }),
      );
      w.post({ module: host.module, memory: host.memory, id, stackTop: stack + STACK_BYTES - 16, tls });
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new VoxvaeError('EUNSUPPORTED', `wasm threads: ${count} worker(s) did not start within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([Promise.all(ready), timeout]);
      // 'ready' is posted just before a worker registers: wait for the registrations themselves.
      const t0 = Date.now();
      while (host.registered() < count) {
        if (Date.now() - t0 > timeoutMs) throw new VoxvaeError('EUNSUPPORTED', `wasm threads: only ${host.registered()} of ${count} worker(s) registered`);
        await new Promise((r) => setTimeout(r, 1));
      }
    } finally {
      clearTimeout(timer);
    }
  } catch (e) {
    cleanup();
    throw e;
  }
  let live = true;
  const quitOnly = (): void => host.quit();
  releaseAtExit(quitOnly);
  return {
    size: count,
    terminate: () => {
      if (!live) return;
      live = false;
      livePools.delete(quitOnly);
      cleanup();
    },
  };
}
