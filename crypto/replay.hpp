// Sliding replay window over 64-bit counters (RFC 6479 style): a ring of 64-bit words;
// moving the top forward clears whole words instead of shifting a long bitmap.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace meshd::crypto {

class ReplayWindow {
 public:
  // 8192 like WireGuard's kernel module: with several data-plane workers sealing from
  // one counter and several opening (lanes), a worker that the scheduler sets aside for
  // a few milliseconds still lands inside the window (at 1 Mpps, ~8 ms).
  static constexpr std::size_t kBits = 8192;
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
