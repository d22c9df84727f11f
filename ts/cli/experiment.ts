// `voxvae experiment beta-tradeoff` and `voxvae pipeline` (the main job).
import { Command, InvalidArgumentError } from 'commander';
import { METHODS, runBetaTradeoff, type MethodName, type Scale } from '../experiment/beta_tradeoff.js';
import { runPipeline } from '../experiment/pipeline.js';
import type { LatentMode } from '../vae.js';

const int = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};
const num = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
  return n;
};
const shape = (v: string): [number, number, number] => {
  const p = v.split(/[,x×]/).map(Number);
  if (p.length !== 3 || !p.every((d) => Number.isInteger(d) && d > 0)) throw new InvalidArgumentError('shape must be D,H,W (e.g. 64,64,32)');
  return p as [number, number, number];
};
const scale = (v: string): Scale => {
  if (v !== 'test' && v !== 'default' && v !== 'full') throw new InvalidArgumentError("scale must be 'test', 'default' or 'full'");
  return v;
};
const latent = (v: string): LatentMode => {
  if (v !== 'sample' && v !== 'mean' && v !== 'mean+std') throw new InvalidArgumentError("latent must be 'sample', 'mean' or 'mean+std'");
  return v;
};
const methods = (v: string): MethodName[] => {
  const m = v.split(',');
  for (const x of m) if (!METHODS.includes(x as MethodName)) throw new InvalidArgumentError(`methods are ${METHODS.join(', ')}`);
  return m as MethodName[];
};

function common(c: Command, out: string): Command {
  return c
    .option('--out <dir>', 'output folder', out)
    .option('--scale <s>', "'default' (64×64×32, ~15 min on 2 CPU cores), 'test' (32³, seconds), 'full' (256×256×128, the paper's; for a GPU)", scale, 'default' as Scale)
    .option('--shape <D,H,W>', 'volume shape (overrides the scale)', shape)
    .option('--skulls <n>', 'complete skulls (each also gives a cranial and a facial defect volume)', int('skulls'))
    .option('--epochs <n>', 'epochs per stage', int('epochs'))
    .option('--batch <n>', 'batch size', int('batch'))
    .option('--lr <lr>', 'Adam learning rate (default 1e-3; 1e-4 at full scale)', num('lr'))
    .option('--kl-target <nats>', 'KL set point of ControlVAE / DynamicVAE', num('kl-target'))
    .option('--stage2-latent <mode>', "z fed to the stage-2 decoder: 'sample' (default), 'mean', 'mean+std' (skullVAE's code)", latent)
    .option('--seed <n>', 'seed', int('seed'), 1)
    .option('--threads <n>', 'CPU threads (default: all cores)', int('threads'));
}

export function registerExperimentCommands(program: Command): void {
  const exp = program.command('experiment').description('reproduce the paper experiments');
  common(exp.command('beta-tradeoff').description('VAE β=1e-4, β=100, aggregated VAE, ControlVAE, DynamicVAE on the synthetic skulls: table + figures + report'), 'runs/beta-tradeoff')
    .option('--methods <list>', `comma-separated subset of ${METHODS.join(',')}`, methods)
    .action(async (o) => {
      await runBetaTradeoff(o);
    });
  common(program.command('pipeline').description('the main job: two-stage aggregated VAE + shape completion on the synthetic skulls, table and report'), 'runs/pipeline').action(async (o) => {
    await runPipeline(o);
  });
}
