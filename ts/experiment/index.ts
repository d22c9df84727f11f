// Experiments: the β trade-off comparison and the main pipeline.
export * from './beta_tradeoff.js';
export * from './pipeline.js';
