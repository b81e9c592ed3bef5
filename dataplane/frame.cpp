#include "dataplane/frame.hpp"

#include <algorithm>
#include <array>

namespace meshd::dp {

namespace {

constexpr std::uint16_t kArpHwEthernet = 1;
constexpr std::uint16_t kArpOpReply = 2;

constexpr std::size_t kNdTargetOffset = 8;  // in the ICMPv6 message
constexpr std::uint8_t kNdOptSourceLinkLayer = 1;
constexpr std::uint8_t kNdOptTargetLinkLayer = 2;
constexpr std::size_t kNdOptUnitLen = 8;  // option lengths count 8-byte units
constexpr std::uint8_t kNaFlagRouter = 0x80;
constexpr std::uint8_t kNaFlagSolicited = 0x40;
constexpr std::uint8_t kNaFlagOverride = 0x20;
constexpr std::size_t kNaPayloadLen = kNdMessageLen + kNdLinkLayerOptionLen;
// ff02::1:ff00:0/104, the solicited-node multicast prefix (RFC 4291 2.7.1).
constexpr std::array<std::uint8_t, 13> kSolicitedNodePrefix{
    0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff};

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

IpAddr ipv6_at(ByteSpan s, std::size_t at) {
  IpAddr ip;
  ip.family = 6;
  std::copy_n(s.begin() + static_cast<std::ptrdiff_t>(at), kIpv6AddrLen, ip.bytes.begin());
  return ip;
}
bool is_v6_multicast(const IpAddr& ip) { return ip.bytes[0] == 0xff; }
bool is_solicited_node(const IpAddr& ip) {
  return std::equal(kSolicitedNodePrefix.begin(), kSolicitedNodePrefix.end(), ip.bytes.begin());
}

// RFC 1071 one's complement sum of 16-bit big-endian words, unfolded. 64 bits cannot
// overflow for any message an IPv6 payload length can describe.
std::uint64_t sum16(std::uint64_t acc, const std::uint8_t* p, std::size_t n) {
  for (std::size_t i = 0; i + 1 < n; i += 2) acc += (std::uint32_t{p[i]} << 8) | p[i + 1];
  if (n % 2 != 0) acc += std::uint32_t{p[n - 1]} << 8;
  return acc;
}

// ICMPv6 checksum (RFC 4443 2.3) over the pseudo-header (RFC 8200 8.1) and `msg`. Over a
// message whose checksum field is already filled in, a correct one yields 0.
std::uint16_t icmpv6_checksum(const IpAddr& src, const IpAddr& dst, ByteSpan msg) {
  std::uint64_t acc = 0;
  acc = sum16(acc, src.bytes.data(), kIpv6AddrLen);
  acc = sum16(acc, dst.bytes.data(), kIpv6AddrLen);
  acc += msg.size() >> 16;  // 32-bit upper-layer length
  acc += msg.size() & 0xffff;
  acc += kIpProtoIcmpv6;  // three zero bytes, then the next header
  acc = sum16(acc, msg.data(), msg.size());
  while ((acc >> 16) != 0) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<std::uint16_t>(~acc);
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

bool NsView::is_dad() const {
  return src_ip.is_v6() && std::all_of(src_ip.bytes.begin(), src_ip.bytes.end(),
                                       [](std::uint8_t b) { return b == 0; });
}

std::optional<NsView> parse_ipv6_ns(ByteSpan p) {
  if (p.size() < kIpv6HeaderLen + kNdMessageLen) return std::nullopt;
  if ((p[0] >> 4) != kIpVersion6 || p[6] != kIpProtoIcmpv6 || p[7] != kNdHopLimit) {
    return std::nullopt;
  }
  const std::size_t payload_len = be16(p, 4);
  if (payload_len < kNdMessageLen || payload_len > p.size() - kIpv6HeaderLen) {
    return std::nullopt;
  }
  const ByteSpan icmp = p.subspan(kIpv6HeaderLen, payload_len);
  if (icmp[0] != kIcmpv6NeighborSolicit || icmp[1] != 0) return std::nullopt;
  NsView ns;
  ns.src_ip = ipv6_at(p, kIpv6SrcOffset);
  ns.dst_ip = ipv6_at(p, kIpv6DstOffset);
  ns.target_ip = ipv6_at(icmp, kNdTargetOffset);
  if (is_v6_multicast(ns.src_ip) || is_v6_multicast(ns.target_ip)) return std::nullopt;
  if (icmpv6_checksum(ns.src_ip, ns.dst_ip, icmp) != 0) return std::nullopt;
  // Options: each at least 8 bytes, so at most payload_len / 8 iterations.
  std::size_t off = kNdMessageLen;
  while (off < icmp.size()) {
    if (icmp.size() - off < 2) return std::nullopt;
    const std::size_t len = std::size_t{icmp[off + 1]} * kNdOptUnitLen;
    if (len == 0 || len > icmp.size() - off) return std::nullopt;
    if (icmp[off] == kNdOptSourceLinkLayer && !ns.has_source_lladdr) {
      ns.has_source_lladdr = true;
      ns.source_lladdr = mac_at(icmp, off + 2);  // len >= 8 holds type, len and a MAC
    }
    off += len;
  }
  if (ns.is_dad() && (ns.has_source_lladdr || !is_solicited_node(ns.dst_ip))) {
    return std::nullopt;
  }
  return ns;
}

std::size_t build_ipv6_na(std::span<std::uint8_t> out, const MacAddr& requester_mac,
                          const NsView& ns, const MacAddr& target_mac, bool router) {
  if (out.size() < kNaFrameLen || !ns.src_ip.is_v6() || !ns.target_ip.is_v6() || ns.is_dad()) {
    return 0;
  }
  std::uint8_t* p = out.data();
  std::copy(requester_mac.begin(), requester_mac.end(), p);
  std::copy(target_mac.begin(), target_mac.end(), p + 6);
  put16(p + 12, kEtherTypeIpv6);

  std::uint8_t* ip = p + kEthHeaderLen;
  ip[0] = kIpVersion6 << 4;  // traffic class and flow label 0
  ip[1] = ip[2] = ip[3] = 0;
  put16(ip + 4, static_cast<std::uint16_t>(kNaPayloadLen));
  ip[6] = kIpProtoIcmpv6;
  ip[7] = kNdHopLimit;
  std::copy_n(ns.target_ip.bytes.begin(), kIpv6AddrLen, ip + kIpv6SrcOffset);
  std::copy_n(ns.src_ip.bytes.begin(), kIpv6AddrLen, ip + kIpv6DstOffset);

  std::uint8_t* na = ip + kIpv6HeaderLen;
  na[0] = kIcmpv6NeighborAdvert;
  na[1] = 0;
  na[2] = na[3] = 0;  // checksum, filled below
  na[4] =
      static_cast<std::uint8_t>(kNaFlagSolicited | kNaFlagOverride | (router ? kNaFlagRouter : 0));
  na[5] = na[6] = na[7] = 0;
  std::copy_n(ns.target_ip.bytes.begin(), kIpv6AddrLen, na + kNdTargetOffset);
  std::uint8_t* opt = na + kNdMessageLen;
  opt[0] = kNdOptTargetLinkLayer;
  opt[1] = kNdLinkLayerOptionLen / kNdOptUnitLen;
  std::copy(target_mac.begin(), target_mac.end(), opt + 2);
  put16(na + 2, icmpv6_checksum(ns.target_ip, ns.src_ip, ByteSpan(na, kNaPayloadLen)));
  return kNaFrameLen;
}

}  // namespace meshd::dp
