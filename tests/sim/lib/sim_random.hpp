// The simulator's only source of randomness: xoshiro256** seeded through splitmix64.
// Our own generator (not std::mt19937 + std distributions) so a seed replays the same
// run with any standard library: libstdc++ and libc++ distributions differ.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

#include "crypto/random.hpp"

namespace meshd::sim {

// Mixes values into one seed (node index, restart generation...).
inline std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a + 0x9e3779b97f4a7c15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class SimRandom final : public crypto::Random {
 public:
  explicit SimRandom(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (auto& s : s_) {
      x = mix_seed(x, 0);
      s = x;
    }
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1).
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  bool chance(double p) { return p > 0 && unit() < p; }
  // Uniform in [lo, hi]; lo <= hi.
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) {
    return lo + (hi > lo ? next() % (hi - lo + 1) : 0);
  }
  void fill(std::span<std::uint8_t> out) override {
    std::size_t i = 0;
    while (i < out.size()) {
      std::uint64_t v = next();
      std::size_t n = std::min<std::size_t>(8, out.size() - i);
      std::memcpy(out.data() + i, &v, n);
      i += n;
    }
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4]{};
};

}  // namespace meshd::sim
