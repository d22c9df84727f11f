// `voxvae launch`: starts the local ranks of a data-parallel run (torchrun-like; docs/distributed.md).
//
//   voxvae launch --nproc 2 -- pipeline ...            2 ranks on this machine, rendezvous on 127.0.0.1
//   voxvae launch --nproc 4 --world-size 8 --rank 4 --rendezvous tcp://node0:29500 -- pipeline ...
//                                                      ranks 4..7 of 8 (run the same with --rank 0 on node0)
//   voxvae launch --nproc 2 --exec -- node my-train.js  any program that calls initDistributed()
//
// Each rank is a process with VOXVAE_RANK, VOXVAE_LOCAL_RANK, VOXVAE_WORLD_SIZE, VOXVAE_RENDEZVOUS and
// VOXVAE_THREADS (this machine's cores shared between its ranks); a voxvae command joins the group before
// it runs (ts/cli/rank.ts). Rank 0 keeps the terminal; the others' lines come prefixed with [rank r] on
// stderr. When a rank fails the others fail with EDIST on their own (a closed connection is noticed at
// once); whatever still runs after --grace seconds is stopped, and launch exits with the first failure's code.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { VoxvaeError } from '../errors.js';
import { parseRendezvous } from '../dist/index.js';
import { nonNegativeInt, positiveInt } from './args.js';

