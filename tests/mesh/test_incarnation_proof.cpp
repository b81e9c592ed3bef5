// Signed incarnations (mesh/types.hpp sign_alive / verify_alive_signature): only a
// node can raise its own incarnation. Driven through the in-memory network of
// harness.hpp: a real member (C) sends forged gossip (SimNet::inject) and we watch
// the receiver's table, its counters and what it sends (SimNet::on_send).
#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "crypto/bytes.hpp"
#include "mesh/harness.hpp"
#include "mesh/messages.hpp"

using namespace meshd;
using namespace meshd::mesh;
using test::SimNet;

namespace {

constexpr std::size_t kA = 0, kB = 1, kC = 2, kX = 3;

// n nodes on one token; node 0 is everyone's bootstrap. Waits until all see all alive,
// then lets the mesh settle.
void start_mesh(SimNet& net, std::size_t n) {
  auto tok = net.make_token({100});
  for (std::size_t i = 0; i < n; ++i) net.add_node(tok);
  net.start(0, {});
  for (std::size_t i = 1; i < n; ++i) net.start(i, {0});
  REQUIRE(net.run_until([&] { return net.all_alive(); }, 10'000));
  net.step(2'000);
  REQUIRE(net.all_alive());
}

// Node `from` sends node `to` one gossip message carrying `updates`.
void gossip(SimNet& net, std::size_t from, std::size_t to, const std::vector<Update>& updates) {
  std::vector<Bytes> enc;
  for (const Update& u : updates) enc.push_back(encode_update(u));
  net.inject(from, to, encode_gossip(enc));
}

MemberInfo view(const SimNet& net, std::size_t at, std::size_t of) {
  auto m = net.nodes[at]->core->member(net.nodes[of]->id());
  REQUIRE(m.has_value());
  return *m;
}

std::uint64_t bad_sigs(const SimNet& net, std::size_t at) {
  return net.nodes[at]->core->counters().drop_bad_signature;
}

// A node's own incarnation, as it persisted it (MeshCore has no getter for it).
std::uint64_t own_incarnation(const SimNet& net, std::size_t i) {
  auto b = net.nodes[i]->storage->get("meta", "incarnation");
  REQUIRE(b.has_value());
  ByteReader r(*b);
  const std::uint64_t v = r.u64();
  REQUIRE(r.at_end());
  return v;
}

// What a message says about `node`'s incarnation: state updates and member entries
// (gossip, ping, ack, push, join accept), join requests and leaves.
struct Claim {
  MemberState state;
  std::uint64_t incarnation;
  std::optional<crypto::Signature> proof;
};

std::vector<Claim> claims_about(const NodeId& node, const NodeId& sender, const Bytes& payload) {
  std::vector<Claim> out;
  auto decoded = decode_message(payload, codec::Limits{});
  if (!decoded.ok()) return out;
  auto from_entry = [&](const MemberEntry& e) {
    if (e.record.id() == node) out.push_back(Claim{e.state, e.incarnation, e.proof});
  };
  auto from_updates = [&](const std::vector<Update>& ups) {
    for (const Update& u : ups) {
      if (const auto* s = std::get_if<StateUpdate>(&u); s != nullptr && s->node == node) {
        out.push_back(Claim{s->state, s->incarnation, s->proof});
      } else if (const auto* e = std::get_if<MemberEntry>(&u)) {
        from_entry(*e);
      }
    }
  };
  const Message& m = decoded.value();
  if (const auto* p = std::get_if<Ping>(&m)) from_updates(p->updates);
  if (const auto* k = std::get_if<Ack>(&m)) from_updates(k->updates);
  if (const auto* g = std::get_if<Gossip>(&m)) from_updates(g->updates);
  if (const auto* p = std::get_if<Push>(&m)) std::for_each(p->members.begin(), p->members.end(), from_entry);
  if (const auto* j = std::get_if<JoinAccept>(&m)) std::for_each(j->members.begin(), j->members.end(), from_entry);
  if (const auto* j = std::get_if<JoinRequest>(&m); j != nullptr && sender == node) {
    out.push_back(Claim{MemberState::alive, j->incarnation, j->proof});
  }
  if (const auto* l = std::get_if<Leave>(&m); l != nullptr && sender == node) {
    out.push_back(Claim{MemberState::left, l->incarnation, l->proof});
  }
  return out;
}

std::size_t failed_events(const SimNet& net) {
  std::size_t n = 0;
  for (const auto& node : net.nodes) n += node->count_events(MeshEvent::Kind::member_failed);
  return n;
}

}  // namespace

TEST_CASE("incarnation proof: a member cannot revive or raise another node without its signature") {
  SimNet net(401);
  start_mesh(net, 4);
  const NodeId xid = net.nodes[kX]->id();
  const std::uint64_t base = view(net, kA, kX).incarnation;
  const std::uint64_t forged = base + 5;
  const NodeRecord x_rec = view(net, kA, kX).record;  // X's real, signed record

  // Nothing A accepts about X above `base` may leave A; record what A sends about X.
  std::size_t a_claims_above = 0;
  net.on_send = [&](std::size_t from, std::size_t, const Bytes& payload) {
    if (from != kA) return;
    for (const Claim& c : claims_about(xid, net.nodes[kA]->id(), payload)) {
      if (c.incarnation > base) ++a_claims_above;
    }
  };

  struct Forgery {
    const char* what;
    Update update;
  };
  const std::vector<Forgery> forgeries = {
      {"state update, no proof", StateUpdate{xid, MemberState::alive, forged, std::nullopt, std::nullopt}},
      {"state update, proof signed by C",
       StateUpdate{xid, MemberState::alive, forged, std::nullopt, sign_alive(net.nodes[kC]->key, forged)}},
      {"state update, X's signature of another incarnation",
       StateUpdate{xid, MemberState::alive, forged, std::nullopt, sign_alive(net.nodes[kX]->key, forged - 1)}},
      {"member entry, no proof", MemberEntry{x_rec, MemberState::alive, forged, std::nullopt}},
      {"member entry, proof signed by C",
       MemberEntry{x_rec, MemberState::alive, forged, sign_alive(net.nodes[kC]->key, forged)}},
  };
  for (const Forgery& f : forgeries) {
    CAPTURE(f.what);
    const std::uint64_t before = bad_sigs(net, kA);
    gossip(net, kC, kA, {f.update});
    CHECK(view(net, kA, kX).incarnation == base);
    CHECK(view(net, kA, kX).state == MemberState::alive);
    CHECK(bad_sigs(net, kA) == before + 1);
  }
  // The mesh runs on: nobody ever holds X above `base`, A never passed a forgery on.
  net.step(5'000);
  for (std::size_t i : {kA, kB, kC}) CHECK(view(net, i, kX).incarnation == base);
  CHECK(a_claims_above == 0);

  // The same claim with X's own signature of that incarnation is accepted, and A's
  // relay carries the proof, so the others accept it from A too.
  const std::uint64_t before = bad_sigs(net, kA);
  gossip(net, kC, kA, {StateUpdate{xid, MemberState::alive, forged, std::nullopt,
                                   sign_alive(net.nodes[kX]->key, forged)}});
  CHECK(view(net, kA, kX).incarnation == forged);
  CHECK(view(net, kA, kX).state == MemberState::alive);
  CHECK(bad_sigs(net, kA) == before);
  CHECK(net.run_until([&] { return view(net, kB, kX).incarnation == forged; }, 5'000));
  CHECK(a_claims_above > 0);
  net.step(5'000);
  CHECK(net.all_alive());
  CHECK(failed_events(net) == 0);
}

TEST_CASE("incarnation proof: an unknown node at an incarnation above 0 is admitted only with its proof") {
  SimNet net(402);
  start_mesh(net, 4);
  // D is enrolled (valid, signed record) but never started: only C talks about it.
  const std::size_t d = net.add_node(net.make_token({100}));
  NodeRecord d_rec = net.record_for(d);
  d_rec.sign(net.nodes[d]->key);
  const NodeId did = net.nodes[d]->id();

  std::uint64_t before = bad_sigs(net, kA);
  gossip(net, kC, kA, {MemberEntry{d_rec, MemberState::alive, 3, std::nullopt}});
  CHECK_FALSE(net.nodes[kA]->core->member(did).has_value());
  CHECK(bad_sigs(net, kA) == before + 1);
  before = bad_sigs(net, kA);
  gossip(net, kC, kA, {MemberEntry{d_rec, MemberState::alive, 3, sign_alive(net.nodes[kC]->key, 3)}});
  CHECK_FALSE(net.nodes[kA]->core->member(did).has_value());
  CHECK(bad_sigs(net, kA) == before + 1);

  gossip(net, kC, kA, {MemberEntry{d_rec, MemberState::alive, 3, sign_alive(net.nodes[d]->key, 3)}});
  auto m = net.nodes[kA]->core->member(did);
  REQUIRE(m.has_value());
  CHECK(m->incarnation == 3);
  // At incarnation 0 no proof is needed.
  before = bad_sigs(net, kB);
  gossip(net, kC, kB, {MemberEntry{d_rec, MemberState::alive, 0, std::nullopt}});
  CHECK(net.nodes[kB]->core->member(did).has_value());
  CHECK(bad_sigs(net, kB) == before);
}

TEST_CASE("incarnation proof: a member cannot bury another node at an incarnation it never had") {
  SimNet net(403);
  start_mesh(net, 4);
  const NodeId xid = net.nodes[kX]->id();
  const std::uint64_t base = view(net, kA, kX).incarnation;
  const std::uint64_t next = base + 1;

  struct Forgery {
    const char* what;
    Update update;
  };
  const std::vector<Forgery> forgeries = {
      {"failed, no proof", StateUpdate{xid, MemberState::failed, next, std::nullopt, std::nullopt}},
      {"failed, proof signed by C",
       StateUpdate{xid, MemberState::failed, next, std::nullopt, sign_alive(net.nodes[kC]->key, next)}},
      {"left, no proof", StateUpdate{xid, MemberState::left, next, std::nullopt, std::nullopt}},
      {"suspect, no proof", StateUpdate{xid, MemberState::suspect, next, net.nodes[kC]->id(), std::nullopt}},
      {"failed member entry, no proof",
       MemberEntry{view(net, kA, kX).record, MemberState::failed, next, std::nullopt}},
  };
  for (const Forgery& f : forgeries) {
    CAPTURE(f.what);
    const std::uint64_t before = bad_sigs(net, kA);
    gossip(net, kC, kA, {f.update});
    CHECK(view(net, kA, kX).state == MemberState::alive);
    CHECK(view(net, kA, kX).incarnation == base);
    CHECK(bad_sigs(net, kA) == before + 1);
  }
  CHECK(net.nodes[kA]->count_events(MeshEvent::Kind::member_failed) == 0);
  CHECK(net.nodes[kA]->count_events(MeshEvent::Kind::member_left) == 0);
  net.step(10'000);
  CHECK(net.all_alive());
  for (std::size_t i : {kA, kB, kC}) CHECK(view(net, i, kX).incarnation == base);
  CHECK(failed_events(net) == 0);
  CHECK(net.nodes[kX]->core->counters().refutations == 0);  // nothing reached X to refute

  // Contrast: with X's signature of `next` the incarnation is proven, so the claim is
  // an ordinary SWIM fact (as after X restarted without storage) and A applies it;
  // X then refutes with next + 1 and is alive everywhere again.
  gossip(net, kC, kA, {StateUpdate{xid, MemberState::failed, next, std::nullopt,
                                   sign_alive(net.nodes[kX]->key, next)}});
  CHECK(view(net, kA, kX).state == MemberState::failed);
  CHECK(view(net, kA, kX).incarnation == next);
  CHECK(net.run_until([&] { return net.all_alive() && view(net, kA, kX).incarnation == next + 1; },
                      20'000));
}

TEST_CASE("incarnation proof: forged pressure on self is ignored; a real suspicion is refuted with a proof") {
  SimNet net(404);
  start_mesh(net, 4);
  const NodeId aid = net.nodes[kA]->id();
  const NodeId cid = net.nodes[kC]->id();
  const std::uint64_t cur = own_incarnation(net, kA);
  REQUIRE(view(net, kB, kA).incarnation == cur);
  const MeshCore& ca = *net.nodes[kA]->core;
  const std::uint64_t refutations = ca.counters().refutations;

  // Everything A says about itself, with the proofs it attaches.
  std::vector<Claim> sent;
  net.on_send = [&](std::size_t from, std::size_t, const Bytes& payload) {
    if (from != kA) return;
    for (const Claim& c : claims_about(aid, aid, payload)) sent.push_back(c);
  };

  // "A is suspect at 1000": no proof, C's signature, A's signature of another incarnation.
  for (const auto& proof : {std::optional<crypto::Signature>(),
                            std::optional<crypto::Signature>(sign_alive(net.nodes[kC]->key, 1000)),
                            std::optional<crypto::Signature>(sign_alive(net.nodes[kA]->key, 999))}) {
    CAPTURE(proof.has_value());
    const std::uint64_t before = bad_sigs(net, kA);
    gossip(net, kC, kA, {StateUpdate{aid, MemberState::suspect, 1000, cid, proof}});
    CHECK(own_incarnation(net, kA) == cur);
    CHECK(ca.counters().refutations == refutations);
    CHECK(bad_sigs(net, kA) == before + 1);
  }
  // A failed member entry about A at 1000, likewise.
  {
    const std::uint64_t before = bad_sigs(net, kA);
    NodeRecord self = ca.self();
    gossip(net, kC, kA, {MemberEntry{self, MemberState::failed, 1000, std::nullopt}});
    CHECK(own_incarnation(net, kA) == cur);
    CHECK(bad_sigs(net, kA) == before + 1);
  }
  net.step(5'000);
  CHECK(own_incarnation(net, kA) == cur);
  CHECK(ca.counters().refutations == refutations);
  for (std::size_t i : {kB, kC, kX}) CHECK(view(net, i, kA).incarnation == cur);
  CHECK(std::none_of(sent.begin(), sent.end(), [&](const Claim& c) { return c.incarnation > cur; }));

  // A suspicion at A's current incarnation: A refutes with cur + 1 and its proof.
  gossip(net, kC, kA, {StateUpdate{aid, MemberState::suspect, cur, cid, std::nullopt}});
  CHECK(own_incarnation(net, kA) == cur + 1);
  CHECK(ca.counters().refutations == refutations + 1);
  REQUIRE(net.run_until(
      [&] {
        for (std::size_t i : {kB, kC, kX}) {
          auto m = view(net, i, kA);
          if (m.incarnation != cur + 1 || m.state != MemberState::alive) return false;
        }
        return true;
      },
      5'000));
  std::size_t proven = 0, unproven = 0;
  for (const Claim& c : sent) {
    if (c.incarnation != cur + 1) continue;
    if (c.proof && verify_alive_signature(aid, cur + 1, *c.proof)) {
      ++proven;
    } else {
      ++unproven;
    }
  }
  MESSAGE("A's messages about itself at " << cur + 1 << ": " << proven << " with a valid proof, "
                                          << unproven << " without");
  CHECK(proven > 0);
  CHECK(unproven == 0);

  // Above our incarnation but signed by us (we lost our state and restarted): refuted.
  gossip(net, kC, kA, {StateUpdate{aid, MemberState::suspect, 1000, cid, sign_alive(net.nodes[kA]->key, 1000)}});
  CHECK(own_incarnation(net, kA) == 1001);
  CHECK(ca.counters().refutations == refutations + 2);
  CHECK(net.run_until([&] { return view(net, kB, kA).incarnation == 1001; }, 5'000));
  net.step(5'000);
  CHECK(net.all_alive());
  CHECK(failed_events(net) == 0);
}

TEST_CASE("incarnation proof: a node restarted without storage, held failed at k > 0, is back alive at k + 1") {
  SimNet net(405);
  start_mesh(net, 4);
  const NodeId xid = net.nodes[kX]->id();
  // Raise X's incarnation to k = 2 the ordinary way: two suspicions it refutes.
  for (std::uint64_t inc : {0u, 1u}) {
    REQUIRE(own_incarnation(net, kX) == inc);
    gossip(net, kC, kX, {StateUpdate{xid, MemberState::suspect, inc, net.nodes[kC]->id(), std::nullopt}});
  }
  const std::uint64_t k = own_incarnation(net, kX);
  REQUIRE(k == 2);
  REQUIRE(net.run_until(
      [&] {
        for (std::size_t i : {kA, kB, kC}) {
          if (view(net, i, kX).incarnation != k) return false;
        }
        return net.all_alive();
      },
      5'000));

  net.crash(kX);
  REQUIRE(net.run_until([&] { return net.all_see(kX, MemberState::failed); }, 30'000));
  // Long enough for every probe of X started before it failed to be over (see the
  // stale-probe test below: such a probe would suspect the restarted X once more).
  net.step(10'000);
  for (std::size_t i : {kA, kB, kC}) REQUIRE(view(net, i, kX).incarnation == k);
  for (std::size_t i : {kA, kB, kC}) REQUIRE(view(net, i, kX).state == MemberState::failed);

  std::vector<Claim> sent;  // what X says about itself after the restart
  net.on_send = [&](std::size_t from, std::size_t, const Bytes& payload) {
    if (from != kX) return;
    for (const Claim& c : claims_about(xid, xid, payload)) sent.push_back(c);
  };
  net.start(kX, {kB}, /*use_storage=*/false);  // incarnation 0, empty tables
  auto t = net.run_until(
      [&] {
        for (std::size_t i : {kA, kB, kC}) {
          if (view(net, i, kX).incarnation != k + 1) return false;
        }
        return net.all_alive();
      },
      20'000);
  REQUIRE(t.has_value());
  MESSAGE("restarted node alive at incarnation " << k + 1 << " everywhere after " << *t << " ms");
  CHECK(net.nodes[kX]->core->counters().refutations == 1);
  CHECK(net.nodes[kX]->core->members().size() == 3);
  std::size_t proven = 0, unproven = 0;
  for (const Claim& c : sent) {
    if (c.incarnation == 0) continue;  // its join requests, before it learned k
    CHECK(c.incarnation == k + 1);
    if (c.proof && verify_alive_signature(xid, c.incarnation, *c.proof)) {
      ++proven;
    } else {
      ++unproven;
    }
  }
  CHECK(proven > 0);
  CHECK(unproven == 0);
  net.step(10'000);
  CHECK(net.all_alive());
  for (std::size_t i : {kA, kB, kC}) CHECK(view(net, i, kX).incarnation == k + 1);
  CHECK(net.nodes[kX]->core->counters().refutations == 1);
}

// Found while writing the restart test above (seed 405 without the 10 s wait): A's
// probe of X goes unanswered because X is down; before A's probe period ends X is
// declared failed, restarts without storage and refutes at a new incarnation, which A
// accepts. A's probe tick then counts the old, unanswered probe against X's NEW
// incarnation: A suspects X at k + 1 and X has to refute again (k + 2), although
// nothing was sent to the new X that it failed to answer. memberlist suspects at the
// incarnation the probe was sent for (a copy taken when the probe starts), which a
// newer incarnation overrides. probe.cpp now does the same (Probe::incarnation).
TEST_CASE("incarnation proof: a probe sent before a refutation does not suspect the new incarnation") {
  SimNet net(406);
  start_mesh(net, 4);
  const NodeId xid = net.nodes[kX]->id();
  const std::uint64_t k = view(net, kA, kX).incarnation;
  REQUIRE(k == 0);
  // X goes down just as A probes it: the probe ping is lost, then X crashes.
  std::optional<std::uint64_t> probe_seq, probe_ms;
  net.drop_if = [&](std::size_t from, std::size_t to, const Bytes& payload) {
    if (probe_seq || from != kA || to != kX) return false;
    auto m = decode_message(payload, codec::Limits{});
    const Ping* p = m.ok() ? std::get_if<Ping>(&m.value()) : nullptr;
    if (p == nullptr) return false;
    probe_seq = p->seq;
    probe_ms = net.now;
    return true;
  };
  REQUIRE(net.run_until([&] { return probe_seq.has_value(); }, 5'000));
  net.crash(kX);
  const std::uint64_t failures = net.nodes[kA]->core->counters().probe_failures;
  // After the direct retry and the helpers' pings (all to the dead X), within the same
  // probe period: another member's suspicion timer ran out (gossiped to A), X restarts
  // without storage through A, learns it is failed at k and refutes at k + 1, and its
  // refutation reaches A.
  net.step(*probe_ms + net.config().probe_timeout_ms + 40 - net.now);
  REQUIRE(net.nodes[kA]->core->counters().probe_failures == failures);
  gossip(net, kC, kA, {StateUpdate{xid, MemberState::failed, k, std::nullopt, std::nullopt}});
  REQUIRE(view(net, kA, kX).state == MemberState::failed);
  net.start(kX, {kA}, /*use_storage=*/false);
  REQUIRE(net.run_until([&] { return net.nodes[kX]->core->counters().refutations == 1; }, 100));
  gossip(net, kX, kA, {StateUpdate{xid, MemberState::alive, k + 1, std::nullopt,
                                   sign_alive(net.nodes[kX]->key, k + 1)}});
  REQUIRE(view(net, kA, kX).state == MemberState::alive);
  REQUIRE(view(net, kA, kX).incarnation == k + 1);
  REQUIRE(net.nodes[kA]->core->counters().probe_failures == failures);  // the tick is still ahead
  REQUIRE(net.run_until([&] { return net.nodes[kA]->core->counters().probe_failures > failures; },
                        5'000));
  MESSAGE("A's probe of X (seq " << *probe_seq << ") failed " << net.now - *probe_ms
                                 << " ms after it was sent; A now holds X "
                                 << std::string(member_state_name(view(net, kA, kX).state)) << " at "
                                 << view(net, kA, kX).incarnation);
  CHECK(view(net, kA, kX).state == MemberState::alive);
  net.step(5'000);
  CHECK(net.all_alive());
  CHECK(net.nodes[kX]->core->counters().refutations == 1);
  CHECK(view(net, kA, kX).incarnation == k + 1);
}
