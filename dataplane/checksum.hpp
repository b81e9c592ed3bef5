// Internet checksum (RFC 1071) helpers for the offload code and its tests. Partial sums
// are one's-complement sums of big-endian 16-bit words, folded to 16 bits and not
// complemented; combine them with checksum_add() and complement once at the end.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "crypto/bytes.hpp"

namespace meshd::dp {

// a + b in one's-complement arithmetic.
inline std::uint16_t checksum_add(std::uint32_t a, std::uint32_t b) {
  std::uint64_t s = std::uint64_t{a} + b;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<std::uint16_t>(s);
}

// Folded sum of `data` (an odd last byte is padded with a zero byte) plus `initial`.
// Summing several pieces and adding them gives the sum of their concatenation only if
// every piece but the last has an even length.
inline std::uint16_t checksum_partial(ByteSpan data, std::uint16_t initial = 0) {
  // The sum is byte-order independent (RFC 1071 2.B): add native words, swap at the end.
  // 0xffff divides 2^64 - 1, so an end-around carry on 64-bit words keeps it exact.
  const std::uint8_t* p = data.data();
  std::size_t n = data.size();
  // 32-bit words into four 64-bit sums: no carries to chase until 2^32 words, and four
  // independent chains (about twice the speed of one end-around-carry chain).
  std::uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  while (n >= 16) {
    std::uint32_t w[4];
    std::memcpy(w, p, 16);
    a0 += w[0];
    a1 += w[1];
    a2 += w[2];
    a3 += w[3];
    p += 16;
    n -= 16;
  }
  std::uint64_t acc = a0 + a1;  // each < 2^62: no overflow
  const std::uint64_t hi = a2 + a3;
  acc += hi;
  acc += (acc < hi) ? 1 : 0;
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    acc += w;
    acc += (acc < w) ? 1 : 0;
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    acc += w;
    acc += (acc < w) ? 1 : 0;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    std::uint16_t w;
    std::memcpy(&w, p, 2);
    acc += w;
    acc += (acc < w) ? 1 : 0;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    const std::uint64_t w =
        std::endian::native == std::endian::little ? p[0] : std::uint64_t{p[0]} << 8;
    acc += w;
    acc += (acc < w) ? 1 : 0;
  }
  acc = (acc & 0xffffffff) + (acc >> 32);
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  auto s = static_cast<std::uint16_t>(acc);
  if constexpr (std::endian::native == std::endian::little) {
    s = static_cast<std::uint16_t>(s << 8 | s >> 8);
  }
  return checksum_add(s, initial);
}

// The checksum to store in a header: the complement of the folded sum. Over a header
// that already holds its checksum, 0 means the header is intact.
inline std::uint16_t ip_checksum(ByteSpan data) {
  return static_cast<std::uint16_t>(~checksum_partial(data));
}

// Pseudo-header sums for TCP/UDP (RFC 793, RFC 768, RFC 8200 8.1). `src`/`dst` point
// at the address fields of the IP header (4 or 16 bytes each).
inline std::uint16_t pseudo_header_sum_v4(const std::uint8_t* src, const std::uint8_t* dst,
                                          std::uint8_t proto, std::uint32_t l4_len) {
  std::uint16_t s = checksum_partial(ByteSpan(src, 4));
  s = checksum_partial(ByteSpan(dst, 4), s);
  return checksum_add(s, checksum_add(proto, l4_len));
}
inline std::uint16_t pseudo_header_sum_v6(const std::uint8_t* src, const std::uint8_t* dst,
                                          std::uint8_t proto, std::uint32_t l4_len) {
  std::uint16_t s = checksum_partial(ByteSpan(src, 16));
  s = checksum_partial(ByteSpan(dst, 16), s);
  return checksum_add(s, checksum_add(proto, checksum_add(l4_len >> 16, l4_len & 0xffff)));
}

}  // namespace meshd::dp
