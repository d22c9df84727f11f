#!/usr/bin/env node
// The voxvae command line: `voxvae pipeline` (the main job, npm start), `complete`, `calibrate`,
// `experiment ...`, `dataset ...`, `demo`.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { VoxvaeError } from '../errors.js';
import { registerDatasetCommands } from './dataset.js';
import { registerExperimentCommands } from './experiment.js';
import { registerCompletionCommands } from './complete.js';
import { runDemo } from './demo.js';
import { finiteNumber, nonNegativeInt, shape3 } from './args.js';

const int = (name: string) => nonNegativeInt(`--${name}`);
const num = (name: string) => finiteNumber(`--${name}`);
const shape = shape3;

const program = new Command();
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
program
  .name('voxvae')
  .description('3D convolutional VAEs for volumetric shapes')
  .version(pkg.version, '-V, --version', 'print the version')
  .showHelpAfterError();

program
  .command('demo')
  .description('train one VAE on built-in synthetic skulls and write a short report (a quick look; the main job is `voxvae pipeline`, run by npm start)')
  .option('--out <dir>', 'output folder', 'runs/demo')
  .option('--skulls <n>', 'complete skulls (each also gives a cranial and a facial defect volume)', int('skulls'), 30)
  .option('--shape <D,H,W>', 'volume shape', shape, [64, 64, 32] as [number, number, number])
  .option('--epochs <n>', 'epochs', int('epochs'), 15)
  .option('--batch <n>', 'batch size', int('batch'), 4)
  .option('--beta <b>', 'KL weight', num('beta'), 1e-4)
  .option('--lr <lr>', 'Adam learning rate', num('lr'), 1e-3)
  .option('--seed <n>', 'seed', int('seed'), 1)
  .option('--threads <n>', 'CPU threads (default: all cores)', int('threads'))
  .action(async (o) => {
    await runDemo(o);
  });

registerDatasetCommands(program);
registerExperimentCommands(program);
registerCompletionCommands(program);
(await import('./launch.js')).registerLaunchCommand(program);

program.parseAsync().catch((e: unknown) => {
  if (e instanceof VoxvaeError) {
    console.error(`voxvae: ${e.message} [${e.code}]`);
    process.exitCode = 2;
  } else {
    console.error(e);
    process.exitCode = 1;
  }
});
