// In-memory network for MeshCore tests: N cores on one virtual clock, messages
// delivered after a small random latency, with a loss knob, crashes and restarts.
// Deterministic: everything random comes from the seed.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "crypto/cert.hpp"
#include "crypto/keys.hpp"
#include "crypto/random.hpp"
#include "mesh/mesh_core.hpp"
#include "mesh/storage.hpp"

namespace meshd::mesh::test {

inline constexpr std::uint64_t kT0Ms = 1'700'000'000'000ull;  // virtual clock start (unix ms)

class SeededRandom final : public crypto::Random {
 public:
  explicit SeededRandom(std::uint64_t seed) : g_(seed) {}
  void fill(std::span<std::uint8_t> out) override {
    for (auto& b : out) b = static_cast<std::uint8_t>(g_());
  }

 private:
  std::mt19937_64 g_;
};

class MemStorage final : public Storage {
 public:
  void put(std::string_view table, std::string_view key, ByteSpan value) override {
    t_[std::string(table)][std::string(key)] = Bytes(value.begin(), value.end());
  }
  void del(std::string_view table, std::string_view key) override {
    auto it = t_.find(std::string(table));
    if (it != t_.end()) it->second.erase(std::string(key));
  }
  std::optional<Bytes> get(std::string_view table, std::string_view key) const override {
    auto it = t_.find(std::string(table));
    if (it == t_.end()) return std::nullopt;
    auto k = it->second.find(std::string(key));
    if (k == it->second.end()) return std::nullopt;
    return k->second;
  }
  void for_each(std::string_view table,
                const std::function<void(std::string_view, ByteSpan)>& fn) const override {
    auto it = t_.find(std::string(table));
    if (it == t_.end()) return;
    for (const auto& [k, v] : it->second) fn(k, v);
  }
  std::size_t count(const std::string& table) const {
    auto it = t_.find(table);
    return it == t_.end() ? 0 : it->second.size();
  }

 private:
  std::map<std::string, std::map<std::string, Bytes>> t_;
};

struct TestToken {
  crypto::SigningKey enroll_key;
  crypto::EnrollmentCert cert;
};

struct SimNode {
  std::string name;
  crypto::SigningKey key;
  crypto::CertChain chain;
  std::unique_ptr<MemStorage> storage;
  std::unique_ptr<SeededRandom> rng;
  std::unique_ptr<MeshCore> core;
  bool up = false;
  std::vector<MeshEvent> events;
  NodeId id() const { return chain.node_id(); }
  std::size_t count_events(MeshEvent::Kind k) const {
    return static_cast<std::size_t>(
        std::count_if(events.begin(), events.end(), [k](const MeshEvent& e) { return e.kind == k; }));
  }
};

class SimNet {
 public:
  explicit SimNet(std::uint64_t seed, MeshConfig cfg = {})
      : cfg_(cfg), rng_(seed), key_rng_(seed ^ 0x5eed), root_(crypto::SigningKey::generate(key_rng_)) {}

  double loss = 0.0;           // probability a message is lost
  // Slow node (Lifeguard tests): messages sent by node `slow_node` (and, with
  // slow_inbound, sent to it) get slow_delay_ms more latency and are lost with
  // probability slow_loss. Off by default; when off no extra randomness is drawn, so
  // other tests replay exactly as before.
  std::optional<std::size_t> slow_node;
  std::uint64_t slow_delay_ms = 0;
  double slow_loss = 0.0;
  bool slow_inbound = false;
  std::uint64_t now = kT0Ms;   // virtual clock
  std::vector<std::unique_ptr<SimNode>> nodes;
  // Message hooks, off by default (and drawing no randomness, so other tests replay
  // as before): on_send sees every message a core sends, at `now`, before any loss;
  // drop_if loses the messages it returns true for (counted in `lost`).
  std::function<void(std::size_t from, std::size_t to, const Bytes& payload)> on_send;
  std::function<bool(std::size_t from, std::size_t to, const Bytes& payload)> drop_if;

  const crypto::PublicKey& root_pub() const { return root_.public_key(); }
  const crypto::SigningKey& root() const { return root_; }
  const MeshConfig& config() const { return cfg_; }

  TestToken make_token(std::vector<std::uint32_t> vnis, std::uint32_t uses = 1000,
                       std::uint64_t ttl_s = 86400) {
    crypto::SigningKey ek = crypto::SigningKey::generate(key_rng_);
    crypto::TokenId tid{};
    key_rng_.fill(tid);
    crypto::Scope scope;
    scope.vnis = std::move(vnis);
    auto cert = crypto::issue_enrollment(root_, ek.public_key(), tid, scope, now / 1000 - 60,
                                         now / 1000 + ttl_s, uses);
    return TestToken{ek, cert};
  }

  // Makes a node (not started). Its cert is issued now.
  std::size_t add_node(const TestToken& token, std::string name = {}) {
    auto n = std::make_unique<SimNode>(SimNode{name.empty() ? "n" + std::to_string(nodes.size()) : name,
                                               crypto::SigningKey::generate(key_rng_), {}, {}, {}, {},
                                               false, {}});
    crypto::DhKey dh = crypto::DhKey::generate(key_rng_);
    n->chain.enrollment = token.cert;
    n->chain.node = crypto::issue_node_cert(token.enroll_key, token.cert, n->key.public_key(),
                                            dh.public_key(), n->name, now / 1000,
                                            now / 1000 + 365 * 86400);
    n->storage = std::make_unique<MemStorage>();
    nodes.push_back(std::move(n));
    return nodes.size() - 1;
  }

