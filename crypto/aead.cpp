#include "crypto/aead.hpp"

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <sodium.h>

#include <climits>
#include <memory>
#include <string>
#include <string_view>
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

// The provider functions for one algorithm (provider-cipher(7)). All set, or unusable.
struct AeadCipher::Provider {
  // The fetched cipher holds the provider (and so these functions) loaded; freed at exit.
  std::shared_ptr<EVP_CIPHER> fetched;
  void* provctx = nullptr;
  OSSL_FUNC_cipher_newctx_fn* newctx = nullptr;
  OSSL_FUNC_cipher_freectx_fn* freectx = nullptr;
  OSSL_FUNC_cipher_encrypt_init_fn* einit = nullptr;
  OSSL_FUNC_cipher_decrypt_init_fn* dinit = nullptr;
  OSSL_FUNC_cipher_update_fn* update = nullptr;
  OSSL_FUNC_cipher_final_fn* final = nullptr;
  OSSL_FUNC_cipher_get_ctx_params_fn* get_ctx_params = nullptr;
  OSSL_FUNC_cipher_set_ctx_params_fn* set_ctx_params = nullptr;

  bool complete() const {
    return provctx != nullptr && newctx != nullptr && freectx != nullptr && einit != nullptr &&
           dinit != nullptr && update != nullptr && final != nullptr && get_ctx_params != nullptr &&
           set_ctx_params != nullptr;
  }

  // The implementation EVP_CIPHER_fetch picks, found among its provider's algorithms by
  // name.
  static Provider find(AeadAlg alg) {
    Provider p;
    const char* name = alg == AeadAlg::aes256_gcm ? "AES-256-GCM" : "ChaCha20-Poly1305";
    EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, name, nullptr);
    if (cipher == nullptr) return p;
    p.fetched = std::shared_ptr<EVP_CIPHER>(cipher, EVP_CIPHER_free);
    const OSSL_PROVIDER* prov = EVP_CIPHER_get0_provider(cipher);
    if (prov == nullptr) return p;
    int no_cache = 0;
    const OSSL_ALGORITHM* algs = OSSL_PROVIDER_query_operation(prov, OSSL_OP_CIPHER, &no_cache);
    for (const OSSL_ALGORITHM* a = algs; a != nullptr && a->algorithm_names != nullptr; ++a) {
      if (!names_match(a->algorithm_names, cipher)) continue;
      for (const OSSL_DISPATCH* d = a->implementation; d != nullptr && d->function_id != 0; ++d) {
        switch (d->function_id) {
          case OSSL_FUNC_CIPHER_NEWCTX: p.newctx = OSSL_FUNC_cipher_newctx(d); break;
          case OSSL_FUNC_CIPHER_FREECTX: p.freectx = OSSL_FUNC_cipher_freectx(d); break;
          case OSSL_FUNC_CIPHER_ENCRYPT_INIT: p.einit = OSSL_FUNC_cipher_encrypt_init(d); break;
          case OSSL_FUNC_CIPHER_DECRYPT_INIT: p.dinit = OSSL_FUNC_cipher_decrypt_init(d); break;
          case OSSL_FUNC_CIPHER_UPDATE: p.update = OSSL_FUNC_cipher_update(d); break;
          case OSSL_FUNC_CIPHER_FINAL: p.final = OSSL_FUNC_cipher_final(d); break;
          case OSSL_FUNC_CIPHER_GET_CTX_PARAMS: p.get_ctx_params = OSSL_FUNC_cipher_get_ctx_params(d); break;
          case OSSL_FUNC_CIPHER_SET_CTX_PARAMS: p.set_ctx_params = OSSL_FUNC_cipher_set_ctx_params(d); break;
          default: break;
        }
      }
      break;
    }
    if (algs != nullptr) OSSL_PROVIDER_unquery_operation(prov, OSSL_OP_CIPHER, algs);
    p.provctx = OSSL_PROVIDER_get0_provider_ctx(prov);
    return p;
  }

  // Process-wide, looked up on first use; null if incomplete.
  static const Provider* get(AeadAlg alg) {
    static const Provider aes = find(AeadAlg::aes256_gcm);
    static const Provider chacha = find(AeadAlg::chacha20_poly1305);
    const Provider& p = alg == AeadAlg::aes256_gcm ? aes : chacha;
    return p.complete() ? &p : nullptr;
  }

 private:
  // "AES-256-GCM:id-aes256-GCM:2.16.840.1.101.3.4.1.46": is one of them `cipher`?
  static bool names_match(std::string_view names, const EVP_CIPHER* cipher) {
    while (!names.empty()) {
      const std::size_t colon = names.find(':');
      const std::string one(names.substr(0, colon));
      if (EVP_CIPHER_is_a(cipher, one.c_str())) return true;
      if (colon == std::string_view::npos) break;
      names.remove_prefix(colon + 1);
    }
    return false;
  }
};

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
  const Provider* prov = Provider::get(alg);
  if (prov != nullptr) {
    void* pctx = prov->newctx(prov->provctx);
    if (pctx != nullptr) {
      const int ok = dir == Dir::seal ? prov->einit(pctx, key.data(), key.size(), nullptr, 0, nullptr)
                                      : prov->dinit(pctx, key.data(), key.size(), nullptr, 0, nullptr);
      if (ok == 1) {
        pctx_ = pctx;
        prov_ = prov;
        return;
      }
      prov->freectx(pctx);
    }
  }
  init_evp(key);
}

