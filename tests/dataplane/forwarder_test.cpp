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
using test::icmpv6_checksum_ok_for_test;
using test::ip4;
using test::ip6;
using test::kBroadcast;
using test::ns_frame;
using test::NsSpec;

constexpr std::uint32_t kVni = 100;
constexpr std::uint32_t kLonelyVni = 200;  // served, but no other members
constexpr MacAddr kLocal{0x02, 0, 0, 0, 1, 1};
constexpr MacAddr kLocal2{0x02, 0, 0, 0, 1, 2};
constexpr MacAddr kRemote{0x02, 0, 0, 0, 2, 1};
constexpr MacAddr kUnknown{0x02, 0, 0, 0, 9, 9};
constexpr MacAddr kGateway{0x02, 0, 0, 0, 3, 1};   // remote next hop, on node A
constexpr MacAddr kGateway2{0x02, 0, 0, 0, 3, 2};  // remote next hop, on node B
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
  f->ip_to_mac[{kVni, ip6("fd00::1")}] = kLocal;
  f->ip_to_mac[{kVni, ip6("fd00::2")}] = kRemote;
  f->vni_members[kVni] = {kNodeA, kNodeB};
  return f;
}

IpPrefix pfx(std::string_view s) {
  auto r = IpPrefix::parse(s);
  REQUIRE(r.ok());
  return r.value();
}

// make_fib() plus routed prefixes, some covering known endpoints.
FibPtr make_routed_fib() {
  auto f = std::make_shared<Fib>(*make_fib());
  f->remote_macs[{kVni, kGateway}] = RemoteEndpoint{kNodeA};
  f->remote_macs[{kVni, kGateway2}] = RemoteEndpoint{kNodeB};
  f->routes[kVni] = {
      RouteEntry{pfx("10.1.0.0/16"), kNodeA, kGateway},
      RouteEntry{pfx("10.1.2.0/24"), kNodeB, kGateway2},
      RouteEntry{pfx("10.0.0.0/24"), kNodeA, kGateway},  // covers 10.0.0.1 and .2
      RouteEntry{pfx("fd00::/64"), kNodeA, kGateway},    // covers fd00::1 and ::2
      RouteEntry{pfx("fd00:1::/64"), kNodeB, kGateway2},
      RouteEntry{pfx("192.168.0.0/16"), NodeId{}, kLocal2},  // this node is the gateway
  };
  sort_routes(*f);
  return f;
}

NsSpec ns_for(const IpAddr& src, const IpAddr& target) {
  NsSpec s;
  s.src = src;
  s.target = target;
  s.sllao = kLocal;
  return s;
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
  std::array<std::uint8_t, kReplyFrameMax> reply{};
  explicit Harness(FibPtr fib = make_fib()) { fwd.publish(std::move(fib)); }
  TapDecision tap(std::uint32_t vni, const std::vector<std::uint8_t>& f) {
    return fwd.on_tap_frame(vni, f, reply);
  }
};

// Every counter, including ones added later (ForwarderCounters compares all members).
bool counters_equal(const ForwarderCounters& a, const ForwarderCounters& b) { return a == b; }

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
  std::array<std::uint8_t, kReplyFrameMax> expected{};
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
  CHECK(d.ip_miss.family == 0);
  // Unknown target: flooded, and reported for a map-request.
  d = h.tap(kVni, arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 0, 0, 9)));
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.ip_miss == ip4(10, 0, 0, 9));
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
  // Unknown source MAC: dropped, reported so the agent can resolve it and retry.
  const auto unknown = h.fwd.on_tunnel_frame(kNodeA, chain, kVni, true,
                                             eth_frame(kLocal, kUnknown, kEtherTypeIpv4, {}));
  CHECK(unknown.kind == K::drop);
  CHECK(unknown.src_unknown);
  CHECK(unknown.src_mac == kUnknown);
  // Known MAC, wrong VNI (not in the FIB for that VNI: unknown there too).
  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain, kLonelyVni, true, from_remote).kind == K::drop);
  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain, kVni, true, from_remote).kind == K::deliver);
  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain_for({}, true), kVni, true, from_remote).kind ==
        K::deliver);
  CHECK(h.fwd.on_tunnel_frame(kNodeA, chain_for({}), kVni, true, from_remote).kind == K::drop);

  ForwarderCounters want;
  want.drop_malformed = 1;
  want.drop_vni_not_allowed = 2;
  want.drop_vni_not_served = 1;
  want.drop_src_not_owner = 1;
  want.src_unresolved = 2;
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

