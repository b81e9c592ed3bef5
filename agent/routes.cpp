#include "agent/routes.hpp"

#include <algorithm>
#include <set>
#include <tuple>

#include "dataplane/fib.hpp"

namespace meshd::agent {

namespace {

using json = nlohmann::json;

std::string addresses(const dp::Attachment& a) {
  std::string s;
  for (const auto& p : a.ips) s += (s.empty() ? "" : ", ") + p.addr.str();
  return s;
}

std::string vni_str(std::uint32_t vni) { return "VNI " + std::to_string(vni); }

}  // namespace

std::string route_str(const mesh::RouteAnnouncement& r) {
  return vni_str(r.vni) + " " + r.prefix.str();
}

Result<dp::Attachment> route_next_hop(const std::vector<dp::Attachment>& attachments,
                                      std::uint32_t vni, const std::optional<IpAddr>& via) {
  std::vector<const dp::Attachment*> in_vni;
  for (const auto& a : attachments) {
    if (a.vni == vni) in_vni.push_back(&a);
  }
  if (in_vni.empty()) {
    return make_error("route.next_hop", "no endpoint attached in " + vni_str(vni) +
                                            " to forward to; attach one (the gateway) first");
  }
  if (via) {
    for (const auto* a : in_vni) {
      for (const auto& p : a->ips) {
        if (p.addr == *via) return *a;
      }
    }
    std::string have;
    for (const auto* a : in_vni) have += (have.empty() ? "" : "; ") + addresses(*a);
    return make_error("route.next_hop", "no endpoint attached in " + vni_str(vni) +
                                            " has address " + via->str() +
                                            " (this node's endpoints there: " + have + ")");
  }
  if (in_vni.size() > 1) {
    std::string have;
    for (const auto* a : in_vni) have += (have.empty() ? "" : "; ") + addresses(*a);
    return make_error("route.next_hop", "several endpoints attached in " + vni_str(vni) + " (" +
                                            have + "); say which one forwards with --via IP");
  }
  return *in_vni.front();
}

bool prefixes_overlap(const IpPrefix& a, const IpPrefix& b) {
  if (a.addr.family != b.addr.family) return false;
  const IpPrefix& shorter = a.len <= b.len ? a : b;
  const IpPrefix& longer = a.len <= b.len ? b : a;
  return dp::prefix_contains(shorter, longer.addr);
}

Result<RoutePlan> plan_route_add(const std::vector<mesh::RouteAnnouncement>& current,
                                 const std::vector<dp::Attachment>& attachments, std::uint32_t vni,
                                 const IpPrefix& prefix, const std::optional<IpAddr>& via) {
  auto hop = route_next_hop(attachments, vni, via);
  if (!hop) return hop.error();
  // The forwarder answers ARP/ND for any address in a route that is not a known
  // endpoint; in the tenants' own subnet that would capture endpoints not resolved yet.
  for (const auto& a : attachments) {
    if (a.vni != vni) continue;
    for (const auto& p : a.ips) {
      if (prefixes_overlap(prefix, p)) {
        return make_error("route.overlap", "route " + prefix.str() +
                                               " overlaps the subnet of endpoint " + p.str() +
                                               " in " + vni_str(vni) +
                                               "; a route must lie outside the VNI's own subnets");
      }
    }
  }
  RoutePlan plan;
  plan.route = mesh::RouteAnnouncement{vni, prefix, hop->mac};
  plan.next_hop = std::move(*hop);
  plan.routes = current;
  for (const auto& r : current) {
    if (r.vni != vni || r.prefix != prefix) continue;
    if (r.next_hop_mac == plan.route.next_hop_mac) return plan;  // already there: no change
    return make_error("route.exists", "route " + route_str(r) + " already goes through endpoint " +
                                          mac_str(r.next_hop_mac) + "; delete it first");
  }
  plan.routes.push_back(plan.route);
  std::sort(plan.routes.begin(), plan.routes.end());
  plan.changed = true;
  return plan;
}

Result<RoutePlan> plan_route_del(const std::vector<mesh::RouteAnnouncement>& current,
                                 std::uint32_t vni, const IpPrefix& prefix) {
  RoutePlan plan;
  for (const auto& r : current) {
    if (r.vni == vni && r.prefix == prefix) {
      plan.route = r;
      plan.changed = true;
    } else {
      plan.routes.push_back(r);
    }
  }
  if (!plan.changed) {
    return make_error("route.unknown", "this node announces no route to " + prefix.str() + " in " +
                                           vni_str(vni) + " (see meshd routes)");
  }
  return plan;
}

std::vector<mesh::RouteAnnouncement> routes_to_announce(
    std::vector<mesh::RouteAnnouncement> stored, const std::vector<dp::Attachment>& attachments,
    const crypto::CertChain& chain) {
  std::erase_if(stored, [&](const mesh::RouteAnnouncement& r) {
    const bool attached = std::any_of(
        attachments.begin(), attachments.end(),
        [&](const dp::Attachment& a) { return a.vni == r.vni && a.mac == r.next_hop_mac; });
    return !attached || !chain.allows_vni(r.vni);
  });
  std::sort(stored.begin(), stored.end());
  stored.erase(std::unique(stored.begin(), stored.end()), stored.end());
  // Only a store written by something else could hold more; the agent never adds more.
  if (stored.size() > mesh::kRoutesPerNodeMax) stored.resize(mesh::kRoutesPerNodeMax);
  return stored;
}

std::vector<mesh::RouteAnnouncement> routes_via(const std::vector<mesh::RouteAnnouncement>& routes,
                                                std::uint32_t vni, const MacAddr& mac) {
  std::vector<mesh::RouteAnnouncement> out;
  for (const auto& r : routes) {
    if (r.vni == vni && r.next_hop_mac == mac) out.push_back(r);
  }
  return out;
}

json routes_view(const crypto::NodeId& self_id, const std::string& self_name,
                 const std::vector<mesh::RouteAnnouncement>& self_routes,
                 const std::vector<mesh::MemberInfo>& members,
                 const std::vector<dp::Attachment>& attachments) {
  struct Row {
    const mesh::RouteAnnouncement* route;
    const crypto::NodeId* node;
    const std::string* name;
    bool local;
  };
  std::set<std::uint32_t> served;
  for (const auto& a : attachments) served.insert(a.vni);
  std::vector<Row> rows;
  for (const auto& r : self_routes) {
    if (served.count(r.vni)) rows.push_back(Row{&r, &self_id, &self_name, true});
  }
  for (const auto& m : members) {
    // As in the FIB builder: failed and left members' routes are not used.
    if (m.id() == self_id ||
        (m.state != mesh::MemberState::alive && m.state != mesh::MemberState::suspect)) {
      continue;
    }
    for (const auto& r : m.record.routes) {
      if (served.count(r.vni) && m.record.chain.allows_vni(r.vni)) {
        rows.push_back(Row{&r, &m.id(), &m.record.chain.node.name, false});
      }
    }
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return std::tie(a.route->vni, a.route->prefix, *a.node) <
           std::tie(b.route->vni, b.route->prefix, *b.node);
  });
  json out = json::array();
  for (const auto& row : rows) {
    out.push_back(json{{"vni", row.route->vni},
                       {"prefix", row.route->prefix.str()},
                       {"node", *row.name},
                       {"node_id", crypto::node_id_hex(*row.node)},
                       {"next_hop_mac", mac_str(row.route->next_hop_mac)},
                       {"local", row.local}});
  }
  return json{{"routes", out}};
}

}  // namespace meshd::agent
