#include "crypto/replay.hpp"

#include <algorithm>

namespace meshd::crypto {

bool ReplayWindow::check(std::uint64_t c) const {
  if (c >= kCounterLimit) return false;
  if (!any_ || c > top_) return true;
  if (top_ - c > kWindow) return false;
  return (bits_[(c >> 6) % kWords] & (1ull << (c & 63))) == 0;
}

bool ReplayWindow::commit(std::uint64_t c) {
  if (!check(c)) return false;
  if (!any_ || c > top_) {
    std::uint64_t cur_word = any_ ? top_ >> 6 : 0;
    std::uint64_t new_word = c >> 6;
    if (!any_) {
      bits_.fill(0);
    } else {
      // Clear the words the top moves over; a jump of a whole ring clears everything.
      std::uint64_t steps = std::min<std::uint64_t>(new_word - cur_word, kWords);
      for (std::uint64_t i = 1; i <= steps; ++i) bits_[(cur_word + i) % kWords] = 0;
    }
    top_ = c;
    any_ = true;
  }
  bits_[(c >> 6) % kWords] |= 1ull << (c & 63);
  return true;
}

void ReplayWindow::reset() {
  bits_.fill(0);
  top_ = 0;
  any_ = false;
}

}  // namespace meshd::crypto
