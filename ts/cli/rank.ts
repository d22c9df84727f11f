#!/usr/bin/env node
// One rank of `voxvae launch`: joins the data-parallel group from the launcher's environment (ts/dist
// initDistributed) before the voxvae command (main.ts, same arguments) runs, so that its training shards
// the data and averages gradients with the other ranks.
import { VoxvaeError } from '../errors.js';
import { initDistributed } from '../dist/index.js';

try {
  await initDistributed();
} catch (e) {
  if (e instanceof VoxvaeError) {
    console.error(`voxvae: ${e.message} [${e.code}]`);
    process.exit(2);
  }
  throw e;
}
const { main } = await import('./main.js');
process.exitCode = await main();
