// The browser app (web/) in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; WebGL2 through SwiftShader where there is no GPU) opens the built app, served as static
// files with the cross-origin isolation headers, and works it as a user would: completes a shipped
// example (the implant overlay's red must appear in the canvas), downloads the implant, runs latent
// fitting with visible progress, moves a latent slider (the rendering must change), loads bad files (a
// message, and the app still works) and a volume of another size. No console errors, no request leaves
// the server. The timings of section 5 of issue 21 (one thread) are logged.
// Set VOXVAE_APP_SCREENSHOTS=1 to rewrite the screenshots in docs/app/.
//
// Skipped, with the reason printed, where /usr/bin/chromium is absent (CI: apt-get install chromium).
import test from 'ava';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import { decodeNifti, encodeNifti } from '../ts/data/nifti.js';
import { encodeNrrd } from '../ts/data/nrrd.js';
import { resample } from '../ts/data/resample.js';
import { ROOT } from './helpers.js';
import type { AppState } from '../web/src/main.js';

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available) console.warn(`app_browser.test.ts: skipped — ${CHROMIUM} is absent (install Debian's chromium to run the browser tests)`);
const browserTest = available ? test.serial : test.skip;

const MODEL = path.join(ROOT, 'web/models/skull64-aggregated.safetensors');
const EXAMPLE = path.join(ROOT, 'web/examples/cranial/000.nii.gz');


let tmp = '';
let server: Server | null = null;
let base = '';
let browser: Browser | null = null;
let page: Page | null = null;
const problems: string[] = [];
const foreign: string[] = [];
const served = new Map<string, number>();
/** The implant (voxels) of the first example's z + γ·DEV completion on one thread. */
let firstImplant = -1;

/** A safetensors file rebuilt from `bytes` with only the tensors `keep` accepts and metadata passed through `meta`. */
function rewriteCheckpoint(bytes: Uint8Array, keep: (name: string) => boolean, meta: (m: Record<string, unknown>) => Record<string, unknown>): Uint8Array {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { data_offsets: [number, number] } & Record<string, unknown>> & { __metadata__: Record<string, string> };
  const body = bytes.subarray(8 + n);
  const out: Record<string, unknown> = {};
  const parts: Uint8Array[] = [];
  let off = 0;
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__' || !keep(k)) continue;
    const d = body.subarray(v.data_offsets[0], v.data_offsets[1]);
    out[k] = { ...v, data_offsets: [off, off + d.length] };
    parts.push(d);
    off += d.length;
  }
  out.__metadata__ = { ...header.__metadata__, voxvae: JSON.stringify(meta(JSON.parse(header.__metadata__.voxvae!) as Record<string, unknown>)) };
  const hb = new TextEncoder().encode(JSON.stringify(out));
  const res = new Uint8Array(8 + hb.length + off);
  new DataView(res.buffer).setBigUint64(0, BigInt(hb.length), true);
  res.set(hb, 8);
  let p = 8 + hb.length;
  for (const d of parts) {
    res.set(d, p);
    p += d.length;
  }
  return res;
}

async function state(): Promise<AppState> {
  return page!.evaluate(() => JSON.parse(JSON.stringify((window as unknown as { voxvaeApp: AppState }).voxvaeApp)) as AppState);
}

/** Waits until the app is idle again (after a click or an upload). */
async function settle(): Promise<AppState> {
  await page!.waitForTimeout(50);
  await page!.waitForFunction(() => !(window as unknown as { voxvaeApp: AppState }).voxvaeApp.busy, undefined, { timeout: 60_000 });
  await page!.waitForTimeout(150); // Niivue draws on the next animation frames
  return state();
}

/** Pixels of the canvas: how many are the implant's red, and the RGBA bytes to compare two renders. */
async function canvasPixels(): Promise<{ red: number; total: number; png: string }> {
  const png = (await page!.locator('#gl').screenshot()).toString('base64');
  const r = await page!.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const g = c.getContext('2d')!;
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let red = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i]! > 150 && d[i + 1]! < 90 && d[i + 2]! < 90) red++;
    return { red, total: d.length / 4 };
  }, png);
  return { ...r, png };
}

