// β schedules and KL controllers for VAE training: constant, linear warm-up, cyclical annealing
// (Fu et al. 2019), Burgess capacity annealing, ControlVAE (positional non-linear PI, Shao et al. 2020)
// and DynamicVAE (incremental PI + moving average, Shao et al. 2022). Each reproduces the authors'
// code (shj1987/ControlVAE-ICML2020, shj1987/DynamicVAE-CVPR2022, haofuml/cyclical_annealing),
// quirks included, as summarised in the project's METHODS notes §2.2, §2.3, §4.1, §4.2.
//
// Protocol, one call per training iteration, after the forward pass and before the loss:
//
//   const w = schedule.next(kl);          // kl: this minibatch's KL (batch-mean of Σ_j KL_j), a number
//   const loss = recon + schedule.klTerm(kl);
//   // d loss / d kl = w   (β for β schedules; γ·sign(KL − C) for capacity annealing)
//
// `next` advances the iteration counter; `klTerm` and `info` read the iteration `next` just made.
// The measured KL only steers the controllers; it is never differentiated through here. The Trainer
// does exactly this: it gives the training step (ts/train/step.ts) `beta: (kl) => schedule.next(kl)`,
// which the step calls with the current minibatch's KL after the forward pass and before backward.
//
// Iteration counter: `iteration` counts the calls to `next` made so far. Inside `next` the
// iteration being computed is t = iteration + 1 (1-based), which is the authors' `global_iter`
// (incremented at the top of their training loop) for capacity, ControlVAE and DynamicVAE. The
// cyclical reference table is 0-based: call number n = t − 1 reads L[n].
//
// State: `state()` returns plain JSON (finite numbers, strings, null, arrays); `load(state)` restores
// it exactly (JSON keeps doubles bit for bit), so a resumed run gives the same β sequence.

import { VoxvaeError, describe, invalid } from '../errors.js';
import * as is from '../is.js';

export type BetaScheduleKind = 'constant' | 'warmup' | 'cyclical' | 'capacity' | 'controlvae' | 'dynamicvae';

// ---------------------------------------------------------------------------------------------------
// Specs (what the user writes) and resolved specs (every default filled in, stored in the state)

/** β fixed for the whole run. */
export interface ConstantSpec {
  kind: 'constant';
  /** Default 1 (the plain VAE ELBO). */
  beta?: number;
}

/** β rises linearly from `start` to `target`: the n-th call (n = 0, 1, …) gives start + (target − start)·min(n/N, 1). */
export interface WarmupSpec {
  kind: 'warmup';
  /** Default 0. */
  start?: number;
  /** Default 1. */
  target?: number;
  /** N, the number of iterations the ramp takes; required, integer ≥ 1. */
  iterations: number;
}

export type CyclicalRamp = 'linear' | 'sigmoid' | 'cosine';

/** Cyclical annealing, Fu et al. NAACL 2019, code `haofuml/cyclical_annealing`. */
export interface CyclicalSpec {
  kind: 'cyclical';
  /** T, total number of training iterations (the table length); required, integer ≥ 1. */
  totalIterations: number;
  /** M, number of cycles; default 4 (the authors' README). */
  cycles?: number;
  /** R ∈ (0, 1], fraction of each cycle spent increasing β; default 0.5 (README). */
  ratio?: number;
  /** Ramp shape; default 'linear'. */
  ramp?: CyclicalRamp;
  /** Default 0. */
  start?: number;
  /** Default 1. */
  stop?: number;
  /**
   * 'reference' (default): exactly the table `frange_cycle_<ramp>(T, start, stop, M, R)` builds,
   * floating-point accumulation and int() truncations included; past T the plateau value is held.
   * 'closed-form': the paper's τ = mod(t − 1, ⌈T/M⌉)/(T/M), β = start + (stop − start)·f(τ/R) for
   * τ ≤ R, else stop; keeps cycling past T.
   */
  formula?: 'reference' | 'closed-form';
  /**
   * Value of the table outside the ramps ('reference' only). 'stop' (default) as in the README's
   * `np.ones(n_iter) * stop`; 'one' as in `plot/plot_schedules.ipynb` (`np.ones(n_epoch)`).
   * The two agree when stop = 1.
   */
  fill?: 'stop' | 'one';
}

/**
 * Burgess et al. 2018 capacity annealing: loss = recon + γ·|KL − C(t)|, with
 * C(t) = clamp(C_max / C_stop_iter · t, C_start, C_max) (ControlVAE repo's 'B' objective).
 * Defaults are those of ControlVAE's baseline script `run_dsprites_B_gamma100_z10_c15.sh`.
 */
export interface CapacitySpec {
  kind: 'capacity';
  /** γ; default 100. */
  gamma?: number;
  /** C_start (lower clamp); default 0. */
  capacityStart?: number;
  /** C_max in nats; default 15. */
  capacityMax?: number;
  /** C_stop_iter: iteration at which C reaches C_max; default 100000. */
  capacityStopIteration?: number;
}

/** Set point that rises by `step` at every iteration t with t mod `every` = 0, capped at `max`. */
export interface SteppedSetPoint {
  start: number;
  step: number;
  every: number;
  max: number;
}

export type ControlVaePreset = 'paper' | 'disentangling' | 'image-generation' | 'text' | 'dialog';

