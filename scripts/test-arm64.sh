#!/usr/bin/env bash
# Cross-compiles native/core and its ctest programs for arm64 (aarch64-linux-gnu-g++, static) and runs
# them under qemu-user: the arm64 build must compile and pass the same tests (portable kernels, no x86
# intrinsics). Needs Debian's g++-aarch64-linux-gnu and qemu-user; skips with a message without them.
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CXX_ARM64:-aarch64-linux-gnu-g++}
QEMU=${QEMU_ARM64:-qemu-aarch64}
if ! command -v "$CXX" >/dev/null || ! command -v "$QEMU" >/dev/null; then
  echo "test-arm64: skipped ($CXX or $QEMU not installed: apt-get install g++-aarch64-linux-gnu qemu-user)"
  exit 0
fi
out=build-arm64
mkdir -p "$out"
objs=()
for src in native/core/*.cpp; do
  obj="$out/$(basename "${src%.cpp}").o"
  "$CXX" -std=c++17 -O2 -Wall -Wextra -Inative/core -c "$src" -o "$obj"
  objs+=("$obj")
done
fail=0
for t in test/native/test_*.cpp; do
  exe="$out/$(basename "${t%.cpp}")"
  "$CXX" -std=c++17 -O2 -static -Inative/core -Itest/native "$t" "${objs[@]}" -lpthread -o "$exe"
  if "$QEMU" "$exe" > "$exe.log" 2>&1; then
    echo "arm64 $(basename "$exe"): $(tail -n 1 "$exe.log")"
  else
    echo "arm64 $(basename "$exe"): FAILED"; cat "$exe.log"; fail=1
  fi
done
exit $fail
