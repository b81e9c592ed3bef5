// ICMP "too big" answers for tenant frames larger than the overlay carries: ICMPv4
// destination unreachable / fragmentation needed (RFC 792, RFC 1191) for IPv4 with DF,
// ICMPv6 packet too big (RFC 4443 3.2) for IPv6, written back to the tenant's TAP so
// that its path MTU discovery shrinks the packets instead of them being lost silently.
// Sans-I/O, no allocation; the parsers never read past the frame's span.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "crypto/bytes.hpp"

namespace meshd::dp {

// Spec limits on the answer's IP packet: RFC 1812 4.3.2.3 (ICMPv4 errors at most 576
// bytes), RFC 4443 2.4 (c) (ICMPv6 errors no larger than the IPv6 minimum MTU).
inline constexpr std::size_t kIcmpv4ErrorIpMax = 576;
inline constexpr std::size_t kIcmpv6ErrorIpMax = 1280;
// The largest answer frame: a VLAN-tagged Ethernet header and a 1280-byte IPv6 packet.
inline constexpr std::size_t kIcmpTooBigFrameMax = 14 + 4 + kIcmpv6ErrorIpMax;
// Extension headers walked before an IPv6 packet's upper layer is known; a longer chain
// gets no answer (it might hide an ICMPv6 error).
inline constexpr std::size_t kIpv6ExtHeadersMax = 8;

enum class TooBigAction {
  fits,         // frame.size() <= frame_max: forward it
  icmp,         // build_icmp_too_big() answers it; drop the frame
  send_anyway,  // IPv4 without DF: the underlay may fragment
  drop,         // not IP, malformed, or an IP packet that must get no answer
};

// What to do with a frame of frame.size() bytes when at most `frame_max` fit. `icmp`
// exactly when build_icmp_too_big(frame, icmp_too_big_mtu(frame, frame_max), out) with a
// large enough `out` returns non-zero. An IPv4 header must be well formed (version, IHL,
// total length within the frame, header checksum) for send_anyway as well as for icmp.
TooBigAction classify_oversize(ByteSpan frame, std::size_t frame_max);

// The L3 MTU to pass to build_icmp_too_big(): frame_max minus this frame's Ethernet
// header (14 bytes, 18 with one 802.1Q/802.1ad tag). 0 if the frame has no Ethernet header
// or frame_max does not exceed it.
std::size_t icmp_too_big_mtu(ByteSpan frame, std::size_t frame_max);

// Builds the answer to `frame` (to be written back to the TAP it came from) into `out`:
//  - Ethernet from the original destination MAC to the original source, with the
//    original's 802.1Q/802.1ad tag if it had one;
//  - IPv4: from the original destination to its source, TOS 0xc0 (internetwork control,
//    RFC 1812 4.3.2.5), the original's identification, DF clear, TTL 64, protocol 1;
//    ICMP type 3 code 4 with `mtu` (capped at 65535) as next-hop MTU; the quote is the
//    original packet from its IP header on, as much as keeps the answer <= 576 bytes;
//  - IPv6: from the original destination to its source, hop limit 64, ICMPv6 type 2
//    code 0 with `mtu` (capped at 2^32 - 1), quote up to a 1280-byte answer, checksum
//    over the pseudo-header.
// `mtu` is the largest IP packet that fits (see icmp_too_big_mtu()); it is reported as
// given, even below the protocol minimum (68, 1280), which only a misconfigured underlay
// produces. `frame` and `out` must not overlap.
// Returns the frame length, or 0 when no answer may be sent: not IPv4/IPv6; malformed
// (truncated, IPv4 header checksum wrong, declared length past the frame); IPv4 without
// DF; IPv4 non-initial fragment; an ICMP error (v4 types 3, 4, 5, 11, 12; v6 types < 128,
// also behind extension headers; a chain longer than kIpv6ExtHeadersMax or cut short gets
// no answer); source address unspecified, loopback, multicast, broadcast or class E;
// destination IP multicast/broadcast or Ethernet source or destination multicast (the
// answer needs unicast addresses to come from and go to); an IP packet no larger than
// `mtu` (not too big); or `out` smaller than kIcmpTooBigFrameMax.
std::size_t build_icmp_too_big(ByteSpan frame, std::size_t mtu, std::span<std::uint8_t> out);

}  // namespace meshd::dp
