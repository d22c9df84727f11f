// Evaluation shared by the main job (pipeline), the ablation and the β trade-off experiment. Every
// measure uses the model's evaluation latent (Vae.evalLatent: the latent its decoder was trained on).
//   reconstruction  Dice of decode(z(x)) against x, per volume;
//   latent          KL per latent dimension, active units, Gaussian fits of the μ's and of the aggregate
//                   posterior, and a linear probe: how much of each generating factor of the synthetic
//                   skulls a least-squares map of the μ's recovers on held-out skulls (R²);
//   generation      prior samples z ~ N(0, I) decoded: plausibility (Dice to the nearest training skull)
//                   and diversity (mean pairwise Dice: lower is more diverse);
//   completion      per defect class and method: implant Dice, implant HD95 (mm), whole-skull Dice.
import type { VolumeDataset } from '../data/dataset.js';
import type { SyntheticDataset, SkullFactors } from '../data/synth/index.js';
import { completeSkulls, extractImplant, maskFromLogits, type CompletionResult } from '../completion/index.js';
import type { EncodedDataset } from '../latent/index.js';
import { samplePrior } from '../latent/index.js';
import { latentStatistics } from '../metrics/latent.js';
import { dice } from '../metrics/overlap.js';
import { hausdorffDistance95 } from '../metrics/surface.js';
import type { Vae } from '../vae.js';

type Shape3 = [number, number, number];

const rowsOf = (a: Float32Array, n: number, k: number): number[][] => Array.from({ length: n }, (_, i) => Array.from(a.subarray(i * k, (i + 1) * k)));
export const mean = (a: readonly number[]): number => (a.length ? a.reduce((s, v) => s + v, 0) / a.length : NaN);

/** Foreground masks of decoded logits (probability > 0.5). */
function masksOf(logits: Float32Array, n: number, C: number, S: number): Uint8Array[] {
  return Array.from({ length: n }, (_, b) => maskFromLogits(logits, b, C, S, 0.5));
}

/** Reconstruction Dice of every volume of `ds` (z = the model's evaluation latent), in dataset order. */
export async function reconstructionScores(vae: Vae, ds: VolumeDataset, batchSize = 8, onProgress?: (done: number, total: number) => void): Promise<number[]> {
  const [D, H, W] = vae.config.inputShape;
  const S = D * H * W, shape: Shape3 = [D, H, W];
  const out: number[] = [];
  for await (const b of ds.batches({ batchSize, shuffle: false, prefetch: 0 })) {
    const { recon } = await vae.forward(b.input, { mode: 'eval', latent: vae.evalLatent, output: 'logits', batch: b.items.length });
    const masks = masksOf(recon, b.items.length, vae.decoder.config.outChannels, S);
    masks.forEach((m, i) => out.push(dice({ data: m, shape }, { data: b.input.subarray(i * S, (i + 1) * S), shape })));
    onProgress?.(out.length, ds.length);
  }
  return out;
}

export interface LatentDiagnostics {
  /** Mean KL(q(z_j|x) ‖ N(0, 1)) per dimension over the training volumes, nats. */
  klPerDim: number[];
  /** Their sum: KL per volume. */
  kl: number;
  activeUnits: number;
  /** Var(μ_j) over the training volumes. */
  muVariance: number[];
  /** KL of the Gaussian fitted to the μ's from N(0, I). */
  gaussKl: number;
  /** KL of the moment-matched aggregate posterior (μ's and σ's) from N(0, I): what the prior samples see. */
  aggregateKl: number;
  /** R² on held-out complete skulls of a ridge-regression map μ → factor fitted on training ones (penalty
   *  by 5-fold cross-validation); about 0 when μ carries nothing linear about the factor. */
  probeR2: Record<string, number>;
}

/** The generating factors the linear probe predicts. */
export const PROBE_FACTORS: (keyof SkullFactors)[] = ['size', 'aspectWidth', 'aspectHeight', 'thickness', 'faceDepth', 'faceWidth', 'asymmetry', 'warpAmplitude'];

