#include "gloo_comm.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "tcp_store.h"

namespace vxd {
namespace {

using ms = std::chrono::milliseconds;

// The local address whose route reaches `host` (a UDP "connect" sends nothing): what the other ranks
// can use to reach this one when they can reach the rendezvous host.
std::string route_to(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) return "127.0.0.1";
  std::string out = "127.0.0.1";
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_in me{};
    socklen_t len = sizeof me;
    char buf[INET_ADDRSTRLEN];
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len) == 0 && ::inet_ntop(AF_INET, &me.sin_addr, buf, sizeof buf)) out = buf;
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(res);
  return out;
}

CommError translate(const std::exception& e, const char* what) {
  const std::string m = e.what();
  if (m.find("Timed out") != std::string::npos || m.find("timed out") != std::string::npos || m.find("Timeout") != std::string::npos)
    return CommError(CommErrorKind::Timeout, std::string(what) + " timed out: " + m);
  if (m.find("closed") != std::string::npos || m.find("reset") != std::string::npos || m.find("Broken pipe") != std::string::npos ||
      m.find("Connection refused") != std::string::npos || m.find("EOF") != std::string::npos)
    return CommError(CommErrorKind::PeerLost, std::string(what) + ": a peer rank's connection closed: " + m);
  return CommError(CommErrorKind::Engine, std::string(what) + ": " + m);
}

class GlooComm : public Communicator {
 public:
  explicit GlooComm(const GlooOptions& o) : o_(o) {
    if (o.worldSize < 1) throw CommError(CommErrorKind::Config, "world size " + std::to_string(o.worldSize) + " must be at least 1");
    if (o.rank < 0 || o.rank >= o.worldSize)
      throw CommError(CommErrorKind::Config, "rank " + std::to_string(o.rank) + " is not in [0, " + std::to_string(o.worldSize) + ") for world size " + std::to_string(o.worldSize));
    const ms rdv(o.rendezvousTimeoutMs);
    std::string listen = o.listenHost;
    if (o.rendezvous == "tcp") {
      if (o.rank == 0) server_ = std::make_unique<TcpStoreServer>("0.0.0.0", o.port);
      auto ts = std::make_unique<TcpStore>(o.host, o.port, rdv);
      tcp_ = ts.get();
      store_ = std::move(ts);
      if (listen.empty()) listen = route_to(o.host, o.port);
    } else if (o.rendezvous == "file") {
      if (o.path.empty()) throw CommError(CommErrorKind::Config, "rendezvous file://: give a folder every rank can see");
      if (::mkdir(o.path.c_str(), 0777) != 0 && errno != EEXIST)
        throw CommError(CommErrorKind::Config, "rendezvous file://" + o.path + ": cannot create the folder (" + std::strerror(errno) + ")");
      store_ = std::make_unique<gloo::rendezvous::FileStore>(o.path);
      if (listen.empty()) {
        char name[256] = {0};
        listen = ::gethostname(name, sizeof name - 1) == 0 && name[0] ? name : "127.0.0.1";
      }
    } else {
      throw CommError(CommErrorKind::Config, "rendezvous kind '" + o.rendezvous + "': use tcp://host:port or file:///a/fresh/folder");
    }
    check_world(rdv);
    try {
      gloo::transport::tcp::attr attr;
      attr.hostname = listen;
      dev_ = gloo::transport::tcp::CreateDevice(attr);
      ctx_ = std::make_shared<gloo::rendezvous::Context>(o.rank, o.worldSize);
      ctx_->setTimeout(rdv);
      gloo::rendezvous::PrefixStore prefixed("voxvae/gloo", *store_);
      ctx_->connectFullMesh(prefixed, dev_);
      ctx_->setTimeout(ms(o.timeoutMs));
    } catch (const CommError&) {
      throw;
    } catch (const std::exception& e) {
      CommError c = translate(e, "rendezvous");
      throw CommError(c.kind == CommErrorKind::Timeout ? CommErrorKind::Rendezvous : c.kind,
                      std::string(c.what()) + " (this rank listens on " + listen + "; other ranks must reach it: set --host)");
    }
    barrier(-1);
  }

  int rank() const override { return o_.rank; }
  int size() const override { return o_.worldSize; }
  const char* engine() const override { return "gloo"; }