AeadCipher AeadCipher::evp_only(const AeadKey& key, Dir dir, AeadAlg alg) {
  AeadCipher c;
  c.dir_ = dir;
  c.alg_ = alg;
  c.init_evp(key);
  return c;
}

void AeadCipher::init_evp(const AeadKey& key) {
  const EVP_CIPHER* cipher = evp_cipher(alg_);
  if (cipher == nullptr) return;
  ctx_ = EVP_CIPHER_CTX_new();
  if (ctx_ == nullptr) return;
  int ok = dir_ == Dir::seal ? EVP_EncryptInit_ex(ctx_, cipher, nullptr, key.data(), nullptr)
                             : EVP_DecryptInit_ex(ctx_, cipher, nullptr, key.data(), nullptr);
  if (ok != 1) {
    EVP_CIPHER_CTX_free(ctx_);
    ctx_ = nullptr;
  }
}

void AeadCipher::reset() {
  // Both frees cleanse the key schedule.
  if (ctx_ != nullptr) EVP_CIPHER_CTX_free(ctx_);
  if (pctx_ != nullptr) prov_->freectx(pctx_);
  ctx_ = nullptr;
  pctx_ = nullptr;
  prov_ = nullptr;
}

AeadCipher::~AeadCipher() { reset(); }

AeadCipher::AeadCipher(AeadCipher&& o) noexcept
    : ctx_(std::exchange(o.ctx_, nullptr)),
      pctx_(std::exchange(o.pctx_, nullptr)),
      prov_(std::exchange(o.prov_, nullptr)),
      dir_(o.dir_),
      alg_(o.alg_) {}

AeadCipher& AeadCipher::operator=(AeadCipher&& o) noexcept {
  if (this != &o) {
    reset();
    ctx_ = std::exchange(o.ctx_, nullptr);
    pctx_ = std::exchange(o.pctx_, nullptr);
    prov_ = std::exchange(o.prov_, nullptr);
    dir_ = o.dir_;
    alg_ = o.alg_;
  }
  return *this;
}

bool AeadCipher::seal_in_place(const AeadNonce& nonce, ByteSpan ad, std::uint8_t* buf, std::size_t len) {
  if (dir_ != Dir::seal) return false;
  if (pctx_ != nullptr) {
    // What EVP_EncryptInit_ex/Update/Final and EVP_CTRL_AEAD_GET_TAG do, without the
    // wrappers. Setting only the IV keeps the expanded key and resets GHASH / Poly1305.
    std::size_t outl = 0;
    if (prov_->einit(pctx_, nullptr, 0, nonce.data(), nonce.size(), nullptr) != 1) return false;
    if (!ad.empty() && prov_->update(pctx_, nullptr, &outl, ad.size(), ad.data(), ad.size()) != 1) {
      return false;
    }
    if (len > 0 && prov_->update(pctx_, buf, &outl, len, buf, len) != 1) return false;
    if (prov_->final(pctx_, buf + len, &outl, 0) != 1) return false;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, buf + len, kAeadTagLen),
        OSSL_PARAM_construct_end()};
    return prov_->get_ctx_params(pctx_, params) == 1;
  }
  if (ctx_ == nullptr || len > INT_MAX || ad.size() > INT_MAX) return false;
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
  if (dir_ != Dir::open) return false;
  if (pctx_ != nullptr) {
    std::size_t outl = 0;
    if (prov_->dinit(pctx_, nullptr, 0, nonce.data(), nonce.size(), nullptr) != 1) return false;
    if (!ad.empty() && prov_->update(pctx_, nullptr, &outl, ad.size(), ad.data(), ad.size()) != 1) {
      return false;
    }
    if (len > 0 && prov_->update(pctx_, buf, &outl, len, buf, len) != 1) return false;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, buf + len, kAeadTagLen),
        OSSL_PARAM_construct_end()};
    if (prov_->set_ctx_params(pctx_, params) != 1) return false;
    return prov_->final(pctx_, buf + len, &outl, 0) == 1;  // 0 on a tag mismatch
  }
  if (ctx_ == nullptr || len > INT_MAX || ad.size() > INT_MAX) return false;
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