/** Fraction of pixels that differ between two canvas screenshots. */
async function pixelChange(a: string, b: string): Promise<number> {
  return page!.evaluate(async ([x, y]) => {
    // No named inner functions: the test runner's transform would wrap them in a helper the page lacks.
    const [p, q] = await Promise.all(
      [x, y].map(async (b64) => {
        const img = new Image();
        img.src = `data:image/png;base64,${b64}`;
        await img.decode();
        const c = document.createElement('canvas');
        c.width = img.width;
        c.height = img.height;
        const g = c.getContext('2d')!;
        g.drawImage(img, 0, 0);
        return g.getImageData(0, 0, c.width, c.height).data;
      }),
    );
    if (p!.length !== q!.length) return 1;
    let diff = 0;
    for (let i = 0; i < p!.length; i += 4) if (Math.abs(p![i]! - q![i]!) + Math.abs(p![i + 1]! - q![i + 1]!) + Math.abs(p![i + 2]! - q![i + 2]!) > 30) diff++;
    return diff / (p!.length / 4);
  }, [a, b] as const);
}

async function upload(selector: string, name: string, buffer: Uint8Array): Promise<AppState> {
  await page!.setInputFiles(selector, { name, mimeType: 'application/octet-stream', buffer: Buffer.from(buffer) });
  return settle();
}

async function complete(method: 'dev' | 'fit' | 'dev-raw'): Promise<AppState> {
  await page!.selectOption('#method', method);
  await page!.click('#complete');
  return settle();
}

