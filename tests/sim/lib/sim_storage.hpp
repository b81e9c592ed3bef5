// In-memory mesh::Storage for the simulator. Storage has no sync call, so by default
// every write is durable. With `lose_unsynced` set, writes after the last checkpoint()
// are undone by crash() (FoundationDB-style lost writes); the undo log makes both cheap.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mesh/storage.hpp"

namespace meshd::sim {

class SimStorage final : public mesh::Storage {
 public:
  explicit SimStorage(bool lose_unsynced = false) : lose_unsynced_(lose_unsynced) {}

  void put(std::string_view table, std::string_view key, ByteSpan value) override;
  void del(std::string_view table, std::string_view key) override;
  std::optional<Bytes> get(std::string_view table, std::string_view key) const override;
  void for_each(std::string_view table,
                const std::function<void(std::string_view key, ByteSpan value)>& fn) const override;

  // Everything written so far survives the next crash().
  void checkpoint() { undo_.clear(); }
  // Forgets writes since the last checkpoint (only with lose_unsynced).
  void crash();
  std::size_t entries() const;

  // A preformed mesh: the "members" table is `base` (shared by every node of the
  // simulation, read-only) and writes to it are dropped, so 10,000 nodes do not each
  // hold 10,000 encoded records. Other tables work as usual.
  using Table = std::map<std::string, Bytes, std::less<>>;
  void share_members(std::shared_ptr<const Table> base) { base_members_ = std::move(base); }
  std::size_t undo_entries() const { return undo_.size(); }

 private:
  struct Undo {
    std::string table, key;
    std::optional<Bytes> old;
  };
  void remember(std::string_view table, std::string_view key);

  bool lose_unsynced_;
  std::map<std::string, Table, std::less<>> tables_;
  std::vector<Undo> undo_;
  std::shared_ptr<const Table> base_members_;
  bool shared(std::string_view table) const { return base_members_ && table == "members"; }
};

}  // namespace meshd::sim
