// Frame parsers and forwarding decisions on arbitrary bytes. The first input byte picks
// the VNI, the sender and whether the VNI is served; the rest is the frame.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "dataplane/forwarder.hpp"
#include "dataplane/frame.hpp"

namespace {

using meshd::ByteSpan;
using meshd::IpAddr;
using meshd::MacAddr;
using namespace meshd::dp;

constexpr MacAddr kLocal{0x02, 0, 0, 0, 1, 1};
constexpr MacAddr kRemote{0x02, 0, 0, 0, 2, 1};

void check(bool ok) {
  if (!ok) std::abort();
}

NodeId node(std::uint8_t b) {
  NodeId n{};
  n[0] = b;
  return n;
}

struct World {
  Forwarder fwd;
  meshd::crypto::CertChain chain;
  World() {
    auto f = std::make_shared<Fib>();
    for (std::uint32_t vni : {1u, 2u}) {
      f->local_macs.insert({vni, kLocal});
      f->remote_macs[{vni, kRemote}] = RemoteEndpoint{node(1)};
      f->ip_to_mac[{vni, IpAddr::v4(0x0a000002)}] = kRemote;
      f->ip_to_mac[{vni, IpAddr::v4(0x0a000001)}] = kLocal;
    }
    f->vni_members[1] = {node(1), node(2)};
    fwd.publish(f);
    chain.node.scope.vnis = {1, 3};
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World w;
  if (size == 0) return 0;
  const std::uint8_t sel = data[0];
  const ByteSpan frame(data + 1, size - 1);

  if (const auto eth = parse_eth(frame)) {
    // The payload view stays inside the input.
    check(eth->payload.data() >= frame.data());
    check(eth->payload.data() + eth->payload.size() == frame.data() + frame.size());
    if (const auto arp = parse_arp(eth->payload)) {
      std::array<std::uint8_t, 64> out{};
      const std::size_t n = build_arp_reply(out, *arp, kRemote);
      check(n == kEthHeaderLen + kArpLen);
      const auto back = parse_eth(ByteSpan(out.data(), n));
      check(back.has_value());
      const auto rep = parse_arp(back->payload);
      check(rep && rep->op == 2 && rep->target_ip == arp->sender_ip &&
            rep->sender_ip == arp->target_ip && rep->target_mac == arp->sender_mac);
    }
  }

  const std::uint32_t vni = 1u + (sel & 0x03);  // 1..4: served, lonely, unknown
  std::array<std::uint8_t, 64> reply{};
  const TapDecision d = w.fwd.on_tap_frame(vni, frame, reply);
  check(d.reply_len <= reply.size());
  check((d.kind == TapDecision::Kind::flood) == (d.flood != nullptr));
  check(d.kind != TapDecision::Kind::reply_local || d.reply_len == 42);

  const TunnelDecision t =
      w.fwd.on_tunnel_frame(node(sel >> 4 & 0x03), w.chain, vni, (sel & 0x04) != 0, frame);
  // Delivery needs an allowed, served VNI and the sender owning the source MAC.
  check(t.kind == TunnelDecision::Kind::drop || (vni == 1 && (sel & 0x04) != 0));
  return 0;
}
