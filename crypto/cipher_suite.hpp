// Which transport AEAD a node prefers, and the negotiation rule.
//
// The initiator offers every algorithm in its TunnelConfig::ciphers (a bitmask inside the
// encrypted handshake init, crypto/handshake_wire.hpp); the responder picks the first of
// its own list that is in the offer and names it in its response; both build the Session
// with it. No common algorithm: the responder refuses the handshake ("handshake.no_cipher").
//
// Default preference (default_cipher_preference): measured once per process, because the
// answer depends on the CPU and the OpenSSL build. DESIGN.md "Performance facts": on this
// machine OpenSSL's ChaCha20-Poly1305 (AVX-512) beats its AES-256-GCM (32 vs 21 Gbit/s),
// while on CPUs with AES-NI but no wide vector units AES-GCM usually wins. AES-GCM is
// offered by default only where aes_gcm_hw_available() (AES-NI + PCLMUL): without them
// software AES is slow and table-based.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "crypto/aead.hpp"

namespace meshd::crypto {

// Messages per timing round of default_cipher_preference, and their size.
inline constexpr std::size_t kCipherProbeMessages = 256;
inline constexpr std::size_t kCipherProbeMessageLen = 1400;

// Preference order for this process: both algorithms, the faster (OpenSSL EVP, sealing
// kCipherProbeMessages x kCipherProbeMessageLen bytes, best of a few interleaved rounds)
// first; ChaCha20-Poly1305 alone if !aes_gcm_hw_available(). Measured on the first call
// (thread-safe, well under a millisecond), then cached. This is the one place in crypto/
// that reads a clock: it measures the CPU and decides no protocol behaviour.
std::vector<AeadAlg> default_cipher_preference();

// CLI / config syntax: "auto" (= default_cipher_preference()), or a comma-separated list
// of "chacha20-poly1305" and "aes-256-gcm" in preference order (ASCII case-insensitive,
// spaces around items allowed). nullopt on an empty item, an unknown name, a repeated
// name or "auto" inside a list.
std::optional<std::vector<AeadAlg>> parse_cipher_list(std::string_view text);

// Offer bitmask of the handshake init: bit (value - 1) per algorithm.
std::uint16_t cipher_offer_mask(std::span<const AeadAlg> algs);
// The responder's rule: the first of `preference` whose bit is in `offer`; bits of
// algorithms this build does not know are ignored. nullopt if none.
std::optional<AeadAlg> pick_cipher(std::span<const AeadAlg> preference, std::uint16_t offer);
// A wire byte naming a known algorithm; nullopt otherwise.
std::optional<AeadAlg> aead_alg_from_wire(std::uint8_t v);

}  // namespace meshd::crypto
