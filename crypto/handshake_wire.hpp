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
//
// The Noise payloads (encrypted, authenticated) carry handshake parameters, then the
// sender's encoded CertChain:
//   init payload: params_len:u8 (>= 2) | cipher_offer:u16 | params_len - 2 more bytes | chain
//   resp payload: params_len:u8 (>= 1) | cipher:u8        | params_len - 1 more bytes | chain
// cipher_offer: bitmask, bit (AeadAlg value - 1) per offered algorithm; cipher: the
// AeadAlg value the responder chose (crypto/cipher_suite.hpp). Forward compatible: a
// newer node may append parameters inside params_len and set offer bits this build does
// not know; both are ignored here.
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

inline constexpr std::size_t kInitParamsLen = 2;  // what this build writes
inline constexpr std::size_t kRespParamsLen = 1;
// Bytes a payload adds in front of the chain (the response's counts against the
// no-amplification budget).
inline constexpr std::size_t kInitPayloadOverhead = 1 + kInitParamsLen;
inline constexpr std::size_t kRespPayloadOverhead = 1 + kRespParamsLen;

struct InitPayload {
  std::uint16_t cipher_offer = 0;
  ByteSpan chain;  // views the decoded input
};
struct RespPayload {
  std::uint8_t cipher = 0;  // raw wire value: the initiator checks it against its offer
  ByteSpan chain;
};
Bytes encode_init_payload(std::uint16_t cipher_offer, ByteSpan chain);
Bytes encode_resp_payload(std::uint8_t cipher, ByteSpan chain);
// Error "handshake.format" if the parameters are shorter than this build needs or the
// payload is truncated. The chain bytes are not checked here (CertChain::decode).
Result<InitPayload> decode_init_payload(ByteSpan payload);
Result<RespPayload> decode_resp_payload(ByteSpan payload);

}  // namespace meshd::crypto
