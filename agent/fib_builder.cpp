#include "agent/fib_builder.hpp"

#include <algorithm>
#include <unordered_set>

namespace meshd::agent {

namespace {
bool reachable(mesh::MemberState s) {
  // A suspect may be alive; dropping it from the tables would turn suspicion (often
  // a lost probe) into an outage. Failed and left members are gone.
  return s == mesh::MemberState::alive || s == mesh::MemberState::suspect;
}
}  // namespace

dp::Fib build_fib(const crypto::NodeId& self, const std::vector<mesh::MemberInfo>& members,
                  const std::vector<mesh::EndpointMapping>& mappings,
                  const std::vector<dp::Attachment>& attachments,
                  const std::vector<mesh::RouteAnnouncement>& self_routes) {
  dp::Fib fib;
  std::unordered_set<crypto::NodeId, crypto::NodeIdHash> live;
  for (const auto& m : members) {
    if (m.id() == self || !reachable(m.state)) continue;
    live.insert(m.id());
    for (std::uint32_t vni : m.record.vnis) fib.vni_members[vni].push_back(m.id());
  }
  for (auto& [vni, nodes] : fib.vni_members) std::sort(nodes.begin(), nodes.end());

  for (const auto& a : attachments) {
    fib.local_macs.insert(dp::MacKey{a.vni, a.mac});
    for (const auto& p : a.ips) fib.ip_to_mac[dp::IpKey{a.vni, p.addr}] = a.mac;
  }
  for (const auto& m : mappings) {
    if (m.removed || m.owner == self || !live.count(m.owner)) continue;
    if (fib.remote_macs.size() >= dp::kFibMacsMax) break;
    const dp::MacKey key{m.vni, m.mac};
    if (fib.local_macs.count(key)) continue;  // a local attachment wins on this node
    fib.remote_macs[key] = dp::RemoteEndpoint{m.owner};
    for (const auto& ip : m.ips) fib.ip_to_mac.try_emplace(dp::IpKey{m.vni, ip}, m.mac);
  }

  std::unordered_set<std::uint32_t> ours;
  for (const auto& a : attachments) ours.insert(a.vni);
  for (const auto& r : self_routes) {
    if (ours.count(r.vni)) fib.routes[r.vni].push_back(dp::RouteEntry{r.prefix, self, r.next_hop_mac});
  }
  for (const auto& m : members) {
    if (m.id() == self || !live.count(m.id())) continue;
    for (const auto& r : m.record.routes) {
      if (!ours.count(r.vni) || !m.record.chain.allows_vni(r.vni)) continue;
      fib.routes[r.vni].push_back(dp::RouteEntry{r.prefix, m.id(), r.next_hop_mac});
      const dp::MacKey key{r.vni, r.next_hop_mac};
      if (!fib.local_macs.count(key)) fib.remote_macs.try_emplace(key, dp::RemoteEndpoint{m.id()});
    }
  }
  dp::sort_routes(fib);
  return fib;
}

}  // namespace meshd::agent
