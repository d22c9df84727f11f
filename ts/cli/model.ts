// Commands on a trained model: `evaluate` (the metrics table and report on a data folder), `encode`,
// `decode`, `sample`, `interpolate` (volumes written as NIfTI/NRRD with the right geometry) and `export`
// (ONNX). Geometry: a volume on the model's grid covers the physical extent of the volume it came from
// (spacing scaled by shape ratio, same origin and direction); decoded or sampled volumes without a source
// take the grid geometry `voxvae train` recorded in training.json beside the model, or --like FILE's.
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Command, Option } from 'commander';
import { VolumeDataset } from '../data/dataset.js';
import { isVolumeFile, readVolume, writeVolume } from '../data/io.js';
import { resample, threshold } from '../data/resample.js';
import type { Vec3, Volume } from '../data/volume.js';
import { VoxvaeError } from '../errors.js';
import { mean, reconstructionScores } from '../experiment/evaluate.js';
import { completionFigure } from '../experiment/figures.js';
import { exportOnnx } from '../export/onnx.js';
import { encodeDataset } from '../latent/index.js';
import { activeUnits } from '../metrics/latent.js';
import { dice } from '../metrics/overlap.js';
import { hausdorffDistance95 } from '../metrics/surface.js';
import { lineChart } from '../report/plot.js';
import { runInfo, writeReport, type ReportFigure } from '../report/report.js';
import { writeFileAtomic } from '../safetensors.js';
import type { Backend } from '../types.js';
import { Vae, setThreads } from '../vae.js';
import { finiteNumber, integer, positiveInt } from './args.js';
import { mustExist, prepareOutDir, prepareOutFile } from './run.js';
import type { GridGeometry } from './train.js';

const VOLUME_EXT = '(.nii, .nii.gz, .nrrd or .nhdr)';

/** Loads a model for a command, the file checked first. */
export async function loadModel(file: string, o: { threads?: number; backend?: Backend } = {}): Promise<Vae> {
  await mustExist(file, '--model', 'file');
  if (o.threads !== undefined) setThreads(o.threads);
  return Vae.load(file, o.backend ? { backend: o.backend } : {});
}

const gridOf = (vae: Vae): Vec3 => vae.config.inputShape as Vec3;

/** The grid geometry of a model: training.json beside it (written by `voxvae train`), else 1 mm voxels at the origin. */
export async function modelGeometry(model: string, vae: Vae): Promise<GridGeometry & { known: boolean }> {
  const rec = await readFile(path.join(path.dirname(model), 'training.json'), 'utf8').then((t) => JSON.parse(t) as { geometry?: GridGeometry }, () => null);
  const g = rec?.geometry;
  const grid = gridOf(vae);
  if (g && Array.isArray(g.shape) && g.shape.every((d, i) => d === grid[i])) return { ...g, known: true };
  return { shape: grid, spacing: [1, 1, 1], origin: [0, 0, 0], direction: [1, 0, 0, 0, 1, 0, 0, 0, 1], known: false };
}

/** The geometry of `vol` moved onto the model grid: the same physical box, voxels scaled. */
export function onGridGeometry(vol: Pick<Volume, 'shape' | 'spacing' | 'origin' | 'direction'>, grid: Vec3): GridGeometry {
  return { shape: grid, spacing: vol.spacing.map((s, i) => (s * vol.shape[i]!) / grid[i]!) as Vec3, origin: [...(vol.origin ?? [0, 0, 0])] as Vec3, direction: [...(vol.direction ?? [1, 0, 0, 0, 1, 0, 0, 0, 1])] };
}

/** Reads a volume and puts it on the model's grid (binarised at `level`, resampled trilinearly when the shape differs). */
async function volumeOnGrid(file: string, grid: Vec3, level: number): Promise<{ data: Float32Array; geometry: GridGeometry; resampled: boolean }> {
  const v = await readVolume(file);
  const bin = threshold(v, level);
  const same = bin.shape.every((d, i) => d === grid[i]);
  const on = same ? bin : threshold(resample(bin, grid, 'trilinear'), 0.5);
  return { data: Float32Array.from(on.data), geometry: onGridGeometry(v, grid), resampled: !same };
}

