// The command line on your own data, end to end: `dataset synth` writes a small folder (32×32×16), then
// train (aggregated) → calibrate → evaluate → complete (a folder) → encode → decode → sample → interpolate
// → export; a training interrupted by SIGINT writes a checkpoint and `--resume` finishes it with the same
// model bit for bit as an uninterrupted run; progress on a terminal is a bar with loss, β, Dice and ETA.
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { readVolume } from '../ts/data/io.js';
import { TrainingProgress } from '../ts/cli/run.js';
import { voxvae } from './cli_helpers.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'voxvae-cli-train-'));
const data = path.join(tmp, 'data');
test.before(async (t) => {
  const r = await voxvae(['dataset', 'synth', '--out', data, '--n', '6', '--shape', '32,32,16', '--workers', '0', '--seed', '3']);
  t.is(r.code, 0, r.stderr);
});
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

const json = <T>(s: string): T => JSON.parse(s) as T;

test.serial('train → calibrate → evaluate → complete → encode/decode/sample/interpolate → export', async (t) => {
  const run = path.join(tmp, 'agg');
  const tr = await voxvae(['train', '--data', data, '--out', run, '--method', 'aggregated', '--epochs', '12', '--stage2-epochs', '8', '--lr', '3e-3', '--seed', '2', '--json']);
  t.is(tr.code, 0, tr.stderr);
  // Plain progress lines (stderr is not a terminal here), one per epoch of both stages.
  t.regex(tr.stderr, /stage 1: epoch 12\/12 {2}loss\/vol [\d.]+ {2}KL\/vol [\d.]+ {2}β 0\.1000 {2}validation Dice [\d.]+/);
  t.regex(tr.stderr, /stage 2: epoch 8\/8 /);
  const outcome = json<{ modelFile: string; cancelled: boolean; validationDice: number; epochs: { stage: string; epochs: unknown[] }[] }>(tr.stdout);
  t.false(outcome.cancelled);
  t.deepEqual(outcome.epochs.map((e) => [e.stage, e.epochs.length]), [['stage 1', 12], ['stage 2', 8]]);
  t.true(outcome.validationDice > 0.5, `validation Dice ${outcome.validationDice}`);
  const record = json<{ geometry: { shape: number[]; spacing: number[] }; data: { train: number; validation: number; volumes: number } }>(readFileSync(path.join(run, 'training.json'), 'utf8'));
  t.deepEqual(record.geometry.shape, [32, 32, 16]);
  t.is(record.data.volumes, 18);
  t.is(record.data.train + record.data.validation, 18);
  t.is(record.data.validation % 3, 0, 'split by subject: whole skulls (3 volumes each) held out');
  t.true(existsSync(path.join(run, 'checkpoints', 'stage1', 'epoch-0012')));

  const model = path.join(run, 'model.safetensors');
  const cal = await voxvae(['calibrate', '--model', model, '--data', data, '--out', model]);
  t.is(cal.code, 0, cal.stderr);

  const ev = await voxvae(['evaluate', '--model', model, '--data', data, '--out', path.join(tmp, 'eval'), '--examples', '2', '--json']);
  t.is(ev.code, 0, ev.stderr);
  const res = json<{ reconstruction: { dice: number; n: number; byClass: Record<string, { n: number }> }; completion: { byClass: { cls: string; n: number; implantDice: number }[] }; latent: { size: number } }>(ev.stdout);
  t.is(res.reconstruction.n, 18);
  t.deepEqual(Object.keys(res.reconstruction.byClass).sort(), ['complete', 'cranial', 'facial']);
  t.true(res.reconstruction.dice > 0.5, `recon Dice ${res.reconstruction.dice}`);
  t.deepEqual(res.completion.byClass.map((c) => [c.cls, c.n]), [['cranial', 6], ['facial', 6]]);
  for (const f of ['report.html', 'report.md', 'results.json', 'completion_cranial.png', 'training_loss.png', 'validation_dice.png']) t.true(existsSync(path.join(tmp, 'eval', f)), f);
  const html = readFileSync(path.join(tmp, 'eval', 'report.html'), 'utf8');
  t.regex(html, /<img src="data:image\/png;base64,/, 'figures embedded');
  t.notRegex(html, /<img src="(?!data:)/, 'no external image');
  t.regex(html, /reconstruction Dice ↑/);
  t.regex(html, /implant HD95 mm ↓/);
  t.regex(html, /<dt>command<\/dt><dd><code>voxvae evaluate --model /);

  // complete over a folder: every file, with the input's geometry
  const inDir = path.join(data, 'defective_skull', 'cranial');
  const co = await voxvae(['complete', '--model', model, '--input', inDir, '--defect', 'cranial', '--out', path.join(tmp, 'completed'), '--implant', path.join(tmp, 'implants'), '--steps', '10']);
  t.is(co.code, 0, co.stderr);
  t.deepEqual(readdirSync(path.join(tmp, 'completed')), readdirSync(inDir));
  const src = await readVolume(path.join(inDir, '000.nii.gz'));
  const done = await readVolume(path.join(tmp, 'completed', '000.nii.gz'));
  t.deepEqual(done.shape, src.shape);
  t.deepEqual([...done.spacing], [...src.spacing]);
  for (let i = 0; i < src.data.length; i++) if (src.data[i]! > 0.5 && !(done.data[i]! > 0.5)) return t.fail('the completed skull keeps the input bone');

  // encode → decode: one code per file, decoded with the source's geometry
  const z = path.join(tmp, 'z.json');
  const en = await voxvae(['encode', '--model', model, '--input', path.join(data, 'complete_skull'), '--out', z]);
  t.is(en.code, 0, en.stderr);
  const lat = json<{ size: number; items: { z: number[]; source: string }[] }>(readFileSync(z, 'utf8'));
  t.is(lat.items.length, 6);
  t.is(lat.items[0]!.z.length, lat.size);
  const de = await voxvae(['decode', '--model', model, '--latents', z, '--out', path.join(tmp, 'decoded')]);
  t.is(de.code, 0, de.stderr);
  const dec = await readVolume(path.join(tmp, 'decoded', '000.nii.gz'));
  const orig = await readVolume(path.join(data, 'complete_skull', '000.nii.gz'));
  t.deepEqual(dec.shape, [32, 32, 16]);
  t.deepEqual([...dec.spacing].map((v) => +v.toFixed(4)), [...orig.spacing].map((v) => +v.toFixed(4)));
  let inter = 0, a = 0, b = 0;
  for (let i = 0; i < dec.data.length; i++) {
    const p = dec.data[i]! > 0.5, q = orig.data[i]! > 0.5;
    if (p && q) inter++;
    if (p) a++;
    if (q) b++;
  }
  t.true((2 * inter) / (a + b) > 0.5, `decode(encode(x)) resembles x: Dice ${(2 * inter) / (a + b)}`);

  const sa = await voxvae(['sample', '--model', model, '--out', path.join(tmp, 'samples'), '--n', '2', '--seed', '4']);
  t.is(sa.code, 0, sa.stderr);
  t.deepEqual(readdirSync(path.join(tmp, 'samples')), ['sample-000.nii.gz', 'sample-001.nii.gz']);
  const s0 = await readVolume(path.join(tmp, 'samples', 'sample-000.nii.gz'));
  t.deepEqual([...s0.spacing].map((v) => +v.toFixed(4)), record.geometry.spacing.map((v) => +v.toFixed(4)), 'the training grid geometry');

  const ip = await voxvae(['interpolate', '--model', model, '--from', path.join(data, 'complete_skull', '000.nii.gz'), '--to', path.join(data, 'complete_skull', '001.nii.gz'), '--steps', '3', '--out', path.join(tmp, 'interp')]);
  t.is(ip.code, 0, ip.stderr);
  t.deepEqual(readdirSync(path.join(tmp, 'interp')), ['step-00.nii.gz', 'step-01.nii.gz', 'step-02.nii.gz']);

  const ex = await voxvae(['export', '--model', model, '--onnx', path.join(tmp, 'decoder.onnx')]);
  t.is(ex.code, 0, ex.stderr);
  const onnx = readFileSync(path.join(tmp, 'decoder.onnx'));
  t.true(onnx.length > 10_000);
  t.true(onnx.includes(Buffer.from('voxvae')) || onnx.includes(Buffer.from('Conv')), 'an ONNX graph');
});

test.serial('Ctrl-C writes a checkpoint; --resume finishes with the same model as an uninterrupted run', async (t) => {
  const args = ['--data', data, '--method', 'vae', '--epochs', '40', '--batch', '2', '--seed', '5', '--threads', '1'];
  const full = path.join(tmp, 'full'), cut = path.join(tmp, 'cut');
  const a = await voxvae(['train', ...args, '--out', full]);
  t.is(a.code, 0, a.stderr);
  let sent = false;
  const b = await voxvae(['train', ...args, '--out', cut], {
    onStdout: (text, child) => {
      if (!sent && /epoch 3\/40/.test(text)) {
        sent = true;
        child.kill('SIGINT');
      }
    },
  });
  t.true(sent, 'the run was interrupted');
  t.is(b.code, 130, b.stderr);
  t.regex(b.stderr, /SIGINT: stopping after this step and writing a checkpoint/);
  t.regex(b.stdout, /interrupted: checkpoint written to .*checkpoints\/last; continue with `voxvae train --out .* --resume`/);
  t.true(existsSync(path.join(cut, 'checkpoints', 'last', 'trainer.json')));
  t.false(existsSync(path.join(cut, 'model.safetensors')), 'no final model from an interrupted run');
  const c = await voxvae(['train', '--out', cut, '--resume']);
  t.is(c.code, 0, c.stderr);
  t.regex(c.stdout, /resuming from .*checkpoints\/(last|epoch-\d+) \(epoch \d+/);
  const fa = json<{ curves: { epochs: { epoch: number; loss: number; validation: { dice: number } }[] }[] }>(readFileSync(path.join(full, 'training.json'), 'utf8'));
  const fc = json<typeof fa>(readFileSync(path.join(cut, 'training.json'), 'utf8'));
  t.deepEqual(fc.curves[0]!.epochs.map((e) => e.epoch), fa.curves[0]!.epochs.map((e) => e.epoch));
  t.is(fc.curves[0]!.epochs.at(-1)!.validation.dice, fa.curves[0]!.epochs.at(-1)!.validation.dice);
  t.true(readFileSync(path.join(cut, 'model.safetensors')).equals(readFileSync(path.join(full, 'model.safetensors'))), 'bit for bit');
});

test('on a terminal the progress is a bar per epoch with loss, β, validation Dice and ETA', (t) => {
  const chunks: string[] = [];
  const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 160, cursorTo: () => true, clearLine: () => true, moveCursor: () => true }) as unknown as NodeJS.WriteStream;
  (stream as unknown as PassThrough).on('data', (d: Buffer) => chunks.push(d.toString()));
  (stream as unknown as { write: (s: string) => boolean }).write = (s: string) => (chunks.push(s), true);
  const lines: string[] = [];
  const p = new TrainingProgress({ stream, log: (l) => lines.push(l), totalEpochs: 3, batchesPerEpoch: 4 });
  for (let b = 0; b < 4; b++) p.step(0, b, { loss: 50 - b, beta: 0.1 });
  p.epoch({ epoch: 1, loss: 48, beta: 0.1, kl: 3, validation: { dice: 0.61 }, seconds: 0.2 });
  p.step(1, 0, { loss: 40, beta: 0.1 });
  p.stopBar();
  const out = chunks.join('');
  t.regex(out, /epoch 1\/3 \[[^\]]*\] 4\/4 \| loss 47\.00 \| β 0\.1000 \| val Dice — \| ETA /);
  t.regex(out, /epoch 2\/3 \[[^\]]*\] 1\/4 \| loss 40\.00 \| β 0\.1000 \| val Dice 0\.610 \| ETA /);
  t.regex(lines[0]!, /^epoch 1\/3 {2}loss\/vol 48\.00 {2}KL\/vol 3\.00 {2}β 0\.1000 {2}validation Dice 0\.610/);
});