/**
 * When the integral is frozen, judged on the previous iteration's unclamped output W(t−1):
 * 'below-min': W(t−1) < β_min (Disentangling/P_PID.py); 'outside-range': W(t−1) < β_min or
 * W(t−1) > β_max (NeuralDialog/PID.py, and the paper); 'none': never (Image_generation/PID.py and
 * Text_gen_PTB/PID.py, whose test `W < 0 and W >= 1` can never be true).
 */
export type AntiWindup = 'below-min' | 'outside-range' | 'none';

/**
 * ControlVAE positional non-linear PI controller:
 *   e(t) = C(t) − KL(t)
 *   P(t) = Kp / (1 + exp(e(t)))
 *   I(t) = I(t−1) − Ki·e(t)       (held at I(t−1) when the anti-windup rule fires)
 *   W(t) = P(t) + I(t) + β_min    (unclamped output, the code's W_k1)
 *   β(t) = clamp(W(t), β_min, β_max)
 * Ki follows the paper's sign (Ki > 0; the code writes Ki = −0.001 and adds Ki·e).
 */
export interface ControlVaeSpec {
  kind: 'controlvae';
  /** Constants of one of the official controllers; default 'paper'. See CONTROLVAE_PRESETS. */
  preset?: ControlVaePreset;
  /** Constant KL set point, or a stepped schedule. Required for 'paper'; presets give the task's value. */
  setPoint?: number | Partial<SteppedSetPoint>;
  kp?: number;
  ki?: number;
  betaMin?: number;
  /** Upper clamp; null for none. */
  betaMax?: number | null;
  antiWindup?: AntiWindup;
  /** W(0), the previous-output value the anti-windup test sees at the first iteration. */
  initialOutput?: number;
  /** I(0); default 0 in every official controller. */
  initialIntegral?: number;
}

/** Hybrid annealing of DynamicVAE's set point: see DynamicVaeSpec.setPoint. */
export interface RampedSetPoint {
  start: number;
  step: number;
  every: number;
  ramp: number;
  max: number;
}

/**
 * DynamicVAE incremental PI controller (shj1987/DynamicVAE-CVPR2022, 2D-sprites/I_PID.py and
 * solver_dynamic.py), at iteration t = 1, 2, …:
 *   C(t):   if t ≥ W and (t mod W) < R: C += step/R;  C = min(C, C_max)
 *   K̄(t) = mean of the last T measured KLs (zero-padded deque, see `average`)
 *   e(t)  = C(t) − K̄(t)
 *   ΔP(t) = Kp·[1/(1 + exp(e(t))) − 1/(1 + exp(e(t−1)))],   e(0) = 0
 *   ΔI(t) = −Ki·e(t), or 0 when β_raw(t−1) < β_min (anti-windup)
 *   β_raw(t) = β_raw(t−1) + ΔP(t) + ΔI(t);   β(t) = max(β_raw(t), β_min)
 */
export interface DynamicVaeSpec {
  kind: 'dynamicvae';
  /** β_raw(0); default 50 (2D-sprites/I_PID.py; MNIST uses 100, SmallNORB --iv 90). */
  initialBeta?: number;
  /** Default 0.01. */
  kp?: number;
  /** Paper sign (> 0); default 0.005 (run_dynamic.sh passes Ki = −0.005 in the code's sign). */
  ki?: number;
  /** Default 0.1 ("important, otherwise wind up"). */
  betaMin?: number;
  /** T = past_T, the moving-average window; default 5 (run_dynamic.sh; argparse default 10). */
  window?: number;
  /**
   * 'padded' (default, the official deque([0.0]·(T−1))): the first T−1 averages divide a partial
   * sum by T and are biased low. 'unpadded': the mean of the min(t, T) KLs seen so far.
   */
  average?: 'padded' | 'unpadded';
  /**
   * Defaults: start 0.5 (hard-coded C = 0.5), step 0.15 (step_val), every 6000 (window_len),
   * ramp 1000 (ramp_steps), max 20 (C_max in run_dynamic.sh; argparse default 25).
   */
  setPoint?: Partial<RampedSetPoint>;
}

export type BetaScheduleSpec = ConstantSpec | WarmupSpec | CyclicalSpec | CapacitySpec | ControlVaeSpec | DynamicVaeSpec;

export type ResolvedConstantSpec = Required<ConstantSpec>;
export type ResolvedWarmupSpec = Required<WarmupSpec>;
export type ResolvedCyclicalSpec = Required<CyclicalSpec>;
export type ResolvedCapacitySpec = Required<CapacitySpec>;
export interface ResolvedControlVaeSpec {
  kind: 'controlvae';
  preset: ControlVaePreset;
  setPoint: number | SteppedSetPoint;
  kp: number;
  ki: number;
  betaMin: number;
  betaMax: number | null;
  antiWindup: AntiWindup;
  initialOutput: number;
  initialIntegral: number;
}
export interface ResolvedDynamicVaeSpec {
  kind: 'dynamicvae';
  initialBeta: number;
  kp: number;
  ki: number;
  betaMin: number;
  window: number;
  average: 'padded' | 'unpadded';
  setPoint: RampedSetPoint;
}
export type ResolvedBetaSpec =
  | ResolvedConstantSpec
  | ResolvedWarmupSpec
  | ResolvedCyclicalSpec
  | ResolvedCapacitySpec
  | ResolvedControlVaeSpec
  | ResolvedDynamicVaeSpec;

/**
 * Controller constants of the official ControlVAE variants (shj1987/ControlVAE-ICML2020), in the
 * paper's Ki sign. Set points are those of the task's run scripts; pick your own for other data
 * (the README: run a plain VAE and move its KL slightly up or down).
 */
