#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "dataplane/forwarder.hpp"
#include "dataplane/frame.hpp"
#include "dataplane/frames_for_test.hpp"

// Counts heap allocations so the tests can assert the data path makes none.
// g++ 12 at -O2 cannot see that these replacements pair malloc with free and warns
// on inlined std::allocator calls; the pairing is correct by construction.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<std::size_t> g_allocs{0};
}  // namespace

void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace meshd::dp {
namespace {

using test::arp_request;
using test::eth_frame;
using test::ip4;
using test::kBroadcast;

constexpr std::uint32_t kVni = 100;
constexpr std::uint32_t kLonelyVni = 200;  // served, but no other members
constexpr MacAddr kLocal{0x02, 0, 0, 0, 1, 1};
constexpr MacAddr kLocal2{0x02, 0, 0, 0, 1, 2};
constexpr MacAddr kRemote{0x02, 0, 0, 0, 2, 1};
constexpr MacAddr kUnknown{0x02, 0, 0, 0, 9, 9};
const NodeId kNodeA = [] { NodeId n{}; n[0] = 0xa; return n; }();
const NodeId kNodeB = [] { NodeId n{}; n[0] = 0xb; return n; }();

FibPtr make_fib() {
  auto f = std::make_shared<Fib>();
  f->local_macs.insert({kVni, kLocal});
  f->local_macs.insert({kVni, kLocal2});
  f->local_macs.insert({kLonelyVni, kLocal});
  f->remote_macs[{kVni, kRemote}] = RemoteEndpoint{kNodeA};
  f->ip_to_mac[{kVni, ip4(10, 0, 0, 1)}] = kLocal;
  f->ip_to_mac[{kVni, ip4(10, 0, 0, 2)}] = kRemote;
  f->vni_members[kVni] = {kNodeA, kNodeB};
  return f;
}

crypto::CertChain chain_for(std::vector<std::uint32_t> vnis, bool all = false) {
  crypto::CertChain c;
  c.node.node_id = kNodeA;
  c.node.scope.all_vnis = all;
  c.node.scope.vnis = std::move(vnis);
  return c;
}

struct Harness {
  Forwarder fwd;
  std::array<std::uint8_t, 64> reply{};
  Harness() { fwd.publish(make_fib()); }
  TapDecision tap(std::uint32_t vni, const std::vector<std::uint8_t>& f) {
    return fwd.on_tap_frame(vni, f, reply);
  }
};

bool counters_equal(const ForwarderCounters& a, const ForwarderCounters& b) {
  return a.tx_unicast == b.tx_unicast && a.tx_flood == b.tx_flood &&
         a.arp_proxied == b.arp_proxied && a.rx_delivered == b.rx_delivered &&
         a.drop_malformed == b.drop_malformed && a.drop_src_not_local == b.drop_src_not_local &&
         a.drop_vni_not_allowed == b.drop_vni_not_allowed &&
         a.drop_src_not_owner == b.drop_src_not_owner &&
         a.drop_vni_not_served == b.drop_vni_not_served && a.drop_no_route == b.drop_no_route &&
         a.drop_dst_local == b.drop_dst_local;
}

TEST_CASE("forwarder tap: malformed frames are dropped and counted") {
  Harness h;
  for (std::size_t n = 0; n < kEthHeaderLen; ++n) {
    std::vector<std::uint8_t> f(n, 0x02);
    CHECK(h.tap(kVni, f).kind == TapDecision::Kind::drop);
  }
  ForwarderCounters want;
  want.drop_malformed = kEthHeaderLen;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("forwarder tap: source MAC must be a local endpoint of that VNI") {
  Harness h;
  // A remote endpoint's MAC coming out of our TAP is a spoof.
  CHECK(h.tap(kVni, eth_frame(kRemote, kRemote, kEtherTypeIpv4, {})).kind ==
        TapDecision::Kind::drop);
  // Local in VNI 100 only.
  CHECK(h.tap(300, eth_frame(kRemote, kLocal, kEtherTypeIpv4, {})).kind ==
        TapDecision::Kind::drop);
  ForwarderCounters want;
  want.drop_src_not_local = 2;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("forwarder tap: ARP request for a remote endpoint is answered locally") {
  Harness h;
  const auto req = arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 0, 0, 2));
  const TapDecision d = h.tap(kVni, req);
  REQUIRE(d.kind == TapDecision::Kind::reply_local);
  REQUIRE(d.reply_len == 42);
  std::array<std::uint8_t, 64> expected{};
  const auto parsed = parse_arp(parse_eth(req)->payload);
  REQUIRE(build_arp_reply(expected, *parsed, kRemote) == 42);
  CHECK(h.reply == expected);
  ForwarderCounters want;
  want.arp_proxied = 1;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("forwarder tap: ARP requests that cannot be answered are flooded") {
  Harness h;
  // Target is a local endpoint: it answers itself; the request floods like a bridge's.
  TapDecision d = h.tap(kVni, arp_request(kLocal2, ip4(10, 0, 0, 5), ip4(10, 0, 0, 1)));
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.arp_miss_ip.family == 0);
  // Unknown target: flooded, and reported for a map-request.
  d = h.tap(kVni, arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 0, 0, 9)));
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.arp_miss_ip == ip4(10, 0, 0, 9));
  // VLAN-tagged: the reply would lose the tag.
  d = h.tap(kVni, arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 0, 0, 2), 7));
  CHECK(d.kind == TapDecision::Kind::flood);
  // Reply buffer too small: still delivered by flooding.
  const auto req = arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 0, 0, 2));
  std::array<std::uint8_t, 20> tiny{};
  d = h.fwd.on_tap_frame(kVni, req, tiny);
  CHECK(d.kind == TapDecision::Kind::flood);
  // Truncated ARP body: not ARP we understand, still a valid broadcast.
  auto cut = req;
  cut.resize(kEthHeaderLen + 10);
  d = h.tap(kVni, cut);
  CHECK(d.kind == TapDecision::Kind::flood);
  ForwarderCounters want;
  want.tx_flood = 5;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("forwarder tap: broadcast and multicast flood to the VNI's members") {
  Harness h;
  TapDecision d = h.tap(kVni, eth_frame(kBroadcast, kLocal, kEtherTypeIpv4, {1}));
  REQUIRE(d.kind == TapDecision::Kind::flood);
  REQUIRE(d.flood != nullptr);
  CHECK(d.flood == &h.fwd.fib()->vni_members.at(kVni));
  CHECK(d.flood->size() == 2);
  CHECK_FALSE(d.mac_miss);
  d = h.tap(kVni, eth_frame(MacAddr{0x33, 0x33, 0xff, 0, 0, 1}, kLocal, kEtherTypeIpv6, {}));
  CHECK(d.kind == TapDecision::Kind::flood);
  // No members to replicate to.
  d = h.tap(kLonelyVni, eth_frame(kBroadcast, kLocal, kEtherTypeIpv4, {}));
  CHECK(d.kind == TapDecision::Kind::drop);
  ForwarderCounters want;
  want.tx_flood = 2;
  want.drop_no_route = 1;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("forwarder tap: unicast") {
  Harness h;
  TapDecision d = h.tap(kVni, eth_frame(kRemote, kLocal, kEtherTypeIpv4, {1, 2}));
  CHECK(d.kind == TapDecision::Kind::unicast);
  CHECK(d.to == kNodeA);
  // Unknown destination: flooded like VXLAN unknown unicast, and reported.
  d = h.tap(kVni, eth_frame(kUnknown, kLocal, kEtherTypeIpv4, {}));
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.mac_miss);
  CHECK(d.miss_mac == kUnknown);
  // To another local endpoint: the bridge already switched it.
  d = h.tap(kVni, eth_frame(kLocal2, kLocal, kEtherTypeIpv4, {}));
  CHECK(d.kind == TapDecision::Kind::drop);
  // Unknown destination and nobody to flood to.
  d = h.tap(kLonelyVni, eth_frame(kUnknown, kLocal, kEtherTypeIpv4, {}));
  CHECK(d.kind == TapDecision::Kind::drop);
  CHECK(d.mac_miss);
  // The remote MAC is known in VNI 100 only.
  d = h.tap(kLonelyVni, eth_frame(kRemote, kLocal, kEtherTypeIpv4, {}));
  CHECK(d.kind == TapDecision::Kind::drop);
  ForwarderCounters want;
  want.tx_unicast = 1;
  want.tx_flood = 1;
  want.drop_dst_local = 1;
  want.drop_no_route = 2;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("forwarder tunnel: every check in order") {
  Harness h;
  const auto chain = chain_for({kVni, kLonelyVni});
  const auto from_remote = eth_frame(kLocal, kRemote, kEtherTypeIpv4, {1});
  using K = TunnelDecision::Kind;

  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain, kVni, true, ByteSpan(from_remote.data(), 13)).kind ==
        K::drop);
  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain, 300, true, from_remote).kind == K::drop);
  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain, kVni, false, from_remote).kind == K::drop);
  // Right VNI, but the MAC belongs to node A, not B.
  CHECK(h.fwd.on_tunnel_frame(kNodeB, chain, kVni, true, from_remote).kind == K::drop);
  // Unknown source MAC.
  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain, kVni, true,
                              eth_frame(kLocal, kUnknown, kEtherTypeIpv4, {}))
            .kind == K::drop);
  // Known MAC, wrong VNI.
  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain, kLonelyVni, true, from_remote).kind == K::drop);
  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain, kVni, true, from_remote).kind == K::deliver);
  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain_for({}, true), kVni, true, from_remote).kind ==
        K::deliver);
  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain_for({}), kVni, true, from_remote).kind == K::drop);

  ForwarderCounters want;
  want.drop_malformed = 1;
  want.drop_vni_not_allowed = 2;
  want.drop_vni_not_served = 1;
  want.drop_src_not_owner = 3;
  want.rx_delivered = 2;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("forwarder: publish swaps the snapshot") {
  Harness h;
  auto f = std::make_shared<Fib>(*h.fwd.fib());
  f->remote_macs[{kVni, kUnknown}] = RemoteEndpoint{kNodeB};
  h.fwd.publish(f);
  const TapDecision d = h.tap(kVni, eth_frame(kUnknown, kLocal, kEtherTypeIpv4, {}));
  CHECK(d.kind == TapDecision::Kind::unicast);
  CHECK(d.to == kNodeB);
}

