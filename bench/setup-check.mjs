// Run before the benchmarks: their peer libraries (benny, onnxruntime-node, onnxruntime-web) live in
// bench/'s own package, installed by `npm run bench:setup`, never by the package's `npm install`.
import { existsSync } from 'node:fs';

const need = ['benny', 'onnxruntime-node', 'onnxruntime-web'];
const missing = need.filter((p) => !existsSync(new URL(`./node_modules/${p}/package.json`, import.meta.url)));
if (missing.length > 0) {
  console.error(`bench: ${missing.join(', ')} not installed; run \`npm run bench:setup\` once (installs bench/package.json's peers into bench/node_modules)`);
  process.exit(1);
}
