// The mapping system (mesh/mapping_system.cpp) through the in-memory network of
// harness.hpp: an endpoint is registered at its keys' owners only, other nodes
// resolve it on demand, cache the answer for its TTL and hear of changes from the
// owners while subscribed. Seeds are fixed: a failure replays exactly.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "mesh/harness.hpp"
#include "mesh/messages.hpp"

using namespace meshd;
using namespace meshd::mesh;
using test::SimNet;

namespace {

constexpr std::uint32_t kVni = 100;
const MacAddr kMacA{2, 0, 0, 0, 0, 0xa};
const MacAddr kMacB{2, 0, 0, 0, 0, 0xb};
const IpAddr kIp1 = IpAddr::v4(0x0a000001);
const IpAddr kIp2 = IpAddr::v4(0x0a000002);
const LookupKey kKeyA = LookupKey::of_mac(kVni, kMacA);

// Node i's own endpoint, published by start_mesh: a node caches mappings only for the
// VNIs it serves, so every node serves kVni.
MacAddr own_mac(std::size_t i) { return {2, 0, 0, 0, 0xf, static_cast<std::uint8_t>(i)}; }
IpAddr own_ip(std::size_t i) { return IpAddr::v4(0x0a00f000 + static_cast<std::uint32_t>(i)); }

void publish(SimNet& net, std::size_t at, const MacAddr& mac, std::vector<IpAddr> ips,
             std::uint32_t vni = kVni) {
  REQUIRE(net.nodes[at]->core->publish_endpoint(net.now, vni, mac, std::move(ips)).ok());
  net.flush(at);
}

void withdraw(SimNet& net, std::size_t at, const MacAddr& mac) {
  REQUIRE(net.nodes[at]->core->withdraw_endpoint(net.now, kVni, mac).ok());
  net.flush(at);
}

void resolve(SimNet& net, std::size_t at, const LookupKey& k) {
  net.nodes[at]->core->resolve(net.now, k);
  net.flush(at);
}

// n nodes on one token, node 0 the bootstrap; waits until all see all alive, then each
// publishes its own endpoint (one IP) and the registrations settle.
void start_mesh(SimNet& net, std::size_t n, std::uint64_t limit_ms = 10'000) {
  auto tok = net.make_token({kVni, 200});
  for (std::size_t i = 0; i < n; ++i) net.add_node(tok);
  net.start(0, {});
  for (std::size_t i = 1; i < n; ++i) net.start(i, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, limit_ms));
  for (std::size_t i = 0; i < n; ++i) publish(net, i, own_mac(i), {own_ip(i)});
  net.step(1'000);
}

const MeshCounters& counters(const SimNet& net, std::size_t i) { return net.nodes[i]->core->counters(); }

// The remote mapping node `at` caches for (vni, mac), if any.
std::optional<EndpointMapping> cached(const SimNet& net, std::size_t at, const MacAddr& mac,
                                      std::uint32_t vni = kVni) {
  for (const auto& m : net.nodes[at]->core->mappings()) {
    if (m.vni == vni && m.mac == mac && m.owner != net.nodes[at]->id()) return m;
  }
  return std::nullopt;
}

bool cached_from(const SimNet& net, std::size_t at, const MacAddr& mac, std::size_t owner) {
  auto m = cached(net, at, mac);
  return m && m->owner == net.nodes[owner]->id();
}

// Node `at`'s own live endpoint for mac, if any.
std::optional<EndpointInfo> own_endpoint(const SimNet& net, std::size_t at, const MacAddr& mac) {
  for (const EndpointInfo& e : net.nodes[at]->core->endpoints()) {
    if (e.local && e.mapping.mac == mac) return e;
  }
  return std::nullopt;
}

std::size_t events_for(const test::SimNode& n, MeshEvent::Kind kind, const MacAddr& mac) {
  return static_cast<std::size_t>(std::count_if(n.events.begin(), n.events.end(), [&](const MeshEvent& e) {
    return e.kind == kind && e.mapping && e.mapping->mac == mac;
  }));
}

std::size_t unresolved_events(const test::SimNode& n, const LookupKey& k, const std::string& reason) {
  return static_cast<std::size_t>(std::count_if(n.events.begin(), n.events.end(), [&](const MeshEvent& e) {
    return e.kind == MeshEvent::Kind::mapping_unresolved && e.key && *e.key == k && e.reason == reason;
  }));
}

std::size_t index_of(const SimNet& net, const NodeId& id) {
  for (std::size_t i = 0; i < net.nodes.size(); ++i) {
    if (net.nodes[i]->id() == id) return i;
  }
  FAIL("not a node of this net");
  return 0;
}

// Up nodes that hold a live claim for k as an owner.
std::vector<std::size_t> holders(const SimNet& net, const LookupKey& k) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < net.nodes.size(); ++i) {
    if (net.nodes[i]->up && net.nodes[i]->core->holds(k)) out.push_back(i);
  }
  return out;
}

std::vector<std::size_t> owners(const SimNet& net, std::size_t at, const LookupKey& k) {
  std::vector<std::size_t> out;
  for (const NodeId& id : net.nodes[at]->core->owners_of(k)) out.push_back(index_of(net, id));
  return out;
}

// Every up node computes the same r owners of k, all up, and each of them holds k.
bool held_by_owners(const SimNet& net, const LookupKey& k, std::size_t r) {
  std::optional<std::vector<std::size_t>> ref;
  for (std::size_t i = 0; i < net.nodes.size(); ++i) {
    if (!net.nodes[i]->up) continue;
    auto o = owners(net, i, k);
    if (ref && o != *ref) return false;
    ref = o;
  }
  if (!ref || ref->size() != r) return false;
  for (std::size_t i : *ref) {
    if (!net.nodes[i]->up || !net.nodes[i]->core->holds(k)) return false;
  }
  return true;
}

