// Session used from several threads: per-slot contexts, atomic send counter, batch
// replay commits, activity figures.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "crypto/session.hpp"
#include "crypto/test_support.hpp"

using namespace meshd;
using namespace meshd::crypto;
using namespace meshd::crypto::test;

namespace {

struct SessionPair {
  std::unique_ptr<Session> a, b;  // a sends to b and back
};

SessionPair make_sessions(std::uint64_t seed, AeadAlg alg_a = AeadAlg::chacha20_poly1305,
                          AeadAlg alg_b = AeadAlg::chacha20_poly1305) {
  SeededRandomForTest rng(seed);
  TransportKeys ka, kb;
  rng.fill(ka.send);
  rng.fill(ka.recv);
  kb.send = ka.recv;
  kb.recv = ka.send;
  SessionPair p;
  p.a = std::make_unique<Session>(ka, 11, 22, 0, true, alg_a);
  p.b = std::make_unique<Session>(kb, 22, 11, 0, false, alg_b);
  return p;
}

// Payload i: 4-byte index then a fixed pattern, `len` bytes in all.
Bytes payload(std::uint32_t i, std::size_t len = 100) {
  Bytes b(len, static_cast<std::uint8_t>(0x40 + i % 61));
  std::memcpy(b.data(), &i, sizeof i);
  return b;
}

Bytes seal(Session& s, unsigned slot, ByteSpan plain) {
  Bytes d(wire::kTransportHeaderLen + plain.size() + wire::kTagLen);
  std::memcpy(d.data() + wire::kTransportHeaderLen, plain.data(), plain.size());
  std::size_t n = s.seal_in_place(slot, d, plain.size());
  d.resize(n);
  return d;
}

std::uint64_t counter_of(ByteSpan d) { return parse_transport_header(d)->counter; }

// Decrypts a batch on `slot` and commits it; returns ok flags. Plaintexts replace the
// datagrams' contents in place.
std::vector<std::uint8_t> open_batch(Session& s, unsigned slot, std::vector<Bytes>& batch,
                                     std::vector<std::span<std::uint8_t>>* plains = nullptr) {
  std::vector<std::uint64_t> counters(batch.size());
  std::vector<std::uint8_t> ok(batch.size(), 0);
  if (plains) plains->assign(batch.size(), {});
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto hdr = parse_transport_header(batch[i]);
    if (!hdr) continue;
    counters[i] = hdr->counter;
    std::span<std::uint8_t> plain;
    ok[i] = s.decrypt_in_place(slot, batch[i], *hdr, plain) ? 1 : 0;
    if (plains && ok[i]) (*plains)[i] = plain;
  }
  s.accept_counters(counters, ok);
  return ok;
}

}  // namespace

TEST_CASE("session: seal on slot 3 in one thread, open on slot 5 in another") {
  REQUIRE(init().ok());
  auto sp = make_sessions(1);
  Session& tx = *sp.a;
  Session& rx = *sp.b;
  constexpr std::uint32_t kPackets = 3000;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Bytes> q;
  bool done = false;
  std::thread sender([&] {
    for (std::uint32_t i = 0; i < kPackets; ++i) {
      Bytes d = seal(tx, 3, payload(i, 20 + i % 1400));
      {
        std::lock_guard<std::mutex> l(mu);
        q.push_back(std::move(d));
      }
      cv.notify_one();
    }
    std::lock_guard<std::mutex> l(mu);
    done = true;
    cv.notify_one();
  });
  std::uint32_t got = 0, bad = 0;
  std::thread receiver([&] {
    for (;;) {
      std::vector<Bytes> batch;
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return !q.empty() || done; });
        if (q.empty() && done) return;
        while (!q.empty() && batch.size() < 32) {
          batch.push_back(std::move(q.front()));
          q.pop_front();
        }
      }
      std::vector<std::span<std::uint8_t>> plains;
      auto ok = open_batch(rx, 5, batch, &plains);
      for (std::size_t i = 0; i < batch.size(); ++i) {
        std::uint32_t idx = 0;
        if (ok[i] && plains[i].size() >= 4) std::memcpy(&idx, plains[i].data(), 4);
        // Sent in order, received in order: the i-th packet carries index i.
        if (ok[i] && idx == got &&
            Bytes(plains[i].begin(), plains[i].end()) == payload(idx, 20 + idx % 1400)) {
          ++got;
        } else {
          ++bad;
        }
      }
      rx.note_rx(kNow_s * 1000, batch.size() * 100, true);
    }
  });
  sender.join();
  receiver.join();
  CHECK(got == kPackets);
  CHECK(bad == 0);
  CHECK(tx.send_counter() == kPackets);
  CHECK(rx.carried_data());
  CHECK(rx.last_rx_data_ms() == kNow_s * 1000);
  // The owner's slot still works on both sides after the workers.
  Bytes d = seal(tx, kOwnerSlot, payload(7));
  TransportHeader hdr = *parse_transport_header(d);
  std::span<std::uint8_t> plain;
  REQUIRE(rx.open_in_place(d, hdr, plain) == Session::OpenResult::ok);
  CHECK(Bytes(plain.begin(), plain.end()) == payload(7));
}

