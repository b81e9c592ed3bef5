#include <doctest/doctest.h>

#include <random>

#include "mesh/codec.hpp"
#include "mesh/harness.hpp"
#include "mesh/messages.hpp"

using namespace meshd;
using namespace meshd::mesh;

namespace {

codec::Limits limits() { return codec::Limits{}; }

}  // namespace

TEST_CASE("codec: writer/reader round trip and type errors") {
  codec::Writer w;
  w.array(4);
  w.u64(7);
  w.boolean(true);
  w.str("hi");
  w.array(1);
  w.bin(ByteSpan(reinterpret_cast<const std::uint8_t*>("ab"), 2));
  auto doc = codec::Document::decode(w.bytes(), limits());
  REQUIRE(doc.ok());
  auto r = doc->root(8);
  CHECK(r.u64() == 7);
  CHECK(r.boolean());
  CHECK(r.str(8) == "hi");
  auto inner = r.array(1);
  CHECK(inner.bin(2).size() == 2);
  CHECK(doc->ok());
  CHECK(r.remaining() == 0);
  r.u64();  // past the end
  CHECK_FALSE(doc->ok());
}

TEST_CASE("codec: malformed input is an error, not an exception") {
  const std::uint8_t truncated[] = {0x93, 0x01};         // array of 3, one element
  const std::uint8_t huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff};  // array32 of 4G
  const std::uint8_t map[] = {0x81, 0x01, 0x02};
  const std::uint8_t trailing[] = {0x90, 0x00};
  const std::uint8_t reserved[] = {0xc1};
  for (ByteSpan b : {ByteSpan(truncated), ByteSpan(huge_array), ByteSpan(map), ByteSpan(trailing),
                     ByteSpan(reserved), ByteSpan()}) {
    auto doc = codec::Document::decode(b, limits());
    CHECK_FALSE(doc.ok());
    if (!doc.ok()) CHECK(doc.error().code == "codec.malformed");
  }
  Bytes big(70000, 0x90);
  auto doc = codec::Document::decode(big, limits());
  REQUIRE_FALSE(doc.ok());
  CHECK(doc.error().code == "codec.too_big");
  // Deep nesting beyond depth_max.
  Bytes deep(40, 0x91);
  deep.push_back(0x01);
  CHECK_FALSE(codec::Document::decode(deep, limits()).ok());
}

TEST_CASE("messages: every type round-trips") {
  test::SimNet net(1);
  auto tok = net.make_token({100, 200});
  std::size_t a = net.add_node(tok);
  NodeRecord rec = net.record_for(a);
  rec.vnis = {100};
  rec.version = 3;
  rec.sign(net.nodes[a]->key);
  EndpointMapping m{100, {2, 0, 0, 0, 0, 1}, {IpAddr::v4(0x0a000001)}, rec.id(), 5, false, {}};
  m.sign(net.nodes[a]->key);

  auto jr = decode_message(encode_join_request(JoinRequest{9, rec}), limits());
  REQUIRE(jr.ok());
  const auto& j = std::get<JoinRequest>(jr.value());
  CHECK(j.incarnation == 9);
  CHECK(j.record.version == 3);
  CHECK(j.record.vnis == std::vector<std::uint32_t>{100});
  CHECK(j.record.verify_signature());
  CHECK(j.record.locators == rec.locators);

  std::vector<Bytes> ups = {encode_update(MemberEntry{rec, MemberState::suspect, 4}),
                            encode_update(StateUpdate{rec.id(), MemberState::failed, 6}),
                            encode_update(m)};
  auto p = decode_message(encode_ping(42, ups), limits());
  REQUIRE(p.ok());
  const auto& ping = std::get<Ping>(p.value());
  CHECK(ping.seq == 42);
  REQUIRE(ping.updates.size() == 3);
  CHECK(std::get<MemberEntry>(ping.updates[0]).state == MemberState::suspect);
  CHECK(std::get<StateUpdate>(ping.updates[1]).incarnation == 6);
  const auto& m2 = std::get<EndpointMapping>(ping.updates[2]);
  CHECK(m2.verify_signature());
  CHECK(m2.ips == m.ips);

  CHECK(std::get<Ack>(decode_message(encode_ack(1, {}), limits()).value()).seq == 1);
  CHECK(std::get<PingReq>(decode_message(encode_ping_req(PingReq{3, rec.id()}), limits()).value())
            .target == rec.id());
  CHECK(std::get<JoinRefuse>(decode_message(encode_join_refuse(JoinRefuse{"token.expired"}), limits())
                                 .value())
            .reason == "token.expired");
  SyncRequest sr{true, 77, {{100, 5}, {200, 6}}};
  auto s = std::get<SyncRequest>(decode_message(encode_sync_request(sr), limits()).value());
  CHECK(s.want_reply);
  CHECK(s.vni_digests.size() == 2);
  std::vector<Bytes> mem = {encode_member(MemberEntry{rec, MemberState::alive, 1})};
  std::vector<Bytes> maps = {encode_mapping(m)};
  auto ja = std::get<JoinAccept>(decode_message(encode_join_accept(mem, maps), limits()).value());
  CHECK(ja.members.size() == 1);
  CHECK(ja.mappings.size() == 1);
  auto pu = std::get<Push>(decode_message(encode_push(mem, maps, true), limits()).value());
  CHECK(pu.want_locals);
  CHECK(std::get<Leave>(decode_message(encode_leave(Leave{8}), limits()).value()).incarnation == 8);
  CHECK(std::get<Gossip>(decode_message(encode_gossip(ups), limits()).value()).updates.size() == 3);
}

