// Records the mesh distributes: node records (gossiped to all) and endpoint
// mappings (signed by the owning node, learned by nodes serving the same VNI).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/cert.hpp"
#include "crypto/keys.hpp"

namespace meshd::mesh {

using crypto::NodeId;

inline constexpr std::size_t kLocatorsMax = 8;
inline constexpr std::size_t kVnisServedMax = 4096;
inline constexpr std::size_t kEndpointIpsMax = 16;
inline constexpr std::size_t kRevocationReasonMax = 128;  // bytes

inline constexpr std::size_t kRoutesPerNodeMax = 64;

// A route this node announces (issue 4): packets of VNI `vni` for `prefix` go to this
// node's endpoint `next_hop_mac` (a gateway whose kernel forwards them on). Routes ride
// in the node record: every member of the VNI needs the VNI's whole table for a
// longest-prefix match (a DHT lookup cannot do one), routes are few, and the record is
// already signed, versioned (the record version is the routes' sequence number),
// gossiped, compared by push-pull and persisted. Like EVPN type-5 routes to a VRF.
struct RouteAnnouncement {
  std::uint32_t vni = 0;
  IpPrefix prefix;
  MacAddr next_hop_mac{};
  auto operator<=>(const RouteAnnouncement&) const = default;
};

// A node's own description, signed by its node key. Newer `version` wins.
struct NodeRecord {
  crypto::CertChain chain;
  std::vector<Locator> locators;
  std::vector<std::uint32_t> vnis;  // VNIs with endpoints on this node (sorted)
  std::vector<RouteAnnouncement> routes;  // sorted, unique; bound: kRoutesPerNodeMax
  std::uint64_t version = 0;        // bumped by the owner on every change
  crypto::Signature sig{};

  const NodeId& id() const { return chain.node_id(); }
  Bytes signed_bytes() const;
  void sign(const crypto::SigningKey& node_key);
  bool verify_signature() const;
  bool operator==(const NodeRecord&) const = default;  // field by field, signature included
};

// (VNI, MAC) -> owner, with the endpoint's IPs. Signed by the owner; `seq` orders
// changes (MAC mobility); `removed` is a tombstone that wins over lower seqs.
struct EndpointMapping {
  std::uint32_t vni = 0;
  MacAddr mac{};
  std::vector<IpAddr> ips;
  NodeId owner{};
  std::uint64_t seq = 0;
  bool removed = false;
  crypto::Signature sig{};

  Bytes signed_bytes() const;
  void sign(const crypto::SigningKey& owner_key);
  bool verify_signature() const;  // against `owner`
};

// What the mapping system resolves (issue 4): (VNI, MAC) or (VNI, IP). An IP key's
// answer is the endpoint mapping that holds the IP. Ordered, so tables replay.
struct LookupKey {
  std::uint32_t vni = 0;
  MacAddr mac{};  // MAC key (ip.family == 0)
  IpAddr ip;      // IP key
  bool is_ip() const { return ip.family != 0; }
  static LookupKey of_mac(std::uint32_t vni, const MacAddr& mac) { return {vni, mac, {}}; }
  static LookupKey of_ip(std::uint32_t vni, const IpAddr& ip) { return {vni, {}, ip}; }
  auto operator<=>(const LookupKey&) const = default;
};
std::string lookup_key_str(const LookupKey& k);  // "100/02:..:01" or "100/10.0.0.1"

// "This node is no longer trusted", signed by the mesh root key (only the operator
// holding root.key can make one). Gossiped to every member, kept forever (bounded by
// MeshConfig::revocations_max) and checked before any record, mapping or join from
// `node` is accepted. A revocation never expires: re-admission needs a new node key.
struct Revocation {
  NodeId node{};
  // The token the node enrolled with (zero = unknown). A revoked node keeps counting
  // against its token's uses: revoking must not free a slot for a copy of the token.
  crypto::TokenId token_id{};
  std::uint64_t issued_s = 0;  // unix seconds; informative (revocations do not expire)
  std::string reason;          // operator's note; at most kRevocationReasonMax bytes
  crypto::Signature sig{};

  Bytes signed_bytes() const;
  void sign(const crypto::SigningKey& root);
  // False on a bad signature, a signature by any key but `root_pub`, or a reason
  // longer than kRevocationReasonMax (callers must bound the reason before sign()).
  bool verify(const crypto::PublicKey& root_pub) const;
  bool operator==(const Revocation&) const = default;
};

// A node's proof that it reached incarnation `inc` (it refuted a suspicion, restarted
// or left): its signature over these bytes. Incarnation 0 needs none.
Bytes alive_proof_bytes(const NodeId& node, std::uint64_t inc);
crypto::Signature sign_alive(const crypto::SigningKey& node_key, std::uint64_t inc);
bool verify_alive_signature(const NodeId& node, std::uint64_t inc, const crypto::Signature& sig);

enum class MemberState : std::uint8_t { alive, suspect, failed, left };
const char* member_state_name(MemberState s);

struct MemberInfo {
  NodeRecord record;
  MemberState state = MemberState::alive;
  std::uint64_t incarnation = 0;
  std::uint64_t state_since_ms = 0;
  const NodeId& id() const { return record.id(); }
};

}  // namespace meshd::mesh
