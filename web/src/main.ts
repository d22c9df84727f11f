// The voxvae browser app: skull completion and latent exploration with voxvae/web (WebAssembly) and
// Niivue (WebGL2). Every handler runs through `guard`, which turns any failure into a message in the page
// and leaves the previous model and skull in place; nothing is sent anywhere, every asset is local.
import { Niivue, SHOW_RENDER } from '@niivue/niivue';
import { VoxvaeError, loadModel, loadRuntime, parseSafetensors, setWasmPath, wasmFeatures, type WasmRuntime, type WasmVae } from '../../ts/web/index.js';
import type { Vec3, Volume } from '../../ts/data/volume.js';
import { decodeVolume, fileOrder, niftiBytes, niftiGzBlob, sniff, toInputGrid, toModelGrid, type ModelInput } from './volumes.js';
import { principalAxes, type PrincipalAxes } from './pca.js';

interface Example {
  name: string;
  defect: string;
  url: string;
  truth: string | null;
}

interface Loaded {
  model: WasmVae;
  name: string;
  bytes: number;
  meta: Record<string, unknown>;
  pca: PrincipalAxes | null;
  shipped: boolean;
}

interface Skull {
  name: string;
  input: ModelInput;
  /** The input's evaluation latent (null without an encoder). */
  z: Float32Array | null;
  /** The generator's true implant, for the shipped examples. */
  truth: Uint8Array | null;
  defect: string | null;
}

interface Result {
  implant: Uint8Array;
  completed: Uint8Array;
  method: string;
  gamma: number;
  z: Float32Array;
}

/** What the page exposes for tests and the curious (read-only use). */
export interface AppState {
  ready: boolean;
  busy: boolean;
  timings: Record<string, number>;
  /** Every timing taken, in order: [what, ms]. */
  log: [string, number][];
  firstRenderMs: number | null;
  message: { kind: 'error' | 'info'; text: string } | null;
  engine: { variant: string; threads: number; isolated: boolean } | null;
  lastResult: { method: string; implantVoxels: number; dice: number | null } | null;
  renders: number;
}

const PC_COUNT = 6;
const SHIPPED_MODEL = 'models/skull64-aggregated.safetensors';
const params = new URLSearchParams(location.search);

const app: AppState = { ready: false, busy: false, timings: {}, log: [], firstRenderMs: null, message: null, engine: null, lastResult: null, renders: 0 };
(window as unknown as { voxvaeApp: AppState }).voxvaeApp = app;

const $ = <T extends HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`the page lacks #${id}`);
  return e as T;
};

let runtime: WasmRuntime | null = null;
let current: Loaded | null = null;
let skull: Skull | null = null;
let result: Result | null = null;
let shown: { kind: 'skull' | 'latent'; z: Float32Array | null } = { kind: 'skull', z: null };
let latentA: Float32Array | null = null;
let latentB: Float32Array | null = null;
let examples: Example[] = [];
let nv: Niivue | null = null;
let nvShape: string | null = null;
/** Set by the Cancel button; latent fitting stops at its next step. */
let cancelRequested = false;

// ---------------------------------------------------------------------------------------------------
// Messages and the guard every handler runs in

function describeError(e: unknown): string {
  if (e instanceof VoxvaeError) return `${e.message}${e.code ? ` [${e.code}]` : ''}`;
  if (e instanceof Error) return e.message;
  return String(e);
}

function showMessage(kind: 'error' | 'info', text: string): void {
  const m = $('message');
  m.className = kind;
  m.textContent = text;
  m.hidden = false;
  app.message = { kind, text };
}

function clearMessage(): void {
  $('message').hidden = true;
  app.message = null;
}

/** Runs `fn` with the controls locked; any failure becomes a message in the page (never an uncaught error). */
async function guard(what: string, fn: () => Promise<void>): Promise<void> {
  if (app.busy) return;
  app.busy = true;
  syncControls();
  clearMessage(); // a message is about the last action; lasting notes live in the panel
  try {
    await fn();
  } catch (e) {
    showMessage('error', `${what} failed: ${describeError(e)}`);
  } finally {
    app.busy = false;
    syncControls();
  }
}

