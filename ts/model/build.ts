// The presets as graphs: MONAI's VarAutoEncoder encoder/decoder and skullVAE's stage-2 decoder, Rivera's
// pre-activation ResNet-v2 encoder/decoder, and Rivera's PatchGAN discriminator. One builder API
// (GraphBuilder, ts/model/graph.ts) for all; configs and their validation stay in ts/config.ts and
// ts/discriminator.ts, which import nothing from here. Node names are the PyTorch/MONAI parameter prefixes.
//
// ResNet-v2 (How2TrainUrVAE `vae.py`, 2D Keras, in 3D). Blocks (BN → ReLU → conv everywhere, "v2"):
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
//
// PatchGAN (How2TrainUrVAE `discriminator.py`): six 3×3×3 convolutions with strides (2, 2, 2, 1, 1, 1),
// BatchNorm after every convolution (the last one too), LeakyReLU after all but the last, Dropout after
// every layer; names layers.{i}.conv / layers.{i}.bn.
import { bottleneckShape, validateConfig, validateResNetV2, type ResNetV2Options, type VaeConfig } from '../config.js';
import { discriminatorFilters, validateDiscriminatorConfig, type DiscriminatorConfig } from '../discriminator.js';
import { Graph, GraphBuilder } from './graph.js';

function normAct(b: GraphBuilder, c: VaeConfig, x: number, channels: number, prefix: string): number {
  if (c.norm === 'batch') x = b.batchNorm3d(x, { eps: c.normEps, momentum: c.normMomentum }, `${prefix}.N`);
  else if (c.norm === 'instance') x = b.instanceNorm3d(x, { eps: c.normEps });
  if (c.activation === 'prelu') x = b.prelu(x, c.preluPerChannel ? channels : 1, `${prefix}.A`);
  else if (c.activation === 'relu') x = b.relu(x);
  else x = b.leakyRelu(x, c.leakySlope);
  return x;
}

/** Encoder: x [inChannels, D, H, W] → (mu [latent], logvar [latent]); MONAI names encode.encode_i.*, mu, logvar. */
export function buildEncoder(c: VaeConfig): Graph {
  if (c.architecture === 'resnet-v2') return buildResNetV2Encoder(c, c.resnet);
  const b = new GraphBuilder();
  const k = c.kernelSize;
  let x = b.input(c.inChannels, ...c.inputShape);
  c.channels.forEach((ch, i) => {
    x = b.conv3d(x, { cout: ch, k, s: c.strides[i]! }, `encode.encode_${i}.conv`);
    x = normAct(b, c, x, ch, `encode.encode_${i}.adn`);
  });
  const flat = b.flatten(x);
  const mu = b.linear(flat, c.latentSize, 'mu');
  const lv = b.linear(flat, c.latentSize, 'logvar');
  return b.build([mu, lv]);
}

/** Decoder: z [latent] → logits [outChannels, D, H, W]; names decodeL, decode.decode_i.conv.{conv,adn.N,adn.A}. */
export function buildDecoder(c: VaeConfig): Graph {
  if (c.architecture === 'resnet-v2') return buildResNetV2Decoder(c, c.resnet);
  const b = new GraphBuilder();
  const k = c.kernelSize;
  const small = bottleneckShape(c);
  const last = c.channels[c.channels.length - 1]!;
  let x = b.input(c.latentSize, 1, 1, 1);
  x = b.linear(x, last * small[0] * small[1] * small[2], 'decodeL');
  x = b.relu(x);
  x = b.reshape(x, last, ...small);
  const outs = [...c.channels.slice(0, -1).reverse(), c.outChannels];
  const strides = [...c.strides].reverse();
  outs.forEach((ch, i) => {
    const isLast = i === outs.length - 1;
    x = b.convTranspose3d(x, { cout: ch, k, s: strides[i]! }, `decode.decode_${i}.conv.conv`);
    if (c.decoderBlock === 'skullvae') {
      x = normAct(b, c, x, ch, `decode.decode_${i}.conv.adn`);
      x = b.relu(x);
    } else if (!isLast) {
      x = normAct(b, c, x, ch, `decode.decode_${i}.conv.adn`);
    }
  });
  return b.build([x]);
}