TEST_CASE("session: concurrent seals from 4 threads get unique counters, all accepted") {
  REQUIRE(init().ok());
  auto sp = make_sessions(2);
  constexpr unsigned kThreads = 4;
  constexpr std::uint32_t kPerThread = 2500;
  std::vector<std::vector<Bytes>> out(kThreads);
  std::vector<std::thread> th;
  for (unsigned t = 0; t < kThreads; ++t) {
    th.emplace_back([&, t] {
      for (std::uint32_t i = 0; i < kPerThread; ++i) {
        Bytes d = seal(*sp.a, 1 + t, payload(t * kPerThread + i));
        out[t].push_back(std::move(d));
      }
    });
  }
  for (auto& x : th) x.join();
  std::vector<Bytes> all;
  for (auto& v : out) {
    for (auto& d : v) {
      REQUIRE(d.size() == wire::kTransportHeaderLen + 100 + wire::kTagLen);
      all.push_back(std::move(d));
    }
  }
  std::set<std::uint64_t> counters;
  for (const auto& d : all) counters.insert(counter_of(d));
  CHECK(counters.size() == kThreads * kPerThread);  // no nonce used twice
  CHECK(*counters.rbegin() == kThreads * kPerThread - 1);
  CHECK(sp.a->send_counter() == kThreads * kPerThread);
  std::sort(all.begin(), all.end(),
            [](const Bytes& x, const Bytes& y) { return counter_of(x) < counter_of(y); });

  SUBCASE("one receiver, in counter order, in batches") {
    std::size_t accepted = 0;
    std::set<std::uint32_t> indices;
    for (std::size_t i = 0; i < all.size(); i += 64) {
      std::vector<Bytes> batch(all.begin() + static_cast<long>(i),
                               all.begin() + static_cast<long>(std::min(all.size(), i + 64)));
      std::vector<std::span<std::uint8_t>> plains;
      auto ok = open_batch(*sp.b, 7, batch, &plains);
      for (std::size_t k = 0; k < batch.size(); ++k) {
        if (!ok[k]) continue;
        ++accepted;
        std::uint32_t idx = 0;
        std::memcpy(&idx, plains[k].data(), 4);
        indices.insert(idx);
      }
    }
    CHECK(accepted == all.size());
    CHECK(indices.size() == all.size());
  }
  SUBCASE("4 receivers each get every packet: each counter is accepted exactly once") {
    std::vector<std::vector<std::uint64_t>> accepted(kThreads);
    std::vector<std::thread> rx;
    for (unsigned t = 0; t < kThreads; ++t) {
      rx.emplace_back([&, t] {
        for (std::size_t i = 0; i < all.size(); i += 32) {
          std::vector<Bytes> batch(all.begin() + static_cast<long>(i),
                                   all.begin() + static_cast<long>(std::min(all.size(), i + 32)));
          auto ok = open_batch(*sp.b, 1 + t, batch);
          for (std::size_t k = 0; k < batch.size(); ++k) {
            if (ok[k]) accepted[t].push_back(counter_of(all[i + k]));
          }
        }
      });
    }
    for (auto& x : rx) x.join();
    std::vector<std::uint64_t> merged;
    for (auto& v : accepted) merged.insert(merged.end(), v.begin(), v.end());
    std::sort(merged.begin(), merged.end());
    CHECK(merged.size() == all.size());
    CHECK(std::adjacent_find(merged.begin(), merged.end()) == merged.end());
  }
}

TEST_CASE("session: accept_counters drops replays within a batch and across batches") {
  REQUIRE(init().ok());
  auto sp = make_sessions(3);
  Session& s = *sp.b;
  std::vector<std::uint64_t> c1 = {5, 6, 5, 9, 6};
  std::vector<std::uint8_t> ok1 = {1, 1, 1, 1, 1};
  s.accept_counters(c1, ok1);
  CHECK(ok1 == std::vector<std::uint8_t>{1, 1, 0, 1, 0});
  // Entries already failed (bad tag) are neither committed nor changed.
  std::vector<std::uint64_t> c2 = {6, 7, 8, 9, 10};
  std::vector<std::uint8_t> ok2 = {1, 1, 0, 1, 1};
  s.accept_counters(c2, ok2);
  CHECK(ok2 == std::vector<std::uint8_t>{0, 1, 0, 0, 1});
  std::vector<std::uint64_t> c3 = {8};
  std::vector<std::uint8_t> ok3 = {1};
  s.accept_counters(c3, ok3);
  CHECK(ok3[0] == 1);  // 8 was skipped above, so it is still fresh
  // Too old for the window, at the limit; ok values other than 1 are kept.
  constexpr std::uint64_t kHigh = 10 + ReplayWindow::kWindow + 100;
  std::vector<std::uint64_t> c4 = {kHigh, 50, ReplayWindow::kCounterLimit, kHigh + 1};
  std::vector<std::uint8_t> ok4 = {1, 1, 1, 2};
  s.accept_counters(c4, ok4);
  CHECK(ok4 == std::vector<std::uint8_t>{1, 0, 0, 2});
  CHECK_FALSE(s.maybe_fresh(50));
  CHECK_FALSE(s.maybe_fresh(ReplayWindow::kCounterLimit));
  CHECK(s.maybe_fresh(kHigh - 100));  // inside the window: maybe
  CHECK(s.maybe_fresh(1ull << 40));
  CHECK(make_sessions(4).b->maybe_fresh(0));
  // Only min(sizes) entries are looked at.
  std::vector<std::uint64_t> c5 = {20000, 20001};
  std::vector<std::uint8_t> ok5 = {1};
  s.accept_counters(c5, ok5);
  CHECK(ok5[0] == 1);
  std::vector<std::uint8_t> ok6 = {1};
  s.accept_counters(std::span<const std::uint64_t>(&c5[1], 1), ok6);
  CHECK(ok6[0] == 1);
}