/** A screenshot of the whole page for docs/app/ (VOXVAE_APP_SCREENSHOTS=1 only), the side panel scrolled to `anchor`. */
async function docShot(name: string, anchor: string): Promise<void> {
  if (!process.env.VOXVAE_APP_SCREENSHOTS) return;
  await mkdir(path.join(ROOT, 'docs/app'), { recursive: true });
  await page!.evaluate((sel) => document.querySelector(sel)?.scrollIntoView({ block: 'start' }), anchor);
  await page!.waitForTimeout(300);
  await page!.screenshot({ path: path.join(ROOT, 'docs/app', name) });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** Median and minimum (the least-contended run on a shared machine) of timings, for the log. */
const spread = (xs: number[]) => `median ${median(xs).toFixed(1)} ms, min ${Math.min(...xs).toFixed(1)} ms of ${xs.map((x) => x.toFixed(1)).join(', ')}`;

browserTest.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'voxvae-app-'));
  const { buildApp } = (await import('../web/build.mjs')) as { buildApp: (o: { outdir: string }) => Promise<{ outdir: string }> };
  const { serveStatic } = (await import('../web/serve.mjs')) as { serveStatic: (root: string, o: { port: number }) => Promise<Server> };
  await buildApp({ outdir: path.join(tmp, 'app') });
  server = await serveStatic(path.join(tmp, 'app'), { port: 0 });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'] });
  // SwiftShader renders on the CPU: a smaller canvas keeps the test fast; screenshots for the docs are larger.
  const viewport = process.env.VOXVAE_APP_SCREENSHOTS ? { width: 1400, height: 900 } : { width: 960, height: 640 };
  page = await browser.newPage({ viewport, acceptDownloads: true });
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console.error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught: ${String(e)}`));
  page.on('response', async (r) => {
    const body = await r.body().catch(() => null);
    if (body) served.set(new URL(r.url()).pathname, body.length);
  });
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(base) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
    foreign.push(url);
    return route.abort();
  });
});

browserTest.after.always(async () => {
  await browser?.close();
  if (server) await new Promise((r) => server!.close(r));
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

browserTest('opens offline on one thread: the shipped model and the first example load and render', async (t) => {
  const t0 = Date.now();
  await page!.goto(`${base}/?threads=1`);
  await page!.waitForFunction(() => (window as unknown as { voxvaeApp?: AppState }).voxvaeApp?.ready === true, undefined, { timeout: 60_000 });
  const s = await settle();
  t.is(s.message, null, `no message after start: ${JSON.stringify(s.message)}`);
  t.true(await page!.isHidden('#boot'), 'the start-up fallback line is hidden once the script runs');
  t.deepEqual(s.engine, { variant: 'simd', threads: 1, isolated: true });
  t.regex(await page!.textContent('#engine-status') ?? '', /WebAssembly SIMD, 1 thread/);
  const facts = (await page!.textContent('#model-facts')) ?? '';
  t.regex(facts, /64 × 64 × 32 voxels/);
  t.regex(facts, /32 dimensions/);
  t.regex(facts, /cranial, facial; from 600 synthetic skulls/);
  t.is(await page!.inputValue('#example'), 'examples/cranial/000.nii.gz');
  t.true(s.renders >= 1);
  const bytes = [...served.values()].reduce((a, b) => a + b, 0);
  let gz = 0;
  for (const p of served.keys()) gz += gzipSync(await readFile(path.join(tmp, 'app', p === '/' ? 'index.html' : p))).length;
  t.log(`first render ${s.firstRenderMs!.toFixed(0)} ms after navigation (page ready in ${Date.now() - t0} ms wall); transferred ${(bytes / 1e6).toFixed(2)} MB uncompressed (${(gz / 1e6).toFixed(2)} MB gzipped) in ${served.size} files: ${[...served].map(([p, n]) => `${p} ${(n / 1e3).toFixed(0)} kB`).join(', ')}`);
  t.true(s.firstRenderMs! < 30_000);
  t.deepEqual(foreign, []);
});

browserTest('completes the example with z + γ·DEV: the implant overlay appears in red, timings in budget, downloads carry the input geometry', async (t) => {
  const before = await canvasPixels();
  t.true(before.red < 20, `${before.red} red pixels before completion`);
  const times: number[] = [];
  let s: AppState | null = null;
  for (let i = 0; i < 3; i++) {
    s = await complete('dev');
    t.is(s.message, null, JSON.stringify(s.message));
    times.push(s.timings['completion (z + γ·DEV)']!);
  }
  t.true(s!.lastResult!.implantVoxels > 100, `implant of ${s!.lastResult!.implantVoxels} voxels`);
  firstImplant = s!.lastResult!.implantVoxels;
  t.true(s!.lastResult!.dice! > 0.5, `Dice against the true implant ${s!.lastResult!.dice}`);
  const after = await canvasPixels();
  t.true(after.red > 200, `${after.red} red (implant) pixels of ${after.total} after completion`);
  t.log(`z + γ·DEV completion (encode + decode + implant), 1 thread: ${spread(times)}; encode ${s!.timings.encode!.toFixed(1)} ms; implant ${s!.lastResult!.implantVoxels} voxels, Dice ${s!.lastResult!.dice!.toFixed(3)} vs the true implant; ${after.red} red pixels`);
  t.true(median(times) < 250, 'z + γ·DEV completion within 2.5× its 100 ms budget (the log has the number)');
  await docShot('completion.png', '#panel section:nth-of-type(2)');
  // Opacity 0 hides the overlay; back to 0.8 shows it.
  await page!.locator('#opacity').fill('0');
  await page!.waitForTimeout(200);
  t.true((await canvasPixels()).red < 20, 'opacity 0 hides the implant');
  await page!.locator('#opacity').fill('0.8');
  await page!.waitForTimeout(200);
  t.true((await canvasPixels()).red > 200);

  const input = decodeNifti(new Uint8Array(await readFile(EXAMPLE)));
  for (const which of ['implant', 'completed'] as const) {
    const [dl] = await Promise.all([page!.waitForEvent('download'), page!.click(`#download-${which}`)]);
    t.is(dl.suggestedFilename(), `cranial_000_${which}.nii.gz`);
    const vol = decodeNifti(new Uint8Array(await readFile((await dl.path())!)));
    t.deepEqual(vol.shape, input.shape);
    t.deepEqual(vol.spacing.map((v) => +v.toFixed(4)), input.spacing.map((v) => +v.toFixed(4)));
    t.deepEqual(vol.origin.map((v) => +v.toFixed(3)), input.origin.map((v) => +v.toFixed(3)));
    const ones = vol.data.reduce((a, v) => a + v, 0);
    const inputOnes = input.data.reduce((a, v) => a + (v > 0.5 ? 1 : 0), 0);
    if (which === 'implant') t.is(ones, s!.lastResult!.implantVoxels);
    else {
      t.is(ones, inputOnes + s!.lastResult!.implantVoxels, 'completed = input + implant');
      for (let i = 0; i < vol.data.length; i++) if (input.data[i]! > 0.5 && !vol.data[i]) return t.fail(`the completed skull lost input voxel ${i}`);
    }
  }
});

