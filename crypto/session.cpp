#include "crypto/session.hpp"

#include <sodium.h>

#include <algorithm>
#include <cassert>

namespace meshd::crypto {

std::optional<TransportHeader> parse_transport_header(ByteSpan d) {
  if (d.size() < wire::kTransportHeaderLen + wire::kTagLen) return std::nullopt;
  if (d[0] != static_cast<std::uint8_t>(wire::PacketType::transport) || d[2] != 0 || d[3] != 0) {
    return std::nullopt;
  }
  TransportHeader h;
  h.lane = d[wire::kLaneOffset];
  for (int i = 0; i < 4; ++i) h.receiver_index |= static_cast<std::uint32_t>(d[4 + i]) << (8 * i);
  for (int i = 0; i < 8; ++i) h.counter |= static_cast<std::uint64_t>(d[8 + i]) << (8 * i);
  return h;
}

void write_transport_header(std::uint8_t* out, std::uint32_t receiver_index, std::uint64_t counter,
                            std::uint8_t lane) {
  out[0] = static_cast<std::uint8_t>(wire::PacketType::transport);
  out[wire::kLaneOffset] = lane;
  out[2] = out[3] = 0;
  for (int i = 0; i < 4; ++i) out[4 + i] = static_cast<std::uint8_t>(receiver_index >> (8 * i));
  for (int i = 0; i < 8; ++i) out[8 + i] = static_cast<std::uint8_t>(counter >> (8 * i));
}

Session::Session(const TransportKeys& keys, std::uint32_t local_index, std::uint32_t remote_index,
                 std::uint64_t created_ms, bool initiator, AeadAlg alg)
    : send_key_(keys.send),
      recv_key_(keys.recv),
      local_index_(local_index),
      remote_index_(remote_index),
      created_ms_(created_ms),
      initiator_(initiator),
      alg_(alg) {
  // The owner's slot is built here, on the owner's thread: valid() reports a failure at
  // once instead of on the first packet.
  seal_[kOwnerSlot] = AeadCipher(send_key_, AeadCipher::Dir::seal, alg_);
  open_[kOwnerSlot] = AeadCipher(recv_key_, AeadCipher::Dir::open, alg_);
}

Session::~Session() {
  sodium_memzero(send_key_.data(), send_key_.size());
  sodium_memzero(recv_key_.data(), recv_key_.size());
}

bool Session::valid() const { return seal_[kOwnerSlot].valid() && open_[kOwnerSlot].valid(); }

AeadCipher* Session::seal_ctx(unsigned slot) {
  assert(slot < kCipherSlots);
  if (slot >= kCipherSlots) return nullptr;
  AeadCipher& c = seal_[slot];
  if (!c.valid()) c = AeadCipher(send_key_, AeadCipher::Dir::seal, alg_);  // first use by this slot
  return c.valid() ? &c : nullptr;
}

AeadCipher* Session::open_ctx(unsigned slot) {
  assert(slot < kCipherSlots);
  if (slot >= kCipherSlots) return nullptr;
  AeadCipher& c = open_[slot];
  if (!c.valid()) c = AeadCipher(recv_key_, AeadCipher::Dir::open, alg_);
  return c.valid() ? &c : nullptr;
}

std::size_t Session::seal_in_place(unsigned slot, std::span<std::uint8_t> buf,
                                   std::size_t plain_len, std::uint8_t lane) {
  constexpr std::size_t kHdr = wire::kTransportHeaderLen;
  if (buf.size() < kHdr || buf.size() - kHdr < plain_len ||
      buf.size() - kHdr - plain_len < wire::kTagLen)
    return 0;
  AeadCipher* c = seal_ctx(slot);
  if (c == nullptr) return 0;
  // Checked before the increment so that the counter stops just past the limit: at most
  // one failed increment per concurrent caller, far below the 2^64 wrap.
  if (send_counter_.load(std::memory_order_relaxed) >= ReplayWindow::kCounterLimit) return 0;
  std::uint64_t n = send_counter_.fetch_add(1, std::memory_order_relaxed);
  if (n >= ReplayWindow::kCounterLimit) return 0;
  write_transport_header(buf.data(), remote_index_, n, lane);
  if (!c->seal_in_place(counter_nonce(n), ByteSpan(buf.data(), kHdr), buf.data() + kHdr, plain_len))
    return 0;
  return kHdr + plain_len + wire::kTagLen;
}

bool Session::decrypt_in_place(unsigned slot, std::span<std::uint8_t> d, const TransportHeader& hdr,
                               std::span<std::uint8_t>& plain) {
  constexpr std::size_t kHdr = wire::kTransportHeaderLen;
  if (d.size() < kHdr + wire::kTagLen || hdr.counter >= ReplayWindow::kCounterLimit) return false;
  AeadCipher* c = open_ctx(slot);
  if (c == nullptr) return false;
  std::size_t len = d.size() - kHdr - wire::kTagLen;
  if (!c->open_in_place(counter_nonce(hdr.counter), ByteSpan(d.data(), kHdr), d.data() + kHdr, len))
    return false;
  plain = d.subspan(kHdr, len);
  return true;
}

void Session::accept_counters(std::span<const std::uint64_t> counters, std::span<std::uint8_t> ok) {
  const std::size_t n = std::min(counters.size(), ok.size());
  std::lock_guard<std::mutex> lock(replay_mu_);
  std::uint64_t top = replay_top_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < n; ++i) {
    if (ok[i] == 0) continue;
    if (!replay_.commit(counters[i])) {
      ok[i] = 0;
      continue;
    }
    top = std::max(top, counters[i] + 1);
  }
  replay_top_.store(top, std::memory_order_relaxed);
}

