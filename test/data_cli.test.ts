// `voxvae dataset synth` and `voxvae dataset info`, through commander as the CLI wires them.

import test from 'ava';
import { Command } from 'commander';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatInfo, registerDatasetCommands, runInfo } from '../ts/cli/dataset.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'voxvae-cli-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

function program(): { prog: Command; out: string[]; err: string[] } {
  const out: string[] = [], err: string[] = [];
  const prog = new Command('voxvae').exitOverride().configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => err.push(s) });
  registerDatasetCommands(prog);
  return { prog, out, err };
}

test.serial('dataset synth writes the set, dataset info summarises it', async (t) => {
  const dir = path.join(tmp, 'set');
  const { prog } = program();
  const writes: string[] = [];
  const orig = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => (writes.push(String(s)), true)) as typeof process.stdout.write;
  try {
    await prog.parseAsync(['dataset', 'synth', '--out', dir, '--n', '3', '--shape', '32,32,32', '--format', 'nrrd', '--seed', '5', '--workers', '0'], { from: 'user' });
  } finally {
    process.stdout.write = orig;
  }
  t.regex(writes.join(''), /wrote 15 volumes \(3 complete, 3 cranial, 3 facial, 6 implants\) at 32×32×32/);
  t.deepEqual(readdirSync(path.join(dir, 'complete_skull')), ['000.nrrd', '001.nrrd', '002.nrrd']);

  const printed: string[] = [];
  const info = await runInfo(dir, { json: false, headersOnly: false, threshold: 0.5 }, { out: (s) => printed.push(s), progress: null });
  const text = printed.join('');
  t.regex(text, /layout: skullbreak/);
  t.regex(text, /files\s+15 in 3 pairs/);
  t.regex(text, /cranial\s+0\s+3\s+3/);
  t.regex(text, /shapes\s+32×32×32 \(15\)/);
  t.regex(text, /foreground\s+mean [\d.]+ %/);
  t.regex(text, /errors\s+none/);
  t.is(formatInfo(info), text);

  const json: string[] = [];
  await runInfo(dir, { json: true, headersOnly: true, threshold: 0.5 }, { out: (s) => json.push(s), progress: null });
  const parsed = JSON.parse(json.join('')) as { files: number; foreground: unknown; byKind: Record<string, number> };
  t.is(parsed.files, 15);
  t.is(parsed.foreground, null);
  t.deepEqual(parsed.byKind, { complete: 3, defective: 6, implant: 6, other: 0 });
});

test('dataset info lists unreadable files', async (t) => {
  const dir = path.join(tmp, 'broken');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'x.nii'), 'garbage');
  const printed: string[] = [];
  const info = await runInfo(dir, { json: false, headersOnly: false, threshold: 0.5 }, { out: (s) => printed.push(s), progress: null });
  t.is(info.errors.length, 1);
  t.regex(printed.join(''), /errors\s+1 file could not be read:\n\s+\[EFORMAT\] .*x\.nii/);
});

test('bad options are refused by the parser with a reason', async (t) => {
  for (const [args, pattern] of [
    [['dataset', 'synth', '--out', path.join(tmp, 'z'), '--shape', '128,128'], /--shape must list 3 integers \(got \[128, 128\]\) \(D,H,W, e\.g\. 64,64,32\)/],
    [['dataset', 'synth', '--out', path.join(tmp, 'z'), '--format', 'png'], /Allowed choices are nii.gz, nii, nrrd, nhdr/],
    [['dataset', 'synth', '--out', path.join(tmp, 'z'), '--n', '0'], /--n must be an integer in \[1, 100000\] \(got 0\)/],
    [['dataset', 'synth', '--out', path.join(tmp, 'z'), '--shape', '128,8,64'], /--shape\[1\] must be an integer in \[16, 1024\] \(got 8\)/],
    [['dataset', 'synth'], /required option '--out <dir>'/],
  ] as [string[], RegExp][]) {
    const { prog, err } = program();
    await t.throwsAsync(prog.parseAsync(args, { from: 'user' }));
    t.regex(err.join(''), pattern);
  }
});
