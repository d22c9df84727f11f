// A short end-to-end run of the β trade-off experiment at 32³: every method trains, the table has
// finite reconstruction figures, and the report and PNG figures are written.
import test from 'ava';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runBetaTradeoff } from '../ts/experiment/beta_tradeoff.js';

test('beta-tradeoff end to end at 32³ (scale test)', async (t) => {
  const out = await mkdtemp(path.join(os.tmpdir(), 'voxvae-exp-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const lines: string[] = [];
  const { rows } = await runBetaTradeoff({ out, scale: 'test', skulls: 4, epochs: 1, seed: 2, log: (l) => lines.push(l) });
  t.deepEqual(rows.map((r) => r.method).sort(), ['aggregated', 'controlvae', 'dynamicvae', 'rivera', 'rivera-gan', 'vae-100', 'vae-1e-4']);
  for (const r of rows) {
    t.true(r.reconDice >= 0 && r.reconDice <= 1, `${r.method} recon Dice ${r.reconDice}`);
    t.true(Number.isFinite(r.kl) && Number.isFinite(r.gaussKlFull), r.method);
  }
  const files = await readdir(out);
  for (const f of ['report.md', 'report.html', 'results.json', 'loss_curves.png', 'controller_beta.png', 'latent_pca_aggregated.png', 'aggregated_vae.safetensors']) t.true(files.includes(f), f);
  t.true(files.some((f) => f.startsWith('completion_')));
  const png = await readFile(path.join(out, 'loss_curves.png'));
  t.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
  const md = await readFile(path.join(out, 'report.md'), 'utf8');
  t.regex(md, /\| aggregated \|/);
  t.regex(md, /Claim check/);
});
