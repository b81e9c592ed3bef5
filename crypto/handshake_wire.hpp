// Handshake packet framing around the Noise IK messages (crypto/noise.hpp). All
// little-endian; the first 4 bytes are type:u8 | 3 reserved zero bytes.
//
//   init (type 1): sender_index:u32 | ephemeral:32 | enc_static:48 | len:u16 |
//                  enc_payload:len | zero padding | mac1:16
//   resp (type 2): sender_index:u32 | receiver_index:u32 | ephemeral:32 | len:u16 |
//                  enc_payload:len | mac1:16
//
// mac1 = BLAKE2b-128 keyed with BLAKE2b-256("mac1----" || receiver static X25519 pub),
// over every byte before it: a receiver drops garbage before doing any DH.
// The init is padded so it is never smaller than the response (no amplification).
#pragma once

#include <array>
#include <cstdint>

#include "crypto/bytes.hpp"
#include "crypto/keys.hpp"
#include "crypto/noise.hpp"
#include "crypto/result.hpp"

namespace meshd::crypto {

inline constexpr std::size_t kMac1Len = 16;
inline constexpr std::size_t kInitFixedLen = 4 + 4 + kNoiseInitFixedLen + 2;  // before enc_payload
inline constexpr std::size_t kRespFixedLen = 4 + 4 + 4 + kNoiseRespFixedLen + 2;
inline constexpr std::size_t kInitMinLen = kInitFixedLen + kAeadTagLen + kMac1Len;
inline constexpr std::size_t kRespMinLen = kRespFixedLen + kAeadTagLen + kMac1Len;
// First attempt pads the init to this size (fits any underlay MTU); retries double it.
inline constexpr std::size_t kHandshakeInitPadBase = 1200;
// Largest handshake datagram (fits one IPv4 UDP datagram).
inline constexpr std::size_t kHandshakeMaxLen = 65000;

using Mac1Key = std::array<std::uint8_t, 32>;
Mac1Key mac1_key_for(const PublicKey& receiver_static);

struct ParsedInit {
  std::uint32_t sender_index = 0;
  Bytes noise_msg;  // ephemeral || enc_static || enc_payload
};
struct ParsedResp {
  std::uint32_t sender_index = 0;
  std::uint32_t receiver_index = 0;
  Bytes noise_msg;  // ephemeral || enc_payload
};

// `noise_msg` from NoiseHandshake::create_init; pads to at least pad_to bytes.
// Error "handshake.too_large" if it cannot fit kHandshakeMaxLen.
Result<Bytes> build_init(std::uint32_t sender_index, ByteSpan noise_msg, std::size_t pad_to, const Mac1Key& key);
Result<Bytes> build_resp(std::uint32_t sender_index, std::uint32_t receiver_index, ByteSpan noise_msg,
                         const Mac1Key& key);
// Errors: "handshake.format" (type, lengths, reserved or padding bytes), "handshake.mac".
// mac1 is checked first so that garbage costs one keyed hash.
Result<ParsedInit> parse_init(ByteSpan d, const Mac1Key& key);
Result<ParsedResp> parse_resp(ByteSpan d, const Mac1Key& key);

}  // namespace meshd::crypto
