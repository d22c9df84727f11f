// Data-parallel scaling on this machine (docs/distributed.md, section "Figures"): training-step time and
// throughput of 1 process vs 2 ranks (Gloo over loopback TCP, `voxvae launch`), overlap on and off, and the
// all-reduce time of the gradients of the quarter, half and full (paper) models alone.
//   node --import tsx bench/dist-scaling.ts [model=quarter] [batch=2] [steps=12]
// Needs the optional addon (npm run build:dist). Writes bench/results/dist-scaling.json and prints a table.
// On a 2-core machine the ranks share the cores: this measures the overhead of the engine, not a speed-up.
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from '../ts/cli/launch.js';
import { initDistributed } from '../ts/dist/index.js';
import { Vae } from '../ts/vae.js';
import { MODELS, modelConfig, type ModelName } from './models.js';

const HERE = fileURLToPath(import.meta.url);
const median = (a: number[]): number => {
  const s = a.slice().sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function batchFor(cfgShape: [number, number, number], n: number, rank: number): { input: Float32Array; shape: number[] } {
  const [D, H, W] = cfgShape;
  const x = new Float32Array(n * D * H * W);
  let s = (rank * 7919 + 17) >>> 0;
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = s >>> 31;
  }
  return { input: x, shape: [n, 1, D, H, W] };
}

async function rank(out: string, model: ModelName, batch: number, steps: number): Promise<void> {
  const group = await initDistributed();
  const cfg = modelConfig(MODELS[model]);
  const vae = await Vae.create(cfg, { seed: 1 });
  const ws = group?.worldSize ?? 1, r = group?.rank ?? 0;
  if (group && ws > 1) await group.syncNetworks([vae.encoder.network.net, vae.decoder.network.net]);
  const b = batchFor(cfg.inputShape, batch, r);
  const times: number[] = [];
  for (let t = 0; t < steps; t++) {
    const t0 = performance.now();
    await vae.trainStep(b, { beta: 1, optimizer: { lr: 1e-4 } });
    times.push(performance.now() - t0);
  }
  const allReduce: Record<string, number> = {};
  if (group && ws > 1) {
    for (const m of ['quarter', 'half', 'full'] as const) {
      const v = await Vae.create(modelConfig(MODELS[m]), { seed: 0 });
      const n = v.encoder.network.net.numParams + v.decoder.network.net.numParams;
      v.dispose();
      for (const precision of ['float32', 'float64'] as const) {
        const g = new Float32Array(n).fill(1);
        const ms: number[] = [];
        for (let k = 0; k < 6; k++) {
          await group.barrier();
          const t0 = performance.now();
          await group.allReduce(g, 'mean', precision);
          if (k > 0) ms.push(performance.now() - t0);
        }
        allReduce[`${m} ${(n * 4 / 1e6).toFixed(1)} MB ${precision}`] = median(ms);
      }
    }
  }
  if (r === 0) await writeFile(path.join(out, 'result.json'), JSON.stringify({ ws, stepMs: median(times.slice(2)), steps: times, allReduce }));
  vae.dispose();
  group?.close();
}

async function main(): Promise<void> {
  const model = (process.argv[2] ?? 'quarter') as ModelName;
  const batch = Number(process.argv[3] ?? 2), steps = Number(process.argv[4] ?? 12);
  const runs = [
    { name: '1 process, 2 threads', nproc: 1, threads: 2, overlap: true },
    { name: '1 process, 1 thread', nproc: 1, threads: 1, overlap: true },
    { name: '2 ranks × 1 thread, overlap', nproc: 2, threads: 1, overlap: true },
    { name: '2 ranks × 1 thread, no overlap', nproc: 2, threads: 1, overlap: false },
  ];
  const rows: { name: string; nproc: number; stepMs: number; samplesPerS: number; allReduce: Record<string, number> }[] = [];
  for (const run of runs) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-bench-dist-'));
    process.env['VOXVAE_THREADS'] = String(run.threads);
    process.env['VOXVAE_DIST_OVERLAP'] = run.overlap ? '1' : '0';
    const code = await launch([process.execPath, '--import', 'tsx', HERE, 'rank', dir, model, String(batch), String(steps)], { nproc: run.nproc, exec: true, log: () => undefined });
    if (code !== 0) throw new Error(`${run.name}: exit code ${code}`);
    const res = JSON.parse(await readFile(path.join(dir, 'result.json'), 'utf8')) as { stepMs: number; allReduce: Record<string, number> };
    rows.push({ name: run.name, nproc: run.nproc, stepMs: res.stepMs, samplesPerS: (run.nproc * batch * 1000) / res.stepMs, allReduce: res.allReduce });
    await rm(dir, { recursive: true, force: true });
  }
  const cpu = os.cpus()[0]?.model ?? '?';
  const lines = [
    `model ${model} ${MODELS[model].inputShape.join('×')}, batch ${batch} per rank, median of steps 3..${steps}; ${os.availableParallelism()} cores (${cpu}), Node ${process.version}`,
    '',
    '| run | step ms | samples/s |',
    '|---|---:|---:|',
    ...rows.map((r) => `| ${r.name} | ${r.stepMs.toFixed(1)} | ${r.samplesPerS.toFixed(2)} |`),
    '',
    '| all-reduce (2 ranks, loopback TCP, mean) | ms |',
    '|---|---:|',
    ...Object.entries(rows.find((r) => r.nproc === 2)!.allReduce).map(([k, v]) => `| ${k} | ${v.toFixed(1)} |`),
  ];
  console.log(lines.join('\n'));
  await mkdir(path.join(path.dirname(HERE), 'results'), { recursive: true });
  await writeFile(path.join(path.dirname(HERE), 'results', 'dist-scaling.json'), JSON.stringify({ model, batch, steps, cpu, cores: os.availableParallelism(), node: process.version, date: new Date().toISOString(), rows }, null, 2));
}

if (process.argv[2] === 'rank') await rank(process.argv[3]!, process.argv[4] as ModelName, Number(process.argv[5]), Number(process.argv[6]));
else await main();
