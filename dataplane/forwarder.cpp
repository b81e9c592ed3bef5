#include "dataplane/forwarder.hpp"

#include <bit>

#include "dataplane/frame.hpp"

namespace meshd::dp {

namespace {

constexpr std::uint16_t kArpOpRequest = 1;
constexpr std::uint64_t kMilliPerFrame = 1000;  // flood buckets count thousandths of a frame
static_assert(std::has_single_bit(kFloodBucketsMax));
constexpr int kFloodBucketsBits = std::countr_zero(kFloodBucketsMax);

TapDecision drop() { return TapDecision{}; }

// What an ARP request or NS for an IP resolves to.
struct ProxyAnswer {
  enum class Kind {
    none,      // answered by someone else (a local endpoint), or not by us: just flood
    endpoint,  // a remote endpoint: answer with its MAC
    route,     // a routed address: answer with the gateway's MAC
    unknown,   // not in the FIB at all: flood and report the miss
  };
  Kind kind = Kind::none;
  MacAddr mac{};
};

// A known endpoint wins over a route. `route_ok` is false for requests that must not get
// a gateway's answer (ARP probes and announcements).
ProxyAnswer resolve_proxy(const Fib& fib, std::uint32_t vni, const IpAddr& target,
                          const MacAddr& requester, bool route_ok) {
  using K = ProxyAnswer::Kind;
  const auto ip = fib.ip_to_mac.find(IpKey{vni, target});
  if (ip != fib.ip_to_mac.end()) {
    // Local endpoints answer for themselves through the bridge.
    if (!fib.remote_macs.contains(MacKey{vni, ip->second})) return {};
    return ProxyAnswer{K::endpoint, ip->second};
  }
  const RouteEntry* route = fib.route_for(vni, target);
  if (route == nullptr) return ProxyAnswer{K::unknown, {}};
  // Telling the gateway that an address behind it is at its own MAC would loop.
  if (!route_ok || route->next_hop_mac == requester) return {};
  return ProxyAnswer{K::route, route->next_hop_mac};
}

bool is_unspecified_v4(const IpAddr& ip) {
  return ip.is_v4() && ip.bytes[0] == 0 && ip.bytes[1] == 0 && ip.bytes[2] == 0 &&
         ip.bytes[3] == 0;
}

}  // namespace

Forwarder::Forwarder(FloodLimit flood_limit) : flood_limit_(flood_limit) {
  if (flood_limit_.frames_per_s == 0) return;  // unlimited: no table
  const std::uint64_t burst = std::max<std::uint32_t>(flood_limit_.burst, 1);
  flood_cap_milli_ = burst * kMilliPerFrame;
  flood_full_ms_ = (flood_cap_milli_ + flood_limit_.frames_per_s - 1) / flood_limit_.frames_per_s;
  flood_buckets_.resize(kFloodBucketsMax);
  flood_overflow_ = FloodBucket{0, flood_cap_milli_, 0, true};
}

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
    // ARP and ND proxy: answer locally for remote endpoints and routed prefixes we know,
    // so the request does not go to every member. Tagged requests are flooded: the reply
    // would lose the tag. If the reply buffer is too small (caller bug), flooding still
    // delivers the request.
    using K = ProxyAnswer::Kind;
    if (eth->is_broadcast() && eth->ethertype == kEtherTypeArp && !eth->vlan_tagged) {
      const std::optional<ArpView> arp = parse_arp(eth->payload);
      if (arp && arp->op == kArpOpRequest) {
        // RFC 5227 probes and announcements check for or claim the target address.
        const bool probe = is_unspecified_v4(arp->sender_ip) || arp->sender_ip == arp->target_ip;
        const ProxyAnswer a = resolve_proxy(fib, vni, arp->target_ip, eth->src, !probe);
        if (a.kind == K::unknown) {
          d.ip_miss = arp->target_ip;
        } else if (a.kind != K::none) {
          const std::size_t n = build_arp_reply(reply, *arp, a.mac);
          if (n != 0) {
            ++(a.kind == K::endpoint ? counters_.arp_proxied : counters_.route_proxied);
            d.kind = TapDecision::Kind::reply_local;
            d.reply_len = n;
            return d;
          }
        }
      }
    } else if (eth->ethertype == kEtherTypeIpv6 && !eth->vlan_tagged) {
      // DAD probes are left to the target: answering needs a multicast NA, and the
      // target (or a duplicate of it) is reached by the flood.
      const std::optional<NsView> ns = parse_ipv6_ns(eth->payload);
      if (ns && !ns->is_dad()) {
        const ProxyAnswer a = resolve_proxy(fib, vni, ns->target_ip, eth->src, true);
        if (a.kind == K::unknown) {
          d.ip_miss = ns->target_ip;
        } else if (a.kind != K::none) {
          // A route's next hop forwards: it advertises itself as a router.
          const std::size_t n = build_ipv6_na(reply, eth->src, *ns, a.mac, a.kind == K::route);
          if (n != 0) {
            ++(a.kind == K::endpoint ? counters_.nd_proxied : counters_.route_proxied);
            d.kind = TapDecision::Kind::reply_local;
            d.reply_len = n;
            return d;
          }
        }
      }
    }
  } else {
    const auto remote = fib.remote_macs.find(MacKey{vni, eth->dst});
    if (remote != fib.remote_macs.end()) {
      ++counters_.tx_unicast;
      d.kind = TapDecision::Kind::unicast;
      d.to = remote->second.owner;
      remote->second.mark_used();
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

ForwarderCounters& ForwarderCounters::operator+=(const ForwarderCounters& o) {
  tx_unicast += o.tx_unicast;
  tx_flood += o.tx_flood;
  arp_proxied += o.arp_proxied;
  nd_proxied += o.nd_proxied;
  route_proxied += o.route_proxied;
  rx_delivered += o.rx_delivered;
  drop_malformed += o.drop_malformed;
  drop_src_not_local += o.drop_src_not_local;
  drop_vni_not_allowed += o.drop_vni_not_allowed;
  drop_src_not_owner += o.drop_src_not_owner;
  src_unresolved += o.src_unresolved;
  drop_vni_not_served += o.drop_vni_not_served;
  drop_no_route += o.drop_no_route;
  drop_dst_local += o.drop_dst_local;
  drop_flood_limited += o.drop_flood_limited;
  return *this;
}

std::optional<NodeId> Forwarder::unicast_owner(std::uint32_t vni, ByteSpan frame) {
  const std::optional<EthView> eth = parse_eth(frame);
  if (!eth || eth->is_multicast()) return std::nullopt;
  const Fib& fib = *fib_;
  const auto remote = fib.remote_macs.find(MacKey{vni, eth->dst});
  if (remote == fib.remote_macs.end()) return std::nullopt;
  if (!fib.local_macs.contains(MacKey{vni, eth->src})) return std::nullopt;
  ++counters_.tx_unicast;
  remote->second.mark_used();
  return remote->second.owner;
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
  if (owner == fib.remote_macs.end()) {
    ++counters_.src_unresolved;
    TunnelDecision d;
    d.src_unknown = true;
    d.src_mac = eth->src;
    return d;
  }
  if (owner->second.owner != sender) {
    ++counters_.drop_src_not_owner;
    return {};
  }
  owner->second.mark_used();
  ++counters_.rx_delivered;
  return TunnelDecision{TunnelDecision::Kind::deliver};
}

void Forwarder::refill(FloodBucket& b, std::uint64_t now_ms) const {
  if (now_ms <= b.last_ms) return;  // same millisecond, or the clock went back
  const std::uint64_t elapsed_ms = now_ms - b.last_ms;
  b.last_ms = now_ms;
  if (elapsed_ms >= flood_full_ms_) {
    b.tokens_milli = flood_cap_milli_;  // also keeps elapsed_ms * rate from overflowing
    return;
  }
  b.tokens_milli =
      std::min(flood_cap_milli_, b.tokens_milli + elapsed_ms * flood_limit_.frames_per_s);
}

Forwarder::FloodBucket& Forwarder::flood_bucket(std::uint32_t vni, std::uint64_t now_ms) {
  // Fibonacci hashing spreads consecutive VNIs; linear probing, slots never emptied, so a
  // VNI's bucket always lies before the first unused slot of its probe sequence.
  const std::size_t home =
      static_cast<std::uint32_t>(vni * 2654435769u) >> (32 - kFloodBucketsBits);
  FloodBucket* free_slot = nullptr;
  for (std::size_t i = 0; i < kFloodProbeMax; ++i) {
    FloodBucket& b = flood_buckets_[(home + i) % kFloodBucketsMax];
    if (!b.used) {
      if (free_slot == nullptr) free_slot = &b;
      break;
    }
    if (b.vni == vni) return b;
    // A bucket idle long enough to be full behaves exactly like a new one.
    const bool refilled = now_ms >= b.last_ms && now_ms - b.last_ms >= flood_full_ms_;
    if (refilled && free_slot == nullptr) free_slot = &b;
  }
  if (free_slot == nullptr) return flood_overflow_;
  *free_slot = FloodBucket{now_ms, flood_cap_milli_, vni, true};
  return *free_slot;
}

bool Forwarder::allow_flood(std::uint32_t vni, std::uint64_t now_ms) {
  if (flood_limit_.frames_per_s == 0) return true;
  FloodBucket& b = flood_bucket(vni, now_ms);
  refill(b, now_ms);
  if (b.tokens_milli < kMilliPerFrame) {
    ++counters_.drop_flood_limited;
    return false;
  }
  b.tokens_milli -= kMilliPerFrame;
  return true;
}

}  // namespace meshd::dp
