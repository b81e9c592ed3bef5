// Lifeguard local health multiplier alone (mesh/local_health.hpp).
#include <doctest/doctest.h>

#include <limits>

#include "mesh/local_health.hpp"

using namespace meshd::mesh;

TEST_CASE("local health: rises on evidence, falls on success, clamped to [0, max]") {
  LocalHealth h(8);
  CHECK(h.score() == 0);
  h.apply_delta(-1);
  CHECK(h.score() == 0);
  h.apply_delta(1);
  h.apply_delta(2);
  CHECK(h.score() == 3);
  h.apply_delta(100);
  CHECK(h.score() == 8);
  for (int i = 0; i < 3; ++i) h.apply_delta(-1);
  CHECK(h.score() == 5);
  h.apply_delta(-100);
  CHECK(h.score() == 0);
}

TEST_CASE("local health: probe interval and timeout scale by (score + 1)") {
  LocalHealth h(8);
  CHECK(h.scale_ms(1000) == 1000);
  h.apply_delta(1);
  CHECK(h.scale_ms(1000) == 2000);
  CHECK(h.scale_ms(500) == 1000);
  h.apply_delta(50);
  CHECK(h.scale_ms(1000) == 9000);
  CHECK(h.scale_ms(std::numeric_limits<std::uint64_t>::max() / 2) ==
        std::numeric_limits<std::uint64_t>::max());  // saturates
}

TEST_CASE("local health: max 0 turns it off; max above the bound is clamped") {
  LocalHealth off(0);
  off.apply_delta(5);
  CHECK(off.score() == 0);
  CHECK(off.scale_ms(1000) == 1000);
  LocalHealth big(1'000'000);
  CHECK(big.max() == kLocalHealthMaxBound);
  big.apply_delta(1'000'000);
  CHECK(big.score() == kLocalHealthMaxBound);
}
