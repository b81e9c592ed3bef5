// build/mesh-sim: runs one deterministic simulator scenario and prints its figures.
//   mesh-sim --nodes N --seed S [--loss P] [--scenario join|crash|partition|churn|steady|mapping] [--json]
//   mesh-sim --nodes 1000 --preformed --no-storage --scenario mapping --endpoints 100000 --vnis 100
// Exit status 1 if an invariant failed; the seed and a replay command go to stderr.
// Wall time and memory are measured here (the library itself never reads the clock).
#include <malloc.h>
#include <sys/resource.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "sim/lib/scenarios.hpp"

namespace {

using meshd::sim::Figures;
using meshd::sim::ScenarioConfig;

// kB from /proc/self/status ("VmHWM" peak resident set, "VmRSS" current); 0 if absent.
std::uint64_t proc_status_kb(std::string_view field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field, 0) == 0 && line.size() > field.size() && line[field.size()] == ':') {
      return std::stoull(line.substr(field.size() + 1));
    }
  }
  return 0;
}

template <typename T>
bool parse_num(std::string_view s, T& out) {
  if constexpr (std::is_floating_point_v<T>) {
    try {
      std::size_t used = 0;
      out = static_cast<T>(std::stod(std::string(s), &used));
      return used == s.size();
    } catch (...) {  // std::stod reports bad input by throwing; CLI parsing only
      return false;
    }
  } else {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
  }
}

void usage() {
  std::cerr << "usage: mesh-sim --nodes N --seed S [--loss P] [--duplicate P] [--reorder P]\n"
               "                [--delay-min MS] [--delay-max MS] [--scenario "
               "join|crash|partition|churn|steady|mapping]\n"
               "                [--asymmetric] [--no-storage] [--lose-unsynced] [--preformed]\n"
               "                [--duration-s S] [--partition-s S] [--crashes K] [--false-death-budget K]\n"
               "                [--json]\n"
               "  tunables (MeshConfig; defaults are the agent's): --probe-interval-ms MS\n"
               "    --probe-timeout-ms MS --indirect-probes K|auto --suspicion-mult M\n"
               "    --suspicion-max-mult M --suspicion-floor-ms MS --suspicion-confirmations K\n"
               "    --direct-retry 0|1\n"
               "    --lhm-max L --gossip-interval-ms MS --gossip-fanout F --gossip-burst-max B\n"
               "    --retransmit-mult M --push-pull-ms MS --broadcast-queue-max N\n"
               "    --replicas R --map-ttl-s S --map-request-timeout-ms MS\n"
               "  mapping scenario: --endpoints E (100000) --vnis V (100) --vnis-per-node K|auto\n"
               "    --lookups L (per node over the traffic phase, 1000) --traffic-s S (60)\n"
               "    --zipf S (1.0) --ip-key-share P (0.5) --moves M (10) --kill-rounds K (3)\n"
               "    --resolve-checks C (200, per kill round)\n";
}

// User + system CPU seconds of this process: wall time misleads on a shared machine.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