test.serial('every --method trains; --config gives options and flags win', async (t) => {
  const cfg = path.join(tmp, 'cfg.json');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(cfg, JSON.stringify({ method: 'controlvae', epochs: 5, batch: 2, klTarget: 5, validation: 2 }));
  for (const [method, extra] of [['controlvae', ['--config', cfg, '--epochs', '2']], ['dynamicvae', ['--epochs', '2', '--backend', 'auto']], ['rivera', ['--epochs', '2', '--batch', '3']], ['vae', ['--epochs', '2', '--channels', '8,8,16,16', '--latent', '8', '--flip', '--resample', 'trilinear', '--shape', '16,16,16', '--validation', '0']]] as const) {
    const out = path.join(tmp, `m-${method}`);
    const r = await voxvae(['train', '--data', data, '--out', out, ...(method === 'controlvae' ? [] : ['--method', method]), ...extra, '--json']);
    t.is(r.code, 0, `${method}: ${r.stderr}`);
    const rec = json<{ method: string; options: { epochs: number; batch: number; klTarget: number }; curves: { epochs: { beta: number | null }[] }[]; config: { inputShape: number[]; channels: number[]; latentSize: number }; data: { validation: number; resampled: boolean } }>(readFileSync(path.join(out, 'training.json'), 'utf8'));
    t.is(rec.method, method);
    t.is(rec.curves[0]!.epochs.length, 2, `${method}: --epochs 2 wins over the config file's 5`);
    if (method === 'controlvae') {
      t.is(rec.options.batch, 2, 'from the config file');
      t.is(rec.options.klTarget, 5);
      t.is(rec.data.validation, 6, '2 subjects = 6 volumes held out');
    }
    if (method === 'vae') {
      const again = await voxvae(['train', '--data', data, '--out', out, '--epochs', '1']);
      t.is(again.code, 2);
      t.regex(again.stderr, /holds a training already \(checkpoints\/\): continue it with --resume, replace it with --overwrite/);
      const over = await voxvae(['train', '--data', data, '--out', out, '--epochs', '1', '--overwrite', '--channels', '8,8,16,16', '--latent', '8', '--shape', '16,16,16']);
      t.is(over.code, 0, over.stderr);
      t.deepEqual(rec.config.inputShape, [16, 16, 16]);
      t.deepEqual(rec.config.channels, [8, 8, 16, 16]);
      t.is(rec.config.latentSize, 8);
      t.true(rec.data.resampled);
      t.is(rec.data.validation, 0);
    }
  }
});
