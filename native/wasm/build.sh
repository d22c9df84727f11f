#!/bin/sh
# Builds the WebAssembly inference modules from native/core plus native/wasm/exports.cpp:
#   voxvae_simd.wasm  -O3 -msimd128, one thread
#   voxvae.wasm       -O3 without SIMD, for engines that lack it
#   voxvae_simd_mt.wasm  -O3 -msimd128 with threads: imports a shared memory that worker instances of
#                     the same module share (native/wasm/parallel_wasm.cpp replaces native/core's pool,
#                     and a locked dlmalloc replaces emscripten's; see the comments below)
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

# Objects and partial outputs go to a scratch folder, never into OUT: nothing half-built can be mistaken
# for (or committed as) a module.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/voxvae-wasm-build.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT INT TERM

cd "$ROOT"
# The inference subset of native/core and what net.cpp links against (its backward passes included:
# the linker keeps only what is reachable, and forking net.cpp would mean writing it twice).
CORE="native/core/activation.cpp native/core/conv3d.cpp native/core/conv_engine.cpp native/core/conv_transpose3d.cpp
      native/core/gemm.cpp native/core/graph.cpp native/core/linear.cpp native/core/loss.cpp native/core/net.cpp
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
  tmp="$SCRATCH/$name"  # emcc picks the output kind from the suffix: keep .wasm last
  # shellcheck disable=SC2086
  "$EMXX" $CXXFLAGS "$@" $SRC $LDFLAGS -o "$tmp"
  mv "$tmp" "$OUT/$name"
  echo "built $OUT/$name ($(wc -c <"$OUT/$name") bytes)"
}

# VARIANTS (default: all) limits the build while developing, e.g. VARIANTS=mt.
VARIANTS=${VARIANTS:-"simd scalar mt"}
case " $VARIANTS " in *" simd "*) build voxvae_simd.wasm -msimd128 ;; esac
case " $VARIANTS " in *" scalar "*) build voxvae.wasm ;; esac
case " $VARIANTS " in *" mt "*) ;; *) exit 0 ;; esac

# Threads. emscripten 3.1.6 refuses pthreads in a standalone .wasm, so the threaded build is the same
# standalone module compiled with atomics and linked against a shared, imported memory; ts/wasm/threads.ts
# instantiates it once per worker. What pthreads would otherwise provide comes from here:
# - the thread pool: native/wasm/parallel_wasm.cpp instead of native/core/parallel.cpp;
# - thread-safe malloc: emscripten's own dlmalloc.c and sbrk.c built with dlmalloc's spin locks
#   (-sMALLOC=none drops the unlocked one);
# - thread-local storage: wasm-ld's __wasm_init_tls, exported, called by the loader per instance.
# The prebuilt libc/libc++ are the single-threaded ones (hence --no-check-features): the kernels only
# use them for memcpy/memset-like work and for allocation, which goes through the locked malloc.
EMROOT=$(em-config EMSCRIPTEN_ROOT 2>/dev/null | tail -n 1)
[ -f "$EMROOT/system/lib/dlmalloc.c" ] || { echo "build.sh: cannot find emscripten's system/lib/dlmalloc.c under '$EMROOT'" >&2; exit 1; }
EMCC=${EMCC:-emcc}
OBJ="$SCRATCH/mt-objects"
mkdir -p "$OBJ"
MTFLAGS="-msimd128 -matomics -mbulk-memory"
# shellcheck disable=SC2086
"$EMCC" -O2 -fno-builtin -DNDEBUG -DUSE_LOCKS=1 -DUSE_SPIN_LOCKS=1 $MTFLAGS -c "$EMROOT/system/lib/dlmalloc.c" -o "$OBJ/dlmalloc.o"
# shellcheck disable=SC2086
"$EMCC" -O2 -fno-builtin -DNDEBUG $MTFLAGS -c "$EMROOT/system/lib/sbrk.c" -o "$OBJ/sbrk.o"
SRC="$(echo "$CORE" | tr ' ' '\n' | grep -v 'native/core/parallel.cpp' | tr '\n' ' ') native/wasm/parallel_wasm.cpp native/wasm/exports.cpp $OBJ/dlmalloc.o $OBJ/sbrk.o"
LDFLAGS="$LDFLAGS -sMALLOC=none -sIMPORTED_MEMORY=1
         -Wl,--shared-memory,--no-check-features,--export=__wasm_init_tls,--export=__tls_size,--export=__tls_align"
CXXFLAGS=$(echo "$CXXFLAGS" | sed 's/-DVX_NO_THREADS//')
build voxvae_simd_mt.wasm $MTFLAGS -DVX_WASM_THREADS
