#!/usr/bin/env bash
# Runs every GPU check and benchmark of the CUDA backend on the device machine, in one call:
#   build (CMake + nvcc + the cuDNN wheel of /opt/torch/.venv) -> native CUDA-vs-CPU op tests ->
#   Node whole-step tests (if a Node binary was carried in .gpu/node.xz with node_modules) ->
#   voxvae vs PyTorch training-step / decode benchmarks. Logs and JSON land in $OUT (or ./gpu-out).
# Device call (see docs/cuda.md): here `bash scripts/gpu/pack.sh`, then run(command="bash scripts/gpu/run-all.sh",
# carry=[".gpu"]). .gpu holds Node, a lean node_modules and the CPU addon (pack.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
JOBS="${JOBS:-16}"
summary=()
note() { echo "== $*"; summary+=("$*"); }

nvidia-smi -L 2>&1 | tee "$OUT/device.txt"
# What pack.sh packed: node_modules (the CUDA addon's build needs node-addon-api from it) and the CPU addon.
[ -d node_modules ] || { [ -f .gpu/node_modules.tar.xz ] && tar -xJf .gpu/node_modules.tar.xz; }
[ -f build/Release/voxvae.node ] || { [ -f .gpu/voxvae.node ] && mkdir -p build/Release && cp .gpu/voxvae.node build/Release/; }
CUDNN_ROOT="${CUDNN_ROOT:-$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null)}"
if [ -n "$CUDNN_ROOT" ] && [ ! -e "$CUDNN_ROOT/lib/libcudnn.so" ] && [ -e "$CUDNN_ROOT/lib/libcudnn.so.9" ]; then
  mkdir -p /tmp/cudnn/lib && ln -sf "$CUDNN_ROOT/include" /tmp/cudnn/include && ln -sf "$CUDNN_ROOT"/lib/* /tmp/cudnn/lib/ \
    && ln -sf "$CUDNN_ROOT/lib/libcudnn.so.9" /tmp/cudnn/lib/libcudnn.so && CUDNN_ROOT=/tmp/cudnn
fi
echo "CUDNN_ROOT=$CUDNN_ROOT"
export LD_LIBRARY_PATH="$CUDNN_ROOT/lib:${LD_LIBRARY_PATH:-}"
# NCCL (docs/distributed.md): the nvidia-nccl-cu13 wheel's libnccl.so.2, loaded at run time by nccl_smoke (ctest).
NCCL_DIR="$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null)"
if [ -n "$NCCL_DIR" ] && [ -e "$NCCL_DIR/lib/libnccl.so.2" ]; then export VOXVAE_NCCL="$NCCL_DIR/lib/libnccl.so.2"; fi
echo "VOXVAE_NCCL=${VOXVAE_NCCL:-}"

# 1. Build: core + native tests + CUDA library, addon and GPU tests.
GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
if cmake -S . -B build/gpu "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DVOXVAE_CUDA=ON -DCUDNN_ROOT="$CUDNN_ROOT" > "$OUT/build.log" 2>&1 \
   && cmake --build build/gpu -j"$JOBS" >> "$OUT/build.log" 2>&1; then note "build: ok ($(grep -o 'cuDNN [^ ]*' "$OUT/build.log" | head -1))"
else note "build: FAILED (see build.log)"; tail -40 "$OUT/build.log"; fi

# 2. Native CUDA vs CPU op tests (every op, forward + backward, fp32 and TF32, whole-net step, determinism).
if [ -x build/gpu/test_cuda_ops ]; then
  build/gpu/test_cuda_ops 2>&1 | tee "$OUT/cuda_ops.log"; rc=${PIPESTATUS[0]}
  note "native CUDA op tests: rc=$rc, $(grep -c '^ok' "$OUT/cuda_ops.log") ok, $(grep -c '^FAIL' "$OUT/cuda_ops.log") failed"
fi
ctest --test-dir build/gpu --output-on-failure > "$OUT/ctest.log" 2>&1; note "ctest (CPU + CUDA): rc=$? $(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1)"

# 3. Node side: carried binary (xz), node_modules (packed by pack.sh, or carried whole) and the CPU addon.
if [ -f .gpu/node.xz ] && [ -d node_modules ]; then
  mkdir -p /tmp/nb && xz -dc .gpu/node.xz > /tmp/nb/node && chmod +x /tmp/nb/node && export PATH=/tmp/nb:$PATH
  note "node $(node --version), CPU addon: $([ -f build/Release/voxvae.node ] && echo carried || echo MISSING)"
  node_modules/.bin/ava test/gpu.test.ts test/backend.test.ts --verbose > "$OUT/ava_gpu.log" 2>&1
  note "ava GPU tests: rc=$? $(grep -E '^ *[0-9]+ tests? (passed|failed|skipped)' "$OUT/ava_gpu.log" | tr -s ' \n' ' ')"
  node --import tsx bench/gpu/step_bench.ts "$OUT" "${BENCH_MODELS:-half,full}" "${BENCH_BATCH:-4}" "${BENCH_STEPS:-10}" > "$OUT/bench_voxvae.log" 2>&1
  note "voxvae bench: rc=$? $(grep -c '"engine"' "$OUT/bench_voxvae.log") configurations $(grep -m1 SKIP "$OUT/bench_voxvae.log")"
else
  note "Node tests and voxvae bench: skipped (run scripts/gpu/pack.sh here and carry .gpu)"
fi

# 4. PyTorch eager on the same specs, batch and precision (one process per model).
rm -f "$OUT/torch_bench.json"
for m in $(echo "${BENCH_MODELS:-half,full}" | tr ',' ' '); do
  [ -f "$OUT/$m.encoder.spec" ] || continue
  read -r C D H W L < "$OUT/$m.shape"
  (cd bench/gpu && PYTHONUNBUFFERED=1 python3 torch_step.py "$OUT/torch_$m.json" "$OUT/$m.encoder.spec" "$OUT/$m.decoder.spec" \
     "${BENCH_BATCH:-4}" "$C" "$D" "$H" "$W" "$L" "${BENCH_STEPS:-10}" "$m") >> "$OUT/bench_torch.log" 2>&1
  note "pytorch bench $m: rc=$?"
done

echo; echo "==================== summary"; printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
python3 - "$OUT" <<'PY' 2>/dev/null | tee -a "$OUT/summary.txt"
import json, os, sys
o = sys.argv[1]
rows = []
import glob
for p in [os.path.join(o, 'voxvae_bench.json')] + sorted(glob.glob(os.path.join(o, 'torch_*.json'))):
    if os.path.exists(p): rows += json.load(open(p))
rows.sort(key=lambda r: (r.get('model', ''), r['precision'], r['engine']))
print(f"{'model':7} {'engine':8} {'prec':5} {'batch':>5} {'step ms':>9} {'decode ms':>10} {'peak MiB':>9}")
for r in rows:
    print(f"{r.get('model', ''):7} {r['engine']:8} {r['precision']:5} {r['batch']:>5} {r['step_ms']:>9.2f} {r['decode_ms']:>10.2f} {r['peak_mib']:>9.0f}")
by = {(r.get('model'), r['precision'], r['engine']): r for r in rows}
for (m, pr, e), r in sorted(by.items()):
    t = by.get((m, pr, 'pytorch'))
    if e == 'voxvae' and t:
        print(f"{m} {pr}: voxvae {t['step_ms'] / r['step_ms']:.2f}x PyTorch's training steps/s (target >= 1.3x), "
              f"peak memory {r['peak_mib'] / t['peak_mib']:.2f}x PyTorch's (target <= 1), decode {t['decode_ms'] / r['decode_ms']:.2f}x")
PY
