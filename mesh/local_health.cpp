#include "mesh/local_health.hpp"

#include <algorithm>
#include <limits>

namespace meshd::mesh {

LocalHealth::LocalHealth(std::uint32_t max) : max_(std::min(max, kLocalHealthMaxBound)) {}

void LocalHealth::apply_delta(int delta) {
  std::int64_t s = static_cast<std::int64_t>(score_) + delta;
  score_ = static_cast<std::uint32_t>(std::clamp<std::int64_t>(s, 0, max_));
}

std::uint64_t LocalHealth::scale_ms(std::uint64_t base_ms) const {
  const std::uint64_t mult = std::uint64_t{score_} + 1;
  if (base_ms > std::numeric_limits<std::uint64_t>::max() / mult) {
    return std::numeric_limits<std::uint64_t>::max();
  }
  return base_ms * mult;
}

}  // namespace meshd::mesh
