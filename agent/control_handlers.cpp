// Control requests handled inside the agent: attach/detach (devices, store, mesh),
// leave, and the status / peers / endpoints views (routes: route_handlers.cpp).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/daemon.hpp"
#include "agent/mesh_settings.hpp"

namespace meshd::agent {

namespace {

using json = nlohmann::json;

json locators_json(const std::vector<Locator>& locs) {
  json a = json::array();
  for (const auto& l : locs) a.push_back(l.str());
  return a;
}

bool same_place(const dp::Attachment& a, std::uint32_t vni, const std::optional<std::string>& netns) {
  return a.vni == vni && a.netns == netns;
}

std::string where(std::uint32_t vni, const std::optional<std::string>& netns,
                  const std::optional<std::string>& ifname) {
  std::string s = "VNI " + std::to_string(vni);
  s += netns ? " in netns " + *netns : " in the agent's namespace";
  if (ifname) s += " as " + *ifname;
  return s;
}

json attachment_json(const dp::Attachment& a) {
  json ips = json::array();
  for (const auto& p : a.ips) ips.push_back(p.str());
  return json{{"vni", a.vni},
              {"mac", mac_str(a.mac)},
              {"ips", ips},
              {"netns", a.netns ? json(*a.netns) : json(nullptr)},
              {"ifname", a.ifname},
              {"host_ifname", a.host_ifname}};
}

int exit_code_for(const Error& e) {
  // What the user can fix with different arguments is bad input (2).
  return e.code == "attach.netns" || e.code == "attach.exists" || e.code == "mesh.scope" ? 2 : 1;
}

}  // namespace

void Daemon::on_control(const ControlRequest& req, ControlServer::Respond respond) {
  const bool changes = req.cmd == ControlCmd::attach || req.cmd == ControlCmd::detach ||
                       req.cmd == ControlCmd::route_add || req.cmd == ControlCmd::route_del ||
                       req.cmd == ControlCmd::leave;
  if (changes && joining_) {
    respond(error_response(1, "this node is still joining the mesh; try again once it is accepted"));
    return;
  }
  if (changes && leaving_) {
    respond(error_response(1, "this node is leaving the mesh"));
    return;
  }
  switch (req.cmd) {
    case ControlCmd::status: respond(status_json()); return;
    case ControlCmd::peers: respond(peers_json()); return;
    case ControlCmd::endpoints: respond(endpoints_json()); return;
    case ControlCmd::routes: respond(routes_json()); return;
    case ControlCmd::attach: respond(handle_attach(req)); break;
    case ControlCmd::detach: respond(handle_detach(req)); break;
    case ControlCmd::route_add: respond(handle_route_add(req)); break;
    case ControlCmd::route_del: respond(handle_route_del(req)); break;
    case ControlCmd::leave: begin_leave(std::move(respond)); return;
    case ControlCmd::revoke: respond(handle_revoke(req)); break;
  }
  pump(now_ms());
}

Status Daemon::attach_one(dp::Attachment a, bool restoring, dp::Attachment* out) {
  const bool had_vni = devices_->tap(a.vni) != nullptr;
  const auto cleanup_vni = [&] {
    const bool used = std::any_of(attachments_.begin(), attachments_.end(),
                                  [&](const dp::Attachment& e) { return e.vni == a.vni; });
    if (!had_vni && !used) {
      unwatch_tap(a.vni);
      (void)devices_->remove_vni(a.vni);
    }
  };
  auto tap = devices_->ensure_vni(a.vni);
  if (!tap) return tap.error();
  watch_tap(a.vni);
  auto r = devices_->attach(a);
  if (!r) {
    cleanup_vni();
    return r.error();
  }
  std::vector<IpAddr> addrs;
  for (const auto& p : r->ips) addrs.push_back(p.addr);
  if (restoring) {
    // Restart: the mesh restored our old claim and would keep it as is. Withdraw and
    // publish again so the claim carries a higher seq than anything seen before the
    // crash (a MAC that moved here meanwhile is won back; the tombstone's lower seq
    // can never win over the new claim, whatever order peers receive them in).
    const auto& self = id_.chain.node_id();
    for (const auto& m : mesh_->mappings()) {
      if (m.owner == self && m.vni == r->vni && m.mac == r->mac && !m.removed) {
        (void)mesh_->withdraw_endpoint(now_ms(), r->vni, r->mac);
        break;
      }
    }
  }
  if (auto st = mesh_->publish_endpoint(now_ms(), r->vni, r->mac, std::move(addrs)); !st) {
    (void)devices_->detach(*r);
    cleanup_vni();
    return st.error();
  }
  // On restore the record is rewritten too: the devices may have new host-side names.
  store_->put_attachment(*r);
  const auto key = attachment_key(*r);
  auto it = std::find_if(attachments_.begin(), attachments_.end(),
                         [&](const dp::Attachment& e) { return attachment_key(e) == key; });
  if (it != attachments_.end()) {
    *it = *r;
  } else {
    attachments_.push_back(*r);
  }
  fib_dirty_ = true;
  std::string ips;
  for (const auto& p : r->ips) ips += (ips.empty() ? "" : ",") + p.str();
  spdlog::info("attached {} {} to VNI {} ({}{})", mac_str(r->mac), ips, r->vni,
               r->netns ? "netns " + *r->netns + ", " : "", r->ifname);
  if (out) *out = *r;
  return ok_status();
}

json Daemon::handle_attach(const ControlRequest& req) {
  if (!id_.chain.allows_vni(req.vni)) {
    return error_response(2, "VNI " + std::to_string(req.vni) + " is not allowed by this node's certificate");
  }
  for (const auto& e : attachments_) {
    if (req.mac && e.vni == req.vni && e.mac == *req.mac &&
        !(same_place(e, req.vni, req.netns) && req.ifname && e.ifname == *req.ifname)) {
      return error_response(2, "MAC " + mac_str(*req.mac) + " is already attached to VNI " +
                                   std::to_string(req.vni));
    }
    if (same_place(e, req.vni, req.netns) && req.ifname && e.ifname == *req.ifname) {
      if ((req.mac && *req.mac != e.mac) || req.ips != e.ips) {
        return error_response(2, *req.ifname + " is already attached to " + where(req.vni, req.netns, {}) +
                                     " with other addresses; detach it first");
      }
      return with_ok(attachment_json(e));  // same request again: nothing to do
    }
  }
  dp::Attachment a;
  a.vni = req.vni;
  a.netns = req.netns;
  a.ifname = req.ifname.value_or("");
  a.mac = req.mac.value_or(MacAddr{});
  a.ips = req.ips;
  dp::Attachment done;
  if (auto st = attach_one(std::move(a), false, &done); !st) {
    spdlog::warn("attach to VNI {} failed: {}", req.vni, st.error().message);
    return error_response(exit_code_for(st.error()), st.error().message);
  }
  return with_ok(attachment_json(done));
}

json Daemon::handle_detach(const ControlRequest& req) {
  std::vector<std::size_t> matches;
  for (std::size_t i = 0; i < attachments_.size(); ++i) {
    const auto& e = attachments_[i];
    if (same_place(e, req.vni, req.netns) && (!req.ifname || e.ifname == *req.ifname)) matches.push_back(i);
  }
  if (matches.empty()) {
    return error_response(2, "no endpoint attached to " + where(req.vni, req.netns, req.ifname));
  }
  if (matches.size() > 1) {
    std::string names;
    for (auto i : matches) names += (names.empty() ? "" : ", ") + attachments_[i].ifname;
    return error_response(2, "several endpoints in " + where(req.vni, req.netns, {}) + " (" + names +
                                 "); say which with --ifname");
  }
  const dp::Attachment a = attachments_[matches.front()];
  if (auto st = devices_->detach(a); !st) return error_response(1, st.error().message);
  if (auto st = mesh_->withdraw_endpoint(now_ms(), a.vni, a.mac); !st) {
    spdlog::warn("withdrawing {} in VNI {}: {}", mac_str(a.mac), a.vni, st.error().message);
  }
  store_->del_attachment(a);
  // Routes through this endpoint would send tenants to a MAC nobody has any more.
  json routes_removed = json::array();
  for (const auto& r : drop_routes_via(a)) routes_removed.push_back(r.prefix.str());
  attachments_.erase(attachments_.begin() + static_cast<std::ptrdiff_t>(matches.front()));
  const bool vni_used = std::any_of(attachments_.begin(), attachments_.end(),
                                    [&](const dp::Attachment& e) { return e.vni == a.vni; });
  if (!vni_used) {
    unwatch_tap(a.vni);
    if (auto st = devices_->remove_vni(a.vni); !st) spdlog::warn("removing VNI {} devices: {}", a.vni, st.error().message);
  }
  fib_dirty_ = true;
  spdlog::info("detached {} from VNI {} ({}{})", mac_str(a.mac), a.vni, a.netns ? "netns " + *a.netns + ", " : "",
               a.ifname);
  json out = attachment_json(a);
  out["routes_removed"] = std::move(routes_removed);
  return with_ok(std::move(out));
}

json Daemon::handle_revoke(const ControlRequest& req) {
  if (!req.revocation) return error_response(2, "revoke needs a signed revocation");
  const auto& r = *req.revocation;
  if (auto st = mesh_->revoke(now_ms(), r); !st) {
    const auto& code = st.error().code;
    const int exit_code = code == "mesh.bad_revocation" || code == "mesh.revoke_self" ? 2 : 1;
    return error_response(exit_code, st.error().message);
  }
  // No tunnel refusal here: the mesh queued the revocation for the revoked node too, and
  // its node_revoked event (handled in the pump, after that message is sealed) refuses
  // the node. Refusing first would drop the message, and the node would never stop.
  spdlog::info("revoked node {}", crypto::node_id_short(r.node));
  return with_ok(json{{"node_id", crypto::node_id_hex(r.node)}});
}

void Daemon::reattach_stored() {
  for (auto& a : store_->attachments()) {
    if (!id_.chain.allows_vni(a.vni)) {
      spdlog::warn("stored endpoint in VNI {} is not allowed by this node's certificate; dropping it", a.vni);
      store_->del_attachment(a);
      continue;
    }
    const dp::Attachment copy = a;
    if (auto st = attach_one(std::move(a), true, nullptr); !st) {
      spdlog::warn("could not restore endpoint {} in VNI {}: {}", mac_str(copy.mac), copy.vni, st.error().message);
      // A tenant namespace that is gone will not come back by itself.
      if (st.error().code == "attach.netns") store_->del_attachment(copy);
    }
  }
}

json Daemon::status_json() const {
  json members = {{"alive", 0}, {"suspect", 0}, {"failed", 0}, {"left", 0}};
  for (const auto& m : mesh_->members()) {
    if (m.id() == id_.chain.node_id()) continue;
    auto& n = members[mesh::member_state_name(m.state)];
    n = n.get<int>() + 1;
  }
  std::vector<std::uint32_t> vnis = devices_->vnis();
  for (const auto& a : attachments_) vnis.push_back(a.vni);
  std::sort(vnis.begin(), vnis.end());
  vnis.erase(std::unique(vnis.begin(), vnis.end()), vnis.end());
  // Per data-plane worker: how the load spreads over the cores.
  json workers = json::array();
  if (dataplane_) {
    for (const WorkerCounters& w : dataplane_->worker_counters()) {
      workers.push_back(json{{"udp_rx_datagrams", w.udp_rx_datagrams},
                             {"udp_tx_datagrams", w.udp_tx_datagrams},
                             {"tap_rx_frames", w.tap_rx_frames},
                             {"tap_tx_frames", w.tap_tx_frames}});
    }
  }
  return with_ok(json{{"node_id", crypto::node_id_hex(id_.chain.node_id())},
                      {"name", id_.name},
                      {"mesh_id", crypto::mesh_id(id_.root_pub)},
                      {"listen", listen_.str()},
                      {"locators", locators_json(locators_)},
                      {"members", members},
                      {"vnis", vnis},
                      {"endpoints_local", attachments_.size()},
                      {"routes_local", mesh_->self().routes.size()},
                      {"uptime_s", (clock_.now_ms() - started_ms_) / 1000},
                      {"membership", mesh_settings_json(mesh_cfg_)},
                      {"workers", workers},
                      {"counters", counters_json()}});
}

json Daemon::peers_json() const {
  std::unordered_map<crypto::NodeId, crypto::PeerStats, crypto::NodeIdHash> stats;
  for (auto& s : tunnel_->peer_stats()) stats.emplace(s.id, s);
  auto members = mesh_->members();
  std::sort(members.begin(), members.end(), [](const mesh::MemberInfo& a, const mesh::MemberInfo& b) {
    return a.record.chain.node.name != b.record.chain.node.name ? a.record.chain.node.name < b.record.chain.node.name
                                                                : a.id() < b.id();
  });
  json peers = json::array();
  for (const auto& m : members) {
    if (m.id() == id_.chain.node_id()) continue;
    const auto it = stats.find(m.id());
    const crypto::PeerStats* s = it == stats.end() ? nullptr : &it->second;
    const char* session = s && s->session_up ? "up" : s && s->handshaking ? "handshaking" : "down";
    peers.push_back(json{{"node_id", crypto::node_id_hex(m.id())},
                         {"name", m.record.chain.node.name},
                         {"state", mesh::member_state_name(m.state)},
                         {"locators", locators_json(m.record.locators)},
                         {"vnis", m.record.vnis},
                         {"token_id", to_hex(m.record.chain.node.token_id)},
                         {"session", session},
                         {"endpoint", s && s->endpoint ? json(s->endpoint->str()) : json(nullptr)},
                         {"cipher", s && s->session_up ? json(std::string(crypto::aead_alg_name(s->cipher))) : json(nullptr)},
                         {"rx_bytes", s ? s->rx_bytes : 0},
                         {"tx_bytes", s ? s->tx_bytes : 0}});
  }
  return with_ok(json{{"peers", peers}});
}

json Daemon::endpoints_json() const {
  // Local attachments, then the remote endpoints this node has resolved (its map-cache:
  // only what its tenants talk to). "duplicate": another node claims the same MAC.
  const auto& self = id_.chain.node_id();
  const auto infos = mesh_->endpoints();
  const std::uint64_t now = now_ms();
  std::unordered_map<crypto::NodeId, std::string, crypto::NodeIdHash> names;
  for (const auto& m : mesh_->members()) names.emplace(m.id(), m.record.chain.node.name);
  json eps = json::array();
  auto sorted = attachments_;
  std::sort(sorted.begin(), sorted.end(), [](const dp::Attachment& a, const dp::Attachment& b) {
    return std::tie(a.vni, a.mac) < std::tie(b.vni, b.mac);
  });
  for (const auto& a : sorted) {
    std::uint64_t seq = 0;
    bool duplicate = false;
    for (const auto& e : infos) {
      if (e.local && e.mapping.vni == a.vni && e.mapping.mac == a.mac) {
        seq = e.mapping.seq;
        duplicate = e.duplicate;
      }
    }
    json ips = json::array();
    for (const auto& p : a.ips) ips.push_back(p.addr.str());
    eps.push_back(json{{"vni", a.vni},
                       {"mac", mac_str(a.mac)},
                       {"ips", ips},
                       {"node_id", crypto::node_id_hex(self)},
                       {"node", id_.name},
                       {"local", true},
                       {"seq", seq},
                       {"duplicate", duplicate},
                       {"netns", a.netns ? json(*a.netns) : json(nullptr)},
                       {"ifname", a.ifname}});
  }
  std::vector<const mesh::EndpointInfo*> remote;
  for (const auto& e : infos) {
    if (!e.local) remote.push_back(&e);
  }
  std::sort(remote.begin(), remote.end(), [](const auto* a, const auto* b) {
    return std::tie(a->mapping.vni, a->mapping.mac) < std::tie(b->mapping.vni, b->mapping.mac);
  });
  for (const auto* e : remote) {
    const auto& m = e->mapping;
    json ips = json::array();
    for (const auto& ip : m.ips) ips.push_back(ip.str());
    const auto n = names.find(m.owner);
    eps.push_back(json{{"vni", m.vni},
                       {"mac", mac_str(m.mac)},
                       {"ips", ips},
                       {"node_id", crypto::node_id_hex(m.owner)},
                       {"node", n != names.end() ? n->second : crypto::node_id_short(m.owner)},
                       {"local", false},
                       {"seq", m.seq},
                       {"duplicate", false},
                       {"cache_ttl_s", e->expires_ms > now ? (e->expires_ms - now) / 1000 : 0}});
  }
  return with_ok(json{{"endpoints", eps}});
}

}  // namespace meshd::agent
