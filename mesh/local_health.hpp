// Lifeguard local health multiplier (LHM). A node that misses acks it should have
// got, or has to refute suspicions about itself, is more likely slow itself (CPU
// starved, lossy uplink) than surrounded by dead peers. It then probes less often and
// waits longer for acks, so it stops accusing healthy members first:
//     effective interval = base * (score + 1)
// The score moves by small steps on evidence and is clamped to [0, max]; max == 0
// turns local health off (the score stays 0).
//
// Pure state, no clock or I/O; usable alone.
#pragma once

#include <cstdint>

namespace meshd::mesh {

inline constexpr std::uint32_t kLocalHealthMaxBound = 64;  // cap for MeshConfig::lhm_max

class LocalHealth {
 public:
  // `max` above kLocalHealthMaxBound is clamped to it.
  explicit LocalHealth(std::uint32_t max);

  // Adds `delta` (negative: healthier), clamped to [0, max].
  void apply_delta(int delta);
  std::uint32_t score() const { return score_; }
  std::uint32_t max() const { return max_; }
  // base_ms * (score + 1), saturating instead of overflowing.
  std::uint64_t scale_ms(std::uint64_t base_ms) const;

 private:
  std::uint32_t max_;
  std::uint32_t score_ = 0;
};

}  // namespace meshd::mesh
