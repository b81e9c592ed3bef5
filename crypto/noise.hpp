// Noise_IK_25519_ChaChaPoly_BLAKE2b (Noise rev. 34), sans-I/O.
//
//   <- s
//   ...
//   -> e, es, s, ss      (create_init / consume_init)
//   <- e, ee, se         (create_resp / consume_resp)
//
// Messages here are plain Noise messages (ephemeral || encrypted fields); packet framing,
// indices and mac1 belong to crypto/tunnel.cpp. Ephemeral keys come from the Random
// passed in, so tests replay exactly. Every step checks the state and fails (state
// becomes `failed`) on misuse or bad input; nothing throws.
#pragma once

#include <array>
#include <cstdint>

#include "crypto/aead.hpp"
#include "crypto/bytes.hpp"
#include "crypto/keys.hpp"
#include "crypto/random.hpp"
#include "crypto/result.hpp"

namespace meshd::crypto {

inline constexpr std::size_t kNoiseHashLen = 64;
inline constexpr std::size_t kNoiseDhLen = 32;
// Fixed part of message 1: e (32) + encrypted s (32 + 16); then payload + 16.
inline constexpr std::size_t kNoiseInitFixedLen = kNoiseDhLen + kNoiseDhLen + kAeadTagLen;
// Fixed part of message 2: e (32); then payload + 16.
inline constexpr std::size_t kNoiseRespFixedLen = kNoiseDhLen;
// "meshd v1" || mesh root public key: binds every handshake to one mesh.
Bytes noise_prologue(const PublicKey& root_pub);

struct TransportKeys {
  AeadKey send{};
  AeadKey recv{};
  ~TransportKeys();
};

class NoiseHandshake {
 public:
  enum class Role { initiator, responder };
  enum class State {
    initiator_ready,  // initiator built, create_init next
    init_sent,        // consume_resp next
    responder_ready,  // responder built, consume_init next
    init_consumed,    // create_resp next
    done,             // split() available
    failed,
  };

  static NoiseHandshake initiator(const DhKey& s, const PublicKey& rs, ByteSpan prologue);
  static NoiseHandshake responder(const DhKey& s, ByteSpan prologue);
  ~NoiseHandshake();
  NoiseHandshake(const NoiseHandshake&) = default;
  NoiseHandshake& operator=(const NoiseHandshake&) = default;

  // Initiator: message 1 carrying `payload`. Error "noise.state" / "noise.dh".
  Result<Bytes> create_init(ByteSpan payload, Random& rng);
  // Responder: returns message 1's payload; remote_static() is then known.
  // Errors "noise.state", "noise.format", "noise.dh", "noise.decrypt".
  Result<Bytes> consume_init(ByteSpan msg);
  Result<Bytes> create_resp(ByteSpan payload, Random& rng);
  // Initiator: returns message 2's payload.
  Result<Bytes> consume_resp(ByteSpan msg);
  // Transport keys, oriented for this side (initiator sends with k1). Only in `done`.
  Result<TransportKeys> split() const;

  State state() const { return state_; }
  Role role() const { return role_; }
  const PublicKey& remote_static() const { return rs_; }
  const std::array<std::uint8_t, kNoiseHashLen>& handshake_hash() const { return h_; }

 private:
  NoiseHandshake() = default;
  void mix_hash(ByteSpan data);
  bool mix_dh(const Seed& sec, const PublicKey& pub);
  void mix_key(ByteSpan ikm);
  void encrypt_and_hash(ByteSpan plain, Bytes& out);
  bool decrypt_and_hash(ByteSpan cipher, Bytes& out);
  Error fail(const char* code, const char* msg);
  void wipe();

  Role role_ = Role::initiator;
  State state_ = State::failed;
  std::array<std::uint8_t, kNoiseHashLen> h_{};
  std::array<std::uint8_t, kNoiseHashLen> ck_{};
  AeadKey k_{};
  bool has_key_ = false;
  std::uint64_t n_ = 0;
  Seed s_sec_{};
  PublicKey s_pub_{};
  Seed e_sec_{};
  PublicKey e_pub_{};
  PublicKey rs_{};
  PublicKey re_{};
};

}  // namespace meshd::crypto
