#include "crypto/noise.hpp"

#include <sodium.h>

#include <cstring>

namespace meshd::crypto {

namespace {

constexpr std::string_view kProtocolName = "Noise_IK_25519_ChaChaPoly_BLAKE2b";
constexpr std::string_view kPrologueLabel = "meshd v1";
constexpr std::size_t kBlake2bBlockLen = 128;
// Bound on a handshake payload (a certificate chain) so lengths never overflow.
constexpr std::size_t kNoisePayloadMax = 65535;

using Hash = std::array<std::uint8_t, kNoiseHashLen>;

Hash blake2b(ByteSpan a, ByteSpan b = {}) {
  Hash out{};
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, out.size());
  crypto_generichash_update(&st, a.data(), a.size());
  crypto_generichash_update(&st, b.data(), b.size());
  crypto_generichash_final(&st, out.data(), out.size());
  sodium_memzero(&st, sizeof st);
  return out;
}

// HMAC (RFC 2104) over BLAKE2b-512 with its 128-byte block, as the Noise spec defines.
Hash hmac(ByteSpan key, ByteSpan data1, ByteSpan data2 = {}) {
  std::array<std::uint8_t, kBlake2bBlockLen> block{};
  if (key.size() > kBlake2bBlockLen) {
    Hash kh = blake2b(key);
    std::memcpy(block.data(), kh.data(), kh.size());
  } else {
    std::memcpy(block.data(), key.data(), key.size());
  }
  std::array<std::uint8_t, kBlake2bBlockLen> pad{};
  for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x36;
  Hash inner{};
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, inner.size());
  crypto_generichash_update(&st, pad.data(), pad.size());
  crypto_generichash_update(&st, data1.data(), data1.size());
  crypto_generichash_update(&st, data2.data(), data2.size());
  crypto_generichash_final(&st, inner.data(), inner.size());
  for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = block[i] ^ 0x5c;
  Hash out = blake2b(pad, inner);
  sodium_memzero(block.data(), block.size());
  sodium_memzero(pad.data(), pad.size());
  sodium_memzero(inner.data(), inner.size());
  sodium_memzero(&st, sizeof st);
  return out;
}

// HKDF as in the Noise spec, two outputs.
void hkdf2(const Hash& ck, ByteSpan ikm, Hash& out1, Hash& out2) {
  Hash temp = hmac(ck, ikm);
  const std::uint8_t one = 1, two = 2;
  out1 = hmac(temp, ByteSpan(&one, 1));
  out2 = hmac(temp, out1, ByteSpan(&two, 1));
  sodium_memzero(temp.data(), temp.size());
}

}  // namespace

Bytes noise_prologue(const PublicKey& root_pub) {
  // Sized once and filled by memcpy: GCC 12 -O2 misreports vector::insert here.
  Bytes p(kPrologueLabel.size() + root_pub.size());
  std::memcpy(p.data(), kPrologueLabel.data(), kPrologueLabel.size());
  std::memcpy(p.data() + kPrologueLabel.size(), root_pub.data(), root_pub.size());
  return p;
}

TransportKeys::~TransportKeys() {
  sodium_memzero(send.data(), send.size());
  sodium_memzero(recv.data(), recv.size());
}

NoiseHandshake::~NoiseHandshake() { wipe(); }

void NoiseHandshake::wipe() {
  sodium_memzero(ck_.data(), ck_.size());
  sodium_memzero(k_.data(), k_.size());
  sodium_memzero(s_sec_.data(), s_sec_.size());
  sodium_memzero(e_sec_.data(), e_sec_.size());
}

NoiseHandshake NoiseHandshake::initiator(const DhKey& s, const PublicKey& rs, ByteSpan prologue) {
  NoiseHandshake hs;
  hs.role_ = Role::initiator;
  hs.state_ = State::initiator_ready;
  // The name fits in HASHLEN, so h = name zero-padded.
  std::memcpy(hs.h_.data(), kProtocolName.data(), kProtocolName.size());
  hs.ck_ = hs.h_;
  hs.mix_hash(prologue);
  hs.s_sec_ = s.secret();
  hs.s_pub_ = s.public_key();
  hs.rs_ = rs;
  hs.mix_hash(rs);  // pre-message <- s
  return hs;
}

