#include "dataplane/fib.hpp"

#include <cstring>

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

}  // namespace meshd::dp
