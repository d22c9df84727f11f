// WasmNet: one native/core network (a Graph from ts/model, as spec text) inside the WebAssembly module,
// with the PyTorch names of its tensors (ts/model/naming.ts, as for ts/network.ts) and eval-mode forward. The module owns
// the parameters and activations; this class owns the handle and frees it in dispose().
import { VoxvaeError } from '../errors.js';
import type { TensorEntry } from '../safetensors_core.js';
import type { Graph } from '../model/graph.js';
import { loadNamedTensors, PARAM_ROLES, tensorNames, type NamedTensor, type ParamSlot } from '../model/naming.js';
import { MAX_WASM_BYTES, type WasmRuntime } from './runtime.js';
import { parameterBytes } from '../model/shapes.js';

export class WasmNet {
  readonly rt: WasmRuntime;
  readonly spec: string;
  /** The model description this network was built from. */
  readonly graph: Graph;
  /** Tensors by PyTorch name, in state_dict order (num_batches_tracked too: inference ignores the
   *  counters, but they belong to the checkpoint). */
  readonly tensors: NamedTensor[];
  readonly inputSize: number;
  readonly outputSizes: number[];
  private handle: number;

  constructor(rt: WasmRuntime, graph: Graph) {
    this.rt = rt;
    this.graph = graph;
    this.spec = graph.toSpec();
    // A network that cannot fit in WebAssembly's 32-bit memory is refused before the module is asked to
    // build it (the module would abort, leak and keep its grown memory): ENOMEM saying how much it needs.
    // (Activations are checked per call, for the batch asked for.)
    const need = parameterBytes(graph);
    if (need >= MAX_WASM_BYTES)
      throw new VoxvaeError('ENOMEM', `wasm: this network's parameters need ${(need / 2 ** 30).toFixed(2)} GiB, more than WebAssembly's 4 GiB memory; use the native engine (voxvae's Vae) for it`);
    const ex = rt.exports;
    const spec = rt.string(this.spec, 'wasm: network spec');
    try {
      this.handle = rt.withAlloc(4, 'wasm: network handle', (out) => {
        rt.check(ex.vx_net_create(spec.ptr, spec.len, out), 'wasm: cannot build the network');
        return rt.i32(out, 1)[0]! >>> 0;
      });
    } finally {
      rt.free(spec.ptr);
    }
    try {
      const h = this.handle;
      const table: ParamSlot[] = [];
      rt.withAlloc(11 * 4, 'wasm: parameter table', (out) => {
        const n = ex.vx_net_num_entries(h);
        for (let i = 0; i < n; i++) {
          rt.check(ex.vx_net_entry(h, i, out), 'wasm: parameter table');
          const v = rt.i32(out, 11);
          table.push({ node: v[0]!, role: PARAM_ROLES[v[1]!]!, buffer: v[2] === 1, offset: v[3]!, count: v[4]!, shape: Array.from(v.subarray(6, 6 + v[5]!)) });
        }
      });
      this.tensors = tensorNames(graph, table, ex.vx_net_num_nodes(h));
      const shapes = rt.withAlloc(16, 'wasm: shapes', (out) => {
        rt.check(ex.vx_net_node_shape(h, 0, out), 'wasm: input shape');
        const input = Array.from(rt.i32(out, 4));
        const outs: number[][] = [];
        for (let k = 0; k < ex.vx_net_num_outputs(h); k++) {
          rt.check(ex.vx_net_output_shape(h, k, out), 'wasm: output shape');
          outs.push(Array.from(rt.i32(out, 4)));
        }
        return { input, outs };
      });
      this.inputSize = shapes.input.reduce((a, d) => a * d, 1);
      this.outputSizes = shapes.outs.map((s) => s.reduce((a, d) => a * d, 1));
    } catch (e) {
      ex.vx_net_destroy(this.handle);
      this.handle = 0;
      throw e;
    }
  }

  get disposed(): boolean {
    return this.handle === 0;
  }

  private live(where: string): number {
    if (!this.handle) throw new VoxvaeError('EDISPOSED', `${where}: the model was disposed`);
    return this.handle;
  }