NoiseHandshake NoiseHandshake::responder(const DhKey& s, ByteSpan prologue) {
  NoiseHandshake hs;
  hs.role_ = Role::responder;
  hs.state_ = State::responder_ready;
  std::memcpy(hs.h_.data(), kProtocolName.data(), kProtocolName.size());
  hs.ck_ = hs.h_;
  hs.mix_hash(prologue);
  hs.s_sec_ = s.secret();
  hs.s_pub_ = s.public_key();
  hs.mix_hash(hs.s_pub_);
  return hs;
}

void NoiseHandshake::mix_hash(ByteSpan data) { h_ = blake2b(h_, data); }

void NoiseHandshake::mix_key(ByteSpan ikm) {
  Hash ck{}, temp_k{};
  hkdf2(ck_, ikm, ck, temp_k);
  ck_ = ck;
  std::memcpy(k_.data(), temp_k.data(), k_.size());  // truncate HASHLEN to 32
  has_key_ = true;
  n_ = 0;
  sodium_memzero(ck.data(), ck.size());
  sodium_memzero(temp_k.data(), temp_k.size());
}

bool NoiseHandshake::mix_dh(const Seed& sec, const PublicKey& pub) {
  std::array<std::uint8_t, kNoiseDhLen> shared{};
  // libsodium refuses low-order points (all-zero output): a contributory-behaviour check.
  bool ok = crypto_scalarmult(shared.data(), sec.data(), pub.data()) == 0;
  if (ok) mix_key(shared);
  sodium_memzero(shared.data(), shared.size());
  return ok;
}

void NoiseHandshake::encrypt_and_hash(ByteSpan plain, Bytes& out) {
  std::size_t at = out.size();
  if (has_key_) {
    out.resize(at + plain.size() + kAeadTagLen);
    aead_seal_sodium(k_, counter_nonce(n_++), h_, plain, out.data() + at);
  } else {
    out.insert(out.end(), plain.begin(), plain.end());
  }
  mix_hash(ByteSpan(out.data() + at, out.size() - at));
}

bool NoiseHandshake::decrypt_and_hash(ByteSpan cipher, Bytes& out) {
  if (has_key_) {
    if (cipher.size() < kAeadTagLen) return false;
    out.resize(cipher.size() - kAeadTagLen);
    if (!aead_open_sodium(k_, counter_nonce(n_++), h_, cipher, out.data())) return false;
  } else {
    out.assign(cipher.begin(), cipher.end());
  }
  mix_hash(cipher);
  return true;
}

Error NoiseHandshake::fail(const char* code, const char* msg) {
  state_ = State::failed;
  wipe();
  return make_error(code, msg);
}

Result<Bytes> NoiseHandshake::create_init(ByteSpan payload, Random& rng) {
  if (state_ != State::initiator_ready) return fail("noise.state", "create_init out of order");
  if (payload.size() > kNoisePayloadMax) return fail("noise.format", "payload too large");
  rng.fill(e_sec_);
  crypto_scalarmult_base(e_pub_.data(), e_sec_.data());
  Bytes msg(e_pub_.begin(), e_pub_.end());
  mix_hash(e_pub_);                                     // e
  if (!mix_dh(e_sec_, rs_)) return fail("noise.dh", "bad remote static key");  // es
  encrypt_and_hash(s_pub_, msg);                        // s
  if (!mix_dh(s_sec_, rs_)) return fail("noise.dh", "bad remote static key");  // ss
  encrypt_and_hash(payload, msg);
  state_ = State::init_sent;
  return msg;
}

