#include <doctest/doctest.h>

#include "agent/cli.hpp"
#include "agent/parse.hpp"

using namespace meshd;
using namespace meshd::agent;

namespace {

ParseOutcome parse(std::vector<std::string> args, std::optional<std::string> env_token = std::nullopt,
                   std::optional<std::string> file = std::nullopt) {
  return parse_command_line(
      args, [&](const std::string& k) { return k == "MESHD_TOKEN" ? env_token : std::nullopt; },
      [&](const std::string&, std::string& why) {
        if (!file) why = "no such file";
        return file;
      });
}

void check_bad(const ParseOutcome& o, const std::string& needle) {
  CHECK(!o.cmd);
  CHECK(o.exit_code == 2);
  CHECK(o.err.rfind("meshd: ", 0) == 0);
  CHECK(o.err.find('\n') == std::string::npos);
  CHECK_MESSAGE(o.err.find(needle) != std::string::npos, o.err);
}

}  // namespace

TEST_CASE("cli: help and version exit 0") {
  for (auto args : std::vector<std::vector<std::string>>{{"--help"}, {"attach", "--help"}, {"token", "create", "--help"}, {"--version"}}) {
    auto o = parse(args);
    CHECK(!o.cmd);
    CHECK(o.exit_code == 0);
    CHECK(!o.out.empty());
  }
}

TEST_CASE("cli: unknown things are one-line exit 2") {
  check_bad(parse({}), "subcommand");
  check_bad(parse({"frobnicate"}), "unknown subcommand 'frobnicate'");
  check_bad(parse({"status", "--state", "d", "--bogus"}), "--bogus");
  check_bad(parse({"status"}), "--state");
  check_bad(parse({"token", "--state", "d"}), "");
  check_bad(parse({"token", "create", "--state", "d", "--vni", "1", "--all-vnis"}), "");
}

TEST_CASE("cli: init and join values") {
  auto o = parse({"init", "--state", "/s", "--name", "h1", "--listen", "10.0.0.1:5000"});
  REQUIRE(o.cmd);
  CHECK(o.cmd->kind == CommandKind::init);
  CHECK(o.cmd->name == "h1");
  CHECK(o.cmd->listen->str() == "10.0.0.1:5000");
  check_bad(parse({"init", "--state", "/s", "--listen", "10.0.0.1"}), "--listen");
  check_bad(parse({"init", "--state", "/s", "--listen", "300.0.0.1:1"}), "--listen");
  check_bad(parse({"init", "--state", "/s", "--listen", "10.0.0.1:0"}), "--listen");
  check_bad(parse({"init", "--state", "/s", "--name", std::string(65, 'a')}), "--name");

  auto j = parse({"join", "meshd1.abc", "--state", "/s"});
  REQUIRE(j.cmd);
  CHECK(j.cmd->token == "meshd1.abc");
  auto e = parse({"join", "--state", "/s"}, std::string("meshd1.env\n"));
  REQUIRE(e.cmd);
  CHECK(e.cmd->token == "meshd1.env");
  auto f = parse({"join", "--state", "/s", "--token-file", "/t"}, std::nullopt, std::string("  meshd1.file\n"));
  REQUIRE(f.cmd);
  CHECK(f.cmd->token == "meshd1.file");
  check_bad(parse({"join", "--state", "/s"}), "no join token");
  check_bad(parse({"join", "--state", "/s", "--token-file", "/t"}), "cannot read token file");
  check_bad(parse({"join", "x", "--state", "/s", "--token-file", "/t"}, std::nullopt, std::string("y")), "not both");
}

TEST_CASE("cli: token create ttl, vni, uses") {
  auto o = parse({"token", "create", "--state", "/s"});
  REQUIRE(o.cmd);
  CHECK(o.cmd->kind == CommandKind::token_create);
  CHECK(o.cmd->ttl_s == 24 * 3600);
  CHECK(o.cmd->scope.all_vnis);
  CHECK(o.cmd->uses == 1);
  auto v = parse({"token", "create", "--state", "/s", "--vni", "200,100,200", "--ttl", "90m", "--uses", "3"});
  REQUIRE(v.cmd);
  CHECK(!v.cmd->scope.all_vnis);
  CHECK(v.cmd->scope.vnis == std::vector<std::uint32_t>{100, 200});
  CHECK(v.cmd->ttl_s == 90 * 60);
  CHECK(v.cmd->uses == 3);
  for (auto bad : {"0", "-1h", "1y", "h", "", "366d", "1.5h", "99999999999999999999"}) {
    check_bad(parse({"token", "create", "--state", "/s", "--ttl", bad}), "--ttl");
  }
  for (auto bad : {"0", "16777216", "1,,2", "abc", "100,"}) {
    check_bad(parse({"token", "create", "--state", "/s", "--vni", bad}), "VNI");
  }
  check_bad(parse({"token", "create", "--state", "/s", "--uses", "0"}), "--uses");
}

