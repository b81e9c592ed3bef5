// Lifeguard suspicion timer alone (mesh/suspicion.hpp): no MeshCore involved.
#include <doctest/doctest.h>

#include "mesh/suspicion.hpp"

using namespace meshd::mesh;

namespace {

NodeId node(std::uint8_t b) {
  NodeId id{};
  id[0] = b;
  return id;
}

}  // namespace

TEST_CASE("suspicion: minimum timeout follows mult * max(1, log10(n)) * interval") {
  for (std::size_t n : {0u, 1u, 2u, 3u, 10u}) CHECK(suspicion_min_timeout_ms(4, n, 1000) == 4000);
  CHECK(suspicion_min_timeout_ms(4, 100, 1000) == 8000);
  CHECK(suspicion_min_timeout_ms(4, 1000, 500) == 6000);
  CHECK(suspicion_min_timeout_ms(0, 50, 1000) == 0);
  // Above the bound the multiplier is clamped.
  CHECK(suspicion_min_timeout_ms(1000, 2, 1000) == kSuspicionMultMax * 1000);
}

TEST_CASE("suspicion: expected confirmations are bounded by the members who could confirm") {
  CHECK(suspicion_expected_confirmations(2, 2) == 0);  // only us and the suspect
  CHECK(suspicion_expected_confirmations(2, 3) == 1);
  CHECK(suspicion_expected_confirmations(2, 10) == 2);
  CHECK(suspicion_expected_confirmations(3, 0) == 0);
  CHECK(suspicion_expected_confirmations(1000, 100000) == kSuspicionConfirmationsMax);
}

TEST_CASE("suspicion: timeout starts at max, shrinks with each confirmation, never below min") {
  const std::uint64_t min = 4000, max = 24000;
  const std::size_t k = 3;
  std::uint64_t prev = Suspicion::timeout_ms(min, max, k, 0);
  CHECK(prev == max);
  for (std::size_t c = 1; c <= 10; ++c) {
    std::uint64_t t = Suspicion::timeout_ms(min, max, k, c);
    CHECK(t >= min);
    CHECK(t <= max);
    if (c <= k) {
      CHECK(t < prev);
    } else {
      CHECK(t == min);
    }
    prev = t;
  }
  CHECK(Suspicion::timeout_ms(min, max, k, k) == min);
  // memberlist's curve: max - (max - min) * log(c + 1) / log(k + 1).
  CHECK(Suspicion::timeout_ms(4000, 8000, 2, 1) == 5477);  // 8000 - floor(4000 * 0.6309)
  // No confirmations expected, or no span: min straight away.
  CHECK(Suspicion::timeout_ms(min, max, 0, 0) == min);
  CHECK(Suspicion::timeout_ms(min, min, 5, 0) == min);
}

TEST_CASE("suspicion: only new distinct confirmers shorten the deadline") {
  const std::uint64_t start = 1'000'000;
  Suspicion s(start, 4000, 8000, 2, node(1));
  CHECK(s.expected() == 2);
  CHECK(s.confirmations() == 0);
  CHECK(s.deadline_ms() == start + 8000);
  CHECK_FALSE(s.confirm(node(1)));  // the accuser itself
  CHECK(s.deadline_ms() == start + 8000);
  CHECK(s.confirm(node(2)));
  CHECK(s.confirmations() == 1);
  const std::uint64_t after_one = s.deadline_ms();
  CHECK(after_one < start + 8000);
  CHECK(after_one > start + 4000);
  CHECK_FALSE(s.confirm(node(2)));  // repeats do not count
  CHECK(s.deadline_ms() == after_one);
  CHECK(s.confirm(node(3)));
  CHECK(s.deadline_ms() == start + 4000);
  CHECK_FALSE(s.confirm(node(4)));  // k reached: bounded, and already at min
  CHECK(s.confirmations() == 2);
  CHECK(s.deadline_ms() == start + 4000);
}

TEST_CASE("suspicion: fixed timer when nothing is expected") {
  Suspicion s(500, 4000, 4000, 0, NodeId{});
  CHECK(s.deadline_ms() == 4500);
  CHECK_FALSE(s.confirm(node(9)));
  CHECK(s.deadline_ms() == 4500);
}

TEST_CASE("suspicion: more confirmations than fit inline (k = 5): each counts once, bounded") {
  Suspicion s(0, 1000, 9000, 5, node(1));
  CHECK(s.expected() == 5);
  std::uint64_t prev = s.deadline_ms();
  for (std::uint8_t i = 2; i <= 6; ++i) {
    CHECK(s.confirm(node(i)));
    CHECK_FALSE(s.confirm(node(i)));
    CHECK_FALSE(s.confirm(node(1)));
    CHECK(s.deadline_ms() < prev);
    prev = s.deadline_ms();
  }
  CHECK(s.confirmations() == 5);
  CHECK(s.deadline_ms() == 1000);
  CHECK_FALSE(s.confirm(node(7)));
  // Moved (the member table moves it in): the confirmers go along.
  Suspicion t = std::move(s);
  CHECK(t.confirmations() == 5);
  CHECK_FALSE(t.confirm(node(3)));
}
