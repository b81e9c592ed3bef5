// The mapping system (issue 4), LISP-style: tenant addresses are identifiers, nodes
// are locators, and who-is-where lives at a few owners instead of everywhere.
//
//   owners     A key ((VNI, MAC) or (VNI, IP)) has map_replicas owners: the live
//              members (self included) with the highest rendezvous score for it.
//   register   A node sends each own endpoint mapping to the owners of its keys, again
//              when the owner set of a key changes, and every map_register_refresh_ms.
//   hand-off   An owner that sees the owner set of a held key change sends the key to
//              the new owners, and keeps answering for map_handoff_keep_ms if it is no
//              longer one of them. Held keys are persisted (table "held").
//   resolve    A node that needs a key asks its best owner (the next one after
//              map_request_timeout_ms or a negative answer, R tries); the answer is
//              cached for its TTL, a negative one (every owner said so) for less.
//   pub/sub    A request subscribes the requester for the TTL: the owner sends it a
//              map-notify when the key's winning claim changes (move, removal, IP change).
//   mobility   Claims are ordered by claim_beats(). A claim superseded at an owner is
//              told so (map-notify): a fresh one (a move here) claims above the winner
//              once; an older one is a duplicate, counted and reported.
#include <algorithm>

#include "mesh/core_impl.hpp"

