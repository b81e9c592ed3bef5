// Routed prefixes in the agent: `route add|del` requests, the routes view, and keeping
// this node's routes in step with its endpoints across restarts and detaches. The rules
// are in routes.hpp; here they meet MeshCore (which announces them in the signed node
// record), the store and the FIB.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/daemon.hpp"
#include "agent/routes.hpp"

namespace meshd::agent {

namespace {

using json = nlohmann::json;

bool same_route(const mesh::RouteAnnouncement& a, const mesh::RouteAnnouncement& b) {
  return a.vni == b.vni && a.prefix == b.prefix;
}

}  // namespace

json Daemon::handle_route_add(const ControlRequest& req) {
  // Checked first: the next hop search would otherwise say "attach one first", which
  // the certificate would then refuse too.
  if (!id_.chain.allows_vni(req.vni)) {
    return error_response(
        2, "VNI " + std::to_string(req.vni) +
               " is not allowed by this node's certificate; it cannot announce routes there");
  }
  auto plan = plan_route_add(mesh_->self().routes, attachments_, req.vni, req.prefix, req.via);
  if (!plan) return error_response(2, plan.error().message);
  const dp::Attachment& hop = plan->next_hop;
  json ips = json::array();
  for (const auto& p : hop.ips) ips.push_back(p.addr.str());
  json out{{"vni", plan->route.vni},
           {"prefix", plan->route.prefix.str()},
           {"next_hop_mac", mac_str(plan->route.next_hop_mac)},
           {"next_hop_ips", ips},
           {"netns", hop.netns ? json(*hop.netns) : json(nullptr)},
           {"ifname", hop.ifname},
           {"added", plan->changed}};
  if (!plan->changed) return with_ok(out);
  if (auto st = mesh_->set_routes(now_ms(), plan->routes); !st) {
    const int code = st.error().code == "mesh.scope" || st.error().code == "mesh.invalid" ? 2 : 1;
    return error_response(code,
                          "cannot add route " + route_str(plan->route) + ": " + st.error().message);
  }
  store_->put_route(plan->route);
  fib_dirty_ = true;
  spdlog::info("route {} via {} ({}{})", route_str(plan->route), mac_str(hop.mac),
               hop.netns ? "netns " + *hop.netns + ", " : "", hop.ifname);
  return with_ok(out);
}

json Daemon::handle_route_del(const ControlRequest& req) {
  auto plan = plan_route_del(mesh_->self().routes, req.vni, req.prefix);
  if (!plan) {
    // A stored route not announced since the start (its next hop endpoint could not be
    // restored) can still be deleted.
    const mesh::RouteAnnouncement key{req.vni, req.prefix, {}};
    for (const auto& r : store_->routes()) {
      if (!same_route(r, key)) continue;
      store_->del_route(r);
      spdlog::info("route {} deleted (it was not announced)", route_str(r));
      return with_ok(json{
          {"vni", r.vni}, {"prefix", r.prefix.str()}, {"next_hop_mac", mac_str(r.next_hop_mac)}});
    }
    return error_response(2, plan.error().message);
  }
  if (auto st = mesh_->set_routes(now_ms(), plan->routes); !st) {
    return error_response(
        1, "cannot delete route " + route_str(plan->route) + ": " + st.error().message);
  }
  store_->del_route(plan->route);
  fib_dirty_ = true;
  spdlog::info("route {} deleted", route_str(plan->route));
  return with_ok(json{{"vni", plan->route.vni},
                      {"prefix", plan->route.prefix.str()},
                      {"next_hop_mac", mac_str(plan->route.next_hop_mac)}});
}

json Daemon::routes_json() const {
  return with_ok(routes_view(id_.chain.node_id(), id_.name, mesh_->self().routes, mesh_->members(),
                             attachments_));
}

void Daemon::restore_routes() {
  const auto stored = store_->routes();
  if (stored.empty() && mesh_->self().routes.empty()) return;
  const auto records = store_->attachments();  // what reattach_stored kept
  auto announce = routes_to_announce(stored, attachments_, id_.chain);
  for (const auto& r : stored) {
    if (std::find(announce.begin(), announce.end(), r) != announce.end()) continue;
    const bool kept = std::any_of(records.begin(), records.end(), [&](const dp::Attachment& a) {
      return a.vni == r.vni && a.mac == r.next_hop_mac;
    });
    if (kept && id_.chain.allows_vni(r.vni)) {
      spdlog::warn("route {}: its next hop endpoint {} could not be restored; not announced",
                   route_str(r), mac_str(r.next_hop_mac));
    } else {
      spdlog::warn(
          "route {}: its next hop endpoint {} is gone (or the VNI is not allowed); dropping the "
          "route",
          route_str(r), mac_str(r.next_hop_mac));
      store_->del_route(r);
    }
  }
  // The first record already carried the routes whose endpoint was stored (start());
  // this withdraws those whose endpoint did not come back.
  if (auto st = mesh_->set_routes(now_ms(), announce); !st) {
    spdlog::error("announcing {} stored route(s): {}", announce.size(), st.error().message);
    return;
  }
  if (!announce.empty()) spdlog::info("announcing {} stored route(s)", announce.size());
  fib_dirty_ = true;
}

std::vector<mesh::RouteAnnouncement> Daemon::drop_routes_via(const dp::Attachment& a) {
  // Stored ones too: a route kept unannounced at start may point at this endpoint.
  for (const auto& r : routes_via(store_->routes(), a.vni, a.mac)) store_->del_route(r);
  auto gone = routes_via(mesh_->self().routes, a.vni, a.mac);
  if (gone.empty()) return gone;
  std::vector<mesh::RouteAnnouncement> keep;
  for (const auto& r : mesh_->self().routes) {
    if (std::find(gone.begin(), gone.end(), r) == gone.end()) keep.push_back(r);
  }
  if (auto st = mesh_->set_routes(now_ms(), std::move(keep)); !st) {
    spdlog::error("withdrawing the routes through {}: {}", mac_str(a.mac), st.error().message);
  }
  for (const auto& r : gone)
    spdlog::info("route {} removed with its next hop endpoint", route_str(r));
  fib_dirty_ = true;
  return gone;
}

}  // namespace meshd::agent
