#include <doctest/doctest.h>

#include <cstdio>

#include "mesh/harness.hpp"
#include "mesh/messages.hpp"

using namespace meshd;
using namespace meshd::mesh;
using test::SimNet;

namespace {

// Starts n nodes, node 0 first (bootstrap), the others join through node 0.
SimNet& start_mesh(SimNet& net, std::size_t n, std::vector<std::uint32_t> scope = {100, 200}) {
  auto tok = net.make_token(std::move(scope));
  for (std::size_t i = 0; i < n; ++i) net.add_node(tok);
  net.start(0, {});
  for (std::size_t i = 1; i < n; ++i) net.start(i, {0});
  return net;
}

}  // namespace

TEST_CASE("membership: 3 nodes join via one bootstrap and all see all alive") {
  SimNet net(11);
  start_mesh(net, 3);
  auto t = net.run_until([&] { return net.all_alive(); }, 10'000);
  REQUIRE(t.has_value());
  for (std::size_t i = 1; i < 3; ++i) CHECK(net.nodes[i]->count_events(MeshEvent::Kind::join_accepted) == 1);
  CHECK(net.nodes[1]->core->contact(net.nodes[2]->id()).has_value());
  CHECK(net.nodes[1]->core->contact(net.nodes[2]->id())->dh_pub == net.nodes[2]->chain.node.dh_pub);
  net.step(20'000);  // stays stable: no false suspicions on a lossless network
  CHECK(net.all_alive());
  for (auto& n : net.nodes) CHECK(n->count_events(MeshEvent::Kind::member_failed) == 0);
}

TEST_CASE("membership: 10 nodes join via one bootstrap; a killed node is failed everywhere within 10 s") {
  SimNet net(12);
  start_mesh(net, 10);
  auto t = net.run_until([&] { return net.all_alive(); }, 10'000);
  REQUIRE(t.has_value());
  MESSAGE("10 nodes converged (all alive) after " << *t << " ms virtual");
  net.step(5'000);
  std::uint64_t worst = 0;
  for (std::size_t victim : {5u, 0u, 9u}) {
    net.crash(victim);
    auto dt = net.run_until([&] { return net.all_see(victim, MemberState::failed); }, 20'000);
    REQUIRE(dt.has_value());
    MESSAGE("node " << victim << " marked failed by all after " << *dt << " ms virtual");
    CHECK(*dt <= 10'000);
    worst = std::max(worst, *dt);
  }
  MESSAGE("worst time to mark a killed node failed by all: " << worst << " ms");
}

TEST_CASE("membership: restart from storage rejoins alive with a higher incarnation") {
  SimNet net(13);
  start_mesh(net, 4);
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  MacAddr mac{2, 0, 0, 0, 0, 3};
  for (std::size_t i = 0; i < 3; ++i) {  // everyone serves VNI 100
    REQUIRE(net.nodes[i]->core->publish_endpoint(net.now, 100, {2, 0, 0, 0, 1, static_cast<std::uint8_t>(i)}, {}).ok());
  }
  REQUIRE(net.nodes[3]->core->publish_endpoint(net.now, 100, mac, {IpAddr::v4(0x0a000003)}).ok());
  net.step(3'000);
  const std::uint64_t inc_before = net.nodes[1]->core->member(net.nodes[3]->id())->incarnation;
  auto has_mapping = [&](std::size_t at) {
    for (const auto& m : net.nodes[at]->core->mappings()) {
      if (m.mac == mac && m.owner == net.nodes[3]->id()) return true;
    }
    return false;
  };
  // Mappings are resolved from their keys' owners when needed (asked again until known).
  auto resolved = [&](std::size_t at) {
    if (has_mapping(at)) return true;
    net.nodes[at]->core->resolve(net.now, LookupKey::of_mac(100, mac));
    net.flush(at);
    return false;
  };
  REQUIRE(net.run_until([&] { return resolved(1); }, 2'000));
  net.crash(3);
  REQUIRE(net.run_until([&] { return net.all_see(3, MemberState::failed); }, 15'000));
  CHECK_FALSE(has_mapping(1));  // a failed owner's mappings are removed
  net.nodes[3]->events.clear();
  net.start(3, {1});  // same storage: restore + join through a restored member
  CHECK(has_mapping(3));  // its own published mapping came back from storage
  auto t = net.run_until(
      [&] {
        bool all = net.all_alive();
        for (std::size_t i = 0; i < 3; ++i) all = resolved(i) && all;
        return all;
      },
      10'000);
  REQUIRE(t.has_value());
  MESSAGE("restarted node alive and its mapping re-learned after " << *t << " ms");
  CHECK(net.nodes[1]->core->member(net.nodes[3]->id())->incarnation > inc_before);
  CHECK(net.nodes[3]->core->members().size() == 3);
}

TEST_CASE("membership: leave is seen by all as left") {
  SimNet net(14);
  start_mesh(net, 5);
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  for (std::size_t i = 0; i < 5; ++i) {
    REQUIRE(net.nodes[i]->core->publish_endpoint(net.now, 100, {2, 0, 0, 0, 0, static_cast<std::uint8_t>(i)}, {}).ok());
    net.flush(i);
  }
  net.step(500);
  // The others look node 2's endpoint up, so they hold its mapping until it leaves.
  auto knows_2 = [&](std::size_t at) {
    for (const auto& m : net.nodes[at]->core->mappings()) {
      if (m.owner == net.nodes[2]->id()) return true;
    }
    return false;
  };
  for (std::size_t i : {0u, 1u, 3u, 4u}) net.nodes[i]->core->resolve(net.now, LookupKey::of_mac(100, {2, 0, 0, 0, 0, 2}));
  for (std::size_t i : {0u, 1u, 3u, 4u}) net.flush(i);
  REQUIRE(net.run_until([&] { return knows_2(0) && knows_2(1) && knows_2(3) && knows_2(4); }, 2'000));
  net.nodes[2]->core->leave(net.now);
  CHECK(net.nodes[2]->core->poll_timeout() == MeshCore::kNoDeadline);
  auto t = net.run_until([&] { return net.all_see(2, MemberState::left); }, 5'000);
  REQUIRE(t.has_value());
  for (std::size_t i : {0u, 1u, 3u, 4u}) {
    CHECK_FALSE(knows_2(i));
    CHECK(net.nodes[i]->core->mappings().size() == 1);  // its own only
    CHECK(net.nodes[i]->count_events(MeshEvent::Kind::member_left) == 1);
  }
  net.step(15'000);  // no one turns it into "failed"
  CHECK(net.all_see(2, MemberState::left));
}

TEST_CASE("membership: token with uses=1 used by two nodes: the second is refused") {
  SimNet net(15);
  auto boot_tok = net.make_token({100});
  auto once = net.make_token({100}, /*uses=*/1);
  net.add_node(boot_tok);
  net.add_node(once);
  net.add_node(once);
  net.start(0, {});
  net.start(1, {0});
  REQUIRE(net.run_until([&] { return net.nodes[1]->count_events(MeshEvent::Kind::join_accepted) == 1; }, 5'000));
  net.start(2, {0});
  REQUIRE(net.run_until([&] { return net.nodes[2]->count_events(MeshEvent::Kind::join_refused) == 1; }, 5'000));
  const auto& ev = *std::find_if(net.nodes[2]->events.begin(), net.nodes[2]->events.end(),
                                 [](const MeshEvent& e) { return e.kind == MeshEvent::Kind::join_refused; });
  CHECK(ev.reason == "token.used_up");
  CHECK(net.nodes[0]->count_events(MeshEvent::Kind::node_refused) >= 1);
  CHECK_FALSE(net.nodes[0]->core->member(net.nodes[2]->id()).has_value());
  net.step(3'000);
  CHECK_FALSE(net.nodes[1]->core->member(net.nodes[2]->id()).has_value());
}

TEST_CASE("membership: over-use through two bootstraps is detected by gossip") {
  SimNet net(16);
  auto boot_tok = net.make_token({100});
  auto once = net.make_token({100}, 1);
  net.add_node(boot_tok);
  net.add_node(boot_tok);
  net.add_node(once);
  net.now += 1000;  // the second holder's cert is issued later: it is the extra one
  net.add_node(once);
  net.start(0, {});
  net.start(1, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 5'000));
  // Both join at the same time, each through a different bootstrap.
  net.start(2, {0});
  net.start(3, {1});
  net.step(5'000);
  for (std::size_t i : {0u, 1u, 2u}) {
    CHECK_FALSE(net.nodes[i]->core->member(net.nodes[3]->id()).has_value());
  }
  CHECK(net.nodes[0]->core->member(net.nodes[2]->id()).has_value());
  CHECK(net.nodes[1]->core->member(net.nodes[2]->id()).has_value());
  std::size_t refused = 0;
  for (std::size_t i : {0u, 1u, 2u}) refused += net.nodes[i]->count_events(MeshEvent::Kind::node_refused);
  CHECK(refused >= 2);
}

TEST_CASE("membership: expired enrollment refused, but a known member rejoins after expiry") {
  SimNet net(17);
  auto boot_tok = net.make_token({100});
  auto short_tok = net.make_token({100}, 10, /*ttl_s=*/60);
  net.add_node(boot_tok);
  net.add_node(short_tok);
  net.add_node(short_tok);
  net.start(0, {});
  net.start(1, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 5'000));
  net.step(120'000);  // the token expires
  net.start(2, {0});
  REQUIRE(net.run_until([&] { return net.nodes[2]->count_events(MeshEvent::Kind::join_refused) == 1; }, 5'000));
  auto ev = std::find_if(net.nodes[2]->events.begin(), net.nodes[2]->events.end(),
                         [](const MeshEvent& e) { return e.kind == MeshEvent::Kind::join_refused; });
  CHECK(ev->reason == "token.expired");
  net.crash(2);
  // Node 1 restarts after expiry: known, so accepted without a valid token.
  net.crash(1);
  net.step(1'000);
  net.nodes[1]->events.clear();
  net.start(1, {0});
  REQUIRE(net.run_until([&] { return net.nodes[1]->count_events(MeshEvent::Kind::join_accepted) == 1; }, 5'000));
  CHECK(net.nodes[0]->core->member(net.nodes[1]->id())->state == MemberState::alive);
}

TEST_CASE("membership: tampered record is dropped and counted") {
  SimNet net(18);
  start_mesh(net, 2);
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 5'000));
  auto tok = net.make_token({100});
  std::size_t x = net.add_node(tok);
  NodeRecord rec = net.record_for(x);
  rec.sign(net.nodes[x]->key);
  for (int variant = 0; variant < 2; ++variant) {
    NodeRecord bad = rec;
    if (variant == 0) bad.sig[3] ^= 0x20;      // flipped signature bit
    else bad.locators[0].port ^= 1;             // payload changed after signing
    Bytes up = encode_update(MemberEntry{bad, MemberState::alive, 0});
    auto before = net.nodes[1]->core->counters().drop_bad_signature;
    net.inject(0, 1, encode_gossip(std::span<const Bytes>(&up, 1)));
    CHECK(net.nodes[1]->core->counters().drop_bad_signature == before + 1);
    CHECK_FALSE(net.nodes[1]->core->member(rec.id()).has_value());
  }
  // The untampered record is accepted.
  Bytes up = encode_update(MemberEntry{rec, MemberState::alive, 0});
  net.inject(0, 1, encode_gossip(std::span<const Bytes>(&up, 1)));
  CHECK(net.nodes[1]->core->member(rec.id()).has_value());
  // A record signed by a chain of another mesh (another root) is dropped.
  SimNet other(99);
  auto otok = other.make_token({100});
  std::size_t o = other.add_node(otok);
  NodeRecord foreign = other.record_for(o);
  foreign.sign(other.nodes[o]->key);
  Bytes fu = encode_update(MemberEntry{foreign, MemberState::alive, 0});
  auto before = net.nodes[1]->core->counters().drop_bad_signature;
  net.inject(0, 1, encode_gossip(std::span<const Bytes>(&fu, 1)));
  CHECK(net.nodes[1]->core->counters().drop_bad_signature == before + 1);
}

TEST_CASE("membership: malformed messages are dropped and counted, no crash") {
  SimNet net(19);
  start_mesh(net, 2);
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 5'000));
  std::mt19937_64 g(5);
  std::uint64_t sent = 0;
  auto& c = net.nodes[1]->core;
  for (int i = 0; i < 500; ++i) {
    Bytes junk(1 + g() % 300);
    for (auto& b : junk) b = static_cast<std::uint8_t>(g());
    junk[0] = 0x94;  // looks like an array, so it gets past the first byte
    net.inject(0, 1, junk);
    ++sent;
  }
  const std::uint8_t huge[] = {0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01};
  net.inject(0, 1, huge);
  Bytes ping = encode_ping(1, {});
  net.inject(0, 1, ByteSpan(ping.data(), ping.size() - 1));  // truncated
  Bytes big(70'000, 0x90);
  net.inject(0, 1, big);
  CHECK(c->counters().drop_malformed >= 3 + sent * 9 / 10);
  net.step(5'000);
  CHECK(net.all_alive());
}

TEST_CASE("membership: 10 nodes converge with 10% message loss") {
  SimNet net(20);
  net.loss = 0.10;
  start_mesh(net, 10);
  auto t = net.run_until([&] { return net.all_alive(); }, 30'000);
  REQUIRE(t.has_value());
  MESSAGE("10 nodes, 10% loss: all alive after " << *t << " ms");
  net.crash(4);
  auto dt = net.run_until([&] { return net.all_see(4, MemberState::failed); }, 30'000);
  REQUIRE(dt.has_value());
  MESSAGE("10% loss: killed node failed everywhere after " << *dt << " ms");
  net.step(10'000);
  for (std::size_t i = 0; i < 10; ++i) {
    if (i == 4) continue;
    for (std::size_t j = 0; j < 10; ++j) {
      if (j == 4 || j == i) continue;
      auto m = net.nodes[i]->core->member(net.nodes[j]->id());
      REQUIRE(m.has_value());
      CHECK(m->state != MemberState::failed);  // false positives get refuted
    }
  }
}

TEST_CASE("membership: a suspect's record replaced mid-suspicion: the suspicion still runs out") {
  // The member table and the suspicions are keyed by a pointer to the id inside the
  // member's record; replacing the record re-points both (an ASan build catches a stale
  // key, this test the lost suspicion).
  MeshConfig cfg;
  cfg.suspicion_mult = 0;  // a fixed timer, long enough to replace the record first
  cfg.suspicion_timeout_ms = 20'000;
  SimNet net(31, cfg);
  start_mesh(net, 3);
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 5'000));
  const std::size_t c = 2;
  const NodeId cid = net.nodes[c]->id();
  net.drop_if = [&](std::size_t from, std::size_t to, const Bytes&) { return from == c || to == c; };
  auto seen = [&](MemberState st) {
    auto m = net.nodes[0]->core->member(cid);
    return m && m->state == st;
  };
  REQUIRE(net.run_until([&] { return seen(MemberState::suspect); }, 10'000));
  const MemberInfo before = *net.nodes[0]->core->member(cid);
  NodeRecord rec = net.record_for(c);
  rec.version = before.record.version + 10;
  rec.sign(net.nodes[c]->key);
  Bytes up = encode_update(MemberEntry{rec, MemberState::suspect, before.incarnation});
  net.inject(1, 0, encode_gossip(std::span<const Bytes>(&up, 1)));
  const MemberInfo replaced = *net.nodes[0]->core->member(cid);
  CHECK(replaced.record.version == rec.version);
  CHECK(replaced.state == MemberState::suspect);
  // Still tracked under the new record: it runs out and C is failed, keeping the record.
  REQUIRE(net.run_until([&] { return seen(MemberState::failed); }, 25'000));
  CHECK(net.nodes[0]->core->member(cid)->record.version == rec.version);
  CHECK(net.nodes[0]->core->poll_timeout() > net.now);  // no suspicion left overdue
}
