// Data-parallel training across processes and machines (docs/distributed.md). One process per rank; a
// ProcessGroup joins them through the optional addon build-dist/voxvae_dist.node (Gloo over TCP,
// `npm run build:dist`, needs Debian's libgloo-dev). Once a group is initialised (initDistributed), the
// one training step (ts/train/step.ts) all-reduces the β controllers' KL and the gradients, and the
// Trainer shards each epoch and leaves checkpoints and reports to rank 0, so Trainer, trainTwoStage and
// the β controllers run unchanged on every rank.
//
// What a rank runs, in order (the same order on every rank, as collectives require):
//   start:  parameters and BatchNorm buffers broadcast from rank 0 (syncModel)
//   step:   forward → [all-reduce this step's KL (β controllers) and the loss terms] → β → decoder
//           backward → [decoder gradients all-reduce, overlapped with the encoder backward] →
//           [encoder gradients all-reduce] → clip → Adam
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VoxvaeError, invalid } from '../errors.js';
import * as is from '../is.js';
import { native, type NativeBinding, type NativeNcclComm, type NativeNet } from '../native.js';

/** How an all-reduce sums: 'float32' in the engine's order (Gloo's ring: fixed for a world size; bit for bit
 *  what one process gets summing in rank order at 2 ranks, within rounding at more); 'float64' summed in
 *  double and rounded once (the same as any order, so bit for bit at every world size), twice the bytes. */
export type ReducePrecision = 'float32' | 'float64';

/** The JS surface of voxvae_dist.node (native/dist/napi/addon.cpp). */
export interface NativeCommunicator {
  readonly rank: number;
  readonly worldSize: number;
  readonly engine: string;
  readonly closed: boolean;
  allReduce(data: Float32Array, op: 'sum' | 'mean', precision?: ReducePrecision): Promise<void>;
  broadcast(data: Float32Array, root: number): Promise<void>;
  barrier(timeoutMs?: number): Promise<void>;
  close(): void;
}
interface DistBinding {
  connect(o: {
    rank: number;
    worldSize: number;
    rendezvous: 'tcp' | 'file';
    host?: string;
    port?: number;
    path?: string;
    listenHost?: string;
    rendezvousTimeoutMs?: number;
    timeoutMs?: number;
  }): Promise<NativeCommunicator>;
  engines: string[];
  abiVersion: number;
}

/** voxvae_dist.node's ABI (native/dist/napi/addon.cpp kDistAbi). */
export const DIST_ABI = 1;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** How to get the optional addon (the error when it is missing says this). */
export const DIST_BUILD_HINT =
  'the distributed engine is an optional addon: install Gloo (Debian/Ubuntu: `apt-get install libgloo-dev`), then build it in the ' +
  'voxvae package folder with `npm run build:dist` (CMake and a C++17 compiler; writes build-dist/voxvae_dist.node)';

let loaded: DistBinding | undefined;

/** The file the distributed addon is loaded from: $VOXVAE_DIST_ADDON, else build-dist/voxvae_dist.node. */
export function distAddonFile(root = ROOT): string {
  return process.env['VOXVAE_DIST_ADDON'] || path.join(root, 'build-dist', 'voxvae_dist.node');
}

/** Whether the distributed addon is there and loads (tests skip without it). */
export function distAvailable(): boolean {
  try {
    distBinding();
    return true;
  } catch {
    return false;
  }
}

/** Loads voxvae_dist.node; ENATIVE saying how to build it when it is missing or does not load. */
export function distBinding(): DistBinding {
  if (loaded) return loaded;
  const file = distAddonFile();
  if (!existsSync(file)) throw new VoxvaeError('ENATIVE', `data-parallel training needs ${path.relative(process.cwd(), file) || file}, which is not there: ${DIST_BUILD_HINT}`, { path: file });
  let b: DistBinding;
  try {
    b = createRequire(import.meta.url)(file) as DistBinding;
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    throw new VoxvaeError('ENATIVE', `${file} does not load (${msg}): ${/libgloo/.test(msg ?? '') ? 'libgloo is missing at run time; ' : 'rebuild it; '}${DIST_BUILD_HINT}`, { path: file, cause: e });
  }
  if (b?.abiVersion !== DIST_ABI) throw new VoxvaeError('ENATIVE', `${file} has ABI ${b?.abiVersion}, this package needs ${DIST_ABI}: rebuild it with \`npm run build:dist\``, { path: file });
  loaded = b;
  return b;
}

/** Where the ranks meet: tcp://host:port (rank 0 listens there) or file:///a/fresh/folder (every rank sees it). */
export type Rendezvous = { kind: 'tcp'; host: string; port: number } | { kind: 'file'; path: string };

