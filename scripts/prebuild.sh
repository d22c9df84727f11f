#!/usr/bin/env bash
# `npm run prebuild`: the N-API prebuilds the npm package ships, in the prebuilds/<platform>-<arch>/
# layout node-gyp-build and ts/native.ts read (prebuilds/linux-x64/voxvae.napi.glibc.node, ...).
# One N-API build serves every Node >= 20 (NAPI_VERSION 8 in binding.gyp).
#   linux-x64    built with this machine's g++ (baseline x86-64; AVX2/AVX-512 kernels chosen at run time)
#   linux-arm64  cross-built with Debian's g++-aarch64-linux-gnu in a scratch copy of the sources, so that
#                build/Release (this machine's own addon) is left alone
# Needs node-gyp's usual toolchain (g++, make, python3); the arm64 build is skipped with a message when
# the cross compiler is missing, unless PREBUILD_REQUIRE_ARM64=1 (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
pbfy="$root/node_modules/.bin/prebuildify"
[ -x "$pbfy" ] || { echo "prebuild: run npm install first (prebuildify is a devDependency)" >&2; exit 1; }
rm -rf prebuilds

echo "prebuild: linux-x64"
JOBS=${JOBS:-max} "$pbfy" --napi --strip --tag-libc

if command -v aarch64-linux-gnu-g++ >/dev/null 2>&1; then
  echo "prebuild: linux-arm64 (cross)"
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/native"
  cp -r native/core native/napi "$scratch/native/"
  cp binding.gyp package.json "$scratch/"
  ln -s "$root/node_modules" "$scratch/node_modules"
  (cd "$scratch" && JOBS=${JOBS:-max} CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ \
    PREBUILD_STRIP_BIN=aarch64-linux-gnu-strip \
    "$pbfy" --napi --strip --tag-libc --arch arm64 --out "$root")
elif [ "${PREBUILD_REQUIRE_ARM64:-0}" = 1 ]; then
  echo "prebuild: aarch64-linux-gnu-g++ not found (apt-get install g++-aarch64-linux-gnu)" >&2; exit 1
else
  echo "prebuild: linux-arm64 skipped (no aarch64-linux-gnu-g++; apt-get install g++-aarch64-linux-gnu)"
fi
find prebuilds -name '*.node' -exec ls -l {} \; | awk '{print "prebuild: " $5 " bytes  " $9}'