export interface LaunchOptions {
  nproc: number;
  /** Ranks in the whole run (default nproc: this machine only). */
  worldSize?: number;
  /** The global rank of this machine's first process (default 0). */
  rank?: number;
  /** tcp://host:port or file:///folder (default: a free port on 127.0.0.1, single machine only). */
  rendezvous?: string;
  /** The address the other machines reach this one's ranks on (VOXVAE_HOST; default: the one that routes
   *  to the rendezvous host). */
  host?: string;
  /** Seconds a collective may wait for a stuck rank (VOXVAE_DIST_TIMEOUT_MS). */
  timeout?: number;
  /** Seconds the others get to stop on their own after a rank failed (default 30). */
  grace?: number;
  /** Run `command` as a program rather than a voxvae command. */
  exec?: boolean;
  log?: (line: string) => void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** The file that runs one voxvae command as a rank (rank.ts next to this file, .js once compiled). */
function rankEntry(): string {
  const here = fileURLToPath(import.meta.url);
  return path.join(path.dirname(here), `rank${path.extname(here)}`);
}

function prefixed(stream: NodeJS.ReadableStream, label: string): void {
  let rest = '';
  stream.on('data', (d: Buffer) => {
    const lines = (rest + d.toString()).split(/\r?\n/);
    rest = lines.pop() ?? '';
    for (const l of lines) process.stderr.write(`${label} ${l}\n`);
  });
  stream.on('end', () => {
    if (rest) process.stderr.write(`${label} ${rest}\n`);
  });
}

/** Starts the local ranks and resolves to the exit code of the run (0, or the first failing rank's). */
export async function launch(command: string[], o: LaunchOptions): Promise<number> {
  const log = o.log ?? ((l: string) => console.error(l));
  const nproc = o.nproc;
  const worldSize = o.worldSize ?? nproc;
  const first = o.rank ?? 0;
  if (!command.length) throw new VoxvaeError('EINVAL', 'voxvae launch: give the command after --, e.g. voxvae launch --nproc 2 -- pipeline --out runs/p');
  if (first + nproc > worldSize)
    throw new VoxvaeError('EINVAL', `voxvae launch: ranks ${first}..${first + nproc - 1} do not fit --world-size ${worldSize}: give --world-size ≥ ${first + nproc}, or a smaller --rank/--nproc`);
  let rendezvous = o.rendezvous;
  if (rendezvous === undefined) {
    if (worldSize !== nproc) throw new VoxvaeError('EINVAL', `voxvae launch: --world-size ${worldSize} spans several machines: give --rendezvous tcp://<rank 0's host>:<port> (or file:///shared/folder) on every machine`);
    rendezvous = `tcp://127.0.0.1:${await freePort()}`;
  }
  parseRendezvous(rendezvous, '--rendezvous');
  const threads = Math.max(1, Math.floor(os.availableParallelism() / nproc));
  const env = {
    ...process.env,
    VOXVAE_WORLD_SIZE: String(worldSize),
    VOXVAE_RENDEZVOUS: rendezvous,
    VOXVAE_THREADS: process.env['VOXVAE_THREADS'] ?? String(threads),
    ...(o.timeout !== undefined ? { VOXVAE_DIST_TIMEOUT_MS: String(Math.round(o.timeout * 1000)) } : {}),
    ...(o.host !== undefined ? { VOXVAE_HOST: o.host } : {}),
  };
  const [prog, ...args] = o.exec ? command : [process.execPath, ...process.execArgv, rankEntry(), ...command];
  log(`voxvae launch: ranks ${first}..${first + nproc - 1} of ${worldSize}, rendezvous ${rendezvous}, ${env.VOXVAE_THREADS} thread(s) each`);
  const children: ChildProcess[] = [];
  let firstFailure: { rank: number; code: number } | null = null;
  let killer: NodeJS.Timeout | null = null;
  const exits = Array.from({ length: nproc }, (_, i) => {
    const rank = first + i;
    const child = spawn(prog!, args, {
      env: { ...env, VOXVAE_RANK: String(rank), VOXVAE_LOCAL_RANK: String(i) },
      stdio: i === 0 ? 'inherit' : ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    if (i !== 0) {
      prefixed(child.stdout!, `[rank ${rank}]`);
      prefixed(child.stderr!, `[rank ${rank}]`);
    }
    return new Promise<number>((resolve) => {
      child.on('error', (e) => {
        log(`voxvae launch: rank ${rank} did not start: ${e.message}`);
        resolve(127);
      });
      child.on('exit', (code, signal) => {
        const c = code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1);
        if (c !== 0 && !firstFailure) {
          firstFailure = { rank, code: c };
          log(`voxvae launch: rank ${rank} exited with ${signal ?? `code ${c}`}; the other ranks stop on their own (at most ${o.grace ?? 30} s more)`);
          killer = setTimeout(() => {
            for (const ch of children) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGTERM');
          }, (o.grace ?? 30) * 1000);
        }
        resolve(c);
      });
    });
  });
  const forward = (sig: NodeJS.Signals) => () => {
    for (const ch of children) if (ch.exitCode === null) ch.kill(sig);
  };
  const onInt = forward('SIGINT'), onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    await Promise.all(exits);
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    if (killer) clearTimeout(killer);
  }
  const f = firstFailure as { rank: number; code: number } | null;
  return f ? f.code : 0;
}

/** Registers `voxvae launch` (one line in main.ts). */
export function registerLaunchCommand(program: Command): void {
  program
    .command('launch')
    .description('run a voxvae command (or, with --exec, any program) as N data-parallel ranks: voxvae launch --nproc 2 -- pipeline ...')
    .requiredOption('--nproc <n>', 'ranks to start on this machine', positiveInt('--nproc'))
    .option('--world-size <n>', 'ranks in the whole run, all machines (default: --nproc)', positiveInt('--world-size'))
    .option('--rank <r>', "global rank of this machine's first process (default 0)", nonNegativeInt('--rank'))
    .option('--rendezvous <url>', "tcp://host:port (rank 0's machine listens on port) or file:///shared/fresh-folder (default: 127.0.0.1, one machine)")
    .option('--host <address>', "the address other machines reach this machine's ranks on (default: the one that routes to the rendezvous host)")
    .option('--timeout <s>', 'seconds a collective waits for a stuck rank before every rank fails (default 300)', positiveInt('--timeout'))
    .option('--grace <s>', 'seconds the other ranks get to stop after one failed (default 30)', nonNegativeInt('--grace'))
    .option('--exec', 'the command is a program (e.g. node train.js) that calls initDistributed(), not a voxvae command')
    .argument('<command...>', 'after --: the voxvae command and its options, or with --exec the program')
    .action(async (command: string[], o: Omit<LaunchOptions, 'log'>) => {
      process.exitCode = await launch(command, o);
    });
}
