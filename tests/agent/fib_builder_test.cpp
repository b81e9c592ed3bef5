#include <doctest/doctest.h>

#include "agent/fib_builder.hpp"

using namespace meshd;
using namespace meshd::agent;

namespace {

crypto::NodeId node(std::uint8_t b) {
  crypto::NodeId id{};
  id[0] = b;
  return id;
}

mesh::MemberInfo member(std::uint8_t b, mesh::MemberState st, std::vector<std::uint32_t> vnis) {
  mesh::MemberInfo m;
  m.record.chain.node.node_id = node(b);
  m.record.vnis = std::move(vnis);
  m.state = st;
  return m;
}

mesh::EndpointMapping mapping(std::uint32_t vni, std::uint8_t mac_last, std::uint8_t owner, const char* ip) {
  mesh::EndpointMapping m;
  m.vni = vni;
  m.mac = MacAddr{2, 0, 0, 0, 0, mac_last};
  m.owner = node(owner);
  m.ips = {*IpAddr::parse(ip)};
  m.seq = 1;
  return m;
}

}  // namespace

TEST_CASE("fib: built from members, mappings and attachments") {
  const auto self = node(1);
  std::vector<mesh::MemberInfo> members = {
      member(1, mesh::MemberState::alive, {100}),  // self: never a flood target
      member(3, mesh::MemberState::alive, {100, 200}),
      member(2, mesh::MemberState::suspect, {100}),
      member(4, mesh::MemberState::failed, {100}),
      member(5, mesh::MemberState::left, {200}),
  };
  std::vector<mesh::EndpointMapping> maps = {
      mapping(100, 2, 2, "10.0.0.2"),
      mapping(100, 3, 3, "10.0.0.3"),
      mapping(100, 4, 4, "10.0.0.4"),  // owner failed: not forwarded to
      mapping(100, 1, 1, "10.0.0.1"),  // our own: local, not remote
      mapping(200, 3, 3, "10.2.0.3"),
  };
  auto removed = mapping(100, 9, 3, "10.0.0.9");
  removed.removed = true;
  maps.push_back(removed);
  dp::Attachment a;
  a.vni = 100;
  a.mac = MacAddr{2, 0, 0, 0, 0, 1};
  a.ips = {*IpPrefix::parse("10.0.0.1/24")};

  const auto fib = build_fib(self, members, maps, {a});
  CHECK(fib.vni_members.at(100) == std::vector<crypto::NodeId>{node(2), node(3)});
  CHECK(fib.vni_members.at(200) == std::vector<crypto::NodeId>{node(3)});
  CHECK(fib.remote_macs.size() == 3);
  CHECK(fib.remote_macs.at(dp::MacKey{100, MacAddr{2, 0, 0, 0, 0, 2}}).owner == node(2));
  CHECK(fib.remote_macs.count(dp::MacKey{100, MacAddr{2, 0, 0, 0, 0, 4}}) == 0);
  CHECK(fib.remote_macs.count(dp::MacKey{100, MacAddr{2, 0, 0, 0, 0, 9}}) == 0);
  CHECK(fib.remote_macs.count(dp::MacKey{100, MacAddr{2, 0, 0, 0, 0, 1}}) == 0);
  CHECK(fib.local_macs.count(dp::MacKey{100, MacAddr{2, 0, 0, 0, 0, 1}}) == 1);
  CHECK(fib.ip_to_mac.at(dp::IpKey{100, *IpAddr::parse("10.0.0.3")}) == MacAddr{2, 0, 0, 0, 0, 3});
  CHECK(fib.ip_to_mac.at(dp::IpKey{100, *IpAddr::parse("10.0.0.1")}) == MacAddr{2, 0, 0, 0, 0, 1});
  CHECK(fib.ip_to_mac.count(dp::IpKey{200, *IpAddr::parse("10.0.0.3")}) == 0);  // VNIs stay apart
}