Result<Bytes> NoiseHandshake::consume_init(ByteSpan msg) {
  if (state_ != State::responder_ready) return fail("noise.state", "consume_init out of order");
  if (msg.size() < kNoiseInitFixedLen + kAeadTagLen || msg.size() > kNoiseInitFixedLen + kAeadTagLen + kNoisePayloadMax) {
    return fail("noise.format", "handshake init has a bad length");
  }
  std::memcpy(re_.data(), msg.data(), kNoiseDhLen);
  mix_hash(re_);                                                        // e
  if (!mix_dh(s_sec_, re_)) return fail("noise.dh", "bad ephemeral key");  // es
  Bytes rs;
  if (!decrypt_and_hash(msg.subspan(kNoiseDhLen, kNoiseDhLen + kAeadTagLen), rs)) {
    return fail("noise.decrypt", "handshake init static key does not decrypt");
  }
  std::memcpy(rs_.data(), rs.data(), rs_.size());
  if (!mix_dh(s_sec_, rs_)) return fail("noise.dh", "bad remote static key");  // ss
  Bytes payload;
  if (!decrypt_and_hash(msg.subspan(kNoiseInitFixedLen), payload)) {
    return fail("noise.decrypt", "handshake init payload does not decrypt");
  }
  state_ = State::init_consumed;
  return payload;
}

Result<Bytes> NoiseHandshake::create_resp(ByteSpan payload, Random& rng) {
  if (state_ != State::init_consumed) return fail("noise.state", "create_resp out of order");
  if (payload.size() > kNoisePayloadMax) return fail("noise.format", "payload too large");
  rng.fill(e_sec_);
  crypto_scalarmult_base(e_pub_.data(), e_sec_.data());
  Bytes msg(e_pub_.begin(), e_pub_.end());
  mix_hash(e_pub_);                                                        // e
  if (!mix_dh(e_sec_, re_)) return fail("noise.dh", "bad ephemeral key");  // ee
  if (!mix_dh(e_sec_, rs_)) return fail("noise.dh", "bad remote static key");  // se
  encrypt_and_hash(payload, msg);
  state_ = State::done;
  return msg;
}

Result<Bytes> NoiseHandshake::consume_resp(ByteSpan msg) {
  if (state_ != State::init_sent) return fail("noise.state", "consume_resp out of order");
  if (msg.size() < kNoiseRespFixedLen + kAeadTagLen || msg.size() > kNoiseRespFixedLen + kAeadTagLen + kNoisePayloadMax) {
    return fail("noise.format", "handshake response has a bad length");
  }
  // A failed response must not spoil the handshake: a forged packet could otherwise
  // cancel a genuine exchange. Work on a copy and commit only on success.
  NoiseHandshake next = *this;
  std::memcpy(next.re_.data(), msg.data(), kNoiseDhLen);
  next.mix_hash(next.re_);                                                   // e
  if (!next.mix_dh(next.e_sec_, next.re_)) return make_error("noise.dh", "bad ephemeral key");  // ee
  if (!next.mix_dh(next.s_sec_, next.re_)) return make_error("noise.dh", "bad ephemeral key");  // se
  Bytes payload;
  if (!next.decrypt_and_hash(msg.subspan(kNoiseRespFixedLen), payload)) {
    return make_error("noise.decrypt", "handshake response payload does not decrypt");
  }
  next.state_ = State::done;
  *this = next;
  return payload;
}

Result<TransportKeys> NoiseHandshake::split() const {
  if (state_ != State::done) return make_error("noise.state", "split before the handshake finished");
  Hash k1{}, k2{};
  hkdf2(ck_, {}, k1, k2);
  TransportKeys keys;
  const Hash& send = role_ == Role::initiator ? k1 : k2;
  const Hash& recv = role_ == Role::initiator ? k2 : k1;
  std::memcpy(keys.send.data(), send.data(), keys.send.size());
  std::memcpy(keys.recv.data(), recv.data(), keys.recv.size());
  sodium_memzero(k1.data(), k1.size());
  sodium_memzero(k2.data(), k2.size());
  return keys;
}

}  // namespace meshd::crypto
