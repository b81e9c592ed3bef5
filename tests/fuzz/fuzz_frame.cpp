// Frame parsers and forwarding decisions on arbitrary bytes. The first input byte picks
// the VNI, the sender and whether the VNI is served; the rest is the frame. Also: NS
// parsing and NA building, longest-prefix route lookup, and the flood budget.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "dataplane/forwarder.hpp"
#include "dataplane/frame.hpp"

namespace {

using meshd::ByteSpan;
using meshd::IpAddr;
using meshd::MacAddr;
using namespace meshd::dp;

constexpr MacAddr kLocal{0x02, 0, 0, 0, 1, 1};
constexpr MacAddr kRemote{0x02, 0, 0, 0, 2, 1};
constexpr MacAddr kGateway{0x02, 0, 0, 0, 3, 1};

void check(bool ok) {
  if (!ok) std::abort();
}

IpAddr ip(std::string_view s) { return IpAddr::parse(s).value(); }
meshd::IpPrefix prefix(std::string_view s) { return meshd::IpPrefix::parse(s).value(); }

// RFC 1071 sum of an IPv6 packet's ICMPv6 message with its pseudo-header: 0 if right.
// Written apart from frame.cpp's so the two check each other.
std::uint16_t icmpv6_residue(const std::uint8_t* ip6, std::size_t payload_len) {
  std::uint32_t sum = 0;
  auto add = [&sum](const std::uint8_t* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) sum += (i % 2 == 0) ? p[i] << 8 : p[i];
  };
  add(ip6 + 8, 32);  // source and destination
  sum += static_cast<std::uint32_t>(payload_len) + 58;
  add(ip6 + 40, payload_len);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

NodeId node(std::uint8_t b) {
  NodeId n{};
  n[0] = b;
  return n;
}

struct World {
  Forwarder fwd;
  meshd::crypto::CertChain chain;
  World() {
    auto f = std::make_shared<Fib>();
    for (std::uint32_t vni : {1u, 2u}) {
      f->local_macs.insert({vni, kLocal});
      f->remote_macs[{vni, kRemote}] = RemoteEndpoint{node(1)};
      f->ip_to_mac[{vni, IpAddr::v4(0x0a000002)}] = kRemote;
      f->ip_to_mac[{vni, IpAddr::v4(0x0a000001)}] = kLocal;
      f->ip_to_mac[{vni, ip("fd00::2")}] = kRemote;
      f->ip_to_mac[{vni, ip("fd00::1")}] = kLocal;
      f->remote_macs[{vni, kGateway}] = RemoteEndpoint{node(2)};
      f->routes[vni] = {RouteEntry{prefix("10.0.0.0/8"), node(2), kGateway},
                        RouteEntry{prefix("10.1.0.0/16"), node(1), kRemote},
                        RouteEntry{prefix("0.0.0.0/0"), node(2), kGateway},
                        RouteEntry{prefix("fd00::/60"), node(2), kGateway},
                        RouteEntry{prefix("fd00::/7"), node(1), kRemote}};
    }
    sort_routes(*f);
    f->vni_members[1] = {node(1), node(2)};
    fwd.publish(f);
    chain.node.scope.vnis = {1, 3};
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World w;
  if (size == 0) return 0;
  const std::uint8_t sel = data[0];
  const ByteSpan frame(data + 1, size - 1);

  if (const auto eth = parse_eth(frame)) {
    // The payload view stays inside the input.
    check(eth->payload.data() >= frame.data());
    check(eth->payload.data() + eth->payload.size() == frame.data() + frame.size());
    if (const auto arp = parse_arp(eth->payload)) {
      std::array<std::uint8_t, 64> out{};
      const std::size_t n = build_arp_reply(out, *arp, kRemote);
      check(n == kEthHeaderLen + kArpLen);
      const auto back = parse_eth(ByteSpan(out.data(), n));
      check(back.has_value());
      const auto rep = parse_arp(back->payload);
      check(rep && rep->op == 2 && rep->target_ip == arp->sender_ip &&
            rep->sender_ip == arp->target_ip && rep->target_mac == arp->sender_mac);
    }
  }

  if (const auto eth = parse_eth(frame)) {
    if (const auto ns = parse_ipv6_ns(eth->payload)) {
      check(ns->src_ip.is_v6() && ns->dst_ip.is_v6() && ns->target_ip.is_v6());
      check(ns->target_ip.bytes[0] != 0xff);
      check(!ns->is_dad() || !ns->has_source_lladdr);
      std::array<std::uint8_t, kNaFrameLen> out{};
      const std::size_t n = build_ipv6_na(out, eth->src, *ns, kRemote, (sel & 1) != 0);
      check(n == (ns->is_dad() ? 0 : kNaFrameLen));
      if (n != 0) {
        const std::uint8_t* ip6 = out.data() + kEthHeaderLen;
        check(icmpv6_residue(ip6, n - kEthHeaderLen - kIpv6HeaderLen) == 0);
        check(std::equal(ns->target_ip.bytes.begin(), ns->target_ip.bytes.end(), ip6 + 8));
        check(std::equal(ns->src_ip.bytes.begin(), ns->src_ip.bytes.end(), ip6 + 24));
      }
    }
  }

  // Longest-prefix match agrees with a brute-force scan, for an address from the input.
  if (frame.size() >= 16) {
    IpAddr a;
    a.family = (sel & 0x08) != 0 ? 6 : 4;
    std::copy_n(frame.begin(), 16, a.bytes.begin());
    if (a.is_v4()) std::fill(a.bytes.begin() + 4, a.bytes.end(), 0);
    const RouteEntry* r = w.fwd.fib()->route_for(1, a);
    int best_len = -1;
    for (const auto& e : w.fwd.fib()->routes.at(1)) {
      if (prefix_contains(e.prefix, a) && e.prefix.len > best_len) best_len = e.prefix.len;
    }
    check(r == nullptr ? best_len < 0
                       : (prefix_contains(r->prefix, a) && r->prefix.len == best_len));
  }

  const std::uint32_t vni = 1u + (sel & 0x03);  // 1..4: served, lonely, unknown
  std::array<std::uint8_t, kReplyFrameMax> reply{};
  const TapDecision d = w.fwd.on_tap_frame(vni, frame, reply);
  check(d.reply_len <= reply.size());
  check((d.kind == TapDecision::Kind::flood) == (d.flood != nullptr));
  check(d.kind != TapDecision::Kind::reply_local || d.reply_len == kArpReplyFrameLen ||
        d.reply_len == kNaFrameLen);
  if (d.kind == TapDecision::Kind::flood) {
    // The flood budget, on a clock the input moves.
    static std::uint64_t now_ms = 0;
    now_ms += sel >> 6;
    (void)w.fwd.allow_flood(vni, now_ms);
  }

  const TunnelDecision t =
      w.fwd.on_tunnel_frame(node(sel >> 4 & 0x03), w.chain, vni, (sel & 0x04) != 0, frame);
  // Delivery needs an allowed, served VNI and the sender owning the source MAC.
  check(t.kind == TunnelDecision::Kind::drop || (vni == 1 && (sel & 0x04) != 0));
  return 0;
}