TEST_CASE("cli: attach and detach validation") {
  auto o = parse({"attach", "--state", "/s", "--vni", "100", "--netns", "t1", "--ip", "10.0.0.1/24", "--ip",
                  "fd00::1/64", "--mac", "02:00:00:00:00:01", "--ifname", "eth1"});
  REQUIRE(o.cmd);
  CHECK(o.cmd->kind == CommandKind::attach);
  CHECK(o.cmd->vni == 100);
  CHECK(o.cmd->netns == std::optional<std::string>("t1"));
  CHECK(o.cmd->ips.size() == 2);
  CHECK(o.cmd->mac == std::optional<MacAddr>(MacAddr{2, 0, 0, 0, 0, 1}));
  CHECK(o.cmd->ifname == std::optional<std::string>("eth1"));
  check_bad(parse({"attach", "--state", "/s", "--vni", "0", "--ip", "10.0.0.1/24"}), "VNI");
  check_bad(parse({"attach", "--state", "/s", "--vni", "16777216", "--ip", "10.0.0.1/24"}), "VNI");
  check_bad(parse({"attach", "--state", "/s", "--vni", "x", "--ip", "10.0.0.1/24"}), "VNI");
  check_bad(parse({"attach", "--state", "/s", "--vni", "1", "--ip", "10.0.0.300/24"}), "--ip");
  check_bad(parse({"attach", "--state", "/s", "--vni", "1", "--ip", "10.0.0.1/33"}), "--ip");
  check_bad(parse({"attach", "--state", "/s", "--vni", "1"}), "--ip");
  check_bad(parse({"attach", "--state", "/s", "--vni", "1", "--ip", "10.0.0.1/24", "--mac", "zz"}), "--mac");
  check_bad(parse({"attach", "--state", "/s", "--vni", "1", "--ip", "10.0.0.1/24", "--mac", "01:00:5e:00:00:01"}), "multicast");
  check_bad(parse({"attach", "--state", "/s", "--vni", "1", "--ip", "10.0.0.1/24", "--ifname", "a-very-long-interface"}), "--ifname");
  check_bad(parse({"attach", "--state", "/s", "--vni", "1", "--ip", "10.0.0.1/24", "--netns", "../x"}), "--netns");
  auto d = parse({"detach", "--state", "/s", "--vni", "7"});
  REQUIRE(d.cmd);
  CHECK(d.cmd->kind == CommandKind::detach);
  CHECK(!d.cmd->ifname);
}

