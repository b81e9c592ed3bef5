#include "dataplane/offload.hpp"

#include <algorithm>
#include <cstring>

#include "dataplane/frame.hpp"

namespace meshd::dp {

namespace {

constexpr std::size_t kIp4HeaderMinLen = 20;
constexpr std::uint16_t kIp4FragMask = 0x3fff;  // MF + fragment offset
constexpr std::uint8_t kIp4FlagDf = 0x40;       // in byte 6
constexpr std::uint8_t kIpProtoTcp = 6;
constexpr std::uint8_t kIpProtoUdp = 17;

constexpr std::size_t kTcpHeaderMinLen = 20;
constexpr std::size_t kUdpHeaderLen = 8;
constexpr std::size_t kTcpCsumOffset = 16;
constexpr std::size_t kUdpCsumOffset = 6;
constexpr std::uint8_t kTcpFin = 0x01;
constexpr std::uint8_t kTcpPsh = 0x08;
constexpr std::uint8_t kTcpAck = 0x10;
constexpr std::uint8_t kTcpCwr = 0x80;

constexpr std::size_t kSegmentLenMax = 65535;  // SegmentArena::lens are 16-bit

std::uint16_t get16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
std::uint32_t get32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
void put16(std::uint8_t* p, std::size_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
void put32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}

// Offset of the IP header and the ethertype after at most one VLAN tag.
bool locate_l3(ByteSpan f, std::size_t& ip_off, std::uint16_t& type) {
  if (f.size() < kEthHeaderLen) return false;
  type = get16(f.data() + 12);
  ip_off = kEthHeaderLen;
  if (type == kEtherTypeVlan || type == kEtherTypeQinQ) {
    if (f.size() < kEthHeaderLen + kVlanTagLen) return false;
    type = get16(f.data() + 16);
    ip_off += kVlanTagLen;
  }
  return true;
}

// The IP and L4 layout of a frame, lengths checked against the span.
struct IpLayout {
  bool v6 = false;
  std::uint8_t proto = 0;
  std::size_t ip_off = 0;
  std::size_t ip_hdr_len = 0;
  std::size_t ip_end = 0;  // ip_off + IP length; <= frame size
};

// IPv4 (not a fragment) or IPv6 (whatever its next header is). Returns false otherwise.
bool parse_ip(ByteSpan f, IpLayout& l) {
  std::uint16_t type = 0;
  if (!locate_l3(f, l.ip_off, type)) return false;
  const std::uint8_t* ip = f.data() + l.ip_off;
  const std::size_t avail = f.size() - l.ip_off;
  if (type == kEtherTypeIpv4) {
    if (avail < kIp4HeaderMinLen || ip[0] >> 4 != 4) return false;
    l.v6 = false;
    l.ip_hdr_len = std::size_t{ip[0] & 0x0fu} * 4;
    const std::size_t total = get16(ip + 2);
    if (l.ip_hdr_len < kIp4HeaderMinLen || total < l.ip_hdr_len || total > avail) return false;
    if ((get16(ip + 6) & kIp4FragMask) != 0) return false;
    l.proto = ip[9];
    l.ip_end = l.ip_off + total;
    return true;
  }
  if (type == kEtherTypeIpv6) {
    if (avail < kIpv6HeaderLen || ip[0] >> 4 != 6) return false;
    l.v6 = true;
    l.ip_hdr_len = kIpv6HeaderLen;
    const std::size_t total = kIpv6HeaderLen + get16(ip + 4);
    if (total > avail) return false;
    l.proto = ip[6];
    l.ip_end = l.ip_off + total;
    return true;
  }
  return false;
}

std::uint16_t pseudo_sum(const std::uint8_t* ip, bool v6, std::uint8_t proto, std::size_t l4_len) {
  const auto n = static_cast<std::uint32_t>(l4_len);
  return v6 ? pseudo_header_sum_v6(ip + 8, ip + 24, proto, n)
            : pseudo_header_sum_v4(ip + 12, ip + 16, proto, n);
}

void refresh_ip4_checksum(std::uint8_t* ip, std::size_t hdr_len) {
  put16(ip + 10, 0);
  put16(ip + 10, ip_checksum(ByteSpan(ip, hdr_len)));
}

// Segment i of length len fits its stride and the arena. Overflow-safe.
bool fits(const SegmentArena& out, std::size_t i, std::size_t len) {
  if (len > kSegmentLenMax || i >= out.lens.size()) return false;
  if (out.headroom > out.stride || len > out.stride - out.headroom) return false;
  if (i != 0 && (out.stride == 0 || i > out.arena.size() / out.stride)) return false;
  const std::size_t start = i * out.stride;
  return start <= out.arena.size() && out.headroom + len <= out.arena.size() - start;
}

SegmentResult copy_one(const VnetHdr& h, ByteSpan frame, const SegmentArena& out) {
  const std::size_t n = frame.size();
  const bool csum = (h.flags & kVnetFlagNeedsCsum) != 0;
  if (csum && (h.csum_start > n || h.csum_offset > n - h.csum_start ||
               n - h.csum_start - h.csum_offset < 2)) {
    return {0, SegmentError::malformed};
  }
  if (!fits(out, 0, n)) return {0, SegmentError::too_many};
  std::uint8_t* s = out.arena.data() + out.headroom;
  if (n != 0) std::memcpy(s, frame.data(), n);
  out.lens[0] = static_cast<std::uint16_t>(n);
  if (csum) {
    // The field holds the pseudo-header sum; summing over it completes the checksum.
    const auto c =
        static_cast<std::uint16_t>(~checksum_partial(ByteSpan(s + h.csum_start, n - h.csum_start)));
    put16(s + h.csum_start + h.csum_offset, c == 0 ? 0xffff : c);
  }
  return {1, SegmentError::none};
}

}  // namespace

VnetHdr read_vnet_hdr(const std::uint8_t* p) {
  VnetHdr h;
  h.flags = p[0];
  h.gso_type = p[1];
  std::memcpy(&h.hdr_len, p + 2, 2);
  std::memcpy(&h.gso_size, p + 4, 2);
  std::memcpy(&h.csum_start, p + 6, 2);
  std::memcpy(&h.csum_offset, p + 8, 2);
  return h;
}

void write_vnet_hdr(std::uint8_t* p, const VnetHdr& h) {
  p[0] = h.flags;
  p[1] = h.gso_type;
  std::memcpy(p + 2, &h.hdr_len, 2);
  std::memcpy(p + 4, &h.gso_size, 2);
  std::memcpy(p + 6, &h.csum_start, 2);
  std::memcpy(p + 8, &h.csum_offset, 2);
}

SegmentResult segment_frame(const VnetHdr& h, ByteSpan frame, std::size_t mss_cap,
                            const SegmentArena& out) {
  const std::uint8_t gso = h.gso_type & static_cast<std::uint8_t>(~kGsoEcn);
  if (gso == kGsoNone) return copy_one(h, frame, out);
  if (gso != kGsoTcpV4 && gso != kGsoTcpV6 && gso != kGsoUdpL4) {
    return {0, SegmentError::unsupported};
  }
  constexpr SegmentResult kMalformed{0, SegmentError::malformed};
  if (h.gso_size == 0 || h.hdr_len > frame.size() || h.csum_start > frame.size()) {
    return kMalformed;
  }

  IpLayout l;
  if (!parse_ip(frame, l)) return kMalformed;
  if ((gso == kGsoTcpV4 && l.v6) || (gso == kGsoTcpV6 && !l.v6)) return kMalformed;
  const bool tcp = gso != kGsoUdpL4;
  if (l.v6 && l.proto != kIpProtoTcp && l.proto != kIpProtoUdp) {
    return {0, SegmentError::unsupported};  // an extension header
  }
  if (l.proto != (tcp ? kIpProtoTcp : kIpProtoUdp)) return kMalformed;

  const std::size_t l4_off = l.ip_off + l.ip_hdr_len;
  if (h.csum_start != l4_off) return kMalformed;
  if (h.csum_offset != (tcp ? kTcpCsumOffset : kUdpCsumOffset)) return kMalformed;
  const std::uint8_t* f = frame.data();
  std::size_t l4_hdr_len = kUdpHeaderLen;
  if (tcp) {
    if (l.ip_end - l4_off < kTcpHeaderMinLen) return kMalformed;
    l4_hdr_len = static_cast<std::size_t>(f[l4_off + 12] >> 4) * 4;
    if (l4_hdr_len < kTcpHeaderMinLen) return kMalformed;
  }
  if (l4_hdr_len > l.ip_end - l4_off) return kMalformed;

  const std::size_t hdr_end = l4_off + l4_hdr_len;
  const std::size_t payload = l.ip_end - hdr_end;
  std::size_t mss = h.gso_size;
  if (mss_cap != 0) mss = std::min(mss, mss_cap);
  const std::size_t count = payload == 0 ? 1 : (payload + mss - 1) / mss;
  if (count > out.lens.size()) return {0, SegmentError::too_many};
  // Every segment but the last is the longest; checking both bounds them all.
  const std::size_t last_len = hdr_end + (payload - (count - 1) * mss);
  if (!fits(out, 0, hdr_end + std::min(payload, mss)) || !fits(out, count - 1, last_len)) {
    return {0, SegmentError::too_many};
  }

  const std::uint16_t ip_id = l.v6 ? 0 : get16(f + l.ip_off + 4);
  const std::uint32_t seq = tcp ? get32(f + l4_off + 4) : 0;
  const std::uint8_t tcp_flags = tcp ? f[l4_off + 13] : 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t off = i * mss;
    const std::size_t n = std::min(mss, payload - off);
    std::uint8_t* s = out.arena.data() + i * out.stride + out.headroom;
    std::memcpy(s, f, hdr_end);
    if (n != 0) std::memcpy(s + hdr_end, f + hdr_end + off, n);
    std::uint8_t* ip = s + l.ip_off;
    std::uint8_t* l4 = s + l4_off;
    const std::size_t l4_len = l4_hdr_len + n;
    if (l.v6) {
      put16(ip + 4, l4_len);  // no extension headers
    } else {
      put16(ip + 2, l.ip_hdr_len + l4_len);
      put16(ip + 4, static_cast<std::uint16_t>(ip_id + i));
      refresh_ip4_checksum(ip, l.ip_hdr_len);
    }
    std::uint16_t c = 0;
    if (tcp) {
      put32(l4 + 4, static_cast<std::uint32_t>(seq + off));
      std::uint8_t fl = tcp_flags;
      if (i + 1 < count) fl &= static_cast<std::uint8_t>(~(kTcpFin | kTcpPsh));
      if (i != 0) fl &= static_cast<std::uint8_t>(~kTcpCwr);
      l4[13] = fl;
      put16(l4 + kTcpCsumOffset, 0);
      c = static_cast<std::uint16_t>(
          ~checksum_partial(ByteSpan(l4, l4_len), pseudo_sum(ip, l.v6, l.proto, l4_len)));
      put16(l4 + kTcpCsumOffset, c);
    } else {
      put16(l4 + 4, l4_len);
      put16(l4 + kUdpCsumOffset, 0);
      c = static_cast<std::uint16_t>(
          ~checksum_partial(ByteSpan(l4, l4_len), pseudo_sum(ip, l.v6, l.proto, l4_len)));
      put16(l4 + kUdpCsumOffset, c == 0 ? 0xffff : c);  // 0 means "no checksum" in UDP
    }
    out.lens[i] = static_cast<std::uint16_t>(hdr_end + n);
  }
  return {count, SegmentError::none};
}

