#include "tcp_store.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "comm.h"

namespace vxd {
namespace {

enum : uint8_t { kSet = 1, kAddUnique = 2, kGet = 3, kCheck = 4 };
// Keys and values of a rendezvous are small; anything larger is not a voxvae client.
constexpr uint32_t kMaxField = 1u << 20;

bool write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= size_t(w);
  }
  return true;
}
bool read_all(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::recv(fd, c, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= size_t(r);
  }
  return true;
}
bool read_field(int fd, std::vector<char>* out) {
  uint32_t len = 0;
  if (!read_all(fd, &len, 4)) return false;
  len = ntohl(len);
  if (len > kMaxField) return false;
  out->resize(len);
  return len == 0 || read_all(fd, out->data(), len);
}
bool write_field(int fd, const char* p, size_t n) {
  uint32_t len = htonl(uint32_t(n));
  return write_all(fd, &len, 4) && (n == 0 || write_all(fd, p, n));
}

std::string endpoint(const std::string& host, int port) { return host + ":" + std::to_string(port); }

}  // namespace

TcpStoreServer::TcpStoreServer(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string p = std::to_string(port);
  const bool any = host.empty() || host == "0.0.0.0";
  if (int rc = ::getaddrinfo(any ? nullptr : host.c_str(), p.c_str(), &hints, &res); rc != 0)
    throw CommError(CommErrorKind::Config, "rendezvous tcp://" + endpoint(host, port) + ": cannot resolve the host (" + gai_strerror(rc) + ")");
  std::string why = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      listen_fd_ = fd;
      break;
    }
    why = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (listen_fd_ < 0)
    throw CommError(CommErrorKind::Config, "rendezvous tcp://" + endpoint(host, port) + ": rank 0 cannot listen there (" + why +
                                               "): give a free port of rank 0's machine, or run rank 0 on that host");
  accept_thread_ = std::thread([this] { accept_loop(); });
}

TcpStoreServer::~TcpStoreServer() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  if (accept_thread_.joinable()) accept_thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : clients_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : threads_) t.join();
}

void TcpStoreServer::accept_loop() {
  while (!stop_) {
    pollfd pfd{listen_fd_, POLLIN, 0};
    int r = ::poll(&pfd, 1, 100);
    if (r <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      ::close(fd);
      break;
    }
    clients_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void TcpStoreServer::serve(int fd) {
  for (;;) {
    uint8_t op = 0;
    std::vector<char> key, value;
    if (!read_all(fd, &op, 1) || !read_field(fd, &key) || !read_field(fd, &value)) break;
    const std::string k(key.begin(), key.end());
    std::vector<char> reply;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = data_.find(k);
      switch (op) {
        case kSet: data_[k] = value; reply = {1}; break;
        case kAddUnique:
          if (it == data_.end()) data_[k] = value, reply = {1};
          else reply = {0};
          break;
        case kGet:
          if (it == data_.end()) reply = {0};
          else reply.push_back(1), reply.insert(reply.end(), it->second.begin(), it->second.end());
          break;
        case kCheck: reply = {char(it != data_.end())}; break;
        default: reply.clear();
      }
    }
    if (reply.empty() || !write_field(fd, reply.data(), reply.size())) break;
  }
  ::close(fd);
}

TcpStore::TcpStore(const std::string& host, int port, std::chrono::milliseconds timeout) : timeout_(timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string why;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string p = std::to_string(port);
  do {
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), p.c_str(), &hints, &res);
    if (rc != 0) throw CommError(CommErrorKind::Config, "rendezvous tcp://" + endpoint(host, port) + ": cannot resolve the host (" + gai_strerror(rc) + ")");
    for (addrinfo* a = res; a && fd_ < 0; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) fd_ = fd;
      else why = std::strerror(errno), ::close(fd);
    }
    ::freeaddrinfo(res);
    if (fd_ >= 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < deadline);
  if (fd_ < 0)
    throw CommError(CommErrorKind::Rendezvous, "rendezvous tcp://" + endpoint(host, port) + ": no rank 0 answered within " +
                                                   std::to_string(timeout.count()) + " ms (" + why +
                                                   "): start rank 0 with the same --rendezvous, and check the host and port");
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

TcpStore::~TcpStore() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<char> TcpStore::request(uint8_t op, const std::string& key, const std::vector<char>& value) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<char> reply;
  if (!write_all(fd_, &op, 1) || !write_field(fd_, key.data(), key.size()) || !write_field(fd_, value.data(), value.size()) ||
      !read_field(fd_, &reply) || reply.empty())
    throw CommError(CommErrorKind::PeerLost, "rendezvous: the store on rank 0 closed the connection (rank 0 exited?)");
  return reply;
}

void TcpStore::set(const std::string& key, const std::vector<char>& data) { request(kSet, key, data); }

bool TcpStore::add_unique(const std::string& key, const std::vector<char>& data) { return request(kAddUnique, key, data)[0] == 1; }

bool TcpStore::check(const std::string& key) { return request(kCheck, key, {})[0] == 1; }

std::vector<char> TcpStore::get(const std::string& key) {
  wait({key}, timeout_);
  std::vector<char> r = request(kGet, key, {});
  if (r[0] != 1) throw CommError(CommErrorKind::Engine, "rendezvous: key " + key + " vanished");
  return std::vector<char>(r.begin() + 1, r.end());
}

void TcpStore::wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const std::string& k : keys) {
    while (!check(k)) {
      if (std::chrono::steady_clock::now() >= deadline)
        throw CommError(CommErrorKind::Rendezvous, "rendezvous: waited " + std::to_string(timeout.count()) + " ms for " + k);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

}  // namespace vxd
