// Shared fixtures for crypto tests: a seeded Random, identities, a fake network.
#pragma once

#include <sodium.h>

#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "crypto/cert.hpp"
#include "crypto/keys.hpp"
#include "crypto/random.hpp"
#include "crypto/tunnel.hpp"

namespace meshd::crypto::test {

// Deterministic stream (ChaCha20 keyed by the seed): runs replay exactly.
class SeededRandomForTest : public Random {
 public:
  explicit SeededRandomForTest(std::uint64_t seed) {
    (void)init();
    std::memcpy(key_.data(), &seed, sizeof seed);
  }
  void fill(std::span<std::uint8_t> out) override {
    if (out.empty()) return;
    std::array<std::uint8_t, 8> nonce{};
    std::memcpy(nonce.data(), &block_, sizeof block_);
    ++block_;
    crypto_stream_chacha20(out.data(), out.size(), nonce.data(), key_.data());
  }

 private:
  std::array<std::uint8_t, 32> key_{};
  std::uint64_t block_ = 0;
};

inline Bytes hex(std::string_view h) {
  Bytes b;
  bool ok = from_hex(h, b);
  (void)ok;
  return b;
}

template <std::size_t N>
std::array<std::uint8_t, N> hex_arr(std::string_view h) {
  std::array<std::uint8_t, N> a{};
  Bytes b = hex(h);
  if (b.size() == N) std::memcpy(a.data(), b.data(), N);
  return a;
}

inline constexpr std::uint64_t kNow_s = 1'800'000'000;  // virtual "now" for certificates

struct Mesh {
  SigningKey root;
  Scope scope;
  explicit Mesh(Random& rng) : root(SigningKey::generate(rng)) { scope.vnis = {10, 20, 30}; }
};

inline LocalIdentity make_identity(const Mesh& mesh, Random& rng, std::string name,
                                   std::uint64_t not_after_s = kNow_s + 365 * 86400) {
  SigningKey enroll = SigningKey::generate(rng);
  TokenId tid{};
  rng.fill(tid);
  EnrollmentCert ec = issue_enrollment(mesh.root, enroll.public_key(), tid, mesh.scope, kNow_s - 100,
                                       kNow_s + 86400, 1);
  SigningKey node = SigningKey::generate(rng);
  DhKey dh = DhKey::generate(rng);
  NodeCert nc = issue_node_cert(enroll, ec, node.public_key(), dh.public_key(), std::move(name), kNow_s - 50,
                                not_after_s);
  return LocalIdentity{node, dh, CertChain{ec, nc}, mesh.root.public_key()};
}

// Two (or more) TunnelManagers wired through an in-memory network on a virtual clock.
struct FakeNet {
  struct Node {
    std::unique_ptr<TunnelManager> tm;
    Locator loc;
    std::vector<TunnelEvent> events;
    std::vector<Bytes> received;
  };
  std::uint64_t now_ms = kNow_s * 1000;
  std::vector<Node> nodes;
  struct InFlight {
    std::size_t to;
    Locator from;
    Bytes d;
  };
  std::deque<InFlight> wire;
  bool drop_all = false;
  std::uint64_t delivered = 0;
  std::vector<Bytes> captured;  // every datagram sent, for replay and tamper tests
  // If set and it returns true, the datagram was consumed (e.g. by a simulated
  // data-plane worker) instead of going to handle_datagram.
  std::function<bool(std::size_t to, const Locator& from, Bytes& d)> intercept;

  std::size_t add(LocalIdentity id, TunnelConfig cfg, Random& rng, std::uint16_t port) {
    Node n;
    n.tm = std::make_unique<TunnelManager>(std::move(id), cfg, rng);
    n.loc = *Locator::parse("10.0.0.1:" + std::to_string(port));
    nodes.push_back(std::move(n));
    return nodes.size() - 1;
  }

  std::size_t index_of(const Locator& l) const {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i].loc == l) return i;
    }
    return nodes.size();
  }

  // Moves transmits to the wire and events to the node's list.
  void collect() {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      while (auto t = nodes[i].tm->poll_transmit()) {
        captured.push_back(t->datagram);
        std::size_t to = index_of(t->to);
        if (!drop_all && to < nodes.size()) wire.push_back({to, nodes[i].loc, std::move(t->datagram)});
      }
      while (auto e = nodes[i].tm->poll_event()) {
        if (e->kind == TunnelEvent::Kind::received) nodes[i].received.push_back(e->plaintext);
        nodes[i].events.push_back(std::move(*e));
      }
    }
  }

  // Delivers everything in flight (bounded), running due timers.
  void run(std::size_t steps_max = 10000) {
    collect();
    for (std::size_t i = 0; i < steps_max && !wire.empty(); ++i) {
      InFlight f = std::move(wire.front());
      wire.pop_front();
      ++delivered;
      if (intercept && intercept(f.to, f.from, f.d)) {
        collect();
        continue;
      }
      nodes[f.to].tm->handle_datagram(now_ms, f.from, f.d);
      collect();
    }
  }

  // Advances virtual time to `until_ms`, firing timers and delivering in between.
  void advance(std::uint64_t delta_ms, std::uint64_t step_ms = 100) {
    std::uint64_t until = now_ms + delta_ms;
    while (now_ms < until) {
      now_ms = std::min(until, now_ms + step_ms);
      for (auto& n : nodes) {
        if (n.tm->poll_timeout() <= now_ms) n.tm->handle_timeout(now_ms);
      }
      run();
    }
  }

  std::size_t count(std::size_t node, TunnelEvent::Kind k) const {
    std::size_t c = 0;
    for (const auto& e : nodes[node].events) c += e.kind == k;
    return c;
  }
};

inline Bytes data_packet(std::uint32_t vni, std::string_view payload) {
  // Sized once: GCC 12 -O2 misreports vector::insert after a short initializer list.
  Bytes b(4 + payload.size());
  b[0] = static_cast<std::uint8_t>(vni);
  b[1] = static_cast<std::uint8_t>(vni >> 8);
  b[2] = static_cast<std::uint8_t>(vni >> 16);
  if (!payload.empty()) std::memcpy(b.data() + 4, payload.data(), payload.size());
  return b;
}

}  // namespace meshd::crypto::test
