// The tenant side of the data path: frames from the per-VNI TAPs, forwarding
// decisions, sealing in place into preallocated buffers (no allocation per frame).
#include <spdlog/spdlog.h>

#include <cstring>

#include "agent/daemon.hpp"
#include "agent/inner_header.hpp"

namespace meshd::agent {

namespace {
constexpr std::size_t kFrameOffset = wire::kTransportHeaderLen + wire::kInnerHeaderLen;
}  // namespace

void Daemon::watch_tap(std::uint32_t vni) {
  if (stopping_ || tap_watches_.count(vni)) return;
  const dp::TapDevice* tap = devices_->tap(vni);
  if (!tap || !dataplane_) return;
  tap_watches_.insert(vni);
  taps_dirty_ = true;
  publish_view();
  dataplane_->add_tap(vni, *tap);
}

void Daemon::unwatch_tap(std::uint32_t vni) {
  if (!tap_watches_.erase(vni)) return;
  const dp::TapDevice* tap = devices_->tap(vni);
  if (!tap || !dataplane_) return;
  // The workers must let go of the TAP's fds before it is closed (remove_vni, teardown).
  taps_dirty_ = true;
  publish_view();
  dataplane_->remove_tap(*tap);
}

void Daemon::send_frame(std::uint64_t now, const crypto::NodeId& to, std::uint32_t vni,
                        std::span<std::uint8_t> buf, std::size_t len) {
  encode_inner_header(buf.subspan(wire::kTransportHeaderLen, wire::kInnerHeaderLen), InnerHeader{vni, 0});
  Locator out_to;
  const std::size_t plain_len = wire::kInnerHeaderLen + len;
  const std::size_t n = tunnel_->seal_in_place(now, to, buf, plain_len, out_to);
  if (n > 0) {
    udp_.send_to(out_to, buf.first(n));
    return;
  }
  // No session yet: the tunnel queues (bounded) and starts a handshake.
  ensure_peer(to);
  if (!tunnel_->send(now, to, ByteSpan(buf.data() + wire::kTransportHeaderLen, plain_len))) {
    ++counters_.drop_no_session;
  }
}

void Daemon::forward_tap_frame(std::uint64_t now, std::uint32_t vni, std::size_t len, bool may_wait) {
  const dp::TapDevice* tap = devices_->tap(vni);
  if (!tap) return;
  const std::span<std::uint8_t> buf(tap_buf_);
  const ByteSpan frame(buf.data() + kFrameOffset, len);
  const auto d = forwarder_.on_tap_frame(vni, frame, reply_buf_);
  // A miss (unknown unicast MAC, ARP/NS for an unknown IP) asks the mapping system and
  // waits for the answer; only what it cannot answer is flooded.
  if (d.mac_miss || d.ip_miss.family != 0) {
    const mesh::LookupKey key = d.mac_miss ? mesh::LookupKey::of_mac(vni, d.miss_mac)
                                           : mesh::LookupKey::of_ip(vni, d.ip_miss);
    PendingFrame meta;
    meta.vni = vni;
    if (may_wait && wait_for_mapping(now, key, meta, frame)) return;
    if (d.kind == dp::TapDecision::Kind::flood) ++counters_.map_lookup_floods;
  }
  switch (d.kind) {
    case dp::TapDecision::Kind::unicast:
      send_frame(now, d.to, vni, buf, len);
      break;
    case dp::TapDecision::Kind::flood:
      flood_frame(now, vni, frame);
      break;
    case dp::TapDecision::Kind::reply_local:
      if (tap->write(std::span<const std::uint8_t>(reply_buf_.data(), d.reply_len)) < 0) {
        ++counters_.tap_write_errors;
      } else {
        ++counters_.tap_tx_frames;
      }
      break;
    case dp::TapDecision::Kind::drop:
      break;
  }
}

void Daemon::flood_frame(std::uint64_t now, std::uint32_t vni, ByteSpan frame) {
  const dp::Fib& fib = *forwarder_.fib();
  const auto members = fib.vni_members.find(vni);
  if (members == fib.vni_members.end() || members->second.empty()) return;
  if (!forwarder_.allow_flood(vni, now)) return;
  // Sealing is in place, so each copy gets its own buffer pass.
  for (const auto& node : members->second) {
    std::memcpy(flood_buf_.data() + kFrameOffset, frame.data(), frame.size());
    send_frame(now, node, vni, flood_buf_, frame.size());
  }
}

bool Daemon::wait_for_mapping(std::uint64_t now, const mesh::LookupKey& key, const PendingFrame& meta,
                              ByteSpan frame) {
  const auto r = mesh_->resolve(now, key);
  if (r != mesh::MeshCore::Lookup::requested && r != mesh::MeshCore::Lookup::cached) return false;
  bool first = false;
  if (!pending_.add(key, meta, frame, now, first)) return false;
  if (first) ++counters_.map_lookups;
  if (r == mesh::MeshCore::Lookup::cached) {
    // The answer came in since the FIB was built: the replay after the rebuild finds it.
    answered_.push_back(key);
    fib_dirty_ = true;
  }
  return true;
}

void Daemon::touch_used(std::uint64_t now) {
  if (now < next_touch_ms_) return;
  next_touch_ms_ = now + kTouchPeriod_ms;
  for (const auto& [key, ep] : forwarder_.fib()->remote_macs) {
    if (ep.used.load(std::memory_order_relaxed) == 0) continue;
    ep.used.store(0, std::memory_order_relaxed);
    mesh_->touch(now, key.vni, key.mac);
  }
}

void Daemon::replay_pending(std::uint64_t now) {
  if (answered_.empty() && unanswered_.empty()) return;
  auto answered = std::move(answered_);
  auto unanswered = std::move(unanswered_);
  answered_.clear();
  unanswered_.clear();
  auto replay = [&](bool resolved) {
    return [this, now, resolved](const PendingFrame& f) {
      const ByteSpan frame(f.data.data(), f.len);
      if (f.from_tunnel) {
        const crypto::CertChain* chain = chain_for(f.sender);
        if (!resolved || !chain) {
          ++counters_.rx_src_unresolved;
          return;
        }
        deliver_tunnel_frame(now, f.sender, *chain, f.vni, frame, false);
        return;
      }
      if (!resolved) {
        ++counters_.map_lookup_floods;
        flood_frame(now, f.vni, frame);
        return;
      }
      std::memcpy(tap_buf_.data() + kFrameOffset, f.data.data(), f.len);
      forward_tap_frame(now, f.vni, f.len, false);
    };
  };
  for (const auto& k : answered) pending_.release(k, replay(true));
  for (const auto& k : unanswered) pending_.give_up(k, replay(false));
}

}  // namespace meshd::agent
