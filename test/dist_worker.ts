// One rank of test/distributed.test.ts, started as a process (node --import tsx test/dist_worker.ts MODE OUT).
// The group comes from the launcher's environment (VOXVAE_RANK, VOXVAE_WORLD_SIZE, VOXVAE_RENDEZVOUS).
//   steps:   STEPS training steps of Vae.trainStep on this rank's batch (constant β, clipping); writes the
//            weights. Ranks other than 0 start from other weights, so that the broadcast is tested.
//   trainer: a Trainer run (DynamicVAE β controller, checkpoints every epoch, rank 0 writes them),
//            optionally resumed from RESUME; writes the weights and the β/KL history.
//   grads:   one step at lr 0; writes the averaged gradients.
//   wait:    like steps but endless (the test kills or stops one rank).
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { initDistributed } from '../ts/dist/index.js';
import { Trainer } from '../ts/train/trainer.js';
import { CFG, SEED, STEP_OPTS, batchOf, trainerData, trainerOptions, weights } from './dist_common.js';
import { Vae } from '../ts/vae.js';
import { VoxvaeError } from '../ts/errors.js';
import type { NativeBinding } from '../ts/native.js';

async function main(): Promise<void> {
  const [mode, out] = process.argv.slice(2) as [string, string];
  const group = await initDistributed();
  if (!group) throw new Error('no group in the environment');
  const r = group.rank;
  const write = (name: string, a: Float32Array | string): Promise<void> =>
    writeFile(path.join(out, `${name}.rank${r}`), typeof a === 'string' ? a : new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  if (mode === 'steps' || mode === 'wait') {
    const vae = await Vae.create(CFG, { seed: SEED });
    if (r !== 0) {
      vae.encoder.network.net.initParams(1000 + r); // other weights: the start-of-training broadcast must replace them
      vae.decoder.network.net.initParams(2000 + r);
    }
    await group.syncNetworks([vae.encoder.network.net, vae.decoder.network.net]);
    const steps = mode === 'wait' ? Infinity : Number(process.env['STEPS'] ?? 3);
    for (let t = 0; t < steps; t++) {
      const res = await vae.trainStep(batchOf(r, t), STEP_OPTS);
      if (mode === 'wait') console.log(`rank ${r} step ${t} loss ${res.loss}`);
    }
    await write('weights', weights(vae));
  } else if (mode === 'grads') {
    // One step at lr 0 without clipping: the gradients left behind are the all-reduced average.
    const vae = await Vae.create(CFG, { seed: SEED });
    await vae.trainStep(batchOf(r, 0), { beta: STEP_OPTS.beta, optimizer: { lr: 0 } });
    const e = vae.encoder.network.net.getGrads(), d = vae.decoder.network.net.getGrads();
    const g = new Float32Array(e.length + d.length);
    g.set(e);
    g.set(d, e.length);
    await write('grads', g);
  } else if (mode === 'nccl-id') {
    // The NCCL unique id's way from rank 0 to the others, with a stand-in for the CUDA addon's NCCL functions.
    const made = Uint8Array.from({ length: 128 }, (_, i) => (i * 37 + 11) & 255);
    made.set([0x01, 0x00, 0xc0, 0x7f], 0); // a signalling-NaN bit pattern: bytes must arrive as they are
    let joined: { rank: number; worldSize: number; id: Uint8Array } | null = null;
    const fake = {
      backend: 'cuda',
      ncclVersion: () => 22807,
      ncclUniqueId: () => (r === 0 ? made : new Uint8Array(128).fill(9)),
      ncclConnect: async (o: { rank: number; worldSize: number; id: Uint8Array }) => ((joined = o), { allReduceGrads: async () => undefined, close: () => undefined }),
    } as unknown as NativeBinding;
    const c = await group.ncclComm(fake);
    if (!c || !joined) throw new Error('no NCCL communicator');
    const j = joined as { rank: number; worldSize: number; id: Uint8Array };
    await write('nccl', JSON.stringify({ rank: j.rank, worldSize: j.worldSize, id: Array.from(j.id), same: j.id.every((b, i) => b === made[i]) }));
  } else if (mode === 'trainer') {
    const data = await trainerData();
    const epochs = Number(process.env['EPOCHS'] ?? 2);
    const ckpt = process.env['CKPT']!;
    const resume = process.env['RESUME'];
    const slow = Number(process.env['SLOW_VALIDATE_MS'] ?? 0);
    const o = trainerOptions({
      epochs,
      checkpoint: { dir: ckpt, every: 1 },
      // Rank 0 alone validates: a slow validation must not look like a hang to the others.
      ...(slow ? { validate: async () => (await new Promise((res) => setTimeout(res, slow)), { slow: 1 }) } : {}),
    });
    const t = resume ? await Trainer.resume(resume, data, o) : new Trainer(await Vae.create(CFG, { seed: SEED }), data, o);
    const res = await t.run();
    await write('weights', weights(t.vae));
    await write('history', JSON.stringify(res.steps.map((s) => ({ beta: s.beta, klSeen: s.klSeen, loss: s.loss }))));
  }
  group.close();
}

main().catch((e: unknown) => {
  const err = e as VoxvaeError;
  console.error(`rank-error ${err.code ?? '?'} ${err.message}`);
  process.exit(e instanceof VoxvaeError ? 2 : 1);
});