TEST_CASE("messages: wrong version, unknown type, truncations, random bytes") {
  codec::Writer w;
  w.array(2);
  w.u64(2);
  w.u64(4);
  CHECK_FALSE(decode_message(w.bytes(), limits()).ok());
  codec::Writer t;
  t.array(2);
  t.u64(1);
  t.u64(99);
  CHECK_FALSE(decode_message(t.bytes(), limits()).ok());

  test::SimNet net(2);
  auto tok = net.make_token({100});
  std::size_t a = net.add_node(tok);
  Bytes full = encode_join_request(JoinRequest{1, net.record_for(a)});
  for (std::size_t n = 0; n < full.size(); ++n) {
    CHECK_FALSE(decode_message(ByteSpan(full.data(), n), limits()).ok());
  }
  std::mt19937_64 g(3);
  for (int i = 0; i < 2000; ++i) {
    Bytes junk(g() % 200);
    for (auto& b : junk) b = static_cast<std::uint8_t>(g());
    (void)decode_message(junk, limits());  // must not crash or throw
    Bytes flipped = full;
    flipped[g() % flipped.size()] ^= static_cast<std::uint8_t>(1u << (g() % 8));
    (void)decode_message(flipped, limits());
  }
}

TEST_CASE("types: signatures cover every field") {
  test::SimNet net(3);
  auto tok = net.make_token({100});
  std::size_t a = net.add_node(tok);
  NodeRecord rec = net.record_for(a);
  rec.sign(net.nodes[a]->key);
  CHECK(rec.verify_signature());
  NodeRecord r2 = rec;
  r2.version++;
  CHECK_FALSE(r2.verify_signature());
  r2 = rec;
  r2.sig[10] ^= 1;
  CHECK_FALSE(r2.verify_signature());
  r2 = rec;
  r2.locators[0].port++;
  CHECK_FALSE(r2.verify_signature());

  EndpointMapping m{100, {2, 0, 0, 0, 0, 1}, {}, rec.id(), 1, false, {}};
  m.sign(net.nodes[a]->key);
  CHECK(m.verify_signature());
  EndpointMapping m2 = m;
  m2.removed = true;
  CHECK_FALSE(m2.verify_signature());
  m2 = m;
  m2.mac[5] ^= 1;
  CHECK_FALSE(m2.verify_signature());
  // A record's signature does not verify as a mapping's and vice versa (domains differ).
  CHECK(rec.signed_bytes() != m.signed_bytes());
}

// ---- Signed incarnations: the optional `proof` (and the accuser beside it) on the wire.

