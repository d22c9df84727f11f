// The CPU engine: Gloo (PyTorch's CPU collective library, Debian libgloo-dev) over its TCP transport.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "comm.h"

namespace vxd {

struct GlooOptions {
  int rank = 0;
  int worldSize = 1;
  // "tcp" (rank 0 serves a key-value store on host:port, tcp_store.h) or "file" (Gloo's FileStore in a
  // folder every rank can see; one fresh folder per run).
  std::string rendezvous = "tcp";
  std::string host = "127.0.0.1";
  int port = 29500;
  std::string path;
  // The address this rank's Gloo device listens on ("" : the address that reaches the rendezvous host
  // for tcp, this machine's hostname for file).
  std::string listenHost;
  // Rendezvous (all ranks must join within it) and every collective (a dead or stuck peer fails the
  // call within it).
  int64_t rendezvousTimeoutMs = 120000;
  int64_t timeoutMs = 300000;
};

// Joins the group; throws CommError (Config, Rendezvous, PeerLost) before returning on a wrong world
// size, a rank claimed twice, a rendezvous that is not reachable, or ranks missing at the timeout.
std::unique_ptr<Communicator> create_gloo(const GlooOptions& o);

}  // namespace vxd
