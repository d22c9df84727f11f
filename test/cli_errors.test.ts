// Every command with bad input: each case asserts the one-line message (naming the flag), the exit code
// ≠ 0, no stack trace, and that the check came before any work (the output folder exists, no model or
// data was made). Runs the real command line in a child process.
import test from 'ava';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assertOneLineError, voxvae } from './cli_helpers.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'voxvae-cli-err-'));
const data = path.join(tmp, 'data');
test.before(async (t) => {
  const r = await voxvae(['dataset', 'synth', '--out', data, '--n', '2', '--shape', '32,32,16', '--workers', '0']);
  t.is(r.code, 0, r.stderr);
});
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

const out = (name: string): string => path.join(tmp, name);

const cases: { name: string; args: () => string[]; message: RegExp; after?: (t: import('ava').ExecutionContext) => void }[] = [
  // train
  { name: 'train: missing data folder', args: () => ['train', '--data', out('nope'), '--out', out('t1')], message: /^voxvae: --data .*nope does not exist/m, after: (t) => t.true(existsSync(out('t1')), 'the output folder is created first') },
  { name: 'train: no --data', args: () => ['train', '--out', out('t2')], message: /--data is required/ },
  { name: 'train: --lr -1', args: () => ['train', '--data', data, '--lr', '-1'], message: /--lr must be a finite number > 0 \(got -1\)/ },
  { name: 'train: --epochs 0', args: () => ['train', '--data', data, '--epochs', '0'], message: /--epochs must be an integer in \[1,/ },
  { name: 'train: --epochs 1.5', args: () => ['train', '--data', data, '--epochs', '1.5'], message: /--epochs must be an integer/ },
  { name: 'train: --method bogus', args: () => ['train', '--data', data, '--method', 'bogus'], message: /--method must be one of 'vae', 'aggregated', 'controlvae', 'dynamicvae', 'rivera'/ },
  { name: 'train: --shape not divisible by the strides', args: () => ['train', '--data', data, '--out', out('t3'), '--shape', '30,32,16'], message: /--shape 30×32×16: every side must be divisible by 2\^levels = 16 .*e\.g\. --shape 32,32,16/ },
  { name: 'train: --channels too deep for the shape', args: () => ['train', '--data', data, '--out', out('t4'), '--shape', '32,32,16', '--channels', '8,8,8,8,8'], message: /every side must be divisible by 2\^levels = 32 .*5 here/ },
  { name: "train: the data's shape not divisible (no --shape)", args: () => ['train', '--data', data, '--out', out('t5'), '--channels', '8,8,8,8,8'], message: /the data's shape \(no --shape given\) is 32×32×16: every side must be divisible by 2\^levels = 32/ },
  { name: 'train: dataset too small for one batch', args: () => ['train', '--data', data, '--out', out('t6'), '--batch', '8'], message: /training volumes? \(after holding out \d+ for validation\) is fewer than one batch \(--batch 8\)/, after: (t) => t.false(existsSync(path.join(out('t6'), 'model.safetensors'))) },
  { name: 'train: --out under /proc', args: () => ['train', '--data', data, '--out', '/proc/voxvae-test'], message: /--out \/proc\/voxvae-test is on a virtual file system/ },
  { name: 'train: --out is a file', args: () => ['train', '--data', data, '--out', path.join(data, 'manifest.csv')], message: /--out .*manifest\.csv is a file, not a folder/ },
  { name: 'train: --validation more subjects than there are', args: () => ['train', '--data', data, '--out', out('t10'), '--validation', '5'], message: /--validation asks for more pairs than the 2 there are/ },
  { name: 'train: --validation 1.5', args: () => ['train', '--data', data, '--validation', '1.5'], message: /--validation/ },
  { name: 'train: --resume without a training', args: () => ['train', '--out', out('t7'), '--resume'], message: /--resume: .*train-options\.json is missing/ },
  { name: 'train: --config with an unknown key', args: () => { writeFileSync(out('bad.json'), '{"epochz": 3}'); return ['train', '--data', data, '--config', out('bad.json'), '--out', out('t8')]; }, message: /--config .*bad\.json:\.epochz is not a known train option/ },
  { name: 'train: --config value checked naming the file', args: () => { writeFileSync(out('bad2.json'), '{"lr": -2}'); return ['train', '--data', data, '--config', out('bad2.json'), '--out', out('t9')]; }, message: /--lr \(from .*bad2\.json\) must be a finite number > 0/ },
  { name: 'train: --backend bogus', args: () => ['train', '--data', data, '--backend', 'gpu'], message: /--backend must be one of 'cpu', 'cuda', 'auto'/ },
  // evaluate, complete, calibrate
  { name: 'evaluate: missing model', args: () => ['evaluate', '--model', out('none.safetensors'), '--data', data, '--out', out('e1')], message: /--model .*none\.safetensors does not exist/ },
  { name: 'evaluate: missing data', args: () => ['evaluate', '--model', out('none.safetensors'), '--data', out('nodata'), '--out', out('e2')], message: /--data .*nodata does not exist/ },
  { name: 'evaluate: --batch 0', args: () => ['evaluate', '--model', 'x', '--data', data, '--batch', '0'], message: /--batch must be an integer in \[1,/ },
  { name: 'complete: missing input', args: () => ['complete', '--model', out('none.safetensors'), '--input', out('x.nii.gz'), '--defect', 'cranial', '--out', out('c.nii.gz')], message: /--model .*does not exist/ },
  { name: 'complete: --steps 0', args: () => ['complete', '--model', 'm', '--input', 'x', '--defect', 'cranial', '--out', 'y', '--steps', '0'], message: /--steps must be an integer in \[1,/ },
  { name: 'calibrate: neither --data nor --synthetic', args: () => ['calibrate', '--model', 'm', '--out', 'x'], message: /give exactly one of --data and --synthetic/ },
  // encode, decode, sample, interpolate, export
  { name: 'encode: missing input', args: () => ['encode', '--model', 'm.safetensors', '--input', out('no-input'), '--out', out('z.json')], message: /--input .*no-input does not exist/ },
  { name: 'decode: latents not JSON', args: () => { writeFileSync(out('m.safetensors'), 'x'); writeFileSync(out('z.txt'), 'not json'); return ['decode', '--model', out('m.safetensors'), '--latents', out('z.txt'), '--out', out('d1')]; }, message: /EFORMAT|not JSON|safetensors/ },
  { name: 'sample: --n 0', args: () => ['sample', '--model', 'm', '--out', out('s1'), '--n', '0'], message: /--n must be an integer in \[1, 10000\]/ },
  { name: 'sample: a model file that is not a model', args: () => { writeFileSync(out('junk.safetensors'), 'junk'); return ['sample', '--model', out('junk.safetensors'), '--out', out('s2')]; }, message: /junk\.safetensors.*\[E(FORMAT|CHECKPOINT)\]/ },
  { name: 'interpolate: --steps 1', args: () => ['interpolate', '--model', 'm', '--from', 'a', '--to', 'b', '--out', out('i1'), '--steps', '1'], message: /--steps must be an integer in \[2, 1000\]/ },
  { name: 'export: missing model', args: () => ['export', '--model', out('none.safetensors'), '--onnx', out('x.onnx')], message: /--model .*does not exist/ },
  { name: 'export: --part bogus', args: () => ['export', '--model', 'm', '--onnx', 'x.onnx', '--part', 'both'], message: /--part.*Allowed choices are decoder, encoder/ },
  // demo, pipeline, dataset
  { name: 'demo: --skulls 0', args: () => ['demo', '--skulls', '0', '--out', out('d0')], message: /--skulls must be an integer in \[2, 100000\] \(got 0\)/ },
  { name: 'demo: --epochs 0', args: () => ['demo', '--epochs', '0', '--out', out('d0')], message: /--epochs must be an integer in \[1,/ },
  { name: 'demo: --lr -1', args: () => ['demo', '--lr', '-1', '--out', out('d0')], message: /--lr must be a finite number > 0/ },
  { name: 'demo: --shape not divisible, before any data', args: () => ['demo', '--shape', '32,32,20', '--out', out('d2')], message: /--shape 32×32×20: every side must be divisible by 2\^levels = 16/, after: (t) => t.false(existsSync(out('d2')), 'nothing was written') },
  { name: 'demo: fewer volumes than a batch', args: () => ['demo', '--skulls', '2', '--epochs', '1', '--out', out('d3')], message: /--skulls 2 leaves 3 training volumes .* fewer than one batch \(--batch 4\)/ },
  { name: 'demo: --out under /proc', args: () => ['demo', '--skulls', '3', '--shape', '32,32,16', '--out', '/proc/voxvae'], message: /virtual file system/ },
  { name: 'pipeline: --backend bogus', args: () => ['pipeline', '--backend', 'gpu', '--out', out('p1')], message: /--backend must be one of 'cpu', 'cuda', 'auto'/ },
  { name: 'pipeline: --out under /proc, before any data', args: () => ['pipeline', '--scale', 'test', '--out', '/proc/voxvae-pipeline'], message: /--out \/proc\/voxvae-pipeline is on a virtual file system/ },
  { name: 'experiment beta-tradeoff: --out is a file', args: () => ['experiment', 'beta-tradeoff', '--scale', 'test', '--out', path.join(data, 'manifest.csv')], message: /is a file, not a folder/ },
  { name: 'dataset info: missing file', args: () => ['dataset', 'info', out('missing.nii.gz')], message: /dataset info: .*missing\.nii\.gz does not exist/ },
  { name: 'unknown command', args: () => ['trian'], message: /unknown command 'trian'/ },
];

for (const c of cases) {
  test(c.name, async (t) => {
    const r = await voxvae(c.args());
    assertOneLineError(t, r, c.message);
    c.after?.(t);
  });
}

test('train: the output folder is tested for writing before the data is read', async (t) => {
  const ro = out('readonly');
  mkdirSync(ro);
  const { chmodSync } = await import('node:fs');
  chmodSync(ro, 0o500);
  try {
    const r = await voxvae(['train', '--data', out('nope'), '--out', path.join(ro, 'run')]);
    // root ignores permissions: then the data check fails instead; either way one line, exit ≠ 0.
    assertOneLineError(t, r, process.getuid?.() === 0 ? /--data .* does not exist/ : /--out .*run cannot be created \(EACCES\)/);
  } finally {
    chmodSync(ro, 0o700);
  }
});

test('dataset info takes a single file', async (t) => {
  const file = path.join(data, 'complete_skull', readdirSync(path.join(data, 'complete_skull'))[0]!);
  const r = await voxvae(['dataset', 'info', file]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /files\s+1 in 1 pair/);
  t.regex(r.stdout, /shapes\s+32×32×16 \(1\)/);
  t.notRegex(r.stdout + r.stderr, /manifest/);
});

test('help texts say what each command is and how long it takes', async (t) => {
  const demo = await voxvae(['demo', '--help']);
  const pipe = await voxvae(['pipeline', '--help']);
  const train = await voxvae(['train', '--help']);
  t.is(demo.code, 0);
  t.regex(demo.stdout, /not\s+the\s+main\s+job/);
  t.regex(demo.stdout, /about\s+\d+\s+(s|min)/);
  t.regex(pipe.stdout, /the\s+main\s+job/);
  t.notRegex(demo.stdout, /the main job \(npm start\): trains/);
  t.regex(pipe.stdout, /--backend/);
  t.regex(train.stdout, /divisible\s+by\s+2\^levels/);
  t.regex(train.stdout, /about\s+20\s+s\s+at\s+32×32×16/);
  for (const cmd of ['evaluate', 'complete', 'calibrate', 'encode', 'decode', 'sample', 'interpolate', 'export']) {
    const r = await voxvae([cmd, '--help']);
    t.is(r.code, 0, cmd);
    t.regex(r.stdout, /(about|under)\s+(a|\d)/, `${cmd} --help gives a duration`);
  }
});
