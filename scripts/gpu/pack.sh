#!/usr/bin/env bash
# Packs into .gpu/ (git-ignored) what a device call needs beyond the working tree, so that
# scripts/gpu/run-all.sh runs everything in one call with carry [".gpu"] (the full node_modules is
# hundreds of MB, mostly onnxruntime, over the 64 MiB a call may carry):
#   node.xz              this machine's Node binary (the device machine has no Node)
#   node_modules.tar.xz  the package's runtime dependencies, ava, tsx and node-addon-api/node-api-headers
#                        (the CUDA addon's headers), each with everything it requires
#   voxvae.node          the CPU addon (the GPU tests compare the CUDA engine with it)
# Usage: bash scripts/gpu/pack.sh     (after npm install; prints the size of .gpu)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -d node_modules ] || { echo "pack.sh: run npm install first" >&2; exit 1; }
[ -f build/Release/voxvae.node ] || npm run build:native
mkdir -p .gpu
xz -T2 -c "$(command -v node)" > .gpu/node.xz
cp build/Release/voxvae.node .gpu/voxvae.node

# The dependency closure, resolved the way Node resolves it (nested node_modules first). Optional
# dependencies are taken where installed (esbuild's platform binary is one).
node --input-type=module - > .gpu/modules.txt <<'JS'
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
const root = process.cwd();
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const wanted = [...Object.keys(pkg.dependencies ?? {}), 'ava', 'tsx', 'node-addon-api', 'node-api-headers'];
const seen = new Set();
function find(name, from) {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const p = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(p, 'package.json'))) return p;
    if (dir === root || dir === path.dirname(dir)) return null;
  }
}
function visit(name, from, optional) {
  const p = find(name, from);
  if (!p) {
    if (!optional) throw new Error(`${name} (needed from ${path.relative(root, from) || '.'}) is not installed`);
    return;
  }
  if (seen.has(p)) return;
  seen.add(p);
  const m = JSON.parse(readFileSync(path.join(p, 'package.json'), 'utf8'));
  for (const d of Object.keys(m.dependencies ?? {})) visit(d, p, false);
  for (const d of Object.keys(m.optionalDependencies ?? {})) visit(d, p, true);
}
for (const w of wanted) visit(w, root, false);
// .bin links of the packages kept (ava's and tsx's command lines).
const out = [...seen].map((p) => path.relative(root, p)).sort();
out.push('node_modules/.bin/ava', 'node_modules/.bin/tsx');
console.log(out.join('\n'));
JS
tar -cJf .gpu/node_modules.tar.xz -T .gpu/modules.txt
echo "pack.sh: $(wc -l < .gpu/modules.txt) entries of node_modules packed"
du -sh .gpu/* | sed 's/^/  /'
du -sh .gpu