// Nodes owning none of `keys` (node 0's view), other than `except`: their lookups go
// over the network.
std::vector<std::size_t> askers(const SimNet& net, const std::vector<LookupKey>& keys,
                                const std::vector<std::size_t>& except) {
  std::set<std::size_t> skip(except.begin(), except.end());
  for (const LookupKey& k : keys) {
    for (std::size_t o : owners(net, 0, k)) skip.insert(o);
  }
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < net.nodes.size(); ++i) {
    if (skip.count(i) == 0) out.push_back(i);
  }
  return out;
}

Bytes register_of(const EndpointMapping& m) {
  Bytes one = encode_mapping(m);
  return encode_map_register(std::span<const Bytes>(&one, 1));
}

}  // namespace

TEST_CASE("mappings: a published endpoint is known at its owners only, until resolved by MAC or IP") {
  SimNet net(31);
  start_mesh(net, 10);
  publish(net, 1, kMacA, {kIp1});
  net.step(2'000);
  const LookupKey ip_key = LookupKey::of_ip(kVni, kIp1);
  // Nobody else has it in its table: it was pushed to nobody, only registered.
  for (std::size_t i = 0; i < net.nodes.size(); ++i) {
    if (i != 1) CHECK_FALSE(cached(net, i, kMacA).has_value());
  }
  CHECK(held_by_owners(net, kKeyA, 3));
  CHECK(held_by_owners(net, ip_key, 3));
  CHECK(counters(net, 1).map_registers_sent >= 1);
  const auto ask = askers(net, {kKeyA, ip_key}, {1});
  REQUIRE(ask.size() >= 3);
  const std::size_t by_mac = ask[0], by_ip = ask[1], idle = ask[2];

  // By MAC: the answer comes from an owner, as mapping_upsert.
  const auto req_mac = counters(net, by_mac).map_requests;
  CHECK(net.nodes[by_mac]->core->resolve(net.now, kKeyA) == MeshCore::Lookup::requested);
  net.flush(by_mac);
  auto t = net.run_until([&] { return cached_from(net, by_mac, kMacA, 1); }, 1'000);
  REQUIRE(t.has_value());
  MESSAGE("resolved by MAC after " << *t << " ms");
  CHECK(*t <= 300);
  CHECK(events_for(*net.nodes[by_mac], MeshEvent::Kind::mapping_upsert, kMacA) == 1);
  CHECK(counters(net, by_mac).map_requests == req_mac + 1);
  CHECK(counters(net, by_mac).map_replies == 1);
  CHECK(cached(net, by_mac, kMacA)->ips == std::vector<IpAddr>{kIp1});

  // By IP: the answer is the endpoint's mapping (the MAC's), cached by MAC too.
  const auto req_ip = counters(net, by_ip).map_requests;
  resolve(net, by_ip, ip_key);
  t = net.run_until([&] { return cached_from(net, by_ip, kMacA, 1); }, 1'000);
  REQUIRE(t.has_value());
  MESSAGE("resolved by IP after " << *t << " ms");
  CHECK(*t <= 300);
  CHECK(events_for(*net.nodes[by_ip], MeshEvent::Kind::mapping_upsert, kMacA) == 1);
  // Cached now: asking again, by either key, sends nothing.
  CHECK(net.nodes[by_ip]->core->resolve(net.now, kKeyA) == MeshCore::Lookup::cached);
  CHECK(net.nodes[by_ip]->core->resolve(net.now, ip_key) == MeshCore::Lookup::cached);
  CHECK(net.nodes[by_mac]->core->resolve(net.now, kKeyA) == MeshCore::Lookup::cached);
  net.step(1'000);
  CHECK(counters(net, by_ip).map_requests == req_ip + 1);
  CHECK(counters(net, by_mac).map_requests == req_mac + 1);
  CHECK(events_for(*net.nodes[by_ip], MeshEvent::Kind::mapping_upsert, kMacA) == 1);

  // An owner answers itself from what it holds, without a request.
  const std::size_t owner = owners(net, 0, kKeyA)[0] != 1 ? owners(net, 0, kKeyA)[0] : owners(net, 0, kKeyA)[1];
  const auto req_owner = counters(net, owner).map_requests;
  CHECK(net.nodes[owner]->core->resolve(net.now, kKeyA) == MeshCore::Lookup::cached);
  net.flush(owner);
  CHECK(cached_from(net, owner, kMacA, 1));
  CHECK(counters(net, owner).map_requests == req_owner);

  // Those that did not ask still do not know it.
  CHECK_FALSE(cached(net, idle, kMacA).has_value());
  // The endpoint's node itself counts it as its own, not cached.
  auto own = own_endpoint(net, 1, kMacA);
  REQUIRE(own.has_value());
  CHECK_FALSE(own->duplicate);
  CHECK(net.nodes[1]->core->self().vnis == std::vector<std::uint32_t>{kVni});
}

TEST_CASE("mappings: a key nobody has is unresolved (negative), and the answer is cached") {
  SimNet net(32);
  start_mesh(net, 5);
  const MeshConfig cfg;
  const std::size_t asker = askers(net, {kKeyA}, {4}).at(0);
  const std::size_t r = cfg.map_replicas;
  const auto req = counters(net, asker).map_requests;
  resolve(net, asker, kKeyA);
  auto t = net.run_until([&] { return unresolved_events(*net.nodes[asker], kKeyA, "negative") == 1; }, 1'000);
  REQUIRE(t.has_value());
  CHECK(*t <= 300);
  // One owner's "no" may be a registration it missed: every owner is asked.
  CHECK(counters(net, asker).map_requests == req + r);
  CHECK(counters(net, asker).map_negative == r);
  CHECK_FALSE(cached(net, asker, kMacA).has_value());
  // Within map_negative_ttl_ms: no second request, no second event.
  net.step(cfg.map_negative_ttl_ms / 4);
  CHECK(net.nodes[asker]->core->resolve(net.now, kKeyA) == MeshCore::Lookup::negative);
  net.step(cfg.map_negative_ttl_ms / 4);
  resolve(net, asker, kKeyA);
  net.step(cfg.map_negative_ttl_ms / 4);
  CHECK(counters(net, asker).map_requests == req + r);
  CHECK(unresolved_events(*net.nodes[asker], kKeyA, "negative") == 1);
  // After it: asked again.
  net.step(cfg.map_negative_ttl_ms);
  resolve(net, asker, kKeyA);
  REQUIRE(net.run_until([&] { return unresolved_events(*net.nodes[asker], kKeyA, "negative") == 2; }, 1'000));
  CHECK(counters(net, asker).map_requests == req + 2 * r);
  CHECK(counters(net, asker).map_timeouts == 0);

  // The request subscribed the asker at the owner that answered: when the key appears,
  // it hears of it without asking again.
  publish(net, 4, kMacA, {kIp1});
  t = net.run_until([&] { return cached_from(net, asker, kMacA, 4); }, 1'000);
  REQUIRE(t.has_value());
  MESSAGE("negative subscriber told of the new key after " << *t << " ms");
  CHECK(counters(net, asker).map_requests == req + 2 * r);
}

TEST_CASE("mappings: subscribers hear of an IP change and a withdraw without resolving again") {
  SimNet net(33);
  start_mesh(net, 14);
  publish(net, 1, kMacA, {kIp1});
  net.step(500);
  const LookupKey ip1 = LookupKey::of_ip(kVni, kIp1), ip2 = LookupKey::of_ip(kVni, kIp2);
  const auto ask = askers(net, {kKeyA, ip1, ip2}, {1});
  REQUIRE(ask.size() >= 3);
  const std::size_t by_mac = ask[0], by_ip = ask[1], by_new_ip = ask[2];
  // And an owner of the MAC key, which answers itself from what it holds.
  const auto mac_owners = owners(net, 0, kKeyA);
  const std::size_t owner = mac_owners[0] != 1 ? mac_owners[0] : mac_owners[1];
  resolve(net, by_mac, kKeyA);
  resolve(net, by_ip, ip1);
  resolve(net, owner, kKeyA);
  std::vector<std::size_t> subs{by_mac, by_ip, owner};
  REQUIRE(net.run_until(
      [&] {
        return std::all_of(subs.begin(), subs.end(), [&](std::size_t i) { return cached_from(net, i, kMacA, 1); });
      },
      1'000));
  std::vector<std::uint64_t> requests;
  for (std::size_t i : subs) requests.push_back(counters(net, i).map_requests);

  // IP change: all see the new IPs.
  publish(net, 1, kMacA, {kIp2});
  auto has_ips = [&](std::size_t at, const std::vector<IpAddr>& ips) {
    auto m = cached(net, at, kMacA);
    return m && m->ips == ips;
  };
  auto t = net.run_until(
      [&] { return std::all_of(subs.begin(), subs.end(), [&](std::size_t i) { return has_ips(i, {kIp2}); }); },
      1'000);
  REQUIRE(t.has_value());
  MESSAGE("IP change notified after " << *t << " ms");
  CHECK(*t <= 300);
  for (std::size_t i : subs) CHECK(events_for(*net.nodes[i], MeshEvent::Kind::mapping_upsert, kMacA) == 2);
  for (std::size_t i = 0; i < subs.size(); ++i) CHECK(counters(net, subs[i]).map_requests == requests[i]);
  // The owners of the old IP key no longer bind it to the endpoint.
  net.step(200);
  CHECK(holders(net, ip1).empty());
  CHECK(held_by_owners(net, ip2, 3));
  resolve(net, by_new_ip, ip2);
  REQUIRE(net.run_until([&] { return has_ips(by_new_ip, {kIp2}); }, 1'000));

  // Withdraw: those subscribed to the MAC or to the endpoint's current IP see it removed.
  // (by_ip is subscribed at the owners of 10.0.0.1 only, which hear no more of an
  // endpoint that left that IP: its copy lapses with the TTL, or it asks again.)
  withdraw(net, 1, kMacA);
  subs = {by_mac, owner, by_new_ip};
  t = net.run_until(
      [&] { return std::none_of(subs.begin(), subs.end(), [&](std::size_t i) { return cached(net, i, kMacA).has_value(); }); },
      1'000);
  REQUIRE(t.has_value());
  MESSAGE("withdraw notified after " << *t << " ms");
  CHECK(*t <= 300);
  for (std::size_t i : subs) CHECK(events_for(*net.nodes[i], MeshEvent::Kind::mapping_removed, kMacA) == 1);
  CHECK(counters(net, by_mac).map_requests == requests[0]);
  CHECK(counters(net, owner).map_requests == requests[2]);
  CHECK(holders(net, kKeyA).empty());
  CHECK(holders(net, ip2).empty());
  // Resolving it now: negative.
  resolve(net, by_mac, kKeyA);
  REQUIRE(net.run_until([&] { return unresolved_events(*net.nodes[by_mac], kKeyA, "negative") == 1; }, 1'000));
}

TEST_CASE("mappings: a registration lost at the best owner: the key resolves through the others") {
  SimNet net(43);
  start_mesh(net, 8);
  // A MAC whose best owner is neither its publisher (node 1) nor the asker.
  MacAddr mac = kMacA;
  std::size_t best = 0, asker = 0;
  for (std::uint8_t x = 0;; ++x) {
    REQUIRE(x < 200);
    mac[5] = x;
    const LookupKey k = LookupKey::of_mac(kVni, mac);
    best = owners(net, 0, k)[0];
    const auto ask = askers(net, {k}, {1});
    if (best != 1 && !ask.empty()) {
      asker = ask[0];
      break;
    }
  }
  const LookupKey key = LookupKey::of_mac(kVni, mac);
  std::size_t dropped = 0;
  net.drop_if = [&](std::size_t from, std::size_t to, const Bytes& payload) {
    auto msg = decode_message(payload, codec::Limits{});
    const bool reg = msg.ok() && std::holds_alternative<MapRegister>(msg.value());
    if (from == 1 && to == best && reg) ++dropped;
    return from == 1 && to == best && reg;
  };
  publish(net, 1, mac, {});
  net.step(500);
  net.drop_if = nullptr;
  REQUIRE(dropped == 1);
  CHECK_FALSE(net.nodes[best]->core->holds(key));
  resolve(net, asker, key);
  auto t = net.run_until([&] { return cached_from(net, asker, mac, 1); }, 1'000);
  REQUIRE(t.has_value());
  MESSAGE("resolved past the owner that missed the registration after " << *t << " ms");
  CHECK(counters(net, asker).map_negative == 1);
  CHECK(counters(net, asker).map_requests == 2);
  CHECK(unresolved_events(*net.nodes[asker], key, "negative") == 0);
}

TEST_CASE("mappings: a move (withdrawn on A, published on B) reaches a node that cached it") {
  SimNet net(34);
  start_mesh(net, 6);
  const std::size_t a = 1, b = 2, c = 3, d = 4;
  publish(net, a, kMacA, {kIp1});
  net.step(500);
  resolve(net, c, kKeyA);
  resolve(net, d, LookupKey::of_ip(kVni, kIp1));
  REQUIRE(net.run_until([&] { return cached_from(net, c, kMacA, a) && cached_from(net, d, kMacA, a); }, 1'000));
  const auto req_c = counters(net, c).map_requests;

  // The endpoint leaves A and attaches at B, the same instant.
  withdraw(net, a, kMacA);
  publish(net, b, kMacA, {kIp1});
  auto t = net.run_until([&] { return cached_from(net, c, kMacA, b) && cached_from(net, d, kMacA, b); }, 2'000);
  REQUIRE(t.has_value());
  MESSAGE("move seen by the subscribers after " << *t << " ms");
  CHECK(*t <= 500);
  net.step(2'000);
  CHECK(cached_from(net, c, kMacA, b));
  CHECK(cached_from(net, d, kMacA, b));
  CHECK(counters(net, c).map_requests == req_c);
  CHECK(held_by_owners(net, kKeyA, 3));
  CHECK(held_by_owners(net, LookupKey::of_ip(kVni, kIp1), 3));
  // A newcomer to the key gets B.
  resolve(net, 5, LookupKey::of_ip(kVni, kIp1));
  REQUIRE(net.run_until([&] { return cached_from(net, 5, kMacA, b); }, 1'000));
  CHECK(counters(net, a).map_duplicates == 0);
  CHECK(counters(net, b).map_duplicates == 0);
}

// B claims kMacA while A still has it; A has had it for `a_age_ms` by then.
// `a_lower_id`: A's id is the lower one, so B's first claim (same seq) loses the tie.
struct TakeOver {
  std::uint64_t a_seq = 0, b_seq = 0;
  std::uint64_t a_duplicates = 0, b_duplicates = 0;
  bool b_wins = false, a_wins = false;  // at a node that had resolved it, and a new one
  bool a_flagged = false;               // A's endpoint reported as a duplicate
  std::size_t a_conflicts = 0;          // mapping_conflict "duplicate" events at A
};

TakeOver take_over(std::uint64_t seed, std::uint64_t a_age_ms, bool a_lower_id) {
  SimNet net(seed);
  start_mesh(net, 6);
  const bool one_lower = net.nodes[1]->id() < net.nodes[2]->id();
  const std::size_t a = one_lower == a_lower_id ? 1 : 2, b = 3 - a, c = 4, d = 5;
  publish(net, a, kMacA, {kIp1});
  net.step(300);
  resolve(net, c, kKeyA);
  net.step(a_age_ms - 300);
  REQUIRE(cached_from(net, c, kMacA, a));
  publish(net, b, kMacA, {kIp1});
  net.step(3'000);
  resolve(net, d, LookupKey::of_ip(kVni, kIp1));
  net.step(500);
  TakeOver r;
  r.a_seq = own_endpoint(net, a, kMacA)->mapping.seq;
  r.b_seq = own_endpoint(net, b, kMacA)->mapping.seq;
  r.a_duplicates = counters(net, a).map_duplicates;
  r.b_duplicates = counters(net, b).map_duplicates;
  r.b_wins = cached_from(net, c, kMacA, b) && cached_from(net, d, kMacA, b);
  r.a_wins = cached_from(net, c, kMacA, a) && cached_from(net, d, kMacA, a);
  r.a_flagged = own_endpoint(net, a, kMacA)->duplicate;
  for (const MeshEvent& e : net.nodes[a]->events) {
    if (e.kind == MeshEvent::Kind::mapping_conflict && e.reason == "duplicate") ++r.a_conflicts;
  }
  CHECK(held_by_owners(net, kKeyA, 3));
  return r;
}

TEST_CASE("mappings: B claims a MAC A still has: B wins over an old claim, a duplicate; two fresh ones settle quietly") {
  const std::uint64_t kMapFreshMs = 5'000;  // mesh/core_impl.hpp
  for (bool a_lower_id : {true, false}) {
    CAPTURE(a_lower_id);
    // A has had it longer than kMapFreshMs: B's claim wins (claiming above A's when
    // its first claim lost the tie) and A reports a duplicate, once.
    TakeOver old_a = take_over(35, kMapFreshMs + 1'000, a_lower_id);
    CHECK(old_a.b_wins);
    if (a_lower_id) {
      CHECK(old_a.b_seq > old_a.a_seq);
    } else {
      CHECK(old_a.b_seq == old_a.a_seq);  // won the tie: no need to claim above
    }
    CHECK(old_a.a_duplicates == 1);
    CHECK(old_a.a_flagged);
    CHECK(old_a.a_conflicts == 1);
    CHECK(old_a.b_duplicates == 0);
    // A attached it only just before (a quick move, or a race): each side claims above
    // the other at most once, one claim wins everywhere, neither is a duplicate.
    TakeOver fresh_a = take_over(36, kMapFreshMs / 5, a_lower_id);
    const std::string winner = fresh_a.b_wins ? "B" : fresh_a.a_wins ? "A" : "nobody";
    MESSAGE("both fresh: seqs A " << fresh_a.a_seq << " B " << fresh_a.b_seq << ", " << winner << " wins");
    CHECK(fresh_a.b_wins != fresh_a.a_wins);
    CHECK(fresh_a.a_duplicates == 0);
    CHECK(fresh_a.b_duplicates == 0);
    CHECK_FALSE(fresh_a.a_flagged);
    CHECK(std::max(fresh_a.a_seq, fresh_a.b_seq) <= 3);
  }
}

TEST_CASE("mappings: owners: R distinct live nodes, the same at every node; R copies of every key") {
  SimNet net(37);
  const std::size_t n = 8, r = MeshConfig{}.map_replicas;
  start_mesh(net, n);
  // Two endpoints with two IPs each on nodes 1 and 2: keys = n * 2 + 2 * 3.
  publish(net, 1, kMacA, {kIp1, IpAddr::v4(0x0a000011)});
  publish(net, 2, kMacB, {kIp2, IpAddr::v4(0x0a000012)});
  net.step(1'000);
  std::vector<LookupKey> keys{kKeyA, LookupKey::of_mac(kVni, kMacB), LookupKey::of_ip(kVni, kIp1),
                              LookupKey::of_ip(kVni, kIp2), LookupKey::of_ip(kVni, IpAddr::v4(0x0a000011)),
                              LookupKey::of_ip(kVni, IpAddr::v4(0x0a000012))};
  for (std::size_t i = 0; i < n; ++i) {
    keys.push_back(LookupKey::of_mac(kVni, own_mac(i)));
    keys.push_back(LookupKey::of_ip(kVni, own_ip(i)));
  }
  std::map<std::size_t, std::size_t> load;  // owner -> keys
  for (const LookupKey& k : keys) {
    CAPTURE(lookup_key_str(k));
    const auto o = owners(net, 0, k);
    CHECK(o.size() == r);
    CHECK(std::set<std::size_t>(o.begin(), o.end()).size() == r);
    for (std::size_t i = 1; i < n; ++i) CHECK(owners(net, i, k) == o);
    CHECK(held_by_owners(net, k, r));
    for (std::size_t i : o) ++load[i];
  }
  // A key nobody registered has owners all the same.
  const LookupKey none = LookupKey::of_ip(200, IpAddr::v4(0xc0a80001));
  for (std::size_t i = 1; i < n; ++i) CHECK(owners(net, i, none) == owners(net, 0, none));
  std::size_t held = 0;
  for (std::size_t i = 0; i < n; ++i) held += net.nodes[i]->core->held_count();
  CHECK(held == keys.size() * r);
  MESSAGE(keys.size() << " keys x R " << r << " held over " << load.size() << " nodes");
  CHECK(load.size() >= n / 2);  // spread, not piled on one node
}

TEST_CASE("mappings: up to R-1 owners of a key killed: the survivor hands it off to the new owners") {
  const std::size_t r = MeshConfig{}.map_replicas;
  for (std::size_t kills = 1; kills < r; ++kills) {
    CAPTURE(kills);
    SimNet net(38 + kills);
    const std::size_t n = 8;
    start_mesh(net, n);
    // A MAC whose owners exclude its publisher (node 1) and the requesters (6, 7).
    MacAddr mac = kMacA;
    for (std::uint8_t x = 0;; ++x) {
      REQUIRE(x < 200);
      mac[5] = x;
      const auto o = owners(net, 0, LookupKey::of_mac(kVni, mac));
      if (std::none_of(o.begin(), o.end(), [](std::size_t i) { return i == 1 || i == 6 || i == 7; })) break;
    }
    const LookupKey key = LookupKey::of_mac(kVni, mac);
    publish(net, 1, mac, {});
    net.step(500);
    resolve(net, 6, key);
    REQUIRE(net.run_until([&] { return cached_from(net, 6, mac, 1); }, 1'000));
    const auto before = owners(net, 0, key);
    REQUIRE(held_by_owners(net, key, r));
    for (std::size_t i = 0; i < kills; ++i) net.crash(before[i]);
    // The publisher re-registers with new owners too; its registrations are lost here,
    // so the new owners can only have the key from the surviving owners' hand-off.
    std::size_t lost_registrations = 0;
    net.drop_if = [&](std::size_t from, std::size_t, const Bytes& payload) {
      auto msg = decode_message(payload, codec::Limits{});
      const bool lost = from == 1 && msg.ok() && std::holds_alternative<MapRegister>(msg.value());
      lost_registrations += lost ? 1 : 0;
      return lost;
    };
    auto t = net.run_until(
        [&] {
          for (std::size_t i = 0; i < kills; ++i) {
            if (!net.all_see(before[i], MemberState::failed)) return false;
          }
          return held_by_owners(net, key, r);
        },
        30'000);
    REQUIRE(t.has_value());
    MESSAGE(kills << " owner(s) killed: failed by all and the key held by " << r << " live owners after "
                  << *t << " ms (" << lost_registrations << " registrations by the publisher lost)");
    // Each new owner got it from a surviving owner (or from a new owner that had it
    // already and saw the next failure first).
    std::uint64_t handoffs = 0;
    for (std::size_t i = 0; i < n; ++i) handoffs += net.nodes[i]->up ? counters(net, i).map_handoffs : 0;
    CHECK(handoffs >= kills);
    CHECK(cached_from(net, 6, mac, 1));  // a cached answer outlives its owners' death
    resolve(net, 7, key);
    REQUIRE(net.run_until([&] { return cached_from(net, 7, mac, 1); }, 1'000));
    CHECK(counters(net, 7).map_timeouts == 0);
    CHECK(counters(net, 7).map_negative == 0);
  }
}

TEST_CASE("mappings: an owner restarted from its storage still holds its keys") {
  MeshConfig cfg;
  cfg.map_replicas = 1;  // the restarted owner is the only one: nobody else can answer
  SimNet net(39, cfg);
  const std::size_t n = 5;
  start_mesh(net, n);
  MacAddr mac = kMacA;
  std::size_t owner = 0;
  for (std::uint8_t x = 0;; ++x) {
    REQUIRE(x < 200);
    mac[5] = x;
    owner = owners(net, 0, LookupKey::of_mac(kVni, mac))[0];
    if (owner != 1 && owner != 2) break;
  }
  const LookupKey key = LookupKey::of_mac(kVni, mac);
  publish(net, 1, mac, {});
  net.step(500);
  REQUIRE(net.nodes[owner]->core->holds(key));
  // Orphan copies (keys of the same mapping it does not own) are stored too.
  CHECK(net.nodes[owner]->storage->count("held") >= net.nodes[owner]->core->held_count());
  const auto registers = counters(net, 1).map_registers_sent;
  // Crash and restart at once: nobody declares it failed, so nobody re-registers or
  // hands the key off; only its storage can bring the key back.
  net.crash(owner);
  net.start(owner, {0});
  CHECK(net.nodes[owner]->core->holds(key));
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 5'000));
  resolve(net, 2, key);
  REQUIRE(net.run_until([&] { return cached_from(net, 2, mac, 1); }, 1'000));
  CHECK(net.nodes[owner]->core->holds(key));
  CHECK(counters(net, 1).map_registers_sent == registers);
  CHECK(counters(net, owner).map_requests_served >= 1);
}

TEST_CASE("mappings: registrations outside the owner's cert scope, or tampered, are refused and counted") {
  SimNet net(40);
  auto wide = net.make_token({kVni, 300});
  auto narrow = net.make_token({kVni});
  for (int i = 0; i < 4; ++i) net.add_node(wide);
  const std::size_t x = net.add_node(narrow);  // may only use VNI 100
  net.start(0, {});
  for (std::size_t i = 1; i < net.nodes.size(); ++i) net.start(i, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 5'000));
  for (std::size_t i = 0; i < 4; ++i) publish(net, i, own_mac(i), {}, 300);
  publish(net, 0, own_mac(10), {});  // node 0 serves VNI 100 too
  net.step(1'000);
  // Node x cannot publish in VNI 300 through the API...
  auto st = net.nodes[x]->core->publish_endpoint(net.now, 300, kMacA, {});
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == "mesh.scope");
  // ...and a mapping it signs for 300 anyway is refused by the key's owners.
  EndpointMapping m{300, kMacA, {}, net.nodes[x]->id(), 1, false, {}};
  m.sign(net.nodes[x]->key);
  const LookupKey k300 = LookupKey::of_mac(300, kMacA);
  for (std::size_t o : owners(net, 0, k300)) {
    if (o == x) continue;
    const auto before = counters(net, o).drop_scope;
    net.inject(x, o, register_of(m));
    CHECK(counters(net, o).drop_scope == before + 1);
  }
  CHECK(holders(net, k300).empty());

  // Tampered mapping for VNI 100 (a payload bit, a signature bit, another node's name).
  EndpointMapping good{kVni, kMacA, {kIp1}, net.nodes[x]->id(), 1, false, {}};
  good.sign(net.nodes[x]->key);
  for (int variant = 0; variant < 3; ++variant) {
    CAPTURE(variant);
    EndpointMapping bad = good;
    if (variant == 0) bad.ips[0].bytes[3] ^= 1;
    if (variant == 1) bad.sig[0] ^= 0x80;
    if (variant == 2) bad.owner = net.nodes[1]->id();  // x cannot sign for node 1
    for (std::size_t o : owners(net, 0, kKeyA)) {
      if (o == x) continue;
      const auto before = counters(net, o).drop_bad_signature;
      net.inject(x, o, register_of(bad));
      CHECK(counters(net, o).drop_bad_signature == before + 1);
    }
    // Nor does a requester take one in a notify.
    const auto before0 = counters(net, 0).drop_bad_signature;
    Bytes one = encode_mapping(bad);
    net.inject(x, 0, encode_map_notify(std::span<const Bytes>(&one, 1)));
    CHECK(counters(net, 0).drop_bad_signature == before0 + 1);
    CHECK_FALSE(cached(net, 0, kMacA).has_value());
  }
  CHECK(holders(net, kKeyA).empty());
  // The genuine one is held and resolvable.
  for (std::size_t o : owners(net, 0, kKeyA)) {
    if (o != x) net.inject(x, o, register_of(good));
  }
  for (std::size_t o : owners(net, 0, kKeyA)) CHECK((o == x || net.nodes[o]->core->holds(kKeyA)));
  resolve(net, 0, kKeyA);
  REQUIRE(net.run_until([&] { return cached_from(net, 0, kMacA, x); }, 1'000));
}

TEST_CASE("mappings: at 10% loss every resolve succeeds, retrying other owners") {
  // Registrations are not acknowledged: a changed mapping is registered twice, 1 s
  // apart (kMapRegisterAgainMs), so one lost at all R owners twice (p = 1e-6 per key
  // here) is all that waits for the registrant's 5-minute refresh (default kept).
  MeshConfig cfg;
  SimNet net(41, cfg);
  net.loss = 0.10;  // from the start: registrations are lost too
  const std::size_t n = 8, per_node = 4;
  start_mesh(net, n, 30'000);
  auto mac_of = [](std::size_t node, std::size_t e) {
    return MacAddr{2, 0, 0, 0, static_cast<std::uint8_t>(0x10 + e), static_cast<std::uint8_t>(node)};
  };
  auto ip_of = [](std::size_t node, std::size_t e) {
    return IpAddr::v4(0x0a100000 + static_cast<std::uint32_t>(node * 16 + e));
  };
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t e = 0; e < per_node; ++e) publish(net, i, mac_of(i, e), {ip_of(i, e)});
  }
  net.step(1'000);
  // Every node looks up every other node's endpoints, half by MAC and half by IP,
  // asking again whenever the last answer was negative or every owner stayed silent.
  struct Want {
    std::size_t at, owner;
    MacAddr mac;
    LookupKey key;
  };
  std::vector<Want> wanted;
  std::size_t remote = 0;  // lookups the asker cannot answer itself
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      for (std::size_t e = 0; i != j && e < per_node; ++e) {
        const LookupKey k = (i + e) % 2 == 0 ? LookupKey::of_mac(kVni, mac_of(j, e))
                                             : LookupKey::of_ip(kVni, ip_of(j, e));
        wanted.push_back(Want{i, j, mac_of(j, e), k});
        const auto o = owners(net, i, k);
        remote += std::find(o.begin(), o.end(), i) == o.end() ? 1 : 0;
      }
    }
  }
  auto all_resolved = [&] {
    bool all = true;
    for (const Want& w : wanted) {
      if (cached_from(net, w.at, w.mac, w.owner)) continue;
      all = false;
      resolve(net, w.at, w.key);
    }
    return all;
  };
  auto t = net.run_until(all_resolved, 60'000);
  REQUIRE(t.has_value());
  std::uint64_t requests = 0, replies = 0, negative = 0, timeouts = 0;
  for (std::size_t i = 0; i < n; ++i) {
    requests += counters(net, i).map_requests;
    replies += counters(net, i).map_replies;
    negative += counters(net, i).map_negative;
    timeouts += counters(net, i).map_timeouts;
  }
  MESSAGE(n << " nodes, 10% loss: " << wanted.size() << " lookups (" << remote << " remote) answered after "
            << *t << " ms; " << requests << " requests, " << replies << " replies, " << negative
            << " negative, " << timeouts << " given up after every owner");
  CHECK(requests > remote);  // lost requests and replies were retried at the next owner
  CHECK(replies >= remote);
}

TEST_CASE("mappings: every owner silent: unresolved (timeout) after R tries, one per request timeout") {
  SimNet net(44);
  start_mesh(net, 6);
  const MeshConfig cfg;
  publish(net, 1, kMacA, {});
  net.step(500);
  const std::size_t asker = askers(net, {kKeyA}, {1}).at(0);
  // The asker's requests get through, the owners' replies do not.
  net.drop_if = [&](std::size_t, std::size_t to, const Bytes& payload) {
    auto msg = decode_message(payload, codec::Limits{});
    return to == asker && msg.ok() && std::holds_alternative<MapReply>(msg.value());
  };
  const std::uint64_t start = net.now;
  resolve(net, asker, kKeyA);
  REQUIRE(net.run_until([&] { return unresolved_events(*net.nodes[asker], kKeyA, "timeout") == 1; }, 5'000));
  const std::uint64_t took = net.now - start;
  MESSAGE("unresolved (timeout) after " << took << " ms");
  CHECK(took >= cfg.map_replicas * cfg.map_request_timeout_ms);
  CHECK(took <= cfg.map_replicas * cfg.map_request_timeout_ms + 50);
  CHECK(counters(net, asker).map_requests == cfg.map_replicas);
  CHECK(counters(net, asker).map_timeouts == 1);
  std::uint64_t served = 0;
  for (std::size_t o : owners(net, 0, kKeyA)) served += counters(net, o).map_requests_served;
  CHECK(served == cfg.map_replicas);  // each owner asked once, best first
  CHECK_FALSE(cached(net, asker, kMacA).has_value());
  // Not a negative answer: asked again at once, and answered once replies get through.
  net.drop_if = nullptr;
  CHECK(net.nodes[asker]->core->resolve(net.now, kKeyA) == MeshCore::Lookup::requested);
  net.flush(asker);
  REQUIRE(net.run_until([&] { return cached_from(net, asker, kMacA, 1); }, 1'000));
}

TEST_CASE("mappings: a cached mapping not used for a TTL lapses; one in use is refreshed") {
  MeshConfig cfg;
  cfg.map_ttl_ms = 5'000;
  SimNet net(42, cfg);
  start_mesh(net, 7);
  publish(net, 1, kMacA, {kIp1});
  net.step(500);
  const auto ask = askers(net, {kKeyA}, {1});
  REQUIRE(ask.size() >= 2);
  const std::size_t idle = ask[0], busy = ask[1];
  resolve(net, idle, kKeyA);  // cached, then left alone
  resolve(net, busy, kKeyA);  // cached, and carries traffic
  REQUIRE(net.run_until([&] { return cached_from(net, idle, kMacA, 1) && cached_from(net, busy, kMacA, 1); }, 1'000));
  const auto req_idle = counters(net, idle).map_requests, req_busy = counters(net, busy).map_requests;
  const std::uint64_t start = net.now;
  std::optional<std::uint64_t> lapsed_ms;
  while (net.now < start + 4 * cfg.map_ttl_ms) {
    net.nodes[busy]->core->touch(net.now, kVni, kMacA);
    net.step(100);
    if (!lapsed_ms && !cached(net, idle, kMacA)) lapsed_ms = net.now - start;
    CHECK(cached_from(net, busy, kMacA, 1));
  }
  REQUIRE(lapsed_ms.has_value());
  MESSAGE("unused entry lapsed " << *lapsed_ms << " ms after it was resolved (TTL " << cfg.map_ttl_ms << ")");
  // Used (resolved) less than a TTL before it came due, so refreshed once; unused for
  // that whole TTL, it lapses at the next cache sweep (every second).
  CHECK(*lapsed_ms <= 2 * cfg.map_ttl_ms + 2'000);
  CHECK(counters(net, idle).map_requests <= req_idle + 1);
  CHECK(events_for(*net.nodes[idle], MeshEvent::Kind::mapping_removed, kMacA) == 1);
  CHECK(events_for(*net.nodes[busy], MeshEvent::Kind::mapping_removed, kMacA) == 0);
  for (const EndpointInfo& e : net.nodes[busy]->core->endpoints()) {
    if (e.mapping.mac == kMacA) CHECK(e.expires_ms > net.now);
  }
  CHECK(counters(net, busy).map_requests >= req_busy + 3);  // about once per TTL
  // Lapsed: asked again on the next resolve.
  const auto before = counters(net, idle).map_requests;
  resolve(net, idle, kKeyA);
  REQUIRE(net.run_until([&] { return cached_from(net, idle, kMacA, 1); }, 1'000));
  CHECK(counters(net, idle).map_requests == before + 1);
}

TEST_CASE("routes: set_routes checks scope, bound and prefixes; members see them in the record") {
  SimNet net(41);
  auto tok = net.make_token({kVni});
  for (std::size_t i = 0; i < 3; ++i) net.add_node(tok);
  net.start(0, {});
  for (std::size_t i = 1; i < 3; ++i) net.start(i, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  MeshCore& core = *net.nodes[1]->core;
  const MacAddr gw{2, 0, 0, 0, 0, 0x99};
  const RouteAnnouncement r{kVni, IpPrefix::parse("192.168.77.0/24").value(), gw};

  auto st = core.set_routes(net.now, {RouteAnnouncement{200, r.prefix, gw}});
  CHECK_FALSE(st.ok());
  CHECK(st.error().code == "mesh.scope");
  st = core.set_routes(net.now, {RouteAnnouncement{kVni, IpPrefix{IpAddr::v4(0x0a000000), 40}, gw}});
  CHECK(st.error().code == "mesh.invalid");
  std::vector<RouteAnnouncement> many;
  for (std::uint32_t i = 0; i <= kRoutesPerNodeMax; ++i) {
    many.push_back(RouteAnnouncement{kVni, IpPrefix{IpAddr::v4(0x0a000000 + (i << 8)), 24}, gw});
  }
  CHECK(core.set_routes(net.now, many).error().code == "mesh.full");
  CHECK(core.self().routes.empty());  // nothing half-applied

  const std::uint64_t v0 = core.self().version;
  REQUIRE(core.set_routes(net.now, {r, r}).ok());  // de-duplicated
  CHECK(core.self().routes.size() == 1);
  CHECK(core.self().version == v0 + 1);
  REQUIRE(core.set_routes(net.now, {r}).ok());
  CHECK(core.self().version == v0 + 1);  // unchanged list: no new record
  const NodeId id = core.self().id();
  auto seen = [&](std::size_t at, std::size_t want) {
    auto m = net.nodes[at]->core->member(id);
    return m && m->record.routes.size() == want;
  };
  REQUIRE(net.run_until([&] { return seen(0, 1) && seen(2, 1); }, 3'000));
  CHECK(net.nodes[0]->core->member(id)->record.routes[0] == r);
  REQUIRE(core.set_routes(net.now, {}).ok());
  REQUIRE(net.run_until([&] { return seen(0, 0) && seen(2, 0); }, 3'000));
}

TEST_CASE("mappings: a first registration lost at every owner is sent again within a second") {
  SimNet net(44);
  start_mesh(net, 8);
  const MacAddr mac{2, 0, 0, 0, 0x44, 0x44};
  const LookupKey key = LookupKey::of_mac(kVni, mac);
  std::size_t dropped = 0;
  net.drop_if = [&](std::size_t from, std::size_t, const Bytes& payload) {
    auto msg = decode_message(payload, codec::Limits{});
    const bool reg = from == 1 && msg.ok() && std::holds_alternative<MapRegister>(msg.value());
    if (reg) ++dropped;
    return reg;
  };
  publish(net, 1, mac, {});
  net.step(200);  // the first registration is lost at all R owners
  net.drop_if = nullptr;
  REQUIRE(dropped >= 1);
  for (std::size_t o : owners(net, 0, key)) {
    if (o != 1) CHECK_FALSE(net.nodes[o]->core->holds(key));
  }
  // Not the 5-minute refresh: the second registration, kMapRegisterAgainMs later.
  auto t = net.run_until([&] {
    for (std::size_t o : owners(net, 0, key)) {
      if (!net.nodes[o]->core->holds(key)) return false;
    }
    return true;
  }, 2'000);
  REQUIRE(t.has_value());
  MESSAGE("held by every owner " << *t << " ms after the lost registration");
}
