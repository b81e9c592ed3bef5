// One transport session (the result of one Noise handshake): send key and counter,
// receive key and replay window, indices and age. Packet format (crypto/wire.hpp):
//   type=4:u8 | reserved:3 | receiver_index:u32 | counter:u64 | ciphertext | tag:16
// AD = the 16 header bytes; nonce = 4 zero bytes || counter (LE).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "crypto/aead.hpp"
#include "crypto/noise.hpp"
#include "crypto/replay.hpp"
#include "crypto/wire.hpp"

namespace meshd::crypto {

struct TransportHeader {
  std::uint32_t receiver_index = 0;
  std::uint64_t counter = 0;
};

// Parses the 16-byte transport header; nullopt if too short, wrong type or nonzero
// reserved bytes.
std::optional<TransportHeader> parse_transport_header(ByteSpan datagram);
void write_transport_header(std::uint8_t* out, std::uint32_t receiver_index, std::uint64_t counter);

class Session {
 public:
  Session(const TransportKeys& keys, std::uint32_t local_index, std::uint32_t remote_index,
          std::uint64_t created_ms, bool initiator);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  bool valid() const { return send_.valid() && recv_.valid(); }
  std::uint32_t local_index() const { return local_index_; }    // peers put it in packets to us
  std::uint32_t remote_index() const { return remote_index_; }  // we put it in packets to them
  std::uint64_t created_ms() const { return created_ms_; }
  bool initiator() const { return initiator_; }
  std::uint64_t send_counter() const { return send_counter_; }

  // buf: header space (16) | plaintext (plain_len) | room for the tag (16).
  // Returns the datagram length, 0 if the counter is exhausted or buf too small.
  std::size_t seal_in_place(std::span<std::uint8_t> buf, std::size_t plain_len);

  enum class OpenResult { ok, replay, decrypt };
  // datagram: a whole transport packet whose header names this session. On ok, `plain`
  // views the decrypted bytes inside datagram and the counter is marked seen.
  OpenResult open_in_place(std::span<std::uint8_t> datagram, const TransportHeader& hdr,
                           std::span<std::uint8_t>& plain);

 private:
  AeadCipher send_;
  AeadCipher recv_;
  ReplayWindow replay_;
  std::uint32_t local_index_;
  std::uint32_t remote_index_;
  std::uint64_t created_ms_;
  std::uint64_t send_counter_ = 0;
  bool initiator_;
};

}  // namespace meshd::crypto
