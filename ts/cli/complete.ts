// `voxvae complete` (a defective skull → the completed skull and the implant, written with the input's
// geometry) and `voxvae calibrate` (adds completion data to a model from skulls with paired defects).
import { Command } from 'commander';
import { finiteNumber, oneOf, positiveInt } from './args.js';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { mustExist, prepareOutDir, prepareOutFile } from './run.js';
import { VoxvaeError } from '../errors.js';
import { calibrateCompletion } from '../completion/calibrate.js';
import { COMPLETION_METHODS, type CompletionMethod } from '../completion/index.js';
import { VolumeDataset } from '../data/dataset.js';
import { isVolumeFile, readVolume, writeVolume } from '../data/io.js';
import { resample, threshold } from '../data/resample.js';
import { generateSkullDataset } from '../data/synth/index.js';
import type { BinaryVolume, Vec3, Volume } from '../data/volume.js';
import { Vae, setThreads } from '../vae.js';

const method = oneOf<CompletionMethod>('--method', COMPLETION_METHODS);

export interface CompleteFileOptions {
  model: string;
  input: string;
  defect: string;
  out: string;
  implant?: string;
  method?: CompletionMethod;
  gamma?: number;
  steps?: number;
  /** Resample an input of another shape to the model's grid and back (default true); false: ESHAPE. */
  resample?: boolean;
  threshold?: number;
  threads?: number;
  log?: (line: string) => void;
}

/** Completes one file: reads NIfTI/NRRD, completes on the model's grid, writes with the input's geometry. */
export async function completeFile(o: CompleteFileOptions): Promise<{ implantVoxels: number; resampled: boolean; seconds: number }> {
  const log = o.log ?? ((l: string) => console.log(l));
  if (o.threads !== undefined) setThreads(o.threads);
  const t0 = performance.now();
  const vae = await Vae.load(o.model);
  try {
    if (!vae.completion) throw new VoxvaeError('ECHECKPOINT', `${o.model} has no completion data; run \`voxvae calibrate --model ${o.model} --data DIR --out ${o.model}\` first`, { path: o.model });
    if (!vae.completion.classes.includes(o.defect))
      throw new VoxvaeError('EINVAL', `--defect must be one of ${vae.completion.classes.map((c) => `'${c}'`).join(', ')} (the classes ${o.model} was calibrated on), not '${o.defect}'`, { path: 'defect' });
    const input = await readVolume(o.input);
    const grid = vae.decoder.config.inputShape as Vec3;
    const bin = threshold(input, o.threshold ?? 0.5);
    const same = bin.shape.every((d, i) => d === grid[i]);
    if (!same && o.resample === false)
      throw new VoxvaeError('ESHAPE', `${o.input} is ${bin.shape.join('×')} but the model's grid is ${grid.join('×')}: resample it (drop --no-resample) or pass a volume of that shape`, { path: o.input });
    const onGrid = same ? bin : (threshold(resample(bin, grid, 'trilinear'), 0.5) as BinaryVolume);
    if (!same) log(`resampling ${bin.shape.join('×')} → the model's ${grid.join('×')} (and the implant back)`);
    const r = await vae.completeSkull(onGrid.data, {
      defect: o.defect,
      ...(o.method ? { method: o.method } : {}),
      ...(o.gamma !== undefined ? { gamma: o.gamma } : {}),
      ...(o.steps !== undefined ? { fit: { steps: o.steps } } : {}),
    });
    // Back on the input's grid: the implant resampled (trilinear, > 0.5), the input's own bone kept exactly.
    let implant: Uint8Array = r.implant;
    if (!same) {
      const small: Volume = { ...onGrid, data: Float32Array.from(r.implant) };
      implant = threshold(resample(small, bin.shape, 'trilinear'), 0.5).data;
      for (let i = 0; i < implant.length; i++) if (bin.data[i]) implant[i] = 0;
    }
    const completed = Uint8Array.from(bin.data, (v, i) => (v || implant[i] ? 1 : 0));
    const geometry = { shape: input.shape, spacing: input.spacing, origin: input.origin, direction: input.direction };
    await writeVolume(o.out, { ...geometry, data: completed });
    if (o.implant) await writeVolume(o.implant, { ...geometry, data: implant });
    const n = implant.reduce((a, b) => a + b, 0);
    return { implantVoxels: n, resampled: !same, seconds: (performance.now() - t0) / 1000 };
  } finally {
    vae.dispose();
  }
}

