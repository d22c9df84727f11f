// Issue 17, finding 8 and the kill -9 check: a Trainer killed at a random moment (during a step or
// during a checkpoint save) leaves its newest checkpoint whole — it loads and resumes bit for bit —
// and the temporary folders of a save that was killed are never taken for a checkpoint and are removed.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Trainer } from '../ts/train/trainer.js';
import { ROOT } from './helpers.js';
import { data, opts } from './hostile/kill_child.js';

let tmp = '';
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'voxvae-hostile-kill-'));
});
test.after.always(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** A process id that is no longer running. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

test('finding 8: temporary folders of a killed save are never the newest checkpoint, and are removed', async (t) => {
  const dir = path.join(tmp, 'stale');
  const ds = await data();
  const { Vae } = await import('../ts/vae.js');
  const { CFG } = await import('./hostile/kill_child.js');
  const tr = new Trainer(await Vae.create(CFG, { seed: 2 }), ds, opts({ epochs: 2, checkpoint: { dir, every: 1 } }));
  await tr.run();
  tr.vae.dispose();
  const pid = deadPid();
  // What a kill during Trainer.save leaves: the old naming (which sorted after the real folder) and the new.
  for (const n of [`epoch-0002.tmp-${pid}`, `epoch-0003.tmp-${pid}`, `.epoch-0003.tmp-${pid}-0badc0de`]) {
    await mkdir(path.join(dir, n));
    await writeFile(path.join(dir, n, 'trainer.json'), JSON.stringify({ format: 'voxvae.trainer', version: 1, epoch: 3, batch: 0, history: { steps: [], epochs: [], rollbacks: [] } }));
  }
  // A kill between moving the old checkpoint aside and renaming the new one into place: the old one comes back.
  await (await import('node:fs/promises')).rename(path.join(dir, 'epoch-0001'), path.join(dir, `.epoch-0001.old-${pid}-0badc0de`));
  t.is(await Trainer.latestCheckpoint(dir), path.join(dir, 'epoch-0002'));
  t.deepEqual((await readdir(dir)).sort(), ['epoch-0001', 'epoch-0002']);
  // The Trainer clears them too when it starts.
  await mkdir(path.join(dir, `epoch-0002.tmp-${pid}`));
  const again = await Trainer.resume(path.join(dir, 'epoch-0002'), ds, opts({ epochs: 3, checkpoint: { dir, every: 1 } }));
  await again.run();
  again.vae.dispose();
  t.deepEqual((await readdir(dir)).sort(), ['epoch-0001', 'epoch-0002', 'epoch-0003']);
  t.is(await Trainer.latestCheckpoint(dir), path.join(dir, 'epoch-0003'));
});

test('kill -9 during training (3 trials): the newest checkpoint loads and resumes bit for bit', async (t) => {
  const ds = await data();
  let compared = 0;
  for (let trial = 0; trial < 3; trial++) {
    const dir = path.join(tmp, `kill-${trial}`);
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/hostile/kill_child.ts'), 'run', dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const logged = new Map<number, number>();
    // Kill after a pseudo-random number of steps past the first epoch, at a varying moment after it.
    const perEpoch = Math.ceil(ds.length / 2);
    const target = perEpoch + 1 + ((trial * 7919) % (2 * perEpoch));
    await new Promise<void>((resolve) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const s = JSON.parse(buf.slice(0, i)) as { step: number; loss: number };
          buf = buf.slice(i + 1);
          logged.set(s.step, s.loss);
          if (logged.size === target) setTimeout(() => child.kill('SIGKILL'), (trial * 37) % 60);
        }
      });
      child.on('exit', () => resolve());
    });
    const latest = await Trainer.latestCheckpoint(dir);
    t.truthy(latest, `trial ${trial}: no checkpoint after ${logged.size} steps`);
    t.false((await readdir(dir)).some((n) => n.includes('.tmp-') || n.includes('.old-')), 'temporaries left behind');
    // Resume for one epoch and compare with the steps the killed process took (where it got that far).
    const res = await Trainer.resume(latest!, ds, opts());
    const from = res.history.steps.length, epoch = res.epoch;
    res.vae.dispose();
    const r = await Trainer.resume(latest!, ds, opts({ epochs: epoch + 1 }));
    const out = await r.run();
    r.vae.dispose();
    for (const s of out.steps.slice(from)) {
      const killed = logged.get(s.step);
      if (killed === undefined) continue;
      t.is(s.loss, killed, `trial ${trial}: step ${s.step} after resuming from ${path.basename(latest!)}`);
      compared++;
    }
  }
  t.true(compared > 0, 'no step after a checkpoint was compared');
  t.log(`${compared} resumed steps compared bit for bit`);
});
