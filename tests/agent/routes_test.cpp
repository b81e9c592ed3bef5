#include "agent/routes.hpp"

#include <doctest/doctest.h>

#include "agent/parse.hpp"

using namespace meshd;
using namespace meshd::agent;

namespace {

IpPrefix pfx(const char* s) { return *IpPrefix::parse(s); }
IpAddr ip(const char* s) { return *IpAddr::parse(s); }
MacAddr mac(std::uint8_t last) { return MacAddr{2, 0, 0, 0, 0, last}; }

dp::Attachment endpoint(std::uint32_t vni, std::uint8_t mac_last, std::vector<const char*> cidrs,
                        const char* netns = "gw") {
  dp::Attachment a;
  a.vni = vni;
  a.netns = netns;
  a.ifname = "vni" + std::to_string(vni);
  a.mac = mac(mac_last);
  for (const char* c : cidrs) a.ips.push_back(pfx(c));
  return a;
}

crypto::NodeId node(std::uint8_t b) {
  crypto::NodeId id{};
  id[0] = b;
  return id;
}

mesh::MemberInfo member(std::uint8_t b, const char* name, mesh::MemberState st,
                        std::vector<mesh::RouteAnnouncement> routes, crypto::Scope scope) {
  mesh::MemberInfo m;
  m.record.chain.node.node_id = node(b);
  m.record.chain.node.name = name;
  m.record.chain.node.scope = std::move(scope);
  m.record.routes = std::move(routes);
  m.state = st;
  return m;
}

crypto::Scope all_vnis() {
  crypto::Scope s;
  s.all_vnis = true;
  return s;
}

void check_error(const Result<RoutePlan>& r, const std::string& code, const std::string& needle) {
  REQUIRE(!r.ok());
  CHECK(r.error().code == code);
  CHECK_MESSAGE(r.error().message.find(needle) != std::string::npos, r.error().message);
  CHECK(r.error().message.find('\n') == std::string::npos);
}

}  // namespace

TEST_CASE("routes: prefixes are normalised, bad ones refused") {
  CHECK(parse_route_prefix("192.168.77.9/24")->str() == "192.168.77.0/24");
  CHECK(parse_route_prefix("10.255.255.255/9")->str() == "10.128.0.0/9");
  CHECK(parse_route_prefix("192.168.77.9")->str() == "192.168.77.9/32");
  CHECK(parse_route_prefix("0.0.0.0/0")->str() == "0.0.0.0/0");
  CHECK(parse_route_prefix("1.2.3.4/0")->str() == "0.0.0.0/0");
  CHECK(parse_route_prefix("fd00:77::1/64")->str() == parse_route_prefix("fd00:77::/64")->str());
  CHECK(parse_route_prefix("fd00:77:ffff::1/33")->str() ==
        parse_route_prefix("fd00:77:8000::/33")->str());
  CHECK(network_of(pfx("fd00::1/128")) == pfx("fd00::1/128"));
  for (auto bad :
       {"", "10.0.0.0/33", "10.0.0/8", "fd00::/129", "x/8", "10.0.0.0/", "10.0.0.0/-1"}) {
    auto r = parse_route_prefix(bad);
    CHECK_MESSAGE(!r.ok(), bad);
    if (!r.ok()) CHECK(r.error().message.find("invalid prefix") == 0);
  }
  CHECK(parse_via("10.30.0.254").ok());
  CHECK(!parse_via("10.30.0.254/24").ok());
  CHECK(!parse_via("gw").ok());
}

TEST_CASE("routes: overlap of prefixes") {
  CHECK(prefixes_overlap(pfx("10.0.0.0/8"), pfx("10.1.0.5/24")));
  CHECK(prefixes_overlap(pfx("10.1.0.5/24"), pfx("10.0.0.0/8")));
  CHECK(prefixes_overlap(pfx("0.0.0.0/0"), pfx("10.30.0.254/24")));
  CHECK(!prefixes_overlap(pfx("192.168.77.0/24"), pfx("10.30.0.254/24")));
  CHECK(!prefixes_overlap(pfx("10.30.1.0/24"), pfx("10.30.0.254/24")));
  CHECK(!prefixes_overlap(pfx("::/0"), pfx("10.30.0.254/24")));  // families differ
}

