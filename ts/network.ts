// Network: a native network plus the PyTorch names of its tensors (state_dict view), and the
// per-network Adam state. Encoder and Decoder build on it.
import { VoxvaeError } from './errors.js';
import { native, nativeSync, type NativeAdam, type NativeBinding, type NativeNet } from './native.js';
import type { Graph } from './model/graph.js';
import { loadNamedTensors, tensorNames, type NamedTensor } from './model/naming.js';
import type { TensorToWrite, TensorEntry } from './safetensors_core.js';

export type { NamedTensor } from './model/naming.js';

export interface OptimizerConfig {
  kind: 'adam' | 'adamw';
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

export class Network {
  readonly spec: string;
  readonly tensors: NamedTensor[];
  readonly net: NativeNet;
  /** The engine this network lives on (CPU addon or CUDA addon): its tensors only mix with its own. */
  readonly binding: NativeBinding;
  adam: NativeAdam | null = null;
  private disposed = false;
  /** The call holding this network across several native calls (a training step), or null. */
  private holder: string | null = null;

  /** The model description this network was built from. */
  readonly graph: Graph;

  constructor(graph: Graph, seed: number, binding: NativeBinding = native()) {
    const nb = binding;
    this.binding = nb;
    this.graph = graph;
    this.spec = graph.toSpec();
    this.net = nativeSync(() => new nb.Net(this.spec));
    nativeSync(() => this.net.initParams(seed));
    this.tensors = tensorNames(graph, this.net.paramTable(), this.net.nodes().length);
  }

  get numParams(): number {
    return this.net.numParams;
  }

  /** The network's tensors by PyTorch name (a copy). */
  stateDict(): Map<string, TensorToWrite> {
    const params = this.net.getParams(), buffers = this.net.getBuffers(), counters = this.net.getCounters();
    const out = new Map<string, TensorToWrite>();
    for (const t of this.tensors) {
      if (!t.entry) out.set(t.name, { dtype: 'I64', shape: [], data: [counters[t.counter]!] });
      else {
        const src = t.entry.buffer ? buffers : params;
        out.set(t.name, { dtype: 'F32', shape: t.shape, data: src.slice(t.entry.offset, t.entry.offset + t.entry.count) });
      }
    }
    return out;
  }

  /**
   * Loads tensors by name (with an optional prefix). Every expected tensor must be present with the
   * right shape; `file` names the source in errors. Returns the names used.
   */
  loadStateDict(tensors: ReadonlyMap<string, TensorEntry>, file: string, prefix = ''): Set<string> {
    this.checkFree('loadStateDict');
    const params = this.net.getParams(), buffers = this.net.getBuffers(), counters = this.net.getCounters();
    const used = loadNamedTensors(this.tensors, tensors, file, {
      slot: (e, f) => (e.buffer ? buffers : params).set(f, e.offset),
      counter: (k, v) => {
        counters[k] = v;
      },
    }, prefix);
    nativeSync(() => {
      this.net.setParams(params);
      this.net.setBuffers(buffers);
      this.net.setCounters(counters);
    });
    return used;
  }

  /** Adam/AdamW moments for this network (created on first use). */
  optimizer(): NativeAdam {
    if (!this.adam) this.adam = nativeSync(() => new this.binding.Adam(this.net));
    return this.adam;
  }

  /** Whether a call (a training step holding it, or a native call still running) uses this network. */
  get inUse(): boolean {
    return !this.disposed && (this.holder !== null || this.net.busy);
  }

  /** EBUSY (before any native work) when the network is in use; EDISPOSED when disposed. */
  checkFree(what: string): void {
    if (this.disposed) throw new VoxvaeError('EDISPOSED', `${what}: the network was disposed`);
    if (this.holder !== null) throw new VoxvaeError('EBUSY', `${what}: a ${this.holder} on this network is still running; await it first`);
    if (this.net.busy) throw new VoxvaeError('EBUSY', `${what}: a call on this network is still running; await it first`);
  }

  /** @internal Holds the network for a call made of several native calls (other calls get EBUSY until release). */
  hold(what: string): void {
    this.checkFree(what);
    this.holder = what;
  }
  /** @internal */
  release(): void {
    this.holder = null;
  }

  /** Frees the native network; EBUSY (freeing nothing) while a call uses it. */
  dispose(): void {
    if (this.disposed) return;
    this.checkFree('dispose');
    this.disposed = true;
    nativeSync(() => this.net.dispose());
  }
}
