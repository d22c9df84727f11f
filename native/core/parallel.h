// A small persistent thread pool for native/core kernels.
// parallel_for splits [0, n) into contiguous chunks of at least `grain` items and runs them on the
// pool's workers plus the calling thread. Calls made from inside a worker run serially, so kernels
// may nest without oversubscribing. Builds without threads (VX_NO_THREADS, e.g. WASM without
// pthreads) run everything on the caller. The pool never touches JS objects.
#pragma once
#include <atomic>
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

// Tests only: when on, pool workers sometimes pause (yield or sleep up to ~200 us) right after they see a
// new job, to widen the windows in which a descheduled worker races the caller (test_parallel).
void parallel_test_jitter(bool on);
// Test hook: how many chunks callers have run for workers that had not claimed them yet (take-back).
int64_t parallel_test_taken_back();

// Independent items [0, n) (each writes only its own outputs, so which thread runs one never changes a
// result), handed out in runs of `grab` consecutive items to whichever thread is free: fn(lo, hi) per
// run. Balances uneven items, and threads slowed by something else (a busy core, a descheduled vCPU),
// which parallel_for's fixed halves cannot. Items are handed out in order, so a list sorted by cost,
// largest first, is greedy longest-first scheduling.
template <class Fn>
void parallel_dynamic(int64_t n, int64_t grab, const Fn& fn) {
  if (n <= 0) return;
  if (grab < 1) grab = 1;
  const int t = parallel_chunks(n, grab);
  if (t <= 1) {
    fn(int64_t(0), n);
    return;
  }
  std::atomic<int64_t> next{0};
  parallel_for(t, 1, [&](int64_t, int64_t) {
    for (int64_t lo; (lo = next.fetch_add(grab, std::memory_order_relaxed)) < n;) fn(lo, lo + grab < n ? lo + grab : n);
  });
}

// Reductions whose result must not depend on the thread count: `rows` rows of `len` contiguous values
// are cut into fixed blocks of `block` values (the last block of a row may be shorter); item
// row * blocks_per_row(len, block) + b covers [b * block, min(len, (b + 1) * block)) of that row.
// fn(item, row, lo, hi) runs once per item, items spread over the threads in chunks of roughly
// `min_chunk` values; a per-item partial stored at [item] and summed in item order afterwards is
// bit-identical for any thread count.
inline int64_t blocks_per_row(int64_t len, int64_t block) { return len <= 0 ? 0 : (len + block - 1) / block; }

template <class Fn>
void parallel_for_blocks(int64_t rows, int64_t len, int64_t block, int64_t min_chunk, const Fn& fn) {
  const int64_t nb = blocks_per_row(len, block);
  const int64_t grain = min_chunk > block ? min_chunk / block : 1;
  parallel_for(rows * nb, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t it = lo; it < hi; ++it) {
      const int64_t row = it / nb, b = it - row * nb;
      const int64_t end = (b + 1) * block;
      fn(it, row, b * block, end < len ? end : len);
    }
  });
}

}  // namespace vx
