// The data plane's worker threads (DESIGN principle 3): each owns an epoll set with its
// own UDP socket (SO_REUSEPORT on the agent's port) and one queue of every VNI's TAP
// (IFF_MULTI_QUEUE), and forwards the common case without the control thread:
//
//   TAP -> (TSO super-frame: segment) -> FIB unicast lookup -> seal in place -> UDP (GSO)
//   UDP (GRO) -> open in place -> anti-spoofing -> coalesce TCP -> TAP (vnet header)
//
// Flows and workers. Worker i seals with lane i (crypto/wire.hpp); the receiver's
// socket group hands lane i to its worker i mod N (attach_lane_steering), which writes
// the flow to its own TAP queue; the TAP then queues the flow's answers to that worker
// (the kernel steers a flow to the queue that last wrote it), which seals them with its
// lane back to worker i at the first end. One flow stays on one worker at both ends (in
// order); the TAP's flow hash spreads flows over workers.
//
// It reads an immutable WorkerView (FIB, sessions, peer chains, TAP fds) that the
// control thread swaps in; no lock and no allocation per packet. Everything else
// (handshakes, gossip, misses, floods, ARP/ND proxying, frames waiting for a mapping,
// sessions not yet confirmed or roaming) goes to the control thread as a SlowItem.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "agent/clock.hpp"
#include "crypto/tunnel.hpp"
#include "dataplane/fib.hpp"
#include "dataplane/forwarder.hpp"
#include "dataplane/tap.hpp"

namespace meshd::agent {

inline constexpr unsigned kWorkersMax = dp::kTapQueuesMax;
static_assert(kWorkersMax + 1 <= crypto::kCipherSlots);
// Items waiting for the control thread; beyond it the newest are dropped (counted).
inline constexpr std::size_t kSlowQueueMax = 4096;

using ChainMap = std::unordered_map<crypto::NodeId, std::shared_ptr<const crypto::CertChain>, crypto::NodeIdHash>;

struct TapRef {
  std::array<int, kWorkersMax> fds{};  // queue i belongs to worker i
  bool vnet = false;
};

// What the workers read. Immutable once published; the control thread builds a new one
// when any part changed.
struct WorkerView {
  dp::FibPtr fib = std::make_shared<const dp::Fib>();
  std::shared_ptr<const crypto::DataSessions> sessions = std::make_shared<const crypto::DataSessions>();
  std::shared_ptr<const ChainMap> chains = std::make_shared<const ChainMap>();
  std::shared_ptr<const std::unordered_map<std::uint32_t, TapRef>> taps =
      std::make_shared<const std::unordered_map<std::uint32_t, TapRef>>();
};

// Work for the control thread.
struct SlowItem {
  enum class Kind {
    tap_frame,  // a plain frame read from the TAP of `vni` (segmented, checksums complete)
    datagram,   // an underlay datagram from `from` (handshake, unconfirmed or roaming session)
    plaintext,  // decrypted inner header + payload from `peer` (control message, unresolved source)
  };
  Kind kind = Kind::tap_frame;
  std::uint32_t vni = 0;
  Locator from;
  crypto::NodeId peer{};
  Bytes data;
};

struct WorkerCounters {
  std::uint64_t tap_rx_frames = 0, tap_rx_super = 0, tap_segments = 0;
  std::uint64_t tap_tx_frames = 0, tap_tx_super = 0, tap_coalesced = 0, tap_write_errors = 0;
  std::uint64_t tap_drop_gso = 0;       // super-frame that could not be segmented
  std::uint64_t udp_rx_datagrams = 0, udp_rx_gro_batches = 0, udp_rx_errors = 0, udp_rx_truncated = 0;
  std::uint64_t udp_tx_datagrams = 0, udp_tx_gso_sends = 0, udp_tx_errors = 0;
  std::uint64_t udp_tx_waits = 0;  // sends that found the socket buffer full and waited
  std::uint64_t tunnel_rx_bytes = 0, tunnel_tx_bytes = 0;
  std::uint64_t drop_decrypt = 0, drop_replay = 0, drop_inner_header = 0;
  std::uint64_t slow_path = 0, slow_drop_full = 0;
  std::uint64_t icmp_too_big = 0, drop_oversize = 0;
  dp::ForwarderCounters fwd;
  WorkerCounters& operator+=(const WorkerCounters& o);
};

struct DataPlaneOptions {
  unsigned workers = 1;        // 1..kWorkersMax
  bool offload = true;         // TAP vnet header + TSO, UDP GSO/GRO
  std::size_t frame_max = 0;   // largest tenant frame the underlay carries in one datagram
  int udp_family = 0;          // AF_INET or AF_INET6 (the sockets')
};

class DataPlane {
 public:
  // `wake` is called (from a worker thread) when slow items are waiting; it must be
  // thread-safe (uv_async_send).
  DataPlane(DataPlaneOptions opt, const Clock& clock, std::function<void()> wake);
  ~DataPlane();
  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  // Starts one thread per UDP socket (udp_fds.size() == workers). Errors: "dp.start".
  Status start(const std::vector<int>& udp_fds);
  void stop();  // joins the threads; idempotent

  void publish(std::shared_ptr<const WorkerView> view);
  // Adds queue i of the TAP to worker i's epoll set (publish a view with it first).
  void add_tap(std::uint32_t vni, const dp::TapDevice& tap);
  // Removes it and returns once no worker can still use the TAP's fds (publish a view
  // without it first); the caller may close the TAP afterwards.
  void remove_tap(const dp::TapDevice& tap);

  // Moves the waiting slow items into `out` (appended).
  void take_slow(std::vector<SlowItem>& out);
  WorkerCounters counters() const;
  // Each worker's own, in worker order (status --json "workers").
  std::vector<WorkerCounters> worker_counters() const;
  const DataPlaneOptions& options() const { return opt_; }

 private:
  class Worker;
  friend class Worker;
  bool push_slow(SlowItem item);  // false if the queue is full
  std::shared_ptr<const WorkerView> view() const;

  DataPlaneOptions opt_;
  const Clock& clock_;
  std::function<void()> wake_;
  std::vector<std::unique_ptr<Worker>> workers_;
  mutable std::mutex view_mu_;
  std::shared_ptr<const WorkerView> view_;
  std::atomic<std::uint64_t> view_version_{0};
  std::mutex slow_mu_;
  std::vector<SlowItem> slow_;
  bool started_ = false;
};

}  // namespace meshd::agent
