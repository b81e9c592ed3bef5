// ChaCha20-Poly1305 (IETF, RFC 8439) in two implementations that must agree byte for
// byte: libsodium (handshake, tests, reference) and OpenSSL libcrypto EVP (per-packet
// path; several times faster on this machine, DESIGN.md "Performance facts").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "crypto/bytes.hpp"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace meshd::crypto {

inline constexpr std::size_t kAeadKeyLen = 32;
inline constexpr std::size_t kAeadNonceLen = 12;
inline constexpr std::size_t kAeadTagLen = 16;

using AeadKey = std::array<std::uint8_t, kAeadKeyLen>;
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

// OpenSSL EVP context bound to one key and one direction, set up once, reused for every
// packet (no allocation per packet). Not copyable; movable.
class AeadCipher {
 public:
  enum class Dir { seal, open };
  AeadCipher() = default;
  AeadCipher(const AeadKey& key, Dir dir);
  ~AeadCipher();
  AeadCipher(AeadCipher&& o) noexcept;
  AeadCipher& operator=(AeadCipher&& o) noexcept;
  AeadCipher(const AeadCipher&) = delete;
  AeadCipher& operator=(const AeadCipher&) = delete;

  bool valid() const { return ctx_ != nullptr; }
  // Encrypts buf[0..len) in place and writes the tag to buf[len..len+16).
  bool seal_in_place(const AeadNonce& nonce, ByteSpan ad, std::uint8_t* buf, std::size_t len);
  // buf[0..len) is ciphertext, tag follows at buf[len..len+16). Decrypts in place;
  // false on a bad tag (buf then holds garbage and must be dropped).
  bool open_in_place(const AeadNonce& nonce, ByteSpan ad, std::uint8_t* buf, std::size_t len);

 private:
  EVP_CIPHER_CTX* ctx_ = nullptr;
  Dir dir_ = Dir::seal;
};

}  // namespace meshd::crypto
