// `voxvae experiment ablation`: why the paper's two-stage recipe fails here, and what makes it work. Each
// variant trains stage 1 (a β-VAE) and stage 2 (a new decoder on the frozen encoder's latents) and is
// evaluated on training volumes (what the paper did) and on held-out skulls (a seed never trained on),
// with the collapse diagnostics: KL per latent dimension, active units, the spread of the μ's, and a
// linear probe of the skulls' generating factors from μ (R² on held-out skulls).
//
// Variants change one thing at a time from the paper's recipe at the default scale (β = 100, Adam 1e-4,
// 100 skulls = 300 volumes, stage 2 = skullVAE's ConvT→BN→PReLU→ReLU decoder fed μ + σ, as its code
// did), along: training budget (up to the paper's 15,000 steps a stage), learning rate, number of
// skulls (30 / 100 / 300 / 600), stage-2 latent (sample / mean / mean+std), stage-2 decoder (skullVAE's
// vs MONAI's) and stage-1 β. Stage 1 runs are shared between variants that differ only in stage 2.
// Results are appended to <out>/results.json as each variant finishes, so an interrupted run resumes.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { monaiVarAutoEncoder, type VaeConfig } from '../config.js';
import { VolumeDataset } from '../data/dataset.js';
import { generateSkullDataset, type SkullFactors, type SyntheticDataset } from '../data/synth/index.js';
import { writeFileAtomic } from '../data/atomic.js';
import { encodeDataset } from '../latent/index.js';
import { lineChart, writePng } from '../report/plot.js';
import { Trainer, type EpochInfo } from '../train/trainer.js';
import { stage2DecoderConfig, trainStage2 } from '../train/two_stage.js';
import { Vae, setThreads } from '../vae.js';
import type { LatentMode } from '../types.js';
import { latentDiagnostics, mean, reconstructionScores, type LatentDiagnostics } from './evaluate.js';

export interface AblationVariant {
  name: string;
  /** What the variant changes, for the table. */
  change: string;
  beta: number;
  lr: number;
  skulls: number;
  /** Optimiser steps a stage (batch 4). */
  steps: number;
  stage2Latent: LatentMode;
  stage2Decoder: 'skullvae' | 'monai';
  /** Stage 1 only (the β = 1e-4 reference has no stage 2). */
  stage1Only?: boolean;
}

const PAPER: Omit<AblationVariant, 'name' | 'change'> = { beta: 100, lr: 1e-4, skulls: 100, steps: 3000, stage2Latent: 'mean+std', stage2Decoder: 'skullvae' };

/** The variants, in the order they run. */
export const ABLATION_VARIANTS: AblationVariant[] = [
  { name: 'paper', change: "the paper's recipe (β 100, lr 1e-4, 100 skulls, skullVAE decoder on μ + σ), 3,000 steps a stage", ...PAPER },
  { name: 'latent-mean', change: 'stage 2 fed μ', ...PAPER, stage2Latent: 'mean' },
  { name: 'latent-sample', change: 'stage 2 fed samples μ + σ·ε', ...PAPER, stage2Latent: 'sample' },
  { name: 'decoder-monai', change: "stage 2: MONAI's decoder (no ReLU after the last layer), fed μ", ...PAPER, stage2Decoder: 'monai', stage2Latent: 'mean' },
  { name: 'skulls-300', change: '300 skulls (900 volumes)', ...PAPER, skulls: 300 },
  { name: 'lr-1e-3', change: 'learning rate 1e-3', ...PAPER, lr: 1e-3 },
  { name: 'beta-100-best', change: 'β 100 with everything else of the working recipe (MONAI decoder on μ, lr 1e-3, 300 skulls)', beta: 100, lr: 1e-3, skulls: 300, steps: 3000, stage2Latent: 'mean', stage2Decoder: 'monai' },
  { name: 'beta-10', change: 'β 10, MONAI decoder on μ, lr 1e-3, 300 skulls', beta: 10, lr: 1e-3, skulls: 300, steps: 3000, stage2Latent: 'mean', stage2Decoder: 'monai' },
  { name: 'beta-1', change: 'β 1, MONAI decoder on μ, lr 1e-3, 300 skulls', beta: 1, lr: 1e-3, skulls: 300, steps: 3000, stage2Latent: 'mean', stage2Decoder: 'monai' },
  { name: 'beta-0.1', change: "β 0.1, MONAI decoder on μ, lr 1e-3, 300 skulls (the main job's recipe)", beta: 0.1, lr: 1e-3, skulls: 300, steps: 3000, stage2Latent: 'mean', stage2Decoder: 'monai' },
  { name: 'reference-1e-4', change: 'β 1e-4, one stage (the sharp reference), lr 1e-3, 300 skulls', beta: 1e-4, lr: 1e-3, skulls: 300, steps: 3000, stage2Latent: 'sample', stage2Decoder: 'monai', stage1Only: true },
  { name: 'skulls-30', change: '30 skulls (90 volumes)', ...PAPER, skulls: 30 },
  { name: 'paper-1k', change: 'budget: 1,000 steps a stage', ...PAPER, steps: 1000 },
  { name: 'paper-6k', change: 'budget: 6,000 steps a stage', ...PAPER, steps: 6000 },
  { name: 'paper-15k', change: "budget: the paper's 15,000 steps a stage", ...PAPER, steps: 15000 },
];

