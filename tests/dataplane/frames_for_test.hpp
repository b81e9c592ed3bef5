// Frame builders shared by the dataplane tests.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "crypto/address.hpp"
#include "dataplane/frame.hpp"

namespace meshd::dp::test {

inline constexpr MacAddr kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

inline IpAddr ip4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return IpAddr::v4((std::uint32_t{a} << 24) | (std::uint32_t{b} << 16) |
                    (std::uint32_t{c} << 8) | d);
}

inline void put_mac(std::vector<std::uint8_t>& f, const MacAddr& m) {
  f.insert(f.end(), m.begin(), m.end());
}
inline void put16(std::vector<std::uint8_t>& f, std::uint16_t v) {
  f.push_back(static_cast<std::uint8_t>(v >> 8));
  f.push_back(static_cast<std::uint8_t>(v));
}

inline std::vector<std::uint8_t> eth_frame(const MacAddr& dst, const MacAddr& src,
                                           std::uint16_t type,
                                           const std::vector<std::uint8_t>& payload,
                                           int vlan_id = -1) {
  std::vector<std::uint8_t> f;
  put_mac(f, dst);
  put_mac(f, src);
  if (vlan_id >= 0) {
    put16(f, 0x8100);
    put16(f, static_cast<std::uint16_t>(vlan_id));
  }
  put16(f, type);
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

inline std::vector<std::uint8_t> arp_payload(std::uint16_t op, const MacAddr& smac,
                                             const IpAddr& sip, const MacAddr& tmac,
                                             const IpAddr& tip) {
  std::vector<std::uint8_t> p;
  put16(p, 1);
  put16(p, kEtherTypeIpv4);
  p.push_back(6);
  p.push_back(4);
  put16(p, op);
  put_mac(p, smac);
  p.insert(p.end(), sip.bytes.begin(), sip.bytes.begin() + 4);
  put_mac(p, tmac);
  p.insert(p.end(), tip.bytes.begin(), tip.bytes.begin() + 4);
  return p;
}

inline std::vector<std::uint8_t> arp_request(const MacAddr& smac, const IpAddr& sip,
                                             const IpAddr& tip, int vlan_id = -1) {
  return eth_frame(kBroadcast, smac, kEtherTypeArp,
                   arp_payload(1, smac, sip, MacAddr{}, tip), vlan_id);
}

inline IpAddr ip6(std::string_view s) {
  auto r = IpAddr::parse(s);
  return r.ok() ? r.value() : IpAddr{};
}

// ICMPv6 checksum written out the long way, independent of frame.cpp: the pseudo-header
// is built as bytes and everything is summed as 16-bit words.
inline std::uint16_t icmpv6_checksum_for_test(const IpAddr& src, const IpAddr& dst,
                                              const std::uint8_t* msg, std::size_t len) {
  std::vector<std::uint8_t> all(src.bytes.begin(), src.bytes.end());
  all.insert(all.end(), dst.bytes.begin(), dst.bytes.end());
  all.push_back(static_cast<std::uint8_t>(len >> 24));
  all.push_back(static_cast<std::uint8_t>(len >> 16));
  all.push_back(static_cast<std::uint8_t>(len >> 8));
  all.push_back(static_cast<std::uint8_t>(len));
  all.insert(all.end(), {0, 0, 0, 58});
  all.insert(all.end(), msg, msg + len);
  if (all.size() % 2 != 0) all.push_back(0);
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < all.size(); i += 2) {
    sum += static_cast<std::uint32_t>(all[i] << 8 | all[i + 1]);
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

// Checks the ICMPv6 checksum of an IPv6 packet (header + payload_len bytes).
inline bool icmpv6_checksum_ok_for_test(const std::uint8_t* ip6_packet) {
  IpAddr src, dst;
  src.family = dst.family = 6;
  std::copy_n(ip6_packet + 8, 16, src.bytes.begin());
  std::copy_n(ip6_packet + 24, 16, dst.bytes.begin());
  const std::size_t len = static_cast<std::size_t>(ip6_packet[4] << 8 | ip6_packet[5]);
  return icmpv6_checksum_for_test(src, dst, ip6_packet + 40, len) == 0;
}

// Recomputes the checksum of an IPv6/ICMPv6 packet after a test changed a field.
inline void refresh_icmpv6_checksum(std::vector<std::uint8_t>& ip6_packet) {
  ip6_packet[42] = ip6_packet[43] = 0;
  IpAddr src, dst;
  src.family = dst.family = 6;
  std::copy_n(ip6_packet.begin() + 8, 16, src.bytes.begin());
  std::copy_n(ip6_packet.begin() + 24, 16, dst.bytes.begin());
  const std::size_t len = static_cast<std::size_t>(ip6_packet[4] << 8 | ip6_packet[5]);
  const std::uint16_t c = icmpv6_checksum_for_test(src, dst, ip6_packet.data() + 40, len);
  ip6_packet[42] = static_cast<std::uint8_t>(c >> 8);
  ip6_packet[43] = static_cast<std::uint8_t>(c);
}

// ff02::1:ffXX:XXXX for `target`.
inline IpAddr solicited_node(const IpAddr& target) {
  IpAddr g = ip6("ff02::1:ff00:0");
  std::copy_n(target.bytes.begin() + 13, 3, g.bytes.begin() + 13);
  return g;
}

struct NsSpec {
  IpAddr src;
  IpAddr target;
  std::optional<IpAddr> dst;         // default: the target's solicited-node group
  std::optional<MacAddr> sllao;      // source link-layer address option
  std::vector<std::uint8_t> options_before;  // raw options placed before the SLLAO
  std::uint8_t hop_limit = 255;
};

// An IPv6 packet carrying a Neighbour Solicitation, checksum filled in.
inline std::vector<std::uint8_t> ns_packet(const NsSpec& s) {
  const IpAddr dst = s.dst ? *s.dst : solicited_node(s.target);
  std::vector<std::uint8_t> icmp{135, 0, 0, 0, 0, 0, 0, 0};
  icmp.insert(icmp.end(), s.target.bytes.begin(), s.target.bytes.end());
  icmp.insert(icmp.end(), s.options_before.begin(), s.options_before.end());
  if (s.sllao) {
    icmp.push_back(1);
    icmp.push_back(1);
    put_mac(icmp, *s.sllao);
  }
  std::vector<std::uint8_t> p{0x60, 0, 0, 0};
  put16(p, static_cast<std::uint16_t>(icmp.size()));
  p.push_back(58);
  p.push_back(s.hop_limit);
  p.insert(p.end(), s.src.bytes.begin(), s.src.bytes.end());
  p.insert(p.end(), dst.bytes.begin(), dst.bytes.end());
  p.insert(p.end(), icmp.begin(), icmp.end());
  refresh_icmpv6_checksum(p);
  return p;
}

// The NS in an Ethernet frame to the solicited-node group's multicast MAC.
inline std::vector<std::uint8_t> ns_frame(const MacAddr& smac, const NsSpec& s,
                                          int vlan_id = -1) {
  const IpAddr dst = s.dst ? *s.dst : solicited_node(s.target);
  const MacAddr group{0x33, 0x33, dst.bytes[12], dst.bytes[13], dst.bytes[14], dst.bytes[15]};
  return eth_frame(group, smac, kEtherTypeIpv6, ns_packet(s), vlan_id);
}

}  // namespace meshd::dp::test
