// The encrypted inner header every tunnel plaintext starts with (DESIGN.md, Wire
// formats): vni:u24 | flags:u8, little-endian like crypto/bytes.hpp ByteWriter::u24.
// Written straight into packet buffers: no allocation.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "crypto/wire.hpp"

namespace meshd::agent {

struct InnerHeader {
  std::uint32_t vni = 0;  // 0 for control messages
  std::uint8_t flags = 0;
};

// Writes the header into out[0..4). `out` must hold at least kInnerHeaderLen bytes.
inline void encode_inner_header(std::span<std::uint8_t> out, const InnerHeader& h) {
  out[0] = static_cast<std::uint8_t>(h.vni);
  out[1] = static_cast<std::uint8_t>(h.vni >> 8);
  out[2] = static_cast<std::uint8_t>(h.vni >> 16);
  out[3] = h.flags;
}

// nullopt if the plaintext is shorter than the header.
inline std::optional<InnerHeader> decode_inner_header(std::span<const std::uint8_t> in) {
  if (in.size() < wire::kInnerHeaderLen) return std::nullopt;
  InnerHeader h;
  h.vni = static_cast<std::uint32_t>(in[0]) | static_cast<std::uint32_t>(in[1]) << 8 |
          static_cast<std::uint32_t>(in[2]) << 16;
  h.flags = in[3];
  return h;
}

}  // namespace meshd::agent