export const CONTROLVAE_PRESETS: Readonly<Record<ControlVaePreset, Omit<ResolvedControlVaeSpec, 'kind' | 'preset' | 'setPoint'> & { setPoint: number | SteppedSetPoint | null }>> = {
  // The equations as stated in the paper: clamp [0, 1], integral frozen outside the range. The
  // constants are those every [0, 1] variant of the code uses; the set point must be given.
  paper: { setPoint: null, kp: 0.01, ki: 0.0001, betaMin: 0, betaMax: 1, antiWindup: 'outside-range', initialOutput: 0, initialIntegral: 0 },
  // Disentangling/P_PID.py with solver_light.py (dSprites): P = Kp·σ(−e) + 1, Ki = −0.001, freeze when
  // W_prev < 1, β = max(W, 1) with no upper clamp, W_prev starts at 1; C from 0.5, +0.15 at every
  // 5000th iteration, capped at 16 (run_dsprites_pid_c16.sh; c18 uses 18).
  disentangling: { setPoint: { start: 0.5, step: 0.15, every: 5000, max: 16 }, kp: 0.01, ki: 0.001, betaMin: 1, betaMax: null, antiWindup: 'below-min', initialOutput: 1, initialIntegral: 0 },
  // Image_generation/PID.py with solver.py (CelebA): clip [0, 1], Kp 0.01, Ki −0.0001, no working
  // anti-windup, W_prev starts at 0; KL set point 170 (run_celeba_PID_z500_KL170_d128.sh).
  'image-generation': { setPoint: 170, kp: 0.01, ki: 0.0001, betaMin: 0, betaMax: 1, antiWindup: 'none', initialOutput: 0, initialIntegral: 0 },
  // Language_modeling/Text_gen_PTB/PID.py: same controller as image generation; exp_kl 2.0.
  text: { setPoint: 2, kp: 0.01, ki: 0.0001, betaMin: 0, betaMax: 1, antiWindup: 'none', initialOutput: 0, initialIntegral: 0 },
  // Language_modeling/NeuralDialog/PID.py (TensorFlow): clip [0, 1], freeze when W_prev < 0 or > 1;
  // exp_KL 25 (run_pid.sh).
  dialog: { setPoint: 25, kp: 0.01, ki: 0.0001, betaMin: 0, betaMax: 1, antiWindup: 'outside-range', initialOutput: 0, initialIntegral: 0 },
};

/** Diagnostic values of the iteration `next` just computed (for logging). */
export interface BetaInfo {
  kind: BetaScheduleKind;
  /** Calls to `next` so far (= t of the last iteration). */
  iteration: number;
  /** What the last `next` returned; null before the first call. */
  beta: number | null;
  /** KL set point C(t) (controllers) or capacity C(t) (capacity annealing). */
  setPoint?: number;
  /** The KL the controller saw (DynamicVAE: the moving average). */
  klSeen?: number;
  /** e(t) = C(t) − KL seen. */
  error?: number;
  /** ControlVAE: I(t). */
  integral?: number;
  /** Controllers: the unclamped output W(t) / β_raw(t). */
  output?: number;
}

export interface BetaScheduleState {
  format: 'voxvae.beta-schedule';
  version: 1;
  spec: ResolvedBetaSpec;
  iteration: number;
  beta: number | null;
  /** Kind-specific controller variables, finite numbers / arrays of them / null. */
  vars: Record<string, number | number[] | null>;
}

export interface BetaSchedule {
  readonly kind: BetaScheduleKind;
  /** Resolved spec, every default filled in. */
  readonly spec: ResolvedBetaSpec;
  /** Number of calls to `next` so far. */
  readonly iteration: number;
  /** Advance one iteration given this iteration's measured KL; returns d(klTerm)/d(KL). */
  next(klMeasured: number): number;
  /** The KL term of the loss for the iteration `next` just computed: β·KL, or γ·|KL − C| for capacity. */
  klTerm(klMeasured: number): number;
  info(): BetaInfo;
  state(): BetaScheduleState;
  /** Restores a state of the same kind and spec (ECHECKPOINT otherwise; use betaScheduleFromState to adopt a state's spec). */
  load(state: BetaScheduleState): void;
}

// ---------------------------------------------------------------------------------------------------
// Validation helpers

type Obj = Record<string, unknown>;

function checkKeys(spec: Obj, path: string, allowed: readonly string[]): void {
  is.knownKeys(path, spec, allowed, 'option of this schedule');
}

interface NumRule {
  integer?: boolean;
  min?: number;
  /** min is exclusive */
  above?: number;
  max?: number;
}

function num(spec: Obj, path: string, key: string, fallback: number | undefined, rule: NumRule = {}): number {
  const v = spec[key];
  const field = `${path}.${key}`;
  if (v === undefined) {
    if (fallback === undefined) invalid(field, 'is required');
    return fallback;
  }
  return checkNum(field, v, rule);
}

function checkNum(field: string, v: unknown, rule: NumRule = {}): number {
  const x = is.number(field, v, { ...(rule.min !== undefined ? { min: rule.min } : {}), ...(rule.above !== undefined ? { above: rule.above } : {}), ...(rule.max !== undefined ? { max: rule.max } : {}) });
  if (rule.integer === true && !Number.isSafeInteger(x)) invalid(field, 'must be an integer', x);
  return x;
}

function choice<T extends string>(spec: Obj, path: string, key: string, options: readonly T[], fallback: T): T {
  const v = spec[key];
  return v === undefined ? fallback : is.oneOf(`${path}.${key}`, v, options);
}

