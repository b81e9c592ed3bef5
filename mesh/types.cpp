#include "mesh/types.hpp"

#include <cassert>

namespace meshd::mesh {

namespace {

// Domain separation: a signature over one kind of record can never be replayed as
// another kind (or as a certificate, which signs its own fixed layout).
constexpr std::string_view kNodeRecordDomain = "meshd node-record v1";
constexpr std::string_view kMappingDomain = "meshd endpoint-mapping v1";
constexpr std::string_view kRevocationDomain = "meshd revocation v1";
constexpr std::string_view kAliveDomain = "meshd incarnation v1";

void put_ip(ByteWriter& w, const IpAddr& ip) {
  w.u8(ip.family);
  w.raw(ip.bytes);
}

}  // namespace

Bytes alive_proof_bytes(const NodeId& node, std::uint64_t inc) {
  ByteWriter w;
  w.str(kAliveDomain);
  w.raw(node);
  w.u64(inc);
  return w.take();
}

crypto::Signature sign_alive(const crypto::SigningKey& node_key, std::uint64_t inc) {
  return node_key.sign(alive_proof_bytes(node_key.public_key(), inc));
}

bool verify_alive_signature(const NodeId& node, std::uint64_t inc, const crypto::Signature& sig) {
  return crypto::verify(node, alive_proof_bytes(node, inc), sig);
}

Bytes NodeRecord::signed_bytes() const {
  ByteWriter w;
  w.str(kNodeRecordDomain);
  Bytes chain_bytes = chain.encode();
  w.u32(static_cast<std::uint32_t>(chain_bytes.size()));
  w.raw(chain_bytes);
  w.u8(static_cast<std::uint8_t>(locators.size()));
  for (const Locator& l : locators) {
    put_ip(w, l.ip);
    w.u16(l.port);
  }
  w.u32(static_cast<std::uint32_t>(vnis.size()));
  for (std::uint32_t v : vnis) w.u32(v);
  w.u64(version);
  // Appended only when there are routes: records without any sign the same bytes as
  // before routes existed (stored records keep verifying).
  if (!routes.empty()) {
    w.u8(static_cast<std::uint8_t>(routes.size()));
    for (const RouteAnnouncement& r : routes) {
      w.u32(r.vni);
      put_ip(w, r.prefix.addr);
      w.u8(r.prefix.len);
      w.raw(r.next_hop_mac);
    }
  }
  return w.take();
}

void NodeRecord::sign(const crypto::SigningKey& node_key) { sig = node_key.sign(signed_bytes()); }

bool NodeRecord::verify_signature() const {
  if (locators.size() > kLocatorsMax || vnis.size() > kVnisServedMax ||
      routes.size() > kRoutesPerNodeMax) {
    return false;
  }
  return crypto::verify(id(), signed_bytes(), sig);
}

Bytes EndpointMapping::signed_bytes() const {
  ByteWriter w;
  w.str(kMappingDomain);
  w.u32(vni);
  w.raw(mac);
  w.u8(static_cast<std::uint8_t>(ips.size()));
  for (const IpAddr& ip : ips) put_ip(w, ip);
  w.raw(owner);
  w.u64(seq);
  w.u8(removed ? 1 : 0);
  return w.take();
}

void EndpointMapping::sign(const crypto::SigningKey& owner_key) {
  sig = owner_key.sign(signed_bytes());
}

bool EndpointMapping::verify_signature() const {
  if (ips.size() > kEndpointIpsMax) return false;
  return crypto::verify(owner, signed_bytes(), sig);
}

Bytes Revocation::signed_bytes() const {
  ByteWriter w;
  w.str(kRevocationDomain);
  w.raw(node);
  w.raw(token_id);
  w.u64(issued_s);
  w.str(reason);  // u16 length prefix: the layout has exactly one parse
  return w.take();
}

void Revocation::sign(const crypto::SigningKey& root) {
  // A reason over the bound would make a revocation nobody accepts.
  assert(reason.size() <= kRevocationReasonMax);
  sig = root.sign(signed_bytes());
}

bool Revocation::verify(const crypto::PublicKey& root_pub) const {
  if (reason.size() > kRevocationReasonMax) return false;
  return crypto::verify(root_pub, signed_bytes(), sig);
}

}  // namespace meshd::mesh

namespace meshd::mesh {

std::string lookup_key_str(const LookupKey& k) {
  return std::to_string(k.vni) + "/" + (k.is_ip() ? k.ip.str() : mac_str(k.mac));
}

}  // namespace meshd::mesh