TEST_CASE("forwarder: no heap allocation per packet") {
  Harness h;
  const auto chain = chain_for({kVni});
  const std::vector<std::vector<std::uint8_t>> frames = {
      arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 0, 0, 2)),
      arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 0, 0, 9)),
      eth_frame(kBroadcast, kLocal, kEtherTypeIpv4, {1}),
      eth_frame(kRemote, kLocal, kEtherTypeIpv4, {1}),
      eth_frame(kUnknown, kLocal, kEtherTypeIpv4, {1}),
      eth_frame(kLocal2, kLocal, kEtherTypeIpv4, {1}),
      eth_frame(kRemote, kRemote, kEtherTypeIpv4, {1}),
      std::vector<std::uint8_t>(5, 0),
  };
  const auto from_remote = eth_frame(kLocal, kRemote, kEtherTypeIpv4, {1});
  const std::size_t before = g_allocs.load();
  for (int round = 0; round < 100; ++round) {
    for (const auto& f : frames) (void)h.tap(kVni, f);
    (void)h.fwd.on_tunnel_frame(kNodeA, chain, kVni, true, from_remote);
    (void)h.fwd.on_tunnel_frame(kNodeB, chain, kVni, true, from_remote);
  }
  CHECK(g_allocs.load() == before);
}

}  // namespace
}  // namespace meshd::dp
