#include "dataplane/forwarder.hpp"

#include "dataplane/frame.hpp"

namespace meshd::dp {

namespace {

constexpr std::uint16_t kArpOpRequest = 1;

TapDecision drop() { return TapDecision{}; }

}  // namespace

TapDecision Forwarder::on_tap_frame(std::uint32_t vni, ByteSpan frame,
                                    std::span<std::uint8_t> reply) {
  const std::optional<EthView> eth = parse_eth(frame);
  if (!eth) {
    ++counters_.drop_malformed;
    return drop();
  }
  const Fib& fib = *fib_;
  // Tenant anti-spoofing: only endpoints we attached may send into the overlay.
  if (!fib.local_macs.contains(MacKey{vni, eth->src})) {
    ++counters_.drop_src_not_local;
    return drop();
  }

  TapDecision d;
  if (eth->is_multicast()) {
    // ARP proxy: answer locally for remote endpoints we know, so the request does not
    // go to every member. Tagged requests are flooded: the reply would lose the tag.
    if (eth->is_broadcast() && eth->ethertype == kEtherTypeArp && !eth->vlan_tagged) {
      const std::optional<ArpView> arp = parse_arp(eth->payload);
      if (arp && arp->op == kArpOpRequest) {
        const auto ip = fib.ip_to_mac.find(IpKey{vni, arp->target_ip});
        if (ip == fib.ip_to_mac.end()) {
          d.arp_miss_ip = arp->target_ip;
        } else if (fib.remote_macs.contains(MacKey{vni, ip->second})) {
          const std::size_t n = build_arp_reply(reply, *arp, ip->second);
          if (n != 0) {
            ++counters_.arp_proxied;
            d.kind = TapDecision::Kind::reply_local;
            d.reply_len = n;
            return d;
          }
          // Reply buffer too small (caller bug): flooding still delivers the request.
        }
      }
    }
  } else {
    const auto remote = fib.remote_macs.find(MacKey{vni, eth->dst});
    if (remote != fib.remote_macs.end()) {
      ++counters_.tx_unicast;
      d.kind = TapDecision::Kind::unicast;
      d.to = remote->second.owner;
      return d;
    }
    if (fib.local_macs.contains(MacKey{vni, eth->dst})) {
      ++counters_.drop_dst_local;
      return drop();
    }
    // Unknown unicast: flooded like VXLAN does, and reported so the agent resolves it.
    d.mac_miss = true;
    d.miss_mac = eth->dst;
  }

  const auto members = fib.vni_members.find(vni);
  if (members == fib.vni_members.end() || members->second.empty()) {
    ++counters_.drop_no_route;
    d.kind = TapDecision::Kind::drop;
    return d;  // keeps the miss hints: resolving may still find the destination
  }
  ++counters_.tx_flood;
  d.kind = TapDecision::Kind::flood;
  d.flood = &members->second;
  return d;
}

TunnelDecision Forwarder::on_tunnel_frame(const NodeId& sender, const crypto::CertChain& chain,
                                          std::uint32_t vni, bool vni_served, ByteSpan frame) {
  const std::optional<EthView> eth = parse_eth(frame);
  if (!eth) {
    ++counters_.drop_malformed;
    return {};
  }
  if (!chain.allows_vni(vni)) {
    ++counters_.drop_vni_not_allowed;
    return {};
  }
  if (!vni_served) {
    ++counters_.drop_vni_not_served;
    return {};
  }
  // Anti-spoofing: a node may only send frames from endpoints mapped to it.
  const Fib& fib = *fib_;
  const auto owner = fib.remote_macs.find(MacKey{vni, eth->src});
  if (owner == fib.remote_macs.end() || owner->second.owner != sender) {
    ++counters_.drop_src_not_owner;
    return {};
  }
  ++counters_.rx_delivered;
  return TunnelDecision{TunnelDecision::Kind::deliver};
}

}  // namespace meshd::dp