export function registerCompletionCommands(program: Command): void {
  program
    .command('complete')
    .description("complete defective skulls with a completion-ready model (latent fitting by default; about 2 s a skull at 64×64×32 on 2 CPU cores): writes the completed skull and the implant with the input's geometry. --input may be a folder: every volume in it is completed into the --out folder")
    .requiredOption('--model <file>', 'a model with completion data (e.g. runs/pipeline/model.safetensors)')
    .requiredOption('--input <file|dir>', 'the defective skull (NIfTI .nii/.nii.gz or NRRD .nrrd/.nhdr; bone > 0.5), or a folder of them')
    .requiredOption('--defect <class>', "the defect class the model was calibrated on (e.g. 'cranial' or 'facial')")
    .requiredOption('--out <file|dir>', 'the completed skull (.nii, .nii.gz, .nrrd or .nhdr); a folder when --input is one (files keep their names)')
    .option('--implant <file|dir>', 'also write the implant alone (a folder when --input is one)')
    .option('--method <m>', "'fit' (per-case latent fitting, default) or 'dev' (the paper's z + γ·DEV)", method)
    .option('--gamma <g>', 'scale of the deviation vector (default 1)', finiteNumber('--gamma'))
    .option('--steps <n>', 'latent fitting steps (default: the model\'s)', positiveInt('--steps'))
    .option('--no-resample', "refuse (ESHAPE) an input whose shape is not the model's grid instead of resampling it")
    .option('--threads <n>', 'CPU threads (default: all cores)', positiveInt('--threads'))
    .option('--json', 'print the outcome per file as JSON')
    .action(async (o: CompleteFileOptions & { json?: boolean }) => {
      await mustExist(o.model, '--model', 'file');
      await mustExist(o.input, '--input');
      const folder = (await stat(o.input)).isDirectory();
      const log = o.json ? (l: string) => process.stderr.write(l + '\n') : (l: string) => console.log(l);
      if (!folder) {
        await prepareOutFile(o.out);
        if (o.implant) await prepareOutFile(o.implant, '--implant');
        const r = await completeFile({ ...o, log });
        if (o.json) process.stdout.write(JSON.stringify([{ input: o.input, out: o.out, ...r }], null, 2) + '\n');
        else log(`wrote ${o.out}${o.implant ? ` and ${o.implant}` : ''}: implant of ${r.implantVoxels} voxels${r.resampled ? ' (resampled to the model grid and back)' : ''} in ${r.seconds.toFixed(1)} s`);
        return;
      }
      await prepareOutDir(o.out);
      if (o.implant) await prepareOutDir(o.implant, '--implant');
      const files = (await readdir(o.input)).filter((f) => isVolumeFile(f)).sort();
      if (!files.length) throw new VoxvaeError('EINVAL', `--input ${o.input} holds no volume files (.nii, .nii.gz, .nrrd, .nhdr)`, { path: o.input });
      const results: ({ input: string; out: string } & Awaited<ReturnType<typeof completeFile>>)[] = [];
      for (const [i, f] of files.entries()) {
        const out = path.join(o.out, f);
        const r = await completeFile({ ...o, input: path.join(o.input, f), out, ...(o.implant ? { implant: path.join(o.implant, f) } : {}), log });
        results.push({ input: path.join(o.input, f), out, ...r });
        log(`[${i + 1}/${files.length}] ${f}: implant of ${r.implantVoxels} voxels in ${r.seconds.toFixed(1)} s`);
      }
      if (o.json) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
      else log(`wrote ${files.length} completed skulls to ${o.out}${o.implant ? ` and their implants to ${o.implant}` : ''}`);
    });

  program
    .command('calibrate')
    .description('add completion data (deviation vectors, defect maps, the complete skulls\' latent prior) to a model, from skulls with paired defects: a data folder or manifest (SkullBreak/SkullFix layouts), or synthetic skulls (34 skulls at 64×64×32: about 7 s on 2 CPU cores)')
    .requiredOption('--model <file>', 'the trained model (.safetensors)')
    .option('--data <dir|manifest.csv>', 'complete skulls and their defective twins (the data layer\'s layouts)')
    .option('--synthetic <n>', 'use n synthetic skulls instead (each with a cranial and a facial defect)', positiveInt('--synthetic'))
    .option('--seed <n>', 'seed of the synthetic skulls', positiveInt('--seed'), 1)
    .requiredOption('--out <file>', 'where to write the model with its completion data (may be --model)')
    .option('--threads <n>', 'CPU threads (default: all cores)', positiveInt('--threads'))
    .action(async (o: { model: string; data?: string; synthetic?: number; seed: number; out: string; threads?: number }) => {
      if (!o.data === !o.synthetic) throw new VoxvaeError('EINVAL', 'give exactly one of --data and --synthetic', { path: 'data' });
      await mustExist(o.model, '--model', 'file');
      if (o.data) await mustExist(o.data, '--data');
      await prepareOutFile(o.out);
      if (o.threads !== undefined) setThreads(o.threads);
      const vae = await Vae.load(o.model);
      try {
        const shape = vae.decoder.config.inputShape as Vec3;
        const ds = o.data
          ? await VolumeDataset.open(o.data, { shape })
          : VolumeDataset.fromSynthetic(await generateSkullDataset({ n: o.synthetic!, shape, seed: o.seed }));
        const d = await calibrateCompletion(vae, ds, { source: o.data ? path.resolve(o.data) : `${o.synthetic} synthetic skulls (seed ${o.seed})` });
        await vae.save(o.out);
        console.log(`wrote ${o.out}: completion data for ${d.classes.join(', ')} from ${d.source} (latent '${d.latent}')`);
      } finally {
        vae.dispose();
      }
    });
}
