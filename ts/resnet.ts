// Rivera's pre-activation ResNet-v2 encoder and decoder (How2TrainUrVAE `vae.py`, 2D Keras) in 3D, as a
// preset next to the MONAI one. Blocks (BN → ReLU → conv everywhere, "v2"):
//   ConvTri(x, s)   BN→ReLU→Conv3³ → BN→ReLU→Conv3³ → BN→ReLU→Conv1³ stride s (the 1×1 conv resamples)
//   IdBlock(x)      x + ConvTri(x, 1)
//   DownBlock(x)    ConvTri(x, 2) + [BN→ReLU→Conv1³ stride 2](x)
//   UpBlock(x)      [BN→ReLU→Conv1³ → BN→ReLU→ConvT3³ s2](x) + [BN→ReLU→ConvT3³ s2](x)
// Encoder: Conv3³(F) → stages × (identityBlocks × IdBlock + DownBlock) → Conv1³(bottleneckChannels) →
//          flatten → Linear μ, Linear log σ²          (official: 6 stages, 2 identity blocks, F = 128)
// Decoder: Linear → reshape(bottleneckChannels, small) → Conv3³(F) → stages × (decoderIdentityBlocks ×
//          IdBlock + UpBlock) → Conv1³(outChannels) logits   (official: 1 identity block per stage)
// The official encoder's input LayerNormalization over (H, W) is left out (binary volumes need none).
// Convolutions keep their biases (Keras' default), so parameter counts follow the official model's.
// Builds the same BuiltNet {spec, nodeNames} as config.ts, with PyTorch-style names.
import { invalid } from './errors.js';
import { validateConfig, type BuiltNet, type VaeConfig } from './config.js';
import { Network } from './network.js';
import { Vae, type CreateOptions } from './vae.js';

export interface ResNetV2Options {
  /** Filters of every stage's blocks (official: 128). */
  filters: number;
  /** Resampling stages (official: 6 for 256² → 4²); every side must be divisible by 2^stages. */
  stages: number;
  /** Identity blocks per encoder stage (official 2) and per decoder stage (official 1). */
  encoderIdentityBlocks: number;
  decoderIdentityBlocks: number;
  /** Channels of the 1×1 conv before the latent linear layers (official: latent_dim / 8 = 64). */
  bottleneckChannels: number;
}

export const RESNET_V2_DEFAULTS: ResNetV2Options = { filters: 128, stages: 6, encoderIdentityBlocks: 2, decoderIdentityBlocks: 1, bottleneckChannels: 64 };

export function validateResNetV2(c: VaeConfig, o: Partial<ResNetV2Options>): ResNetV2Options {
  const r = { ...RESNET_V2_DEFAULTS, ...o };
  for (const [k, max] of [['filters', 8192], ['stages', 12], ['bottleneckChannels', 8192]] as const)
    if (!Number.isInteger(r[k]) || r[k] < 1 || r[k] > max) invalid(`resnet.${k}`, `must be an integer in [1, ${max}]`, r[k]);
  for (const k of ['encoderIdentityBlocks', 'decoderIdentityBlocks'] as const)
    if (!Number.isInteger(r[k]) || r[k] < 0 || r[k] > 16) invalid(`resnet.${k}`, 'must be an integer in [0, 16]', r[k]);
  const f = 2 ** r.stages;
  c.inputShape.forEach((d, a) => {
    if (d % f !== 0) invalid(`config.inputShape[${a}]`, `must be a multiple of 2^stages = ${f} for the ResNet-v2 preset (e.g. ${Math.max(f, Math.round(d / f) * f)}), or use fewer stages`, d);
  });
  return r;
}

class Builder {
  lines: string[] = [];
  names: (string | null)[] = [];
  constructor(private readonly c: VaeConfig) {}
  add(line: string, name: string | null = null): number {
    this.lines.push(line);
    this.names.push(name);
    return this.lines.length - 1;
  }
  bnRelu(x: number, name: string): number {
    x = this.add(`batch_norm3d in=${x} eps=${this.c.normEps} momentum=${this.c.normMomentum} affine=1`, name);
    return this.add(`relu in=${x}`);
  }
  conv(x: number, cout: number, k: number, s: number, name: string): number {
    return this.add(`conv3d in=${x} cout=${cout} k=${k} s=${s} p=${(k - 1) / 2} bias=1`, name);
  }
  convT(x: number, cout: number, name: string): number {
    return this.add(`conv_transpose3d in=${x} cout=${cout} k=3 s=2 p=1 op=1 bias=1`, name);
  }
  /** ConvTri: three pre-activated convs, the last a 1×1 with stride s. */
  tri(x: number, f: number, s: number, p: string): number {
    x = this.conv(this.bnRelu(x, `${p}.bn1`), f, 3, 1, `${p}.conv1`);
    x = this.conv(this.bnRelu(x, `${p}.bn2`), f, 3, 1, `${p}.conv2`);
    return this.conv(this.bnRelu(x, `${p}.bn3`), f, 1, s, `${p}.conv3`);
  }
  id(x: number, f: number, p: string): number {
    return this.add(`add in=${x},${this.tri(x, f, 1, p)}`);
  }
  down(x: number, f: number, p: string): number {
    const main = this.tri(x, f, 2, p);
    const sc = this.conv(this.bnRelu(x, `${p}.shortcut.bn`), f, 1, 2, `${p}.shortcut.conv`);
    return this.add(`add in=${main},${sc}`);
  }
  up(x: number, f: number, p: string): number {
    let m = this.conv(this.bnRelu(x, `${p}.bn1`), f, 1, 1, `${p}.conv1`);
    m = this.convT(this.bnRelu(m, `${p}.bn2`), f, `${p}.conv2`);
    const sc = this.convT(this.bnRelu(x, `${p}.shortcut.bn`), f, `${p}.shortcut.conv`);
    return this.add(`add in=${m},${sc}`);
  }
  build(outputs: number[]): BuiltNet {
    return { spec: [...this.lines, `output ${outputs.join(' ')}`].join('\n'), nodeNames: this.names };
  }
}

