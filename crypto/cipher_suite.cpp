#include "crypto/cipher_suite.hpp"

#include <algorithm>
#include <chrono>
#include <string>

namespace meshd::crypto {

namespace {

constexpr int kProbeRounds = 5;  // interleaved; the best round per algorithm counts

// Nanoseconds to seal kCipherProbeMessages messages with `c`, or UINT64_MAX on failure.
std::uint64_t time_seals(AeadCipher& c, std::vector<std::uint8_t>& buf, std::uint64_t& counter) {
  const std::uint8_t ad[16] = {};
  auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < kCipherProbeMessages; ++i) {
    if (!c.seal_in_place(counter_nonce(counter++), ByteSpan(ad, sizeof ad), buf.data(),
                         kCipherProbeMessageLen)) {
      return UINT64_MAX;
    }
  }
  auto t1 = std::chrono::steady_clock::now();
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
}

std::vector<AeadAlg> measure_preference() {
  if (!aes_gcm_hw_available()) return {AeadAlg::chacha20_poly1305};
  AeadKey key{};  // not a secret: only timing
  AeadCipher chacha(key, AeadCipher::Dir::seal, AeadAlg::chacha20_poly1305);
  AeadCipher aes(key, AeadCipher::Dir::seal, AeadAlg::aes256_gcm);
  if (!aes.valid()) return {AeadAlg::chacha20_poly1305};
  if (!chacha.valid()) return {AeadAlg::aes256_gcm, AeadAlg::chacha20_poly1305};
  std::vector<std::uint8_t> buf(kCipherProbeMessageLen + kAeadTagLen, 0x5a);
  std::uint64_t counter = 0;
  (void)time_seals(chacha, buf, counter);  // warm up caches and lazy OpenSSL set-up
  (void)time_seals(aes, buf, counter);
  std::uint64_t best_chacha = UINT64_MAX, best_aes = UINT64_MAX;
  for (int r = 0; r < kProbeRounds; ++r) {
    best_chacha = std::min(best_chacha, time_seals(chacha, buf, counter));
    best_aes = std::min(best_aes, time_seals(aes, buf, counter));
  }
  if (best_aes < best_chacha) return {AeadAlg::aes256_gcm, AeadAlg::chacha20_poly1305};
  return {AeadAlg::chacha20_poly1305, AeadAlg::aes256_gcm};
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) {
             return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
           };
           return lower(x) == lower(y);
         });
}

std::uint16_t bit_of(AeadAlg a) {
  return static_cast<std::uint16_t>(1u << (static_cast<unsigned>(a) - 1));
}

}  // namespace

std::vector<AeadAlg> default_cipher_preference() {
  static const std::vector<AeadAlg> pref = measure_preference();
  return pref;
}

std::optional<std::vector<AeadAlg>> parse_cipher_list(std::string_view text) {
  if (iequals(trim(text), "auto")) return default_cipher_preference();
  std::vector<AeadAlg> out;
  std::size_t pos = 0;
  while (true) {
    std::size_t comma = text.find(',', pos);
    std::string_view item = trim(
        text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
    std::optional<AeadAlg> alg;
    for (AeadAlg a : kAeadAlgs) {
      if (iequals(item, aead_alg_name(a))) alg = a;
    }
    if (!alg || std::find(out.begin(), out.end(), *alg) != out.end()) return std::nullopt;
    out.push_back(*alg);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

std::uint16_t cipher_offer_mask(std::span<const AeadAlg> algs) {
  std::uint16_t m = 0;
  for (AeadAlg a : algs) {
    if (aead_alg_from_wire(static_cast<std::uint8_t>(a))) m |= bit_of(a);
  }
  return m;
}

std::optional<AeadAlg> pick_cipher(std::span<const AeadAlg> preference, std::uint16_t offer) {
  for (AeadAlg a : preference) {
    if (aead_alg_from_wire(static_cast<std::uint8_t>(a)) && (offer & bit_of(a)) != 0) return a;
  }
  return std::nullopt;
}

std::optional<AeadAlg> aead_alg_from_wire(std::uint8_t v) {
  for (AeadAlg a : kAeadAlgs) {
    if (static_cast<std::uint8_t>(a) == v) return a;
  }
  return std::nullopt;
}

}  // namespace meshd::crypto