/** Ridge regression on standardised inputs with penalty lambda·n; returns a predictor. */
function fitRidge(X: number[][], y: number[], lambda: number): (x: number[]) => number {
  const n = X.length, k = X[0]!.length;
  const mu = Array.from({ length: k }, (_, j) => mean(X.map((r) => r[j]!)));
  const sd = Array.from({ length: k }, (_, j) => Math.sqrt(mean(X.map((r) => (r[j]! - mu[j]!) ** 2))) || 1);
  const Z = X.map((r) => [1, ...r.map((v, j) => (v - mu[j]!) / sd[j]!)]);
  const p = k + 1;
  const A = Array.from({ length: p }, () => new Float64Array(p));
  const bvec = new Float64Array(p);
  for (let i = 0; i < n; i++)
    for (let a = 0; a < p; a++) {
      bvec[a]! += Z[i]![a]! * y[i]!;
      for (let c = 0; c < p; c++) A[a]![c]! += Z[i]![a]! * Z[i]![c]!;
    }
  for (let a = 1; a < p; a++) A[a]![a]! += lambda * n;
  // Gaussian elimination with partial pivoting.
  const M = A.map((r, i) => [...r, bvec[i]!]);
  for (let c = 0; c < p; c++) {
    let piv = c;
    for (let r = c + 1; r < p; r++) if (Math.abs(M[r]![c]!) > Math.abs(M[piv]![c]!)) piv = r;
    [M[c], M[piv]] = [M[piv]!, M[c]!];
    const d = M[c]![c]! || 1e-12;
    for (let r = 0; r < p; r++) {
      if (r === c) continue;
      const f = M[r]![c]! / d;
      for (let q = c; q <= p; q++) M[r]![q]! -= f * M[c]![q]!;
    }
  }
  const w = M.map((r, i) => r[p]! / (r[i]! || 1e-12));
  return (x) => w[0]! + x.reduce((s, v, j) => s + w[j + 1]! * ((v - mu[j]!) / sd[j]!), 0);
}

const RIDGE_LAMBDAS = [1e-4, 1e-3, 1e-2, 1e-1, 1, 10];

/** The linear probe: ridge regression whose penalty is chosen by 5-fold cross-validation on the training rows. */
function fitLinear(X: number[][], y: number[]): (x: number[]) => number {
  const folds = 5;
  let best = RIDGE_LAMBDAS[0]!, bestErr = Infinity;
  for (const lambda of RIDGE_LAMBDAS) {
    let err = 0;
    for (let f = 0; f < folds; f++) {
      const tr = X.map((_, i) => i).filter((i) => i % folds !== f), va = X.map((_, i) => i).filter((i) => i % folds === f);
      const predict = fitRidge(tr.map((i) => X[i]!), tr.map((i) => y[i]!), lambda);
      for (const i of va) err += (predict(X[i]!) - y[i]!) ** 2;
    }
    if (err < bestErr) (bestErr = err), (best = lambda);
  }
  return fitRidge(X, y, best);
}

function r2(pred: number[], y: number[]): number {
  const m = mean(y);
  const ssTot = y.reduce((s, v) => s + (v - m) ** 2, 0), ssRes = y.reduce((s, v, i) => s + (v - pred[i]!) ** 2, 0);
  return ssTot > 0 ? 1 - ssRes / ssTot : NaN;
}

/** Latent diagnostics from encodings of training and held-out volumes and the skulls' factors by pairId. */
export function latentDiagnostics(train: EncodedDataset, test: EncodedDataset, factors: Map<string, SkullFactors>): LatentDiagnostics {
  const { k, n } = train;
  const klPerDim = new Array<number>(k).fill(0);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < k; j++) {
      const m = train.mu[i * k + j]!, s = train.sigma[i * k + j]!;
      klPerDim[j]! += (0.5 * (m * m + s * s - 1) - Math.log(s)) / n;
    }
  const stats = latentStatistics(rowsOf(train.mu, n, k), { sigma: rowsOf(train.sigma, n, k) });
  const probeR2: Record<string, number> = {};
  const completes = (e: EncodedDataset): number[] => e.labels.map((l, i) => (l === 'complete' && factors.has(e.pairIds[i]!) ? i : -1)).filter((i) => i >= 0);
  const tr = completes(train), te = completes(test);
  if (tr.length > k + 2 && te.length > 2) {
    const X = tr.map((i) => Array.from(train.mu.subarray(i * k, (i + 1) * k)));
    const Xt = te.map((i) => Array.from(test.mu.subarray(i * k, (i + 1) * k)));
    for (const f of PROBE_FACTORS) {
      const y = tr.map((i) => Number(factors.get(train.pairIds[i]!)![f]));
      const yt = te.map((i) => Number(factors.get(test.pairIds[i]!)![f]));
      const predict = fitLinear(X, y);
      probeR2[f] = r2(Xt.map(predict), yt);
    }
  }
  return {
    klPerDim,
    kl: klPerDim.reduce((a, b) => a + b, 0),
    activeUnits: stats.activeUnits,
    muVariance: stats.variance,
    gaussKl: stats.klFull,
    aggregateKl: stats.aggregateKlFull ?? NaN,
    probeR2,
  };
}

