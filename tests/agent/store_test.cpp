#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "agent/store.hpp"
#include "crypto/keys.hpp"

using namespace meshd;
using namespace meshd::agent;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/meshd-agent-test-XXXXXX";
    path = mkdtemp(tmpl);
    path += "/state";
  }
  ~TempDir() { std::filesystem::remove_all(std::filesystem::path(path).parent_path()); }
};

ByteSpan bs(std::string_view s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

}  // namespace

TEST_CASE("store: put/get/del/for_each survive reopen") {
  TempDir dir;
  {
    auto s = Store::open(dir.path);
    REQUIRE(s.ok());
    (*s)->put("members", "a", bs("one"));
    (*s)->put("members", "b", bs("two"));
    (*s)->put("mappings", "a", bs("other table"));
    (*s)->put("members", "a", bs("one-v2"));  // overwrite
    (*s)->del("members", "b");
    (*s)->del("members", "missing");  // deleting nothing is fine
    CHECK((*s)->write_errors() == 0);
  }
  struct stat st{};
  REQUIRE(stat(dir.path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(stat((dir.path + "/db").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);

  auto s = Store::open(dir.path);
  REQUIRE(s.ok());
  auto a = (*s)->get("members", "a");
  REQUIRE(a);
  CHECK(std::string(a->begin(), a->end()) == "one-v2");
  CHECK(!(*s)->get("members", "b"));
  CHECK(!(*s)->get("nosuchtable", "a"));
  int n = 0;
  (*s)->for_each("members", [&](std::string_view k, ByteSpan v) {
    ++n;
    CHECK(k == "a");
    CHECK(v.size() == 6);
  });
  CHECK(n == 1);
  // A callback may write (no nested transaction problem).
  (*s)->for_each("mappings", [&](std::string_view k, ByteSpan) { (*s)->put("meta", k, bs("x")); });
  CHECK((*s)->get("meta", "a"));
  (*s)->clear("members");
  CHECK(!(*s)->get("members", "a"));
}

TEST_CASE("store: identity, state, attachments and contacts round trip") {
  TempDir dir;
  crypto::Seed seed{};
  seed[0] = 7;
  dp::Attachment att;
  att.vni = 100;
  att.netns = "t1";
  att.ifname = "eth0";
  att.host_ifname = "vh100a";
  att.mac = MacAddr{2, 0, 0, 0, 0, 1};
  att.ips = {*IpPrefix::parse("10.0.0.1/24"), *IpPrefix::parse("fd00::1/64")};
  StoredContact c;
  c.id[0] = 9;
  c.dh_pub[1] = 3;
  c.alive = true;
  c.locators = {*Locator::parse("10.1.0.1:51900"), *Locator::parse("[fd00::2]:51900")};
  {
    auto s = Store::open(dir.path);
    REQUIRE(s.ok());
    CHECK((*s)->node_state() == NodeState::none);
    CHECK(!(*s)->load_identity());
    StoredIdentity id;
    id.node_seed = seed;
    id.dh_secret[0] = 8;
    id.root_pub[0] = 1;
    id.name = "h1";
    id.listen = "0.0.0.0:51900";
    id.chain.node.name = "h1";
    (*s)->save_identity(id);
    (*s)->set_node_state(NodeState::enrolled);
    (*s)->put_attachment(att);
    (*s)->put_contact(c);
    (*s)->save_locators(c.locators);
  }
  auto s = Store::open(dir.path);
  REQUIRE(s.ok());
  CHECK((*s)->node_state() == NodeState::enrolled);
  auto id = (*s)->load_identity();
  REQUIRE(id);
  CHECK(id->node_seed == seed);
  CHECK(id->dh_secret[0] == 8);
  CHECK(id->name == "h1");
  CHECK(id->listen == "0.0.0.0:51900");
  CHECK(id->chain.node.name == "h1");
  auto atts = (*s)->attachments();
  REQUIRE(atts.size() == 1);
  CHECK(atts[0].vni == 100);
  CHECK(atts[0].netns == std::optional<std::string>("t1"));
  CHECK(atts[0].ifname == "eth0");
  CHECK(atts[0].host_ifname == "vh100a");
  CHECK(atts[0].mac == att.mac);
  CHECK(atts[0].ips == att.ips);
  auto cs = (*s)->contacts();
  REQUIRE(cs.size() == 1);
  CHECK(cs[0].id == c.id);
  CHECK(cs[0].dh_pub == c.dh_pub);
  CHECK(cs[0].alive);
  CHECK(cs[0].locators == c.locators);
  CHECK((*s)->load_locators() == c.locators);
  (*s)->del_attachment(att);
  CHECK((*s)->attachments().empty());
  (*s)->set_node_state(NodeState::left);
  CHECK((*s)->node_state() == NodeState::left);
}

TEST_CASE("store: attachment decoding rejects garbage") {
  dp::Attachment a;
  a.vni = 5;
  a.ifname = "x";
  const Bytes good = encode_attachment(a);
  CHECK(decode_attachment(good));
  for (std::size_t n = 0; n < good.size(); ++n) {
    CHECK(!decode_attachment(ByteSpan(good.data(), n)));  // every truncation
  }
  Bytes trailing = good;
  trailing.push_back(0);
  CHECK(!decode_attachment(trailing));
  Bytes bad_version = good;
  bad_version[0] = 99;
  CHECK(!decode_attachment(bad_version));
}

TEST_CASE("store: routes round trip, keyed by vni and prefix") {
  TempDir dir;
  const mesh::RouteAnnouncement v4{100, *IpPrefix::parse("192.168.77.0/24"), MacAddr{2, 0, 0, 0, 0, 1}};
  const mesh::RouteAnnouncement v6{200, *IpPrefix::parse("fd00:77::/64"), MacAddr{2, 0, 0, 0, 0, 2}};
  {
    auto s = Store::open(dir.path);
    REQUIRE(s.ok());
    CHECK((*s)->routes().empty());
    (*s)->put_route(v4);
    (*s)->put_route(v6);
    (*s)->put_route(v4);  // again: one record
    CHECK((*s)->write_errors() == 0);
  }
  auto s = Store::open(dir.path);
  REQUIRE(s.ok());
  auto routes = (*s)->routes();
  std::sort(routes.begin(), routes.end());
  REQUIRE(routes.size() == 2);
  CHECK(routes[0] == v4);
  CHECK(routes[1] == v6);
  // The key is (vni, prefix): deleting needs no MAC.
  (*s)->del_route(mesh::RouteAnnouncement{100, v4.prefix, {}});
  routes = (*s)->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0] == v6);
  (*s)->put(std::string_view("routes"), "garbage", Bytes{1, 2, 3});
  CHECK((*s)->routes().size() == 1);  // unreadable records are skipped
  (*s)->clear("routes");
  CHECK((*s)->routes().empty());
}

TEST_CASE("store: route decoding rejects garbage") {
  const mesh::RouteAnnouncement r{7, *IpPrefix::parse("10.1.0.0/16"), MacAddr{2, 0, 0, 0, 0, 9}};
  const Bytes good = encode_route(r);
  REQUIRE(decode_route(good));
  CHECK(*decode_route(good) == r);
  for (std::size_t n = 0; n < good.size(); ++n) CHECK(!decode_route(ByteSpan(good.data(), n)));
  Bytes trailing = good;
  trailing.push_back(0);
  CHECK(!decode_route(trailing));
  Bytes bad_version = good;
  bad_version[0] = 99;
  CHECK(!decode_route(bad_version));
  mesh::RouteAnnouncement long_prefix = r;
  long_prefix.prefix.len = 33;
  CHECK(!decode_route(encode_route(long_prefix)));
  mesh::RouteAnnouncement no_family = r;
  no_family.prefix.addr.family = 0;
  CHECK(!decode_route(encode_route(no_family)));
}
