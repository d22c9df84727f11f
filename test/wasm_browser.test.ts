// voxvae/web in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// loads test/browser/index.html, which decodes a latent with a checkpoint through the bundled browser
// entry; the result must be bit-for-bit Node's WebAssembly result (same .wasm, IEEE arithmetic) and
// within 1e-5 of the native engine. The bundle is built for the browser platform with nothing marked
// external, so a static import of a Node module anywhere under ts/web would fail the build.
//
// Skipped, with the reason printed, where /usr/bin/chromium is absent (CI: apt-get install chromium).
import test from 'ava';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { monaiVarAutoEncoder } from '../ts/config.js';
import { Vae } from '../ts/vae.js';
import { loadModel } from '../ts/web/index.js';
import { ROOT, relErr } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available) console.warn(`wasm_browser.test.ts: skipped — ${CHROMIUM} is absent (install Debian's chromium to run the browser tests)`);
const browserTest = available ? test.serial : test.skip;

interface Done {
  y: number[];
  mask: number[];
  simd: boolean;
  threads: number;
  threadsUnavailable: string | null;
  isolated: boolean;
  features: { wasm: boolean; simd: boolean; threads: boolean };
}

const CFG = monaiVarAutoEncoder({ inputShape: [32, 32, 16], channels: [8, 16, 16, 32], latentSize: 12 });
const Z = Float32Array.from({ length: 2 * 12 }, (_, i) => Math.sin(1.7 * i) * 1.3);

let tmp = '';
let server: http.Server | null = null;
let base = '';
let bundle = '';
let checkpoint: Uint8Array = new Uint8Array();

browserTest.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'voxvae-browser-'));
  const vae = await Vae.create(CFG, { seed: 5 });
  const file = path.join(tmp, 'model.safetensors');
  await vae.save(file);
  vae.dispose();
  checkpoint = await readFile(file);
  const esbuild = await import('esbuild');
  const out = await esbuild.build({
    entryPoints: [path.join(ROOT, 'ts/web/index.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const inputs = Object.keys(out.metafile!.inputs);
  const nodeInputs = inputs.filter((p) => p.startsWith('node:') || !p.startsWith('ts/'));
  if (nodeInputs.length) throw new Error(`the browser bundle pulls in ${nodeInputs.join(', ')}`);
  bundle = out.outputFiles[0]!.text;
  const files: Record<string, { type: string; body: () => Promise<Uint8Array | string> }> = {
    '/': { type: 'text/html', body: () => readFile(path.join(ROOT, 'test/browser/index.html')) },
    '/bundle.js': { type: 'text/javascript', body: async () => bundle },
    '/model.safetensors': { type: 'application/octet-stream', body: async () => checkpoint },
    '/z.bin': { type: 'application/octet-stream', body: async () => new Uint8Array(Z.buffer) },
  };
  server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    // Cross-origin isolation, so that SharedArrayBuffer (and the threaded build) is available.
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    let entry = files[url.pathname];
    const wasm = /^\/wasm\/([a-z_]+\.wasm)$/.exec(url.pathname);
    if (wasm) {
      const p = path.join(ROOT, 'native/wasm/dist', wasm[1]!);
      if (existsSync(p)) entry = { type: 'application/wasm', body: () => readFile(p) };
    }
    if (!entry) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': entry.type }).end(await entry.body());
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
});

browserTest.after.always(async () => {
  if (server) await new Promise((r) => server!.close(r));
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function runPage(query: string): Promise<{ done?: Done; error?: { code: string | null; message: string; path: string | null } }> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const logs: string[] = [];
    page.on('console', (m) => logs.push(m.text()));
    page.on('pageerror', (e) => logs.push(String(e)));
    await page.goto(`${base}/?${query}`);
    await page.waitForFunction(() => (window as unknown as { __done?: unknown; __error?: unknown }).__done !== undefined || (window as unknown as { __error?: unknown }).__error !== undefined, undefined, { timeout: 120_000 }).catch((e) => {
      throw new Error(`the page did not finish: ${(e as Error).message}\n${logs.join('\n')}`);
    });
    return await page.evaluate(() => ({ done: (window as unknown as { __done?: Done }).__done, error: (window as unknown as { __error?: { code: string | null; message: string; path: string | null } }).__error }));
  } finally {
    await browser.close();
  }
}

browserTest('Chromium decodes a latent with voxvae/web bit-for-bit like Node, on one thread and on two', async (t) => {
  const node = await loadModel(checkpoint, { threads: 1 });
  const yNode = await node.decode(Z, { output: 'logits' });
  const maskNode = await node.decode(Z, { output: 'mask' });
  node.dispose();
  const vae = await Vae.load(path.join(tmp, 'model.safetensors'));
  const yNative = await vae.decode(Z, { output: 'logits' });
  vae.dispose();
  for (const threads of [1, 2]) {
    const r = await runPage(`threads=${threads}`);
    t.falsy(r.error, JSON.stringify(r.error));
    const d = r.done!;
    t.true(d.isolated, 'the page is cross-origin isolated');
    t.true(d.simd && d.features.simd, 'Chromium runs the SIMD build');
    t.is(d.threads, threads, `threads: ${d.threadsUnavailable}`);
    t.is(d.y.length, yNode.length);
    t.true(d.y.every((v, i) => v === yNode[i]), `threads=${threads}: the browser's logits differ from Node's`);
    t.deepEqual(d.mask, Array.from(maskNode));
    const e = relErr(Float32Array.from(d.y), yNative);
    t.true(e <= 1e-5, `vs native: ${e.toExponential(2)}`);
    t.log(`threads=${threads}: bitwise equal to Node; ${e.toExponential(2)} from the native engine`);
  }
});

browserTest('a wrong wasm location fails in the browser with an error naming the URL tried', async (t) => {
  const r = await runPage('threads=1&wasm=/nowhere/');
  t.falsy(r.done);
  t.is(r.error?.code, 'EIO');
  t.regex(r.error!.message, /\/nowhere\/voxvae_simd\.wasm: HTTP 404/);
  t.regex(r.error!.message, /setWasmPath/);
});
