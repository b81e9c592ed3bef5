// One transport session (the result of one Noise handshake): send key and counter,
// receive key and replay window, indices, age and activity. Packet format
// (crypto/wire.hpp):
//   type=4:u8 | reserved:3 | receiver_index:u32 | counter:u64 | ciphertext | tag:16
// AD = the 16 header bytes; nonce = 4 zero bytes || counter (LE); AEAD = the algorithm
// the handshake negotiated (crypto/cipher_suite.hpp).
//
// Threads. The TunnelManager's thread (slot 0) and up to kCipherSlots - 1 data-plane
// workers (slots 1..8) seal and open on the same Session concurrently:
//   * each slot has its own OpenSSL contexts, created by the first use of that slot (one
//     allocation per session and slot, never per packet). A slot is used by one thread
//     at a time; handing a slot to another thread needs a happens-before (join, mutex).
//   * the send counter is atomic (fetch_add): concurrent seals get distinct nonces.
//   * opening is split: decrypt_in_place() authenticates without touching shared state;
//     accept_counters() then checks and commits a whole batch of counters in the replay
//     window under one small lock per call.
//   * activity figures are relaxed atomics, reported by whoever sealed or opened.
// Everything else (indices, created_ms, alg) is immutable after construction. Whoever
// uses a Session keeps a reference (shared_ptr, or the DataSessions snapshot holding it).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>

#include "crypto/aead.hpp"
#include "crypto/noise.hpp"
#include "crypto/replay.hpp"
#include "crypto/wire.hpp"

namespace meshd::crypto {

// Slot 0: the thread that owns the TunnelManager. Slots 1..8: data-plane workers.
inline constexpr unsigned kCipherSlots = 9;
inline constexpr unsigned kOwnerSlot = 0;

struct TransportHeader {
  std::uint32_t receiver_index = 0;
  std::uint64_t counter = 0;
  std::uint8_t lane = 0;  // the sender's data-plane worker (wire.hpp, kLaneOffset)
};

// Parses the 16-byte transport header; nullopt if too short, wrong type or nonzero
// reserved bytes (any lane is accepted: it is a hint, and authenticated as AD).
std::optional<TransportHeader> parse_transport_header(ByteSpan datagram);
void write_transport_header(std::uint8_t* out, std::uint32_t receiver_index, std::uint64_t counter,
                            std::uint8_t lane = 0);

class Session {
 public:
  Session(const TransportKeys& keys, std::uint32_t local_index, std::uint32_t remote_index,
          std::uint64_t created_ms, bool initiator, AeadAlg alg = AeadAlg::chacha20_poly1305);
  ~Session();  // wipes the keys; frees every slot's contexts
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // The slot-0 contexts could be built (they are built by the constructor, on the owner's
  // thread). False only if OpenSSL could not allocate them.
  bool valid() const;
  AeadAlg alg() const { return alg_; }
  std::uint32_t local_index() const { return local_index_; }    // peers put it in packets to us
  std::uint32_t remote_index() const { return remote_index_; }  // we put it in packets to them
  std::uint64_t created_ms() const { return created_ms_; }
  bool initiator() const { return initiator_; }
  // Counters handed out so far (the next one to use). May exceed the limit by a few
  // after concurrent failed seals; no counter at or above ReplayWindow::kCounterLimit is
  // ever used.
  std::uint64_t send_counter() const { return send_counter_.load(kRelaxed); }

  // buf: header space (16) | plaintext (plain_len) | room for the tag (16). Seals with a
  // fresh counter on `slot`'s context. Thread-safe across distinct slots. Returns the
  // datagram length; 0 if the counter is exhausted, buf is too small, slot is out of
  // range or the slot's context cannot be built. Does not call note_tx(). `lane` goes
  // into the header (wire.hpp): the sending worker, so that the receiver can hand this
  // flow's packets to one worker of its own.
  std::size_t seal_in_place(unsigned slot, std::span<std::uint8_t> buf, std::size_t plain_len,
                            std::uint8_t lane = 0);
  std::size_t seal_in_place(std::span<std::uint8_t> buf, std::size_t plain_len) {
    return seal_in_place(kOwnerSlot, buf, plain_len);
  }

