#include <doctest/doctest.h>

#include "mesh/harness.hpp"
#include "mesh/messages.hpp"

using namespace meshd;
using namespace meshd::mesh;
using test::SimNet;

namespace {

MacAddr mac_of(std::size_t i) { return {2, 0, 0, 0, 7, static_cast<std::uint8_t>(i)}; }

// n nodes on one token (VNI 100), node 0 the bootstrap; each publishes one endpoint
// in VNI 100 and resolves everyone else's (mappings are registered at their keys'
// owners, not pushed), and the run waits until everyone holds everyone's mapping.
test::TestToken start_mesh(SimNet& net, std::size_t n, std::uint64_t settle_ms = 10'000) {
  auto tok = net.make_token({100, 200});
  for (std::size_t i = 0; i < n; ++i) net.add_node(tok);
  net.start(0, {});
  for (std::size_t i = 1; i < n; ++i) net.start(i, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, settle_ms));
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE(net.nodes[i]->core->publish_endpoint(net.now, 100, mac_of(i),
                                                 {IpAddr::v4(0x0a000000 + static_cast<std::uint32_t>(i))})
                .ok());
    net.flush(i);
  }
  REQUIRE(net.run_until(
      [&] {
        bool all = true;
        for (std::size_t i = 0; i < n; ++i) {
          if (net.nodes[i]->core->mappings().size() == n) continue;
          all = false;
          for (std::size_t j = 0; j < n; ++j) {
            if (j != i) net.nodes[i]->core->resolve(net.now, LookupKey::of_mac(100, mac_of(j)));
          }
          net.flush(i);
        }
        return all;
      },
      settle_ms));
  return tok;
}

bool holds_mapping_of(const SimNet& net, std::size_t at, std::size_t owner) {
  for (const auto& m : net.nodes[at]->core->mappings()) {
    if (m.owner == net.nodes[owner]->id()) return true;
  }
  return false;
}

// Every up node other than `victim` has dropped it: revoked, not a member, none of
// its mappings, no contact.
bool all_dropped(const SimNet& net, std::size_t victim) {
  for (std::size_t i = 0; i < net.nodes.size(); ++i) {
    if (i == victim || !net.nodes[i]->up) continue;
    const MeshCore& c = *net.nodes[i]->core;
    const NodeId id = net.nodes[victim]->id();
    if (!c.is_revoked(id) || c.member(id) || c.contact(id) || holds_mapping_of(net, i, victim)) {
      return false;
    }
  }
  return true;
}

std::size_t revoked_events(const test::SimNode& n, const NodeId& about) {
  return static_cast<std::size_t>(std::count_if(n.events.begin(), n.events.end(), [&](const MeshEvent& e) {
    return e.kind == MeshEvent::Kind::node_revoked && e.node == about;
  }));
}

Bytes gossip_of(const Update& u) {
  Bytes one = encode_update(u);
  return encode_gossip(std::span<const Bytes>(&one, 1));
}

}  // namespace

TEST_CASE("revocation: signed bytes are domain separated; tampering breaks verify") {
  SimNet net(40);
  auto tok = net.make_token({100});
  net.add_node(tok);
  Revocation r = net.revocation_for(0, "stolen laptop");
  CHECK(r.verify(net.root_pub()));
  Bytes sb = r.signed_bytes();
  const std::string_view domain = "meshd revocation v1";
  REQUIRE(sb.size() > domain.size() + 2);
  CHECK(std::equal(domain.begin(), domain.end(), sb.begin() + 2));  // after the u16 length
  Revocation bad = r;
  bad.sig[0] ^= 1;
  CHECK_FALSE(bad.verify(net.root_pub()));
  bad = r;
  bad.reason = "stolen laptoP";
  CHECK_FALSE(bad.verify(net.root_pub()));
  bad = r;
  bad.issued_s += 1;
  CHECK_FALSE(bad.verify(net.root_pub()));
  bad = r;
  bad.node[5] ^= 0x80;
  CHECK_FALSE(bad.verify(net.root_pub()));
  CHECK_FALSE(r.verify(net.nodes[0]->key.public_key()));  // not the root
  // Over-long reason: rejected even with a valid root signature over it.
  Revocation longr = r;
  longr.reason.assign(kRevocationReasonMax + 1, 'x');
  longr.sig = net.root().sign(longr.signed_bytes());
  CHECK_FALSE(longr.verify(net.root_pub()));
  longr.reason.resize(kRevocationReasonMax);
  longr.sign(net.root());
  CHECK(longr.verify(net.root_pub()));
}

