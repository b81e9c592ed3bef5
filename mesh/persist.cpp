// What survives a restart (DESIGN.md principle 5). Tables:
//   "members"  node id hex      -> encoded member entry (signed record, state, incarnation)
//   "mappings" "<vni>/<mac hex>" -> encoded signed mapping (own and learned, tombstones too)
//   "meta"     "incarnation", "record_version", "seq/<vni>/<mac hex>" -> u64 little endian
//   "revocations" node id hex -> encoded root-signed revocation (never deleted)
//   "held"     lookup_key_str  -> encoded signed mapping this node holds as a key owner
//              (issue 4); restored as held, re-checked, handed off if no longer ours
// Stored values are decoded and verified like network input: a corrupt or stale
// entry is skipped, never trusted.
#include <algorithm>
#include <charconv>

#include "mesh/core_impl.hpp"

namespace meshd::mesh {

namespace {

constexpr std::string_view kMembers = "members";
constexpr std::string_view kMappings = "mappings";
constexpr std::string_view kMeta = "meta";
constexpr std::string_view kRevocations = "revocations";
constexpr std::string_view kHeld = "held";
constexpr std::string_view kSeqPrefix = "seq/";

Bytes u64_bytes(std::uint64_t v) {
  ByteWriter w;
  w.u64(v);
  return w.take();
}

std::optional<std::uint64_t> read_u64(ByteSpan b) {
  ByteReader r(b);
  std::uint64_t v = r.u64();
  if (!r.at_end()) return std::nullopt;
  return v;
}

std::string map_key_str(const MapKey& k) { return std::to_string(k.vni) + "/" + to_hex(k.mac); }

std::optional<MapKey> parse_map_key(std::string_view s) {
  auto slash = s.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  MapKey k;
  auto [p, ec] = std::from_chars(s.data(), s.data() + slash, k.vni);
  if (ec != std::errc() || p != s.data() + slash) return std::nullopt;
  Bytes mac;
  if (!from_hex(s.substr(slash + 1), mac) || mac.size() != k.mac.size()) return std::nullopt;
  std::copy(mac.begin(), mac.end(), k.mac.begin());
  return k;
}

}  // namespace

void MeshCore::Impl::load_meta() {
  if (storage_ == nullptr) return;
  if (auto b = storage_->get(kMeta, "incarnation")) {
    // A restart announces a higher incarnation than anything said before the crash,
    // so "alive" beats a "failed" others may have recorded meanwhile.
    if (auto v = read_u64(*b)) incarnation_ = *v + 1;
  }
  set_incarnation(incarnation_);
  if (auto b = storage_->get(kMeta, "record_version")) {
    if (auto v = read_u64(*b)) self_.version = std::max(self_.version, *v + 1);
  }
  persist_record_version();
  storage_->for_each(kMeta, [&](std::string_view key, ByteSpan value) {
    if (key.substr(0, kSeqPrefix.size()) != kSeqPrefix) return;
    auto k = parse_map_key(key.substr(kSeqPrefix.size()));
    auto v = read_u64(value);
    if (k && v && own_seqs_.size() < cfg_.mappings_max) own_seqs_[*k] = *v;
  });
}

void MeshCore::Impl::restore_revocations(std::uint64_t now) {
  std::vector<Revocation> revs;
  storage_->for_each(kRevocations, [&](std::string_view, ByteSpan value) {
    auto r = decode_revocation(value, limits_);
    if (r.ok()) revs.push_back(std::move(r.value()));
  });
  for (const Revocation& r : revs) {
    if (!r.verify(root_pub_)) {
      ++counters_.drop_bad_signature;
      continue;
    }
    // Emits node_revoked again, so the agent refuses those nodes after a restart too.
    if (!learn_revocation(now, r, false)) ++counters_.drop_table_full;
  }
}

void MeshCore::Impl::restore(std::uint64_t now) {
  if (storage_ == nullptr) return;
  // First: they decide which stored members and mappings may come back.
  restore_revocations(now);
  if (self_revoked_) return;
  std::deque<MemberEntry> members;  // no relocation while it grows
  storage_->for_each(kMembers, [&](std::string_view, ByteSpan value) {
    auto e = decode_member(value, limits_);
    if (e.ok()) members.push_back(std::move(e.value()));
  });
  for (const MemberEntry& e : members) {
    const NodeId id = e.record.id();
    if (id == self_.id() || members_.count(id) != 0 || refused_.count(id) != 0) continue;
    if (is_revoked(id)) {
      ++counters_.drop_revoked;
      unpersist_member(id);
      continue;
    }
    if (members_.size() >= cfg_.members_max) {
      ++counters_.drop_table_full;
      continue;
    }
    std::shared_ptr<const NodeRecord> rec = verify_record(now, e.record);
    if (!rec) {
      ++counters_.drop_bad_signature;
      continue;
    }
    Member& added = insert_member(now, std::move(rec), e.state, e.incarnation);
    // Our own storage: trusted like our key. A proof that no longer verifies is dropped
    // (others then refuse this incarnation from us until the node proves it again).
    if (e.proof) added.proof = cache_->verify_alive(id, e.incarnation, *e.proof);
    if (added.live()) {
      emit(MeshEvent{MeshEvent::Kind::member_up, added.info(), std::nullopt, id, {}});
    }
  }

  std::vector<EndpointMapping> maps;
  storage_->for_each(kMappings, [&](std::string_view, ByteSpan value) {
    auto m = decode_mapping(value, limits_);
    if (m.ok()) maps.push_back(std::move(m.value()));
  });
  // Own mappings first: they decide which VNIs we serve, which decides what we keep.
  bool vnis_changed = false;
  for (const EndpointMapping& m : maps) {
    if (m.owner != self_.id() || !m.verify_signature()) continue;
    if (mappings_.size() >= cfg_.mappings_max) break;
    const MapKey k{m.vni, m.mac};
    mappings_[k] = MappingEntry{m, now};
    auto s = own_seqs_.find(k);
    if (s == own_seqs_.end() || s->second < m.seq) own_seqs_[k] = m.seq;
    if (!m.removed && !serves(m.vni) && self_.vnis.size() < kVnisServedMax) {
      self_.vnis.insert(std::upper_bound(self_.vnis.begin(), self_.vnis.end(), m.vni), m.vni);
      vnis_changed = true;
    }
  }
  if (vnis_changed) bump_record(now);
  // Learned mappings stored before issue 4 are not kept (they are resolved on demand);
  // own ones are registered with their owners at the first refresh.
  for (const EndpointMapping& m : maps) {
    if (m.owner != self_.id()) unpersist_mapping(MapKey{m.vni, m.mac});
  }
  restore_held(now);
}

void MeshCore::Impl::restore_held(std::uint64_t now) {
  std::vector<std::pair<std::string, EndpointMapping>> held;
  storage_->for_each(kHeld, [&](std::string_view key, ByteSpan value) {
    auto m = decode_mapping(value, limits_);
    if (m.ok()) held.emplace_back(std::string(key), std::move(m.value()));
  });
  for (auto& [skey, m] : held) {
    // The key is not stored parsed: every key of the mapping whose string matches.
    bool found = false;
    for (const LookupKey& k : keys_of(m)) {
      if (lookup_key_str(k) != skey) continue;
      found = true;
      if (held_.size() >= cfg_.map_held_max || !m.verify_signature() || is_revoked(m.owner)) {
        ++counters_.drop_bad_signature;
        storage_->del(kHeld, skey);
        break;
      }
      Held& h = held_[k];
      h.m = m;
      h.updated_ms = now;
      h.owners = compute_owners(k);
      if (!h.owners.contains(self_.id())) h.orphan_since_ms = std::max<std::uint64_t>(now, 1);
    }
    if (!found) storage_->del(kHeld, skey);  // an IP key of a removed binding, or corrupt
  }
  // Owner sets are recomputed once the membership is back (rebalance all).
  map_rebalance_all_ = true;
  if (next_map_rebalance_ms_ == 0) next_map_rebalance_ms_ = 1;
  counters_.map_held = held_.size();
}

void MeshCore::Impl::persist_held(const LookupKey& k, const EndpointMapping& m) {
  if (storage_ != nullptr) storage_->put(kHeld, lookup_key_str(k), encode_mapping(m));
}

void MeshCore::Impl::unpersist_held(const LookupKey& k) {
  if (storage_ != nullptr) storage_->del(kHeld, lookup_key_str(k));
}

void MeshCore::Impl::persist_member(const Member& m) {
  if (storage_ == nullptr) return;
  Bytes v = encode_member(entry_of(m));
  storage_->put(kMembers, to_hex(m.id()), v);
}

void MeshCore::Impl::persist_revocation(const Revocation& r) {
  if (storage_ != nullptr) storage_->put(kRevocations, to_hex(r.node), encode_revocation(r));
}

void MeshCore::Impl::unpersist_member(const NodeId& id) {
  if (storage_ != nullptr) storage_->del(kMembers, to_hex(id));
}

void MeshCore::Impl::persist_mapping(const EndpointMapping& m) {
  if (storage_ == nullptr) return;
  storage_->put(kMappings, map_key_str(MapKey{m.vni, m.mac}), encode_mapping(m));
}

void MeshCore::Impl::unpersist_mapping(const MapKey& k) {
  if (storage_ != nullptr) storage_->del(kMappings, map_key_str(k));
}

void MeshCore::Impl::persist_incarnation() {
  if (storage_ != nullptr) storage_->put(kMeta, "incarnation", u64_bytes(incarnation_));
}

void MeshCore::Impl::persist_record_version() {
  if (storage_ != nullptr) storage_->put(kMeta, "record_version", u64_bytes(self_.version));
}

void MeshCore::Impl::persist_seq(const MapKey& k, std::uint64_t seq) {
  if (storage_ != nullptr) {
    storage_->put(kMeta, std::string(kSeqPrefix) + map_key_str(k), u64_bytes(seq));
  }
}

}  // namespace meshd::mesh
