// Scenario drivers shared by the simulator tests and build/mesh-sim. Each forms a mesh
// (nodes start staggered and join through the seed nodes), injects its fault, measures,
// and returns figures plus any invariant violations. Every phase has a simulated-time
// limit, so every run ends.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mesh/mesh_core.hpp"
#include "sim/lib/sim_network.hpp"

namespace meshd::sim {

enum class Scenario { join, crash, partition, churn, steady };
std::optional<Scenario> parse_scenario(std::string_view s);
const char* scenario_name(Scenario s);

struct ScenarioConfig {
  Scenario scenario = Scenario::join;
  std::size_t nodes = 8;  // >= 2 (crash needs one node besides the seeds)
  std::uint64_t seed = 1;
  LinkModel link{};  // loss, delay, duplication, reordering of every link
  bool use_storage = true;
  bool lose_unsynced = false;  // a crash loses storage writes since the last checkpoint
  bool asymmetric = false;     // partition: only one direction is cut
  std::optional<std::uint64_t> false_death_budget;  // default: 0 without loss, else nodes
  std::uint64_t form_spread_ms = 2'000;             // node starts spread over this
  std::uint64_t form_limit_ms = 600'000;            // formation must converge within this
  std::uint64_t settle_ms = 2'000;                  // quiet time after formation
  std::uint64_t measure_limit_ms = 120'000;
  std::uint64_t partition_ms = 15'000;
  std::size_t crashes = 1;  // crash: victims killed at the same moment (not the seeds)
  std::uint64_t churn_ms = 30'000;
  std::uint64_t churn_interval_ms = 1'000;
  std::uint64_t churn_down_ms = 12'000;  // a crashed node stays down this long
  std::uint64_t steady_ms = 600'000;     // steady: how long the formed mesh runs (loss applies)
  // Start from a mesh that has been running (every node restores all members) instead
  // of forming it by joins: the only way to reach 10,000 nodes in minutes. The join
  // scenario's newcomer still joins for real.
  bool preformed = false;
  mesh::MeshConfig mesh{};
};

struct Figures {
  bool ok = true;
  std::vector<std::string> violations;
  std::optional<std::uint64_t> form_ms;  // until every live node sees every other alive
  // join: time until the joining node is known (alive) by 50/99/99.9/100 % of the others
  std::optional<std::uint64_t> join_p50_ms, join_p99_ms, join_p999_ms, join_p100_ms;
  // crash: time until the crashed node is seen failed by 50 % and by all live nodes
  // (with several victims: p50 is the first victim's, "all" is all of them by all)
  std::optional<std::uint64_t> crash_p50_ms, crash_all_ms;
  // partition: time from heal until converged again
  std::optional<std::uint64_t> heal_converge_ms;
  // churn: crashes and restarts done; time from the last restart until converged
  std::uint64_t churn_crashes = 0, churn_restarts = 0;
  std::optional<std::uint64_t> churn_converge_ms;
  std::uint64_t suspicions = 0, refutations = 0;  // refutation: a live node was suspected
  std::uint64_t false_deaths = 0, expected_deaths = 0;  // member_failed events (per observer)
  std::uint64_t false_dead_nodes = 0;  // distinct healthy nodes declared dead by anyone
  std::uint64_t bad_signature_drops = 0, queue_full_drops = 0, table_full_drops = 0;
  // Traffic offered to the network (before loss) per node per simulated second.
  double form_bytes_per_node_s = 0, form_packets_per_node_s = 0;
  double bytes_per_node_s = 0, packets_per_node_s = 0;  // after formation
  std::uint64_t sim_ms = 0, events = 0;
  std::uint64_t digest = 0;  // hash of every event (time, observer, subject, kind): replay check
};

Figures run_scenario(const ScenarioConfig& cfg);

}  // namespace meshd::sim
