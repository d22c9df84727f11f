// Data-parallel training over the optional Gloo addon (ts/dist, native/dist; docs/distributed.md): 2 and 3
// CPU ranks as processes on this machine. Skipped, saying how to build it, when build-dist/voxvae_dist.node
// is not there (CI: apt-get install libgloo-dev && npm run build:dist).
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DIST_BUILD_HINT, distAvailable, distributedFromEnv, initDistributed, parseRendezvous, shardOf } from '../ts/dist/index.js';
import { VoxvaeError } from '../ts/errors.js';
import { optimizerStep, resolveOptimizer } from '../ts/train/step.js';
import { Vae } from '../ts/vae.js';
import { ROOT, relErr } from './helpers.js';
import { launch } from '../ts/cli/launch.js';
import { CFG, SEED, STEP_OPTS, batchOf, weights } from './dist_common.js';

const have = distAvailable();
if (!have) console.log(`distributed.test.ts: SKIPPED, the optional addon is not built (${DIST_BUILD_HINT})`);
const dtest = have ? test.serial : test.serial.skip;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

interface Rank {
  proc: ChildProcess;
  out: string[];
  done: Promise<{ code: number | null; ms: number }>;
}

function startRank(mode: string, dir: string, rank: number, worldSize: number, rendezvous: string, env: Record<string, string> = {}): Rank {
  const t0 = performance.now();
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test', 'dist_worker.ts'), mode, dir], {
    cwd: ROOT,
    env: { ...process.env, VOXVAE_RANK: String(rank), VOXVAE_WORLD_SIZE: String(worldSize), VOXVAE_RENDEZVOUS: rendezvous, VOXVAE_THREADS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: string[] = [];
  proc.stdout!.on('data', (d: Buffer) => out.push(d.toString()));
  proc.stderr!.on('data', (d: Buffer) => out.push(d.toString()));
  const done = new Promise<{ code: number | null; ms: number }>((resolve) => proc.on('exit', (code) => resolve({ code, ms: performance.now() - t0 })));
  return { proc, out, done };
}

async function runRanks(mode: string, dir: string, worldSize: number, env: Record<string, string> = {}, rendezvous?: string): Promise<{ code: number | null; out: string }[]> {
  const rv = rendezvous ?? `tcp://127.0.0.1:${await freePort()}`;
  const ranks = Array.from({ length: worldSize }, (_, r) => startRank(mode, dir, r, worldSize, rv, env));
  return Promise.all(ranks.map(async (k) => ({ code: (await k.done).code, out: k.out.join('') })));
}

const f32 = async (file: string): Promise<Float32Array> => {
  const b = await readFile(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

/**
 * The single-process reference: at every step each rank's gradient is computed on a replica holding the
 * current weights (rank r's replica seeded SEED + r·2^32, the noise seed rank r uses), the gradients are
 * averaged — float32: summed in float in rank order, then × fround(1/W); float64: summed in double, / W,
 * rounded once — then clipped and applied by one Adam on a master copy. Returns the weights after `steps`
 * steps and the averaged gradient of the first step (encoder then decoder, like the workers write them).
 */
async function reference(worldSize: number, steps: number, precision: 'float32' | 'float64'): Promise<{ weights: Float32Array; grads0: Float32Array }> {
  const master = await Vae.create(CFG, { seed: SEED });
  const replicas = await Promise.all(Array.from({ length: worldSize }, (_, r) => Vae.create(CFG, { seed: SEED + r * 2 ** 32 })));
  const nets = (v: Vae) => [v.encoder.network.net, v.decoder.network.net];
  let grads0: Float32Array | null = null;
  try {
    for (let t = 0; t < steps; t++) {
      const sums = nets(master).map((n) => (precision === 'float32' ? new Float32Array(n.numParams) : new Float64Array(n.numParams)));
      for (let r = 0; r < worldSize; r++) {
        const rep = replicas[r]!;
        nets(rep).forEach((n, k) => {
          n.setParams(nets(master)[k]!.getParams());
          n.setBuffers(nets(master)[k]!.getBuffers());
        });
        await rep.trainStep(batchOf(r, t), { beta: STEP_OPTS.beta, optimizer: { lr: 0 } }); // lr 0: only the gradients matter
        nets(rep).forEach((n, k) => {
          const g = n.getGrads(), s = sums[k]!;
          for (let i = 0; i < g.length; i++) s[i] = s[i]! + g[i]!; // a Float32Array store rounds each partial sum to float
        });
      }
      const avg = sums.map((s) => (precision === 'float32' ? Float32Array.from(s, (v) => Math.fround(v * Math.fround(1 / worldSize))) : Float32Array.from(s, (v) => v / worldSize)));
      nets(master).forEach((n, k) => n.setGrads!(avg[k]!));
      if (t === 0) grads0 = concat(avg[0]!, avg[1]!);
      // The step's order: decoder then encoder (ts/train/step.ts optimizerStep).
      await optimizerStep([master.decoder.network, master.encoder.network], resolveOptimizer(STEP_OPTS.optimizer, null), STEP_OPTS.maxGradNorm);
    }
    return { weights: weights(master), grads0: grads0! };
  } finally {
    master.dispose();
    for (const r of replicas) r.dispose();
  }
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return a.length === b.length ? m : Infinity;
}

const same = (t: ExecutionContext, w: Float32Array[], what: string): void => {
  for (let r = 1; r < w.length; r++) t.deepEqual(Buffer.from(w[r]!.buffer), Buffer.from(w[0]!.buffer), `rank ${r}'s ${what} differ from rank 0's`);
};

async function rankFiles(dir: string, name: string, W: number): Promise<Float32Array[]> {
  return Promise.all(Array.from({ length: W }, (_, r) => f32(path.join(dir, `${name}.rank${r}`))));
}

// 2 ranks, float32: Gloo's ring adds two values (a + b = b + a) as one process would: bit for bit.
// 3 ranks, float64 sums: exact, so bit for bit too. 3 ranks, float32: the ring associates the three terms
// otherwise than rank order, so the averaged gradient matches within 1e-6.
for (const [W, precision] of [[2, 'float32'], [3, 'float64']] as const) {
  dtest(`${W} ranks (${precision} sums): after 3 steps every rank holds the same weights, bit for bit those of one process averaging the same per-rank gradients`, async (t) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-dist-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const res = await runRanks('steps', dir, W, { STEPS: '3', VOXVAE_DIST_PRECISION: precision });
    res.forEach((r, i) => t.is(r.code, 0, `rank ${i}: ${r.out}`));
    const w = await rankFiles(dir, 'weights', W);
    same(t, w, 'weights');
    const ref = await reference(W, 3, precision);
    const start = await Vae.create(CFG, { seed: SEED });
    const moved = maxAbsDiff(weights(start), ref.weights);
    start.dispose();
    t.true(moved > 1e-4, `the reference moved the weights (${moved})`);
    const d = maxAbsDiff(w[0]!, ref.weights);
    t.is(d, 0, `max |rank − reference| = ${d}`);
  });
}

dtest('3 ranks (float32 sums): every rank holds the same averaged gradient, within 1e-6 of one process summing in rank order', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-dist-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const res = await runRanks('grads', dir, 3);
  res.forEach((r, i) => t.is(r.code, 0, `rank ${i}: ${r.out}`));
  const g = await rankFiles(dir, 'grads', 3);
  same(t, g, 'gradients');
  const ref = (await reference(3, 1, 'float32')).grads0;
  // Relative to each value with a floor of 1 % of the largest (test/helpers relErr): where the three terms
  // nearly cancel, one float rounding of a partial sum is large next to the result.
  const e = relErr(g[0]!, ref);
  t.true(maxAbsDiff(ref, new Float32Array(ref.length)) > 0, 'non-zero gradients');
  t.true(e <= 1e-6, `max relative error ${e}`);
  t.log(`3 ranks float32: averaged gradient vs rank-order sum, max relative error ${e.toExponential(2)} (floor 1 % of the largest)`);
});

dtest('a rank that dies makes the others fail with EDIST at once; one that hangs, within the timeout', async (t) => {
  for (const how of ['SIGKILL', 'SIGSTOP'] as const) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-dist-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const rv = `tcp://127.0.0.1:${await freePort()}`;
    const timeoutMs = 4000;
    const ranks = [0, 1, 2].map((r) => startRank('wait', dir, r, 3, rv, { VOXVAE_DIST_TIMEOUT_MS: String(timeoutMs) }));
    // Let them train a couple of steps, then kill (or stop) rank 1.
    const t0 = Date.now();
    while (!ranks[1]!.out.join('').includes('step 1') && Date.now() - t0 < 60000) await new Promise((r) => setTimeout(r, 50));
    t.true(ranks[1]!.out.join('').includes('step 1'), `rank 1 trained: ${ranks[1]!.out.join('')}`);
    const killedAt = performance.now();
    ranks[1]!.proc.kill(how);
    const others = await Promise.all([ranks[0]!, ranks[2]!].map(async (k) => ({ ...(await k.done), out: k.out.join('') })));
    const after = performance.now() - killedAt;
    if (how === 'SIGSTOP') ranks[1]!.proc.kill('SIGKILL');
    for (const o of others) {
      t.is(o.code, 2, o.out);
      t.regex(o.out, /rank-error EDIST /, o.out);
    }
    // Died: the sockets close, noticed at once (start-up of the error path included). Hung: the timeout.
    const bound = how === 'SIGKILL' ? 3000 : timeoutMs + 4000;
    t.true(after < bound, `${how}: the other ranks stopped ${after.toFixed(0)} ms after, bound ${bound} ms`);
    t.log(`${how} rank 1: the others failed with EDIST after ${after.toFixed(0)} ms (${others[0]!.out.trim().split('\n').pop()})`);
  }
});