// ---- TcpCoalescer ----

struct TcpCoalescer::Parsed {
  bool data_valid = false;  // TCP/UDP over IP: written with kVnetFlagDataValid
  bool keyed = false;       // TCP over untagged IP: has a flow key
  bool mergeable = false;   // may start or continue a flow
  bool v6 = false;
  std::size_t tcp_off = 0;
  std::size_t hdr_len = 0;  // Ethernet + IP + TCP
  std::size_t payload = 0;
  std::uint32_t seq = 0;
  std::uint8_t flags = 0;
};

namespace {

// Key of a keyed frame: Ethernet header, addresses, ports.
bool same_key(const std::uint8_t* a, std::size_t a_tcp, const std::uint8_t* b, std::size_t b_tcp,
              bool v6) {
  if (std::memcmp(a, b, kEthHeaderLen) != 0) return false;
  const std::size_t addr_off = kEthHeaderLen + (v6 ? 8 : 12);
  const std::size_t addr_len = v6 ? 32 : 8;
  return std::memcmp(a + addr_off, b + addr_off, addr_len) == 0 &&
         std::memcmp(a + a_tcp, b + b_tcp, 4) == 0;
}

}  // namespace

TcpCoalescer::TcpCoalescer(std::size_t flows_max, std::size_t super_max)
    : super_max_(std::min(super_max, kCoalescerFrameMax)),
      slot_len_(kVnetHdrLen + super_max_),
      flows_(flows_max),
      storage_(flows_max * slot_len_),
      pass_buf_(kVnetHdrLen + kCoalescerFrameMax) {}

