// `voxvae demo`: a quick look — generate synthetic skulls, train a MONAI-preset
// VAE on the CPU, print loss and reconstruction Dice per epoch, write a checkpoint and a report.
import path from 'node:path';
import { Command } from 'commander';
import { monaiVarAutoEncoder } from '../config.js';
import { VoxvaeError } from '../errors.js';
import { generateSkullDataset } from '../data/synth/index.js';
import { dice } from '../metrics/overlap.js';
import { writeFileAtomic } from '../safetensors.js';
import { Vae, setThreads } from '../vae.js';
import { integer, positiveInt, positiveNumber, nonNegativeNumber, shape3 } from './args.js';
import { prepareOutDir } from './run.js';
import { checkGrid, defaultChannels } from './train.js';

export interface DemoOptions {
  out: string;
  skulls: number;
  shape: [number, number, number];
  epochs: number;
  batch: number;
  beta: number;
  lr: number;
  seed: number;
  threads?: number;
  log?: (line: string) => void;
}

interface EpochRow {
  epoch: number;
  loss: number;
  recon: number;
  kl: number;
  trainDice: number;
  valDice: number;
  seconds: number;
}

/** Seeded Fisher–Yates (xorshift32), so the data order repeats with the seed. */
function shuffle<T>(a: T[], seed: number): T[] {
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = a.length - 1; i > 0; i--) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Validation split of the demo: a fifth of the skulls, at least one. */
const validationSkulls = (skulls: number): number => Math.max(1, Math.round(skulls * 0.2));

