// Sliding replay window over 64-bit counters (RFC 6479 style): a ring of 64-bit words;
// moving the top forward clears whole words instead of shifting a long bitmap.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace meshd::crypto {

class ReplayWindow {
 public:
  static constexpr std::size_t kBits = 2048;
  static constexpr std::size_t kWords = kBits / 64;
  // Counters this far below the highest seen are still accepted once.
  static constexpr std::uint64_t kWindow = kBits - 64;
  // Counters at or above this are never valid (they would wrap the sender's nonce).
  static constexpr std::uint64_t kCounterLimit = ~0ull - kBits;

  // True if `c` would be accepted now (not seen, not too old). Does not change state:
  // call it before authenticating, then commit() only after the tag verified.
  bool check(std::uint64_t c) const;
  // Marks `c` seen. Returns false (and changes nothing) if check(c) is false.
  bool commit(std::uint64_t c);
  void reset();

 private:
  std::array<std::uint64_t, kWords> bits_{};
  std::uint64_t top_ = 0;
  bool any_ = false;
};

}  // namespace meshd::crypto