async function writeMask(file: string, mask: Uint8Array, g: GridGeometry): Promise<void> {
  await writeVolume(file, { shape: g.shape, spacing: g.spacing, origin: g.origin, direction: g.direction, data: mask } as Volume);
}

/** Volume files of a folder (sorted), or the one file given. */
export async function volumeFiles(p: string, flag: string): Promise<string[]> {
  await mustExist(p, flag);
  if (!(await stat(p)).isDirectory()) return [p];
  const files = (await readdir(p)).filter((f) => isVolumeFile(f)).sort().map((f) => path.join(p, f));
  if (!files.length) throw new VoxvaeError('EINVAL', `${flag} ${p} holds no volume files ${VOLUME_EXT}`, { path: p });
  return files;
}

const outName = (dir: string, stem: string, format: string): string => path.join(dir, `${stem}.${format}`);
const stemOf = (f: string): string => path.basename(f).replace(/\.(nii\.gz|nii|nrrd|nhdr)$/i, '');
const FORMATS = ['nii.gz', 'nii', 'nrrd'] as const;

// ---- evaluate ----

export interface EvaluateOptions {
  model: string;
  data: string;
  out: string;
  batch: number;
  threshold: number;
  completion: boolean;
  examples: number;
  threads?: number;
  json: boolean;
  log?: (l: string) => void;
}

const f3 = (v: number, d = 3): string => (Number.isFinite(v) ? v.toFixed(d) : '—');

