#include "mesh/broadcast_queue.hpp"

#include <algorithm>

namespace meshd::mesh {

std::size_t BroadcastQueue::push(const Key& key, Bytes encoded) {
  for (Entry& e : entries_) {
    if (e.key == key) {
      e.encoded = std::move(encoded);
      e.transmits = 0;
      e.order = next_order_++;
      return 0;
    }
  }
  std::size_t dropped = 0;
  if (max_ == 0) return 1;
  if (entries_.size() >= max_) {
    auto worst = std::max_element(entries_.begin(), entries_.end(),
                                  [](const Entry& a, const Entry& b) {
                                    return a.transmits < b.transmits;
                                  });
    entries_.erase(worst);
    dropped = 1;
  }
  entries_.push_back(Entry{key, std::move(encoded), 0, next_order_++});
  return dropped;
}

std::size_t BroadcastQueue::erase_prefix(const Key& key, std::size_t prefix_len) {
  prefix_len = std::min(prefix_len, key.size());
  return std::erase_if(entries_, [&](const Entry& e) {
    return std::equal(key.begin(), key.begin() + static_cast<std::ptrdiff_t>(prefix_len),
                      e.key.begin());
  });
}

std::vector<Bytes> BroadcastQueue::take(std::size_t budget_bytes, std::size_t limit) {
  std::vector<Bytes> out;
  if (entries_.empty()) return out;
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
    return a.transmits != b.transmits ? a.transmits < b.transmits : a.order < b.order;
  });
  std::size_t used = 0;
  for (Entry& e : entries_) {
    if (!out.empty() && used + e.encoded.size() > budget_bytes) continue;
    used += e.encoded.size();
    out.push_back(e.encoded);
    ++e.transmits;
    if (used >= budget_bytes) break;
  }
  std::erase_if(entries_, [limit](const Entry& e) { return e.transmits >= limit; });
  return out;
}

}  // namespace meshd::mesh