TEST_CASE("revocation: codec round trip in updates, join_accept, push and sync_request") {
  SimNet net(41);
  auto tok = net.make_token({100});
  net.add_node(tok);
  net.add_node(tok);
  const codec::Limits limits;
  Revocation r = net.revocation_for(1, "rotated");
  auto piece = decode_revocation(encode_revocation(r), limits);
  REQUIRE(piece.ok());
  CHECK(piece.value() == r);

  auto g = decode_message(gossip_of(r), limits);
  REQUIRE(g.ok());
  const auto& ups = std::get<Gossip>(g.value()).updates;
  REQUIRE(ups.size() == 1);
  CHECK(std::get<Revocation>(ups[0]) == r);

  std::vector<Bytes> revs{encode_revocation(r), encode_revocation(net.revocation_for(0))};
  auto ja = decode_message(encode_join_accept({}, {}, revs), limits);
  REQUIRE(ja.ok());
  CHECK(std::get<JoinAccept>(ja.value()).revocations.size() == 2);
  CHECK(std::get<JoinAccept>(ja.value()).revocations[0] == r);
  auto pu = decode_message(encode_push({}, {}, true, revs), limits);
  REQUIRE(pu.ok());
  CHECK(std::get<Push>(pu.value()).want_locals);
  CHECK(std::get<Push>(pu.value()).revocations.size() == 2);

  // A message from a node that predates revocations (no trailing list / digest).
  codec::Writer w;
  w.array(5);
  w.u64(kMessageVersion);
  w.u64(static_cast<std::uint64_t>(MsgType::push));
  w.array(0);
  w.array(0);
  w.boolean(false);
  auto old_push = decode_message(w.bytes(), limits);
  REQUIRE(old_push.ok());
  CHECK(std::get<Push>(old_push.value()).revocations.empty());
  SyncRequest sr;
  sr.members_digest = 7;
  auto s_old = decode_message(encode_sync_request(sr), limits);
  REQUIRE(s_old.ok());
  CHECK_FALSE(std::get<SyncRequest>(s_old.value()).revocations_digest.has_value());
  sr.revocations_digest = 99;
  auto s_new = decode_message(encode_sync_request(sr), limits);
  REQUIRE(s_new.ok());
  CHECK(std::get<SyncRequest>(s_new.value()).revocations_digest == std::optional<std::uint64_t>(99));

  // A reason longer than the bound on the wire is malformed, not truncated.
  codec::Writer lw;
  lw.array(4);
  lw.bin(r.node);
  lw.u64(r.issued_s);
  lw.str(std::string(kRevocationReasonMax + 1, 'x'));
  lw.bin(r.sig);
  CHECK_FALSE(decode_revocation(lw.bytes(), limits).ok());
}

