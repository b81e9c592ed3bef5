// Join tokens: one printable line, "meshd1." + base64url(body || root signature).
//
// Body: version, root public key, enrollment cert, the enrollment secret seed, and
// bootstrap peers. The root signs everything except the secret seed; the seed is
// checked by deriving the enrollment public key from it. So a flipped bit anywhere
// makes parse() fail.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/cert.hpp"
#include "crypto/keys.hpp"

namespace meshd::crypto {

inline constexpr std::size_t kTokenBootstrapMax = 16;
inline constexpr std::size_t kTokenLocatorsMax = 8;
inline constexpr std::size_t kTokenTextMax = 16384;

struct BootstrapPeer {
  NodeId node_id{};
  PublicKey dh_pub{};
  std::vector<Locator> locators;  // 1..kTokenLocatorsMax
};

struct Token {
  PublicKey root_pub{};
  EnrollmentCert enrollment;
  Seed enroll_seed{};  // secret: lets the holder sign exactly one node cert chain
  std::vector<BootstrapPeer> bootstrap;

  std::string mesh_id() const { return crypto::mesh_id(root_pub); }
  SigningKey enroll_key() const { return SigningKey::from_seed(enroll_seed); }
};

// Creates a token (new random enrollment key and token id).
Token create_token(const SigningKey& root, const Scope& scope, std::uint64_t now_s,
                   std::uint64_t ttl_s, std::uint32_t uses,
                   std::vector<BootstrapPeer> bootstrap, Random& rng);

std::string encode_token(const SigningKey& root, const Token& t);

// Parses and verifies a token's signatures and internal consistency (not expiry:
// the caller compares enrollment.not_after_s with its clock and says "expired").
// Errors: "token.format" (not a meshd token / bad encoding / truncated),
// "token.signature" (tampered), "token.key_mismatch" (secret does not match).
Result<Token> parse_token(std::string_view text);

}  // namespace meshd::crypto
