// Making identities: a new mesh (init), join tokens, enrollment from a token.
// These run in the CLI process, not in the agent: LMDB lets them share the store.
#pragma once

#include <cstdint>
#include <string>

#include "agent/store.hpp"
#include "crypto/random.hpp"
#include "crypto/token.hpp"
#include "crypto/tunnel.hpp"

namespace meshd::agent {

inline constexpr std::uint64_t kNodeCertLifetime_s = 10ull * 365 * 24 * 3600;
inline constexpr std::uint64_t kSelfEnrollmentTtl_s = 3600;
inline constexpr std::size_t kTokenOtherPeersMax = 4;  // bootstrap peers besides this node
inline constexpr std::uint16_t kDefaultPort = 51900;
inline constexpr const char* kDefaultListen = "0.0.0.0:51900";

struct InitOptions {
  std::string name;
  Locator listen;
};

// Creates DIR/root.key (0600) and a self-enrolled node. Errors: "init.exists" (bad
// input: DIR already holds a node or a root key), "init.io".
Result<std::string> init_mesh(Store& store, const InitOptions& opt, crypto::Random& rng,
                              std::uint64_t now_s);

// Errors: "token.no_root" (bad input: no DIR/root.key), "token.not_enrolled",
// "token.io".
Result<std::string> create_token_text(Store& store, const crypto::Scope& scope, std::uint64_t ttl_s,
                                      std::uint32_t uses, crypto::Random& rng, std::uint64_t now_s);

// Fresh node keys and a node certificate signed with the token's enrollment key.
StoredIdentity enroll_with_token(const crypto::Token& token, const std::string& name,
                                 const std::string& listen, crypto::Random& rng,
                                 std::uint64_t now_s);

// DIR/root.key. Errors: "token.no_root" (bad input: this node does not hold it),
// "token.io".
Result<crypto::SigningKey> load_root_key(const std::string& state_dir);

crypto::LocalIdentity local_identity(const StoredIdentity& id);

std::string root_key_path(const std::string& state_dir);
std::string default_node_name();

}  // namespace meshd::agent
