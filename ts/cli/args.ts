// Argument parsers shared by the CLI's commands: each names its flag in the message commander prints.
import { InvalidArgumentError } from 'commander';

/** An integer ≥ 1. */
export const positiveInt = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} must be a positive integer`);
  return n;
};

/** An integer ≥ 0. */
export const nonNegativeInt = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${flag} must be a non-negative integer`);
  return n;
};

/** A finite number > 0. */
export const positiveNumber = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${flag} must be a positive number`);
  return n;
};

/** Any finite number. */
export const finiteNumber = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${flag} must be a number`);
  return n;
};

/** D,H,W (also DxHxW). */
export const shape3 = (v: string): [number, number, number] => {
  const p = v.split(/[,x×]/).map(Number);
  if (p.length !== 3 || !p.every((d) => Number.isInteger(d) && d > 0)) throw new InvalidArgumentError('shape must be D,H,W (e.g. 64,64,32)');
  return p as [number, number, number];
};

/** One of `choices`. */
export const oneOf = <T extends string>(flag: string, choices: readonly T[]) => (v: string): T => {
  if (!choices.includes(v as T)) throw new InvalidArgumentError(`${flag} must be ${choices.map((c) => `'${c}'`).join(', ')}`);
  return v as T;
};