TEST_CASE("routes: the next hop is the only endpoint of the VNI, or the one named by --via") {
  const std::vector<dp::Attachment> one = {endpoint(100, 1, {"10.30.0.254/24"}),
                                           endpoint(200, 2, {"10.40.0.1/24"})};
  auto hop = route_next_hop(one, 100, std::nullopt);
  REQUIRE(hop.ok());
  CHECK(hop->mac == mac(1));
  CHECK(route_next_hop(one, 100, ip("10.30.0.254"))->mac == mac(1));

  auto none = route_next_hop(one, 300, std::nullopt);
  REQUIRE(!none.ok());
  CHECK(none.error().message ==
        "no endpoint attached in VNI 300 to forward to; attach one (the gateway) first");
  auto wrong = route_next_hop(one, 100, ip("10.30.0.1"));
  REQUIRE(!wrong.ok());
  CHECK(wrong.error().message.find("has address 10.30.0.1") != std::string::npos);
  CHECK(wrong.error().message.find("10.30.0.254") != std::string::npos);  // says what there is
  // --via must name an endpoint of that VNI, not of another one.
  CHECK(!route_next_hop(one, 100, ip("10.40.0.1")).ok());

  std::vector<dp::Attachment> two = one;
  two.push_back(endpoint(100, 3, {"10.30.0.253/24", "fd00:30::253/64"}, "gw2"));
  auto several = route_next_hop(two, 100, std::nullopt);
  REQUIRE(!several.ok());
  CHECK(several.error().message.find("--via IP") != std::string::npos);
  CHECK(route_next_hop(two, 100, ip("10.30.0.253"))->mac == mac(3));
  CHECK(route_next_hop(two, 100, ip("fd00:30::253"))->mac == mac(3));
  CHECK(route_next_hop(two, 100, ip("10.30.0.254"))->mac == mac(1));
}

TEST_CASE("routes: add is idempotent, refuses overlaps and a second next hop") {
  const std::vector<dp::Attachment> atts = {endpoint(100, 1, {"10.30.0.254/24"}),
                                            endpoint(100, 3, {"10.30.0.253/24"})};
  std::vector<mesh::RouteAnnouncement> routes;
  auto add = plan_route_add(routes, atts, 100, pfx("192.168.77.0/24"), ip("10.30.0.254"));
  REQUIRE(add.ok());
  CHECK(add->changed);
  CHECK(add->route == mesh::RouteAnnouncement{100, pfx("192.168.77.0/24"), mac(1)});
  CHECK(add->next_hop.netns == std::optional<std::string>("gw"));
  routes = add->routes;
  REQUIRE(routes.size() == 1);

  auto again = plan_route_add(routes, atts, 100, pfx("192.168.77.0/24"), ip("10.30.0.254"));
  REQUIRE(again.ok());
  CHECK(!again->changed);
  CHECK(again->routes == routes);

  check_error(plan_route_add(routes, atts, 100, pfx("192.168.77.0/24"), ip("10.30.0.253")),
              "route.exists", "delete it first");
  check_error(plan_route_add(routes, atts, 100, pfx("10.30.0.0/16"), ip("10.30.0.254")),
              "route.overlap", "overlaps the subnet of endpoint 10.30.0.254/24");
  check_error(plan_route_add(routes, atts, 100, pfx("10.30.0.128/25"), ip("10.30.0.254")),
              "route.overlap", "10.30.0");
  check_error(plan_route_add(routes, atts, 100, pfx("0.0.0.0/0"), ip("10.30.0.254")),
              "route.overlap", "0.0.0.0/0");
  check_error(plan_route_add(routes, atts, 100, pfx("192.168.78.0/24"), std::nullopt),
              "route.next_hop", "--via");
  check_error(plan_route_add(routes, atts, 200, pfx("192.168.78.0/24"), std::nullopt),
              "route.next_hop", "attach one (the gateway) first");

  // Another prefix through the other endpoint, and an IPv6 one; the list stays sorted.
  auto second = plan_route_add(routes, atts, 100, pfx("172.16.0.0/12"), ip("10.30.0.253"));
  REQUIRE(second.ok());
  routes = second->routes;
  auto third = plan_route_add(routes, atts, 100, pfx("fd00:77::/64"), ip("10.30.0.254"));
  REQUIRE(third.ok());
  routes = third->routes;
  REQUIRE(routes.size() == 3);
  CHECK(std::is_sorted(routes.begin(), routes.end()));

  CHECK(routes_via(routes, 100, mac(1)).size() == 2);
  CHECK(routes_via(routes, 100, mac(3)) ==
        std::vector<mesh::RouteAnnouncement>{{100, pfx("172.16.0.0/12"), mac(3)}});
  CHECK(routes_via(routes, 200, mac(1)).empty());

  auto del = plan_route_del(routes, 100, pfx("172.16.0.0/12"));
  REQUIRE(del.ok());
  CHECK(del->route.next_hop_mac == mac(3));
  CHECK(del->routes.size() == 2);
  check_error(plan_route_del(del->routes, 100, pfx("172.16.0.0/12")), "route.unknown",
              "no route to 172.16.0.0/12 in VNI 100");
  check_error(plan_route_del(routes, 200, pfx("172.16.0.0/12")), "route.unknown", "VNI 200");
}

