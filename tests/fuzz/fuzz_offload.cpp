// TAP offloads on arbitrary bytes. The first kVnetHdrLen bytes are a vnet header, the
// next byte picks the mss cap, the rest is the frame. segment_frame must stay in bounds
// (canaries in every headroom) and report sizes that fit; its segments and the raw frame
// then go through two TcpCoalescers, whose super-frames must segment again into
// segments with valid checksums.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "dataplane/icmp_too_big.hpp"
#include "dataplane/offload.hpp"

namespace {

using meshd::ByteSpan;
using namespace meshd::dp;

constexpr std::size_t kSegmentsMax = 128;
constexpr std::size_t kHeadroom = 32;
constexpr std::size_t kStride = 4400;  // headroom + headers (<= 138) + mss cap (<= 4080)
constexpr std::uint8_t kCanary = 0x5A;
constexpr std::size_t kResegmentArenaLen = 256 * 1024;
constexpr std::size_t kResegmentMax = 1024;

void check(bool ok) {
  if (!ok) std::abort();
}

// A super-frame from the coalescer: well formed, and its segments carry valid checksums.
void check_super(ByteSpan frame, const VnetHdr& h, std::size_t super_max) {
  check(h.flags == kVnetFlagNeedsCsum);
  check(h.gso_type == kGsoTcpV4 || h.gso_type == kGsoTcpV6);
  check(h.csum_offset == 16 && h.gso_size > 0 && frame.size() <= super_max);
  const bool v6 = h.gso_type == kGsoTcpV6;
  check(h.csum_start == (v6 ? 54 : 34));
  static std::vector<std::uint8_t> arena(kResegmentArenaLen);
  static std::array<std::uint16_t, kResegmentMax> lens{};
  const std::size_t stride = std::size_t{h.hdr_len} + h.gso_size;
  const std::size_t payload = frame.size() - h.hdr_len;
  const std::size_t want = (payload + h.gso_size - 1) / h.gso_size;
  check(want >= 2);  // one segment would have gone out as a plain frame
  const std::size_t room = std::min(kResegmentMax, arena.size() / stride);
  const SegmentResult r =
      segment_frame(h, frame, 0, SegmentArena{arena, stride, 0, std::span(lens.data(), room)});
  if (want > room) {
    check(r.error == SegmentError::too_many);
    return;
  }
  check(r.error == SegmentError::none && r.count == want);
  for (std::size_t i = 0; i < r.count; ++i) {
    const std::uint8_t* s = arena.data() + i * stride;
    const std::uint8_t* ip = s + 14;
    const std::size_t l4_len = lens[i] - h.csum_start;
    const std::uint16_t ph = v6 ? pseudo_header_sum_v6(ip + 8, ip + 24, 6, l4_len)
                                : pseudo_header_sum_v4(ip + 12, ip + 16, 6, l4_len);
    check(checksum_partial(ByteSpan(s + h.csum_start, l4_len), ph) == 0xffff);
    if (!v6) check(ip_checksum(ByteSpan(ip, 20)) == 0);
  }
}

struct CheckingSink : FrameSink {
  std::size_t super_max = 0;
  void write(std::span<const std::uint8_t> s) override {
    check(s.size() >= kVnetHdrLen && s.size() <= kVnetHdrLen + kCoalescerFrameMax);
    const VnetHdr h = read_vnet_hdr(s.data());
    const ByteSpan frame = s.subspan(kVnetHdrLen);
    if (h.gso_type == kGsoNone) {
      check(h.flags == 0 || h.flags == kVnetFlagDataValid);
      check(h.hdr_len == 0 && h.gso_size == 0 && h.csum_start == 0 && h.csum_offset == 0);
      return;
    }
    check_super(frame, h, super_max);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static std::vector<std::uint8_t> arena(kSegmentsMax * kStride);
  static std::array<std::uint16_t, kSegmentsMax> lens{};
  static TcpCoalescer big(8, 65535);
  static TcpCoalescer small(2, 3000);
  if (size < kVnetHdrLen + 1) return 0;
  const VnetHdr h = read_vnet_hdr(data);
  const std::size_t mss_cap = std::size_t{data[kVnetHdrLen]} * 16;  // 0: no cap
  const ByteSpan frame(data + kVnetHdrLen + 1, size - kVnetHdrLen - 1);

  // The oversize path the worker takes for the same frame: classify, then answer.
  {
    static std::array<std::uint8_t, kIcmpTooBigFrameMax> icmp{};
    const std::size_t frame_max = 64 + mss_cap;
    const TooBigAction a = classify_oversize(frame, frame_max);
    const std::size_t n = build_icmp_too_big(frame, icmp_too_big_mtu(frame, frame_max), icmp);
    if (n > icmp.size() || (a == TooBigAction::icmp) != (n > 0)) std::abort();
  }

  for (std::size_t i = 0; i < kSegmentsMax; ++i) {
    std::memset(arena.data() + i * kStride, kCanary, kHeadroom);
  }
  const SegmentResult r =
      segment_frame(h, frame, mss_cap, SegmentArena{arena, kStride, kHeadroom, lens});
  for (std::size_t i = 0; i < kSegmentsMax; ++i) {
    const std::uint8_t* p = arena.data() + i * kStride;
    check(std::all_of(p, p + kHeadroom, [](std::uint8_t b) { return b == kCanary; }));
  }
  if (r.error != SegmentError::none) {
    check(r.count == 0);
  } else {
    check(r.count >= 1 && r.count <= kSegmentsMax);
    const std::uint8_t gso = h.gso_type & static_cast<std::uint8_t>(~kGsoEcn);
    for (std::size_t i = 0; i < r.count; ++i) {
      check(kHeadroom + lens[i] <= kStride);
      if (gso == kGsoNone) check(lens[i] == frame.size());
      // GSO segments are no longer than the frame they came from, and never empty.
      if (gso != kGsoNone) check(lens[i] > 14 && lens[i] <= frame.size());
    }
  }

  for (auto* c : {&big, &small}) {
    CheckingSink sink;
    sink.super_max = c == &big ? 65535 : 3000;
    for (std::size_t i = 0; i < r.count; ++i) {
      std::uint8_t* seg = arena.data() + i * kStride + kHeadroom;
      if (c == &big) {  // in place, the vnet header going into the segment's headroom
        c->add_with_headroom(std::span(seg - kVnetHdrLen, kVnetHdrLen + lens[i]), sink);
      } else {
        c->add(ByteSpan(seg, lens[i]), sink);
      }
    }
    c->add(frame, sink);
    c->flush(sink);
    check(c->flows_held() == 0);
  }
  return 0;
}