TEST_CASE("forwarder tap: NS for a remote endpoint is answered with an NA") {
  Harness h;
  const auto req = ns_frame(kLocal, ns_for(ip6("fd00::1"), ip6("fd00::2")));
  const TapDecision d = h.tap(kVni, req);
  REQUIRE(d.kind == TapDecision::Kind::reply_local);
  REQUIRE(d.reply_len == 86);
  std::array<std::uint8_t, kReplyFrameMax> expected{};
  const auto ns = parse_ipv6_ns(parse_eth(req)->payload);
  REQUIRE(ns);
  REQUIRE(build_ipv6_na(expected, kLocal, *ns, kRemote, false) == 86);
  CHECK(h.reply == expected);
  // Independently of frame.cpp: addressed right, checksum right, no Router flag.
  const auto eth = parse_eth(ByteSpan(h.reply.data(), d.reply_len));
  REQUIRE(eth);
  CHECK(eth->dst == kLocal);
  CHECK(eth->src == kRemote);
  CHECK(icmpv6_checksum_ok_for_test(h.reply.data() + kEthHeaderLen));
  CHECK(h.reply[kEthHeaderLen + 40] == 136);
  CHECK(h.reply[kEthHeaderLen + 44] == 0x60);
  ForwarderCounters want;
  want.nd_proxied = 1;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("forwarder tap: NS that cannot be answered is flooded") {
  Harness h;
  // Target is a local endpoint: it answers itself.
  TapDecision d = h.tap(kVni, ns_frame(kLocal2, ns_for(ip6("fd00::5"), ip6("fd00::1"))));
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.ip_miss.family == 0);
  // Unknown target: flooded, and reported for a map-request.
  d = h.tap(kVni, ns_frame(kLocal, ns_for(ip6("fd00::1"), ip6("fd00::9"))));
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.ip_miss == ip6("fd00::9"));
  // Duplicate address detection: left to the normal multicast path, not a miss.
  NsSpec dad = ns_for(ip6("::"), ip6("fd00::2"));
  dad.sllao.reset();
  d = h.tap(kVni, ns_frame(kLocal, dad));
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.ip_miss.family == 0);
  dad.target = ip6("fd00::9");  // an address nobody has: still no map-request
  d = h.tap(kVni, ns_frame(kLocal, dad));
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.ip_miss.family == 0);
  // VLAN-tagged: the reply would lose the tag.
  const auto req = ns_frame(kLocal, ns_for(ip6("fd00::1"), ip6("fd00::2")));
  d = h.tap(kVni, ns_frame(kLocal, ns_for(ip6("fd00::1"), ip6("fd00::2")), 7));
  CHECK(d.kind == TapDecision::Kind::flood);
  // Reply buffer one byte short: still delivered by flooding.
  std::array<std::uint8_t, kReplyFrameMax - 1> small{};
  d = h.fwd.on_tap_frame(kVni, req, small);
  CHECK(d.kind == TapDecision::Kind::flood);
  // Corrupt checksum: not an NS we answer, still a valid multicast frame.
  auto bad = req;
  bad.back() ^= 0xff;
  d = h.tap(kVni, bad);
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.ip_miss.family == 0);
  // Unknown target where there is nobody to flood to: dropped, the miss still reported.
  d = h.tap(kLonelyVni, ns_frame(kLocal, ns_for(ip6("fd00::1"), ip6("fd00::9"))));
  CHECK(d.kind == TapDecision::Kind::drop);
  CHECK(d.ip_miss == ip6("fd00::9"));
  ForwarderCounters want;
  want.tx_flood = 7;
  want.drop_no_route = 1;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("forwarder tap: addresses in a route are answered with its next hop's MAC") {
  Harness h(make_routed_fib());
  std::array<std::uint8_t, kReplyFrameMax> expected{};
  // In 10.1.0.0/16.
  auto req = arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 1, 9, 9));
  TapDecision d = h.tap(kVni, req);
  REQUIRE(d.kind == TapDecision::Kind::reply_local);
  REQUIRE(d.reply_len == 42);
  REQUIRE(build_arp_reply(expected, *parse_arp(parse_eth(req)->payload), kGateway) == 42);
  CHECK(h.reply == expected);
  CHECK(d.ip_miss.family == 0);
  // In the longer 10.1.2.0/24 too: that one wins.
  req = arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 1, 2, 5));
  d = h.tap(kVni, req);
  REQUIRE(d.kind == TapDecision::Kind::reply_local);
  REQUIRE(build_arp_reply(expected, *parse_arp(parse_eth(req)->payload), kGateway2) == 42);
  CHECK(h.reply == expected);
  // IPv6: the NA comes from the gateway's MAC, with the Router flag.
  req = ns_frame(kLocal, ns_for(ip6("fd00::1"), ip6("fd00:1::5")));
  d = h.tap(kVni, req);
  REQUIRE(d.kind == TapDecision::Kind::reply_local);
  REQUIRE(d.reply_len == 86);
  h.reply.fill(0);
  REQUIRE(build_ipv6_na(expected, kLocal, *parse_ipv6_ns(parse_eth(req)->payload), kGateway2,
                        true) == 86);
  (void)h.tap(kVni, req);
  CHECK(h.reply == expected);
  CHECK(h.reply[kEthHeaderLen + 44] == 0xe0);
  CHECK(icmpv6_checksum_ok_for_test(h.reply.data() + kEthHeaderLen));
  // The next hop is local: still answered here; the bridge then switches locally.
  req = arp_request(kLocal, ip4(10, 0, 0, 1), ip4(192, 168, 3, 3));
  d = h.tap(kVni, req);
  REQUIRE(d.kind == TapDecision::Kind::reply_local);
  REQUIRE(build_arp_reply(expected, *parse_arp(parse_eth(req)->payload), kLocal2) == 42);
  CHECK(h.reply == expected);
  ForwarderCounters want;
  want.route_proxied = 5;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("forwarder tap: a known endpoint wins over a route covering it") {
  Harness h(make_routed_fib());
  // 10.0.0.2 and fd00::2 are remote endpoints inside routed prefixes.
  TapDecision d = h.tap(kVni, arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 0, 0, 2)));
  REQUIRE(d.kind == TapDecision::Kind::reply_local);
  CHECK(parse_eth(ByteSpan(h.reply.data(), d.reply_len))->src == kRemote);
  d = h.tap(kVni, ns_frame(kLocal, ns_for(ip6("fd00::1"), ip6("fd00::2"))));
  REQUIRE(d.kind == TapDecision::Kind::reply_local);
  CHECK(parse_eth(ByteSpan(h.reply.data(), d.reply_len))->src == kRemote);
  CHECK(h.reply[kEthHeaderLen + 44] == 0x60);  // an endpoint, not a router
  // 10.0.0.1 and fd00::1 are local endpoints: they answer themselves.
  d = h.tap(kVni, arp_request(kLocal2, ip4(10, 0, 0, 5), ip4(10, 0, 0, 1)));
  CHECK(d.kind == TapDecision::Kind::flood);
  d = h.tap(kVni, ns_frame(kLocal2, ns_for(ip6("fd00::5"), ip6("fd00::1"))));
  CHECK(d.kind == TapDecision::Kind::flood);
  // An address of that prefix that is no endpoint goes to the gateway.
  d = h.tap(kVni, arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 0, 0, 9)));
  REQUIRE(d.kind == TapDecision::Kind::reply_local);
  CHECK(parse_eth(ByteSpan(h.reply.data(), d.reply_len))->src == kGateway);
  ForwarderCounters want;
  want.arp_proxied = 1;
  want.nd_proxied = 1;
  want.route_proxied = 1;
  want.tx_flood = 2;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("forwarder tap: routes answer no probes, announcements, gateway or other VNI") {
  Harness h(make_routed_fib());
  // RFC 5227 probe (sender 0.0.0.0) and announcement (sender == target): the tenant is
  // checking or claiming the address; an answer would make it give the address up.
  TapDecision d = h.tap(kVni, arp_request(kLocal, ip4(0, 0, 0, 0), ip4(10, 1, 9, 9)));
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.ip_miss.family == 0);
  d = h.tap(kVni, arp_request(kLocal, ip4(10, 1, 9, 9), ip4(10, 1, 9, 9)));
  CHECK(d.kind == TapDecision::Kind::flood);
  // The gateway asking for an address behind itself.
  d = h.tap(kVni, arp_request(kLocal2, ip4(192, 168, 0, 1), ip4(192, 168, 3, 3)));
  CHECK(d.kind == TapDecision::Kind::flood);
  // Not covered: a miss, in either family.
  d = h.tap(kVni, arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 2, 0, 1)));
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.ip_miss == ip4(10, 2, 0, 1));
  d = h.tap(kVni, ns_frame(kLocal, ns_for(ip6("fd00::1"), ip6("fd00:2::1"))));
  CHECK(d.kind == TapDecision::Kind::flood);
  CHECK(d.ip_miss == ip6("fd00:2::1"));
  // Routes belong to their VNI.
  d = h.tap(kLonelyVni, arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 1, 9, 9)));
  CHECK(d.kind == TapDecision::Kind::drop);
  CHECK(d.ip_miss == ip4(10, 1, 9, 9));
  ForwarderCounters want;
  want.tx_flood = 5;
  want.drop_no_route = 1;
  CHECK(counters_equal(h.fwd.counters(), want));
}

