// Tensor naming and loading by name, for both engines (native Network, WasmNet): a graph's node names
// plus the engine's parameter table give the PyTorch state_dict view — per module weight, bias,
// running_mean, running_var, then num_batches_tracked for BatchNorm — and loadNamedTensors copies a
// checkpoint's tensors into an engine through a writer callback, with the missing/extra checks.
import { VoxvaeError } from '../errors.js';
import { checkpointTensor, toNumbers, type TensorEntry } from '../safetensors_core.js';
import type { Graph } from './graph.js';

export type ParamRole = 'weight' | 'bias' | 'running_mean' | 'running_var';
export const PARAM_ROLES: readonly ParamRole[] = ['weight', 'bias', 'running_mean', 'running_var'];

/** One row of an engine's parameter table (native paramTable(), vx_net_entry). */
export interface ParamSlot {
  node: number;
  role: ParamRole;
  /** In the buffers (running statistics), else in the parameters. */
  buffer: boolean;
  offset: number;
  count: number;
  shape: number[];
}

/** A tensor by PyTorch name: a parameter/buffer slot, or a BatchNorm counter (entry null). */
export interface NamedTensor {
  name: string;
  entry: ParamSlot | null;
  /** Index of the BatchNorm counter for num_batches_tracked, else -1. */
  counter: number;
  shape: number[];
}

/** The network's tensors in state_dict order, named from the graph's node names. */
export function tensorNames(graph: Graph, table: readonly ParamSlot[], engineNodes?: number): NamedTensor[] {
  if (engineNodes !== undefined && engineNodes !== graph.nodes.length)
    throw new VoxvaeError('EINTERNAL', `the engine built ${engineNodes} nodes from a graph of ${graph.nodes.length}`);
  const byNode = new Map<number, ParamSlot[]>();
  for (const e of table) byNode.set(e.node, [...(byNode.get(e.node) ?? []), e]);
  const out: NamedTensor[] = [];
  let counter = 0;
  graph.nodes.forEach((n, i) => {
    const entries = byNode.get(i) ?? [];
    if (entries.length && !n.name) throw new VoxvaeError('EINTERNAL', `node ${i} (${n.op}) has parameters but no name`);
    for (const e of entries) out.push({ name: `${n.name}.${e.role}`, entry: e, counter: -1, shape: e.shape });
    if (n.op === 'batch_norm3d') out.push({ name: `${n.name}.num_batches_tracked`, entry: null, counter: counter++, shape: [] });
  });
  return out;
}

/** Where loadNamedTensors puts a value: a slot's float32 data, or a BatchNorm counter's value. */
export interface TensorWriter {
  slot(entry: ParamSlot, data: Float32Array): void;
  counter(index: number, value: number): void;
}

function listNames(names: string[]): string {
  return `${names.slice(0, 6).join(', ')}${names.length > 6 ? ', ...' : ''}`;
}

/**
 * Copies tensors (each expected name with an optional prefix) through `write`. Every parameter and
 * buffer must be present with its exact shape and finite values (ECHECKPOINT naming `file`);
 * num_batches_tracked may be absent (PyTorch omits it when track_running_stats is off). Returns the
 * names used.
 */
export function loadNamedTensors(expected: readonly NamedTensor[], tensors: ReadonlyMap<string, TensorEntry>, file: string, write: TensorWriter, prefix = ''): Set<string> {
  const used = new Set<string>();
  const missing: string[] = [];
  for (const t of expected) {
    const key = prefix + t.name;
    const e = tensors.get(key);
    if (!e) {
      if (t.entry) missing.push(key);
      continue;
    }
    used.add(key);
    if (!t.entry) {
      const count = e.shape.reduce((a, d) => a * d, 1);
      if (count !== 1) throw new VoxvaeError('ECHECKPOINT', `${file}: ${key} should be a scalar, has shape [${e.shape.join(', ')}]`, { path: file });
      write.counter(t.counter, toNumbers(e)[0]!);
      continue;
    }
    write.slot(t.entry, checkpointTensor(e, t.shape, key, file));
  }
  if (missing.length)
    throw new VoxvaeError('ECHECKPOINT', `${file}: missing ${missing.length} tensor(s) this model needs: ${listNames(missing)} — the checkpoint is for another architecture or another part of the model`, { path: file });
  return used;
}

/** Refuses tensors no network used (names under an `ignore` prefix aside). */
export function checkNoExtraTensors(names: Iterable<string>, used: ReadonlySet<string>, file: string, ignore: (name: string) => boolean = () => false): void {
  const extra = [...names].filter((k) => !used.has(k) && !ignore(k));
  if (extra.length)
    throw new VoxvaeError('ECHECKPOINT', `${file}: ${extra.length} tensor(s) this model does not have: ${listNames(extra)} — the checkpoint is for another architecture`, { path: file });
}
