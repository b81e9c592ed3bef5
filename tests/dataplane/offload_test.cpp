#include "dataplane/offload.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <random>
#include <vector>

#include "dataplane/frames_for_test.hpp"

namespace meshd::dp {
namespace {

using Frame = std::vector<std::uint8_t>;
using test::eth_frame;

constexpr MacAddr kA{0x02, 0, 0, 0, 0, 0x0a};
constexpr MacAddr kB{0x02, 0, 0, 0, 0, 0x0b};
constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kPsh = 0x08, kAck = 0x10, kEce = 0x40, kCwr = 0x80;
constexpr std::uint16_t kMss = 1388;

std::uint16_t rd16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
std::uint32_t rd32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
void wr16(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
void push16(Frame& f, std::uint32_t v) {
  f.push_back(static_cast<std::uint8_t>(v >> 8));
  f.push_back(static_cast<std::uint8_t>(v));
}
void push32(Frame& f, std::uint32_t v) {
  push16(f, v >> 16);
  push16(f, v & 0xffff);
}

// ---- Reference checksums, byte by byte, independent of checksum.hpp ----

std::uint32_t ref_sum(const std::uint8_t* p, std::size_t n, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i < n; ++i) sum += (i % 2 == 0) ? p[i] << 8 : p[i];
  return sum;
}
std::uint16_t ref_fold(std::uint32_t sum) {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

// Pseudo-header bytes for the IP header at `ip` (no IPv6 extension headers).
Frame ref_pseudo(const std::uint8_t* ip, std::uint32_t l4_len) {
  Frame ph;
  if (ip[0] >> 4 == 6) {
    ph.insert(ph.end(), ip + 8, ip + 40);
    push32(ph, l4_len);
    ph.insert(ph.end(), {0, 0, 0, ip[6]});
  } else {
    ph.insert(ph.end(), ip + 12, ip + 20);
    ph.push_back(0);
    ph.push_back(ip[9]);
    push16(ph, l4_len);
  }
  return ph;
}

// The L4 checksum the packet at `ip` should carry: pseudo-header plus the L4 bytes with
// the checksum field taken as zero.
std::uint16_t ref_l4_checksum(const std::uint8_t* ip, std::size_t l4_off_in_ip, std::size_t l4_len,
                              std::size_t csum_field) {
  Frame all = ref_pseudo(ip, static_cast<std::uint32_t>(l4_len));
  const std::size_t base = all.size();
  all.insert(all.end(), ip + l4_off_in_ip, ip + l4_off_in_ip + l4_len);
  all[base + csum_field] = all[base + csum_field + 1] = 0;
  return static_cast<std::uint16_t>(~ref_fold(ref_sum(all.data(), all.size())));
}

bool ref_ip4_header_ok(const std::uint8_t* ip) {
  return ref_fold(ref_sum(ip, std::size_t{ip[0] & 0x0fu} * 4)) == 0xffff;
}

// ---- Frame builder ----

struct Spec {
  bool v6 = false;
  bool udp = false;
  int vlan = -1;
  std::size_t payload_len = 0;
  std::uint8_t payload_seed = 1;
  std::uint8_t tcp_flags = kAck;
  std::uint32_t seq = 0xffffe000;  // wraps during a 64 KiB super-frame
  std::uint32_t ack = 777;
  std::uint16_t window = 1024;
  std::uint16_t ip_id = 0xfffd;  // wraps too
  std::uint16_t sport = 40000, dport = 5201;
  bool timestamps = true;
  std::size_t ip4_options = 0;  // NOP bytes, a multiple of 4
  std::uint8_t ttl = 64;
  bool ip6_hop_by_hop = false;
  bool partial_csum = false;  // the kernel's CHECKSUM_PARTIAL form instead of a full sum
};

std::uint8_t payload_byte(const Spec& s, std::size_t i) {
  return static_cast<std::uint8_t>(i * 131 + s.payload_seed * 7 + (i >> 8));
}

struct Layout {
  std::size_t ip_off, l4_off, hdr_end;
};
Layout layout(const Spec& s) {
  Layout l;
  l.ip_off = s.vlan >= 0 ? 18 : 14;
  l.l4_off = l.ip_off + (s.v6 ? 40 + (s.ip6_hop_by_hop ? 8 : 0) : 20 + s.ip4_options);
  l.hdr_end = l.l4_off + (s.udp ? 8 : 20 + (s.timestamps ? 12 : 0));
  return l;
}

Frame build(const Spec& s) {
  Frame l4;
  const std::size_t l4_hdr = s.udp ? 8 : 20 + (s.timestamps ? 12 : 0);
  const std::size_t l4_len = l4_hdr + s.payload_len;
  push16(l4, s.sport);
  push16(l4, s.dport);
  if (s.udp) {
    push16(l4, static_cast<std::uint32_t>(l4_len));
    push16(l4, 0);
  } else {
    push32(l4, s.seq);
    push32(l4, s.ack);
    l4.push_back(static_cast<std::uint8_t>(l4_hdr / 4 << 4));
    l4.push_back(s.tcp_flags);
    push16(l4, s.window);
    push16(l4, 0);  // checksum
    push16(l4, 0);  // urgent pointer
    if (s.timestamps) l4.insert(l4.end(), {1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78});
  }
  for (std::size_t i = 0; i < s.payload_len; ++i) l4.push_back(payload_byte(s, i));

  Frame ip;
  const std::uint8_t proto = s.udp ? 17 : 6;
  if (s.v6) {
    ip = {0x60, 0, 0, 0};
    push16(ip, static_cast<std::uint32_t>(l4_len + (s.ip6_hop_by_hop ? 8 : 0)));
    ip.push_back(s.ip6_hop_by_hop ? 0 : proto);
    ip.push_back(s.ttl);
    const auto src = test::ip6("fd00::1"), dst = test::ip6("fd00::2");
    ip.insert(ip.end(), src.bytes.begin(), src.bytes.end());
    ip.insert(ip.end(), dst.bytes.begin(), dst.bytes.end());
    if (s.ip6_hop_by_hop) ip.insert(ip.end(), {proto, 0, 1, 4, 0, 0, 0, 0});  // PadN
  } else {
    ip.push_back(static_cast<std::uint8_t>(0x40 | (20 + s.ip4_options) / 4));
    ip.push_back(0);
    push16(ip, static_cast<std::uint32_t>(20 + s.ip4_options + l4_len));
    push16(ip, s.ip_id);
    push16(ip, 0x4000);  // DF
    ip.push_back(s.ttl);
    ip.push_back(proto);
    push16(ip, 0);
    ip.insert(ip.end(), {10, 0, 0, 1, 10, 0, 0, 2});
    ip.insert(ip.end(), s.ip4_options, 1);
    wr16(ip.data() + 10, static_cast<std::uint16_t>(~ref_fold(ref_sum(ip.data(), ip.size()))));
  }
  const std::size_t l4_in_ip = ip.size();
  ip.insert(ip.end(), l4.begin(), l4.end());
  const std::size_t csum_field = s.udp ? 6 : 16;
  std::uint16_t c = 0;
  if (s.partial_csum) {
    const Frame ph = ref_pseudo(ip.data(), static_cast<std::uint32_t>(l4_len));
    c = ref_fold(ref_sum(ph.data(), ph.size()));
  } else {
    c = ref_l4_checksum(ip.data(), l4_in_ip, l4_len, csum_field);
    if (s.udp && c == 0) c = 0xffff;
  }
  wr16(ip.data() + l4_in_ip + csum_field, c);
  return eth_frame(kB, kA, s.v6 ? kEtherTypeIpv6 : kEtherTypeIpv4, ip, s.vlan);
}

// A super-frame as the kernel hands it to a TAP with offloads on.
struct Super {
  VnetHdr h;
  Frame frame;
};
Super kernel_super(Spec s, std::uint16_t gso_size) {
  s.partial_csum = true;
  const Layout l = layout(s);
  Super out;
  out.frame = build(s);
  out.h.flags = kVnetFlagNeedsCsum;
  out.h.gso_type = s.udp ? kGsoUdpL4 : s.v6 ? kGsoTcpV6 : kGsoTcpV4;
  out.h.hdr_len = static_cast<std::uint16_t>(l.hdr_end);
  out.h.gso_size = gso_size;
  out.h.csum_start = static_cast<std::uint16_t>(l.l4_off);
  out.h.csum_offset = s.udp ? 6 : 16;
  return out;
}

struct Arena {
  Frame buf;
  std::vector<std::uint16_t> lens;
  std::size_t stride, headroom;
  explicit Arena(std::size_t max, std::size_t stride_ = 2048, std::size_t headroom_ = 32)
      : buf(max * stride_, 0xAA), lens(max), stride(stride_), headroom(headroom_) {}
  SegmentArena view() { return SegmentArena{buf, stride, headroom, lens}; }
  Frame seg(std::size_t i) const {
    const auto* p = buf.data() + i * stride + headroom;
    return Frame(p, p + lens[i]);
  }
  bool untouched() const {
    return std::all_of(buf.begin(), buf.end(), [](std::uint8_t b) { return b == 0xAA; });
  }
};

// Checks every segment of `orig` (built from `s`) against an independent reading of what
// the kernel's GSO would produce.
void check_segments(const Spec& s, const Frame& orig, const Arena& a, std::size_t count,
                    std::size_t mss) {
  const Layout l = layout(s);
  const std::size_t payload = orig.size() - l.hdr_end;
  REQUIRE(count == std::max<std::size_t>(1, (payload + mss - 1) / mss));
  Frame joined;
  for (std::size_t i = 0; i < count; ++i) {
    CAPTURE(i);
    const Frame g = a.seg(i);
    const std::size_t n = std::min(mss, payload - i * mss);
    REQUIRE(g.size() == l.hdr_end + n);
    const std::uint8_t* ip = g.data() + l.ip_off;
    const std::uint8_t* oip = orig.data() + l.ip_off;
    const std::uint8_t* l4 = g.data() + l.l4_off;
    const std::uint8_t* ol4 = orig.data() + l.l4_off;
    const std::size_t l4_len = g.size() - l.l4_off;
    CHECK(std::equal(g.begin(), g.begin() + static_cast<long>(l.ip_off), orig.begin()));
    if (s.v6) {
      CHECK(rd16(ip + 4) == l4_len);
      CHECK(std::equal(ip + 6, ip + 40, oip + 6));
      CHECK(std::equal(ip, ip + 4, oip));
    } else {
      CHECK(rd16(ip + 2) == g.size() - l.ip_off);
      CHECK(rd16(ip + 4) == static_cast<std::uint16_t>(s.ip_id + i));
      CHECK(ref_ip4_header_ok(ip));
      CHECK(ip[1] == oip[1]);
      CHECK(std::equal(ip + 6, ip + 10, oip + 6));                // flags/DF, TTL, protocol
      CHECK(std::equal(ip + 12, g.data() + l.l4_off, oip + 12));  // addresses, options
    }
    CHECK(std::equal(l4, l4 + 4, ol4));  // ports
    if (s.udp) {
      CHECK(rd16(l4 + 4) == l4_len);
      std::uint16_t want = ref_l4_checksum(ip, l.l4_off - l.ip_off, l4_len, 6);
      if (want == 0) want = 0xffff;
      CHECK(rd16(l4 + 6) == want);
    } else {
      CHECK(rd32(l4 + 4) == static_cast<std::uint32_t>(s.seq + i * mss));
      CHECK(std::equal(l4 + 8, l4 + 13, ol4 + 8));  // ack, data offset
      std::uint8_t want_flags = s.tcp_flags;
      if (i + 1 < count) want_flags &= static_cast<std::uint8_t>(~(kFin | kPsh));
      if (i > 0) want_flags &= static_cast<std::uint8_t>(~kCwr);
      CHECK(l4[13] == want_flags);
      CHECK(std::equal(l4 + 14, l4 + 16, ol4 + 14));               // window
      CHECK(std::equal(l4 + 18, g.data() + l.hdr_end, ol4 + 18));  // urg, options
      CHECK(rd16(l4 + 16) == ref_l4_checksum(ip, l.l4_off - l.ip_off, l4_len, 16));
    }
    joined.insert(joined.end(), g.begin() + static_cast<long>(l.hdr_end), g.end());
  }
  CHECK(joined == Frame(orig.begin() + static_cast<long>(l.hdr_end), orig.end()));
}

struct Sink : FrameSink {
  std::vector<Frame> out;
  const std::uint8_t* last_data = nullptr;
  void write(std::span<const std::uint8_t> s) override {
    REQUIRE(s.size() >= kVnetHdrLen);
    last_data = s.data();
    out.emplace_back(s.begin(), s.end());
  }
  VnetHdr hdr(std::size_t i) const { return read_vnet_hdr(out.at(i).data()); }
  Frame frame(std::size_t i) const {
    return Frame(out.at(i).begin() + kVnetHdrLen, out.at(i).end());
  }
};

// TCP payload of an untagged frame.
Frame tcp_payload(const Frame& f) {
  const bool v6 = f[14] >> 4 == 6;
  const std::size_t ip_len = v6 ? 40 + rd16(&f[18]) : rd16(&f[16]);
  const std::size_t tcp = 14 + (v6 ? 40 : std::size_t{f[14] & 0x0fu} * 4);
  const std::size_t hdr_end = tcp + static_cast<std::size_t>(f[tcp + 12] >> 4) * 4;
  return Frame(f.begin() + static_cast<long>(hdr_end), f.begin() + static_cast<long>(14 + ip_len));
}
Frame concat(std::initializer_list<Frame> parts) {
  Frame all;
  for (const auto& p : parts) {
    const Frame x = tcp_payload(p);
    all.insert(all.end(), x.begin(), x.end());
  }
  return all;
}
const VnetHdr kPlainValid{kVnetFlagDataValid, kGsoNone, 0, 0, 0, 0};
const VnetHdr kPlain{};

// ======================= checksum and vnet header =======================

TEST_CASE("checksum_partial agrees with a byte-wise sum at every length and start") {
  std::mt19937 rng(7);
  Frame data(300);
  for (auto& b : data) b = static_cast<std::uint8_t>(rng());
  for (std::size_t start = 0; start < 9; ++start) {
    for (std::size_t n = 0; n + start <= data.size(); n += 1 + n / 7) {
      const std::uint16_t init = static_cast<std::uint16_t>(rng());
      CAPTURE(start);
      CAPTURE(n);
      CHECK(checksum_partial(ByteSpan(data.data() + start, n), init) ==
            ref_fold(ref_sum(data.data() + start, n, init)));
    }
  }
  // All-ones data stresses the carries.
  const Frame ones(70000, 0xff);  // a super-frame's length
  CHECK(checksum_partial(ones) == ref_fold(ref_sum(ones.data(), ones.size())));
  CHECK(checksum_add(0xffff, 1) == 1);
}

TEST_CASE("ip_checksum: a known IPv4 header") {
  Frame h{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
          0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  CHECK(ip_checksum(h) == 0xb861);
  wr16(h.data() + 10, 0xb861);
  CHECK(ip_checksum(h) == 0);
}

TEST_CASE("vnet header: round trip, host byte order") {
  const VnetHdr h{kVnetFlagNeedsCsum, kGsoTcpV6 | kGsoEcn, 0x1234, 1388, 54, 16};
  std::uint8_t b[kVnetHdrLen] = {};
  write_vnet_hdr(b, h);
  CHECK(read_vnet_hdr(b) == h);
  if constexpr (std::endian::native == std::endian::little) {
    const std::uint8_t want[kVnetHdrLen] = {1, 0x84, 0x34, 0x12, 0x6c, 0x05, 54, 0, 16, 0};
    CHECK(std::equal(b, b + kVnetHdrLen, want));
  }
}

// ======================= segment_frame =======================

TEST_CASE("segment_frame: TSO IPv4 with timestamps, as the kernel hands it") {
  Spec s;
  s.payload_len = 10000;
  s.tcp_flags = kAck | kPsh | kFin | kCwr;
  const Super sup = kernel_super(s, kMss);
  Arena a(16);
  const auto r = segment_frame(sup.h, sup.frame, 1500, a.view());
  REQUIRE(r.error == SegmentError::none);
  CHECK(r.count == 8);
  s.partial_csum = true;
  check_segments(s, sup.frame, a, r.count, kMss);
  // The headroom in front of each segment is left alone.
  CHECK(a.buf[a.stride + a.headroom - 1] == 0xAA);
}

TEST_CASE("segment_frame: TSO IPv6 with timestamps") {
  Spec s;
  s.v6 = true;
  s.payload_len = 9000;
  s.tcp_flags = kAck | kPsh;
  const Super sup = kernel_super(s, kMss);
  Arena a(16);
  const auto r = segment_frame(sup.h, sup.frame, 1500, a.view());
  REQUIRE(r.error == SegmentError::none);
  check_segments(s, sup.frame, a, r.count, kMss);
}

TEST_CASE("segment_frame: VLAN tag, IPv4 options, ECN bit, mss cap, exact multiples") {
  struct Case {
    bool v6;
    int vlan;
    std::size_t ip4_options, payload;
    std::uint16_t gso;
    std::size_t cap;
    bool ecn;
  };
  const Case cases[] = {
      {false, 7, 0, 5000, kMss, 9000, false},              // VLAN: offsets from csum_start
      {true, 7, 0, 5000, kMss, 9000, true},                // VLAN + ECN
      {false, -1, 8, 4000, kMss, 9000, false},             // IPv4 options
      {false, -1, 0, 4000, kMss, 1000, false},             // the cap wins
      {true, -1, 0, 3 * kMss, kMss, 9000, false},          // exact multiple
      {false, -1, 0, 100, kMss, 9000, false},              // one segment
      {false, -1, 0, 0, kMss, 9000, false},                // headers only
      {false, -1, 0, 65535 - 20 - 32, kMss, 9000, false},  // the largest IPv4 packet
  };
  for (const auto& c : cases) {
    Spec s;
    s.v6 = c.v6;
    s.vlan = c.vlan;
    s.ip4_options = c.ip4_options;
    s.payload_len = c.payload;
    s.tcp_flags = kAck | kPsh | kCwr;
    s.partial_csum = true;
    Super sup = kernel_super(s, c.gso);
    if (c.ecn) sup.h.gso_type |= kGsoEcn;
    Arena a(64);
    const auto r = segment_frame(sup.h, sup.frame, c.cap, a.view());
    CAPTURE(c.payload);
    CAPTURE(c.vlan);
    REQUIRE(r.error == SegmentError::none);
    check_segments(s, sup.frame, a, r.count, std::min<std::size_t>(c.gso, c.cap));
  }
}

TEST_CASE("segment_frame: hdr_len is a hint (skb_headlen) and may exceed the headers") {
  Spec s;
  s.payload_len = 5000;
  Super sup = kernel_super(s, kMss);
  sup.h.hdr_len = 200;
  Arena a(16);
  const auto r = segment_frame(sup.h, sup.frame, 1500, a.view());
  REQUIRE(r.error == SegmentError::none);
  s.partial_csum = true;
  check_segments(s, sup.frame, a, r.count, kMss);
}

TEST_CASE("segment_frame: USO over IPv4 and IPv6") {
  for (const bool v6 : {false, true}) {
    Spec s;
    s.v6 = v6;
    s.udp = true;
    s.payload_len = 5001;
    const Super sup = kernel_super(s, 1200);
    Arena a(16);
    const auto r = segment_frame(sup.h, sup.frame, 1500, a.view());
    REQUIRE(r.error == SegmentError::none);
    CHECK(r.count == 5);
    s.partial_csum = true;
    check_segments(s, sup.frame, a, r.count, 1200);
  }
}

TEST_CASE("segment_frame: no GSO copies and completes NEEDS_CSUM") {
  struct Case {
    bool v6, udp;
    int vlan;
    std::size_t payload;
  };
  for (const Case c : {Case{false, false, -1, 101}, Case{true, true, 3, 77},
                       Case{false, true, -1, 0}, Case{true, false, -1, 1400}}) {
    Spec s;
    s.v6 = c.v6;
    s.udp = c.udp;
    s.vlan = c.vlan;
    s.payload_len = c.payload;
    const Frame full = build(s);
    s.partial_csum = true;
    const Frame partial = build(s);
    REQUIRE(full != partial);
    const Layout l = layout(s);
    const VnetHdr h{kVnetFlagNeedsCsum,
                    kGsoNone,
                    static_cast<std::uint16_t>(l.hdr_end),
                    0,
                    static_cast<std::uint16_t>(l.l4_off),
                    static_cast<std::uint16_t>(c.udp ? 6 : 16)};
    Arena a(1);
    const auto r = segment_frame(h, partial, 0, a.view());
    REQUIRE(r.error == SegmentError::none);
    REQUIRE(r.count == 1);
    CHECK(a.seg(0) == full);
    // Without NEEDS_CSUM it is a plain copy.
    Arena b(1);
    const auto r2 = segment_frame(VnetHdr{}, partial, 0, b.view());
    REQUIRE(r2.count == 1);
    CHECK(b.seg(0) == partial);
  }
  // Any bytes at all, even an empty frame, pass through without NEEDS_CSUM.
  Arena a(1);
  CHECK(segment_frame(VnetHdr{}, ByteSpan{}, 0, a.view()).count == 1);
  CHECK(a.lens[0] == 0);
}

TEST_CASE("segment_frame: every truncation of a super-frame is malformed, nothing written") {
  for (const bool v6 : {false, true}) {
    Spec s;
    s.v6 = v6;
    s.payload_len = 3000;
    const Super sup = kernel_super(s, kMss);
    for (std::size_t n = 0; n < sup.frame.size(); ++n) {
      Arena a(16);
      const auto r = segment_frame(sup.h, ByteSpan(sup.frame.data(), n), 0, a.view());
      CAPTURE(n);
      CHECK(r.error == SegmentError::malformed);
      CHECK(r.count == 0);
      CHECK(a.untouched());
    }
  }
}

TEST_CASE("segment_frame: lying headers are malformed") {
  Spec s;
  s.payload_len = 3000;
  const Super good = kernel_super(s, kMss);
  Spec s6 = s;
  s6.v6 = true;
  const Super good6 = kernel_super(s6, kMss);
  Spec su = s;
  su.udp = true;
  const Super good_udp = kernel_super(su, kMss);
  Spec small = s;
  small.payload_len = 10;
  const Super good_small = kernel_super(small, kMss);

  struct Case {
    const char* what;
    const Super* base;
    void (*mutate)(Super&);
  };
  const Case cases[] = {
      {"gso_size 0", &good, [](Super& x) { x.h.gso_size = 0; }},
      {"hdr_len beyond the frame", &good,
       [](Super& x) { x.h.hdr_len = static_cast<std::uint16_t>(x.frame.size() + 1); }},
      {"csum_start beyond the frame", &good,
       [](Super& x) { x.h.csum_start = static_cast<std::uint16_t>(x.frame.size() + 1); }},
      {"csum_start not at the L4 header", &good, [](Super& x) { x.h.csum_start += 4; }},
      {"csum_start inside the IP header", &good, [](Super& x) { x.h.csum_start = 20; }},
      {"csum_offset not the TCP checksum", &good, [](Super& x) { x.h.csum_offset = 6; }},
      {"csum_offset not the UDP checksum", &good_udp, [](Super& x) { x.h.csum_offset = 16; }},
      {"TCPv6 on IPv4", &good, [](Super& x) { x.h.gso_type = kGsoTcpV6; }},
      {"TCPv4 on IPv6", &good6, [](Super& x) { x.h.gso_type = kGsoTcpV4; }},
      {"UDP L4 on TCP", &good,
       [](Super& x) {
         x.h.gso_type = kGsoUdpL4;
         x.h.csum_offset = 6;
       }},
      {"TCP on UDP", &good_udp,
       [](Super& x) {
         x.h.gso_type = kGsoTcpV4;
         x.h.csum_offset = 16;
       }},
      {"IPv4 total length beyond the frame", &good,
       [](Super& x) { wr16(&x.frame[16], static_cast<std::uint16_t>(x.frame.size() - 13)); }},
      {"IPv4 total length below the header", &good, [](Super& x) { wr16(&x.frame[16], 19); }},
      {"IPv6 payload length beyond the frame", &good6,
       [](Super& x) { wr16(&x.frame[18], static_cast<std::uint16_t>(x.frame.size() - 53)); }},
      {"IPv4 IHL 4", &good, [](Super& x) { x.frame[14] = 0x44; }},
      {"IP version 6 in an IPv4 ethertype", &good, [](Super& x) { x.frame[14] = 0x65; }},
      {"IPv4 fragment (MF)", &good, [](Super& x) { x.frame[20] |= 0x20; }},
      {"IPv4 fragment (offset)", &good, [](Super& x) { x.frame[21] = 1; }},
      {"not IP", &good, [](Super& x) { wr16(&x.frame[12], kEtherTypeArp); }},
      {"TCP data offset 4", &good, [](Super& x) { x.frame[34 + 12] = 0x40; }},
      {"TCP data offset beyond the packet", &good_small, [](Super& x) { x.frame[34 + 12] = 0xf0; }},
  };
  for (const auto& c : cases) {
    Super x = *c.base;
    c.mutate(x);
    Arena a(16);
    const auto r = segment_frame(x.h, x.frame, 0, a.view());
    CAPTURE(c.what);
    CHECK(r.error == SegmentError::malformed);
    CHECK(r.count == 0);
    CHECK(a.untouched());
  }

  // Without GSO, NEEDS_CSUM must point inside the frame.
  const Frame f = build(s);
  Arena a(1);
  const auto n = static_cast<std::uint16_t>(f.size());
  const std::uint16_t bad[][2] = {{34, 9999},
                                  {n, 0},
                                  {static_cast<std::uint16_t>(n - 1), 0},
                                  {static_cast<std::uint16_t>(n + 5), 0}};
  for (const auto& b : bad) {
    const VnetHdr h{kVnetFlagNeedsCsum, kGsoNone, 0, 0, b[0], b[1]};
    CHECK(segment_frame(h, f, 0, a.view()).error == SegmentError::malformed);
  }
  CHECK(a.untouched());
}

TEST_CASE("segment_frame: UFO, unknown types and IPv6 extension headers are unsupported") {
  Spec s;
  s.payload_len = 3000;
  Super sup = kernel_super(s, kMss);
  for (const std::uint8_t t : {kGsoUdp, std::uint8_t{2}, std::uint8_t{6}, std::uint8_t{0x7f},
                               static_cast<std::uint8_t>(kGsoUdp | kGsoEcn)}) {
    sup.h.gso_type = t;
    Arena a(16);
    CHECK(segment_frame(sup.h, sup.frame, 0, a.view()).error == SegmentError::unsupported);
    CHECK(a.untouched());
  }
  Spec s6 = s;
  s6.v6 = true;
  s6.ip6_hop_by_hop = true;
  const Super ext = kernel_super(s6, kMss);
  Arena a(16);
  CHECK(segment_frame(ext.h, ext.frame, 0, a.view()).error == SegmentError::unsupported);
  CHECK(a.untouched());
}

TEST_CASE("segment_frame: too_many when segments do not fit, nothing written") {
  Spec s;
  s.payload_len = 10000;  // 8 segments of at most 66 + 1388 bytes
  const Super sup = kernel_super(s, kMss);
  const std::size_t seg_max = 66 + kMss;
  const std::size_t last = 66 + (10000 - 7 * kMss);
  auto run = [&](Arena& a, std::size_t cap = 0) {
    return segment_frame(sup.h, sup.frame, cap, a.view());
  };
  {
    Arena a(7);
    CHECK(run(a).error == SegmentError::too_many);
    CHECK(a.untouched());
  }
  {
    Arena a(8, seg_max + 31, 32);  // one byte short of headroom + segment
    CHECK(run(a).error == SegmentError::too_many);
    CHECK(a.untouched());
  }
  {
    Arena a(8, seg_max + 32, 32);  // exactly enough stride
    CHECK(run(a).error == SegmentError::none);
  }
  {
    Arena a(8, 2048, 32);
    a.buf.resize(7 * 2048 + 32 + last - 1);  // the arena ends one byte early
    CHECK(run(a).error == SegmentError::too_many);
    CHECK(a.untouched());
    a.buf.push_back(0xAA);
    CHECK(run(a).count == 8);
  }
  {
    Arena a(64);
    CHECK(run(a, 100).error == SegmentError::too_many);  // 100 segments
    CHECK(a.untouched());
  }
  {
    Arena a(1, 2048, 3000);  // headroom beyond stride
    CHECK(segment_frame(VnetHdr{}, sup.frame, 0, a.view()).error == SegmentError::too_many);
    Arena b(0);
    CHECK(segment_frame(VnetHdr{}, sup.frame, 0, b.view()).error == SegmentError::too_many);
    Arena c(1, 2048, 0);  // a 10 KB frame without GSO does not fit a 2 KB stride
    CHECK(segment_frame(VnetHdr{}, sup.frame, 0, c.view()).error == SegmentError::too_many);
  }
}

// ======================= TcpCoalescer =======================

// Frames that continue each other: seq follows, same everything else.
struct FlowGen {
  Spec s;
  explicit FlowGen(std::uint16_t sport = 40000, bool v6 = false) {
    s.sport = sport;
    s.v6 = v6;
    s.seq = 1000;
  }
  Frame next(std::size_t payload, std::uint8_t flags = kAck) {
    Spec x = s;
    x.payload_len = payload;
    x.tcp_flags = flags;
    x.payload_seed = static_cast<std::uint8_t>(s.seq);
    s.seq += static_cast<std::uint32_t>(payload);
    return build(x);
  }
};

void check_super_frame(const Sink& sink, std::size_t i, bool v6, std::size_t mss) {
  const VnetHdr h = sink.hdr(i);
  const Frame f = sink.frame(i);
  const std::size_t tcp = v6 ? 54 : 34;
  CHECK(h.flags == kVnetFlagNeedsCsum);
  CHECK(h.gso_type == (v6 ? kGsoTcpV6 : kGsoTcpV4));
  CHECK(h.hdr_len == tcp + static_cast<std::size_t>(f[tcp + 12] >> 4) * 4);
  CHECK(h.gso_size == mss);
  CHECK(h.csum_start == tcp);
  CHECK(h.csum_offset == 16);
  if (v6) {
    CHECK(rd16(&f[18]) == f.size() - 54);
  } else {
    CHECK(rd16(&f[16]) == f.size() - 14);
    CHECK(ref_ip4_header_ok(&f[14]));
  }
  const Frame ph = ref_pseudo(&f[14], static_cast<std::uint32_t>(f.size() - tcp));
  CHECK(rd16(&f[tcp + 16]) == ref_fold(ref_sum(ph.data(), ph.size())));
}

TEST_CASE("coalescer: segment, coalesce, re-segment round trip (IPv4 and IPv6)") {
  for (const bool v6 : {false, true}) {
    CAPTURE(v6);
    Spec s;
    s.v6 = v6;
    s.payload_len = 10000;
    s.tcp_flags = kAck | kPsh;
    const Super sup = kernel_super(s, kMss);
    Arena first(16);
    const auto r = segment_frame(sup.h, sup.frame, 0, first.view());
    REQUIRE(r.count == 8);

    TcpCoalescer c;
    Sink sink;
    for (std::size_t i = 0; i < r.count; ++i) c.add(first.seg(i), sink);
    REQUIRE(sink.out.size() == 1);  // PSH on the last segment ended the flow
    c.flush(sink);
    REQUIRE(sink.out.size() == 1);
    CHECK(c.coalesced_frames() == 7);
    check_super_frame(sink, 0, v6, kMss);
    CHECK(tcp_payload(sink.frame(0)) == tcp_payload(sup.frame));
    // The kernel's own super-frame, byte for byte: headers, PSH, the partial checksum.
    CHECK(sink.frame(0) == sup.frame);
    CHECK(sink.hdr(0) == sup.h);

    Arena again(16);
    const Frame back = sink.frame(0);
    const auto r2 = segment_frame(sink.hdr(0), back, 0, again.view());
    REQUIRE(r2.count == r.count);
    for (std::size_t i = 0; i < r.count; ++i) CHECK(again.seg(i) == first.seg(i));
  }
}

TEST_CASE("coalescer: random sizes round trip to the kernel's super-frame") {
  std::mt19937 rng(11);
  for (int iter = 0; iter < 200; ++iter) {
    Spec s;
    s.v6 = rng() % 2 == 0;
    s.timestamps = rng() % 2 == 0;
    s.payload_len = 1 + rng() % 60000;
    s.seq = static_cast<std::uint32_t>(rng());
    s.ip_id = static_cast<std::uint16_t>(rng());
    s.tcp_flags = kAck | kPsh;
    const auto gso = static_cast<std::uint16_t>(500 + rng() % 8500);
    const Super sup = kernel_super(s, gso);
    Arena a(160, 9100, 0);
    const auto r = segment_frame(sup.h, sup.frame, 0, a.view());
    REQUIRE(r.error == SegmentError::none);
    TcpCoalescer c;
    Sink sink;
    for (std::size_t i = 0; i < r.count; ++i) c.add(a.seg(i), sink);
    c.flush(sink);
    CAPTURE(iter);
    REQUIRE(sink.out.size() == 1);
    if (r.count == 1) {
      CHECK(sink.hdr(0) == kPlainValid);
      CHECK(sink.frame(0) == a.seg(0));
    } else {
      CHECK(sink.frame(0) == sup.frame);
      CHECK(sink.hdr(0) == sup.h);
    }
  }
}

TEST_CASE("coalescer: an out-of-order segment breaks the flow") {
  FlowGen g;
  std::vector<Frame> seg;
  for (int i = 0; i < 6; ++i) seg.push_back(g.next(kMss));
  TcpCoalescer c;
  Sink sink;
  for (const int i : {0, 1, 3, 2, 4, 5}) c.add(seg[static_cast<std::size_t>(i)], sink);
  c.flush(sink);
  REQUIRE(sink.out.size() == 4);
  check_super_frame(sink, 0, false, kMss);
  CHECK(tcp_payload(sink.frame(0)) == concat({seg[0], seg[1]}));
  CHECK(sink.hdr(1) == kPlainValid);
  CHECK(sink.frame(1) == seg[3]);
  CHECK(sink.hdr(2) == kPlainValid);
  CHECK(sink.frame(2) == seg[2]);
  check_super_frame(sink, 3, false, kMss);
  CHECK(tcp_payload(sink.frame(3)) == concat({seg[4], seg[5]}));
  CHECK(c.coalesced_frames() == 2);
}

TEST_CASE("coalescer: PSH and a short segment end the flow at once") {
  FlowGen g(40000, true);
  const Frame a0 = g.next(kMss), a1 = g.next(kMss), a2 = g.next(kMss, kAck | kPsh);
  const Frame b0 = g.next(kMss), b1 = g.next(kMss), b2 = g.next(500), b3 = g.next(kMss);
  TcpCoalescer c;
  Sink sink;
  for (const auto* f : {&a0, &a1, &a2}) c.add(*f, sink);
  REQUIRE(sink.out.size() == 1);
  check_super_frame(sink, 0, true, kMss);
  CHECK((sink.frame(0)[54 + 13] & kPsh) != 0);
  CHECK(tcp_payload(sink.frame(0)) == concat({a0, a1, a2}));
  for (const auto* f : {&b0, &b1, &b2}) c.add(*f, sink);
  REQUIRE(sink.out.size() == 2);
  CHECK((sink.frame(1)[54 + 13] & kPsh) == 0);
  CHECK(tcp_payload(sink.frame(1)) == concat({b0, b1, b2}));
  c.add(b3, sink);
  CHECK(sink.out.size() == 2);
  c.flush(sink);
  REQUIRE(sink.out.size() == 3);
  CHECK(sink.hdr(2) == kPlainValid);
  CHECK(sink.frame(2) == b3);
  // A segment longer than the flow's mss does not continue it either.
  FlowGen h;
  const Frame c0 = h.next(1000), c1 = h.next(1001);
  Sink s2;
  c.add(c0, s2);
  c.add(c1, s2);
  c.flush(s2);
  REQUIRE(s2.out.size() == 2);
  CHECK(s2.frame(0) == c0);
  CHECK(s2.frame(1) == c1);
}

TEST_CASE("coalescer: two interleaved flows both coalesce") {
  FlowGen a(1000), b(2000);
  std::vector<Frame> fa, fb;
  for (int i = 0; i < 4; ++i) {
    fa.push_back(a.next(kMss));
    fb.push_back(b.next(kMss));
  }
  TcpCoalescer c;
  Sink sink;
  for (int i = 0; i < 4; ++i) {
    c.add(fa[static_cast<std::size_t>(i)], sink);
    c.add(fb[static_cast<std::size_t>(i)], sink);
  }
  CHECK(sink.out.empty());
  CHECK(c.flows_held() == 2);
  c.flush(sink);
  CHECK(c.flows_held() == 0);
  REQUIRE(sink.out.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) check_super_frame(sink, i, false, kMss);
  CHECK(tcp_payload(sink.frame(0)) == concat({fa[0], fa[1], fa[2], fa[3]}));
  CHECK(tcp_payload(sink.frame(1)) == concat({fb[0], fb[1], fb[2], fb[3]}));
  CHECK(c.coalesced_frames() == 6);
}

TEST_CASE("coalescer: a non-TCP frame in the middle flushes every flow before it") {
  FlowGen a(1000), b(2000);
  const Frame a0 = a.next(kMss), a1 = a.next(kMss), b0 = b.next(kMss);
  const Frame a2 = a.next(kMss), a3 = a.next(kMss);
  const Frame arp = test::arp_request(kA, test::ip4(10, 0, 0, 1), test::ip4(10, 0, 0, 9));
  TcpCoalescer c;
  Sink sink;
  for (const auto* f : {&a0, &a1, &b0, &arp, &a2, &a3}) c.add(*f, sink);
  REQUIRE(sink.out.size() == 3);
  check_super_frame(sink, 0, false, kMss);
  CHECK(tcp_payload(sink.frame(0)) == concat({a0, a1}));
  CHECK(sink.frame(1) == b0);
  CHECK(sink.hdr(2) == kPlain);  // not TCP/UDP: no DATA_VALID
  CHECK(sink.frame(2) == arp);
  c.flush(sink);
  REQUIRE(sink.out.size() == 4);
  CHECK(tcp_payload(sink.frame(3)) == concat({a2, a3}));
}

TEST_CASE("coalescer: with every slot busy the oldest flow is emitted") {
  FlowGen a(1000), b(2000), d(3000);
  const Frame a0 = a.next(kMss), b0 = b.next(kMss), a1 = a.next(kMss), d0 = d.next(kMss);
  TcpCoalescer c(2);
  Sink sink;
  for (const auto* f : {&a0, &b0, &a1}) c.add(*f, sink);
  CHECK(sink.out.empty());
  c.add(d0, sink);
  REQUIRE(sink.out.size() == 1);
  check_super_frame(sink, 0, false, kMss);
  CHECK(tcp_payload(sink.frame(0)) == concat({a0, a1}));
  c.flush(sink);
  REQUIRE(sink.out.size() == 3);  // b and d, in either order
  CHECK(((sink.frame(1) == b0 && sink.frame(2) == d0) ||
         (sink.frame(1) == d0 && sink.frame(2) == b0)));
  // No slots at all: everything passes through.
  TcpCoalescer none(0);
  Sink s2;
  none.add(a0, s2);
  none.add(a1, s2);
  REQUIRE(s2.out.size() == 2);
  CHECK(s2.hdr(0) == kPlainValid);
}

TEST_CASE("coalescer: super_max is respected") {
  const std::size_t hdr = 14 + 20 + 32;
  const std::size_t super_max = hdr + 3 * kMss;
  FlowGen g;
  std::vector<Frame> seg;
  for (int i = 0; i < 5; ++i) seg.push_back(g.next(kMss));
  TcpCoalescer c(8, super_max);
  Sink sink;
  for (const auto& f : seg) c.add(f, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.frame(0).size() == super_max);
  c.flush(sink);
  REQUIRE(sink.out.size() == 2);
  CHECK(tcp_payload(sink.frame(0)) == concat({seg[0], seg[1], seg[2]}));
  CHECK(tcp_payload(sink.frame(1)) == concat({seg[3], seg[4]}));
  // A frame larger than super_max is never held.
  TcpCoalescer tiny(8, 100);
  Sink s2;
  tiny.add(seg[0], s2);
  CHECK(s2.out.size() == 1);
  CHECK(tiny.flows_held() == 0);
}

TEST_CASE("coalescer: frames that differ in ack, window, options, TTL do not merge") {
  auto mutate_second = [](auto change) {
    FlowGen g;
    const Frame f0 = g.next(kMss);
    g.s.ack += change == 0 ? 1 : 0;
    g.s.window = static_cast<std::uint16_t>(g.s.window + (change == 1 ? 1 : 0));
    g.s.timestamps = change != 2;
    g.s.ttl = static_cast<std::uint8_t>(g.s.ttl - (change == 3 ? 1 : 0));
    const Frame f1 = g.next(kMss);
    TcpCoalescer c;
    Sink sink;
    c.add(f0, sink);
    c.add(f1, sink);
    c.flush(sink);
    return sink.out.size();
  };
  for (int change = 0; change < 4; ++change) {
    CAPTURE(change);
    CHECK(mutate_second(change) == 2);
  }
  CHECK(mutate_second(-1) == 1);  // the control: nothing changed
}

TEST_CASE("coalescer: other TCP frames emit only their own flow; pass-through flags") {
  FlowGen a(1000), b(2000);
  const Frame a0 = a.next(kMss), a1 = a.next(kMss), b0 = b.next(kMss);
  TcpCoalescer c;
  Sink sink;
  c.add(a0, sink);
  c.add(a1, sink);
  c.add(b0, sink);
  // A pure ACK of another flow leaves flow a alone.
  FlowGen other(3000);
  c.add(other.next(0), sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.hdr(0) == kPlainValid);
  // A pure ACK (and an ECE segment, a SYN) of flow b emits b first.
  c.add(b.next(0), sink);
  REQUIRE(sink.out.size() == 3);
  CHECK(sink.frame(1) == b0);
  CHECK(sink.hdr(2) == kPlainValid);
  c.add(b.next(kMss, kAck | kEce), sink);
  c.add(b.next(0, kSyn), sink);
  CHECK(sink.out.size() == 5);
  CHECK(c.flows_held() == 1);  // flow a is still held
  // IPv4 options: keyed (emits its own flow) but never merged.
  FlowGen opt(1000);
  opt.s.seq = a.s.seq;
  opt.s.ip4_options = 4;
  c.add(opt.next(kMss), sink);
  REQUIRE(sink.out.size() == 7);
  CHECK(tcp_payload(sink.frame(5)) == concat({a0, a1}));
  CHECK(sink.hdr(6) == kPlainValid);
  // VLAN-tagged TCP, UDP: not candidates, flush all, but DATA_VALID.
  Spec tagged = FlowGen(4000).s;
  tagged.vlan = 9;
  tagged.payload_len = 100;
  Spec udp = tagged;
  udp.vlan = -1;
  udp.udp = true;
  c.add(a.next(kMss), sink);
  c.add(build(tagged), sink);
  REQUIRE(sink.out.size() == 9);
  CHECK(sink.hdr(8) == kPlainValid);
  c.add(build(udp), sink);
  CHECK(sink.hdr(9) == kPlainValid);
  // An IPv4 fragment and ICMP: no DATA_VALID.
  Frame frag = build(udp);
  frag[20] |= 0x20;
  c.add(frag, sink);
  CHECK(sink.hdr(10) == kPlain);
  Frame icmp = build(udp);
  icmp[14 + 9] = 1;
  c.add(icmp, sink);
  CHECK(sink.hdr(11) == kPlain);
  CHECK(c.flows_held() == 0);
}

TEST_CASE("coalescer: add_with_headroom writes pass-through frames in place") {
  const Frame arp = test::arp_request(kA, test::ip4(10, 0, 0, 1), test::ip4(10, 0, 0, 9));
  Frame buf(kVnetHdrLen, 0x55);
  buf.insert(buf.end(), arp.begin(), arp.end());
  TcpCoalescer c;
  Sink sink;
  c.add_with_headroom(buf, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.last_data == buf.data());
  CHECK(sink.hdr(0) == kPlain);
  CHECK(sink.frame(0) == arp);
  // A held frame is copied: the caller's buffer may be reused at once.
  FlowGen g;
  const Frame f0 = g.next(kMss), f1 = g.next(kMss);
  for (const auto* f : {&f0, &f1}) {
    Frame b(kVnetHdrLen, 0);
    b.insert(b.end(), f->begin(), f->end());
    c.add_with_headroom(b, sink);
    std::fill(b.begin(), b.end(), 0xEE);
  }
  c.flush(sink);
  REQUIRE(sink.out.size() == 2);
  CHECK(tcp_payload(sink.frame(1)) == concat({f0, f1}));
  // Frames no TAP takes are dropped and counted.
  Frame huge(kCoalescerFrameMax + 1, 0);
  c.add(huge, sink);
  CHECK(sink.out.size() == 2);
  CHECK(c.dropped_frames() == 1);
}

}  // namespace
}  // namespace meshd::dp
