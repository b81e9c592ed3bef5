// Frames waiting for the mapping system (agent/pending_frames.hpp).
#include <doctest/doctest.h>

#include <vector>

#include "agent/pending_frames.hpp"

using meshd::agent::PendingFrame;
using meshd::agent::PendingFrames;
using meshd::mesh::LookupKey;

namespace {

std::vector<std::uint8_t> frame(std::uint8_t tag, std::size_t len = 60) {
  return std::vector<std::uint8_t>(len, tag);
}

LookupKey key(std::uint8_t last) { return LookupKey::of_mac(100, {2, 0, 0, 0, 0, last}); }

}  // namespace

TEST_CASE("pending frames: released in order for their key only; the first frame asks") {
  PendingFrames p;
  PendingFrame meta;
  meta.vni = 100;
  bool first = false;
  REQUIRE(p.add(key(1), meta, frame(1), 0, first));
  CHECK(first);
  REQUIRE(p.add(key(1), meta, frame(2), 0, first));
  CHECK_FALSE(first);
  REQUIRE(p.add(key(2), meta, frame(3), 0, first));
  CHECK(first);
  std::vector<std::uint8_t> seen;
  p.release(key(1), [&](const PendingFrame& f) {
    CHECK(f.vni == 100);
    CHECK(f.len == 60);
    seen.push_back(f.data[0]);
  });
  CHECK(seen == std::vector<std::uint8_t>{1, 2});
  CHECK(p.size() == 1);
  p.give_up(key(2), [&](const PendingFrame& f) { seen.push_back(f.data[0]); });
  CHECK(seen == std::vector<std::uint8_t>{1, 2, 3});
  CHECK(p.size() == 0);
  CHECK(p.counters().released == 2);
  CHECK(p.counters().given_up == 1);
  // Released keys are gone: a second release hands nothing.
  p.release(key(1), [&](const PendingFrame&) { FAIL("released twice"); });
}

TEST_CASE("pending frames: bounded per key and in all; too big and too old are dropped, counted") {
  PendingFrames p;
  PendingFrame meta;
  bool first = false;
  for (std::size_t i = 0; i < PendingFrames::kFramesPerKey; ++i) {
    REQUIRE(p.add(key(1), meta, frame(1), 0, first));
  }
  CHECK_FALSE(p.add(key(1), meta, frame(1), 0, first));
  CHECK(p.counters().drop_full == 1);
  std::size_t added = PendingFrames::kFramesPerKey;
  for (std::uint8_t k = 2; added < PendingFrames::kFramesMax; ++k) {
    for (std::size_t i = 0; i < PendingFrames::kFramesPerKey && added < PendingFrames::kFramesMax; ++i) {
      REQUIRE(p.add(key(k), meta, frame(k), 10, first));
      ++added;
    }
  }
  CHECK(p.size() == PendingFrames::kFramesMax);
  CHECK_FALSE(p.add(key(255), meta, frame(9), 10, first));
  CHECK(p.counters().drop_full == 2);
  CHECK_FALSE(p.add(key(254), meta, frame(9, sizeof(PendingFrame::data) + 1), 10, first));
  CHECK(p.counters().drop_too_big == 1);
  // The first key's frames (queued at 0) age out first.
  p.expire(PendingFrames::kWaitMax_ms);
  CHECK(p.counters().drop_aged == PendingFrames::kFramesPerKey);
  CHECK(p.size() == PendingFrames::kFramesMax - PendingFrames::kFramesPerKey);
  p.expire(PendingFrames::kWaitMax_ms + 10);
  CHECK(p.size() == 0);
  CHECK(p.keys().empty());
}

TEST_CASE("pending frames: a received frame keeps its sender and direction") {
  PendingFrames p;
  PendingFrame meta;
  meta.from_tunnel = true;
  meta.sender[0] = 7;
  meta.vni = 42;
  bool first = false;
  REQUIRE(p.add(key(3), meta, frame(5, 1500), 0, first));
  bool called = false;
  p.release(key(3), [&](const PendingFrame& f) {
    called = true;
    CHECK(f.from_tunnel);
    CHECK(f.sender[0] == 7);
    CHECK(f.vni == 42);
    CHECK(f.len == 1500);
    CHECK(f.data[1499] == 5);
  });
  CHECK(called);
}
