// `voxvae dataset …` commands: synth (write the synthetic skull set) and info (summarise a dataset).
// The command bodies are plain functions (runSynth, runInfo) that return their report, so they can be
// tested without a process; registerDatasetCommands wires them into commander.

import { Command, Option } from 'commander';
import { finiteNumber, integer, shape } from './args.js';
import { mustExist } from './run.js';
import cliProgress from 'cli-progress';
import { type DatasetInfo, datasetInfo } from '../data/info.js';
import { SYNTH_FORMATS, type SynthFormat, type WrittenSyntheticDataset, writeSkullDataset } from '../data/synth/index.js';
import type { Vec3 } from '../data/volume.js';

export interface Output {
  out: (text: string) => void;
  /** Where progress goes; null for none. */
  progress: NodeJS.WriteStream | null;
}

const defaultOutput = (): Output => ({ out: (t) => process.stdout.write(t), progress: process.stderr.isTTY ? process.stderr : null });


async function withProgress<T>(output: Output, label: string, run: (tick: (done: number, total: number) => void) => Promise<T>): Promise<T> {
  if (!output.progress) return run(() => undefined);
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total} | {duration_formatted}`, stream: output.progress, hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  try {
    return await run((done, total) => {
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      bar.update(done);
    });
  } finally {
    if (started) bar.stop();
  }
}

export interface SynthCliOptions {
  out: string;
  n: number;
  shape: Vec3;
  format: SynthFormat;
  seed: number;
  workers?: number;
  level: number;
  overwrite: boolean;
  json: boolean;
}

export async function runSynth(opts: SynthCliOptions, output: Output = defaultOutput()): Promise<WrittenSyntheticDataset> {
  const t0 = performance.now();
  const written = await withProgress(output, 'skulls', (tick) =>
    writeSkullDataset(opts.out, {
      n: opts.n,
      shape: opts.shape,
      format: opts.format,
      seed: opts.seed,
      level: opts.level,
      overwrite: opts.overwrite,
      ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
      onProgress: tick,
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  if (opts.json) {
    output.out(JSON.stringify({ ...written, seconds }, null, 2) + '\n');
  } else {
    output.out(
      `wrote ${written.volumes} volumes (${opts.n} complete, ${opts.n} cranial, ${opts.n} facial, ${2 * opts.n} implants) ` +
        `at ${opts.shape.join('×')} to ${written.dir} in ${seconds.toFixed(1)} s\n` +
        `ground-truth factors: ${written.factorsFile}\nmanifest: ${written.manifestFile}\n`,
    );
  }
  return written;
}

export interface InfoCliOptions {
  json: boolean;
  headersOnly: boolean;
  threshold: number;
}

function pct(v: number): string {
  return `${(100 * v).toFixed(2)} %`;
}

/** The human-readable report of `voxvae dataset info`. */
export function formatInfo(info: DatasetInfo): string {
  const lines: string[] = [];
  lines.push(`dataset     ${info.root}  (layout: ${info.layout})`);
  lines.push(`files       ${info.files} in ${info.pairs} pair${info.pairs === 1 ? '' : 's'}`);
  const kinds = (['complete', 'defective', 'implant', 'other'] as const).filter((k) => info.byKind[k] > 0);
  const labels = Object.keys(info.byClass).sort();
  const w = Math.max(5, ...labels.map((l) => l.length));
  lines.push(`\n  ${'class'.padEnd(w)}  ${kinds.map((k) => k.padStart(9)).join('  ')}`);
  for (const l of labels) lines.push(`  ${l.padEnd(w)}  ${kinds.map((k) => String(info.byClass[l]![k] ?? 0).padStart(9)).join('  ')}`);
  lines.push(`  ${'total'.padEnd(w)}  ${kinds.map((k) => String(info.byKind[k]).padStart(9)).join('  ')}\n`);
  lines.push(`shapes      ${info.shapes.map((s) => `${s.shape.join('×')} (${s.count})`).join(', ') || '-'}`);
  lines.push(`spacing mm  ${info.spacings.slice(0, 4).map((s) => `${s.spacing.join(' × ')} (${s.count})`).join(', ') || '-'}${info.spacings.length > 4 ? `, … ${info.spacings.length} distinct` : ''}`);
  lines.push(`types       ${Object.entries(info.dtypes).map(([k, v]) => `${k} (${v})`).join(', ') || '-'}`);
  lines.push(`formats     ${Object.entries(info.formats).map(([k, v]) => `${k} (${v})`).join(', ') || '-'}`);
  if (info.foreground) {
    const f = info.foreground;
    lines.push(`foreground  mean ${pct(f.mean)}, min ${pct(f.min)}, max ${pct(f.max)} (voxels > ${f.threshold})`);
  }
  if (info.errors.length === 0) lines.push('errors      none');
  else {
    lines.push(`errors      ${info.errors.length} file${info.errors.length === 1 ? '' : 's'} could not be read:`);
    for (const e of info.errors) lines.push(`  [${e.code}] ${e.message}`);
  }
  return lines.join('\n') + '\n';
}

export async function runInfo(target: string, opts: InfoCliOptions, output: Output = defaultOutput()): Promise<DatasetInfo> {
  const info = await withProgress(output, 'files', (tick) => datasetInfo(target, { foreground: !opts.headersOnly, threshold: opts.threshold, onProgress: tick }));
  output.out(opts.json ? JSON.stringify(info, null, 2) + '\n' : formatInfo(info));
  return info;
}

/** Adds `dataset synth` and `dataset info` to the voxvae command line. */
export function registerDatasetCommands(program: Command): void {
  const dataset = program.command('dataset').description('make and inspect datasets of binary skull volumes');

  dataset
    .command('synth')
    .description('write the synthetic skull dataset: N complete skulls, each with a cranial- and a facial-defect version and both implants (SkullBreak layout), plus factors.json and manifest.csv (100 skulls at 128×128×64: about a minute on 2 CPU cores; 8 at 32×32×16: 0.1 s)')
    .requiredOption('--out <dir>', 'folder to create (must be missing or empty unless --overwrite)')
    .option('--n <count>', 'number of complete skulls', integer('--n', 1, 100000), 100)
    .addOption(new Option('--shape <D,H,W>', 'volume shape (x,y,z; z is the short, superior–inferior axis)').argParser(shape('--shape', 16, 1024)).default([128, 128, 64], '128,128,64'))
    .addOption(new Option('--format <format>', 'file format').choices([...SYNTH_FORMATS]).default('nii.gz'))
    .option('--seed <int>', 'random seed (same seed, same bytes)', integer('--seed', -(2 ** 31), 2 ** 31 - 1), 1)
    .option('--workers <count>', 'worker threads (default: number of cores, at most 8; 0 = none)', integer('--workers', 0, 64))
    .option('--level <1-9>', 'gzip level (1, the default, is fastest; 6 makes files about half as large at 3× the time)', integer('--level', 1, 9), 1)
    .option('--overwrite', 'replace a non-empty output folder', false)
    .option('--json', 'print the result as JSON', false)
    .action(async (o: SynthCliOptions) => {
      await runSynth(o);
    });

  dataset
    .command('info')
    .description('summarise a dataset folder (SkullBreak/SkullFix layout or any folder of .nii/.nii.gz/.nrrd/.nhdr), a manifest, or a single volume file: counts per class, shapes, spacing, foreground fraction, unreadable files (headers: instant; foreground: about 1 s per 100 volumes at 64×64×32)')
    .argument('<dir|manifest|file>', 'dataset folder, a manifest (.csv with path,class,pair[,kind], or .json), or one .nii/.nii.gz/.nrrd/.nhdr file')
    .option('--json', 'print the summary as JSON', false)
    .option('--headers-only', 'read headers only (fast; no foreground fraction)', false)
    .option('--threshold <value>', 'foreground = voxel value above this', finiteNumber('--threshold'), 0.5)
    .action(async (target: string, o: InfoCliOptions) => {
      await mustExist(target, 'dataset info:');
      const info = await runInfo(target, o);
      if (info.errors.length > 0) process.exitCode = 1;
    });
}
