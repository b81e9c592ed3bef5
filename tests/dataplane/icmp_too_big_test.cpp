// ICMP "too big" answers for oversize tenant frames (RFC 792/1191, RFC 4443 3.2).
#include "dataplane/icmp_too_big.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "dataplane/frame.hpp"
#include "dataplane/frames_for_test.hpp"

namespace meshd::dp {
namespace {

using test::eth_frame;
using test::icmpv6_checksum_ok_for_test;
using test::ip4;
using test::ip6;

constexpr MacAddr kTenant{0x02, 0, 0, 0, 0, 0x0a};
constexpr MacAddr kGateway{0x02, 0, 0, 0, 0, 0x0b};
constexpr std::size_t kFrameMax = 1414;  // the overlay carries 1400-byte IP packets
constexpr std::size_t kMtu = 1400;

// Written out independently of icmp_too_big.cpp: sum the words, fold, complement. Over a
// header or message whose checksum field is filled in, a correct one gives 0.
std::uint16_t inet_checksum_for_test(const std::uint8_t* p, std::size_t n) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < n; i += 2) {
    const std::uint32_t hi = p[i];
    const std::uint32_t lo = i + 1 < n ? p[i + 1] : 0;
    sum += hi << 8 | lo;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

std::uint16_t rd16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

struct V4Spec {
  IpAddr src = ip4(10, 0, 0, 10);
  IpAddr dst = ip4(10, 0, 0, 11);
  std::uint8_t proto = 6;  // TCP
  bool df = true;
  std::uint16_t frag_offset = 0;  // 8-byte units
  std::size_t total_len = 1500;
  std::vector<std::uint8_t> l4_head;  // first bytes after the IP header (default: a pattern)
};

std::vector<std::uint8_t> v4_packet(const V4Spec& s) {
  std::vector<std::uint8_t> p(s.total_len);
  for (std::size_t i = 20; i < p.size(); ++i) p[i] = static_cast<std::uint8_t>(i * 7 + 3);
  std::copy(s.l4_head.begin(), s.l4_head.end(), p.begin() + 20);
  p[0] = 0x45;
  p[2] = static_cast<std::uint8_t>(s.total_len >> 8);
  p[3] = static_cast<std::uint8_t>(s.total_len);
  p[4] = 0x12;  // identification
  p[5] = 0x34;
  const std::uint16_t frag = static_cast<std::uint16_t>((s.df ? 0x4000 : 0) | s.frag_offset);
  p[6] = static_cast<std::uint8_t>(frag >> 8);
  p[7] = static_cast<std::uint8_t>(frag);
  p[8] = 61;
  p[9] = s.proto;
  std::copy_n(s.src.bytes.begin(), 4, p.begin() + 12);
  std::copy_n(s.dst.bytes.begin(), 4, p.begin() + 16);
  const std::uint16_t c = inet_checksum_for_test(p.data(), 20);
  p[10] = static_cast<std::uint8_t>(c >> 8);
  p[11] = static_cast<std::uint8_t>(c);
  return p;
}

std::vector<std::uint8_t> v4_frame(const V4Spec& s, int vlan_id = -1,
                                   const MacAddr& src_mac = kTenant,
                                   const MacAddr& dst_mac = kGateway) {
  return eth_frame(dst_mac, src_mac, kEtherTypeIpv4, v4_packet(s), vlan_id);
}

struct V6Spec {
  IpAddr src = ip6("fd00::a");
  IpAddr dst = ip6("fd00::b");
  std::uint8_t next = 6;
  std::size_t total_len = 1500;
  std::vector<std::uint8_t> after_header;  // extension headers and upper-layer start
};

std::vector<std::uint8_t> v6_packet(const V6Spec& s) {
  std::vector<std::uint8_t> p(s.total_len);
  for (std::size_t i = 40; i < p.size(); ++i) p[i] = static_cast<std::uint8_t>(i * 5 + 1);
  std::copy(s.after_header.begin(), s.after_header.end(), p.begin() + 40);
  p[0] = 0x60;
  p[4] = static_cast<std::uint8_t>((s.total_len - 40) >> 8);
  p[5] = static_cast<std::uint8_t>(s.total_len - 40);
  p[6] = s.next;
  p[7] = 64;
  std::copy(s.src.bytes.begin(), s.src.bytes.end(), p.begin() + 8);
  std::copy(s.dst.bytes.begin(), s.dst.bytes.end(), p.begin() + 24);
  return p;
}

std::vector<std::uint8_t> v6_frame(const V6Spec& s, int vlan_id = -1,
                                   const MacAddr& src_mac = kTenant) {
  return eth_frame(kGateway, src_mac, kEtherTypeIpv6, v6_packet(s), vlan_id);
}

std::size_t build(const std::vector<std::uint8_t>& f, std::vector<std::uint8_t>& out,
                  std::size_t mtu = kMtu) {
  out.assign(kIcmpTooBigFrameMax, 0xee);
  return build_icmp_too_big(f, mtu, out);
}

// The answer's Ethernet header: MACs swapped, same tag, same ethertype.
void check_eth(const std::vector<std::uint8_t>& out, const std::vector<std::uint8_t>& in,
               std::size_t l2_len) {
  CHECK(std::equal(out.begin(), out.begin() + 6, in.begin() + 6));
  CHECK(std::equal(out.begin() + 6, out.begin() + 12, in.begin()));
  CHECK(std::equal(out.begin() + 12, out.begin() + static_cast<std::ptrdiff_t>(l2_len),
                   in.begin() + 12));
}

void check_v4_answer(const std::vector<std::uint8_t>& in, const std::vector<std::uint8_t>& out,
                     std::size_t n, std::size_t l2_len, std::size_t mtu) {
  check_eth(out, in, l2_len);
  const std::uint8_t* o = out.data() + l2_len;
  const std::uint8_t* i = in.data() + l2_len;
  const std::size_t ip_len = rd16(o + 2);
  const std::size_t orig_len = rd16(i + 2);
  CHECK(ip_len == n - l2_len);
  CHECK(ip_len <= 576);
  CHECK(ip_len == 28 + std::min<std::size_t>(orig_len, 548));
  CHECK(o[0] == 0x45);
  CHECK((rd16(o + 6) & 0x4000) == 0);  // DF clear
  CHECK((rd16(o + 6) & 0x1fff) == 0);
  CHECK(o[8] == 64);
  CHECK(o[9] == 1);
  CHECK(std::equal(o + 12, o + 16, i + 16));  // from the original destination
  CHECK(std::equal(o + 16, o + 20, i + 12));  // to the original source
  CHECK(inet_checksum_for_test(o, 20) == 0);
  const std::uint8_t* icmp = o + 20;
  CHECK(icmp[0] == 3);
  CHECK(icmp[1] == 4);
  CHECK(rd16(icmp + 4) == 0);
  CHECK(rd16(icmp + 6) == mtu);
  CHECK(inet_checksum_for_test(icmp, ip_len - 20) == 0);
  CHECK(std::equal(icmp + 8, o + ip_len, i));  // quotes the original from its IP header
}

void check_v6_answer(const std::vector<std::uint8_t>& in, const std::vector<std::uint8_t>& out,
                     std::size_t n, std::size_t l2_len, std::size_t mtu) {
  check_eth(out, in, l2_len);
  const std::uint8_t* o = out.data() + l2_len;
  const std::uint8_t* i = in.data() + l2_len;
  const std::size_t payload_len = rd16(o + 4);
  const std::size_t orig_len = 40 + std::size_t{rd16(i + 4)};
  CHECK(40 + payload_len == n - l2_len);
  CHECK(40 + payload_len <= 1280);
  CHECK(40 + payload_len == 48 + std::min<std::size_t>(orig_len, 1232));
  CHECK((o[0] >> 4) == 6);
  CHECK(o[6] == 58);
  CHECK(o[7] == 64);
  CHECK(std::equal(o + 8, o + 24, i + 24));
  CHECK(std::equal(o + 24, o + 40, i + 8));
  CHECK(icmpv6_checksum_ok_for_test(o));
  const std::uint8_t* icmp = o + 40;
  CHECK(icmp[0] == 2);
  CHECK(icmp[1] == 0);
  CHECK((std::uint32_t{rd16(icmp + 4)} << 16 | rd16(icmp + 6)) == mtu);
  CHECK(std::equal(icmp + 8, o + 40 + payload_len, i));
}

TEST_CASE("icmp_too_big: IPv4 with DF gets fragmentation needed, quoting up to 576 bytes") {
  const auto f = v4_frame(V4Spec{});
  REQUIRE(f.size() == 1514);
  CHECK(classify_oversize(f, kFrameMax) == TooBigAction::icmp);
  CHECK(icmp_too_big_mtu(f, kFrameMax) == kMtu);
  std::vector<std::uint8_t> out;
  const std::size_t n = build(f, out);
  REQUIRE(n == 14 + 576);
  check_v4_answer(f, out, n, 14, kMtu);
  CHECK(out[14 + 1] == 0xc0);                  // TOS internetwork control
  CHECK(rd16(out.data() + 14 + 4) == 0x1234);  // the original's identification
  CHECK(out[n] == 0xee);                       // nothing written past the answer
}

TEST_CASE("icmp_too_big: a short IPv4 original is quoted whole, padding excluded") {
  V4Spec s;
  s.total_len = 300;
  auto f = v4_frame(s);
  f.insert(f.end(), 6, 0xaa);  // bytes past the IP total length are not the packet's
  CHECK(classify_oversize(f, 200) == TooBigAction::icmp);
  std::vector<std::uint8_t> out;
  const std::size_t n = build(f, out, 186);
  REQUIRE(n == 14 + 28 + 300);
  check_v4_answer(f, out, n, 14, 186);
}

TEST_CASE("icmp_too_big: IPv6 gets packet too big, quoting up to 1280 bytes") {
  const auto f = v6_frame(V6Spec{});
  REQUIRE(f.size() == 1514);
  CHECK(classify_oversize(f, kFrameMax) == TooBigAction::icmp);
  std::vector<std::uint8_t> out;
  const std::size_t n = build(f, out);
  REQUIRE(n == 14 + 1280);
  check_v6_answer(f, out, n, 14, kMtu);
  CHECK(out[n] == 0xee);
}

TEST_CASE("icmp_too_big: a short IPv6 original is quoted whole") {
  V6Spec s;
  s.total_len = 1001;  // odd length: the checksum pads the last byte
  const auto f = v6_frame(s);
  std::vector<std::uint8_t> out;
  const std::size_t n = build(f, out, 1000);
  REQUIRE(n == 14 + 48 + 1001);
  check_v6_answer(f, out, n, 14, 1000);
}

TEST_CASE("icmp_too_big: a VLAN tag is kept and counted in the Ethernet header") {
  const auto f4 = v4_frame(V4Spec{}, 42);
  REQUIRE(f4.size() == 1518);
  CHECK(icmp_too_big_mtu(f4, kFrameMax) == kFrameMax - 18);
  CHECK(classify_oversize(f4, kFrameMax) == TooBigAction::icmp);
  std::vector<std::uint8_t> out;
  std::size_t n = build(f4, out, kFrameMax - 18);
  REQUIRE(n == 18 + 576);
  CHECK(rd16(out.data() + 12) == 0x8100);
  CHECK(rd16(out.data() + 14) == 42);
  check_v4_answer(f4, out, n, 18, kFrameMax - 18);

  const auto f6 = v6_frame(V6Spec{}, 7);
  n = build(f6, out, kFrameMax - 18);
  REQUIRE(n == kIcmpTooBigFrameMax);
  CHECK(rd16(out.data() + 14) == 7);
  check_v6_answer(f6, out, n, 18, kFrameMax - 18);
}

TEST_CASE("icmp_too_big: MTU fields are capped at their width") {
  V4Spec s4;
  s4.total_len = 0xffff;
  std::vector<std::uint8_t> out;
  const auto f4 = v4_frame(s4);
  REQUIRE(build(f4, out, 0x10000 + 5) == 0);  // the packet fits in such an MTU
  REQUIRE(build(f4, out, 0xfffe) == 14 + 576);
  CHECK(rd16(out.data() + 14 + 26) == 0xfffe);
}

TEST_CASE("icmp_too_big: frames that fit are left alone") {
  const auto f = v4_frame(V4Spec{});
  CHECK(classify_oversize(f, f.size()) == TooBigAction::fits);
  CHECK(classify_oversize(f, 9000) == TooBigAction::fits);
  // An IP packet no larger than the MTU is not too big, whatever the frame's length.
  std::vector<std::uint8_t> out;
  CHECK(build(f, out, 1500) == 0);
  CHECK(build(f, out, 1499) != 0);
}

TEST_CASE("icmp_too_big: IPv4 without DF is sent anyway and gets no answer") {
  V4Spec s;
  s.df = false;
  const auto f = v4_frame(s);
  CHECK(classify_oversize(f, kFrameMax) == TooBigAction::send_anyway);
  std::vector<std::uint8_t> out;
  CHECK(build(f, out) == 0);
}

TEST_CASE("icmp_too_big: ICMP errors get no answer, ICMP queries do") {
  std::vector<std::uint8_t> out;
  for (const std::uint8_t type : {3, 4, 5, 11, 12}) {
    V4Spec s;
    s.proto = 1;
    s.l4_head = {type, 0};
    const auto f = v4_frame(s);
    CAPTURE(type);
    CHECK(classify_oversize(f, kFrameMax) == TooBigAction::drop);
    CHECK(build(f, out) == 0);
  }
  V4Spec echo;
  echo.proto = 1;
  echo.l4_head = {8, 0};
  CHECK(build(v4_frame(echo), out) == 14 + 576);

  for (const std::uint8_t type : {1, 2, 3, 4, 127}) {
    V6Spec s;
    s.next = 58;
    s.after_header = {type, 0};
    const auto f = v6_frame(s);
    CAPTURE(type);
    CHECK(classify_oversize(f, kFrameMax) == TooBigAction::drop);
    CHECK(build(f, out) == 0);
  }
  V6Spec echo6;
  echo6.next = 58;
  echo6.after_header = {128, 0};
  CHECK(build(v6_frame(echo6), out) == 14 + 1280);
}

TEST_CASE("icmp_too_big: an ICMPv6 error behind extension headers gets no answer") {
  std::vector<std::uint8_t> out;
  // Hop-by-hop (8 bytes) -> destination options (16 bytes) -> ICMPv6.
  const std::vector<std::uint8_t> hbh{60, 0, 1, 4, 0, 0, 0, 0};
  std::vector<std::uint8_t> dest{58, 1, 1, 12};
  dest.resize(16, 0);
  V6Spec s;
  s.next = 0;
  s.after_header = hbh;
  s.after_header.insert(s.after_header.end(), dest.begin(), dest.end());
  s.after_header.push_back(1);  // destination unreachable
  CHECK(build(v6_frame(s), out) == 0);
  s.after_header.back() = 128;  // echo request
  CHECK(build(v6_frame(s), out) == 14 + 1280);

  // A first fragment is looked into; a later one is answered (it holds no ICMPv6 header).
  V6Spec frag;
  frag.next = 44;
  frag.after_header = {58, 0, 0, 1, 0, 0, 0, 1, 3, 0};  // offset 0, M set
  CHECK(build(v6_frame(frag), out) == 0);
  frag.after_header = {58, 0, 0x05, 0x01, 0, 0, 0, 1, 3, 0};  // offset 160 bytes
  CHECK(build(v6_frame(frag), out) == 14 + 1280);

  // More than kIpv6ExtHeadersMax extension headers: not answered.
  V6Spec chain;
  chain.next = 60;
  for (std::size_t i = 0; i < kIpv6ExtHeadersMax; ++i) {
    chain.after_header.insert(chain.after_header.end(), {60, 0, 1, 4, 0, 0, 0, 0});
  }
  chain.after_header.insert(chain.after_header.end(), {6, 0, 1, 4, 0, 0, 0, 0});
  CHECK(build(v6_frame(chain), out) == 0);
  chain.after_header.erase(chain.after_header.begin(), chain.after_header.begin() + 8);
  CHECK(build(v6_frame(chain), out) == 14 + 1280);  // exactly the maximum
}

TEST_CASE("icmp_too_big: non-IP and malformed frames are dropped") {
  std::vector<std::uint8_t> out;
  auto arp = test::arp_request(kTenant, ip4(10, 0, 0, 10), ip4(10, 0, 0, 11));
  arp.resize(1514, 0);
  CHECK(classify_oversize(arp, kFrameMax) == TooBigAction::drop);
  CHECK(build(arp, out) == 0);

  auto bad_sum = v4_frame(V4Spec{});
  bad_sum[14 + 10] ^= 1;
  CHECK(classify_oversize(bad_sum, kFrameMax) == TooBigAction::drop);
  CHECK(build(bad_sum, out) == 0);

  auto bad_len = v4_frame(V4Spec{});
  bad_len.resize(1400);  // total length 1500 says more than the frame holds
  CHECK(classify_oversize(bad_len, 1000) == TooBigAction::drop);
  CHECK(build(bad_len, out, 986) == 0);

  auto v6_short = v6_frame(V6Spec{});
  v6_short.pop_back();
  CHECK(classify_oversize(v6_short, kFrameMax) == TooBigAction::drop);

  auto wrong_version = v6_frame(V6Spec{});
  wrong_version[14] = 0x40;
  CHECK(build(wrong_version, out) == 0);
}

TEST_CASE("icmp_too_big: IPv4 non-initial fragments get no answer") {
  V4Spec s;
  s.frag_offset = 185;
  std::vector<std::uint8_t> out;
  CHECK(build(v4_frame(s), out) == 0);
  CHECK(classify_oversize(v4_frame(s), kFrameMax) == TooBigAction::drop);
}

TEST_CASE("icmp_too_big: no answer to or from multicast, broadcast, unspecified addresses") {
  std::vector<std::uint8_t> out;
  for (const IpAddr& src : {ip4(224, 0, 0, 1), ip4(239, 1, 2, 3), ip4(255, 255, 255, 255),
                            ip4(240, 0, 0, 1), ip4(0, 0, 0, 0), ip4(127, 0, 0, 1)}) {
    V4Spec s;
    s.src = src;
    CAPTURE(src.str());
    CHECK(build(v4_frame(s), out) == 0);
    CHECK(classify_oversize(v4_frame(s), kFrameMax) == TooBigAction::drop);
  }
  for (const IpAddr& dst : {ip4(224, 0, 0, 251), ip4(255, 255, 255, 255)}) {
    V4Spec s;
    s.dst = dst;
    CHECK(build(v4_frame(s), out) == 0);
  }
  for (const IpAddr& src : {ip6("ff02::1"), ip6("::"), ip6("::1")}) {
    V6Spec s;
    s.src = src;
    CAPTURE(src.str());
    CHECK(build(v6_frame(s), out) == 0);
  }
  V6Spec mdst;
  mdst.dst = ip6("ff02::1");
  CHECK(build(v6_frame(mdst), out) == 0);

  // Ethernet: the answer would come from a group MAC or go to one.
  const MacAddr group{0x01, 0x00, 0x5e, 0, 0, 1};
  CHECK(build(v4_frame(V4Spec{}, -1, group), out) == 0);
  CHECK(build(v6_frame(V6Spec{}, -1, group), out) == 0);
  CHECK(build(v4_frame(V4Spec{}, -1, kTenant, test::kBroadcast), out) == 0);
  CHECK(build(v4_frame(V4Spec{}, -1, kTenant, group), out) == 0);
}

TEST_CASE("icmp_too_big: an output buffer smaller than kIcmpTooBigFrameMax gets nothing") {
  const auto f = v4_frame(V4Spec{});
  std::vector<std::uint8_t> out(kIcmpTooBigFrameMax - 1, 0xee);
  CHECK(build_icmp_too_big(f, kMtu, out) == 0);
  CHECK(std::all_of(out.begin(), out.end(), [](std::uint8_t b) { return b == 0xee; }));
  CHECK(build_icmp_too_big(f, kMtu, {}) == 0);
}

TEST_CASE("icmp_too_big: truncated frames of 0..60 bytes are never answered") {
  V6Spec ext;
  ext.next = 0;
  ext.after_header = {58, 0, 1, 4, 0, 0, 0, 0, 128, 0};
  const std::vector<std::vector<std::uint8_t>> whole{v4_frame(V4Spec{}), v4_frame(V4Spec{}, 5),
                                                     v6_frame(V6Spec{}), v6_frame(V6Spec{}, 5),
                                                     v6_frame(ext)};
  std::vector<std::uint8_t> out;
  for (const auto& w : whole) {
    for (std::size_t len = 0; len <= 60; ++len) {
      // A copy of exactly `len` bytes, so that a read past it is a heap overflow (ASan).
      const std::vector<std::uint8_t> f(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(len));
      CAPTURE(len);
      CHECK(build(f, out, 0) == 0);
      CHECK(build(f, out, 20) == 0);
      const TooBigAction a = classify_oversize(f, 0);
      CHECK((a == TooBigAction::drop || (len == 0 && a == TooBigAction::fits)));
    }
  }
}

TEST_CASE("icmp_too_big: mutated frames stay in bounds; classify agrees with build") {
  // Deterministic xorshift: same inputs every run.
  std::uint64_t x = 0x9e3779b97f4a7c15ull;
  const auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  V6Spec ext;
  ext.next = 0;
  ext.after_header = {44, 0, 1, 4, 0, 0, 0, 0, 58, 0, 0, 0, 0, 0, 0, 0, 2};
  V4Spec icmp4;
  icmp4.proto = 1;
  const std::vector<std::vector<std::uint8_t>> seeds{v4_frame(V4Spec{}), v4_frame(icmp4, 3),
                                                     v6_frame(V6Spec{}), v6_frame(ext, 9)};
  std::vector<std::uint8_t> out;
  std::size_t answered = 0;
  for (int round = 0; round < 20000; ++round) {
    auto f = seeds[next() % seeds.size()];
    if (next() % 4 == 0) f.resize(next() % (f.size() + 1));
    const std::size_t flips = next() % 4;
    for (std::size_t i = 0; i < flips && !f.empty(); ++i) {
      // Mostly in the headers, where the decisions are.
      const std::size_t at = next() % std::min<std::size_t>(f.size(), 80);
      f[at] = static_cast<std::uint8_t>(next());
    }
    const std::size_t frame_max = next() % (f.size() + 100);
    const std::size_t mtu = icmp_too_big_mtu(f, frame_max);
    const std::size_t n = build(f, out, mtu);
    CHECK(n <= kIcmpTooBigFrameMax);
    if (f.size() > frame_max) {
      CHECK((classify_oversize(f, frame_max) == TooBigAction::icmp) == (n != 0));
    }
    if (n != 0) ++answered;
  }
  CHECK(answered > 100);  // the mutations do not only produce garbage
}

}  // namespace
}  // namespace meshd::dp
