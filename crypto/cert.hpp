// Certificates: root -> enrollment -> node (DESIGN.md, Trust).
//
// The root key signs an EnrollmentCert for a one-time enrollment key (that is what a
// join token carries). The joining node makes its own keys and signs its NodeCert with
// the enrollment key. Every member verifies the whole chain on each handshake.
//
// Encoding: fixed little-endian binary (crypto/bytes.hpp), versioned, canonical, so
// the signed bytes are exactly the encoded fields before the signature.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "crypto/bytes.hpp"
#include "crypto/keys.hpp"
#include "crypto/result.hpp"

namespace meshd::crypto {

using TokenId = std::array<std::uint8_t, 16>;

inline constexpr std::uint32_t kVniMax = 0xFFFFFF;     // VNIs are 24-bit
inline constexpr std::size_t kScopeVnisMax = 4096;     // bound on a scope's VNI list
inline constexpr std::size_t kNameMax = 64;            // node name bytes

struct Scope {
  bool all_vnis = false;
  std::vector<std::uint32_t> vnis;  // sorted, unique, each 1..kVniMax
  bool allows(std::uint32_t vni) const;
  // True if every VNI this scope allows is allowed by `outer`.
  bool within(const Scope& outer) const;
  bool operator==(const Scope&) const = default;
};

struct EnrollmentCert {
  static constexpr std::uint8_t kVersion = 1;
  PublicKey enroll_pub{};
  TokenId token_id{};
  Scope scope;
  std::uint64_t not_before_s = 0;  // unix seconds
  std::uint64_t not_after_s = 0;   // joins after this are refused
  std::uint32_t uses = 1;          // how many nodes may enroll with this token
  Signature sig{};                 // root signature over signed_bytes()
  bool operator==(const EnrollmentCert&) const = default;

  Bytes signed_bytes() const;
  Bytes encode() const;
  // Errors: "cert.format" (truncated, trailing bytes, bad version, bounds).
  static Result<EnrollmentCert> decode(ByteSpan b);
};

struct NodeCert {
  static constexpr std::uint8_t kVersion = 1;
  NodeId node_id{};     // Ed25519 public key of the node
  PublicKey dh_pub{};   // X25519 static key used in the Noise handshake
  std::string name;     // <= kNameMax bytes, printable
  TokenId token_id{};   // copied from the enrollment cert
  Scope scope;          // must be within the enrollment scope
  std::uint64_t issued_s = 0;
  std::uint64_t not_after_s = 0;
  Signature sig{};      // enrollment-key signature over signed_bytes()
  bool operator==(const NodeCert&) const = default;

  Bytes signed_bytes() const;
  Bytes encode() const;
  static Result<NodeCert> decode(ByteSpan b);
};

struct CertChain {
  EnrollmentCert enrollment;
  NodeCert node;
  Bytes encode() const;
  static Result<CertChain> decode(ByteSpan b);
  const NodeId& node_id() const { return node.node_id; }
  bool allows_vni(std::uint32_t vni) const { return node.scope.allows(vni); }
  bool operator==(const CertChain&) const = default;
};

// Root signs a new enrollment cert.
EnrollmentCert issue_enrollment(const SigningKey& root, const PublicKey& enroll_pub,
                                const TokenId& token_id, const Scope& scope,
                                std::uint64_t not_before_s, std::uint64_t not_after_s,
                                std::uint32_t uses);

// The enrollment key signs a node cert; scope defaults to the enrollment's scope.
NodeCert issue_node_cert(const SigningKey& enroll_key, const EnrollmentCert& enrollment,
                         const NodeId& node_id, const PublicKey& dh_pub, std::string name,
                         std::uint64_t issued_s, std::uint64_t not_after_s);

// Verifies root -> enrollment -> node signatures, node scope within enrollment scope,
// node cert not expired at now_s and issued within the enrollment's validity.
// Enrollment expiry itself is NOT checked here (it limits joins, not membership).
// Errors: "cert.bad_root_signature", "cert.bad_node_signature", "cert.scope",
// "cert.expired", "cert.not_yet_valid", "cert.token_mismatch".
Status verify_chain(const PublicKey& root_pub, const CertChain& chain, std::uint64_t now_s);

// verify_chain without the root's signature over the enrollment cert: for callers
// that verified that enrollment cert (same encoded bytes) before and remember it.
Status verify_chain_below_root(const CertChain& chain, std::uint64_t now_s);

// Only the time-dependent part of verify_chain (node cert issued in the future, node
// cert expired): for chains whose signatures were verified earlier and cached.
Status check_chain_times(const CertChain& chain, std::uint64_t now_s);

}  // namespace meshd::crypto