namespace {

// Decodes one gossip message built from `updates` (encode_update outputs).
std::vector<Update> gossip_round_trip(const std::vector<Bytes>& updates) {
  auto g = decode_message(encode_gossip(updates), limits());
  REQUIRE(g.ok());
  return std::get<Gossip>(g.value()).updates;
}

}  // namespace

TEST_CASE("messages: state updates with and without accuser and proof round-trip in gossip") {
  test::SimNet net(4);
  auto tok = net.make_token({100});
  std::size_t a = net.add_node(tok);
  std::size_t b = net.add_node(tok);
  const NodeId node = net.nodes[a]->id();
  const NodeId accuser = net.nodes[b]->id();
  const crypto::Signature proof = sign_alive(net.nodes[a]->key, 7);
  REQUIRE(verify_alive_signature(node, 7, proof));

  const StateUpdate in[] = {
      StateUpdate{node, MemberState::suspect, 7, accuser, proof},
      StateUpdate{node, MemberState::alive, 7, std::nullopt, proof},
      StateUpdate{node, MemberState::suspect, 6, accuser, std::nullopt},
      StateUpdate{node, MemberState::failed, 5, std::nullopt, std::nullopt},
  };
  std::vector<Bytes> enc;
  for (const StateUpdate& s : in) enc.push_back(encode_update(s));
  // Each optional field costs its bytes and nothing else: the bare form is unchanged.
  CHECK(enc[2].size() == enc[3].size() + 34);       // bin8 header + 32-byte accuser
  CHECK(enc[1].size() == enc[3].size() + 2 + 66);   // empty accuser bin + bin8 header + 64
  CHECK(enc[0].size() == enc[3].size() + 34 + 66);
  const std::vector<Update> out = gossip_round_trip(enc);
  REQUIRE(out.size() == std::size(in));
  for (std::size_t i = 0; i < out.size(); ++i) {
    CAPTURE(i);
    const auto* s = std::get_if<StateUpdate>(&out[i]);
    REQUIRE(s != nullptr);
    CHECK(s->node == in[i].node);
    CHECK(s->state == in[i].state);
    CHECK(s->incarnation == in[i].incarnation);
    CHECK(s->accuser == in[i].accuser);
    CHECK(s->proof == in[i].proof);
  }
  // The proof survives as the node's signature of that incarnation.
  CHECK(verify_alive_signature(node, 7, *std::get<StateUpdate>(out[1]).proof));
}

TEST_CASE("messages: member entries, join requests and leaves with and without proof round-trip") {
  test::SimNet net(5);
  auto tok = net.make_token({100});
  std::size_t a = net.add_node(tok);
  NodeRecord rec = net.record_for(a);
  rec.version = 2;
  rec.sign(net.nodes[a]->key);
  const crypto::Signature proof = sign_alive(net.nodes[a]->key, 3);

  for (const auto& p : {std::optional<crypto::Signature>(proof), std::optional<crypto::Signature>()}) {
    CAPTURE(p.has_value());
    const MemberEntry e{rec, MemberState::suspect, 3, p};
    // Stand-alone (storage) and inside gossip, join accept and push.
    auto d = decode_member(encode_member(e), limits());
    REQUIRE(d.ok());
    CHECK(d->record == rec);
    CHECK(d->state == MemberState::suspect);
    CHECK(d->incarnation == 3);
    CHECK(d->proof == p);
    const std::vector<Update> ups = gossip_round_trip({encode_update(e)});
    REQUIRE(ups.size() == 1);
    const auto* g = std::get_if<MemberEntry>(&ups[0]);
    REQUIRE(g != nullptr);
    CHECK(g->record == rec);
    CHECK(g->incarnation == 3);
    CHECK(g->proof == p);
    std::vector<Bytes> mem = {encode_member(e)};
    auto ja = decode_message(encode_join_accept(mem, {}), limits());
    REQUIRE(ja.ok());
    REQUIRE(std::get<JoinAccept>(ja.value()).members.size() == 1);
    CHECK(std::get<JoinAccept>(ja.value()).members[0].proof == p);
    auto pu = decode_message(encode_push(mem, {}, false), limits());
    REQUIRE(pu.ok());
    REQUIRE(std::get<Push>(pu.value()).members.size() == 1);
    CHECK(std::get<Push>(pu.value()).members[0].proof == p);

    auto jr = decode_message(encode_join_request(JoinRequest{3, rec, p}), limits());
    REQUIRE(jr.ok());
    const auto& j = std::get<JoinRequest>(jr.value());
    CHECK(j.incarnation == 3);
    CHECK(j.record == rec);
    CHECK(j.proof == p);

    auto lv = decode_message(encode_leave(Leave{3, p}), limits());
    REQUIRE(lv.ok());
    CHECK(std::get<Leave>(lv.value()).incarnation == 3);
    CHECK(std::get<Leave>(lv.value()).proof == p);
  }
  // Without a proof the encodings are the pre-proof forms (older nodes read them).
  CHECK(encode_leave(Leave{3, proof}).size() == encode_leave(Leave{3}).size() + 66);
  CHECK(encode_join_request(JoinRequest{3, rec, proof}).size() ==
        encode_join_request(JoinRequest{3, rec}).size() + 66);
}

