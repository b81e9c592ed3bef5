// Randomness comes in through this interface (STYLE habit 1): the agent passes the
// OS generator, tests and the simulator pass a seeded one so runs replay exactly.
#pragma once

#include <cstdint>
#include <span>

namespace meshd::crypto {

class Random {
 public:
  virtual ~Random() = default;
  virtual void fill(std::span<std::uint8_t> out) = 0;
  std::uint64_t next_u64() {
    std::uint64_t v = 0;
    fill(std::span<std::uint8_t>(reinterpret_cast<std::uint8_t*>(&v), sizeof v));
    return v;
  }
  // Uniform in [0, n); n > 0.
  std::uint64_t uniform(std::uint64_t n) { return next_u64() % n; }
};

}  // namespace meshd::crypto
