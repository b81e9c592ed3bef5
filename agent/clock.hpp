// Time for the sans-I/O cores.
//
// The cores take one `now_ms`. Certificate checks inside them compare it with unix
// seconds, so it must be close to wall-clock time; timers need it monotonic. We
// therefore anchor the monotonic clock to the wall clock once at start: monotonic,
// and within NTP slew of unix time.
#pragma once

#include <cstdint>

namespace meshd::agent {

class Clock {
 public:
  Clock();
  // Monotonic milliseconds, anchored near unix epoch ms at construction.
  std::uint64_t now_ms() const;
  // Wall-clock unix seconds (certificate issue times, token expiry).
  static std::uint64_t unix_s();

 private:
  std::int64_t offset_ms_ = 0;
};

}  // namespace meshd::agent
