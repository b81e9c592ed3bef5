// Endpoint mappings in mappings_: our own (signed here, registered with their keys'
// owners, mapping_system.cpp) and cached ones (resolved from owners, for VNIs we
// serve). One entry per (vni, mac), ordered by claim_beats(); own tombstones
// (`removed`) are kept for tombstone_keep_ms so a late copy cannot resurrect a claim.
// Members are compared by push-pull here; mappings are not (owners hold them).
#include <algorithm>

#include "mesh/core_impl.hpp"

namespace meshd::mesh {

namespace {

// FNV-1a: a digest for comparing tables between honest members, not a MAC.
struct Fnv {
  std::uint64_t h = 0xcbf29ce484222325ull;
  void bytes(ByteSpan b) {
    for (std::uint8_t c : b) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
  }
  void u64(std::uint64_t v) {
    std::array<std::uint8_t, 8> a{};
    for (int i = 0; i < 8; ++i) a[i] = static_cast<std::uint8_t>(v >> (8 * i));
    bytes(a);
  }
};

MeshEvent mapping_event(MeshEvent::Kind kind, const EndpointMapping& m) {
  return MeshEvent{kind, std::nullopt, m, m.owner, {}};
}

}  // namespace

Status MeshCore::Impl::publish(std::uint64_t now, std::uint32_t vni, const MacAddr& mac,
                               std::vector<IpAddr> ips) {
  if (left_) return make_error("mesh.left", "this node has left the mesh");
  if (vni == 0 || vni > crypto::kVniMax || ips.size() > kEndpointIpsMax) {
    return make_error("mesh.invalid", "VNI out of range or too many IPs for one endpoint");
  }
  if (!self_.chain.allows_vni(vni)) {
    return make_error("mesh.scope", "this node's certificate does not allow VNI " +
                                        std::to_string(vni));
  }
  const MapKey k{vni, mac};
  auto it = mappings_.find(k);
  if (it != mappings_.end() && it->second.m.owner != self_.id()) {
    // A cached claim from elsewhere: ours goes above it (a move here).
    cache_ips_remove(it->second.m);
  }
  if (it == mappings_.end() &&
      (mappings_.size() >= cfg_.mappings_max ||
       (own_seqs_.count(k) == 0 && own_seqs_.size() >= cfg_.mappings_max))) {
    return make_error("mesh.full", "mapping table full (mappings_max)");
  }
  if (it != mappings_.end() && it->second.m.owner == self_.id() && !it->second.m.removed &&
      it->second.m.ips == ips) {
    return ok_status();  // already published as is
  }
  std::uint64_t seq = own_seqs_[k];
  if (it != mappings_.end()) {
    // Higher than any claim we have seen, so a MAC that moved here wins (mobility).
    seq = std::max(seq, it->second.m.seq);
    if (it->second.m.owner != self_.id() && !it->second.m.removed) {
      EndpointMapping gone = it->second.m;
      gone.removed = true;
      emit(mapping_event(MeshEvent::Kind::mapping_removed, gone));
    }
  }
  ++seq;
  own_seqs_[k] = seq;
  persist_seq(k, seq);
  std::optional<EndpointMapping> old;
  if (it != mappings_.end() && it->second.m.owner == self_.id()) old = it->second.m;
  EndpointMapping m{vni, mac, std::move(ips), self_.id(), seq, false, {}};
  m.sign(key_);
  store_mapping(now, m);
  mappings_[k].published_ms = now;
  mappings_[k].reclaimed = false;
  mappings_[k].duplicate_until_ms = 0;
  if (!serves(vni)) start_serving(now, vni);
  register_own(now, m, old ? &*old : nullptr);
  return ok_status();
}

Status MeshCore::Impl::withdraw(std::uint64_t now, std::uint32_t vni, const MacAddr& mac) {
  if (left_) return make_error("mesh.left", "this node has left the mesh");
  const MapKey k{vni, mac};
  auto it = mappings_.find(k);
  if (it == mappings_.end() || it->second.m.owner != self_.id() || it->second.m.removed) {
    return ok_status();  // nothing of ours to withdraw
  }
  std::uint64_t seq = std::max(own_seqs_[k], it->second.m.seq) + 1;
  own_seqs_[k] = seq;
  persist_seq(k, seq);
  EndpointMapping t = it->second.m;
  t.ips.clear();
  t.seq = seq;
  t.removed = true;
  t.sign(key_);
  const EndpointMapping old = it->second.m;
  store_mapping(now, t);
  register_own(now, t, &old);
  bool still_serving = false;
  for (auto i = mappings_.lower_bound(MapKey{vni, {}}); i != mappings_.end() && i->first.vni == vni;
       ++i) {
    if (i->second.m.owner == self_.id() && !i->second.m.removed) still_serving = true;
  }
  if (!still_serving) {
    std::erase(self_.vnis, vni);
    bump_record(now);
    drop_unserved_vni(vni);
  }
  return ok_status();
}

void MeshCore::Impl::start_serving(std::uint64_t now, std::uint32_t vni) {
  if (self_.vnis.size() >= kVnisServedMax) return;
  self_.vnis.insert(std::upper_bound(self_.vnis.begin(), self_.vnis.end(), vni), vni);
  bump_record(now);
}

void MeshCore::Impl::store_mapping(std::uint64_t now, const EndpointMapping& m) {
  // Own mappings only (cached ones go through cache_apply and are not persisted).
  MappingEntry& e = mappings_[MapKey{m.vni, m.mac}];
  e.m = m;
  e.updated_ms = now;
  e.expires_ms = 0;
  persist_mapping(m);
}

MeshCore::Impl::MappingMap::iterator MeshCore::Impl::forget_mapping(MappingMap::iterator it) {
  cache_ips_remove(it->second.m);
  if (!it->second.m.removed) {
    EndpointMapping gone = it->second.m;
    gone.removed = true;
    emit(mapping_event(MeshEvent::Kind::mapping_removed, gone));
  }
  unpersist_mapping(it->first);
  return mappings_.erase(it);
}

void MeshCore::Impl::remove_owner_mappings(const NodeId& owner) {
  for (auto it = mappings_.begin(); it != mappings_.end();) {
    if (it->second.m.owner != owner) {
      ++it;
      continue;
    }
    it = forget_mapping(it);
  }
}

void MeshCore::Impl::drop_unserved_vni(std::uint32_t vni) {
  for (auto it = mappings_.lower_bound(MapKey{vni, {}});
       it != mappings_.end() && it->first.vni == vni;) {
    if (it->second.m.owner == self_.id()) {
      ++it;
      continue;
    }
    it = forget_mapping(it);
  }
}

void MeshCore::Impl::apply_mapping(std::uint64_t now, const EndpointMapping& m) {
  // A mapping from gossip, a push or a join accept (older senders spread them so): news
  // only for a claim we cache; mappings are otherwise resolved from their owners.
  auto it = mappings_.find(MapKey{m.vni, m.mac});
  if (it == mappings_.end() || !map_checks(m)) {
    ++counters_.drop_unserved;
    return;
  }
  cache_apply(now, m, cfg_.map_ttl_ms);
}

std::uint64_t MeshCore::Impl::members_digest() const {
  // Which nodes are live at which record version and incarnation, order-free and kept up to date by
  // the member table (O(1) here): equal digests mean nothing to exchange.
  return members_xor_ ^ member_hash(self_.id(), self_.version, incarnation_);
}

std::array<std::uint64_t, kMemberBuckets> MeshCore::Impl::member_buckets() const {
  std::array<std::uint64_t, kMemberBuckets> b = bucket_xor_;
  b[self_.id()[0]] ^= member_hash(self_.id(), self_.version, incarnation_);
  return b;
}

void MeshCore::Impl::send_sync_request(const NodeId& to, bool want_reply, bool with_buckets) {
  SyncRequest r;
  r.want_reply = want_reply;
  r.members_digest = members_digest();
  if (with_buckets) {
    const auto b = member_buckets();
    r.member_buckets.assign(b.begin(), b.end());
    r.states_ok = true;  // push us states; we ask for the records we lack
  }
  r.revocations_digest = revocations_digest_;
  send(to, encode_sync_request(r));
}

void MeshCore::Impl::anti_entropy(std::uint64_t now) {
  // A random alive member (or, in their share, a recently failed one). Sampled, not
  // scanned: the cost does not grow with N.
  std::vector<NodeId> pool = sample_partners(now, 1, true);
  if (pool.empty()) return;
  send_sync_request(pool.front(), true);
}

void MeshCore::Impl::catch_up_soon(std::uint64_t now) {
  next_anti_entropy_ms_ =
      std::min(next_anti_entropy_ms_, now + cfg_.anti_entropy_interval_ms / kAntiEntropyCatchUpDiv);
}

void MeshCore::Impl::on_sync_request(std::uint64_t now, const NodeId& from, const SyncRequest& m) {
  // Members, in up to three steps so only what differs travels: a digest differs ->
  // answer with our 256 bucket digests (and ask for theirs); bucket digests in hand ->
  // push our members of the buckets that differ.
  const bool members_differ = m.members_digest != members_digest();
  const bool bucket_mode = m.member_buckets.size() == kMemberBuckets;
  std::bitset<kMemberBuckets> push_buckets;
  if (members_differ && bucket_mode) {
    const auto mine = member_buckets();
    for (std::size_t b = 0; b < kMemberBuckets; ++b) {
      if (mine[b] != m.member_buckets[b]) push_buckets.set(b);
    }
  }
  const bool push_members = push_buckets.any();
  // Out of step (a healed partition, a node back from a crash): sync again soon, until
  // the digests match; in step, once per anti_entropy_interval_ms.
  if (members_differ) catch_up_soon(now);
  // A sender without the field predates revocations: nothing to compare.
  const bool revocations_differ =
      m.revocations_digest.has_value() && *m.revocations_digest != revocations_digest_;
  // vni_digests (mappings compared by push-pull before issue 4) are ignored.
  if (push_members || revocations_differ) {
    send_members(from, false, push_members, revocations_differ, &push_buckets, m.states_ok);
  }
  // Push-pull: ask for their side of whatever differed (once; the reply does not ask
  // back), with our buckets if members differ. A request that had no buckets is
  // answered with ours and want_reply, so its sender pushes what differs and asks for
  // our side in turn.
  const bool ask_buckets = members_differ && !bucket_mode;
  if (ask_buckets || (m.want_reply && (members_differ || revocations_differ))) {
    send_sync_request(from, ask_buckets, members_differ);
  }
}

void MeshCore::Impl::on_push(std::uint64_t now, const NodeId& from, const Push& m) {
  for (const Revocation& r : m.revocations) apply_revocation(now, r);
  if (left_) return;  // we were among them
  // Members we hold failed that the sender holds alive at no newer incarnation: after a
  // partition heals, each side holds the other failed and only the failed node itself
  // can undo that (by refuting). Tell a few of them now instead of waiting for gossip
  // or the slow failed-member probe: each refutes, and its ack brings the refutation.
  std::vector<NodeId> revive;
  auto revivable = [&](const NodeId& id, MemberState st, std::uint64_t inc) {
    if (st != MemberState::alive) return;
    auto it = members_.find(id);
    if (it != members_.end() && it->second.state == MemberState::failed &&
        inc <= it->second.incarnation) {
      revive.push_back(it->first);
    }
  };
  for (const MemberEntry& e : m.members) revivable(e.record.id(), e.state, e.incarnation);
  for (const MemberStateEntry& e : m.states) revivable(e.node, e.state, e.incarnation);
  for (std::size_t i = 0; i < revive.size() && i < kRevivalPingsMax; ++i) {
    std::swap(revive[i], revive[i + rng_.uniform(revive.size() - i)]);
    send_ping(revive[i], next_seq_++, true);
  }
  for (const MemberEntry& e : m.members) apply_member(now, e);
  for (const EndpointMapping& e : m.mappings) apply_mapping(now, e);
  if (!m.states.empty()) apply_pushed_states(now, from, m.states);
}

void MeshCore::Impl::apply_pushed_states(std::uint64_t now, const NodeId& from,
                                         const std::vector<MemberStateEntry>& states) {
  RecordRequest want;
  for (const MemberStateEntry& e : states) {
    if (e.node == self_.id()) {
      apply_state(now, e.node, e.state, e.incarnation, std::nullopt, e.proof);  // to refute?
      continue;
    }
    if (is_revoked(e.node)) {
      ++counters_.drop_revoked;
      continue;
    }
    if (refused_.count(e.node) != 0) {
      ++counters_.drop_refused;
      continue;
    }
    auto it = members_.find(e.node);
    if (it != members_.end() && e.version <= it->second.rec->version) {
      // What apply_member does with a record we already hold.
      apply_state(now, e.node, e.state, e.incarnation, std::nullopt, e.proof);
    } else if (want.nodes.size() < kRecordRequestMax) {
      want.nodes.push_back(e.node);  // new to us, or a newer record: ask for it
    }
  }
  if (!want.nodes.empty()) {
    counters_.records_requested += want.nodes.size();
    send(from, encode_record_request(want));
  }
}

void MeshCore::Impl::gc_tombstones(std::uint64_t now) {
  for (auto it = mappings_.begin(); it != mappings_.end();) {
    if (it->second.m.removed && now >= it->second.updated_ms + cfg_.tombstone_keep_ms) {
      unpersist_mapping(it->first);
      it = mappings_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace meshd::mesh
