// The communicator of data-parallel training (docs/distributed.md): all-reduce (sum or mean),
// broadcast and barrier over flat float buffers (a network's parameters or gradients). Engines: Gloo
// over TCP for CPU ranks (gloo_comm.cpp, the optional addon build-dist/voxvae_dist.node) and NCCL for
// CUDA ranks (nccl_comm.h, libnccl.so.2 loaded at run time). Every call either completes on every rank
// or throws CommError on every rank that can still notice (a peer's socket closing, or the timeout).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace vxd {

enum class ReduceOp { Sum, Mean };

// Why a collective or the rendezvous failed. The JS layer maps each kind to a VoxvaeError code and says
// what to do (ts/dist/index.ts).
enum class CommErrorKind {
  Config,      // a wrong rank / world size / rendezvous address, found before any collective ran
  Rendezvous,  // the ranks did not all meet within the rendezvous timeout
  PeerLost,    // a peer's connection closed (the rank died)
  Timeout,     // a collective did not complete within the timeout (a rank hangs or is out of step)
  Closed,      // the communicator was closed (or an earlier collective failed)
  Engine,      // anything else the engine reports
};

inline const char* comm_error_name(CommErrorKind k) {
  switch (k) {
    case CommErrorKind::Config: return "config";
    case CommErrorKind::Rendezvous: return "rendezvous";
    case CommErrorKind::PeerLost: return "peer-lost";
    case CommErrorKind::Timeout: return "timeout";
    case CommErrorKind::Closed: return "closed";
    case CommErrorKind::Engine: return "engine";
  }
  return "engine";
}

struct CommError : std::runtime_error {
  CommError(CommErrorKind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
  CommErrorKind kind;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place over n floats; every rank ends with bit-identical values. Float32 (wide = false): summed in
  // float in the engine's order (Gloo's ring: fixed for a world size, not rank order); Mean multiplies the
  // sum by the float nearest 1/size. Wide: summed in double (exact for floats whose magnitudes span less
  // than 2^29, so the same whatever the order), then Mean divides by size in double and each value is
  // rounded to float once: twice the bytes on the wire.
  virtual void all_reduce(float* data, int64_t n, ReduceOp op, bool wide = false) = 0;
  // In place: every rank receives root's n floats.
  virtual void broadcast(float* data, int64_t n, int root) = 0;
  // timeout_ms < 0: the communicator's timeout.
  virtual void barrier(int64_t timeout_ms = -1) = 0;
  // Name of the engine ("gloo", "nccl").
  virtual const char* engine() const = 0;
};

}  // namespace vxd
