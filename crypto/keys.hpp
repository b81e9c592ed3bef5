// Node identities (Ed25519), key agreement keys (X25519), mesh ids.
// Secrets are wiped on destruction.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "crypto/bytes.hpp"
#include "crypto/random.hpp"
#include "crypto/result.hpp"

namespace meshd::crypto {

using PublicKey = std::array<std::uint8_t, 32>;
using Signature = std::array<std::uint8_t, 64>;
using NodeId = PublicKey;  // a node is its Ed25519 public key
using Seed = std::array<std::uint8_t, 32>;

struct NodeIdHash {
  std::size_t operator()(const NodeId& id) const noexcept {
    std::size_t h;
    static_assert(sizeof(h) <= 32);
    __builtin_memcpy(&h, id.data(), sizeof(h));
    return h;
  }
};

// Must be called once before any other crypto function (wraps sodium_init).
Status init();

class SigningKey {
 public:
  static SigningKey generate(Random& rng);
  static SigningKey from_seed(const Seed& seed);
  SigningKey(const SigningKey&);
  SigningKey& operator=(const SigningKey&);
  ~SigningKey();
  const PublicKey& public_key() const { return pub_; }
  const Seed& seed() const { return seed_; }  // the stored secret
  Signature sign(ByteSpan msg) const;

 private:
  SigningKey() = default;
  PublicKey pub_{};
  Seed seed_{};
  std::array<std::uint8_t, 64> sk_{};
};

// Constant-time signature check; false on any mismatch.
bool verify(const PublicKey& signer, ByteSpan msg, const Signature& sig);

class DhKey {
 public:
  static DhKey generate(Random& rng);
  static DhKey from_secret(const Seed& secret);
  DhKey(const DhKey&);
  DhKey& operator=(const DhKey&);
  ~DhKey();
  const PublicKey& public_key() const { return pub_; }
  const Seed& secret() const { return sec_; }

 private:
  DhKey() = default;
  PublicKey pub_{};
  Seed sec_{};
};

// Mesh id: first 8 bytes of BLAKE2b-256(root public key), 16 hex chars.
std::string mesh_id(const PublicKey& root_pub);
// Node id as 64 hex chars, and a short 12-hex form for humans.
std::string node_id_hex(const NodeId& id);
std::string node_id_short(const NodeId& id);
Result<NodeId> parse_node_id(std::string_view hex);

}  // namespace meshd::crypto
