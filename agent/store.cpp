#include <functional>
#include "agent/store.hpp"

#include <lmdb.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "crypto/bytes.hpp"

namespace meshd::agent {

namespace {

constexpr unsigned kMaxDbs = 16;
constexpr std::uint8_t kRecordVersion = 1;
constexpr std::size_t kStrMax = 256;
constexpr std::size_t kIpsMax = 64;
constexpr std::size_t kLocatorsMax = 16;

constexpr const char* kIdentity = "identity";
constexpr const char* kAgent = "agent";
constexpr const char* kAttachments = "attachments";
constexpr const char* kContacts = "contacts";
constexpr const char* kRoutes = "routes";

MDB_val to_val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
MDB_val to_val(ByteSpan s) {
  return MDB_val{s.size(), const_cast<std::uint8_t*>(s.data())};
}

Status make_dir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error("store.open", "cannot create " + path + ": " + std::strerror(errno));
  }
  struct stat st{};
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return make_error("store.open", path + " is not a directory");
  }
  return ok_status();
}

void write_ip(ByteWriter& w, const IpAddr& ip) {
  w.u8(ip.family);
  w.raw(ip.bytes);
}
IpAddr read_ip(ByteReader& r) {
  IpAddr ip;
  ip.family = r.u8();
  ip.bytes = r.arr<16>();
  return ip;
}
void write_locators(ByteWriter& w, const std::vector<Locator>& locs) {
  w.u16(static_cast<std::uint16_t>(locs.size()));
  for (const auto& l : locs) {
    write_ip(w, l.ip);
    w.u16(l.port);
  }
}
bool read_locators(ByteReader& r, std::vector<Locator>& out) {
  std::size_t n = r.u16();
  if (!r.ok() || n > kLocatorsMax) return false;
  for (std::size_t i = 0; i < n && r.ok(); ++i) {
    Locator l;
    l.ip = read_ip(r);
    l.port = r.u16();
    out.push_back(l);
  }
  return r.ok();
}

std::string_view as_sv(ByteSpan b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace

StoredIdentity::~StoredIdentity() {
  sodium_memzero(node_seed.data(), node_seed.size());
  sodium_memzero(dh_secret.data(), dh_secret.size());
}

Result<std::unique_ptr<Store>> Store::open(const std::string& state_dir) {
  // Parents as `mkdir -p` would make them; the state directory itself owner-only.
  for (std::size_t pos = state_dir.find('/', 1); pos != std::string::npos; pos = state_dir.find('/', pos + 1)) {
    ::mkdir(state_dir.substr(0, pos).c_str(), 0755);
  }
  if (auto s = make_dir(state_dir); !s) return s.error();
  ::chmod(state_dir.c_str(), 0700);  // it holds node secrets (and maybe the root key)
  const std::string db_dir = state_dir + "/db";
  if (auto s = make_dir(db_dir); !s) return s.error();
  chmod(db_dir.c_str(), 0700);
  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_maxdbs(env, kMaxDbs);
  if (rc == 0) rc = mdb_env_set_mapsize(env, kStoreMapSizeBytes);
  // MDB_NOTLS: read transactions are not tied to threads (we open them freely).
  if (rc == 0) rc = mdb_env_open(env, db_dir.c_str(), MDB_NOTLS, 0600);
  if (rc != 0) {
    if (env) mdb_env_close(env);
    return make_error("store.open", "cannot open state database " + db_dir + ": " + mdb_strerror(rc));
  }
  return std::unique_ptr<Store>(new Store(env, state_dir));
}

Store::~Store() {
  if (env_) mdb_env_close(env_);
}

unsigned Store::dbi(std::string_view table) const {
  if (auto it = dbis_.find(table); it != dbis_.end()) return it->second;
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_, nullptr, 0, &txn) != 0) return 0;
  MDB_dbi h = 0;
  const std::string name(table);
  if (mdb_dbi_open(txn, name.c_str(), MDB_CREATE, &h) != 0) {
    mdb_txn_abort(txn);
    return 0;
  }
  if (mdb_txn_commit(txn) != 0) return 0;  // commit frees the txn even on failure
  dbis_.emplace(name, h);
  return h;
}

void Store::write(std::string_view table, const char* what,
                  const std::function<int(MDB_txn*, unsigned)>& op) {
  const unsigned h = dbi(table);
  MDB_txn* txn = nullptr;
  int rc = h ? mdb_txn_begin(env_, nullptr, 0, &txn) : MDB_BAD_DBI;
  if (rc == 0) {
    rc = op(txn, h);
    if (rc == 0) {
      rc = mdb_txn_commit(txn);  // durable before we return: nothing lost on kill -9
    } else {
      mdb_txn_abort(txn);
    }
  }
  if (rc != 0) {
    ++write_errors_;
    spdlog::error("state database {} in {} failed: {}", what, table, mdb_strerror(rc));
  }
}

void Store::put(std::string_view table, std::string_view key, ByteSpan value) {
  write(table, "write", [&](MDB_txn* txn, unsigned h) {
    MDB_val k = to_val(key), v = to_val(value);
    return mdb_put(txn, h, &k, &v, 0);
  });
}

