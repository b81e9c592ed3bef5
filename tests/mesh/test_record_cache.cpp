// RecordCache (mesh/record_cache.hpp) alone: hits and misses, a hit needs the whole
// record equal (a reused signature gets no free pass), expiry is checked on hits too,
// chains must lead to the cache's root (a remembered enrollment cert vouches only for
// the same bytes), and the max_records bound with its overflow policy.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "mesh/harness.hpp"
#include "mesh/record_cache.hpp"

using namespace meshd;
using namespace meshd::mesh;
using test::SimNet;

namespace {

// Records of `n` new nodes enrolled with `tok`, each signed by its node.
std::vector<NodeRecord> signed_records(SimNet& net, const test::TestToken& tok, std::size_t n) {
  std::vector<NodeRecord> out;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t k = net.add_node(tok);
    NodeRecord r = net.record_for(k);
    r.sign(net.nodes[k]->key);
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<NodeRecord> signed_records(SimNet& net, std::size_t n) {
  return signed_records(net, net.make_token({100}), n);
}

std::uint64_t now_s(const SimNet& net) { return net.now / 1000; }

}  // namespace

TEST_CASE("record cache: the first verify is a miss, the same record again a hit, same copy") {
  SimNet net(201);
  const NodeRecord r = signed_records(net, 1)[0];
  RecordCache cache(net.root_pub(), 16);
  auto a = cache.verify(r, now_s(net));
  INFO((a.ok() ? std::string("ok") : a.error().code + ": " + a.error().message));
  REQUIRE(a.ok());
  CHECK(cache.misses() == 1);
  CHECK(cache.hits() == 0);
  CHECK(cache.size() == 1);
  CHECK(*a.value() == r);
  const NodeRecord copy = r;  // an equal record, not the same object
  auto b = cache.verify(copy, now_s(net));
  REQUIRE(b.ok());
  CHECK(cache.hits() == 1);
  CHECK(cache.misses() == 1);
  CHECK(b.value().get() == a.value().get());  // one shared copy
  CHECK(cache.size() == 1);
}

TEST_CASE("record cache: a changed field under the cached record's signature is rejected") {
  SimNet net(202);
  const NodeRecord r = signed_records(net, 1)[0];
  RecordCache cache(net.root_pub(), 16);
  REQUIRE(cache.verify(r, now_s(net)).ok());
  REQUIRE(cache.size() == 1);

  NodeRecord moved = r;  // same sig, another port
  REQUIRE(!moved.locators.empty());
  moved.locators[0].port = static_cast<std::uint16_t>(moved.locators[0].port + 1);
  auto a = cache.verify(moved, now_s(net));
  REQUIRE_FALSE(a.ok());
  CHECK(a.error().code == "mesh.bad_signature");

  NodeRecord bumped = r;  // version bumped without re-signing
  ++bumped.version;
  auto b = cache.verify(bumped, now_s(net));
  REQUIRE_FALSE(b.ok());
  CHECK(b.error().code == "mesh.bad_signature");

  NodeRecord served = r;  // a VNI added without re-signing
  served.vnis.push_back(100);
  auto c = cache.verify(served, now_s(net));
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().code == "mesh.bad_signature");

  CHECK(cache.hits() == 0);  // none of them was taken for the cached one
  CHECK(cache.size() == 1);  // nor replaced it
  auto again = cache.verify(r, now_s(net));
  REQUIRE(again.ok());
  CHECK(*again.value() == r);
  CHECK(cache.hits() == 1);
}

TEST_CASE("record cache: an expired node cert is rejected on a hit too") {
  SimNet net(203);
  const NodeRecord r = signed_records(net, 1)[0];
  RecordCache cache(net.root_pub(), 16);
  auto first = cache.verify(r, now_s(net));
  REQUIRE(first.ok());
  const std::uint64_t after_s = r.chain.node.not_after_s + 1;
  auto late = cache.verify(r, after_s);
  REQUIRE_FALSE(late.ok());
  CHECK(late.error().code == "cert.expired");
  CHECK(cache.hits() == 1);  // it was a hit: the signature check was skipped, not the times
  CHECK(cache.misses() == 1);
  // The last valid second still passes.
  auto last = cache.verify(r, r.chain.node.not_after_s);
  CHECK(last.ok());
}