/** Parses a rendezvous URL (EINVAL naming `field` otherwise). */
export function parseRendezvous(url: string, field = 'rendezvous'): Rendezvous {
  if (typeof url !== 'string') invalid(field, 'must be tcp://host:port or file:///folder', url);
  const tcp = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})\/?$/.exec(url);
  if (tcp) {
    const port = Number(tcp[2]);
    if (port < 1 || port > 65535) invalid(field, 'has a port outside 1..65535', url);
    return { kind: 'tcp', host: tcp[1]!.replace(/^\[|\]$/g, ''), port };
  }
  if (url.startsWith('file://')) {
    const p = url.slice('file://'.length);
    if (!p.startsWith('/')) invalid(field, 'must be file:// followed by an absolute folder path (file:///shared/run-42)', url);
    return { kind: 'file', path: p };
  }
  invalid(field, 'must be tcp://host:port (rank 0 listens on port; every rank can reach host) or file:///folder (a fresh folder every rank can see)', url);
}

export interface DistributedOptions {
  rank: number;
  worldSize: number;
  /** tcp://host:port or file:///folder. */
  rendezvous: string;
  /** The address other ranks reach this rank on (default: the one that routes to the rendezvous host;
   *  for file://, this machine's hostname). */
  host?: string;
  /** A collective that does not complete within this fails with EDIST on every rank that is still up
   *  (a hung or out-of-step rank). Default 300000 (5 min); a rank that dies is noticed at once. */
  timeoutMs?: number;
  /** All ranks must join within this. Default 120000. */
  rendezvousTimeoutMs?: number;
  /** Overlap the decoder's gradient all-reduce with the encoder's backward (default true). */
  overlap?: boolean;
  /** How gradients are summed (default 'float32'; see ReducePrecision). */
  precision?: ReducePrecision;
}

/** The launcher's environment (voxvae launch; torchrun's names are read too). null when there is none. */
export function distributedFromEnv(env: NodeJS.ProcessEnv = process.env): DistributedOptions | null {
  const ws = env['VOXVAE_WORLD_SIZE'] ?? env['WORLD_SIZE'];
  if (ws === undefined) return null;
  const rank = env['VOXVAE_RANK'] ?? env['RANK'];
  const master = env['MASTER_ADDR'] !== undefined ? `tcp://${env['MASTER_ADDR']}:${env['MASTER_PORT'] ?? '29500'}` : undefined;
  const rendezvous = env['VOXVAE_RENDEZVOUS'] ?? master;
  const num = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined || v === '') return undefined;
    if (!/^\d+$/.test(v)) invalid(name, 'must be a non-negative integer', v);
    return Number(v);
  };
  if (rendezvous === undefined) invalid('VOXVAE_RENDEZVOUS', 'must be set with VOXVAE_WORLD_SIZE (tcp://host:port or file:///folder)');
  const o: DistributedOptions = { rank: num('VOXVAE_RANK', rank) ?? invalid('VOXVAE_RANK', 'must be set with VOXVAE_WORLD_SIZE'), worldSize: num('VOXVAE_WORLD_SIZE', ws)!, rendezvous };
  const t = num('VOXVAE_DIST_TIMEOUT_MS', env['VOXVAE_DIST_TIMEOUT_MS']);
  if (t !== undefined) o.timeoutMs = t;
  const rt = num('VOXVAE_RENDEZVOUS_TIMEOUT_MS', env['VOXVAE_RENDEZVOUS_TIMEOUT_MS']);
  if (rt !== undefined) o.rendezvousTimeoutMs = rt;
  if (env['VOXVAE_HOST']) o.host = env['VOXVAE_HOST'];
  if (env['VOXVAE_DIST_OVERLAP'] === '0') o.overlap = false;
  const prec = env['VOXVAE_DIST_PRECISION'];
  if (prec !== undefined && prec !== '') o.precision = is.oneOf('VOXVAE_DIST_PRECISION', prec, ['float32', 'float64'] as const);
  return o;
}

function distError(e: unknown, what: string): VoxvaeError {
  if (e instanceof VoxvaeError) return e;
  const err = e as { code?: string; kind?: string; message?: string };
  if (err?.code === 'EINVAL') return new VoxvaeError('EINVAL', err.message ?? String(e), { cause: e });
  const kind = err?.kind ?? 'engine';
  const advice: Record<string, string> = {
    'peer-lost': 'another rank exited (see its own error); every rank stops: fix the cause and resume from the last checkpoint with the same world size',
    timeout: 'a rank is stuck or out of step (different data sizes or options per rank?); every rank stops: resume from the last checkpoint',
    rendezvous: 'start every rank with the same --rendezvous and --world-size, a distinct --rank each, within the rendezvous timeout',
    config: 'check --rank, --world-size and --rendezvous',
    closed: 'the group was closed or had failed before',
    engine: 'the collective engine failed',
  };
  return new VoxvaeError('EDIST', `${what}: ${err?.message ?? String(e)} [${kind}]; ${advice[kind] ?? advice['engine']}`, { cause: e });
}