dtest('a wrong world size, a rank given twice, and a missing rank fail clearly before training', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-dist-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // World size mismatch: rank 0 says 2, rank 1 says 3 (rank 2 never comes).
  {
    const rv = `tcp://127.0.0.1:${await freePort()}`;
    const env = { VOXVAE_RENDEZVOUS_TIMEOUT_MS: '4000', STEPS: '1' };
    const a = startRank('steps', dir, 0, 2, rv, env), b = startRank('steps', dir, 1, 3, rv, env);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    const outs = a.out.join('') + b.out.join('');
    t.true(ra.code !== 0 || rb.code !== 0, outs);
    t.regex(outs, /world size mismatch|did not join/, outs);
    t.regex(b.out.join(''), /rank-error EDIST .*(world size mismatch: this rank \(1\) has --world-size 3, rank 0 has 2|rank 2 of world size 3 did not join)/, b.out.join(''));
  }
  // Rank 1 twice.
  {
    const rv = `tcp://127.0.0.1:${await freePort()}`;
    const env = { VOXVAE_RENDEZVOUS_TIMEOUT_MS: '4000', STEPS: '1' };
    const ks = [startRank('steps', dir, 1, 3, rv, env), startRank('steps', dir, 1, 3, rv, env), startRank('steps', dir, 0, 3, rv, env)];
    await Promise.all(ks.map((k) => k.done));
    t.regex(ks.map((k) => k.out.join('')).join(''), /rank 1 joined this rendezvous twice/);
  }
  // Nobody at the rendezvous: rank 1 alone gives up within its rendezvous timeout.
  {
    const rv = `tcp://127.0.0.1:${await freePort()}`;
    const k = startRank('steps', dir, 1, 2, rv, { VOXVAE_RENDEZVOUS_TIMEOUT_MS: '1500' });
    const r = await k.done;
    t.is(r.code, 2);
    t.regex(k.out.join(''), /rank-error EDIST .*no rank 0 answered within 1500 ms/);
    t.true(r.ms < 15000, `${r.ms} ms`);
  }
});

