// Two (or three) TunnelManagers through an in-memory network on a virtual clock.
#include <doctest/doctest.h>

#include "crypto/handshake_wire.hpp"
#include "crypto/test_support.hpp"
#include "crypto/tunnel_pair.hpp"

using namespace meshd;
using namespace meshd::crypto;
using namespace meshd::crypto::test;
using Kind = TunnelEvent::Kind;

TEST_CASE("tunnel: handshake, then data both ways") {
  REQUIRE(init().ok());
  Pair p(100);
  p.connect();
  CHECK(p.net.count(p.a, Kind::peer_up) == 1);
  CHECK(p.net.count(p.b, Kind::peer_up) == 1);
  REQUIRE(p.net.nodes[p.b].received.size() == 1);
  CHECK(p.net.nodes[p.b].received[0] == data_packet(10, "hello"));
  auto chain = p.B().peer_chain(p.id_a());
  REQUIRE(chain.has_value());
  CHECK(chain->node.name == "a");
  // B learnt A from the handshake and can answer without set_peer.
  REQUIRE(p.B().send(p.net.now_ms, p.id_a(), data_packet(20, "world")));
  p.net.run();
  REQUIRE(p.net.nodes[p.a].received.size() == 1);
  CHECK(p.net.nodes[p.a].received[0] == data_packet(20, "world"));
  CHECK(p.A().counters().handshakes_completed == 1);
  CHECK(p.B().counters().handshakes_completed == 1);
  auto stats = p.A().peer_stats();
  REQUIRE(stats.size() == 1);
  CHECK(stats[0].session_up);
  CHECK(stats[0].endpoint == p.net.nodes[p.b].loc);
  CHECK(p.A().send(p.net.now_ms, NodeId{}, data_packet(1, "x")) == false);  // unknown peer
}

TEST_CASE("tunnel: fast path seal_in_place / open_in_place; keepalives consumed") {
  REQUIRE(init().ok());
  Pair p(101);
  p.connect();
  Bytes buf(wire::kTransportHeaderLen + 100 + wire::kTagLen);
  Bytes plain = data_packet(30, std::string(96, 'z'));
  std::memcpy(buf.data() + wire::kTransportHeaderLen, plain.data(), plain.size());
  Locator to;
  std::size_t n = p.A().seal_in_place(p.net.now_ms, p.id_b(), buf, plain.size(), to);
  REQUIRE(n == buf.size());
  CHECK(to == p.net.nodes[p.b].loc);
  NodeId from_peer{};
  std::span<std::uint8_t> out;
  REQUIRE(p.B().open_in_place(p.net.now_ms, p.net.nodes[p.a].loc, std::span<std::uint8_t>(buf.data(), n), from_peer, out));
  CHECK(from_peer == p.id_a());
  CHECK(Bytes(out.begin(), out.end()) == plain);
  // Replayed through the fast path.
  Bytes again(wire::kTransportHeaderLen + 100 + wire::kTagLen);
  std::memcpy(again.data() + wire::kTransportHeaderLen, plain.data(), plain.size());
  // Non-transport packets are left to handle_datagram.
  Bytes hs(200, 0);
  hs[0] = 1;
  CHECK_FALSE(p.B().open_in_place(p.net.now_ms, p.net.nodes[p.a].loc, hs, from_peer, out));
  // No session for an unknown node.
  CHECK(p.A().seal_in_place(p.net.now_ms, NodeId{}, buf, 10, to) == 0);
  // Passive keepalive: B received data and sent nothing; after keepalive_ms it sends one,
  // which A consumes without a `received` event.
  std::size_t a_received = p.net.nodes[p.a].received.size();
  std::uint64_t a_rx = p.A().counters().rx_datagrams;
  p.net.advance(11'000);
  CHECK(p.A().counters().rx_datagrams > a_rx);
  CHECK(p.net.nodes[p.a].received.size() == a_received);
}

TEST_CASE("tunnel: rekey every 120 s virtual with no loss") {
  REQUIRE(init().ok());
  Pair p(102);
  p.connect();
  std::size_t sent_ab = 1, sent_ba = 0;
  for (int s = 0; s < 400; ++s) {
    REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, std::to_string(s).append("a"))));
    ++sent_ab;
    REQUIRE(p.B().send(p.net.now_ms, p.id_a(), data_packet(10, std::to_string(s).append("b"))));
    ++sent_ba;
    p.net.advance(1000);
  }
  CHECK(p.net.nodes[p.b].received.size() == sent_ab);
  CHECK(p.net.nodes[p.a].received.size() == sent_ba);
  CHECK(p.A().counters().handshakes_completed >= 4);  // initial + 3 rekeys in 400 s
  CHECK(p.net.count(p.a, Kind::peer_down) == 0);
  CHECK(p.net.count(p.b, Kind::peer_down) == 0);
  CHECK(p.net.count(p.a, Kind::peer_up) == 1);
  CHECK(p.B().counters().drop_decrypt == 0);
  CHECK(p.B().counters().drop_unknown_index == 0);
  // Idle: a used session is rekeyed once more, then sessions expire (reject_after_time)
  // and the peer goes down.
  p.net.advance(400'000, 1000);
  CHECK(p.net.count(p.a, Kind::peer_down) == 1);
  CHECK(p.A().poll_timeout() == UINT64_MAX);
}

