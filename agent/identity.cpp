#include "agent/identity.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/locators.hpp"

namespace meshd::agent {

namespace {

constexpr std::size_t kRootKeyFileMax = 256;

Status write_root_key(const std::string& path, const crypto::Seed& seed) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return make_error("init.io", "cannot create " + path + ": " + std::strerror(errno));
  std::string text = to_hex(seed) + "\n";
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  sodium_memzero(text.data(), text.size());
  ::close(fd);
  if (!ok) return make_error("init.io", "cannot write " + path);
  return ok_status();
}

Result<crypto::SigningKey> read_root_key(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return make_error("token.no_root",
                        "this node does not hold the mesh root key (" + path +
                            "); run this on the node where the mesh was initialised");
    }
    return make_error("token.io", "cannot read " + path + ": " + std::strerror(errno));
  }
  char buf[kRootKeyFileMax];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  std::string_view text(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  Bytes seed;
  const bool ok = from_hex(text, seed) && seed.size() == 32;
  sodium_memzero(buf, sizeof buf);
  if (!ok) {
    sodium_memzero(seed.data(), seed.size());
    return make_error("token.io", path + " is not a meshd root key");
  }
  crypto::Seed s{};
  std::memcpy(s.data(), seed.data(), 32);
  sodium_memzero(seed.data(), seed.size());
  auto key = crypto::SigningKey::from_seed(s);
  sodium_memzero(s.data(), s.size());
  return key;
}

bool file_exists(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

std::string root_key_path(const std::string& state_dir) { return state_dir + "/root.key"; }

Result<crypto::SigningKey> load_root_key(const std::string& state_dir) {
  return read_root_key(root_key_path(state_dir));
}

std::string default_node_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "node";
  std::string name;
  for (const char* p = host; *p && name.size() < crypto::kNameMax; ++p) {
    if (*p > ' ' && *p <= '~') name.push_back(*p);
  }
  return name.empty() ? "node" : name;
}

Result<std::string> init_mesh(Store& store, const InitOptions& opt, crypto::Random& rng,
                              std::uint64_t now_s) {
  const std::string key_path = root_key_path(store.state_dir());
  if (store.node_state() == NodeState::enrolled || store.load_identity() || file_exists(key_path)) {
    return make_error("init.exists", store.state_dir() +
                                         " already holds a meshd node; use a new --state directory");
  }
  const auto root = crypto::SigningKey::generate(rng);
  if (auto s = write_root_key(key_path, root.seed()); !s) return s.error();

  // The root enrolls this node like any other: a one-use enrollment key that signs
  // the node certificate, then is forgotten.
  const auto enroll = crypto::SigningKey::generate(rng);
  crypto::TokenId token_id{};
  rng.fill(token_id);
  crypto::Scope all;
  all.all_vnis = true;
  const auto ecert = crypto::issue_enrollment(root, enroll.public_key(), token_id, all, now_s,
                                              now_s + kSelfEnrollmentTtl_s, 1);
  const auto node_key = crypto::SigningKey::generate(rng);
  const auto dh_key = crypto::DhKey::generate(rng);
  StoredIdentity id;
  id.node_seed = node_key.seed();
  id.dh_secret = dh_key.secret();
  id.root_pub = root.public_key();
  id.chain.enrollment = ecert;
  id.chain.node = crypto::issue_node_cert(enroll, ecert, node_key.public_key(), dh_key.public_key(),
                                          opt.name, now_s, now_s + kNodeCertLifetime_s);
  id.name = opt.name;
  id.listen = opt.listen.str();
  store.clear("members");
  store.clear("mappings");
  store.clear("meta");
  store.clear("attachments");
  store.clear("contacts");
  store.save_identity(id);
  store.save_locators(advertised_locators(opt.listen));
  store.set_node_state(NodeState::enrolled);
  return crypto::mesh_id(root.public_key());
}

Result<std::string> create_token_text(Store& store, const crypto::Scope& scope, std::uint64_t ttl_s,
                                      std::uint32_t uses, crypto::Random& rng, std::uint64_t now_s) {
  auto root = read_root_key(root_key_path(store.state_dir()));
  if (!root) return root.error();
  auto id = store.load_identity();
  if (!id || store.node_state() != NodeState::enrolled) {
    return make_error("token.not_enrolled", store.state_dir() + " holds no enrolled node");
  }
  if (id->root_pub != root->public_key()) {
    return make_error("token.io", "root.key does not belong to this node's mesh");
  }
  std::vector<crypto::BootstrapPeer> peers;
  crypto::BootstrapPeer self;
  self.node_id = id->chain.node_id();
  self.dh_pub = id->chain.node.dh_pub;
  self.locators = store.load_locators();
  if (self.locators.empty()) {
    if (auto l = Locator::parse(id->listen)) self.locators = advertised_locators(*l);
  }
  if (self.locators.size() > crypto::kTokenLocatorsMax) self.locators.resize(crypto::kTokenLocatorsMax);
  if (!self.locators.empty()) peers.push_back(std::move(self));
  for (auto& c : store.contacts()) {
    if (peers.size() > kTokenOtherPeersMax) break;
    if (!c.alive || c.locators.empty() || c.id == id->chain.node_id()) continue;
    crypto::BootstrapPeer p;
    p.node_id = c.id;
    p.dh_pub = c.dh_pub;
    p.locators = std::move(c.locators);
    if (p.locators.size() > crypto::kTokenLocatorsMax) p.locators.resize(crypto::kTokenLocatorsMax);
    peers.push_back(std::move(p));
  }
  if (peers.empty()) {
    return make_error("token.io", "this node has no usable underlay address to put in the token; "
                                  "set one with --listen at init");
  }
  const auto token = crypto::create_token(*root, scope, now_s, ttl_s, uses, std::move(peers), rng);
  return crypto::encode_token(*root, token);
}

StoredIdentity enroll_with_token(const crypto::Token& token, const std::string& name,
                                 const std::string& listen, crypto::Random& rng,
                                 std::uint64_t now_s) {
  const auto enroll = token.enroll_key();
  // The node cert must be issued within the enrollment's validity even if our clock
  // is a little behind the root's.
  const std::uint64_t issued_s = std::max(now_s, token.enrollment.not_before_s);
  const auto node_key = crypto::SigningKey::generate(rng);
  const auto dh_key = crypto::DhKey::generate(rng);
  StoredIdentity id;
  id.node_seed = node_key.seed();
  id.dh_secret = dh_key.secret();
  id.root_pub = token.root_pub;
  id.chain.enrollment = token.enrollment;
  id.chain.node = crypto::issue_node_cert(enroll, token.enrollment, node_key.public_key(),
                                          dh_key.public_key(), name, issued_s,
                                          issued_s + kNodeCertLifetime_s);
  id.name = name;
  id.listen = listen;
  return id;
}

crypto::LocalIdentity local_identity(const StoredIdentity& id) {
  return crypto::LocalIdentity{crypto::SigningKey::from_seed(id.node_seed),
                               crypto::DhKey::from_secret(id.dh_secret), id.chain, id.root_pub};
}

}  // namespace meshd::agent
