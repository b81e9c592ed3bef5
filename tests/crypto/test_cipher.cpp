// Transport AEAD choice: AES-256-GCM next to ChaCha20-Poly1305, the preference list and
// its parser, and the negotiation inside the handshake.
#include <doctest/doctest.h>
#include <sodium.h>

#include <algorithm>

#include "crypto/aead.hpp"
#include "crypto/cipher_suite.hpp"
#include "crypto/handshake_wire.hpp"
#include "crypto/noise.hpp"
#include "crypto/test_support.hpp"
#include "crypto/tunnel_pair.hpp"

using namespace meshd;
using namespace meshd::crypto;
using namespace meshd::crypto::test;
using Kind = TunnelEvent::Kind;

namespace {

constexpr AeadAlg kChacha = AeadAlg::chacha20_poly1305;
constexpr AeadAlg kAes = AeadAlg::aes256_gcm;

TunnelConfig with_ciphers(std::vector<AeadAlg> c) {
  TunnelConfig cfg;
  cfg.ciphers = std::move(c);
  return cfg;
}

const TunnelEvent* find_event(const FakeNet& net, std::size_t node, Kind k) {
  for (const auto& e : net.nodes[node].events) {
    if (e.kind == k) return &e;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("aes-256-gcm: GCM spec test case 16, OpenSSL and libsodium") {
  REQUIRE(init().ok());
  AeadKey key = hex_arr<32>("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  AeadNonce nonce = hex_arr<12>("cafebabefacedbaddecaf888");
  Bytes pt =
      hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e24"
          "49a6b525b16aedf5aa0de657"
          "ba637b39");
  Bytes ad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  std::string want =
      "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b105682"
      "8838c5f61e6393ba7a0a"
      "bcc9f662"
      "76fc6ece0f4e1768cddf8853bb2d551b";
  Bytes o = pt;
  o.resize(pt.size() + kAeadTagLen);
  AeadCipher enc(key, AeadCipher::Dir::seal, kAes);
  REQUIRE(enc.valid());
  CHECK(enc.alg() == kAes);
  REQUIRE(enc.seal_in_place(nonce, ad, o.data(), pt.size()));
  CHECK(to_hex(o) == want);
  AeadCipher dec(key, AeadCipher::Dir::open, kAes);
  Bytes back = o;
  REQUIRE(dec.open_in_place(nonce, ad, back.data(), pt.size()));
  CHECK(std::equal(pt.begin(), pt.end(), back.begin()));
  CHECK_FALSE(enc.open_in_place(nonce, ad, o.data(), pt.size()));  // wrong direction
  CHECK(aes_gcm_hw_available() == (crypto_aead_aes256gcm_is_available() != 0));
  if (!aes_gcm_hw_available()) {
    Bytes s(pt.size() + kAeadTagLen);
    CHECK_FALSE(aes256gcm_seal_sodium(key, nonce, ad, pt, s.data()));
    return;
  }
  Bytes s(pt.size() + kAeadTagLen);
  REQUIRE(aes256gcm_seal_sodium(key, nonce, ad, pt, s.data()));
  CHECK(to_hex(s) == want);
  Bytes p2(pt.size());
  CHECK(aes256gcm_open_sodium(key, nonce, ad, s, p2.data()));
  CHECK(p2 == pt);
}

TEST_CASE("aes-256-gcm: libsodium and OpenSSL agree byte for byte on random inputs") {
  REQUIRE(init().ok());
  if (!aes_gcm_hw_available()) {
    MESSAGE("no AES-NI: libsodium has no AES-256-GCM here, comparison skipped");
    return;
  }
  SeededRandomForTest rng(8);
  AeadKey key{};
  rng.fill(key);
  AeadCipher enc(key, AeadCipher::Dir::seal, kAes);
  AeadCipher dec(key, AeadCipher::Dir::open, kAes);
  for (int i = 0; i < 300; ++i) {
    std::size_t len = rng.uniform(i < 100 ? 80 : 2000);
    std::size_t ad_len = rng.uniform(40);
    Bytes pt(len), ad(ad_len);
    rng.fill(pt);
    rng.fill(ad);
    AeadNonce nonce = counter_nonce(rng.next_u64());
    Bytes a(len + kAeadTagLen);
    REQUIRE(aes256gcm_seal_sodium(key, nonce, ad, pt, a.data()));
    Bytes b = pt;
    b.resize(len + kAeadTagLen);
    REQUIRE(enc.seal_in_place(nonce, ad, b.data(), len));
    REQUIRE(a == b);
    REQUIRE(dec.open_in_place(nonce, ad, b.data(), len));
    REQUIRE(std::equal(pt.begin(), pt.end(), b.begin()));
    a[len] ^= 0x40;
    Bytes out(len);
    CHECK_FALSE(aes256gcm_open_sodium(key, nonce, ad, a, out.data()));
    CHECK_FALSE(dec.open_in_place(nonce, ad, a.data(), len));
  }
}

TEST_CASE("cipher list: parse, default preference, offer and pick") {
  REQUIRE(init().ok());
  auto def = default_cipher_preference();
  REQUIRE_FALSE(def.empty());
  CHECK(std::count(def.begin(), def.end(), kChacha) == 1);
  CHECK(std::count(def.begin(), def.end(), kAes) == (aes_gcm_hw_available() ? 1 : 0));
  CHECK(default_cipher_preference() == def);  // measured once
  MESSAGE("default cipher preference here: " << aead_alg_name(def[0]));

  CHECK(*parse_cipher_list("auto") == def);
  CHECK(*parse_cipher_list("aes-256-gcm") == std::vector<AeadAlg>{kAes});
  CHECK(*parse_cipher_list("chacha20-poly1305") == std::vector<AeadAlg>{kChacha});
  CHECK(*parse_cipher_list("aes-256-gcm,chacha20-poly1305") == std::vector<AeadAlg>{kAes, kChacha});
  CHECK(*parse_cipher_list(" ChaCha20-Poly1305 , AES-256-GCM ") ==
        std::vector<AeadAlg>{kChacha, kAes});
  for (const char* bad : {"", ",", "aes", "aes-256-gcm,", ",aes-256-gcm", "aes-256-gcm,aes-256-gcm",
                          "auto,aes-256-gcm", "chacha20-poly1305;aes-256-gcm", "aes-128-gcm"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_cipher_list(bad).has_value());
  }
  CHECK(aead_alg_name(kAes) == "aes-256-gcm");
  CHECK(aead_alg_name(kChacha) == "chacha20-poly1305");

  std::vector<AeadAlg> both = {kAes, kChacha};
  CHECK(cipher_offer_mask(both) == 0x3);
  CHECK(cipher_offer_mask(std::vector<AeadAlg>{kChacha}) == 0x1);
  CHECK(*pick_cipher(both, 0x3) == kAes);
  CHECK(*pick_cipher(both, 0x1) == kChacha);
  CHECK(*pick_cipher(std::vector<AeadAlg>{kChacha, kAes}, 0x3) == kChacha);
  CHECK_FALSE(pick_cipher(std::vector<AeadAlg>{kAes}, 0x1).has_value());
  CHECK_FALSE(pick_cipher(both, 0xFFFC).has_value());  // only unknown bits
  CHECK(*pick_cipher(both, 0xFFFD) == kChacha);        // unknown bits ignored
  CHECK(aead_alg_from_wire(1) == kChacha);
  CHECK(aead_alg_from_wire(2) == kAes);
  CHECK_FALSE(aead_alg_from_wire(0).has_value());
  CHECK_FALSE(aead_alg_from_wire(3).has_value());
}

TEST_CASE("handshake payload: parameters, forward compatibility, bad input") {
  Bytes chain = {1, 2, 3, 4, 5};
  Bytes ip = encode_init_payload(0x0003, chain);
  CHECK(ip.size() == kInitPayloadOverhead + chain.size());
  auto di = decode_init_payload(ip);
  REQUIRE(di.ok());
  CHECK(di->cipher_offer == 0x0003);
  CHECK(Bytes(di->chain.begin(), di->chain.end()) == chain);
  Bytes rp = encode_resp_payload(2, chain);
  CHECK(rp.size() == kRespPayloadOverhead + chain.size());
  auto dr = decode_resp_payload(rp);
  REQUIRE(dr.ok());
  CHECK(dr->cipher == 2);
  CHECK(Bytes(dr->chain.begin(), dr->chain.end()) == chain);
  // A newer node's longer parameters: the known fields are read, the rest skipped.
  Bytes future = {5, 0xFD, 0xFF, 9, 9, 9, 7, 7};
  auto df = decode_init_payload(future);
  REQUIRE(df.ok());
  CHECK(df->cipher_offer == 0xFFFD);
  CHECK(Bytes(df->chain.begin(), df->chain.end()) == Bytes{7, 7});
  Bytes future_resp = {3, 1, 8, 8, 6};
  auto dfr = decode_resp_payload(future_resp);
  REQUIRE(dfr.ok());
  CHECK(dfr->cipher == 1);
  CHECK(Bytes(dfr->chain.begin(), dfr->chain.end()) == Bytes{6});
  // Too short or truncated.
  for (const Bytes& bad : {Bytes{}, Bytes{1, 3}, Bytes{0}, Bytes{2, 3}, Bytes{4, 1, 0, 0}}) {
    auto r = decode_init_payload(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == "handshake.format");
  }
  for (const Bytes& bad : {Bytes{}, Bytes{0, 1}, Bytes{2, 1}}) {
    auto r = decode_resp_payload(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == "handshake.format");
  }
}

TEST_CASE("tunnel: each AEAD end to end (handshake and data both ways)") {
  REQUIRE(init().ok());
  for (AeadAlg alg : {kChacha, kAes}) {
    CAPTURE(aead_alg_name(alg));
    Pair p(300, with_ciphers({alg}));
    p.connect();
    REQUIRE(p.net.nodes[p.b].received.size() == 1);
    for (int i = 0; i < 20; ++i) {
      REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, std::string(1000, 'a'))));
      REQUIRE(p.B().send(p.net.now_ms, p.id_a(), data_packet(10, std::string(1000, 'b'))));
      p.net.advance(1000, 500);
    }
    CHECK(p.net.nodes[p.b].received.size() == 21);
    CHECK(p.net.nodes[p.a].received.size() == 20);
    CHECK(p.net.nodes[p.a].received.back() == data_packet(10, std::string(1000, 'b')));
    const TunnelEvent* up_a = find_event(p.net, p.a, Kind::peer_up);
    const TunnelEvent* up_b = find_event(p.net, p.b, Kind::peer_up);
    REQUIRE(up_a != nullptr);
    REQUIRE(up_b != nullptr);
    CHECK(up_a->cipher == alg);
    CHECK(up_b->cipher == alg);
    CHECK(p.A().peer_stats()[0].cipher == alg);
    CHECK(p.B().peer_stats()[0].cipher == alg);
    auto ds = p.A().data_sessions();
    CHECK(ds->send.at(p.id_b()).session->alg() == alg);
    CHECK(p.B().counters().drop_decrypt == 0);
  }
}

