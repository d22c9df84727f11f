// Shapes a graph implies without building it: each node's output shape [c, d, h, w] and each parameter
// tensor's PyTorch shape, by name. Loaders check a checkpoint's tensors against these before any engine
// allocates a network (a small file whose config claims a huge volume is refused in microseconds, not
// after gigabytes of allocation), and they bound the bytes a network will need.
import { VoxvaeError } from '../errors.js';
import type { Graph, GraphNode } from './graph.js';
import type { ParamRole } from './naming.js';

export type Shape4 = [number, number, number, number];

/** One parameter or buffer tensor of a graph, by PyTorch name. */
export interface ExpectedTensor {
  name: string;
  role: ParamRole;
  shape: number[];
}

function convOut(d: number, k: number, s: number, p: number): number {
  return Math.floor((d + 2 * p - k) / s) + 1;
}

/** Each node's output shape (ECHECKPOINT-free: EINVAL when the graph cannot run on its input). */
export function nodeShapes(g: Graph): Shape4[] {
  const out: Shape4[] = [];
  g.nodes.forEach((n: GraphNode, i) => {
    const x = n.inputs.length ? out[n.inputs[0]!]! : ([0, 0, 0, 0] as Shape4);
    let s: Shape4;
    switch (n.op) {
      case 'input':
        s = [n.attrs.c, n.attrs.d, n.attrs.h, n.attrs.w];
        break;
      case 'conv3d': {
        const a = n.attrs;
        s = [a.cout, convOut(x[1], a.k, a.s, a.p), convOut(x[2], a.k, a.s, a.p), convOut(x[3], a.k, a.s, a.p)];
        break;
      }
      case 'conv_transpose3d': {
        const a = n.attrs;
        const o = (d: number): number => (d - 1) * a.s - 2 * a.p + a.k + a.op;
        s = [a.cout, o(x[1]), o(x[2]), o(x[3])];
        break;
      }
      case 'linear':
        s = [n.attrs.out, 1, 1, 1];
        break;
      case 'flatten':
        s = [x[0] * x[1] * x[2] * x[3], 1, 1, 1];
        break;
      case 'reshape':
        s = [n.attrs.c, n.attrs.d, n.attrs.h, n.attrs.w];
        break;
      default:
        s = [...x] as Shape4;
    }
    if (!s.every((v) => Number.isSafeInteger(v) && v >= 1))
      throw new VoxvaeError('EINVAL', `graph node ${i} (${n.op}${n.name ? ` ${n.name}` : ''}) would have shape [${s.join(', ')}]: the configuration's volume is too small for its layers`, { path: n.name ?? undefined });
    out.push(s);
  });
  return out;
}

/**
 * The parameter and buffer tensors a graph has, in the engines' order (weight, bias, running_mean,
 * running_var per node), with PyTorch's shapes: conv [cout, cin, k, k, k], transposed conv
 * [cin, cout, k, k, k], linear [out, in], norms and PReLU [c].
 */
export function expectedTensors(g: Graph): ExpectedTensor[] {
  const shapes = nodeShapes(g);
  const out: ExpectedTensor[] = [];
  g.nodes.forEach((n, i) => {
    const x = n.inputs.length ? shapes[n.inputs[0]!]! : null;
    const push = (role: ParamRole, shape: number[]): void => {
      out.push({ name: `${n.name}.${role}`, role, shape });
    };
    switch (n.op) {
      case 'conv3d':
        push('weight', [n.attrs.cout, x![0], n.attrs.k, n.attrs.k, n.attrs.k]);
        if (n.attrs.bias) push('bias', [n.attrs.cout]);
        break;
      case 'conv_transpose3d':
        push('weight', [x![0], n.attrs.cout, n.attrs.k, n.attrs.k, n.attrs.k]);
        if (n.attrs.bias) push('bias', [n.attrs.cout]);
        break;
      case 'linear':
        push('weight', [n.attrs.out, x![0] * x![1] * x![2] * x![3]]);
        if (n.attrs.bias) push('bias', [n.attrs.out]);
        break;
      case 'batch_norm3d':
        if (n.attrs.affine) {
          push('weight', [x![0]]);
          push('bias', [x![0]]);
        }
        push('running_mean', [x![0]]);
        push('running_var', [x![0]]);
        break;
      case 'instance_norm3d':
        if (n.attrs.affine) {
          push('weight', [x![0]]);
          push('bias', [x![0]]);
        }
        break;
      case 'prelu':
        push('weight', [n.attrs.n]);
        break;
      default:
        break;
    }
    void i;
  });
  return out;
}

const product = (s: readonly number[]): number => s.reduce((a, d) => a * d, 1);

/** Bytes (float32) of a graph's parameters and buffers, and of one sample's activations (all nodes' outputs). */
export function graphBytes(g: Graph): { params: number; activations: number } {
  const params = expectedTensors(g).reduce((a, t) => a + product(t.shape), 0) * 4;
  const activations = nodeShapes(g).reduce((a, s) => a + product(s), 0) * 4;
  return { params, activations };
}

/** Bytes (float32) of a graph's parameters and buffers. */
export function parameterBytes(g: Graph): number {
  return expectedTensors(g).reduce((a, t) => a + product(t.shape), 0) * 4;
}
