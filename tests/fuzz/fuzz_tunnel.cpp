// libFuzzer: TunnelManager::handle_datagram and open_in_place on arbitrary bytes, against
// a manager that has a live session (so transport parsing reaches the session code).
// The first input byte picks the packet type so all parsers are reached.
#include <sodium.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "crypto/test_support.hpp"
#include "crypto/tunnel.hpp"

using namespace meshd;
using namespace meshd::crypto;

namespace {

constexpr std::uint64_t kNow_s = 1'800'000'000;

LocalIdentity identity(const SigningKey& root, Random& rng, const char* name) {
  SigningKey enroll = SigningKey::generate(rng);
  TokenId tid{};
  Scope scope{true, {}};
  EnrollmentCert ec = issue_enrollment(root, enroll.public_key(), tid, scope, kNow_s - 10, kNow_s + 10, 1);
  SigningKey node = SigningKey::generate(rng);
  DhKey dh = DhKey::generate(rng);
  NodeCert nc = issue_node_cert(enroll, ec, node.public_key(), dh.public_key(), name, kNow_s, kNow_s + 1000);
  return LocalIdentity{node, dh, CertChain{ec, nc}, root.public_key()};
}

struct World {
  test::SeededRandomForTest rng{0};  // fixed: every run sees the same keys
  std::unique_ptr<TunnelManager> a, b;
  Locator la = *Locator::parse("10.0.0.1:1"), lb = *Locator::parse("10.0.0.2:2");
  World() {
    (void)init();
    SigningKey root = SigningKey::generate(rng);
    LocalIdentity ia = identity(root, rng, "a"), ib = identity(root, rng, "b");
    a = std::make_unique<TunnelManager>(ia, TunnelConfig{}, rng);
    b = std::make_unique<TunnelManager>(ib, TunnelConfig{}, rng);
    a->set_peer(ib.node_key.public_key(), ib.dh_key.public_key(), {lb});
    std::uint8_t hello[4] = {10, 0, 0, 0};
    a->send(kNow_s * 1000, ib.node_key.public_key(), ByteSpan(hello, 4));
    for (int i = 0; i < 8; ++i) {
      while (auto t = a->poll_transmit()) b->handle_datagram(kNow_s * 1000, la, t->datagram);
      while (auto t = b->poll_transmit()) a->handle_datagram(kNow_s * 1000, lb, t->datagram);
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World w;
  if (size == 0) return 0;
  Bytes d(data + 1, data + size);
  if (!d.empty()) d[0] = static_cast<std::uint8_t>(data[0] % 5);
  std::uint64_t now_ms = kNow_s * 1000 + data[0];
  w.b->handle_datagram(now_ms, w.la, d);
  NodeId who{};
  std::span<std::uint8_t> out;
  w.b->open_in_place(now_ms, w.la, d, who, out);
  w.b->handle_timeout(now_ms);
  while (w.b->poll_transmit()) {
  }
  while (w.b->poll_event()) {
  }
  return 0;
}
