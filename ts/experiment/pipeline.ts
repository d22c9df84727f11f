// The main job (`voxvae pipeline`, meant for `npm start`): the two-stage aggregated VAE on the
// built-in synthetic skulls — stage 1 β-VAE (β = 100), stage 2 a new decoder on the frozen encoder —
// then shape completion z + γ·DEV, the table printed and the report written. It is the beta-tradeoff
// experiment restricted to the β = 100 VAE and the aggregated VAE built on it.
import { runBetaTradeoff, type BetaTradeoffOptions, type MethodRow } from './beta_tradeoff.js';

export type PipelineOptions = Omit<BetaTradeoffOptions, 'methods'>;

export function runPipeline(o: PipelineOptions): Promise<{ rows: MethodRow[]; reportFile: string }> {
  return runBetaTradeoff({ ...o, methods: ['vae-100', 'aggregated'] });
}