bool Session::maybe_fresh(std::uint64_t counter) const {
  if (counter >= ReplayWindow::kCounterLimit) return false;
  // The top only grows, so "too old" now stays too old.
  std::uint64_t top = replay_top_.load(std::memory_order_relaxed);
  return top == 0 || counter + ReplayWindow::kWindow + 1 >= top;
}

Session::OpenResult Session::open_in_place(std::span<std::uint8_t> d, const TransportHeader& hdr,
                                           std::span<std::uint8_t>& plain) {
  if (d.size() < wire::kTransportHeaderLen + wire::kTagLen) return OpenResult::decrypt;
  {
    // Cheap refusal before paying for the decryption; the commit below decides.
    std::lock_guard<std::mutex> lock(replay_mu_);
    if (!replay_.check(hdr.counter)) return OpenResult::replay;
  }
  std::span<std::uint8_t> out;
  if (!decrypt_in_place(kOwnerSlot, d, hdr, out)) return OpenResult::decrypt;
  std::uint8_t ok = 1;
  accept_counters(std::span<const std::uint64_t>(&hdr.counter, 1), std::span<std::uint8_t>(&ok, 1));
  if (ok == 0) return OpenResult::replay;  // a worker committed it meanwhile
  plain = out;
  return OpenResult::ok;
}

void Session::note(Activity& a, std::uint64_t now_ms, std::uint64_t bytes, bool data) {
  a.bytes.fetch_add(bytes, std::memory_order_relaxed);
  // Monotonic max; written at most about once per ms per thread, so the line stays
  // mostly shared between workers.
  auto raise = [now_ms](std::atomic<std::uint64_t>& t) {
    std::uint64_t cur = t.load(std::memory_order_relaxed);
    while (cur < now_ms && !t.compare_exchange_weak(cur, now_ms, std::memory_order_relaxed)) {
    }
  };
  raise(a.last_ms);
  if (data) {
    raise(a.last_data_ms);
    if (!carried_.load(std::memory_order_relaxed)) carried_.store(true, std::memory_order_relaxed);
  }
}

void Session::note_tx(std::uint64_t now_ms, std::uint64_t bytes, bool data) {
  note(tx_, now_ms, bytes, data);
}

void Session::note_rx(std::uint64_t now_ms, std::uint64_t bytes, bool data) {
  note(rx_, now_ms, bytes, data);
}

}  // namespace meshd::crypto
