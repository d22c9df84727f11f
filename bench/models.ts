// The benchmark's models and cases, and the analytic FLOP counts (multiply-add = 2 FLOPs).
//
// FLOP formulas (per sample, forward; k = 3, so 27 taps):
//   conv3d            2 * cin * 27 * cout * (output voxels)
//   conv_transpose3d  2 * cin * 27 * cout * (input voxels)      (every input voxel meets every tap once)
//   linear            2 * in * out
// The sum over a network equals the native Net's `flops` (checked at run time).
// A training step on a batch of N:
//   N * (3 * (F_encoder + F_decoder) - F_conv0)
// forward + backward-data + backward-weight are one forward's FLOPs each (each is the same GEMM with other
// operands); the encoder's first conv needs no backward-data (its input, the batch, needs no gradient) and
// voxvae and PyTorch both skip it. Norms, activations, loss, reparameterization and Adam are not counted.
// A decode of N latents: N * F_decoder.
import { bottleneckShape, monaiVarAutoEncoder, type VaeConfig } from '../ts/config.js';

export type ModelName = 'tiny' | 'quarter' | 'half' | 'full';

export interface ModelDef {
  name: ModelName;
  inputShape: [number, number, number];
  channels: number[];
  latentSize: number;
}

/** The models (skullVAE's channel list (32, 64, 64, 128, 128, 256), cut to the volume size). */
export const MODELS: Record<ModelName, ModelDef> = {
  tiny: { name: 'tiny', inputShape: [32, 32, 32], channels: [16, 32, 64, 128], latentSize: 32 },
  quarter: { name: 'quarter', inputShape: [64, 64, 32], channels: [32, 64, 64, 128, 128], latentSize: 32 },
  half: { name: 'half', inputShape: [128, 128, 64], channels: [32, 64, 64, 128, 128, 256], latentSize: 32 },
  full: { name: 'full', inputShape: [256, 256, 128], channels: [32, 64, 64, 128, 128, 256], latentSize: 32 },
};

export function modelConfig(m: ModelDef): VaeConfig {
  return monaiVarAutoEncoder({ inputShape: m.inputShape, channels: m.channels, latentSize: m.latentSize });
}

export type Task = 'train' | 'decode' | 'layers';

export interface CaseDef {
  /** e.g. 'train-quarter', 'decode-full', 'layers-half'. */
  name: string;
  task: Task;
  model: ModelName;
  batch: number;
  /** In `--quick` runs. */
  quick: boolean;
  /** benny options for voxvae (benchmark.js: at least minSamples samples, stop after maxTime s). Layer
   *  cases are timed without benny: warm-up rounds torch.warmup, timed rounds minSamples. */
  benny: { minSamples: number; maxTime: number };
  /** PyTorch warm-up runs and timed runs (median reported). */
  torch: { warmup: number; reps: number };
  /** Target: voxvae at least this many times faster than PyTorch (at its best: the faster OMP wait policy)
   *  in the same run, on the same threads. index.ts prints PASS/FAIL for it. */
  target?: number;
}

export const CASES: CaseDef[] = [
  { name: 'train-tiny', task: 'train', model: 'tiny', batch: 4, quick: true, benny: { minSamples: 8, maxTime: 2 }, torch: { warmup: 2, reps: 10 } },
  { name: 'decode-tiny', task: 'decode', model: 'tiny', batch: 1, quick: true, benny: { minSamples: 10, maxTime: 1 }, torch: { warmup: 3, reps: 20 } },
  { name: 'train-quarter', task: 'train', model: 'quarter', batch: 4, quick: true, benny: { minSamples: 5, maxTime: 3 }, torch: { warmup: 2, reps: 8 }, target: 2.5 },
  { name: 'decode-quarter', task: 'decode', model: 'quarter', batch: 1, quick: true, benny: { minSamples: 8, maxTime: 1.5 }, torch: { warmup: 2, reps: 15 } },
  { name: 'layers-quarter', task: 'layers', model: 'quarter', batch: 4, quick: true, benny: { minSamples: 5, maxTime: 0 }, torch: { warmup: 1, reps: 5 } },
  { name: 'train-half', task: 'train', model: 'half', batch: 4, quick: false, benny: { minSamples: 3, maxTime: 5 }, torch: { warmup: 1, reps: 5 }, target: 3 },
  { name: 'decode-half', task: 'decode', model: 'half', batch: 1, quick: false, benny: { minSamples: 5, maxTime: 2 }, torch: { warmup: 2, reps: 8 }, target: 3 },
  { name: 'layers-half', task: 'layers', model: 'half', batch: 4, quick: false, benny: { minSamples: 4, maxTime: 0 }, torch: { warmup: 1, reps: 4 } },
  { name: 'decode-full', task: 'decode', model: 'full', batch: 1, quick: false, benny: { minSamples: 3, maxTime: 4 }, torch: { warmup: 1, reps: 5 }, target: 3 },
];