TEST_CASE("routes: the view lists own and live members' routes in served VNIs, sorted") {
  const auto self = node(1);
  const std::vector<dp::Attachment> atts = {endpoint(100, 1, {"10.30.0.1/24"}),
                                            endpoint(300, 4, {"10.50.0.1/24"})};
  crypto::Scope only_100;
  only_100.vnis = {100};
  const std::vector<mesh::RouteAnnouncement> own = {{300, pfx("192.168.99.0/24"), mac(4)}};
  std::vector<mesh::MemberInfo> members = {
      member(2, "h2", mesh::MemberState::alive,
             {{100, pfx("192.168.77.0/24"), mac(9)}, {200, pfx("192.168.88.0/24"), mac(9)}},
             all_vnis()),
      member(3, "h3", mesh::MemberState::suspect, {{100, pfx("10.99.0.0/16"), mac(7)}}, all_vnis()),
      member(4, "h4", mesh::MemberState::failed, {{100, pfx("10.98.0.0/16"), mac(6)}}, all_vnis()),
      // Announces VNI 300 although its certificate allows only 100: ignored.
      member(5, "h5", mesh::MemberState::alive,
             {{100, pfx("192.168.77.0/24"), mac(5)}, {300, pfx("10.97.0.0/16"), mac(5)}}, only_100),
  };
  const auto view = routes_view(self, "h1", own, members, atts);
  const auto& rows = view.at("routes");
  REQUIRE(rows.size() == 4);
  // vni 100: 10.99.0.0/16 (h3), 192.168.77.0/24 (h2 then h5, by node id); vni 300: own.
  CHECK(rows[0].at("prefix") == "10.99.0.0/16");
  CHECK(rows[0].at("node") == "h3");
  CHECK(rows[1].at("prefix") == "192.168.77.0/24");
  CHECK(rows[1].at("node") == "h2");
  CHECK(rows[1].at("local") == false);
  CHECK(rows[1].at("next_hop_mac") == "02:00:00:00:00:09");
  CHECK(rows[1].at("node_id") == crypto::node_id_hex(node(2)));
  CHECK(rows[2].at("node") == "h5");
  CHECK(rows[3].at("vni") == 300);
  CHECK(rows[3].at("node") == "h1");
  CHECK(rows[3].at("local") == true);
  for (const auto& r : rows) {
    for (const char* key : {"vni", "prefix", "node", "node_id", "next_hop_mac", "local"})
      CHECK(r.contains(key));
  }
  // No endpoints, no VNIs served: nothing to show.
  CHECK(routes_view(self, "h1", own, members, {}).at("routes").empty());
}

TEST_CASE("routes: on start, stored routes are announced only through endpoints that are back") {
  crypto::CertChain chain;
  chain.node.scope.vnis = {100, 200};
  const std::vector<dp::Attachment> atts = {endpoint(100, 1, {"10.30.0.254/24"})};
  const std::vector<mesh::RouteAnnouncement> stored = {
      {100, pfx("192.168.77.0/24"), mac(1)}, {100, pfx("10.9.0.0/16"), mac(1)},
      {100, pfx("192.168.77.0/24"), mac(1)},  // duplicate
      {100, pfx("172.16.0.0/12"), mac(2)},    // its endpoint is not attached
      {300, pfx("172.17.0.0/16"), mac(1)},    // VNI not allowed by the certificate
  };
  const auto out = routes_to_announce(stored, atts, chain);
  CHECK(out == std::vector<mesh::RouteAnnouncement>{{100, pfx("10.9.0.0/16"), mac(1)},
                                                    {100, pfx("192.168.77.0/24"), mac(1)}});
  std::vector<mesh::RouteAnnouncement> many;
  for (std::uint32_t i = 0; i < mesh::kRoutesPerNodeMax + 10; ++i) {
    IpPrefix p = pfx("10.0.0.0/24");
    p.addr.bytes[1] = static_cast<std::uint8_t>(i);
    many.push_back({100, p, mac(1)});
  }
  CHECK(routes_to_announce(many, atts, chain).size() == mesh::kRoutesPerNodeMax);
}
