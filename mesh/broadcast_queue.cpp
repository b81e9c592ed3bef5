#include "mesh/broadcast_queue.hpp"

#include <algorithm>
#include <cassert>
#include <iterator>

namespace meshd::mesh {

BroadcastQueue::ByKey::iterator BroadcastQueue::erase(ByKey::iterator it) {
  by_rank_.erase(it->second.rank);
  return by_key_.erase(it);
}

void BroadcastQueue::rerank(ByKey::iterator it, Rank rank) {
  // Re-keys the node in place: no allocation, O(log n).
  auto node = by_rank_.extract(it->second.rank);
  assert(!node.empty());
  it->second.rank = rank;
  node.key() = rank;
  by_rank_.insert(std::move(node));
}

std::size_t BroadcastQueue::push(const Key& key, Bytes encoded) {
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    it->second.encoded = std::move(encoded);
    rerank(it, {0, next_order_++});
    return 0;
  }
  if (max_ == 0) return 1;
  std::size_t dropped = 0;
  if (by_key_.size() >= max_) {
    // Most transmitted, and the oldest of those: the first rank with the top count.
    std::size_t most = std::prev(by_rank_.end())->first.first;
    erase(by_rank_.lower_bound({most, 0})->second);
    dropped = 1;
  }
  Rank rank{0, next_order_++};
  auto it = by_key_.emplace(key, Entry{std::move(encoded), rank}).first;
  by_rank_.emplace(rank, it);
  assert(by_key_.size() <= max_ && by_rank_.size() == by_key_.size());
  return dropped;
}

std::size_t BroadcastQueue::erase_prefix(const Key& key, std::size_t prefix_len) {
  prefix_len = std::min(prefix_len, key.size());
  auto prefix_end = key.begin() + static_cast<std::ptrdiff_t>(prefix_len);
  // The smallest key with this prefix: the prefix followed by zero bytes.
  Key lowest{};
  std::copy(key.begin(), prefix_end, lowest.begin());
  std::size_t n = 0;
  for (auto it = by_key_.lower_bound(lowest);
       it != by_key_.end() && std::equal(key.begin(), prefix_end, it->first.begin()); ++n) {
    it = erase(it);
  }
  return n;
}

std::vector<Bytes> BroadcastQueue::take(std::size_t budget_bytes, std::size_t limit) {
  std::vector<Bytes> out;
  if (by_rank_.empty()) return out;
  // Re-ranked only after the scan: a re-ranked entry moves later in by_rank_ and
  // would otherwise be met again.
  std::vector<ByKey::iterator> taken;
  std::size_t used = 0;
  std::size_t skipped = 0;
  for (auto r = by_rank_.begin(); r != by_rank_.end(); ++r) {
    Entry& e = r->second->second;
    if (!out.empty() && used + e.encoded.size() > budget_bytes) {
      if (++skipped >= kTakeSkipMax) break;
      continue;
    }
    used += e.encoded.size();
    // Its last transmit: it leaves the queue below, so its bytes need no copy.
    if (e.rank.first + 1 >= limit) {
      out.push_back(std::move(e.encoded));
    } else {
      out.push_back(e.encoded);
    }
    taken.push_back(r->second);
    if (used >= budget_bytes) break;
  }
  for (auto it : taken) rerank(it, {it->second.rank.first + 1, it->second.rank.second});
  // Everything at or past the limit sits at the end of by_rank_: the entries just
  // taken for the last time, and any left over when the limit shrank (fewer live
  // members since they were queued).
  for (auto r = by_rank_.lower_bound({limit, 0}); r != by_rank_.end();) {
    auto next = std::next(r);
    erase(r->second);
    r = next;
  }
  assert(by_rank_.size() == by_key_.size());
  return out;
}

}  // namespace meshd::mesh
