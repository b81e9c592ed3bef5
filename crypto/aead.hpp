// Transport AEADs, each in two implementations that must agree byte for byte:
//   ChaCha20-Poly1305 (IETF, RFC 8439): libsodium (handshake, tests, reference) and
//     OpenSSL libcrypto EVP (per-packet path; several times faster on this machine,
//     DESIGN.md "Performance facts").
//   AES-256-GCM (96-bit IV, 128-bit tag): OpenSSL EVP (per-packet path) and libsodium
//     (reference; only where the CPU has AES-NI + PCLMUL, aes_gcm_hw_available()).
// Both take the same 32-byte key, 12-byte nonce and append a 16-byte tag, so the
// transport packet format does not depend on the algorithm the handshake negotiated.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "crypto/bytes.hpp"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace meshd::crypto {

inline constexpr std::size_t kAeadKeyLen = 32;
inline constexpr std::size_t kAeadNonceLen = 12;
inline constexpr std::size_t kAeadTagLen = 16;

using AeadKey = std::array<std::uint8_t, kAeadKeyLen>;

// Transport AEAD negotiated in the handshake (crypto/handshake_wire.hpp). The values are
// wire values: bit (value - 1) of the initiator's offer mask, the responder's choice byte.
enum class AeadAlg : std::uint8_t { chacha20_poly1305 = 1, aes256_gcm = 2 };
inline constexpr AeadAlg kAeadAlgs[] = {AeadAlg::chacha20_poly1305, AeadAlg::aes256_gcm};

// "chacha20-poly1305" / "aes-256-gcm" (the names parse_cipher_list accepts).
std::string_view aead_alg_name(AeadAlg alg);
// libsodium's check (AES-NI and PCLMUL): AES-GCM is fast and constant-time here. OpenSSL
// implements AES-256-GCM without them too, only slower. Calls sodium_init if needed.
bool aes_gcm_hw_available();
using AeadNonce = std::array<std::uint8_t, kAeadNonceLen>;

// Noise / WireGuard nonce: 4 zero bytes then the 64-bit counter, little-endian.
AeadNonce counter_nonce(std::uint64_t counter);

// libsodium one-shot. `out` must hold plain.size() + kAeadTagLen bytes (ciphertext then
// tag); out may alias plain exactly.
void aead_seal_sodium(const AeadKey& key, const AeadNonce& nonce, ByteSpan ad, ByteSpan plain,
                      std::uint8_t* out);
// `in` is ciphertext || tag; writes in.size() - kAeadTagLen bytes. False on a bad tag or
// short input (out is then unspecified).
bool aead_open_sodium(const AeadKey& key, const AeadNonce& nonce, ByteSpan ad, ByteSpan in,
                      std::uint8_t* out);
// libsodium AES-256-GCM, same conventions. Both return false (and write nothing) when
// !aes_gcm_hw_available(); open also on a bad tag or short input.
bool aes256gcm_seal_sodium(const AeadKey& key, const AeadNonce& nonce, ByteSpan ad, ByteSpan plain,
                           std::uint8_t* out);
bool aes256gcm_open_sodium(const AeadKey& key, const AeadNonce& nonce, ByteSpan ad, ByteSpan in,
                           std::uint8_t* out);

// OpenSSL cipher context bound to one key, one direction and one algorithm, set up once,
// reused for every packet (no allocation per packet). Not copyable; movable. Not
// thread-safe: one thread uses one AeadCipher at a time (Session keeps one per thread
// slot). valid() is false if OpenSSL could not set it up (out of memory).
//
// Per packet it calls the provider's cipher functions directly (provider-cipher(7): the
// dispatch table of the implementation EVP would use, looked up once per process). The
// EVP wrappers cost ~40 % of a 1,400-byte AES-GCM seal here: every IV change asks the
// context for its IV length and every tag goes through EVP_CIPHER_CTX_ctrl, both
// OSSL_PARAM lookups by string (bench/aead_bench: BM_openssl_* against BM_evp_*). If
// the table cannot be found (another provider, an unexpected OpenSSL) it uses EVP.
class AeadCipher {
 public:
  enum class Dir { seal, open };
  AeadCipher() = default;
  AeadCipher(const AeadKey& key, Dir dir, AeadAlg alg = AeadAlg::chacha20_poly1305);
  ~AeadCipher();
  AeadCipher(AeadCipher&& o) noexcept;
  AeadCipher& operator=(AeadCipher&& o) noexcept;
  AeadCipher(const AeadCipher&) = delete;
  AeadCipher& operator=(const AeadCipher&) = delete;

  bool valid() const { return ctx_ != nullptr || pctx_ != nullptr; }
  // True when packets go through the provider's functions rather than EVP.
  bool direct() const { return pctx_ != nullptr; }
  // Forces the EVP path (for tests and benchmarks comparing the two).
  static AeadCipher evp_only(const AeadKey& key, Dir dir, AeadAlg alg);
  AeadAlg alg() const { return alg_; }
  // Encrypts buf[0..len) in place and writes the tag to buf[len..len+16).
  bool seal_in_place(const AeadNonce& nonce, ByteSpan ad, std::uint8_t* buf, std::size_t len);
  // buf[0..len) is ciphertext, tag follows at buf[len..len+16). Decrypts in place;
  // false on a bad tag (buf then holds garbage and must be dropped).
  bool open_in_place(const AeadNonce& nonce, ByteSpan ad, std::uint8_t* buf, std::size_t len);

 private:
  struct Provider;  // the dispatch table, aead.cpp
  void reset();
  void init_evp(const AeadKey& key);

  EVP_CIPHER_CTX* ctx_ = nullptr;  // EVP path
  void* pctx_ = nullptr;           // provider path: the provider's cipher context
  const Provider* prov_ = nullptr;
  Dir dir_ = Dir::seal;
  AeadAlg alg_ = AeadAlg::chacha20_poly1305;
};

}  // namespace meshd::crypto
