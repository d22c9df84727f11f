// The one model description: a typed graph of operators (what native/core/net.cpp executes), each node
// with its inputs, its typed attributes and the PyTorch/MONAI name prefix of its parameters. Every preset
// (MONAI VarAutoEncoder, skullVAE's decoder, Rivera's ResNet-v2, PatchGAN; ts/model/presets.ts) builds one
// with GraphBuilder; the engines get it as spec text through toSpec() (the one serialisation), tensor
// names come from tensorNames() (ts/model/naming.ts), and the ONNX exporter walks the nodes.
import { VoxvaeError } from '../errors.js';

/** Attributes of each operator, as net.cpp reads them. Sizes are cubic (k, s, p, op: one value per axis). */
export interface OpAttrs {
  input: { c: number; d: number; h: number; w: number };
  conv3d: { cout: number; k: number; s: number; p: number; bias: boolean };
  conv_transpose3d: { cout: number; k: number; s: number; p: number; op: number; bias: boolean };
  linear: { out: number; bias: boolean };
  batch_norm3d: { eps: number; momentum: number; affine: boolean };
  instance_norm3d: { eps: number; affine: boolean };
  prelu: { n: number };
  relu: Record<string, never>;
  leaky_relu: { slope: number };
  sigmoid: Record<string, never>;
  softmax: Record<string, never>;
  dropout: { rate: number };
  add: Record<string, never>;
  flatten: Record<string, never>;
  reshape: { c: number; d: number; h: number; w: number };
}

export type Op = keyof OpAttrs;

/** One node: its operator, the nodes it reads (by index), its attributes and its parameters' name prefix. */
export type GraphNode = { [K in Op]: { readonly op: K; readonly inputs: readonly number[]; readonly attrs: Readonly<OpAttrs[K]>; readonly name: string | null } }[Op];

/** Attribute order on a spec line (the order the builders have always written; net.cpp reads any order). */
const ATTR_ORDER: { [K in Op]: readonly (keyof OpAttrs[K])[] } = {
  input: ['c', 'd', 'h', 'w'],
  conv3d: ['cout', 'k', 's', 'p', 'bias'],
  conv_transpose3d: ['cout', 'k', 's', 'p', 'op', 'bias'],
  linear: ['out', 'bias'],
  batch_norm3d: ['eps', 'momentum', 'affine'],
  instance_norm3d: ['eps', 'affine'],
  prelu: ['n'],
  relu: [],
  leaky_relu: ['slope'],
  sigmoid: [],
  softmax: [],
  dropout: ['rate'],
  add: [],
  flatten: [],
  reshape: ['c', 'd', 'h', 'w'],
};

/** Parameter-holding operators (their nodes need a name). */
export const PARAMETRIC_OPS: ReadonlySet<Op> = new Set<Op>(['conv3d', 'conv_transpose3d', 'linear', 'batch_norm3d', 'instance_norm3d', 'prelu']);

function specLine(n: GraphNode): string {
  const parts: string[] = [n.op];
  if (n.inputs.length) parts.push(`in=${n.inputs.join(',')}`);
  const attrs = n.attrs as Record<string, number | boolean>;
  for (const k of ATTR_ORDER[n.op] as readonly string[]) {
    const v = attrs[k];
    parts.push(`${k}=${typeof v === 'boolean' ? (v ? 1 : 0) : v}`);
  }
  return parts.join(' ');
}

/** A network: nodes in topological order (node 0 is the input) and the indices of its outputs. */
export class Graph {
  readonly nodes: readonly GraphNode[];
  readonly outputs: readonly number[];
  private specText: string | null = null;