TEST_CASE("allow_flood: the burst, then the rate") {
  Forwarder f(FloodLimit{10, 5});  // one frame per 100 ms, five at once
  for (int i = 0; i < 5; ++i) CHECK(f.allow_flood(1, 1000));
  CHECK_FALSE(f.allow_flood(1, 1000));
  CHECK_FALSE(f.allow_flood(1, 1099));  // 0.99 of a frame
  CHECK(f.allow_flood(1, 1100));
  CHECK_FALSE(f.allow_flood(1, 1100));
  // Another VNI has its own budget.
  for (int i = 0; i < 5; ++i) CHECK(f.allow_flood(2, 1100));
  CHECK_FALSE(f.allow_flood(2, 1100));
  // A long pause refills to the burst, no further.
  for (int i = 0; i < 5; ++i) CHECK(f.allow_flood(1, 1'000'000'000));
  CHECK_FALSE(f.allow_flood(1, 1'000'000'000));
  // A clock going back refills nothing.
  CHECK_FALSE(f.allow_flood(1, 5));
  // A partial refill stops at the burst too: 4 left + 3 refilled is still 5.
  CHECK(f.allow_flood(3, 2000));
  for (int i = 0; i < 5; ++i) CHECK(f.allow_flood(3, 2300));
  CHECK_FALSE(f.allow_flood(3, 2300));
  ForwarderCounters want;
  want.drop_flood_limited = 7;
  CHECK(counters_equal(f.counters(), want));
}

TEST_CASE("allow_flood: defaults, unlimited, zero burst") {
  Forwarder def;  // 200 frames/s, burst 400
  int allowed = 0;
  for (int i = 0; i < 1000; ++i) allowed += def.allow_flood(7, 0) ? 1 : 0;
  CHECK(allowed == 400);
  CHECK(def.counters().drop_flood_limited == 600);
  allowed = 0;
  for (int i = 0; i < 1000; ++i) allowed += def.allow_flood(7, 500) ? 1 : 0;
  CHECK(allowed == 100);

  Forwarder unlimited(FloodLimit{0, 0});
  for (int i = 0; i < 100'000; ++i) REQUIRE(unlimited.allow_flood(7, 0));
  CHECK(unlimited.counters().drop_flood_limited == 0);

  Forwarder one(FloodLimit{1, 0});  // a zero burst is taken as 1
  CHECK(one.allow_flood(7, 0));
  CHECK_FALSE(one.allow_flood(7, 999));
  CHECK(one.allow_flood(7, 1000));
}

TEST_CASE("allow_flood: the bucket table is bounded, shared overflow, no allocation") {
  Forwarder f(FloodLimit{1, 1});  // each VNI: one frame, then one per second
  const std::size_t before = g_allocs.load();
  // Many more VNIs than buckets, all active at once: those without a bucket share one.
  std::size_t allowed = 0;
  for (std::uint32_t vni = 0; vni < 3 * kFloodBucketsMax; ++vni) {
    allowed += f.allow_flood(vni, 0) ? 1 : 0;
  }
  CHECK(allowed <= kFloodBucketsMax + 1);
  CHECK(allowed >= kFloodBucketsMax * 3 / 4);  // the table is well used
  CHECK(f.counters().drop_flood_limited == 3 * kFloodBucketsMax - allowed);
  // A VNI that got a bucket keeps it: spent until the refill.
  CHECK_FALSE(f.allow_flood(0, 999));
  // After a full refill every bucket can be reused by new VNIs.
  allowed = 0;
  for (std::uint32_t vni = 1'000'000; vni < 1'000'000 + kFloodBucketsMax / 2; ++vni) {
    allowed += f.allow_flood(vni, 1000) ? 1 : 0;
  }
  CHECK(allowed >= kFloodBucketsMax / 2 * 3 / 4);
  CHECK(g_allocs.load() == before);
}

TEST_CASE("forwarder: no heap allocation per packet") {
  Harness h(make_routed_fib());
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
      ns_frame(kLocal, ns_for(ip6("fd00::1"), ip6("fd00::2"))),
      ns_frame(kLocal, ns_for(ip6("fd00::1"), ip6("fd00:1::5"))),
      ns_frame(kLocal, ns_for(ip6("fd00::1"), ip6("fd00:9::9"))),
      arp_request(kLocal, ip4(10, 0, 0, 1), ip4(10, 1, 2, 5)),
  };
  const auto from_remote = eth_frame(kLocal, kRemote, kEtherTypeIpv4, {1});
  const std::size_t before = g_allocs.load();
  for (int round = 0; round < 100; ++round) {
    for (const auto& f : frames) (void)h.tap(kVni, f);
    (void)h.fwd.on_tunnel_frame(kNodeA, chain, kVni, true, from_remote);
    (void)h.fwd.on_tunnel_frame(kNodeB, chain, kVni, true, from_remote);
    (void)h.fwd.allow_flood(kVni, static_cast<std::uint64_t>(round));
  }
  CHECK(g_allocs.load() == before);
}

}  // namespace
}  // namespace meshd::dp
