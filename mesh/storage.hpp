// What the mesh persists, behind a small key/value interface (agent/ implements it
// on LMDB; tests use an in-memory map that can "lose" unsynced writes).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/bytes.hpp"

namespace meshd::mesh {

class Storage {
 public:
  virtual ~Storage() = default;
  // Tables used by the mesh: "members", "mappings", "meta", "revocations".
  virtual void put(std::string_view table, std::string_view key, ByteSpan value) = 0;
  virtual void del(std::string_view table, std::string_view key) = 0;
  virtual std::optional<Bytes> get(std::string_view table, std::string_view key) const = 0;
  virtual void for_each(std::string_view table,
                        const std::function<void(std::string_view key, ByteSpan value)>& fn) const = 0;
};

}  // namespace meshd::mesh