  constructor(nodes: readonly GraphNode[], outputs: readonly number[]) {
    if (nodes[0]?.op !== 'input') throw new VoxvaeError('EINTERNAL', 'a graph starts with its input node');
    nodes.forEach((n, i) => {
      for (const j of n.inputs) if (!(Number.isInteger(j) && j >= 0 && j < i)) throw new VoxvaeError('EINTERNAL', `graph node ${i} (${n.op}) reads node ${j}, which does not precede it`);
    });
    for (const o of outputs) if (!(Number.isInteger(o) && o >= 0 && o < nodes.length)) throw new VoxvaeError('EINTERNAL', `graph output ${o} is not a node`);
    this.nodes = nodes;
    this.outputs = outputs;
  }

  /** The native spec text net.cpp parses (one line per node, then `output …`). */
  toSpec(): string {
    this.specText ??= [...this.nodes.map(specLine), `output ${this.outputs.join(' ')}`].join('\n');
    return this.specText;
  }

  /** Same as toSpec() (the engines' constructors take it). */
  get spec(): string {
    return this.toSpec();
  }

  /** The parameter name prefix of each node (null: no parameters). */
  get nodeNames(): (string | null)[] {
    return this.nodes.map((n) => n.name);
  }

  /** The input node's attributes [c, d, h, w]. */
  get input(): Readonly<OpAttrs['input']> {
    return (this.nodes[0] as Extract<GraphNode, { op: 'input' }>).attrs;
  }
}

/** Builds a Graph node by node; every preset uses it. Methods return the new node's index. */
export class GraphBuilder {
  private readonly nodes: GraphNode[] = [];

  add<K extends Op>(op: K, inputs: number[], attrs: OpAttrs[K], name: string | null = null): number {
    this.nodes.push({ op, inputs, attrs, name } as unknown as GraphNode);
    return this.nodes.length - 1;
  }
  input(c: number, d: number, h: number, w: number): number {
    return this.add('input', [], { c, d, h, w });
  }
  conv3d(x: number, a: { cout: number; k: number; s: number; p?: number; bias?: boolean }, name: string): number {
    return this.add('conv3d', [x], { cout: a.cout, k: a.k, s: a.s, p: a.p ?? (a.k - 1) / 2, bias: a.bias ?? true }, name);
  }
  convTranspose3d(x: number, a: { cout: number; k: number; s: number; p?: number; op?: number; bias?: boolean }, name: string): number {
    return this.add('conv_transpose3d', [x], { cout: a.cout, k: a.k, s: a.s, p: a.p ?? (a.k - 1) / 2, op: a.op ?? a.s - 1, bias: a.bias ?? true }, name);
  }
  linear(x: number, out: number, name: string, bias = true): number {
    return this.add('linear', [x], { out, bias }, name);
  }
  batchNorm3d(x: number, a: { eps: number; momentum: number; affine?: boolean }, name: string): number {
    return this.add('batch_norm3d', [x], { eps: a.eps, momentum: a.momentum, affine: a.affine ?? true }, name);
  }
  instanceNorm3d(x: number, a: { eps: number; affine?: boolean }, name: string | null = null): number {
    return this.add('instance_norm3d', [x], { eps: a.eps, affine: a.affine ?? false }, name);
  }
  prelu(x: number, n: number, name: string): number {
    return this.add('prelu', [x], { n }, name);
  }
  relu(x: number): number {
    return this.add('relu', [x], {});
  }
  leakyRelu(x: number, slope: number): number {
    return this.add('leaky_relu', [x], { slope });
  }
  sigmoid(x: number): number {
    return this.add('sigmoid', [x], {});
  }
  softmax(x: number): number {
    return this.add('softmax', [x], {});
  }
  dropout(x: number, rate: number): number {
    return this.add('dropout', [x], { rate });
  }
  addNodes(a: number, b: number): number {
    return this.add('add', [a, b], {});
  }
  flatten(x: number): number {
    return this.add('flatten', [x], {});
  }
  reshape(x: number, c: number, d: number, h: number, w: number): number {
    return this.add('reshape', [x], { c, d, h, w });
  }
  build(outputs: number[]): Graph {
    return new Graph([...this.nodes], outputs);
  }
}