export interface StageScores {
  heldOutDice: number;
  trainingDice: number;
  /** Validation (held-out seed) Dice per epoch. */
  curve: { epoch: number; step: number; dice: number; loss: number }[];
}

export interface AblationRow {
  variant: AblationVariant;
  stage1: StageScores & { latent: LatentDiagnostics; muSpread: number };
  stage2: StageScores | null;
  seconds: number;
}

export interface AblationOptions {
  out: string;
  /** Run only these variants (names). */
  only?: string[];
  /** Scale every variant's step budget (e.g. 0.1 for a quick look). */
  budgetScale?: number;
  seed?: number;
  testSkulls?: number;
  threads?: number;
  log?: (line: string) => void;
}

const SHAPE: [number, number, number] = [64, 64, 32];
const CHANNELS = [8, 16, 32, 32, 64];
const LATENT = 32;
const BATCH = 4;

function stage1Key(v: AblationVariant, steps: number): string {
  return `b${v.beta}-lr${v.lr}-s${v.skulls}-n${steps}`;
}

export async function runAblation(o: AblationOptions): Promise<AblationRow[]> {
  const log = o.log ?? ((l: string) => console.log(l));
  if (o.threads !== undefined) setThreads(o.threads);
  const seed = o.seed ?? 1, scale = o.budgetScale ?? 1;
  await mkdir(o.out, { recursive: true });
  const resultsFile = path.join(o.out, 'results.json');
  let rows: AblationRow[] = [];
  try {
    rows = (JSON.parse(await readFile(resultsFile, 'utf8')) as { rows: AblationRow[] }).rows;
  } catch {
    rows = [];
  }
  const variants = ABLATION_VARIANTS.filter((v) => !o.only || o.only.includes(v.name));
  const config: VaeConfig = monaiVarAutoEncoder({ inputShape: SHAPE, channels: CHANNELS, latentSize: LATENT });
  const testSynth = await generateSkullDataset({ n: o.testSkulls ?? 20, shape: SHAPE, seed: seed + 1000 });
  const test = VolumeDataset.fromSynthetic(testSynth);
  const synthCache = new Map<number, SyntheticDataset>();
  const data = async (n: number): Promise<{ synth: SyntheticDataset; ds: VolumeDataset; sub: VolumeDataset }> => {
    if (!synthCache.has(n)) synthCache.set(n, await generateSkullDataset({ n, shape: SHAPE, seed }));
    const synth = synthCache.get(n)!;
    return { synth, ds: VolumeDataset.fromSynthetic(synth), sub: VolumeDataset.fromSynthetic({ ...synth, skulls: synth.skulls.slice(0, 20) }) };
  };
  const stage1Dir = path.join(o.out, 'stage1');
  await mkdir(stage1Dir, { recursive: true });

  for (const v of variants) {
    if (rows.some((r) => r.variant.name === v.name && r.variant.steps === Math.round(v.steps * scale))) {
      log(`${v.name}: done already (${resultsFile})`);
      continue;
    }
    const steps = Math.max(1, Math.round(v.steps * scale));
    const t0 = performance.now();
    const { synth, ds, sub } = await data(v.skulls);
    const epochs = Math.max(1, Math.round((steps * BATCH) / ds.length));
    log(`${v.name}: ${v.change}; ${ds.length} volumes, ${epochs} epochs ≈ ${epochs * Math.ceil(ds.length / BATCH)} steps a stage`);
    const curveOf = (es: EpochInfo[]): StageScores['curve'] => es.map((e) => ({ epoch: e.epoch, step: e.epoch * Math.ceil(ds.length / BATCH), dice: e.validation['dice'] ?? NaN, loss: e.loss }));
    // Stage 1, shared between variants with the same stage-1 settings.
    const key = stage1Key(v, steps);
    const ckpt = path.join(stage1Dir, `${key}.safetensors`);
    let vae: Vae;
    let curve1: StageScores['curve'];
    try {
      vae = await Vae.load(ckpt);
      curve1 = JSON.parse(await readFile(ckpt + '.curve.json', 'utf8')) as StageScores['curve'];
      log(`  stage 1: reusing ${ckpt}`);
    } catch {
      vae = await Vae.create(config, { seed });
      const r = await new Trainer(vae, ds, {
        epochs, batchSize: BATCH, seed, beta: v.beta, optimizer: { kind: 'adam', lr: v.lr }, validation: test,
        onEpoch: (e) => {
          if (e.epoch % Math.max(1, Math.round(epochs / 5)) === 0 || e.epoch === epochs) log(`  stage 1 epoch ${e.epoch}/${epochs}: loss/vol ${e.loss.toFixed(2)}, KL/vol ${e.klPerSample.toFixed(3)}, held-out Dice ${(e.validation['dice'] ?? NaN).toFixed(3)}`);
        },
      }).run();
      curve1 = curveOf(r.epochs);
      await vae.save(ckpt);
      await writeFileAtomic(ckpt + '.curve.json', new TextEncoder().encode(JSON.stringify(curve1)));
    }
    try {
      const encTrain = await encodeDataset(vae, ds, { batchSize: 8 });
      const encTest = await encodeDataset(vae, test, { batchSize: 8 });
      const fac = new Map<string, SkullFactors>();
      synth.skulls.forEach((s) => fac.set(s.id, s.factors));
      testSynth.skulls.forEach((s) => fac.set(`test:${s.id}`, s.factors));
      const latent = latentDiagnostics(encTrain, { ...encTest, pairIds: encTest.pairIds.map((id) => `test:${id}`) }, fac);
      const muSpread = Math.sqrt(mean(latent.muVariance));
      const stage1 = { heldOutDice: mean(await reconstructionScores(vae, test)), trainingDice: mean(await reconstructionScores(vae, sub)), curve: curve1, latent, muSpread };
      log(`  stage 1: held-out Dice ${stage1.heldOutDice.toFixed(3)}, training ${stage1.trainingDice.toFixed(3)}; KL/vol ${latent.kl.toFixed(3)}, active units ${latent.activeUnits}, std of μ ${muSpread.toExponential(2)}, probe R² (mean) ${mean(Object.values(latent.probeR2)).toFixed(2)}`);
      let stage2: StageScores | null = null;
      if (!v.stage1Only) {
        const r2 = await trainStage2(vae, {
          train: ds, validation: test, seed, decoderConfig: v.stage2Decoder === 'monai' ? config : stage2DecoderConfig(config),
          trainer: {
            epochs, batchSize: BATCH, optimizer: { kind: 'adam', lr: v.lr }, latent: v.stage2Latent,
            onEpoch: (e) => {
              if (e.epoch % Math.max(1, Math.round(epochs / 5)) === 0 || e.epoch === epochs) log(`  stage 2 epoch ${e.epoch}/${epochs}: recon/vol ${e.recon.toFixed(2)}, held-out Dice ${(e.validation['dice'] ?? NaN).toFixed(3)}`);
            },
          },
        });
        stage2 = { heldOutDice: mean(await reconstructionScores(vae, test)), trainingDice: mean(await reconstructionScores(vae, sub)), curve: curveOf(r2.epochs) };
        log(`  stage 2: held-out Dice ${stage2.heldOutDice.toFixed(3)}, training ${stage2.trainingDice.toFixed(3)} (evaluated on ${vae.evalLatent})`);
      }
      rows = rows.filter((r) => r.variant.name !== v.name);
      rows.push({ variant: { ...v, steps }, stage1, stage2, seconds: (performance.now() - t0) / 1000 });
      await writeFileAtomic(resultsFile, new TextEncoder().encode(JSON.stringify({ seed, testSeed: seed + 1000, shape: SHAPE, channels: CHANNELS, latent: LATENT, batch: BATCH, rows }, (_, x) => (typeof x === 'number' && !Number.isFinite(x) ? null : x), 1)));
    } finally {
      vae.dispose();
    }
  }
  await writeAblationTables(o.out, rows);
  return rows;
}

