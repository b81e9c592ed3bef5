// Per-packet AEAD cost at 1400-byte messages: libsodium vs OpenSSL EVP ChaCha20-Poly1305
// (the per-packet path uses OpenSSL, DESIGN.md "Performance facts"), AES-256-GCM for
// reference. Compare the ratios within one run, not absolute numbers.
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <sodium.h>

#include <vector>

#include "crypto/aead.hpp"
#include "crypto/keys.hpp"
#include "crypto/session.hpp"

using namespace meshd;
using namespace meshd::crypto;

namespace {

constexpr std::size_t kMsgLen = 1400;
constexpr std::size_t kAdLen = 16;

struct Buffers {
  AeadKey key{};
  std::vector<std::uint8_t> buf = std::vector<std::uint8_t>(kMsgLen + kAeadTagLen, 0x5a);
  std::array<std::uint8_t, kAdLen> ad{};
  Buffers() { (void)init(); randombytes_buf(key.data(), key.size()); }
};

void BM_chacha_sodium(benchmark::State& state) {
  Buffers b;
  std::uint64_t n = 0;
  for (auto _ : state) {
    aead_seal_sodium(b.key, counter_nonce(n++), b.ad, ByteSpan(b.buf.data(), kMsgLen), b.buf.data());
    benchmark::DoNotOptimize(b.buf.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kMsgLen));
}

void BM_chacha_openssl(benchmark::State& state) {
  Buffers b;
  AeadCipher c(b.key, AeadCipher::Dir::seal);
  std::uint64_t n = 0;
  for (auto _ : state) {
    c.seal_in_place(counter_nonce(n++), b.ad, b.buf.data(), kMsgLen);
    benchmark::DoNotOptimize(b.buf.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kMsgLen));
}

void BM_chacha_openssl_open(benchmark::State& state) {
  Buffers b;
  AeadCipher enc(b.key, AeadCipher::Dir::seal), dec(b.key, AeadCipher::Dir::open);
  std::vector<std::uint8_t> sealed = b.buf;
  enc.seal_in_place(counter_nonce(1), b.ad, sealed.data(), kMsgLen);
  for (auto _ : state) {
    b.buf = sealed;  // decryption is in place: restore the ciphertext each time
    bool ok = dec.open_in_place(counter_nonce(1), b.ad, b.buf.data(), kMsgLen);
    benchmark::DoNotOptimize(ok);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kMsgLen));
}

void BM_session_seal(benchmark::State& state) {
  Buffers b;
  TransportKeys keys;
  keys.send = b.key;
  keys.recv = b.key;
  Session s(keys, 1, 2, 0, true);
  std::vector<std::uint8_t> pkt(wire::kTransportHeaderLen + kMsgLen + wire::kTagLen);
  for (auto _ : state) {
    benchmark::DoNotOptimize(s.seal_in_place(pkt, kMsgLen));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kMsgLen));
}

void BM_aes256gcm_sodium(benchmark::State& state) {
  Buffers b;
  if (crypto_aead_aes256gcm_is_available() == 0) {
    state.SkipWithError("no AES-NI");
    return;
  }
  crypto_aead_aes256gcm_state st;
  crypto_aead_aes256gcm_beforenm(&st, b.key.data());
  std::uint64_t n = 0;
  for (auto _ : state) {
    AeadNonce nonce = counter_nonce(n++);
    unsigned long long clen = 0;
    crypto_aead_aes256gcm_encrypt_afternm(b.buf.data(), &clen, b.buf.data(), kMsgLen, b.ad.data(), kAdLen,
                                          nullptr, nonce.data(), &st);
    benchmark::DoNotOptimize(b.buf.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kMsgLen));
}

void BM_aes256gcm_openssl(benchmark::State& state) {
  Buffers b;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, b.key.data(), nullptr);
  std::uint64_t n = 0;
  for (auto _ : state) {
    AeadNonce nonce = counter_nonce(n++);
    int outl = 0;
    EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce.data());
    EVP_EncryptUpdate(ctx, nullptr, &outl, b.ad.data(), kAdLen);
    EVP_EncryptUpdate(ctx, b.buf.data(), &outl, b.buf.data(), kMsgLen);
    EVP_EncryptFinal_ex(ctx, b.buf.data() + kMsgLen, &outl);
    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, b.buf.data() + kMsgLen);
    benchmark::DoNotOptimize(b.buf.data());
  }
  EVP_CIPHER_CTX_free(ctx);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kMsgLen));
}

}  // namespace

BENCHMARK(BM_chacha_sodium);
BENCHMARK(BM_chacha_openssl);
BENCHMARK(BM_chacha_openssl_open);
BENCHMARK(BM_session_seal);
BENCHMARK(BM_aes256gcm_sodium);
BENCHMARK(BM_aes256gcm_openssl);
BENCHMARK_MAIN();
