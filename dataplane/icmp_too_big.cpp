#include "dataplane/icmp_too_big.hpp"

#include <algorithm>
#include <optional>

#include "dataplane/frame.hpp"

namespace meshd::dp {

namespace {

constexpr std::size_t kIcmpHeaderLen = 8;  // type, code, checksum, 4 bytes (v4 and v6)
constexpr std::uint8_t kAnswerTtl = 64;

// IPv4 (RFC 791).
constexpr std::size_t kIpv4HeaderLen = 20;  // without options; answers carry none
constexpr std::uint8_t kIpVersion4 = 4;
constexpr std::uint16_t kIpv4FlagDf = 0x4000;
constexpr std::uint16_t kIpv4FragOffsetMask = 0x1fff;
constexpr std::uint8_t kIpProtoIcmp = 1;
constexpr std::uint8_t kTosInternetControl = 0xc0;
constexpr std::uint8_t kIcmpDestUnreachable = 3;
constexpr std::uint8_t kIcmpCodeFragNeeded = 4;
constexpr std::uint16_t kIpv4MtuMax = 0xffff;

// IPv6 (RFC 8200, RFC 4443).
constexpr std::uint8_t kIcmpv6PacketTooBig = 2;
constexpr std::uint8_t kIcmpv6InfoMin = 128;  // types below are errors
constexpr std::uint32_t kIpv6MtuMax = 0xffffffff;
constexpr std::uint8_t kNextHopByHop = 0;
constexpr std::uint8_t kNextRouting = 43;
constexpr std::uint8_t kNextFragment = 44;
constexpr std::uint8_t kNextAh = 51;
constexpr std::uint8_t kNextDestOptions = 60;
constexpr std::size_t kIpv6FragmentHeaderLen = 8;

constexpr std::size_t kIcmpv4QuoteMax = kIcmpv4ErrorIpMax - kIpv4HeaderLen - kIcmpHeaderLen;
constexpr std::size_t kIcmpv6QuoteMax = kIcmpv6ErrorIpMax - kIpv6HeaderLen - kIcmpHeaderLen;
static_assert(kIcmpv4QuoteMax == 548 && kIcmpv6QuoteMax == 1232);

// Callers check the length first.
std::uint16_t be16(ByteSpan s, std::size_t at) {
  return static_cast<std::uint16_t>((s[at] << 8) | s[at + 1]);
}
void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
void put32(std::uint8_t* p, std::uint32_t v) {
  put16(p, static_cast<std::uint16_t>(v >> 16));
  put16(p + 2, static_cast<std::uint16_t>(v));
}

// RFC 1071 one's complement sum of big-endian 16-bit words, unfolded; 64 bits do not
// overflow for anything a frame holds.
std::uint64_t sum16(std::uint64_t acc, const std::uint8_t* p, std::size_t n) {
  for (std::size_t i = 0; i + 1 < n; i += 2) acc += (std::uint32_t{p[i]} << 8) | p[i + 1];
  if (n % 2 != 0) acc += std::uint32_t{p[n - 1]} << 8;
  return acc;
}
std::uint16_t fold(std::uint64_t acc) {
  while ((acc >> 16) != 0) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<std::uint16_t>(~acc);
}

// Why an original gets no answer, or what it is.
enum class Verdict { malformed, v4_no_df, no_answer, answer };

struct Original {
  std::size_t l2_len = 0;  // Ethernet header, with its tag if any
  std::uint8_t family = 0;
  ByteSpan packet;  // the IP packet as its header declares it (Ethernet padding cut)
};

bool v4_source_ok(const std::uint8_t* a) {
  // RFC 1122 3.2.2: no error to "this network" (0/8), loopback, multicast, broadcast or
  // class E sources. 224/4 and 240/4 together are a[0] >= 224.
  return a[0] != 0 && a[0] != 127 && a[0] < 224;
}

bool v6_is_multicast(const std::uint8_t* a) { return a[0] == 0xff; }
bool v6_source_ok(const std::uint8_t* a) {
  if (v6_is_multicast(a)) return false;
  const bool first15_zero =
      std::all_of(a, a + kIpv6AddrLen - 1, [](std::uint8_t b) { return b == 0; });
  return !(first15_zero && (a[15] == 0 || a[15] == 1));  // ::, ::1
}

// Destination unreachable, source quench, redirect, time exceeded, parameter problem.
bool is_icmpv4_error(std::uint8_t type) {
  return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

Verdict inspect_v4(ByteSpan p, Original& o) {
  if (p.size() < kIpv4HeaderLen || (p[0] >> 4) != kIpVersion4) return Verdict::malformed;
  const std::size_t ihl = std::size_t{p[0] & 0x0fu} * 4;
  const std::size_t total_len = be16(p, 2);
  if (ihl < kIpv4HeaderLen || total_len < ihl || total_len > p.size()) return Verdict::malformed;
  if (fold(sum16(0, p.data(), ihl)) != 0) return Verdict::malformed;
  o.packet = p.first(total_len);
  const std::uint16_t frag = be16(p, 6);
  if ((frag & kIpv4FlagDf) == 0) return Verdict::v4_no_df;
  // RFC 1122 3.2.2: no error for a non-initial fragment (it may be part of an ICMP error).
  if ((frag & kIpv4FragOffsetMask) != 0) return Verdict::no_answer;
  if (!v4_source_ok(p.data() + 12) || p[16] >= 224) return Verdict::no_answer;
  if (p[9] == kIpProtoIcmp) {
    if (total_len == ihl) return Verdict::no_answer;  // no ICMP type to look at
    if (is_icmpv4_error(p[ihl])) return Verdict::no_answer;
  }
  return Verdict::answer;
}

// True if the packet's upper layer is an ICMPv6 error, or cannot be told.
bool v6_maybe_icmp_error(ByteSpan packet) {
  std::uint8_t next = packet[6];
  std::size_t off = kIpv6HeaderLen;
  for (std::size_t i = 0; i <= kIpv6ExtHeadersMax; ++i) {
    std::size_t len = 0;
    switch (next) {
      case kIpProtoIcmpv6:
        return off >= packet.size() || packet[off] < kIcmpv6InfoMin;
      case kNextHopByHop:
      case kNextRouting:
      case kNextDestOptions:
        if (packet.size() - off < 2) return true;
        len = (std::size_t{packet[off + 1]} + 1) * 8;
        break;
      case kNextAh:
        if (packet.size() - off < 2) return true;
        len = (std::size_t{packet[off + 1]} + 2) * 4;
        break;
      case kNextFragment:
        if (packet.size() - off < kIpv6FragmentHeaderLen) return true;
        // A later fragment holds no upper-layer header; ICMPv6 errors fit in 1280 bytes
        // and are not fragmented in practice, so it is answered.
        if ((be16(packet, off + 2) & 0xfff8) != 0) return false;
        len = kIpv6FragmentHeaderLen;
        break;
      default:
        return false;  // an upper layer other than ICMPv6, or no next header (59)
    }
    if (i == kIpv6ExtHeadersMax || len > packet.size() - off) return true;
    next = packet[off];
    off += len;
  }
  return true;  // not reached: the loop returns at i == kIpv6ExtHeadersMax
}

Verdict inspect_v6(ByteSpan p, Original& o) {
  if (p.size() < kIpv6HeaderLen || (p[0] >> 4) != kIpVersion6) return Verdict::malformed;
  // Payload length 0 would be a jumbogram, which Ethernet cannot carry: the packet is
  // taken as the 40-byte header alone.
  const std::size_t total_len = kIpv6HeaderLen + be16(p, 4);
  if (total_len > p.size()) return Verdict::malformed;
  o.packet = p.first(total_len);
  if (!v6_source_ok(p.data() + kIpv6SrcOffset) || v6_is_multicast(p.data() + kIpv6DstOffset)) {
    return Verdict::no_answer;
  }
  if (v6_maybe_icmp_error(o.packet)) return Verdict::no_answer;
  return Verdict::answer;
}

Verdict inspect(ByteSpan frame, std::size_t mtu, Original& o) {
  const std::optional<EthView> eth = parse_eth(frame);
  if (!eth) return Verdict::malformed;
  o.l2_len = frame.size() - eth->payload.size();
  Verdict v = Verdict::malformed;
  if (eth->ethertype == kEtherTypeIpv4) {
    o.family = 4;
    v = inspect_v4(eth->payload, o);
  } else if (eth->ethertype == kEtherTypeIpv6) {
    o.family = 6;
    v = inspect_v6(eth->payload, o);
  }
  if (v != Verdict::answer) return v;
  // The answer goes from the original destination MAC, to its source.
  if (eth->is_multicast() || (eth->src[0] & 0x01) != 0) return Verdict::no_answer;
  if (o.packet.size() <= mtu) return Verdict::no_answer;  // not too big after all
  return Verdict::answer;
}

std::size_t write_v4(const Original& o, std::size_t mtu, std::uint8_t* ip) {
  const ByteSpan orig = o.packet;
  const std::size_t quote = std::min(orig.size(), kIcmpv4QuoteMax);
  const std::size_t ip_len = kIpv4HeaderLen + kIcmpHeaderLen + quote;
  ip[0] = (kIpVersion4 << 4) | (kIpv4HeaderLen / 4);
  ip[1] = kTosInternetControl;
  put16(ip + 2, static_cast<std::uint16_t>(ip_len));
  // The original's identification: it changes from packet to packet, which is all a
  // datagram that may be fragmented (DF clear) needs; there is no state to count with.
  ip[4] = orig[4];
  ip[5] = orig[5];
  ip[6] = ip[7] = 0;  // flags (DF clear), fragment offset
  ip[8] = kAnswerTtl;
  ip[9] = kIpProtoIcmp;
  ip[10] = ip[11] = 0;
  std::copy_n(orig.data() + 16, 4, ip + 12);  // from the original destination
  std::copy_n(orig.data() + 12, 4, ip + 16);  // to its source
  put16(ip + 10, fold(sum16(0, ip, kIpv4HeaderLen)));

  std::uint8_t* icmp = ip + kIpv4HeaderLen;
  icmp[0] = kIcmpDestUnreachable;
  icmp[1] = kIcmpCodeFragNeeded;
  icmp[2] = icmp[3] = 0;
  icmp[4] = icmp[5] = 0;
  put16(icmp + 6, static_cast<std::uint16_t>(std::min<std::size_t>(mtu, kIpv4MtuMax)));
  std::copy_n(orig.data(), quote, icmp + kIcmpHeaderLen);
  put16(icmp + 2, fold(sum16(0, icmp, kIcmpHeaderLen + quote)));
  return ip_len;
}

std::size_t write_v6(const Original& o, std::size_t mtu, std::uint8_t* ip) {
  const ByteSpan orig = o.packet;
  const std::size_t quote = std::min(orig.size(), kIcmpv6QuoteMax);
  const std::size_t icmp_len = kIcmpHeaderLen + quote;
  ip[0] = kIpVersion6 << 4;  // traffic class and flow label 0
  ip[1] = ip[2] = ip[3] = 0;
  put16(ip + 4, static_cast<std::uint16_t>(icmp_len));
  ip[6] = kIpProtoIcmpv6;
  ip[7] = kAnswerTtl;
  std::copy_n(orig.data() + kIpv6DstOffset, kIpv6AddrLen, ip + kIpv6SrcOffset);
  std::copy_n(orig.data() + kIpv6SrcOffset, kIpv6AddrLen, ip + kIpv6DstOffset);

  std::uint8_t* icmp = ip + kIpv6HeaderLen;
  icmp[0] = kIcmpv6PacketTooBig;
  icmp[1] = 0;
  icmp[2] = icmp[3] = 0;
  put32(icmp + 4, static_cast<std::uint32_t>(std::min<std::size_t>(mtu, kIpv6MtuMax)));
  std::copy_n(orig.data(), quote, icmp + kIcmpHeaderLen);
  // Pseudo-header (RFC 8200 8.1): addresses, 32-bit length, three zeros, next header.
  std::uint64_t acc = sum16(0, ip + kIpv6SrcOffset, 2 * kIpv6AddrLen);
  acc += icmp_len;  // < 2^16
  acc += kIpProtoIcmpv6;
  put16(icmp + 2, fold(sum16(acc, icmp, icmp_len)));
  return kIpv6HeaderLen + icmp_len;
}

}  // namespace

std::size_t icmp_too_big_mtu(ByteSpan frame, std::size_t frame_max) {
  const std::optional<EthView> eth = parse_eth(frame);
  if (!eth) return 0;
  const std::size_t l2_len = frame.size() - eth->payload.size();
  return frame_max > l2_len ? frame_max - l2_len : 0;
}

TooBigAction classify_oversize(ByteSpan frame, std::size_t frame_max) {
  if (frame.size() <= frame_max) return TooBigAction::fits;
  Original o;
  switch (inspect(frame, icmp_too_big_mtu(frame, frame_max), o)) {
    case Verdict::answer:
      return TooBigAction::icmp;
    case Verdict::v4_no_df:
      return TooBigAction::send_anyway;
    case Verdict::malformed:
    case Verdict::no_answer:
      break;
  }
  return TooBigAction::drop;
}

std::size_t build_icmp_too_big(ByteSpan frame, std::size_t mtu, std::span<std::uint8_t> out) {
  if (out.size() < kIcmpTooBigFrameMax) return 0;
  Original o;
  if (inspect(frame, mtu, o) != Verdict::answer) return 0;

  std::uint8_t* p = out.data();
  std::copy_n(frame.data() + 6, 6, p);  // to the original source MAC
  std::copy_n(frame.data(), 6, p + 6);  // from its destination
  // The tag (if any) and the ethertype stay as they were: same VLAN, same family.
  std::copy_n(frame.data() + 12, o.l2_len - 12, p + 12);
  std::uint8_t* ip = p + o.l2_len;
  const std::size_t ip_len = o.family == 4 ? write_v4(o, mtu, ip) : write_v6(o, mtu, ip);
  static_assert(kIcmpTooBigFrameMax >= kEthHeaderLen + kVlanTagLen + kIcmpv4ErrorIpMax);
  return o.l2_len + ip_len;
}

}  // namespace meshd::dp