const isObj = is.plainObject;

function checkKl(kl: unknown, method: string): number {
  if (typeof kl !== 'number' || !Number.isFinite(kl)) {
    throw new VoxvaeError('ENOTFINITE', `${method}(klMeasured): klMeasured must be a finite number (got ${describe(kl)}); a NaN/Inf KL means training diverged`, { path: 'klMeasured' });
  }
  return kl;
}

/** σ(−e) written as the authors do: 1 / (1 + exp(e)). exp overflows to Infinity for e > ~709 → 0 (Python would raise OverflowError). */
function sigmoidNeg(e: number): number {
  return 1.0 / (1.0 + Math.exp(e));
}

// ---------------------------------------------------------------------------------------------------
// Spec resolution

const KINDS: readonly BetaScheduleKind[] = ['constant', 'warmup', 'cyclical', 'capacity', 'controlvae', 'dynamicvae'];

/** Validates a spec and fills in every default. `path` names the spec in error messages. */
export function resolveBetaSpec(spec: unknown, path = 'beta'): ResolvedBetaSpec {
  if (!isObj(spec)) invalid(path, 'must be an object like { kind: "constant", beta: 1 }', spec);
  const kind = spec['kind'];
  if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) {
    invalid(`${path}.kind`, `must be one of ${KINDS.map((k) => `'${k}'`).join(', ')}`, kind);
  }
  switch (kind as BetaScheduleKind) {
    case 'constant':
      checkKeys(spec, path, ['kind', 'beta']);
      return { kind: 'constant', beta: num(spec, path, 'beta', 1, { min: 0 }) };
    case 'warmup': {
      checkKeys(spec, path, ['kind', 'start', 'target', 'iterations']);
      return {
        kind: 'warmup',
        start: num(spec, path, 'start', 0, { min: 0 }),
        target: num(spec, path, 'target', 1, { min: 0 }),
        iterations: num(spec, path, 'iterations', undefined, { integer: true, min: 1 }),
      };
    }
    case 'cyclical': {
      checkKeys(spec, path, ['kind', 'totalIterations', 'cycles', 'ratio', 'ramp', 'start', 'stop', 'formula', 'fill']);
      const r: ResolvedCyclicalSpec = {
        kind: 'cyclical',
        totalIterations: num(spec, path, 'totalIterations', undefined, { integer: true, min: 1 }),
        cycles: num(spec, path, 'cycles', 4, { integer: true, min: 1 }),
        ratio: num(spec, path, 'ratio', 0.5, { above: 0, max: 1 }),
        ramp: choice(spec, path, 'ramp', ['linear', 'sigmoid', 'cosine'] as const, 'linear'),
        start: num(spec, path, 'start', 0, { min: 0 }),
        stop: num(spec, path, 'stop', 1, { min: 0 }),
        formula: choice(spec, path, 'formula', ['reference', 'closed-form'] as const, 'reference'),
        fill: choice(spec, path, 'fill', ['stop', 'one'] as const, 'stop'),
      };
      if (r.stop < r.start) invalid(`${path}.stop`, `must be ≥ ${path}.start (${r.start})`, r.stop);
      if (r.cycles > r.totalIterations) invalid(`${path}.cycles`, `must be ≤ ${path}.totalIterations (${r.totalIterations})`, r.cycles);
      return r;
    }
    case 'capacity': {
      checkKeys(spec, path, ['kind', 'gamma', 'capacityStart', 'capacityMax', 'capacityStopIteration']);
      const r: ResolvedCapacitySpec = {
        kind: 'capacity',
        gamma: num(spec, path, 'gamma', 100, { min: 0 }),
        capacityStart: num(spec, path, 'capacityStart', 0, { min: 0 }),
        capacityMax: num(spec, path, 'capacityMax', 15, { min: 0 }),
        capacityStopIteration: num(spec, path, 'capacityStopIteration', 100000, { above: 0 }),
      };
      if (r.capacityStart > r.capacityMax) invalid(`${path}.capacityStart`, `must be ≤ ${path}.capacityMax (${r.capacityMax})`, r.capacityStart);
      return r;
    }
    case 'controlvae':
      return resolveControlVae(spec, path);
    case 'dynamicvae':
      return resolveDynamicVae(spec, path);
  }
}

