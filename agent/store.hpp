// The agent's durable state: one LMDB environment in DIR/db.
//
// Tables: "identity" (node seed, dh secret, chain, root public key, name, listen),
// "members" / "mappings" / "meta" (owned by MeshCore through mesh::Storage),
// "attachments" (local endpoints), "routes" (the routes this node announces), "contacts" (how to reach known members, for
// tokens made while the agent runs), "agent" (enrolled / left, advertised locators).
// Every write is its own committed transaction, so nothing is lost on kill -9.
// LMDB is multi-process safe: `meshd token create` reads this while the agent runs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/cert.hpp"
#include "crypto/keys.hpp"
#include "crypto/result.hpp"
#include "dataplane/vni_devices.hpp"
#include "mesh/storage.hpp"
#include "mesh/types.hpp"

typedef struct MDB_env MDB_env;
typedef struct MDB_txn MDB_txn;

namespace meshd::agent {

// Secrets are wiped when this goes away.
struct StoredIdentity {
  crypto::Seed node_seed{};
  crypto::Seed dh_secret{};
  crypto::CertChain chain;
  crypto::PublicKey root_pub{};
  std::string name;
  std::string listen;  // "ip:port"
  StoredIdentity() = default;
  StoredIdentity(const StoredIdentity&) = default;
  StoredIdentity& operator=(const StoredIdentity&) = default;
  ~StoredIdentity();
};

enum class NodeState { none, enrolled, left };

struct StoredContact {
  crypto::NodeId id{};
  crypto::PublicKey dh_pub{};
  std::vector<Locator> locators;
  bool alive = false;
};

inline constexpr std::size_t kStoreMapSizeBytes = std::size_t{1} << 30;  // sparse file
inline constexpr std::size_t kStoreValueMaxBytes = 1 << 20;

class Store final : public mesh::Storage {
 public:
  // Creates DIR (0700) and DIR/db (0700) if missing. Errors: "store.open".
  static Result<std::unique_ptr<Store>> open(const std::string& state_dir);
  ~Store() override;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // mesh::Storage. A failed write is logged and counted (write_errors()); the agent
  // keeps running rather than taking the tenant network down with it.
  void put(std::string_view table, std::string_view key, ByteSpan value) override;
  void del(std::string_view table, std::string_view key) override;
  std::optional<Bytes> get(std::string_view table, std::string_view key) const override;
  void for_each(std::string_view table,
                const std::function<void(std::string_view key, ByteSpan value)>& fn) const override;
  // Removes every entry of `table`.
  void clear(std::string_view table);

  std::optional<StoredIdentity> load_identity() const;
  void save_identity(const StoredIdentity& id);
  void clear_identity();

  NodeState node_state() const;
  void set_node_state(NodeState s);

  void save_locators(const std::vector<Locator>& locs);
  std::vector<Locator> load_locators() const;

  // Local endpoints, keyed by (vni, netns, ifname).
  void put_attachment(const dp::Attachment& a);
  void del_attachment(const dp::Attachment& a);
  std::vector<dp::Attachment> attachments() const;

  // Routes this node announces, keyed by (vni, prefix); MeshCore does not persist its
  // own record, so the agent hands these to MeshCore::set_routes on start.
  void put_route(const mesh::RouteAnnouncement& r);
  void del_route(const mesh::RouteAnnouncement& r);
  std::vector<mesh::RouteAnnouncement> routes() const;

  void put_contact(const StoredContact& c);
  void del_contact(const crypto::NodeId& id);
  std::vector<StoredContact> contacts() const;

  std::uint64_t write_errors() const { return write_errors_; }
  const std::string& state_dir() const { return dir_; }

 private:
  Store(MDB_env* env, std::string dir) : env_(env), dir_(std::move(dir)) {}
  // DBI handle for `table`, opened (and created) on first use; 0 on failure.
  unsigned dbi(std::string_view table) const;
  // One committed write transaction running `op` on `table`; failures are logged and
  // counted in write_errors_.
  void write(std::string_view table, const char* what,
             const std::function<int(MDB_txn*, unsigned)>& op);

  MDB_env* env_ = nullptr;
  std::string dir_;
  mutable std::map<std::string, unsigned, std::less<>> dbis_;
  mutable std::uint64_t write_errors_ = 0;
};

// Encodings of the agent's own records (exposed for tests).
Bytes encode_attachment(const dp::Attachment& a);
std::optional<dp::Attachment> decode_attachment(ByteSpan b);
std::string attachment_key(const dp::Attachment& a);
Bytes encode_route(const mesh::RouteAnnouncement& r);
std::optional<mesh::RouteAnnouncement> decode_route(ByteSpan b);
std::string route_key(const mesh::RouteAnnouncement& r);

}  // namespace meshd::agent
