// A small persistent thread pool for native/core kernels.
// parallel_for splits [0, n) into contiguous chunks of at least `grain` items and runs them on the
// pool's workers plus the calling thread. Calls made from inside a worker run serially, so kernels
// may nest without oversubscribing. Builds without threads (VX_NO_THREADS, e.g. WASM without
// pthreads) run everything on the caller. The pool never touches JS objects.
#pragma once
#include <cstdint>
#include <functional>

namespace vx {

// Number of threads kernels use (>= 1). Default: std::thread::hardware_concurrency().
int num_threads();
// Sets the thread count; n <= 0 restores the default. Not to be called while kernels run.
void set_num_threads(int n);

// fn(lo, hi) is called for disjoint ranges that cover [0, n). Chunks are assigned statically and in
// order (chunk i covers [i*n/k, (i+1)*n/k)), so any per-chunk reduction is deterministic for a given
// thread count.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t lo, int64_t hi)>& fn);

// Number of chunks parallel_for(n, grain, ...) would use; lets callers size per-chunk scratch.
int parallel_chunks(int64_t n, int64_t grain);

}  // namespace vx
