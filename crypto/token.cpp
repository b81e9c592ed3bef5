#include "crypto/token.hpp"

#include <sodium.h>

#include <algorithm>

namespace meshd::crypto {

namespace {

constexpr std::string_view kPrefix = "meshd1.";
constexpr std::uint8_t kTokenVersion = 1;
// Domain separation: a root signature over a token can never pass as one over a cert.
constexpr std::string_view kSigContext = "meshd token v1";
constexpr std::size_t kEnrollmentBytesMax = 16384;

Error format_error(const char* what) { return make_error("token.format", what); }

void write_locator(ByteWriter& w, const Locator& l) {
  w.u8(l.ip.family);
  w.raw(ByteSpan(l.ip.bytes.data(), l.ip.is_v4() ? 4 : 16));
  w.u16(l.port);
}

bool read_locator(ByteReader& r, Locator& l) {
  std::uint8_t fam = r.u8();
  if (!r.ok() || (fam != 4 && fam != 6)) return false;
  l.ip = IpAddr{};
  l.ip.family = fam;
  ByteSpan a = r.raw(fam == 4 ? 4 : 16);
  if (!r.ok()) return false;
  std::memcpy(l.ip.bytes.data(), a.data(), a.size());
  l.port = r.u16();
  return r.ok() && l.port != 0;
}

// Everything the root signs, in order.
Bytes signed_part(const PublicKey& root_pub, const Token& t) {
  ByteWriter w;
  w.u8(kTokenVersion);
  w.raw(root_pub);
  w.blob(t.enrollment.encode());
  std::size_t nb = std::min(t.bootstrap.size(), kTokenBootstrapMax);
  w.u8(static_cast<std::uint8_t>(nb));
  for (std::size_t i = 0; i < nb; ++i) {
    const BootstrapPeer& p = t.bootstrap[i];
    w.raw(p.node_id);
    w.raw(p.dh_pub);
    std::size_t nl = std::min(p.locators.size(), kTokenLocatorsMax);
    w.u8(static_cast<std::uint8_t>(nl));
    for (std::size_t j = 0; j < nl; ++j) write_locator(w, p.locators[j]);
  }
  return w.take();
}

Bytes sig_message(ByteSpan signed_bytes) {
  Bytes m(kSigContext.size() + signed_bytes.size());
  std::memcpy(m.data(), kSigContext.data(), kSigContext.size());
  if (!signed_bytes.empty()) std::memcpy(m.data() + kSigContext.size(), signed_bytes.data(), signed_bytes.size());
  return m;
}

// libsodium 1.0.18's decoder also maps some non-ASCII bytes (0xDF) onto '_': check the
// alphabet ourselves so each token has exactly one spelling.
bool is_base64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

Token create_token(const SigningKey& root, const Scope& scope, std::uint64_t now_s,
                   std::uint64_t ttl_s, std::uint32_t uses,
                   std::vector<BootstrapPeer> bootstrap, Random& rng) {
  Token t;
  t.root_pub = root.public_key();
  rng.fill(t.enroll_seed);
  SigningKey enroll = SigningKey::from_seed(t.enroll_seed);
  TokenId id{};
  rng.fill(id);
  t.enrollment = issue_enrollment(root, enroll.public_key(), id, scope, now_s, now_s + ttl_s, uses);
  t.bootstrap = std::move(bootstrap);
  return t;
}

std::string encode_token(const SigningKey& root, const Token& t) {
  Bytes body = signed_part(root.public_key(), t);
  Signature sig = root.sign(sig_message(body));
  body.insert(body.end(), t.enroll_seed.begin(), t.enroll_seed.end());
  body.insert(body.end(), sig.begin(), sig.end());
  std::string out(kPrefix);
  std::size_t b64_len = sodium_base64_encoded_len(body.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  std::string b64(b64_len, '\0');
  sodium_bin2base64(b64.data(), b64.size(), body.data(), body.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  b64.resize(b64_len - 1);  // drop the NUL libsodium writes
  sodium_memzero(body.data(), body.size());  // it held the enrollment seed
  out += b64;
  return out;
}

Result<Token> parse_token(std::string_view text) {
  if (text.size() > kTokenTextMax) return format_error("token too long");
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  if (text.substr(0, kPrefix.size()) != kPrefix) return format_error("not a meshd join token (expected 'meshd1.')");
  text.remove_prefix(kPrefix.size());

  if (text.empty() || !std::all_of(text.begin(), text.end(), is_base64url)) return format_error("token is not valid base64url");
  Bytes body(text.size());  // base64 decodes to fewer bytes than characters
  std::size_t body_len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(body.data(), body.size(), text.data(), text.size(), nullptr, &body_len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size()) {
    return format_error("token is not valid base64url");
  }
  body.resize(body_len);

  ByteReader r(body);
  Token t;
  if (r.u8() != kTokenVersion || !r.ok()) return format_error("unknown token version");
  t.root_pub = r.arr<32>();
  ByteSpan ec = r.blob(kEnrollmentBytesMax);
  if (!r.ok()) return format_error("truncated token");
  auto enr = EnrollmentCert::decode(ec);
  if (!enr) return format_error("bad enrollment certificate in token");
  t.enrollment = std::move(enr).value();
  std::uint8_t nb = r.u8();
  if (!r.ok() || nb > kTokenBootstrapMax) return format_error("bad bootstrap list");
  for (std::uint8_t i = 0; i < nb; ++i) {
    BootstrapPeer p;
    p.node_id = r.arr<32>();
    p.dh_pub = r.arr<32>();
    std::uint8_t nl = r.u8();
    if (!r.ok() || nl == 0 || nl > kTokenLocatorsMax) return format_error("bad bootstrap locators");
    for (std::uint8_t j = 0; j < nl; ++j) {
      Locator l;
      if (!read_locator(r, l)) return format_error("bad bootstrap locator");
      p.locators.push_back(l);
    }
    t.bootstrap.push_back(std::move(p));
  }
  if (!r.ok()) return format_error("truncated token");
  std::size_t signed_len = body.size() - r.remaining();
  t.enroll_seed = r.arr<32>();
  Signature sig = r.arr<64>();
  if (!r.at_end()) return format_error("truncated token or trailing bytes");

  bool ok = verify(t.root_pub, sig_message(ByteSpan(body.data(), signed_len)), sig) &&
            verify(t.root_pub, t.enrollment.signed_bytes(), t.enrollment.sig);
  sodium_memzero(body.data(), body.size());
  if (!ok) return make_error("token.signature", "token signature does not verify (tampered or corrupted)");
  if (SigningKey::from_seed(t.enroll_seed).public_key() != t.enrollment.enroll_pub) {
    return make_error("token.key_mismatch", "token's enrollment secret does not match its certificate");
  }
  return t;
}

}  // namespace meshd::crypto
