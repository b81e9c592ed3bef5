// TSO segmentation and TCP coalescing, the two offload steps of the data path
// (dataplane/offload.hpp), on a 64 KiB TCP/IPv4 super-frame as a TAP hands it over
// (partial checksum, gso_size 1388): segment it into ~48 frames with headroom, and
// coalesce those back into one super-frame. Compare ratios within one run.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "dataplane/checksum.hpp"
#include "dataplane/offload.hpp"

using namespace meshd;
using namespace meshd::dp;

namespace {

constexpr std::size_t kMss = 1388;
constexpr std::size_t kHdr = 14 + 20 + 20;
constexpr std::size_t kPayload = 47 * kMss;  // 65,236 bytes: the frame stays under 64 KiB
constexpr std::size_t kStride = 2048, kHeadroom = 20, kSlots = 64;

void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

// Ethernet + IPv4 + TCP (ACK) with the pseudo-header sum in the checksum field.
std::vector<std::uint8_t> super_frame(VnetHdr& h) {
  std::vector<std::uint8_t> f(kHdr + kPayload, 0);
  const std::uint8_t dst[6] = {2, 0, 0, 0, 0, 2}, src[6] = {2, 0, 0, 0, 0, 1};
  std::memcpy(f.data(), dst, 6);
  std::memcpy(f.data() + 6, src, 6);
  put16(f.data() + 12, 0x0800);
  std::uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  put16(ip + 2, static_cast<std::uint16_t>(20 + 20 + kPayload > 0xffff ? 0xffff : 20 + 20 + kPayload));
  ip[6] = 0x40;  // DF
  ip[8] = 64;
  ip[9] = 6;
  const std::uint8_t a[4] = {10, 0, 0, 1}, b[4] = {10, 0, 0, 2};
  std::memcpy(ip + 12, a, 4);
  std::memcpy(ip + 16, b, 4);
  std::uint8_t* tcp = ip + 20;
  put16(tcp, 40000);
  put16(tcp + 2, 5201);
  tcp[12] = 5 << 4;
  tcp[13] = 0x10;
  put16(tcp + 14, 512);
  for (std::size_t i = 0; i < kPayload; ++i) tcp[20 + i] = static_cast<std::uint8_t>(i * 7);
  const std::uint32_t pseudo = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + static_cast<std::uint32_t>(20 + kPayload);
  put16(tcp + 16, static_cast<std::uint16_t>((pseudo & 0xffff) + (pseudo >> 16)));
  h = VnetHdr{kVnetFlagNeedsCsum, kGsoTcpV4, static_cast<std::uint16_t>(kHdr), kMss, 34, 16};
  return f;
}

class CountSink : public FrameSink {
 public:
  void write(std::span<const std::uint8_t> f) override { bytes += f.size(); }
  std::size_t bytes = 0;
};

void BM_segment_tso(benchmark::State& state) {
  VnetHdr h;
  const auto f = super_frame(h);
  std::vector<std::uint8_t> arena(kSlots * kStride);
  std::vector<std::uint16_t> lens(kSlots);
  const SegmentArena out{arena, kStride, kHeadroom, lens};
  for (auto _ : state) {
    const SegmentResult r = segment_frame(h, f, 0, out);
    benchmark::DoNotOptimize(r);
    if (r.error != SegmentError::none) state.SkipWithError("segment_frame failed");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * f.size()));
}
BENCHMARK(BM_segment_tso);

void BM_coalesce_tcp(benchmark::State& state) {
  VnetHdr h;
  const auto f = super_frame(h);
  std::vector<std::uint8_t> arena(kSlots * kStride);
  std::vector<std::uint16_t> lens(kSlots);
  const SegmentArena out{arena, kStride, kHeadroom, lens};
  const SegmentResult r = segment_frame(h, f, 0, out);
  TcpCoalescer co;
  CountSink sink;
  for (auto _ : state) {
    for (std::size_t i = 0; i < r.count; ++i) co.add(ByteSpan(arena.data() + i * kStride + kHeadroom, lens[i]), sink);
    co.flush(sink);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * f.size()));
  state.counters["segments"] = static_cast<double>(r.count);
}
BENCHMARK(BM_coalesce_tcp);

// The Internet checksum over one segment's payload (segment_frame computes one per
// segment it cuts).
void BM_checksum_1388(benchmark::State& state) {
  std::vector<std::uint8_t> buf(1388);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::uint8_t>(i * 7);
  for (auto _ : state) {
    benchmark::DoNotOptimize(meshd::dp::checksum_partial(meshd::ByteSpan(buf.data(), buf.size())));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buf.size()));
}
BENCHMARK(BM_checksum_1388);

}  // namespace

BENCHMARK_MAIN();