namespace {

// A hand-built state update: [1, node, state, inc, accuser_bin(, proof_bin)].
Bytes raw_state_update(const NodeId& node, ByteSpan accuser, std::optional<ByteSpan> proof) {
  codec::Writer w;
  w.array(proof ? 6 : 5);
  w.u64(1);
  w.bin(node);
  w.u64(static_cast<std::uint64_t>(MemberState::suspect));
  w.u64(4);
  w.bin(accuser);
  if (proof) w.bin(*proof);
  return w.take();
}

}  // namespace

TEST_CASE("messages: a state update with an accuser or proof of the wrong length is malformed") {
  NodeId node{};
  node[0] = 1;
  const Bytes five(5, 0xab), id32(32, 0xcd), id33(33, 0xcd), sig64(64, 0xef), sig63(63, 0xef);
  auto decodes = [](const Bytes& update) {
    return decode_message(encode_gossip(std::vector<Bytes>{update}), limits()).ok();
  };
  // The well-formed neighbours decode (so the failures below are about the lengths).
  CHECK(decodes(raw_state_update(node, id32, std::nullopt)));
  CHECK(decodes(raw_state_update(node, id32, ByteSpan(sig64))));
  CHECK(decodes(raw_state_update(node, ByteSpan(), ByteSpan(sig64))));
  CHECK(decodes(raw_state_update(node, ByteSpan(), std::nullopt)));  // empty accuser: none

  CHECK_FALSE(decodes(raw_state_update(node, five, std::nullopt)));
  CHECK_FALSE(decodes(raw_state_update(node, five, ByteSpan(sig64))));
  CHECK_FALSE(decodes(raw_state_update(node, id33, std::nullopt)));
  CHECK_FALSE(decodes(raw_state_update(node, id32, ByteSpan(sig63))));
  auto r = decode_message(encode_gossip(std::vector<Bytes>{raw_state_update(node, five, std::nullopt)}),
                          limits());
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == "codec.malformed");

  // Mutating a real encoding: shrink the accuser's bin8 length from 32 to 5 and cut
  // the bytes to match.
  NodeId accuser{};
  accuser.fill(0x11);
  Bytes good = encode_update(StateUpdate{node, MemberState::suspect, 4, accuser});
  REQUIRE(good.size() >= 34);
  const std::size_t hdr = good.size() - 34;  // bin8 marker (0xc4), length, 32 bytes
  REQUIRE(good[hdr] == 0xc4);
  REQUIRE(good[hdr + 1] == 32);
  Bytes bad(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(hdr + 2 + 5));
  bad[hdr + 1] = 5;
  CHECK(decodes(good));
  CHECK_FALSE(decodes(bad));
}

// ---- Issue 4: mapping system messages and routes in node records.

