// The key-value store of a tcp://host:port rendezvous. Gloo ships a FileStore (file://) and a RedisStore
// but no TCP store (PyTorch keeps its TCPStore in c10d, outside Gloo), so this is that piece: rank 0
// serves a map of keys to bytes on host:port, and every rank (rank 0 too) is a client. Only the
// rendezvous goes through it (a few hundred bytes per rank: Gloo's pair addresses and voxvae's world
// checks); gradients travel over Gloo's own TCP transport.
#pragma once
#include <gloo/rendezvous/store.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vxd {

class TcpStoreServer {
 public:
  // Listens on host:port (host "" or "0.0.0.0": every interface). Throws CommError(Config) when the port
  // cannot be bound (in use, or not this machine's address).
  TcpStoreServer(const std::string& host, int port);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

 private:
  void accept_loop();
  void serve(int fd);
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::map<std::string, std::vector<char>> data_;
  std::vector<int> clients_;
  std::vector<std::thread> threads_;
};

class TcpStore : public gloo::rendezvous::Store {
 public:
  // Connects to host:port, retrying until `timeout` (rank 0's server may start later).
  TcpStore(const std::string& host, int port, std::chrono::milliseconds timeout);
  ~TcpStore() override;

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;
  // Sets key only if it is absent; false when another client set it first.
  bool add_unique(const std::string& key, const std::vector<char>& data);
  bool check(const std::string& key);

 private:
  std::vector<char> request(uint8_t op, const std::string& key, const std::vector<char>& value);
  int fd_ = -1;
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
};

}  // namespace vxd
