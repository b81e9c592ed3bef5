#include "sim/lib/sim_cluster.hpp"

#include "mesh/messages.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace meshd::sim {

namespace {

// Simulator bugs are programmer errors: stop loudly (STYLE habit 4).
void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "sim: %s\n", what);
    std::abort();
  }
}

mesh::MeshConfig sized(mesh::MeshConfig c, std::size_t nodes) {
  c.members_max = std::max(c.members_max, nodes + 16);
  return c;
}

}  // namespace

struct SimCluster::Node {
  Node(crypto::SigningKey k, crypto::CertChain c, bool lose_unsynced)
      : key(std::move(k)), chain(std::move(c)), storage(lose_unsynced) {}
  crypto::SigningKey key;
  crypto::CertChain chain;
  mesh::NodeRecord record;
  SimStorage storage;
  std::unique_ptr<SimRandom> rng;
  std::unique_ptr<mesh::MeshCore> core;
  std::uint32_t generation = 0;
  std::uint64_t armed_ms = mesh::MeshCore::kNoDeadline;
  std::uint64_t up_since_ms = 0;
  std::uint64_t checkpoint_ms = 0;  // last storage checkpoint
  bool member = false;              // preformed: already a member, first start restores only
};

SimCluster::SimCluster(ClusterConfig cfg)
    : cfg_(std::move(cfg)),
      sodium_ready_(crypto::init().ok()),
      key_rng_(mix_seed(cfg_.seed, 0x6b657973)),
      root_(crypto::SigningKey::generate(key_rng_)),
      enroll_key_(crypto::SigningKey::generate(key_rng_)),
      net_(cfg_.seed, cfg_.nodes, cfg_.link) {
  check(sodium_ready_, "crypto::init failed");
  check(cfg_.nodes > 0 && cfg_.nodes < (1u << 24), "nodes out of range");
  cfg_.mesh = sized(cfg_.mesh, cfg_.nodes);
  const std::uint64_t now_s = now_ms_ / 1000;
  crypto::TokenId tid{};
  key_rng_.fill(tid);
  crypto::Scope scope;
  if (cfg_.all_vnis) {
    scope.all_vnis = true;
  } else {
    scope.vnis = {1};
  }
  check(cfg_.node_vnis.empty() || cfg_.node_vnis.size() == cfg_.nodes, "node_vnis size != nodes");
  enrollment_ =
      crypto::issue_enrollment(root_, enroll_key_.public_key(), tid, scope, now_s - 60,
                               now_s + 365 * 86400, static_cast<std::uint32_t>(cfg_.nodes + 16));
  nodes_.reserve(cfg_.nodes);
  for (std::size_t i = 0; i < cfg_.nodes; ++i) {
    crypto::SigningKey k = crypto::SigningKey::generate(key_rng_);
    crypto::DhKey dh = crypto::DhKey::generate(key_rng_);
    crypto::CertChain chain;
    chain.enrollment = enrollment_;
    chain.node = crypto::issue_node_cert(enroll_key_, enrollment_, k.public_key(), dh.public_key(),
                                         "n" + std::to_string(i), now_s, now_s + 365 * 86400);
    auto n = std::make_unique<Node>(std::move(k), std::move(chain), cfg_.lose_unsynced);
    n->record.chain = n->chain;
    Locator l;
    l.ip = IpAddr::v4(0x0a000000u + static_cast<std::uint32_t>(i));  // 10.x.y.z, unique
    l.port = 51820;
    n->record.locators.push_back(l);
    if (!cfg_.node_vnis.empty()) {
      n->record.vnis = cfg_.node_vnis[i];
      std::sort(n->record.vnis.begin(), n->record.vnis.end());
      n->record.vnis.erase(std::unique(n->record.vnis.begin(), n->record.vnis.end()),
                           n->record.vnis.end());
    }
    check(index_.emplace(n->chain.node_id(), static_cast<NodeIndex>(i)).second,
          "duplicate node id");
    nodes_.push_back(std::move(n));
  }
  views_.assign(cfg_.nodes, std::vector<Seen>(cfg_.nodes, Seen::unknown));
  alive_seen_by_.assign(cfg_.nodes, 0);
  if (cfg_.preformed > 0) {
    check(cfg_.preformed <= cfg_.nodes, "preformed > nodes");
    auto base = std::make_shared<SimStorage::Table>();
    for (std::size_t i = 0; i < cfg_.preformed; ++i) {
      Node& n = *nodes_[i];
      n.record.sign(n.key);
      (*base)[to_hex(n.chain.node_id())] =
          mesh::encode_member(mesh::MemberEntry{n.record, mesh::MemberState::alive, 0});
      n.member = true;
    }
    for (std::size_t i = 0; i < cfg_.preformed; ++i) {
      if (cfg_.use_storage) {
        for (const auto& [k, v] : *base) nodes_[i]->storage.put("members", k, v);
      } else {
        nodes_[i]->storage.share_members(base);
      }
    }
  }
  records_ = std::make_unique<mesh::RecordCache>(root_.public_key(), 4 * cfg_.nodes + 64);
}

