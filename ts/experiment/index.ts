// Experiments: the main pipeline, the ablation and the β trade-off comparison, with their shared evaluation.
export * from './beta_tradeoff.js';
export * from './pipeline.js';
export { runAblation, ABLATION_VARIANTS, type AblationOptions, type AblationRow, type AblationVariant } from './ablation.js';
export { completionEvaluation, generationScores, latentDiagnostics, reconstructionScores, type CompletionEvaluation, type GenerationScores, type LatentDiagnostics } from './evaluate.js';
