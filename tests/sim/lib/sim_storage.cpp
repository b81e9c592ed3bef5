#include "sim/lib/sim_storage.hpp"

namespace meshd::sim {

void SimStorage::remember(std::string_view table, std::string_view key) {
  if (!lose_unsynced_) return;
  Undo u{std::string(table), std::string(key), std::nullopt};
  u.old = get(table, key);
  undo_.push_back(std::move(u));
}

void SimStorage::put(std::string_view table, std::string_view key, ByteSpan value) {
  if (shared(table)) return;
  remember(table, key);
  auto t = tables_.find(table);
  if (t == tables_.end()) t = tables_.emplace(std::string(table), Table{}).first;
  auto k = t->second.find(key);
  if (k == t->second.end()) {
    t->second.emplace(std::string(key), Bytes(value.begin(), value.end()));
  } else {
    k->second.assign(value.begin(), value.end());
  }
}

void SimStorage::del(std::string_view table, std::string_view key) {
  if (shared(table)) return;
  auto t = tables_.find(table);
  if (t == tables_.end()) return;
  auto k = t->second.find(key);
  if (k == t->second.end()) return;
  remember(table, key);
  t->second.erase(k);
}

std::optional<Bytes> SimStorage::get(std::string_view table, std::string_view key) const {
  if (shared(table)) {
    auto k = base_members_->find(key);
    if (k == base_members_->end()) return std::nullopt;
    return k->second;
  }
  auto t = tables_.find(table);
  if (t == tables_.end()) return std::nullopt;
  auto k = t->second.find(key);
  if (k == t->second.end()) return std::nullopt;
  return k->second;
}

void SimStorage::for_each(std::string_view table,
                          const std::function<void(std::string_view, ByteSpan)>& fn) const {
  if (shared(table)) {
    for (const auto& [k, v] : *base_members_) fn(k, v);
    return;
  }
  auto t = tables_.find(table);
  if (t == tables_.end()) return;
  for (const auto& [k, v] : t->second) fn(k, v);
}

void SimStorage::crash() {
  // Newest first, so a key written twice ends at its checkpointed value.
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
    Table& t = tables_[it->table];
    if (it->old) {
      t[it->key] = *it->old;
    } else {
      t.erase(it->key);
    }
  }
  undo_.clear();
}

std::size_t SimStorage::entries() const {
  std::size_t n = 0;
  for (const auto& [name, t] : tables_) n += t.size();
  return n;
}

}  // namespace meshd::sim