std::size_t TcpCoalescer::flows_held() const {
  return static_cast<std::size_t>(
      std::count_if(flows_.begin(), flows_.end(), [](const Flow& f) { return f.busy; }));
}

void TcpCoalescer::add(ByteSpan frame, FrameSink& sink) { add_impl(frame, nullptr, sink); }

void TcpCoalescer::add_with_headroom(std::span<std::uint8_t> headroom_and_frame, FrameSink& sink) {
  if (headroom_and_frame.size() < kVnetHdrLen) {
    ++dropped_frames_;
    return;
  }
  add_impl(ByteSpan(headroom_and_frame.subspan(kVnetHdrLen)), headroom_and_frame.data(), sink);
}

void TcpCoalescer::flush(FrameSink& sink) {
  for (std::size_t i = 0; i < flows_.size(); ++i) {
    if (flows_[i].busy) emit(i, sink);
  }
}

void TcpCoalescer::add_impl(ByteSpan frame, std::uint8_t* headroom, FrameSink& sink) {
  if (frame.size() > kCoalescerFrameMax) {
    ++dropped_frames_;
    return;
  }
  Parsed p;
  IpLayout l;
  if (parse_ip(frame, l)) {
    const std::size_t l4_off = l.ip_off + l.ip_hdr_len;
    const std::size_t l4_len = l.ip_end - l4_off;
    if (l.proto == kIpProtoUdp) p.data_valid = l4_len >= kUdpHeaderLen;
    if (l.proto == kIpProtoTcp && l4_len >= kTcpHeaderMinLen) {
      const std::size_t th_len = static_cast<std::size_t>(frame[l4_off + 12] >> 4) * 4;
      p.data_valid = true;
      if (th_len >= kTcpHeaderMinLen && th_len <= l4_len && l.ip_off == kEthHeaderLen) {
        p.keyed = true;
        p.v6 = l.v6;
        p.tcp_off = l4_off;
        p.hdr_len = l4_off + th_len;
        p.payload = l.ip_end - p.hdr_len;
        p.seq = get32(frame.data() + l4_off + 4);
        p.flags = frame[l4_off + 13];
        p.mergeable = (l.v6 || l.ip_hdr_len == kIp4HeaderMinLen) && l.ip_end == frame.size() &&
                      p.payload > 0 && (p.flags & ~kTcpPsh) == kTcpAck;
      }
    }
  }
  if (!p.keyed) {
    // Simple and safe: nothing held overtakes, or is overtaken by, a frame we cannot key.
    flush(sink);
    pass(frame, headroom, p.data_valid ? kVnetFlagDataValid : 0, sink);
    return;
  }

  std::size_t free_slot = flows_.size();
  std::size_t oldest = flows_.size();
  for (std::size_t i = 0; i < flows_.size(); ++i) {
    const Flow& fl = flows_[i];
    if (!fl.busy) {
      if (free_slot == flows_.size()) free_slot = i;
      continue;
    }
    if (fl.v6 == p.v6 &&
        same_key(slot(i) + kVnetHdrLen, fl.tcp_off, frame.data(), p.tcp_off, p.v6)) {
      if (continues(i, p, frame)) {
        Flow& f = flows_[i];
        std::uint8_t* held = slot(i) + kVnetHdrLen;
        std::memcpy(held + f.len, frame.data() + p.hdr_len, p.payload);
        f.len += p.payload;
        f.next_seq += static_cast<std::uint32_t>(p.payload);
        ++f.segments;
        ++coalesced_frames_;
        if ((p.flags & kTcpPsh) != 0) {
          held[f.tcp_off + 13] |= kTcpPsh;
          emit(i, sink);
        } else if (p.payload < f.mss) {
          emit(i, sink);
        }
        return;
      }
      emit(i, sink);
      free_slot = std::min(free_slot, i);
      continue;  // keys are unique among held flows, but keep scanning for a free slot
    }
    if (oldest == flows_.size() || fl.started < flows_[oldest].started) oldest = i;
  }

  // A one-segment flow would be written as is: do that now.
  if (!p.mergeable || (p.flags & kTcpPsh) != 0 || frame.size() > super_max_ || flows_.empty()) {
    pass(frame, headroom, kVnetFlagDataValid, sink);
    return;
  }
  if (free_slot == flows_.size()) {
    emit(oldest, sink);
    free_slot = oldest;
  }
  start(free_slot, p, frame);
}

