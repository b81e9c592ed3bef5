// Root-signed node revocations (DESIGN.md "Trust"). A revocation is verified against
// the mesh root key, stored for good (persisted, bounded by revocations_max) and
// spread three ways so every member learns it: the broadcast queue (gossip and
// ping/ack piggyback), join_accept (late joiners) and anti-entropy (a digest of the
// revoked set in every sync_request; a differing side pushes its whole list).
// Enforcement is in the paths that admit things: messages from a revoked node, its
// record, its mappings and its join requests are dropped (drop_revoked).
#include <algorithm>

#include "mesh/core_impl.hpp"

namespace meshd::mesh {

namespace {

// FNV-1a of the id. XORed into a set digest, so insertion order does not matter and
// an insert costs O(1); good enough to compare the sets of honest members.
std::uint64_t node_hash(const NodeId& id) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::uint8_t c : id) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

BroadcastQueue::Key revocation_key(const NodeId& id) {
  BroadcastQueue::Key k = member_key(id);
  k[0] = 4;
  return k;
}

Bytes MeshCore::Impl::revocation_gossip(const NodeId& node) const {
  Bytes one = encode_update(revocations_.at(node));
  return encode_gossip(std::span<const Bytes>(&one, 1));
}

Status MeshCore::Impl::revoke(std::uint64_t now, const Revocation& r) {
  if (!r.verify(root_pub_)) {
    return make_error("mesh.bad_revocation", "revocation is not signed by this mesh's root key");
  }
  if (r.node == self_.id()) {
    return make_error("mesh.revoke_self", "a node cannot revoke itself; revoke it from another member");
  }
  if (left_) return make_error("mesh.left", "this node has left the mesh");
  if (is_revoked(r.node)) return ok_status();
  std::vector<NodeId> live = live_members();  // before the revoked node is removed
  if (!learn_revocation(now, r, true)) {
    return make_error("mesh.full", "revocation table full (revocations_max)");
  }
  // Straight to every live member (and the node itself, so it stops) instead of
  // waiting for gossip rounds; the broadcast queue repeats it for those who miss this.
  Bytes msg = revocation_gossip(r.node);
  for (const NodeId& id : live) send(id, msg);
  return ok_status();
}

void MeshCore::Impl::apply_revocation(std::uint64_t now, const Revocation& r) {
  // Verified even when already known, so a tampered copy is always counted.
  if (!r.verify(root_pub_)) {
    ++counters_.drop_bad_signature;
    return;
  }
  if (is_revoked(r.node)) return;  // a duplicate: normal for gossip
  if (!learn_revocation(now, r, true)) ++counters_.drop_table_full;
}

bool MeshCore::Impl::learn_revocation(std::uint64_t now, const Revocation& r, bool spread) {
  if (is_revoked(r.node)) return true;
  if (revocations_.size() >= cfg_.revocations_max) return false;
  revocations_.emplace(r.node, r);
  revocations_digest_ ^= node_hash(r.node);
  persist_revocation(r);
  if (r.node == self_.id()) {
    revoked_self(now);
    return true;
  }
  if (spread) queue_broadcast(revocation_key(r.node), r);
  std::optional<MemberInfo> info;
  auto it = members_.find(r.node);
  if (it != members_.end()) info = it->second.info();
  emit(MeshEvent{MeshEvent::Kind::node_revoked, info, std::nullopt, r.node, "revoked"});
  remove_owner_mappings(r.node);  // emits mapping_removed for its live mappings
  drop_held_of(r.node);
  if (it != members_.end()) {
    erase_member(it);
    unpersist_member(r.node);
  }
  if (probe_.active && probe_.target == r.node) probe_.active = false;
  std::erase_if(contacts_, [&](const Contact& c) { return c.id == r.node; });
  return true;
}

void MeshCore::Impl::revoked_self(std::uint64_t now) {
  if (self_revoked_) return;
  self_revoked_ = true;
  emit(MeshEvent{MeshEvent::Kind::node_revoked, self_info(now), std::nullopt, self_.id(),
                 "revoked"});
  // Nobody accepts our messages any more; stop talking and let the agent shut down.
  left_ = true;
  joining_ = false;
  broadcasts_.clear();
  relays_.clear();
  probe_ = Probe{};
}

void MeshCore::Impl::on_revoked_sender(const NodeId& from, const Message& msg) {
  ++counters_.drop_revoked;
  // Answer only what a live node sends on its own (probes, join attempts), one small
  // reply per message, so a revoked node that missed the news learns it and stops.
  const bool join = std::holds_alternative<JoinRequest>(msg);
  if (join || std::holds_alternative<Ping>(msg)) send(from, revocation_gossip(from));
  if (join) {
    ++counters_.joins_refused;
    send(from, encode_join_refuse(JoinRefuse{"node.revoked"}));
  }
}

}  // namespace meshd::mesh
