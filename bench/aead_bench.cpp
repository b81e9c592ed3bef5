// Per-packet AEAD cost at 1400-byte messages, seal and open: ChaCha20-Poly1305 and
// AES-256-GCM, each in libsodium and OpenSSL EVP (the per-packet path uses OpenSSL,
// DESIGN.md "Performance facts"; which algorithm is preferred is measured at start-up,
// crypto/cipher_suite.hpp). Also the Session seal path, from 1 and 2 threads on their
// own cipher slots (one shared atomic send counter). Compare ratios within one run, not
// absolute numbers.
//
// The OpenSSL open benchmarks decrypt in place, so each iteration first copies the
// 1416-byte sealed message back (a few percent of the time); the libsodium ones decrypt
// into a separate buffer.
#include <benchmark/benchmark.h>
#include <sodium.h>

#include <cstring>
#include <memory>
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
  std::vector<std::uint8_t> out = std::vector<std::uint8_t>(kMsgLen + kAeadTagLen, 0);
  std::array<std::uint8_t, kAdLen> ad{};
  Buffers() {
    (void)init();
    randombytes_buf(key.data(), key.size());
  }
};

void bytes_processed(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kMsgLen));
}

// ---- libsodium ----

void BM_sodium_chacha_seal(benchmark::State& state) {
  Buffers b;
  std::uint64_t n = 0;
  for (auto _ : state) {
    aead_seal_sodium(b.key, counter_nonce(n++), b.ad, ByteSpan(b.buf.data(), kMsgLen),
                     b.buf.data());
    benchmark::DoNotOptimize(b.buf.data());
  }
  bytes_processed(state);
}

void BM_sodium_chacha_open(benchmark::State& state) {
  Buffers b;
  aead_seal_sodium(b.key, counter_nonce(1), b.ad, ByteSpan(b.buf.data(), kMsgLen), b.buf.data());
  for (auto _ : state) {
    bool ok = aead_open_sodium(b.key, counter_nonce(1), b.ad, b.buf, b.out.data());
    benchmark::DoNotOptimize(ok);
  }
  bytes_processed(state);
}

// Precomputed key schedule (the _afternm API), as a per-packet path would use it.
struct SodiumAes {
  alignas(16) crypto_aead_aes256gcm_state st;
  explicit SodiumAes(const AeadKey& key) { crypto_aead_aes256gcm_beforenm(&st, key.data()); }
};

void BM_sodium_aes256gcm_seal(benchmark::State& state) {
  Buffers b;
  if (!aes_gcm_hw_available()) {
    state.SkipWithError("no AES-NI: libsodium has no AES-256-GCM");
    return;
  }
  auto aes = std::make_unique<SodiumAes>(b.key);
  std::uint64_t n = 0;
  for (auto _ : state) {
    AeadNonce nonce = counter_nonce(n++);
    unsigned long long clen = 0;
    crypto_aead_aes256gcm_encrypt_afternm(b.buf.data(), &clen, b.buf.data(), kMsgLen, b.ad.data(),
                                          kAdLen, nullptr, nonce.data(), &aes->st);
    benchmark::DoNotOptimize(b.buf.data());
  }
  bytes_processed(state);
}

void BM_sodium_aes256gcm_open(benchmark::State& state) {
  Buffers b;
  if (!aes_gcm_hw_available()) {
    state.SkipWithError("no AES-NI: libsodium has no AES-256-GCM");
    return;
  }
  auto aes = std::make_unique<SodiumAes>(b.key);
  AeadNonce nonce = counter_nonce(1);
  unsigned long long len = 0;
  crypto_aead_aes256gcm_encrypt_afternm(b.buf.data(), &len, b.buf.data(), kMsgLen, b.ad.data(),
                                        kAdLen, nullptr, nonce.data(), &aes->st);
  for (auto _ : state) {
    unsigned long long plen = 0;
    int rc = crypto_aead_aes256gcm_decrypt_afternm(b.out.data(), &plen, nullptr, b.buf.data(),
                                                   b.buf.size(), b.ad.data(), kAdLen, nonce.data(),
                                                   &aes->st);
    benchmark::DoNotOptimize(rc);
  }
  bytes_processed(state);
}

// ---- OpenSSL through AeadCipher: the per-packet path (provider functions called
// directly) and, as BM_evp_*, the same cipher through the EVP wrappers ----

AeadCipher make_cipher(const AeadKey& key, AeadCipher::Dir dir, AeadAlg alg, bool evp) {
  return evp ? AeadCipher::evp_only(key, dir, alg) : AeadCipher(key, dir, alg);
}