bool TcpCoalescer::continues(std::size_t i, const Parsed& p, ByteSpan frame) const {
  const Flow& f = flows_[i];
  if (!p.mergeable || p.hdr_len != f.hdr_len || p.seq != f.next_seq || p.payload > f.mss ||
      p.payload > super_max_ - f.len) {
    return false;
  }
  const std::uint8_t* a = storage_.data() + i * slot_len_ + kVnetHdrLen;
  const std::uint8_t* b = frame.data();
  const std::uint8_t* ia = a + kEthHeaderLen;
  const std::uint8_t* ib = b + kEthHeaderLen;
  if (f.v6) {
    // Version, traffic class, flow label; hop limit.
    if (std::memcmp(ia, ib, 4) != 0 || ia[7] != ib[7]) return false;
  } else {
    if (ia[1] != ib[1] || ia[8] != ib[8] || ((ia[6] ^ ib[6]) & kIp4FlagDf) != 0) return false;
  }
  // Ack and the rest of the header after the flags: window, checksum (skipped), urgent
  // pointer (meaningless without URG), options.
  const std::uint8_t* ta = a + f.tcp_off;
  const std::uint8_t* tb = b + p.tcp_off;
  return std::memcmp(ta + 8, tb + 8, 4) == 0 && std::memcmp(ta + 14, tb + 14, 2) == 0 &&
         std::memcmp(ta + kTcpHeaderMinLen, tb + kTcpHeaderMinLen,
                     f.hdr_len - f.tcp_off - kTcpHeaderMinLen) == 0;
}

