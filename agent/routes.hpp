// Routed prefixes (`meshd route add|del`, `meshd routes`): the rules for this node's own
// routes and the routes view, as pure functions over the agent's state so they can be
// tested without devices. The daemon applies a plan with MeshCore::set_routes (which
// announces the list in the signed node record) and the store.
//
// A route (vni, prefix) on this node forwards to one of its endpoints in that VNI, the
// gateway, by MAC (mesh::RouteAnnouncement::next_hop_mac). (vni, prefix) is the key:
// one next hop per prefix per node.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/result.hpp"
#include "dataplane/vni_devices.hpp"
#include "mesh/types.hpp"

namespace meshd::agent {

// The local endpoint a route in `vni` forwards to: the one in `vni` holding address
// `via`, or without `via` the only endpoint in `vni`. Error "route.next_hop" (message
// for the user) when there is none, or several and no `via`.
Result<dp::Attachment> route_next_hop(const std::vector<dp::Attachment>& attachments,
                                      std::uint32_t vni, const std::optional<IpAddr>& via);

// True if the prefixes share an address: same family and one contains the other.
bool prefixes_overlap(const IpPrefix& a, const IpPrefix& b);

struct RoutePlan {
  std::vector<mesh::RouteAnnouncement> routes;  // the node's new list (sorted)
  mesh::RouteAnnouncement route;                // the route added or removed
  dp::Attachment next_hop;                      // add: the gateway endpoint
  bool changed = false;                         // false: the same route was there already
};

// Adding (vni, prefix) to `current` (this node's routes). Errors, all bad input:
// "route.next_hop" (see route_next_hop), "route.overlap" (the prefix overlaps a subnet
// of a local endpoint in the VNI: ARP for endpoints there would be answered with the
// gateway's MAC instead of being resolved), "route.exists" (the prefix already goes
// through another endpoint; delete it first). The same route again is not an error
// (changed = false). The bound (mesh::kRoutesPerNodeMax) is MeshCore::set_routes' check.
Result<RoutePlan> plan_route_add(const std::vector<mesh::RouteAnnouncement>& current,
                                 const std::vector<dp::Attachment>& attachments, std::uint32_t vni,
                                 const IpPrefix& prefix, const std::optional<IpAddr>& via);

// Removing (vni, prefix). Error "route.unknown" if this node announces no such route.
Result<RoutePlan> plan_route_del(const std::vector<mesh::RouteAnnouncement>& current,
                                 std::uint32_t vni, const IpPrefix& prefix);

// Of the stored routes, those to announce: the certificate allows the VNI and the next
// hop endpoint is among `attachments`. Sorted, unique, at most mesh::kRoutesPerNodeMax.
std::vector<mesh::RouteAnnouncement> routes_to_announce(
    std::vector<mesh::RouteAnnouncement> stored, const std::vector<dp::Attachment>& attachments,
    const crypto::CertChain& chain);

// This node's routes whose next hop is endpoint (vni, mac) (removed with it on detach).
std::vector<mesh::RouteAnnouncement> routes_via(const std::vector<mesh::RouteAnnouncement>& routes,
                                                std::uint32_t vni, const MacAddr& mac);

// `meshd routes --json` without "ok": {"routes":[{"vni","prefix","node","node_id",
// "next_hop_mac","local"}]} for the VNIs this node has endpoints in: its own routes and
// those of alive or suspect members whose certificate allows the VNI (what the FIB
// builder uses), sorted by vni, prefix, then node id.
nlohmann::json routes_view(const crypto::NodeId& self_id, const std::string& self_name,
                           const std::vector<mesh::RouteAnnouncement>& self_routes,
                           const std::vector<mesh::MemberInfo>& members,
                           const std::vector<dp::Attachment>& attachments);

// "VNI 100 192.168.77.0/24"
std::string route_str(const mesh::RouteAnnouncement& r);

}  // namespace meshd::agent
