// Argument parsers shared by the CLI's commands: a flag's text becomes a value and is checked by ts/is (the
// one validation module), whose message, naming the flag, commander prints.
import { InvalidArgumentError } from 'commander';
import { VoxvaeError } from '../errors.js';
import * as is from '../is.js';

/** Runs a check of ts/is on a flag's value; its refusal becomes commander's InvalidArgumentError. */
function cli<T>(check: () => T, hint = ''): T {
  try {
    return check();
  } catch (e) {
    if (e instanceof VoxvaeError && e.code === 'EINVAL') throw new InvalidArgumentError(e.message + hint);
    throw e;
  }
}

/** An integer in [min, max]. */
export const integer = (flag: string, min: number, max: number) => (v: string): number => cli(() => is.integer(flag, Number(v), min, max));

/** An integer ≥ 1. */
export const positiveInt = (flag: string) => integer(flag, 1, 2 ** 31 - 1);

/** An integer ≥ 0. */
export const nonNegativeInt = (flag: string) => integer(flag, 0, 2 ** 31 - 1);

/** A finite number > 0. */
export const positiveNumber = (flag: string) => (v: string): number => cli(() => is.number(flag, Number(v), { above: 0 }));

/** A finite number ≥ 0. */
export const nonNegativeNumber = (flag: string) => (v: string): number => cli(() => is.number(flag, Number(v), { min: 0 }));

/** A comma-separated list of 1..maxLength positive integers, e.g. 16,32,64. */
export const integers = (flag: string, v: string, maxLength = 64): number[] => cli(() => is.integers(flag, v.split(',').map((s) => (s.trim() === '' ? NaN : Number(s))), { maxLength, min: 1, max: 8192 }));

/** Any finite number. */
export const finiteNumber = (flag: string) => (v: string): number => cli(() => is.number(flag, Number(v)));

/** D,H,W (also DxHxW), each in [min, max]. */
export const shape = (flag: string, min = 1, max = 4096) => (v: string): [number, number, number] =>
  cli(() => is.integers(flag, v.split(/[,x×]/).map((s) => Number(s.trim())), { count: 3, min, max }) as [number, number, number], ' (D,H,W, e.g. 64,64,32)');

/** D,H,W (also DxHxW). */
export const shape3 = shape('--shape');

/** One of `choices`. */
export const oneOf = <T extends string>(flag: string, choices: readonly T[]) => (v: string): T => cli(() => is.oneOf(flag, v, choices));