  NodeRecord record_for(std::size_t i) const {
    NodeRecord r;
    r.chain = nodes[i]->chain;
    Locator l;
    l.ip = IpAddr::v4(0x7f000001);
    l.port = static_cast<std::uint16_t>(51000 + i);
    r.locators.push_back(l);
    return r;
  }

  // A revocation of node i, signed by this mesh's root (what `meshd revoke` builds).
  Revocation revocation_for(std::size_t i, std::string reason = "compromised") const {
    Revocation r;
    r.node = nodes[i]->id();
    r.token_id = nodes[i]->chain.node.token_id;
    r.issued_s = now / 1000;
    r.reason = std::move(reason);
    r.sign(root_);
    return r;
  }

  // (Re)creates the core from the node's storage, restores, and joins via contacts.
  void start(std::size_t i, const std::vector<std::size_t>& contacts, bool use_storage = true) {
    SimNode& n = *nodes[i];
    n.rng = std::make_unique<SeededRandom>(rng_() ^ i);
    n.core = std::make_unique<MeshCore>(cfg_, n.key, root_.public_key(), record_for(i), *n.rng,
                                        use_storage ? n.storage.get() : nullptr, now);
    n.up = true;
    n.core->restore(now);
    std::vector<Contact> cs;
    for (std::size_t c : contacts) {
      cs.push_back(Contact{nodes[c]->id(), nodes[c]->chain.node.dh_pub, record_for(c).locators});
    }
    n.core->join(now, cs);
    drain(i);
  }

  void crash(std::size_t i) {
    nodes[i]->up = false;
    nodes[i]->core.reset();
  }

  // Sends what a direct call on node i's core queued (publish, withdraw, resolve, ...)
  // and records its events now, as step() does after each message or timeout.
  void flush(std::size_t i) { drain(i); }

  // Delivers a raw payload to node `to` as if sent by node `from`.
  void inject(std::size_t from, std::size_t to, ByteSpan payload) {
    nodes[to]->core->handle_message(now, nodes[from]->id(), nodes[from]->chain, payload);
    drain(to);
  }

  void step(std::uint64_t dt_ms) {
    std::uint64_t end = now + dt_ms;
    while (true) {
      // Next thing to happen: a delivery or a deadline.
      std::uint64_t next = end;
      if (!flight_.empty()) next = std::min(next, flight_.begin()->first);
      for (auto& n : nodes) {
        if (n->up) next = std::min(next, std::max(n->core->poll_timeout(), now));
      }
      now = next;
      bool did = false;
      while (!flight_.empty() && flight_.begin()->first <= now) {
        Msg m = std::move(flight_.begin()->second);
        flight_.erase(flight_.begin());
        SimNode& dst = *nodes[m.to];
        if (!dst.up) continue;
        dst.core->handle_message(now, nodes[m.from]->id(), nodes[m.from]->chain, m.payload);
        drain(m.to);
        did = true;
      }
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        if (nodes[i]->up && nodes[i]->core->poll_timeout() <= now) {
          nodes[i]->core->handle_timeout(now);
          drain(i);
          did = true;
        }
      }
      if (now >= end && !did) break;
      if (++steps_ > 50'000'000) throw std::runtime_error("simulation runaway");  // bound
    }
  }

  // Runs until pred() holds (checked every 10 ms) or max_ms passes; returns the time
  // taken, or nullopt.
  std::optional<std::uint64_t> run_until(const std::function<bool()>& pred, std::uint64_t max_ms) {
    std::uint64_t start = now;
    while (now - start <= max_ms) {
      if (pred()) return now - start;
      step(10);
    }
    return std::nullopt;
  }

  // All up nodes see all other up nodes alive.
  bool all_alive() const {
    for (const auto& a : nodes) {
      if (!a->up) continue;
      for (const auto& b : nodes) {
        if (!b->up || a.get() == b.get()) continue;
        auto m = a->core->member(b->id());
        if (!m || m->state != MemberState::alive) return false;
      }
    }
    return true;
  }

  bool all_see(std::size_t target, MemberState st) const {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (i == target || !nodes[i]->up) continue;
      auto m = nodes[i]->core->member(nodes[target]->id());
      if (!m || m->state != st) return false;
    }
    return true;
  }

  std::uint64_t delivered = 0, lost = 0;

 private:
  struct Msg {
    std::size_t from, to;
    Bytes payload;
  };

  void drain(std::size_t i) {
    SimNode& n = *nodes[i];
    while (auto ev = n.core->poll_event()) n.events.push_back(std::move(*ev));
    while (auto tx = n.core->poll_transmit()) {
      std::optional<std::size_t> to;
      for (std::size_t j = 0; j < nodes.size(); ++j) {
        if (nodes[j]->id() == tx->to) to = j;
      }
      if (!to) continue;
      if (on_send) on_send(i, *to, tx->payload);
      if (drop_if && drop_if(i, *to, tx->payload)) {
        ++lost;
        continue;
      }
      if (loss > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < loss) {
        ++lost;
        continue;
      }
      const bool slow = slow_node && (i == *slow_node || (slow_inbound && *to == *slow_node));
      if (slow && slow_loss > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < slow_loss) {
        ++lost;
        continue;
      }
      ++delivered;
      std::uint64_t latency = 1 + rng_() % 10 + (slow ? slow_delay_ms : 0);
      flight_.emplace(now + latency, Msg{i, *to, std::move(tx->payload)});
    }
  }

  bool sodium_ready_ = crypto::init().ok();  // first member: before any key is made
  MeshConfig cfg_;
  std::mt19937_64 rng_;
  SeededRandom key_rng_;
  crypto::SigningKey root_;
  std::multimap<std::uint64_t, Msg> flight_;
  std::uint64_t steps_ = 0;
};

}  // namespace meshd::mesh::test