TEST_CASE("tunnel: replayed transport packet is rejected") {
  REQUIRE(init().ok());
  Pair p(103);
  p.connect();
  REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "once")));
  p.net.collect();
  REQUIRE(p.net.wire.size() == 1);
  Bytes d = p.net.wire.front().d;
  p.net.run();
  std::size_t before = p.net.nodes[p.b].received.size();
  p.B().handle_datagram(p.net.now_ms, p.net.nodes[p.a].loc, d);
  p.net.collect();
  CHECK(p.net.nodes[p.b].received.size() == before);
  CHECK(p.B().counters().drop_replay == 1);
}

TEST_CASE("tunnel: expired certificate rejected") {
  REQUIRE(init().ok());
  Pair p(104, {}, kNow_s - 10);  // A's node cert expired 10 s before "now"
  p.connect();
  CHECK(p.net.count(p.a, Kind::peer_up) == 0);
  REQUIRE(p.net.count(p.b, Kind::rejected) >= 1);
  CHECK(p.net.nodes[p.b].events[0].reason == "cert.expired");
  CHECK(p.net.nodes[p.b].events[0].peer == p.id_a());
  CHECK(p.B().counters().drop_bad_cert >= 1);
}

TEST_CASE("tunnel: wrong root rejected") {
  REQUIRE(init().ok());
  SeededRandomForTest rng(105);
  Mesh m1(rng), m2(rng);
  LocalIdentity a = make_identity(m1, rng, "a"), b = make_identity(m2, rng, "b");
  FakeNet net;
  std::size_t ia = net.add(a, {}, rng, 1), ib = net.add(b, {}, rng, 2);
  net.nodes[ia].tm->set_peer(b.node_key.public_key(), b.dh_key.public_key(), {net.nodes[ib].loc});
  REQUIRE(net.nodes[ia].tm->send(net.now_ms, b.node_key.public_key(), data_packet(10, "x")));
  net.run();
  CHECK(net.count(ia, Kind::peer_up) == 0);
  CHECK(net.count(ib, Kind::peer_up) == 0);
  // The prologue binds the mesh root: B cannot even decrypt A's static key.
  CHECK(net.nodes[ib].tm->counters().drop_handshake_failed == 1);
  // Same root key in the prologue but a chain from another root: refused by the cert check.
  LocalIdentity c = make_identity(m2, rng, "c");
  c.root_pub = m1.root.public_key();
  std::size_t ic = net.add(c, {}, rng, 3);
  net.nodes[ic].tm->set_peer(a.node_key.public_key(), a.dh_key.public_key(), {net.nodes[ia].loc});
  REQUIRE(net.nodes[ic].tm->send(net.now_ms, a.node_key.public_key(), data_packet(10, "x")));
  net.run();
  REQUIRE(net.count(ia, Kind::rejected) == 1);
  CHECK(net.nodes[ia].events.back().reason == "cert.bad_root_signature");
  CHECK(net.nodes[ia].tm->counters().drop_bad_cert == 1);
}

