// The data plane's setup on the control side: worker sockets and threads, the views
// they read, and the work they hand back.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "agent/daemon.hpp"

namespace meshd::agent {

namespace {

constexpr unsigned kDefaultWorkersMax = 4;

void fail_line(const std::string& msg) { std::fprintf(stderr, "meshd: %s\n", msg.c_str()); }

// MESHD_DP_WORKERS (1..8, default: one per core up to 4) and MESHD_DP_OFFLOAD (0 turns
// TAP offloads and UDP GSO/GRO off). Nonsense values are refused at start.
Result<unsigned> workers_from_env() {
  const char* v = std::getenv("MESHD_DP_WORKERS");
  if (v == nullptr || *v == 0) {
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    return std::min(hw, kDefaultWorkersMax);
  }
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != 0 || n < 1 || n > static_cast<long>(kWorkersMax)) {
    return make_error("dp.workers", std::string("MESHD_DP_WORKERS=") + v + ": must be 1.." +
                                        std::to_string(kWorkersMax));
  }
  return static_cast<unsigned>(n);
}

Result<bool> offload_from_env() {
  const char* v = std::getenv("MESHD_DP_OFFLOAD");
  if (v == nullptr || *v == 0) return true;
  const std::string s(v);
  if (s == "1" || s == "on") return true;
  if (s == "0" || s == "off") return false;
  return make_error("dp.offload", "MESHD_DP_OFFLOAD=" + s + ": must be on or off (1 or 0)");
}

}  // namespace

int Daemon::start_dataplane() {
  const auto workers = workers_from_env();
  const auto offload = offload_from_env();
  if (!workers || !offload) {
    fail_line(!workers ? workers.error().message : offload.error().message);
    return 2;
  }
  unsigned n = *workers;
  if (listen_.port == 0) n = 1;  // an ephemeral port cannot be shared
  // SO_REUSEPORT would let another agent of the same user join our port in silence:
  // bind worker 0's socket plainly first to find out whether the port is free.
  if (n > 1) {
    UdpSocket probe;
    if (auto s = probe.open(listen_); !s) {
      fail_line(s.error().message);
      return 1;
    }
  }
  if (auto s = udp_.open(listen_, n > 1); !s) {
    fail_line(s.error().message);
    return 1;
  }
  for (unsigned i = 1; i < n; ++i) {
    auto sock = std::make_unique<UdpSocket>();
    if (auto s = sock->open(listen_, true); !s) {
      fail_line(s.error().message);
      return 1;
    }
    worker_udp_.push_back(std::move(sock));
  }
  if (n > 1) {
    // Without it the kernel picks a worker by the outer 4-tuple: one peer, one worker.
    if (auto s = attach_lane_steering(udp_.fd(), n); !s) {
      spdlog::warn("{}; datagrams from one peer stay on one worker", s.error().message);
    }
  }
  DataPlaneOptions o;
  o.workers = n;
  o.offload = *offload;
  o.udp_family = udp_.family();
  // The largest tenant frame one underlay datagram carries (1500-byte underlay MTU).
  const std::size_t ip_udp = o.udp_family == AF_INET ? 20 + 8 : wire::kIpv6UdpOverhead;
  o.frame_max = wire::kUnderlayMtu - ip_udp - wire::kTransportOverhead;
  dataplane_ = std::make_unique<DataPlane>(o, clock_, [this] { uv_async_send(&slow_async_); });
  return 0;
}

void Daemon::publish_view() {
  if (!dataplane_) return;
  auto sessions = tunnel_->data_sessions();
  const dp::FibPtr& fib = forwarder_.fib();
  if (!chains_dirty_ && !taps_dirty_ && sessions == view_sessions_ && fib == view_fib_) return;
  if (chains_dirty_) {
    auto m = std::make_shared<ChainMap>();
    for (const auto& [id, chain] : chains_) m->emplace(id, std::make_shared<const crypto::CertChain>(chain));
    view_chains_ = std::move(m);
    chains_dirty_ = false;
  }
  if (taps_dirty_) {
    auto m = std::make_shared<std::unordered_map<std::uint32_t, TapRef>>();
    for (std::uint32_t vni : tap_watches_) {
      const dp::TapDevice* tap = devices_->tap(vni);
      if (!tap) continue;
      TapRef r;
      r.fds.fill(-1);
      for (unsigned q = 0; q < tap->queues() && q < kWorkersMax; ++q) r.fds[q] = tap->queue_fd(q);
      r.vnet = tap->vnet_hdr();
      m->emplace(vni, r);
    }
    view_taps_ = std::move(m);
    taps_dirty_ = false;
  }
  view_sessions_ = std::move(sessions);
  view_fib_ = fib;
  auto v = std::make_shared<WorkerView>();
  v->fib = view_fib_;
  v->sessions = view_sessions_;
  v->chains = view_chains_;
  v->taps = view_taps_;
  dataplane_->publish(std::move(v));
}

void Daemon::on_slow_items() {
  if (stopping_ || !dataplane_) return;
  slow_items_.clear();
  dataplane_->take_slow(slow_items_);
  if (slow_items_.empty()) return;
  const std::uint64_t now = now_ms();
  for (SlowItem& it : slow_items_) {
    if (stopping_) break;
    switch (it.kind) {
      case SlowItem::Kind::tap_frame:
        if (it.data.size() > kFrameMax) break;
        std::memcpy(tap_buf_.data() + wire::kTransportHeaderLen + wire::kInnerHeaderLen, it.data.data(),
                    it.data.size());
        forward_tap_frame(now, it.vni, it.data.size(), true);
        break;
      case SlowItem::Kind::datagram:
        on_datagram(now, it.from, it.data);
        break;
      case SlowItem::Kind::plaintext:
        on_plaintext(now, it.peer, it.data);
        break;
    }
  }
  slow_items_.clear();
  pump(now);
}

}  // namespace meshd::agent
