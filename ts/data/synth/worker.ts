// Worker thread of the synthetic-skull pool: draws the skulls it is asked for and sends back either
// the raw masks or, when the pool writes files, the encoded file bytes (so compression runs in
// parallel too). Buffers are transferred, not copied.

import { parentPort, workerData } from 'node:worker_threads';
import { type SkullJobConfig, type SkullJobResult, runSkullJob } from './job.js';

const config = workerData as SkullJobConfig;
const port = parentPort!;

port.on('message', (msg: { index: number } | null) => {
  if (msg === null) {
    port.close();
    return;
  }
  runSkullJob(config, msg.index).then(
    (result: SkullJobResult) => port.postMessage({ ok: true, result }, result.transfer),
    (err: unknown) => port.postMessage({ ok: false, index: msg.index, message: err instanceof Error ? err.message : String(err), code: (err as { code?: string }).code }),
  );
});
