// A plain reference evaluator for the ONNX models ts/export/onnx.ts writes (the operators it uses, float64
// accumulation, no optimisation), so the tests can run an exported model without onnxruntime: the decode
// of an exported decoder is compared with the native engine's. Reads the protobuf directly.

type Value = number | Uint8Array;
type Fields = Map<number, Value[]>;

/** The fields of one protobuf message (varint, 32-bit and length-delimited wire types). */
export function pbFields(b: Uint8Array): Fields {
  const out: Fields = new Map();
  let o = 0;
  const varint = (): number => {
    let v = 0, mul = 1, byte = 0;
    do {
      byte = b[o++]!;
      v += (byte & 0x7f) * mul;
      mul *= 128;
    } while (byte & 0x80);
    return v;
  };
  while (o < b.length) {
    const key = varint(), field = Math.floor(key / 8), wire = key & 7;
    let v: Value;
    if (wire === 0) v = varint();
    else if (wire === 2) {
      const n = varint();
      v = b.subarray(o, o + n);
      o += n;
    } else if (wire === 5) {
      v = b.subarray(o, o + 4);
      o += 4;
    } else throw new Error(`protobuf wire type ${wire}`);
    out.set(field, [...(out.get(field) ?? []), v]);
  }
  return out;
}

const str = (v: Value | undefined): string => new TextDecoder().decode(v as Uint8Array);
const bytes = (v: Value | undefined): Uint8Array => (v as Uint8Array).slice();

interface Tensor {
  shape: number[];
  data: Float64Array;
}

export interface OnnxModel {
  inputName: string;
  outputs: string[];
  /** Initializers by name: dims and raw little-endian bytes (float32 or int64). */
  initializers: Map<string, { dims: number[]; type: number; raw: Uint8Array }>;
  nodes: { op: string; inputs: string[]; output: string; attrs: Map<string, { f?: number; i?: number; ints?: number[] }> }[];
}

export function parseOnnx(model: Uint8Array): OnnxModel {
  const graph = pbFields(pbFields(model).get(7)![0] as Uint8Array);
  const initializers: OnnxModel['initializers'] = new Map();
  for (const t of graph.get(5) ?? []) {
    const f = pbFields(t as Uint8Array);
    initializers.set(str(f.get(8)![0]), { dims: (f.get(1) ?? []) as number[], type: f.get(2)![0] as number, raw: bytes(f.get(9)![0]) });
  }
  const nodes: OnnxModel['nodes'] = (graph.get(1) ?? []).map((n) => {
    const f = pbFields(n as Uint8Array);
    const attrs = new Map<string, { f?: number; i?: number; ints?: number[] }>();
    for (const a of f.get(5) ?? []) {
      const af = pbFields(a as Uint8Array);
      const fl = af.get(2)?.[0];
      attrs.set(str(af.get(1)![0]), {
        ...(fl !== undefined ? { f: new DataView(bytes(fl).buffer).getFloat32(0, true) } : {}),
        ...(af.get(3) ? { i: af.get(3)![0] as number } : {}),
        ...(af.get(8) ? { ints: af.get(8) as number[] } : {}),
      });
    }
    return { op: str(f.get(4)![0]), inputs: (f.get(1) ?? []).map(str), output: str(f.get(2)![0]), attrs };
  });
  const inputName = str(pbFields(graph.get(11)![0] as Uint8Array).get(1)![0]);
  const outputs = (graph.get(12) ?? []).map((v) => str(pbFields(v as Uint8Array).get(1)![0]));
  return { inputName, outputs, initializers, nodes };
}

const size = (s: number[]): number => s.reduce((a, d) => a * d, 1);

