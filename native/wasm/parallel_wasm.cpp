// parallel_wasm: vx::parallel_for (native/core/parallel.h) for the multi-threaded WebAssembly build,
// in place of native/core/parallel.cpp. Emscripten 3.1.6 cannot build pthreads into a standalone
// .wasm, so threads are plain instances of the same module sharing one WebAssembly.Memory: the
// loader (ts/wasm/threads.ts) starts workers (Web Workers, or worker_threads in Node), gives each a
// stack and a TLS block, and parks it in vx_worker_main, which runs chunks of the jobs that the
// calling thread publishes here.
//
// Chunking is the same as native/core's (chunk i covers [i*n/k, (i+1)*n/k)), so results do not depend
// on whether this pool or a serial loop runs them. The publishing thread may be a browser's main
// thread, which must not block in memory.atomic.wait: it runs chunk 0 itself, then every chunk that no
// worker has claimed yet, then spins until the workers' chunks are done. Workers sleep in
// memory.atomic.wait between jobs. One job at a time: the module is only ever entered by one caller
// thread (JavaScript is single-threaded per instance).
//
// Claiming. A worker woken from memory.atomic.wait starts tens of microseconds to milliseconds late (a
// halted vCPU in a VM must first be scheduled by the host). Rather than wait for it, the publisher takes
// back a chunk its worker has not claimed by the time chunk 0 is done: running it now finishes no later
// than the worker could (it would start later still). A parallel_dynamic region's chunks are item-pulling
// loops, so a late worker's chunk finds the items gone and costs nothing. Which thread runs a chunk does
// not change what it computes.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>

#include "parallel.h"

#include <emscripten/emscripten.h>
#define VX_EXPORT extern "C" EMSCRIPTEN_KEEPALIVE

