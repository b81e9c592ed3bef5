// Frame builders shared by the dataplane tests.
#pragma once

#include <cstdint>
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

}  // namespace meshd::dp::test
