#include <doctest/doctest.h>

#include "dataplane/frame.hpp"
#include "dataplane/frames_for_test.hpp"

namespace meshd::dp {
namespace {

using test::arp_payload;
using test::arp_request;
using test::eth_frame;
using test::ip4;

constexpr MacAddr kA{0x02, 0, 0, 0, 0, 0x0a};
constexpr MacAddr kB{0x02, 0, 0, 0, 0, 0x0b};

TEST_CASE("parse_eth: untagged frame") {
  const auto f = eth_frame(kB, kA, kEtherTypeIpv4, {1, 2, 3});
  const auto v = parse_eth(f);
  REQUIRE(v);
  CHECK(v->dst == kB);
  CHECK(v->src == kA);
  CHECK(v->ethertype == kEtherTypeIpv4);
  CHECK_FALSE(v->vlan_tagged);
  REQUIRE(v->payload.size() == 3);
  CHECK(v->payload.data() == f.data() + 14);  // a view, not a copy
  CHECK_FALSE(v->is_multicast());
  CHECK_FALSE(v->is_broadcast());
}

TEST_CASE("parse_eth: every truncation of the header is rejected") {
  const auto f = eth_frame(kB, kA, kEtherTypeIpv4, {});
  REQUIRE(f.size() == kEthHeaderLen);
  for (std::size_t n = 0; n < kEthHeaderLen; ++n) {
    CHECK_FALSE(parse_eth(ByteSpan(f.data(), n)));
  }
  const auto v = parse_eth(f);
  REQUIRE(v);
  CHECK(v->payload.empty());
}

TEST_CASE("parse_eth: one 802.1Q tag") {
  const auto f = eth_frame(kB, kA, kEtherTypeArp, {9, 9}, 0x0123);
  for (std::size_t n = 0; n < 18; ++n) CHECK_FALSE(parse_eth(ByteSpan(f.data(), n)));
  const auto v = parse_eth(f);
  REQUIRE(v);
  CHECK(v->vlan_tagged);
  CHECK(v->vlan_tci == 0x0123);
  CHECK(v->ethertype == kEtherTypeArp);
  CHECK(v->payload.size() == 2);
  CHECK(v->payload.data() == f.data() + 18);
}

TEST_CASE("parse_eth: broadcast and multicast") {
  const auto b = parse_eth(eth_frame(test::kBroadcast, kA, kEtherTypeArp, {}));
  REQUIRE(b);
  CHECK(b->is_broadcast());
  CHECK(b->is_multicast());
  const auto m = parse_eth(eth_frame(MacAddr{0x33, 0x33, 0, 0, 0, 1}, kA, kEtherTypeIpv6, {}));
  REQUIRE(m);
  CHECK_FALSE(m->is_broadcast());
  CHECK(m->is_multicast());
}

TEST_CASE("parse_arp: Ethernet/IPv4 request, truncations, other hardware") {
  const auto p = arp_payload(1, kA, ip4(10, 0, 0, 1), MacAddr{}, ip4(10, 0, 0, 2));
  REQUIRE(p.size() == kArpLen);
  const auto a = parse_arp(p);
  REQUIRE(a);
  CHECK(a->op == 1);
  CHECK(a->sender_mac == kA);
  CHECK(a->sender_ip == ip4(10, 0, 0, 1));
  CHECK(a->target_mac == MacAddr{});
  CHECK(a->target_ip == ip4(10, 0, 0, 2));
  for (std::size_t n = 0; n < kArpLen; ++n) CHECK_FALSE(parse_arp(ByteSpan(p.data(), n)));

  auto padded = p;
  padded.resize(46, 0);  // minimum Ethernet payload: padding must not matter
  CHECK(parse_arp(padded));

  auto bad = p;
  bad[1] = 6;  // IEEE 802 hardware type
  CHECK_FALSE(parse_arp(bad));
  bad = p;
  bad[2] = 0x86;  // protocol IPv6
  bad[3] = 0xdd;
  CHECK_FALSE(parse_arp(bad));
  bad = p;
  bad[4] = 8;  // hardware length
  CHECK_FALSE(parse_arp(bad));
  bad = p;
  bad[5] = 16;  // protocol length
  CHECK_FALSE(parse_arp(bad));
}

TEST_CASE("build_arp_reply: exact bytes") {
  const auto req = parse_arp(arp_payload(1, kA, ip4(10, 0, 0, 1), MacAddr{}, ip4(10, 0, 0, 2)));
  REQUIRE(req);
  std::array<std::uint8_t, 64> out{};
  const std::size_t n = build_arp_reply(out, *req, kB);
  REQUIRE(n == 42);
  const std::array<std::uint8_t, 42> expected{
      0x02, 0, 0, 0, 0, 0x0a,  // to the requester
      0x02, 0, 0, 0, 0, 0x0b,  // from the answered MAC
      0x08, 0x06,              // ARP
      0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02,  // Ethernet/IPv4, reply
      0x02, 0, 0, 0, 0, 0x0b, 10, 0, 0, 2,       // sender: 10.0.0.2 is at B
      0x02, 0, 0, 0, 0, 0x0a, 10, 0, 0, 1,       // target: the requester
  };
  CHECK(std::equal(expected.begin(), expected.end(), out.begin()));
  CHECK(out[42] == 0);  // nothing written past the frame

  // Round trip through the parsers.
  const auto eth = parse_eth(ByteSpan(out.data(), n));
  REQUIRE(eth);
  const auto rep = parse_arp(eth->payload);
  REQUIRE(rep);
  CHECK(rep->op == 2);
  CHECK(rep->sender_mac == kB);
  CHECK(rep->target_ip == ip4(10, 0, 0, 1));

  std::array<std::uint8_t, 41> small{};
  CHECK(build_arp_reply(small, *req, kB) == 0);
}

}  // namespace
}  // namespace meshd::dp