namespace meshd::mesh {

namespace {

std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t key_hash(const LookupKey& k) {
  std::uint64_t h = mix64(k.vni);
  if (k.is_ip()) {
    h = mix64(h ^ 0x4950ull ^ k.ip.family);
    for (std::size_t i = 0; i < 16; i += 8) {
      std::uint64_t w = 0;
      for (std::size_t j = 0; j < 8; ++j) w |= std::uint64_t{k.ip.bytes[i + j]} << (8 * j);
      h = mix64(h ^ w);
    }
  } else {
    std::uint64_t w = 0;
    for (std::size_t j = 0; j < 6; ++j) w |= std::uint64_t{k.mac[j]} << (8 * j);
    h = mix64(h ^ w);
  }
  return h;
}

std::uint64_t node_word(const NodeId& id) {
  std::uint64_t w = 0;
  for (std::size_t j = 0; j < 8; ++j) w |= std::uint64_t{id[j]} << (8 * j);
  return w;
}

// Rendezvous (highest random weight) score of `node` for a key.
std::uint64_t score(std::uint64_t kh, const NodeId& node) { return mix64(kh ^ node_word(node)); }

bool same_claim(const EndpointMapping& a, const EndpointMapping& b) {
  return a.owner == b.owner && a.mac == b.mac;
}

bool holds_ip(const EndpointMapping& m, const IpAddr& ip) {
  return std::find(m.ips.begin(), m.ips.end(), ip) != m.ips.end();
}

void add_sub(std::vector<std::pair<NodeId, std::uint64_t>>& subs, const NodeId& who,
             std::uint64_t until, std::size_t max) {
  for (auto& [id, t] : subs) {
    if (id == who) {
      t = std::max(t, until);
      return;
    }
  }
  if (max == 0) return;
  if (subs.size() >= max) subs.erase(subs.begin());  // oldest first
  subs.emplace_back(who, until);
}

}  // namespace

void MeshCore::Impl::add_to_owners(std::map<NodeId, std::vector<Bytes>>& batches, const OwnerSet& o,
                                   const Bytes& enc) {
  for (std::size_t i = 0; i < o.n; ++i) {
    auto& b = batches[o.ids[i]];
    if (b.empty() || b.back() != enc) b.push_back(enc);
  }
}

bool claim_beats(const EndpointMapping& in, const EndpointMapping& cur) {
  if (same_claim(in, cur)) return in.seq > cur.seq;
  if (in.removed) return false;  // only its own claim's tombstone beats a claim
  if (cur.removed) return true;
  return in.seq > cur.seq || (in.seq == cur.seq && in.owner < cur.owner);
}

std::vector<LookupKey> MeshCore::Impl::keys_of(const EndpointMapping& m) {
  std::vector<LookupKey> keys{LookupKey::of_mac(m.vni, m.mac)};
  for (const IpAddr& ip : m.ips) keys.push_back(LookupKey::of_ip(m.vni, ip));
  return keys;
}

MeshCore::Impl::OwnerSet MeshCore::Impl::compute_owners(const LookupKey& k) const {
  const std::size_t r = std::clamp<std::size_t>(cfg_.map_replicas, 1, kMapReplicasMax);
  const std::uint64_t kh = key_hash(k);
  std::array<std::uint64_t, kMapReplicasMax> best{};
  OwnerSet o;
  auto offer = [&](const NodeId& id) {
    const std::uint64_t s = score(kh, id);
    if (o.n == r && s <= best[o.n - 1]) return;
    std::size_t i = o.n < r ? o.n++ : o.n - 1;
    while (i > 0 && best[i - 1] < s) {
      best[i] = best[i - 1];
      o.ids[i] = o.ids[i - 1];
      --i;
    }
    best[i] = s;
    o.ids[i] = id;
  };
  if (!left_) offer(self_.id());
  for (const Member* m : live_) offer(m->id());
  o.min_score = o.n == r ? best[o.n - 1] : 0;
  return o;
}

// ---------------------------------------------------------------- membership changes

void MeshCore::Impl::map_membership_changed(const NodeId& id, bool joined) {
  auto& list = joined ? map_joined_ : map_gone_;
  if (list.size() >= kMapChangesMax) {
    map_rebalance_all_ = true;
  } else {
    list.push_back(id);
  }
  if (next_map_rebalance_ms_ == 0) next_map_rebalance_ms_ = 1;  // due at the next tick
}

void MeshCore::Impl::map_rebalance(std::uint64_t now) {
  const bool all = map_rebalance_all_;
  std::vector<NodeId> joined = std::move(map_joined_), gone = std::move(map_gone_);
  map_joined_.clear();
  map_gone_.clear();
  map_rebalance_all_ = false;
  // A key's owners change only if a member that left was one of them, or one that
  // joined scores above the last of them: most keys are checked in O(changes).
  auto affected = [&](const LookupKey& k, const OwnerSet& o) {
    if (all || o.n < std::clamp<std::size_t>(cfg_.map_replicas, 1, kMapReplicasMax)) return true;
    for (const NodeId& id : gone) {
      if (o.contains(id)) return true;
    }
    if (joined.empty()) return false;
    const std::uint64_t kh = key_hash(k);
    for (const NodeId& id : joined) {
      if (score(kh, id) > o.min_score) return true;
    }
    return false;
  };
  std::map<NodeId, std::vector<Bytes>> batches;
  // Own keys: register with owners we have not registered with.
  for (auto& [k, reg] : own_regs_) {
    if (!affected(k, reg.owners)) continue;
    OwnerSet now_owners = compute_owners(k);
    auto it = mappings_.find(MapKey{k.vni, reg.mac});
    if (it != mappings_.end() && it->second.m.owner == self_.id()) {
      Bytes enc = encode_mapping(it->second.m);
      for (std::size_t i = 0; i < now_owners.n; ++i) {
        if (!reg.owners.contains(now_owners.ids[i])) batches[now_owners.ids[i]].push_back(enc);
      }
      if (now_owners.contains(self_.id())) hold(now, k, it->second.m);
    }
    reg.owners = now_owners;
  }
  // Held keys: re-replicate to new owners; stop owning what is no longer ours.
  for (auto& [k, h] : held_) {
    if (!affected(k, h.owners)) continue;
    OwnerSet now_owners = compute_owners(k);
    if (now_owners == h.owners) continue;
    Bytes enc = encode_mapping(h.m);
    for (std::size_t i = 0; i < now_owners.n; ++i) {
      const NodeId& id = now_owners.ids[i];
      if (!h.owners.contains(id) && id != self_.id()) {
        batches[id].push_back(enc);
        ++counters_.map_handoffs;
      }
    }
    h.owners = now_owners;
    const bool mine = now_owners.contains(self_.id());
    if (!mine && h.orphan_since_ms == 0) h.orphan_since_ms = std::max<std::uint64_t>(now, 1);
    if (mine) h.orphan_since_ms = 0;
  }
  send_registers(batches);
}

void MeshCore::Impl::send_registers(std::map<NodeId, std::vector<Bytes>>& batches) {
  const std::size_t budget = cfg_.message_bytes_max > 64 ? cfg_.message_bytes_max - 64 : 0;
  for (auto& [dest, list] : batches) {
    if (dest == self_.id()) continue;
    const NodeId& to = dest;  // (a structured binding cannot be captured before C++20 in clang 14)
    std::vector<Bytes> chunk;
    std::size_t used = 0;
    auto flush = [&] {
      if (chunk.empty()) return;
      send(to, encode_map_register(chunk));
      ++counters_.map_registers_sent;
      chunk.clear();
      used = 0;
    };
    for (Bytes& b : list) {
      if (used + b.size() > budget) flush();
      used += b.size();
      chunk.push_back(std::move(b));
    }
    flush();
  }
}

void MeshCore::Impl::register_own(std::uint64_t now, const EndpointMapping& m,
                                  const EndpointMapping* old) {
  if (register_again_.size() >= cfg_.mappings_max) register_again_.pop_front();
  register_again_.emplace_back(now + kMapRegisterAgainMs, MapKey{m.vni, m.mac});
  std::map<NodeId, std::vector<Bytes>> batches;
  const Bytes enc = encode_mapping(m);
  std::vector<LookupKey> keys = keys_of(m);
  if (old != nullptr) {
    for (const LookupKey& k : keys_of(*old)) {
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    }
  }
  for (const LookupKey& k : keys) {
    OwnerSet o = compute_owners(k);
    add_to_owners(batches, o, enc);
    // Keys the mapping no longer has (an IP removed) are told once, not tracked.
    const bool current = m.removed ? false
                                   : (!k.is_ip() || holds_ip(m, k.ip));
    if (current) {
      own_regs_[k] = OwnReg{o, m.mac};
    } else {
      own_regs_.erase(k);
    }
    // We may be an owner of our own key.
    if (o.contains(self_.id())) hold(now, k, m);
  }
  send_registers(batches);
}

// ---------------------------------------------------------------- ticks

std::uint64_t MeshCore::Impl::map_deadline() const {
  std::uint64_t t = std::min(next_map_sweep_ms_, next_map_refresh_ms_);
  if (!register_again_.empty()) t = std::min(t, register_again_.front().first);
  if (next_map_rebalance_ms_ != 0) t = std::min(t, next_map_rebalance_ms_);
  for (const auto& [k, p] : pending_) t = std::min(t, p.deadline_ms);
  return t;
}

void MeshCore::Impl::map_tick(std::uint64_t now) {
  // 1 = "changes seen, not yet scheduled" (map_membership_changed): checked first, or
  // it would pass for a deadline already due and every change would rebalance at once.
  if (next_map_rebalance_ms_ == 1) {
    next_map_rebalance_ms_ = now + kMapRebalanceMs;
  } else if (next_map_rebalance_ms_ != 0 && now >= next_map_rebalance_ms_) {
    map_rebalance(now);
    next_map_rebalance_ms_ = 0;
  }
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (now < it->second.deadline_ms) {
      ++it;
      continue;
    }
    if (it->second.tries < other_owners(it->first)) {
      send_lookup(now, it->first, it->second);
      ++it;
      continue;
    }
    ++counters_.map_timeouts;
    if (!refresh_ended(it->first, false)) {
      MeshEvent ev{MeshEvent::Kind::mapping_unresolved, std::nullopt, std::nullopt, {}, "timeout"};
      ev.key = it->first;
      emit(std::move(ev));
    }
    pending_nonces_.erase(it->second.nonce);
    it = pending_.erase(it);
  }
  // The second registration of changed own mappings, to their current owners.
  while (!register_again_.empty() && register_again_.front().first <= now) {
    const MapKey k = register_again_.front().second;
    register_again_.pop_front();
    auto it = mappings_.find(k);
    if (it == mappings_.end() || it->second.m.owner != self_.id()) continue;
    std::map<NodeId, std::vector<Bytes>> batches;
    const Bytes enc = encode_mapping(it->second.m);
    for (const LookupKey& lk : keys_of(it->second.m)) add_to_owners(batches, compute_owners(lk), enc);
    send_registers(batches);
  }
  if (now >= next_map_sweep_ms_) {
    map_sweep(now);
    next_map_sweep_ms_ = now + kMapSweepMs;
  }
  if (now >= next_map_refresh_ms_) {
    // Every own mapping to every current owner (repairs lost registrations).
    std::map<NodeId, std::vector<Bytes>> batches;
    for (const auto& [k, e] : mappings_) {
      if (e.m.owner != self_.id()) continue;
      const Bytes enc = encode_mapping(e.m);
      for (const LookupKey& lk : keys_of(e.m)) {
        const OwnerSet o = compute_owners(lk);
        own_regs_[lk] = OwnReg{o, e.m.mac};
        add_to_owners(batches, o, enc);
      }
    }
    send_registers(batches);
    next_map_refresh_ms_ = now + cfg_.map_register_refresh_ms;
  }
}

