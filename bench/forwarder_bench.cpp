// Forwarding decisions per second against FIBs of 10, 10,000 and 1,000,000 remote MACs:
// unicast to a remote endpoint, ARP proxy, flood, tunnel-side anti-spoofing checks, and
// the ICMP "too big" answer to an oversize frame.
//
// "hot" runs send every frame to one endpoint (the table entry stays in cache); "spread"
// runs cycle through kSpreadKeys endpoints drawn at random from the whole table, so a
// large FIB shows its cache misses. The frames are rewritten in place (6 bytes of MAC or
// 4 of IP per iteration), which costs next to nothing beside the lookup.
#include <benchmark/benchmark.h>

#include <array>
#include <map>
#include <memory>
#include <vector>

#include "dataplane/forwarder.hpp"
#include "dataplane/frame.hpp"
#include "dataplane/icmp_too_big.hpp"

namespace {

using namespace meshd;
using namespace meshd::dp;

constexpr std::uint32_t kVni = 100;
constexpr std::size_t kOwners = 16;
constexpr std::size_t kSpreadKeys = 1 << 16;
constexpr MacAddr kLocal{0x02, 0, 0, 0, 0, 1};

MacAddr remote_mac(std::size_t i) {
  return MacAddr{0x02, 0x01, 0, static_cast<std::uint8_t>(i >> 16),
                 static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)};
}
IpAddr remote_ip(std::size_t i) {
  return IpAddr::v4(0x0a000000u + 2 + static_cast<std::uint32_t>(i));
}
NodeId owner_of(std::size_t i) {
  NodeId n{};
  n[0] = static_cast<std::uint8_t>(i % kOwners);
  return n;
}

struct Setup {
  Forwarder fwd;
  crypto::CertChain chain;
  std::size_t endpoints = 0;
  std::vector<std::size_t> spread;  // kSpreadKeys endpoint indices, uniform over the FIB
  explicit Setup(std::size_t n) : endpoints(n) {
    auto f = std::make_shared<Fib>();
    f->local_macs.insert({kVni, kLocal});
    f->remote_macs.reserve(n);
    f->ip_to_mac.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      f->remote_macs[{kVni, remote_mac(i)}] = RemoteEndpoint{owner_of(i)};
      f->ip_to_mac[{kVni, remote_ip(i)}] = remote_mac(i);
    }
    for (std::size_t i = 0; i < kOwners; ++i) f->vni_members[kVni].push_back(owner_of(i));
    fwd.publish(f);
    chain.node.scope.vnis = {kVni};
    std::uint64_t x = 0x9e3779b97f4a7c15ull;  // xorshift: the same keys every run
    spread.resize(kSpreadKeys);
    for (auto& k : spread) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      k = x % n;
    }
  }
  std::size_t hot() const { return endpoints / 2; }
};

// Building a 1M-entry FIB takes a second or two: one per size for the whole run.
Setup& setup(std::size_t n) {
  static std::map<std::size_t, std::unique_ptr<Setup>> cache;
  auto& s = cache[n];
  if (!s) s = std::make_unique<Setup>(n);
  return *s;
}

std::vector<std::uint8_t> frame(const MacAddr& dst, const MacAddr& src, std::uint16_t type,
                                std::size_t payload_len) {
  std::vector<std::uint8_t> f(kEthHeaderLen + payload_len, 0);
  std::copy(dst.begin(), dst.end(), f.begin());
  std::copy(src.begin(), src.end(), f.begin() + 6);
  f[12] = static_cast<std::uint8_t>(type >> 8);
  f[13] = static_cast<std::uint8_t>(type);
  return f;
}

constexpr std::size_t kArpTargetIpOffset = kEthHeaderLen + 24;

std::vector<std::uint8_t> arp_request(const IpAddr& target) {
  auto f = frame(MacAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, kLocal, kEtherTypeArp, kArpLen);
  std::uint8_t* a = f.data() + kEthHeaderLen;
  const std::array<std::uint8_t, 8> hdr{0, 1, 8, 0, 6, 4, 0, 1};
  std::copy(hdr.begin(), hdr.end(), a);
  std::copy(kLocal.begin(), kLocal.end(), a + 8);
  a[14] = 10;
  a[17] = 1;
  std::copy_n(target.bytes.begin(), 4, f.begin() + kArpTargetIpOffset);
  return f;
}