dtest('Trainer across 2 ranks: a β controller sees the same KL on every rank; a checkpoint resumed with the same world size continues exactly, with another is refused', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-dist-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const full = path.join(dir, 'full'), part = path.join(dir, 'part'), res = path.join(dir, 'resumed');
  for (const d of [full, part, res]) await (await import('node:fs/promises')).mkdir(d);
  const a = await runRanks('trainer', full, 2, { EPOCHS: '2', CKPT: path.join(full, 'ckpt') });
  a.forEach((r, i) => t.is(r.code, 0, `rank ${i}: ${r.out}`));
  const [w0, w1] = [await f32(path.join(full, 'weights.rank0')), await f32(path.join(full, 'weights.rank1'))];
  t.deepEqual(Buffer.from(w1.buffer), Buffer.from(w0.buffer), 'the ranks end with the same weights');
  const h0 = JSON.parse(await readFile(path.join(full, 'history.rank0'), 'utf8')) as { beta: number; klSeen: number }[];
  const h1 = JSON.parse(await readFile(path.join(full, 'history.rank1'), 'utf8')) as { beta: number; klSeen: number }[];
  t.is(h0.length, 2 * 3); // 9 volumes padded to 10: 5 per rank, in batches of 2 → 3 steps per epoch
  t.deepEqual(h1, h0, 'every rank saw the same KL and computed the same β');
  t.true(new Set(h0.map((s) => s.beta)).size > 1, 'the controller moved β');
  // Only rank 0 wrote checkpoints (the two ranks share the folder here, as on a shared file system).
  const ck = await (await import('node:fs/promises')).readdir(path.join(full, 'ckpt'));
  t.deepEqual(ck.sort(), ['epoch-0001', 'epoch-0002']);
  // Epoch 1, then resume to epoch 2 in fresh processes.
  const b = await runRanks('trainer', part, 2, { EPOCHS: '1', CKPT: path.join(part, 'ckpt') });
  b.forEach((r, i) => t.is(r.code, 0, `rank ${i}: ${r.out}`));
  const c = await runRanks('trainer', res, 2, { EPOCHS: '2', CKPT: path.join(res, 'ckpt'), RESUME: path.join(part, 'ckpt', 'epoch-0001') });
  c.forEach((r, i) => t.is(r.code, 0, `rank ${i}: ${r.out}`));
  for (const r of [0, 1]) t.deepEqual(Buffer.from((await f32(path.join(res, `weights.rank${r}`))).buffer), Buffer.from(w0.buffer), `resumed rank ${r} = uninterrupted run`);
  // Another world size: refused before training.
  const d = await runRanks('trainer', res, 3, { EPOCHS: '2', CKPT: path.join(res, 'ckpt3'), RESUME: path.join(part, 'ckpt', 'epoch-0001') });
  d.forEach((r) => {
    t.is(r.code, 2, r.out);
    t.regex(r.out, /rank-error ECHECKPOINT .*written by a run of 2 rank\(s\); this one has 3/);
  });
});

