#include <doctest/doctest.h>

#include "mesh/harness.hpp"
#include "mesh/messages.hpp"

using namespace meshd;
using namespace meshd::mesh;
using test::SimNet;

namespace {

bool knows(const SimNet& net, std::size_t at, std::uint32_t vni, const MacAddr& mac,
           std::size_t owner) {
  for (const auto& m : net.nodes[at]->core->mappings()) {
    if (m.vni == vni && m.mac == mac && m.owner == net.nodes[owner]->id()) return true;
  }
  return false;
}

const MacAddr kMacA{2, 0, 0, 0, 0, 0xa};
const MacAddr kMacB{2, 0, 0, 0, 0, 0xb};

}  // namespace

TEST_CASE("mappings: learned by nodes serving the VNI, not by others") {
  SimNet net(31);
  auto tok = net.make_token({100, 200});
  for (int i = 0; i < 6; ++i) net.add_node(tok);
  net.start(0, {});
  for (std::size_t i = 1; i < 6; ++i) net.start(i, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  // Nodes 1, 2 serve VNI 100; nodes 3, 4 serve only 200; node 5 serves nothing.
  for (std::size_t i : {1u, 2u}) {
    MacAddr m{2, 0, 0, 0, 1, static_cast<std::uint8_t>(i)};
    REQUIRE(net.nodes[i]->core->publish_endpoint(net.now, 100, m, {}).ok());
  }
  for (std::size_t i : {3u, 4u}) {
    MacAddr m{2, 0, 0, 0, 2, static_cast<std::uint8_t>(i)};
    REQUIRE(net.nodes[i]->core->publish_endpoint(net.now, 200, m, {}).ok());
  }
  net.step(2'000);
  REQUIRE(net.nodes[1]->core->publish_endpoint(net.now, 100, kMacA, {IpAddr::v4(0x0a000001)}).ok());
  auto t = net.run_until([&] { return knows(net, 2, 100, kMacA, 1); }, 5'000);
  REQUIRE(t.has_value());
  MESSAGE("mapping learned by the other VNI-100 node after " << *t << " ms");
  net.step(6'000);  // anti-entropy rounds too
  CHECK(knows(net, 1, 100, kMacA, 1));
  for (std::size_t i : {0u, 3u, 4u, 5u}) {
    for (const auto& m : net.nodes[i]->core->mappings()) CHECK(m.vni == 200);
  }
  CHECK(net.nodes[0]->core->mappings().empty());
  CHECK(net.nodes[5]->core->mappings().empty());
  CHECK(net.nodes[3]->core->mappings().size() == 2);  // its own and node 4's, both VNI 200
  CHECK(net.nodes[2]->core->mappings().size() == 3);  // VNI 100: its own, node 1's two
  auto self1 = net.nodes[1]->core->self();
  CHECK(self1.vnis == std::vector<std::uint32_t>{100});
  CHECK(net.nodes[0]->core->member(net.nodes[1]->id())->record.vnis == std::vector<std::uint32_t>{100});

  // Withdraw: the other VNI-100 node sees it removed.
  REQUIRE(net.nodes[1]->core->withdraw_endpoint(net.now, 100, kMacA).ok());
  REQUIRE(net.run_until([&] { return !knows(net, 2, 100, kMacA, 1); }, 5'000));
  CHECK(net.nodes[2]->count_events(MeshEvent::Kind::mapping_removed) == 1);
}

TEST_CASE("mappings: a late server of a VNI fetches existing mappings (sync), lost pushes heal") {
  SimNet net(32);
  auto tok = net.make_token({100});
  for (int i = 0; i < 4; ++i) net.add_node(tok);
  net.start(0, {});
  for (std::size_t i = 1; i < 4; ++i) net.start(i, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  REQUIRE(net.nodes[1]->core->publish_endpoint(net.now, 100, kMacA, {}).ok());
  net.step(1'000);
  // Node 2 starts serving 100 later: it must get node 1's mapping.
  REQUIRE(net.nodes[2]->core->publish_endpoint(net.now, 100, kMacB, {}).ok());
  REQUIRE(net.run_until([&] { return knows(net, 2, 100, kMacA, 1) && knows(net, 1, 100, kMacB, 2); }, 3'000));
  // A push lost entirely (50% loss for a moment) is healed by anti-entropy.
  net.loss = 1.0;
  MacAddr m3{2, 0, 0, 0, 0, 0x33};
  REQUIRE(net.nodes[1]->core->publish_endpoint(net.now, 100, m3, {}).ok());
  net.step(5);
  net.loss = 0.0;
  CHECK_FALSE(knows(net, 2, 100, m3, 1));
  auto t = net.run_until([&] { return knows(net, 2, 100, m3, 1); }, 15'000);
  REQUIRE(t.has_value());
  MESSAGE("lost push healed by anti-entropy after " << *t << " ms");
}

TEST_CASE("mappings: outside the owner's cert scope, or tampered: dropped and counted") {
  SimNet net(33);
  auto wide = net.make_token({100, 300});
  auto narrow = net.make_token({100});
  net.add_node(wide);    // 0: serves 100 and 300
  net.add_node(narrow);  // 1: may only use VNI 100
  net.start(0, {});
  net.start(1, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 5'000));
  REQUIRE(net.nodes[0]->core->publish_endpoint(net.now, 300, kMacB, {}).ok());
  REQUIRE(net.nodes[0]->core->publish_endpoint(net.now, 100, kMacB, {}).ok());
  net.step(1'000);
  // Node 1 cannot publish 300 through the API...
  auto st = net.nodes[1]->core->publish_endpoint(net.now, 300, kMacA, {});
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == "mesh.scope");
  // ...and a mapping it signs for 300 anyway is dropped by node 0.
  EndpointMapping m{300, kMacA, {}, net.nodes[1]->id(), 1, false, {}};
  m.sign(net.nodes[1]->key);
  Bytes up = encode_update(m);
  net.inject(1, 0, encode_gossip(std::span<const Bytes>(&up, 1)));
  CHECK(net.nodes[0]->core->counters().drop_scope == 1);
  CHECK_FALSE(knows(net, 0, 300, kMacA, 1));

  // Tampered mapping for 100 (flip a payload bit, then a signature bit).
  EndpointMapping good{100, kMacA, {IpAddr::v4(0x0a000009)}, net.nodes[1]->id(), 1, false, {}};
  good.sign(net.nodes[1]->key);
  for (int variant = 0; variant < 2; ++variant) {
    EndpointMapping bad = good;
    if (variant == 0) bad.ips[0].bytes[3] ^= 1;
    else bad.sig[0] ^= 0x80;
    Bytes b = encode_update(bad);
    auto before = net.nodes[0]->core->counters().drop_bad_signature;
    net.inject(1, 0, encode_gossip(std::span<const Bytes>(&b, 1)));
    CHECK(net.nodes[0]->core->counters().drop_bad_signature == before + 1);
    CHECK_FALSE(knows(net, 0, 100, kMacA, 1));
  }
  // A relay cannot forge: node 1 signing for node 0's identity fails too.
  EndpointMapping forged{100, kMacA, {}, net.nodes[0]->id(), 99, false, {}};
  forged.sign(net.nodes[1]->key);
  Bytes f = encode_update(forged);
  net.inject(1, 0, encode_gossip(std::span<const Bytes>(&f, 1)));
  Bytes g = encode_update(good);
  net.inject(1, 0, encode_gossip(std::span<const Bytes>(&g, 1)));
  CHECK(knows(net, 0, 100, kMacA, 1));
}

TEST_CASE("mappings: duplicate claim: higher seq wins, equal seq lower owner id wins, conflict reported") {
  SimNet net(34);
  auto tok = net.make_token({100});
  for (int i = 0; i < 3; ++i) net.add_node(tok);
  net.start(0, {});
  net.start(1, {0});
  net.start(2, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 5'000));
  REQUIRE(net.nodes[0]->core->publish_endpoint(net.now, 100, {2, 0, 0, 0, 0, 0x99}, {}).ok());
  net.step(1'000);
  // Nodes 1 and 2 claim the same MAC with equal seq (concurrently, before hearing each other).
  net.loss = 1.0;
  REQUIRE(net.nodes[1]->core->publish_endpoint(net.now, 100, kMacA, {}).ok());
  REQUIRE(net.nodes[2]->core->publish_endpoint(net.now, 100, kMacA, {}).ok());
  net.step(5);
  net.loss = 0.0;
  const std::size_t winner = net.nodes[1]->id() < net.nodes[2]->id() ? 1 : 2;
  REQUIRE(net.run_until([&] { return knows(net, 0, 100, kMacA, winner); }, 15'000));
  net.step(6'000);
  CHECK(knows(net, 0, 100, kMacA, winner));
  // Both claimants detect and report the duplicate (own record changes are gossiped at
  // once, so they usually settle it between themselves before node 0 hears the loser).
  CHECK(net.nodes[1]->count_events(MeshEvent::Kind::mapping_conflict) >= 1);
  CHECK(net.nodes[2]->count_events(MeshEvent::Kind::mapping_conflict) >= 1);
  // MAC mobility: the loser publishes again, with a higher seq, and wins everywhere.
  const std::size_t loser = winner == 1 ? 2 : 1;
  REQUIRE(net.nodes[loser]->core->publish_endpoint(net.now, 100, kMacA, {IpAddr::v4(1)}).ok());
  REQUIRE(net.run_until([&] { return knows(net, 0, 100, kMacA, loser); }, 10'000));
}

TEST_CASE("mappings: 10% loss still converges") {
  SimNet net(35);
  net.loss = 0.10;
  auto tok = net.make_token({100});
  for (int i = 0; i < 8; ++i) net.add_node(tok);
  net.start(0, {});
  for (std::size_t i = 1; i < 8; ++i) net.start(i, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 30'000));
  for (std::size_t i = 0; i < 8; ++i) {
    MacAddr m{2, 0, 0, 0, 0, static_cast<std::uint8_t>(i)};
    REQUIRE(net.nodes[i]->core->publish_endpoint(net.now, 100, m, {}).ok());
  }
  auto all_know = [&] {
    for (std::size_t i = 0; i < 8; ++i) {
      if (net.nodes[i]->core->mappings().size() != 8) return false;
    }
    return true;
  };
  auto t = net.run_until(all_know, 30'000);
  REQUIRE(t.has_value());
  MESSAGE("8 nodes x 8 mappings, 10% loss: all learned after " << *t << " ms");
}

TEST_CASE("mappings: persisted and restored; seq continues after restart") {
  SimNet net(36);
  auto tok = net.make_token({100});
  net.add_node(tok);
  net.add_node(tok);
  net.start(0, {});
  net.start(1, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 5'000));
  REQUIRE(net.nodes[0]->core->publish_endpoint(net.now, 100, kMacB, {}).ok());
  REQUIRE(net.nodes[1]->core->publish_endpoint(net.now, 100, kMacA, {}).ok());
  REQUIRE(net.nodes[1]->core->publish_endpoint(net.now, 100, kMacA, {IpAddr::v4(2)}).ok());
  net.step(1'000);
  REQUIRE(knows(net, 0, 100, kMacA, 1));
  CHECK(net.nodes[1]->storage->count("mappings") == 2);  // own + learned
  CHECK(net.nodes[0]->storage->count("members") == 1);
  net.crash(1);
  net.start(1, {0});
  auto own = [&] {
    for (const auto& m : net.nodes[1]->core->mappings()) {
      if (m.owner == net.nodes[1]->id()) return m;
    }
    return EndpointMapping{};
  };
  CHECK(net.nodes[1]->core->mappings().size() == 2);
  CHECK(own().seq == 2);
  REQUIRE(net.nodes[1]->core->publish_endpoint(net.now, 100, kMacA, {IpAddr::v4(3)}).ok());
  CHECK(own().seq == 3);
  CHECK(net.nodes[1]->core->self().vnis == std::vector<std::uint32_t>{100});
}
