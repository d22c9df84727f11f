// `voxvae experiment beta-tradeoff` and `voxvae pipeline` (the main job).
import { Command, InvalidArgumentError } from 'commander';
import { METHODS, runBetaTradeoff, type MethodName } from '../experiment/beta_tradeoff.js';
import { PIPELINE_SCALES, runPipeline, type Scale } from '../experiment/pipeline.js';
import { ABLATION_VARIANTS, runAblation } from '../experiment/ablation.js';
import { BACKENDS, type Backend, type LatentMode } from '../types.js';
import { selectBackend } from '../backend.js';
import { oneOf, positiveInt, positiveNumber, shape3 } from './args.js';
import { prepareOutDir } from './run.js';

const int = positiveInt;
const num = positiveNumber;
const shape = shape3;
const scale = oneOf<Scale>('--scale', ['test', 'default', 'full']);
const latent = oneOf<LatentMode>('--stage2-latent', ['sample', 'mean', 'mean+std']);
const methods = (v: string): MethodName[] => {
  const m = v.split(',');
  for (const x of m) if (!METHODS.includes(x as MethodName)) throw new InvalidArgumentError(`methods are ${METHODS.join(', ')}`);
  return m as MethodName[];
};

/** The options every training experiment takes. */
function base(c: Command, out: string, scaleHelp: string, skullsHelp: string): Command {
  return c
    .option('--out <dir>', 'output folder', out)
    .option('--scale <s>', scaleHelp, scale, 'default' as Scale)
    .option('--shape <D,H,W>', 'volume shape (overrides the scale)', shape)
    .option('--skulls <n>', skullsHelp, int('--skulls'))
    .option('--epochs <n>', 'epochs a stage', int('--epochs'))
    .option('--batch <n>', 'batch size', int('--batch'))
    .option('--lr <lr>', 'Adam learning rate (default 1e-3; 1e-4 at full scale)', num('--lr'))
    .option('--threads <n>', 'CPU threads (default: all cores)', int('--threads'));
}

function common(c: Command, out: string): Command {
  return base(c, out, "'default' (64×64×32), 'test' (32³, seconds), 'full' (256×256×128, the paper's; for a GPU)", 'complete skulls (each also gives a cranial and a facial defect volume)')
    .option('--kl-target <nats>', 'KL set point of ControlVAE / DynamicVAE', num('--kl-target'))
    .option('--stage2-latent <mode>', "z fed to the stage-2 decoder: 'sample' (default), 'mean', 'mean+std' (skullVAE's code)", latent)
    .option('--seed <n>', 'seed', int('--seed'), 1);
}

export function registerExperimentCommands(program: Command): void {
  const exp = program.command('experiment').description('reproduce the paper experiments on built-in synthetic skulls (for your own data: voxvae train / evaluate)');
  common(exp.command('beta-tradeoff').description('VAE β=1e-4, β=100, aggregated VAE, ControlVAE, DynamicVAE on the synthetic skulls: table + figures + report'), 'runs/beta-tradeoff')
    .option('--methods <list>', `comma-separated subset of ${METHODS.join(',')}`, methods)
    .action(async (o) => {
      await prepareOutDir(o.out);
      await runBetaTradeoff(o);
    });
  exp
    .command('ablation')
    .description(`why the paper's two-stage recipe fails at the default scale and what makes it work: ${ABLATION_VARIANTS.length} variants (budget up to 15,000 steps a stage, lr, skulls, stage-2 latent and decoder, β), each evaluated on training and held-out skulls with collapse diagnostics (about 1 hour on 2 CPU cores; resumes)`)
    .option('--out <dir>', 'output folder (results.json, table.md, curves)', 'runs/ablation')
    .option('--only <names>', `comma-separated variants: ${ABLATION_VARIANTS.map((v) => v.name).join(', ')}`, (v: string) => {
      const names = v.split(',');
      for (const n of names) if (!ABLATION_VARIANTS.some((x) => x.name === n)) throw new InvalidArgumentError(`unknown variant '${n}'`);
      return names;
    })
    .option('--budget-scale <f>', 'multiply every step budget (e.g. 0.05 for a smoke run)', num('--budget-scale'))
    .option('--test-skulls <n>', 'held-out skulls', int('--test-skulls'), 20)
    .option('--seed <n>', 'seed (held-out skulls: seed + 1000)', int('--seed'), 1)
    .option('--threads <n>', 'CPU threads (default: all cores)', int('--threads'))
    .action(async (o) => {
      await prepareOutDir(o.out);
      await runAblation(o);
    });
  const d = PIPELINE_SCALES.default;
  base(program.command('pipeline'), 'runs/pipeline', "'default' (64×64×32), 'test' (32³, seconds), 'full' (256×256×128, the paper's budget: for a GPU)", 'training skulls (each also gives a cranial and a facial defect volume)')
    .description(
      `the main job (npm start): trains the aggregated VAE (stage 1 β = 0.1, stage 2 a new decoder on μ) and the β = 1e-4 VAE it must match on ${d.skulls} synthetic skulls, ` +
        `evaluates both on ${d.testSkulls} held-out skulls, completes their cranial and facial defects, writes runs/pipeline/model.safetensors and the report (about 6 minutes on 2 CPU cores at the default scale: 351 s in CI, 2026-12-07)`,
    )
    .option('--test-skulls <n>', 'held-out test skulls', int('--test-skulls'))
    .option('--stage2-epochs <n>', 'stage-2 epochs (default: --epochs)', int('--stage2-epochs'))
    .option('--beta <b>', "stage 1's KL weight", num('--beta'))
    .option('--seed <n>', 'seed of the training skulls (validation: seed + 1, test: seed + 10000) and of training', int('--seed'), 1)
    .option('--no-reference', 'skip the β = 1e-4 reference VAE')
    .option('--lr-schedule <s>', "'constant' (default) or 'cosine' (warm-up, then decay to 1% of --lr)", oneOf('--lr-schedule', ['constant', 'cosine']))
    .option('--backend <b>', "'cpu' (default), 'cuda' (fails at once with the reason when no usable GPU build is loaded; see docs/cuda.md) or 'auto' (CUDA when it works, else the CPU with a note)", oneOf('--backend', BACKENDS))
    .action(async (o) => {
      // An unusable --backend fails before any data is made (EUNSUPPORTED with the reason).
      if (o.backend) selectBackend(o.backend as Backend);
      await prepareOutDir(o.out);
      await runPipeline({ ...o, noReference: o.reference === false });
    });
}
