// Issue 17, findings 1 and 4: a checkpoint's config is checked against its tensors' shapes before any
// network is built (a small file whose metadata claims a huge volume or latent costs nothing), and
// metadata without adamSteps (or with null) loads. Peak memory is measured in a child process (VmHWM).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monaiVarAutoEncoder } from '../ts/config.js';
import { VoxvaeError } from '../ts/errors.js';
import { parseSafetensors, serializeSafetensors, toFloat32, toNumbers, type TensorToWrite } from '../ts/safetensors.js';
import { checkpointNetworks, resolveConfigs } from '../ts/model/checkpoint.js';
import { Vae } from '../ts/vae.js';
import { loadModel, loadRuntime, type WasmRuntime } from '../ts/web/index.js';
import { ROOT } from './helpers.js';

const SHAPE: [number, number, number] = [16, 16, 16];
const CFG = monaiVarAutoEncoder({ inputShape: SHAPE, channels: [4, 8], latentSize: 6 });
let tmp = '';
let rt: WasmRuntime;
let tensors: Map<string, TensorToWrite>;
let meta: Record<string, unknown>;

test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'voxvae-hostile-ckpt-'));
  rt = await loadRuntime({ threads: 1 });
  const vae = await Vae.create(CFG, { seed: 3 });
  const x = Float32Array.from({ length: 2 * 16 ** 3 }, (_, i) => (i * 7919) % 5 < 2 ? 1 : 0);
  await vae.trainStep({ input: x, shape: [2, 1, ...SHAPE] }, { optimizer: { lr: 1e-3 } });
  const f = path.join(tmp, 'base.safetensors');
  await vae.save(f);
  vae.dispose();
  const st = parseSafetensors(new Uint8Array(readFileSync(f)));
  tensors = new Map();
  for (const [k, e] of st.tensors) tensors.set(k, e.dtype === 'I64' ? { dtype: 'I64', shape: e.shape, data: toNumbers(e) } : { dtype: 'F32', shape: e.shape, data: toFloat32(e) });
  meta = JSON.parse(st.metadata.voxvae!) as Record<string, unknown>;
});
test.after.always(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function write(name: string, m: Record<string, unknown>): Promise<string> {
  const f = path.join(tmp, `${name}.safetensors`);
  await writeFile(f, serializeSafetensors(tensors, { voxvae: JSON.stringify(m), format: 'pt' }));
  return f;
}

const lying: [string, (c: Record<string, unknown>) => Record<string, unknown>][] = [
  ['input512', (c) => ({ ...c, inputShape: [512, 512, 512] })],
  ['input1024', (c) => ({ ...c, inputShape: [1024, 1024, 1024] })],
  ['latent65536', (c) => ({ ...c, latentSize: 65536 })],
];

/** Loads `file` in a child process (native Vae.load or WASM loadModel): the error code, the growth of
 *  peak RSS (VmHWM) during the load, and the time; a load that runs past `timeout` ms is reported as such. */
function childLoad(file: string, engine: 'native' | 'wasm', timeout = 20_000): { code: string; grew: number; ms: number } {
  const load = engine === 'native'
    ? `const { Vae } = await import(${JSON.stringify(path.join(ROOT, 'ts/vae.ts'))}); await Vae.load(${JSON.stringify(file)});`
    : `const { loadModel, loadRuntime } = await import(${JSON.stringify(path.join(ROOT, 'ts/web/index.ts'))}); const runtime = await loadRuntime({ threads: 1 });
       const bytes = new Uint8Array(readFileSync(${JSON.stringify(file)})); before = hwm(); await loadModel(bytes, { runtime });`;
  const script = `
    import { readFileSync } from 'node:fs';
    const hwm = () => Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
    let before = hwm(), code = 'loaded';
    const t0 = performance.now();
    try { ${load} } catch (e) { code = e.code ?? e.name; }
    console.log(JSON.stringify({ code, grew: hwm() - before, ms: performance.now() - t0 }));`;
  try {
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout, killSignal: 'SIGKILL', stdio: ['ignore', 'pipe', 'pipe'] });
    return JSON.parse(out.trim().split('\n').pop()!) as { code: string; grew: number; ms: number };
  } catch (e) {
    const x = e as { signal?: string; status?: number; stderr?: string };
    return { code: x.signal === 'SIGKILL' ? `timeout after ${timeout} ms` : `exit ${x.status}: ${String(x.stderr).slice(-300)}`, grew: NaN, ms: NaN };
  }
}

for (const [name, change] of lying) {
  test(`finding 1: a small checkpoint whose config claims ${name} is ECHECKPOINT at once, native and WASM`, async (t) => {
    const f = await write(name, { ...meta, config: change(meta.config as Record<string, unknown>), decoderConfig: change(meta.decoderConfig as Record<string, unknown>) });
    const err = await t.throwsAsync(parseCheck(f), { instanceOf: VoxvaeError });
    t.regex(err!.message, /has shape \[.*\], this model needs|missing \d+ tensor/);
    for (const engine of ['native', 'wasm'] as const) {
      const r = childLoad(f, engine);
      t.is(r.code, 'ECHECKPOINT', `${engine}: ${r.code}`);
      t.true(r.grew < 64 << 20, `${engine}: peak RSS grew by ${(r.grew / 2 ** 20).toFixed(1)} MiB to refuse a ${(readFileSync(f).length / 1024).toFixed(0)} KiB file`);
      t.true(r.ms < 3000, `${engine}: refused after ${r.ms.toFixed(0)} ms`);
    }
  });
}

/** The checks Vae.load runs before building anything. */
async function parseCheck(f: string): Promise<void> {
  const st = parseSafetensors(new Uint8Array(readFileSync(f)));
  checkpointNetworks(st, f, resolveConfigs(st, f));
}

test('finding 4: metadata without adamSteps, or with adamSteps null, loads (no untyped TypeError)', async (t) => {
  for (const [name, m] of [['no-adam', { ...meta, adamSteps: undefined }], ['null-adam', { ...meta, adamSteps: null }], ['null-parts', { ...meta, adamSteps: { encoder: null } }]] as const) {
    const f = await write(name, m as Record<string, unknown>);
    const vae = await Vae.load(f);
    t.is(vae.encoder.network.adam, null, name);
    vae.dispose();
    const w = await loadModel(new Uint8Array(readFileSync(f)), { runtime: rt });
    t.is(w.latentSize, 6);
    w.dispose();
  }
});