void seal_loop(benchmark::State& state, AeadAlg alg, bool evp) {
  Buffers b;
  AeadCipher c = make_cipher(b.key, AeadCipher::Dir::seal, alg, evp);
  if (c.direct() == evp) state.SkipWithError("not the path this benchmark measures");
  std::uint64_t n = 0;
  for (auto _ : state) {
    c.seal_in_place(counter_nonce(n++), b.ad, b.buf.data(), kMsgLen);
    benchmark::DoNotOptimize(b.buf.data());
  }
  bytes_processed(state);
}

void open_loop(benchmark::State& state, AeadAlg alg, bool evp) {
  Buffers b;
  AeadCipher enc(b.key, AeadCipher::Dir::seal, alg);
  AeadCipher dec = make_cipher(b.key, AeadCipher::Dir::open, alg, evp);
  if (dec.direct() == evp) state.SkipWithError("not the path this benchmark measures");
  std::vector<std::uint8_t> sealed = b.buf;
  enc.seal_in_place(counter_nonce(1), b.ad, sealed.data(), kMsgLen);
  for (auto _ : state) {
    std::memcpy(b.buf.data(), sealed.data(), sealed.size());  // decryption is in place
    bool ok = dec.open_in_place(counter_nonce(1), b.ad, b.buf.data(), kMsgLen);
    if (!ok) state.SkipWithError("open failed");
    benchmark::DoNotOptimize(ok);
  }
  bytes_processed(state);
}

void BM_openssl_seal(benchmark::State& state, AeadAlg alg) { seal_loop(state, alg, false); }
void BM_openssl_open(benchmark::State& state, AeadAlg alg) { open_loop(state, alg, false); }
void BM_evp_seal(benchmark::State& state, AeadAlg alg) { seal_loop(state, alg, true); }
void BM_evp_open(benchmark::State& state, AeadAlg alg) { open_loop(state, alg, true); }

// ---- Session (header + counter + AEAD), one slot per thread ----

std::unique_ptr<Session> make_session(AeadAlg alg) {
  (void)init();
  TransportKeys keys;
  randombytes_buf(keys.send.data(), keys.send.size());
  randombytes_buf(keys.recv.data(), keys.recv.size());
  return std::make_unique<Session>(keys, 1, 2, 0, true, alg);
}

// One Session per algorithm shared by the benchmark's threads (static init is thread-safe).
Session* shared_session(AeadAlg alg) {
  static const std::unique_ptr<Session> chacha = make_session(AeadAlg::chacha20_poly1305);
  static const std::unique_ptr<Session> aes = make_session(AeadAlg::aes256_gcm);
  return alg == AeadAlg::aes256_gcm ? aes.get() : chacha.get();
}

void BM_session_seal(benchmark::State& state, AeadAlg alg) {
  Session* s = shared_session(alg);
  std::vector<std::uint8_t> pkt(wire::kTransportHeaderLen + kMsgLen + wire::kTagLen);
  const unsigned slot = 1 + static_cast<unsigned>(state.thread_index());
  for (auto _ : state) {
    benchmark::DoNotOptimize(s->seal_in_place(slot, pkt, kMsgLen));
  }
  bytes_processed(state);
}

}  // namespace

BENCHMARK(BM_sodium_chacha_seal);
BENCHMARK(BM_sodium_chacha_open);
BENCHMARK_CAPTURE(BM_openssl_seal, chacha, AeadAlg::chacha20_poly1305);
BENCHMARK_CAPTURE(BM_openssl_open, chacha, AeadAlg::chacha20_poly1305);
BENCHMARK_CAPTURE(BM_openssl_seal, aes256gcm, AeadAlg::aes256_gcm);
BENCHMARK_CAPTURE(BM_openssl_open, aes256gcm, AeadAlg::aes256_gcm);
BENCHMARK_CAPTURE(BM_evp_seal, chacha, AeadAlg::chacha20_poly1305);
BENCHMARK_CAPTURE(BM_evp_open, chacha, AeadAlg::chacha20_poly1305);
BENCHMARK_CAPTURE(BM_evp_seal, aes256gcm, AeadAlg::aes256_gcm);
BENCHMARK_CAPTURE(BM_evp_open, aes256gcm, AeadAlg::aes256_gcm);
BENCHMARK(BM_sodium_aes256gcm_seal);
BENCHMARK(BM_sodium_aes256gcm_open);
BENCHMARK_CAPTURE(BM_session_seal, chacha, AeadAlg::chacha20_poly1305)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_session_seal, aes256gcm, AeadAlg::aes256_gcm)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_MAIN();