function resolveControlVae(spec: Obj, path: string): ResolvedControlVaeSpec {
  checkKeys(spec, path, ['kind', 'preset', 'setPoint', 'kp', 'ki', 'betaMin', 'betaMax', 'antiWindup', 'initialOutput', 'initialIntegral']);
  const preset = choice(spec, path, 'preset', ['paper', 'disentangling', 'image-generation', 'text', 'dialog'] as const, 'paper');
  const d = CONTROLVAE_PRESETS[preset];
  let setPoint: number | SteppedSetPoint;
  const sp = spec['setPoint'];
  if (sp === undefined) {
    if (d.setPoint === null) invalid(`${path}.setPoint`, `is required with preset '${preset}' (a target KL in nats, e.g. the KL of a plain VAE moved slightly up or down)`);
    setPoint = typeof d.setPoint === 'number' ? d.setPoint : { ...d.setPoint };
  } else if (typeof sp === 'number') {
    setPoint = checkNum(`${path}.setPoint`, sp, { min: 0 });
  } else if (isObj(sp)) {
    const base: Partial<SteppedSetPoint> = typeof d.setPoint === 'object' && d.setPoint !== null ? d.setPoint : { step: 0.15, every: 5000 };
    const p = `${path}.setPoint`;
    checkKeys(sp, p, ['start', 'step', 'every', 'max']);
    setPoint = {
      start: num(sp, p, 'start', base.start, { min: 0 }),
      step: num(sp, p, 'step', base.step, { min: 0 }),
      every: num(sp, p, 'every', base.every, { integer: true, min: 1 }),
      max: num(sp, p, 'max', base.max, { min: 0 }),
    };
  } else {
    invalid(`${path}.setPoint`, 'must be a number (constant KL target) or { start, step, every, max }', sp);
  }
  let betaMax: number | null = d.betaMax;
  if (spec['betaMax'] !== undefined) betaMax = spec['betaMax'] === null ? null : checkNum(`${path}.betaMax`, spec['betaMax'], { min: 0 });
  const r: ResolvedControlVaeSpec = {
    kind: 'controlvae',
    preset,
    setPoint,
    kp: num(spec, path, 'kp', d.kp, { min: 0 }),
    ki: num(spec, path, 'ki', d.ki, { min: 0 }),
    betaMin: num(spec, path, 'betaMin', d.betaMin, { min: 0 }),
    betaMax,
    antiWindup: choice(spec, path, 'antiWindup', ['below-min', 'outside-range', 'none'] as const, d.antiWindup),
    initialOutput: num(spec, path, 'initialOutput', d.initialOutput),
    initialIntegral: num(spec, path, 'initialIntegral', d.initialIntegral),
  };
  if (r.betaMax !== null && r.betaMax < r.betaMin) invalid(`${path}.betaMax`, `must be ≥ ${path}.betaMin (${r.betaMin})`, r.betaMax);
  return r;
}

function resolveDynamicVae(spec: Obj, path: string): ResolvedDynamicVaeSpec {
  checkKeys(spec, path, ['kind', 'initialBeta', 'kp', 'ki', 'betaMin', 'window', 'average', 'setPoint']);
  const sp = spec['setPoint'] ?? {};
  const p = `${path}.setPoint`;
  if (!isObj(sp)) invalid(p, 'must be an object { start, step, every, ramp, max }', sp);
  checkKeys(sp, p, ['start', 'step', 'every', 'ramp', 'max']);
  const setPoint: RampedSetPoint = {
    start: num(sp, p, 'start', 0.5, { min: 0 }),
    step: num(sp, p, 'step', 0.15, { min: 0 }),
    every: num(sp, p, 'every', 6000, { integer: true, min: 1 }),
    ramp: num(sp, p, 'ramp', 1000, { integer: true, min: 1 }),
    max: num(sp, p, 'max', 20, { min: 0 }),
  };
  if (setPoint.ramp > setPoint.every) invalid(`${p}.ramp`, `must be ≤ ${p}.every (${setPoint.every})`, setPoint.ramp);
  return {
    kind: 'dynamicvae',
    initialBeta: num(spec, path, 'initialBeta', 50, { min: 0 }),
    kp: num(spec, path, 'kp', 0.01, { min: 0 }),
    ki: num(spec, path, 'ki', 0.005, { min: 0 }),
    betaMin: num(spec, path, 'betaMin', 0.1, { min: 0 }),
    window: num(spec, path, 'window', 5, { integer: true, min: 1 }),
    average: choice(spec, path, 'average', ['padded', 'unpadded'] as const, 'padded'),
    setPoint,
  };
}

// ---------------------------------------------------------------------------------------------------
// Base class: iteration counter, last β, state plumbing

abstract class ScheduleBase<S extends ResolvedBetaSpec> implements BetaSchedule {
  protected _spec: S;
  protected _iteration = 0;
  protected _beta: number | null = null;

  constructor(spec: S) {
    this._spec = spec;
  }

  get kind(): BetaScheduleKind {
    return this._spec.kind;
  }
  get spec(): S {
    return structuredClone(this._spec);
  }
  get iteration(): number {
    return this._iteration;
  }

  next(klMeasured: number): number {
    const kl = checkKl(klMeasured, 'next');
    this._iteration += 1;
    this._beta = this.step(this._iteration, kl);
    return this._beta;
  }

  /** Computes iteration t (1-based) from the measured KL; returns the KL-gradient multiplier. */
  protected abstract step(t: number, kl: number): number;

  klTerm(klMeasured: number): number {
    const kl = checkKl(klMeasured, 'klTerm');
    if (this._beta === null) throw new VoxvaeError('EINVAL', 'klTerm() was called before next(): call next(kl) once per iteration first');
    return this._beta * kl;
  }

  info(): BetaInfo {
    return { kind: this.kind, iteration: this._iteration, beta: this._beta, ...this.extraInfo() };
  }
  protected extraInfo(): Partial<BetaInfo> {
    return {};
  }

  state(): BetaScheduleState {
    return { format: 'voxvae.beta-schedule', version: 1, spec: structuredClone(this._spec), iteration: this._iteration, beta: this._beta, vars: this.saveVars() };
  }
  protected saveVars(): Record<string, number | number[] | null> {
    return {};
  }

  load(state: BetaScheduleState): void {
    const s = checkStateShape(state);
    const spec = resolveBetaSpec(s.spec, 'state.spec');
    const diff = firstDifference(this._spec, spec, 'spec');
    if (diff !== null) {
      throw new VoxvaeError('ECHECKPOINT', `β-schedule state does not match this schedule: ${diff}; build the schedule with betaScheduleFromState(state) to adopt the saved settings`, { path: 'state.spec' });
    }
    const beta = s.beta === null ? null : checkNum('state.beta', s.beta);
    this.loadVars(s.vars, s.iteration);
    this._iteration = s.iteration;
    this._beta = beta;
  }
  /** Validates and installs the kind-specific variables (throws before changing anything on error). */
  protected loadVars(_vars: Record<string, unknown>, _iteration: number): void {}
}

