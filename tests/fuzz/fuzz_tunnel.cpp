// libFuzzer: TunnelManager::handle_datagram and open_in_place on arbitrary bytes, against
// a manager that has a live session (so transport parsing reaches the session code),
// and the data-plane worker path (DataSessions snapshot, decrypt_in_place on a worker
// slot, accept_counters). The first input byte picks the packet type so all parsers
// are reached; its top bit also selects the AES-256-GCM manager pair.
#include <sodium.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "crypto/session.hpp"
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
  explicit World(AeadAlg alg) {
    (void)init();
    SigningKey root = SigningKey::generate(rng);
    LocalIdentity ia = identity(root, rng, "a"), ib = identity(root, rng, "b");
    TunnelConfig cfg;
    cfg.ciphers = {alg};
    a = std::make_unique<TunnelManager>(ia, cfg, rng);
    b = std::make_unique<TunnelManager>(ib, cfg, rng);
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
  static World chacha(AeadAlg::chacha20_poly1305), aes(AeadAlg::aes256_gcm);
  if (size == 0) return 0;
  World& w = (data[0] & 0x80) != 0 ? aes : chacha;
  std::uint64_t now_ms = kNow_s * 1000 + (data[0] & 0x3f);
  Bytes d(data + 1, data + size);
  if ((data[0] & 0x40) != 0) {
    // Authentic: A seals the rest of the input as plaintext on a worker slot, so that
    // what follows decryption (keepalives, inner headers, events) is reached too.
    auto sa = w.a->data_sessions();
    auto it = sa->send.begin();
    if (it == sa->send.end() || d.size() > kPlaintextMax) return 0;
    Bytes pkt(wire::kTransportHeaderLen + d.size() + wire::kTagLen);
    if (!d.empty()) std::memcpy(pkt.data() + wire::kTransportHeaderLen, d.data(), d.size());
    std::size_t n = it->second.session->seal_in_place(2, pkt, d.size());
    if (n == 0) return 0;
    d = std::move(pkt);
  } else if (!d.empty()) {
    d[0] = static_cast<std::uint8_t>(data[0] % 5);
  }
  w.b->handle_datagram(now_ms, w.la, d);
  // The worker path on a copy (decryption is in place).
  auto ds = w.b->data_sessions();
  Bytes wd = d;
  if (auto hdr = parse_transport_header(wd)) {
    auto it = ds->recv.find(hdr->receiver_index);
    if (it != ds->recv.end() && it->second.session->maybe_fresh(hdr->counter)) {
      std::span<std::uint8_t> plain;
      std::uint8_t ok = it->second.session->decrypt_in_place(3, wd, *hdr, plain) ? 1 : 0;
      it->second.session->accept_counters(std::span<const std::uint64_t>(&hdr->counter, 1),
                                          std::span<std::uint8_t>(&ok, 1));
      if (ok) it->second.session->note_rx(now_ms, wd.size(), true);
    }
  }
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
