// The demo page's logic: load a checkpoint from a file input, decode random latents to a mask with
// voxvae/web, and show one slice. Uses the compiled browser entry (dist/web, `npm run build:ts`) and the
// package's .wasm files (native/wasm/dist), both served from the repository root by web/serve.mjs.
import { loadModel, setWasmPath, wasmFeatures } from '../dist/web/index.js';

setWasmPath(new URL('../native/wasm/dist/', import.meta.url));

const $ = (id) => document.getElementById(id);
const status = (s) => ($('status').textContent = s);
let model = null;
let mask = null;

function gaussian() {
  const u = 1 - Math.random(), v = Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function draw() {
  if (!model || !mask) return;
  const [D, H, W] = model.decoderConfig.inputShape;
  const d = Number($('slice').value);
  const canvas = $('view');
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(W, H);
  const classes = Math.max(2, model.decoderConfig.outChannels);
  for (let h = 0; h < H; h++)
    for (let w = 0; w < W; w++) {
      const v = Math.round((255 * mask[(d * H + h) * W + w]) / (classes - 1));
      const o = 4 * (h * W + w);
      img.data[o] = img.data[o + 1] = img.data[o + 2] = v;
      img.data[o + 3] = 255;
    }
  ctx.putImageData(img, 0, 0);
}

$('file').addEventListener('change', async (ev) => {
  const f = ev.target.files[0];
  if (!f) return;
  try {
    status(`Loading ${f.name} ...`);
    model?.dispose();
    model = await loadModel(new Uint8Array(await f.arrayBuffer()), { name: f.name });
    const rt = model.runtime;
    const feats = wasmFeatures();
    status(`${f.name}: ${model.kind}, latent ${model.latentSize}, volume ${model.decoderConfig.inputShape.join('×')}\n` +
      `WebAssembly ${rt.simd ? 'SIMD' : 'scalar'}, ${rt.threads} thread(s)${rt.threadsUnavailable ? ` (${rt.threadsUnavailable})` : ''}; ` +
      `cross-origin isolated: ${self.crossOriginIsolated === true}, engine SIMD ${feats.simd}, threads ${feats.threads}`);
    $('sample').disabled = false;
    $('slice').max = String(model.decoderConfig.inputShape[0] - 1);
    $('slice').value = String(model.decoderConfig.inputShape[0] >> 1);
    $('slice').disabled = false;
  } catch (e) {
    status(`${e.code ?? 'Error'}: ${e.message}`);
  }
});

$('sample').addEventListener('click', async () => {
  const z = Float32Array.from({ length: model.latentSize }, gaussian);
  const t0 = performance.now();
  mask = await model.decode(z, { output: 'mask' });
  const ms = performance.now() - t0;
  status(`${$('status').textContent.split('\n').slice(0, 2).join('\n')}\ndecoded in ${ms.toFixed(0)} ms`);
  draw();
});

$('slice').addEventListener('input', draw);