const f = (v: number | null | undefined, d = 3): string => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '—');

/** Markdown tables and curves of the ablation (runs/ablation/table.md, curves.png). */
export async function writeAblationTables(out: string, rows: AblationRow[]): Promise<void> {
  const order = ABLATION_VARIANTS.map((v) => v.name);
  const sorted = [...rows].sort((a, b) => order.indexOf(a.variant.name) - order.indexOf(b.variant.name));
  const factors = Object.keys(sorted[0]?.stage1.latent.probeR2 ?? {});
  const md = [
    '| variant | change | steps a stage | stage 1 held-out Dice ↑ | stage 1 training Dice ↑ | stage 2 held-out Dice ↑ | stage 2 training Dice ↑ | KL / volume | active units | std of μ | probe R² mean ↑ | seconds |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...sorted.map((r) => `| ${r.variant.name} | ${r.variant.change} | ${r.variant.steps} | ${f(r.stage1.heldOutDice)} | ${f(r.stage1.trainingDice)} | ${f(r.stage2?.heldOutDice)} | ${f(r.stage2?.trainingDice)} | ${f(r.stage1.latent.kl, 3)} | ${r.stage1.latent.activeUnits} | ${r.stage1.muSpread.toExponential(1)} | ${f(mean(Object.values(r.stage1.latent.probeR2)), 2)} | ${r.seconds.toFixed(0)} |`),
    '',
    `| variant | ${factors.join(' | ')} |`,
    `|---|${factors.map(() => '---:').join('|')}|`,
    ...sorted.map((r) => `| ${r.variant.name} | ${factors.map((x) => f(r.stage1.latent.probeR2[x], 2)).join(' | ')} |`),
    '',
    '| variant | largest KL per dimension (nats, top 5) |',
    '|---|---|',
    ...sorted.map((r) => `| ${r.variant.name} | ${[...r.stage1.latent.klPerDim].sort((a, b) => b - a).slice(0, 5).map((x) => x.toExponential(1)).join(', ')} |`),
  ];
  await writeFile(path.join(out, 'table.md'), md.join('\n') + '\n');
  const series = sorted.filter((r) => r.stage2).map((r) => ({ name: r.variant.name, x: r.stage2!.curve.map((c) => c.step), y: r.stage2!.curve.map((c) => c.dice) }));
  if (series.length) await writePng(path.join(out, 'stage2_heldout_dice.png'), lineChart('Stage 2: held-out reconstruction Dice', series, { xLabel: 'stage-2 step', yLabel: 'Dice ↑', width: 760 }));
  const s1 = sorted.map((r) => ({ name: r.variant.name, x: r.stage1.curve.map((c) => c.step), y: r.stage1.curve.map((c) => c.dice) }));
  if (s1.length) await writePng(path.join(out, 'stage1_heldout_dice.png'), lineChart('Stage 1: held-out reconstruction Dice', s1, { xLabel: 'stage-1 step', yLabel: 'Dice ↑', width: 760 }));
}