nlohmann::json opt(const std::optional<std::uint64_t>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json quantiles(const meshd::sim::Quantiles& q) {
  return {{"p50", opt(q.p50_ms)}, {"p99", opt(q.p99_ms)}, {"max", opt(q.max_ms)}, {"n", q.count}};
}

// Bytes malloc has handed out and not had back (main arena and mmapped blocks).
std::uint64_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

nlohmann::json mapping_json(const meshd::sim::MappingFigures& m) {
  const double wire = 64.0;  // per packet, as for steady_per_node_s below
  nlohmann::json by_type;
  const char* names[] = {"register", "request", "reply", "notify"};
  for (std::size_t t = 0; t < 4; ++t) {
    by_type[names[t]] = {{"bytes", m.map_bytes_by_type[t]}, {"packets", m.map_packets_by_type[t]}};
  }
  return {
      {"endpoints", m.endpoints},
      {"keys", m.keys},
      {"vnis", m.vnis},
      {"replicas", m.replicas},
      {"vnis_per_node", m.vnis_per_node},
      {"nodes_per_vni", m.nodes_per_vni},
      {"registered_ms", opt(m.registered_ms)},
      {"keys_underreplicated", m.keys_underreplicated},
      {"lookups", {{"total", m.lookups},
                   {"hits", m.hits},
                   {"misses", m.misses},
                   {"resolves", m.resolves},
                   {"resolved", m.resolved},
                   {"unresolved", m.unresolved},
                   {"unanswered", m.unanswered},
                   {"cache_hit_ratio", m.hit_ratio}}},
      {"resolve_ms", quantiles(m.resolve_time)},
      {"resolve_no_answer", m.resolve_no_answer},
      {"map_traffic_per_node_s", {{"bytes", m.map_bytes_per_node_s},
                                  {"packets", m.map_packets_per_node_s},
                                  {"wire_bytes", m.map_bytes_per_node_s + wire * m.map_packets_per_node_s},
                                  {"by_type", by_type}}},
      {"all_traffic_per_node_s", {{"bytes", m.all_bytes_per_node_s},
                                  {"packets", m.all_packets_per_node_s},
                                  {"wire_bytes", m.all_bytes_per_node_s + wire * m.all_packets_per_node_s}}},
      {"memory_per_node", {{"held_keys_after_publish", m.held_after_publish_mean},
                           {"held_keys", m.held_mean},
                           {"held_keys_max", m.held_max},
                           {"cached_mappings", m.cached_mean},
                           {"cached_mappings_max", m.cached_max},
                           {"own_endpoints", m.own_mean},
                           {"est_bytes", m.est_bytes_per_node},
                           {"heap_bytes", m.heap_bytes_per_node ? nlohmann::json(*m.heap_bytes_per_node)
                                                                : nlohmann::json(nullptr)}}},
      {"moves", {{"moves", m.moves},
                 {"correspondents", m.move_correspondents},
                 {"stale", m.move_stale},
                 {"old_publisher_resolves", m.move_old_resolves},
                 {"old_publisher_failures", m.move_old_failures},
                 {"seen_ms", quantiles(m.move_seen)},
                 {"all_seen_ms", quantiles(m.move_all_seen)}}},
      {"owner_kills", {{"rounds", m.kill_rounds},
                       {"killed", m.killed},
                       {"keys_affected", m.keys_affected},
                       {"keys_at_risk", m.keys_at_risk},
                       {"mappings_lost", m.keys_lost},
                       {"resolve_checks", m.resolve_checks},
                       {"resolve_check_failures", m.resolve_check_failures},
                       {"detect_ms", quantiles(m.detect)},
                       {"rereplicated_ms", quantiles(m.rereplicate)}}},
      {"conflicts", {{"moved", m.conflicts_moved}, {"duplicate", m.conflicts_duplicate}}},
      {"counters", {{"map_timeouts", m.map_timeouts},
                    {"map_negative", m.map_negative},
                    {"map_handoffs", m.map_handoffs}}},
  };
}

}  // namespace

