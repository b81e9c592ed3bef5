// Addresses, key primitives (known-answer vectors cross-checked with openssl and
// python-cryptography), AEAD implementations, replay window.
#include <doctest/doctest.h>
#include <sodium.h>

#include "crypto/address.hpp"
#include "crypto/aead.hpp"
#include "crypto/keys.hpp"
#include "crypto/replay.hpp"
#include "crypto/test_support.hpp"

using namespace meshd;
using namespace meshd::crypto;
using namespace meshd::crypto::test;

TEST_CASE("address: parse and print") {
  auto a = IpAddr::parse("10.1.2.3");
  REQUIRE(a.ok());
  CHECK(a->is_v4());
  CHECK(a->str() == "10.1.2.3");
  CHECK(*a == IpAddr::v4(0x0A010203));
  auto b = IpAddr::parse("fd00::1");
  REQUIRE(b.ok());
  CHECK(b->is_v6());
  CHECK(b->str() == "fd00::1");
  for (const char* bad : {"", "1.2.3", "1.2.3.256", "fd00:::1", "abc", "1.2.3.4 ", "::g"}) {
    auto r = IpAddr::parse(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == "addr.invalid");
  }
  auto p = IpPrefix::parse("10.0.0.1/24");
  REQUIRE(p.ok());
  CHECK(p->len == 24);
  CHECK(p->str() == "10.0.0.1/24");
  CHECK(IpPrefix::parse("fd00::/64")->len == 64);
  CHECK(IpPrefix::parse("10.0.0.1")->len == 32);
  CHECK(IpPrefix::parse("fd00::1")->len == 128);
  CHECK_FALSE(IpPrefix::parse("10.0.0.1/33").ok());
  CHECK_FALSE(IpPrefix::parse("10.0.0.1/").ok());
  CHECK_FALSE(IpPrefix::parse("10.0.0.1/-1").ok());
  CHECK_FALSE(IpPrefix::parse("fd00::/129").ok());

  auto l = Locator::parse("1.2.3.4:51900");
  REQUIRE(l.ok());
  CHECK(l->port == 51900);
  CHECK(l->str() == "1.2.3.4:51900");
  auto l6 = Locator::parse("[fd00::1]:51900");
  REQUIRE(l6.ok());
  CHECK(l6->str() == "[fd00::1]:51900");
  for (const char* bad : {"1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "fd00::1:5", "[fd00::1]5", "[1.2.3.4]:5",
                          "[fd00::1]:x", ":5"}) {
    auto r = Locator::parse(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == "locator.invalid");
  }
  auto m = parse_mac("02:00:00:aB:cd:01");
  REQUIRE(m.ok());
  CHECK(mac_str(*m) == "02:00:00:ab:cd:01");
  for (const char* bad : {"02:00:00:ab:cd", "02-00-00-ab-cd-01", "02:00:00:ab:cd:0g", "02:00:00:ab:cd:011"}) {
    auto r = parse_mac(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == "mac.invalid");
  }
}