function checkStateShape(state: unknown): BetaScheduleState {
  if (!isObj(state)) invalid('state', 'must be an object returned by schedule.state()', state);
  if (state['format'] !== 'voxvae.beta-schedule') invalid('state.format', "must be 'voxvae.beta-schedule'", state['format']);
  if (state['version'] !== 1) invalid('state.version', 'must be 1 (written by this version of voxvae)', state['version']);
  checkNum('state.iteration', state['iteration'], { integer: true, min: 0 });
  if (state['beta'] !== null) checkNum('state.beta', state['beta']);
  if (!isObj(state['vars'])) invalid('state.vars', 'must be an object', state['vars']);
  return state as unknown as BetaScheduleState;
}

function firstDifference(a: unknown, b: unknown, path: string): string | null {
  if (isObj(a) && isObj(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      const d = firstDifference(a[k], b[k], `${path}.${k}`);
      if (d !== null) return d;
    }
    return null;
  }
  if (Object.is(a, b)) return null;
  return `${path} is ${describe(b)} in the state but ${describe(a)} here`;
}

function varNum(vars: Record<string, unknown>, key: string, nullable = false): number | null {
  const v = vars[key];
  if (nullable && v === null) return null;
  return checkNum(`state.vars.${key}`, v);
}

function varArray(vars: Record<string, unknown>, key: string, maxLength: number): number[] {
  const v = vars[key];
  if (!Array.isArray(v) || v.length > maxLength) invalid(`state.vars.${key}`, `must be an array of at most ${maxLength} finite numbers`, v);
  return v.map((x, i) => checkNum(`state.vars.${key}[${i}]`, x));
}

// ---------------------------------------------------------------------------------------------------
// Schedules

export class ConstantBeta extends ScheduleBase<ResolvedConstantSpec> {
  constructor(spec: Omit<ConstantSpec, 'kind'> = {}) {
    super(resolveBetaSpec({ kind: 'constant', ...spec }) as ResolvedConstantSpec);
  }
  static fromState(state: BetaScheduleState): ConstantBeta {
    return ofClass(betaScheduleFromState(state), ConstantBeta);
  }
  protected step(): number {
    return this._spec.beta;
  }
}

export class WarmupBeta extends ScheduleBase<ResolvedWarmupSpec> {
  constructor(spec: Omit<WarmupSpec, 'kind'>) {
    super(resolveBetaSpec({ kind: 'warmup', ...spec }) as ResolvedWarmupSpec);
  }
  static fromState(state: BetaScheduleState): WarmupBeta {
    return ofClass(betaScheduleFromState(state), WarmupBeta);
  }
  protected step(t: number): number {
    const { start, target, iterations } = this._spec;
    const n = t - 1;
    return n >= iterations ? target : start + (target - start) * (n / iterations);
  }
}

export class CyclicalBeta extends ScheduleBase<ResolvedCyclicalSpec> {
  /** v_i of one ramp (identical for every cycle), built on first use; not part of the state. */
  private rampValues: Float64Array | null = null;

  constructor(spec: Omit<CyclicalSpec, 'kind'>) {
    super(resolveBetaSpec({ kind: 'cyclical', ...spec }) as ResolvedCyclicalSpec);
  }
  static fromState(state: BetaScheduleState): CyclicalBeta {
    return ofClass(betaScheduleFromState(state), CyclicalBeta);
  }

  protected step(t: number): number {
    return this._spec.formula === 'reference' ? this.valueAt(t - 1) : closedFormCyclical(this._spec, t);
  }

  /** L[n] of the reference table (n 0-based); the plateau value for n ≥ T. */
  valueAt(n: number): number {
    const { totalIterations: T, cycles: M, ratio, start, stop, ramp } = this._spec;
    const fill = this._spec.fill === 'stop' ? stop : 1;
    if (n >= T) return fill;
    const period = T / M;
    const step = (stop - start) / (period * ratio);
    if (step === 0) return applyRamp(ramp, start); // every index is written with v = start
    const v = this.ramp(T, start, stop, step);
    // The table is written cycle after cycle, so the last cycle that writes index n wins; within a
    // cycle, index int(i + c·period) for i = 0 … K−1 (Python int() truncates, as Math.trunc).
    for (let c = M - 1; c >= 0; c--) {
      const base = c * period;
      const i0 = n - Math.floor(base);
      for (let i = i0 + 1; i >= i0 - 1; i--) {
        if (i >= 0 && i < v.length && Math.trunc(i + c * period) === n) return applyRamp(ramp, v[i]!);
      }
    }
    return fill;
  }

  private ramp(T: number, start: number, stop: number, step: number): Float64Array {
    if (this.rampValues === null) {
      const values: number[] = [];
      // `while v <= stop and int(i + c*period) < n_iter`: i never exceeds T − 1 for c = 0.
      let v = start;
      for (let i = 0; v <= stop && i < T; i++) {
        values.push(v);
        v += step;
      }
      this.rampValues = Float64Array.from(values);
    }
    return this.rampValues;
  }
}

