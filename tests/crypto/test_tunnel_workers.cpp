// TunnelManager with data-plane workers: the DataSessions snapshot, and timers that work
// when data bypasses the manager.
#include <doctest/doctest.h>

#include <array>

#include "crypto/session.hpp"
#include "crypto/test_support.hpp"
#include "crypto/tunnel_pair.hpp"

using namespace meshd;
using namespace meshd::crypto;
using namespace meshd::crypto::test;
using Kind = TunnelEvent::Kind;

namespace {

bool keepalive_plain(ByteSpan plain) {
  return plain.size() == wire::kInnerHeaderLen && (plain[3] & wire::kFlagKeepalive) != 0;
}

// One simulated data-plane worker per node, used the way the agent's workers use the
// API: seal and open on the snapshot's sessions with their own slots; everything else
// (no entry, expired, other source, unconfirmed session, handshakes) goes to the owner.
struct Workers {
  Pair& p;
  struct Stats {
    std::size_t fast_tx = 0, slow_tx = 0, fast_rx = 0, slow_rx = 0, keepalives_rx = 0,
                dropped_rx = 0;
  };
  std::array<Stats, 2> st{};
  std::array<unsigned, 2> tx_slot{1, 3}, rx_slot{2, 5};

  explicit Workers(Pair& pair) : p(pair) {
    p.net.intercept = [this](std::size_t to, const Locator& from, Bytes& d) {
      return receive(to, from, d);
    };
  }
  TunnelManager& tm(std::size_t n) { return *p.net.nodes[n].tm; }

  void send(std::size_t from_node, std::size_t to_node, const NodeId& to, ByteSpan plain) {
    const std::uint64_t now = p.net.now_ms;
    auto ds = tm(from_node).data_sessions();
    auto it = ds->send.find(to);
    if (it != ds->send.end() && now < it->second.expires_ms) {
      REQUIRE(it->second.endpoint == p.net.nodes[to_node].loc);
      Bytes d(wire::kTransportHeaderLen + plain.size() + wire::kTagLen);
      std::memcpy(d.data() + wire::kTransportHeaderLen, plain.data(), plain.size());
      std::size_t n = it->second.session->seal_in_place(tx_slot[from_node], d, plain.size());
      if (n > 0) {
        it->second.session->note_tx(now, n, !keepalive_plain(plain));
        ++st[from_node].fast_tx;
        p.net.wire.push_back({to_node, p.net.nodes[from_node].loc, std::move(d)});
        return;
      }
    }
    ++st[from_node].slow_tx;
    REQUIRE(tm(from_node).send(now, to, plain));
    p.net.collect();
  }

  bool receive(std::size_t to, const Locator& from, Bytes& d) {
    if (d.empty() || d[0] != static_cast<std::uint8_t>(wire::PacketType::transport)) return false;
    const std::uint64_t now = p.net.now_ms;
    auto ds = tm(to).data_sessions();
    auto hdr = parse_transport_header(d);
    auto it = hdr ? ds->recv.find(hdr->receiver_index) : ds->recv.end();
    if (it != ds->recv.end() && it->second.confirmed && it->second.endpoint == from &&
        now < it->second.expires_ms) {
      Session& s = *it->second.session;
      std::span<std::uint8_t> plain;
      std::uint8_t ok = s.decrypt_in_place(rx_slot[to], d, *hdr, plain) ? 1 : 0;
      s.accept_counters(std::span<const std::uint64_t>(&hdr->counter, 1),
                        std::span<std::uint8_t>(&ok, 1));
      if (!ok) {
        ++st[to].dropped_rx;
        return true;
      }
      ++st[to].fast_rx;
      const bool ka = keepalive_plain(plain);
      s.note_rx(now, d.size(), !ka);
      if (ka) {
        ++st[to].keepalives_rx;
      } else {
        p.net.nodes[to].received.emplace_back(plain.begin(), plain.end());
      }
      return true;
    }
    ++st[to].slow_rx;
    NodeId peer{};
    std::span<std::uint8_t> plain;
    if (tm(to).open_in_place(now, from, d, peer, plain)) {
      if (plain.empty()) {
        ++st[to].keepalives_rx;
      } else {
        p.net.nodes[to].received.emplace_back(plain.begin(), plain.end());
      }
    } else {
      ++st[to].dropped_rx;
    }
    return true;
  }
};

}  // namespace

