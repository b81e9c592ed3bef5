// Ethernet and ARP views over raw frames. Parsers take a span and return nullopt on
// anything malformed; they never read past the span.
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
inline constexpr std::size_t kArpLen = 28;

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
// frame length (42), or 0 if `out` is too small.
std::size_t build_arp_reply(std::span<std::uint8_t> out, const ArpView& request,
                            const MacAddr& target_mac);

}  // namespace meshd::dp