  // Authenticates and decrypts a whole transport datagram whose header (`hdr`) names this
  // session, on `slot`'s context. No replay check and no shared state: thread-safe across
  // distinct slots. On true, `plain` views the plaintext inside `datagram`; the caller
  // must then pass hdr.counter to accept_counters() before using it. False on a bad tag,
  // a short datagram, a counter at or above the limit or a bad slot (datagram garbage).
  bool decrypt_in_place(unsigned slot, std::span<std::uint8_t> datagram, const TransportHeader& hdr,
                        std::span<std::uint8_t>& plain);

  // Replay check and commit for a batch of already-authenticated counters, under one
  // lock per call. For each i with ok[i] != 0: a counter seen before (in this batch or
  // earlier) or too old for the window gets ok[i] = 0; the others are committed and keep
  // their value. Entries with ok[i] == 0 are skipped (not committed). Only the first
  // min(counters.size(), ok.size()) entries are looked at.
  void accept_counters(std::span<const std::uint64_t> counters, std::span<std::uint8_t> ok);
  // Lock-free pre-check: false means the counter would certainly be refused (too old or
  // at the limit) and need not be decrypted; true means maybe. Duplicates inside the
  // window are only caught by accept_counters().
  bool maybe_fresh(std::uint64_t counter) const;

  enum class OpenResult { ok, replay, decrypt };
  // Slot 0, one packet: decrypt_in_place + accept_counters. On ok, `plain` views the
  // decrypted bytes inside datagram and the counter is marked seen. (Does not call
  // note_rx().)
  OpenResult open_in_place(std::span<std::uint8_t> datagram, const TransportHeader& hdr,
                           std::span<std::uint8_t>& plain);

  // Activity, reported by whoever sealed or opened (relaxed atomics; call once per packet
  // or once per batch with the summed bytes). `data`: a packet carrying more than a
  // keepalive. Times only move forward.
  void note_tx(std::uint64_t now_ms, std::uint64_t bytes, bool data);
  void note_rx(std::uint64_t now_ms, std::uint64_t bytes, bool data);
  // Latest times (0 = never).
  std::uint64_t last_tx_ms() const { return tx_.last_ms.load(kRelaxed); }
  std::uint64_t last_rx_ms() const { return rx_.last_ms.load(kRelaxed); }
  std::uint64_t last_rx_data_ms() const { return rx_.last_data_ms.load(kRelaxed); }
  std::uint64_t last_tx_data_ms() const { return tx_.last_data_ms.load(kRelaxed); }
  // Any data sent or received on this session (it is worth rekeying when old).
  bool carried_data() const { return carried_.load(kRelaxed); }
  std::uint64_t tx_bytes() const { return tx_.bytes.load(kRelaxed); }
  std::uint64_t rx_bytes() const { return rx_.bytes.load(kRelaxed); }

 private:
  static constexpr std::size_t kCacheLine = 64;
  static constexpr std::memory_order kRelaxed = std::memory_order_relaxed;
  struct alignas(kCacheLine) Activity {
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> last_ms{0};
    std::atomic<std::uint64_t> last_data_ms{0};
  };
  AeadCipher* seal_ctx(unsigned slot);
  AeadCipher* open_ctx(unsigned slot);
  void note(Activity& a, std::uint64_t now_ms, std::uint64_t bytes, bool data);

  AeadKey send_key_{};
  AeadKey recv_key_{};
  std::array<AeadCipher, kCipherSlots> seal_;  // seal_[s], open_[s]: only slot s's thread
  std::array<AeadCipher, kCipherSlots> open_;
  std::uint32_t local_index_;
  std::uint32_t remote_index_;
  std::uint64_t created_ms_;
  bool initiator_;
  AeadAlg alg_;
  alignas(kCacheLine) std::atomic<std::uint64_t> send_counter_{0};
  Activity tx_;
  Activity rx_;
  std::atomic<bool> carried_{false};  // set once, by the first data packet either way
  alignas(kCacheLine) mutable std::mutex replay_mu_;
  ReplayWindow replay_;  // guarded by replay_mu_
  // Highest committed counter + 1 (0 = none), for maybe_fresh(); written under the lock.
  std::atomic<std::uint64_t> replay_top_{0};
};

}  // namespace meshd::crypto