/** A joined group of ranks: collectives over Float32Arrays, and the model-level operations the training
 *  step and the Trainer use. Every rank must call the same collectives in the same order. */
export class ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly engine: string;
  readonly overlap: boolean;
  readonly precision: ReducePrecision;
  private readonly comm: NativeCommunicator;
  private readonly timeoutMs: number | undefined;
  /** CUDA ranks: the NCCL communicator made on first use (null: NCCL unavailable, host-staged Gloo instead). */
  private nccl: Promise<NativeNcclComm | null> | null = null;

  constructor(comm: NativeCommunicator, overlap = true, precision: ReducePrecision = 'float32', timeoutMs?: number) {
    this.timeoutMs = timeoutMs;
    this.comm = comm;
    this.rank = comm.rank;
    this.worldSize = comm.worldSize;
    this.engine = comm.engine;
    this.overlap = overlap;
    this.precision = precision;
  }

  /** In place over every rank's `data` (same length everywhere). 'mean': the sum × the float nearest 1/worldSize. */
  async allReduce(data: Float32Array, op: 'sum' | 'mean' = 'sum', precision: ReducePrecision = 'float32'): Promise<void> {
    try {
      await this.comm.allReduce(data, op, precision);
    } catch (e) {
      throw distError(e, `rank ${this.rank}: all-reduce of ${data.length} values`);
    }
  }

  /** In place: every rank receives root's `data`. */
  async broadcast(data: Float32Array, root = 0): Promise<void> {
    try {
      await this.comm.broadcast(data, root);
    } catch (e) {
      throw distError(e, `rank ${this.rank}: broadcast of ${data.length} values from rank ${root}`);
    }
  }

  /** Waits for every rank; timeoutMs (default: the group's) bounds the wait for a rank that hangs. */
  async barrier(timeoutMs?: number): Promise<void> {
    try {
      await this.comm.barrier(timeoutMs);
    } catch (e) {
      throw distError(e, `rank ${this.rank}: barrier`);
    }
  }

  /** Starts the all-reduce (mean) of a network's gradients: returns a function that awaits it and writes
   *  the average back. CPU networks (and CUDA ones without NCCL): the gradient is copied out now and summed
   *  by Gloo, so the network may run other work meanwhile. CUDA networks with NCCL (`binding`, see
   *  ncclComm): all-reduced on the device, on the network's stream. */
  startGradients(net: NativeNet, binding?: NativeBinding): () => Promise<void> {
    if (binding?.backend === 'cuda' && binding.ncclConnect) {
      const p = this.ncclComm(binding).then((c) => (c ? this.deviceGradients(c, net) : this.hostGradients(net)()));
      p.catch(() => undefined); // the caller may fail before awaiting it; the awaiter still sees the error
      return () => p;
    }
    return this.hostGradients(net);
  }

  private hostGradients(net: NativeNet): () => Promise<void> {
    if (!net.setGrads) throw new VoxvaeError('EUNSUPPORTED', 'data-parallel training needs an addon with Net.setGrads: rebuild it (npm run build:native / build:cuda)');
    const g = net.getGrads();
    const p = this.allReduce(g, 'mean', this.precision);
    p.catch(() => undefined); // the caller may fail before awaiting it; the awaiter still sees the error
    return async () => {
      await p;
      net.setGrads!(g);
    };
  }

  private async deviceGradients(c: NativeNcclComm, net: NativeNet): Promise<void> {
    try {
      await c.allReduceGrads(net, 'mean');
    } catch (e) {
      const m = /^(peer-lost|timeout|rendezvous|config|closed|engine): ([\s\S]*)$/.exec((e as Error).message ?? '');
      throw distError(m ? Object.assign(new Error(m[2]), { kind: m[1] }) : e, `rank ${this.rank}: NCCL all-reduce of ${net.numParams} gradients`);
    }
  }

  /**
   * The NCCL communicator of this group on a CUDA addon, made once, collectively: rank 0 makes the unique
   * id and broadcasts it over the Gloo group (all zeros: NCCL does not load on rank 0, and every rank uses
   * host-staged Gloo instead; VOXVAE_DIST_NCCL=0 asks for that).
   */
  ncclComm(binding: NativeBinding): Promise<NativeNcclComm | null> {
    this.nccl ??= (async () => {
      const id = new Uint8Array(128);
      if (this.rank === 0 && process.env['VOXVAE_DIST_NCCL'] !== '0' && (binding.ncclVersion?.() ?? 0) > 0) id.set(binding.ncclUniqueId!());
      const f = new Float32Array(id.buffer);
      await this.broadcast(f, 0); // bytes moved as they are, never added
      if (id.every((b) => b === 0)) return null;
      try {
        return await binding.ncclConnect!({ rank: this.rank, worldSize: this.worldSize, id, ...(this.timeoutMs !== undefined ? { timeoutMs: this.timeoutMs } : {}) });
      } catch (e) {
        throw distError(e, `rank ${this.rank}: joining NCCL`);
      }
    })();
    return this.nccl;
  }

  /** Every rank takes rank 0's parameters and BatchNorm buffers (at the start of training). */
  async syncNetworks(nets: NativeNet[]): Promise<void> {
    for (const net of nets) {
      const p = net.getParams();
      await this.broadcast(p, 0);
      if (this.rank !== 0) net.setParams(p);
      if (net.numBuffers > 0) {
        const b = net.getBuffers();
        await this.broadcast(b, 0);
        if (this.rank !== 0) net.setBuffers(b);
      }
    }
  }

  /** Closes the connections (peers still in a collective fail with EDIST). */
  close(): void {
    if (active === this) active = null;
    void this.nccl?.then((c) => c?.close(), () => undefined);
    this.comm.close();
  }
}

