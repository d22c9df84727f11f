// Persistent thread pool behind vx::parallel_for (see parallel.h).
#include "parallel.h"

#include <algorithm>
#include <atomic>

#ifndef VX_NO_THREADS
#include <condition_variable>
#include <chrono>
#include <mutex>
#include <thread>
#endif

namespace vx {

namespace {

constexpr int kMaxThreads = 256;

int default_threads() {
#ifdef VX_NO_THREADS
  return 1;
#else
  unsigned h = std::thread::hardware_concurrency();
  return h == 0 ? 1 : static_cast<int>(std::min<unsigned>(h, kMaxThreads));
#endif
}

std::atomic<int> g_threads{0};
thread_local bool t_in_worker = false;
std::atomic<bool> g_jitter{false};
std::atomic<int64_t> g_taken_back{0};

#ifndef VX_NO_THREADS
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spin iterations (about 50-100 us) a waiting thread polls before it sleeps. A training step publishes
// hundreds of short parallel regions back to back; a futex wake-up costs tens of microseconds per region
// and lets the caller's own chunk finish long before a sleeping worker starts. Bounded, so an idle pool
// (or one sharing its cores with other processes) sleeps.
constexpr int kSpin = 1 << 11;

// One slot per worker: the caller writes the slot's job, then bumps its `go` counter; the worker waits
// for `go` to change (spinning first, then sleeping on the slot's condition variable; the counter is read
// again under the mutex before sleeping, so no wake-up is lost), runs its chunk and reports back. A
// per-worker counter, rather than one generation broadcast to all workers, means a worker only ever sees
// jobs meant for it: with a shared generation, a worker left out of one region that was descheduled
// between reading the generation and reading the region's worker count could pair the old generation
// with the next region's count, run that region's chunk twice and let the caller return while it still
// ran (a crash seen under qemu on arm64).
//
// Take-back: after its own chunk, the caller runs every chunk whose worker has not claimed it yet (a
// worker asleep, descheduled by a busy system, or just slow to wake), instead of waiting for it; a worker
// claims its chunk by clearing the slot's `open` flag, and one that finds it cleared goes back to
// waiting. Which thread runs a chunk does not change what it computes.
class Pool {
 public:
  static Pool& get() {
    static Pool* p = new Pool();  // never destroyed: avoids joining threads during static teardown
    return *p;
  }

  void run(int chunks, const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> run_lock(run_mu_);  // one parallel region at a time
    // Chunks 1..used go to workers; any beyond the workers that could be started run here, after chunk 0
    // (the same chunks either way, so results do not change).
    const int used = std::min(chunks - 1, ensure_workers(chunks - 1));
    pending_.store(used, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (int i = 1; i <= used; ++i) {
        slots_[i].job.store(&job, std::memory_order_relaxed);
        slots_[i].open.store(1, std::memory_order_release);
        slots_[i].go.fetch_add(1, std::memory_order_release);
      }
    }
    for (int i = 1; i <= used; ++i) slots_[i].cv.notify_one();
    t_in_worker = true;
    job(0);
    for (int i = used + 1; i < chunks; ++i) job(i);
    for (int i = 1; i <= used; ++i)  // take back what no worker has claimed yet
      if (slots_[i].open.exchange(0, std::memory_order_acq_rel) == 1) {
        job(i);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
        g_taken_back.fetch_add(1, std::memory_order_relaxed);
      }
    t_in_worker = false;
    for (int i = 0; i < kSpin && pending_.load(std::memory_order_acquire) != 0; ++i) cpu_relax();
    if (pending_.load(std::memory_order_acquire) != 0) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    }
  }

 private:
  struct alignas(64) Slot {
    std::atomic<uint64_t> go{0};
    std::atomic<const std::function<void(int)>*> job{nullptr};
    std::atomic<int> open{0};  // 1 from publication until the worker or the caller claims the chunk
    std::condition_variable cv;
  };

  // Starts workers up to n; returns how many there are (fewer when the system refuses a thread: then no
  // later region asks again, so a refusal does not cost a failing thread creation per region).
  int ensure_workers(int n) {
    while (workers_ < n && !refused_) {
      const int id = workers_ + 1;
      // A slot's counter only changes under run_mu_, which the caller holds: the worker starts from the
      // value read here (reading it in the new thread could miss the job about to be published).
      const uint64_t start = slots_[id].go.load();
      try {
        std::thread([this, id, start] { loop(id, start); }).detach();
      } catch (...) {  // std::system_error (no more threads), std::bad_alloc
        refused_ = true;
        break;
      }
      workers_ = id;
    }
    return workers_;
  }

  // parallel_test_jitter: a cheap per-thread LCG picks nothing, a yield or a sleep of up to 200 us.
  static void jitter(int id) {
    thread_local uint32_t state = 2654435761u * uint32_t(id);
    state = state * 1664525u + 1013904223u;
    const uint32_t r = state >> 24;
    if (r < 16) std::this_thread::sleep_for(std::chrono::microseconds(r * 12));
    else if (r < 64) std::this_thread::yield();
  }

  void loop(int id, uint64_t seen) {
    t_in_worker = true;
    Slot& slot = slots_[id];
    for (;;) {
      for (int i = 0; i < kSpin && slot.go.load(std::memory_order_acquire) == seen; ++i) cpu_relax();
      if (slot.go.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        slot.cv.wait(lk, [&] { return slot.go.load(std::memory_order_acquire) != seen; });
      }
      // The counter may have moved by more than one (the caller took earlier chunks back and published
      // again): the claim below decides whether the latest publication's chunk is still this worker's.
      seen = slot.go.load(std::memory_order_acquire);
      if (g_jitter.load(std::memory_order_relaxed)) jitter(id);
      // The job pointer was stored before `open`: a successful claim reads the latest publication's job.
      if (slot.open.exchange(0, std::memory_order_acq_rel) != 1) continue;
      (*slot.job.load(std::memory_order_relaxed))(id);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mu_);  // the caller tests pending_ under mu_ before it sleeps
        done_cv_.notify_one();
      }
    }
  }

  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable done_cv_;
  std::atomic<int> pending_{0};
  int workers_ = 0;       // started so far (ids 1..workers_); only touched under run_mu_
  bool refused_ = false;  // the system refused a thread; likewise
  Slot slots_[kMaxThreads];
};
#endif

}  // namespace

int num_threads() {
  int t = g_threads.load();
  return t > 0 ? t : default_threads();
}

void parallel_test_jitter(bool on) { g_jitter.store(on); }

int64_t parallel_test_taken_back() { return g_taken_back.load(); }

void set_num_threads(int n) { g_threads.store(n > 0 ? std::min(n, kMaxThreads) : 0); }

int parallel_chunks(int64_t n, int64_t grain) {
  if (n <= 0) return 0;
  if (grain < 1) grain = 1;
  int64_t by_grain = (n + grain - 1) / grain;
  int t = t_in_worker ? 1 : num_threads();
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(t, by_grain)));
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  int chunks = parallel_chunks(n, grain);
  if (chunks <= 0) return;
  if (chunks == 1) {
    fn(0, n);
    return;
  }
#ifdef VX_NO_THREADS
  for (int i = 0; i < chunks; ++i) fn(i * n / chunks, (i + 1) * n / chunks);
#else
  Pool::get().run(chunks, [&](int i) { fn(i * n / chunks, (i + 1) * n / chunks); });
#endif
}

}  // namespace vx