function applyRamp(ramp: CyclicalRamp, v: number): number {
  if (ramp === 'linear') return v;
  if (ramp === 'sigmoid') return 1.0 / (1.0 + Math.exp(-(v * 12 - 6)));
  return 0.5 - 0.5 * Math.cos(v * Math.PI);
}

function closedFormCyclical(s: ResolvedCyclicalSpec, t: number): number {
  const periodCeil = Math.ceil(s.totalIterations / s.cycles);
  const tau = ((t - 1) % periodCeil) / (s.totalIterations / s.cycles);
  if (tau > s.ratio) return s.stop;
  const u = tau / s.ratio;
  const f = s.ramp === 'linear' ? u : applyRamp(s.ramp, u);
  return s.start + (s.stop - s.start) * f;
}

/**
 * Burgess capacity annealing. `next(kl)` returns γ·sign(KL − C(t)) (0 when KL = C, as autograd's
 * |x|' at 0), the derivative of `klTerm(kl)` = γ·|KL − C(t)| with respect to KL.
 * C(t) = clamp(C_max / C_stop_iter · t, C_start, C_max), t = 1 at the first iteration (computed in
 * float64; the original computes it in float32).
 */
export class CapacityAnnealing extends ScheduleBase<ResolvedCapacitySpec> {
  private capacityNow: number | null = null;

  constructor(spec: Omit<CapacitySpec, 'kind'> = {}) {
    super(resolveBetaSpec({ kind: 'capacity', ...spec }) as ResolvedCapacitySpec);
  }
  static fromState(state: BetaScheduleState): CapacityAnnealing {
    return ofClass(betaScheduleFromState(state), CapacityAnnealing);
  }

  /** C(t) for iteration t (1-based). */
  capacityAt(t: number): number {
    const { capacityStart, capacityMax, capacityStopIteration } = this._spec;
    const c = (capacityMax / capacityStopIteration) * t;
    return Math.min(Math.max(c, capacityStart), capacityMax);
  }

  protected step(t: number, kl: number): number {
    const c = this.capacityAt(t);
    this.capacityNow = c;
    return this._spec.gamma * Math.sign(kl - c);
  }

  override klTerm(klMeasured: number): number {
    const kl = checkKl(klMeasured, 'klTerm');
    if (this.capacityNow === null) throw new VoxvaeError('EINVAL', 'klTerm() was called before next(): call next(kl) once per iteration first');
    return this._spec.gamma * Math.abs(kl - this.capacityNow);
  }

  protected override extraInfo(): Partial<BetaInfo> {
    return this.capacityNow === null ? {} : { setPoint: this.capacityNow };
  }
  protected override saveVars(): Record<string, number | number[] | null> {
    return { capacity: this.capacityNow };
  }
  protected override loadVars(vars: Record<string, unknown>): void {
    this.capacityNow = varNum(vars, 'capacity', true);
  }
}

/** ControlVAE positional non-linear PI controller; see ControlVaeSpec for the equations. */
export class ControlVaeController extends ScheduleBase<ResolvedControlVaeSpec> {
  private setPoint: number;
  private integral: number;
  private output: number;
  private error: number | null = null;
  private klSeen: number | null = null;

  constructor(spec: Omit<ControlVaeSpec, 'kind'>) {
    super(resolveBetaSpec({ kind: 'controlvae', ...spec }) as ResolvedControlVaeSpec);
    const s = this._spec;
    this.setPoint = typeof s.setPoint === 'number' ? s.setPoint : s.setPoint.start;
    this.integral = s.initialIntegral;
    this.output = s.initialOutput;
  }
  static fromState(state: BetaScheduleState): ControlVaeController {
    return ofClass(betaScheduleFromState(state), ControlVaeController);
  }

  protected step(t: number, kl: number): number {
    const s = this._spec;
    // Set point first, as solver_light.py: C += step at every `every`-th iteration, then cap.
    if (typeof s.setPoint !== 'number') {
      if (t % s.setPoint.every === 0) this.setPoint += s.setPoint.step;
      if (this.setPoint > s.setPoint.max) this.setPoint = s.setPoint.max;
    }
    const e = this.setPoint - kl;
    const p = s.kp * sigmoidNeg(e);
    let i = this.integral - s.ki * e;
    const prev = this.output;
    const frozen =
      s.antiWindup === 'below-min' ? prev < s.betaMin : s.antiWindup === 'outside-range' ? prev < s.betaMin || (s.betaMax !== null && prev > s.betaMax) : false;
    if (frozen) i = this.integral;
    const w = p + i + s.betaMin;
    this.output = w;
    this.integral = i;
    this.error = e;
    this.klSeen = kl;
    let beta = w < s.betaMin ? s.betaMin : w;
    if (s.betaMax !== null && beta > s.betaMax) beta = s.betaMax;
    return beta;
  }

  protected override extraInfo(): Partial<BetaInfo> {
    const out: Partial<BetaInfo> = { setPoint: this.setPoint, integral: this.integral, output: this.output };
    if (this.error !== null) out.error = this.error;
    if (this.klSeen !== null) out.klSeen = this.klSeen;
    return out;
  }
  protected override saveVars(): Record<string, number | number[] | null> {
    return { setPoint: this.setPoint, integral: this.integral, output: this.output, error: this.error, klSeen: this.klSeen };
  }
  protected override loadVars(vars: Record<string, unknown>): void {
    const setPoint = varNum(vars, 'setPoint')!;
    const integral = varNum(vars, 'integral')!;
    const output = varNum(vars, 'output')!;
    const error = varNum(vars, 'error', true);
    const klSeen = varNum(vars, 'klSeen', true);
    Object.assign(this, { setPoint, integral, output, error, klSeen });
  }
}

