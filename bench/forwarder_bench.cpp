// Forwarding decisions per second on a FIB of realistic size: unicast to a remote
// endpoint, ARP proxy, flood, and tunnel-side anti-spoofing checks.
#include <benchmark/benchmark.h>

#include <array>
#include <memory>
#include <vector>

#include "dataplane/forwarder.hpp"
#include "dataplane/frame.hpp"

namespace {

using namespace meshd;
using namespace meshd::dp;

constexpr std::uint32_t kVni = 100;
constexpr std::size_t kRemoteEndpoints = 10000;
constexpr MacAddr kLocal{0x02, 0, 0, 0, 0, 1};

MacAddr remote_mac(std::size_t i) {
  return MacAddr{0x02, 0x01, 0, static_cast<std::uint8_t>(i >> 16),
                 static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)};
}
IpAddr remote_ip(std::size_t i) { return IpAddr::v4(0x0a000000u + 2 + static_cast<std::uint32_t>(i)); }

struct Setup {
  Forwarder fwd;
  crypto::CertChain chain;
  NodeId owner{};
  Setup() {
    auto f = std::make_shared<Fib>();
    f->local_macs.insert({kVni, kLocal});
    for (std::size_t i = 0; i < kRemoteEndpoints; ++i) {
      NodeId n{};
      n[0] = static_cast<std::uint8_t>(i % 16);
      f->remote_macs[{kVni, remote_mac(i)}] = RemoteEndpoint{n};
      f->ip_to_mac[{kVni, remote_ip(i)}] = remote_mac(i);
    }
    for (std::uint8_t i = 0; i < 16; ++i) {
      NodeId n{};
      n[0] = i;
      f->vni_members[kVni].push_back(n);
    }
    fwd.publish(f);
    chain.node.scope.vnis = {kVni};
    owner[0] = static_cast<std::uint8_t>(1234 % 16);
  }
};

std::vector<std::uint8_t> frame(const MacAddr& dst, const MacAddr& src, std::uint16_t type,
                                std::size_t payload_len) {
  std::vector<std::uint8_t> f(kEthHeaderLen + payload_len, 0);
  std::copy(dst.begin(), dst.end(), f.begin());
  std::copy(src.begin(), src.end(), f.begin() + 6);
  f[12] = static_cast<std::uint8_t>(type >> 8);
  f[13] = static_cast<std::uint8_t>(type);
  return f;
}

std::vector<std::uint8_t> arp_request(const IpAddr& target) {
  auto f = frame(MacAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, kLocal, kEtherTypeArp, kArpLen);
  std::uint8_t* a = f.data() + kEthHeaderLen;
  const std::array<std::uint8_t, 8> hdr{0, 1, 8, 0, 6, 4, 0, 1};
  std::copy(hdr.begin(), hdr.end(), a);
  std::copy(kLocal.begin(), kLocal.end(), a + 8);
  a[14] = 10;
  a[17] = 1;
  std::copy_n(target.bytes.begin(), 4, a + 24);
  return f;
}

void BM_tap_unicast(benchmark::State& state) {
  Setup s;
  const auto f = frame(remote_mac(1234), kLocal, kEtherTypeIpv4, 1386);
  std::array<std::uint8_t, 64> reply{};
  for (auto _ : state) benchmark::DoNotOptimize(s.fwd.on_tap_frame(kVni, f, reply));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_tap_unicast);

void BM_tap_arp_proxy(benchmark::State& state) {
  Setup s;
  const auto f = arp_request(remote_ip(1234));
  std::array<std::uint8_t, 64> reply{};
  for (auto _ : state) benchmark::DoNotOptimize(s.fwd.on_tap_frame(kVni, f, reply));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_tap_arp_proxy);

void BM_tap_flood(benchmark::State& state) {
  Setup s;
  const auto f = frame(MacAddr{0x02, 0x09, 0, 0, 0, 9}, kLocal, kEtherTypeIpv4, 100);
  std::array<std::uint8_t, 64> reply{};
  for (auto _ : state) benchmark::DoNotOptimize(s.fwd.on_tap_frame(kVni, f, reply));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_tap_flood);

void BM_tunnel_deliver(benchmark::State& state) {
  Setup s;
  const auto f = frame(kLocal, remote_mac(1234), kEtherTypeIpv4, 1386);
  for (auto _ : state) {
    benchmark::DoNotOptimize(s.fwd.on_tunnel_frame(s.owner, s.chain, kVni, true, f));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_tunnel_deliver);

}  // namespace

BENCHMARK_MAIN();