window.addEventListener('error', (ev) => {
  showMessage('error', `unexpected error: ${ev.message}`);
  ev.preventDefault();
});
window.addEventListener('unhandledrejection', (ev) => {
  showMessage('error', `unexpected error: ${describeError(ev.reason)}`);
  ev.preventDefault();
});

function timed<T>(what: string, ms: number, value: T): T {
  app.timings[what] = ms;
  app.log.push([what, ms]);
  renderTimings();
  return value;
}

function renderTimings(): void {
  const dl = $('timings');
  dl.replaceChildren();
  for (const [k, v] of Object.entries(app.timings)) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`;
    dl.append(dt, dd);
  }
}

const nextFrame = () => new Promise<void>((r) => setTimeout(r, 0));

// ---------------------------------------------------------------------------------------------------
// Engine and model

async function startEngine(): Promise<WasmRuntime> {
  setWasmPath(new URL('wasm/', location.href));
  const t = params.get('threads');
  const threads = t === null ? 'auto' : Math.max(1, Number(t) || 1);
  const rt = await loadRuntime({ threads });
  const isolated = globalThis.crossOriginIsolated === true;
  const variant = rt.threads > 1 ? 'SIMD + threads' : wasmFeatures().simd ? 'SIMD' : 'scalar';
  app.engine = { variant: rt.threads > 1 ? 'simd-mt' : wasmFeatures().simd ? 'simd' : 'scalar', threads: rt.threads, isolated };
  const why = rt.threadsUnavailable ? ` (${rt.threadsUnavailable})` : !isolated ? ' (the page is not cross-origin isolated: serve it with COOP/COEP headers for threads)' : '';
  $('engine-status').textContent = `engine: WebAssembly ${variant}, ${rt.threads} thread${rt.threads > 1 ? 's' : ''}${why}`;
  return rt;
}

function metadataOf(bytes: Uint8Array, name: string): Record<string, unknown> {
  const st = parseSafetensors(bytes, name);
  const raw = st.metadata?.voxvae;
  if (!raw) return {};
  try {
    const m = JSON.parse(raw) as unknown;
    return typeof m === 'object' && m !== null ? (m as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Loads a checkpoint; only when it loads does it replace the current model (which is then freed). */
async function useModel(bytes: Uint8Array, name: string, shipped: boolean): Promise<void> {
  if (!runtime) throw new VoxvaeError('EINTERNAL', 'the engine did not start; reload the page');
  if (sniff(bytes) !== 'checkpoint')
    throw new VoxvaeError('EFORMAT', `${name} is not a safetensors checkpoint${sniff(bytes) === 'unknown' ? '' : ' (it is a volume: load it with "Load skull")'}; give the .safetensors file a voxvae run wrote (npm start writes runs/pipeline/model.safetensors)`, { path: name });
  const t0 = performance.now();
  const model = await loadModel(bytes, { runtime, name });
  const meta = metadataOf(bytes, name);
  let pca: PrincipalAxes | null = null;
  try {
    pca = model.completion ? principalAxes(model.completion.completeLatents, model.latentSize, PC_COUNT) : null;
  } catch {
    pca = null;
  }
  timed('load model', performance.now() - t0, null);
  const old = current;
  current = { model, name, bytes: bytes.length, meta, pca, shipped };
  old?.model.dispose();
  result = null;
  latentA = latentB = null;
  sliderBase = null;
  if (skull && !model.hasEncoder) skull = { ...skull, z: null };
  renderModelFacts();
  buildSliders();
  const [D, H, W] = model.decoderConfig.inputShape;
  const warnings: string[] = [];
  if (!model.hasEncoder) warnings.push('this checkpoint holds a decoder alone: completion needs an encoder, so only latent exploration works');
  else if (!model.completion) warnings.push('this checkpoint has no completion data (deviation vectors, defect maps, latent prior): add it with `npx voxvae calibrate --model MODEL --synthetic 600 --out MODEL` (or --data DIR for your own skulls); latent exploration works meanwhile');
  if (skull && model.hasEncoder) {
    // Re-fit the loaded skull to the new model's grid.
    const vol = skull.input.original;
    skull = { ...skull, input: toModelGrid(vol, [D, H, W], skull.name), z: null };
    skull.z = await encodeSkull(skull.input.mask);
    await showSkull();
  } else {
    await showLatent(pcaMean(), 'the mean training skull');
  }
  if (warnings.length) {
    showMessage('info', `Loaded ${name}. Note: ${warnings.join('; ')}.`);
    $('model-note').textContent = `Note: ${warnings.join('; ')}.`;
  }
  else if (!shipped) showMessage('info', `Loaded ${name}.`);
}

function renderModelFacts(): void {
  const dl = $('model-facts');
  dl.replaceChildren();
  if (!current) return;
  const { model, meta } = current;
  const c = model.decoderConfig, e = model.config;
  const facts: [string, string][] = [
    ['file', `${current.name} (${(current.bytes / 1e6).toFixed(2)} MB)`],
    ['kind', model.kind === 'vae' && meta.encoderFrozen ? 'aggregated VAE (encoder + stage-2 decoder)' : model.kind],
    ['grid', `${c.inputShape.join(' × ')} voxels`],
    ['latent', `${model.latentSize} dimensions; decoder trained on ${model.decoderLatent}, evaluates z = ${model.evalLatent === 'mean' ? 'μ' : 'μ + σ'}`],
    ['encoder', e ? `${e.architecture}, channels ${e.channels.join('-')}` : 'none (decoder alone)'],
    ['decoder', `${c.architecture} (${c.decoderBlock} blocks), channels ${c.channels.join('-')}`],
  ];
  if (typeof meta.step === 'number') facts.push(['training', `${meta.step} optimiser steps, seed ${model.seed}${meta.encoderFrozen ? ', stage 2 on a frozen encoder' : ''}`]);
  const comp = model.completion;
  facts.push(['completion', comp ? `${comp.classes.join(', ')}; from ${comp.source || 'unknown data'} (${Object.entries(comp.pairs).map(([k, v]) => `${v} ${k} pairs`).join(', ')}); latent fitting ${comp.fit.steps} steps` : 'none']);
  for (const [k, v] of facts) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dl.append(dt, dd);
  }
  $('model-note').textContent = current.shipped
    ? 'The shipped model: the aggregated VAE that `npm start` trains on 600 synthetic skulls (64×64×32; 8 epochs a stage). On 30 held-out synthetic skulls z + γ·DEV reached implant Dice 0.81 (cranial) and 0.45 (facial). A research demo on synthetic data, not a medical device.'
    : '';
  const defect = $<HTMLSelectElement>('defect');
  defect.replaceChildren();
  for (const cls of comp?.classes ?? []) defect.append(new Option(cls, cls));
  if (skull?.defect && comp?.classes.includes(skull.defect)) defect.value = skull.defect;
}

// ---------------------------------------------------------------------------------------------------
// Latent directions

function pcaMean(): Float32Array {
  const k = current!.model.latentSize;
  return current!.pca ? current!.pca.mean.slice() : new Float32Array(k);
}

function buildSliders(): void {
  const box = $('pc-sliders');
  box.replaceChildren();
  if (!current) return;
  const n = current.pca ? current.pca.vectors.length : Math.min(PC_COUNT, current.model.latentSize);
  for (let i = 0; i < n; i++) {
    const label = document.createElement('label');
    const sd = current.pca ? current.pca.sd[i]! : 1;
    label.title = current.pca ? `principal direction ${i + 1} of the training latents (σ = ${sd.toFixed(2)}, ${(100 * current.pca.explained[i]!).toFixed(0)}% of the variance)` : `latent axis ${i + 1} (no training latents stored: standard normal axes)`;
    label.append(`${current.pca ? 'PC' : 'z'}${i + 1}`);
    const r = document.createElement('input');
    Object.assign(r, { type: 'range', min: '-3', max: '3', step: '0.1', value: '0', className: 'pc' });
    r.dataset.index = String(i);
    const out = document.createElement('output');
    out.textContent = '0.0';
    r.addEventListener('input', () => {
      out.textContent = Number(r.value).toFixed(1);
      scheduleSliderDecode();
    });
    label.append(r, out);
    box.append(label);
  }
}

/** The base latent the sliders move from, and their offsets applied to it. */
let sliderBase: Float32Array | null = null;

function sliderLatent(): Float32Array {
  const m = current!.model, k = m.latentSize;
  const z = (sliderBase ?? pcaMean()).slice();
  const sliders = Array.from(document.querySelectorAll<HTMLInputElement>('#pc-sliders input.pc'));
  for (const s of sliders) {
    const i = Number(s.dataset.index), v = Number(s.value);
    if (!v) continue;
    if (current!.pca) {
      const vec = current!.pca.vectors[i]!, sd = current!.pca.sd[i]!;
      for (let j = 0; j < k; j++) z[j] = z[j]! + v * sd * vec[j]!;
    } else z[i] = z[i]! + v;
  }
  return z;
}

function resetSliders(): void {
  for (const s of document.querySelectorAll<HTMLInputElement>('#pc-sliders input.pc')) {
    s.value = '0';
    (s.nextElementSibling as HTMLOutputElement).textContent = '0.0';
  }
}

let sliderPending = false;
let sliderRunning = false;
/** Decodes the slider latent; while one decode runs, later moves coalesce into one more. */
function scheduleSliderDecode(): void {
  if (!current || app.busy) return;
  sliderPending = true;
  if (sliderRunning) return;
  sliderRunning = true;
  void (async () => {
    try {
      while (sliderPending) {
        sliderPending = false;
        await showLatent(sliderLatent(), 'latent from the sliders', true);
        await nextFrame();
      }
    } catch (e) {
      showMessage('error', `decoding failed: ${describeError(e)}`);
    } finally {
      sliderRunning = false;
    }
  })();
}

// ---------------------------------------------------------------------------------------------------
// Rendering with Niivue

async function startViewer(): Promise<void> {
  const canvas = $<HTMLCanvasElement>('gl');
  try {
    if (!canvas.getContext('webgl2')) throw new Error('this browser has no WebGL2');
    nv = new Niivue({
      backColor: [0, 0, 0, 1],
      show3Dcrosshair: true,
      crosshairColor: [0.2, 0.8, 1, 1],
      multiplanarShowRender: SHOW_RENDER.ALWAYS,
      isColorbar: false,
      isOrientCube: false,
      logLevel: 'silent',
      loadingText: '',
      dragAndDropEnabled: false,
    });
    await nv.attachToCanvas(canvas);
    nv.setSliceType(nv.sliceTypeMultiplanar);
    nv.onLocationChange = (loc: unknown) => {
      const l = loc as { vox?: ArrayLike<number>; mm?: ArrayLike<number> };
      if (l?.vox && l.mm) $('location').textContent = describeVoxel(Array.from(l.vox), Array.from(l.mm));
    };
  } catch (e) {
    nv = null;
    canvas.hidden = true;
    showMessage('error', `3D view unavailable (${describeError(e)}): computation and downloads still work`);
  }
}

/** The crosshair's voxel, position and what is there (the arrays shown are C order on the model grid). */
function describeVoxel(vox: number[], mm: number[]): string {
  if (!current || vox.length < 3) return '';
  const [D, H, W] = current.model.decoderConfig.inputShape;
  const [i, j, k] = vox.map(Math.round) as [number, number, number];
  if (i < 0 || j < 0 || k < 0 || i >= D || j >= H || k >= W) return '';
  let what = '';
  if (nv && nv.volumes.length > 1) {
    const img0 = nv.volumes[0]!.img as Uint8Array, img1 = nv.volumes[1]!.img as Uint8Array;
    const f = i + D * (j + H * k); // Niivue holds file order (i fastest)
    what = img1[f] ? 'implant' : img0[f] ? 'bone' : 'empty';
  }
  return `crosshair: voxel (${i}, ${j}, ${k}) · ${mm.slice(0, 3).map((v) => v.toFixed(1)).join(', ')} mm (RAS) · ${what}`;
}

function gridVolume(data: Uint8Array): Volume<Uint8Array> {
  const shape = current!.model.decoderConfig.inputShape as Vec3;
  const g = skull?.input.grid;
  if (g && g.shape.join() === shape.join()) return { ...g, data };
  return { shape: [...shape], data, spacing: [1, 1, 1], origin: [0, 0, 0], direction: [1, 0, 0, 0, 1, 0, 0, 0, 1] };
}

/** Shows `base` in grey and `overlay` (implant) in red; reloads Niivue's volumes only when the grid changes. */
async function render(base: Uint8Array, overlay: Uint8Array, geometryKey: string): Promise<void> {
  if (!nv) return;
  const vb = gridVolume(base);
  const key = `${vb.shape.join()}|${geometryKey}`;
  if (nvShape !== key || nv.volumes.length !== 2) {
    const urls = [URL.createObjectURL(new Blob([niftiBytes(vb) as BlobPart])), URL.createObjectURL(new Blob([niftiBytes({ ...vb, data: overlay }) as BlobPart]))];
    try {
      while (nv.volumes.length) nv.removeVolume(nv.volumes[0]!);
      await nv.loadVolumes([
        { url: urls[0]!, name: 'skull.nii', colormap: 'gray', opacity: 1, cal_min: 0, cal_max: 1 },
        { url: urls[1]!, name: 'implant.nii', colormap: 'red', opacity: Number($<HTMLInputElement>('opacity').value), cal_min: 0.5, cal_max: 1 },
      ]);
    } finally {
      urls.forEach((u) => URL.revokeObjectURL(u));
    }
    nvShape = key;
  } else {
    (nv.volumes[0]!.img as Uint8Array).set(fileOrder(base, vb.shape));
    (nv.volumes[1]!.img as Uint8Array).set(fileOrder(overlay, vb.shape));
    nv.updateGLVolume();
  }
  app.renders++;
  if (app.firstRenderMs === null) app.firstRenderMs = performance.now();
}

/** Puts the crosshair on the centre of the voxels set in `mask` (C order on the model grid). */
function crosshairTo(mask: Uint8Array): void {
  if (!nv || !nv.volumes.length) return;
  const [D, H, W] = current!.model.decoderConfig.inputShape;
  let n = 0, si = 0, sj = 0, sk = 0;
  for (let i = 0, p = 0; i < D; i++) for (let j = 0; j < H; j++) for (let k = 0; k < W; k++, p++) if (mask[p]) {
    n++;
    si += i;
    sj += j;
    sk += k;
  }
  if (!n) return;
  nv.scene.crosshairPos = nv.vox2frac([si / n, sj / n, sk / n]);
  nv.drawScene();
  nv.createOnLocationChange();
}

async function showSkull(): Promise<void> {
  if (!skull) return;
  const empty = new Uint8Array(skull.input.mask.length);
  await render(skull.input.mask, result?.implant ?? empty, skull.name);
  shown = { kind: 'skull', z: result?.z ?? skull.z };
  // The sliders now move from this skull's latent (the completed one after a completion).
  sliderBase = shown.z ? shown.z.slice() : null;
  resetSliders();
  $('showing').textContent = result ? `${skull.name}: input (grey) and predicted implant (red, ${result.method})` : `${skull.name}: input (grey)`;
}

async function showLatent(z: Float32Array, what: string, keepSliders = false): Promise<void> {
  const m = current!.model;
  if (!keepSliders) {
    sliderBase = z.slice();
    resetSliders();
  }
  const t0 = performance.now();
  const mask = await m.decode(z, { output: 'mask' });
  timed('decode', performance.now() - t0, null);
  await render(mask, new Uint8Array(mask.length), skull?.name ?? 'latent');
  shown = { kind: 'latent', z: z.slice() };
  $('showing').textContent = `decoded: ${what}`;
}

// ---------------------------------------------------------------------------------------------------
// Skulls and completion

async function encodeSkull(mask: Uint8Array): Promise<Float32Array | null> {
  const m = current!.model;
  if (!m.hasEncoder) return null;
  const x = Float32Array.from(mask);
  const t0 = performance.now();
  const { z } = await m.encodeLatent(x);
  timed('encode', performance.now() - t0, null);
  return z;
}

async function useSkull(bytes: Uint8Array, name: string, defect: string | null, truthUrl: string | null): Promise<void> {
  if (!current) throw new VoxvaeError('EINTERNAL', 'no model is loaded');
  const t0 = performance.now();
  const vol = await decodeVolume(bytes, name);
  const shape = current.model.decoderConfig.inputShape as Vec3;
  const input = toModelGrid(vol, shape, name);
  timed('read skull', performance.now() - t0, null);
  let truth: Uint8Array | null = null;
  if (truthUrl) {
    const r = await fetch(truthUrl);
    if (r.ok) truth = toModelGrid(await decodeVolume(new Uint8Array(await r.arrayBuffer()), truthUrl), shape, truthUrl).mask;
  }
  const z = await encodeSkull(input.mask);
  skull = { name, input, z, truth, defect };
  result = null;
  const comp = current.model.completion;
  if (defect && comp?.classes.includes(defect)) $<HTMLSelectElement>('defect').value = defect;
  const fg = input.mask.reduce((a, v) => a + v, 0);
  $('skull-info').textContent = `${name}: ${vol.shape.join('×')} voxels, spacing ${vol.spacing.map((s) => s.toFixed(2)).join(' × ')} mm; ${fg} bone voxels on the model grid.${input.resampled ? `\n${input.resampled}` : ''}`;
  $('result-info').textContent = '';
  clearMessage();
  await showSkull();
  if (input.resampled) showMessage('info', `${name} was ${input.resampled}`);
}

async function runCompletion(): Promise<void> {
  if (!current || !skull) return;
  const m = current.model;
  if (!m.hasEncoder || !m.completion) throw new VoxvaeError('ECHECKPOINT', 'this model cannot complete skulls (no encoder or no completion data); load a checkpoint from `npm start` or add completion data with `npx voxvae calibrate`');
  const choice = $<HTMLSelectElement>('method').value;
  const defect = $<HTMLSelectElement>('defect').value;
  const gamma = Number($<HTMLInputElement>('gamma').value);
  const method = choice === 'fit' ? 'fit' : 'dev';
  const progress = $<HTMLProgressElement>('progress');
  const cancel = $<HTMLButtonElement>('cancel');
  progress.hidden = cancel.hidden = method !== 'fit';
  progress.value = 0;
  cancelRequested = false;
  const t0 = performance.now();
  let r;
  try {
    r = await m.completeSkull(skull.input.mask, {
      defect,
      method,
      gamma,
      clean: choice !== 'dev-raw',
      onProgress: method === 'fit' ? async (step, total) => {
        if (cancelRequested) throw new VoxvaeError('EABORT', `latent fitting cancelled at step ${step} of ${total}`);
        progress.value = step / total;
        $('result-info').textContent = `latent fitting: step ${step} of ${total}…`;
        if (step % 4 === 0) await nextFrame();
      } : undefined,
    });
  } catch (e) {
    if (e instanceof VoxvaeError && e.code === 'EABORT') {
      $('result-info').textContent = '';
      showMessage('info', `${e.message}; the previous result is kept.`);
      return;
    }
    throw e;
  } finally {
    progress.hidden = cancel.hidden = true;
  }
  const ms = performance.now() - t0;
  const label = choice === 'fit' ? 'completion (latent fitting)' : choice === 'dev' ? 'completion (z + γ·DEV)' : 'completion (z + γ·DEV raw)';
  timed(label, ms, null);
  result = { implant: r.implant, completed: r.completed, method: choice === 'fit' ? 'latent fitting' : choice === 'dev' ? `z + ${gamma.toFixed(2)}·DEV` : `z + ${gamma.toFixed(2)}·DEV raw`, gamma, z: r.z };
  const n = r.implant.reduce((a, v) => a + v, 0);
  let dice: number | null = null;
  if (skull.truth) {
    let inter = 0, t = 0;
    for (let i = 0; i < r.implant.length; i++) {
      t += skull.truth[i]!;
      inter += r.implant[i]! & skull.truth[i]!;
    }
    dice = n + t ? (2 * inter) / (n + t) : 1;
  }
  app.lastResult = { method: choice, implantVoxels: n, dice };
  $('result-info').textContent = `${result.method} (${defect}): implant of ${n} voxels in ${ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(1)} s`}` +
    (dice !== null ? `; Dice ${dice.toFixed(3)} against the generator's true implant of this example` : '') +
    (n === 0 ? '\nThe model predicts no missing bone here: check the defect class, or raise γ.' : '');
  await showSkull();
  crosshairTo(n ? r.implant : skull.input.mask);
}

