#include "crypto/aead.hpp"

#include <openssl/evp.h>
#include <sodium.h>

#include <climits>
#include <utility>

namespace meshd::crypto {

namespace {

const EVP_CIPHER* evp_cipher(AeadAlg alg) {
  switch (alg) {
    case AeadAlg::chacha20_poly1305:
      return EVP_chacha20_poly1305();
    case AeadAlg::aes256_gcm:
      return EVP_aes_256_gcm();  // default IV length is 12 bytes, as the nonce
  }
  return nullptr;
}

}  // namespace

std::string_view aead_alg_name(AeadAlg alg) {
  switch (alg) {
    case AeadAlg::chacha20_poly1305:
      return "chacha20-poly1305";
    case AeadAlg::aes256_gcm:
      return "aes-256-gcm";
  }
  return "unknown";
}

bool aes_gcm_hw_available() {
  if (sodium_init() < 0) return false;
  return crypto_aead_aes256gcm_is_available() != 0;
}

AeadNonce counter_nonce(std::uint64_t counter) {
  AeadNonce n{};
  for (int i = 0; i < 8; ++i) n[4 + i] = static_cast<std::uint8_t>(counter >> (8 * i));
  return n;
}

void aead_seal_sodium(const AeadKey& key, const AeadNonce& nonce, ByteSpan ad, ByteSpan plain,
                      std::uint8_t* out) {
  unsigned long long clen = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, plain.data(), plain.size(), ad.data(), ad.size(),
                                            nullptr, nonce.data(), key.data());
}

bool aead_open_sodium(const AeadKey& key, const AeadNonce& nonce, ByteSpan ad, ByteSpan in,
                      std::uint8_t* out) {
  if (in.size() < kAeadTagLen) return false;
  unsigned long long plen = 0;
  return crypto_aead_chacha20poly1305_ietf_decrypt(out, &plen, nullptr, in.data(), in.size(), ad.data(),
                                                   ad.size(), nonce.data(), key.data()) == 0;
}

bool aes256gcm_seal_sodium(const AeadKey& key, const AeadNonce& nonce, ByteSpan ad, ByteSpan plain,
                           std::uint8_t* out) {
  if (!aes_gcm_hw_available()) return false;
  unsigned long long clen = 0;
  return crypto_aead_aes256gcm_encrypt(out, &clen, plain.data(), plain.size(), ad.data(), ad.size(),
                                       nullptr, nonce.data(), key.data()) == 0;
}

bool aes256gcm_open_sodium(const AeadKey& key, const AeadNonce& nonce, ByteSpan ad, ByteSpan in,
                           std::uint8_t* out) {
  if (in.size() < kAeadTagLen || !aes_gcm_hw_available()) return false;
  unsigned long long plen = 0;
  return crypto_aead_aes256gcm_decrypt(out, &plen, nullptr, in.data(), in.size(), ad.data(),
                                       ad.size(), nonce.data(), key.data()) == 0;
}

AeadCipher::AeadCipher(const AeadKey& key, Dir dir, AeadAlg alg) : dir_(dir), alg_(alg) {
  const EVP_CIPHER* cipher = evp_cipher(alg);
  if (cipher == nullptr) return;
  ctx_ = EVP_CIPHER_CTX_new();
  if (ctx_ == nullptr) return;
  int ok = dir == Dir::seal ? EVP_EncryptInit_ex(ctx_, cipher, nullptr, key.data(), nullptr)
                            : EVP_DecryptInit_ex(ctx_, cipher, nullptr, key.data(), nullptr);
  if (ok != 1) {
    EVP_CIPHER_CTX_free(ctx_);
    ctx_ = nullptr;
  }
}

AeadCipher::~AeadCipher() {
  // EVP_CIPHER_CTX_free cleanses the key schedule.
  if (ctx_ != nullptr) EVP_CIPHER_CTX_free(ctx_);
}

AeadCipher::AeadCipher(AeadCipher&& o) noexcept
    : ctx_(std::exchange(o.ctx_, nullptr)), dir_(o.dir_), alg_(o.alg_) {}

AeadCipher& AeadCipher::operator=(AeadCipher&& o) noexcept {
  if (this != &o) {
    if (ctx_ != nullptr) EVP_CIPHER_CTX_free(ctx_);
    ctx_ = std::exchange(o.ctx_, nullptr);
    dir_ = o.dir_;
    alg_ = o.alg_;
  }
  return *this;
}

bool AeadCipher::seal_in_place(const AeadNonce& nonce, ByteSpan ad, std::uint8_t* buf, std::size_t len) {
  if (ctx_ == nullptr || dir_ != Dir::seal || len > INT_MAX || ad.size() > INT_MAX) return false;
  int outl = 0;
  // Setting only the IV keeps the expanded key and resets the Poly1305 / GHASH state.
  if (EVP_EncryptInit_ex(ctx_, nullptr, nullptr, nullptr, nonce.data()) != 1) return false;
  if (!ad.empty() && EVP_EncryptUpdate(ctx_, nullptr, &outl, ad.data(), static_cast<int>(ad.size())) != 1) {
    return false;
  }
  if (len > 0 && EVP_EncryptUpdate(ctx_, buf, &outl, buf, static_cast<int>(len)) != 1) return false;
  if (EVP_EncryptFinal_ex(ctx_, buf + len, &outl) != 1) return false;
  return EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kAeadTagLen), buf + len) == 1;
}

bool AeadCipher::open_in_place(const AeadNonce& nonce, ByteSpan ad, std::uint8_t* buf, std::size_t len) {
  if (ctx_ == nullptr || dir_ != Dir::open || len > INT_MAX || ad.size() > INT_MAX) return false;
  int outl = 0;
  if (EVP_DecryptInit_ex(ctx_, nullptr, nullptr, nullptr, nonce.data()) != 1) return false;
  if (!ad.empty() && EVP_DecryptUpdate(ctx_, nullptr, &outl, ad.data(), static_cast<int>(ad.size())) != 1) {
    return false;
  }
  if (len > 0 && EVP_DecryptUpdate(ctx_, buf, &outl, buf, static_cast<int>(len)) != 1) return false;
  if (EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kAeadTagLen), buf + len) != 1) {
    return false;
  }
  return EVP_DecryptFinal_ex(ctx_, buf + len, &outl) == 1;
}

}  // namespace meshd::crypto
