// Forwarding table: an immutable snapshot the control plane builds and publishes by
// swapping a shared pointer; the data path reads it without locks (DESIGN principle 3).
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/keys.hpp"

namespace meshd::dp {

using crypto::NodeId;

struct MacKey {
  std::uint32_t vni = 0;
  MacAddr mac{};
  bool operator==(const MacKey&) const = default;
};
struct MacKeyHash { std::size_t operator()(const MacKey& k) const noexcept; };

struct IpKey {
  std::uint32_t vni = 0;
  IpAddr ip;
  bool operator==(const IpKey&) const = default;
};
struct IpKeyHash { std::size_t operator()(const IpKey& k) const noexcept; };

struct RemoteEndpoint {
  NodeId owner{};
};

struct Fib {
  // Remote endpoints: (vni, mac) -> owning node.
  std::unordered_map<MacKey, RemoteEndpoint, MacKeyHash> remote_macs;
  // Local endpoints: (vni, mac) attached on this node.
  std::unordered_set<MacKey, MacKeyHash> local_macs;
  // ARP proxy: (vni, ip) -> mac, for remote and local endpoints.
  std::unordered_map<IpKey, MacAddr, IpKeyHash> ip_to_mac;
  // Head-end replication lists: vni -> nodes serving it (excluding self).
  std::unordered_map<std::uint32_t, std::vector<NodeId>> vni_members;
};

using FibPtr = std::shared_ptr<const Fib>;

// Builder with the bounds named; the control plane fills it and publish()es.
inline constexpr std::size_t kFibMacsMax = 1 << 20;

}  // namespace meshd::dp