void Store::del(std::string_view table, std::string_view key) {
  write(table, "delete", [&](MDB_txn* txn, unsigned h) {
    MDB_val k = to_val(key);
    const int rc = mdb_del(txn, h, &k, nullptr);
    return rc == MDB_NOTFOUND ? 0 : rc;  // already gone is fine
  });
}

void Store::clear(std::string_view table) {
  write(table, "clear", [](MDB_txn* txn, unsigned h) { return mdb_drop(txn, h, 0); });
}

std::optional<Bytes> Store::get(std::string_view table, std::string_view key) const {
  const unsigned h = dbi(table);
  if (!h) return std::nullopt;
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn) != 0) return std::nullopt;
  MDB_val k = to_val(key), v{};
  std::optional<Bytes> out;
  if (mdb_get(txn, h, &k, &v) == 0) {
    const auto* p = static_cast<const std::uint8_t*>(v.mv_data);
    out = Bytes(p, p + v.mv_size);
  }
  mdb_txn_abort(txn);
  return out;
}

void Store::for_each(std::string_view table,
                     const std::function<void(std::string_view, ByteSpan)>& fn) const {
  const unsigned h = dbi(table);
  if (!h) return;
  // Copy out first and end the transaction: the callback may write (a write
  // transaction must not nest inside our read one).
  std::vector<std::pair<std::string, Bytes>> rows;
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn) != 0) return;
  MDB_cursor* cur = nullptr;
  if (mdb_cursor_open(txn, h, &cur) == 0) {
    MDB_val k{}, v{};
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      const auto* p = static_cast<const std::uint8_t*>(v.mv_data);
      rows.emplace_back(std::string(static_cast<const char*>(k.mv_data), k.mv_size),
                        Bytes(p, p + v.mv_size));
    }
    mdb_cursor_close(cur);
  }
  mdb_txn_abort(txn);
  for (const auto& [k, v] : rows) fn(k, v);
}

// ---- identity --------------------------------------------------------------------

std::optional<StoredIdentity> Store::load_identity() const {
  auto seed = get(kIdentity, "node_seed");
  auto dh = get(kIdentity, "dh_secret");
  auto chain = get(kIdentity, "chain");
  auto root = get(kIdentity, "root_pub");
  auto name = get(kIdentity, "name");
  auto listen = get(kIdentity, "listen");
  std::optional<StoredIdentity> out;
  if (seed && dh && chain && root && seed->size() == 32 && dh->size() == 32 && root->size() == 32) {
    auto c = crypto::CertChain::decode(*chain);
    if (c) {
      out.emplace();
      std::memcpy(out->node_seed.data(), seed->data(), 32);
      std::memcpy(out->dh_secret.data(), dh->data(), 32);
      std::memcpy(out->root_pub.data(), root->data(), 32);
      out->chain = std::move(c.value());
      if (name) out->name = std::string(as_sv(*name));
      if (listen) out->listen = std::string(as_sv(*listen));
    }
  }
  if (seed) sodium_memzero(seed->data(), seed->size());
  if (dh) sodium_memzero(dh->data(), dh->size());
  return out;
}

void Store::save_identity(const StoredIdentity& id) {
  put(kIdentity, "node_seed", id.node_seed);
  put(kIdentity, "dh_secret", id.dh_secret);
  put(kIdentity, "root_pub", id.root_pub);
  put(kIdentity, "chain", id.chain.encode());
  put(kIdentity, "name", ByteSpan(reinterpret_cast<const std::uint8_t*>(id.name.data()), id.name.size()));
  put(kIdentity, "listen",
      ByteSpan(reinterpret_cast<const std::uint8_t*>(id.listen.data()), id.listen.size()));
}

void Store::clear_identity() { clear(kIdentity); }

NodeState Store::node_state() const {
  auto v = get(kAgent, "state");
  if (!v) return NodeState::none;
  const auto s = as_sv(*v);
  if (s == "enrolled") return NodeState::enrolled;
  if (s == "left") return NodeState::left;
  return NodeState::none;
}

void Store::set_node_state(NodeState s) {
  const std::string_view v = s == NodeState::enrolled ? "enrolled" : s == NodeState::left ? "left" : "none";
  put(kAgent, "state", ByteSpan(reinterpret_cast<const std::uint8_t*>(v.data()), v.size()));
}

void Store::save_locators(const std::vector<Locator>& locs) {
  ByteWriter w;
  w.u8(kRecordVersion);
  write_locators(w, locs);
  put(kAgent, "locators", w.bytes());
}

std::vector<Locator> Store::load_locators() const {
  std::vector<Locator> out;
  auto v = get(kAgent, "locators");
  if (!v) return out;
  ByteReader r(*v);
  if (r.u8() != kRecordVersion || !read_locators(r, out)) out.clear();
  return out;
}

// ---- attachments -----------------------------------------------------------------