async function download(which: 'completed' | 'implant'): Promise<void> {
  if (!skull || !result) return;
  const data = toInputGrid(which === 'completed' ? result.completed : result.implant, skull.input);
  let out = data;
  if (which === 'completed' && skull.input.resampled) {
    // The input's own voxels, untouched, plus the implant brought back to its grid.
    out = new Uint8Array(skull.input.original.data.length);
    const imp = toInputGrid(result.implant, skull.input);
    for (let i = 0; i < out.length; i++) out[i] = skull.input.original.data[i]! | imp[i]!;
  }
  const vol: Volume<Uint8Array> = { ...skull.input.original, data: out };
  const blob = await niftiGzBlob(vol, `voxvae ${which} ${result.method}`.slice(0, 79));
  const base = skull.name.replace(/\.(nii\.gz|nii|nrrd)$/i, '').replace(/[^A-Za-z0-9_.-]+/g, '_');
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `${base}_${which}.nii.gz`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

// ---------------------------------------------------------------------------------------------------
// Controls

function syncControls(): void {
  const m = current?.model;
  const canComplete = !!(m && m.hasEncoder && m.completion && skull);
  const set = (id: string, enabled: boolean) => (($(id) as HTMLButtonElement).disabled = app.busy || !enabled);
  set('complete', canComplete);
  set('download-completed', !!result);
  set('download-implant', !!result);
  set('sample-prior', !!m);
  set('reset-latent', !!m);
  set('use-input', !!(skull?.z));
  set('set-a', !!m);
  set('set-b', !!m);
  set('interp', !!(latentA && latentB));
  set('model-file', true);
  set('skull-file', !!m);
  set('example', !!m);
  for (const s of document.querySelectorAll<HTMLInputElement>('#pc-sliders input.pc')) s.disabled = app.busy || !m;
}

async function readFile(f: File): Promise<Uint8Array> {
  if (f.size > 2 ** 31) throw new VoxvaeError('EUNSUPPORTED', `${f.name} is ${(f.size / 2 ** 30).toFixed(1)} GiB; the app reads files up to 2 GiB`);
  return new Uint8Array(await f.arrayBuffer());
}

/** A dropped or picked file: a checkpoint replaces the model, a volume becomes the skull. */
async function openFile(f: File, as: 'model' | 'skull' | 'auto'): Promise<void> {
  const bytes = await readFile(f);
  const kind = sniff(bytes);
  if (as === 'model' || (as === 'auto' && kind === 'checkpoint')) await useModel(bytes, f.name, false);
  else await useSkull(bytes, f.name, null, null);
}

function wire(): void {
  $<HTMLInputElement>('model-file').addEventListener('change', (ev) => {
    const input = ev.target as HTMLInputElement;
    const f = input.files?.[0];
    if (f) void guard(`loading ${f.name}`, () => openFile(f, 'model')).finally(() => (input.value = ''));
  });
  $<HTMLInputElement>('skull-file').addEventListener('change', (ev) => {
    const input = ev.target as HTMLInputElement;
    const f = input.files?.[0];
    if (f) void guard(`loading ${f.name}`, () => openFile(f, 'skull')).finally(() => (input.value = ''));
  });
  $<HTMLSelectElement>('example').addEventListener('change', (ev) => {
    const ex = examples.find((e) => e.url === (ev.target as HTMLSelectElement).value);
    if (ex) void guard(`loading ${ex.name}`, () => loadExample(ex));
  });
  $('complete').addEventListener('click', () => void guard('completion', runCompletion));
  $('cancel').addEventListener('click', () => (cancelRequested = true));
  $('download-completed').addEventListener('click', () => void guard('download', () => download('completed')));
  $('download-implant').addEventListener('click', () => void guard('download', () => download('implant')));
  const gamma = $<HTMLInputElement>('gamma');
  gamma.addEventListener('input', () => ($('gamma-value').textContent = Number(gamma.value).toFixed(2)));
  $('sample-prior').addEventListener('click', () => void guard('sampling', async () => {
    const k = current!.model.latentSize, z = new Float32Array(k);
    for (let i = 0; i < k; i += 2) {
      const u = 1 - Math.random(), v = Math.random(), r = Math.sqrt(-2 * Math.log(u));
      z[i] = r * Math.cos(2 * Math.PI * v);
      if (i + 1 < k) z[i + 1] = r * Math.sin(2 * Math.PI * v);
    }
    await showLatent(z, 'a random sample z ~ N(0, I)');
  }));
  $('reset-latent').addEventListener('click', () => void guard('decoding', () => showLatent(pcaMean(), current!.pca ? 'the mean of the training skulls\' latents' : 'z = 0')));
  $('use-input').addEventListener('click', () => void guard('decoding', () => showLatent(skull!.z!, `${skull!.name}'s latent (its reconstruction)`)));
  const setEnd = (which: 'a' | 'b') => () => void guard('interpolation', async () => {
    const z = shown.z ?? sliderLatent();
    if (which === 'a') latentA = z.slice();
    else latentB = z.slice();
    $<HTMLInputElement>('interp').value = which === 'a' ? '0' : '1';
  });
  $('set-a').addEventListener('click', setEnd('a'));
  $('set-b').addEventListener('click', setEnd('b'));
  let interpRunning = false, interpPending = false;
  $<HTMLInputElement>('interp').addEventListener('input', () => {
    if (!latentA || !latentB || app.busy) return;
    interpPending = true;
    if (interpRunning) return;
    interpRunning = true;
    void (async () => {
      try {
        while (interpPending) {
          interpPending = false;
          const t = Number($<HTMLInputElement>('interp').value);
          const z = latentA!.map((a, i) => (1 - t) * a + t * latentB![i]!);
          await showLatent(z, `interpolation A → B at t = ${t.toFixed(2)}`);
          await nextFrame();
        }
      } catch (e) {
        showMessage('error', `decoding failed: ${describeError(e)}`);
      } finally {
        interpRunning = false;
      }
    })();
  });
  $<HTMLInputElement>('opacity').addEventListener('input', (ev) => {
    if (nv && nv.volumes.length > 1) {
      nv.setOpacity(1, Number((ev.target as HTMLInputElement).value));
      nv.drawScene();
    }
  });
  $<HTMLInputElement>('crosshair').addEventListener('change', (ev) => {
    if (!nv) return;
    const on = (ev.target as HTMLInputElement).checked;
    nv.setCrosshairWidth(on ? 1 : 0);
    nv.opts.show3Dcrosshair = on;
    nv.drawScene();
  });
  $<HTMLSelectElement>('layout').addEventListener('change', (ev) => {
    if (!nv) return;
    const v = (ev.target as HTMLSelectElement).value;
    const types = { multi: nv.sliceTypeMultiplanar, render: nv.sliceTypeRender, axial: nv.sliceTypeAxial, coronal: nv.sliceTypeCoronal, sagittal: nv.sliceTypeSagittal } as const;
    nv.setSliceType(types[v as keyof typeof types] ?? nv.sliceTypeMultiplanar);
  });
  // Drop anywhere: a checkpoint or a volume.
  document.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
  document.addEventListener('drop', (ev) => {
    ev.preventDefault();
    document.body.classList.remove('dragging');
    const f = ev.dataTransfer?.files?.[0];
    if (f) void guard(`loading ${f.name}`, () => openFile(f, 'auto'));
  });
}

async function fetchBytes(url: string, what: string): Promise<Uint8Array> {
  const r = await fetch(url);
  if (!r.ok) throw new VoxvaeError('EIO', `${what} (${url}): HTTP ${r.status}; serve the built folder whole (npm run app)`);
  return new Uint8Array(await r.arrayBuffer());
}

async function loadExample(ex: Example): Promise<void> {
  await useSkull(await fetchBytes(ex.url, ex.name), `${ex.name.replace(' ', '_')}.nii.gz`, ex.defect, ex.truth);
  $<HTMLSelectElement>('example').value = ex.url;
}

async function main(): Promise<void> {
  $('boot').hidden = true;
  wire();
  syncControls();
  await guard('starting', async () => {
    const [rt] = await Promise.all([startEngine(), startViewer()]);
    runtime = rt;
    examples = JSON.parse(new TextDecoder().decode(await fetchBytes('examples/index.json', 'the example list'))) as Example[];
    const sel = $<HTMLSelectElement>('example');
    for (const ex of examples) sel.append(new Option(ex.name, ex.url));
    await useModel(await fetchBytes(SHIPPED_MODEL, 'the shipped model'), SHIPPED_MODEL.split('/').pop()!, true);
    if (examples[0]) await loadExample(examples[0]);
    timed('first render (from navigation)', app.firstRenderMs ?? performance.now(), null);
  });
  app.ready = true;
}

void main();