TEST_CASE("tunnel: the responder picks by its own preference among the offer") {
  REQUIRE(init().ok());
  struct Case {
    std::vector<AeadAlg> a, b;
    AeadAlg want;
  };
  for (const Case& c :
       {Case{{kChacha}, {kAes, kChacha}, kChacha}, Case{{kAes, kChacha}, {kChacha, kAes}, kChacha},
        Case{{kChacha, kAes}, {kAes, kChacha}, kAes}, Case{{kAes}, {kChacha, kAes}, kAes}}) {
    Pair p(301, with_ciphers(c.a), kNow_s + 365 * 86400, with_ciphers(c.b));
    p.connect();
    REQUIRE(p.net.nodes[p.b].received.size() == 1);
    CHECK(p.A().peer_stats()[0].cipher == c.want);
    CHECK(p.B().peer_stats()[0].cipher == c.want);
    // B answers on the same session.
    REQUIRE(p.B().send(p.net.now_ms, p.id_a(), data_packet(10, "back")));
    p.net.run();
    CHECK(p.net.nodes[p.a].received.size() == 1);
  }
}

TEST_CASE("tunnel: no AEAD in common: handshake refused with handshake.no_cipher") {
  REQUIRE(init().ok());
  Pair p(302, with_ciphers({kChacha}), kNow_s + 365 * 86400, with_ciphers({kAes}));
  p.a_knows_b();
  REQUIRE(p.A().send(p.net.now_ms, p.id_b(), data_packet(10, "x")));
  p.net.collect();
  REQUIRE(p.net.wire.size() == 1);
  p.net.run();
  CHECK(p.B().counters().drop_no_cipher == 1);
  const TunnelEvent* rej = find_event(p.net, p.b, Kind::rejected);
  REQUIRE(rej != nullptr);
  CHECK(rej->reason == "handshake.no_cipher");
  CHECK(rej->peer == p.id_a());
  CHECK(p.B().counters().tx_datagrams == 0);  // no response at all
  CHECK(p.B().peer_stats().empty());          // and no state kept
  CHECK(p.net.count(p.a, Kind::peer_up) == 0);
  p.net.advance(20'000, 1000);  // A retries; each is refused the same way
  CHECK(p.B().counters().drop_no_cipher >= 4);
  CHECK(p.net.count(p.b, Kind::peer_up) == 0);
}

TEST_CASE("tunnel: a pre-negotiation init (chain only) is refused as handshake.format") {
  REQUIRE(init().ok());
  Pair p(303);
  NoiseHandshake hs = NoiseHandshake::initiator(p.ida.dh_key, p.idb.dh_key.public_key(),
                                                noise_prologue(p.ida.root_pub));
  auto msg = hs.create_init(p.ida.chain.encode(), p.rng);
  REQUIRE(msg.ok());
  auto pkt = build_init(77, *msg, kHandshakeInitPadBase, mac1_key_for(p.idb.dh_key.public_key()));
  REQUIRE(pkt.ok());
  p.B().handle_datagram(p.net.now_ms, p.net.nodes[p.a].loc, *pkt);
  p.net.collect();
  CHECK(p.net.wire.empty());
  CHECK(p.B().counters().drop_malformed == 1);
  const TunnelEvent* rej = find_event(p.net, p.b, Kind::rejected);
  REQUIRE(rej != nullptr);
  CHECK(rej->reason == "handshake.format");
}

TEST_CASE("tunnel: an init from a newer node (unknown offer bits, longer parameters) is answered") {
  REQUIRE(init().ok());
  Pair p(304, with_ciphers({kAes, kChacha}));
  NoiseHandshake hs = NoiseHandshake::initiator(p.ida.dh_key, p.idb.dh_key.public_key(),
                                                noise_prologue(p.ida.root_pub));
  Bytes payload = {4, 0xFD, 0xFF, 0xAA,
                   0xBB};  // offer: chacha + unknown bits; 2 unknown parameter bytes
  Bytes chain = p.ida.chain.encode();
  payload.insert(payload.end(), chain.begin(), chain.end());
  auto msg = hs.create_init(payload, p.rng);
  REQUIRE(msg.ok());
  auto pkt = build_init(77, *msg, kHandshakeInitPadBase, mac1_key_for(p.idb.dh_key.public_key()));
  REQUIRE(pkt.ok());
  p.B().handle_datagram(p.net.now_ms, p.net.nodes[p.a].loc, *pkt);
  REQUIRE(p.B().counters().tx_datagrams == 1);
  auto t = p.B().poll_transmit();
  REQUIRE(t.has_value());
  CHECK(t->datagram.size() <= pkt->size());  // no amplification
  auto resp = parse_resp(t->datagram, mac1_key_for(p.ida.dh_key.public_key()));
  REQUIRE(resp.ok());
  CHECK(resp->receiver_index == 77);
  auto got = hs.consume_resp(resp->noise_msg);
  REQUIRE(got.ok());
  auto rp = decode_resp_payload(*got);
  REQUIRE(rp.ok());
  CHECK(rp->cipher == static_cast<std::uint8_t>(kChacha));
  CHECK(CertChain::decode(rp->chain).ok());
}

TEST_CASE("AeadCipher: the provider path and the EVP path agree, and a bad tag leaves no state") {
  REQUIRE(init().ok());
  for (AeadAlg alg : kAeadAlgs) {
    CAPTURE(aead_alg_name(alg));
    SeededRandomForTest rng(static_cast<std::uint64_t>(alg) + 40);
    AeadKey key{};
    rng.fill(key);
    AeadCipher seal(key, AeadCipher::Dir::seal, alg);
    AeadCipher open(key, AeadCipher::Dir::open, alg);
    AeadCipher seal_evp = AeadCipher::evp_only(key, AeadCipher::Dir::seal, alg);
    AeadCipher open_evp = AeadCipher::evp_only(key, AeadCipher::Dir::open, alg);
    // The default OpenSSL provider is what Debian ships: the fast path must be in use,
    // or the tests below would only compare EVP with itself.
    REQUIRE(seal.direct());
    REQUIRE(open.direct());
    REQUIRE_FALSE(seal_evp.direct());
    REQUIRE(seal_evp.valid());
    CHECK_FALSE(seal.open_in_place(counter_nonce(1), {}, nullptr, 0));  // wrong direction
    CHECK_FALSE(open.seal_in_place(counter_nonce(1), {}, nullptr, 0));
    for (int i = 0; i < 200; ++i) {
      const std::size_t len = i == 0 ? 0 : rng.uniform(i < 100 ? 64 : 1600);
      const std::size_t ad_len = rng.uniform(2) == 0 ? 0 : rng.uniform(32);
      Bytes pt(len), ad(ad_len);
      rng.fill(pt);
      rng.fill(ad);
      const AeadNonce nonce = counter_nonce(rng.next_u64());
      Bytes a = pt, b = pt;
      a.resize(len + kAeadTagLen);
      b.resize(len + kAeadTagLen);
      REQUIRE(seal.seal_in_place(nonce, ad, a.data(), len));
      REQUIRE(seal_evp.seal_in_place(nonce, ad, b.data(), len));
      REQUIRE(a == b);
      // A tampered copy is refused by both; the next good packet still opens.
      Bytes bad = a;
      bad[rng.uniform(bad.size())] ^= 0x01;
      CHECK_FALSE(open.open_in_place(nonce, ad, bad.data(), len));
      Bytes bad2 = a;
      bad2[len] ^= 0x80;
      CHECK_FALSE(open_evp.open_in_place(nonce, ad, bad2.data(), len));
      REQUIRE(open.open_in_place(nonce, ad, a.data(), len));
      REQUIRE(open_evp.open_in_place(nonce, ad, b.data(), len));
      REQUIRE(std::equal(pt.begin(), pt.end(), a.begin()));
      REQUIRE(std::equal(pt.begin(), pt.end(), b.begin()));
    }
    // Moving keeps the context usable; the moved-from cipher is empty.
    AeadCipher moved = std::move(seal);
    CHECK_FALSE(seal.valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state
    Bytes m(16 + kAeadTagLen);
    CHECK(moved.seal_in_place(counter_nonce(7), {}, m.data(), 16));
  }
}
