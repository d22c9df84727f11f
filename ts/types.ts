// The vocabulary shared by the native API (ts/vae.ts), voxvae/web (ts/wasm) and the checkpoint format:
// one type, one spelling per concept. Node-free.

/** The engine a model runs on: 'cpu' (default), 'cuda' (EUNSUPPORTED with the reason when unusable) or
 *  'auto' (CUDA when it works, else the CPU with a one-line note). See ts/backend.ts. */
export type Backend = 'cpu' | 'cuda' | 'auto';
export const BACKENDS: readonly Backend[] = ['cpu', 'cuda', 'auto'];

/** How z is formed from (μ, log σ²): 'sample' = μ + σ·ε (ε from the Philox stream (seed, step)),
 *  'mean' = μ, 'mean+std' = μ + σ (MONAI's eval-mode reparameterize). */
export type LatentMode = 'sample' | 'mean' | 'mean+std';
export const LATENT_MODES: readonly LatentMode[] = ['sample', 'mean', 'mean+std'];

/** The deterministic latents inference uses. */
export type EvalLatent = 'mean' | 'mean+std';
export const EVAL_LATENTS: readonly EvalLatent[] = ['mean', 'mean+std'];

/** The evaluation latent of a decoder trained on `trained`: μ + σ stays μ + σ; μ and samples μ + σ·ε give μ. */
export function evalLatentOf(trained: LatentMode): EvalLatent {
  return trained === 'mean+std' ? 'mean+std' : 'mean';
}

/** What decode returns: 'probabilities' (the config's outputActivation; default), 'logits' (raw), or
 *  'mask' (Uint8Array labels: the most probable class, or probability > 0.5 for one channel). */
export type OutputKind = 'probabilities' | 'logits' | 'mask';
export const OUTPUT_KINDS: readonly OutputKind[] = ['probabilities', 'logits', 'mask'];

/** BatchNorm statistics and dropout: 'train' (batch statistics) or 'eval' (running statistics). */
export type Mode = 'train' | 'eval';
export const MODES: readonly Mode[] = ['train', 'eval'];
