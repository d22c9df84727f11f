// Runs the voxvae command line as a user does (a child process through tsx), capturing stdout, stderr
// and the exit code. Shared by test/cli_*.test.ts.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './helpers.js';

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const MAIN = path.join(ROOT, 'ts', 'cli', 'main.ts');

/** Runs `voxvae ...args`; `onStdout` sees the output as it comes (e.g. to send a signal). */
export function voxvae(args: string[], opts: { onStdout?: (text: string, child: ReturnType<typeof spawn>) => void; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env: { ...process.env, FORCE_COLOR: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      opts.onStdout?.(stdout, child);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A failure as the issue asks: exit code ≠ 0, one line on stderr matching `message`, no stack trace. */
export function assertOneLineError(t: { not: (a: unknown, b: unknown, m?: string) => void; regex: (s: string, r: RegExp, m?: string) => void; notRegex: (s: string, r: RegExp, m?: string) => void; true: (v: boolean, m?: string) => void }, r: CliResult, message: RegExp): void {
  t.not(r.code, 0, `exit code (stderr: ${r.stderr})`);
  t.regex(r.stderr, message);
  t.notRegex(r.stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace');
  const lines = r.stderr.split('\n').filter((l) => l.trim() && !l.startsWith('(')); // commander's hints: (Did you mean …?), (run with --help …)
  t.true(lines.length <= 1, `one line, got:\n${r.stderr}`);
}
