// Transmit-limited broadcast queue (memberlist style). Gossip updates wait here and
// ride on gossip messages and on pings/acks until each has been sent `limit` times
// (limit ~ mult * log10(N+1), so dissemination stays O(log N) per node). A newer
// update about the same subject (same key) replaces the queued one.
//
// Bound: `max` entries. Overflow policy: drop the entry that has been transmitted
// most (it has had the most chances to spread); the caller counts the drop.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "crypto/bytes.hpp"

namespace meshd::mesh {

class BroadcastQueue {
 public:
  using Key = std::array<std::uint8_t, 40>;  // kind byte + subject (node id or vni/mac)

  explicit BroadcastQueue(std::size_t max) : max_(max) {}
  // Returns the number of entries dropped to make room (0 or 1).
  std::size_t push(const Key& key, Bytes encoded);
  // Takes the least-transmitted updates whose total size fits `budget_bytes` (at
  // least one if any is queued, so an oversized update still goes out alone); an
  // update sent `limit` times leaves the queue.
  std::vector<Bytes> take(std::size_t budget_bytes, std::size_t limit);
  // Drops every entry whose key starts with key[0, prefix_len) (a newer fact about a
  // subject invalidates per-source entries about it). Returns how many.
  std::size_t erase_prefix(const Key& key, std::size_t prefix_len);
  bool empty() const { return entries_.empty(); }
  std::size_t size() const { return entries_.size(); }
  void clear() { entries_.clear(); }

 private:
  struct Entry {
    Key key{};
    Bytes encoded;
    std::size_t transmits = 0;
    std::uint64_t order = 0;  // insertion order: ties go to the older update
  };
  std::size_t max_;
  std::uint64_t next_order_ = 0;
  std::vector<Entry> entries_;
};

}  // namespace meshd::mesh