TEST_CASE("messages: map_register/request/reply/notify round-trip; keys by MAC and by IP") {
  test::SimNet net(5);
  auto tok = net.make_token({100});
  std::size_t a = net.add_node(tok);
  const NodeId id = net.record_for(a).id();
  EndpointMapping m{100, {2, 0, 0, 0, 0, 7}, {IpAddr::v4(0x0a000007)}, id, 3, false, {}};
  m.sign(net.nodes[a]->key);
  const std::vector<Bytes> one = {encode_mapping(m)};

  auto reg = std::get<MapRegister>(decode_message(encode_map_register(one), limits()).value());
  REQUIRE(reg.mappings.size() == 1);
  CHECK(reg.mappings[0].verify_signature());

  for (const LookupKey& k : {LookupKey::of_mac(100, m.mac), LookupKey::of_ip(100, m.ips[0])}) {
    auto req = std::get<MapRequest>(decode_message(encode_map_request(MapRequest{11, k}), limits()).value());
    CHECK(req.nonce == 11);
    CHECK(req.key == k);
    auto rep = std::get<MapReply>(decode_message(encode_map_reply(12, k, one, 300000), limits()).value());
    CHECK(rep.nonce == 12);
    CHECK(rep.key == k);
    CHECK(rep.ttl_ms == 300000);
    REQUIRE(rep.mappings.size() == 1);
    CHECK(rep.mappings[0].seq == 3);
    auto neg = std::get<MapReply>(decode_message(encode_map_reply(13, k, {}, 2000), limits()).value());
    CHECK(neg.mappings.empty());
  }
  auto no = std::get<MapNotify>(decode_message(encode_map_notify(one), limits()).value());
  REQUIRE(no.mappings.size() == 1);
  CHECK(no.mappings[0].mac == m.mac);
  CHECK(lookup_key_str(LookupKey::of_ip(100, m.ips[0])) == "100/10.0.0.7");

  // A key with VNI 0 is malformed.
  CHECK_FALSE(decode_message(encode_map_request(MapRequest{1, LookupKey::of_mac(0, m.mac)}), limits()).ok());
}

TEST_CASE("types: routes in a node record are signed, round-trip, and keep old records' bytes") {
  test::SimNet net(6);
  auto tok = net.make_token({100});
  std::size_t a = net.add_node(tok);
  NodeRecord rec = net.record_for(a);
  rec.sign(net.nodes[a]->key);
  const Bytes without = rec.signed_bytes();
  NodeRecord r = rec;
  RouteAnnouncement ra{100, IpPrefix::parse("192.168.77.0/24").value(), {2, 0, 0, 0, 0, 9}};
  r.routes = {ra};
  CHECK(r.signed_bytes() != without);  // the routes are covered
  r.sign(net.nodes[a]->key);
  CHECK(r.verify_signature());
  NodeRecord t = r;
  t.routes[0].next_hop_mac[5] ^= 1;
  CHECK_FALSE(t.verify_signature());
  t = r;
  t.routes.clear();
  CHECK_FALSE(t.verify_signature());
  rec.routes.clear();
  CHECK(rec.signed_bytes() == without);  // no routes: the bytes records always had

  auto jr = decode_message(encode_join_request(JoinRequest{1, r}), limits());
  REQUIRE(jr.ok());
  const auto& got = std::get<JoinRequest>(jr.value()).record;
  CHECK(got.routes == r.routes);
  CHECK(got.verify_signature());
  auto plain = decode_message(encode_join_request(JoinRequest{1, rec}), limits());
  REQUIRE(plain.ok());
  CHECK(std::get<JoinRequest>(plain.value()).record.routes.empty());

  // Unsorted or duplicate routes, or a prefix longer than its family, are malformed.
  NodeRecord bad = r;
  bad.routes = {ra, ra};
  CHECK_FALSE(decode_message(encode_join_request(JoinRequest{1, bad}), limits()).ok());
  bad.routes = {RouteAnnouncement{100, IpPrefix{IpAddr::v4(0x0a000000), 33}, {}}};
  CHECK_FALSE(decode_message(encode_join_request(JoinRequest{1, bad}), limits()).ok());
}

