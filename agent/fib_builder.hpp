// Builds the forwarding snapshot the data path reads (dataplane/fib.hpp) from the
// mesh's view (alive members, mappings) and this node's attachments.
#pragma once

#include <vector>

#include "dataplane/fib.hpp"
#include "dataplane/vni_devices.hpp"
#include "mesh/types.hpp"

namespace meshd::agent {

// remote_macs: live mappings owned by other nodes that are not failed/left;
// local_macs: our attachments; ip_to_mac: both; vni_members: alive/suspect members
// serving each VNI (self excluded), sorted for stable flooding order; routes: the
// routes announced in live members' records (and `self_routes`) for the VNIs we have
// attachments in and the announcer's certificate allows, longest prefix first; a
// remote route's next hop MAC is a remote endpoint of its node.
dp::Fib build_fib(const crypto::NodeId& self, const std::vector<mesh::MemberInfo>& members,
                  const std::vector<mesh::EndpointMapping>& mappings,
                  const std::vector<dp::Attachment>& attachments,
                  const std::vector<mesh::RouteAnnouncement>& self_routes = {});

}  // namespace meshd::agent
