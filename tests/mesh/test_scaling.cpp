// Issue 3 scaling features inside MeshCore, driven through the in-memory network of
// harness.hpp and observed on the wire (SimNet::on_send / drop_if): bucketed
// push-pull, gossip to recently failed members, the direct suspect notice and the
// direct ping retry.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "mesh/harness.hpp"
#include "mesh/messages.hpp"

using namespace meshd;
using namespace meshd::mesh;
using test::SimNet;

namespace {

std::optional<Message> decode(const Bytes& payload) {
  auto m = decode_message(payload, codec::Limits{});
  if (!m.ok()) return std::nullopt;
  return std::move(m).value();
}

template <typename T>
const T* as(const std::optional<Message>& m) {
  return m ? std::get_if<T>(&*m) : nullptr;
}

// n nodes on one token; node 0 is everyone's bootstrap. Waits until all see all alive.
void start_mesh(SimNet& net, std::size_t n, std::uint64_t limit_ms = 10'000) {
  auto tok = net.make_token({100});
  for (std::size_t i = 0; i < n; ++i) net.add_node(tok);
  net.start(0, {});
  for (std::size_t i = 1; i < n; ++i) net.start(i, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, limit_ms));
}

bool has_suspect_of(const std::vector<Update>& updates, const NodeId& node) {
  return std::any_of(updates.begin(), updates.end(), [&](const Update& u) {
    const auto* s = std::get_if<StateUpdate>(&u);
    return s != nullptr && s->node == node && s->state == MemberState::suspect;
  });
}

std::size_t failed_events(const SimNet& net) {
  std::size_t n = 0;
  for (const auto& node : net.nodes) n += node->count_events(MeshEvent::Kind::member_failed);
  return n;
}

}  // namespace

