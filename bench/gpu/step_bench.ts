// voxvae's side of the GPU benchmark (issue 7's workloads): for each model of bench/models.ts (default
// half and full: the MONAI preset at 128×128×64 and the paper's 256×256×128), batch 4, fp32 and TF32:
// median training-step time (vae.trainStep: 80·Dice + β·KL, Adam), median decode time of a batch of
// latents (results on the host, as a user gets them), peak device memory, cudaMalloc calls in the timed
// steps. Writes each model's encoder/decoder specs so that bench/gpu/torch_step.py builds the very same
// networks in PyTorch. Usage:
//   node --import tsx bench/gpu/step_bench.ts OUTDIR [models=half,full] [batch=4] [steps=10]
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { probeCuda, type CudaBinding } from '../../ts/backend.js';
import { Vae } from '../../ts/vae.js';
import { MODELS, modelConfig, type ModelName } from '../models.js';

const [outDir = '.', modelsArg = 'half,full', batchArg = '4', stepsArg = '10'] = process.argv.slice(2);
const B = Number(batchArg), steps = Number(stepsArg);
const models = modelsArg.split(',') as ModelName[];
const p = probeCuda();
if (!p.binding) {
  console.log(`SKIP: CUDA backend unavailable: ${p.reason}`);
  process.exit(0);
}
const b = p.binding as CudaBinding;
const median = (v: number[]) => [...v].sort((a, c) => a - c)[Math.floor(v.length / 2)]!;

interface NodeTime { node: number; op: string; fwdMs: number; bwdMs: number; fwdCalls: number; bwdCalls: number }
type ProfiledNet = { profile(reset?: boolean): NodeTime[]; nodes(): { op: string; shape: number[] }[] };

/** Multiply-adds ×2 of conv node i of a spec (line i = node i) at batch n, from the node shapes. */
function convFlops(spec: string, nodes: { op: string; shape: number[] }[], i: number, n: number): number {
  const line = spec.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'))[i] ?? '';
  const arg = (k: string) => (line.match(new RegExp(`\\b${k}=([0-9,]+)`))?.[1] ?? '').split(',').map(Number);
  const src = nodes[arg('in')[0]!]!.shape, out = nodes[i]!.shape;
  const k = arg('k');
  const kvol = k.length === 3 ? k[0]! * k[1]! * k[2]! : k[0]! ** 3;
  const numel = (s: number[]) => s[1]! * s[2]! * s[3]!;
  return nodes[i]!.op === 'conv3d' ? 2 * n * out[0]! * numel(out) * src[0]! * kvol : 2 * n * src[0]! * numel(src) * out[0]! * kvol;
}

/**
 * Where a training step's device time goes: three steps with per-node event timing (setOptions({ profile })),
 * per conv node its forward and backward ms and TFLOP/s (backward counted as twice the forward's FLOPs:
 * input and weight gradients), the other nodes summed, and the step's wall time for the rest (losses,
 * Adam, N-API and JS). Printed as a table and returned.
 */