namespace vx {

namespace {

constexpr int kMaxThreads = 64;
// Polls (two atomic loads each, a few hundred microseconds in all) that a waiting thread makes before it
// sleeps in memory.atomic.wait. A batch-1 decode publishes one job per stage, pack and compute phase of
// every layer, with serial work between them; a worker woken from memory.atomic.wait starts tens to
// hundreds of microseconds late (a halted vCPU in a VM is the worst case). With 20k polls the half
// decoder's 2-thread time varied 63-77 ms between runs; from 400k on it stayed at 61-67 ms (median of
// 20 decodes, several runs). Burning that much after the last job of a pass is cheap next to a decode.
constexpr int kSpin = 400000;

std::atomic<int> g_threads{0};   // requested thread count (0: all started workers + 1)
thread_local bool t_in_worker = false;

// One slot per worker, in shared linear memory: `go` is the futex word the worker sleeps on; the
// publisher writes `job`, then bumps `go`. Per-worker words (rather than one broadcast generation) mean
// a worker can only ever see a job meant for it, published after the job pointer.
struct alignas(64) Slot {
  std::atomic<int32_t> go{0};
  std::atomic<const std::function<void(int)>*> job{nullptr};
  std::atomic<int32_t> open{0};     // 1 from publication until the worker or the publisher claims the chunk
  std::atomic<int32_t> running{0};  // inside a job: what vx_worker_abandon must account for
};
Slot g_slots[kMaxThreads];
std::atomic<int32_t> g_pending{0};
std::atomic<int32_t> g_registered{0};  // workers parked in vx_worker_main
std::atomic<int32_t> g_quit{0};
std::atomic<int32_t> g_failed{0};     // a worker trapped: results of the job in flight are garbage
std::atomic<int32_t> g_can_block{0};  // the publisher may sleep in memory.atomic.wait (not a browser's main thread)
std::atomic<int32_t> g_jitter{0};     // parallel_test_jitter: workers pause before claiming
std::atomic<uint32_t> g_jitter_seed{1};
int32_t g_sleep_word = 0;             // never notified: a timed wait on it is a sleep
std::atomic<int64_t> g_taken_back{0};  // chunks the publisher ran for a worker that had not claimed them

int32_t* word(std::atomic<int32_t>& a) { return reinterpret_cast<int32_t*>(&a); }

// memory.atomic.wait32 in a function of its own, reached through a function pointer so that neither
// LLVM nor binaryen inlines it: V8's baseline compiler (Liftoff, in Node 20) has been seen to lose the
// function's cached state across the wait — later loads read the wrong address (a job pointer read
// back as null, a `go` word read as 0 and waited on forever). With the wait alone in its frame, nothing
// of the caller's lives across it.
void futex_wait(int32_t* addr, int32_t expected) { __builtin_wasm_memory_atomic_wait32(addr, expected, -1); }
void (*volatile g_futex_wait)(int32_t*, int32_t) = futex_wait;
void timed_wait(int32_t* addr, int32_t expected, int64_t ns) { __builtin_wasm_memory_atomic_wait32(addr, expected, ns); }
void (*volatile g_timed_wait)(int32_t*, int32_t, int64_t) = timed_wait;

// Sleeps until worker id's slot has a job newer than *seen and records it there; false on quit.
bool wait_for_job(int id, int32_t* seen) {
  // A forward pass publishes many short jobs back to back: spin before sleeping (kSpin).
  for (int spin = 0; spin < kSpin; ++spin)
    if (g_slots[id].go.load() != *seen || g_quit.load()) break;
  for (;;) {
    if (g_quit.load()) return false;
    const int32_t now = g_slots[id].go.load();
    if (now != *seen) {
      *seen = now;
      return true;
    }
    g_futex_wait(word(g_slots[id].go), now);
  }
}

int available() { return 1 + std::min<int>(g_registered.load(), kMaxThreads - 1); }

// Test hook: a pause of 0-200 us (or a yield-length one), so that workers claim late, early, or not at all.
void jitter_pause() {
  uint32_t x = g_jitter_seed.fetch_add(0x9E3779B9u);
  x ^= x >> 16, x *= 0x7feb352du, x ^= x >> 15;
  const int64_t ns = (x & 3) == 0 ? 0 : int64_t(x % 200) * 1000;
  if (ns) g_timed_wait(&g_sleep_word, 0, ns);
}

void run(int chunks, const std::function<void(int)>& job) {
  g_pending.store(chunks - 1);
  for (int i = 1; i < chunks; ++i) {
    g_slots[i].job.store(&job);
    g_slots[i].open.store(1);
    g_slots[i].go.fetch_add(1);
    __builtin_wasm_memory_atomic_notify(word(g_slots[i].go), 1);
  }
  t_in_worker = true;
  job(0);
  // Chunks whose worker has not claimed them yet: run them here (see "Claiming" above).
  for (int i = 1; i < chunks; ++i)
    if (g_slots[i].open.exchange(0) == 1) {
      job(i);
      g_pending.fetch_sub(1);
      g_taken_back.fetch_add(1, std::memory_order_relaxed);
    }
  t_in_worker = false;
  // Wait for the workers: spin briefly (they are usually about done), then sleep where allowed, so that
  // a publisher sharing a core with a worker does not starve it. A browser's main thread cannot sleep
  // and spins to the end.
  for (int spin = 0; spin < kSpin; ++spin)
    if (g_pending.load() == 0) return;
  if (g_can_block.load()) {
    for (int32_t p; (p = g_pending.load()) != 0;) g_futex_wait(word(g_pending), p);
  } else {
    while (g_pending.load() != 0) {
    }
  }
}

}  // namespace

int num_threads() {
  const int t = g_threads.load();
  return t > 0 ? std::min(t, available()) : available();
}

void set_num_threads(int n) { g_threads.store(n > 0 ? std::min(n, kMaxThreads) : 0); }

// parallel.h's test hooks, as native/core/parallel.cpp has them.
void parallel_test_jitter(bool on) { g_jitter.store(on ? 1 : 0); }
int64_t parallel_test_taken_back() { return g_taken_back.load(); }

int parallel_chunks(int64_t n, int64_t grain) {
  if (n <= 0) return 0;
  if (grain < 1) grain = 1;
  const int64_t by_grain = (n + grain - 1) / grain;
  const int t = t_in_worker ? 1 : num_threads();
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(t, by_grain)));
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t lo, int64_t hi)>& fn) {
  const int chunks = parallel_chunks(n, grain);
  if (chunks <= 0) return;
  if (chunks == 1) {
    fn(0, n);
    return;
  }
  run(chunks, [&](int i) { fn(i * n / chunks, (i + 1) * n / chunks); });
}

}  // namespace vx

// Thread-local objects with destructors (the kernels' per-thread scratch) register them through
// __cxa_thread_atexit on first use in each thread. The single-threaded libc++abi linked here keeps that
// registry in thread-specific storage it cannot create for our workers, and aborts. Workers never exit
// (they live as long as the module), so there is nothing to run at thread exit: record nothing.
extern "C" int __cxa_thread_atexit(void (*)(void*), void*, void*) { return 0; }

// ---- exports for the loader ------------------------------------------------------------------------------