export interface GenerationScores {
  samples: number;
  /** Mean over samples of the Dice to the nearest training skull (higher: more skull-like). */
  plausibility: number;
  /** Mean Dice between pairs of samples (lower: more diverse). */
  pairwiseDice: number;
  /** For comparison: mean pairwise Dice of the training skulls compared. */
  trainingPairwiseDice: number;
  /** A few decoded samples (masks) for figures. */
  examples: Uint8Array[];
}

/** Decodes `n` prior samples z ~ N(0, I) and scores them against training skulls. */
export async function generationScores(vae: Vae, references: readonly Uint8Array[], n = 16, seed = 0): Promise<GenerationScores> {
  const [D, H, W] = vae.decoder.config.inputShape;
  const S = D * H * W, shape: Shape3 = [D, H, W];
  const z = samplePrior(n, vae.config.latentSize, seed);
  const logits = await vae.decode(z, { mode: 'eval', output: 'logits' });
  const masks = masksOf(logits, n, vae.decoder.config.outChannels, S);
  const d = (a: Uint8Array, b: Uint8Array): number => dice({ data: a, shape }, { data: b, shape });
  const plaus = masks.map((m) => Math.max(...references.map((r) => d(m, r))));
  const pairs: number[] = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) pairs.push(d(masks[i]!, masks[j]!));
  const refPairs: number[] = [];
  const rn = Math.min(references.length, n);
  for (let i = 0; i < rn; i++) for (let j = i + 1; j < rn; j++) refPairs.push(d(references[i]!, references[j]!));
  return { samples: n, plausibility: mean(plaus), pairwiseDice: mean(pairs), trainingPairwiseDice: mean(refPairs), examples: masks.slice(0, 4) };
}

export type CompletionMethodName = 'input' | 'mean-skull' | 'nearest' | 'dev-raw' | 'dev' | 'fit';
export const COMPLETION_METHOD_LABELS: Record<CompletionMethodName, string> = {
  input: 'defective input (no implant)',
  'mean-skull': 'mean complete training skull',
  nearest: 'nearest complete training skull (latent)',
  'dev-raw': "z + γ·DEV, raw difference (the paper's)",
  dev: 'z + γ·DEV',
  fit: 'latent fitting',
};

export interface CaseScore {
  implantDice: number;
  /** mm; Infinity when exactly one of prediction and truth is empty. */
  implantHd95: number;
  skullDice: number;
}

export interface CompletionEvaluation {
  /** scores[method][class] = one entry per held-out case. */
  scores: Record<string, Record<string, CaseScore[]>>;
  /** Examples for figures: per class, the first cases' input, truth and each method's implant. */
  examples: { cls: string; id: string; input: Uint8Array; truth: Uint8Array; implants: Record<string, Uint8Array> }[];
  /** Seconds per method (all cases). */
  seconds: Record<string, number>;
}

/**
 * Completes every held-out skull's cranial and facial defect with each method and scores the implants.
 * `trainEnc`/`trainDs`: the training set and its encoding (the baselines' training skulls).
 */
