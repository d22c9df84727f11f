// Network: a native network plus the PyTorch names of its tensors (state_dict view), and the
// per-network Adam state. Encoder and Decoder build on it.
import { VoxvaeError } from './errors.js';
import { native, nativeSync, type NativeAdam, type NativeBinding, type NativeNet, type ParamEntry } from './native.js';
import type { BuiltNet } from './config.js';
import type { TensorToWrite, TensorEntry } from './safetensors.js';
import { toNumbers } from './safetensors.js';
import { checkpointTensor } from './safetensors_core.js';

export interface NamedTensor {
  name: string;
  entry: ParamEntry | null; // null for num_batches_tracked
  counter: number; // index into counters for num_batches_tracked, else -1
  shape: number[];
}

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

  constructor(built: BuiltNet, seed: number, binding: NativeBinding = native()) {
    const nb = binding;
    this.binding = nb;
    this.spec = built.spec;
    this.net = nativeSync(() => new nb.Net(built.spec));
    nativeSync(() => this.net.initParams(seed));
    const table = this.net.paramTable();
    const tensors: NamedTensor[] = [];
    let counter = 0;
    const nodes = this.net.nodes();
    // state_dict order as PyTorch lists it: per module weight, bias, running_mean, running_var, num_batches_tracked.
    const byNode = new Map<number, ParamEntry[]>();
    for (const e of table) byNode.set(e.node, [...(byNode.get(e.node) ?? []), e]);
    nodes.forEach((n, i) => {
      const entries = byNode.get(i) ?? [];
      const prefix = built.nodeNames[i];
      if (entries.length && !prefix) throw new VoxvaeError('EINTERNAL', `node ${i} (${n.op}) has parameters but no name`);
      for (const e of entries) tensors.push({ name: `${prefix}.${e.role}`, entry: e, counter: -1, shape: e.shape });
      if (n.op === 'batch_norm3d') tensors.push({ name: `${prefix}.num_batches_tracked`, entry: null, counter: counter++, shape: [] });
    });
    this.tensors = tensors;
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
  loadStateDict(tensors: Map<string, TensorEntry>, file: string, prefix = ''): Set<string> {
    const params = this.net.getParams(), buffers = this.net.getBuffers(), counters = this.net.getCounters();
    const used = new Set<string>();
    const missing: string[] = [];
    for (const t of this.tensors) {
      const key = prefix + t.name;
      const e = tensors.get(key);
      if (!e) {
        // PyTorch omits num_batches_tracked only when track_running_stats is off; tolerate its absence.
        if (!t.entry) continue;
        missing.push(key);
        continue;
      }
      used.add(key);
      const count = e.shape.reduce((a, d) => a * d, 1);
      if (!t.entry) {
        if (count !== 1) throw new VoxvaeError('ECHECKPOINT', `${file}: ${key} should be a scalar, has shape [${e.shape.join(', ')}]`, { path: file });
        counters[t.counter] = toNumbers(e)[0]!;
        continue;
      }
      const f = checkpointTensor(e, t.shape, key, file);
      (t.entry.buffer ? buffers : params).set(f, t.entry.offset);
    }
    if (missing.length)
      throw new VoxvaeError('ECHECKPOINT', `${file}: missing ${missing.length} tensor(s) this model needs: ${missing.slice(0, 6).join(', ')}${missing.length > 6 ? ', ...' : ''} — the checkpoint is for another architecture or another part of the model`, { path: file });
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

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    nativeSync(() => this.net.dispose());
  }
}
