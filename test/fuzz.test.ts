// The fuzz harness in CI (scripts/fuzz.ts): the committed corpus (issue 17's inputs) replayed, then a few
// thousand seeded mutants per target; every input must load or fail with a typed VoxvaeError, within its
// timeout and memory cap, growing memory by no more than a small multiple of what its bytes can fill.
// `npm run fuzz -- --count 100000 --target nifti` runs it for as long as wanted.
import test from 'ava';
import { corpusFiles, fuzz, mutate, rng, type Target } from '../scripts/fuzz.js';

const COUNTS: Record<Target, number> = { nifti: 3000, nrrd: 3000, native: 3000, wasm: 3000 };

for (const target of Object.keys(COUNTS) as Target[]) {
  test.serial(`fuzz ${target}: corpus + ${COUNTS[target]} mutants, no crash, hang, untyped error or excess allocation`, async (t) => {
    const [r] = await fuzz({ targets: [target], count: COUNTS[target], seed: 17, timeoutMs: 30_000, save: null, log: (l) => t.log(l) });
    t.is(r!.corpus, corpusFiles(target).length);
    t.true(r!.corpus > 0, 'the corpus is empty');
    t.is(r!.inputs, r!.corpus + COUNTS[target]);
    t.deepEqual(r!.findings, []);
    // The mutants reach past the first checks: some load, and the errors are of more than one kind.
    t.true(r!.ok > 0, 'no mutant loaded');
    t.true(Object.keys(r!.typed).length >= 2, `only ${JSON.stringify(r!.typed)}`);
  });
}

test('the mutator is seeded: the same seed gives the same mutants, another seed others', (t) => {
  const base = new Uint8Array(400).map((_, i) => (i * 31) & 255);
  const a = rng(5), b = rng(5), c = rng(6);
  const ma = Array.from({ length: 50 }, () => Buffer.from(mutate(base, a)).toString('hex'));
  const mb = Array.from({ length: 50 }, () => Buffer.from(mutate(base, b)).toString('hex'));
  const mc = Array.from({ length: 50 }, () => Buffer.from(mutate(base, c)).toString('hex'));
  t.deepEqual(ma, mb);
  t.notDeepEqual(ma, mc);
  t.true(new Set(ma).size > 40);
});
