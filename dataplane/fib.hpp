// Forwarding table: an immutable snapshot the control plane builds and publishes by
// swapping a shared pointer; the data path reads it without locks (DESIGN principle 3).
#pragma once

#include <atomic>
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
  // Set by the data path when a frame goes to or comes from the endpoint; the agent
  // reads and clears it now and then to keep the mapping's cache entry fresh (the only
  // field of a published snapshot that changes; data-plane workers set it concurrently,
  // hence relaxed atomic; a write that is already 1 is skipped to keep the line shared).
  mutable std::atomic<std::uint8_t> used{0};

  RemoteEndpoint() = default;
  explicit RemoteEndpoint(const NodeId& o) : owner(o) {}
  RemoteEndpoint(const RemoteEndpoint& o) : owner(o.owner), used(o.used.load(std::memory_order_relaxed)) {}
  RemoteEndpoint& operator=(const RemoteEndpoint& o) {
    owner = o.owner;
    used.store(o.used.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return *this;
  }
  void mark_used() const {
    if (used.load(std::memory_order_relaxed) == 0) used.store(1, std::memory_order_relaxed);
  }
};

// A routed prefix (proxy-ARP/ND gateway): ARP and NS for addresses in `prefix` that are
// not known endpoints are answered with `next_hop_mac`, an endpoint on `owner` whose
// kernel forwards. Frames to that MAC then follow ordinary L2 forwarding to `owner`, so
// the builder must also map next_hop_mac to owner in remote_macs (or local_macs if
// `owner` is this node).
struct RouteEntry {
  IpPrefix prefix;
  NodeId owner{};
  MacAddr next_hop_mac{};
};
// Routes per VNI: few in practice, and looked up by linear scan. Overflow policy:
// sort_routes() keeps the kRoutesPerVniMax longest prefixes; route_for() never looks
// past that many.
inline constexpr std::size_t kRoutesPerVniMax = 1024;

struct Fib {
  // Remote endpoints: (vni, mac) -> owning node.
  std::unordered_map<MacKey, RemoteEndpoint, MacKeyHash> remote_macs;
  // Local endpoints: (vni, mac) attached on this node.
  std::unordered_set<MacKey, MacKeyHash> local_macs;
  // ARP proxy: (vni, ip) -> mac, for remote and local endpoints.
  std::unordered_map<IpKey, MacAddr, IpKeyHash> ip_to_mac;
  // Head-end replication lists: vni -> nodes serving it (excluding self).
  std::unordered_map<std::uint32_t, std::vector<NodeId>> vni_members;
  // Routed prefixes: vni -> routes, longest prefix first (see sort_routes()).
  std::unordered_map<std::uint32_t, std::vector<RouteEntry>> routes;

  // Longest-prefix match of `ip` among the VNI's routes of the same family; nullptr if
  // none. Relies on the order sort_routes() sets: the first match wins. No allocation.
  const RouteEntry* route_for(std::uint32_t vni, const IpAddr& ip) const;
};

// Puts every VNI's routes longest prefix first (ties: by prefix, then owner, so that two
// owners of one prefix resolve the same way on every node) and keeps at most
// kRoutesPerVniMax per VNI. Returns how many routes were dropped by that bound. The Fib
// builder calls it once after filling `routes`, before publishing.
std::size_t sort_routes(Fib& fib);

// True if `ip` is inside `prefix`: same family and the first prefix.len bits equal (host
// bits of prefix.addr are ignored). A length beyond the family's width matches nothing.
bool prefix_contains(const IpPrefix& prefix, const IpAddr& ip);

using FibPtr = std::shared_ptr<const Fib>;

// Builder with the bounds named; the control plane fills it and publish()es.
inline constexpr std::size_t kFibMacsMax = 1 << 20;

}  // namespace meshd::dp