test('shards: seeded order split disjointly and covering; padded by wrapping to equal lengths', (t) => {
  const order = [5, 3, 8, 1, 0, 7, 2, 6, 4];
  const s2 = [0, 1].map((r) => shardOf(order, r, 2));
  t.deepEqual(s2, [[5, 8, 0, 2, 4], [3, 1, 7, 6, 5]]);
  const s3 = [0, 1, 2].map((r) => shardOf(order, r, 3));
  t.deepEqual(s3.flat().sort(), order.slice().sort(), '3 ranks of 9: disjoint and covering');
  t.deepEqual(shardOf(order, 0, 1), order);
  t.deepEqual(shardOf([1, 2], 2, 4), [1]);
});

test('rendezvous and environment parsing: clear errors', (t) => {
  t.deepEqual(parseRendezvous('tcp://10.0.0.2:29500'), { kind: 'tcp', host: '10.0.0.2', port: 29500 });
  t.deepEqual(parseRendezvous('file:///shared/run1'), { kind: 'file', path: '/shared/run1' });
  for (const bad of ['10.0.0.2:29500', 'tcp://host', 'tcp://host:70000', 'file://relative', 'http://x:1']) {
    const e = t.throws(() => parseRendezvous(bad, '--rendezvous'), { instanceOf: VoxvaeError });
    t.is(e?.code, 'EINVAL');
    t.regex(e!.message, /^--rendezvous /);
  }
  t.is(distributedFromEnv({}), null);
  t.deepEqual(distributedFromEnv({ VOXVAE_RANK: '1', VOXVAE_WORLD_SIZE: '2', VOXVAE_RENDEZVOUS: 'tcp://h:1' }), { rank: 1, worldSize: 2, rendezvous: 'tcp://h:1' });
  t.deepEqual(distributedFromEnv({ RANK: '0', WORLD_SIZE: '4', MASTER_ADDR: 'node1', MASTER_PORT: '2950' }), { rank: 0, worldSize: 4, rendezvous: 'tcp://node1:2950' });
  t.throws(() => distributedFromEnv({ VOXVAE_WORLD_SIZE: '2', VOXVAE_RENDEZVOUS: 'tcp://h:1' }), { message: /VOXVAE_RANK must be set/ });
  t.throws(() => distributedFromEnv({ VOXVAE_WORLD_SIZE: 'two', VOXVAE_RANK: '0', VOXVAE_RENDEZVOUS: 'tcp://h:1' }), { message: /VOXVAE_WORLD_SIZE must be a non-negative integer/ });
});

test('initDistributed: a rank outside the world size is EINVAL before any connection', async (t) => {
  const e = await t.throwsAsync(initDistributed({ rank: 2, worldSize: 2, rendezvous: 'tcp://127.0.0.1:1' }), { instanceOf: VoxvaeError });
  t.is(e?.code, 'EINVAL');
  t.regex(e!.message, /options\.rank must be in \[0, 2\)/);
});