function conv(x: Tensor, w: Tensor, b: Tensor | undefined, k: number[], s: number[], p: number[]): Tensor {
  const [N, C, D, H, W] = x.shape as [number, number, number, number, number];
  const O = w.shape[0]!;
  const out = [0, 1, 2].map((a) => Math.floor(([D, H, W][a]! + 2 * p[a]! - k[a]!) / s[a]!) + 1) as [number, number, number];
  const y = new Float64Array(N * O * size(out));
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++)
      for (let z = 0; z < out[0]; z++)
        for (let yy = 0; yy < out[1]; yy++)
          for (let xx = 0; xx < out[2]; xx++) {
            let acc = b ? b.data[o]! : 0;
            for (let c = 0; c < C; c++)
              for (let a = 0; a < k[0]!; a++) {
                const iz = z * s[0]! - p[0]! + a;
                if (iz < 0 || iz >= D) continue;
                for (let bb = 0; bb < k[1]!; bb++) {
                  const iy = yy * s[1]! - p[1]! + bb;
                  if (iy < 0 || iy >= H) continue;
                  for (let cc = 0; cc < k[2]!; cc++) {
                    const ix = xx * s[2]! - p[2]! + cc;
                    if (ix < 0 || ix >= W) continue;
                    acc += x.data[(((n * C + c) * D + iz) * H + iy) * W + ix]! * w.data[(((o * C + c) * k[0]! + a) * k[1]! + bb) * k[2]! + cc]!;
                  }
                }
              }
            y[(((n * O + o) * out[0] + z) * out[1] + yy) * out[2] + xx] = acc;
          }
  return { shape: [N, O, ...out], data: y };
}

function convTranspose(x: Tensor, w: Tensor, b: Tensor | undefined, k: number[], s: number[], p: number[], op: number[]): Tensor {
  const [N, C, D, H, W] = x.shape as [number, number, number, number, number];
  const O = w.shape[1]!;
  const out = [0, 1, 2].map((a) => ([D, H, W][a]! - 1) * s[a]! - 2 * p[a]! + k[a]! + op[a]!) as [number, number, number];
  const y = new Float64Array(N * O * size(out));
  const S = size(out);
  for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) y.fill(b ? b.data[o]! : 0, (n * O + o) * S, (n * O + o + 1) * S);
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++)
      for (let iz = 0; iz < D; iz++)
        for (let iy = 0; iy < H; iy++)
          for (let ix = 0; ix < W; ix++) {
            const v = x.data[(((n * C + c) * D + iz) * H + iy) * W + ix]!;
            for (let o = 0; o < O; o++)
              for (let a = 0; a < k[0]!; a++) {
                const z = iz * s[0]! - p[0]! + a;
                if (z < 0 || z >= out[0]) continue;
                for (let bb = 0; bb < k[1]!; bb++) {
                  const yy = iy * s[1]! - p[1]! + bb;
                  if (yy < 0 || yy >= out[1]) continue;
                  for (let cc = 0; cc < k[2]!; cc++) {
                    const xx = ix * s[2]! - p[2]! + cc;
                    if (xx < 0 || xx >= out[2]) continue;
                    const at = (((n * O + o) * out[0] + z) * out[1] + yy) * out[2] + xx;
                    y[at] = y[at]! + v * w.data[(((c * O + o) * k[0]! + a) * k[1]! + bb) * k[2]! + cc]!;
                  }
                }
              }
          }
  return { shape: [N, O, ...out], data: y };
}

/** Per-channel map over an [N, C, ...] tensor. */
function perChannel(x: Tensor, f: (v: number, c: number, n: number) => number): Tensor {
  const [N, C] = x.shape as [number, number];
  const S = size(x.shape.slice(2));
  const y = new Float64Array(x.data.length);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let i = 0; i < S; i++) y[(n * C + c) * S + i] = f(x.data[(n * C + c) * S + i]!, c, n);
  return { shape: x.shape, data: y };
}

