// Underlay I/O and the TunnelManager: datagrams in, plaintext to the mesh or the data
// path, tunnel transmits out.
#include <spdlog/spdlog.h>

#include "agent/daemon.hpp"
#include "agent/inner_header.hpp"

namespace meshd::agent {

void Daemon::on_datagram(std::uint64_t now, const Locator& from, std::span<std::uint8_t> datagram) {
  if (!datagram.empty() && datagram[0] == static_cast<std::uint8_t>(wire::PacketType::transport)) {
    crypto::NodeId peer{};
    std::span<std::uint8_t> plain;
    // Failures are counted by the tunnel; a transport packet never goes the slow way.
    if (tunnel_->open_in_place(now, from, datagram, peer, plain)) on_plaintext(now, peer, plain);
    return;
  }
  tunnel_->handle_datagram(now, from, datagram);
}

const crypto::CertChain* Daemon::chain_for(const crypto::NodeId& peer) {
  if (auto it = chains_.find(peer); it != chains_.end()) return &it->second;
  auto c = tunnel_->peer_chain(peer);
  if (!c) return nullptr;
  chains_dirty_ = true;
  return &chains_.insert_or_assign(peer, std::move(*c)).first->second;
}

void Daemon::on_plaintext(std::uint64_t now, const crypto::NodeId& peer, std::span<std::uint8_t> plain) {
  const auto hdr = decode_inner_header(plain);
  if (!hdr) {
    ++counters_.drop_inner_header;
    return;
  }
  const auto payload = plain.subspan(wire::kInnerHeaderLen);
  if (hdr->flags & wire::kFlagKeepalive) return;
  const crypto::CertChain* chain = chain_for(peer);
  if (!chain) {
    ++counters_.drop_no_chain;
    return;
  }
  if (hdr->flags & wire::kFlagControl) {
    mesh_->handle_message(now, peer, *chain, payload);
    // Apply what it taught us (a mapping, a member) before the next datagram of this
    // batch: a frame sent right after the mapping must find it in the forwarding table.
    // (Transmits it queued go out with the caller's pump.)
    drain_mesh(now);
    if (fib_dirty_ && !stopping_) rebuild_fib();
    return;
  }
  deliver_tunnel_frame(now, peer, *chain, hdr->vni, payload, true);
}

void Daemon::deliver_tunnel_frame(std::uint64_t now, const crypto::NodeId& sender,
                                  const crypto::CertChain& chain, std::uint32_t vni, ByteSpan frame,
                                  bool may_wait) {
  const dp::TapDevice* tap = devices_->tap(vni);
  const auto d = forwarder_.on_tunnel_frame(sender, chain, vni, tap != nullptr, frame);
  if (d.src_unknown && may_wait) {
    // A sender's endpoint we have not resolved: check its owner first (anti-spoofing),
    // the frame waits for the answer.
    const mesh::LookupKey key = mesh::LookupKey::of_mac(vni, d.src_mac);
    PendingFrame meta;
    meta.from_tunnel = true;
    meta.sender = sender;
    meta.vni = vni;
    if (wait_for_mapping(now, key, meta, frame)) return;
    ++counters_.rx_src_unresolved;
    return;
  }
  if (d.kind != dp::TunnelDecision::Kind::deliver || !tap) return;
  if (tap->write(frame) < 0) {
    ++counters_.tap_write_errors;
  } else {
    ++counters_.tap_tx_frames;
  }
}

void Daemon::flush_tunnel_transmits() {
  while (auto t = tunnel_->poll_transmit()) udp_.send_to(t->to, t->datagram);
}

bool Daemon::drain_tunnel_events(std::uint64_t now) {
  bool any = false;
  while (auto ev = tunnel_->poll_event()) {
    any = true;
    using K = crypto::TunnelEvent::Kind;
    switch (ev->kind) {
      case K::peer_up:
        if (ev->chain) {
          chains_.insert_or_assign(ev->peer, *ev->chain);
          chains_dirty_ = true;
        }
        spdlog::debug("session up with {} via {}", crypto::node_id_short(ev->peer), ev->from.str());
        break;
      case K::peer_down:
        spdlog::debug("session down with {}", crypto::node_id_short(ev->peer));
        break;
      case K::received:
        on_plaintext(now, ev->peer, ev->plaintext);
        break;
      case K::rejected:
        spdlog::warn("handshake with {} rejected: {}", crypto::node_id_short(ev->peer), ev->reason);
        if (joining_ && bootstrap_.count(ev->peer)) {
          rejected_bootstrap_.insert(ev->peer);
          if (rejected_bootstrap_.size() == bootstrap_.size()) on_join_refused(ev->reason);
        }
        break;
    }
  }
  return any;
}

void Daemon::pump(std::uint64_t now) {
  if (stopping_) return;
  for (std::size_t round = 0; round < kPumpRoundsMax; ++round) {
    bool progressed = drain_tunnel_events(now);
    progressed = drain_mesh(now) || progressed;
    flush_tunnel_transmits();
    if (!progressed || stopping_) break;
  }
  if (stopping_) return;
  if (fib_dirty_) rebuild_fib();
  publish_view();
  rearm_timers(now);
}

}  // namespace meshd::agent
