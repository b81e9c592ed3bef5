// IPv6 Neighbour Solicitation parsing and Neighbour Advertisement building (RFC 4861).
#include <doctest/doctest.h>

#include "dataplane/frame.hpp"
#include "dataplane/frames_for_test.hpp"

namespace meshd::dp {
namespace {

using test::icmpv6_checksum_ok_for_test;
using test::ip6;
using test::NsSpec;
using test::ns_packet;
using test::refresh_icmpv6_checksum;

constexpr MacAddr kA{0x02, 0, 0, 0, 0, 0x0a};
constexpr MacAddr kB{0x02, 0, 0, 0, 0, 0x0b};

NsSpec basic_ns() {
  NsSpec s;
  s.src = ip6("fd00::a");
  s.target = ip6("fd00::b");
  s.sllao = kA;
  return s;
}

TEST_CASE("parse_ipv6_ns: a solicitation with a source link-layer address") {
  const auto p = ns_packet(basic_ns());
  REQUIRE(p.size() == 40 + 24 + 8);
  // The checksum of this exact packet, worked out outside the project (Python).
  CHECK(p[42] == 0x7d);
  CHECK(p[43] == 0x73);
  const auto ns = parse_ipv6_ns(p);
  REQUIRE(ns);
  CHECK(ns->src_ip == ip6("fd00::a"));
  CHECK(ns->dst_ip == ip6("ff02::1:ff00:b"));
  CHECK(ns->target_ip == ip6("fd00::b"));
  CHECK(ns->has_source_lladdr);
  CHECK(ns->source_lladdr == kA);
  CHECK_FALSE(ns->is_dad());
}

TEST_CASE("parse_ipv6_ns: no options; unknown options skipped; padding ignored") {
  NsSpec s = basic_ns();
  s.sllao.reset();
  auto ns = parse_ipv6_ns(ns_packet(s));
  REQUIRE(ns);
  CHECK_FALSE(ns->has_source_lladdr);

  // A nonce option (14, RFC 3971) of one unit before the source link-layer address.
  s = basic_ns();
  s.options_before = {14, 1, 1, 2, 3, 4, 5, 6};
  ns = parse_ipv6_ns(ns_packet(s));
  REQUIRE(ns);
  CHECK(ns->has_source_lladdr);
  CHECK(ns->source_lladdr == kA);

  // Bytes past the payload length (Ethernet padding) are not part of the message.
  auto padded = ns_packet(basic_ns());
  padded.insert(padded.end(), {0xde, 0xad, 0xbe, 0xef});
  CHECK(parse_ipv6_ns(padded));
}

TEST_CASE("parse_ipv6_ns: every truncation is rejected") {
  const auto p = ns_packet(basic_ns());
  for (std::size_t n = 0; n < p.size(); ++n) {
    CHECK_FALSE(parse_ipv6_ns(ByteSpan(p.data(), n)));
  }
}

TEST_CASE("parse_ipv6_ns: each header check, with the checksum made right again") {
  const auto good = ns_packet(basic_ns());
  auto bad = good;
  bad[0] = 0x40;  // version 4
  refresh_icmpv6_checksum(bad);
  CHECK_FALSE(parse_ipv6_ns(bad));

  bad = good;
  bad[6] = 0;  // hop-by-hop options header: extension headers are not walked
  CHECK_FALSE(parse_ipv6_ns(bad));

  bad = good;
  bad[7] = 254;  // crossed a router
  CHECK_FALSE(parse_ipv6_ns(bad));

  bad = good;
  bad[40] = 136;  // an advertisement
  refresh_icmpv6_checksum(bad);
  CHECK_FALSE(parse_ipv6_ns(bad));

  bad = good;
  bad[41] = 1;  // code must be 0
  refresh_icmpv6_checksum(bad);
  CHECK_FALSE(parse_ipv6_ns(bad));

  bad = good;
  bad[5] = 23;  // payload shorter than an NS
  refresh_icmpv6_checksum(bad);
  CHECK_FALSE(parse_ipv6_ns(bad));

  bad = good;
  bad[5] = static_cast<std::uint8_t>(good.size() - 40 + 1);  // payload longer than the span
  CHECK_FALSE(parse_ipv6_ns(bad));

  bad = good;
  bad[4] = 0;  // jumbogram-style zero payload length
  bad[5] = 0;
  CHECK_FALSE(parse_ipv6_ns(bad));
}

TEST_CASE("parse_ipv6_ns: the checksum covers header addresses and the whole message") {
  const auto good = ns_packet(basic_ns());
  REQUIRE(parse_ipv6_ns(good));
  for (std::size_t i : {std::size_t{8}, std::size_t{39}, std::size_t{43}, std::size_t{63},
                        good.size() - 1}) {
    auto bad = good;
    bad[i] ^= 0x01;
    CHECK_FALSE(parse_ipv6_ns(bad));
  }
  // A shorter payload length moves the checksum's end: the option no longer counts.
  auto shorter = good;
  shorter[5] = 24;
  CHECK_FALSE(parse_ipv6_ns(shorter));
  refresh_icmpv6_checksum(shorter);
  const auto ns = parse_ipv6_ns(shorter);
  REQUIRE(ns);
  CHECK_FALSE(ns->has_source_lladdr);
}

TEST_CASE("parse_ipv6_ns: multicast target or source, bad options") {
  NsSpec s = basic_ns();
  s.target = ip6("ff02::1");
  CHECK_FALSE(parse_ipv6_ns(ns_packet(s)));

  s = basic_ns();
  s.src = ip6("ff02::2");
  CHECK_FALSE(parse_ipv6_ns(ns_packet(s)));

  s = basic_ns();
  s.options_before = {14, 0, 0, 0, 0, 0, 0, 0};  // zero length: would loop forever
  CHECK_FALSE(parse_ipv6_ns(ns_packet(s)));

  s = basic_ns();
  s.sllao.reset();
  s.options_before = {1, 2, 2, 0, 0, 0, 0, 1};  // claims 16 bytes, has 8
  CHECK_FALSE(parse_ipv6_ns(ns_packet(s)));

  s = basic_ns();
  s.sllao.reset();
  s.options_before = {1};  // a lone type byte
  CHECK_FALSE(parse_ipv6_ns(ns_packet(s)));
}

TEST_CASE("parse_ipv6_ns: duplicate address detection probes") {
  NsSpec s = basic_ns();
  s.src = ip6("::");
  s.sllao.reset();
  const auto ns = parse_ipv6_ns(ns_packet(s));
  REQUIRE(ns);
  CHECK(ns->is_dad());
  // RFC 4861 7.1.1: from :: there is no source link-layer option ...
  s.sllao = kA;
  CHECK_FALSE(parse_ipv6_ns(ns_packet(s)));
  // ... and the destination is a solicited-node group.
  s.sllao.reset();
  s.dst = ip6("fd00::b");
  CHECK_FALSE(parse_ipv6_ns(ns_packet(s)));
  // From an address, a unicast destination is fine (neighbour unreachability detection).
  s.src = ip6("fd00::a");
  CHECK(parse_ipv6_ns(ns_packet(s)));
}

TEST_CASE("build_ipv6_na: exact bytes") {
  const auto ns = parse_ipv6_ns(ns_packet(basic_ns()));
  REQUIRE(ns);
  std::array<std::uint8_t, 96> out{};
  REQUIRE(build_ipv6_na(out, kA, *ns, kB, false) == 86);
  // Worked out outside the project (Python), checksum included.
  const std::array<std::uint8_t, 86> expected{
      0x02, 0, 0, 0, 0, 0x0a,  // to the requester
      0x02, 0, 0, 0, 0, 0x0b,  // from the target
      0x86, 0xdd,              // IPv6
      0x60, 0, 0, 0, 0x00, 0x20, 58, 255,  // payload 32, ICMPv6, hop limit 255
      0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b,  // from fd00::b
      0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a,  // to fd00::a
      136, 0, 0x1c, 0x76,      // NA, checksum
      0x60, 0, 0, 0,           // Solicited, Override
      0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b,  // target
      2, 1, 0x02, 0, 0, 0, 0, 0x0b,  // target link-layer address
  };
  CHECK(std::equal(expected.begin(), expected.end(), out.begin()));
  CHECK(out[86] == 0);  // nothing written past the frame
  CHECK(icmpv6_checksum_ok_for_test(out.data() + kEthHeaderLen));

  // Router flag: one more bit, and the checksum follows.
  REQUIRE(build_ipv6_na(out, kA, *ns, kB, true) == 86);
  CHECK(out[58] == 0xe0);
  CHECK(out[56] == 0x9c);
  CHECK(out[57] == 0x75);
  CHECK(icmpv6_checksum_ok_for_test(out.data() + kEthHeaderLen));
}

TEST_CASE("build_ipv6_na: checksum right for other addresses; refusals") {
  NsSpec s = basic_ns();
  s.src = ip6("2001:db8:ffff:1234:5678:9abc:def0:1");
  s.target = ip6("2001:db8:ffff::ffff:ffff");
  const auto ns = parse_ipv6_ns(ns_packet(s));
  REQUIRE(ns);
  std::array<std::uint8_t, kNaFrameLen> out{};
  REQUIRE(build_ipv6_na(out, kA, *ns, MacAddr{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff}, true) ==
          kNaFrameLen);
  CHECK(icmpv6_checksum_ok_for_test(out.data() + kEthHeaderLen));
  const auto eth = parse_eth(out);
  REQUIRE(eth);
  CHECK(eth->ethertype == kEtherTypeIpv6);
  CHECK(eth->dst == kA);

  std::array<std::uint8_t, kNaFrameLen - 1> small{};
  CHECK(build_ipv6_na(small, kA, *ns, kB, false) == 0);
  CHECK(std::all_of(small.begin(), small.end(), [](std::uint8_t b) { return b == 0; }));

  NsSpec dad = basic_ns();
  dad.src = ip6("::");
  dad.sllao.reset();
  const auto probe = parse_ipv6_ns(ns_packet(dad));
  REQUIRE(probe);
  CHECK(build_ipv6_na(out, kA, *probe, kB, false) == 0);

  NsView v4;  // not IPv6 at all
  v4.src_ip = test::ip4(10, 0, 0, 1);
  v4.target_ip = test::ip4(10, 0, 0, 2);
  CHECK(build_ipv6_na(out, kA, v4, kB, false) == 0);
}

}  // namespace
}  // namespace meshd::dp