/** Encoder: x → (μ, log σ²); names encoder.stem, encoder.stages.{s}.{id{b},down}.*, encoder.head, mu, logvar. */
export function buildResNetV2Encoder(config: VaeConfig, opts: Partial<ResNetV2Options> = {}): BuiltNet {
  const c = validateConfig(config), o = validateResNetV2(c, opts);
  const b = new Builder(c);
  let x = b.add(`input c=${c.inChannels} d=${c.inputShape[0]} h=${c.inputShape[1]} w=${c.inputShape[2]}`);
  x = b.conv(x, o.filters, 3, 1, 'encoder.stem');
  for (let s = 0; s < o.stages; s++) {
    for (let k = 0; k < o.encoderIdentityBlocks; k++) x = b.id(x, o.filters, `encoder.stages.${s}.id${k}`);
    x = b.down(x, o.filters, `encoder.stages.${s}.down`);
  }
  x = b.conv(x, o.bottleneckChannels, 1, 1, 'encoder.head');
  const flat = b.add(`flatten in=${x}`);
  const mu = b.add(`linear in=${flat} out=${c.latentSize} bias=1`, 'mu');
  const lv = b.add(`linear in=${flat} out=${c.latentSize} bias=1`, 'logvar');
  return b.build([mu, lv]);
}

/** Decoder: z → logits [outChannels, D, H, W]; names decoder.fc, decoder.stem, decoder.stages.{s}.{id{b},up}.*, decoder.head. */
export function buildResNetV2Decoder(config: VaeConfig, opts: Partial<ResNetV2Options> = {}): BuiltNet {
  const c = validateConfig(config), o = validateResNetV2(c, opts);
  const b = new Builder(c);
  const f = 2 ** o.stages;
  const small = c.inputShape.map((d) => d / f);
  let x = b.add(`input c=${c.latentSize} d=1 h=1 w=1`);
  x = b.add(`linear in=${x} out=${o.bottleneckChannels * small[0]! * small[1]! * small[2]!} bias=1`, 'decoder.fc');
  x = b.add(`reshape in=${x} c=${o.bottleneckChannels} d=${small[0]} h=${small[1]} w=${small[2]}`);
  x = b.conv(x, o.filters, 3, 1, 'decoder.stem');
  for (let s = 0; s < o.stages; s++) {
    for (let k = 0; k < o.decoderIdentityBlocks; k++) x = b.id(x, o.filters, `decoder.stages.${s}.id${k}`);
    x = b.up(x, o.filters, `decoder.stages.${s}.up`);
  }
  x = b.conv(x, c.outChannels, 1, 1, 'decoder.head');
  return b.build([x]);
}

/**
 * A Vae whose encoder and decoder are the ResNet-v2 preset (config gives shapes, channels, latent size,
 * output activation and BN settings; its MONAI `channels`/`strides` are not used). It trains with
 * Vae.trainStep or riveraTrainStep and saves with Vae.save; Vae.load rebuilds the MONAI layout, so to
 * reload, create the model again with this function and call network.loadStateDict on encoder and decoder.
 */
export async function createResNetV2Vae(config: VaeConfig, opts: CreateOptions & { resnet?: Partial<ResNetV2Options> } = {}): Promise<Vae> {
  const enc = buildResNetV2Encoder(config, opts.resnet), dec = buildResNetV2Decoder(config, opts.resnet);
  const vae = await Vae.create(config, opts);
  const seed = vae.seed;
  // Swap the MONAI networks for the ResNet ones (same seeds as Encoder/Decoder use).
  vae.encoder.network.dispose();
  vae.decoder.network.dispose();
  (vae.encoder as { network: Network }).network = new Network(enc, seed);
  (vae.decoder as { network: Network }).network = new Network(dec, seed + 1);
  return vae;
}