void TcpCoalescer::start(std::size_t i, const Parsed& p, ByteSpan frame) {
  Flow& f = flows_[i];
  std::memcpy(slot(i) + kVnetHdrLen, frame.data(), frame.size());
  f.busy = true;
  f.v6 = p.v6;
  f.len = frame.size();
  f.tcp_off = p.tcp_off;
  f.hdr_len = p.hdr_len;
  f.mss = p.payload;
  f.next_seq = p.seq + static_cast<std::uint32_t>(p.payload);
  f.segments = 1;
  f.started = clock_++;
}

void TcpCoalescer::emit(std::size_t i, FrameSink& sink) {
  Flow& f = flows_[i];
  std::uint8_t* b = slot(i);
  std::uint8_t* frame = b + kVnetHdrLen;
  VnetHdr h;
  if (f.segments == 1) {
    h.flags = kVnetFlagDataValid;
  } else {
    std::uint8_t* ip = frame + kEthHeaderLen;
    const std::size_t l4_len = f.len - f.tcp_off;
    if (f.v6) {
      put16(ip + 4, f.len - kEthHeaderLen - kIpv6HeaderLen);
    } else {
      put16(ip + 2, f.len - kEthHeaderLen);
      refresh_ip4_checksum(ip, kIp4HeaderMinLen);
    }
    put16(frame + f.tcp_off + kTcpCsumOffset, pseudo_sum(ip, f.v6, kIpProtoTcp, l4_len));
    h.flags = kVnetFlagNeedsCsum;
    h.gso_type = f.v6 ? kGsoTcpV6 : kGsoTcpV4;
    h.hdr_len = static_cast<std::uint16_t>(f.hdr_len);
    h.gso_size = static_cast<std::uint16_t>(f.mss);
    h.csum_start = static_cast<std::uint16_t>(f.tcp_off);
    h.csum_offset = static_cast<std::uint16_t>(kTcpCsumOffset);
  }
  write_vnet_hdr(b, h);
  f.busy = false;
  sink.write(std::span<const std::uint8_t>(b, kVnetHdrLen + f.len));
}

void TcpCoalescer::pass(ByteSpan frame, std::uint8_t* headroom, std::uint8_t flags,
                        FrameSink& sink) {
  VnetHdr h;
  h.flags = flags;
  if (headroom == nullptr) {
    headroom = pass_buf_.data();
    if (!frame.empty()) std::memcpy(headroom + kVnetHdrLen, frame.data(), frame.size());
  }
  write_vnet_hdr(headroom, h);
  sink.write(std::span<const std::uint8_t>(headroom, kVnetHdrLen + frame.size()));
}

}  // namespace meshd::dp