  /**
   * Copies tensors (with an optional name prefix) into the module. Every tensor the network needs must
   * be present with its exact shape and finite values; `file` names the checkpoint in errors. Returns
   * the names used.
   */
  load(tensors: ReadonlyMap<string, TensorEntry>, file: string, prefix = ''): Set<string> {
    const h = this.live('load');
    const ex = this.rt.exports;
    return loadNamedTensors(this.tensors, tensors, file, {
      slot: (e, f) => {
        const base = (e.buffer ? ex.vx_net_buffers(h) : ex.vx_net_params(h)) >>> 0;
        this.rt.f32(base + e.offset * 4, e.count).set(f);
      },
      counter: () => undefined, // eval-mode inference does not use BatchNorm's counters
    }, prefix);
  }

  /** Bytes a forward pass of `batch` samples needs in module memory (activations and scratch). */
  forwardBytes(batch: number): number {
    return this.rt.exports.vx_net_forward_bytes(this.live('forward'), batch);
  }

  /**
   * Eval-mode forward of `batch` samples. `fill` writes the input into module memory (a view of
   * batch × inputSize floats, valid only during the call); `read` gets views of the outputs, valid only
   * during the call (copy what you keep).
   */
  forward<T>(batch: number, fill: (input: Float32Array) => void, read: (outputs: Float32Array[]) => T, where: string): T {
    const h = this.live(where);
    const ex = this.rt.exports;
    const need = this.forwardBytes(batch);
    if (need >= 2 ** 32)
      throw new VoxvaeError('ENOMEM', `${where}: batch ${batch} needs ${(need / 2 ** 30).toFixed(2)} GiB of activations; WebAssembly memory is limited to 4 GiB (use a smaller batch or volume, or the native engine)`);
    const inPtr = this.rt.ptr(ex.vx_net_input(h, batch), where);
    fill(this.rt.f32(inPtr, batch * this.inputSize));
    this.rt.check(ex.vx_net_forward(h, batch), where);
    this.rt.checkWorkers(where);
    const outs = this.outputSizes.map((size, k) => this.rt.f32(this.rt.ptr(ex.vx_net_output(h, k), where, 'EINTERNAL'), batch * size));
    return read(outs);
  }

  /**
   * Eval-mode forward of `batch` samples, then the gradient of an objective of the (single) output with
   * respect to the input: `objective` gets a view of the output (valid only during the call) and returns
   * its value and its gradient with respect to that output (batch × outputSize floats). Returns the value
   * and the input gradient (batch × inputSize). A decoder's latent gradient, for latent fitting.
   */
  inputGradient<T>(batch: number, fill: (input: Float32Array) => void, objective: (output: Float32Array) => { value: T; grad: Float32Array }, where: string): { value: T; grad: Float32Array } {
    if (this.outputSizes.length !== 1) throw new VoxvaeError('EUNSUPPORTED', `${where}: the network has ${this.outputSizes.length} outputs; input gradients need one`);
    const h = this.live(where);
    const ex = this.rt.exports;
    const outSize = batch * this.outputSizes[0]!;
    const { value, grad } = this.forward(batch, fill, ([y]) => objective(y!), where);
    if (!(grad instanceof Float32Array) || grad.length !== outSize)
      throw new VoxvaeError('ESHAPE', `${where}: the objective's gradient has ${(grad as Float32Array)?.length} values, the output ${outSize}`);
    // Backward needs about as much scratch as the forward's activations: reserve (and release) it first, so
    // a module that cannot grow that far fails with ENOMEM here, not inside the C++ allocator.
    this.rt.withAlloc(this.forwardBytes(batch), where, () => undefined);
    const gradIn = this.rt.withAlloc((outSize + batch * this.inputSize) * 4, where, (p) => {
      this.rt.f32(p, outSize).set(grad);
      this.rt.check(ex.vx_net_backward_input(h, p, p + outSize * 4), where);
      this.rt.checkWorkers(where);
      return this.rt.f32(p + outSize * 4, batch * this.inputSize).slice();
    });
    return { value, grad: gradIn };
  }

  dispose(): void {
    if (!this.handle) return;
    this.rt.exports.vx_net_destroy(this.handle);
    this.handle = 0;
  }
}