TEST_CASE("record cache: a chain under another root is rejected, even with a known enrollment") {
  SimNet ours(204);
  SimNet other(205);  // another mesh: another root key
  REQUIRE_FALSE(ours.root_pub() == other.root_pub());
  const test::TestToken tok = ours.make_token({100});
  const NodeRecord good = signed_records(ours, tok, 1)[0];
  const NodeRecord foreign = signed_records(other, 1)[0];
  RecordCache cache(ours.root_pub(), 16);
  auto f = cache.verify(foreign, now_s(other));
  REQUIRE_FALSE(f.ok());
  CHECK(f.error().code == "cert.bad_root_signature");
  CHECK(cache.size() == 0);

  // The cache now knows our enrollment cert. A holder of that token (it has the
  // enrollment key) widens the cert's scope, keeps the root's signature, and issues
  // a node cert under it: the remembered signature must not vouch for other bytes.
  REQUIRE(cache.verify(good, now_s(ours)).ok());
  const std::size_t k = ours.add_node(tok);
  crypto::EnrollmentCert widened = good.chain.enrollment;
  widened.scope.vnis = {100, 200};
  NodeRecord forged = ours.record_for(k);
  forged.chain.enrollment = widened;
  forged.chain.node = crypto::issue_node_cert(
      tok.enroll_key, widened, ours.nodes[k]->key.public_key(), ours.nodes[k]->chain.node.dh_pub,
      "forged", now_s(ours), now_s(ours) + 86400);
  forged.sign(ours.nodes[k]->key);
  REQUIRE(forged.chain.enrollment.sig == good.chain.enrollment.sig);
  auto g = cache.verify(forged, now_s(ours));
  REQUIRE_FALSE(g.ok());
  CHECK(g.error().code == "cert.bad_root_signature");
  CHECK(cache.size() == 1);
}

TEST_CASE("record cache: max_records bounds the cache; records in use are not evicted") {
  SimNet net(206);
  const std::vector<NodeRecord> rs = signed_records(net, 3);
  {
    RecordCache cache(net.root_pub(), 2);
    for (const NodeRecord& r : rs) {
      REQUIRE(cache.verify(r, now_s(net)).ok());  // the result is dropped at once
      CHECK(cache.size() <= 2);
    }
    CHECK(cache.size() >= 1);  // the last one is cached: unused ones made room
    CHECK(cache.misses() == 3);
  }
  {
    RecordCache cache(net.root_pub(), 2);
    std::vector<std::shared_ptr<const NodeRecord>> held;
    for (const NodeRecord& r : rs) {
      auto v = cache.verify(r, now_s(net));
      REQUIRE(v.ok());
      CHECK(*v.value() == r);
      held.push_back(v.value());
    }
    CHECK(cache.size() == 2);
    // The third was verified and returned but not cached: asking again is a miss.
    auto again = cache.verify(rs[2], now_s(net));
    REQUIRE(again.ok());
    CHECK(cache.misses() == 4);
    CHECK(cache.hits() == 0);
    // The first two still are: hits, and the very copies the holders have.
    auto first = cache.verify(rs[0], now_s(net));
    REQUIRE(first.ok());
    CHECK(first.value().get() == held[0].get());
    CHECK(cache.hits() == 1);
    CHECK(cache.size() == 2);
    // Let go of one: now there is room for the third.
    held.erase(held.begin() + 1);
    first = cache.verify(rs[0], now_s(net));  // keep held[0] and this one in use
    REQUIRE(cache.verify(rs[2], now_s(net)).ok());
    CHECK(cache.size() == 2);
    CHECK(cache.misses() == 5);
    CHECK(cache.verify(rs[2], now_s(net)).ok());
    CHECK(cache.hits() == 3);  // rs[0] twice, then rs[2]
  }
}