int main(int argc, char** argv) {
  ScenarioConfig cfg;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    const std::string_view v = has_value ? std::string_view(argv[i + 1]) : std::string_view();
    bool ok = true;
    if (a == "--json") {
      json = true;
      continue;
    } else if (a == "--asymmetric") {
      cfg.asymmetric = true;
      continue;
    } else if (a == "--no-storage") {
      cfg.use_storage = false;
      continue;
    } else if (a == "--lose-unsynced") {
      cfg.lose_unsynced = true;
      continue;
    } else if (a == "--preformed") {
      cfg.preformed = true;
      continue;
    } else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else if (!has_value) {
      ok = false;
    } else if (a == "--nodes") {
      ok = parse_num(v, cfg.nodes) && cfg.nodes >= 2 && cfg.nodes <= 1'000'000;
    } else if (a == "--seed") {
      ok = parse_num(v, cfg.seed);
    } else if (a == "--loss") {
      ok = parse_num(v, cfg.link.loss) && cfg.link.loss >= 0 && cfg.link.loss < 1;
    } else if (a == "--duplicate") {
      ok = parse_num(v, cfg.link.duplicate) && cfg.link.duplicate >= 0 && cfg.link.duplicate <= 1;
    } else if (a == "--reorder") {
      ok = parse_num(v, cfg.link.reorder) && cfg.link.reorder >= 0 && cfg.link.reorder <= 1;
    } else if (a == "--delay-min") {
      ok = parse_num(v, cfg.link.delay_min_ms);
    } else if (a == "--delay-max") {
      ok = parse_num(v, cfg.link.delay_max_ms);
    } else if (a == "--false-death-budget") {
      std::uint64_t b = 0;
      ok = parse_num(v, b);
      cfg.false_death_budget = b;
    } else if (a == "--duration-s") {
      std::uint64_t d = 0;
      ok = parse_num(v, d) && d > 0 && d <= 24 * 3600;
      cfg.steady_ms = d * 1000;
    } else if (a == "--probe-interval-ms") {
      ok = parse_num(v, cfg.mesh.probe_interval_ms) && cfg.mesh.probe_interval_ms > 0;
    } else if (a == "--probe-timeout-ms") {
      ok = parse_num(v, cfg.mesh.probe_timeout_ms) && cfg.mesh.probe_timeout_ms > 0;
    } else if (a == "--indirect-probes") {
      if (v == "auto") {
        cfg.mesh.indirect_probes = meshd::mesh::kIndirectProbesAuto;
      } else {
        ok = parse_num(v, cfg.mesh.indirect_probes) && cfg.mesh.indirect_probes <= 16;
      }
    } else if (a == "--broadcast-queue-max") {
      ok = parse_num(v, cfg.mesh.broadcast_queue_max) && cfg.mesh.broadcast_queue_max <= 1'000'000;
    } else if (a == "--suspicion-mult") {
      ok = parse_num(v, cfg.mesh.suspicion_mult);
    } else if (a == "--suspicion-floor-ms") {
      ok = parse_num(v, cfg.mesh.suspicion_floor_ms);
    } else if (a == "--suspicion-confirmations") {
      ok = parse_num(v, cfg.mesh.suspicion_confirmations) && cfg.mesh.suspicion_confirmations <= 16;
    } else if (a == "--direct-retry") {
      int d = 0;
      ok = parse_num(v, d) && (d == 0 || d == 1);
      cfg.mesh.direct_retry = d == 1;
    } else if (a == "--lhm-max") {
      ok = parse_num(v, cfg.mesh.lhm_max) && cfg.mesh.lhm_max <= 64;
    } else if (a == "--suspicion-max-mult") {
      ok = parse_num(v, cfg.mesh.suspicion_max_timeout_mult);
    } else if (a == "--gossip-interval-ms") {
      ok = parse_num(v, cfg.mesh.gossip_interval_ms) && cfg.mesh.gossip_interval_ms > 0;
    } else if (a == "--gossip-fanout") {
      ok = parse_num(v, cfg.mesh.gossip_fanout) && cfg.mesh.gossip_fanout <= 64;
    } else if (a == "--gossip-burst-max") {
      ok = parse_num(v, cfg.mesh.gossip_burst_max) && cfg.mesh.gossip_burst_max >= 1 &&
           cfg.mesh.gossip_burst_max <= 16;
    } else if (a == "--retransmit-mult") {
      ok = parse_num(v, cfg.mesh.retransmit_mult) && cfg.mesh.retransmit_mult > 0;
    } else if (a == "--push-pull-ms") {
      ok = parse_num(v, cfg.mesh.anti_entropy_interval_ms) && cfg.mesh.anti_entropy_interval_ms > 0;
    } else if (a == "--crashes") {
      ok = parse_num(v, cfg.crashes) && cfg.crashes >= 1 && cfg.crashes + 3 < cfg.nodes + 1;
    } else if (a == "--partition-s") {
      std::uint64_t d = 0;
      ok = parse_num(v, d) && d > 0 && d <= 3600;
      cfg.partition_ms = d * 1000;
    } else if (a == "--replicas") {
      ok = parse_num(v, cfg.mesh.map_replicas) && cfg.mesh.map_replicas >= 1 &&
           cfg.mesh.map_replicas <= meshd::mesh::kMapReplicasMax;
    } else if (a == "--map-ttl-s") {
      std::uint64_t t = 0;
      ok = parse_num(v, t) && t > 0 && t <= 24 * 3600;
      cfg.mesh.map_ttl_ms = t * 1000;
    } else if (a == "--map-request-timeout-ms") {
      ok = parse_num(v, cfg.mesh.map_request_timeout_ms) && cfg.mesh.map_request_timeout_ms > 0;
    } else if (a == "--endpoints") {
      ok = parse_num(v, cfg.map.endpoints) && cfg.map.endpoints >= 1 && cfg.map.endpoints <= (1u << 22);
    } else if (a == "--vnis") {
      ok = parse_num(v, cfg.map.vnis) && cfg.map.vnis >= 1 && cfg.map.vnis <= 4096;
    } else if (a == "--vnis-per-node") {
      if (v == "auto") {
        cfg.map.vnis_per_node = 0;
      } else {
        ok = parse_num(v, cfg.map.vnis_per_node) && cfg.map.vnis_per_node >= 1 &&
             cfg.map.vnis_per_node <= 4096;
      }
    } else if (a == "--lookups") {
      ok = parse_num(v, cfg.map.lookups_per_node) && cfg.map.lookups_per_node <= 10'000'000;
    } else if (a == "--traffic-s") {
      std::uint64_t t = 0;
      ok = parse_num(v, t) && t > 0 && t <= 24 * 3600;
      cfg.map.traffic_ms = t * 1000;
    } else if (a == "--zipf") {
      ok = parse_num(v, cfg.map.zipf_s) && cfg.map.zipf_s >= 0 && cfg.map.zipf_s <= 10;
    } else if (a == "--ip-key-share") {
      ok = parse_num(v, cfg.map.ip_key_share) && cfg.map.ip_key_share >= 0 && cfg.map.ip_key_share <= 1;
    } else if (a == "--moves") {
      ok = parse_num(v, cfg.map.moves) && cfg.map.moves <= 10'000;
    } else if (a == "--kill-rounds") {
      ok = parse_num(v, cfg.map.kill_rounds) && cfg.map.kill_rounds <= 1'000;
    } else if (a == "--resolve-checks") {
      ok = parse_num(v, cfg.map.resolve_checks) && cfg.map.resolve_checks <= 1'000'000;
    } else if (a == "--scenario") {
      auto s = meshd::sim::parse_scenario(v);
      ok = s.has_value();
      if (s) cfg.scenario = *s;
    } else {
      ok = false;
    }
    if (!ok) {
      std::cerr << "mesh-sim: bad argument " << a
                << (has_value ? std::string(" ") + std::string(v) : "") << "\n";
      usage();
      return 2;
    }
    ++i;
  }

  cfg.heap_bytes = heap_in_use;
  const std::uint64_t rss_before_kb = proc_status_kb("VmRSS");
  const auto t0 = std::chrono::steady_clock::now();
  const Figures f = meshd::sim::run_scenario(cfg);
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::uint64_t peak_kb = proc_status_kb("VmHWM");
  const double mem_per_node_kb =
      static_cast<double>(peak_kb > rss_before_kb ? peak_kb - rss_before_kb : 0) /
      static_cast<double>(cfg.nodes);

  nlohmann::json j;
  j["scenario"] = meshd::sim::scenario_name(cfg.scenario);
  j["nodes"] = cfg.nodes;
  j["seed"] = cfg.seed;
  j["loss"] = cfg.link.loss;
  j["preformed"] = cfg.preformed;
  j["config"] = {{"probe_interval_ms", cfg.mesh.probe_interval_ms},
                 {"probe_timeout_ms", cfg.mesh.probe_timeout_ms},
                 {"indirect_probes", cfg.mesh.indirect_probes == meshd::mesh::kIndirectProbesAuto
                                         ? nlohmann::json("auto")
                                         : nlohmann::json(cfg.mesh.indirect_probes)},
                 {"suspicion_mult", cfg.mesh.suspicion_mult},
                 {"suspicion_max_timeout_mult", cfg.mesh.suspicion_max_timeout_mult},
                 {"suspicion_confirmations", cfg.mesh.suspicion_confirmations},
                 {"suspicion_floor_ms", cfg.mesh.suspicion_floor_ms},
                 {"direct_retry", cfg.mesh.direct_retry},
                 {"lhm_max", cfg.mesh.lhm_max},
                 {"gossip_interval_ms", cfg.mesh.gossip_interval_ms},
                 {"gossip_fanout", cfg.mesh.gossip_fanout},
                 {"gossip_burst_max", cfg.mesh.gossip_burst_max},
                 {"retransmit_mult", cfg.mesh.retransmit_mult},
                 {"broadcast_queue_max", cfg.mesh.broadcast_queue_max},
                 {"push_pull_interval_ms", cfg.mesh.anti_entropy_interval_ms}};
  j["ok"] = f.ok;
  j["violations"] = f.violations;
  j["form_ms"] = opt(f.form_ms);
  j["join_known_ms"] = {{"p50", opt(f.join_p50_ms)},
                        {"p99", opt(f.join_p99_ms)},
                        {"p99_9", opt(f.join_p999_ms)},
                        {"p100", opt(f.join_p100_ms)}};
  j["crash_known_ms"] = {{"p50", opt(f.crash_p50_ms)}, {"all", opt(f.crash_all_ms)}};
  j["heal_converge_ms"] = opt(f.heal_converge_ms);
  j["churn"] = {{"crashes", f.churn_crashes},
                {"restarts", f.churn_restarts},
                {"converge_ms", opt(f.churn_converge_ms)}};
  j["suspicions"] = f.suspicions;
  j["false_suspicions_refuted"] = f.refutations;
  j["false_deaths"] = f.false_deaths;
  j["false_dead_nodes"] = f.false_dead_nodes;
  j["expected_deaths"] = f.expected_deaths;
  j["drops"] = {{"bad_signature", f.bad_signature_drops},
                {"queue_full", f.queue_full_drops},
                {"table_full", f.table_full_drops}};
  // "bytes" are control-message payloads as the mesh core hands them over; "wire_bytes"
  // add what each becomes on an IPv4 underlay: transport header 16 + inner header 4 +
  // AEAD tag 16 + UDP 8 + IPv4 20 = 64 bytes per packet (one message, one packet).
  auto wire = [](double bytes, double packets) { return bytes + 64.0 * packets; };
  j["formation_per_node_s"] = {{"bytes", f.form_bytes_per_node_s},
                               {"packets", f.form_packets_per_node_s},
                               {"wire_bytes", wire(f.form_bytes_per_node_s, f.form_packets_per_node_s)}};
  j["steady_per_node_s"] = {{"bytes", f.bytes_per_node_s},
                            {"packets", f.packets_per_node_s},
                            {"wire_bytes", wire(f.bytes_per_node_s, f.packets_per_node_s)}};
  j["peak_memory_per_node_kb"] = mem_per_node_kb;
  if (f.mapping) {
    j["mapping"] = mapping_json(*f.mapping);
    j["config"]["map_replicas"] = cfg.mesh.map_replicas;
    j["config"]["map_ttl_ms"] = cfg.mesh.map_ttl_ms;
    j["config"]["map_request_timeout_ms"] = cfg.mesh.map_request_timeout_ms;
    j["config"]["lookups_per_node"] = cfg.map.lookups_per_node;
    j["config"]["traffic_ms"] = cfg.map.traffic_ms;
    j["config"]["zipf_s"] = cfg.map.zipf_s;
    j["config"]["ip_key_share"] = cfg.map.ip_key_share;
  }
  j["sim_ms"] = f.sim_ms;
  j["events"] = f.events;
  j["digest"] = f.digest;
  j["wall_s"] = wall_s;
  j["cpu_s"] = cpu_seconds();
  std::cout << (json ? j.dump(2) : j.dump()) << "\n";
  if (!f.ok) {
    std::cerr << "mesh-sim: invariant violated; seed " << cfg.seed << " (replay:";
    for (int i = 0; i < argc; ++i) std::cerr << " " << argv[i];
    std::cerr << ")\n";
    for (const auto& v : f.violations) std::cerr << "  " << v << "\n";
    return 1;
  }
  return 0;
}
