// Lifeguard inside MeshCore (suspicion confirmations, local health, nacks), driven
// through the in-memory network of harness.hpp.
#include <doctest/doctest.h>

#include "mesh/harness.hpp"
#include "mesh/messages.hpp"

using namespace meshd;
using namespace meshd::mesh;
using test::SimNet;

namespace {

void start_mesh(SimNet& net, std::size_t n) {
  auto tok = net.make_token({100});
  for (std::size_t i = 0; i < n; ++i) net.add_node(tok);
  net.start(0, {});
  for (std::size_t i = 1; i < n; ++i) net.start(i, {0});
}

MeshConfig without_lifeguard() {
  MeshConfig cfg;
  cfg.suspicion_mult = 0;  // fixed suspicion_timeout_ms
  cfg.lhm_max = 0;         // no local health
  return cfg;
}

struct SlowRun {
  std::size_t false_failed = 0;      // member_failed about a healthy (not slow) node
  std::uint64_t slow_suspicions = 0; // accusations started by the slow node
  std::uint64_t slow_lhm_max = 0;
};

// n nodes; node `slow` gets `delay_ms` extra latency both ways and `loss` on its
// messages for `run_ms`. Every node stays up, so any "failed" is a false positive.
SlowRun run_slow(const MeshConfig& cfg, std::uint64_t seed, std::size_t n, std::size_t slow,
                 std::uint64_t delay_ms, double loss, std::uint64_t run_ms) {
  SimNet net(seed, cfg);
  start_mesh(net, n);
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  net.step(2'000);
  for (auto& node : net.nodes) node->events.clear();
  net.slow_node = slow;
  net.slow_delay_ms = delay_ms;
  net.slow_loss = loss;
  net.slow_inbound = true;
  net.step(run_ms);
  SlowRun r;
  for (std::size_t i = 0; i < n; ++i) {
    for (const MeshEvent& e : net.nodes[i]->events) {
      if (e.kind == MeshEvent::Kind::member_failed && e.node != net.nodes[slow]->id()) ++r.false_failed;
    }
  }
  r.slow_suspicions = net.nodes[slow]->core->counters().suspicions;
  r.slow_lhm_max = net.nodes[slow]->core->counters().local_health_max_seen;
  return r;
}

}  // namespace

TEST_CASE("lifeguard: with defaults a killed node is failed by all within 10 s, 3..10 nodes") {
  std::uint64_t worst = 0;
  for (std::size_t n : {3u, 4u, 5u, 7u, 10u}) {
    for (std::uint64_t seed : {1u, 2u, 3u}) {
      SimNet net(100 * n + seed);
      start_mesh(net, n);
      REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
      net.step(3'000);
      const std::size_t victim = seed % n;
      net.crash(victim);
      auto dt = net.run_until([&] { return net.all_see(victim, MemberState::failed); }, 20'000);
      REQUIRE(dt.has_value());
      CHECK(*dt <= 10'000);
      worst = std::max(worst, *dt);
      if (seed == 1) MESSAGE(n << " nodes: killed node failed by all after " << *dt << " ms");
    }
  }
  MESSAGE("worst detection over 3..10 nodes x 3 seeds: " << worst << " ms");
}

TEST_CASE("lifeguard: indirect probers nack a silent target; the requester counts them") {
  SimNet net(31);
  start_mesh(net, 5);
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  net.step(2'000);
  net.crash(4);
  REQUIRE(net.run_until([&] { return net.all_see(4, MemberState::failed); }, 15'000));
  std::uint64_t sent = 0, received = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    const MeshCounters& c = net.nodes[i]->core->counters();
    sent += c.nacks_sent;
    received += c.nacks_received;
    CHECK(c.nacks_missed == 0);           // lossless: every expected nack arrived
    CHECK(c.local_health_max_seen == 0);  // so nobody blamed itself for the dead node
  }
  MESSAGE("nacks sent " << sent << ", received " << received);
  CHECK(sent > 0);
  CHECK(received == sent);
  // Confirmations from several probers shortened the timers.
  std::uint64_t confirmations = 0;
  for (std::size_t i = 0; i < 4; ++i) confirmations += net.nodes[i]->core->counters().suspicion_confirmations;
  CHECK(confirmations > 0);
}

TEST_CASE("lifeguard: helpers that crashed with the target do not slow the survivors") {
  // 3 of 10 crash at once: a probe of a dead node often picks a dead helper, whose nack
  // never comes. The live helpers' nacks show that the prober itself is fine, so its
  // local health must stay 0 and it keeps probing at full speed.
  SimNet net(34);
  start_mesh(net, 10);
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  net.step(2'000);
  for (std::size_t v : {3, 6, 8}) net.crash(v);
  auto t = net.run_until(
      [&] {
        return net.all_see(3, MemberState::failed) && net.all_see(6, MemberState::failed) &&
               net.all_see(8, MemberState::failed);
      },
      20'000);
  REQUIRE(t.has_value());
  std::uint64_t missed = 0;
  for (std::size_t i = 0; i < 10; ++i) {
    if (i == 3 || i == 6 || i == 8) continue;
    const MeshCounters& c = net.nodes[i]->core->counters();
    missed += c.nacks_missed;
    CHECK(c.local_health_max_seen == 0);
  }
  MESSAGE("3 of 10 failed by all after " << *t << " ms; nacks missed (dead helpers) " << missed);
  CHECK(missed > 0);  // dead helpers were asked, and stayed silent
}

TEST_CASE("lifeguard: a nack for an unknown probe is counted but changes nothing") {
  SimNet net(32);
  start_mesh(net, 3);
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  net.inject(1, 0, encode_nack(Nack{123456789}));
  CHECK(net.nodes[0]->core->counters().nacks_received == 1);
  CHECK(net.nodes[0]->core->counters().drop_malformed == 0);
  net.step(5'000);
  CHECK(net.all_alive());
}

TEST_CASE("lifeguard: a cut-off node raises its local health, probes less, recovers after") {
  SimNet net(33);
  start_mesh(net, 5);
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  net.step(2'000);
  const MeshCounters& c = net.nodes[2]->core->counters();
  CHECK(c.local_health == 0);
  const std::uint64_t healthy_before = c.probes_sent;
  net.step(20'000);
  const std::uint64_t healthy_probes = c.probes_sent - healthy_before;
  net.slow_node = 2;
  net.slow_loss = 1.0;  // everything it sends is lost
  net.step(20'000);     // reach max health penalty
  CHECK(c.local_health == net.config().lhm_max);
  const std::uint64_t before = c.probes_sent;
  net.step(20'000);
  const std::uint64_t slow_probes = c.probes_sent - before;
  MESSAGE("probes in 20 s: healthy " << healthy_probes << ", at LHM " << c.local_health << ": " << slow_probes);
  CHECK(slow_probes * 4 <= healthy_probes);  // interval x9
  net.slow_node.reset();
  auto t = net.run_until([&] { return c.local_health == 0 && net.all_alive(); }, 120'000);
  REQUIRE(t.has_value());
  MESSAGE("healed: LHM back to 0 and all alive after " << *t << " ms");
}

TEST_CASE("lifeguard: a slow node does not get healthy nodes failed (vs. without Lifeguard)") {
  // Node 0 of 6: 2.5 s extra latency each way and 20% loss on its messages, for
  // 60 s. It accuses healthy members; without Lifeguard it keeps accusing at full
  // rate and hears their refutations too late, so it fails them.
  SlowRun with{}, without{};
  for (std::uint64_t seed : {41u, 42u, 43u}) {
    SlowRun a = run_slow(MeshConfig{}, seed, 6, 0, 2'500, 0.2, 60'000);
    SlowRun b = run_slow(without_lifeguard(), seed, 6, 0, 2'500, 0.2, 60'000);
    with.false_failed += a.false_failed;
    with.slow_suspicions += a.slow_suspicions;
    with.slow_lhm_max = std::max(with.slow_lhm_max, a.slow_lhm_max);
    without.false_failed += b.false_failed;
    without.slow_suspicions += b.slow_suspicions;
  }
  MESSAGE("false 'failed' of healthy nodes: with Lifeguard " << with.false_failed << ", without "
          << without.false_failed);
  MESSAGE("accusations by the slow node: with " << with.slow_suspicions << ", without "
          << without.slow_suspicions << "; its max LHM " << with.slow_lhm_max);
  CHECK(with.slow_lhm_max > 0);
  CHECK(with.false_failed <= without.false_failed);
  CHECK(with.slow_suspicions < without.slow_suspicions);
}

TEST_CASE("lifeguard: messages: nack, want_nack and accuser round-trip; older forms decode") {
  codec::Limits lim;
  auto nack = decode_message(encode_nack(Nack{77}), lim);
  REQUIRE(nack.ok());
  CHECK(std::get<Nack>(nack.value()).seq == 77);

  NodeId t{};
  t[0] = 9;
  auto old_req = decode_message(encode_ping_req(PingReq{5, t, false}), lim);  // two-field form
  REQUIRE(old_req.ok());
  CHECK_FALSE(std::get<PingReq>(old_req.value()).want_nack);
  auto new_req = decode_message(encode_ping_req(PingReq{5, t, true}), lim);
  REQUIRE(new_req.ok());
  CHECK(std::get<PingReq>(new_req.value()).want_nack);
  CHECK(std::get<PingReq>(new_req.value()).target == t);

  NodeId accuser{};
  accuser[1] = 3;
  Bytes with = encode_update(StateUpdate{t, MemberState::suspect, 4, accuser});
  Bytes without = encode_update(StateUpdate{t, MemberState::suspect, 4, std::nullopt});
  CHECK(with.size() == without.size() + 34);  // bin8 header + 32 bytes
  Bytes both[] = {with, without};
  auto g = decode_message(encode_gossip(both), lim);
  REQUIRE(g.ok());
  const auto& ups = std::get<Gossip>(g.value()).updates;
  REQUIRE(ups.size() == 2);
  CHECK(std::get<StateUpdate>(ups[0]).accuser == accuser);
  CHECK(std::get<StateUpdate>(ups[0]).incarnation == 4);
  CHECK_FALSE(std::get<StateUpdate>(ups[1]).accuser.has_value());
}
