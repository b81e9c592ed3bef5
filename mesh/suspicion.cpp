#include "mesh/suspicion.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>

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
      min_ms_(min_ms),
      max_ms_(max_ms),
      k_(std::min(k, kSuspicionConfirmationsMax)) {
  assert(min_ms <= max_ms);
  confirmers_.reserve(k_ + 1);
  confirmers_.push_back(accuser);
}

bool Suspicion::confirm(const NodeId& from) {
  if (confirmations() >= k_) return false;
  if (std::find(confirmers_.begin(), confirmers_.end(), from) != confirmers_.end()) return false;
  confirmers_.push_back(from);
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