void MeshCore::Impl::map_sweep(std::uint64_t now) {
  // Cached mappings: refresh those in use before they lapse, drop the rest at expiry.
  for (auto it = mappings_.begin(); it != mappings_.end();) {
    MappingEntry& e = it->second;
    if (e.m.owner == self_.id() || e.expires_ms == 0) {
      ++it;
      continue;
    }
    if (now >= e.expires_ms) {
      cache_ips_remove(e.m);
      it = forget_mapping(it);
      continue;
    }
    const std::uint64_t ttl = cfg_.map_ttl_ms;
    const bool due = now + ttl / 5 >= e.expires_ms;
    if (due && !e.refreshing && e.last_used_ms + ttl > now) {
      e.refreshing = true;
      const std::uint64_t used = e.last_used_ms;
      resolve(now, LookupKey::of_mac(it->first.vni, it->first.mac));
      e.last_used_ms = used;  // a refresh is not a use: else nothing would ever lapse
    }
    ++it;
  }
  std::erase_if(negative_, [&](const auto& kv) { return kv.second <= now; });
  // Held keys: forget hand-offs past their keep time, lapsed subscriptions, tombstones.
  for (auto it = held_.begin(); it != held_.end();) {
    Held& h = it->second;
    std::erase_if(h.subs, [&](const auto& s) { return s.second <= now; });
    const bool orphan_done =
        h.orphan_since_ms != 0 && now >= h.orphan_since_ms + cfg_.map_handoff_keep_ms;
    const bool tomb_done = h.m.removed && now >= h.updated_ms + cfg_.tombstone_keep_ms;
    if (orphan_done || tomb_done) {
      unpersist_held(it->first);
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = neg_subs_.begin(); it != neg_subs_.end();) {
    std::erase_if(it->second, [&](const auto& s) { return s.second <= now; });
    it = it->second.empty() ? neg_subs_.erase(it) : std::next(it);
  }
  std::size_t owned = 0;
  for (const auto& [k, h] : held_) owned += h.orphan_since_ms == 0;
  counters_.map_held = owned;
  std::size_t cached = 0;
  for (const auto& [k, e] : mappings_) cached += e.m.owner != self_.id();
  counters_.map_cached = cached;
}

// ---------------------------------------------------------------- resolving

MeshCore::Lookup MeshCore::Impl::resolve(std::uint64_t now, const LookupKey& k) {
  using L = MeshCore::Lookup;
  // A VNI we do not serve: its answer would be dropped (cache_apply, drop_unserved).
  if (left_ || k.vni == 0 || !serves(k.vni)) return L::negative;
  if (pending_.count(k) != 0) return L::requested;
  if (!k.is_ip()) {
    auto it = mappings_.find(MapKey{k.vni, k.mac});
    if (it != mappings_.end()) it->second.last_used_ms = now;
    // Our own tombstone is no answer: the endpoint may have moved elsewhere.
    if (it != mappings_.end() && !it->second.refreshing && !it->second.m.removed) {
      return L::cached;
    }
  } else if (auto ip = cache_ips_.find({k.vni, k.ip}); ip != cache_ips_.end()) {
    auto it = mappings_.find(MapKey{k.vni, ip->second});
    if (it != mappings_.end() && !it->second.refreshing) {
      it->second.last_used_ms = now;
      return L::cached;
    }
  }
  if (auto n = negative_.find(k); n != negative_.end() && n->second > now) return L::negative;
  if (pending_.size() >= cfg_.map_pending_max) {
    ++counters_.drop_queue_full;
    return L::busy;
  }
  // We may hold it ourselves (one of its owners): answered from there, and subscribed
  // like a remote requester, so notify_subs() keeps our cached copy current.
  // Not from an orphan copy: it is not kept up to date and goes soon.
  if (auto h = held_.find(k); h != held_.end() && !h->second.m.removed &&
                              h->second.orphan_since_ms == 0 &&
                              (!k.is_ip() || holds_ip(h->second.m, k.ip))) {
    auto owner = members_.find(h->second.m.owner);
    if (owner != members_.end() && owner->second.live()) {
      add_sub(h->second.subs, self_.id(), now + cfg_.map_ttl_ms, cfg_.map_subscribers_max);
      cache_apply(now, h->second.m, cfg_.map_ttl_ms);
      return L::cached;
    }
  }
  PendingLookup& p = pending_[k];
  p.nonce = next_seq_++;
  pending_nonces_[p.nonce] = k;
  send_lookup(now, k, p);
  return L::requested;
}

std::size_t MeshCore::Impl::other_owners(const LookupKey& k) const {
  const OwnerSet o = compute_owners(k);
  return o.n - (o.contains(self_.id()) ? 1 : 0);
}

void MeshCore::Impl::send_lookup(std::uint64_t now, const LookupKey& k, PendingLookup& p) {
  const OwnerSet o = compute_owners(k);
  // The tries-th owner other than us, best first.
  std::size_t seen = 0;
  for (std::size_t i = 0; i < o.n; ++i) {
    if (o.ids[i] == self_.id()) continue;
    if (seen++ == p.tries) {
      send(o.ids[i], encode_map_request(MapRequest{p.nonce, k}));
      ++counters_.map_requests;
      break;
    }
  }
  ++p.tries;
  p.deadline_ms = now + cfg_.map_request_timeout_ms;
}

bool MeshCore::Impl::map_checks(const EndpointMapping& m) {
  if (is_revoked(m.owner)) {
    ++counters_.drop_revoked;
    return false;
  }
  const NodeRecord* rec = nullptr;
  if (m.owner == self_.id()) {
    rec = &self_;
  } else {
    auto it = members_.find(m.owner);
    if (it == members_.end() || it->second.state == MemberState::left) {
      ++counters_.drop_unknown_owner;
      return false;
    }
    rec = it->second.rec.get();
  }
  if (!rec->chain.allows_vni(m.vni)) {
    ++counters_.drop_scope;
    return false;
  }
  if (!m.verify_signature()) {
    ++counters_.drop_bad_signature;
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- owner side

void MeshCore::Impl::hold(std::uint64_t now, const LookupKey& k, const EndpointMapping& m) {
  // Whether a record binds the key: live, and for an IP key, holding the IP. A newer
  // version of a claim that dropped the IP unbinds it, like that claim's tombstone.
  auto binds = [&](const EndpointMapping& r) { return !r.removed && (!k.is_ip() || holds_ip(r, k.ip)); };
  auto as_claim = [&](const EndpointMapping& r) {
    EndpointMapping c = r;
    c.removed = !binds(r);
    return c;
  };
  auto it = held_.find(k);
  if (it == held_.end()) {
    if (!binds(m)) return;
    if (held_.size() >= cfg_.map_held_max) {
      ++counters_.drop_table_full;
      return;
    }
    Held& h = held_[k];
    h.m = m;
    h.updated_ms = now;
    h.owners = compute_owners(k);
    if (!h.owners.contains(self_.id())) h.orphan_since_ms = std::max<std::uint64_t>(now, 1);
    if (auto ns = neg_subs_.find(k); ns != neg_subs_.end()) {
      h.subs = std::move(ns->second);
      neg_subs_.erase(ns);
    }
    persist_held(k, m);
    notify_subs(now, h);
    return;
  }
  Held& h = it->second;
  const EndpointMapping in = as_claim(m), cur = as_claim(h.m);
  if (!claim_beats(in, cur)) {
    if (same_claim(in, cur)) {
      if (in.seq < cur.seq) ++counters_.drop_stale;
      return;
    }
    // A competing live claim lost: tell its node which claim holds the key.
    if (!in.removed) tell_claimant(now, m.owner, h.m);
    return;
  }
  const EndpointMapping prev = h.m;
  h.m = m;
  h.updated_ms = now;
  persist_held(k, m);
  notify_subs(now, h);
  // A live claim by another node lost the key: tell that node (a move, or a duplicate).
  if (!cur.removed && !same_claim(prev, m)) tell_claimant(now, prev.owner, m);
}

void MeshCore::Impl::tell_claimant(std::uint64_t now, const NodeId& claimant,
                                   const EndpointMapping& winner) {
  if (claimant == self_.id()) {
    cache_apply(now, winner, cfg_.map_ttl_ms);
    return;
  }
  Bytes one = encode_mapping(winner);
  send(claimant, encode_map_notify(std::span<const Bytes>(&one, 1)));
  ++counters_.map_notifies_sent;
}

void MeshCore::Impl::notify_subs(std::uint64_t now, Held& h) {
  if (h.subs.empty()) return;
  Bytes one = encode_mapping(h.m);
  Bytes msg = encode_map_notify(std::span<const Bytes>(&one, 1));
  for (const auto& [id, until] : h.subs) {
    if (until <= now) continue;
    if (id == self_.id()) {
      cache_apply(now, h.m, cfg_.map_ttl_ms);
      continue;
    }
    send(id, msg);
    ++counters_.map_notifies_sent;
  }
}

void MeshCore::Impl::on_map_register(std::uint64_t now, const MapRegister& m) {
  for (const EndpointMapping& e : m.mappings) {
    if (!map_checks(e)) continue;
    if (e.owner == self_.id()) {
      cache_apply(now, e, cfg_.map_ttl_ms);  // our own claim handed back: seq bookkeeping
      continue;
    }
    std::vector<LookupKey> keys = keys_of(e);
    // IP keys we hold for this claim that the record no longer has.
    const LookupKey first_ip{e.vni, {}, IpAddr{1, {}}};
    for (auto it = held_.lower_bound(first_ip);
         it != held_.end() && it->first.vni == e.vni && it->first.is_ip(); ++it) {
      if (same_claim(it->second.m, e) && !holds_ip(e, it->first.ip)) keys.push_back(it->first);
    }
    // A registrant sends the whole mapping to the owners of each of its keys, and a
    // hand-off says nothing of which key it is for: keys we do not own by our view are
    // held as orphans (not counted in held_count) until our view catches up, e.g. sees
    // the owner that failed (map_rebalance adopts them), or map_handoff_keep_ms passes.
    for (const LookupKey& k : keys) hold(now, k, e);
  }
}

void MeshCore::Impl::on_map_request(std::uint64_t now, const NodeId& from, const MapRequest& m) {
  ++counters_.map_requests_served;
  const std::uint64_t until = now + cfg_.map_ttl_ms;
  std::vector<Bytes> found;
  auto it = held_.find(m.key);
  if (it != held_.end()) {
    Held& h = it->second;
    add_sub(h.subs, from, until, cfg_.map_subscribers_max);
    bool live = !h.m.removed && (!m.key.is_ip() || holds_ip(h.m, m.key.ip));
    if (live && h.m.owner != self_.id()) {
      auto owner = members_.find(h.m.owner);
      live = owner != members_.end() && owner->second.live();
    }
    if (live) found.push_back(encode_mapping(h.m));
  } else if (neg_subs_.size() < cfg_.map_held_max) {
    add_sub(neg_subs_[m.key], from, now + cfg_.map_ttl_ms, cfg_.map_subscribers_max);
  }
  send(from, encode_map_reply(m.nonce, m.key, found,
                              found.empty() ? cfg_.map_negative_ttl_ms : cfg_.map_ttl_ms));
}

void MeshCore::Impl::on_map_reply(std::uint64_t now, const NodeId& from, const MapReply& m) {
  (void)from;
  auto n = pending_nonces_.find(m.nonce);
  if (n == pending_nonces_.end() || !(n->second == m.key)) {
    ++counters_.drop_stale;
    return;
  }
  const std::uint64_t ttl = std::min(m.ttl_ms, cfg_.map_ttl_ms);
  bool any = false;
  for (const EndpointMapping& e : m.mappings) {
    if (e.vni != m.key.vni || e.removed) continue;
    if (m.key.is_ip() ? !holds_ip(e, m.key.ip) : e.mac != m.key.mac) continue;
    if (!map_checks(e)) continue;
    cache_apply(now, e, std::max<std::uint64_t>(ttl, 1));
    any = true;
  }
  if (!any) {
    ++counters_.map_negative;
    // One owner's "nobody has it" speaks for its own copy only, which a lost
    // registration or hand-off leaves empty while the other owners hold the key (all
    // requesters ask the same best owner first): ask the next one while any is left.
    auto p = pending_.find(m.key);
    if (p != pending_.end() && p->second.tries < other_owners(m.key)) {
      send_lookup(now, m.key, p->second);
      return;
    }
  }
  pending_nonces_.erase(m.nonce);
  pending_.erase(m.key);
  if (any) {
    ++counters_.map_replies;
    return;
  }
  if (negative_.size() < cfg_.map_pending_max) {
    negative_[m.key] = now + std::min(m.ttl_ms, cfg_.map_negative_ttl_ms);
  }
  if (refresh_ended(m.key, true)) return;
  MeshEvent ev{MeshEvent::Kind::mapping_unresolved, std::nullopt, std::nullopt, {}, "negative"};
  ev.key = m.key;
  emit(std::move(ev));
}

bool MeshCore::Impl::refresh_ended(const LookupKey& k, bool negative) {
  if (k.is_ip()) return false;
  auto it = mappings_.find(MapKey{k.vni, k.mac});
  if (it == mappings_.end() || it->second.m.owner == self_.id() || !it->second.refreshing) {
    return false;
  }
  it->second.refreshing = false;  // no answer: the next sweep tries again before expiry
  if (negative) forget_mapping(it);  // every owner says it is gone: so is our copy
  return true;
}

void MeshCore::Impl::on_map_notify(std::uint64_t now, const NodeId& from, const MapNotify& m) {
  (void)from;
  for (const EndpointMapping& e : m.mappings) {
    if (!map_checks(e)) continue;
    cache_apply(now, e, cfg_.map_ttl_ms);
  }
}

void MeshCore::Impl::cache_apply(std::uint64_t now, const EndpointMapping& m, std::uint64_t ttl_ms) {
  if (!serves(m.vni)) {
    ++counters_.drop_unserved;
    return;
  }
  const MapKey k{m.vni, m.mac};
  auto it = mappings_.find(k);
  if (m.owner == self_.id()) {
    // Our own claim coming back. If it is newer than what we remember, our storage
    // lost writes: continue above it so our next change still wins.
    auto s = own_seqs_.find(k);
    const std::uint64_t known = s == own_seqs_.end() ? 0 : s->second;
    if (m.seq > known && own_seqs_.size() < cfg_.mappings_max) {
      own_seqs_[k] = m.seq;
      persist_seq(k, m.seq);
    }
    return;
  }
  if (it != mappings_.end() && it->second.m.owner == self_.id()) {
    // Another node's claim on our own endpoint's MAC.
    MappingEntry& own = it->second;
    if (own.m.removed) {
      // Our endpoint left; another node's live claim replaces our tombstone here (the
      // tombstone stays at the owners; own_seqs_ keeps our sequence numbers).
      if (m.removed) return;
      unpersist_mapping(k);
      MappingEntry e;
      e.m = m;
      e.updated_ms = now;
      e.expires_ms = now + ttl_ms;
      e.last_used_ms = now;
      it->second = e;
      cache_ips_add(m);
      emit(MeshEvent{MeshEvent::Kind::mapping_upsert, std::nullopt, m, m.owner, {}});
      return;
    }
    if (!claim_beats(m, own.m)) return;
    if (now < own.published_ms + kMapFreshMs) {
      // Superseded again after claiming above it: the other node attached it within
      // kMapFreshMs too and claimed above ours. Nothing tells which attachment is the
      // newer, so theirs stands; a claim this young is not reported as a duplicate.
      if (own.reclaimed) return;
      // A move here: we attached it after it was claimed there; claim above it, once.
      own.reclaimed = true;
      std::uint64_t seq = std::max(own_seqs_[k], m.seq) + 1;
      own_seqs_[k] = seq;
      persist_seq(k, seq);
      EndpointMapping next = own.m;
      next.seq = seq;
      next.sign(key_);
      const EndpointMapping old = own.m;
      own.m = next;
      persist_mapping(next);
      register_own(now, next, &old);
      return;
    }
    if (own.duplicate_until_ms <= now) {
      ++counters_.map_duplicates;
      emit(MeshEvent{MeshEvent::Kind::mapping_conflict, std::nullopt, m, m.owner, "duplicate"});
    }
    own.duplicate_until_ms = now + 2 * std::max(cfg_.map_register_refresh_ms, kMapFreshMs);
    return;
  }
  auto owner = members_.find(m.owner);
  if (owner == members_.end() || !owner->second.live()) {
    ++counters_.drop_unknown_owner;
    return;
  }
  if (it == mappings_.end()) {
    if (m.removed) return;
    if (mappings_.size() >= cfg_.mappings_max) {
      ++counters_.drop_table_full;
      return;
    }
    MappingEntry& e = mappings_[k];
    e.m = m;
    e.updated_ms = now;
    e.expires_ms = now + ttl_ms;
    e.last_used_ms = now;
    cache_ips_add(m);
    emit(MeshEvent{MeshEvent::Kind::mapping_upsert, std::nullopt, m, m.owner, {}});
    return;
  }
  MappingEntry& e = it->second;
  e.refreshing = false;
  e.expires_ms = std::max(e.expires_ms, now + ttl_ms);
  if (!claim_beats(m, e.m)) return;  // the same or older: only the TTL moved
  const bool was_removed = e.m.removed;
  if (!was_removed && !same_claim(m, e.m) && !m.removed) {
    emit(MeshEvent{MeshEvent::Kind::mapping_conflict, std::nullopt, e.m, e.m.owner, "moved"});
  }
  cache_ips_remove(e.m);
  e.m = m;
  e.updated_ms = now;
  if (!m.removed) {
    cache_ips_add(m);
    emit(MeshEvent{MeshEvent::Kind::mapping_upsert, std::nullopt, m, m.owner, {}});
  } else if (!was_removed) {
    emit(MeshEvent{MeshEvent::Kind::mapping_removed, std::nullopt, m, m.owner, {}});
  }
}

void MeshCore::Impl::cache_ips_add(const EndpointMapping& m) {
  if (m.removed) return;
  for (const IpAddr& ip : m.ips) cache_ips_[{m.vni, ip}] = m.mac;
}

void MeshCore::Impl::cache_ips_remove(const EndpointMapping& m) {
  for (const IpAddr& ip : m.ips) {
    auto it = cache_ips_.find({m.vni, ip});
    if (it != cache_ips_.end() && it->second == m.mac) cache_ips_.erase(it);
  }
}

void MeshCore::Impl::drop_held_of(const NodeId& owner) {
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->second.m.owner == owner) {
      unpersist_held(it->first);
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
}

// ---------------------------------------------------------------- public API

MeshCore::Lookup MeshCore::resolve(std::uint64_t now_ms, const LookupKey& key) {
  return impl_->resolve(now_ms, key);
}

void MeshCore::touch(std::uint64_t now_ms, std::uint32_t vni, const MacAddr& mac) {
  auto it = impl_->mappings_.find(MapKey{vni, mac});
  if (it != impl_->mappings_.end()) it->second.last_used_ms = now_ms;
}

std::vector<NodeId> MeshCore::owners_of(const LookupKey& key) const {
  const auto o = impl_->compute_owners(key);
  return std::vector<NodeId>(o.ids.begin(), o.ids.begin() + o.n);
}

std::vector<EndpointInfo> MeshCore::endpoints() const {
  std::vector<EndpointInfo> out;
  for (const auto& [k, e] : impl_->mappings_) {
    if (e.m.removed) continue;
    const bool local = e.m.owner == impl_->self_.id();
    out.push_back(EndpointInfo{e.m, local, local && e.duplicate_until_ms > 0, e.expires_ms});
  }
  return out;
}

std::size_t MeshCore::held_count() const {
  std::size_t n = 0;
  for (const auto& [k, h] : impl_->held_) n += h.orphan_since_ms == 0;
  return n;
}

bool MeshCore::holds(const LookupKey& key) const {
  auto it = impl_->held_.find(key);
  if (it == impl_->held_.end() || it->second.m.removed || it->second.orphan_since_ms != 0) return false;
  return !key.is_ip() || holds_ip(it->second.m, key.ip);
}

}  // namespace meshd::mesh