TEST_CASE(
    "session: open_in_place sees counters a worker committed; decrypt needs the right key and "
    "alg") {
  REQUIRE(init().ok());
  auto sp = make_sessions(5);
  Bytes d = seal(*sp.a, 2, payload(1));
  Bytes copy = d;
  std::vector<Bytes> batch = {d};
  CHECK(open_batch(*sp.b, 4, batch)[0] == 1);
  std::span<std::uint8_t> plain;
  CHECK(sp.b->open_in_place(copy, *parse_transport_header(copy), plain) ==
        Session::OpenResult::replay);
  // Tampered: decrypt fails, the counter is not used up.
  Bytes t = seal(*sp.a, 2, payload(2));
  Bytes good = t;
  t[20] ^= 1;
  std::span<std::uint8_t> out;
  CHECK_FALSE(sp.b->decrypt_in_place(3, t, *parse_transport_header(t), out));
  CHECK(sp.b->open_in_place(good, *parse_transport_header(good), out) == Session::OpenResult::ok);
  // Short datagram.
  Bytes shortd(wire::kTransportHeaderLen + wire::kTagLen - 1);
  CHECK_FALSE(sp.b->decrypt_in_place(3, shortd, TransportHeader{22, 99}, out));
  // The receiving direction's key does not open our own packets.
  Bytes own = seal(*sp.a, 1, payload(3));
  CHECK_FALSE(sp.a->decrypt_in_place(1, own, *parse_transport_header(own), out));
}

TEST_CASE("session: a packet sealed with one AEAD does not open with the other") {
  REQUIRE(init().ok());
  for (auto [sa, sb] : {std::pair{AeadAlg::chacha20_poly1305, AeadAlg::aes256_gcm},
                        std::pair{AeadAlg::aes256_gcm, AeadAlg::chacha20_poly1305}}) {
    auto mixed = make_sessions(6, sa, sb);
    auto same = make_sessions(6, sa, sa);  // same keys
    REQUIRE(mixed.a->valid());
    REQUIRE(mixed.b->valid());
    CHECK(mixed.a->alg() == sa);
    CHECK(mixed.b->alg() == sb);
    Bytes d = seal(*mixed.a, 1, payload(9, 1400));
    Bytes d2 = d;
    std::span<std::uint8_t> out;
    CHECK_FALSE(mixed.b->decrypt_in_place(1, d, *parse_transport_header(d), out));
    CHECK(same.b->decrypt_in_place(1, d2, *parse_transport_header(d2), out));
    CHECK(Bytes(out.begin(), out.end()) == payload(9, 1400));
  }
}

TEST_CASE("session: activity figures") {
  REQUIRE(init().ok());
  auto sp = make_sessions(7);
  Session& s = *sp.a;
  CHECK_FALSE(s.carried_data());
  CHECK(s.last_tx_ms() == 0);
  s.note_tx(1000, 50, false);  // a keepalive
  CHECK_FALSE(s.carried_data());
  CHECK(s.last_tx_ms() == 1000);
  CHECK(s.tx_bytes() == 50);
  s.note_tx(900, 10, true);  // an older time does not move it back
  CHECK(s.last_tx_ms() == 1000);
  CHECK(s.carried_data());
  s.note_rx(1200, 70, false);
  CHECK(s.last_rx_ms() == 1200);
  CHECK(s.last_rx_data_ms() == 0);
  s.note_rx(1300, 30, true);
  CHECK(s.last_rx_data_ms() == 1300);
  CHECK(s.rx_bytes() == 100);
  CHECK(s.tx_bytes() == 60);
  // Many threads noting at once lose nothing.
  std::vector<std::thread> th;
  for (unsigned t = 0; t < 4; ++t) {
    th.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i)
        s.note_tx(2000 + static_cast<std::uint64_t>(i % 100) + t, 1, true);
    });
  }
  for (auto& x : th) x.join();
  CHECK(s.tx_bytes() == 60 + 40000);
  CHECK(s.last_tx_ms() == 2000 + 99 + 3);
}
