// Two TunnelManagers A and B on a FakeNet (test_support.hpp), for the tunnel tests.
#pragma once

#include <doctest/doctest.h>

#include <optional>
#include <string_view>

#include "crypto/test_support.hpp"

namespace meshd::crypto::test {

// Two TunnelManagers A and B on a FakeNet.
struct Pair {
  SeededRandomForTest rng;
  Mesh mesh;
  LocalIdentity ida, idb;
  FakeNet net;
  std::size_t a = 0, b = 0;
  explicit Pair(std::uint64_t seed, TunnelConfig cfg = {},
                std::uint64_t a_not_after_s = kNow_s + 365 * 86400,
                std::optional<TunnelConfig> cfg_b = std::nullopt)
      : rng(seed),
        mesh(rng),
        ida(make_identity(mesh, rng, "a", a_not_after_s)),
        idb(make_identity(mesh, rng, "b")) {
    a = net.add(ida, cfg, rng, 1000);
    b = net.add(idb, cfg_b ? *cfg_b : cfg, rng, 2000);
  }
  TunnelManager& A() { return *net.nodes[a].tm; }
  TunnelManager& B() { return *net.nodes[b].tm; }
  NodeId id_a() const { return ida.node_key.public_key(); }
  NodeId id_b() const { return idb.node_key.public_key(); }
  void a_knows_b() { A().set_peer(id_b(), idb.dh_key.public_key(), {net.nodes[b].loc}); }
  void b_knows_a() { B().set_peer(id_a(), ida.dh_key.public_key(), {net.nodes[a].loc}); }
  // A sends one packet to B and everything is delivered.
  void connect(std::string_view payload = "hello") {
    a_knows_b();
    REQUIRE(A().send(net.now_ms, id_b(), data_packet(10, payload)));
    net.run();
  }
};

}  // namespace meshd::crypto::test