TEST_CASE("workers: data_sessions() changes on handshake, roam, remove_peer and refuse only") {
  REQUIRE(init().ok());
  Pair p(200);
  auto a0 = p.A().data_sessions();
  auto b0 = p.B().data_sessions();
  REQUIRE(a0 != nullptr);
  CHECK(a0->send.empty());
  CHECK(a0->recv.empty());
  CHECK(p.A().data_sessions() == a0);  // nothing changed: the same snapshot
  p.a_knows_b();
  REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "hello")));
  p.net.collect();
  CHECK(p.A().data_sessions() == a0);  // handshaking is not a session
  // Init -> B: B has an unconfirmed `next` session, nothing to send on.
  REQUIRE(p.net.wire.size() == 1);
  auto step = [&] {
    auto f = std::move(p.net.wire.front());
    p.net.wire.pop_front();
    p.net.nodes[f.to].tm->handle_datagram(p.net.now_ms, f.from, f.d);
    p.net.collect();
  };
  step();
  auto b1 = p.B().data_sessions();
  CHECK(b1 != b0);
  CHECK(b1->version > b0->version);
  CHECK(b1->send.empty());
  REQUIRE(b1->recv.size() == 1);
  CHECK_FALSE(b1->recv.begin()->second.confirmed);
  CHECK(b1->recv.begin()->second.peer == p.id_a());
  // Response -> A: A's current session, confirmed, with B's endpoint.
  step();
  auto a1 = p.A().data_sessions();
  CHECK(a1->version > a0->version);
  REQUIRE(a1->send.count(p.id_b()) == 1);
  const DataSendEntry& se = a1->send.at(p.id_b());
  CHECK(se.endpoint == p.net.nodes[p.b].loc);
  CHECK(se.expires_ms == p.net.now_ms + TunnelConfig{}.reject_after_time_ms);
  CHECK(se.session->initiator());
  REQUIRE(a1->recv.size() == 1);
  CHECK(a1->recv.begin()->first == se.session->local_index());
  CHECK(a1->recv.begin()->second.confirmed);
  CHECK(a1->recv.begin()->second.endpoint == p.net.nodes[p.b].loc);
  // A's first data packet -> B promotes its session.
  step();
  auto b2 = p.B().data_sessions();
  CHECK(b2->version > b1->version);
  REQUIRE(b2->recv.size() == 1);
  CHECK(b2->recv.begin()->second.confirmed);
  CHECK(b2->recv.begin()->second.session == b1->recv.begin()->second.session);
  REQUIRE(b2->send.count(p.id_a()) == 1);
  CHECK(b2->send.at(p.id_a()).session->remote_index() == se.session->local_index());
  p.net.run();
  // Data both ways and timers (keepalives) change nothing.
  for (int i = 0; i < 5; ++i) {
    REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "x")));
    REQUIRE(p.B().send(p.net.now_ms, p.id_a(), data_packet(10, "y")));
    p.net.advance(3000, 500);
  }
  p.net.advance(30'000, 1000);
  CHECK(p.A().data_sessions() == a1);
  CHECK(p.B().data_sessions() == b2);
  // Roaming: an authentic packet from a new source moves B's endpoint for A.
  Locator moved = *Locator::parse("10.9.9.9:1000");
  REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "roam")));
  p.net.collect();
  Bytes d = p.net.wire.front().d;
  p.net.wire.clear();
  p.B().handle_datagram(p.net.now_ms, moved, d);
  auto b3 = p.B().data_sessions();
  CHECK(b3->version > b2->version);
  CHECK(b3->send.at(p.id_a()).endpoint == moved);
  CHECK(b3->recv.begin()->second.endpoint == moved);
  CHECK(p.B().data_sessions() == b3);
  // remove_peer / refuse drop the entries.
  p.B().remove_peer(p.id_a());
  auto b4 = p.B().data_sessions();
  CHECK(b4->version > b3->version);
  CHECK(b4->send.empty());
  CHECK(b4->recv.empty());
  // A worker still holding the old snapshot keeps a live Session object.
  CHECK(b3->send.at(p.id_a()).session->valid());
  p.A().refuse(p.id_b());
  auto a2 = p.A().data_sessions();
  CHECK(a2->version > a1->version);
  CHECK(a2->send.empty());
  CHECK(a2->recv.empty());
}

