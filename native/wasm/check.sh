#!/bin/sh
# CI check: rebuilds the WebAssembly modules from the sources into a temporary folder and fails unless
# they are byte-for-byte the committed native/wasm/dist/*.wasm (deterministic builds; a change to
# native/core or native/wasm must come with rebuilt modules: run `npm run build:wasm` and commit them).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxvae-wasm-check.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
"$ROOT/native/wasm/build.sh" "$TMP" >/dev/null
status=0
for f in "$TMP"/*.wasm; do
  name=$(basename "$f")
  committed="$ROOT/native/wasm/dist/$name"
  if [ ! -f "$committed" ]; then
    echo "wasm check: $name is built but native/wasm/dist/$name is not committed" >&2
    status=1
  elif ! cmp -s "$f" "$committed"; then
    echo "wasm check: native/wasm/dist/$name differs from a rebuild of the sources" \
      "($(wc -c <"$committed") vs $(wc -c <"$f") bytes); run 'npm run build:wasm' and commit the result" >&2
    status=1
  else
    echo "wasm check: $name matches the sources"
  fi
done
for f in "$ROOT"/native/wasm/dist/*.wasm; do
  [ -f "$TMP/$(basename "$f")" ] || { echo "wasm check: native/wasm/dist/$(basename "$f") is not built by build.sh" >&2; status=1; }
done
exit $status