/** ResNet-v2 blocks on a GraphBuilder. */
class ResNetV2Blocks {
  constructor(readonly b: GraphBuilder, private readonly c: VaeConfig) {}
  bnRelu(x: number, name: string): number {
    return this.b.relu(this.b.batchNorm3d(x, { eps: this.c.normEps, momentum: this.c.normMomentum }, name));
  }
  conv(x: number, cout: number, k: number, s: number, name: string): number {
    return this.b.conv3d(x, { cout, k, s }, name);
  }
  convT(x: number, cout: number, name: string): number {
    return this.b.convTranspose3d(x, { cout, k: 3, s: 2, p: 1, op: 1 }, name);
  }
  /** ConvTri: three pre-activated convs, the last a 1×1 with stride s. */
  tri(x: number, f: number, s: number, p: string): number {
    x = this.conv(this.bnRelu(x, `${p}.bn1`), f, 3, 1, `${p}.conv1`);
    x = this.conv(this.bnRelu(x, `${p}.bn2`), f, 3, 1, `${p}.conv2`);
    return this.conv(this.bnRelu(x, `${p}.bn3`), f, 1, s, `${p}.conv3`);
  }
  id(x: number, f: number, p: string): number {
    return this.b.addNodes(x, this.tri(x, f, 1, p));
  }
  down(x: number, f: number, p: string): number {
    const main = this.tri(x, f, 2, p);
    const sc = this.conv(this.bnRelu(x, `${p}.shortcut.bn`), f, 1, 2, `${p}.shortcut.conv`);
    return this.b.addNodes(main, sc);
  }
  up(x: number, f: number, p: string): number {
    let m = this.conv(this.bnRelu(x, `${p}.bn1`), f, 1, 1, `${p}.conv1`);
    m = this.convT(this.bnRelu(m, `${p}.bn2`), f, `${p}.conv2`);
    const sc = this.convT(this.bnRelu(x, `${p}.shortcut.bn`), f, `${p}.shortcut.conv`);
    return this.b.addNodes(m, sc);
  }
}

/** ResNet-v2 encoder: x → (μ, log σ²); names encoder.stem, encoder.stages.{s}.{id{b},down}.*, encoder.head, mu, logvar. */
export function buildResNetV2Encoder(config: VaeConfig, opts: Partial<ResNetV2Options> = {}): Graph {
  const c = validateConfig(config), o = validateResNetV2(c, opts);
  const r = new ResNetV2Blocks(new GraphBuilder(), c), b = r.b;
  let x = b.input(c.inChannels, ...c.inputShape);
  x = r.conv(x, o.filters, 3, 1, 'encoder.stem');
  for (let s = 0; s < o.stages; s++) {
    for (let k = 0; k < o.encoderIdentityBlocks; k++) x = r.id(x, o.filters, `encoder.stages.${s}.id${k}`);
    x = r.down(x, o.filters, `encoder.stages.${s}.down`);
  }
  x = r.conv(x, o.bottleneckChannels, 1, 1, 'encoder.head');
  const flat = b.flatten(x);
  const mu = b.linear(flat, c.latentSize, 'mu');
  const lv = b.linear(flat, c.latentSize, 'logvar');
  return b.build([mu, lv]);
}

/** ResNet-v2 decoder: z → logits [outChannels, D, H, W]; names decoder.fc, decoder.stem, decoder.stages.{s}.{id{b},up}.*, decoder.head. */
export function buildResNetV2Decoder(config: VaeConfig, opts: Partial<ResNetV2Options> = {}): Graph {
  const c = validateConfig(config), o = validateResNetV2(c, opts);
  const r = new ResNetV2Blocks(new GraphBuilder(), c), b = r.b;
  const f = 2 ** o.stages;
  const [sd, sh, sw] = c.inputShape.map((d) => d / f) as [number, number, number];
  let x = b.input(c.latentSize, 1, 1, 1);
  x = b.linear(x, o.bottleneckChannels * sd * sh * sw, 'decoder.fc');
  x = b.reshape(x, o.bottleneckChannels, sd, sh, sw);
  x = r.conv(x, o.filters, 3, 1, 'decoder.stem');
  for (let s = 0; s < o.stages; s++) {
    for (let k = 0; k < o.decoderIdentityBlocks; k++) x = r.id(x, o.filters, `decoder.stages.${s}.id${k}`);
    x = r.up(x, o.filters, `decoder.stages.${s}.up`);
  }
  x = r.conv(x, c.outChannels, 1, 1, 'decoder.head');
  return b.build([x]);
}

/** PatchGAN discriminator; names layers.{i}.conv.{weight,bias}, layers.{i}.bn.{weight,bias,running_*}. */
export function buildDiscriminator(c: DiscriminatorConfig): Graph {
  const cfg = validateDiscriminatorConfig(c);
  const b = new GraphBuilder();
  let x = b.input(cfg.inChannels, ...cfg.inputShape);
  const filters = discriminatorFilters(cfg);
  filters.forEach((f, i) => {
    x = b.conv3d(x, { cout: f, k: cfg.kernelSize, s: cfg.strides[i]! }, `layers.${i}.conv`);
    x = b.batchNorm3d(x, { eps: cfg.normEps, momentum: cfg.normMomentum }, `layers.${i}.bn`);
    if (i < filters.length - 1) x = b.leakyRelu(x, cfg.leakySlope);
    if (cfg.dropout > 0) x = b.dropout(x, cfg.dropout);
  });
  return b.build([x]);
}
