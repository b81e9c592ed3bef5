#include "crypto/keys.hpp"

#include <sodium.h>

namespace meshd::crypto {

Status init() {
  if (sodium_init() < 0) return make_error("crypto.init", "libsodium failed to initialise");
  return ok_status();
}

SigningKey SigningKey::generate(Random& rng) {
  Seed seed{};
  rng.fill(seed);
  SigningKey k = from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  return k;
}

SigningKey SigningKey::from_seed(const Seed& seed) {
  SigningKey k;
  k.seed_ = seed;
  crypto_sign_seed_keypair(k.pub_.data(), k.sk_.data(), k.seed_.data());
  return k;
}

SigningKey::SigningKey(const SigningKey& o) : pub_(o.pub_), seed_(o.seed_), sk_(o.sk_) {}

SigningKey& SigningKey::operator=(const SigningKey& o) {
  pub_ = o.pub_;
  seed_ = o.seed_;
  sk_ = o.sk_;
  return *this;
}

SigningKey::~SigningKey() {
  sodium_memzero(seed_.data(), seed_.size());
  sodium_memzero(sk_.data(), sk_.size());
}

Signature SigningKey::sign(ByteSpan msg) const {
  Signature sig{};
  crypto_sign_detached(sig.data(), nullptr, msg.data(), msg.size(), sk_.data());
  return sig;
}

bool verify(const PublicKey& signer, ByteSpan msg, const Signature& sig) {
  return crypto_sign_verify_detached(sig.data(), msg.data(), msg.size(), signer.data()) == 0;
}

DhKey DhKey::generate(Random& rng) {
  Seed sec{};
  rng.fill(sec);
  DhKey k = from_secret(sec);
  sodium_memzero(sec.data(), sec.size());
  return k;
}

DhKey DhKey::from_secret(const Seed& secret) {
  DhKey k;
  k.sec_ = secret;
  crypto_scalarmult_base(k.pub_.data(), k.sec_.data());
  return k;
}

DhKey::DhKey(const DhKey& o) : pub_(o.pub_), sec_(o.sec_) {}

DhKey& DhKey::operator=(const DhKey& o) {
  pub_ = o.pub_;
  sec_ = o.sec_;
  return *this;
}

DhKey::~DhKey() { sodium_memzero(sec_.data(), sec_.size()); }

std::string mesh_id(const PublicKey& root_pub) {
  std::array<std::uint8_t, 32> h{};
  crypto_generichash(h.data(), h.size(), root_pub.data(), root_pub.size(), nullptr, 0);
  return to_hex(ByteSpan(h.data(), 8));
}

std::string node_id_hex(const NodeId& id) { return to_hex(ByteSpan(id)); }

std::string node_id_short(const NodeId& id) { return to_hex(ByteSpan(id.data(), 6)); }

Result<NodeId> parse_node_id(std::string_view hex) {
  Bytes b;
  if (hex.size() != 64 || !from_hex(hex, b)) {
    return make_error("node_id.invalid", "a node id is 64 hex characters");
  }
  NodeId id{};
  std::memcpy(id.data(), b.data(), id.size());
  return id;
}

}  // namespace meshd::crypto