TEST_CASE("tunnel: refused node rejected, sessions torn down") {
  REQUIRE(init().ok());
  Pair p(106);
  p.connect();
  p.B().refuse(p.id_a());
  p.net.collect();
  CHECK(p.net.count(p.b, Kind::peer_down) == 1);
  CHECK_FALSE(p.B().send(p.net.now_ms, p.id_a(), data_packet(10, "no")));
  // A's next packet reaches no session on B; A's next handshake is refused.
  REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "x")));
  p.net.run();
  CHECK(p.B().counters().drop_unknown_index == 1);
  p.net.advance(125'000, 1000);  // A rekeys
  bool saw = false;
  for (const auto& e : p.net.nodes[p.b].events) saw |= e.kind == Kind::rejected && e.reason == "node.refused";
  CHECK(saw);
  CHECK(p.net.nodes[p.b].received.size() == 1);
}

TEST_CASE("tunnel: crossing handshakes both succeed") {
  REQUIRE(init().ok());
  Pair p(107);
  p.a_knows_b();
  p.b_knows_a();
  REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "from a")));
  REQUIRE(p.B().send(p.net.now_ms, p.id_a(), data_packet(10, "from b")));
  p.net.run();
  CHECK(p.net.count(p.a, Kind::peer_up) == 1);
  CHECK(p.net.count(p.b, Kind::peer_up) == 1);
  REQUIRE(p.net.nodes[p.a].received.size() == 1);
  REQUIRE(p.net.nodes[p.b].received.size() == 1);
  for (int i = 0; i < 50; ++i) {
    REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "x")));
    REQUIRE(p.B().send(p.net.now_ms, p.id_a(), data_packet(10, "y")));
    p.net.advance(5000, 1000);
  }
  CHECK(p.net.nodes[p.a].received.size() == 51);
  CHECK(p.net.nodes[p.b].received.size() == 51);
  CHECK(p.net.count(p.a, Kind::peer_down) == 0);
}

TEST_CASE("tunnel: queue bound while handshaking; give up emits peer_down") {
  REQUIRE(init().ok());
  Pair p(108);
  p.a_knows_b();
  p.net.drop_all = true;
  for (int i = 0; i < 100; ++i) REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, std::to_string(i))));
  CHECK(p.A().counters().drop_queue_full == 100 - 64);
  auto st = p.A().peer_stats();
  REQUIRE(st.size() == 1);
  CHECK(st[0].handshaking);
  std::uint64_t inits_before = p.A().counters().tx_datagrams;
  p.net.advance(91'000, 500);
  CHECK(p.A().counters().tx_datagrams - inits_before >= 15);  // retried every ~5 s
  CHECK(p.net.count(p.a, Kind::peer_down) == 1);
  CHECK(p.A().counters().drop_handshake_timeout == 64);
  // After the loss clears the newest 64 are not resent (they were dropped on give-up), but a
  // new send works.
  p.net.drop_all = false;
  REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "late")));
  p.net.run();
  REQUIRE(p.net.nodes[p.b].received.size() == 1);
}

TEST_CASE("tunnel: queued packets keep order and only the newest survive") {
  REQUIRE(init().ok());
  TunnelConfig cfg;
  cfg.queued_per_peer_max = 3;
  Pair p(109, cfg);
  p.a_knows_b();
  for (int i = 0; i < 5; ++i) REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, std::to_string(i))));
  p.net.run();
  auto& r = p.net.nodes[p.b].received;
  REQUIRE(r.size() == 3);
  CHECK(r[0] == data_packet(10, "2"));
  CHECK(r[2] == data_packet(10, "4"));
}

TEST_CASE("tunnel: garbage datagrams are counted and harmless") {
  REQUIRE(init().ok());
  Pair p(110);
  p.connect();
  SeededRandomForTest g(999);
  Locator evil = *Locator::parse("192.0.2.66:666");
  for (int i = 0; i < 3000; ++i) {
    Bytes d(g.uniform(1500));
    g.fill(d);
    if (!d.empty() && i % 2 == 0) {
      d[0] = static_cast<std::uint8_t>(1 + g.uniform(4));
      if (d.size() > 4) d[1] = d[2] = d[3] = 0;
    }
    p.B().handle_datagram(p.net.now_ms, evil, d);
    NodeId who{};
    std::span<std::uint8_t> out;
    CHECK_FALSE(p.B().open_in_place(p.net.now_ms, evil, d, who, out));
  }
  p.net.collect();
  const auto& c = p.B().counters();
  CHECK(c.drop_malformed + c.drop_bad_mac + c.drop_unknown_index + c.drop_decrypt >= 3000);
  CHECK(c.handshakes_completed == 1);
  CHECK(p.net.wire.empty());  // no response to garbage
  // The session still works and the endpoint did not move.
  REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "still")));
  p.net.run();
  CHECK(p.net.nodes[p.b].received.back() == data_packet(10, "still"));
  CHECK(p.B().peer_stats()[0].endpoint == p.net.nodes[p.a].loc);
}