export async function completionEvaluation(vae: Vae, test: SyntheticDataset, trainEnc: EncodedDataset, trainDs: VolumeDataset, opts: { methods?: CompletionMethodName[]; gamma?: number; examples?: number; onProgress?: (what: string) => void } = {}): Promise<CompletionEvaluation> {
  const data = vae.completion!;
  const shape = vae.decoder.config.inputShape as Shape3;
  const S = shape[0] * shape[1] * shape[2];
  const spacing = test.grid.spacing as Shape3;
  const methods = opts.methods ?? ['input', 'mean-skull', 'nearest', 'dev-raw', 'dev', 'fit'];
  const gamma = opts.gamma ?? 1;
  const k = vae.config.latentSize;
  // The baselines' training skulls: the complete ones, with their latents.
  const refRows = trainEnc.labels.map((l, i) => (l === 'complete' ? i : -1)).filter((i) => i >= 0);
  const refVols = await Promise.all(refRows.map(async (i) => (await trainDs.get(trainEnc.indices[i]!)).data));
  const meanSkull = new Uint8Array(S);
  {
    const acc = new Float32Array(S);
    for (const v of refVols) for (let s = 0; s < S; s++) acc[s]! += v[s]!;
    for (let s = 0; s < S; s++) meanSkull[s] = acc[s]! / refVols.length > 0.5 ? 1 : 0;
  }
  const scores: CompletionEvaluation['scores'] = {};
  const seconds: Record<string, number> = {};
  const examples: CompletionEvaluation['examples'] = [];
  const nEx = opts.examples ?? 3;
  const score = (completed: Uint8Array, implant: Uint8Array, truthImplant: Uint8Array, complete: Uint8Array): CaseScore => ({
    implantDice: dice({ data: implant, shape }, { data: truthImplant, shape }),
    implantHd95: hausdorffDistance95({ data: implant, shape }, { data: truthImplant, shape }, { spacing }),
    skullDice: dice({ data: completed, shape }, { data: complete, shape }),
  });
  for (const cls of data.classes) {
    const skulls = test.skulls.filter((s) => (cls === 'cranial' || cls === 'facial') && s[cls].implant);
    if (!skulls.length) continue;
    const inputs = skulls.map((s) => s[cls as 'cranial' | 'facial'].defective.data);
    const truths = skulls.map((s) => s[cls as 'cranial' | 'facial'].implant!.data);
    const region = data.defectMap[cls]!;
    skulls.slice(0, nEx).forEach((s, i) => examples.push({ cls, id: s.id, input: inputs[i]!, truth: truths[i]!, implants: {} }));
    const exOf = (i: number) => examples.find((e) => e.cls === cls && e.id === skulls[i]!.id);
    const record = (method: string, results: { completed: Uint8Array; implant: Uint8Array }[]): void => {
      ((scores[method] ??= {})[cls] = results.map((r, i) => score(r.completed, r.implant, truths[i]!, skulls[i]!.complete.data)));
      results.forEach((r, i) => {
        const ex = exOf(i);
        if (ex) ex.implants[method] = r.implant;
      });
    };
    const fromTemplate = (template: (i: number) => Uint8Array): { completed: Uint8Array; implant: Uint8Array }[] =>
      inputs.map((x, i) => {
        const implant = extractImplant(template(i), x, shape, { region });
        return { implant, completed: Uint8Array.from(x, (v, s) => (v || implant[s] ? 1 : 0)) };
      });
    for (const m of methods) {
      opts.onProgress?.(`completion: ${cls}, ${m}`);
      const t0 = performance.now();
      if (m === 'input') record(m, inputs.map((x) => ({ completed: x, implant: new Uint8Array(S) })));
      else if (m === 'mean-skull') record(m, fromTemplate(() => meanSkull));
      else if (m === 'nearest') {
        const x = new Float32Array(inputs.length * S);
        inputs.forEach((v, i) => {
          for (let s = 0; s < S; s++) x[i * S + s] = v[s]!;
        });
        const { z } = await vae.encodeLatent(x, { batch: inputs.length });
        const dev = data.dev[cls]!;
        const nearest = inputs.map((_, i) => {
          let best = 0, bd = Infinity;
          refRows.forEach((r, j) => {
            let d2 = 0;
            for (let q = 0; q < k; q++) d2 += (z[i * k + q]! + gamma * dev[q]! - trainEnc.z[r * k + q]!) ** 2;
            if (d2 < bd) (bd = d2), (best = j);
          });
          return best;
        });
        record(m, fromTemplate((i) => refVols[nearest[i]!]!));
      } else {
        const method = m === 'fit' ? 'fit' : 'dev';
        // In chunks, so that a long latent fitting reports its progress (the cases are independent).
        const res: CompletionResult[] = [];
        const chunk = 8;
        let beat = performance.now();
        for (let i = 0; i < inputs.length; i += chunk) {
          const part = inputs.slice(i, i + chunk);
          res.push(...(await completeSkulls(vae.completionModel(), part, part.map(() => cls), { method, gamma, clean: m !== 'dev-raw' })));
          if (performance.now() - beat > 5000 && i + chunk < inputs.length) {
            beat = performance.now();
            opts.onProgress?.(`completion: ${cls}, ${m}: ${res.length}/${inputs.length}`);
          }
        }
        if (m === 'dev-raw') {
          // The paper's implant: the decoded skull minus the input, everywhere.
          record(m, res.map((r, i) => {
            const implant = Uint8Array.from(r.decoded, (v, s) => (v && !inputs[i]![s] ? 1 : 0));
            return { implant, completed: Uint8Array.from(inputs[i]!, (v, s) => (v || implant[s] ? 1 : 0)) };
          }));
        } else record(m, res);
      }
      seconds[m] = (seconds[m] ?? 0) + (performance.now() - t0) / 1000;
    }
  }
  return { scores, examples, seconds };
}

/** Summary of case scores: means, and HD95 over the cases where it is finite (with their count). */
export function summarise(cases: readonly CaseScore[]): { implantDice: number; implantHd95: number; finiteHd: number; skullDice: number; n: number } {
  const hd = cases.map((c) => c.implantHd95).filter(Number.isFinite);
  return { implantDice: mean(cases.map((c) => c.implantDice)), implantHd95: mean(hd), finiteHd: hd.length, skullDice: mean(cases.map((c) => c.skullDice)), n: cases.length };
}
