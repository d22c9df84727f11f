// The WebAssembly benchmarks' model: a native Decoder of one of bench/models.ts's models with seeded random
// weights, the same weights as a decoder checkpoint (safetensors bytes with voxvae metadata, what
// loadModel() reads), and a fixed latent.
import { MODELS, modelConfig, type ModelName } from './models.js';
import { serializeSafetensors } from '../ts/safetensors.js';
import type { VaeConfig } from '../ts/config.js';
import { Decoder } from '../ts/vae.js';

export function decoderCheckpoint(name: ModelName, seed = 7): { cfg: VaeConfig; dec: Decoder; checkpoint: Uint8Array; z: Float32Array } {
  const cfg = modelConfig(MODELS[name]);
  const dec = new Decoder(cfg, { seed });
  const checkpoint = serializeSafetensors(dec.network.stateDict(), {
    voxvae: JSON.stringify({ format: 'voxvae-checkpoint', version: 1, kind: 'decoder', config: cfg, decoderConfig: cfg }),
  });
  const z = Float32Array.from({ length: cfg.latentSize }, (_, i) => Math.sin(1.3 * i + 0.5));
  return { cfg, dec, checkpoint, z };
}