TEST_CASE("tunnel: every bit flip of handshake init, response and transport packet is rejected") {
  REQUIRE(init().ok());
  Pair p(111);
  p.a_knows_b();
  REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "payload")));
  p.net.collect();
  REQUIRE(p.net.wire.size() == 1);
  Bytes init_pkt = p.net.wire.front().d;
  p.net.wire.clear();
  Locator la = p.net.nodes[p.a].loc;
  for (std::size_t bit = 0; bit < init_pkt.size() * 8; ++bit) {
    Bytes t = init_pkt;
    t[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    p.B().handle_datagram(p.net.now_ms, la, t);
  }
  p.net.collect();
  CHECK(p.net.wire.empty());
  CHECK(p.B().counters().drop_bad_mac + p.B().counters().drop_malformed == init_pkt.size() * 8);

  p.B().handle_datagram(p.net.now_ms, la, init_pkt);
  p.net.collect();
  REQUIRE(p.net.wire.size() == 1);
  Bytes resp_pkt = p.net.wire.front().d;
  CHECK(resp_pkt.size() <= init_pkt.size());  // no amplification
  p.net.wire.clear();
  Locator lb = p.net.nodes[p.b].loc;
  for (std::size_t bit = 0; bit < resp_pkt.size() * 8; ++bit) {
    Bytes t = resp_pkt;
    t[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    p.A().handle_datagram(p.net.now_ms, lb, t);
  }
  p.net.collect();
  CHECK(p.net.wire.empty());
  CHECK(p.A().counters().handshakes_completed == 0);
  p.A().handle_datagram(p.net.now_ms, lb, resp_pkt);
  p.net.collect();
  CHECK(p.A().counters().handshakes_completed == 1);
  REQUIRE(p.net.wire.size() == 1);  // the queued packet
  Bytes data_pkt = p.net.wire.front().d;
  p.net.wire.clear();
  for (std::size_t bit = 0; bit < data_pkt.size() * 8; ++bit) {
    Bytes t = data_pkt;
    t[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    p.B().handle_datagram(p.net.now_ms, la, t);
  }
  p.net.collect();
  CHECK(p.net.nodes[p.b].received.empty());
  CHECK(p.net.count(p.b, Kind::peer_up) == 0);
  p.B().handle_datagram(p.net.now_ms, la, data_pkt);
  p.net.collect();
  REQUIRE(p.net.nodes[p.b].received.size() == 1);
  CHECK(p.net.nodes[p.b].received[0] == data_packet(10, "payload"));
}

TEST_CASE("tunnel: roaming follows the last authenticated source; rate limit counted") {
  REQUIRE(init().ok());
  TunnelConfig cfg;
  cfg.handshakes_per_second_max = 2;
  Pair p(112, cfg);
  p.connect();
  Locator moved = *Locator::parse("10.9.9.9:1000");
  REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "roam")));
  p.net.collect();
  Bytes d = p.net.wire.front().d;
  p.net.wire.clear();
  p.B().handle_datagram(p.net.now_ms, moved, d);
  CHECK(p.B().peer_stats()[0].endpoint == moved);
  // Rate limit: replayed inits beyond the budget are dropped before any DH.
  p.net.captured.clear();
  p.A().set_peer(p.id_b(), p.idb.dh_key.public_key(), {p.net.nodes[p.b].loc});
  p.net.advance(121'000, 1000);  // A rekeys: an init is captured
  Bytes init_pkt;
  for (const auto& c : p.net.captured) {
    if (c[0] == 1) init_pkt = c;
  }
  REQUIRE_FALSE(init_pkt.empty());
  for (int i = 0; i < 10; ++i) p.B().handle_datagram(p.net.now_ms, p.net.nodes[p.a].loc, init_pkt);
  CHECK(p.B().counters().drop_rate_limited >= 8);
}