  void all_reduce(float* data, int64_t n, ReduceOp op, bool wide) override {
    guard("allReduce", [&] {
      if (wide) {
        std::vector<double> w(data, data + n);
        if (o_.worldSize > 1 && n > 0) {
          gloo::AllreduceOptions opts(ctx_);
          opts.setOutput(w.data(), size_t(n));
          opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<double>));
          opts.setTag(next_tag());
          opts.setTimeout(ms(o_.timeoutMs));
          gloo::allreduce(opts);
        }
        const double d = op == ReduceOp::Mean ? double(o_.worldSize) : 1.0;
        for (int64_t i = 0; i < n; ++i) data[i] = float(w[size_t(i)] / d);
        return;
      }
      if (o_.worldSize > 1 && n > 0) {
        gloo::AllreduceOptions opts(ctx_);
        opts.setOutput(data, size_t(n));
        opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
        opts.setTag(next_tag());
        opts.setTimeout(ms(o_.timeoutMs));
        gloo::allreduce(opts);
      }
      if (op == ReduceOp::Mean && o_.worldSize > 1) {
        const float s = float(1.0 / double(o_.worldSize));
        for (int64_t i = 0; i < n; ++i) data[i] *= s;
      }
    });
  }

  void broadcast(float* data, int64_t n, int root) override {
    if (root < 0 || root >= o_.worldSize) throw CommError(CommErrorKind::Config, "broadcast root " + std::to_string(root) + " is not a rank");
    guard("broadcast", [&] {
      if (o_.worldSize == 1 || n == 0) return;
      gloo::BroadcastOptions opts(ctx_);
      opts.setOutput(data, size_t(n));
      opts.setRoot(root);
      opts.setTag(next_tag());
      opts.setTimeout(ms(o_.timeoutMs));
      gloo::broadcast(opts);
    });
  }

  void barrier(int64_t timeout_ms) override {
    guard("barrier", [&] {
      if (o_.worldSize == 1) return;
      gloo::BarrierOptions opts(ctx_);
      opts.setTag(next_tag());
      opts.setTimeout(ms(timeout_ms < 0 ? o_.timeoutMs : timeout_ms));
      gloo::barrier(opts);
    });
  }

 private:
  uint32_t next_tag() { return tag_++ & 0x7fffffff; }

  template <class F>
  void guard(const char* what, F&& f) {
    if (broken_) throw CommError(CommErrorKind::Closed, std::string(what) + ": an earlier collective of this group failed (" + broken_msg_ + "); the group cannot be used again");
    try {
      f();
    } catch (const CommError& e) {
      broken_ = true;
      broken_msg_ = e.what();
      throw;
    } catch (const std::exception& e) {
      CommError c = translate(e, what);
      broken_ = true;
      broken_msg_ = c.what();
      throw c;
    }
  }

  // Every rank claims its rank (a second process with the same rank fails) and publishes its world
  // size; every rank then waits for all of 0..worldSize-1 and compares.
  void check_world(ms timeout) {
    const std::string ws = std::to_string(o_.worldSize);
    const std::vector<char> mine(ws.begin(), ws.end());
    const std::string key = "voxvae/rank/" + std::to_string(o_.rank);
    if (tcp_) {
      if (!tcp_->add_unique(key, mine))
        throw CommError(CommErrorKind::Config, "rank " + std::to_string(o_.rank) + " joined this rendezvous twice: give every process its own --rank");
    } else {
      const std::string claim = o_.path + "/voxvae-rank-" + std::to_string(o_.rank);
      int fd = ::open(claim.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0)
        throw CommError(CommErrorKind::Config, "rank " + std::to_string(o_.rank) + " already joined the rendezvous folder " + o_.path +
                                                   " (" + claim + " exists): give every process its own --rank, and every run a fresh, empty folder");
      ::close(fd);
      store_->set(key, mine);
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (int r = 0; r < o_.worldSize; ++r) {
      const std::string k = "voxvae/rank/" + std::to_string(r);
      for (;;) {
        bool have = false;
        if (tcp_) have = tcp_->check(k);
        else {
          struct stat st{};
          have = ::stat((o_.path + "/voxvae-rank-" + std::to_string(r)).c_str(), &st) == 0;
        }
        if (have) break;
        if (std::chrono::steady_clock::now() >= deadline) {
          std::string joined;
          for (int q = 0; q < o_.worldSize; ++q) {
            bool h = tcp_ ? tcp_->check("voxvae/rank/" + std::to_string(q)) : false;
            if (!tcp_) {
              struct stat st{};
              h = ::stat((o_.path + "/voxvae-rank-" + std::to_string(q)).c_str(), &st) == 0;
            }
            if (h) joined += (joined.empty() ? "" : ", ") + std::to_string(q);
          }
          throw CommError(CommErrorKind::Rendezvous, "rendezvous: rank " + std::to_string(r) + " of world size " + ws + " did not join within " +
                                                         std::to_string(timeout.count()) + " ms (joined: " + (joined.empty() ? "none" : joined) +
                                                         "): start every rank 0.." + std::to_string(o_.worldSize - 1) + " with the same --rendezvous and --world-size");
        }
        std::this_thread::sleep_for(ms(10));
      }
      std::vector<char> theirs;
      try {
        theirs = store_->get(k);
      } catch (const std::exception& e) {
        throw CommError(CommErrorKind::Rendezvous, std::string("rendezvous: reading rank ") + std::to_string(r) + "'s world size: " + e.what());
      }
      const std::string t(theirs.begin(), theirs.end());
      if (t != ws)
        throw CommError(CommErrorKind::Config, "world size mismatch: this rank (" + std::to_string(o_.rank) + ") has --world-size " + ws + ", rank " +
                                                   std::to_string(r) + " has " + t + ": start every rank with the same --world-size");
    }
  }

  GlooOptions o_;
  std::unique_ptr<TcpStoreServer> server_;
  TcpStore* tcp_ = nullptr;
  std::unique_ptr<gloo::rendezvous::Store> store_;
  std::shared_ptr<gloo::transport::Device> dev_;
  std::shared_ptr<gloo::rendezvous::Context> ctx_;
  uint32_t tag_ = 1;
  bool broken_ = false;
  std::string broken_msg_;
};

}  // namespace

std::unique_ptr<Communicator> create_gloo(const GlooOptions& o) { return std::make_unique<GlooComm>(o); }

}  // namespace vxd
