// Spec constants of the UDP wire format (DESIGN.md, Wire formats). Tuning constants
// live with the objects they tune.
#pragma once

#include <cstddef>
#include <cstdint>

namespace meshd::wire {

enum class PacketType : std::uint8_t {
  handshake_init = 1,
  handshake_resp = 2,
  cookie_reply = 3,
  transport = 4,
};

// Transport packet: type:u8 | lane:u8 | reserved:2 | receiver_index:u32 | counter:u64 |
//                   AEAD( vni:u24 | flags:u8 | payload ) | tag:16
// lane is the first of DESIGN.md's three reserved bytes: the index of the sender's
// data-plane worker (0 from the control thread). The receiver's kernel hands a datagram
// to worker `lane mod workers` (agent/udp_socket.hpp, attach_lane_steering), so that one
// flow stays on one worker at both ends and different flows spread over the cores. It is
// part of the AD (authenticated, not secret); the other two bytes must be zero.
inline constexpr std::size_t kTransportHeaderLen = 16;
inline constexpr std::size_t kLaneOffset = 1;
inline constexpr std::size_t kTagLen = 16;
inline constexpr std::size_t kInnerHeaderLen = 4;  // vni:u24 | flags:u8 (encrypted)
inline constexpr std::size_t kTransportOverhead = kTransportHeaderLen + kTagLen + kInnerHeaderLen;

// Inner flags.
inline constexpr std::uint8_t kFlagControl = 0x01;  // payload is a msgpack control message, vni = 0
inline constexpr std::uint8_t kFlagKeepalive = 0x02;  // empty payload

inline constexpr std::size_t kUnderlayMtu = 1500;
inline constexpr std::size_t kIpv6UdpOverhead = 40 + 8;
inline constexpr std::size_t kEthernetHeaderLen = 14;
// Default tenant MTU: fits an IPv6 underlay of 1500 bytes.
// 1500 - 48 (IPv6+UDP) - 36 (meshd) - 14 (inner Ethernet) = 1402 -> 1400.
inline constexpr std::size_t kDefaultTenantMtu = 1400;
static_assert(kDefaultTenantMtu + kEthernetHeaderLen + kTransportOverhead + kIpv6UdpOverhead <=
              kUnderlayMtu);

inline constexpr std::size_t kMaxDatagram = 65535;

}  // namespace meshd::wire
