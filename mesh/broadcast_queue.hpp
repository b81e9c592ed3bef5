// Transmit-limited broadcast queue (memberlist style). Gossip updates wait here and
// ride on gossip messages and on pings/acks until each has been sent `limit` times
// (limit ~ mult * log10(N+1), so dissemination stays O(log N) per node). A newer
// update about the same subject (same key) replaces the queued one.
//
// Bound: `max` entries. Overflow policy: drop the entry that has been transmitted
// most (it has had the most chances to spread), the oldest of those on a tie; the
// caller counts the drop.
//
// Two ordered indexes over the same entries keep every operation logarithmic at
// 1024+ entries: by key (replace, prefix erase) and by (transmits, order) (take,
// overflow). Both are ordered containers, so iteration, and hence what goes out
// on the wire, is deterministic for a given sequence of calls.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "crypto/bytes.hpp"

namespace meshd::mesh {

class BroadcastQueue {
 public:
  using Key = std::array<std::uint8_t, 40>;  // kind byte + subject (node id or vni/mac)

  // take() stops scanning after this many queued updates that did not fit the
  // remaining budget, so one call costs O((taken + kTakeSkipMax) log n) however
  // long the queue is. A packet that still has room then simply carries less.
  static constexpr std::size_t kTakeSkipMax = 64;

  explicit BroadcastQueue(std::size_t max) : max_(max) {}
  // Queues `encoded` under `key`; an entry already queued under `key` is replaced
  // and counts as new (0 transmits, newest). When full, drops the most-transmitted
  // entry (oldest on a tie) first. max == 0 stores nothing. O(log n). Returns the
  // number of entries dropped to make room, or 1 if nothing could be stored (0 or 1).
  std::size_t push(const Key& key, Bytes encoded);
  // Takes the least-transmitted updates (oldest first on a tie) whose total size
  // fits `budget_bytes`, skipping ones that do not fit (up to kTakeSkipMax of them),
  // until the budget is used up; at least one if any is queued, so an oversized
  // update still goes out alone. Each taken update counts one transmit; every entry
  // that has reached `limit` transmits leaves the queue.
  std::vector<Bytes> take(std::size_t budget_bytes, std::size_t limit);
  // Drops every entry whose key starts with key[0, prefix_len) (a newer fact about a
  // subject invalidates per-source entries about it); prefix_len is capped at the key
  // size. O(log n + matches). Returns how many.
  std::size_t erase_prefix(const Key& key, std::size_t prefix_len);
  bool empty() const { return by_key_.empty(); }
  std::size_t size() const { return by_key_.size(); }
  void clear() {
    by_rank_.clear();
    by_key_.clear();
  }

 private:
  // (transmits, order): take() order, least transmitted first, older first on a tie.
  // `order` is unique, so a rank names exactly one entry.
  using Rank = std::pair<std::size_t, std::uint64_t>;
  struct Entry {
    Bytes encoded;
    Rank rank{};
  };
  using ByKey = std::map<Key, Entry>;

  // Removes one entry from both indexes; returns the next entry by key.
  ByKey::iterator erase(ByKey::iterator it);
  // Moves an entry to a new place in the take() order.
  void rerank(ByKey::iterator it, Rank rank);

  std::size_t max_;
  std::uint64_t next_order_ = 0;
  ByKey by_key_;
  std::map<Rank, ByKey::iterator> by_rank_;  // map iterators stay valid across other erases
};

}  // namespace meshd::mesh