let active: ProcessGroup | null = null;

/** The group initDistributed joined, or null (single process). */
export function activeGroup(): ProcessGroup | null {
  return active && active.worldSize > 1 ? active : null;
}

/** This process's rank (0 without a group). */
export function rank(): number {
  return active?.rank ?? 0;
}

/**
 * Joins the group (options, else the launcher's environment; see distributedFromEnv) and makes it the
 * active one that training uses. Resolves once every rank has joined; a wrong world size, a rank given
 * twice, an unreachable rendezvous or a rank missing at the timeout reject with EDIST (EINVAL for
 * malformed options), before any training. Without options or environment: null (one process).
 */
export async function initDistributed(options?: DistributedOptions): Promise<ProcessGroup | null> {
  const o = options ?? distributedFromEnv();
  if (!o) return null;
  is.options('options', o);
  is.knownKeys('options', o as unknown as Record<string, unknown>, ['rank', 'worldSize', 'rendezvous', 'host', 'timeoutMs', 'rendezvousTimeoutMs', 'overlap', 'precision']);
  const worldSize = is.integer('options.worldSize', o.worldSize, 1, 1 << 20);
  const r = is.integer('options.rank', o.rank, 0, 1 << 20);
  if (r >= worldSize) invalid('options.rank', `must be in [0, ${worldSize}) for world size ${worldSize}`, r);
  const rv = parseRendezvous(o.rendezvous, 'options.rendezvous');
  if (o.host !== undefined && (typeof o.host !== 'string' || !o.host)) invalid('options.host', 'must be a host name or address', o.host);
  const timeoutMs = o.timeoutMs === undefined ? undefined : is.integer('options.timeoutMs', o.timeoutMs, 1);
  const rendezvousTimeoutMs = o.rendezvousTimeoutMs === undefined ? undefined : is.integer('options.rendezvousTimeoutMs', o.rendezvousTimeoutMs, 1);
  if (o.overlap !== undefined) is.bool('options.overlap', o.overlap);
  const precision = is.oneOf('options.precision', o.precision ?? 'float32', ['float32', 'float64'] as const);
  if (active) throw new VoxvaeError('EINVAL', `this process already joined a group (rank ${active.rank} of ${active.worldSize}): close it first`);
  const b = distBinding();
  // The launcher divides the cores between the local ranks (VOXVAE_THREADS).
  const threads = process.env['VOXVAE_THREADS'];
  if (threads && /^\d+$/.test(threads) && Number(threads) > 0) native().setNumThreads(Math.min(256, Number(threads)));
  let comm: NativeCommunicator;
  try {
    comm = await b.connect({
      rank: r,
      worldSize,
      rendezvous: rv.kind,
      ...(rv.kind === 'tcp' ? { host: rv.host, port: rv.port } : { path: rv.path }),
      ...(o.host ? { listenHost: o.host } : {}),
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      ...(rendezvousTimeoutMs !== undefined ? { rendezvousTimeoutMs } : {}),
    });
  } catch (e) {
    throw distError(e, `rank ${r} of ${worldSize}: joining ${o.rendezvous}`);
  }
  active = new ProcessGroup(comm, o.overlap ?? true, precision, timeoutMs);
  return active;
}

export { shardOf } from './shard.js';
