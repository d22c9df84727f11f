#!/usr/bin/env node
// The voxvae command line. On your data: `train`, `evaluate`, `complete`, `calibrate`, `encode`, `decode`,
// `sample`, `interpolate`, `export`, `dataset …`. On built-in synthetic skulls: `pipeline` (the main job,
// npm start), `experiment …`, `demo`. `launch` starts the ranks of a data-parallel run (each rank runs
// ts/cli/rank.ts, which joins the group and then calls main()). Errors the user can act on print one line `voxvae: …` and exit 2
// (1 for a failed check, 130 after Ctrl-C); only a bug prints a stack.
import { readFileSync } from 'node:fs';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { registerDatasetCommands } from './dataset.js';
import { registerExperimentCommands } from './experiment.js';
import { registerCompletionCommands } from './complete.js';
import { registerModelCommands } from './model.js';
import { registerTrainCommand } from './train.js';
import { registerDemoCommand } from './demo.js';
import { EXIT, userMessage } from './run.js';

export const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export async function buildProgram(): Promise<Command> {
  const program = new Command();
  program
    .name('voxvae')
    .description('3D convolutional VAEs for volumetric shapes: train, evaluate and complete skulls from your own NIfTI/NRRD data, or run the experiments on built-in synthetic skulls')
    .version(VERSION, '-V, --version', 'print the version')
    .showHelpAfterError('(run with --help for the options)')
    .exitOverride();
  registerTrainCommand(program);
  registerModelCommands(program, VERSION);
  registerCompletionCommands(program);
  registerDatasetCommands(program);
  registerExperimentCommands(program);
  registerDemoCommand(program);
  (await import('./launch.js')).registerLaunchCommand(program);
  return program;
}

/** Runs the command line; resolves to the exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  try {
    await (await buildProgram()).parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    // commander has printed its message (unknown option, invalid value…); help and version exit 0.
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    const m = userMessage(e);
    if (m !== null) {
      process.stderr.write(`voxvae: ${m}\n`);
      return EXIT.usage;
    }
    console.error(e);
    return EXIT.failed;
  }
}

const invoked = process.argv[1] ? (() => { try { return realpathSync(process.argv[1]!); } catch { return ''; } })() : '';
if (invoked === fileURLToPath(import.meta.url) || invoked === fileURLToPath(import.meta.url).replace(/\.js$/, '.ts')) {
  void main().then((code) => {
    process.exitCode = code;
  });
}
