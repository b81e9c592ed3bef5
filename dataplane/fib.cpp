#include "dataplane/fib.hpp"

#include <algorithm>
#include <cstring>
#include <tuple>

namespace meshd::dp {

namespace {
std::size_t mix(std::size_t h, std::uint64_t v) {
  // 64-bit finalizer (splitmix-style) folded into the running hash.
  v ^= v >> 33;
  v *= 0xff51afd7ed558ccdULL;
  v ^= v >> 33;
  return h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
}
}  // namespace

std::size_t MacKeyHash::operator()(const MacKey& k) const noexcept {
  std::uint64_t m = 0;
  std::memcpy(&m, k.mac.data(), k.mac.size());
  return mix(mix(0, k.vni), m);
}

std::size_t IpKeyHash::operator()(const IpKey& k) const noexcept {
  std::uint64_t a = 0, b = 0;
  std::memcpy(&a, k.ip.bytes.data(), 8);
  std::memcpy(&b, k.ip.bytes.data() + 8, 8);
  return mix(mix(mix(0, k.vni), a), b ^ k.ip.family);
}

bool prefix_contains(const IpPrefix& prefix, const IpAddr& ip) {
  const std::size_t width_bits = ip.is_v4() ? 32 : ip.is_v6() ? 128 : 0;
  if (width_bits == 0 || prefix.addr.family != ip.family || prefix.len > width_bits) {
    return false;
  }
  const std::size_t whole_bytes = prefix.len / 8;
  if (!std::equal(ip.bytes.begin(), ip.bytes.begin() + static_cast<std::ptrdiff_t>(whole_bytes),
                  prefix.addr.bytes.begin())) {
    return false;
  }
  const unsigned rest_bits = prefix.len % 8;
  if (rest_bits == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest_bits));
  return (ip.bytes[whole_bytes] & mask) == (prefix.addr.bytes[whole_bytes] & mask);
}

const RouteEntry* Fib::route_for(std::uint32_t vni, const IpAddr& ip) const {
  const auto it = routes.find(vni);
  if (it == routes.end()) return nullptr;
  const std::size_t n = std::min(it->second.size(), kRoutesPerVniMax);
  for (std::size_t i = 0; i < n; ++i) {
    if (prefix_contains(it->second[i].prefix, ip)) return &it->second[i];
  }
  return nullptr;
}

std::size_t sort_routes(Fib& fib) {
  std::size_t dropped = 0;
  for (auto& [vni, list] : fib.routes) {
    std::sort(list.begin(), list.end(), [](const RouteEntry& a, const RouteEntry& b) {
      return std::tie(b.prefix.len, a.prefix, a.owner, a.next_hop_mac) <
             std::tie(a.prefix.len, b.prefix, b.owner, b.next_hop_mac);
    });
    if (list.size() > kRoutesPerVniMax) {
      dropped += list.size() - kRoutesPerVniMax;
      list.resize(kRoutesPerVniMax);
    }
  }
  return dropped;
}

}  // namespace meshd::dp