async function profileLayers(vae: Vae, x: { input: Float32Array; shape: number[] }, model: string, prec: string): Promise<object[]> {
  const nets = { enc: vae.encoder.network, dec: vae.decoder.network };
  b.setOptions({ profile: true });
  for (const nw of Object.values(nets)) (nw.net as unknown as ProfiledNet).profile(true);
  const reps = 3;
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await vae.trainStep(x);
  const wall = (performance.now() - t0) / reps;
  b.setOptions({ profile: false });
  const rows: { layer: string; op: string; fwd_ms: number; bwd_ms: number; fwd_tflops: number; bwd_tflops: number }[] = [];
  let other = 0;
  for (const [tag, nw] of Object.entries(nets)) {
    const net = nw.net as unknown as ProfiledNet;
    const nodes = net.nodes();
    for (const t of net.profile(true)) {
      const fwd = t.fwdMs / Math.max(1, t.fwdCalls), bwd = t.bwdMs / Math.max(1, t.bwdCalls);
      if (t.op !== 'conv3d' && t.op !== 'conv_transpose3d') {
        other += fwd + bwd;
        continue;
      }
      const f = convFlops(nw.spec, nodes, t.node, B);
      rows.push({ layer: `${tag}${t.node}`, op: t.op, fwd_ms: fwd, bwd_ms: bwd, fwd_tflops: f / fwd / 1e9, bwd_tflops: (2 * f) / bwd / 1e9 });
    }
  }
  const conv = rows.reduce((a, r) => a + r.fwd_ms + r.bwd_ms, 0);
  console.log(`${model} ${prec} per layer (profiled step ${wall.toFixed(1)} ms):`);
  for (const r of rows)
    console.log(`  ${r.layer.padEnd(6)} ${r.op.padEnd(16)} fwd ${r.fwd_ms.toFixed(2).padStart(8)} ms ${r.fwd_tflops.toFixed(1).padStart(6)} TFLOP/s   bwd ${r.bwd_ms.toFixed(2).padStart(8)} ms ${r.bwd_tflops.toFixed(1).padStart(6)} TFLOP/s`);
  console.log(`  convs ${conv.toFixed(1)} ms, other nodes (norms, activations, linear, reshapes) ${other.toFixed(1)} ms, rest of the step (losses, Adam, N-API/JS) ${(wall - conv - other).toFixed(1)} ms`);
  return [...rows, { layer: 'other nodes', ms: other }, { layer: 'rest of step', ms: wall - conv - other }];
}
const results: object[] = [];
for (const name of models) {
  const m = MODELS[name];
  if (!m) throw new Error(`unknown model ${name} (${Object.keys(MODELS).join(', ')})`);
  const cfg = modelConfig(m);
  const [D, H, W] = cfg.inputShape;
  const x = new Float32Array(B * D * H * W);
  const batch = { input: x, shape: [B, 1, D, H, W] };
  for (let i = 0; i < x.length; i++) x[i] = (i * 2654435761) % 97 < 40 ? 1 : 0;
  for (const tf32 of [false, true]) {
    b.setOptions({ tf32 });
    b.emptyCache();
    const vae = await Vae.create(cfg, { seed: 0, backend: 'cuda' });
    if (!tf32) {
      writeFileSync(path.join(outDir, `${name}.encoder.spec`), vae.encoder.network.spec);
      writeFileSync(path.join(outDir, `${name}.decoder.spec`), vae.decoder.network.spec);
      writeFileSync(path.join(outDir, `${name}.shape`), `${cfg.inChannels} ${D} ${H} ${W} ${cfg.latentSize}\n`);
    }
    for (let i = 0; i < 3; i++) await vae.trainStep(batch);
    const m0 = b.memoryStats();
    const t: number[] = [];
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      await vae.trainStep(batch);
      t.push(performance.now() - t0);
    }
    const m1 = b.memoryStats();
    const z = Float32Array.from({ length: B * cfg.latentSize }, (_, i) => Math.sin(0.37 * i));
    for (let i = 0; i < 2; i++) await vae.decode(z);
    const dt: number[] = [];
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      await vae.decode(z);
      dt.push(performance.now() - t0);
    }
    const layers = await profileLayers(vae, batch, name, tf32 ? 'tf32' : 'fp32');
    const r = { engine: 'voxvae', model: name, precision: tf32 ? 'tf32' : 'fp32', batch: B, step_ms: median(t), decode_ms: median(dt),
      layers_ms: layers,
      peak_mib: m1.peak / 2 ** 20, cuda_mallocs_in_timed_steps: m1.deviceMallocs - m0.deviceMallocs, device: p.probe?.device, cudnn: p.probe?.cudnnVersion };
    results.push(r);
    console.log(JSON.stringify(r));
    vae.dispose();
  }
}
writeFileSync(path.join(outDir, 'voxvae_bench.json'), JSON.stringify(results, null, 1));
