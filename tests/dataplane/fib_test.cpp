// Routed prefixes in the FIB: prefix matching, ordering and longest-prefix lookup.
#include <doctest/doctest.h>

#include "dataplane/fib.hpp"
#include "dataplane/frames_for_test.hpp"

namespace meshd::dp {
namespace {

using test::ip4;
using test::ip6;

IpPrefix pfx(std::string_view s) {
  auto r = IpPrefix::parse(s);
  REQUIRE(r.ok());
  return r.value();
}

NodeId node(std::uint8_t b) {
  NodeId n{};
  n[0] = b;
  return n;
}

MacAddr mac(std::uint8_t b) { return MacAddr{0x02, 0, 0, 0, 0, b}; }

TEST_CASE("prefix_contains: v4 and v6, bit boundaries, family and length") {
  CHECK(prefix_contains(pfx("10.0.0.0/8"), ip4(10, 255, 1, 2)));
  CHECK_FALSE(prefix_contains(pfx("10.0.0.0/8"), ip4(11, 0, 0, 0)));
  // /13 splits the second byte: 10.8.0.0 - 10.15.255.255.
  CHECK(prefix_contains(pfx("10.8.0.0/13"), ip4(10, 8, 0, 0)));
  CHECK(prefix_contains(pfx("10.8.0.0/13"), ip4(10, 15, 255, 255)));
  CHECK_FALSE(prefix_contains(pfx("10.8.0.0/13"), ip4(10, 16, 0, 0)));
  CHECK_FALSE(prefix_contains(pfx("10.8.0.0/13"), ip4(10, 7, 255, 255)));
  // Host bits in the prefix do not matter.
  CHECK(prefix_contains(pfx("10.9.9.9/13"), ip4(10, 8, 0, 1)));
  CHECK(prefix_contains(pfx("192.168.1.7/32"), ip4(192, 168, 1, 7)));
  CHECK_FALSE(prefix_contains(pfx("192.168.1.7/32"), ip4(192, 168, 1, 6)));
  CHECK(prefix_contains(pfx("0.0.0.0/0"), ip4(1, 2, 3, 4)));
  CHECK_FALSE(prefix_contains(pfx("0.0.0.0/0"), ip6("::1")));  // family must match
  CHECK(prefix_contains(pfx("::/0"), ip6("fd00::1")));
  CHECK_FALSE(prefix_contains(pfx("::/0"), ip4(1, 2, 3, 4)));

  CHECK(prefix_contains(pfx("fd00:1::/64"), ip6("fd00:1::ffff:1")));
  CHECK_FALSE(prefix_contains(pfx("fd00:1::/64"), ip6("fd00:2::1")));
  CHECK(prefix_contains(pfx("fd00::/127"), ip6("fd00::1")));
  CHECK_FALSE(prefix_contains(pfx("fd00::/127"), ip6("fd00::2")));
  CHECK(prefix_contains(pfx("fd00::5/128"), ip6("fd00::5")));

  IpPrefix too_long = pfx("10.0.0.0/8");
  too_long.len = 33;
  CHECK_FALSE(prefix_contains(too_long, ip4(10, 0, 0, 0)));
  IpPrefix v6_too_long = pfx("fd00::/8");
  v6_too_long.len = 129;
  CHECK_FALSE(prefix_contains(v6_too_long, ip6("fd00::")));
  CHECK_FALSE(prefix_contains(pfx("0.0.0.0/0"), IpAddr{}));  // unset address
}

TEST_CASE("sort_routes and route_for: longest prefix wins, per VNI and family") {
  Fib fib;
  fib.routes[1] = {
      RouteEntry{pfx("10.0.0.0/8"), node(1), mac(1)},
      RouteEntry{pfx("10.1.2.0/24"), node(3), mac(3)},
      RouteEntry{pfx("fd00::/16"), node(4), mac(4)},
      RouteEntry{pfx("10.1.0.0/16"), node(2), mac(2)},
      RouteEntry{pfx("0.0.0.0/0"), node(5), mac(5)},
  };
  fib.routes[2] = {RouteEntry{pfx("10.1.2.0/24"), node(9), mac(9)}};
  CHECK(sort_routes(fib) == 0);
  const auto& r = fib.routes.at(1);
  for (std::size_t i = 1; i < r.size(); ++i) CHECK(r[i - 1].prefix.len >= r[i].prefix.len);

  CHECK(fib.route_for(1, ip4(10, 1, 2, 3))->next_hop_mac == mac(3));
  CHECK(fib.route_for(1, ip4(10, 1, 9, 3))->next_hop_mac == mac(2));
  CHECK(fib.route_for(1, ip4(10, 9, 9, 3))->next_hop_mac == mac(1));
  CHECK(fib.route_for(1, ip4(192, 0, 2, 1))->next_hop_mac == mac(5));
  CHECK(fib.route_for(1, ip6("fd00:1::1"))->owner == node(4));
  CHECK(fib.route_for(1, ip6("fe80::1")) == nullptr);  // the v4 default does not cover v6
  CHECK(fib.route_for(2, ip4(10, 1, 2, 3))->owner == node(9));
  CHECK(fib.route_for(2, ip4(10, 1, 3, 3)) == nullptr);
  CHECK(fib.route_for(3, ip4(10, 1, 2, 3)) == nullptr);
}

TEST_CASE("sort_routes: one prefix from two owners resolves the same in any order") {
  Fib a, b;
  a.routes[1] = {RouteEntry{pfx("10.0.0.0/8"), node(7), mac(7)},
                 RouteEntry{pfx("10.0.0.0/8"), node(6), mac(6)}};
  b.routes[1] = {a.routes[1][1], a.routes[1][0]};
  sort_routes(a);
  sort_routes(b);
  CHECK(a.route_for(1, ip4(10, 0, 0, 1))->owner == node(6));
  CHECK(b.route_for(1, ip4(10, 0, 0, 1))->owner == node(6));
}

TEST_CASE("sort_routes: keeps the kRoutesPerVniMax longest prefixes") {
  Fib fib;
  auto& list = fib.routes[1];
  // One short prefix, then more /32s than the bound.
  list.push_back(RouteEntry{pfx("10.0.0.0/8"), node(1), mac(1)});
  for (std::uint32_t i = 0; i < kRoutesPerVniMax + 10; ++i) {
    list.push_back(RouteEntry{IpPrefix{IpAddr::v4(0x0a000000u + i), 32}, node(2), mac(2)});
  }
  CHECK(sort_routes(fib) == 11);
  CHECK(fib.routes.at(1).size() == kRoutesPerVniMax);
  // The /8 was the shortest, so it went; the first /32s stayed.
  CHECK(fib.route_for(1, ip4(10, 0, 0, 0))->prefix.len == 32);
  CHECK(fib.route_for(1, ip4(10, 0, 3, 0xff)) != nullptr);  // the 1024th /32
  CHECK(fib.route_for(1, ip4(10, 0, 4, 0)) == nullptr);     // the 1025th: dropped
  CHECK(fib.route_for(1, ip4(10, 0, 0xff, 0xff)) == nullptr);
}

TEST_CASE("route_for: looks at no more than kRoutesPerVniMax entries") {
  Fib fib;  // filled past the bound without sort_routes (a builder bug)
  auto& list = fib.routes[1];
  for (std::uint32_t i = 0; i < kRoutesPerVniMax; ++i) {
    list.push_back(RouteEntry{IpPrefix{IpAddr::v4(0x0b000000u + i), 32}, node(2), mac(2)});
  }
  list.push_back(RouteEntry{pfx("10.0.0.0/8"), node(1), mac(1)});
  CHECK(fib.route_for(1, ip4(10, 0, 0, 1)) == nullptr);
  CHECK(fib.route_for(1, ip4(11, 0, 0, 1)) != nullptr);
}

}  // namespace
}  // namespace meshd::dp
