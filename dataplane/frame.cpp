#include "dataplane/frame.hpp"

#include <algorithm>

namespace meshd::dp {

namespace {

constexpr std::uint16_t kEtherTypeVlan = 0x8100;  // 802.1Q
constexpr std::uint16_t kEtherTypeQinQ = 0x88A8;  // 802.1ad S-tag, same layout
constexpr std::size_t kVlanTagLen = 4;
constexpr std::uint16_t kArpHwEthernet = 1;
constexpr std::uint16_t kArpOpReply = 2;
constexpr std::size_t kArpReplyFrameLen = kEthHeaderLen + kArpLen;

// Callers check the length first; these only read inside the span.
std::uint16_t be16(ByteSpan s, std::size_t at) {
  return static_cast<std::uint16_t>((s[at] << 8) | s[at + 1]);
}
MacAddr mac_at(ByteSpan s, std::size_t at) {
  MacAddr m{};
  std::copy_n(s.begin() + static_cast<std::ptrdiff_t>(at), m.size(), m.begin());
  return m;
}
IpAddr ipv4_at(ByteSpan s, std::size_t at) {
  IpAddr ip;
  ip.family = 4;
  std::copy_n(s.begin() + static_cast<std::ptrdiff_t>(at), 4, ip.bytes.begin());
  return ip;
}

void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

}  // namespace

bool EthView::is_broadcast() const {
  return std::all_of(dst.begin(), dst.end(), [](std::uint8_t b) { return b == 0xff; });
}

bool EthView::is_multicast() const { return (dst[0] & 0x01) != 0; }

std::optional<EthView> parse_eth(ByteSpan frame) {
  if (frame.size() < kEthHeaderLen) return std::nullopt;
  EthView v;
  v.dst = mac_at(frame, 0);
  v.src = mac_at(frame, 6);
  std::size_t off = 12;
  std::uint16_t type = be16(frame, off);
  if (type == kEtherTypeVlan || type == kEtherTypeQinQ) {
    if (frame.size() < kEthHeaderLen + kVlanTagLen) return std::nullopt;
    v.vlan_tagged = true;
    v.vlan_tci = be16(frame, off + 2);
    off += kVlanTagLen;
    type = be16(frame, off);
    // Only one tag is understood; a second one is passed on as an opaque ethertype.
  }
  v.ethertype = type;
  v.payload = frame.subspan(off + 2);
  return v;
}

std::optional<ArpView> parse_arp(ByteSpan p) {
  if (p.size() < kArpLen) return std::nullopt;  // trailing Ethernet padding is fine
  if (be16(p, 0) != kArpHwEthernet || be16(p, 2) != kEtherTypeIpv4 || p[4] != 6 ||
      p[5] != 4) {
    return std::nullopt;
  }
  ArpView a;
  a.op = be16(p, 6);
  a.sender_mac = mac_at(p, 8);
  a.sender_ip = ipv4_at(p, 14);
  a.target_mac = mac_at(p, 18);
  a.target_ip = ipv4_at(p, 24);
  return a;
}

std::size_t build_arp_reply(std::span<std::uint8_t> out, const ArpView& request,
                            const MacAddr& target_mac) {
  if (out.size() < kArpReplyFrameLen || !request.target_ip.is_v4() ||
      !request.sender_ip.is_v4()) {
    return 0;
  }
  std::uint8_t* p = out.data();
  std::copy(request.sender_mac.begin(), request.sender_mac.end(), p);
  std::copy(target_mac.begin(), target_mac.end(), p + 6);
  put16(p + 12, kEtherTypeArp);
  std::uint8_t* a = p + kEthHeaderLen;
  put16(a + 0, kArpHwEthernet);
  put16(a + 2, kEtherTypeIpv4);
  a[4] = 6;
  a[5] = 4;
  put16(a + 6, kArpOpReply);
  // The answer: target_ip is at target_mac, addressed back to the requester.
  std::copy(target_mac.begin(), target_mac.end(), a + 8);
  std::copy_n(request.target_ip.bytes.begin(), 4, a + 14);
  std::copy(request.sender_mac.begin(), request.sender_mac.end(), a + 18);
  std::copy_n(request.sender_ip.bytes.begin(), 4, a + 24);
  return kArpReplyFrameLen;
}

}  // namespace meshd::dp
