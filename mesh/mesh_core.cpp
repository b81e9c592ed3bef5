#include "mesh/mesh_core.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "mesh/core_impl.hpp"

namespace meshd::mesh {

BroadcastQueue::Key member_key(const NodeId& id) {
  BroadcastQueue::Key k{};
  k[0] = 1;
  std::copy(id.begin(), id.end(), k.begin() + 1);
  return k;
}

BroadcastQueue::Key state_key(const NodeId& id) {
  BroadcastQueue::Key k = member_key(id);
  k[0] = 2;
  return k;
}

BroadcastQueue::Key confirm_key(const NodeId& node, const NodeId& accuser) {
  BroadcastQueue::Key k = member_key(node);
  k[0] = 5;
  std::copy(accuser.begin(), accuser.begin() + (k.size() - 1 - node.size()), k.begin() + 1 + node.size());
  return k;
}

BroadcastQueue::Key mapping_key(const MapKey& m) {
  BroadcastQueue::Key k{};
  k[0] = 3;
  for (int i = 0; i < 4; ++i) k[1 + i] = static_cast<std::uint8_t>(m.vni >> (8 * i));
  std::copy(m.mac.begin(), m.mac.end(), k.begin() + 5);
  return k;
}

std::uint64_t member_hash(const NodeId& id, std::uint64_t version, std::uint64_t incarnation) {
  // splitmix64 finaliser over the id's words, the record version and the incarnation.
  auto mix = [](std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  std::uint64_t h = mix(mix(version) ^ incarnation);
  for (std::size_t i = 0; i < id.size(); i += 8) {
    std::uint64_t w = 0;
    for (std::size_t j = 0; j < 8; ++j) w |= std::uint64_t{id[i + j]} << (8 * j);
    h = mix(h ^ w);
  }
  return h;
}

MeshCore::Impl::Impl(MeshConfig cfg, crypto::SigningKey key, crypto::PublicKey root,
                     NodeRecord self, crypto::Random& rng, Storage* storage,
                     std::uint64_t now_ms, RecordCache* cache)
    : cfg_(cfg),
      key_(std::move(key)),
      root_pub_(root),
      self_(std::move(self)),
      rng_(rng),
      storage_(storage),
      own_cache_(cache != nullptr && cache->root() == root
                     ? nullptr
                     : std::make_unique<RecordCache>(root, cfg.members_max + 64)),
      cache_(own_cache_ ? own_cache_.get() : cache),
      broadcasts_(cfg.broadcast_queue_max),
      health_(cfg.lhm_max) {
  // Lifeguard tunables outside their documented bounds are clamped, not refused:
  // MeshConfig is built by the agent from defaults, and a clamp is always safe.
  cfg_.suspicion_mult = std::min(cfg_.suspicion_mult, kSuspicionMultMax);
  cfg_.suspicion_max_timeout_mult =
      std::clamp<std::uint64_t>(cfg_.suspicion_max_timeout_mult, 1, kSuspicionMaxTimeoutMultMax);
  cfg_.lhm_max = health_.max();
  if (cfg_.indirect_probes != kIndirectProbesAuto) {
    cfg_.indirect_probes = std::min<std::size_t>(cfg_.indirect_probes, 16);
  }
  cfg_.gossip_burst_max = std::clamp<std::size_t>(cfg_.gossip_burst_max, 1, 16);
  cfg_.suspicion_confirmations = std::min(cfg_.suspicion_confirmations, kSuspicionConfirmationsMax);
  cfg_.nack_timeout_pct = std::clamp<std::uint32_t>(cfg_.nack_timeout_pct, 1, 100);
  limits_.message_bytes_max = cfg_.message_bytes_max;
  limits_.array_len_max = std::max<std::size_t>(cfg_.members_max, 4096);
  // The caller owns the node key; a record for another key is a programmer error.
  assert(self_.id() == key_.public_key());
  std::sort(self_.vnis.begin(), self_.vnis.end());
  self_.vnis.erase(std::unique(self_.vnis.begin(), self_.vnis.end()), self_.vnis.end());
  load_meta();  // never let incarnation, record version or seqs go backwards
  self_.sign(key_);
  // Spread the first probes of nodes started together over one interval.
  next_probe_ms_ = now_ms + rng_.uniform(std::max<std::uint64_t>(cfg_.probe_interval_ms, 1));
  next_gossip_ms_ = now_ms + cfg_.gossip_interval_ms;
  next_anti_entropy_ms_ = now_ms + cfg_.anti_entropy_interval_ms;
  next_failed_probe_ms_ = now_ms + cfg_.failed_probe_interval_ms;
  cfg_.map_replicas = std::clamp<std::size_t>(cfg_.map_replicas, 1, kMapReplicasMax);
  next_map_sweep_ms_ = now_ms + kMapSweepMs;
  // The first registration of restored own mappings waits for the membership to settle.
  next_map_refresh_ms_ = now_ms + 1000;
}

void MeshCore::Impl::send(const NodeId& to, Bytes payload) {
  if (to == self_.id()) return;
  // Oversized only if one record alone exceeds the configured limit; never sent.
  if (tx_.size() >= cfg_.transmit_queue_max || payload.size() > cfg_.message_bytes_max) {
    ++counters_.drop_queue_full;
    return;
  }
  ++counters_.tx_messages;
  tx_.push_back(MeshTransmit{to, std::move(payload)});
}

void MeshCore::Impl::emit(MeshEvent ev) {
  if (events_.size() >= cfg_.event_queue_max) {
    ++counters_.drop_queue_full;
    return;
  }
  events_.push_back(std::move(ev));
}

MemberInfo MeshCore::Impl::self_info(std::uint64_t now) const {
  MemberInfo i;
  i.record = self_;
  i.state = left_ ? MemberState::left : MemberState::alive;
  i.incarnation = incarnation_;
  i.state_since_ms = now;
  return i;
}

bool MeshCore::Impl::record_serves(const NodeRecord& r, std::uint32_t vni) {
  return std::binary_search(r.vnis.begin(), r.vnis.end(), vni);
}

bool MeshCore::Impl::serves(std::uint32_t vni) const { return record_serves(self_, vni); }

std::vector<NodeId> MeshCore::Impl::live_members() const {
  std::vector<NodeId> out;
  out.reserve(live_.size());
  for (const Member* m : live_) out.push_back(m->id());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<NodeId> MeshCore::Impl::sample_partners(std::uint64_t now, std::size_t k,
                                                    bool alive_only) {
  while (!recently_failed_.empty() &&
         recently_failed_.front().second + cfg_.gossip_to_dead_ms <= now) {
    recently_failed_.pop_front();
  }
  auto pred = [alive_only](const Member& m) { return !alive_only || m.state == MemberState::alive; };
  std::vector<NodeId> out;
  for (Member* m : sample_live(k, pred)) out.push_back(m->id());
  if (recently_failed_.empty() || k == 0) return out;
  // Each slot goes to a recently failed member with its share of live + recent (all k
  // slots are open to them when nobody is live).
  const std::size_t live = live_.size(), dead = recently_failed_.size();
  const std::size_t slots = out.empty() ? k : out.size();
  for (std::size_t i = 0; i < slots; ++i) {
    if (rng_.uniform(live + dead) >= dead) continue;
    const MemberKey* key = recently_failed_[rng_.uniform(dead)].first;
    const NodeId& id = *key->id;
    auto it = members_.find(id);
    assert(it != members_.end() && &it->first == key);  // erase_member drops its entries
    if (it == members_.end() || it->second.state != MemberState::failed) continue;
    if (std::find(out.begin(), out.end(), id) != out.end()) continue;
    if (i < out.size()) {
      out[i] = id;
    } else {
      out.push_back(id);
    }
  }
  return out;
}

void MeshCore::Impl::live_add(Member& m) {
  // At a random place, like memberlist: a newcomer is probed within one round, at a
  // time nobody can predict.
  live_.push_back(&m);
  m.live_pos = static_cast<std::uint32_t>(live_.size() - 1);
  const std::size_t j = rng_.uniform(live_.size());
  std::swap(live_[j], live_.back());
  live_[j]->live_pos = static_cast<std::uint32_t>(j);
  live_.back()->live_pos = static_cast<std::uint32_t>(live_.size() - 1);
  digest_toggle(m.id(), m.rec->version, m.incarnation);
  map_membership_changed(m.id(), true);
}

void MeshCore::Impl::digest_toggle(const NodeId& id, std::uint64_t version,
                                   std::uint64_t incarnation) {
  const std::uint64_t h = member_hash(id, version, incarnation);
  members_xor_ ^= h;
  bucket_xor_[id[0]] ^= h;
}

void MeshCore::Impl::live_remove(Member& m) {
  std::size_t pos = m.live_pos;
  auto put = [&](std::size_t i, Member* x) {
    live_[i] = x;
    x->live_pos = static_cast<std::uint32_t>(i);
  };
  // Keep [0, probe_index_) = probed this round: fill a hole there from its end.
  if (pos < probe_index_) {
    put(pos, live_[probe_index_ - 1]);
    pos = --probe_index_;
  }
  put(pos, live_.back());
  live_.pop_back();
  m.live_pos = kNotLive;
  digest_toggle(m.id(), m.rec->version, m.incarnation);
  map_membership_changed(m.id(), false);
}

void MeshCore::Impl::live_shuffle() {
  for (std::size_t i = live_.size(); i > 1; --i) {
    std::swap(live_[i - 1], live_[rng_.uniform(i)]);
  }
  for (std::size_t i = 0; i < live_.size(); ++i) live_[i]->live_pos = static_cast<std::uint32_t>(i);
}

void MeshCore::Impl::set_record(MemberMap::iterator it, std::shared_ptr<const NodeRecord> rec) {
  Member& m = it->second;
  if (m.live()) {
    digest_toggle(m.id(), m.rec->version, m.incarnation);
    digest_toggle(rec->id(), rec->version, m.incarnation);
  }
  const crypto::TokenId& was = m.rec->chain.node.token_id;
  if (rec->chain.node.token_id != was) {
    if (--token_members_[was] == 0) token_members_.erase(was);
    ++token_members_[rec->chain.node.token_id];
  }
  // The keys point into the old record until re-pointed: it stays alive until then
  // (the suspicion lookup compares against them).
  const std::shared_ptr<const NodeRecord> old = std::exchange(m.rec, std::move(rec));
  it->first.id = &m.rec->id();
  if (auto sus = suspicions_.find(m.id()); sus != suspicions_.end()) sus->first.id = &m.rec->id();
}

MeshCore::Impl::MemberMap::iterator MeshCore::Impl::erase_member(MemberMap::iterator it) {
  Member& m = it->second;
  if (m.live()) live_remove(m);
  suspicion_end(m.id());
  // Entries of a member that failed and came back stay until they age out: drop them
  // all (rare: reap, revocation, over-used token).
  std::erase_if(recently_failed_, [&](const auto& f) { return f.first == &it->first; });
  const crypto::TokenId& tid = m.rec->chain.node.token_id;
  if (--token_members_[tid] == 0) token_members_.erase(tid);
  return members_.erase(it);
}

std::size_t MeshCore::Impl::token_holders(const crypto::TokenId& tid) const {
  std::size_t n = self_.chain.node.token_id == tid ? 1 : 0;
  if (auto it = token_members_.find(tid); it != token_members_.end()) n += it->second;
  // Revoked nodes keep their slots (their member entry is gone).
  for (const auto& [id, r] : revocations_) {
    if (r.token_id == tid && members_.count(id) == 0) ++n;
  }
  return n;
}

std::size_t MeshCore::Impl::transmit_limit() const {
  // Counted, not collected: this runs for every outgoing ping, ack and gossip.
  double n = static_cast<double>(live_count() + 1);
  auto rounds = static_cast<std::size_t>(std::ceil(std::log10(n + 1)));
  return std::max<std::size_t>(1, cfg_.retransmit_mult * std::max<std::size_t>(rounds, 1));
}

std::size_t MeshCore::Impl::indirect_probe_count() const {
  if (cfg_.indirect_probes != kIndirectProbesAuto) return cfg_.indirect_probes;
  double n = static_cast<double>(live_count() + 1);
  return std::min<std::size_t>(3 + 2 * static_cast<std::size_t>(std::ceil(std::log10(n + 1))), 16);
}

void MeshCore::Impl::queue_broadcast(const BroadcastQueue::Key& key, const Update& u) {
  counters_.drop_queue_full += broadcasts_.push(key, encode_update(u));
}

void MeshCore::Impl::queue_state(const StateUpdate& s) {
  if (s.state == MemberState::suspect && s.accuser) {
    queue_broadcast(confirm_key(s.node, *s.accuser), s);
    return;
  }
  // 1 kind byte + the node id: every per-accuser suspect about this node.
  broadcasts_.erase_prefix(confirm_key(s.node, NodeId{}), 1 + s.node.size());
  queue_broadcast(state_key(s.node), s);
}

void MeshCore::Impl::bump_record(std::uint64_t now) {
  ++self_.version;
  self_.sign(key_);
  persist_record_version();
  queue_broadcast(member_key(self_.id()), self_entry());
  // Our own change (a VNI served or dropped, new locators) goes out now rather than at
  // the next gossip tick: peers need it to flood to us and push us their endpoints.
  next_gossip_ms_ = std::min(next_gossip_ms_, now);
}

void MeshCore::Impl::handle_message(std::uint64_t now, const NodeId& from, ByteSpan payload) {
  ++counters_.rx_messages;
  if (left_) return;
  auto decoded = decode_message(payload, limits_);
  if (!decoded.ok()) {
    ++counters_.drop_malformed;
    return;
  }
  Message& msg = decoded.value();
  if (is_revoked(from)) {
    on_revoked_sender(from, msg);
    return;
  }
  if (refused_.count(from) != 0 && !std::holds_alternative<JoinRequest>(msg)) {
    ++counters_.drop_refused;
    return;
  }
  std::visit(
      [&](auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, JoinRequest>) {
          on_join_request(now, from, m);
        } else if constexpr (std::is_same_v<T, JoinAccept>) {
          on_join_accept(now, from, m);
        } else if constexpr (std::is_same_v<T, JoinRefuse>) {
          on_join_refuse(now, from, m);
        } else if constexpr (std::is_same_v<T, Ping>) {
          on_ping(now, from, m);
        } else if constexpr (std::is_same_v<T, Ack>) {
          on_ack(now, from, m);
        } else if constexpr (std::is_same_v<T, PingReq>) {
          on_ping_req(now, from, m);
        } else if constexpr (std::is_same_v<T, Gossip>) {
          for (const Update& u : m.updates) apply_update(now, u);
        } else if constexpr (std::is_same_v<T, SyncRequest>) {
          on_sync_request(now, from, m);
        } else if constexpr (std::is_same_v<T, Push>) {
          on_push(now, from, m);
        } else if constexpr (std::is_same_v<T, Leave>) {
          on_leave(now, from, m);
        } else if constexpr (std::is_same_v<T, Nack>) {
          on_nack(now, from, m);
        } else if constexpr (std::is_same_v<T, MapRegister>) {
          on_map_register(now, m);
        } else if constexpr (std::is_same_v<T, MapRequest>) {
          on_map_request(now, from, m);
        } else if constexpr (std::is_same_v<T, MapReply>) {
          on_map_reply(now, from, m);
        } else if constexpr (std::is_same_v<T, MapNotify>) {
          on_map_notify(now, from, m);
        } else if constexpr (std::is_same_v<T, RecordRequest>) {
          on_record_request(now, from, m);
        }
      },
      msg);
}

void MeshCore::Impl::handle_timeout(std::uint64_t now) {
  if (left_) return;
  if (joining_ && now >= next_join_ms_) {
    send_join_requests(now);
    next_join_ms_ = now + cfg_.join_retry_ms;
  }
  if (probe_.active && !probe_.acked && !probe_.indirect_sent && now >= probe_.indirect_ms) {
    probe_indirect(now);
  }
  if (probe_.active && !probe_.acked && probe_.indirect_sent && !probe_.second_wave_sent &&
      now >= probe_.second_wave_ms) {
    probe_second_wave(now);
  }
  if (now >= next_probe_ms_) {
    probe_tick(now);
    // Lifeguard: a node in poor local health probes less often (interval * (LHM+1)).
    next_probe_ms_ = now + probe_interval_ms();
  }
  check_suspicions(now);
  relay_tick(now);
  if (now >= next_gossip_ms_) {
    gossip_tick(now);
    next_gossip_ms_ = now + cfg_.gossip_interval_ms;
  }
  if (now >= next_failed_probe_ms_) {
    probe_failed_member(now);
    next_failed_probe_ms_ = now + cfg_.failed_probe_interval_ms;
  }
  if (now >= next_anti_entropy_ms_) {
    anti_entropy(now);
    reap(now);
    gc_tombstones(now);
    next_anti_entropy_ms_ = now + cfg_.anti_entropy_interval_ms;
  }
  map_tick(now);
}

std::uint64_t MeshCore::Impl::poll_timeout() const {
  if (left_) return kNoDeadline;
  std::uint64_t t = std::min({next_probe_ms_, next_gossip_ms_, next_anti_entropy_ms_,
                              next_failed_probe_ms_});
  if (joining_) t = std::min(t, next_join_ms_);
  t = std::min(t, map_deadline());
  if (probe_.active && !probe_.acked && !probe_.indirect_sent) {
    t = std::min(t, probe_.indirect_ms);
  }
  if (probe_.active && !probe_.acked && probe_.indirect_sent && !probe_.second_wave_sent) {
    t = std::min(t, probe_.second_wave_ms);
  }
  if (!suspicion_deadlines_.empty()) t = std::min(t, suspicion_deadlines_.begin()->first);
  for (const auto& [seq, r] : relays_) {
    t = std::min(t, r.nack_pending ? std::min(r.nack_ms, r.deadline_ms) : r.deadline_ms);
  }
  return t;
}

// ---------------------------------------------------------------- public API

MeshCore::MeshCore(MeshConfig cfg, crypto::SigningKey node_key, crypto::PublicKey root_pub,
                   NodeRecord self, crypto::Random& rng, Storage* storage,
                   std::uint64_t now_ms, RecordCache* cache)
    : impl_(std::make_unique<Impl>(cfg, std::move(node_key), root_pub, std::move(self), rng,
                                   storage, now_ms, cache)) {}

MeshCore::~MeshCore() = default;

void MeshCore::restore(std::uint64_t now_ms) { impl_->restore(now_ms); }

void MeshCore::join(std::uint64_t now_ms, std::vector<Contact> contacts) {
  Impl& d = *impl_;
  if (d.left_) return;
  std::erase_if(contacts,
                [&](const Contact& c) { return c.id == d.self_.id() || d.is_revoked(c.id); });
  if (contacts.size() > kContactsMax) contacts.resize(kContactsMax);
  d.contacts_ = std::move(contacts);
  if (d.contacts_.empty()) return;  // first node of a mesh: nothing to join
  d.joining_ = true;
  d.join_reported_ = false;
  d.send_join_requests(now_ms);
  d.next_join_ms_ = now_ms + d.cfg_.join_retry_ms;
}

void MeshCore::leave(std::uint64_t now_ms) {
  Impl& d = *impl_;
  if (d.left_) return;
  d.set_incarnation(d.incarnation_ + 1);
  Bytes msg = encode_leave(Leave{d.incarnation_, d.self_proof_});
  for (const NodeId& id : d.live_members()) d.send(id, msg);
  d.left_ = true;
  d.joining_ = false;
  d.broadcasts_.clear();
  (void)now_ms;
}

void MeshCore::handle_message(std::uint64_t now_ms, const NodeId& from,
                              const crypto::CertChain& chain, ByteSpan payload) {
  // The tunnel authenticated `chain`; a mismatch means the caller mixed up peers.
  assert(chain.node_id() == from);
  (void)chain;
  impl_->handle_message(now_ms, from, payload);
}

void MeshCore::handle_timeout(std::uint64_t now_ms) { impl_->handle_timeout(now_ms); }

Status MeshCore::publish_endpoint(std::uint64_t now_ms, std::uint32_t vni, const MacAddr& mac,
                                  std::vector<IpAddr> ips) {
  return impl_->publish(now_ms, vni, mac, std::move(ips));
}

Status MeshCore::withdraw_endpoint(std::uint64_t now_ms, std::uint32_t vni, const MacAddr& mac) {
  return impl_->withdraw(now_ms, vni, mac);
}

Status MeshCore::revoke(std::uint64_t now_ms, const Revocation& r) {
  return impl_->revoke(now_ms, r);
}

void MeshCore::set_locators(std::uint64_t now_ms, std::vector<Locator> locators) {
  if (locators.size() > kLocatorsMax) locators.resize(kLocatorsMax);
  if (locators == impl_->self_.locators) return;
  impl_->self_.locators = std::move(locators);
  impl_->bump_record(now_ms);
}

Status MeshCore::set_routes(std::uint64_t now_ms, std::vector<RouteAnnouncement> routes) {
  Impl& d = *impl_;
  if (d.left_) return make_error("mesh.left", "this node has left the mesh");
  for (const RouteAnnouncement& r : routes) {
    const bool v4 = r.prefix.addr.is_v4(), v6 = r.prefix.addr.is_v6();
    if (r.vni == 0 || r.vni > crypto::kVniMax || (!v4 && !v6) || r.prefix.len > (v4 ? 32 : 128)) {
      return make_error("mesh.invalid", "route with VNI 0 or a bad prefix");
    }
    if (!d.self_.chain.allows_vni(r.vni)) {
      return make_error("mesh.scope", "this node's certificate does not allow VNI " +
                                          std::to_string(r.vni));
    }
  }
  std::sort(routes.begin(), routes.end());
  routes.erase(std::unique(routes.begin(), routes.end()), routes.end());
  if (routes.size() > kRoutesPerNodeMax) {
    return make_error("mesh.full", "at most " + std::to_string(kRoutesPerNodeMax) +
                                       " routes per node");
  }
  if (routes == d.self_.routes) return ok_status();
  d.self_.routes = std::move(routes);
  d.bump_record(now_ms);
  return ok_status();
}

std::optional<MeshTransmit> MeshCore::poll_transmit() {
  if (impl_->tx_.empty()) return std::nullopt;
  MeshTransmit t = std::move(impl_->tx_.front());
  impl_->tx_.pop_front();
  return t;
}

std::optional<MeshEvent> MeshCore::poll_event() {
  if (impl_->events_.empty()) return std::nullopt;
  MeshEvent e = std::move(impl_->events_.front());
  impl_->events_.pop_front();
  return e;
}

std::uint64_t MeshCore::poll_timeout() const { return impl_->poll_timeout(); }

const NodeRecord& MeshCore::self() const { return impl_->self_; }

std::vector<MemberInfo> MeshCore::members() const {
  std::vector<MemberInfo> out;
  out.reserve(impl_->members_.size());
  for (const auto& [id, m] : impl_->members_) out.push_back(m.info());
  return out;
}

void MeshCore::visit_members(const std::function<void(const NodeId&, MemberState)>& fn) const {
  for (const auto& [id, m] : impl_->members_) fn(id, m.state);
}

std::optional<MemberInfo> MeshCore::member(const NodeId& id) const {
  auto it = impl_->members_.find(id);
  if (it == impl_->members_.end()) return std::nullopt;
  return it->second.info();
}

std::vector<EndpointMapping> MeshCore::mappings() const {
  std::vector<EndpointMapping> out;
  for (const auto& [k, e] : impl_->mappings_) {
    if (!e.m.removed) out.push_back(e.m);
  }
  return out;
}

std::optional<Contact> MeshCore::contact(const NodeId& id) const {
  auto from_record = [&](const NodeRecord& r) {
    return Contact{r.id(), r.chain.node.dh_pub, r.locators};
  };
  if (id == impl_->self_.id()) return from_record(impl_->self_);
  if (impl_->is_revoked(id)) return std::nullopt;
  auto it = impl_->members_.find(id);
  if (it != impl_->members_.end()) return from_record(it->second.record());
  for (const Contact& c : impl_->contacts_) {
    if (c.id == id) return c;
  }
  return std::nullopt;
}

std::vector<Revocation> MeshCore::revocations() const {
  std::vector<Revocation> out;
  out.reserve(impl_->revocations_.size());
  for (const auto& [id, r] : impl_->revocations_) out.push_back(r);
  return out;
}

bool MeshCore::is_revoked(const NodeId& id) const { return impl_->is_revoked(id); }

const MeshCounters& MeshCore::counters() const { return impl_->counters_; }

}  // namespace meshd::mesh