TEST_CASE("workers: keepalive and rekey when data only goes through the slot API") {
  REQUIRE(init().ok());
  // dir 0: A (initiator) sends, B only answers with keepalives; dir 1: B (responder)
  // sends and A only answers.
  for (int dir = 0; dir < 2; ++dir) {
    CAPTURE(dir);
    Pair p(201 + static_cast<std::uint64_t>(dir));
    Workers w(p);
    p.connect();
    const std::size_t snd = dir == 0 ? p.a : p.b, rcv = dir == 0 ? p.b : p.a;
    const NodeId to = dir == 0 ? p.id_b() : p.id_a();
    CHECK(w.st[p.b].slow_rx >= 1);  // the first packet on B's new session: promotion by the owner
    const std::size_t received_before = p.net.nodes[rcv].received.size();
    const std::uint64_t hs_before = p.A().counters().handshakes_completed;
    std::uint64_t bytes_sent = 0;
    for (int s = 0; s < 400; ++s) {
      Bytes pkt = data_packet(10, std::string(100, 'w') + std::to_string(s));
      bytes_sent += pkt.size() + wire::kTransportHeaderLen + wire::kTagLen;
      w.send(snd, rcv, to, pkt);
      p.net.advance(1000, 100);
      // With workers the manager asks to be called at least every second.
      CHECK(p.net.nodes[snd].tm->poll_timeout() <= p.net.now_ms + kWorkerTimerMax_ms);
    }
    CHECK(p.net.nodes[rcv].received.size() - received_before == 400);
    CHECK(w.st[snd].fast_tx >= 395);  // the owner only when a snapshot was stale
    CHECK(w.st[rcv].fast_rx >= 390);  // the owner only for promotions
    CHECK(w.st[rcv].dropped_rx == 0);
    CHECK(w.st[snd].dropped_rx == 0);
    // Passive keepalives: the receiver sends no data, yet answers about every 10 s.
    CHECK(w.st[snd].keepalives_rx >= 30);
    CHECK(w.st[snd].keepalives_rx <= 45);
    // Rekeyed about every 120-125 s although no data passed through either manager.
    CHECK(p.A().counters().handshakes_completed - hs_before >= 3);
    CHECK(p.B().counters().handshakes_completed - hs_before >= 3);
    CHECK(p.net.count(p.a, Kind::peer_down) == 0);
    CHECK(p.net.count(p.b, Kind::peer_down) == 0);
    CHECK(p.net.nodes[snd].tm->counters().drop_unknown_index == 0);
    CHECK(p.net.nodes[rcv].tm->counters().drop_unknown_index == 0);
    // peer_stats count the workers' bytes (live and released sessions).
    auto rs = p.net.nodes[rcv].tm->peer_stats();
    REQUIRE(rs.size() == 1);
    CHECK(rs[0].rx_bytes >= bytes_sent);
    auto ss = p.net.nodes[snd].tm->peer_stats();
    REQUIRE(ss.size() == 1);
    CHECK(ss[0].tx_bytes >= bytes_sent);
    // Idle: no more data, so no more rekeys; sessions expire and the peer goes down.
    p.net.advance(400'000, 1000);
    CHECK(p.net.count(p.a, Kind::peer_down) == 1);
    CHECK(p.A().poll_timeout() == UINT64_MAX);
  }
}

TEST_CASE("workers: rekey_after_messages counts seals on any slot") {
  REQUIRE(init().ok());
  TunnelConfig cfg;
  cfg.rekey_after_messages = 50;
  Pair p(203, cfg);
  Workers w(p);
  p.connect();
  CHECK(p.A().counters().handshakes_completed == 1);
  for (int i = 0; i < 60; ++i) w.send(p.a, p.b, p.id_b(), data_packet(10, "m"));
  p.net.run();
  CHECK(p.net.nodes[p.b].received.size() == 61);
  CHECK(p.A().counters().handshakes_completed == 1);  // the manager saw none of it yet
  p.net.advance(1000, 100);
  CHECK(p.A().counters().handshakes_completed == 2);
  auto ds = p.A().data_sessions();
  CHECK(ds->send.at(p.id_b()).session->send_counter() < 50);
  CHECK(ds->recv.size() == 2);  // current and previous
}
