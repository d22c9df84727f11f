// voxvae's side of the GPU benchmark: median training-step and decode time on the CUDA backend (fp32
// and TF32), peak device memory, cudaMalloc count in the timed steps; writes the encoder/decoder specs
// so that bench/gpu/torch_step.py runs the same network. Usage:
//   node --import tsx bench/gpu/step_bench.ts OUTDIR [batch] [D] [steps]
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { probeCuda, type CudaBinding } from '../../ts/backend.js';
import { monaiVarAutoEncoder } from '../../ts/config.js';
import { Vae } from '../../ts/vae.js';

const [outDir = '.', batchArg = '2', dArg = '64', stepsArg = '20'] = process.argv.slice(2);
const B = Number(batchArg), D = Number(dArg), steps = Number(stepsArg);
const cfg = monaiVarAutoEncoder({ inputShape: [D, D, D], channels: [16, 32, 64, 128, 128], latentSize: 32 });
const p = probeCuda();
if (!p.binding) {
  console.log(`SKIP: CUDA backend unavailable: ${p.reason}`);
  process.exit(0);
}
const b = p.binding as CudaBinding;
const x = new Float32Array(B * D * D * D);
for (let i = 0; i < x.length; i++) x[i] = (i * 2654435761) % 97 < 40 ? 1 : 0;
const median = (v: number[]) => [...v].sort((a, c) => a - c)[Math.floor(v.length / 2)]!;
const results: object[] = [];
for (const tf32 of [false, true]) {
  b.setOptions({ tf32 });
  const vae = await Vae.create(cfg, { seed: 0, backend: 'cuda' });
  if (!results.length) {
    writeFileSync(path.join(outDir, 'encoder.spec'), vae.encoder.network.spec);
    writeFileSync(path.join(outDir, 'decoder.spec'), vae.decoder.network.spec);
  }
  for (let i = 0; i < 3; i++) await vae.trainStep(x);
  const m0 = b.memoryStats();
  const t: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    await vae.trainStep(x);
    t.push(performance.now() - t0);
  }
  const m1 = b.memoryStats();
  const z = new Float32Array(B * 32).fill(0.1);
  const dt: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    await vae.decode(z);
    dt.push(performance.now() - t0);
  }
  results.push({ engine: 'voxvae', precision: tf32 ? 'tf32' : 'fp32', batch: B, D, step_ms: median(t), decode_ms: median(dt),
    peak_mib: m1.peak / 2 ** 20, cuda_mallocs_in_timed_steps: m1.deviceMallocs - m0.deviceMallocs, device: p.probe?.device, cudnn: p.probe?.cudnnVersion });
  vae.dispose();
}
writeFileSync(path.join(outDir, 'voxvae_bench.json'), JSON.stringify(results, null, 1));
console.log(JSON.stringify(results));