TEST_CASE("keys: RFC 7748 6.1 X25519 vector") {
  REQUIRE(init().ok());
  DhKey alice = DhKey::from_secret(hex_arr<32>("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
  DhKey bob = DhKey::from_secret(hex_arr<32>("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
  CHECK(to_hex(alice.public_key()) == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  CHECK(to_hex(bob.public_key()) == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  std::array<std::uint8_t, 32> k1{}, k2{};
  REQUIRE(crypto_scalarmult(k1.data(), alice.secret().data(), bob.public_key().data()) == 0);
  REQUIRE(crypto_scalarmult(k2.data(), bob.secret().data(), alice.public_key().data()) == 0);
  CHECK(to_hex(k1) == "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  CHECK(k1 == k2);
}

TEST_CASE("keys: RFC 8032 7.1 TEST 1 Ed25519 vector") {
  REQUIRE(init().ok());
  SigningKey k = SigningKey::from_seed(hex_arr<32>("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
  CHECK(to_hex(k.public_key()) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  Signature sig = k.sign({});
  CHECK(to_hex(sig) ==
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f"
        "0595bbe24655141438e7a100b");
  CHECK(verify(k.public_key(), {}, sig));
  sig[0] ^= 1;
  CHECK_FALSE(verify(k.public_key(), {}, sig));
  SigningKey copy = k;
  CHECK(copy.public_key() == k.public_key());
  CHECK(copy.seed() == k.seed());
}

TEST_CASE("keys: RFC 7693 BLAKE2b-512(abc), mesh id and node id forms") {
  REQUIRE(init().ok());
  std::array<std::uint8_t, 64> h{};
  const std::uint8_t abc[] = {'a', 'b', 'c'};
  crypto_generichash(h.data(), h.size(), abc, 3, nullptr, 0);
  CHECK(to_hex(h) ==
        "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8d"
        "bf1925ab92386edd4009923");
  PublicKey pub{};
  pub[0] = 1;
  std::array<std::uint8_t, 32> h32{};
  crypto_generichash(h32.data(), 32, pub.data(), 32, nullptr, 0);
  CHECK(mesh_id(pub) == to_hex(ByteSpan(h32.data(), 8)));
  CHECK(mesh_id(pub).size() == 16);
  CHECK(node_id_hex(pub).size() == 64);
  CHECK(node_id_short(pub).size() == 12);
  auto back = parse_node_id(node_id_hex(pub));
  REQUIRE(back.ok());
  CHECK(*back == pub);
  CHECK_FALSE(parse_node_id("abc").ok());
  CHECK_FALSE(parse_node_id(std::string(64, 'z')).ok());
}

TEST_CASE("aead: RFC 8439 2.8.2 vector, libsodium and OpenSSL") {
  REQUIRE(init().ok());
  AeadKey key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(0x80 + i);
  AeadNonce nonce = hex_arr<12>("070000004041424344454647");
  Bytes ad = hex("50515253c0c1c2c3c4c5c6c7");
  std::string_view text =
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen "
      "would be it.";
  Bytes pt(text.begin(), text.end());
  std::string want =
      "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e0"
      "60b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d2"
      "6586cec64b6116"
      "1ae10b594f09e26a7e902ecbd0600691";
  Bytes s(pt.size() + kAeadTagLen);
  aead_seal_sodium(key, nonce, ad, pt, s.data());
  CHECK(to_hex(s) == want);
  Bytes o = pt;
  o.resize(pt.size() + kAeadTagLen);
  AeadCipher enc(key, AeadCipher::Dir::seal);
  REQUIRE(enc.valid());
  REQUIRE(enc.seal_in_place(nonce, ad, o.data(), pt.size()));
  CHECK(to_hex(o) == want);
  AeadCipher dec(key, AeadCipher::Dir::open);
  REQUIRE(dec.open_in_place(nonce, ad, o.data(), pt.size()));
  CHECK(Bytes(o.begin(), o.begin() + static_cast<long>(pt.size())) == pt);
  Bytes back(pt.size());
  CHECK(aead_open_sodium(key, nonce, ad, s, back.data()));
  CHECK(back == pt);
}

TEST_CASE("aead: libsodium and OpenSSL agree byte for byte on random inputs") {
  REQUIRE(init().ok());
  SeededRandomForTest rng(7);
  AeadKey key{};
  rng.fill(key);
  AeadCipher enc(key, AeadCipher::Dir::seal);
  AeadCipher dec(key, AeadCipher::Dir::open);
  for (int i = 0; i < 300; ++i) {
    std::size_t len = rng.uniform(i < 100 ? 80 : 2000);
    std::size_t ad_len = rng.uniform(40);
    Bytes pt(len), ad(ad_len);
    rng.fill(pt);
    rng.fill(ad);
    AeadNonce nonce = counter_nonce(rng.next_u64());
    Bytes a(len + kAeadTagLen);
    aead_seal_sodium(key, nonce, ad, pt, a.data());
    Bytes b = pt;
    b.resize(len + kAeadTagLen);
    REQUIRE(enc.seal_in_place(nonce, ad, b.data(), len));
    REQUIRE(a == b);
    REQUIRE(dec.open_in_place(nonce, ad, b.data(), len));
    REQUIRE(std::equal(pt.begin(), pt.end(), b.begin()));
    // A wrong tag fails in both, and the context keeps working afterwards.
    a[len] ^= 0x40;
    Bytes out(len);
    CHECK_FALSE(aead_open_sodium(key, nonce, ad, a, out.data()));
    CHECK_FALSE(dec.open_in_place(nonce, ad, a.data(), len));
  }
  CHECK(to_hex(counter_nonce(0x0102030405060708ull)) == "000000000807060504030201");
}

TEST_CASE("replay: in order, out of order, too old, duplicate, huge jump") {
  ReplayWindow w;
  for (std::uint64_t c = 0; c < 5000; ++c) REQUIRE(w.commit(c));
  CHECK_FALSE(w.check(4999));
  CHECK_FALSE(w.commit(0));
  // Out of order within the window.
  ReplayWindow o;
  CHECK(o.commit(100));
  CHECK(o.commit(50));
  CHECK(o.commit(99));
  CHECK_FALSE(o.commit(50));
  CHECK(o.commit(0));
  const std::uint64_t top = ReplayWindow::kWindow + 1000;  // 0..999 fall out of the window
  CHECK(o.commit(top));
  CHECK(o.check(top - ReplayWindow::kWindow));
  CHECK_FALSE(o.check(top - ReplayWindow::kWindow - 1));  // too old
  CHECK_FALSE(o.commit(100));
  CHECK(o.commit(top - 1));
  CHECK_FALSE(o.commit(top - 1));  // duplicate
  // Huge jump clears everything below the window and still tracks the new top.
  CHECK(o.commit(1ull << 40));
  CHECK_FALSE(o.commit(1ull << 40));
  CHECK(o.commit((1ull << 40) - 1));
  CHECK_FALSE(o.commit(top));
  CHECK(o.commit((1ull << 40) - ReplayWindow::kWindow));
  CHECK_FALSE(o.check(ReplayWindow::kCounterLimit));
  CHECK_FALSE(o.check(~0ull));
  // Reverse order inside the window: every counter once.
  ReplayWindow r;
  CHECK(r.commit(ReplayWindow::kWindow));
  for (std::uint64_t c = ReplayWindow::kWindow; c-- > 0;) REQUIRE(r.commit(c));
  for (std::uint64_t c = 0; c <= ReplayWindow::kWindow; ++c) REQUIRE_FALSE(r.check(c));
  // Bits of a reused ring slot are cleared when the top moves past it.
  ReplayWindow s;
  CHECK(s.commit(5));
  CHECK(s.commit(5 + ReplayWindow::kBits));
  CHECK_FALSE(s.check(5));
  CHECK(s.check(5 + 64 + ReplayWindow::kBits - 64 * 2));
}
