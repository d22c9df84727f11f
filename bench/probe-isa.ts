// A/B of the CPU instruction sets on one model, interleaved in one process (setCpuIsa between rounds), so
// that a busy or drifting machine loads both sides alike:
//
//   node --import tsx bench/probe-isa.ts --model quarter [--isa avx512f,avx2] [--case train|decode]
//                                         [--rounds 10] [--reps 3] [--threads 2] [--batch 4]
//
// Each round runs `reps` training steps (vae.trainStep, batch `batch`, the default loss and Adam) or
// decodes (vae.decode, batch 1) with each ISA in turn. Prints per ISA the median and range of wall time
// and of process CPU time (user + system, all threads) per call, and the per-round ratios of each ISA to
// the first: on a shared machine CPU time is the steadier measure of work, wall time the one users see.
import { cpuIsa, setCpuIsa, Vae, type CpuIsa } from '../ts/index.js';
import { randomBinary } from './layer.js';
import { cliModel, cliOption as opt, MODELS, modelConfig } from './models.js';

const model = cliModel();
const isas = opt('isa', 'avx512f,avx2').split(',') as CpuIsa[];
const kind = opt('case', 'train');
const rounds = Number(opt('rounds', '10'));
const reps = Number(opt('reps', '3'));
const threads = Number(opt('threads', '2'));
const n = Number(opt('batch', '4'));
if (kind !== 'train' && kind !== 'decode') throw new Error('--case must be train or decode');

const cfg = modelConfig(MODELS[model]);
const vae = await Vae.create(cfg, { seed: 0, threads });
const shape = [n, 1, ...cfg.inputShape] as [number, number, number, number, number];
const input = kind === 'train' ? randomBinary(n * cfg.inputShape[0] * cfg.inputShape[1] * cfg.inputShape[2], 12345) : null;
const z = new Float32Array(cfg.latentSize).map((_, i) => Math.sin(i));
if (kind === 'train') vae.train();
else vae.eval();
const call = async (): Promise<void> => {
  if (input) await vae.trainStep({ input, shape });
  else await vae.decode(z);
};

const chosen: string[] = [];
for (const isa of isas) {
  chosen.push(setCpuIsa(isa));
  await call(); // warm-up: buffers, packed weights
}
console.log(`${model} ${kind}, ${threads} threads, ${rounds} rounds x ${reps}: ${isas.map((i, k) => `${i} -> ${chosen[k]}`).join(', ')}`);
const wall: number[][] = isas.map(() => []), cpu: number[][] = isas.map(() => []);
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < isas.length; k++) {
    setCpuIsa(isas[k]!);
    const c0 = process.cpuUsage(), t0 = performance.now();
    for (let i = 0; i < reps; i++) await call();
    const c = process.cpuUsage(c0);
    wall[k]!.push((performance.now() - t0) / reps);
    cpu[k]!.push((c.user + c.system) / 1e3 / reps);
  }
}
setCpuIsa('auto');
const sorted = (x: number[]): number[] => [...x].sort((a, b) => a - b);
const med = (x: number[]): number => sorted(x)[x.length >> 1]!;
const span = (x: number[]): string => `${med(x).toFixed(1)} ms (${sorted(x)[0]!.toFixed(1)}–${sorted(x).at(-1)!.toFixed(1)})`;
for (let k = 0; k < isas.length; k++) console.log(`  ${isas[k]!.padEnd(8)} wall ${span(wall[k]!)}   cpu ${span(cpu[k]!)}`);
for (let k = 1; k < isas.length; k++) {
  const ratios = (a: number[][]): string => sorted(a[k]!.map((x, r) => x / a[0]![r]!)).map((x) => x.toFixed(2)).join(' ');
  console.log(`  ${isas[k]}/${isas[0]} per round: wall ${ratios(wall)}; cpu ${ratios(cpu)}`);
}
console.log(`  auto is ${cpuIsa()}`);
vae.dispose();
