#include "crypto/session.hpp"

namespace meshd::crypto {

std::optional<TransportHeader> parse_transport_header(ByteSpan d) {
  if (d.size() < wire::kTransportHeaderLen + wire::kTagLen) return std::nullopt;
  if (d[0] != static_cast<std::uint8_t>(wire::PacketType::transport) || d[1] != 0 || d[2] != 0 || d[3] != 0) {
    return std::nullopt;
  }
  TransportHeader h;
  for (int i = 0; i < 4; ++i) h.receiver_index |= static_cast<std::uint32_t>(d[4 + i]) << (8 * i);
  for (int i = 0; i < 8; ++i) h.counter |= static_cast<std::uint64_t>(d[8 + i]) << (8 * i);
  return h;
}

void write_transport_header(std::uint8_t* out, std::uint32_t receiver_index, std::uint64_t counter) {
  out[0] = static_cast<std::uint8_t>(wire::PacketType::transport);
  out[1] = out[2] = out[3] = 0;
  for (int i = 0; i < 4; ++i) out[4 + i] = static_cast<std::uint8_t>(receiver_index >> (8 * i));
  for (int i = 0; i < 8; ++i) out[8 + i] = static_cast<std::uint8_t>(counter >> (8 * i));
}

Session::Session(const TransportKeys& keys, std::uint32_t local_index, std::uint32_t remote_index,
                 std::uint64_t created_ms, bool initiator)
    : send_(keys.send, AeadCipher::Dir::seal),
      recv_(keys.recv, AeadCipher::Dir::open),
      local_index_(local_index),
      remote_index_(remote_index),
      created_ms_(created_ms),
      initiator_(initiator) {}

std::size_t Session::seal_in_place(std::span<std::uint8_t> buf, std::size_t plain_len) {
  constexpr std::size_t kHdr = wire::kTransportHeaderLen;
  if (buf.size() < kHdr || buf.size() - kHdr < plain_len || buf.size() - kHdr - plain_len < wire::kTagLen) return 0;
  if (send_counter_ >= ReplayWindow::kCounterLimit) return 0;
  std::uint64_t c = send_counter_++;
  write_transport_header(buf.data(), remote_index_, c);
  if (!send_.seal_in_place(counter_nonce(c), ByteSpan(buf.data(), kHdr), buf.data() + kHdr, plain_len)) return 0;
  return kHdr + plain_len + wire::kTagLen;
}

Session::OpenResult Session::open_in_place(std::span<std::uint8_t> d, const TransportHeader& hdr,
                                           std::span<std::uint8_t>& plain) {
  constexpr std::size_t kHdr = wire::kTransportHeaderLen;
  if (d.size() < kHdr + wire::kTagLen) return OpenResult::decrypt;
  if (!replay_.check(hdr.counter)) return OpenResult::replay;
  std::size_t len = d.size() - kHdr - wire::kTagLen;
  if (!recv_.open_in_place(counter_nonce(hdr.counter), ByteSpan(d.data(), kHdr), d.data() + kHdr, len)) {
    return OpenResult::decrypt;
  }
  replay_.commit(hdr.counter);
  plain = d.subspan(kHdr, len);
  return OpenResult::ok;
}

}  // namespace meshd::crypto