export async function runEvaluate(o: EvaluateOptions, version: string): Promise<Record<string, unknown>> {
  const log = o.log ?? ((l: string) => console.log(l));
  const t0 = performance.now();
  await prepareOutDir(o.out);
  await mustExist(o.data, '--data');
  const vae = await loadModel(o.model, o.threads !== undefined ? { threads: o.threads } : {});
  try {
    const grid = gridOf(vae);
    const ds = await VolumeDataset.open(o.data, { shape: grid, threshold: o.threshold, kinds: ['complete', 'defective', 'other', 'implant'] });
    const vols = ds.subset(ds.items.flatMap((it, i) => (it.kind === 'implant' ? [] : [i])));
    if (vols.length === 0) throw new VoxvaeError('EINVAL', `--data ${o.data} holds no volumes ${VOLUME_EXT}`, { path: o.data });
    log(`evaluating ${o.model} on ${vols.length} volumes of ${o.data} (resampled to the model's ${grid.join('×')} where needed)`);
    let last = performance.now();
    const scores = await reconstructionScores(vae, vols, o.batch, (done, total) => {
      if (performance.now() - last < 5000) return;
      last = performance.now();
      log(`  reconstructed ${done}/${total}`);
    });
    const enc = await encodeDataset(vae, vols, {
      batchSize: o.batch,
      onProgress: (done, total) => {
        if (performance.now() - last < 5000) return;
        last = performance.now();
        log(`  encoded ${done}/${total}`);
      },
    });
    const k = enc.k;
    let klSum = 0;
    for (let i = 0; i < enc.n * k; i++) {
      const m = enc.mu[i]!, s = enc.sigma[i]!;
      klSum += 0.5 * (m * m + s * s - 1 - Math.log(Math.max(s * s, 1e-30)));
    }
    const kl = klSum / enc.n;
    const au = enc.n >= 2 ? activeUnits({ data: enc.mu, shape: [enc.n, k] }).count : NaN;
    const byClass = new Map<string, number[]>();
    vols.items.forEach((it, i) => byClass.set(it.label, [...(byClass.get(it.label) ?? []), scores[i]!]));
    const recon = { dice: mean(scores), min: Math.min(...scores), n: scores.length, byClass: Object.fromEntries([...byClass].map(([c, s]) => [c, { dice: mean(s), n: s.length }])) };
    log(`reconstruction Dice ${f3(recon.dice)} (min ${f3(recon.min)}, ${recon.n} volumes); KL ${f3(kl, 2)} nats/volume; active units ${au}/${k}`);

    // Completion of the defective volumes whose pair has a complete skull.
    const completion: { cls: string; pair: string; implantDice: number; implantHd95: number; skullDice: number }[] = [];
    const examples: Map<string, { label: string; input: Uint8Array; truth: Uint8Array; predicted: Uint8Array }[]> = new Map();
    const geometry = await modelGeometry(o.model, vae);
    if (o.completion && vae.completion) {
      const completeOf = new Map<string, number>();
      ds.items.forEach((it, i) => it.kind === 'complete' && completeOf.set(`${it.subset}\u0000${it.pairId}`, i));
      const cases = ds.items.flatMap((it, i) => (it.kind === 'defective' && vae.completion!.classes.includes(it.label) && completeOf.has(`${it.subset}\u0000${it.pairId}`) ? [i] : []));
      if (cases.length) log(`completing ${cases.length} defective skulls (${vae.completion.classes.join(', ')})`);
      let done = 0;
      last = performance.now();
      for (const i of cases) {
        const it = ds.items[i]!;
        const def = await ds.get(i), full = await ds.get(completeOf.get(`${it.subset}\u0000${it.pairId}`)!);
        const r = await vae.completeSkull(def.data, { defect: it.label });
        const truth = Uint8Array.from(full.data, (v, j) => (v && !def.data[j] ? 1 : 0));
        const skull = Uint8Array.from(def.data, (v, j) => (v || r.implant[j] ? 1 : 0));
        const mv = (d: Uint8Array) => ({ data: d, shape: grid, spacing: geometry.spacing });
        completion.push({ cls: it.label, pair: it.pairId, implantDice: dice(mv(r.implant), mv(truth)), implantHd95: hausdorffDistance95(mv(r.implant), mv(truth)), skullDice: dice(mv(skull), mv(full.data)) });
        const ex = examples.get(it.label) ?? [];
        if (ex.length < o.examples) ex.push({ label: `${it.label} ${it.pairId}`, input: def.data, truth, predicted: r.implant });
        examples.set(it.label, ex);
        done++;
        if (performance.now() - last > 5000) {
          last = performance.now();
          log(`  completed ${done}/${cases.length}`);
        }
      }
    } else if (o.completion) log('completion: skipped (the model has no completion data: run `voxvae calibrate` first)');
    const compByClass = [...new Set(completion.map((c) => c.cls))].map((cls) => {
      const c = completion.filter((x) => x.cls === cls);
      const hd = c.map((x) => x.implantHd95).filter(Number.isFinite);
      return { cls, n: c.length, implantDice: mean(c.map((x) => x.implantDice)), implantHd95: mean(hd), finiteHd: hd.length, skullDice: mean(c.map((x) => x.skullDice)) };
    });
    for (const c of compByClass) log(`completion ${c.cls}: implant Dice ${f3(c.implantDice)}, HD95 ${f3(c.implantHd95, 1)} mm, skull Dice ${f3(c.skullDice)} (${c.n} skulls)`);

    // Report
    const warnings: string[] = [];
    if (au === 0) warnings.push(`the model collapsed: 0 of ${k} latent units are active (the μ's do not vary across volumes; KL ${f3(kl, 2)} nats/volume) — its latent codes carry almost no information about the input.`);
    const figures: ReportFigure[] = [];
    const rec = await readFile(path.join(path.dirname(o.model), 'training.json'), 'utf8').then((t) => JSON.parse(t) as { curves?: { stage: string; epochs: { epoch: number; loss: number; validation: Record<string, number | null> }[] }[] }, () => null);
    const body: string[] = [
      '## Reconstruction', '',
      `Volumes of \`${o.data}\` (${vols.length}; resampled to the model's grid ${grid.join('×')}), encoded to the evaluation latent (${vae.evalLatent === 'mean' ? 'z = μ' : 'z = μ + σ'}) and decoded; Dice of the foreground (probability > 0.5) against the input.`, '',
      '| class | volumes | reconstruction Dice ↑ |', '|---|---:|---:|',
      ...Object.entries(recon.byClass).map(([c, s]) => `| ${c} | ${s.n} | ${f3(s.dice)} |`),
      `| all | ${recon.n} | ${f3(recon.dice)} (min ${f3(recon.min)}) |`, '',
      '| latent | value |', '|---|---:|',
      `| KL(q(z∣x) ‖ N(0, I)) per volume, nats | ${f3(kl, 2)} |`,
      `| active units (variance of μ over volumes > 0.01) ↑ | ${Number.isFinite(au) ? au : '—'} / ${k} |`, '',
    ];
    if (compByClass.length) {
      body.push('## Completion', '', `Each defective skull completed with the model's completion data (${vae.completion!.source}); the true implant is the complete skull minus the defective one.`, '',
        '| defect | skulls | implant Dice ↑ | implant HD95 mm ↓ | completed-skull Dice ↑ |', '|---|---:|---:|---:|---:|',
        ...compByClass.map((c) => `| ${c.cls} | ${c.n} | ${f3(c.implantDice)} | ${f3(c.implantHd95, 1)}${c.finiteHd < c.n ? ` (${c.finiteHd}/${c.n} finite)` : ''} | ${f3(c.skullDice)} |`), '');
      for (const [cls, ex] of examples) {
        const file = `completion_${cls}.png`;
        figures.push({ file, svg: completionFigure(`${cls} defects completed by the model`, ex, grid, geometry.spacing), caption: `${ex.length} ${cls} defect${ex.length === 1 ? '' : 's'} of ${o.data}, completed by ${path.basename(o.model)}: axial, coronal and sagittal slices through the true defect's centre. Grey: the defective skull; green: predicted implant where the true implant is; orange: predicted where there is no defect; blue: defect left unfilled.` });
        body.push(`{{figure:${file}}}`, '');
      }
    }
    if (rec?.curves?.length) {
      body.push('## Training curves', '', `From \`training.json\` beside the model.`, '');
      const s = rec.curves;
      figures.push({ file: 'training_loss.png', svg: lineChart('Training loss per volume', s.map((c) => ({ name: c.stage, x: c.epochs.map((e) => e.epoch), y: c.epochs.map((e) => e.loss) })), { xLabel: 'epoch', yLabel: 'loss / volume ↓', logY: true }), caption: 'Training loss per volume and epoch (reconstruction + β·KL; stage 2 of the aggregated VAE: reconstruction alone).' });
      body.push('{{figure:training_loss.png}}', '');
      if (s.some((c) => c.epochs.some((e) => typeof e.validation['dice'] === 'number'))) {
        figures.push({ file: 'validation_dice.png', svg: lineChart('Validation reconstruction Dice', s.map((c) => ({ name: c.stage, x: c.epochs.map((e) => e.epoch), y: c.epochs.map((e) => e.validation['dice'] ?? NaN) })), { xLabel: 'epoch', yLabel: 'Dice ↑' }), caption: 'Reconstruction Dice on the held-out validation subjects after each epoch.' });
        body.push('{{figure:validation_dice.png}}', '');
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    // A case's HD95 is undefined when one of the implants is empty: null with the reason, counted in the table.
    const cases = completion.map((c) => (Number.isFinite(c.implantHd95) ? c : { ...c, implantHd95: null, hd95Undefined: 'the predicted or the true implant is empty' }));
    const json = { model: path.resolve(o.model), data: path.resolve(o.data), grid, reconstruction: recon, latent: { kl, activeUnits: au, size: k }, completion: { byClass: compByClass, cases }, scores: vols.items.map((it, i) => ({ path: it.path, label: it.label, kind: it.kind, dice: scores[i] })) };
    const files = await writeReport(o.out, { title: `voxvae evaluate: ${path.basename(o.model)} on ${path.basename(path.resolve(o.data))}`, run: runInfo(version, vae.seed, seconds), warnings, body, figures, json });
    for (const w of files.warnings) log(`WARNING: ${w}`);
    log(`wrote ${files.html}, ${files.md} and ${files.json}`);
    return { ...json, warnings: files.warnings, report: files };
  } finally {
    vae.dispose();
  }
}

// ---- encode / decode / sample / interpolate ----

interface LatentFile {
  format: 'voxvae.latents';
  version: 1;
  model: string;
  latent: string;
  size: number;
  items: { source: string | null; z: number[]; mu?: number[]; logvar?: number[]; geometry: GridGeometry }[];
}

async function readLatents(file: string, k: number): Promise<LatentFile> {
  await mustExist(file, '--latents', 'file');
  let v: LatentFile;
  try {
    v = JSON.parse(await readFile(file, 'utf8')) as LatentFile;
  } catch (e) {
    throw new VoxvaeError('EFORMAT', `--latents ${file} is not JSON (${(e as Error).message})`, { path: file });
  }
  if (v?.format !== 'voxvae.latents' || !Array.isArray(v.items)) throw new VoxvaeError('EFORMAT', `--latents ${file} is not a voxvae latents file (write one with \`voxvae encode\`)`, { path: file });
  v.items.forEach((it, i) => {
    if (!Array.isArray(it.z) || it.z.length !== k || !it.z.every(Number.isFinite)) throw new VoxvaeError('ESHAPE', `--latents ${file}: items[${i}].z must be ${k} finite numbers (the model's latent size)`, { path: file });
  });
  return v;
}

export function registerModelCommands(program: Command, version = '0'): void {
  program
    .command('evaluate')
    .description("the metrics table of a model on a data folder: reconstruction Dice per class, KL and active latent units, and — when the model has completion data and the folder has defective skulls with their complete twins — implant Dice, HD95 and completed-skull Dice; writes report.html (self-contained), report.md and results.json; about 0.05 s a volume at 64×64×32 on 2 CPU cores (100 volumes: 6 s), plus about 2 s per completed skull")
    .requiredOption('--model <file>', 'the model (.safetensors, e.g. runs/train/model.safetensors)')
    .requiredOption('--data <dir|manifest>', 'dataset folder (SkullBreak/SkullFix layout or any folder) or manifest')
    .option('--out <dir>', 'report folder', 'runs/evaluate')
    .option('--batch <n>', 'volumes per forward pass', positiveInt('--batch'), 8)
    .option('--threshold <v>', 'bone = voxel value above this', finiteNumber('--threshold'), 0.5)
    .option('--no-completion', 'skip completing the defective skulls')
    .option('--examples <n>', 'completion examples drawn per defect class', integer('--examples', 0, 20), 3)
    .option('--threads <n>', 'CPU threads (default: all cores)', positiveInt('--threads'))
    .option('--json', 'print the results as JSON on stdout (the log goes to stderr)')
    .action(async (o: EvaluateOptions) => {
      const json = !!o.json;
      const r = await runEvaluate({ ...o, json, log: json ? (l) => process.stderr.write(l + '\n') : (l) => console.log(l) }, version);
      if (json) process.stdout.write(JSON.stringify(r, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
    });

  program
    .command('encode')
    .description('encode volumes (a file or a folder) to their latent codes: a JSON file with μ, log σ², the evaluation latent z and each source\'s geometry (for `decode`); well under a second a volume')
    .requiredOption('--model <file>', 'the model (.safetensors)')
    .requiredOption('--input <file|dir>', `volume file or folder ${VOLUME_EXT}; resampled to the model's grid`)
    .requiredOption('--out <file.json>', 'the latents file')
    .option('--threshold <v>', 'bone = voxel value above this', finiteNumber('--threshold'), 0.5)
    .option('--json', 'also print the latents file on stdout')
    .action(async (o: { model: string; input: string; out: string; threshold: number; json?: boolean }) => {
      await prepareOutFile(o.out);
      const files = await volumeFiles(o.input, '--input');
      const vae = await loadModel(o.model);
      try {
        const grid = gridOf(vae);
        const items: LatentFile['items'] = [];
        for (const f of files) {
          const v = await volumeOnGrid(f, grid, o.threshold);
          const r = await vae.encodeLatent(v.data);
          items.push({ source: path.resolve(f), z: [...r.z], mu: [...r.mu], logvar: [...r.logvar], geometry: v.geometry });
        }
        const out: LatentFile = { format: 'voxvae.latents', version: 1, model: path.resolve(o.model), latent: vae.evalLatent, size: vae.config.latentSize, items };
        const text = JSON.stringify(out, null, 1);
        await writeFileAtomic(o.out, new TextEncoder().encode(text));
        if (o.json) process.stdout.write(text + '\n');
        else console.log(`wrote ${o.out}: ${items.length} latent code${items.length === 1 ? '' : 's'} of size ${out.size} (z = ${vae.evalLatent === 'mean' ? 'μ' : 'μ + σ'})`);
      } finally {
        vae.dispose();
      }
    });

  program
    .command('decode')
    .description("decode latent codes (a file written by `voxvae encode`) to binary volumes on the model's grid, each covering its source's physical extent (origin, direction; spacing scaled to the grid); under a second a volume")
    .requiredOption('--model <file>', 'the model (.safetensors)')
    .requiredOption('--latents <file.json>', 'latents from `voxvae encode`')
    .requiredOption('--out <dir>', 'output folder: one volume per code, named after its source')
    .addOption(new Option('--format <f>', 'file format').choices([...FORMATS]).default('nii.gz'))
    .action(async (o: { model: string; latents: string; out: string; format: string }) => {
      await prepareOutDir(o.out);
      const vae = await loadModel(o.model);
      try {
        const lat = await readLatents(o.latents, vae.config.latentSize);
        const fallback = await modelGeometry(o.model, vae);
        const names = new Set<string>();
        for (const [i, it] of lat.items.entries()) {
          const mask = await vae.decode(Float32Array.from(it.z), { output: 'mask' });
          let stem = it.source ? stemOf(it.source) : `decoded-${String(i).padStart(3, '0')}`;
          while (names.has(stem)) stem += `-${i}`;
          names.add(stem);
          const g = it.geometry && Array.isArray(it.geometry.spacing) ? { ...it.geometry, shape: gridOf(vae) } : fallback;
          await writeMask(outName(o.out, stem, o.format), mask, g);
        }
        console.log(`wrote ${lat.items.length} volume${lat.items.length === 1 ? '' : 's'} (${gridOf(vae).join('×')}) to ${o.out}`);
      } finally {
        vae.dispose();
      }
    });

  program
    .command('sample')
    .description("draw z ~ N(0, I) and decode: n binary volumes on the model's grid, with the geometry `voxvae train` recorded (training.json beside the model) or --like's; under a second a volume")
    .requiredOption('--model <file>', 'the model (.safetensors)')
    .requiredOption('--out <dir>', 'output folder (sample-000.nii.gz, …)')
    .option('--n <count>', 'number of samples', integer('--n', 1, 10000), 4)
    .option('--seed <n>', 'seed of the draws', integer('--seed', 0, Number.MAX_SAFE_INTEGER), 1)
    .option('--like <file>', 'take the physical extent, origin and direction of this volume')
    .addOption(new Option('--format <f>', 'file format').choices([...FORMATS]).default('nii.gz'))
    .action(async (o: { model: string; out: string; n: number; seed: number; like?: string; format: string }) => {
      await prepareOutDir(o.out);
      if (o.like) await mustExist(o.like, '--like', 'file');
      const vae = await loadModel(o.model);
      try {
        const g = o.like ? onGridGeometry(await readVolume(o.like), gridOf(vae)) : await modelGeometry(o.model, vae);
        if (!o.like && !(g as { known?: boolean }).known) console.log('note: no training.json beside the model and no --like: writing 1 mm voxels at the origin');
        const k = vae.config.latentSize;
        const { Rng } = await import('../metrics/random.js');
        const rng = new Rng(o.seed);
        for (let i = 0; i < o.n; i++) {
          const z = Float32Array.from({ length: k }, () => rng.normal());
          await writeMask(outName(o.out, `sample-${String(i).padStart(3, '0')}`, o.format), await vae.decode(z, { output: 'mask' }), g);
        }
        console.log(`wrote ${o.n} sample${o.n === 1 ? '' : 's'} (${gridOf(vae).join('×')}, seed ${o.seed}) to ${o.out}`);
      } finally {
        vae.dispose();
      }
    });

  program
    .command('interpolate')
    .description("encode two volumes and decode the straight line between their latent codes: --steps volumes from --from to --to, with --from's geometry; under a second a step")
    .requiredOption('--model <file>', 'the model (.safetensors)')
    .requiredOption('--from <file>', `first volume ${VOLUME_EXT}`)
    .requiredOption('--to <file>', 'second volume')
    .requiredOption('--out <dir>', 'output folder (step-00.nii.gz, …)')
    .option('--steps <n>', 'volumes along the line, both ends included (≥ 2)', integer('--steps', 2, 1000), 5)
    .option('--threshold <v>', 'bone = voxel value above this', finiteNumber('--threshold'), 0.5)
    .addOption(new Option('--format <f>', 'file format').choices([...FORMATS]).default('nii.gz'))
    .action(async (o: { model: string; from: string; to: string; out: string; steps: number; threshold: number; format: string }) => {
      await prepareOutDir(o.out);
      await mustExist(o.from, '--from', 'file');
      await mustExist(o.to, '--to', 'file');
      const vae = await loadModel(o.model);
      try {
        const grid = gridOf(vae);
        const a = await volumeOnGrid(o.from, grid, o.threshold), b = await volumeOnGrid(o.to, grid, o.threshold);
        const za = (await vae.encodeLatent(a.data)).z, zb = (await vae.encodeLatent(b.data)).z;
        for (let s = 0; s < o.steps; s++) {
          const t = s / (o.steps - 1);
          const z = Float32Array.from(za, (v, j) => (1 - t) * v + t * zb[j]!);
          await writeMask(outName(o.out, `step-${String(s).padStart(2, '0')}`, o.format), await vae.decode(z, { output: 'mask' }), a.geometry);
        }
        console.log(`wrote ${o.steps} volumes from ${path.basename(o.from)} to ${path.basename(o.to)} in ${o.out}`);
      } finally {
        vae.dispose();
      }
    });

  program
    .command('export')
    .description('export the decoder (or the encoder) of a model to ONNX (opset 17, float32), for onnxruntime or the browser; about a second')
    .requiredOption('--model <file>', 'the model (.safetensors)')
    .requiredOption('--onnx <file>', 'the .onnx file to write')
    .addOption(new Option('--part <p>', "'decoder' (input z, output the volume) or 'encoder' (outputs mu and logvar)").choices(['decoder', 'encoder']).default('decoder'))
    .option('--probabilities', "append the decoder's output activation (softmax/sigmoid); default: logits")
    .action(async (o: { model: string; onnx: string; part: 'decoder' | 'encoder'; probabilities?: boolean }) => {
      await prepareOutFile(o.onnx, '--onnx');
      await mustExist(o.model, '--model', 'file');
      const bytes = exportOnnx(new Uint8Array(await readFile(o.model)), { part: o.part, probabilities: !!o.probabilities, name: o.model });
      await writeFileAtomic(o.onnx, bytes);
      console.log(`wrote ${o.onnx} (${o.part}, ${(bytes.length / 1024).toFixed(0)} KiB)`);
    });
}