void sizes(benchmark::internal::Benchmark* b) {
  b->ArgName("macs")->Arg(10)->Arg(10'000)->Arg(1'000'000);
}

void BM_tap_unicast_hot(benchmark::State& state) {
  Setup& s = setup(static_cast<std::size_t>(state.range(0)));
  const auto f = frame(remote_mac(s.hot()), kLocal, kEtherTypeIpv4, 1386);
  std::array<std::uint8_t, kReplyFrameMax> reply{};
  for (auto _ : state) benchmark::DoNotOptimize(s.fwd.on_tap_frame(kVni, f, reply));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_tap_unicast_hot)->Apply(sizes);

void BM_tap_unicast_spread(benchmark::State& state) {
  Setup& s = setup(static_cast<std::size_t>(state.range(0)));
  auto f = frame(kLocal, kLocal, kEtherTypeIpv4, 1386);
  std::array<std::uint8_t, kReplyFrameMax> reply{};
  std::size_t k = 0;
  for (auto _ : state) {
    const MacAddr dst = remote_mac(s.spread[k++ % kSpreadKeys]);
    std::copy(dst.begin(), dst.end(), f.begin());
    benchmark::DoNotOptimize(s.fwd.on_tap_frame(kVni, f, reply));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_tap_unicast_spread)->Apply(sizes);

void BM_tap_arp_proxy(benchmark::State& state) {
  Setup& s = setup(static_cast<std::size_t>(state.range(0)));
  auto f = arp_request(remote_ip(0));
  std::array<std::uint8_t, kReplyFrameMax> reply{};
  std::size_t k = 0;
  for (auto _ : state) {
    const IpAddr target = remote_ip(s.spread[k++ % kSpreadKeys]);
    std::copy_n(target.bytes.begin(), 4, f.begin() + kArpTargetIpOffset);
    benchmark::DoNotOptimize(s.fwd.on_tap_frame(kVni, f, reply));
  }
  state.SetItemsProcessed(state.iterations());
  if (s.fwd.counters().arp_proxied == 0) state.SkipWithError("no ARP reply");
}
BENCHMARK(BM_tap_arp_proxy)->Apply(sizes);

void BM_tap_flood(benchmark::State& state) {
  Setup& s = setup(10'000);
  const auto f = frame(MacAddr{0x02, 0x09, 0, 0, 0, 9}, kLocal, kEtherTypeIpv4, 100);
  std::array<std::uint8_t, kReplyFrameMax> reply{};
  for (auto _ : state) benchmark::DoNotOptimize(s.fwd.on_tap_frame(kVni, f, reply));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_tap_flood);

// Anti-spoofing: the inner source MAC must map to the sending node.
void BM_tunnel_deliver(benchmark::State& state) {
  Setup& s = setup(static_cast<std::size_t>(state.range(0)));
  auto f = frame(kLocal, kLocal, kEtherTypeIpv4, 1386);
  std::size_t k = 0;
  const std::uint64_t before = s.fwd.counters().rx_delivered;
  for (auto _ : state) {
    const std::size_t i = s.spread[k++ % kSpreadKeys];
    const MacAddr src = remote_mac(i);
    std::copy(src.begin(), src.end(), f.begin() + 6);
    benchmark::DoNotOptimize(s.fwd.on_tunnel_frame(owner_of(i), s.chain, kVni, true, f));
  }
  state.SetItemsProcessed(state.iterations());
  if (s.fwd.counters().rx_delivered - before != static_cast<std::uint64_t>(state.iterations())) {
    state.SkipWithError("frames not delivered");
  }
}
BENCHMARK(BM_tunnel_deliver)->Apply(sizes);

// The same check failing: a node sending from another node's endpoint.
void BM_tunnel_spoofed(benchmark::State& state) {
  Setup& s = setup(10'000);
  const auto f = frame(kLocal, remote_mac(s.hot()), kEtherTypeIpv4, 1386);
  const NodeId liar = owner_of(s.hot() + 1);
  for (auto _ : state) {
    benchmark::DoNotOptimize(s.fwd.on_tunnel_frame(liar, s.chain, kVni, true, f));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_tunnel_spoofed);

// A 1514-byte tenant frame (TCP, DF) where 1414 fit: classify it and build the answer.
std::vector<std::uint8_t> oversize_frame(bool v6) {
  constexpr std::size_t kIpLen = 1500;
  auto f = frame(remote_mac(1), kLocal, v6 ? kEtherTypeIpv6 : kEtherTypeIpv4, kIpLen);
  std::uint8_t* ip = f.data() + kEthHeaderLen;
  if (v6) {
    ip[0] = 0x60;
    ip[4] = static_cast<std::uint8_t>((kIpLen - 40) >> 8);
    ip[5] = static_cast<std::uint8_t>(kIpLen - 40);
    ip[6] = 6;
    ip[7] = 64;
    ip[8] = ip[24] = 0xfd;
    ip[23] = 0x0a;
    ip[39] = 0x0b;
    return f;
  }
  ip[0] = 0x45;
  ip[2] = static_cast<std::uint8_t>(kIpLen >> 8);
  ip[3] = static_cast<std::uint8_t>(kIpLen);
  ip[6] = 0x40;  // DF
  ip[8] = 64;
  ip[9] = 6;
  ip[12] = ip[16] = 10;
  ip[15] = 10;
  ip[19] = 11;
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < 20; i += 2) sum += static_cast<std::uint32_t>(ip[i] << 8 | ip[i + 1]);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  ip[10] = static_cast<std::uint8_t>(~sum >> 8);
  ip[11] = static_cast<std::uint8_t>(~sum);
  return f;
}

void BM_icmp_too_big(benchmark::State& state) {
  const bool v6 = state.range(0) == 6;
  const auto f = oversize_frame(v6);
  constexpr std::size_t kFrameMax = 1414;
  std::array<std::uint8_t, kIcmpTooBigFrameMax> out{};
  for (auto _ : state) {
    std::size_t n = 0;
    if (classify_oversize(f, kFrameMax) == TooBigAction::icmp) {
      n = build_icmp_too_big(f, icmp_too_big_mtu(f, kFrameMax), out);
    }
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
    if (n == 0) {
      state.SkipWithError("no answer");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_icmp_too_big)->ArgName("ip")->Arg(4)->Arg(6);

}  // namespace

BENCHMARK_MAIN();