TEST_CASE("scaling: push-pull carries only the member buckets that differ") {
  // 40 nodes with gossip off, so members travel only in join accepts and push-pull.
  // Node X then joins through node A alone: A (and X) hold X, every other node
  // (B = node 1 among them) does not, and nothing else differs. Push-pull must heal
  // that with pushes that carry X's bucket (members whose id starts with X's first
  // byte), never the whole table.
  MeshConfig cfg;
  cfg.broadcast_queue_max = 0;  // no gossip at all
  SimNet net(301, cfg);
  const std::size_t n = 40;
  start_mesh(net, n, 180'000);
  net.step(5'000);
  const std::size_t a = 0, b = 1;
  const std::size_t x = net.add_node(net.make_token({100}));
  const NodeId xid = net.nodes[x]->id();
  std::size_t bucket_population = 0;  // X's bucket, X included
  for (const auto& node : net.nodes) bucket_population += node->id()[0] == xid[0] ? 1 : 0;
  REQUIRE(bucket_population * 4 < net.nodes.size());  // a bucket is much smaller than the table

  std::size_t pushes = 0, pushed_members = 0, pushes_with_x = 0, biggest_push = 0;
  std::size_t outside_bucket = 0;  // member entries of other buckets in pushes
  std::size_t joins_accepted = 0;
  net.on_send = [&](std::size_t, std::size_t, const Bytes& payload) {
    auto m = decode(payload);
    if (as<JoinAccept>(m) != nullptr) ++joins_accepted;
    const Push* p = as<Push>(m);
    if (p == nullptr) return;
    ++pushes;
    pushed_members += p->members.size();
    biggest_push = std::max(biggest_push, p->members.size());
    for (const MemberEntry& e : p->members) {
      if (e.record.id()[0] != xid[0]) ++outside_bucket;
      if (e.record.id() == xid) ++pushes_with_x;
    }
  };
  net.start(x, {a});
  net.step(20);  // the join request and accept
  CHECK(joins_accepted == 1);
  CHECK(net.nodes[a]->core->member(xid).has_value());
  CHECK_FALSE(net.nodes[b]->core->member(xid).has_value());

  auto healed = net.run_until([&] { return net.all_alive(); }, 120'000);
  REQUIRE(healed.has_value());
  MESSAGE("X known alive by all " << n << " after " << *healed << " ms; " << pushes << " pushes, "
                                  << pushed_members << " member entries, largest " << biggest_push
                                  << " (bucket holds " << bucket_population << ", table "
                                  << net.nodes.size() << ")");
  CHECK(pushes > 0);
  CHECK(pushes_with_x > 0);    // push-pull, not gossip, carried X
  CHECK(outside_bucket == 0);  // nothing from buckets that did not differ
  CHECK(biggest_push <= bucket_population);
}

namespace {

struct DeadGossip {
  std::uint64_t failed_at_ms = 0;
  std::size_t in_window = 0;        // gossip or sync_request from A to X within gossip_to_dead_ms
  std::size_t syncs_in_window = 0;  // of which sync_request (push-pull)
  std::size_t after_window = 0;     // the same, later
  std::size_t pings = 0;            // failed-member pings (allowed at any time)
  std::uint64_t last_in_window_ms = 0;
};

// 5 nodes; X (node 4) crashes; A (node 0) keeps something to gossip (its locators
// change every 500 ms) for gossip_to_dead_ms + 30 s after it declared X failed.
DeadGossip run_dead_gossip(std::uint64_t gossip_to_dead_ms, std::uint64_t seed) {
  MeshConfig cfg;
  cfg.gossip_to_dead_ms = gossip_to_dead_ms;
  SimNet net(seed, cfg);
  start_mesh(net, 5);
  net.step(2'000);
  const std::size_t a = 0, x = 4;
  const NodeId xid = net.nodes[x]->id();
  struct Sent {
    std::uint64_t at_ms;
    bool partner;  // gossip or sync_request (not a ping)
    bool sync;
  };
  std::vector<Sent> to_x;
  net.on_send = [&](std::size_t from, std::size_t to, const Bytes& payload) {
    if (from != a || to != x) return;
    auto m = decode(payload);
    const bool sync = as<SyncRequest>(m) != nullptr;
    to_x.push_back(Sent{net.now, sync || as<Gossip>(m) != nullptr, sync});
  };
  net.crash(x);
  auto is_failed = [&] {
    auto m = net.nodes[a]->core->member(xid);
    return m && m->state == MemberState::failed;
  };
  REQUIRE(net.run_until(is_failed, 30'000));
  DeadGossip r;
  r.failed_at_ms = net.nodes[a]->core->member(xid)->state_since_ms;
  const std::uint64_t end = r.failed_at_ms + gossip_to_dead_ms + 30'000;
  for (std::uint16_t port = 1; net.now < end; ++port) {
    Locator l;
    l.ip = IpAddr::v4(0x7f000001);
    l.port = static_cast<std::uint16_t>(40000 + port % 2);
    net.nodes[a]->core->set_locators(net.now, {l});
    net.step(500);
  }
  for (const Sent& s : to_x) {
    if (s.at_ms < r.failed_at_ms) continue;
    if (!s.partner) {
      ++r.pings;
    } else if (s.at_ms < r.failed_at_ms + gossip_to_dead_ms) {
      ++r.in_window;
      r.syncs_in_window += s.sync ? 1 : 0;
      r.last_in_window_ms = s.at_ms - r.failed_at_ms;
    } else {
      ++r.after_window;
    }
  }
  CHECK(is_failed());  // nobody revived it meanwhile
  return r;
}

}  // namespace

TEST_CASE("scaling: a recently failed member gets gossip and push-pull, within the window only") {
  for (std::uint64_t seed : {311u, 312u}) {
    CAPTURE(seed);
    const DeadGossip d = run_dead_gossip(MeshConfig{}.gossip_to_dead_ms, seed);
    MESSAGE("seed " << seed << ": to X within 30 s of its failure " << d.in_window << " ("
                    << d.syncs_in_window << " push-pull, last at +" << d.last_in_window_ms
                    << " ms), after " << d.after_window << "; pings " << d.pings);
    CHECK(d.in_window > 0);
    CHECK(d.after_window == 0);
    CHECK(d.pings > 0);  // the failed-member probe goes on regardless
  }
  const DeadGossip off = run_dead_gossip(0, 311);
  CHECK(off.in_window == 0);
  CHECK(off.after_window == 0);
  CHECK(off.pings > 0);
}

TEST_CASE("scaling: a failed probe tells the suspect at once and it refutes quickly") {
  // A's probe of B is cut for one round (its ping and retry, B's acks, A's ping_reqs
  // about B), until A sends the ping that carries B's suspect state.
  SimNet net(321);
  start_mesh(net, 5);
  net.step(2'000);
  const std::size_t a = 0, b = 1;
  const NodeId bid = net.nodes[b]->id();
  std::optional<std::uint64_t> notice_ms;
  std::optional<MemberInfo> at_notice;  // A's view of B when the notice left
  net.drop_if = [&](std::size_t from, std::size_t to, const Bytes& payload) {
    if (notice_ms) return false;
    auto m = decode(payload);
    if (const Ping* p = as<Ping>(m); p != nullptr && from == a && to == b) {
      if (has_suspect_of(p->updates, bid)) {
        notice_ms = net.now;
        at_notice = net.nodes[a]->core->member(bid);
        return false;
      }
      return true;
    }
    if (from == b && to == a && as<Ack>(m) != nullptr) return true;
    const PingReq* r = as<PingReq>(m);
    return from == a && r != nullptr && r->target == bid;
  };
  REQUIRE(net.run_until([&] { return notice_ms.has_value(); }, 10'000));
  const MeshCore& ca = *net.nodes[a]->core;
  CHECK(ca.counters().suspicions == 1);
  REQUIRE(at_notice.has_value());
  CHECK(at_notice->state == MemberState::suspect);
  CHECK(at_notice->state_since_ms == *notice_ms);  // sent in the same step as the accusation

  auto refuted = [&] {
    auto m = ca.member(bid);
    return m && m->state == MemberState::alive && m->incarnation > 0;
  };
  REQUIRE(net.run_until(refuted, 2'000));
  const std::uint64_t took_ms = ca.member(bid)->state_since_ms - *notice_ms;
  MESSAGE("B alive again at A " << took_ms << " ms after the notice (suspicion min "
                                << net.config().suspicion_floor_ms << " ms)");
  CHECK(took_ms <= 50);  // a round trip: notice, refutation on the ack
  CHECK(net.nodes[b]->core->counters().refutations == 1);
  CHECK(ca.member(bid)->incarnation == 1);
  net.step(15'000);
  CHECK(net.all_alive());
  CHECK(failed_events(net) == 0);
}

namespace {

struct LostPing {
  std::uint64_t suspicions = 0, probe_failures = 0;
  std::optional<std::uint64_t> retry_after_ms;  // the same seq sent again, after the loss
  bool acked = false;                           // B acked that seq
  std::size_t failed_events = 0;
};

// 5 nodes; the first ping A (node 0) sends B (node 1) after the mesh settled is lost,
// nothing else.
LostPing run_lost_ping(const MeshConfig& cfg, std::uint64_t seed) {
  SimNet net(seed, cfg);
  start_mesh(net, 5);
  net.step(2'000);
  const std::size_t a = 0, b = 1;
  REQUIRE(net.nodes[a]->core->counters().suspicions == 0);
  std::optional<std::uint64_t> lost_seq, lost_ms;
  LostPing r;
  net.drop_if = [&](std::size_t from, std::size_t to, const Bytes& payload) {
    auto m = decode(payload);
    if (from == b && to == a && lost_seq) {
      if (const Ack* k = as<Ack>(m); k != nullptr && k->seq == *lost_seq) r.acked = true;
    }
    const Ping* p = as<Ping>(m);
    if (from != a || to != b || p == nullptr) return false;
    if (!lost_seq) {
      lost_seq = p->seq;
      lost_ms = net.now;
      return true;
    }
    if (p->seq == *lost_seq && !r.retry_after_ms) r.retry_after_ms = net.now - *lost_ms;
    return false;
  };
  net.step(10'000);
  REQUIRE(lost_seq.has_value());
  r.suspicions = net.nodes[a]->core->counters().suspicions;
  r.probe_failures = net.nodes[a]->core->counters().probe_failures;
  r.failed_events = failed_events(net);
  return r;
}

}  // namespace

TEST_CASE("scaling: one lost ping is saved by the direct retry, not turned into a suspicion") {
  MeshConfig retry;
  retry.indirect_probes = 0;  // no helpers: only the retry can save the probe
  MeshConfig no_retry = retry;
  no_retry.direct_retry = false;
  for (std::uint64_t seed : {331u, 332u, 333u}) {
    CAPTURE(seed);
    const LostPing with = run_lost_ping(retry, seed);
    REQUIRE(with.retry_after_ms.has_value());
    CHECK(*with.retry_after_ms == retry.probe_timeout_ms);  // at probe_timeout (LHM 0)
    CHECK(with.acked);
    CHECK(with.suspicions == 0);
    CHECK(with.probe_failures == 0);

    const LostPing without = run_lost_ping(no_retry, seed);
    CHECK_FALSE(without.retry_after_ms.has_value());
    CHECK_FALSE(without.acked);
    CHECK(without.suspicions == 1);
    CHECK(without.probe_failures == 1);
    CHECK(without.failed_events == 0);  // B refuted
    // With the defaults (helpers and retry) the loss is absorbed as well.
    CHECK(run_lost_ping(MeshConfig{}, seed).suspicions == 0);
  }
}

namespace {

struct Helpers {
  std::size_t most = 0;       // helpers asked for one probe of node 9
  std::size_t with_nack = 0;  // of those, asked for a nack (the first wave)
};

// Node 9 goes silent (everything to it is lost); the most helpers any prober asks, per
// probe of node 9, in 20 s.
Helpers helpers_per_probe(const MeshConfig& cfg, std::uint64_t seed) {
  SimNet net(seed, cfg);
  start_mesh(net, 10);
  net.step(2'000);
  struct Asked {
    std::set<std::size_t> all, nack;
  };
  std::map<std::pair<std::size_t, std::uint64_t>, Asked> helpers;  // (prober, seq)
  net.drop_if = [&](std::size_t from, std::size_t to, const Bytes& payload) {
    auto m = decode(payload);
    if (const PingReq* r = as<PingReq>(m);
        r != nullptr && r->target == net.nodes[9]->id()) {
      helpers[{from, r->seq}].all.insert(to);
      if (r->want_nack) helpers[{from, r->seq}].nack.insert(to);
    }
    return to == 9;
  };
  net.step(20'000);
  Helpers out;
  for (const auto& [probe, h] : helpers) {
    if (h.all.size() > out.most) out = Helpers{h.all.size(), h.nack.size()};
  }
  return out;
}

}  // namespace

TEST_CASE("scaling: indirect probes grow with the mesh (3 + 2 ceil(log10(N + 1))), in two waves") {
  // 10 nodes: 3 + 2 * ceil(log10(11)) = 7 helpers of the 8 that are neither prober nor
  // target: 3 at the probe timeout (with nacks), 4 more once those failed too.
  Helpers h = helpers_per_probe(MeshConfig{}, 341);
  CHECK(h.most == 7);
  CHECK(h.with_nack == 3);
  MeshConfig three;
  three.indirect_probes = 3;  // memberlist: one wave
  h = helpers_per_probe(three, 341);
  CHECK(h.most == 3);
  CHECK(h.with_nack == 3);
  MeshConfig many;
  many.indirect_probes = 16;  // more than there are: every other live member
  h = helpers_per_probe(many, 341);
  CHECK(h.most == 8);
  CHECK(h.with_nack == 3);
}

TEST_CASE("scaling: the second wave of helpers is only asked when the first could not reach the target") {
  // Every ping A sends B directly is lost (and so is the retry), but helpers get
  // through: the first wave's acks arrive, no second wave, no suspicion.
  SimNet net(342);
  start_mesh(net, 10);
  net.step(2'000);
  const std::size_t a = 0, b = 1;
  net.drop_if = [&](std::size_t from, std::size_t to, const Bytes& payload) {
    return from == a && to == b && as<Ping>(decode(payload)) != nullptr;
  };
  const MeshCounters& c = net.nodes[a]->core->counters();
  const std::uint64_t probes_before = c.probes_sent;
  net.step(30'000);
  CHECK(c.probes_sent - probes_before >= 50);
  CHECK(c.probe_failures == 0);
  CHECK(c.suspicions == 0);
  CHECK(c.probe_second_waves == 0);
  // Now B stops answering anyone: probes of B need the second wave. Counted over all
  // probers, not A alone: whether A's round-robin reaches B before B is declared
  // failed depends on the seed, but the probe that first suspects B cannot fail
  // before its second wave has been asked (halfway through the period).
  std::uint64_t waves_before = 0;
  auto waves = [&] {
    std::uint64_t w = 0;
    for (std::size_t i = 0; i < net.nodes.size(); ++i) {
      if (i != b) w += net.nodes[i]->core->counters().probe_second_waves;
    }
    return w;
  };
  waves_before = waves();
  net.drop_if = [&](std::size_t from, std::size_t to, const Bytes&) { return from == b || to == b; };
  REQUIRE(net.run_until([&] { return waves() > waves_before; }, 30'000));
}

TEST_CASE("scaling: a ping from a member held failed is answered with its state; it refutes on the ack") {
  SimNet net(351);
  start_mesh(net, 5);
  net.step(2'000);
  const std::size_t x = 4, a = 0;
  const NodeId xid = net.nodes[x]->id();
  bool cut = true;
  std::optional<MemberState> told;  // X's state in A's ack, if any
  net.drop_if = [&](std::size_t from, std::size_t to, const Bytes& payload) {
    if (from == a && to == x) {
      auto m = decode(payload);
      if (const Ack* k = as<Ack>(m); k != nullptr) {
        for (const Update& u : k->updates) {
          if (const auto* su = std::get_if<StateUpdate>(&u); su != nullptr && su->node == xid) told = su->state;
        }
        return false;  // acks from A to X get through
      }
    }
    return cut && (from == x || to == x);
  };
  REQUIRE(net.run_until([&] { return net.all_see(x, MemberState::failed); }, 60'000));
  net.step(10'000);  // the gossip of X's failure is long spent
  const std::uint64_t before = net.nodes[x]->core->counters().refutations;
  net.inject(x, a, encode_ping(777, {}));
  net.step(20);
  REQUIRE(told.has_value());
  CHECK(*told == MemberState::failed);
  CHECK(net.nodes[x]->core->counters().refutations == before + 1);
}

TEST_CASE("scaling: after a cut heals, a node that sees a failed member back catches up by push-pull") {
  // X (node 4) is cut off until the other four hold it failed and it holds them
  // failed. After the heal, once X sees a failed member alive again it push-pulls
  // within the catch-up interval (push-pull interval / 10), not the full interval.
  for (std::uint64_t seed : {351u, 352u, 353u}) {
    CAPTURE(seed);
    SimNet net(seed);
    start_mesh(net, 5);
    net.step(2'000);
    const std::size_t x = 4;
    bool cut = true;
    std::optional<std::uint64_t> first_sync_from_x;
    net.drop_if = [&](std::size_t from, std::size_t to, const Bytes& payload) {
      if (cut) return from == x || to == x;
      if (from == x && !first_sync_from_x && as<SyncRequest>(decode(payload)) != nullptr) {
        first_sync_from_x = net.now;
      }
      return false;
    };
    auto x_sees_all_failed = [&] {
      for (std::size_t i = 0; i < x; ++i) {
        auto m = net.nodes[x]->core->member(net.nodes[i]->id());
        if (!m || m->state != MemberState::failed) return false;
      }
      return true;
    };
    REQUIRE(net.run_until([&] { return net.all_see(x, MemberState::failed) && x_sees_all_failed(); },
                          60'000));
    cut = false;
    const std::uint64_t healed = net.now;
    std::optional<std::uint64_t> revived_at;
    REQUIRE(net.run_until(
        [&] {
          for (std::size_t i = 0; i < x && !revived_at; ++i) {
            auto m = net.nodes[x]->core->member(net.nodes[i]->id());
            if (m && m->state == MemberState::alive) revived_at = net.now;
          }
          return net.all_alive();
        },
        30'000));
    const std::uint64_t all_alive_ms = net.now - healed;
    const MeshConfig cfg;
    REQUIRE(revived_at.has_value());
    const std::uint64_t by = *revived_at + cfg.anti_entropy_interval_ms / 10 + 20;
    if (net.now < by) net.step(by - net.now);
    REQUIRE(first_sync_from_x.has_value());
    MESSAGE("seed " << seed << ": all alive " << all_alive_ms << " ms after the heal; X saw a member back at +"
                    << *revived_at - healed << ", X's first push-pull at +" << *first_sync_from_x - healed);
    CHECK(*first_sync_from_x <= by);
  }
}

TEST_CASE("scaling: push-pull alone spreads new records to every member (no cliques); mappings resolve") {
  // Gossip off: only push-pull carries records. Every node publishes an endpoint in
  // VNI 100, which changes its record (now serving VNI 100). A node that always synced
  // with the members it believed to share a VNI locked itself into a pair with the
  // first such member and never learnt the others' new records. Mappings are not
  // gossiped (they are registered at their keys' owners): every node still resolves
  // every other node's endpoint.
  MeshConfig cfg;
  cfg.broadcast_queue_max = 0;
  for (std::uint64_t seed = 361; seed < 369; ++seed) {
    CAPTURE(seed);
    SimNet net(seed, cfg);
    auto tok = net.make_token({100, 200});
    const std::size_t n = 5;
    for (std::size_t i = 0; i < n; ++i) net.add_node(tok);
    net.start(0, {});
    for (std::size_t i = 1; i < n; ++i) net.start(i, {0});
    REQUIRE(net.run_until([&] { return net.all_alive(); }, 60'000));
    for (std::size_t i = 0; i < n; ++i) {
      const MacAddr mac{2, 0, 0, 0, 8, static_cast<std::uint8_t>(i)};
      REQUIRE(net.nodes[i]->core->publish_endpoint(net.now, 100, mac, {IpAddr::v4(0x0a000000 + static_cast<std::uint32_t>(i))}).ok());
    }
    auto records_known = [&] {
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
          if (i == j) continue;
          auto m = net.nodes[i]->core->member(net.nodes[j]->id());
          if (!m || m->record.vnis != std::vector<std::uint32_t>{100}) return false;
        }
      }
      return true;
    };
    auto t = net.run_until(records_known, 60'000);
    CHECK(t.has_value());
    if (t) MESSAGE("seed " << seed << ": every node holds every new record after " << *t << " ms");
    auto all_resolved = [&] {
      bool all = true;
      for (std::size_t i = 0; i < n; ++i) {
        if (net.nodes[i]->core->mappings().size() == n) continue;
        all = false;
        for (std::size_t j = 0; j < n; ++j) {
          const MacAddr mac{2, 0, 0, 0, 8, static_cast<std::uint8_t>(j)};
          if (j != i) net.nodes[i]->core->resolve(net.now, LookupKey::of_mac(100, mac));
        }
        net.flush(i);
      }
      return all;
    };
    CHECK(net.run_until(all_resolved, 5'000).has_value());
  }
}

TEST_CASE("scaling: compact push-pull pushes states to askers that take them, records on request") {
  MeshConfig cfg;
  cfg.broadcast_queue_max = 0;  // no gossip: every message seen here is push-pull's
  SimNet net(371, cfg);
  const std::size_t n = 6;
  start_mesh(net, n, 120'000);
  net.step(5'000);
  const std::size_t a = 0, b = 1;
  std::vector<Push> pushes;           // a -> b
  std::vector<RecordRequest> asked;   // a -> b
  net.on_send = [&](std::size_t from, std::size_t to, const Bytes& payload) {
    if (from != a || to != b) return;
    auto m = decode(payload);
    if (const Push* p = as<Push>(m)) pushes.push_back(*p);
    if (const RecordRequest* r = as<RecordRequest>(m)) asked.push_back(*r);
  };
  // A request that differs in every bucket: all of a's members (and a) come back.
  SyncRequest sr;
  sr.members_digest = 0;
  sr.revocations_digest = net.nodes[a]->core->counters().drop_revoked;  // 0: nothing revoked
  sr.member_buckets.assign(kMemberBuckets, 0);
  sr.states_ok = true;
  net.inject(b, a, encode_sync_request(sr));
  REQUIRE(pushes.size() == 1);
  CHECK(pushes[0].members.empty());
  REQUIRE(pushes[0].states.size() == n);
  for (const MemberStateEntry& e : pushes[0].states) {
    auto held = e.node == net.nodes[a]->id() ? std::nullopt : net.nodes[a]->core->member(e.node);
    if (e.node != net.nodes[a]->id()) {
      REQUIRE(held.has_value());
      CHECK(e.version == held->record.version);
      CHECK(e.incarnation == held->incarnation);
      CHECK(e.state == held->state);
    }
  }
  // An older asker (no states_ok) gets the records themselves.
  pushes.clear();
  sr.states_ok = false;
  net.inject(b, a, encode_sync_request(sr));
  REQUIRE(pushes.size() == 1);
  CHECK(pushes[0].states.empty());
  CHECK(pushes[0].members.size() == n);

  // Records on request: the ids a holds (itself included), once each; unknown ids skipped.
  pushes.clear();
  const auto served_before = net.nodes[a]->core->counters().records_requests_served;
  NodeId stranger{};
  stranger.fill(0xee);
  const NodeId id2 = net.nodes[2]->id(), id3 = net.nodes[3]->id();
  net.inject(b, a, encode_record_request(RecordRequest{{id2, stranger, id3, id2, net.nodes[a]->id()}}));
  REQUIRE(pushes.size() == 1);
  std::set<NodeId> got;
  for (const MemberEntry& e : pushes[0].members) got.insert(e.record.id());
  CHECK(pushes[0].members.size() == 3);
  CHECK(got == std::set<NodeId>{id2, id3, net.nodes[a]->id()});
  CHECK(net.nodes[a]->core->counters().records_requests_served == served_before + 1);
  pushes.clear();
  net.inject(b, a, encode_record_request(RecordRequest{{stranger}}));  // nothing known
  CHECK(pushes.empty());
  CHECK(net.nodes[a]->core->counters().records_requests_served == served_before + 2);

  // Receiving states: a newer record version or an unknown node is asked for; the same
  // version is applied as a state (here: b says node 2 is suspect).
  const auto held2 = net.nodes[a]->core->member(id2);
  REQUIRE(held2.has_value());
  std::vector<Bytes> states = {
      encode_member_state(MemberStateEntry{id2, held2->record.version, MemberState::suspect,
                                           held2->incarnation, std::nullopt}),
      encode_member_state(MemberStateEntry{id3, net.nodes[a]->core->member(id3)->record.version + 1,
                                           MemberState::alive, 0, std::nullopt}),
      encode_member_state(MemberStateEntry{stranger, 1, MemberState::alive, 0, std::nullopt})};
  const auto requested_before = net.nodes[a]->core->counters().records_requested;
  net.inject(b, a, encode_push({}, {}, false, {}, states));
  REQUIRE(asked.size() == 1);
  CHECK(asked[0].nodes == std::vector<NodeId>{id3, stranger});
  CHECK(net.nodes[a]->core->counters().records_requested == requested_before + 2);
  CHECK(net.nodes[a]->core->member(id2)->state == MemberState::suspect);
}

TEST_CASE("scaling: compact push-pull heals a partition; pushes carry states, not records") {
  // Gossip off, 12 nodes cut in two halves for 30 s: each half holds the other failed.
  // After the heal only push-pull (and the pings it triggers) can mend that. Records do
  // not change, so no push may need a record: every push between these nodes carries
  // states, and no record is requested.
  MeshConfig cfg;
  cfg.broadcast_queue_max = 0;
  SimNet net(372, cfg);
  const std::size_t n = 12;
  start_mesh(net, n, 180'000);
  net.step(5'000);
  auto side = [&](std::size_t i) { return i < n / 2; };
  net.drop_if = [&](std::size_t from, std::size_t to, const Bytes&) { return side(from) != side(to); };
  net.step(30'000);
  REQUIRE(failed_events(net) > 0);
  std::size_t push_states = 0, push_members = 0;
  auto records_requested = [&] {
    std::uint64_t r = 0;
    for (const auto& node : net.nodes) r += node->core->counters().records_requested;
    return r;
  };
  const std::uint64_t requested_before = records_requested();
  net.on_send = [&](std::size_t, std::size_t, const Bytes& payload) {
    auto m = decode(payload);
    if (const Push* p = as<Push>(m)) {
      push_states += p->states.size();
      push_members += p->members.size();
    }
  };
  net.drop_if = nullptr;
  auto healed = net.run_until([&] { return net.all_alive(); }, 60'000);
  REQUIRE(healed.has_value());
  MESSAGE("healed " << *healed << " ms after the cut ended; pushed " << push_states << " states, "
                    << push_members << " records");
  CHECK(push_states > 0);
  CHECK(push_members == 0);
  CHECK(records_requested() == requested_before);
}
