#!/bin/sh
# Builds the WebAssembly inference modules from native/core plus native/wasm/exports.cpp:
#   voxvae_simd.wasm  -O3 -msimd128, one thread
#   voxvae.wasm       -O3 without SIMD, for engines that lack it
# Each is a standalone .wasm (no emscripten JS glue; ts/wasm/runtime.ts is the loader).
#
# Usage: native/wasm/build.sh [OUT_DIR]   (default native/wasm/dist)
# Needs Debian's emscripten (apt-get install emscripten; 3.1.6 is what the committed files come from).
# The output is byte-for-byte reproducible: sources are named by repository-relative paths and nothing
# time- or machine-dependent goes in, so native/wasm/check.sh can compare a rebuild with the committed
# files.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-"$ROOT/native/wasm/dist"}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Debian's emscripten runs its JS optimizer with the system node, which finds acorn & co. only here.
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"
EMXX=${EMXX:-em++}
command -v "$EMXX" >/dev/null 2>&1 || {
  echo "build.sh: $EMXX not found; install emscripten (Debian: apt-get install -y emscripten)" >&2
  exit 1
}

cd "$ROOT"
# The inference subset of native/core and what net.cpp links against (its backward passes included:
# the linker keeps only what is reachable, and forking net.cpp would mean writing it twice).
CORE="native/core/activation.cpp native/core/conv3d.cpp native/core/conv_transpose3d.cpp
      native/core/gemm.cpp native/core/linear.cpp native/core/loss.cpp native/core/net.cpp
      native/core/norm.cpp native/core/parallel.cpp native/core/rng.cpp native/core/status.cpp"
SRC="$CORE native/wasm/exports.cpp"

CXXFLAGS="-std=c++17 -O3 -DNDEBUG -DVX_NO_THREADS -Inative/core -ffile-prefix-map=$ROOT/=
          -Wall -Wextra -Wno-unused-parameter"
# 16 MiB to start, growable to the full 4 GiB of wasm32; ABORTING_MALLOC=0 so that malloc returns null
# (the exports probe before allocating) instead of aborting the instance.
LDFLAGS="-sSTANDALONE_WASM --no-entry -sALLOW_MEMORY_GROWTH=1 -sINITIAL_MEMORY=16MB -sMAXIMUM_MEMORY=4GB
         -sABORTING_MALLOC=0 -sTOTAL_STACK=1MB -sFILESYSTEM=0"

build() {
  name=$1
  shift
  tmp="$OUT/.tmp.$name"  # emcc picks the output kind from the suffix: keep .wasm last
  # shellcheck disable=SC2086
  "$EMXX" $CXXFLAGS "$@" $SRC $LDFLAGS -o "$tmp"
  mv "$tmp" "$OUT/$name"
  echo "built $OUT/$name ($(wc -c <"$OUT/$name") bytes)"
}

build voxvae_simd.wasm -msimd128
build voxvae.wasm