browserTest('latent fitting shows its progress and finishes under 10 s', async (t) => {
  await page!.selectOption('#method', 'fit');
  await page!.click('#complete');
  // The progress bar and the text as one snapshot (the page sets both in one callback): a fit can end
  // between two separate reads.
  const during = await page!.waitForFunction(() => {
    const p = document.getElementById('progress') as HTMLProgressElement;
    return !p.hidden && p.value > 0 && p.value < 1 && (document.getElementById('result-info')?.textContent ?? '');
  }, undefined, { timeout: 20_000 });
  t.regex(String(await during.jsonValue()), /latent fitting: step \d+ of \d+/);
  const s = await settle();
  t.is(s.message, null, JSON.stringify(s.message));
  const ms = s.timings['completion (latent fitting)']!;
  t.true(s.lastResult!.implantVoxels > 100);
  t.true(s.lastResult!.dice! > 0.5, `Dice ${s.lastResult!.dice}`);
  t.true(await page!.isHidden('#progress'));
  t.log(`latent fitting (80 Adam steps), 1 thread: ${(ms / 1000).toFixed(2)} s; implant Dice ${s.lastResult!.dice!.toFixed(3)}`);
  t.true(ms < 10_000, `${ms} ms`);
  // Cancel stops a fit; the previous result stays.
  await page!.click('#complete');
  // Cancel while the fit runs, clicked from within the page the moment it shows a step before the last:
  // a fit takes about 2 s, so a click from the test could land after it ended.
  await page!.waitForFunction(() => {
    const p = document.getElementById('progress') as HTMLProgressElement;
    if (p.hidden || !(p.value > 0 && p.value < 1)) return false;
    (document.getElementById('cancel') as HTMLButtonElement).click();
    return true;
  }, undefined, { timeout: 20_000 });
  const c = await settle();
  t.is(c.message?.kind, 'info');
  t.regex(c.message!.text, /latent fitting cancelled at step \d+ of 80; the previous result is kept/);
  t.deepEqual(c.lastResult, s.lastResult);
  t.false(await page!.isDisabled('#download-implant'));
  // The paper's raw difference runs too.
  const raw = await complete('dev-raw');
  t.is(raw.message, null);
  t.is(raw.lastResult!.method, 'dev-raw');
});

browserTest('a latent slider changes the rendering; prior samples and interpolation decode', async (t) => {
  await page!.click('#reset-latent');
  await settle();
  const a = await canvasPixels();
  const slider = page!.locator('#pc-sliders input.pc').first();
  const decodes: number[] = [];
  for (const v of ['1', '2', '3', '-1.5', '-3']) {
    const n = (await state()).log.length;
    await slider.fill(v);
    await page!.waitForFunction((k) => (window as unknown as { voxvaeApp: AppState }).voxvaeApp.log.length > k, n, { timeout: 10_000 });
    await settle();
    const s = await state();
    decodes.push(s.log.slice(n).find(([w]) => w === 'decode')![1]);
  }
  await slider.fill('3');
  await page!.waitForTimeout(300);
  await settle();
  const b = await canvasPixels();
  const change = await pixelChange(a.png, b.png);
  t.true(change > 0.01, `PC1 = +3σ changed ${(100 * change).toFixed(2)}% of the canvas`);
  t.regex((await page!.textContent('#showing')) ?? '', /latent from the sliders/);
  t.log(`decode (one latent → 64×64×32 mask), 1 thread: ${spread(decodes)}; PC1 +3σ changed ${(100 * change).toFixed(1)}% of the canvas`);
  t.true(median(decodes) < 125, 'decode within 2.5× its 50 ms budget (the log has the number)');
  await docShot('explore.png', '#pc-sliders');

  await page!.click('#set-a');
  await settle();
  await page!.click('#sample-prior');
  await settle();
  t.regex((await page!.textContent('#showing')) ?? '', /random sample/);
  await page!.click('#set-b');
  await settle();
  t.false(await page!.isDisabled('#interp'));
  const c = await canvasPixels();
  await page!.locator('#interp').fill('0');
  await page!.waitForTimeout(300);
  await settle();
  t.regex((await page!.textContent('#showing')) ?? '', /interpolation A → B at t = 0\.00/);
  t.true((await pixelChange(c.png, (await canvasPixels()).png)) > 0.005, 'interpolating back to A changes the rendering');
  t.is((await state()).message, null);
});

