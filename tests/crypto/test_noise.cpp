// Noise IK state machine and handshake packet framing.
#include <doctest/doctest.h>

#include "crypto/handshake_wire.hpp"
#include "crypto/noise.hpp"
#include "crypto/test_support.hpp"

using namespace meshd;
using namespace meshd::crypto;
using namespace meshd::crypto::test;

TEST_CASE("noise: IK handshake agrees on keys and carries payloads") {
  REQUIRE(init().ok());
  SeededRandomForTest rng(11);
  DhKey a = DhKey::generate(rng), b = DhKey::generate(rng);
  PublicKey root{};
  Bytes pro = noise_prologue(root);
  NoiseHandshake i = NoiseHandshake::initiator(a, b.public_key(), pro);
  NoiseHandshake r = NoiseHandshake::responder(b, pro);
  Bytes p1 = {1, 2, 3}, p2 = {4, 5};
  auto m1 = i.create_init(p1, rng);
  REQUIRE(m1.ok());
  CHECK(m1->size() == kNoiseInitFixedLen + p1.size() + kAeadTagLen);
  CHECK(i.state() == NoiseHandshake::State::init_sent);
  auto got1 = r.consume_init(*m1);
  REQUIRE(got1.ok());
  CHECK(*got1 == p1);
  CHECK(r.remote_static() == a.public_key());
  auto m2 = r.create_resp(p2, rng);
  REQUIRE(m2.ok());
  auto got2 = i.consume_resp(*m2);
  REQUIRE(got2.ok());
  CHECK(*got2 == p2);
  CHECK(i.handshake_hash() == r.handshake_hash());
  auto ki = i.split(), kr = r.split();
  REQUIRE(ki.ok());
  REQUIRE(kr.ok());
  CHECK(ki->send == kr->recv);
  CHECK(ki->recv == kr->send);
  CHECK(ki->send != ki->recv);
  // Out of order use fails cleanly.
  CHECK(i.create_init(p1, rng).error().code == "noise.state");
}

TEST_CASE("noise: deterministic with the same seed; different prologue fails") {
  REQUIRE(init().ok());
  auto run = [](std::uint64_t seed, bool other_root) {
    SeededRandomForTest rng(seed);
    DhKey a = DhKey::generate(rng), b = DhKey::generate(rng);
    PublicKey root{}, root2{};
    root2[0] = 1;
    NoiseHandshake i = NoiseHandshake::initiator(a, b.public_key(), noise_prologue(root));
    NoiseHandshake r = NoiseHandshake::responder(b, noise_prologue(other_root ? root2 : root));
    Bytes m1 = *i.create_init({}, rng);
    return std::make_pair(m1, r.consume_init(m1).ok());
  };
  CHECK(run(5, false).first == run(5, false).first);
  CHECK(run(5, false).second);
  CHECK_FALSE(run(5, true).second);
}

TEST_CASE("noise: every bit flip of init and response messages is rejected") {
  REQUIRE(init().ok());
  SeededRandomForTest rng(12);
  DhKey a = DhKey::generate(rng), b = DhKey::generate(rng);
  Bytes pro = noise_prologue(PublicKey{});
  NoiseHandshake i0 = NoiseHandshake::initiator(a, b.public_key(), pro);
  Bytes payload(40, 7);
  Bytes m1 = *i0.create_init(payload, rng);
  for (std::size_t bit = 0; bit < m1.size() * 8; ++bit) {
    Bytes t = m1;
    t[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    NoiseHandshake r = NoiseHandshake::responder(b, pro);
    REQUIRE_FALSE(r.consume_init(t).ok());
  }
  NoiseHandshake r0 = NoiseHandshake::responder(b, pro);
  REQUIRE(r0.consume_init(m1).ok());
  Bytes m2 = *r0.create_resp(payload, rng);
  for (std::size_t bit = 0; bit < m2.size() * 8; ++bit) {
    Bytes t = m2;
    t[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    REQUIRE_FALSE(i0.consume_resp(t).ok());
  }
  // A forged response did not spoil the handshake.
  CHECK(i0.consume_resp(m2).ok());
}

TEST_CASE("handshake_wire: framing, padding, mac1") {
  REQUIRE(init().ok());
  SeededRandomForTest rng(13);
  DhKey a = DhKey::generate(rng), b = DhKey::generate(rng);
  Bytes pro = noise_prologue(PublicKey{});
  NoiseHandshake i = NoiseHandshake::initiator(a, b.public_key(), pro);
  Bytes m1 = *i.create_init(Bytes(100, 1), rng);
  Mac1Key kb = mac1_key_for(b.public_key());
  auto pkt = build_init(77, m1, kHandshakeInitPadBase, kb);
  REQUIRE(pkt.ok());
  CHECK(pkt->size() == kHandshakeInitPadBase);
  auto parsed = parse_init(*pkt, kb);
  REQUIRE(parsed.ok());
  CHECK(parsed->sender_index == 77);
  CHECK(parsed->noise_msg == m1);
  CHECK(parse_init(*pkt, mac1_key_for(a.public_key())).error().code == "handshake.mac");
  for (std::size_t bit = 0; bit < pkt->size() * 8; ++bit) {
    Bytes t = *pkt;
    t[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    REQUIRE_FALSE(parse_init(t, kb).ok());
  }
  CHECK_FALSE(parse_init(Bytes(10, 1), kb).ok());
  CHECK_FALSE(parse_resp(*pkt, kb).ok());
}
