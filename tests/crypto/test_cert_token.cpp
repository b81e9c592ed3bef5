// Certificates and join tokens: round trips, chain verification errors, bit flips.
#include <doctest/doctest.h>

#include "crypto/cert.hpp"
#include "crypto/test_support.hpp"
#include "crypto/token.hpp"

using namespace meshd;
using namespace meshd::crypto;
using namespace meshd::crypto::test;

namespace {

std::vector<BootstrapPeer> sample_bootstrap(Random& rng) {
  BootstrapPeer p;
  rng.fill(p.node_id);
  rng.fill(p.dh_pub);
  p.locators = {*Locator::parse("192.0.2.1:51900"), *Locator::parse("[2001:db8::1]:51900")};
  return {p};
}

}  // namespace

TEST_CASE("cert: scope semantics") {
  Scope all{true, {}};
  Scope some{false, {10, 20}};
  Scope one{false, {20}};
  CHECK(all.allows(1));
  CHECK(all.allows(kVniMax));
  CHECK_FALSE(all.allows(0));
  CHECK_FALSE(all.allows(kVniMax + 1));
  CHECK(some.allows(10));
  CHECK_FALSE(some.allows(15));
  CHECK(one.within(some));
  CHECK(some.within(all));
  CHECK_FALSE(some.within(one));
  CHECK_FALSE(all.within(some));
}

TEST_CASE("cert: encode/decode round trip and verify_chain") {
  REQUIRE(init().ok());
  SeededRandomForTest rng(1);
  Mesh mesh(rng);
  LocalIdentity id = make_identity(mesh, rng, "node-a");
  Bytes enc = id.chain.encode();
  auto back = CertChain::decode(enc);
  REQUIRE(back.ok());
  CHECK(back->encode() == enc);
  CHECK(back->node.name == "node-a");
  CHECK(back->allows_vni(20));
  CHECK_FALSE(back->allows_vni(21));
  CHECK(verify_chain(mesh.root.public_key(), *back, kNow_s).ok());

  // Wrong root.
  SigningKey other = SigningKey::generate(rng);
  CHECK(verify_chain(other.public_key(), id.chain, kNow_s).error().code == "cert.bad_root_signature");
  // Expired and not yet valid.
  CHECK(verify_chain(mesh.root.public_key(), id.chain, id.chain.node.not_after_s + 1).error().code ==
        "cert.expired");
  CHECK(verify_chain(mesh.root.public_key(), id.chain, id.chain.node.issued_s - 10000).error().code ==
        "cert.not_yet_valid");
  // Node cert signed by a different enrollment key.
  SigningKey rogue = SigningKey::generate(rng);
  CertChain c2 = id.chain;
  c2.node = issue_node_cert(rogue, id.chain.enrollment, id.chain.node.node_id, id.chain.node.dh_pub, "x",
                            kNow_s, kNow_s + 1000);
  CHECK(verify_chain(mesh.root.public_key(), c2, kNow_s).error().code == "cert.bad_node_signature");
  // Scope wider than the enrollment's, signed by the genuine enrollment key.
  SigningKey enroll = SigningKey::generate(rng);
  TokenId tid{};
  EnrollmentCert ec = issue_enrollment(mesh.root, enroll.public_key(), tid, Scope{false, {30, 10, 10}},
                                       kNow_s - 10, kNow_s + 10, 1);
  CHECK(ec.scope.vnis == std::vector<std::uint32_t>{10, 30});  // normalised
  NodeCert nc = issue_node_cert(enroll, ec, id.chain.node.node_id, id.chain.node.dh_pub, "n", kNow_s,
                                kNow_s + 1000);
  CHECK(verify_chain(mesh.root.public_key(), CertChain{ec, nc}, kNow_s).ok());
  nc.scope = Scope{true, {}};
  nc.sig = enroll.sign(nc.signed_bytes());
  CHECK(verify_chain(mesh.root.public_key(), CertChain{ec, nc}, kNow_s).error().code == "cert.scope");
  nc.scope = ec.scope;
  nc.token_id[0] ^= 1;
  nc.sig = enroll.sign(nc.signed_bytes());
  CHECK(verify_chain(mesh.root.public_key(), CertChain{ec, nc}, kNow_s).error().code == "cert.token_mismatch");
  // Issued after the enrollment expired.
  NodeCert late = issue_node_cert(enroll, ec, id.chain.node.node_id, id.chain.node.dh_pub, "n", kNow_s + 11,
                                  kNow_s + 1000);
  CHECK(verify_chain(mesh.root.public_key(), CertChain{ec, late}, kNow_s + 20).error().code == "cert.expired");
}

