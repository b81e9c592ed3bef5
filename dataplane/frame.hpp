// Ethernet, ARP and IPv6 Neighbour Discovery views over raw frames. Parsers take a span
// and return nullopt on anything malformed; they never read past the span.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "crypto/address.hpp"
#include "crypto/bytes.hpp"

namespace meshd::dp {

inline constexpr std::uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr std::uint16_t kEtherTypeArp = 0x0806;
inline constexpr std::uint16_t kEtherTypeIpv6 = 0x86DD;
inline constexpr std::size_t kEthHeaderLen = 14;
inline constexpr std::uint16_t kEtherTypeVlan = 0x8100;  // 802.1Q
inline constexpr std::uint16_t kEtherTypeQinQ = 0x88A8;  // 802.1ad S-tag, same layout
inline constexpr std::size_t kVlanTagLen = 4;
inline constexpr std::size_t kArpLen = 28;
inline constexpr std::size_t kArpReplyFrameLen = kEthHeaderLen + kArpLen;  // 42

// IPv6 and Neighbour Discovery (RFC 8200, RFC 4443, RFC 4861).
inline constexpr std::size_t kIpv6HeaderLen = 40;
inline constexpr std::uint8_t kIpVersion6 = 6;
inline constexpr std::size_t kIpv6AddrLen = 16;
inline constexpr std::size_t kIpv6SrcOffset = 8;
inline constexpr std::size_t kIpv6DstOffset = 24;
inline constexpr std::uint8_t kIpProtoIcmpv6 = 58;
inline constexpr std::uint8_t kNdHopLimit = 255;  // ND messages never cross a router
inline constexpr std::uint8_t kIcmpv6NeighborSolicit = 135;
inline constexpr std::uint8_t kIcmpv6NeighborAdvert = 136;
inline constexpr std::size_t kNdMessageLen = 24;         // type..target, before options (NS and NA)
inline constexpr std::size_t kNdLinkLayerOptionLen = 8;  // type, len, 6-byte MAC
// Ethernet + IPv6 + NA + target link-layer address option.
inline constexpr std::size_t kNaFrameLen =
    kEthHeaderLen + kIpv6HeaderLen + kNdMessageLen + kNdLinkLayerOptionLen;  // 86

struct EthView {
  MacAddr dst{};
  MacAddr src{};
  std::uint16_t ethertype = 0;  // after one 802.1Q tag, if any
  bool vlan_tagged = false;     // one 802.1Q (or 802.1ad) tag was skipped
  std::uint16_t vlan_tci = 0;   // that tag's PCP/DEI/VID
  ByteSpan payload;
  bool is_broadcast() const;
  bool is_multicast() const;  // includes broadcast
};
std::optional<EthView> parse_eth(ByteSpan frame);

struct ArpView {
  std::uint16_t op = 0;  // 1 request, 2 reply
  MacAddr sender_mac{};
  IpAddr sender_ip;  // v4
  MacAddr target_mac{};
  IpAddr target_ip;  // v4
};
// Only Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4).
std::optional<ArpView> parse_arp(ByteSpan eth_payload);

// Writes an ARP reply frame "target_ip is at target_mac" to `requester`. Returns the
// frame length (kArpReplyFrameLen), or 0 if `out` is too small.
std::size_t build_arp_reply(std::span<std::uint8_t> out, const ArpView& request,
                            const MacAddr& target_mac);

struct NsView {
  IpAddr src_ip;                   // v6; unspecified (::) for a duplicate address detection probe
  IpAddr dst_ip;                   // v6; the solicited-node multicast group, or the target itself
  IpAddr target_ip;                // v6; never multicast
  bool has_source_lladdr = false;  // a source link-layer address option was present
  MacAddr source_lladdr{};
  // Duplicate address detection (RFC 4862): the sender has no address yet.
  bool is_dad() const;
};
// An IPv6 Neighbour Solicitation (RFC 4861 7.1.1) in an Ethernet payload (ethertype
// 0x86DD). Accepted only if: version 6; next header 58 directly (any extension header,
// even hop-by-hop, is rejected: ND never needs one); hop limit 255; ICMPv6 type 135,
// code 0; payload length >= 24 and within the span (bytes past it, e.g. Ethernet
// padding, are ignored); ICMPv6 checksum correct; source not multicast; target not
// multicast; every option of non-zero length and inside the payload; and, for a DAD probe
// (source ::), destination a solicited-node group and no source link-layer option. The
// first source link-layer option is reported; other options are skipped.
std::optional<NsView> parse_ipv6_ns(ByteSpan eth_payload);

// Writes a Neighbour Advertisement frame "ns.target_ip is at target_mac" answering `ns`:
// Ethernet from target_mac to requester_mac (the solicitation's Ethernet source), IPv6
// from the target to the solicitation's source, hop limit 255, flags Solicited and
// Override (+ Router if `router`), a target link-layer address option, and the ICMPv6
// checksum. Override is right because the answer is the target's own MAC (or, for a
// route, the gateway that stands for it), as a switch doing ND suppression answers.
// Returns kNaFrameLen, or 0 if `out` is too small or `ns` is a DAD probe or not v6 (a
// DAD probe would need a multicast answer to ff02::1 and is left to the target itself).
std::size_t build_ipv6_na(std::span<std::uint8_t> out, const MacAddr& requester_mac,
                          const NsView& ns, const MacAddr& target_mac, bool router);

}  // namespace meshd::dp
