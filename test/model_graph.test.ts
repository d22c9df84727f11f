// The one model description (ts/model): every preset's Graph serialises to the very spec text (and node
// names) the builders produced before the graph module (test/fixtures/specs/specs.json, captured from
// them), so the native numbers stay bit-exact; and ts/ has no import cycle.
import test from 'ava';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { monaiVarAutoEncoder, resnetV2Vae, skullVaeDecoder, type VaeConfig } from '../ts/config.js';
import { patchGan3d } from '../ts/discriminator.js';
import { buildDecoder, buildDiscriminator, buildEncoder } from '../ts/model/build.js';
import { Graph, GraphBuilder } from '../ts/model/graph.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = JSON.parse(readFileSync(path.join(ROOT, 'test/fixtures/specs/specs.json'), 'utf8')) as Record<string, { spec: string; nodeNames: (string | null)[] }>;

// The same configs the fixture was captured with.
const CFGS: Record<string, VaeConfig> = {
  monai_default_64: monaiVarAutoEncoder({ inputShape: [64, 64, 64] }),
  monai_small: monaiVarAutoEncoder({ inputShape: [32, 32, 16], channels: [4, 8, 8], latentSize: 8 }),
  monai_instance_relu: monaiVarAutoEncoder({ inputShape: [16, 16, 16], channels: [4, 8], norm: 'instance', activation: 'relu', kernelSize: 5, outChannels: 1, outputActivation: 'sigmoid' }),
  monai_none_leaky_perchannel: monaiVarAutoEncoder({ inputShape: [24, 16, 16], channels: [3, 5], strides: [2, 1], norm: 'none', activation: 'leaky_relu', leakySlope: 0.2, normEps: 1e-3, normMomentum: 0.05 }),
  monai_prelu_perchannel: monaiVarAutoEncoder({ inputShape: [16, 16, 16], channels: [4, 8], preluPerChannel: true, normEps: 0.001, normMomentum: 0.01 }),
  skull_decoder: skullVaeDecoder({ inputShape: [32, 32, 16], channels: [4, 8, 8], latentSize: 8 }),
  skull_decoder_default: skullVaeDecoder({ inputShape: [128, 128, 64] }),
  resnet_default: resnetV2Vae({ inputShape: [64, 64, 64] }),
  resnet_small: resnetV2Vae({ inputShape: [16, 16, 16], latentSize: 8, resnet: { filters: 4, stages: 2, bottleneckChannels: 2, encoderIdentityBlocks: 1, decoderIdentityBlocks: 0 } }),
};
const GRAPHS: Record<string, Graph> = {};
for (const [k, c] of Object.entries(CFGS)) {
  GRAPHS[`${k}.encoder`] = buildEncoder(c);
  GRAPHS[`${k}.decoder`] = buildDecoder(c);
}
GRAPHS['patchgan_default'] = buildDiscriminator(patchGan3d({ inputShape: [64, 64, 64] }));
GRAPHS['patchgan_small'] = buildDiscriminator(patchGan3d({ inputShape: [16, 16, 32], width: 1 / 16, inChannels: 2 }));
GRAPHS['patchgan_nodropout'] = buildDiscriminator(patchGan3d({ inputShape: [32, 32, 32], dropout: 0, leakySlope: 0.2, normEps: 1e-5, normMomentum: 0.1 }));

test('every preset graph serialises byte-identically to the captured spec strings', (t) => {
  t.deepEqual(Object.keys(GRAPHS).sort(), Object.keys(FIXTURE).sort());
  for (const [k, g] of Object.entries(GRAPHS)) {
    t.is(g.toSpec(), FIXTURE[k]!.spec, k);
    t.deepEqual(g.nodeNames, FIXTURE[k]!.nodeNames, k);
  }
});

test('graphs are typed: attributes per op, inputs precede their node', (t) => {
  const g = GRAPHS['monai_small.decoder']!;
  const conv = g.nodes.find((n) => n.op === 'conv_transpose3d');
  t.truthy(conv);
  if (conv?.op === 'conv_transpose3d') t.deepEqual(conv.attrs, { cout: 8, k: 3, s: 2, p: 1, op: 1, bias: true });
  t.deepEqual(g.input, { c: 8, d: 1, h: 1, w: 1 });
  const b = new GraphBuilder();
  const x = b.input(1, 2, 2, 2);
  t.is(b.build([b.relu(x)]).toSpec(), 'input c=1 d=2 h=2 w=2\nrelu in=0\noutput 1');
  t.throws(() => new Graph([{ op: 'relu', inputs: [0], attrs: {}, name: null }], [0]), { code: 'EINTERNAL' });
});

test('no import cycle among ts/ modules', (t) => {
  const files: string[] = [];
  const walk = (d: string): void => {
    for (const f of readdirSync(d)) {
      const p = path.join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) files.push(p);
    }
  };
  walk(path.join(ROOT, 'ts'));
  const edges = new Map<string, string[]>();
  for (const f of files) {
    const src = readFileSync(f, 'utf8');
    const deps: string[] = [];
    // Static imports and re-exports (type-only ones included: they are cycles of the design too).
    for (const m of src.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+['"](\.[^'"]+)['"]/gms)) {
      const target = path.resolve(path.dirname(f), m[1]!.replace(/\.js$/, '.ts'));
      if (edges.has(target) || files.includes(target)) deps.push(target);
    }
    edges.set(f, deps);
  }
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 1);
    stack.push(f);
    for (const d of edges.get(f) ?? []) {
      if (state.get(d) === 1) cycles.push([...stack.slice(stack.indexOf(d)), d].map((p) => path.relative(ROOT, p)).join(' → '));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(f, 2);
  };
  for (const f of files) if (!state.has(f)) visit(f);
  t.deepEqual(cycles, []);
});