// Static TLS block of the first (main) instance: wasm-ld leaves __tls_base at 0 until someone calls
// __wasm_init_tls, which the loader does with this block before anything else runs.
alignas(16) static char g_main_tls[8192];
VX_EXPORT void* vx_main_tls_block() { return g_main_tls; }
VX_EXPORT int32_t vx_main_tls_capacity() { return int32_t(sizeof g_main_tls); }

// Workers parked in vx_worker_main so far.
VX_EXPORT int32_t vx_workers_registered() { return vx::g_registered.load(); }

// A worker's life: register, then run chunk `id` of each job published to its slot, until
// vx_workers_quit. Workers are numbered 1, 2, ... (the publisher is 0); the loader must not run a
// forward pass until every worker it started has registered, since the thread count counts them.
VX_EXPORT void vx_worker_main(int32_t id) {
  using namespace vx;
  if (id < 1 || id >= kMaxThreads) return;
  t_in_worker = true;
  int32_t seen = g_slots[id].go.load();
  g_registered.fetch_add(1);
  while (wait_for_job(id, &seen)) {
    if (g_jitter.load()) jitter_pause();
    // The chunk is ours only if the publisher has not taken it back; the job pointer was stored before
    // `open`, so a successful claim reads the job of the latest publication (a wake-up that arrives after
    // several publications sees only the last, and the earlier ones were run by the publisher).
    if (g_slots[id].open.exchange(0) != 1) continue;
    g_slots[id].running.store(1);
    (*g_slots[id].job.load())(id);
    g_slots[id].running.store(0);
    if (g_pending.fetch_sub(1) == 1) __builtin_wasm_memory_atomic_notify(word(g_pending), 1);
  }
  g_registered.fetch_sub(1);
}

// Called by a worker's JavaScript after its instance trapped (a bug, or an abort): accounts for the job
// it was running, so that the publisher does not spin forever, and takes the worker out of the pool.
// The caller learns of it through vx_workers_failed and must discard that forward pass.
VX_EXPORT void vx_worker_abandon(int32_t id) {
  using namespace vx;
  if (id < 1 || id >= kMaxThreads) return;
  g_failed.store(1);
  g_registered.fetch_sub(1);
  if (g_slots[id].running.exchange(0) && g_pending.fetch_sub(1) == 1) __builtin_wasm_memory_atomic_notify(word(g_pending), 1);
}

// Whether the thread that calls into the module may block in memory.atomic.wait (Node, and Web Workers;
// not a browser's main thread). The loader sets it once.
VX_EXPORT void vx_set_can_block(int32_t yes) { vx::g_can_block.store(yes ? 1 : 0); }

// Self-test of the pool, for test/wasm.test.ts: `regions` parallel_for and parallel_dynamic regions of
// pseudo-random sizes (seeded), each item counting its runs; with `jitter`, workers pause 0-200 us
// before claiming, so that the publisher takes some chunks back and workers wake for regions long
// finished. Returns how many chunks the publisher took back when every item of every region ran exactly
// once, else -(1 + the first bad region).
VX_EXPORT int32_t vx_test_parallel(int32_t regions, int32_t jitter, uint32_t seed) {
  using namespace vx;
  static std::atomic<int32_t> count[1024];
  const int64_t taken0 = parallel_test_taken_back();
  parallel_test_jitter(jitter != 0);
  g_jitter_seed.store(seed | 1);
  uint32_t x = seed | 1;
  int32_t bad = 0;
  for (int32_t r = 0; r < regions && !bad; ++r) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    const int64_t n = 1 + int64_t(x % 1024);
    for (int64_t i = 0; i < n; ++i) count[i].store(0);
    if (x & 0x100000) {
      parallel_dynamic(n, 1 + int64_t((x >> 8) % 7), [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) count[i].fetch_add(1);
      });
    } else {
      parallel_for(n, 1 + int64_t((x >> 8) % 64), [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) count[i].fetch_add(1);
      });
    }
    for (int64_t i = 0; i < n; ++i)
      if (count[i].load() != 1) bad = r + 1;
  }
  parallel_test_jitter(false);
  return bad ? -bad : int32_t(parallel_test_taken_back() - taken0);
}

// Non-zero once a worker has trapped; vx_workers_reset_failed clears it after the caller reported it.
VX_EXPORT int32_t vx_workers_failed() { return vx::g_failed.load(); }
VX_EXPORT void vx_workers_reset_failed() { vx::g_failed.store(0); }

VX_EXPORT void vx_workers_quit() {
  vx::g_quit.store(1);
  for (auto& s : vx::g_slots) {
    s.go.fetch_add(1);
    __builtin_wasm_memory_atomic_notify(vx::word(s.go), 1);
  }
}

