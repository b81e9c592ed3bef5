#include "agent/pending_frames.hpp"

#include <algorithm>
#include <cstring>
#include <memory>

namespace meshd::agent {

bool PendingFrames::add(const mesh::LookupKey& key, const PendingFrame& meta, ByteSpan frame,
                        std::uint64_t now, bool& key_is_new) {
  key_is_new = false;
  if (frame.size() > meta.data.size()) {
    ++counters_.drop_too_big;
    return false;
  }
  auto it = waiting_.find(key);
  if (used_ >= kFramesMax || (it != waiting_.end() && it->second.size() >= kFramesPerKey)) {
    ++counters_.drop_full;
    return false;
  }
  std::unique_ptr<PendingFrame> slot;
  if (!free_.empty()) {
    slot = std::move(free_.back());
    free_.pop_back();
  } else {
    slot = std::make_unique<PendingFrame>();
  }
  slot->from_tunnel = meta.from_tunnel;
  slot->sender = meta.sender;
  slot->vni = meta.vni;
  slot->queued_ms = now;
  slot->len = frame.size();
  std::memcpy(slot->data.data(), frame.data(), frame.size());
  if (it == waiting_.end()) {
    it = waiting_.emplace(key, std::vector<std::unique_ptr<PendingFrame>>{}).first;
    key_is_new = true;
  }
  it->second.push_back(std::move(slot));
  ++used_;
  ++counters_.queued;
  return true;
}

void PendingFrames::take(const mesh::LookupKey& key, const std::function<void(const PendingFrame&)>& fn,
                         std::uint64_t& counter) {
  auto it = waiting_.find(key);
  if (it == waiting_.end()) return;
  auto frames = std::move(it->second);
  waiting_.erase(it);
  for (auto& f : frames) {
    --used_;
    ++counter;
    fn(*f);
    free_.push_back(std::move(f));
  }
}

void PendingFrames::release(const mesh::LookupKey& key,
                            const std::function<void(const PendingFrame&)>& fn) {
  take(key, fn, counters_.released);
}

void PendingFrames::give_up(const mesh::LookupKey& key,
                            const std::function<void(const PendingFrame&)>& fn) {
  take(key, fn, counters_.given_up);
}

void PendingFrames::expire(std::uint64_t now) {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    auto& v = it->second;
    for (auto f = v.begin(); f != v.end();) {
      if ((*f)->queued_ms + kWaitMax_ms <= now) {
        free_.push_back(std::move(*f));
        f = v.erase(f);
        --used_;
        ++counters_.drop_aged;
      } else {
        ++f;
      }
    }
    it = v.empty() ? waiting_.erase(it) : std::next(it);
  }
  // Keep a few spare slots, not the peak.
  if (free_.size() > kFramesPerKey * 4) free_.resize(kFramesPerKey * 4);
}

std::vector<mesh::LookupKey> PendingFrames::keys() const {
  std::vector<mesh::LookupKey> out;
  for (const auto& [k, v] : waiting_) out.push_back(k);
  return out;
}

}  // namespace meshd::agent
