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