browserTest('bad files give a message in the page and the app keeps working with the previous model', async (t) => {
  const model = new Uint8Array(await readFile(MODEL));
  const example = new Uint8Array(await readFile(EXAMPLE));
  const expectError = async (selector: string, name: string, bytes: Uint8Array, pattern: RegExp) => {
    const s = await upload(selector, name, bytes);
    t.is(s.message?.kind, 'error', `${name}: ${JSON.stringify(s.message)}`);
    t.regex(s.message?.text ?? '', pattern, name);
    t.true(await page!.isVisible('#message'));
  };
  await expectError('#skull-file', 'notes.txt', new TextEncoder().encode('these are not voxels\n'.repeat(40)), /notes\.txt is not a volume the app reads .* NIfTI-1 \(\.nii, \.nii\.gz\) or NRRD/);
  await expectError('#skull-file', 'cut.nii.gz', example.subarray(0, example.length >> 1), /cut\.nii\.gz: the gzip stream is corrupt or truncated/);
  const ct = decodeNifti(example);
  const intensity = encodeNifti({ ...ct, data: Float32Array.from(ct.data, (v, i) => (v ? 1200 : -1000 + (i % 7))) });
  await expectError('#skull-file', 'ct.nii', intensity, /intensity image \(CT\?\), not a 0\/1 skull mask; threshold it/);
  // A gzip bomb: an 8×8×8 header followed by 64 MiB of zeros; inflation stops at what the header declares (+ 1 MiB).
  const small = encodeNifti({ shape: [8, 8, 8], data: new Uint8Array(512), spacing: [1, 1, 1], origin: [0, 0, 0], direction: [1, 0, 0, 0, 1, 0, 0, 0, 1] });
  const bomb = gzipSync(Buffer.concat([Buffer.from(small), Buffer.alloc(64 << 20)]), { level: 9 });
  t.true(bomb.length < 200_000);
  await expectError('#skull-file', 'bomb.nii.gz', bomb, /bomb\.nii\.gz: the gzip stream inflates to more than \d+ bytes, far beyond the size its header declares/);
  await expectError('#skull-file', 'model.safetensors', model, /is a model checkpoint .* "Load checkpoint"/);
  await expectError('#model-file', 'junk.safetensors', new Uint8Array(4096).fill(7), /junk\.safetensors is not a safetensors checkpoint/);
  await expectError('#model-file', 'half.safetensors', model.subarray(0, model.length >> 1), /half\.safetensors is not a valid safetensors file: .*truncated/);
  await expectError('#model-file', 'encoder-only.safetensors', rewriteCheckpoint(model, (k) => !k.startsWith('decode'), (m) => m), /holds no decoder tensors/);
  await expectError('#model-file', 'cranial.nii.gz', example, /is not a safetensors checkpoint \(it is a volume: load it with "Load skull"\)/);
  // Still the shipped model, still completing.
  t.regex((await page!.textContent('#model-facts')) ?? '', /skull64-aggregated\.safetensors/);
  const ok = await complete('dev');
  t.is(ok.message, null);
  t.true(ok.lastResult!.implantVoxels > 100);

  // A checkpoint without completion data: it loads, says what is missing and how to add it, explores.
  const bare = rewriteCheckpoint(model, (k) => !k.startsWith('__voxvae__.completion.'), ({ completion: _, ...m }) => m);
  const s = await upload('#model-file', 'bare.safetensors', bare);
  t.is(s.message?.kind, 'info');
  t.regex(s.message!.text, /no completion data .* voxvae calibrate/);
  t.true(await page!.isDisabled('#complete'));
  t.regex((await page!.textContent('#model-note')) ?? '', /no completion data/);
  await page!.locator('#pc-sliders input.pc').nth(1).fill('2');
  await page!.waitForTimeout(300);
  t.is((await settle()).message?.kind, 'info');
  // Back to the shipped model.
  const back = await upload('#model-file', 'skull64-aggregated.safetensors', model);
  t.is(back.message?.kind, 'info');
  t.false(await page!.isDisabled('#complete'));
  const again = await complete('dev');
  t.not(again.message?.kind, 'error', JSON.stringify(again.message));
  t.true(again.lastResult!.implantVoxels > 100);
});

