// Serves the built app (web/dist/, or the folder given) on http://localhost:8080 with the cross-origin
// isolation headers (COOP/COEP) that SharedArrayBuffer, and so the threaded WebAssembly build, need.
// Usage: node web/serve.mjs [dir] [--port N]   (npm run app: build, then serve)
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json',
  '.png': 'image/png', '.gz': 'application/gzip', '.nii': 'application/octet-stream', '.safetensors': 'application/octet-stream', '.txt': 'text/plain',
};

/** A static server for `root` with COOP/COEP on every response; resolves once listening. */
export function serveStatic(root, { port = 8080, host = '127.0.0.1' } = {}) {
  const base = path.resolve(root);
  const server = createServer(async (req, res) => {
    const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cross-Origin-Resource-Policy': 'same-origin' };
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      let file = path.normalize(path.join(base, decodeURIComponent(url.pathname)));
      if (file !== base && !file.startsWith(base + path.sep)) return res.writeHead(403, headers).end();
      if ((await stat(file).catch(() => null))?.isDirectory()) file = path.join(file, 'index.html');
      const body = await readFile(file);
      res.writeHead(200, { ...headers, 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'Content-Length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' }).end('not found');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const pi = args.indexOf('--port');
  const port = pi >= 0 ? Number(args[pi + 1]) : 8080;
  const dir = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--port') ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'dist');
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`voxvae app: --port must be a port number, not ${args[pi + 1]}`);
    process.exit(2);
  }
  try {
    await stat(path.join(dir, 'index.html'));
  } catch {
    console.error(`voxvae app: ${dir} has no index.html; build the app first (npm run app:build, or npm run app to build and serve)`);
    process.exit(1);
  }
  await serveStatic(dir, { port }).catch((e) => {
    console.error(e?.code === 'EADDRINUSE' ? `voxvae app: port ${port} is in use; pick another: node web/serve.mjs --port ${port + 1}` : `voxvae app: cannot serve: ${e?.message ?? e}`);
    process.exit(1);
  });
  console.log(`voxvae app: http://localhost:${port}/  (serving ${dir}; Ctrl-C stops)`);
}