TEST_CASE("cert: decode rejects bad versions, trailing bytes, bounds, VNI 0 and > 0xFFFFFF") {
  REQUIRE(init().ok());
  SeededRandomForTest rng(2);
  Mesh mesh(rng);
  LocalIdentity id = make_identity(mesh, rng, "n");
  Bytes e = id.chain.enrollment.encode();
  CHECK(EnrollmentCert::decode(e).ok());
  Bytes bad = e;
  bad[0] = 2;
  CHECK(EnrollmentCert::decode(bad).error().code == "cert.format");
  bad = e;
  bad.push_back(0);
  CHECK_FALSE(EnrollmentCert::decode(bad).ok());
  bad = e;
  bad.pop_back();
  CHECK_FALSE(EnrollmentCert::decode(bad).ok());
  CHECK_FALSE(EnrollmentCert::decode({}).ok());
  CHECK_FALSE(NodeCert::decode(e).ok());  // kind byte differs
  CHECK_FALSE(EnrollmentCert::decode(id.chain.node.encode()).ok());

  // Scope list: offset of the scope inside an enrollment cert = 2 + 32 + 16.
  auto with_vni = [&](std::uint32_t v) {
    EnrollmentCert c = id.chain.enrollment;
    c.scope = Scope{false, {v}};
    return c.encode();
  };
  CHECK(EnrollmentCert::decode(with_vni(1)).ok());
  CHECK(EnrollmentCert::decode(with_vni(kVniMax)).ok());
  CHECK_FALSE(EnrollmentCert::decode(with_vni(0)).ok());
  {
    Bytes b = with_vni(kVniMax);
    // u24 cannot hold more than 0xFFFFFF; an unsorted or duplicate list is rejected instead.
    EnrollmentCert c = id.chain.enrollment;
    c.scope = Scope{false, {5, 5}};
    CHECK_FALSE(EnrollmentCert::decode(c.encode()).ok());
    c.scope = Scope{false, {6, 5}};
    CHECK_FALSE(EnrollmentCert::decode(c.encode()).ok());
    c.scope = Scope{true, {5}};
    CHECK_FALSE(EnrollmentCert::decode(c.encode()).ok());
    (void)b;
  }
  {
    // A list longer than kScopeVnisMax (encode writes what it is given; decode refuses).
    EnrollmentCert c = id.chain.enrollment;
    c.scope.vnis.clear();
    for (std::uint32_t v = 1; v <= kScopeVnisMax + 1; ++v) c.scope.vnis.push_back(v);
    CHECK_FALSE(EnrollmentCert::decode(c.encode()).ok());
    c.scope.vnis.pop_back();
    CHECK(EnrollmentCert::decode(c.encode()).ok());
    // A count that claims more entries than are there (scope starts at offset 2 + 32 + 16).
    Bytes b = id.chain.enrollment.encode();
    b[51] = 0xA0;
    b[52] = 0x0F;  // 4000
    CHECK_FALSE(EnrollmentCert::decode(b).ok());
  }
  // Non-printable name.
  NodeCert n = id.chain.node;
  n.name = "bad\nname";
  CHECK_FALSE(NodeCert::decode(n.encode()).ok());
  // Chain level.
  Bytes c = id.chain.encode();
  Bytes c2 = c;
  c2.push_back(1);
  CHECK_FALSE(CertChain::decode(c2).ok());
  c2 = c;
  c2[0] = 9;
  CHECK_FALSE(CertChain::decode(c2).ok());
}

