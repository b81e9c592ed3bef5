#include "mesh/suspicion.hpp"

#include <algorithm>
#include <cassert>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace meshd::mesh {

std::uint64_t suspicion_min_timeout_ms(std::uint64_t mult, std::size_t n,
                                       std::uint64_t probe_interval_ms) {
  mult = std::min(mult, kSuspicionMultMax);
  double scale = std::max(1.0, std::log10(static_cast<double>(std::max<std::size_t>(n, 1))));
  return static_cast<std::uint64_t>(static_cast<double>(mult * probe_interval_ms) * scale);
}

std::size_t suspicion_expected_confirmations(std::size_t wanted, std::size_t n) {
  std::size_t others = n > 2 ? n - 2 : 0;
  return std::min({wanted, others, kSuspicionConfirmationsMax});
}

Suspicion::Suspicion(std::uint64_t start_ms, std::uint64_t min_ms, std::uint64_t max_ms,
                     std::size_t k, const NodeId& accuser)
    : start_ms_(start_ms),
      min_ms_(static_cast<std::uint32_t>(std::min<std::uint64_t>(min_ms, UINT32_MAX))),
      max_ms_(static_cast<std::uint32_t>(std::min<std::uint64_t>(max_ms, UINT32_MAX))),
      k_(static_cast<std::uint8_t>(std::min(k, kSuspicionConfirmationsMax))) {
  assert(min_ms <= max_ms);
  if (std::size_t{k_} + 1 > kInline) more_ = std::make_unique<std::uint64_t[]>(std::size_t{k_} + 1);
  slots()[0] = prefix(accuser);
  n_ = 1;
}

std::uint64_t Suspicion::prefix(const NodeId& id) {
  std::uint64_t p = 0;
  std::memcpy(&p, id.data(), sizeof p);
  return p;
}

bool Suspicion::confirm(const NodeId& from) {
  if (confirmations() >= k_) return false;
  const std::uint64_t p = prefix(from);
  if (std::find(slots(), slots() + n_, p) != slots() + n_) return false;
  slots()[n_++] = p;
  return true;
}

std::uint64_t Suspicion::timeout_ms(std::uint64_t min_ms, std::uint64_t max_ms, std::size_t k,
                                    std::size_t c) {
  if (k == 0 || c >= k || max_ms <= min_ms) return min_ms;
  double frac = std::log(static_cast<double>(c) + 1.0) / std::log(static_cast<double>(k) + 1.0);
  double span = static_cast<double>(max_ms - min_ms);
  auto t = max_ms - static_cast<std::uint64_t>(std::floor(span * frac));
  return std::clamp(t, min_ms, max_ms);
}

}  // namespace meshd::mesh