dtest('voxvae launch --nproc 2 --exec: starts the ranks with the rendezvous in their environment', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-dist-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const lines: string[] = [];
  const code = await launch([process.execPath, '--import', 'tsx', path.join(ROOT, 'test', 'dist_worker.ts'), 'steps', dir], { nproc: 2, exec: true, log: (l) => lines.push(l) });
  t.is(code, 0, lines.join('\n'));
  t.regex(lines[0]!, /ranks 0\.\.1 of 2, rendezvous tcp:\/\/127\.0\.0\.1:\d+/);
  same(t, await rankFiles(dir, 'weights', 2), 'weights');
});

test('voxvae launch: a failing rank gives the run its exit code; ranks still running after --grace are stopped', async (t) => {
  const lines: string[] = [];
  const t0 = performance.now();
  const script = "if (process.env.VOXVAE_RANK === '1') process.exit(3); setTimeout(() => {}, 60000);";
  const code = await launch([process.execPath, '-e', script], { nproc: 2, exec: true, grace: 1, log: (l) => lines.push(l) });
  t.is(code, 3);
  t.regex(lines.join('\n'), /rank 1 exited with code 3/);
  t.true(performance.now() - t0 < 20000);
  await t.throwsAsync(launch(['x'], { nproc: 2, worldSize: 4, log: () => undefined }), { message: /spans several machines: give --rendezvous/ });
  await t.throwsAsync(launch(['x'], { nproc: 3, worldSize: 4, rank: 2, rendezvous: 'tcp://h:1', log: () => undefined }), { message: /ranks 2\.\.4 do not fit --world-size 4/ });
});

dtest('file:// rendezvous (Gloo FileStore in a shared folder): 2 ranks join and average', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-dist-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const res = await runRanks('grads', dir, 2, {}, `file://${path.join(dir, 'rdv')}`);
  res.forEach((r, i) => t.is(r.code, 0, `rank ${i}: ${r.out}`));
  same(t, await rankFiles(dir, 'grads', 2), 'gradients');
  // The folder is this run's: a third process claiming rank 1 there is refused.
  const again = await runRanks('grads', dir, 2, { VOXVAE_RENDEZVOUS_TIMEOUT_MS: '1500' }, `file://${path.join(dir, 'rdv')}`);
  t.regex(again.map((r) => r.out).join(''), /already joined the rendezvous folder .*fresh, empty folder/);
});

test('without the optional addon: ENATIVE saying how to install Gloo and build it', async (t) => {
  const script = `
    import { initDistributed } from './ts/dist/index.ts';
    try { await initDistributed({ rank: 0, worldSize: 2, rendezvous: 'tcp://127.0.0.1:1' }); console.log('joined?'); }
    catch (e) { console.log(e.code + ' ' + e.message); }`;
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, env: { ...process.env, VOXVAE_DIST_ADDON: path.join(os.tmpdir(), 'no-such-voxvae_dist.node') } });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((resolve) => proc.on('exit', resolve));
  t.regex(out, /^ENATIVE data-parallel training needs .*no-such-voxvae_dist\.node, which is not there: .*apt-get install libgloo-dev.*npm run build:dist/m, out);
});

dtest('CUDA ranks: rank 0\'s NCCL unique id reaches every rank byte for byte through the Gloo group', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-dist-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const res = await runRanks('nccl-id', dir, 2);
  res.forEach((r, i) => t.is(r.code, 0, `rank ${i}: ${r.out}`));
  for (const r of [0, 1]) {
    const j = JSON.parse(await readFile(path.join(dir, `nccl.rank${r}`), 'utf8')) as { rank: number; worldSize: number; same: boolean };
    t.deepEqual([j.rank, j.worldSize, j.same], [r, 2, true]);
  }
});

dtest('Trainer across 2 ranks: rank 0 validating longer than the collective timeout is not taken for a hang', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'voxvae-dist-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const res = await runRanks('trainer', dir, 2, { EPOCHS: '2', CKPT: path.join(dir, 'ckpt'), SLOW_VALIDATE_MS: '3000', VOXVAE_DIST_TIMEOUT_MS: '1500' });
  res.forEach((r, i) => t.is(r.code, 0, `rank ${i}: ${r.out}`));
  same(t, await rankFiles(dir, 'weights', 2), 'weights');
});
