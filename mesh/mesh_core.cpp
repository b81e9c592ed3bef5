#include "mesh/mesh_core.hpp"

#include <algorithm>
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

MeshCore::Impl::Impl(MeshConfig cfg, crypto::SigningKey key, crypto::PublicKey root,
                     NodeRecord self, crypto::Random& rng, Storage* storage,
                     std::uint64_t now_ms)
    : cfg_(cfg),
      key_(std::move(key)),
      root_pub_(root),
      self_(std::move(self)),
      rng_(rng),
      storage_(storage),
      broadcasts_(cfg.broadcast_queue_max),
      health_(cfg.lhm_max) {
  // Lifeguard tunables outside their documented bounds are clamped, not refused:
  // MeshConfig is built by the agent from defaults, and a clamp is always safe.
  cfg_.suspicion_mult = std::min(cfg_.suspicion_mult, kSuspicionMultMax);
  cfg_.suspicion_max_timeout_mult =
      std::clamp<std::uint64_t>(cfg_.suspicion_max_timeout_mult, 1, kSuspicionMaxTimeoutMultMax);
  cfg_.lhm_max = health_.max();
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
  for (const auto& [id, m] : members_) {
    if (m.info.state == MemberState::alive || m.info.state == MemberState::suspect) {
      out.push_back(id);
    }
  }
  return out;
}

std::size_t MeshCore::Impl::live_count() const {
  std::size_t live = 0;
  for (const auto& [id, m] : members_) {
    live += m.info.state == MemberState::alive || m.info.state == MemberState::suspect;
  }
  return live;
}

std::size_t MeshCore::Impl::transmit_limit() const {
  // Counted, not collected: this runs for every outgoing ping, ack and gossip.
  double n = static_cast<double>(live_count() + 1);
  auto rounds = static_cast<std::size_t>(std::ceil(std::log10(n + 1)));
  return std::max<std::size_t>(1, cfg_.retransmit_mult * std::max<std::size_t>(rounds, 1));
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
  queue_broadcast(member_key(self_.id()),
                  MemberEntry{self_, MemberState::alive, incarnation_});
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
}

std::uint64_t MeshCore::Impl::poll_timeout() const {
  if (left_) return kNoDeadline;
  std::uint64_t t = std::min({next_probe_ms_, next_gossip_ms_, next_anti_entropy_ms_,
                              next_failed_probe_ms_});
  if (joining_) t = std::min(t, next_join_ms_);
  if (probe_.active && !probe_.acked && !probe_.indirect_sent) {
    t = std::min(t, probe_.indirect_ms);
  }
  for (const auto& [id, m] : members_) {
    if (m.info.state == MemberState::suspect) t = std::min(t, m.suspicion.deadline_ms());
  }
  for (const auto& [seq, r] : relays_) {
    t = std::min(t, r.nack_pending ? std::min(r.nack_ms, r.deadline_ms) : r.deadline_ms);
  }
  return t;
}

// ---------------------------------------------------------------- public API

MeshCore::MeshCore(MeshConfig cfg, crypto::SigningKey node_key, crypto::PublicKey root_pub,
                   NodeRecord self, crypto::Random& rng, Storage* storage,
                   std::uint64_t now_ms)
    : impl_(std::make_unique<Impl>(cfg, std::move(node_key), root_pub, std::move(self), rng,
                                   storage, now_ms)) {}

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
  ++d.incarnation_;
  d.persist_incarnation();
  Bytes msg = encode_leave(Leave{d.incarnation_});
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
  for (const auto& [id, m] : impl_->members_) out.push_back(m.info);
  return out;
}

std::optional<MemberInfo> MeshCore::member(const NodeId& id) const {
  auto it = impl_->members_.find(id);
  if (it == impl_->members_.end()) return std::nullopt;
  return it->second.info;
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
  if (it != impl_->members_.end()) return from_record(it->second.info.record);
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