TEST_CASE("messages: compact push-pull — states_ok, pushed states, record requests; older forms") {
  test::SimNet net(6);
  auto tok = net.make_token({100});
  std::size_t a = net.add_node(tok);
  std::size_t b = net.add_node(tok);
  const NodeId ida = net.nodes[a]->id(), idb = net.nodes[b]->id();
  const crypto::Signature proof = sign_alive(net.nodes[a]->key, 7);

  // sync_request: states_ok rides with the buckets, and only with them.
  SyncRequest sr;
  sr.want_reply = true;
  sr.members_digest = 5;
  sr.revocations_digest = 1;
  sr.member_buckets.assign(kMemberBuckets, 3);
  sr.states_ok = true;
  auto s = std::get<SyncRequest>(decode_message(encode_sync_request(sr), limits()).value());
  CHECK(s.states_ok);
  CHECK(s.member_buckets.size() == kMemberBuckets);
  sr.states_ok = false;  // what an older node sends: no trailing field
  CHECK_FALSE(std::get<SyncRequest>(decode_message(encode_sync_request(sr), limits()).value()).states_ok);
  sr.states_ok = true;
  sr.member_buckets.clear();  // no buckets: nothing is pushed on this request, no flag
  Bytes no_buckets = encode_sync_request(sr);
  CHECK_FALSE(std::get<SyncRequest>(decode_message(no_buckets, limits()).value()).states_ok);

  // push: states as a fifth field; with and without proof; member states are exact.
  const MemberStateEntry with_proof{ida, 4, MemberState::suspect, 7, proof};
  const MemberStateEntry without{idb, 2, MemberState::alive, 0, std::nullopt};
  std::vector<Bytes> states = {encode_member_state(with_proof), encode_member_state(without)};
  Bytes push = encode_push({}, {}, false, {}, states);
  auto pu = std::get<Push>(decode_message(push, limits()).value());
  REQUIRE(pu.states.size() == 2);
  CHECK(pu.members.empty());
  CHECK(pu.states[0].node == ida);
  CHECK(pu.states[0].version == 4);
  CHECK(pu.states[0].state == MemberState::suspect);
  CHECK(pu.states[0].incarnation == 7);
  CHECK(pu.states[0].proof == std::optional<crypto::Signature>(proof));
  CHECK(pu.states[1].node == idb);
  CHECK_FALSE(pu.states[1].proof.has_value());
  // A state entry is small: a tenth of a member entry with its record, or less.
  const Bytes member = encode_member(MemberEntry{net.record_for(a), MemberState::alive, 0});
  MESSAGE("member entry " << member.size() << " B, state entry " << states[1].size() << " B ("
                          << states[0].size() << " B with proof)");
  CHECK(states[1].size() * 4 < member.size());
  // A push without states (older sender) has none.
  CHECK(std::get<Push>(decode_message(encode_push({}, {}, false), limits()).value()).states.empty());
  // A state with a bad node id or proof length is malformed.
  codec::Writer bad;
  bad.array(4);
  bad.bin(ByteSpan(ida.data(), 31));
  bad.u64(1);
  bad.u64(0);
  bad.u64(0);
  std::vector<Bytes> bad_states = {bad.take()};
  CHECK_FALSE(decode_message(encode_push({}, {}, false, {}, bad_states), limits()).ok());
  for (std::size_t n = 0; n < push.size(); ++n) {
    CHECK_FALSE(decode_message(ByteSpan(push.data(), n), limits()).ok());
  }

  // record_request: round trip; more than kRecordRequestMax ids is malformed.
  RecordRequest rr{{ida, idb}};
  auto r = std::get<RecordRequest>(decode_message(encode_record_request(rr), limits()).value());
  CHECK(r.nodes == rr.nodes);
  RecordRequest big;
  big.nodes.assign(kRecordRequestMax, ida);
  CHECK(decode_message(encode_record_request(big), limits()).ok());
  big.nodes.push_back(idb);
  auto too_big = decode_message(encode_record_request(big), limits());
  REQUIRE_FALSE(too_big.ok());
  CHECK(too_big.error().code == "codec.malformed");
}