TEST_CASE("cert: every single bit flip of a chain is rejected") {
  REQUIRE(init().ok());
  SeededRandomForTest rng(3);
  Mesh mesh(rng);
  LocalIdentity id = make_identity(mesh, rng, "flip");
  Bytes enc = id.chain.encode();
  std::size_t rejected = 0;
  for (std::size_t bit = 0; bit < enc.size() * 8; ++bit) {
    Bytes b = enc;
    b[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    auto c = CertChain::decode(b);
    if (!c.ok() || !verify_chain(mesh.root.public_key(), *c, kNow_s).ok()) ++rejected;
  }
  CHECK(rejected == enc.size() * 8);
}

TEST_CASE("token: create, encode, parse") {
  REQUIRE(init().ok());
  SeededRandomForTest rng(4);
  Mesh mesh(rng);
  Token t = create_token(mesh.root, mesh.scope, kNow_s, 3600, 5, sample_bootstrap(rng), rng);
  std::string text = encode_token(mesh.root, t);
  CHECK(text.rfind("meshd1.", 0) == 0);
  CHECK(text.find_first_of("=+/ \n") == std::string::npos);
  auto p = parse_token("  \n" + text + "\r\n\t ");
  REQUIRE(p.ok());
  CHECK(p->root_pub == mesh.root.public_key());
  CHECK(p->mesh_id() == mesh_id(mesh.root.public_key()));
  CHECK(p->enrollment.encode() == t.enrollment.encode());
  CHECK(p->enrollment.uses == 5);
  CHECK(p->enrollment.not_after_s == kNow_s + 3600);
  CHECK(p->enroll_seed == t.enroll_seed);
  CHECK(p->enroll_key().public_key() == p->enrollment.enroll_pub);
  REQUIRE(p->bootstrap.size() == 1);
  CHECK(p->bootstrap[0].locators == t.bootstrap[0].locators);
  CHECK(p->bootstrap[0].node_id == t.bootstrap[0].node_id);
  // A node enrolled from the token verifies.
  SigningKey node = SigningKey::generate(rng);
  DhKey dh = DhKey::generate(rng);
  NodeCert nc = issue_node_cert(p->enroll_key(), p->enrollment, node.public_key(), dh.public_key(), "j", kNow_s,
                                kNow_s + 1000);
  CHECK(verify_chain(p->root_pub, CertChain{p->enrollment, nc}, kNow_s).ok());

  CHECK(parse_token("").error().code == "token.format");
  CHECK(parse_token("meshd1.").error().code == "token.format");
  CHECK(parse_token("  meshd1.  ").error().code == "token.format");
  CHECK(parse_token("meshd2." + text.substr(7)).error().code == "token.format");
  CHECK(parse_token(text + "=").error().code == "token.format");
  CHECK(parse_token(text.substr(0, text.size() - 4)).error().code == "token.format");
  CHECK(parse_token(std::string(kTokenTextMax + 1, 'a')).error().code == "token.format");
  // A token signed by another root for this root's public key.
  SigningKey other = SigningKey::generate(rng);
  Token forged = t;
  std::string ftext = encode_token(other, forged);
  auto fp = parse_token(ftext);
  REQUIRE_FALSE(fp.ok());  // enrollment signed by mesh.root, token root = other
  CHECK(fp.error().code == "token.signature");
  // Seed that does not match.
  Token wrong = t;
  wrong.enroll_seed[0] ^= 1;
  CHECK(parse_token(encode_token(mesh.root, wrong)).error().code == "token.key_mismatch");
}

TEST_CASE("token: every bit flip, text-level and body-level, is rejected") {
  REQUIRE(init().ok());
  SeededRandomForTest rng(5);
  Mesh mesh(rng);
  Token t = create_token(mesh.root, mesh.scope, kNow_s, 3600, 1, sample_bootstrap(rng), rng);
  std::string text = encode_token(mesh.root, t);
  REQUIRE(parse_token(text).ok());
  std::size_t rejected = 0;
  for (std::size_t bit = 0; bit < text.size() * 8; ++bit) {
    std::string s = text;
    s[bit / 8] = static_cast<char>(s[bit / 8] ^ (1 << (bit % 8)));
    if (!parse_token(s).ok()) { ++rejected; } else { MESSAGE("accepted flip at char " << bit / 8 << " of " << text.size() << " bit " << bit % 8 << " -> " << s[bit / 8]); }
  }
  CHECK(rejected == text.size() * 8);

  Bytes body(text.size());
  std::size_t len = 0;
  REQUIRE(sodium_base642bin(body.data(), body.size(), text.data() + 7, text.size() - 7, nullptr, &len, nullptr,
                            sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0);
  body.resize(len);
  rejected = 0;
  for (std::size_t bit = 0; bit < body.size() * 8; ++bit) {
    Bytes b = body;
    b[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    std::string enc(sodium_base64_encoded_len(b.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
    sodium_bin2base64(enc.data(), enc.size(), b.data(), b.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    enc.resize(enc.size() - 1);
    if (!parse_token("meshd1." + enc).ok()) ++rejected;
  }
  CHECK(rejected == body.size() * 8);
}