export async function runDemo(o: DemoOptions): Promise<{ rows: EpochRow[]; report: string }> {
  const log = o.log ?? ((l: string) => console.log(l));
  // Checks before any work: the grid against the strides, one full batch of training volumes, the output folder.
  const channels = defaultChannels(o.shape);
  checkGrid(o.shape, channels, '--shape');
  const trainVolumes = 3 * (o.skulls - validationSkulls(o.skulls));
  if (trainVolumes < o.batch)
    throw new VoxvaeError('EINVAL', `--skulls ${o.skulls} leaves ${trainVolumes} training volumes (3 a skull after ${validationSkulls(o.skulls)} held out), fewer than one batch (--batch ${o.batch}): raise --skulls or lower --batch`, { path: '--skulls' });
  await prepareOutDir(o.out);
  if (o.threads !== undefined) setThreads(o.threads);
  const S = o.shape[0] * o.shape[1] * o.shape[2];
  const t0 = performance.now();
  const ds = await generateSkullDataset({ n: o.skulls, shape: o.shape, seed: o.seed });
  // Every skull gives three training volumes (complete, cranial defect, facial defect); pairs stay
  // together in one split so that no skull's twin leaks into validation.
  const volumes = ds.skulls.map((s) => [s.complete.data, s.cranial.defective.data, s.facial.defective.data]);
  const nVal = validationSkulls(o.skulls);
  const val = volumes.slice(0, nVal).flat(), train = volumes.slice(nVal).flat();
  log(`synthetic skulls: ${o.skulls} × 3 volumes at ${o.shape.join('×')} in ${((performance.now() - t0) / 1000).toFixed(1)} s; train ${train.length}, validation ${val.length}`);

  const config = monaiVarAutoEncoder({ inputShape: o.shape, channels, latentSize: 32 });
  const vae = await Vae.create(config, { seed: o.seed });
  log(`model: MONAI VarAutoEncoder, channels [${channels.join(', ')}], latent 32, ${vae.numParams.toLocaleString('en')} parameters; loss 80·Dice(sum) + ${o.beta}·KL, Adam lr ${o.lr}`);

  const toBatch = (vols: Uint8Array[]): Float32Array => {
    const x = new Float32Array(vols.length * S);
    vols.forEach((v, i) => x.set(v, i * S));
    return x;
  };
  const reconDice = async (vols: Uint8Array[]): Promise<number> => {
    let sum = 0;
    for (let i = 0; i < vols.length; i += o.batch) {
      const part = vols.slice(i, i + o.batch);
      const { recon } = await vae.forward(toBatch(part), { mode: 'eval', latent: 'mean', batch: part.length });
      part.forEach((v, k) => {
        const fg = new Uint8Array(S);
        for (let j = 0; j < S; j++) fg[j] = recon[(k * 2 + 1) * S + j]! > 0.5 ? 1 : 0;
        sum += dice({ data: fg, shape: o.shape }, { data: v, shape: o.shape });
      });
    }
    return sum / vols.length;
  };

  const rows: EpochRow[] = [];
  log('epoch   loss/vol   80·Dice/vol   KL/vol   train Dice   val Dice   seconds');
  for (let epoch = 1; epoch <= o.epochs; epoch++) {
    const te = performance.now();
    const order = shuffle([...train.keys()], o.seed * 1000 + epoch);
    let loss = 0, recon = 0, kl = 0, seen = 0;
    for (let i = 0; i + o.batch <= order.length; i += o.batch) {
      const batch = order.slice(i, i + o.batch).map((k) => train[k]!);
      const r = await vae.trainStep({ input: toBatch(batch), shape: [batch.length, 1, ...o.shape] }, { beta: o.beta, optimizer: { lr: o.lr } });
      loss += r.loss; recon += r.recon; kl += r.kl; seen += batch.length;
    }
    const row: EpochRow = {
      epoch, loss: loss / seen, recon: recon / seen, kl: kl / seen,
      trainDice: await reconDice(train.slice(0, Math.min(train.length, 12))),
      valDice: await reconDice(val),
      seconds: (performance.now() - te) / 1000,
    };
    rows.push(row);
    log(`${String(epoch).padStart(5)}   ${row.loss.toFixed(2).padStart(8)}   ${row.recon.toFixed(2).padStart(11)}   ${row.kl.toFixed(2).padStart(6)}   ${row.trainDice.toFixed(4).padStart(10)}   ${row.valDice.toFixed(4).padStart(8)}   ${row.seconds.toFixed(1).padStart(7)}`);
  }

  const ckpt = path.join(o.out, 'model.safetensors');
  await vae.save(ckpt);
  const report = [
    '# voxvae demo report',
    '',
    `Synthetic skulls: ${o.skulls} complete skulls × (complete, cranial defect, facial defect) at ${o.shape.join('×')}, seed ${o.seed}; ${train.length} training and ${val.length} validation volumes (split by skull).`,
    `Model: MONAI VarAutoEncoder preset, channels [${channels.join(', ')}], latent 32, ${vae.numParams.toLocaleString('en')} parameters. Loss 80·Dice(sum) + β·KL(sum), β = ${o.beta}; Adam lr ${o.lr}; batch ${o.batch}; ${o.epochs} epochs.`,
    '',
    '| epoch | loss / volume | 80·Dice / volume | KL / volume | train Dice | validation Dice | seconds |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.epoch} | ${r.loss.toFixed(2)} | ${r.recon.toFixed(2)} | ${r.kl.toFixed(2)} | ${r.trainDice.toFixed(4)} | ${r.valDice.toFixed(4)} | ${r.seconds.toFixed(1)} |`),
    '',
    'Dice: foreground of the reconstruction (eval mode, z = μ) against the input volume.',
    `Checkpoint: \`${path.basename(ckpt)}\` (safetensors, MONAI parameter names).`,
    '',
  ].join('\n');
  await writeFileAtomic(path.join(o.out, 'report.md'), new TextEncoder().encode(report));
  await writeFileAtomic(path.join(o.out, 'metrics.json'), new TextEncoder().encode(JSON.stringify({ options: { ...o, log: undefined }, rows }, null, 2)));
  log(`wrote ${path.join(o.out, 'report.md')} and ${ckpt}`);
  vae.dispose();
  return { rows, report };
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('a quick look, not the main job: train one small VAE on built-in synthetic skulls and print loss and Dice per epoch (about 25 s on 2 CPU cores with the defaults). The main job is `voxvae pipeline` (npm start); on your own data use `voxvae train`')
    .option('--out <dir>', 'output folder', 'runs/demo')
    .option('--skulls <n>', 'complete skulls, at least 2 (each also gives a cranial and a facial defect volume; a fifth are held out)', integer('--skulls', 2, 100000), 30)
    .option('--shape <D,H,W>', 'volume shape; every side a multiple of 16 (2^levels: 4 stride-2 levels, up to 6 while every side stays divisible)', shape3, [64, 64, 32] as [number, number, number])
    .option('--epochs <n>', 'epochs (≥ 1)', positiveInt('--epochs'), 15)
    .option('--batch <n>', 'batch size', positiveInt('--batch'), 4)
    .option('--beta <b>', 'KL weight (≥ 0)', nonNegativeNumber('--beta'), 1e-4)
    .option('--lr <lr>', 'Adam learning rate (> 0)', positiveNumber('--lr'), 1e-3)
    .option('--seed <n>', 'seed', integer('--seed', 0, Number.MAX_SAFE_INTEGER), 1)
    .option('--threads <n>', 'CPU threads (default: all cores)', positiveInt('--threads'))
    .action(async (o: DemoOptions) => {
      await runDemo(o);
    });
}