SimCluster::~SimCluster() = default;

bool SimCluster::up(NodeIndex i) const { return nodes_[i]->core != nullptr; }
std::uint64_t SimCluster::up_since_ms(NodeIndex i) const { return nodes_[i]->up_since_ms; }
mesh::MeshCore& SimCluster::core(NodeIndex i) {
  check(nodes_[i]->core != nullptr, "core() of a stopped node");
  return *nodes_[i]->core;
}
SimStorage& SimCluster::storage(NodeIndex i) { return nodes_[i]->storage; }
const NodeId& SimCluster::id(NodeIndex i) const { return nodes_[i]->chain.node_id(); }

std::optional<NodeIndex> SimCluster::index_of(const NodeId& id) const {
  auto it = index_.find(id);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

std::size_t SimCluster::up_count() const { return up_; }

void SimCluster::start(NodeIndex i) {
  Node& n = *nodes_[i];
  check(n.core == nullptr, "start of a running node");
  ++n.generation;
  // A restarted node believes what it restores; its events rebuild the view.
  for (NodeIndex j = 0; j < nodes_.size(); ++j) set_view(i, j, Seen::unknown);
  count_node(i, true);
  n.rng = std::make_unique<SimRandom>(mix_seed(mix_seed(cfg_.seed, i), n.generation));
  n.core = std::make_unique<mesh::MeshCore>(cfg_.mesh, n.key, root_.public_key(), n.record, *n.rng,
                                            cfg_.use_storage || cfg_.preformed > 0 ? &n.storage : nullptr, now_ms_,
                                            records_.get());
  n.up_since_ms = now_ms_;
  n.checkpoint_ms = now_ms_;
  n.armed_ms = mesh::MeshCore::kNoDeadline;
  n.core->restore(now_ms_);
  // restore() may not emit member_up for what it loads: take the core's word for it.
  n.core->visit_members([&](const NodeId& mid, mesh::MemberState st) {
    if (auto j = index_of(mid)) {
      const bool live = st == mesh::MemberState::alive || st == mesh::MemberState::suspect;
      set_view(i, *j, live ? Seen::alive : Seen::dead);
    }
  });
  if (n.member) {  // preformed: a member already, nothing to join
    n.member = false;
    drain(i);
    return;
  }
  std::vector<mesh::Contact> contacts;
  for (NodeIndex s = 0; s < std::min(cfg_.seeds, nodes_.size()); ++s) {
    if (s == i) continue;
    contacts.push_back(
        mesh::Contact{id(s), nodes_[s]->chain.node.dh_pub, nodes_[s]->record.locators});
  }
  n.core->join(now_ms_, std::move(contacts));
  drain(i);
}

void SimCluster::crash(NodeIndex i) {
  Node& n = *nodes_[i];
  check(n.core != nullptr, "crash of a stopped node");
  add_counters(crashed_counters_, n.core->counters());
  count_node(i, false);
  n.core.reset();
  n.rng.reset();
  n.storage.crash();
  n.armed_ms = mesh::MeshCore::kNoDeadline;
}

std::uint32_t SimCluster::store_payload(Bytes b) {
  if (!free_payloads_.empty()) {
    std::uint32_t slot = free_payloads_.back();
    free_payloads_.pop_back();
    payloads_[slot] = std::move(b);
    return slot;
  }
  payloads_.push_back(std::move(b));
  return static_cast<std::uint32_t>(payloads_.size() - 1);
}

void SimCluster::push(Event e) {
  e.seq = seq_++;
  queue_.push(e);
}

void SimCluster::drain(NodeIndex i) {
  Node& n = *nodes_[i];
  while (auto ev = n.core->poll_event()) {
    std::optional<NodeIndex> subject;
    if (ev->member) {
      subject = index_of(ev->member->id());
    } else if (ev->kind == mesh::MeshEvent::Kind::node_revoked) {
      subject = index_of(ev->node);
    }
    if (subject) {
      using K = mesh::MeshEvent::Kind;
      if (ev->kind == K::member_up) set_view(i, *subject, Seen::alive);
      if (ev->kind == K::member_failed || ev->kind == K::member_left ||
          ev->kind == K::node_revoked) {
        set_view(i, *subject, Seen::dead);
      }
    }
    if (listener_) listener_(now_ms_, i, subject, *ev);
  }
  while (auto tx = n.core->poll_transmit()) {
    auto to = index_of(tx->to);
    if (!to) continue;  // a node outside the simulation (never happens with real ids)
    // [version, type, ...] as a msgpack fixarray: byte 0 is 0x9N, 1 the version, 2 the type.
    const Bytes& p = tx->payload;
    const std::size_t type = p.size() >= 3 && (p[0] & 0xf0) == 0x90 && p[2] < kMsgTypesMax ? p[2] : 0;
    ++by_type_[type].packets;
    by_type_[type].bytes += p.size();
    Fate f = net_.send(now_ms_, i, *to, tx->payload.size());
    for (std::size_t c = 0; c < f.copies; ++c) {
      Bytes p = c + 1 == f.copies ? std::move(tx->payload) : tx->payload;
      push(Event{f.at_ms[c], 0, false, *to, i, 0, store_payload(std::move(p))});
    }
  }
  rearm(i);
}

void SimCluster::act(NodeIndex i,
                     const std::function<void(mesh::MeshCore&, std::uint64_t now_ms)>& fn) {
  fn(core(i), now_ms_);
  drain(i);
}

void SimCluster::rearm(NodeIndex i) {
  Node& n = *nodes_[i];
  std::uint64_t d = n.core->poll_timeout();
  if (d == mesh::MeshCore::kNoDeadline) {
    n.armed_ms = d;
    return;
  }
  // A deadline at or before now would fire again at once; one tick later bounds that.
  d = std::max(d, now_ms_ + 1);
  if (d == n.armed_ms) return;
  n.armed_ms = d;
  push(Event{d, 0, true, i, i, n.generation, 0});
}

void SimCluster::run_to(std::uint64_t until_ms) {
  while (!queue_.empty() && queue_.top().at_ms <= until_ms) {
    Event e = queue_.top();
    queue_.pop();
    check(++events_processed_ <= cfg_.events_max, "events_max exceeded (runaway simulation)");
    now_ms_ = e.at_ms;
    Node& n = *nodes_[e.to];
    if (e.timer) {
      if (n.core == nullptr || e.generation != n.generation || e.at_ms != n.armed_ms) continue;
      n.armed_ms = mesh::MeshCore::kNoDeadline;
      n.core->handle_timeout(now_ms_);
      drain(e.to);
      if (cfg_.lose_unsynced && now_ms_ >= n.checkpoint_ms + cfg_.checkpoint_interval_ms) {
        n.storage.checkpoint();
        n.checkpoint_ms = now_ms_;
      }
      continue;
    }
    Bytes payload = std::move(payloads_[e.payload]);
    free_payloads_.push_back(e.payload);
    if (n.core == nullptr) {
      ++net_.counters().to_down_node;
      continue;
    }
    n.core->handle_message(now_ms_, id(e.from), nodes_[e.from]->chain, payload);
    drain(e.to);
  }
  now_ms_ = std::max(now_ms_, until_ms);
}

std::optional<std::uint64_t> SimCluster::run_until(const std::function<bool()>& pred,
                                                   std::uint64_t limit_ms, std::uint64_t check_ms) {
  const std::uint64_t start = now_ms_;
  while (true) {
    if (pred()) return now_ms_ - start;
    if (now_ms_ - start >= limit_ms) return std::nullopt;
    run_to(std::min(now_ms_ + check_ms, start + limit_ms));
  }
}

void SimCluster::set_view(NodeIndex obs, NodeIndex subj, Seen s) {
  Seen& v = views_[obs][subj];
  if (v == s) return;
  if (obs != subj && up(obs) && up(subj)) {
    if (v == Seen::alive) {
      --alive_pairs_;
      --alive_seen_by_[obs];
    }
    if (s == Seen::alive) {
      ++alive_pairs_;
      ++alive_seen_by_[obs];
    }
  }
  v = s;
}

void SimCluster::count_node(NodeIndex i, bool going_up) {
  // Called while node i is still down (going up) or still up (going down).
  std::uint64_t seen_alive = 0;
  for (NodeIndex j = 0; j < nodes_.size(); ++j) {
    if (j == i || !up(j)) continue;
    if (views_[i][j] == Seen::alive) ++seen_alive;
    if (views_[j][i] == Seen::alive) {
      if (going_up) {
        ++alive_seen_by_[j];
        ++alive_pairs_;
      } else {
        --alive_seen_by_[j];
        --alive_pairs_;
      }
    }
  }
  if (going_up) {
    alive_seen_by_[i] = static_cast<std::uint32_t>(seen_alive);
    alive_pairs_ += seen_alive;
    ++up_;
  } else {
    alive_seen_by_[i] = 0;
    alive_pairs_ -= seen_alive;
    --up_;
  }
}

bool SimCluster::converged() const {
  const std::uint64_t up = up_;
  return up < 2 || alive_pairs_ == up * (up - 1);
}

bool SimCluster::all_see(NodeIndex subject, Seen s) const {
  for (NodeIndex a = 0; a < nodes_.size(); ++a) {
    if (a != subject && up(a) && views_[a][subject] != s) return false;
  }
  return true;
}

void SimCluster::add_counters(mesh::MeshCounters& into, const mesh::MeshCounters& c) const {
  into.rx_messages += c.rx_messages;
  into.tx_messages += c.tx_messages;
  into.drop_malformed += c.drop_malformed;
  into.drop_bad_signature += c.drop_bad_signature;
  into.drop_stale += c.drop_stale;
  into.drop_table_full += c.drop_table_full;
  into.drop_queue_full += c.drop_queue_full;
  into.probes_sent += c.probes_sent;
  into.probe_second_waves += c.probe_second_waves;
  into.probe_failures += c.probe_failures;
  into.suspicions += c.suspicions;
  into.refutations += c.refutations;
  into.drop_unserved += c.drop_unserved;
  into.drop_unknown_owner += c.drop_unknown_owner;
  into.map_requests += c.map_requests;
  into.map_replies += c.map_replies;
  into.map_negative += c.map_negative;
  into.map_timeouts += c.map_timeouts;
  into.map_requests_served += c.map_requests_served;
  into.map_registers_sent += c.map_registers_sent;
  into.map_notifies_sent += c.map_notifies_sent;
  into.map_handoffs += c.map_handoffs;
  into.map_duplicates += c.map_duplicates;
}

mesh::MeshCounters SimCluster::counters_total() const {
  mesh::MeshCounters t = crashed_counters_;
  for (const auto& n : nodes_) {
    if (n->core) add_counters(t, n->core->counters());
  }
  return t;
}

}  // namespace meshd::sim