browserTest('a skull of another size is resampled to the model grid and the downloads come back on its own grid', async (t) => {
  const ex = decodeNifti(new Uint8Array(await readFile(EXAMPLE)));
  const big = resample(ex, [128, 128, 64], 'nearest');
  const s = await upload('#skull-file', 'big.nii.gz', encodeNifti(big, { gzip: true }));
  t.is(s.message?.kind, 'info');
  t.regex(s.message!.text, /resampled from 128×128×64 to the model's 64×64×32 grid/);
  const done = await complete('dev');
  t.is(done.message, null);
  t.regex((await page!.textContent('#skull-info')) ?? '', /resampled from 128×128×64 to the model's 64×64×32 grid/, 'the resampling note stays in the panel');
  t.true(done.lastResult!.implantVoxels > 100);
  const [dl] = await Promise.all([page!.waitForEvent('download'), page!.click('#download-implant')]);
  const vol = decodeNifti(new Uint8Array(await readFile((await dl.path())!)));
  t.deepEqual(vol.shape, [128, 128, 64]);
  t.deepEqual(vol.spacing.map((v) => +v.toFixed(4)), big.spacing.map((v) => +v.toFixed(4)));
  const ones = vol.data.reduce((a, v) => a + v, 0);
  t.is(ones, done.lastResult!.implantVoxels * 8, 'each model voxel of the implant becomes 2×2×2 input voxels');
  // An example again, through the list.
  await page!.selectOption('#example', 'examples/facial/000.nii.gz');
  const f = await settle();
  t.is(f.message, null);
  t.is(await page!.inputValue('#defect'), 'facial');
  const fc = await complete('dev');
  t.true(fc.lastResult!.implantVoxels > 0);
  await docShot('facial.png', '#panel section:nth-of-type(3)');
  // NRRD (gzip encoding, inflated in the browser) dropped on the page reads too, and completes like the NIfTI it came from.
  const nrrd = Buffer.from(await encodeNrrd(ex, { encoding: 'gzip' })).toString('base64');
  const dt = await page!.evaluateHandle((b64) => {
    const d = new DataTransfer();
    d.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], 'cranial_000.nrrd'));
    return d;
  }, nrrd);
  await page!.dispatchEvent('#viewer', 'drop', { dataTransfer: dt });
  const n = await settle();
  t.regex((await page!.textContent('#skull-info')) ?? '', /^cranial_000\.nrrd: 64×64×32 voxels/);
  t.is(n.message, null, JSON.stringify(n.message));
  await page!.selectOption('#defect', 'cranial');
  const nc = await complete('dev');
  t.is(nc.lastResult!.implantVoxels, firstImplant, 'the NRRD copy of the first example completes to the same implant');
});


browserTest('with threads (cross-origin isolated, no ?threads): the engine runs threaded and completes the same implant', async (t) => {
  const p2 = await browser!.newPage({ viewport: { width: 1200, height: 800 } });
  p2.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console.error (threaded page): ${m.text()}`);
  });
  p2.on('pageerror', (e) => problems.push(`uncaught (threaded page): ${String(e)}`));
  try {
    await p2.goto(`${base}/`);
    await p2.waitForFunction(() => (window as unknown as { voxvaeApp?: AppState }).voxvaeApp?.ready === true, undefined, { timeout: 60_000 });
    const cores = await p2.evaluate(() => navigator.hardwareConcurrency);
    const s = await p2.evaluate(() => JSON.parse(JSON.stringify((window as unknown as { voxvaeApp: AppState }).voxvaeApp)) as AppState);
    t.is(s.message, null);
    t.true(s.engine!.isolated);
    if (cores > 1) {
      t.is(s.engine!.variant, 'simd-mt');
      t.is(s.engine!.threads, Math.min(cores, 8));
    }
    t.regex((await p2.textContent('#engine-status')) ?? '', cores > 1 ? /SIMD \+ threads, \d+ threads/ : /SIMD, 1 thread/);
    await p2.click('#complete');
    await p2.waitForFunction(() => (window as unknown as { voxvaeApp: AppState }).voxvaeApp.lastResult !== null && !(window as unknown as { voxvaeApp: AppState }).voxvaeApp.busy, undefined, { timeout: 60_000 });
    const r = await p2.evaluate(() => (window as unknown as { voxvaeApp: AppState }).voxvaeApp.lastResult);
    t.is(r!.implantVoxels, firstImplant, 'the threaded engine predicts the same implant as one thread');
    t.log(`threaded: ${s.engine!.threads} threads; z + γ·DEV completion ${(await p2.evaluate(() => (window as unknown as { voxvaeApp: AppState }).voxvaeApp.timings['completion (z + γ·DEV)']))!.toFixed(1)} ms`);
  } finally {
    await p2.close();
  }
});

// Not a browser test: esbuild bundles without type checking, so the app's sources are checked here. tsc
// starts when the file loads and runs beside the browser tests.
const typeCheck = import('node:child_process').then(
  ({ execFile }) =>
    new Promise<{ code: number; out: string }>((resolve) =>
      execFile(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'web/tsconfig.json')], { cwd: ROOT }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
      ),
    ),
);

test('the app type-checks (tsc -p web/tsconfig.json)', async (t) => {
  const r = await typeCheck;
  t.is(r.code, 0, r.out);
});

browserTest('no console errors, no uncaught errors, no request outside the app', (t) => {
  t.deepEqual(problems, []);
  t.deepEqual(foreign, []);
});