export interface LayerDef {
  /** enc0.. (conv3d), dec0.. (conv_transpose3d); dec0 follows the bottleneck. */
  name: string;
  kind: 'conv' | 'convT';
  cin: number;
  cout: number;
  /** Input spatial shape [D, H, W]. */
  in: [number, number, number];
  out: [number, number, number];
  /** Needs backward-data in a training step (false for the encoder's first conv). */
  needDx: boolean;
  /** Forward FLOPs per sample. */
  flops: number;
}

const TAPS = 27;
const vox = (s: readonly number[]): number => s.reduce((a, d) => a * d, 1);

/** The conv layers of a model in execution order (encoder, then decoder). Kernel 3, stride 2, MONAI padding. */
export function convLayers(m: ModelDef): LayerDef[] {
  const cfg = modelConfig(m);
  const layers: LayerDef[] = [];
  let shape = [...cfg.inputShape] as [number, number, number];
  let cin = cfg.inChannels;
  cfg.channels.forEach((cout, i) => {
    const out = shape.map((d) => Math.floor((d + 2 - 3) / 2) + 1) as [number, number, number];
    layers.push({ name: `enc${i}`, kind: 'conv', cin, cout, in: shape, out, needDx: i > 0, flops: 2 * cin * TAPS * cout * vox(out) });
    shape = out;
    cin = cout;
  });
  const outs = [...cfg.channels.slice(0, -1).reverse(), cfg.outChannels];
  shape = bottleneckShape(cfg);
  outs.forEach((cout, i) => {
    const out = shape.map((d) => d * 2) as [number, number, number];
    layers.push({ name: `dec${i}`, kind: 'convT', cin, cout, in: shape, out, needDx: true, flops: 2 * cin * TAPS * cout * vox(shape) });
    shape = out;
    cin = cout;
  });
  return layers;
}

export interface ModelFlops {
  /** Forward FLOPs per sample. */
  encoder: number;
  decoder: number;
  /** The encoder's first conv, forward, per sample. */
  conv0: number;
  layers: LayerDef[];
}

export function modelFlops(m: ModelDef): ModelFlops {
  const cfg = modelConfig(m);
  const layers = convLayers(m);
  const flat = cfg.channels[cfg.channels.length - 1]! * vox(bottleneckShape(cfg));
  const enc = layers.filter((l) => l.kind === 'conv').reduce((a, l) => a + l.flops, 0) + 2 * (2 * flat * cfg.latentSize);
  const dec = layers.filter((l) => l.kind === 'convT').reduce((a, l) => a + l.flops, 0) + 2 * cfg.latentSize * flat;
  return { encoder: enc, decoder: dec, conv0: layers[0]!.flops, layers };
}

/** FLOPs of one case's timed operation (a training step on the batch, a decode of the batch). */
export function caseFlops(c: CaseDef): number {
  const f = modelFlops(MODELS[c.model]);
  if (c.task === 'train') return c.batch * (3 * (f.encoder + f.decoder) - f.conv0);
  if (c.task === 'decode') return c.batch * f.decoder;
  return NaN;
}

/** Per-layer FLOPs at batch n: forward, backward-data (0 for the first conv), backward-weight. */
export function layerFlops(l: LayerDef, n: number): { fwd: number; dx: number; dw: number } {
  return { fwd: n * l.flops, dx: l.needDx ? n * l.flops : 0, dw: n * l.flops };
}

/** `--name value` from the command line of a bench script, or dflt. */
export function cliOption(name: string, dflt: string, argv: string[] = process.argv.slice(2)): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
}

/** The model named by `--model` (default quarter); throws naming the choices otherwise. */
export function cliModel(argv: string[] = process.argv.slice(2)): ModelName {
  const model = cliOption('model', 'quarter', argv) as ModelName;
  if (!(model in MODELS)) throw new Error(`--model must be one of ${Object.keys(MODELS).join(', ')}`);
  return model;
}
