#include "crypto/cert.hpp"

#include <algorithm>

namespace meshd::crypto {

namespace {

// Kind byte after the version: keeps an enrollment signature from ever verifying as a
// node certificate (and vice versa) even if field layouts happened to line up.
constexpr std::uint8_t kKindEnrollment = 1;
constexpr std::uint8_t kKindNode = 2;
constexpr std::uint8_t kChainVersion = 1;
// A node's clock may run a little ahead of ours; tolerate that much on issued_s.
constexpr std::uint64_t kClockSkewMax_s = 300;
// Upper bound of one encoded certificate: header, keys, two-field scope, signature.
constexpr std::size_t kCertBytesMax = 512 + 3 * kScopeVnisMax;

Error format_error(const char* what) { return make_error("cert.format", what); }

void write_scope(ByteWriter& w, const Scope& s) {
  w.u8(s.all_vnis ? 1 : 0);
  w.u16(static_cast<std::uint16_t>(s.vnis.size()));
  for (std::uint32_t v : s.vnis) w.u24(v);
}

// Canonical only: flag 0/1, list empty when all_vnis, sorted, unique, each 1..kVniMax.
bool read_scope(ByteReader& r, Scope& s) {
  std::uint8_t all = r.u8();
  std::uint16_t n = r.u16();
  if (!r.ok() || all > 1 || n > kScopeVnisMax || (all == 1 && n != 0)) return false;
  if (r.remaining() < static_cast<std::size_t>(n) * 3) return false;
  s.all_vnis = all == 1;
  s.vnis.clear();
  s.vnis.reserve(n);
  for (std::uint16_t i = 0; i < n; ++i) {
    std::uint32_t v = r.u24();
    if (v == 0 || v > kVniMax) return false;
    if (!s.vnis.empty() && v <= s.vnis.back()) return false;
    s.vnis.push_back(v);
  }
  return r.ok();
}

Scope normalized(Scope s) {
  std::sort(s.vnis.begin(), s.vnis.end());
  s.vnis.erase(std::unique(s.vnis.begin(), s.vnis.end()), s.vnis.end());
  s.vnis.erase(std::remove_if(s.vnis.begin(), s.vnis.end(), [](std::uint32_t v) { return v == 0 || v > kVniMax; }),
               s.vnis.end());
  if (s.vnis.size() > kScopeVnisMax) s.vnis.resize(kScopeVnisMax);
  if (s.all_vnis) s.vnis.clear();
  return s;
}

bool printable(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

}  // namespace

bool Scope::allows(std::uint32_t vni) const {
  if (vni == 0 || vni > kVniMax) return false;
  return all_vnis || std::binary_search(vnis.begin(), vnis.end(), vni);
}

bool Scope::within(const Scope& outer) const {
  if (outer.all_vnis) return true;
  if (all_vnis) return false;
  return std::all_of(vnis.begin(), vnis.end(), [&](std::uint32_t v) { return outer.allows(v); });
}

// ---- EnrollmentCert ----

Bytes EnrollmentCert::signed_bytes() const {
  ByteWriter w;
  w.u8(kVersion);
  w.u8(kKindEnrollment);
  w.raw(enroll_pub);
  w.raw(token_id);
  write_scope(w, scope);
  w.u64(not_before_s);
  w.u64(not_after_s);
  w.u32(uses);
  return w.take();
}

Bytes EnrollmentCert::encode() const {
  Bytes b = signed_bytes();
  b.insert(b.end(), sig.begin(), sig.end());
  return b;
}

Result<EnrollmentCert> EnrollmentCert::decode(ByteSpan b) {
  if (b.size() > kCertBytesMax) return format_error("enrollment certificate too large");
  ByteReader r(b);
  EnrollmentCert c;
  if (r.u8() != kVersion || r.u8() != kKindEnrollment || !r.ok()) {
    return format_error("unknown enrollment certificate version");
  }
  c.enroll_pub = r.arr<32>();
  c.token_id = r.arr<16>();
  if (!read_scope(r, c.scope)) return format_error("bad enrollment scope");
  c.not_before_s = r.u64();
  c.not_after_s = r.u64();
  c.uses = r.u32();
  c.sig = r.arr<64>();
  if (!r.at_end()) return format_error("truncated or trailing bytes in enrollment certificate");
  if (c.not_before_s > c.not_after_s || c.uses == 0) return format_error("bad enrollment validity");
  return c;
}

// ---- NodeCert ----

Bytes NodeCert::signed_bytes() const {
  ByteWriter w;
  w.u8(kVersion);
  w.u8(kKindNode);
  w.raw(node_id);
  w.raw(dh_pub);
  w.str(std::string_view(name).substr(0, kNameMax));
  w.raw(token_id);
  write_scope(w, scope);
  w.u64(issued_s);
  w.u64(not_after_s);
  return w.take();
}

Bytes NodeCert::encode() const {
  Bytes b = signed_bytes();
  b.insert(b.end(), sig.begin(), sig.end());
  return b;
}

Result<NodeCert> NodeCert::decode(ByteSpan b) {
  if (b.size() > kCertBytesMax) return format_error("node certificate too large");
  ByteReader r(b);
  NodeCert c;
  if (r.u8() != kVersion || r.u8() != kKindNode || !r.ok()) {
    return format_error("unknown node certificate version");
  }
  c.node_id = r.arr<32>();
  c.dh_pub = r.arr<32>();
  c.name = r.str(kNameMax);
  if (!r.ok() || !printable(c.name)) return format_error("bad node name");
  c.token_id = r.arr<16>();
  if (!read_scope(r, c.scope)) return format_error("bad node scope");
  c.issued_s = r.u64();
  c.not_after_s = r.u64();
  c.sig = r.arr<64>();
  if (!r.at_end()) return format_error("truncated or trailing bytes in node certificate");
  if (c.issued_s > c.not_after_s) return format_error("bad node certificate validity");
  return c;
}

// ---- CertChain ----

Bytes CertChain::encode() const {
  ByteWriter w;
  w.u8(kChainVersion);
  w.blob(enrollment.encode());
  w.blob(node.encode());
  return w.take();
}

Result<CertChain> CertChain::decode(ByteSpan b) {
  ByteReader r(b);
  if (r.u8() != kChainVersion || !r.ok()) return format_error("unknown certificate chain version");
  ByteSpan e = r.blob(kCertBytesMax);
  ByteSpan n = r.blob(kCertBytesMax);
  if (!r.at_end()) return format_error("truncated or trailing bytes in certificate chain");
  auto ec = EnrollmentCert::decode(e);
  if (!ec) return ec.error();
  auto nc = NodeCert::decode(n);
  if (!nc) return nc.error();
  CertChain c;
  c.enrollment = std::move(ec).value();
  c.node = std::move(nc).value();
  return c;
}

EnrollmentCert issue_enrollment(const SigningKey& root, const PublicKey& enroll_pub,
                                const TokenId& token_id, const Scope& scope,
                                std::uint64_t not_before_s, std::uint64_t not_after_s,
                                std::uint32_t uses) {
  EnrollmentCert c;
  c.enroll_pub = enroll_pub;
  c.token_id = token_id;
  c.scope = normalized(scope);
  c.not_before_s = not_before_s;
  c.not_after_s = std::max(not_before_s, not_after_s);
  c.uses = std::max<std::uint32_t>(uses, 1);
  c.sig = root.sign(c.signed_bytes());
  return c;
}

NodeCert issue_node_cert(const SigningKey& enroll_key, const EnrollmentCert& enrollment,
                         const NodeId& node_id, const PublicKey& dh_pub, std::string name,
                         std::uint64_t issued_s, std::uint64_t not_after_s) {
  NodeCert c;
  c.node_id = node_id;
  c.dh_pub = dh_pub;
  c.name = std::move(name);
  if (c.name.size() > kNameMax) c.name.resize(kNameMax);
  c.token_id = enrollment.token_id;
  c.scope = enrollment.scope;
  c.issued_s = issued_s;
  c.not_after_s = std::max(issued_s, not_after_s);
  c.sig = enroll_key.sign(c.signed_bytes());
  return c;
}

Status verify_chain(const PublicKey& root_pub, const CertChain& chain, std::uint64_t now_s) {
  const EnrollmentCert& e = chain.enrollment;
  if (!verify(root_pub, e.signed_bytes(), e.sig)) {
    return make_error("cert.bad_root_signature", "enrollment certificate not signed by this mesh's root");
  }
  return verify_chain_below_root(chain, now_s);
}

Status verify_chain_below_root(const CertChain& chain, std::uint64_t now_s) {
  const EnrollmentCert& e = chain.enrollment;
  const NodeCert& n = chain.node;
  if (!verify(e.enroll_pub, n.signed_bytes(), n.sig)) {
    return make_error("cert.bad_node_signature", "node certificate not signed by its enrollment key");
  }
  if (n.token_id != e.token_id) {
    return make_error("cert.token_mismatch", "node certificate names a different token");
  }
  if (!n.scope.within(e.scope)) {
    return make_error("cert.scope", "node certificate scope exceeds the enrollment scope");
  }
  if (n.issued_s < e.not_before_s) {
    return make_error("cert.not_yet_valid", "node certificate issued before its enrollment was valid");
  }
  if (n.issued_s > e.not_after_s) {
    return make_error("cert.expired", "node certificate issued after its enrollment expired");
  }
  return check_chain_times(chain, now_s);
}

Status check_chain_times(const CertChain& chain, std::uint64_t now_s) {
  const NodeCert& n = chain.node;
  if (n.issued_s > now_s + kClockSkewMax_s) {
    return make_error("cert.not_yet_valid", "node certificate issued in the future");
  }
  if (now_s > n.not_after_s) return make_error("cert.expired", "node certificate expired");
  return ok_status();
}

}  // namespace meshd::crypto
