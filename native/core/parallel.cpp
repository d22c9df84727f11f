// Persistent thread pool behind vx::parallel_for (see parallel.h).
#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <vector>

#ifndef VX_NO_THREADS
#include <condition_variable>
#include <mutex>
#include <thread>
#endif

namespace vx {

namespace {

int default_threads() {
#ifdef VX_NO_THREADS
  return 1;
#else
  unsigned h = std::thread::hardware_concurrency();
  return h == 0 ? 1 : static_cast<int>(std::min(h, 256u));
#endif
}

std::atomic<int> g_threads{0};
thread_local bool t_in_worker = false;

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

// Workers wait for a generation counter to change, run their chunk, and report back. Waiting spins
// first, then sleeps on a condition variable; every counter is read again under the mutex before
// sleeping, so no wake-up is lost.
class Pool {
 public:
  static Pool& get() {
    static Pool* p = new Pool();  // never destroyed: avoids joining threads during static teardown
    return *p;
  }

  void run(int chunks, const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> run_lock(run_mu_);  // one parallel region at a time
    ensure_workers(chunks - 1);
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_.store(&job, std::memory_order_relaxed);
      active_.store(chunks - 1, std::memory_order_relaxed);
      pending_.store(chunks - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    t_in_worker = true;
    job(0);
    t_in_worker = false;
    for (int i = 0; i < kSpin && pending_.load(std::memory_order_acquire) != 0; ++i) cpu_relax();
    if (pending_.load(std::memory_order_acquire) != 0) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    job_.store(nullptr, std::memory_order_relaxed);
  }

 private:
  void ensure_workers(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      int id = static_cast<int>(workers_.size()) + 1;
      // The worker starts from the current generation, read here (generation_ only changes under
      // run_mu_, which the caller holds): reading it in the new thread could miss the job that is
      // about to be published and deadlock run().
      uint64_t start = generation_.load();
      workers_.emplace_back([this, id, start] { loop(id, start); });
      workers_.back().detach();
    }
  }

  void loop(int id, uint64_t seen) {
    t_in_worker = true;
    for (;;) {
      for (int i = 0; i < kSpin && generation_.load(std::memory_order_acquire) == seen; ++i) cpu_relax();
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
      seen = generation_.load(std::memory_order_acquire);
      if (id > active_.load(std::memory_order_relaxed)) continue;
      const std::function<void(int)>* job = job_.load(std::memory_order_relaxed);
      (*job)(id);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mu_);  // the caller tests pending_ under mu_ before it sleeps
        done_cv_.notify_one();
      }
    }
  }

  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::atomic<const std::function<void(int)>*> job_{nullptr};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_{0};
  std::atomic<int> pending_{0};
  std::vector<std::thread> workers_;
};
#endif

}  // namespace

int num_threads() {
  int t = g_threads.load();
  return t > 0 ? t : default_threads();
}

void set_num_threads(int n) { g_threads.store(n > 0 ? std::min(n, 256) : 0); }

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
