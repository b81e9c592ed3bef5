// MeshCore wiring: control messages out through the tunnel, membership and mapping
// events into tunnel peers, the contacts table and the FIB.
#include <spdlog/spdlog.h>

#include "agent/daemon.hpp"
#include "agent/fib_builder.hpp"
#include "agent/inner_header.hpp"

namespace meshd::agent {

namespace {

std::string locators_str(const std::vector<Locator>& locs) {
  std::string s;
  for (const auto& l : locs) s += (s.empty() ? "" : ",") + l.str();
  return s.empty() ? "-" : s;
}

std::string member_label(const mesh::MemberInfo& m) {
  return m.record.chain.node.name + " (" + crypto::node_id_short(m.id()) + ")";
}

}  // namespace

bool Daemon::drain_mesh(std::uint64_t now) {
  bool any = false;
  while (auto tx = mesh_->poll_transmit()) {
    any = true;
    ensure_peer(tx->to);
    // Control messages are rare next to data: a fresh buffer each is fine.
    ctl_buf_.resize(wire::kInnerHeaderLen + tx->payload.size());
    encode_inner_header(ctl_buf_, InnerHeader{0, wire::kFlagControl});
    std::copy(tx->payload.begin(), tx->payload.end(), ctl_buf_.begin() + wire::kInnerHeaderLen);
    if (!tunnel_->send(now, tx->to, ctl_buf_)) ++counters_.mesh_tx_no_peer;
  }
  while (auto ev = mesh_->poll_event()) {
    any = true;
    on_mesh_event(now, *ev);
    if (stopping_) break;
  }
  return any;
}

void Daemon::set_tunnel_peer(const crypto::NodeId& id, const crypto::PublicKey& dh_pub,
                             const std::vector<Locator>& locators) {
  // An empty list would only erase what the tunnel learned from the peer's packets.
  if (locators.empty() || id == id_.chain.node_id()) return;
  auto it = tunnel_peers_.find(id);
  if (it != tunnel_peers_.end() && it->second == locators) return;
  tunnel_->set_peer(id, dh_pub, locators);
  tunnel_peers_.insert_or_assign(id, locators);
}

void Daemon::ensure_peer(const crypto::NodeId& id) {
  if (tunnel_peers_.count(id)) return;
  if (auto c = mesh_->contact(id)) {
    set_tunnel_peer(id, c->dh_pub, c->locators);
  } else if (auto it = bootstrap_.find(id); it != bootstrap_.end()) {
    set_tunnel_peer(id, it->second.dh_pub, it->second.locators);
  }
}

void Daemon::remember_contact(const mesh::MemberInfo& m, bool alive) {
  StoredContact c;
  c.id = m.id();
  c.dh_pub = m.record.chain.node.dh_pub;
  c.locators = m.record.locators;
  c.alive = alive;
  store_->put_contact(c);
}

void Daemon::on_mesh_event(std::uint64_t, mesh::MeshEvent& ev) {
  using K = mesh::MeshEvent::Kind;
  switch (ev.kind) {
    case K::member_up:
    case K::member_updated:
      if (!ev.member) break;
      if (ev.kind == K::member_up) {
        spdlog::info("member up: {} at {}", member_label(*ev.member), locators_str(ev.member->record.locators));
      } else {
        spdlog::debug("member updated: {}", member_label(*ev.member));
      }
      set_tunnel_peer(ev.member->id(), ev.member->record.chain.node.dh_pub, ev.member->record.locators);
      remember_contact(*ev.member, true);
      fib_dirty_ = true;
      break;
    case K::member_failed:
      if (!ev.member) break;
      spdlog::info("member failed: {}", member_label(*ev.member));
      remember_contact(*ev.member, false);
      fib_dirty_ = true;
      break;
    case K::member_left:
      if (!ev.member) break;
      spdlog::info("member left: {}", member_label(*ev.member));
      store_->del_contact(ev.member->id());
      fib_dirty_ = true;
      break;
    case K::mapping_upsert:
    case K::mapping_removed:
      if (ev.mapping) {
        spdlog::debug("mapping {} vni {} mac {} -> {}", ev.kind == K::mapping_upsert ? "upsert" : "removed",
                      ev.mapping->vni, mac_str(ev.mapping->mac), crypto::node_id_short(ev.mapping->owner));
        if (ev.kind == K::mapping_upsert) {
          answered_.push_back(mesh::LookupKey::of_mac(ev.mapping->vni, ev.mapping->mac));
          for (const auto& ip : ev.mapping->ips) {
            answered_.push_back(mesh::LookupKey::of_ip(ev.mapping->vni, ip));
          }
        }
      }
      fib_dirty_ = true;
      break;
    case K::join_accepted:
      on_join_accepted();
      break;
    case K::join_refused:
      on_join_refused(ev.reason.empty() ? "refused by the mesh" : ev.reason);
      break;
    case K::node_refused:
      spdlog::warn("refusing node {}: {}", crypto::node_id_short(ev.node),
                   ev.reason.empty() ? "refused by the mesh" : ev.reason);
      tunnel_->refuse(ev.node);
      chains_.erase(ev.node);
      chains_dirty_ = true;
      fib_dirty_ = true;
      break;
    case K::node_revoked:
      if (ev.node == id_.chain.node_id()) {
        // The mesh root revoked us: nobody will talk to this node again.
        spdlog::error("this node has been revoked by the mesh root; stopping");
        stop(1);
        break;
      }
      spdlog::info("node revoked: {}", ev.member ? member_label(*ev.member) : crypto::node_id_short(ev.node));
      tunnel_->refuse(ev.node);
      chains_.erase(ev.node);
      chains_dirty_ = true;
      tunnel_peers_.erase(ev.node);
      store_->del_contact(ev.node);
      fib_dirty_ = true;
      break;
    case K::mapping_unresolved:
      if (ev.key) {
        spdlog::debug("no mapping for {} ({})", mesh::lookup_key_str(*ev.key), ev.reason);
        unanswered_.push_back(*ev.key);
      }
      fib_dirty_ = true;
      break;
    case K::mapping_conflict:
      if (ev.mapping) {
        if (ev.reason == "moved") {
        spdlog::info("MAC {} in VNI {} moved from {}", mac_str(ev.mapping->mac), ev.mapping->vni,
                     crypto::node_id_short(ev.mapping->owner));
      } else {
        spdlog::warn("duplicate claim for MAC {} in VNI {} (other owner {})", mac_str(ev.mapping->mac),
                     ev.mapping->vni, crypto::node_id_short(ev.mapping->owner));
      }
      }
      fib_dirty_ = true;
      break;
  }
}

void Daemon::rebuild_fib() {
  fib_dirty_ = false;
  // The old snapshot's "used" marks would be lost with it.
  next_touch_ms_ = 0;
  touch_used(now_ms());
  forwarder_.publish(std::make_shared<const dp::Fib>(
      build_fib(id_.chain.node_id(), mesh_->members(), mesh_->mappings(), attachments_,
                mesh_->self().routes)));
  // Frames that waited for the answers just applied.
  replay_pending(now_ms());
}

std::vector<mesh::Contact> Daemon::restored_contacts() const {
  std::vector<mesh::Contact> out;
  for (const auto& m : mesh_->members()) {
    if (m.state == mesh::MemberState::left || m.record.locators.empty()) continue;
    out.push_back(mesh::Contact{m.id(), m.record.chain.node.dh_pub, m.record.locators});
  }
  if (out.empty()) {
    // The mesh may not have persisted members yet; the agent's own table may have.
    for (const auto& c : store_->contacts()) {
      if (c.locators.empty() || c.id == id_.chain.node_id()) continue;
      out.push_back(mesh::Contact{c.id, c.dh_pub, c.locators});
    }
  }
  return out;
}

}  // namespace meshd::agent