/** Runs the model on one float32 input [N, ...] and returns its outputs as float32 arrays. */
export function runOnnx(m: OnnxModel, input: Float32Array, inputShape: number[]): Float32Array[] {
  const values = new Map<string, Tensor>();
  for (const [name, t] of m.initializers) {
    const data = t.type === 7 ? Float64Array.from(new BigInt64Array(t.raw.buffer), Number) : Float64Array.from(new Float32Array(t.raw.buffer));
    values.set(name, { shape: t.dims, data });
  }
  values.set(m.inputName, { shape: inputShape, data: Float64Array.from(input) });
  const get = (n: string): Tensor => {
    const v = values.get(n);
    if (!v) throw new Error(`ONNX value ${n} is not defined before use`);
    return v;
  };
  for (const n of m.nodes) {
    const [x, ...rest] = n.inputs.map(get) as [Tensor, ...Tensor[]];
    const ints = (k: string): number[] => n.attrs.get(k)?.ints ?? [];
    let y: Tensor;
    switch (n.op) {
      case 'Gemm': {
        const [w, b] = rest as [Tensor, Tensor | undefined];
        const [N, K] = x.shape as [number, number];
        const M = w.shape[0]!;
        const d = new Float64Array(N * M);
        for (let i = 0; i < N; i++) for (let j = 0; j < M; j++) {
          let acc = b ? b.data[j]! : 0;
          for (let k = 0; k < K; k++) acc += x.data[i * K + k]! * w.data[j * K + k]!;
          d[i * M + j] = acc;
        }
        y = { shape: [N, M], data: d };
        break;
      }
      case 'Flatten':
        y = { shape: [x.shape[0]!, size(x.shape.slice(1))], data: x.data };
        break;
      case 'Reshape': {
        const dims = Array.from(rest[0]!.data);
        const known = dims.filter((d) => d !== -1).reduce((a, d) => a * d, 1);
        y = { shape: dims.map((d) => (d === -1 ? x.data.length / known : d)), data: x.data };
        break;
      }
      case 'Conv':
        y = conv(x, rest[0]!, rest[1], ints('kernel_shape'), ints('strides'), ints('pads'));
        break;
      case 'ConvTranspose':
        y = convTranspose(x, rest[0]!, rest[1], ints('kernel_shape'), ints('strides'), ints('pads'), ints('output_padding'));
        break;
      case 'BatchNormalization': {
        const [g, b, mean, v] = rest as [Tensor, Tensor, Tensor, Tensor];
        const eps = Math.fround(n.attrs.get('epsilon')!.f!);
        y = perChannel(x, (u, c) => ((u - mean.data[c]!) / Math.sqrt(v.data[c]! + eps)) * g.data[c]! + b.data[c]!);
        break;
      }
      case 'InstanceNormalization': {
        const [g, b] = rest as [Tensor, Tensor];
        const eps = Math.fround(n.attrs.get('epsilon')!.f!);
        const [N, C] = x.shape as [number, number];
        const S = size(x.shape.slice(2));
        const stats: [number, number][] = [];
        for (let i = 0; i < N * C; i++) {
          let mu = 0, s2 = 0;
          for (let j = 0; j < S; j++) mu += x.data[i * S + j]!;
          mu /= S;
          for (let j = 0; j < S; j++) s2 += (x.data[i * S + j]! - mu) ** 2;
          stats.push([mu, s2 / S]);
        }
        y = perChannel(x, (u, c, nn) => ((u - stats[nn * C + c]![0]) / Math.sqrt(stats[nn * C + c]![1] + eps)) * g.data[c]! + b.data[c]!);
        break;
      }
      case 'PRelu': {
        const a = rest[0]!;
        y = perChannel(x, (u, c) => (u >= 0 ? u : u * (a.data.length === 1 ? a.data[0]! : a.data[c]!)));
        break;
      }
      case 'Relu':
        y = { shape: x.shape, data: x.data.map((u) => Math.max(0, u)) };
        break;
      case 'LeakyRelu': {
        const alpha = Math.fround(n.attrs.get('alpha')!.f!);
        y = { shape: x.shape, data: x.data.map((u) => (u >= 0 ? u : u * alpha)) };
        break;
      }
      case 'Sigmoid':
        y = { shape: x.shape, data: x.data.map((u) => 1 / (1 + Math.exp(-u))) };
        break;
      case 'Softmax': {
        const [N, C] = x.shape as [number, number];
        const S = size(x.shape.slice(2));
        const d = new Float64Array(x.data.length);
        for (let nn = 0; nn < N; nn++)
          for (let i = 0; i < S; i++) {
            let mx = -Infinity, sum = 0;
            for (let c = 0; c < C; c++) mx = Math.max(mx, x.data[(nn * C + c) * S + i]!);
            for (let c = 0; c < C; c++) sum += Math.exp(x.data[(nn * C + c) * S + i]! - mx);
            for (let c = 0; c < C; c++) d[(nn * C + c) * S + i] = Math.exp(x.data[(nn * C + c) * S + i]! - mx) / sum;
          }
        y = { shape: x.shape, data: d };
        break;
      }
      case 'Identity':
        y = x;
        break;
      case 'Add':
        y = { shape: x.shape, data: x.data.map((u, i) => u + rest[0]!.data[i]!) };
        break;
      default:
        throw new Error(`the reference ONNX evaluator has no ${n.op}`);
    }
    values.set(n.output, y);
  }
  return m.outputs.map((o) => Float32Array.from(get(o).data));
}