/** DynamicVAE incremental PI controller; see DynamicVaeSpec for the equations. */
export class DynamicVaeController extends ScheduleBase<ResolvedDynamicVaeSpec> {
  private setPoint: number;
  private output: number;
  private errorPrev = 0;
  private klSeen: number | null = null;
  /** KLs kept between iterations: the deque after popleft (padded: always T − 1 long). */
  private recent: number[];

  constructor(spec: Omit<DynamicVaeSpec, 'kind'> = {}) {
    super(resolveBetaSpec({ kind: 'dynamicvae', ...spec }) as ResolvedDynamicVaeSpec);
    this.setPoint = this._spec.setPoint.start;
    this.output = this._spec.initialBeta;
    this.recent = this._spec.average === 'padded' ? new Array<number>(this._spec.window - 1).fill(0) : [];
  }
  static fromState(state: BetaScheduleState): DynamicVaeController {
    return ofClass(betaScheduleFromState(state), DynamicVaeController);
  }

  /** The set point the controller uses at iteration t, had it run from the start (for plots and tests). */
  setPointAt(t: number): number {
    const { start, step, every, ramp, max } = this._spec.setPoint;
    let c = start;
    for (let u = 1; u <= t; u++) {
      if (u >= every && u % every < ramp) c += step / ramp;
      if (c > max) c = max;
    }
    return c;
  }

  protected step(t: number, kl: number): number {
    const s = this._spec;
    const sp = s.setPoint;
    if (t >= sp.every && t % sp.every < sp.ramp) this.setPoint += sp.step / sp.ramp;
    if (this.setPoint > sp.max) this.setPoint = sp.max;

    // queue.append(kl); avg = mean(queue); queue.popleft()   (sum oldest first)
    this.recent.push(kl);
    let sum = 0;
    for (const x of this.recent) sum += x;
    const avg = sum / this.recent.length;
    if (this.recent.length >= s.window) this.recent.shift();

    const e = this.setPoint - avg;
    const dP = s.kp * (sigmoidNeg(e) - sigmoidNeg(this.errorPrev));
    let dI = -s.ki * e;
    if (this.output < s.betaMin) dI = 0;
    const w = dP + dI + this.output;
    this.output = w;
    this.errorPrev = e;
    this.klSeen = avg;
    return w < s.betaMin ? s.betaMin : w;
  }

  protected override extraInfo(): Partial<BetaInfo> {
    const out: Partial<BetaInfo> = { setPoint: this.setPoint, output: this.output };
    if (this.klSeen !== null) {
      out.klSeen = this.klSeen;
      out.error = this.errorPrev;
    }
    return out;
  }
  protected override saveVars(): Record<string, number | number[] | null> {
    return { setPoint: this.setPoint, output: this.output, errorPrev: this.errorPrev, klSeen: this.klSeen, recent: [...this.recent] };
  }
  protected override loadVars(vars: Record<string, unknown>, iteration: number): void {
    const w = this._spec.window;
    const setPoint = varNum(vars, 'setPoint')!;
    const output = varNum(vars, 'output')!;
    const errorPrev = varNum(vars, 'errorPrev')!;
    const klSeen = varNum(vars, 'klSeen', true);
    const recent = varArray(vars, 'recent', w - 1);
    const expected = this._spec.average === 'padded' ? w - 1 : Math.min(iteration, w - 1);
    if (recent.length !== expected) invalid('state.vars.recent', `must hold ${expected} values for window ${w} after ${iteration} iterations`, recent.length);
    Object.assign(this, { setPoint, output, errorPrev, klSeen, recent });
  }
}

// ---------------------------------------------------------------------------------------------------
// Factory

/** Builds a schedule from a plain JSON spec; `path` names the spec in error messages (default 'beta'). */
export function createBetaSchedule(spec: BetaScheduleSpec, path = 'beta'): BetaSchedule {
  const r = resolveBetaSpec(spec, path);
  return construct(r);
}

function construct(r: ResolvedBetaSpec): BetaSchedule {
  const { kind: _kind, ...rest } = r;
  switch (r.kind) {
    case 'constant':
      return new ConstantBeta(rest as Omit<ConstantSpec, 'kind'>);
    case 'warmup':
      return new WarmupBeta(rest as Omit<WarmupSpec, 'kind'>);
    case 'cyclical':
      return new CyclicalBeta(rest as Omit<CyclicalSpec, 'kind'>);
    case 'capacity':
      return new CapacityAnnealing(rest as Omit<CapacitySpec, 'kind'>);
    case 'controlvae':
      return new ControlVaeController(rest as Omit<ControlVaeSpec, 'kind'>);
    case 'dynamicvae':
      return new DynamicVaeController(rest as Omit<DynamicVaeSpec, 'kind'>);
  }
}

function ofClass<T extends BetaSchedule>(s: BetaSchedule, cls: abstract new (...args: never[]) => T): T {
  if (!(s instanceof cls)) invalid('state.spec.kind', `is '${s.kind}', not a state of ${cls.name}`, s.kind);
  return s;
}

/** Rebuilds a schedule, settings and progress, from `schedule.state()`. */
export function betaScheduleFromState(state: BetaScheduleState): BetaSchedule {
  const s = checkStateShape(state);
  const schedule = construct(resolveBetaSpec(s.spec, 'state.spec'));
  schedule.load(s);
  return schedule;
}