TEST_CASE("revocation: revoked through one member, all others drop it and its mappings within seconds") {
  SimNet net(42);
  start_mesh(net, 5);
  const std::size_t victim = 3;
  const NodeId vid = net.nodes[victim]->id();
  for (auto& n : net.nodes) n->events.clear();

  Revocation r = net.revocation_for(victim);
  REQUIRE(net.nodes[1]->core->revoke(net.now, r).ok());
  // Effective at once where it was issued.
  CHECK(net.nodes[1]->core->is_revoked(vid));
  CHECK_FALSE(net.nodes[1]->core->member(vid).has_value());
  CHECK_FALSE(holds_mapping_of(net, 1, victim));

  auto t = net.run_until([&] { return all_dropped(net, victim); }, 5'000);
  REQUIRE(t.has_value());
  MESSAGE("revocation known and enforced by all members after " << *t << " ms virtual");
  CHECK(*t <= 3'000);
  for (std::size_t i : {0u, 1u, 2u, 4u}) {
    const test::SimNode& n = *net.nodes[i];
    CHECK(revoked_events(n, vid) == 1);
    const auto ev = std::find_if(n.events.begin(), n.events.end(),
                                 [](const MeshEvent& e) { return e.kind == MeshEvent::Kind::node_revoked; });
    CHECK(ev->reason == "revoked");
    REQUIRE(ev->member.has_value());
    CHECK(ev->member->id() == vid);
    bool mapping_removed = std::any_of(n.events.begin(), n.events.end(), [&](const MeshEvent& e) {
      return e.kind == MeshEvent::Kind::mapping_removed && e.mapping && e.mapping->mac == mac_of(victim);
    });
    CHECK(mapping_removed);
    CHECK(n.core->mappings().size() == 4);  // everyone else's are untouched
    REQUIRE(n.core->revocations().size() == 1);
    CHECK(n.core->revocations()[0] == r);
    CHECK(n.storage->count("revocations") == 1);
    CHECK_FALSE(n.storage->get("members", to_hex(vid)).has_value());
  }

  // The revoked node hears of it and goes quiet, reporting itself revoked.
  test::SimNode& v = *net.nodes[victim];
  REQUIRE(net.run_until([&] { return revoked_events(v, vid) == 1; }, 3'000));
  CHECK(v.core->poll_timeout() == MeshCore::kNoDeadline);
  CHECK(v.core->publish_endpoint(net.now, 100, mac_of(9), {}).error().code == "mesh.left");

  // Idempotent: again through another member, and the copy gossiped back, change nothing.
  REQUIRE(net.nodes[2]->core->revoke(net.now, r).ok());
  net.step(20'000);
  for (std::size_t i : {0u, 1u, 2u, 4u}) {
    CHECK(revoked_events(*net.nodes[i], vid) == 1);
    CHECK(net.nodes[i]->core->revocations().size() == 1);
    for (std::size_t j : {0u, 1u, 2u, 4u}) {
      if (i == j) continue;
      auto m = net.nodes[i]->core->member(net.nodes[j]->id());
      REQUIRE(m.has_value());
      CHECK(m->state == MemberState::alive);
    }
  }
  CHECK(all_dropped(net, victim));
}

TEST_CASE("revocation: a revoked node cannot rejoin, even restarted from storage or afresh") {
  SimNet net(43);
  start_mesh(net, 5);
  const std::size_t victim = 4;
  const NodeId vid = net.nodes[victim]->id();
  net.crash(victim);  // it misses the news: its storage still lists the members
  REQUIRE(net.nodes[0]->core->revoke(net.now, net.revocation_for(victim)).ok());
  REQUIRE(net.run_until([&] { return all_dropped(net, victim); }, 5'000));

  // Restart from its storage, joining through a member.
  net.nodes[victim]->events.clear();
  const auto refusals_before = net.nodes[1]->core->counters().joins_refused;
  net.start(victim, {1});
  REQUIRE(net.run_until([&] { return revoked_events(*net.nodes[victim], vid) == 1; }, 5'000));
  CHECK(net.nodes[victim]->core->is_revoked(vid));
  CHECK(net.nodes[victim]->core->poll_timeout() == MeshCore::kNoDeadline);
  CHECK(net.nodes[1]->core->counters().joins_refused > refusals_before);
  net.step(10'000);
  CHECK(all_dropped(net, victim));
  std::uint64_t dropped = 0;
  for (std::size_t i = 0; i < 4; ++i) dropped += net.nodes[i]->core->counters().drop_revoked;
  CHECK(dropped >= 1);

  // Restarted again from the same storage: it knows at once and stays quiet.
  net.crash(victim);
  net.nodes[victim]->events.clear();
  net.start(victim, {1});
  CHECK(revoked_events(*net.nodes[victim], vid) == 1);
  CHECK(net.nodes[victim]->core->poll_timeout() == MeshCore::kNoDeadline);

  // Started afresh (storage lost): refused, never admitted.
  net.crash(victim);
  net.nodes[victim]->events.clear();
  net.start(victim, {2}, /*use_storage=*/false);
  REQUIRE(net.run_until([&] { return revoked_events(*net.nodes[victim], vid) == 1; }, 5'000));
  net.step(10'000);
  CHECK(all_dropped(net, victim));

  // Its record or mappings relayed by a third party are dropped too.
  NodeRecord rec = net.record_for(victim);
  rec.version = 1'000;
  rec.sign(net.nodes[victim]->key);
  EndpointMapping m{100, mac_of(8), {}, vid, 50, false, {}};
  m.sign(net.nodes[victim]->key);
  const auto before = net.nodes[2]->core->counters().drop_revoked;
  net.inject(0, 2, gossip_of(MemberEntry{rec, MemberState::alive, 99}));
  // Mappings travel as registrations to their keys' owners (a third party relays one
  // when it hands a key off); one gossiped the old way is ignored all the same.
  Bytes one = encode_mapping(m);
  net.inject(0, 2, encode_map_register(std::span<const Bytes>(&one, 1)));
  net.inject(0, 2, gossip_of(m));
  CHECK(net.nodes[2]->core->counters().drop_revoked == before + 2);
  CHECK_FALSE(net.nodes[2]->core->holds(LookupKey::of_mac(100, mac_of(8))));
  CHECK(all_dropped(net, victim));
}

TEST_CASE("revocation: a late joiner learns it from join_accept") {
  SimNet net(44);
  auto tok = start_mesh(net, 4);
  const std::size_t victim = 2;
  const NodeId vid = net.nodes[victim]->id();
  REQUIRE(net.nodes[0]->core->revoke(net.now, net.revocation_for(victim)).ok());
  REQUIRE(net.run_until([&] { return all_dropped(net, victim); }, 5'000));
  net.step(30'000);  // long after the gossip has died down

  const std::size_t late = net.add_node(tok);
  net.start(late, {1});
  REQUIRE(net.run_until([&] { return net.nodes[late]->count_events(MeshEvent::Kind::join_accepted) == 1; },
                        5'000));
  CHECK(net.nodes[late]->core->is_revoked(vid));
  CHECK(revoked_events(*net.nodes[late], vid) == 1);
  net.step(10'000);
  CHECK(all_dropped(net, victim));
  CHECK(net.nodes[late]->core->members().size() == 3);
}

TEST_CASE("revocation: anti-entropy spreads it when gossip does not") {
  MeshConfig cfg;
  cfg.broadcast_queue_max = 0;  // no gossip at all: only sync_request/push can carry it
  SimNet net(45, cfg);
  start_mesh(net, 5, 60'000);  // without gossip, setting up is slow too
  const std::size_t victim = 4;
  // Node 0 alone is told (as if it had been the only one to hear the gossip).
  Bytes one = encode_revocation(net.revocation_for(victim));
  net.inject(1, 0, encode_push({}, {}, false, std::span<const Bytes>(&one, 1)));
  CHECK(net.nodes[0]->core->is_revoked(net.nodes[victim]->id()));
  CHECK_FALSE(net.nodes[1]->core->is_revoked(net.nodes[victim]->id()));
  auto t = net.run_until([&] { return all_dropped(net, victim); }, 60'000);
  REQUIRE(t.has_value());
  MESSAGE("revocation spread by anti-entropy alone after " << *t << " ms virtual");
}

TEST_CASE("revocation: a member restarted from storage still knows it") {
  SimNet net(46);
  start_mesh(net, 5);
  const std::size_t victim = 1;
  const NodeId vid = net.nodes[victim]->id();
  REQUIRE(net.nodes[0]->core->revoke(net.now, net.revocation_for(victim)).ok());
  REQUIRE(net.run_until([&] { return all_dropped(net, victim); }, 5'000));
  net.crash(victim);

  net.crash(3);
  net.step(1'000);
  net.nodes[3]->events.clear();
  net.start(3, {0});
  // Known straight from storage, before any message: node_revoked is emitted again
  // so the agent refuses the node's sessions after its own restart.
  CHECK(net.nodes[3]->core->is_revoked(vid));
  CHECK_FALSE(net.nodes[3]->core->member(vid).has_value());
  CHECK(revoked_events(*net.nodes[3], vid) == 1);
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  net.step(5'000);
  CHECK(all_dropped(net, victim));
}

TEST_CASE("revocation: tampered revocations are rejected and counted") {
  SimNet net(47);
  start_mesh(net, 3);
  const std::size_t victim = 2;
  const NodeId vid = net.nodes[victim]->id();
  Revocation good = net.revocation_for(victim);
  MeshCore& c = *net.nodes[1]->core;

  Revocation flipped = good;
  flipped.sig[17] ^= 0x04;
  auto st = c.revoke(net.now, flipped);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == "mesh.bad_revocation");
  Revocation by_node = good;
  by_node.sign(net.nodes[0]->key);  // a member's key is not the root
  CHECK(c.revoke(net.now, by_node).error().code == "mesh.bad_revocation");
  CHECK_FALSE(c.is_revoked(vid));

  for (int variant = 0; variant < 3; ++variant) {
    Revocation bad = good;
    if (variant == 0) bad.sig[40] ^= 0x01;
    if (variant == 1) bad.node = net.nodes[0]->id();  // re-pointed at another node
    if (variant == 2) bad.reason += "!";
    const auto before = c.counters().drop_bad_signature;
    net.inject(0, 1, gossip_of(bad));
    Bytes one = encode_revocation(bad);
    net.inject(0, 1, encode_push({}, {}, false, std::span<const Bytes>(&one, 1)));
    CHECK(c.counters().drop_bad_signature == before + 2);
  }
  net.step(5'000);
  for (std::size_t i = 0; i < 3; ++i) CHECK(net.nodes[i]->core->revocations().empty());
  CHECK(net.all_alive());
  CHECK(net.nodes[1]->count_events(MeshEvent::Kind::node_revoked) == 0);
}

TEST_CASE("revocation: revoking this node itself is an error") {
  SimNet net(48);
  start_mesh(net, 3);
  MeshCore& c = *net.nodes[1]->core;
  auto st = c.revoke(net.now, net.revocation_for(1));
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == "mesh.revoke_self");
  CHECK_FALSE(c.is_revoked(net.nodes[1]->id()));
  CHECK(c.revocations().empty());
  net.step(5'000);
  CHECK(net.all_alive());
}

TEST_CASE("revocation: a revoked node keeps its token's use; a copy of the token is refused") {
  SimNet net(77);
  auto boot_tok = net.make_token({100});
  auto once = net.make_token({100}, /*uses=*/1);
  net.add_node(boot_tok);
  net.add_node(once);
  net.add_node(once);  // enrolls with a copy of the same single-use token
  net.start(0, {});
  net.start(1, {0});
  REQUIRE(net.run_until([&] { return net.nodes[1]->count_events(MeshEvent::Kind::join_accepted) == 1; }, 5'000));
  REQUIRE(net.nodes[0]->core->revoke(net.now, net.revocation_for(1)).ok());
  REQUIRE(net.run_until([&] { return all_dropped(net, 1); }, 5'000));
  net.start(2, {0});
  REQUIRE(net.run_until([&] { return net.nodes[2]->count_events(MeshEvent::Kind::join_refused) == 1; }, 5'000));
  const auto ev = std::find_if(net.nodes[2]->events.begin(), net.nodes[2]->events.end(),
                               [](const MeshEvent& e) { return e.kind == MeshEvent::Kind::join_refused; });
  CHECK(ev->reason == "token.used_up");
  CHECK_FALSE(net.nodes[0]->core->member(net.nodes[2]->id()).has_value());
}

TEST_CASE("revocation: a member revoked while recently failed leaves no partner entry behind") {
  // Recently failed members are gossip partners for gossip_to_dead_ms; their entries
  // point at member-table keys, so erasing the member must drop them (a Debug build
  // asserts on every sampled entry).
  SimNet net(43);
  start_mesh(net, 5);
  const std::size_t victim = 3;
  const NodeId vid = net.nodes[victim]->id();
  net.crash(victim);
  REQUIRE(net.run_until([&] {
    auto m = net.nodes[1]->core->member(vid);
    return m && m->state == MemberState::failed;
  }, 20'000));
  REQUIRE(net.nodes[1]->core->revoke(net.now, net.revocation_for(victim)).ok());
  CHECK_FALSE(net.nodes[1]->core->member(vid).has_value());
  // Well within gossip_to_dead_ms (30 s): partners are sampled on every gossip round.
  const auto sent = net.delivered;
  net.step(10'000);
  CHECK(net.delivered > sent);
  for (std::size_t i : {0u, 1u, 2u, 4u}) CHECK_FALSE(net.nodes[i]->core->member(vid).has_value());
}