Bytes encode_attachment(const dp::Attachment& a) {
  ByteWriter w;
  w.u8(kRecordVersion);
  w.u32(a.vni);
  w.u8(a.netns ? 1 : 0);
  w.str(a.netns.value_or(""));
  w.str(a.ifname);
  w.str(a.host_ifname);
  w.raw(a.mac);
  w.u16(static_cast<std::uint16_t>(a.ips.size()));
  for (const auto& p : a.ips) {
    write_ip(w, p.addr);
    w.u8(p.len);
  }
  return w.take();
}

std::optional<dp::Attachment> decode_attachment(ByteSpan b) {
  ByteReader r(b);
  if (r.u8() != kRecordVersion) return std::nullopt;
  dp::Attachment a;
  a.vni = r.u32();
  const bool has_netns = r.u8() != 0;
  std::string netns = r.str(kStrMax);
  if (has_netns) a.netns = std::move(netns);
  a.ifname = r.str(kStrMax);
  a.host_ifname = r.str(kStrMax);
  a.mac = r.arr<6>();
  const std::size_t n = r.u16();
  if (!r.ok() || n > kIpsMax) return std::nullopt;
  for (std::size_t i = 0; i < n && r.ok(); ++i) {
    IpPrefix p;
    p.addr = read_ip(r);
    p.len = r.u8();
    a.ips.push_back(p);
  }
  if (!r.at_end()) return std::nullopt;
  return a;
}

std::string attachment_key(const dp::Attachment& a) {
  return std::to_string(a.vni) + "/" + a.netns.value_or("") + "/" + a.ifname;
}

void Store::put_attachment(const dp::Attachment& a) {
  put(kAttachments, attachment_key(a), encode_attachment(a));
}

void Store::del_attachment(const dp::Attachment& a) { del(kAttachments, attachment_key(a)); }

std::vector<dp::Attachment> Store::attachments() const {
  std::vector<dp::Attachment> out;
  for_each(kAttachments, [&](std::string_view key, ByteSpan v) {
    if (auto a = decode_attachment(v)) {
      out.push_back(std::move(*a));
    } else {
      spdlog::warn("ignoring unreadable attachment record {}", key);
    }
  });
  return out;
}

// ---- routes ----------------------------------------------------------------------

Bytes encode_route(const mesh::RouteAnnouncement& r) {
  ByteWriter w;
  w.u8(kRecordVersion);
  w.u32(r.vni);
  write_ip(w, r.prefix.addr);
  w.u8(r.prefix.len);
  w.raw(r.next_hop_mac);
  return w.take();
}

std::optional<mesh::RouteAnnouncement> decode_route(ByteSpan b) {
  ByteReader r(b);
  if (r.u8() != kRecordVersion) return std::nullopt;
  mesh::RouteAnnouncement out;
  out.vni = r.u32();
  out.prefix.addr = read_ip(r);
  out.prefix.len = r.u8();
  out.next_hop_mac = r.arr<6>();
  if (!r.ok() || !r.at_end()) return std::nullopt;
  const bool v4 = out.prefix.addr.is_v4();
  if ((!v4 && !out.prefix.addr.is_v6()) || out.prefix.len > (v4 ? 32 : 128)) return std::nullopt;
  return out;
}

std::string route_key(const mesh::RouteAnnouncement& r) {
  return std::to_string(r.vni) + "/" + r.prefix.str();
}

void Store::put_route(const mesh::RouteAnnouncement& r) { put(kRoutes, route_key(r), encode_route(r)); }

void Store::del_route(const mesh::RouteAnnouncement& r) { del(kRoutes, route_key(r)); }

std::vector<mesh::RouteAnnouncement> Store::routes() const {
  std::vector<mesh::RouteAnnouncement> out;
  for_each(kRoutes, [&](std::string_view key, ByteSpan v) {
    if (auto r = decode_route(v)) {
      out.push_back(*r);
    } else {
      spdlog::warn("ignoring unreadable route record {}", key);
    }
  });
  return out;
}

// ---- contacts --------------------------------------------------------------------

void Store::put_contact(const StoredContact& c) {
  ByteWriter w;
  w.u8(kRecordVersion);
  w.raw(c.dh_pub);
  w.u8(c.alive ? 1 : 0);
  write_locators(w, c.locators);
  put(kContacts, as_sv(c.id), w.bytes());
}

void Store::del_contact(const crypto::NodeId& id) { del(kContacts, as_sv(id)); }

std::vector<StoredContact> Store::contacts() const {
  std::vector<StoredContact> out;
  for_each(kContacts, [&](std::string_view key, ByteSpan v) {
    if (key.size() != 32) return;
    ByteReader r(v);
    StoredContact c;
    std::memcpy(c.id.data(), key.data(), 32);
    if (r.u8() != kRecordVersion) return;
    c.dh_pub = r.arr<32>();
    c.alive = r.u8() != 0;
    if (!read_locators(r, c.locators) || !r.at_end()) return;
    out.push_back(std::move(c));
  });
  return out;
}

}  // namespace meshd::agent