TEST_CASE("cli: route add and del") {
  auto o = parse({"route", "add", "--state", "/s", "--vni", "100", "192.168.77.9/24", "--via", "10.30.0.254"});
  REQUIRE(o.cmd);
  CHECK(o.cmd->kind == CommandKind::route_add);
  CHECK(o.cmd->vni == 100);
  CHECK(o.cmd->prefix.str() == "192.168.77.0/24");  // host bits cleared
  CHECK(o.cmd->via == std::optional<IpAddr>(*IpAddr::parse("10.30.0.254")));
  o = parse({"route", "add", "fd00:77::/64", "--vni", "7", "--state", "/s"});
  REQUIRE(o.cmd);
  CHECK(!o.cmd->via);
  CHECK(o.cmd->prefix.addr.is_v6());
  auto d = parse({"route", "del", "--state", "/s", "--vni", "100", "192.168.77.0/24"});
  REQUIRE(d.cmd);
  CHECK(d.cmd->kind == CommandKind::route_del);
  CHECK(d.cmd->prefix.str() == "192.168.77.0/24");

  check_bad(parse({"route", "add", "--state", "/s", "192.168.77.0/24"}), "--vni is required");
  check_bad(parse({"route", "add", "--state", "/s", "--vni", "100"}), "prefix");
  check_bad(parse({"route", "add", "--state", "/s", "--vni", "0", "192.168.77.0/24"}), "invalid VNI '0'");
  check_bad(parse({"route", "add", "--state", "/s", "--vni", "16777216", "192.168.77.0/24"}), "VNI");
  check_bad(parse({"route", "add", "--state", "/s", "--vni", "100", "192.168.77.0/33"}), "invalid prefix '192.168.77.0/33'");
  check_bad(parse({"route", "add", "--state", "/s", "--vni", "100", "not-a-net"}), "invalid prefix");
  check_bad(parse({"route", "add", "--state", "/s", "--vni", "100", "192.168.77.0/24", "--via", "10.30.0.254/24"}), "invalid --via");
  check_bad(parse({"route", "add", "--state", "/s", "--vni", "100", "192.168.77.0/24", "--via", ""}), "invalid --via");
  check_bad(parse({"route", "add", "--state", "/s", "--vni", "100", "192.168.77.0/24", "--metric", "5"}), "--metric");
  check_bad(parse({"route", "del", "--state", "/s", "--vni", "100", "192.168.77.0/24", "--via", "10.30.0.254"}), "--via");
  check_bad(parse({"route", "del", "--state", "/s", "192.168.77.0/24"}), "--vni is required");
  check_bad(parse({"route", "--state", "/s"}), "");
  check_bad(parse({"route", "show", "--state", "/s"}), "");
  o = parse({"route", "add", "--help"});
  CHECK(o.exit_code == 0);
  CHECK(o.out.find("host bits are cleared") != std::string::npos);
}

TEST_CASE("cli: views take --json") {
  for (auto [name, kind] : {std::pair{"status", CommandKind::status}, std::pair{"peers", CommandKind::peers},
                            std::pair{"endpoints", CommandKind::endpoints}, std::pair{"routes", CommandKind::routes}}) {
    auto o = parse({name, "--state", "/s", "--json"});
    REQUIRE(o.cmd);
    CHECK(o.cmd->kind == kind);
    CHECK(o.cmd->json);
  }
  auto r = parse({"revoke", "abc", "--state", "/s"});
  REQUIRE(r.cmd);
  CHECK(r.cmd->node == "abc");
}

TEST_CASE("parse: ttl units and utc formatting") {
  CHECK(*parse_ttl_s("45") == 45);
  CHECK(*parse_ttl_s("2d") == 2 * 86400);
  CHECK(*parse_ttl_s("365d") == 365 * 86400);
  CHECK(format_utc(0) == "1970-01-01 00:00:00 UTC");
}

TEST_CASE("cli: --set membership tunables on run and join") {
  auto o = parse({"run", "--state", "/s", "--set", "probe_interval_ms=1000", "--set", "indirect_probes=auto"});
  REQUIRE(o.cmd);
  CHECK(o.cmd->mesh_settings == std::vector<std::string>{"probe_interval_ms=1000", "indirect_probes=auto"});
  o = parse({"join", "TOKEN", "--state", "/s", "--set", "gossip_fanout=4"});
  REQUIRE(o.cmd);
  CHECK(o.cmd->mesh_settings == std::vector<std::string>{"gossip_fanout=4"});
  check_bad(parse({"run", "--state", "/s", "--set", "probe_interval=1000"}), "unknown setting 'probe_interval'");
  check_bad(parse({"run", "--state", "/s", "--set", "probe_interval_ms"}), "expected NAME=VALUE");
  check_bad(parse({"run", "--state", "/s", "--set", "probe_interval_ms=fast"}), "not a number");
  check_bad(parse({"run", "--state", "/s", "--set", "probe_interval_ms=5"}), "out of range 50..60000");
  check_bad(parse({"run", "--state", "/s", "--set", "gossip_fanout=-1"}), "not a number");
  check_bad(parse({"run", "--state", "/s", "--set", "indirect_probes=17"}), "out of range 0..16");
  // The run's help lists every tunable.
  o = parse({"run", "--help"});
  CHECK(o.exit_code == 0);
  CHECK(o.out.find("suspicion_floor_ms") != std::string::npos);
}
