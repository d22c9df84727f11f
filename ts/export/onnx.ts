// ONNX export of a voxvae network (the decoder by default) from a checkpoint: the same Graph
// (ts/model) the native and WebAssembly engines run, walked node by node into ONNX operators
// (opset 17), with the checkpoint's tensors as initializers. Lets a trained decoder run in
// any ONNX runtime, and lets the benchmarks time onnxruntime on the very same weights. No Node import:
// the model is returned as bytes (the protobuf encoding is written here; ONNX's schema is small).
//
// Layout: activations are NCDHW (5-D) as everywhere in voxvae; a linear layer's input and output are
// [N, C] (2-D), as after a flatten. The graph's input is `z` [N, latentSize] for a decoder, `x`
// [N, C, D, H, W] otherwise; N is symbolic ("N").
import { VoxvaeError, invalid } from '../errors.js';
import type { VaeConfig } from '../config.js';
import { checkpointNetworks, resolveConfigs } from '../model/checkpoint.js';
import { parseSafetensors, toFloat32, type SafeTensors, type TensorEntry } from '../safetensors_core.js';

// ---- protobuf writer (just what ONNX needs) ------------------------------------------------------------------
class Pb {
  private chunks: Uint8Array[] = [];
  private size = 0;
  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.length;
  }
  private varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    do {
      let byte = Number(x & 0x7fn);
      x >>= 7n;
      if (x) byte |= 0x80;
      out.push(byte);
    } while (x);
    this.push(Uint8Array.from(out));
  }
  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  int(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }
  bytes(field: number, b: Uint8Array): this {
    this.key(field, 2);
    this.varint(b.length);
    this.push(b);
    return this;
  }
  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  msg(field: number, m: Pb): this {
    return this.bytes(field, m.finish());
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

const FLOAT = 1, INT64 = 7; // TensorProto.DataType
const ATTR_FLOAT = 1, ATTR_INT = 2, ATTR_INTS = 7; // AttributeProto.AttributeType

type Attr = { name: string; f?: number; i?: number; ints?: number[] };

function attribute(a: Attr): Pb {
  const p = new Pb().string(1, a.name);
  if (a.f !== undefined) p.float(2, a.f).int(20, ATTR_FLOAT);
  else if (a.i !== undefined) p.int(3, a.i).int(20, ATTR_INT);
  else {
    for (const v of a.ints ?? []) p.int(8, v);
    p.int(20, ATTR_INTS);
  }
  return p;
}

function tensorProto(name: string, dims: number[], data: Float32Array | BigInt64Array): Pb {
  const p = new Pb();
  for (const d of dims) p.int(1, d);
  p.int(2, data instanceof Float32Array ? FLOAT : INT64);
  p.string(8, name);
  // raw_data is little-endian, which typed arrays are on every platform voxvae supports.
  p.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return p;
}

function valueInfo(name: string, dims: (number | string)[]): Pb {
  const shape = new Pb();
  for (const d of dims) shape.msg(1, typeof d === 'number' ? new Pb().int(1, d) : new Pb().string(2, d));
  const tensorType = new Pb().int(1, FLOAT).msg(2, shape);
  return new Pb().string(1, name).msg(2, new Pb().msg(1, tensorType));
}

// ---- the graph -------------------------------------------------------------------------------------------------
const triple = (v: number): number[] => [v, v, v];

export interface OnnxExportOptions {
  /** Which network: 'decoder' (default) or 'encoder' (outputs mu and logvar). */
  part?: 'decoder' | 'encoder';
  /** Append the config's output activation (softmax over channels or sigmoid) to the decoder. Default false: logits. */
  probabilities?: boolean;
  /** The architecture when the checkpoint has no voxvae metadata. */
  config?: VaeConfig;
  /** Names the checkpoint in errors. */
  name?: string;
}

/**
 * Exports the decoder (or encoder) of a voxvae/MONAI checkpoint to an ONNX model (opset 17, float32).
 * The checkpoint may be the bytes of a safetensors file or its parsed form.
 */
export function exportOnnx(checkpoint: Uint8Array | SafeTensors, opts: OnnxExportOptions = {}): Uint8Array {
  const file = opts.name ?? '<checkpoint>';
  const st = checkpoint instanceof Uint8Array ? parseSafetensors(checkpoint, file) : checkpoint;
  const part = opts.part ?? 'decoder';
  if (part !== 'decoder' && part !== 'encoder') invalid('options.part', "must be 'decoder' or 'encoder'", part);
  const r = resolveConfigs(st, file, { config: opts.config, part });
  const nets = checkpointNetworks(st, file, r);
  if (part === 'encoder' && !nets.hasEncoder)
    throw new VoxvaeError('ECHECKPOINT', `${file} holds no tensors of the encoder its config describes: export the decoder`, { path: file });
  const cfg = part === 'decoder' ? r.decoderConfig : r.config!;
  const graph = part === 'decoder' ? nets.decoder : nets.encoder!;

  const graphNodes: Pb[] = [];
  const inits: Pb[] = [];
  const used = new Set<string>();
  let counter = 0;
  const fresh = (base: string): string => `${base}_${counter++}`;
  const tensor = (key: string, dims?: number[]): string => {
    const e: TensorEntry | undefined = st.tensors.get(key);
    if (!e) throw new VoxvaeError('ECHECKPOINT', `${file}: missing ${key}, which the ${part} needs`, { path: file });
    const data = toFloat32(e);
    inits.push(tensorProto(key, dims ?? e.shape, data));
    used.add(key);
    return key;
  };
  const constF = (base: string, dims: number[], value: number): string => {
    const name = fresh(base);
    inits.push(tensorProto(name, dims, new Float32Array(dims.reduce((a, d) => a * d, 1)).fill(value)));
    return name;
  };
  const constI = (base: string, values: number[]): string => {
    const name = fresh(base);
    inits.push(tensorProto(name, [values.length], BigInt64Array.from(values.map((v) => BigInt(v)))));
    return name;
  };
  const node = (op: string, inputs: string[], attrs: Attr[] = [], out = fresh(op.toLowerCase())): string => {
    const p = new Pb();
    for (const i of inputs) p.string(1, i);
    p.string(2, out);
    p.string(3, out);
    p.string(4, op);
    for (const a of attrs) p.msg(5, attribute(a));
    graphNodes.push(p);
    return out;
  };

  // values[i]: ONNX name of node i's output; rank[i]: 2 (after flatten/linear) or 5.
  const values: string[] = [];
  const rank: number[] = [];
  const channels: number[] = [];
  let graphInput: Pb | null = null;
  for (const [i, n] of graph.nodes.entries()) {
    const src = n.inputs;
    const x = src.length ? values[src[0]!]! : '';
    const xr = src.length ? rank[src[0]!]! : 0;
    const xc = src.length ? channels[src[0]!]! : 0;
    let out = '', r = xr, c = xc;
    const named = (role: string): string => `${n.name}.${role}`;
    switch (n.op) {
      case 'input': {
        const { c: C, d: D, h: H, w: W } = n.attrs;
        const flat = D === 1 && H === 1 && W === 1;
        out = part === 'decoder' ? 'z' : 'x';
        graphInput = valueInfo(out, flat ? ['N', C] : ['N', C, D, H, W]);
        r = flat ? 2 : 5;
        c = C;
        break;
      }
      case 'linear': {
        const a = xr === 2 ? x : node('Flatten', [x], [{ name: 'axis', i: 1 }]);
        const inputs = [a, tensor(named('weight'))];
        if (n.attrs.bias) inputs.push(tensor(named('bias')));
        out = node('Gemm', inputs, [{ name: 'transB', i: 1 }]);
        r = 2;
        c = n.attrs.out;
        break;
      }
      case 'flatten':
        out = xr === 2 ? x : node('Flatten', [x], [{ name: 'axis', i: 1 }]);
        r = 2;
        break;
      case 'reshape': {
        const dims = [n.attrs.c, n.attrs.d, n.attrs.h, n.attrs.w];
        out = node('Reshape', [x, constI('shape', [-1, ...dims])]);
        r = 5;
        c = dims[0]!;
        break;
      }
      case 'conv3d':
      case 'conv_transpose3d': {
        const p = triple(n.attrs.p);
        const inputs = [x, tensor(named('weight'))];
        if (n.attrs.bias) inputs.push(tensor(named('bias')));
        const attrs: Attr[] = [
          { name: 'kernel_shape', ints: triple(n.attrs.k) },
          { name: 'strides', ints: triple(n.attrs.s) },
          { name: 'pads', ints: [...p, ...p] },
        ];
        if (n.op === 'conv_transpose3d') attrs.push({ name: 'output_padding', ints: triple(n.attrs.op) });
        out = node(n.op === 'conv3d' ? 'Conv' : 'ConvTranspose', inputs, attrs);
        c = n.attrs.cout;
        break;
      }
      case 'batch_norm3d': {
        const affine = n.attrs.affine;
        const scale = affine ? tensor(named('weight')) : constF('bn_scale', [xc], 1);
        const bias = affine ? tensor(named('bias')) : constF('bn_bias', [xc], 0);
        out = node('BatchNormalization', [x, scale, bias, tensor(named('running_mean')), tensor(named('running_var'))], [{ name: 'epsilon', f: n.attrs.eps }]);
        if (st.tensors.has(named('num_batches_tracked'))) used.add(named('num_batches_tracked'));
        break;
      }
      case 'instance_norm3d': {
        const affine = n.attrs.affine;
        const scale = affine ? tensor(named('weight')) : constF('in_scale', [xc], 1);
        const bias = affine ? tensor(named('bias')) : constF('in_bias', [xc], 0);
        out = node('InstanceNormalization', [x, scale, bias], [{ name: 'epsilon', f: n.attrs.eps }]);
        break;
      }
      case 'prelu': {
        const count = n.attrs.n;
        // PReLU's slope broadcasts from the right: one per channel is [C, 1, 1, 1] on NCDHW.
        const slope = tensor(named('weight'), count === 1 ? [1] : xr === 5 ? [count, 1, 1, 1] : [count]);
        out = node('PRelu', [x, slope]);
        break;
      }
      case 'relu':
        out = node('Relu', [x]);
        break;
      case 'leaky_relu':
        out = node('LeakyRelu', [x], [{ name: 'alpha', f: n.attrs.slope }]);
        break;
      case 'sigmoid':
        out = node('Sigmoid', [x]);
        break;
      case 'softmax':
        out = node('Softmax', [x], [{ name: 'axis', i: 1 }]);
        break;
      case 'dropout':
        out = node('Identity', [x]);
        break;
      case 'add':
        out = node('Add', [x, values[src[1]!]!]);
        break;
      default: {
        const op: string = (n as { op: string }).op;
        throw new VoxvaeError('EUNSUPPORTED', `ONNX export: the network uses '${op}' (node ${i}), which has no ONNX translation here`);
      }
    }
    values.push(out);
    rank.push(r);
    channels.push(c);
  }
  const outNames = part === 'decoder' ? ['logits'] : ['mu', 'logvar'];
  const g = new Pb();
  graph.outputs.forEach((o, k) => {
    let v = values[o]!;
    if (part === 'decoder' && opts.probabilities && cfg.outputActivation !== 'none')
      v = cfg.outputActivation === 'softmax' ? node('Softmax', [v], [{ name: 'axis', i: 1 }]) : node('Sigmoid', [v]);
    node('Identity', [v], [], outNames[k]);
  });
  for (const gn of graphNodes) g.msg(1, gn);
  g.string(2, `voxvae_${part}`);
  for (const t of inits) g.msg(5, t);
  g.msg(11, graphInput!);
  const [D, H, W] = cfg.inputShape;
  if (part === 'decoder') g.msg(12, valueInfo('logits', ['N', cfg.outChannels, D, H, W]));
  else for (const name of outNames) g.msg(12, valueInfo(name, ['N', cfg.latentSize]));
  const model = new Pb()
    .int(1, 8) // ir_version
    .string(2, 'voxvae')
    .string(3, '0.1.0')
    .msg(7, g)
    .msg(8, new Pb().string(1, '').int(2, 17));
  return model.finish();
}
