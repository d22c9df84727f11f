// β schedules and KL controllers: expected sequences worked out by hand from the equations in
// METHODS.md §2.2–2.3 / §4.1–4.2 (arithmetic in the comments), the cyclical table against a direct
// port of the authors' frange_cycle_* functions, state round-trips, and spec validation.

import test from 'ava';
import type { ExecutionContext } from 'ava';
import { VoxvaeError } from '../ts/errors.js';
import {
  CapacityAnnealing,
  ControlVaeController,
  CyclicalBeta,
  DynamicVaeController,
  betaScheduleFromState,
  createBetaSchedule,
  type BetaSchedule,
  type BetaScheduleSpec,
  type BetaScheduleState,
} from '../ts/train/beta.js';

function close(t: ExecutionContext, actual: number, expected: number, what: string, tol = 1e-12): void {
  t.true(Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${what}: got ${actual}, expected ${expected}`);
}

function run(s: BetaSchedule, kls: number[]): number[] {
  return kls.map((kl) => s.next(kl));
}

// σ(−e) = 1/(1 + exp(e)) at the errors used below (standard values of the logistic function):
//   1/(1+e^-2)  = 0.8807970779778823     1/(1+e^-1) = 0.7310585786300049   1/(1+e^1) = 0.2689414213699951
//   1/(1+e^6)   = 0.0024726231566347743  1/(1+e^-4) = 0.9820137900379085   1/(1+e^-10) = 0.9999546021312976
//   1/(1+e^10)  = 4.5397868702434395e-05 1/(1+e^0)  = 0.5                  1/(1+e^-3) = 0.9525741268224334

test('constant and warm-up', (t) => {
  t.deepEqual(run(createBetaSchedule({ kind: 'constant' }), [1, 2, 3]), [1, 1, 1]);
  t.deepEqual(run(createBetaSchedule({ kind: 'constant', beta: 4 }), [1, 2]), [4, 4]);
  // start 0, target 2, N = 4: call n gives 0 + 2·min(n/4, 1) → 0, 0.5, 1, 1.5, 2, 2
  t.deepEqual(run(createBetaSchedule({ kind: 'warmup', target: 2, iterations: 4 }), [0, 0, 0, 0, 0, 0]), [0, 0.5, 1, 1.5, 2, 2]);
  const s = createBetaSchedule({ kind: 'constant', beta: 0.5 });
  t.throws(() => s.klTerm(3), { instanceOf: VoxvaeError });
  s.next(3);
  t.is(s.klTerm(3), 1.5); // β·KL = 0.5·3
});

// ---------------------------------------------------------------------------------------------------
// Cyclical annealing: a direct port of the authors' functions (README version: fill = stop).

function frangeCycle(nIter: number, start: number, stop: number, nCycle: number, ratio: number, f: (v: number) => number, fill: number): number[] {
  const L = new Array<number>(nIter).fill(fill);
  const period = nIter / nCycle;
  const step = (stop - start) / (period * ratio);
  for (let c = 0; c < nCycle; c++) {
    let v = start;
    let i = 0;
    while (v <= stop && Math.trunc(i + c * period) < nIter) {
      L[Math.trunc(i + c * period)] = f(v);
      v += step;
      i += 1;
    }
  }
  return L;
}
const linear = (v: number): number => v;
const sigmoid = (v: number): number => 1.0 / (1.0 + Math.exp(-(v * 12 - 6)));
const cosine = (v: number): number => 0.5 - 0.5 * Math.cos(v * Math.PI);

test('cyclical reference table equals frange_cycle_* (quirks included)', (t) => {
  const cases: [number, number, number, number, number][] = [
    // T, M, R, start, stop
    [1000, 4, 0.5, 0, 1],
    [10, 3, 0.5, 0, 1], // period 3.333…: int() truncation of i + c·period
    [7, 2, 1, 0, 1], // ratio 1: a ramp spills into the next cycle's first index, then is overwritten
    [97, 5, 0.3, 0.1, 1],
    [50, 1, 0.25, 0, 1], // the "monotonic" baseline of the plots
    [64, 4, 0.5, 0, 0.5], // stop < 1: fill 'stop'
    [31, 4, 0.7, 0.2, 0.2], // step 0
  ];
  for (const [T, M, R, start, stop] of cases) {
    for (const [ramp, f] of [['linear', linear], ['sigmoid', sigmoid], ['cosine', cosine]] as const) {
      const expected = frangeCycle(T, start, stop, M, R, f, stop);
      const s = new CyclicalBeta({ totalIterations: T, cycles: M, ratio: R, start, stop, ramp });
      const got = run(s, new Array<number>(T + 3).fill(0));
      t.deepEqual(got.slice(0, T), expected, `T=${T} M=${M} R=${R} ${ramp}`);
      t.deepEqual(got.slice(T), [stop, stop, stop], 'plateau held past T');
    }
  }
  // fill 'one' reproduces the notebook's np.ones(n_epoch)
  const nb = frangeCycle(40, 0, 0.5, 4, 0.5, linear, 1);
  t.deepEqual(run(new CyclicalBeta({ totalIterations: 40, stop: 0.5, fill: 'one' }), new Array<number>(40).fill(0)), nb);
});

test('cyclical closed form: τ = mod(t−1, ⌈T/M⌉)/(T/M)', (t) => {
  // T 8, M 2, R 0.5: ⌈T/M⌉ = 4, T/M = 4; τ = 0, .25, .5, .75, 0, …; β = τ/R if τ ≤ R else 1
  const a = run(new CyclicalBeta({ totalIterations: 8, cycles: 2, formula: 'closed-form' }), new Array<number>(10).fill(0));
  t.deepEqual(a, [0, 0.5, 1, 1, 0, 0.5, 1, 1, 0, 0.5]);
  // T 10, M 3: ⌈10/3⌉ = 4, T/M = 3.3333…; t = 2: τ = 1/3.3333 = 0.3 → β = 0.6; t = 3: τ = 0.6 > 0.5 → 1
  const b = run(new CyclicalBeta({ totalIterations: 10, cycles: 3, formula: 'closed-form' }), new Array<number>(6).fill(0));
  close(t, b[1]!, 0.6, 'τ=0.3');
  t.deepEqual([b[0], b[2], b[3], b[4]], [0, 1, 1, 0]);
  // cosine ramp with start 0.2, stop 1, T 8, M 2: t = 2 → u = 0.5, f = 0.5 − 0.5·cos(π/2) = 0.5 → 0.2 + 0.8·0.5 = 0.6
  const c = run(new CyclicalBeta({ totalIterations: 8, cycles: 2, ramp: 'cosine', start: 0.2, formula: 'closed-form' }), [0, 0]);
  close(t, c[1]!, 0.6, 'cosine');
});

// ---------------------------------------------------------------------------------------------------
// Capacity annealing

test('capacity: next = γ·sign(KL − C), klTerm = γ·|KL − C|, C = clamp(C_max/C_stop·t, C_start, C_max)', (t) => {
  // γ 10, C_max 4, C_stop 4 → C(t) = clamp(t, 0.5, 4) = 1, 2, 3, 4, 4
  const s = new CapacityAnnealing({ gamma: 10, capacityMax: 4, capacityStopIteration: 4, capacityStart: 0.5 });
  const kls = [0.5, 3, 3, 3, 4];
  const w: number[] = [];
  const terms: number[] = [];
  const caps: number[] = [];
  for (const kl of kls) {
    w.push(s.next(kl));
    terms.push(s.klTerm(kl));
    caps.push(s.info().setPoint!);
  }
  t.deepEqual(caps, [1, 2, 3, 4, 4]);
  // KL − C = −0.5, 1, 0, −1, 0
  t.deepEqual(w, [-10, 10, 0, -10, 0]);
  t.deepEqual(terms, [5, 10, 0, 10, 0]);
  // C_start clamps from below: t = 1 → max(1, 1.5) = 1.5
  const lo = new CapacityAnnealing({ capacityMax: 4, capacityStopIteration: 4, capacityStart: 1.5 });
  lo.next(0);
  t.is(lo.info().setPoint, 1.5);
  // defaults (ControlVAE's B baseline script): γ 100, C_max 15, C_stop 1e5 → C(50000) = 7.5
  close(t, new CapacityAnnealing().capacityAt(50000), 7.5, "C(50000)"); // (15/1e5)·50000 = 7.499999999999999 in doubles
});

// ---------------------------------------------------------------------------------------------------
// ControlVAE

test('ControlVAE disentangling (P_PID.py): β_min 1 folded in, no upper clamp, freeze on W_prev < 1', (t) => {
  const s = new ControlVaeController({ preset: 'disentangling', setPoint: 10 });
  // Kp 0.01, Ki 0.001 (code: −0.001), W(0) = 1, I(0) = 0; e = 10 − KL; W = 0.01·σ(−e) + I + 1
  const kls = [12, 11, 9, 4, 4, 14, 14];
  const expected = [
    1.0108079707797788, // e −2: P = .01·.8807970779778823; I = 0 + .001·2 = .002; W = 1.0108079707797788
    1.0103105857863, //    e −1: P = .007310585786300049; I = .003; W = 1.0103105857863
    1.0046894142137, //    e  1: P = .002689414213699951; I = .002; W = 1.0046894142137
    1, //                  e  6: P = 2.4726231566347745e-5; I = .002 − .006 = −.004; W = .99602472623 → β = max(W, 1) = 1
    1, //                  e  6: W_prev .996 < 1 → I frozen at −.004; W = .99602472623 → 1
    1.005820137900379, //  e −4: W_prev < 1 → still frozen, I = −.004; P = .009820137900379085; W = 1.005820137900379
    1.009820137900379, //  e −4: W_prev ≥ 1 → I = −.004 + .004 = 0; W = 1.009820137900379
  ];
  const got: number[] = [];
  const integrals: number[] = [];
  for (const kl of kls) {
    got.push(s.next(kl));
    integrals.push(s.info().integral!);
  }
  expected.forEach((e, i) => close(t, got[i]!, e, `step ${i + 1}`));
  integrals.forEach((v, i) => close(t, v, [0.002, 0.003, 0.002, -0.004, -0.004, -0.004, 0][i]!, `I step ${i + 1}`));
  // no upper clamp: a large positive error drives β up without bound (I grows by .001·|e| per step)
  const u = new ControlVaeController({ preset: 'disentangling', setPoint: 0, ki: 1 });
  t.true(run(u, [5, 5, 5]).at(-1)! > 15);
});

test('ControlVAE image generation (PID.py): clip [0, 1], no anti-windup (the code’s test is never true)', (t) => {
  const s = new ControlVaeController({ preset: 'image-generation', setPoint: 10, ki: 0.1 });
  // Kp .01, W = P + I, I(t) = I(t−1) − .1·e, β = clip(W, 0, 1)
  const got = run(s, [20, 20, 0, 0, 0]);
  // e −10: P = .01·.9999546021312976 = .009999546; I = 1 → W 1.0099995 → 1
  // e −10: I = 2 (no freeze although W_prev > 1) → W 2.0099995 → 1
  // e  10: P = .01·4.5397868702434395e-5 = 4.5397868702434395e-7; I = 1 → W 1.000000454 → 1
  // e  10: I = 0 → W = 4.5397868702434395e-7
  // e  10: I = −1 → W −.9999995 → 0
  close(t, got[0]!, 1, 's1');
  close(t, got[1]!, 1, 's2');
  close(t, got[2]!, 1, 's3');
  close(t, got[3]!, 4.5397868702434395e-7, 's4');
  t.is(got[4], 0);
  close(t, s.info().output!, -0.9999995460213130, 'W raw');
});

test('ControlVAE dialog (NeuralDialog/PID.py): freeze while W_prev outside [0, 1]', (t) => {
  const s = new ControlVaeController({ preset: 'dialog', setPoint: 10, ki: 0.1 });
  const got: number[] = [];
  const integrals: number[] = [];
  for (const kl of [20, 20, 0, 0, 0]) {
    got.push(s.next(kl));
    integrals.push(s.info().integral!);
  }
  // e −10: W_prev 0 in range → I = 1, W = 1.0099995 → 1
  // then W_prev > 1 → I frozen at 1 every step: W = P + 1 ≥ 1 keeps it frozen (the code's behaviour)
  t.deepEqual(integrals, [1, 1, 1, 1, 1]);
  t.deepEqual(got, [1, 1, 1, 1, 1]);
  close(t, s.info().output!, 1.000000453978687, 'W = 4.54e-7 + 1');
});

test('ControlVAE stepped set point: C += step at t mod every = 0, capped', (t) => {
  const s = new ControlVaeController({ setPoint: { start: 1, step: 0.5, every: 3, max: 2 } });
  const cs: number[] = [];
  for (let i = 0; i < 10; i++) {
    s.next(1);
    cs.push(s.info().setPoint!);
  }
  // t: 1 2 3   4   5   6 7 8 9 10
  t.deepEqual(cs, [1, 1, 1.5, 1.5, 1.5, 2, 2, 2, 2, 2]);
  // disentangling preset default: 0.5, +0.15 every 5000, cap 16
  const d = new ControlVaeController({ preset: 'disentangling' });
  t.deepEqual(d.spec.setPoint, { start: 0.5, step: 0.15, every: 5000, max: 16 });
});

// ---------------------------------------------------------------------------------------------------
// DynamicVAE

test('DynamicVAE: incremental PI on the zero-padded moving average', (t) => {
  const s = new DynamicVaeController({ initialBeta: 1, window: 3, setPoint: { start: 2, every: 100000, ramp: 1 } });
  const got = run(s, [3, 6, 6]);
  // t1: queue [0, 0, 3] → K̄ = 1; e = 1; ΔP = .01·(σ(−1) − σ(0)) = .01·(.2689414213699951 − .5) = −.002310585786300049
  //     ΔI = −.005·1; β = 1 − .002310585786300049 − .005 = .9926894142136999
  // t2: [0, 3, 6] → 3; e = −1; ΔP = .01·(.7310585786300049 − .2689414213699951) = .004621171572600098; ΔI = .005
  //     β = .9926894142136999 + .009621171572600098 = 1.0023105857863
  // t3: [3, 6, 6] → 5; e = −3; ΔP = .01·(.9525741268224334 − .7310585786300049) = .0022151554819242847; ΔI = .015
  //     β = 1.0023105857863 + .0172151554819242847 = 1.0195257412682242
  close(t, got[0]!, 0.9926894142136999, 't1');
  close(t, got[1]!, 1.0023105857863, 't2');
  close(t, got[2]!, 1.0195257412682242, 't3');
});

test('DynamicVAE anti-windup: no integration while β_raw(t−1) < β_min; β pinned at β_min', (t) => {
  const s = new DynamicVaeController({ initialBeta: 0.12, ki: 0.05, window: 1, setPoint: { start: 2, every: 100000, ramp: 1 } });
  const got: number[] = [];
  const raw: number[] = [];
  for (const kl of [1, 1, 1, 3, 5]) {
    got.push(s.next(kl));
    raw.push(s.info().output!);
  }
  // t1: e 1: ΔP = −.002310585786300049, ΔI = −.05 → β_raw = .12 − .052310585786300049 = .06768941421369995 → β .1
  // t2: β_raw(1) < .1 → ΔI = 0; ΔP = .01·(σ(−1) − σ(−1)) = 0 → .06768941421369995
  // t3: same
  // t4: e −1: ΔP = .004621171572600098, ΔI = 0 → .07231058578630005
  // t5: e −3: ΔP = .0022151554819242847, ΔI = 0 → .07452574126822434 (only ΔP moves it: the quirk)
  t.deepEqual(got, [0.1, 0.1, 0.1, 0.1, 0.1]);
  [0.06768941421369995, 0.06768941421369995, 0.06768941421369995, 0.07231058578630005, 0.07452574126822434].forEach((v, i) =>
    close(t, raw[i]!, v, `β_raw t${i + 1}`),
  );
});

test('DynamicVAE moving average: padded (official) vs unpadded', (t) => {
  const kls = [3, 6, 9, 12];
  const seen = (average: 'padded' | 'unpadded'): number[] => {
    const s = new DynamicVaeController({ window: 3, average });
    return kls.map((kl) => {
      s.next(kl);
      return s.info().klSeen!;
    });
  };
  t.deepEqual(seen('padded'), [1, 3, 6, 9]); // 3/3, (3+6)/3, (3+6+9)/3, (6+9+12)/3
  t.deepEqual(seen('unpadded'), [3, 4.5, 6, 9]); // 3/1, 9/2, 18/3, 27/3
});

test('DynamicVAE set point: t ≥ W and t mod W < R → C += step/R, capped', (t) => {
  // small case: W 4, R 2, step 1, start 0, max 1.5
  const s = new DynamicVaeController({ setPoint: { start: 0, step: 1, every: 4, ramp: 2, max: 1.5 } });
  const cs: number[] = [];
  for (let i = 0; i < 10; i++) {
    s.next(1);
    cs.push(s.info().setPoint!);
  }
  // t: 1 2 3 4(0<2) 5(1<2) 6(2) 7(3) 8(0) 9(1 → 2 → cap) 10
  t.deepEqual(cs, [0, 0, 0, 0.5, 1, 1, 1, 1.5, 1.5, 1.5]);
  // defaults W 6000, R 1000, step .15, C 0.5: first change at t = 6000, ramp ends at t = 6999
  const d = new DynamicVaeController();
  const at = new Map<number, number>();
  for (let i = 1; i <= 12001; i++) {
    d.next(1);
    at.set(i, d.info().setPoint!);
  }
  t.is(at.get(5999), 0.5);
  close(t, at.get(6000)!, 0.5 + 0.00015, 't=6000'); // 0.15/1000
  close(t, at.get(6001)!, 0.5 + 0.0003, 't=6001');
  close(t, at.get(6999)!, 0.65, 't=6999: 1000 increments of .00015', 1e-12);
  t.is(at.get(7000), at.get(6999)); // 7000 mod 6000 = 1000, not < 1000
  t.is(at.get(11999), at.get(6999));
  close(t, at.get(12000)!, 0.65 + 0.00015, 't=12000');
  t.is(d.setPointAt(7000), at.get(7000)!);
});

// ---------------------------------------------------------------------------------------------------
// State round-trip and validation

const ROUND_TRIP: BetaScheduleSpec[] = [
  { kind: 'constant', beta: 2 },
  { kind: 'warmup', iterations: 15 },
  { kind: 'cyclical', totalIterations: 24, ramp: 'sigmoid' },
  { kind: 'cyclical', totalIterations: 24, formula: 'closed-form', ramp: 'cosine' },
  { kind: 'capacity', capacityMax: 5, capacityStopIteration: 12 },
  { kind: 'controlvae', preset: 'disentangling', setPoint: { start: 0.5, step: 0.3, every: 4, max: 2 } },
  { kind: 'controlvae', setPoint: 3, ki: 0.05 },
  { kind: 'controlvae', preset: 'image-generation', setPoint: 3, ki: 0.05, betaMax: null },
  { kind: 'dynamicvae', setPoint: { every: 6, ramp: 3, step: 0.5 }, window: 5 },
  { kind: 'dynamicvae', average: 'unpadded', window: 4, initialBeta: 0.3, ki: 0.02 },
];

test('state round-trip: 10 steps, save, 10 more; restored run repeats the last 10 exactly', (t) => {
  const kls = Array.from({ length: 20 }, (_, i) => 2 + 1.5 * Math.sin(i * 1.3) + (i % 3) * 0.7);
  for (const spec of ROUND_TRIP) {
    const s = createBetaSchedule(spec);
    run(s, kls.slice(0, 10));
    const saved = JSON.parse(JSON.stringify(s.state())) as BetaScheduleState;
    const after = kls.slice(10).map((kl) => [s.next(kl), s.klTerm(kl)]);
    const r1 = betaScheduleFromState(saved);
    t.is(r1.iteration, 10);
    t.deepEqual(kls.slice(10).map((kl) => [r1.next(kl), r1.klTerm(kl)]), after, `${spec.kind} fromState`);
    const r2 = createBetaSchedule(spec);
    r2.load(saved);
    t.deepEqual(kls.slice(10).map((kl) => [r2.next(kl), r2.klTerm(kl)]), after, `${spec.kind} load`);
    t.deepEqual(r2.state(), s.state());
  }
});

test('load refuses a state of different settings; fromState checks the class', (t) => {
  const a = createBetaSchedule({ kind: 'controlvae', setPoint: 3 });
  a.next(1);
  const b = createBetaSchedule({ kind: 'controlvae', setPoint: 4 });
  const e = t.throws(() => b.load(a.state()), { instanceOf: VoxvaeError });
  t.is(e.code, 'ECHECKPOINT');
  t.regex(e.message, /spec\.setPoint/);
  t.throws(() => DynamicVaeController.fromState(a.state()), { instanceOf: VoxvaeError, message: /ControlVaeController|controlvae/ });
  t.true(ControlVaeController.fromState(a.state()) instanceof ControlVaeController);
  const bad = { ...a.state(), vars: { ...a.state().vars, integral: 'x' } } as unknown as BetaScheduleState;
  t.throws(() => betaScheduleFromState(bad), { instanceOf: VoxvaeError, message: /state\.vars\.integral/ });
});

test('invalid specs → EINVAL naming the field', (t) => {
  const cases: [unknown, string][] = [
    [null, 'beta'],
    [{ kind: 'bogus' }, 'beta.kind'],
    [{ kind: 'constant', beta: -1 }, 'beta.beta'],
    [{ kind: 'constant', beta: Number.NaN }, 'beta.beta'],
    [{ kind: 'warmup' }, 'beta.iterations'],
    [{ kind: 'warmup', iterations: 2.5 }, 'beta.iterations'],
    [{ kind: 'cyclical', totalIterations: 10, ratio: 0 }, 'beta.ratio'],
    [{ kind: 'cyclical', totalIterations: 10, ramp: 'exp' }, 'beta.ramp'],
    [{ kind: 'cyclical', totalIterations: 10, start: 1, stop: 0.5 }, 'beta.stop'],
    [{ kind: 'capacity', capacityStart: 20 }, 'beta.capacityStart'],
    [{ kind: 'controlvae' }, 'beta.setPoint'],
    [{ kind: 'controlvae', preset: 'disentangling', Kp: 1 }, 'beta.Kp'],
    [{ kind: 'controlvae', preset: 'nope' }, 'beta.preset'],
    [{ kind: 'controlvae', setPoint: 3, betaMin: 2, betaMax: 1 }, 'beta.betaMax'],
    [{ kind: 'controlvae', setPoint: { start: 1, every: 0, max: 3 } }, 'beta.setPoint.every'],
    [{ kind: 'controlvae', setPoint: 3, antiWindup: 'always' }, 'beta.antiWindup'],
    [{ kind: 'dynamicvae', setPoint: { ramp: 7000 } }, 'beta.setPoint.ramp'],
    [{ kind: 'dynamicvae', window: 0 }, 'beta.window'],
    [{ kind: 'dynamicvae', average: 'ewma' }, 'beta.average'],
  ];
  for (const [spec, field] of cases) {
    const e = t.throws(() => createBetaSchedule(spec as BetaScheduleSpec), { instanceOf: VoxvaeError }, JSON.stringify(spec));
    t.is(e.code, 'EINVAL');
    t.is(e.path, field, JSON.stringify(spec));
    t.true(e.message.startsWith(field), e.message);
  }
  const s = createBetaSchedule({ kind: 'dynamicvae' });
  const e = t.throws(() => s.next(Number.NaN), { instanceOf: VoxvaeError });
  t.is(e.code, 'ENOTFINITE');
  t.is(s.iteration, 0);
});
