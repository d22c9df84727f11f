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
import { validateConfig, validateResNetV2, type BuiltNet, type ResNetV2Options, type VaeConfig } from './config.js';

export { RESNET_V2_DEFAULTS, validateResNetV2, type ResNetV2Options } from './config.js';

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
