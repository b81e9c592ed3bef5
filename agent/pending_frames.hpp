// Frames waiting for the mapping system (issue 4): the first frames to a MAC or IP
// nobody here has resolved yet, and frames received from an endpoint we have not
// resolved (its owner must be checked before delivery). They wait in a small bounded
// queue per key instead of being flooded or dropped; resolve() answers release them
// (replayed through the forwarder), a negative answer or a timeout gives them up
// (sent frames are flooded then, received ones dropped).
//
// Bounds: kFramesPerKey per key, kFramesMax in all, kWaitMax_ms each. Overflow or
// age: the frame is dropped and counted. No allocation per frame once the slots exist:
// frames are copied into fixed slots.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "crypto/bytes.hpp"
#include "crypto/keys.hpp"
#include "mesh/types.hpp"

namespace meshd::agent {

struct PendingFrame {
  bool from_tunnel = false;  // received from `sender`; else read from the VNI's TAP
  crypto::NodeId sender{};
  std::uint32_t vni = 0;
  std::uint64_t queued_ms = 0;
  std::size_t len = 0;
  std::array<std::uint8_t, 9216 + 64> data{};  // a jumbo frame
};

struct PendingCounters {
  std::uint64_t queued = 0, released = 0, given_up = 0;
  std::uint64_t drop_full = 0;  // queue or per-key limit reached
  std::uint64_t drop_aged = 0;  // waited longer than kWaitMax_ms
  std::uint64_t drop_too_big = 0;
};

class PendingFrames {
 public:
  static constexpr std::size_t kFramesPerKey = 8;
  static constexpr std::size_t kFramesMax = 256;
  static constexpr std::uint64_t kWaitMax_ms = 3'000;

  // False (counted) if it could not be queued. `key_is_new`: no frame waited for the
  // key before (the caller sends the map-request).
  bool add(const mesh::LookupKey& key, const PendingFrame& meta, ByteSpan frame, std::uint64_t now,
           bool& key_is_new);
  // Hands every frame waiting for `key` to `fn` and forgets them.
  void release(const mesh::LookupKey& key, const std::function<void(const PendingFrame&)>& fn);
  // Same, counted as given up.
  void give_up(const mesh::LookupKey& key, const std::function<void(const PendingFrame&)>& fn);
  // Drops frames older than kWaitMax_ms.
  void expire(std::uint64_t now);
  std::vector<mesh::LookupKey> keys() const;
  std::size_t size() const { return used_; }
  const PendingCounters& counters() const { return counters_; }

 private:
  std::vector<std::unique_ptr<PendingFrame>> free_;
  std::map<mesh::LookupKey, std::vector<std::unique_ptr<PendingFrame>>> waiting_;
  std::size_t used_ = 0;
  PendingCounters counters_;
  void take(const mesh::LookupKey& key, const std::function<void(const PendingFrame&)>& fn,
            std::uint64_t& counter);
};

}  // namespace meshd::agent
