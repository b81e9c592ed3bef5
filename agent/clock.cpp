#include "agent/clock.hpp"

#include <ctime>

namespace meshd::agent {

namespace {
std::int64_t read_ms(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}
}  // namespace

Clock::Clock() : offset_ms_(read_ms(CLOCK_REALTIME) - read_ms(CLOCK_MONOTONIC)) {}

std::uint64_t Clock::now_ms() const {
  return static_cast<std::uint64_t>(read_ms(CLOCK_MONOTONIC) + offset_ms_);
}

std::uint64_t Clock::unix_s() {
  return static_cast<std::uint64_t>(read_ms(CLOCK_REALTIME) / 1000);
}

}  // namespace meshd::agent
