#include <doctest/doctest.h>

#include "agent/mesh_settings.hpp"

using namespace meshd;
using namespace meshd::agent;

TEST_CASE("mesh settings: parse, default, apply, store round trip") {
  MeshSettings s;
  REQUIRE(parse_mesh_setting("probe_interval_ms=1000", s).ok());
  REQUIRE(parse_mesh_setting("probe_timeout_ms=400", s).ok());
  REQUIRE(parse_mesh_setting("indirect_probes=3", s).ok());
  REQUIRE(parse_mesh_setting("direct_retry=off", s).ok());
  REQUIRE(parse_mesh_setting("push_pull_interval_ms=30000", s).ok());
  REQUIRE(parse_mesh_setting("gossip_fanout=5", s).ok());
  REQUIRE(parse_mesh_setting("gossip_fanout=default", s).ok());  // dropped again
  CHECK(s.size() == 5);
  CHECK(s.count("gossip_fanout") == 0);

  mesh::MeshConfig cfg;
  REQUIRE(apply_mesh_settings(s, cfg).ok());
  CHECK(cfg.probe_interval_ms == 1000);
  CHECK(cfg.probe_timeout_ms == 400);
  CHECK(cfg.indirect_probes == 3);
  CHECK_FALSE(cfg.direct_retry);
  CHECK(cfg.anti_entropy_interval_ms == 30000);
  CHECK(cfg.gossip_fanout == mesh::MeshConfig{}.gossip_fanout);

  auto j = mesh_settings_json(cfg);
  CHECK(j["probe_interval_ms"] == 1000);
  CHECK(j["direct_retry"] == false);
  CHECK(j["indirect_probes"] == 3);
  CHECK(mesh_settings_json(mesh::MeshConfig{})["indirect_probes"] == "auto");

  auto back = decode_mesh_settings(encode_mesh_settings(s));
  REQUIRE(back.ok());
  CHECK(*back == s);
}

TEST_CASE("mesh settings: bad input is refused with a clear error, nothing half-applied") {
  MeshSettings s;
  for (const char* bad : {"", "=5", "nope=1", "probe_interval_ms=", "probe_interval_ms=1e3",
                          "probe_interval_ms=49", "probe_interval_ms=60001", "lhm_max=65",
                          "direct_retry=2", "indirect_probes=-3", "suspicion_max_mult=0",
                          "gossip_interval_ms=18446744073709551616"}) {
    CAPTURE(bad);
    auto st = parse_mesh_setting(bad, s);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == "cli.set");
    CHECK(st.error().message.find('\n') == std::string::npos);
  }
  CHECK(s.empty());

  // Each value in bounds, together inconsistent: the timeout must be below the interval.
  REQUIRE(parse_mesh_setting("probe_interval_ms=100", s).ok());
  REQUIRE(parse_mesh_setting("probe_timeout_ms=100", s).ok());
  mesh::MeshConfig cfg;
  auto st = apply_mesh_settings(s, cfg);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message.find("below probe_interval_ms") != std::string::npos);
  CHECK(cfg.probe_interval_ms == mesh::MeshConfig{}.probe_interval_ms);  // untouched

  // A corrupt stored list is an error, not a silent default.
  CHECK_FALSE(decode_mesh_settings("probe_interval_ms=1000\ngarbage\n").ok());
  CHECK(decode_mesh_settings("").ok());
}
